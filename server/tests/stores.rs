//! The same behaviour on every store: memory, file and Redis. Each test body runs three times,
//! once per back-end, against a real hub (and a real `redis-server`).
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::stores::Backend;
use common::{id_parts, Hub};
use serde_json::json;

/// Defines `mod $name { memory, file, redis }`, each running `$body` on a fresh store.
macro_rules! on_every_store {
    ($(#[doc = $doc:literal])* $name:ident, $args:expr, |$hub:ident| $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;
            async fn body($hub: &Hub) $body
            async fn run(kind: &str) {
                let backend = Backend::new(kind).await;
                let hub = backend.start($args).await;
                body(&hub).await;
                hub.stop().await;
            }
            #[tokio::test]
            async fn memory() { run("memory").await }
            #[tokio::test]
            async fn file() { run("file").await }
            #[tokio::test]
            async fn redis() { run("redis").await }
        }
    };
}

on_every_store!(
    /// Live events reach their user; broadcasts reach everyone.
    live_delivery, &[], |hub| {
        let mut amy = hub.subscribe("user=amy", None).await.welcomed().await;
        let mut bob = hub.subscribe("user=bob", None).await.welcomed().await;
        let id = hub.publish_id(json!({"to": "amy", "data": "hi amy"})).await;
        let all = hub.publish_id(json!({"to": "*", "event": "news", "data": {"n": 1}})).await;
        let got = amy.next().await;
        assert_eq!((got.id.as_str(), got.data.as_str()), (id.as_str(), "hi amy"));
        assert_eq!(amy.next().await.id, all);
        let news = bob.next().await;
        assert_eq!((news.id.as_str(), news.event.as_str(), news.data.as_str()), (all.as_str(), "news", r#"{"n":1}"#));
    }
);

on_every_store!(
    /// A reconnect with a last event id replays exactly the user's missed events, in order.
    exact_replay, &[], |hub| {
        let first = hub.publish_id(json!({"to": "amy", "data": "1"})).await;
        let second = hub.publish_id(json!({"to": "amy", "data": "2"})).await;
        hub.publish_id(json!({"to": "bob", "data": "not amy's"})).await;
        let third = hub.publish_id(json!({"to": ["amy", "bob"], "data": "3"})).await;
        let mut amy = hub.subscribe("user=amy", Some(&first)).await.welcomed().await;
        let replay = amy.take(2).await;
        assert_eq!([replay[0].id.as_str(), replay[1].id.as_str()], [second.as_str(), third.as_str()]);
        assert_eq!([replay[0].data.as_str(), replay[1].data.as_str()], ["2", "3"]);
    }
);

on_every_store!(
    /// Topics on every store: a topic stream gets its events live, and a reconnect replays
    /// exactly what it would have had live (users' events left out), each once.
    topic_delivery_and_replay, &[], |hub| {
        let order = "topic=https%3A%2F%2Fshop.example%2Forders%2F%7Bid%7D";
        let mut live = hub.subscribe(order, None).await.welcomed().await;
        let first = hub.publish_id(json!({"topic": "https://shop.example/orders/1", "data": "1"})).await;
        hub.publish_id(json!({"to": "amy", "data": "amy's"})).await;
        let second = hub.publish_id(json!({"topic": ["https://shop.example/orders/2", "x"], "to": "amy", "data": "2"})).await;
        hub.publish_id(json!({"topic": "https://shop.example/users/2", "data": "no"})).await;
        assert_eq!(live.take(2).await.into_iter().map(|e| e.id).collect::<Vec<_>>(), [first.clone(), second.clone()]);
        let mut again = hub.subscribe(order, Some(&first)).await.welcomed().await;
        let replay = again.next().await;
        assert_eq!((replay.id.as_str(), replay.data.as_str()), (second.as_str(), "2"));
        again.expect_silence(std::time::Duration::from_millis(200)).await;
    }
);

on_every_store!(
    /// A batch is stored in one go, in order: increasing ids, delivered and replayed in that
    /// order, refused elements skipped.
    batch_in_order, &[], |hub| {
        let mut amy = hub.subscribe("user=amy", None).await.welcomed().await;
        let mut batch: Vec<_> = (0..50).map(|i| json!({"to": "amy", "data": i})).collect();
        batch.insert(10, json!({"to": "", "data": "refused"}));
        let (status, answers) = hub.publish(json!(batch)).await;
        assert_eq!(status, 202);
        let answers = answers.as_array().unwrap();
        assert_eq!(answers[10]["status"], 400);
        let ids: Vec<&str> = answers.iter().filter_map(|a| a["id"].as_str()).collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.windows(2).all(|w| id_parts(w[0]) < id_parts(w[1])), "{ids:?}");
        let live = amy.take(50).await;
        assert_eq!(live.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ids);
        assert!(live.iter().enumerate().all(|(i, e)| e.data == i.to_string()));
        let mut again = hub.subscribe("user=amy", Some(ids[24])).await.welcomed().await;
        let replay = again.take(25).await;
        assert_eq!(replay.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), &ids[25..]);
    }
);

on_every_store!(
    /// Ids are `<millis>-<seq>` and strictly increase.
    ids_increase, &[], |hub| {
        let mut previous = (0, 0);
        for i in 0..100 {
            let id = hub.publish_id(json!({"to": "amy", "data": i})).await;
            assert!(id_parts(&id) > previous, "{id}");
            previous = id_parts(&id);
        }
    }
);

on_every_store!(
    /// The history keeps the newest `--history` events; an evicted id is a gap.
    retention_and_gaps, &["--history", "3"], |hub| {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(hub.publish_id(json!({"to": "amy", "data": i})).await);
        }
        let mut amy = hub.subscribe("user=amy", Some(&ids[0])).await.welcomed().await;
        let gap = amy.next().await;
        assert_eq!(gap.event, "gap");
        let notice: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(notice, json!({"lastEventId": ids[0], "earliest": ids[2]}));
        let replay = amy.take(3).await;
        let got: Vec<_> = replay.iter().map(|e| e.id.clone()).collect();
        assert_eq!(got, ids[2..]);
        // The newest evicted id is exact: nothing after it was lost.
        let mut exact = hub.subscribe("user=amy", Some(&ids[1])).await.welcomed().await;
        assert_eq!(exact.next().await.id, ids[2]);
    }
);

on_every_store!(
    /// `--history-bytes` bounds the history too: each of these events counts about 730 bytes
    /// (its 530-byte frame, its one recipient and the fixed overhead), so 2,500 bytes keep
    /// the newest 3; an id before them is a gap, and the replay is exactly those 3.
    retention_by_bytes, &["--history-bytes", "2500"], |hub| {
        let mut watcher = hub.subscribe("user=amy", None).await.welcomed().await;
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(hub.publish_id(json!({"to": "amy", "data": format!("{i:0>500}")})).await);
        }
        // Applied everywhere (Redis delivers through its follower) before the history is read.
        assert_eq!(watcher.take(6).await.last().unwrap().id, ids[5]);
        let mut amy = hub.subscribe("user=amy", Some(&ids[1])).await.welcomed().await;
        let gap = amy.next().await;
        assert_eq!(gap.event, "gap");
        let notice: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(notice, json!({"lastEventId": ids[1], "earliest": ids[3]}));
        let replay = amy.take(3).await;
        assert_eq!(replay.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids[3..]);
    }
);

on_every_store!(
    /// A replay many times `--max-queue` reaches a reader that reads it, whole and in order,
    /// with what is published while it replays after it, each event once.
    long_replay_in_parts, &["--max-queue", "65536"], |hub| {
        let mut watcher = hub.subscribe("user=amy", None).await.welcomed().await;
        let first = hub.publish_id(json!({"to": "amy", "data": "first"})).await;
        watcher.next().await;
        let mut ids = Vec::new();
        for round in 0..10 {
            let batch: Vec<_> = (0..30).map(|i| json!({"to": "amy", "data": format!("{round}-{i:0>1000}")})).collect();
            let (status, answers) = hub.publish(json!(batch)).await;
            assert_eq!(status, 202);
            ids.extend(answers.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
            // Applied (Redis delivers through its follower), and read so the live stream keeps up.
            assert_eq!(watcher.take(30).await.last().unwrap().id, *ids.last().unwrap());
        }
        let mut amy = hub.subscribe("user=amy", Some(&first)).await.welcomed().await;
        let mut got: Vec<String> = amy.take(10).await.into_iter().map(|e| e.id).collect();
        ids.push(hub.publish_id(json!({"to": "amy", "data": "during"})).await);
        got.extend(amy.take(291).await.into_iter().map(|e| e.id));
        assert_eq!(got, ids);
    }
);
