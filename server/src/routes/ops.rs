//! What operators and the console read: connected users, health and Prometheus metrics.

use super::AppState;
use app::event::UserConnections;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// `GET /api/users`: `[{"user": "...", "connections": n}]`, sorted by user.
pub async fn users(State(state): State<AppState>) -> Json<Vec<UserConnections>> {
    Json(state.hub.users())
}

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
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
