//! Mercure's side of a test hub: keys, tokens, form publishing and subscribing.

use super::{start, Hub, Subscriber, PATIENCE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

pub const PUBLISHER_KEY: &str = "publisher-key-of-at-least-32-bytes!!";
pub const SUBSCRIBER_KEY: &str = "subscriber-key-of-at-least-32-bytes!";

pub fn sign(key: &str, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key.as_bytes())).unwrap()
}

pub fn publisher(selectors: &[&str]) -> String {
    sign(PUBLISHER_KEY, json!({"mercure": {"publish": selectors}}))
}

pub fn subscriber(selectors: &[&str]) -> String {
    sign(SUBSCRIBER_KEY, json!({"mercure": {"subscribe": selectors, "payload": {"user": "amy"}}}))
}

/// A hub with Mercure on (separate keys) and these directives.
pub async fn hub(directives: &str, extra: &[&str]) -> Hub {
    let mut args = vec![
        "--mercure-publisher-jwt-key",
        PUBLISHER_KEY,
        "--mercure-subscriber-jwt-key",
        SUBSCRIBER_KEY,
        "--mercure-extra-directives",
        directives,
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

/// `POST /.well-known/mercure` with `form` and the publisher token `token`: status and text.
pub async fn post(hub: &Hub, token: Option<&str>, form: &[(&str, &str)]) -> (u16, String) {
    let mut request = hub.client.post(hub.url("/.well-known/mercure")).form(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Publishes with a token that may publish anything and returns the id.
pub async fn publish(hub: &Hub, form: &[(&str, &str)]) -> String {
    let (status, id) = post(hub, Some(&publisher(&["*"])), form).await;
    assert_eq!(status, 200, "{id}");
    id
}

/// `GET /.well-known/mercure?{query}` with extra headers.
pub async fn open(hub: &Hub, query: &str, headers: &[(&str, &str)]) -> Subscriber {
    let mut request = hub.client.get(hub.url(&format!("/.well-known/mercure?{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Subscriber::new(request.send().await.unwrap())
}

/// Waits until the hub counts `n` open streams.
pub async fn wait_streams(hub: &Hub, n: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = hub.client.get(hub.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == format!("tidings_connections {n}")) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {n} streams: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
