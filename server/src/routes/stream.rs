//! `GET /stream-sse?user=NAME[&lastEventId=ID]`: one user's event stream.
//!
//! The body is written straight from the hub's outbox, which already holds encoded frames: each
//! event is encoded once for all streams, and whatever is pending goes out in one write. On a
//! cleartext connection whose first request this is, the listener takes the body over
//! ([`TakeOver`]) and writes it to the socket itself, without hyper's buffers.

use super::{AppState, StreamSettings};
use crate::auth::StreamCredentials;
use crate::error::AppError;
use crate::hub::{SubscribeError, Subscription};
use app::sse;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde::Deserialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

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

/// A request extension the cleartext listener sets when it will write the stream's body to the
/// socket itself: the handler leaves the body here instead of in the response.
#[derive(Clone, Default)]
pub struct TakeOver(Arc<Mutex<Option<Frames>>>);

impl TakeOver {
    fn put(&self, frames: Frames) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(frames);
    }

    /// The body the handler left, if the response is a stream.
    pub fn take(&self) -> Option<Frames> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
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
        None => Body::from_stream(frames),
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

/// One stream's body: the subscription's frames, a keep-alive comment after silence, and an end
/// at the stream timeout, when its credential expires, at shutdown, or when the reader fell too
/// far behind. Timers are set once per stream, not once per event.
pub struct Frames {
    subscription: Subscription,
    /// The earlier of the stream timeout and the credential's expiry.
    deadline: Option<Pin<Box<Sleep>>>,
    keep_alive: Option<KeepAlive>,
    /// Frames taken and not yet yielded (the hyper path yields one chunk at a time).
    taken: Vec<Bytes>,
}

struct KeepAlive {
    period: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the stream last sent something; the timer is moved past it only when it fires.
    last_sent: Instant,
}

impl Frames {
    /// `expires` is when the stream's credential stops being valid.
    fn new(subscription: Subscription, settings: StreamSettings, expires: Option<Instant>) -> Frames {
        // A timeout too long for the clock is no timeout.
        let timeout = settings.timeout.and_then(|t| Instant::now().checked_add(t));
        let deadline = match (timeout, expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let keep_alive = settings.keep_alive.map(|period| KeepAlive {
            period,
            timer: Box::pin(tokio::time::sleep(period)),
            last_sent: Instant::now(),
        });
        Frames {
            subscription,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            keep_alive,
            taken: Vec::new(),
        }
    }

    /// Moves the frames due now into `into` (emptied by the caller); `Ready(false)` when the
    /// stream is over.
    pub fn poll_take(&mut self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<bool> {
        if self.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(false);
        }
        match self.subscription.poll_take(cx, into) {
            Poll::Ready(more) => {
                if let Some(keep_alive) = &mut self.keep_alive {
                    keep_alive.last_sent = Instant::now();
                }
                return Poll::Ready(more);
            }
            Poll::Pending => {}
        }
        let Some(keep_alive) = &mut self.keep_alive else { return Poll::Pending };
        while keep_alive.timer.as_mut().poll(cx).is_ready() {
            let due = keep_alive.last_sent + keep_alive.period;
            if due <= Instant::now() {
                keep_alive.last_sent = Instant::now();
                keep_alive.timer.as_mut().reset(keep_alive.last_sent + keep_alive.period);
                into.push(Bytes::from_static(sse::keep_alive().as_bytes()));
                return Poll::Ready(true);
            }
            keep_alive.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

/// The hyper path: one chunk per frame.
impl futures::Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.taken.pop() {
                return Poll::Ready(Some(Ok(frame)));
            }
            let mut taken = std::mem::take(&mut this.taken);
            let more = std::task::ready!(this.poll_take(cx, &mut taken));
            taken.reverse();
            this.taken = taken;
            if !more {
                return Poll::Ready(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, HubSettings};
    use app::event::UserName;
    use futures::StreamExt;

    /// A stream ends at its credential's deadline, to the millisecond, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_its_deadline() {
        let settings = HubSettings {
            history: 8,
            retry: Duration::from_secs(3),
            max_queue: 1 << 20,
            max_per_user: 1,
            max_connections: 1,
        };
        let hub = Hub::new(settings);
        let subscription = hub.subscribe(UserName::new("amy").unwrap(), None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut frames = Frames::new(subscription, StreamSettings { keep_alive: None, timeout: None }, Some(deadline));
        assert!(frames.next().await.is_some(), "the preamble");
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(futures::poll!(frames.next()).is_pending(), "open a millisecond before");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(futures::poll!(frames.next()), Poll::Ready(None)), "ended at the deadline");
    }
}
