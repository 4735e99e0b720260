//! `GET /stream-sse`: the wire order, headers, names, replay, gaps, timers and limits.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{id_parts, start, PATIENCE};
use serde_json::json;
use std::time::Duration;

/// The first bytes: retry, an id-only block (the cursor), then a welcome without id carrying
/// the user, which a client therefore sees with the cursor as its last event id.
#[tokio::test]
async fn preamble_is_retry_cursor_then_welcome() {
    let hub = start(&["--retry", "2500ms"]).await;
    let mut alice = hub.subscribe("user=alice", None).await;
    let welcome = alice.next().await;
    // The preamble goes out in one write, so it is whole once the welcome is read.
    let raw = alice.raw();
    let prefix = "retry: 2500\n\nid: ";
    assert!(raw.starts_with(prefix), "{raw:?}");
    let (cursor, rest) = raw[prefix.len()..].split_once("\n\n").unwrap();
    assert_eq!(rest, "event: message\ndata: alice\n\n", "nothing else before the first event");
    id_parts(cursor);
    assert_eq!((welcome.data.as_str(), welcome.id.as_str()), ("alice", cursor));
    hub.stop().await;
}

/// The cursor is the newest id assigned, so a stream that drops before its first event still
/// replays what it missed.
#[tokio::test]
async fn cursor_lets_an_early_drop_replay() {
    let hub = start(&[]).await;
    let older = hub.publish_id(json!({"to": "bob", "data": "before"})).await;
    let mut alice = hub.subscribe("user=alice", None).await;
    let raw = alice.wait_raw("\n\nid: ").await;
    let cursor = raw.rsplit("id: ").next().unwrap().lines().next().unwrap().to_owned();
    alice.wait_raw(&format!("id: {cursor}\n\n")).await;
    assert_eq!(cursor, older, "the cursor is the newest id");
    drop(alice);
    let missed = hub.publish_id(json!({"to": "alice", "data": "missed"})).await;
    let mut again = hub.subscribe("user=alice", Some(&cursor)).await.welcomed().await;
    let event = again.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (missed.as_str(), "missed"));
    hub.stop().await;
}

/// 200 with the SSE headers, and CORS for any origin by default.
#[tokio::test]
async fn stream_headers() {
    let hub = start(&[]).await;
    let response = hub
        .client
        .get(hub.url("/stream-sse?user=alice"))
        .header("Origin", "http://elsewhere.test")
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(header("vary"), None, "with `*`, the answer is the same for every origin");
    assert_eq!(header("content-encoding"), None, "the stream is never compressed");
    hub.stop().await;
}

/// `--cors-origin` restricts CORS to the listed origins, and answers say they vary with the
/// `Origin` (a cache must not hand one origin's answer to another), publishes included.
#[tokio::test]
async fn cors_origin_restricts() {
    let hub = start(&["--cors-origin", "http://good.test"]).await;
    for (origin, allowed) in [("http://good.test", Some("http://good.test")), ("http://bad.test", None)] {
        let response = hub.client.get(hub.url("/stream-sse?user=a")).header("Origin", origin).send().await.unwrap();
        let got = response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), allowed, "{origin}");
        assert_eq!(response.headers()["vary"], "origin", "{origin}");
        let published = hub
            .client
            .post(hub.url("/api/events"))
            .header("Origin", origin)
            .json(&json!({"to": "a", "data": 1}))
            .send();
        let published = published.await.unwrap();
        assert_eq!(published.status(), 202);
        let got = published.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), allowed, "a publish from {origin}");
        assert_eq!(published.headers()["vary"], "origin", "a publish from {origin}");
    }
    hub.stop().await;
}

/// Without `user` the stream is for `empty`, as the original.
#[tokio::test]
async fn default_user_is_empty() {
    let hub = start(&[]).await;
    let mut stream = hub.subscribe("", None).await;
    assert_eq!(stream.next().await.data, "empty");
    hub.wait_for_users(|u| u == &json!([{"user": "empty", "connections": 1}])).await;
    hub.stop().await;
}

/// Bad user names get 400 with a JSON error before any stream starts.
#[tokio::test]
async fn bad_user_names_are_refused() {
    let hub = start(&[]).await;
    let long = "x".repeat(65);
    for user in ["", long.as_str(), "a%09b", "a%1Bb", "a%7Fb", "a%C2%85b", "a%0Db", "a%0Ab", "a%00b", "%FF"] {
        let response = hub.client.get(hub.url(&format!("/stream-sse?user={user}"))).send().await.unwrap();
        assert_eq!(response.status(), 400, "{user}");
        assert_eq!(response.headers()["content-type"], "application/json", "{user}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{user}: {body}");
    }
    let ok = "ü".repeat(32);
    let mut stream = hub.subscribe(&format!("user={ok}"), None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.next().await.data, ok);
    hub.stop().await;
}

/// With a last event id, the user's events after it (and broadcasts) are replayed in order,
/// including events published while the user was not connected; others' are not.
#[tokio::test]
async fn replays_missed_events_in_order() {
    let hub = start(&[]).await;
    let first = hub.publish_id(json!({"to": "alice", "data": "1"})).await;
    let second = hub.publish_id(json!({"to": "alice", "data": "2"})).await;
    hub.publish_id(json!({"to": "bob", "data": "not yours"})).await;
    let all = hub.publish_id(json!({"to": "*", "event": "news", "data": "3"})).await;
    let both = hub.publish_id(json!({"to": ["bob", "alice"], "data": "4"})).await;

    let mut alice = hub.subscribe(&format!("user=alice&lastEventId={first}"), None).await.welcomed().await;
    let replay = alice.take(3).await;
    let got: Vec<_> = replay.iter().map(|e| (e.id.clone(), e.event.clone(), e.data.clone())).collect();
    assert_eq!(
        got,
        [
            (second, "message".into(), "2".into()),
            (all, "news".into(), "3".into()),
            (both, "message".into(), "4".into())
        ]
    );
    let live = hub.publish_id(json!({"to": "alice", "data": "live"})).await;
    assert_eq!(alice.next().await.id, live);
    hub.stop().await;
}

/// The `Last-Event-ID` header wins over the `lastEventId` query.
#[tokio::test]
async fn header_wins_over_query() {
    let hub = start(&[]).await;
    let first = hub.publish_id(json!({"to": "a", "data": "1"})).await;
    let second = hub.publish_id(json!({"to": "a", "data": "2"})).await;
    let third = hub.publish_id(json!({"to": "a", "data": "3"})).await;
    let mut stream = hub.subscribe(&format!("user=a&lastEventId={first}"), Some(&second)).await.welcomed().await;
    assert_eq!(stream.next().await.id, third);
    hub.stop().await;
}

/// Unknown ids (evicted, before the start, in the future, malformed) start with a `gap` event
/// without id, then every retained event of the user.
#[tokio::test]
async fn unknown_ids_start_with_a_gap() {
    let hub = start(&["--history", "2"]).await;
    let evicted = hub.publish_id(json!({"to": "a", "data": "old"})).await;
    let kept1 = hub.publish_id(json!({"to": "a", "data": "k1"})).await;
    let kept2 = hub.publish_id(json!({"to": "*", "data": "k2"})).await;
    let (millis, _) = id_parts(&kept2);
    let future = format!("{}-0", millis + 60_000);
    let before_start = "1-0".to_string();
    let earlier_than_evicted = format!("{}-0", id_parts(&evicted).0 - 1);
    for asked in [earlier_than_evicted.as_str(), before_start.as_str(), future.as_str(), "garbage", "1-2-3"] {
        let mut stream = hub.subscribe("user=a", Some(asked)).await.welcomed().await;
        let gap = stream.next().await;
        assert_eq!(gap.event, "gap", "{asked}");
        let notice: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(notice, json!({"lastEventId": asked, "earliest": kept1}));
        let raw = stream.raw();
        assert!(raw.contains("\n\nevent: gap\ndata: "), "the gap has no id line: {raw:?}");
        let replay = stream.take(2).await;
        assert_eq!([replay[0].id.as_str(), replay[1].id.as_str()], [kept1.as_str(), kept2.as_str()]);
    }
    // The newest evicted id itself is still exact: nothing after it was lost.
    let mut exact = hub.subscribe("user=a", Some(&evicted)).await.welcomed().await;
    assert_eq!(exact.next().await.id, kept1);
    hub.stop().await;
}

/// A gap on an empty history says `earliest: null`.
#[tokio::test]
async fn gap_on_empty_history() {
    let hub = start(&[]).await;
    let mut stream = hub.subscribe("user=a", Some("garbage")).await.welcomed().await;
    let gap = stream.next().await;
    assert_eq!(gap.event, "gap");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&gap.data).unwrap(),
        json!({"lastEventId": "garbage", "earliest": null})
    );
    hub.stop().await;
}

/// A comment line keeps a silent stream open.
#[tokio::test]
async fn keep_alive_comments_fill_silence() {
    let hub = start(&["--keep-alive", "150ms"]).await;
    let mut stream = hub.subscribe("user=a", None).await;
    let raw = stream.wait_raw("\n\n:\n\n").await;
    assert!(!raw.contains("event: keep"), "a comment, not an event");
    hub.stop().await;
}

/// The stream ends after `--stream-timeout`.
#[tokio::test]
async fn streams_end_at_the_timeout() {
    let hub = start(&["--stream-timeout", "300ms"]).await;
    let mut stream = hub.subscribe("user=a", None).await.welcomed().await;
    assert!(stream.ends_within(PATIENCE).await);
    hub.wait_for_users(|u| u == &json!([])).await;
    hub.stop().await;
}

/// With `--stream-timeout 0` and `--keep-alive 0` a stream stays open and silent.
#[tokio::test]
async fn zero_turns_timers_off() {
    let hub = start(&["--stream-timeout", "0", "--keep-alive", "0"]).await;
    let mut stream = hub.subscribe("user=a", None).await.welcomed().await;
    assert!(!stream.ends_within(Duration::from_millis(800)).await);
    assert!(!stream.raw().contains(":\n\n"));
    hub.stop().await;
}

/// Every connection of a user gets that user's events; past the per-user limit, 429.
#[tokio::test]
async fn every_connection_of_a_user_receives() {
    let hub = start(&["--max-connections-per-user", "2"]).await;
    let mut tab1 = hub.subscribe("user=a", None).await.welcomed().await;
    let mut tab2 = hub.subscribe("user=a", None).await.welcomed().await;
    let third = hub.client.get(hub.url("/stream-sse?user=a")).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let (_, ack) = hub.publish(json!({"to": "a", "data": "both"})).await;
    assert_eq!(ack["connections"], 2);
    assert_eq!(tab1.next().await.data, "both");
    assert_eq!(tab2.next().await.data, "both");
    hub.stop().await;
}

/// Past `--max-connections`, new streams get 503 at once while the rest keeps answering.
#[tokio::test]
async fn hub_connection_limit_answers_503() {
    let hub = start(&["--max-connections", "2"]).await;
    let _a = hub.subscribe("user=a", None).await.welcomed().await;
    let _b = hub.subscribe("user=b", None).await.welcomed().await;
    let refused = hub.client.get(hub.url("/stream-sse?user=c")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    assert_eq!(hub.get_json("/healthz").await.0, 200);
    assert_eq!(hub.publish(json!({"to": "a", "data": 1})).await.0, 202);
    hub.stop().await;
}

/// Ids are `<millis>-<seq>` and strictly increase across the hub.
#[tokio::test]
async fn ids_strictly_increase() {
    let hub = start(&[]).await;
    let mut previous = (0, 0);
    for i in 0..300 {
        let id = hub.publish_id(json!({"to": if i % 2 == 0 { "a" } else { "*" }, "data": i})).await;
        let parts = id_parts(&id);
        assert!(parts > previous, "{id} after {previous:?}");
        previous = parts;
    }
    hub.stop().await;
}

/// A client that goes away is removed without any send failing first.
#[tokio::test]
async fn departed_clients_are_noticed() {
    let hub = start(&["--keep-alive", "0"]).await;
    let stream = hub.subscribe("user=gone", None).await.welcomed().await;
    hub.wait_for_users(|u| u == &json!([{"user": "gone", "connections": 1}])).await;
    drop(stream);
    hub.wait_for_users(|u| u == &json!([])).await;
    hub.stop().await;
}

/// The ticker sends `{"time": "<millis>"}` with an id to connected users, chosen at random, and
/// its events replay like any other.
#[tokio::test]
async fn ticker_reaches_random_connected_users() {
    let hub = start(&["--tick-interval", "25ms"]).await;
    let mut a = hub.subscribe("user=a", None).await.welcomed().await;
    let mut b = hub.subscribe("user=b", None).await.welcomed().await;
    for stream in [&mut a, &mut b] {
        let tick = stream.next().await;
        assert_eq!(tick.event, "message");
        let data: serde_json::Value = serde_json::from_str(&tick.data).unwrap();
        let millis: u64 = data["time"].as_str().unwrap().parse().unwrap();
        assert!(millis > 1_600_000_000_000);
        id_parts(&tick.id);
    }
    let first_tick = a.next().await;
    drop(a);
    let mut replayed = hub.subscribe("user=a", Some("0-0")).await.welcomed().await;
    assert_eq!(replayed.next().await.event, "gap");
    let mut ids = Vec::new();
    while ids.len() < 3 {
        ids.push(replayed.next().await.id);
    }
    assert!(ids.iter().any(|id| id_parts(id) <= id_parts(&first_tick.id)), "ticks are in the history");
    hub.stop().await;
}

/// A reader that stops reading is cut off once its queue is full; the publisher and the other
/// streams never wait for it.
#[tokio::test]
async fn slow_consumers_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let hub = start(&["--max-queue", "65536"]).await;
    let addr = hub.base.trim_start_matches("http://").to_owned();
    // A raw client that sends its request and never reads.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(b"GET /stream-sse?user=slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    hub.wait_for_users(|u| u.as_array().is_some_and(|a| a.len() == 1)).await;
    let mut fast = hub.subscribe("user=fast", None).await.welcomed().await;

    let data = "x".repeat(60_000);
    let started = std::time::Instant::now();
    for _ in 0..100 {
        let (status, _) = hub.publish(json!({"to": ["slow", "fast"], "data": data})).await;
        assert_eq!(status, 202);
        assert_eq!(fast.next().await.data.len(), 60_000);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    hub.wait_for_users(|u| u == &json!([{"user": "fast", "connections": 1}])).await;
    let metrics = hub.client.get(hub.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tidings_slow_consumers_dropped_total 1\n"), "{metrics}");
    hub.stop().await;
}
