//! `GET /stream-sse?user=NAME[&lastEventId=ID]`: one user's event stream.
//!
//! The body is written straight from the hub's outbox, which already holds encoded frames: each
//! event is encoded once for all streams. On an HTTP/1.1 connection whose first request this is,
//! the listener takes the body over ([`TakeOver`]) and writes it to the socket itself, without
//! hyper's buffers; otherwise hyper writes it ([`transport::body`]).

use super::AppState;
use crate::auth::StreamCredentials;
use crate::error::AppError;
use crate::hub::SubscribeError;
use crate::transport::{self, Frames, TakeOver};
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
    RawQuery(raw): RawQuery,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    require_utf8(raw.as_deref().unwrap_or(""))?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let credentials = StreamCredentials {
        user: query.user.as_deref(),
        token: query.token.as_deref(),
        ticket: query.ticket.as_deref(),
    };
    let listener = state.auth.stream_listener(&headers, credentials, DEFAULT_USER)?;
    let expires = listener.deadline();
    // The header a reconnecting browser sends wins over the query a page wrote.
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or(query.last_event_id)
        .filter(|id| !id.is_empty());

    let subscription = state.hub.subscribe(listener.user, last_event_id.as_deref()).map_err(|e| match e {
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
        None => transport::body(frames),
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ];
    Ok((headers, body).into_response())
}

/// The query decoder replaces bytes that are not UTF-8; a name must be UTF-8, so refuse them.
fn require_utf8(query: &str) -> Result<(), AppError> {
    let decodes = |part: &str| percent_encoding::percent_decode_str(&part.replace('+', " ")).decode_utf8().is_ok();
    if query.split(['&', '=']).all(decodes) {
        Ok(())
    } else {
        Err(AppError::BadRequest("the query is not valid UTF-8".into()))
    }
}
