//! `GET /stream-sse?user=NAME[&topic=SELECTOR...][&lastEventId=ID]`: a stream of one user's
//! events and of the events on the topics its selectors match (a stream with topics and no user
//! is anonymous when auth is off).
//!
//! The body is written straight from the hub's outbox, which already holds encoded frames: each
//! event is encoded once for all streams. On an HTTP/1.1 connection whose first request this is,
//! the listener takes the body over ([`TakeOver`]) and writes it to the socket itself, without
//! hyper's buffers; otherwise hyper writes it ([`transport::body`]).

use super::AppState;
use crate::auth::StreamCredentials;
use crate::error::AppError;
use crate::hub::selector::{Selector, Selectors};
use crate::hub::{Interest, SubscribeError};
use crate::transport::{self, Frames, Hangup, TakeOver};
use app::event::Topic;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

/// The user the original client connected as when it gave none.
const DEFAULT_USER: &str = "empty";

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    user: Option<String>,
    token: Option<String>,
    ticket: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

pub async fn stream(
    State(state): State<AppState>,
    take_over: Option<Extension<TakeOver>>,
    hangup: Option<Extension<Hangup>>,
    RawQuery(raw): RawQuery,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    require_utf8(raw.as_deref().unwrap_or(""))?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let selectors = selectors(&state.selectors, raw.as_deref().unwrap_or(""))?;
    let credentials = StreamCredentials {
        user: query.user.as_deref(),
        topics: &selectors,
        token: query.token.as_deref(),
        ticket: query.ticket.as_deref(),
    };
    // The original client gives no user and means "empty"; a stream of topics means nobody.
    let default_user = selectors.is_empty().then_some(DEFAULT_USER);
    let listener = state.auth.stream_listener(&headers, credentials, default_user)?;
    let expires = listener.deadline();
    // The header a reconnecting browser sends wins over the query a page wrote.
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or(query.last_event_id)
        .filter(|id| !id.is_empty());

    let interest = Interest { user: listener.user, selectors, authorized: listener.authorized };
    let subscription = state.hub.subscribe(interest, last_event_id.as_deref()).map_err(|e| match e {
        SubscribeError::UserFull(limit) => {
            AppError::TooManyRequests(format!("this user already has {limit} open streams"))
        }
        SubscribeError::HubFull => AppError::Unavailable("the hub is at its connection limit; retry later".into()),
        SubscribeError::ShuttingDown => AppError::Unavailable("the hub is shutting down; retry later".into()),
    })?;
    let frames = Frames::new(subscription, state.streams, expires);
    let body = match take_over {
        Some(Extension(slot)) => {
            slot.put(frames);
            Body::empty()
        }
        None => transport::body(frames, hangup.map(|Extension(hangup)| hangup)),
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ];
    Ok((headers, body).into_response())
}

/// The `topic` parameters, parsed, each once, at most [`Topic::MAX_PER_EVENT`]; a bad one is
/// a 400 that names it.
fn selectors(cache: &Selectors, query: &str) -> Result<Vec<Selector>, AppError> {
    let mut selectors: Vec<Selector> = Vec::new();
    // `require_utf8` has refused a query that does not decode.
    for (name, value) in crate::query::pairs(query) {
        if crate::query::component(name).ok().as_deref() != Some("topic") {
            continue;
        }
        let selector =
            cache.parse(&crate::query::component(value).unwrap_or_default()).map_err(AppError::BadRequest)?;
        if selectors.iter().any(|s| s.as_str() == selector.as_str()) {
            continue;
        }
        if selectors.len() == Topic::MAX_PER_EVENT {
            return Err(AppError::BadRequest(format!("a stream may ask for at most {} topics", Topic::MAX_PER_EVENT)));
        }
        selectors.push(selector);
    }
    Ok(selectors)
}

/// The query decoder replaces bytes that are not UTF-8; a name must be UTF-8, so refuse them.
fn require_utf8(query: &str) -> Result<(), AppError> {
    if query.split(['&', '=']).all(|part| crate::query::component(part).is_ok()) {
        Ok(())
    } else {
        Err(AppError::BadRequest("the query is not valid UTF-8".into()))
    }
}
