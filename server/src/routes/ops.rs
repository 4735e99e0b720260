//! What operators and the console read: connected users, subscribed topics, health and
//! Prometheus metrics.

use super::AppState;
use crate::error::AppError;
use app::event::{TopicStreams, UserConnections};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// `GET /api/users`: `[{"user": "...", "connections": n}]`, sorted by user. A publisher's when
/// auth is on.
pub async fn users(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<UserConnections>>, AppError> {
    state.auth.require_publisher(&headers)?;
    Ok(Json(state.hub.users()))
}

/// `GET /api/topics`: `[{"topic": "...", "streams": n}]` for the exact topics open streams
/// subscribe to, sorted by topic. A publisher's when auth is on.
pub async fn topics(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<TopicStreams>>, AppError> {
    state.auth.require_publisher(&headers)?;
    Ok(Json(state.hub.topics()))
}

/// `POST /api/tickets`: a one-time ticket for the bearer token's user.
pub async fn ticket(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<serde_json::Value>, AppError> {
    let ticket = state.auth.issue_ticket(&headers)?;
    Ok(Json(serde_json::json!({ "ticket": ticket })))
}

/// `GET /api/info`: what a console needs to know about the hub (never a secret).
pub async fn info(State(state): State<AppState>) -> Json<app::event::HubInfo> {
    Json(app::event::HubInfo { auth: state.auth.enabled(), version: env!("CARGO_PKG_VERSION").into() })
}

/// `GET /healthz`: 200 when the hub can take events, 503 `degraded` when its store cannot (why
/// is the store's own log line, not the answer's).
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.hub.store_health() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))),
        Err(why) => {
            tracing::debug!(%why, "healthz: degraded");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "degraded" })))
        }
    }
}

/// `GET /metrics`, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let hub = &state.hub;
    let m = hub.metrics();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    metric("tidings_connections", "gauge", "Open event streams.", hub.connections() as u64);
    metric("tidings_topics", "gauge", "Distinct exact topics open streams subscribe to.", hub.topic_count() as u64);
    metric(
        "tidings_events_published_total",
        "counter",
        "Events accepted for delivery.",
        m.published.load(Ordering::Relaxed),
    );
    metric(
        "tidings_events_delivered_total",
        "counter",
        "Event copies written to streams.",
        m.delivered.load(Ordering::Relaxed),
    );
    metric(
        "tidings_slow_consumers_dropped_total",
        "counter",
        "Streams closed because their reader fell more than --max-queue behind.",
        m.slow_consumers_dropped.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
