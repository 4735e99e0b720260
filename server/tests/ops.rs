//! `/api/users`, `/healthz`, `/metrics`, and JSON errors outside the stream and publish routes.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use serde_json::json;

/// Users are listed with their connection counts, sorted by name.
#[tokio::test]
async fn users_are_listed_sorted() {
    let hub = start(&[]).await;
    let _z = hub.subscribe("user=zed", None).await.welcomed().await;
    let _a1 = hub.subscribe("user=amy", None).await.welcomed().await;
    let _a2 = hub.subscribe("user=amy", None).await.welcomed().await;
    hub.wait_for_users(|u| u == &json!([{"user": "amy", "connections": 2}, {"user": "zed", "connections": 1}])).await;
    hub.stop().await;
}

/// Health answers 200; metrics count connections, publishes and deliveries.
#[tokio::test]
async fn health_and_metrics() {
    let hub = start(&[]).await;
    assert_eq!(hub.get_json("/healthz").await, (200, json!({"status": "ok"})));
    let mut a = hub.subscribe("user=a", None).await.welcomed().await;
    let _b = hub.subscribe("user=b", None).await.welcomed().await;
    hub.publish_id(json!({"to": "*", "data": 1})).await;
    hub.publish_id(json!({"to": "nobody", "data": 2})).await;
    a.next().await;
    let response = hub.client.get(hub.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for line in [
        "tidings_connections 2\n",
        "tidings_events_published_total 2\n",
        "tidings_events_delivered_total 2\n",
        "tidings_slow_consumers_dropped_total 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    hub.stop().await;
}

/// Unknown API paths and methods answer in the hub's JSON error shape.
#[tokio::test]
async fn api_errors_are_json() {
    let hub = start(&[]).await;
    assert_eq!(hub.get_json("/api/nothing").await.0, 404);
    assert!(hub.get_json("/api/nothing").await.1["error"].is_string());
    let response = hub.client.get(hub.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    hub.stop().await;
}
