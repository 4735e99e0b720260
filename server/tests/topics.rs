//! Topics: streams that subscribe by selector (`*`, an exact topic, a URI template), publishes
//! that name topics, replay of exactly what a stream would have had live, `/api/topics`,
//! `tidings_topics` and `--history-ttl`.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use serde_json::json;
use std::time::Duration;

/// `topic=` parameters for `selectors`, percent-encoded.
fn topics(selectors: &[&str]) -> String {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    selectors.iter().map(|s| format!("topic={}", encode(s))).collect::<Vec<_>>().join("&")
}

const ORDER_42: &str = "https://shop.example/orders/42";
const ORDERS: &str = "https://shop.example/orders/{id}";
const QUIET: Duration = Duration::from_millis(200);

/// An anonymous stream of topics gets the events on its topics and nothing else: not another
/// topic's, not a user's, not a broadcast to users. A template matches what it could expand
/// to; an event matching several of a stream's selectors arrives once; the 202 counts streams.
#[tokio::test]
async fn topic_streams_get_their_topics_once() {
    let hub = start(&[]).await;
    let mut exact = hub.subscribe(&topics(&[ORDER_42]), None).await.welcomed().await;
    let mut patterns = hub.subscribe(&topics(&[ORDERS, ORDER_42, "*"]), None).await.welcomed().await;
    let mut amy = hub.subscribe("user=amy", None).await.welcomed().await;
    hub.publish_id(json!({"to": "*", "data": "users only"})).await;
    hub.publish_id(json!({"topic": "https://shop.example/users/1", "data": "elsewhere"})).await;
    let (status, ack) = hub.publish(json!({"topic": [ORDER_42, "https://shop.example/orders/43"], "data": "42"})).await;
    assert_eq!((status, &ack["connections"]), (202, &json!(2)), "{ack}");
    let (_, seven) = hub.publish(json!({"topic": "https://shop.example/orders/7", "data": "7"})).await;
    assert_eq!(seven["connections"], 1);

    let got = exact.next().await;
    assert_eq!((got.id.as_str(), got.data.as_str()), (ack["id"].as_str().unwrap(), "42"));
    exact.expect_silence(QUIET).await;
    let seen: Vec<String> = patterns.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["elsewhere", "42", "7"], "`*` and the template, each event once");
    patterns.expect_silence(QUIET).await;
    assert_eq!(amy.next().await.data, "users only");
    amy.expect_silence(QUIET).await;
    hub.stop().await;
}

/// A user's stream with topics gets both, and an event for the user about one of its topics
/// once. A stream without topics is as before: the welcome names its user.
#[tokio::test]
async fn a_user_stream_with_topics_gets_both_once() {
    let hub = start(&[]).await;
    let mut amy = hub.subscribe(&format!("user=amy&{}", topics(&[ORDER_42])), None).await;
    assert_eq!(amy.next().await.data, "amy", "the welcome names the user");
    let (_, ack) = hub.publish(json!({"to": "amy", "topic": ORDER_42, "data": "both"})).await;
    assert_eq!(ack["connections"], 1);
    hub.publish_id(json!({"to": "amy", "data": "mine"})).await;
    hub.publish_id(json!({"topic": ORDER_42, "data": "topic"})).await;
    let seen: Vec<String> = amy.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["both", "mine", "topic"]);
    amy.expect_silence(QUIET).await;
    let (_, users) = hub.get_json("/api/users").await;
    assert_eq!(users, json!([{"user": "amy", "connections": 1}]));
    hub.stop().await;
}

/// Bad selectors and topics are 400 JSON errors that name them; so is a stream asking for too
/// many, and a publish naming neither users nor topics.
#[tokio::test]
async fn bad_selectors_and_topics_are_named() {
    let hub = start(&[]).await;
    for (query, named) in [
        (topics(&["https://a.example/{id"]), "https://a.example/{id"),
        (topics(&["bell\u{7}"]), "bell"),
        (topics(&[""]), "empty"),
    ] {
        let stream = hub.client.get(hub.url(&format!("/stream-sse?{query}"))).send().await.unwrap();
        assert_eq!(stream.status(), 400, "{query}");
        let body: serde_json::Value = stream.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(named), "{query}: {error}");
    }
    let many: Vec<String> = (0..257).map(|i| format!("t{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(hub.subscribe(&topics(&many), None).await.status, 400);
    assert_eq!(hub.subscribe(&topics(&many[..256]), None).await.status, 200);
    for (body, says) in [
        (json!({"data": 1}), "`topic`"),
        (json!({"topic": [], "data": 1}), "at least one topic"),
        (json!({"topic": "x\u{1b}", "data": 1}), "control"),
        (json!({"topic": 7, "data": 1}), "expected `topic` to be a topic"),
    ] {
        let (status, answer) = hub.publish(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{body}: {answer}");
    }
    hub.stop().await;
}

/// `Last-Event-ID` replays exactly what the stream would have had live, each once, in order;
/// an unknown id gets the `gap` first.
#[tokio::test]
async fn replay_is_what_the_stream_would_have_had() {
    let hub = start(&[]).await;
    let seen = hub.publish_id(json!({"topic": ORDER_42, "data": "seen"})).await;
    let mut wanted = Vec::new();
    wanted.push(hub.publish_id(json!({"topic": "https://shop.example/orders/9", "data": "template"})).await);
    hub.publish_id(json!({"topic": "https://shop.example/users/9", "data": "no"})).await;
    hub.publish_id(json!({"to": "bob", "data": "no"})).await;
    wanted.push(hub.publish_id(json!({"to": "amy", "data": "user"})).await);
    wanted.push(hub.publish_id(json!({"to": "amy", "topic": ORDER_42, "data": "both"})).await);
    wanted.push(hub.publish_id(json!({"to": "*", "data": "broadcast"})).await);
    let query = format!("user=amy&{}", topics(&[ORDERS, ORDER_42]));
    let mut amy = hub.subscribe(&query, Some(&seen)).await.welcomed().await;
    let replay: Vec<String> = amy.take(4).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replay, wanted);
    amy.expect_silence(QUIET).await;
    assert!(!amy.raw().contains("event: gap"));

    let mut lost = hub.subscribe(&topics(&[ORDER_42]), Some("1-0")).await.welcomed().await;
    let gap = lost.next().await;
    assert_eq!(gap.event, "gap");
    let replay: Vec<String> = lost.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(replay, ["seen", "both"]);
    hub.stop().await;
}

/// `/api/topics` lists the exact topics with streams, sorted, and `/metrics` counts them;
/// anonymous streams are not users.
#[tokio::test]
async fn topics_are_listed_and_counted() {
    let hub = start(&[]).await;
    let _a = hub.subscribe(&topics(&[ORDER_42, "b/topic"]), None).await.welcomed().await;
    let _b = hub.subscribe(&topics(&[ORDER_42, ORDERS]), None).await.welcomed().await;
    let (status, listed) = hub.get_json("/api/topics").await;
    assert_eq!(status, 200);
    assert_eq!(listed, json!([{"topic": "b/topic", "streams": 1}, {"topic": ORDER_42, "streams": 2}]));
    let metrics = hub.client.get(hub.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\ntidings_topics 2\n"), "{metrics}");
    assert!(metrics.contains("\ntidings_connections 2\n"), "{metrics}");
    assert_eq!(hub.get_json("/api/users").await.1, json!([]));
    drop((_a, _b));
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while hub.get_json("/api/topics").await.1 != json!([]) {
        assert!(tokio::time::Instant::now() < deadline, "closed streams leave the list");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.stop().await;
}

/// `--history-ttl`: an event older than it is evicted, and an id evicted by age is a gap.
#[tokio::test]
async fn history_ttl_evicts_by_age() {
    let hub = start(&["--history-ttl", "300ms"]).await;
    let old = hub.publish_id(json!({"topic": "t", "data": "old"})).await;
    let older = hub.publish_id(json!({"topic": "t", "data": "older"})).await;
    let mut fresh = hub.subscribe(&topics(&["t"]), Some(&old)).await.welcomed().await;
    assert_eq!(fresh.next().await.id, older, "young enough to replay");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let newer = hub.publish_id(json!({"topic": "t", "data": "new"})).await;
    let mut late = hub.subscribe(&topics(&["t"]), Some(&old)).await.welcomed().await;
    let gap = late.next().await;
    assert_eq!(gap.event, "gap", "evicted by age");
    assert_eq!(late.next().await.id, newer);
    hub.stop().await;
}
