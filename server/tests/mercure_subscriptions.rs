//! Mercure's active subscriptions (the `subscriptions` directive) over real HTTP on loopback:
//! the private announcements when a subscription opens and ends, the JSON-LD web API with its
//! authorization, `lastEventID` and `ETag`, and the same registry on every node of a cluster.
#![allow(clippy::unwrap_used)]

mod common;

use common::mercure::{hub, open, publish, sign, wait_streams, SUBSCRIBER_KEY};
use common::stores::RedisServer;
use common::{Hub, PATIENCE};
use serde_json::{json, Value};
use std::time::Duration;

/// What a watcher of subscriptions subscribes to, and may read the API with.
const EVERY_SUBSCRIPTION: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";
const BOOKS: &str = "https://example.com/books/{id}";

fn watcher_token() -> String {
    sign(SUBSCRIBER_KEY, json!({"mercure": {"subscribe": [EVERY_SUBSCRIPTION]}}))
}

/// RFC 6570's expansion of a variable: all but the unreserved characters percent-encoded.
fn percent(s: &str) -> String {
    const EXPANDED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, EXPANDED).to_string()
}

/// `GET path` with the token: status, headers, JSON body (`Null` when there is none).
async fn get(
    hub: &Hub,
    path: &str,
    token: Option<&str>,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = hub.client.get(hub.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The subscriptions a listing holds for `topic`.
fn listed_for(listing: &Value, topic: &str) -> Vec<Value> {
    listing["subscriptions"].as_array().unwrap().iter().filter(|d| d["topic"] == topic).cloned().collect()
}

/// Waits until the listing at `path` on `hub` satisfies `check`.
async fn wait_listing(hub: &Hub, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, _, listing) = get(hub, "/.well-known/mercure/subscriptions", Some(&watcher_token()), None).await;
        assert_eq!(status, 200, "{listing}");
        if check(&listing) {
            return listing;
        }
        assert!(tokio::time::Instant::now() < deadline, "the listing never came right: {listing}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscription is announced, privately, when it opens (with its token's payload) and when
/// it ends; the API lists it, by topic and alone, as JSON-LD with `lastEventID` and an `ETag`
/// that answers 304 while nothing changed; a missing token is a 401, one whose
/// `mercure.subscribe` does not match the URL a 403.
#[tokio::test]
async fn subscriptions_are_announced_and_listed() {
    let hub = hub("anonymous\nsubscriptions", &[]).await;
    let mut watcher =
        open(&hub, &format!("topic={}&authorization={}", percent(EVERY_SUBSCRIPTION), watcher_token()), &[]).await;
    let mut anonymous = open(&hub, &format!("topic={}", percent(EVERY_SUBSCRIPTION)), &[]).await;
    wait_streams(&hub, 3).await; // the two, and the hub's own registry
                                 // The watcher sees its own opening and the anonymous one's; the anonymous one, none.
    assert_eq!(watcher.take(2).await.len(), 2);
    let reader = sign(SUBSCRIBER_KEY, json!({"mercure": {"subscribe": [BOOKS], "payload": {"user": "amy"}}}));
    let books = open(&hub, &format!("topic={}&authorization={reader}", percent(BOOKS)), &[]).await;

    let opened: Value = serde_json::from_str(&watcher.next().await.data).unwrap();
    assert_eq!(opened["@context"], "https://mercure.rocks/");
    assert_eq!(
        (opened["type"].as_str(), opened["topic"].as_str(), opened["active"].as_bool()),
        (Some("Subscription"), Some(BOOKS), Some(true))
    );
    assert_eq!(opened["payload"], json!({"user": "amy"}));
    let subscriber = opened["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    let one = format!("/.well-known/mercure/subscriptions/{}/{}", percent(BOOKS), percent(&subscriber));
    assert_eq!(opened["id"], one);

    let (status, headers, listing) =
        get(&hub, "/.well-known/mercure/subscriptions", Some(&watcher_token()), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/ld+json");
    assert_eq!(
        (listing["type"].as_str(), listing["id"].as_str()),
        (Some("Subscriptions"), Some("/.well-known/mercure/subscriptions"))
    );
    assert_eq!(listed_for(&listing, BOOKS).len(), 1, "{listing}");
    assert_eq!(listed_for(&listing, EVERY_SUBSCRIPTION).len(), 2, "the watcher and the anonymous one: {listing}");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", listing["lastEventID"].as_str().unwrap()));
    let (status, _, _) = get(&hub, "/.well-known/mercure/subscriptions", Some(&watcher_token()), Some(&etag)).await;
    assert_eq!(status, 304, "nothing changed since that ETag");

    let (status, _, by_topic) =
        get(&hub, &format!("/.well-known/mercure/subscriptions/{}", percent(BOOKS)), Some(&watcher_token()), None)
            .await;
    assert_eq!(status, 200);
    assert_eq!(by_topic["subscriptions"].as_array().unwrap().len(), 1, "{by_topic}");
    let (status, _, alone) = get(&hub, &one, Some(&watcher_token()), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (alone["@context"].as_str(), alone["subscriber"].as_str()),
        (Some("https://mercure.rocks/"), Some(subscriber.as_str()))
    );
    assert!(alone["lastEventID"].is_string(), "{alone}");
    let unknown = format!("/.well-known/mercure/subscriptions/{}/urn%3Auuid%3Anobody", percent(BOOKS));
    assert_eq!(get(&hub, &unknown, Some(&watcher_token()), None).await.0, 404);
    assert_eq!(get(&hub, &one, None, None).await.0, 401);
    let elsewhere = sign(SUBSCRIBER_KEY, json!({"mercure": {"subscribe": ["/other"]}}));
    let (status, _, refusal) = get(&hub, &one, Some(&elsewhere), None).await;
    assert_eq!(status, 403);
    assert!(refusal["error"].as_str().unwrap().contains("mercure.subscribe"), "{refusal}");

    drop(books);
    let closed: Value = serde_json::from_str(&watcher.next().await.data).unwrap();
    assert_eq!((closed["id"].as_str(), closed["active"].as_bool()), (Some(one.as_str()), Some(false)));
    wait_listing(&hub, |listing| listed_for(listing, BOOKS).is_empty()).await;
    let (status, _, _) = get(&hub, "/.well-known/mercure/subscriptions", Some(&watcher_token()), Some(&etag)).await;
    assert_eq!(status, 200, "the listing changed: the old ETag is stale");
    anonymous.expect_silence(Duration::from_millis(300)).await;
    hub.stop().await;
}

/// In a cluster, a subscription opened on one node is listed by every node, one started later
/// included (it reads the announcements the history holds), and its end is seen by all.
#[tokio::test]
async fn every_node_lists_every_subscription() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = hub("anonymous\nsubscriptions", &["--redis-url", &url]).await;
    let b = hub("anonymous\nsubscriptions", &["--redis-url", &url]).await;
    let stream = open(&a, &format!("topic={}", percent(BOOKS)), &[]).await;
    assert_eq!(stream.status, 200);
    wait_listing(&b, |listing| listed_for(listing, BOOKS).len() == 1).await;
    let c = hub("anonymous\nsubscriptions", &["--redis-url", &url]).await;
    let listing = wait_listing(&c, |listing| listed_for(listing, BOOKS).len() == 1).await;
    assert_eq!(listed_for(&listing, BOOKS)[0]["active"], true);

    drop(stream);
    for node in [&a, &b, &c] {
        wait_listing(node, |listing| listed_for(listing, BOOKS).is_empty()).await;
    }
    for node in [a, b, c] {
        node.stop().await;
    }
}

/// Without the directive no subscription is announced and the API says how to turn it on; a
/// hub without Mercure answers the same paths with its own JSON 404.
#[tokio::test]
async fn off_unless_asked_for() {
    let hub = hub("anonymous", &[]).await;
    let mut watcher =
        open(&hub, &format!("topic={}&authorization={}", percent(EVERY_SUBSCRIPTION), watcher_token()), &[]).await;
    let _books = open(&hub, &format!("topic={}", percent(BOOKS)), &[]).await;
    wait_streams(&hub, 2).await;
    publish(&hub, &[("topic", "/.well-known/mercure/subscriptions/x/y"), ("data", "{}"), ("private", "")]).await;
    assert_eq!(watcher.next().await.data, "{}", "only the published update, no announcement before it");
    let (status, _, body) = get(&hub, "/.well-known/mercure/subscriptions", Some(&watcher_token()), None).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("subscriptions"), "{body}");
    hub.stop().await;

    let plain = common::start(&[]).await;
    let (status, body) = plain.get_json("/.well-known/mercure/subscriptions").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("MERCURE_PUBLISHER_JWT_KEY"), "{body}");
    plain.stop().await;
}
