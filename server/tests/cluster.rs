//! Several nodes on one real `redis-server`: cross-node delivery and replay, Redis going away
//! and coming back, and a node killed mid-stream.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::stores::RedisServer;
use common::{id_parts, remote, signal, spawn, start, PATIENCE};
use serde_json::json;
use std::time::Duration;

/// An event published on one node reaches the user's streams on every node.
#[tokio::test]
async fn publish_on_one_node_receive_on_another() {
    let redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let b = start(&["--redis-url", &redis.url()]).await;
    let mut on_b = b.subscribe("user=amy", None).await.welcomed().await;
    let mut on_a = a.subscribe("user=amy", None).await.welcomed().await;
    let (status, ack) = a.publish(json!({"to": "amy", "data": "via redis"})).await;
    assert_eq!(status, 202);
    let id = ack["id"].as_str().unwrap();
    id_parts(id);
    for stream in [&mut on_a, &mut on_b] {
        let event = stream.next().await;
        assert_eq!((event.id.as_str(), event.data.as_str()), (id, "via redis"));
    }
    a.stop().await;
    b.stop().await;
}

/// Topics across nodes: published on one, received on another live, and replayed from the
/// shared history on a node started later.
#[tokio::test]
async fn topics_across_nodes() {
    let redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let b = start(&["--redis-url", &redis.url()]).await;
    let mut on_b = b.subscribe("topic=orders%2F%7Bid%7D", None).await.welcomed().await;
    let first = a.publish_id(json!({"topic": "orders/1", "data": "one"})).await;
    let event = on_b.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (first.as_str(), "one"));
    let second = a.publish_id(json!({"topic": "orders/2", "to": "amy", "data": "two"})).await;
    let c = start(&["--redis-url", &redis.url()]).await;
    let mut on_c = c.subscribe("topic=orders%2F2", Some(&first)).await.welcomed().await;
    assert_eq!(on_c.next().await.id, second);
    for node in [a, b, c] {
        node.stop().await;
    }
}

/// Concurrent publishes on one node share their round trips to Redis, yet every acknowledged
/// event reaches a stream on the other node once, in id order; each publisher's events keep
/// the order it sent them in, and a batch's events stay together.
#[tokio::test]
async fn grouped_publishes_keep_order() {
    const PUBLISHERS: usize = 16;
    const EACH: usize = 20;
    const BATCH: usize = 50;
    let redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let b = start(&["--redis-url", &redis.url()]).await;
    let mut on_b = b.subscribe("user=amy", None).await.welcomed().await;
    let publisher = |p: usize| {
        let a = &a;
        async move {
            let mut ids = Vec::new();
            for n in 0..EACH {
                ids.push(a.publish_id(json!({"to": "amy", "data": format!("{p}/{n}")})).await);
            }
            ids
        }
    };
    let batch = async {
        let events: Vec<_> = (0..BATCH).map(|n| json!({"to": "amy", "data": format!("batch/{n}")})).collect();
        let (status, answers) = a.publish(json!(events)).await;
        assert_eq!(status, 202);
        answers.as_array().unwrap().iter().map(|answer| answer["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (acknowledged, batch_ids) = tokio::join!(futures::future::join_all((0..PUBLISHERS).map(publisher)), batch);
    let total = PUBLISHERS * EACH + BATCH;
    let events = on_b.take(total).await;
    let ids: Vec<(u64, u64)> = events.iter().map(|e| id_parts(&e.id)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "delivered in id order, none twice");
    for (p, sent) in acknowledged.iter().enumerate() {
        let delivered: Vec<&str> =
            events.iter().filter(|e| e.data.starts_with(&format!("{p}/"))).map(|e| e.id.as_str()).collect();
        assert_eq!(delivered, sent.iter().map(String::as_str).collect::<Vec<_>>(), "publisher {p}");
        let data: Vec<String> =
            events.iter().filter(|e| e.data.starts_with(&format!("{p}/"))).map(|e| e.data.clone()).collect();
        assert_eq!(data, (0..EACH).map(|n| format!("{p}/{n}")).collect::<Vec<_>>());
    }
    let first = events.iter().position(|e| e.data == "batch/0").unwrap();
    let together: Vec<&str> = events[first..first + BATCH].iter().map(|e| e.id.as_str()).collect();
    assert_eq!(together, batch_ids.iter().map(String::as_str).collect::<Vec<_>>());
    on_b.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
    b.stop().await;
}

/// A client that reconnects to another node replays from the shared history, exactly.
#[tokio::test]
async fn replay_across_nodes() {
    let redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let seen = a.publish_id(json!({"to": "amy", "data": "seen"})).await;
    let missed = a.publish_id(json!({"to": "amy", "data": "missed"})).await;
    // A node started later loads the history too.
    let b = start(&["--redis-url", &redis.url()]).await;
    let mut on_b = b.subscribe("user=amy", Some(&seen)).await.welcomed().await;
    let event = on_b.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (missed.as_str(), "missed"));
    assert!(!on_b.raw().contains("event: gap"));
    a.stop().await;
    b.stop().await;
}

/// A node started later loads the history page by page (1,000 entries a page; a publish
/// answered before the next is sent is an entry of its own, a batch one entry), all of it in
/// order; one started with a smaller `--history-bytes` loads only the newest events that fit
/// (2 of about 1 KB in 3,000 bytes, from the middle of a batch): an id before them is a gap,
/// the newest left unread exact.
#[tokio::test]
async fn a_node_loads_only_what_its_history_keeps() {
    let redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let mut ids = Vec::new();
    for i in 0..1_000 {
        ids.push(a.publish_id(json!({"to": "amy", "data": i.to_string()})).await);
    }
    for batch in 0..2 {
        let events: Vec<_> = (batch * 250..(batch + 1) * 250)
            .map(|i| json!({"to": "amy", "data": if i < 490 { i.to_string() } else { format!("{i:0>1000}") }}))
            .collect();
        let (status, answers) = a.publish(json!(events)).await;
        assert_eq!(status, 202);
        ids.extend(answers.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
    }
    let n = ids.len();
    let whole = start(&["--redis-url", &redis.url()]).await;
    let mut all = whole.subscribe("user=amy", Some(&ids[0])).await.welcomed().await;
    let replay: Vec<_> = all.take(n - 1).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replay, ids[1..]);
    whole.stop().await;

    let b = start(&["--redis-url", &redis.url(), "--history-bytes", "3000"]).await;
    let mut amy = b.subscribe("user=amy", Some(&ids[n - 4])).await.welcomed().await;
    let gap: serde_json::Value = serde_json::from_str(&amy.next().await.data).unwrap();
    assert_eq!(gap, json!({"lastEventId": ids[n - 4], "earliest": ids[n - 2]}));
    let kept: Vec<_> = amy.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(kept, ids[n - 2..]);
    let mut exact = b.subscribe("user=amy", Some(&ids[n - 3])).await.welcomed().await;
    assert_eq!(exact.next().await.id, ids[n - 2]);
    a.stop().await;
    b.stop().await;
}

/// Redis stops: streams stay open, publishing answers 503 with the JSON error, /healthz says
/// so; Redis returns: the node resumes without a restart, nothing lost or doubled.
#[tokio::test]
async fn redis_outage_and_return() {
    let mut redis = RedisServer::start().await;
    let node = start(&["--redis-url", &redis.url(), "--keep-alive", "200ms"]).await;
    let mut amy = node.subscribe("user=amy", None).await.welcomed().await;
    let before = node.publish_id(json!({"to": "amy", "data": "before"})).await;
    assert_eq!(amy.next().await.id, before);

    redis.stop();
    let (status, error) = node.publish(json!({"to": "amy", "data": "refused"})).await;
    assert_eq!(status, 503, "{error}");
    assert!(error["error"].as_str().unwrap().contains("unavailable"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while node.get_json("/healthz").await.0 != 503 {
        assert!(tokio::time::Instant::now() < deadline, "/healthz never reported the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!amy.ends_within(Duration::from_millis(500)).await, "streams stay open");

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    let after = loop {
        let (status, ack) = node.publish(json!({"to": "amy", "data": "after"})).await;
        if status == 202 {
            break ack["id"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "publishing never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let event = amy.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (after.as_str(), "after"), "not doubled, not lost");
    assert_eq!(node.get_json("/healthz").await.0, 200);
    node.stop().await;
}

/// A node is killed: its client reconnects to another node with Last-Event-ID and misses
/// nothing.
#[tokio::test]
async fn killed_node_clients_resume_elsewhere() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let (doomed, doomed_base, _) = spawn(&["--redis-url", &url]).await;
    let survivor = start(&["--redis-url", &url]).await;
    let mut amy = remote(&doomed_base).subscribe("user=amy", None).await.welcomed().await;
    let seen = survivor.publish_id(json!({"to": "amy", "data": "seen"})).await;
    assert_eq!(amy.next().await.id, seen);

    signal(&doomed, "KILL");
    assert!(amy.ends_within(PATIENCE).await);
    let missed = survivor.publish_id(json!({"to": "amy", "data": "missed"})).await;
    let mut again = survivor.subscribe("user=amy", Some(&seen)).await.welcomed().await;
    let event = again.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (missed.as_str(), "missed"));
    survivor.stop().await;
}

/// While Redis is away, a client is told only that the store is unavailable (503, for one
/// event and for each element of a batch) and `/healthz` only that it is degraded; Redis's own
/// error text goes to the log.
#[tokio::test]
async fn an_outage_is_detailed_in_the_log_only() {
    let mut redis = RedisServer::start().await;
    let (mut child, base, mut logs) = spawn(&["--redis-url", &redis.url()]).await;
    let node = remote(&base);
    node.publish_id(json!({"to": "amy", "data": "before"})).await;
    redis.stop();

    let generic = json!({"error": "the event store is unavailable; retry later"});
    let (status, error) = node.publish(json!({"to": "amy", "data": "refused"})).await;
    assert_eq!((status, &error), (503, &generic));
    let (status, answers) = node.publish(json!([{"to": "amy", "data": 1}, {"to": "bob", "data": 2}])).await;
    assert_eq!(status, 202, "{answers}");
    for answer in answers.as_array().unwrap() {
        assert_eq!((&answer["status"], &answer["error"]), (&json!(503), &generic["error"]), "{answers}");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, health) = node.get_json("/healthz").await;
        if status == 503 {
            assert_eq!(health, json!({"status": "degraded"}));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/healthz never reported the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let cause = loop {
        let line = tokio::time::timeout_at(deadline, logs.recv()).await.expect("the refusal is logged").unwrap();
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        if line["message"] == "a publish was not stored" {
            break line["cause"].as_str().unwrap_or_default().to_owned();
        }
    };
    assert!(cause.contains("Redis"), "the log has the detail: {cause}");
    child.kill().await.unwrap();
}
