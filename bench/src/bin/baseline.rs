//! BASELINE, NOT A HUB: `tidings-baseline` is the least an axum app does to stream per-user
//! events, the reference `make bench` measures Tidings' unicast publishing against (issue #15).
//! A map of per-user channels, `GET /stream-sse?user=` and `POST /api/events` with
//! `{"to", "event", "data"}`; no history, ids, replay, limits, validation or durability.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::serve::ListenerExt;
use axum::{routing::get, routing::post, Json, Router};
use futures::Stream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Users = Arc<Mutex<HashMap<String, Vec<mpsc::Sender<(String, String)>>>>>;

#[derive(serde::Deserialize)]
struct Publish {
    to: String,
    event: String,
    data: String,
}

async fn stream(
    State(users): State<Users>,
    Query(q): Query<HashMap<String, String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(64);
    let user = q.get("user").cloned().unwrap_or_default();
    users.lock().unwrap_or_else(|p| p.into_inner()).entry(user).or_default().push(tx);
    Sse::new(futures::stream::unfold(rx, |mut rx| async move {
        let (event, data) = rx.recv().await?;
        Some((Ok(Event::default().event(event).data(data)), rx))
    }))
}

async fn publish(State(users): State<Users>, Json(p): Json<Publish>) -> StatusCode {
    let mut users = users.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(senders) = users.get_mut(&p.to) {
        senders.retain(|tx| {
            !matches!(tx.try_send((p.event.clone(), p.data.clone())), Err(mpsc::error::TrySendError::Closed(_)))
        });
    }
    StatusCode::ACCEPTED
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3300".into());
    let app = Router::new()
        .route("/stream-sse", get(stream))
        .route("/api/events", post(publish))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Users::default());
    // Without TCP_NODELAY small answers wait on delayed ACKs (milliseconds each): a reference
    // that slow would flatter Tidings, which sets it.
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
