//! `GET /.well-known/mercure?topic=SELECTOR...`: a Mercure subscription. It gets the updates
//! whose topics one of its selectors matches; a private one only if its token's
//! `mercure.subscribe` allows one of the update's topics. It may resume with the
//! `Last-Event-ID` header or the `lastEventID` query (the older `Last-Event-ID` query too, and
//! `earliest` for everything held), and is told where it resumed in the `Last-Event-ID` answer
//! header. The stream itself is Tidings' own: the same lean writer, limits, heartbeat comments,
//! `gap` event when the id is gone, and an end when the token expires.

use super::jwt::{self, Token};
use super::subscriptions;
use crate::error::AppError;
use crate::hub::selector::Selector;
use crate::hub::{Interest, SubscribeError};
use crate::query::{component, pairs};
use crate::routes::AppState;
use crate::transport::{self, Frames, Hangup, StreamSettings, TakeOver};
use app::event::Topic;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;

/// What a subscribe request asks for, read from its query.
#[derive(Default)]
struct Asked {
    topics: Vec<String>,
    authorization: Option<String>,
    last_event_id: Option<String>,
}

fn asked(query: &str) -> Result<Asked, AppError> {
    let mut asked = Asked::default();
    let mut older_last_event_id = None;
    for (name, value) in pairs(query).filter(|(name, _)| !name.is_empty()) {
        let (Ok(name), Ok(value)) = (component(name), component(value)) else {
            return Err(AppError::BadRequest("the query is not valid UTF-8".into()));
        };
        match name.as_str() {
            "topic" => asked.topics.push(value),
            "authorization" => asked.authorization = Some(value),
            "lastEventID" => asked.last_event_id = Some(value),
            "Last-Event-ID" => older_last_event_id = Some(value),
            _ => {}
        }
    }
    asked.last_event_id = asked.last_event_id.or(older_last_event_id);
    Ok(asked)
}

pub async fn subscribe(
    State(state): State<AppState>,
    take_over: Option<Extension<TakeOver>>,
    hangup: Option<Extension<Hangup>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(mercure) = state.mercure.as_deref() else { return Err(off()) };
    let asked = asked(raw.as_deref().unwrap_or(""))?;
    if asked.topics.is_empty() {
        return Err(AppError::BadRequest(
            "missing `topic` parameter: a subscription names at least one topic selector".into(),
        ));
    }
    let token: Option<Token> = match jwt::presented(&headers, asked.authorization.as_deref()) {
        Some((token, _)) => Some(mercure.settings.subscriber.verify(&token)?),
        None if mercure.settings.anonymous => None,
        None => {
            return Err(AppError::Unauthorized(
                "a subscriber token is required (Authorization: Bearer, ?authorization= or the mercureAuthorization cookie); anonymous subscribers are off".into(),
            ))
        }
    };
    let mut selectors: Vec<Selector> = Vec::new();
    for topic in &asked.topics {
        let selector = state.selectors.parse(topic).map_err(AppError::BadRequest)?;
        if !selectors.contains(&selector) {
            if selectors.len() == Topic::MAX_PER_EVENT {
                return Err(AppError::BadRequest(format!(
                    "a subscription may name at most {} topics",
                    Topic::MAX_PER_EVENT
                )));
            }
            selectors.push(selector);
        }
    }
    let authorized = match token.as_ref().and_then(|t| t.mercure.subscribe.as_deref()) {
        Some(allowed) => allowed
            .iter()
            .map(|s| {
                state
                    .selectors
                    .parse(s)
                    .map_err(|e| AppError::Forbidden(format!("the token's `mercure.subscribe`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    // The header a reconnecting browser sends wins over the query a page wrote.
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or(asked.last_event_id)
        .filter(|id| !id.is_empty());

    let interest = Interest { user: None, selectors: selectors.clone(), authorized: authorized.into() };
    let subscription = state.hub.subscribe_quietly(interest, last_event_id.as_deref()).map_err(refusal)?;
    // Where the replay starts: right after the id asked for, or (unknown, evicted) the start.
    let resumed_after = last_event_id.map(|asked| if subscription.resumed() { asked } else { "earliest".into() });
    let expires = token.as_ref().and_then(|t| t.expires).and_then(crate::auth::on_tokio_clock);
    let settings =
        StreamSettings { keep_alive: mercure.settings.heartbeat.or(state.streams.keep_alive), ..state.streams };
    let mut frames = Frames::new(subscription, settings, expires);
    if mercure.subscriptions.is_some() {
        let payload = token.as_ref().and_then(|t| t.mercure.payload.as_ref());
        let topics: Vec<&str> = selectors.iter().map(Selector::as_str).collect();
        let announced = subscriptions::announce(&state.hub, &topics, &subscriptions::subscriber_id(), payload).await;
        frames = frames.holding(announced);
    }
    let body = match take_over {
        Some(Extension(slot)) => {
            slot.put(frames);
            Body::empty()
        }
        None => transport::body(frames, hangup.map(|Extension(hangup)| hangup)),
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        body,
    )
        .into_response();
    if let Some(value) = resumed_after.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(HeaderName::from_static("last-event-id"), value);
    }
    Ok(response)
}

/// The answer of a hub started without Mercure.
pub(super) fn off() -> AppError {
    AppError::NotFound("Mercure is off on this hub: start it with MERCURE_PUBLISHER_JWT_KEY (see the README)".into())
}

fn refusal(e: SubscribeError) -> AppError {
    match e {
        SubscribeError::UserFull(limit) => AppError::TooManyRequests(format!("already {limit} open streams")),
        SubscribeError::HubFull => AppError::Unavailable("the hub is at its connection limit; retry later".into()),
        SubscribeError::ShuttingDown => AppError::Unavailable("the hub is shutting down; retry later".into()),
    }
}
