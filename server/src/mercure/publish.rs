//! `POST /.well-known/mercure`: a Mercure update, form-encoded: `topic` (repeatable; the first
//! is canonical, the rest alternates, and a match on any dispatches), `data`, `private`, `id`,
//! `type`, `retry`. The answer is 200 `text/plain` with the update's id: the publisher's, or a
//! `urn:uuid:` the hub makes. Every topic must be one the token's `mercure.publish` allows.
//!
//! The caller is admitted before a byte of the body is read, and the body is read bounded in
//! size and time, as for `POST /api/events`.

use super::jwt::{self, Source};
use super::settings::Origins;
use crate::error::AppError;
use crate::hub::selector::Selector;
use crate::routes::publish::{closing, read_body};
use crate::routes::AppState;
use app::event::{CustomId, EventName, PublishRequest, Recipients, Topic};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Admits the publisher, reads the form, publishes.
pub async fn publish(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = admit(&state, &parts.headers, parts.uri.query());
    let allowed = match admitted {
        Ok(allowed) => allowed,
        Err(refusal) => return closing(refusal.into_response(), parts.version),
    };
    let limit = state.max_data.saturating_mul(2).saturating_add(64 * 1024);
    let body = match read_body(&parts.headers, body, limit).await {
        Ok(body) => body,
        Err(refusal) => return closing(refusal.into_response(), parts.version),
    };
    match accept(&state, &allowed, &body).await {
        Ok(id) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The selectors the caller may publish to: 401 without a valid publisher token, 403 for one
/// that may publish nothing, or for a cookie sent from an origin not in `publish_origins`; 415
/// for a body that is not a form.
fn admit(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Result<Vec<Selector>, AppError> {
    let Some(mercure) = state.mercure.as_deref() else { return Err(super::subscribe::off()) };
    let authorization = jwt::query_authorization(query);
    let (token, source) = jwt::presented(headers, authorization.as_deref()).ok_or_else(|| {
        AppError::Unauthorized(
            "a publisher token is required (Authorization: Bearer, ?authorization= or the mercureAuthorization cookie)"
                .into(),
        )
    })?;
    if source == Source::Cookie {
        require_listed_origin(headers, &mercure.settings.publish_origins)?;
    }
    let claim = mercure.settings.publisher.verify(&token)?.mercure;
    let selectors = claim.publish.unwrap_or_default();
    if selectors.is_empty() {
        return Err(AppError::Forbidden("the token's `mercure.publish` claim allows no topic".into()));
    }
    let allowed = selectors
        .iter()
        .map(|s| {
            state.selectors.parse(s).map_err(|e| AppError::Forbidden(format!("the token's `mercure.publish`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next());
    if !form.is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(AppError::UnsupportedMediaType(
            "a Mercure update is sent as application/x-www-form-urlencoded".into(),
        ));
    }
    Ok(allowed)
}

/// A cookie is sent by the browser whatever page asks: only the listed origins may publish
/// with one (the `Origin` header, or the origin of the `Referer`).
fn require_listed_origin(headers: &HeaderMap, origins: &Origins) -> Result<(), AppError> {
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let origin = text(header::ORIGIN).map(str::to_owned).or_else(|| {
        let referer: axum::http::Uri = text(header::REFERER)?.parse().ok()?;
        Some(format!("{}://{}", referer.scheme_str()?, referer.authority()?))
    });
    match origin {
        Some(origin) if origins.allows(&origin) => Ok(()),
        Some(origin) => Err(AppError::Forbidden(format!(
            "a publish authorized by cookie may not come from {origin:?}: it is not in `publish_origins`"
        ))),
        None => Err(AppError::Forbidden("a publish authorized by cookie must say its Origin".into())),
    }
}

/// Reads the form, checks it, publishes: the update's id.
async fn accept(state: &AppState, allowed: &[Selector], body: &[u8]) -> Result<String, AppError> {
    let mut topics: Vec<Topic> = Vec::new();
    let (mut data, mut private, mut id, mut event, mut retry) = (None, false, None, None, None);
    for (name, value) in form_urlencoded::parse(body) {
        match name.as_ref() {
            "topic" => {
                let topic =
                    Topic::new(value.into_owned()).map_err(|e| AppError::BadRequest(format!("`topic`: {e}")))?;
                if !topics.contains(&topic) {
                    if topics.len() == Topic::MAX_PER_EVENT {
                        return Err(AppError::BadRequest(format!(
                            "an update may name at most {} topics",
                            Topic::MAX_PER_EVENT
                        )));
                    }
                    topics.push(topic);
                }
            }
            "data" => data = Some(value.into_owned()),
            "private" => private = true,
            "id" => {
                id = Some(CustomId::new(value.into_owned()).map_err(|e| AppError::BadRequest(format!("`id`: {e}")))?)
            }
            "type" => {
                event =
                    Some(EventName::new(value.into_owned()).map_err(|e| AppError::BadRequest(format!("`type`: {e}")))?)
            }
            "retry" => {
                retry = Some(value.parse::<u64>().map_err(|_| {
                    AppError::BadRequest(format!("`retry` must be a number of milliseconds, not {value:?}"))
                })?)
            }
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(AppError::BadRequest("missing `topic`: an update names at least one topic".into()));
    }
    if let Some(refused) = topics.iter().find(|t| !allowed.iter().any(|s| s.matches(t))) {
        return Err(AppError::Forbidden(format!("the token's `mercure.publish` does not allow the topic {refused:?}")));
    }
    let data = data.unwrap_or_default();
    if data.len() > state.max_data {
        return Err(AppError::PayloadTooLarge(format!(
            "`data` is {} bytes; the limit is {}",
            data.len(),
            state.max_data
        )));
    }
    // A publisher may reuse an id (Mercure's hub takes it too); a client resuming from it
    // resumes after the oldest update held with it, so it may see some twice but misses none.
    let id = match id {
        Some(id) => id,
        None => CustomId::new(format!("urn:uuid:{}", uuid::Uuid::new_v4()))
            .map_err(|e| AppError::Internal(format!("a generated id was refused: {e}")))?,
    };
    let answer = id.as_str().to_owned();
    let request = PublishRequest {
        to: Recipients::nobody(),
        topics,
        event: event.unwrap_or_else(EventName::message),
        data,
        private,
        id: Some(id),
        retry,
    };
    state.hub.publish(request).await?;
    Ok(answer)
}
