//! The subscriptions web API: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`,
//! JSON-LD (`application/ld+json`), for a subscriber whose token's `mercure.subscribe` matches
//! the URL asked for. Every answer carries the `lastEventID` it is current at, also as its
//! `ETag`: a client subscribes to the announcements from there and misses no change, and an
//! `If-None-Match` with it is answered 304 while nothing changed.

use super::{Document, Snapshot, CONTEXT};
use crate::error::AppError;
use crate::mercure::jwt;
use crate::routes::AppState;
use app::event::Topic;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// A collection: all subscriptions, or those for one selector.
#[derive(Serialize)]
struct Collection {
    #[serde(rename = "@context")]
    context: &'static str,
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "lastEventID")]
    last_event_id: String,
    subscriptions: Vec<Document>,
}

/// One subscription, with the id it is current at.
#[derive(Serialize)]
struct One {
    #[serde(flatten)]
    document: Document,
    #[serde(rename = "lastEventID")]
    last_event_id: String,
}

pub async fn all(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, AppError> {
    collection(&state, &uri, &headers, None)
}

pub async fn for_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    collection(&state, &uri, &headers, Some(&topic))
}

pub async fn one(
    State(state): State<AppState>,
    Path((topic, subscriber)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snapshot = authorized(&state, &uri, &headers, Some(&topic), Some(&subscriber))?;
    let Some(document) = snapshot.documents.into_iter().next() else {
        return Err(AppError::NotFound(format!("no open subscription of {subscriber:?} to {topic:?}")));
    };
    let document = Document { context: Some(CONTEXT.into()), ..document };
    let last_event_id = snapshot.last_event_id;
    Ok(answer(&headers, last_event_id.clone(), One { document, last_event_id }))
}

fn collection(state: &AppState, uri: &Uri, headers: &HeaderMap, topic: Option<&str>) -> Result<Response, AppError> {
    let snapshot = authorized(state, uri, headers, topic, None)?;
    let body = Collection {
        context: CONTEXT,
        id: request_uri(uri).to_owned(),
        kind: "Subscriptions",
        last_event_id: snapshot.last_event_id.clone(),
        subscriptions: snapshot.documents,
    };
    Ok(answer(headers, snapshot.last_event_id, body))
}

fn request_uri(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
}

/// The snapshot asked for, if the token's `mercure.subscribe` matches the URL: 401 without a
/// valid subscriber token, 403 when it does not match.
fn authorized(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    topic: Option<&str>,
    subscriber: Option<&str>,
) -> Result<Snapshot, AppError> {
    let Some(mercure) = state.mercure.as_deref() else { return Err(crate::mercure::subscribe::off()) };
    let Some(registry) = &mercure.subscriptions else {
        return Err(AppError::NotFound(
            "the subscriptions API is off: add `subscriptions` to MERCURE_EXTRA_DIRECTIVES".into(),
        ));
    };
    let (token, _) = jwt::presented(headers, jwt::query_authorization(uri.query()).as_deref())
        .ok_or_else(|| AppError::Unauthorized("a subscriber token is required to list subscriptions".into()))?;
    let claim = mercure.settings.subscriber.verify(&token)?.mercure;
    let asked = Topic::new(request_uri(uri)).map_err(|e| AppError::BadRequest(format!("the URL: {e}")))?;
    let allowed = claim
        .subscribe
        .unwrap_or_default()
        .iter()
        .filter_map(|s| state.selectors.parse(s).ok())
        .any(|s| s.matches(&asked));
    if !allowed {
        return Err(AppError::Forbidden("the token's `mercure.subscribe` does not match this URL".into()));
    }
    Ok(registry.snapshot(topic, subscriber))
}

/// The JSON-LD answer with its `ETag`, or 304 when the client holds it already.
fn answer(headers: &HeaderMap, last_event_id: String, body: impl Serialize) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{last_event_id}\"")).ok();
    let held = headers
        .get(header::IF_NONE_MATCH)
        .zip(etag.as_ref())
        .is_some_and(|(sent, etag)| sent.as_bytes() == etag.as_bytes() || sent.as_bytes() == last_event_id.as_bytes());
    let mut response = if held { StatusCode::NOT_MODIFIED.into_response() } else { Json(body).into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/ld+json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate"));
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    response
}
