//! The Mercure protocol over real HTTP on loopback: form publishing, subscribing by selectors,
//! private updates and the `mercure` claims, the three places a token travels, reconnection
//! (`Last-Event-ID` header and queries, `earliest`, the answer header, `gap`), CORS with
//! credentials, expiry, one history shared with Tidings' own API, and a cluster on Redis.
#![allow(clippy::unwrap_used)]

mod common;

use common::mercure::{
    hub, open, post, publish, publisher, sign, subscriber, wait_streams, PUBLISHER_KEY, SUBSCRIBER_KEY,
};
use common::start;
use common::stores::RedisServer;
use serde_json::{json, Value};
use std::time::Duration;

/// A form publish answers 200 text/plain with a `urn:uuid:` id; an anonymous subscriber on a
/// template gets the update (multi-line data intact, as its first event: no welcome), and one
/// on another topic does not.
#[tokio::test]
async fn publish_and_subscribe() {
    let hub = hub("anonymous", &[]).await;
    let mut books = open(&hub, "topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D", &[]).await;
    let mut other = open(&hub, "topic=https%3A%2F%2Fexample.com%2Fother", &[]).await;
    assert_eq!(books.status, 200);
    assert_eq!(books.headers["content-type"], "text/event-stream");
    wait_streams(&hub, 2).await;

    let response = hub
        .client
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(publisher(&["https://example.com/books/{id}"]))
        .form(&[("topic", "https://example.com/books/1"), ("data", "line one\n\n  line + three")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let id = response.text().await.unwrap();
    assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");

    let event = books.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str(), event.id.as_str()),
        ("message", "line one\n\n  line + three", id.as_str())
    );
    other.expect_silence(Duration::from_millis(300)).await;
    hub.stop().await;
}

/// A publisher's `id`, `type` and `retry` are the SSE fields and the id is the answer; a
/// reused id is taken, and a resume from it starts after its oldest holder.
#[tokio::test]
async fn custom_ids_types_and_retry() {
    let hub = hub("anonymous", &[]).await;
    let mut stream = open(&hub, "topic=%2Fbooks%2F1", &[]).await;
    wait_streams(&hub, 1).await;
    let id = publish(
        &hub,
        &[("topic", "/books/1"), ("data", "a"), ("id", "urn:isbn:1"), ("type", "book"), ("retry", "1234")],
    )
    .await;
    assert_eq!(id, "urn:isbn:1");
    let event = stream.next().await;
    assert_eq!((event.event.as_str(), event.id.as_str()), ("book", "urn:isbn:1"));
    assert!(stream.raw().contains("retry: 1234\n"), "{}", stream.raw());

    let again = publish(&hub, &[("topic", "/books/1"), ("data", "b"), ("id", "urn:isbn:1")]).await;
    assert_eq!(again, "urn:isbn:1", "a reused id is taken, as Mercure takes it");
    assert_eq!(stream.next().await.data, "b");
    let mut resumed = open(&hub, "topic=%2Fbooks%2F1&lastEventID=urn%3Aisbn%3A1", &[]).await;
    assert_eq!(resumed.next().await.data, "b", "resumed after the oldest holder: nothing missed");
    for (field, value) in [("id", "#1"), ("id", "17-2"), ("type", "a\u{1}b"), ("retry", "soon")] {
        let (status, body) = post(&hub, Some(&publisher(&["*"])), &[("topic", "/books/1"), (field, value)]).await;
        assert_eq!(status, 400, "{field}={value:?}: {body}");
        assert!(body.contains(&format!("`{field}`")), "{body}");
    }
    stream.expect_silence(Duration::from_millis(300)).await;
    hub.stop().await;
}

/// Reconnection: the header wins over `lastEventID`, which wins over the older
/// `Last-Event-ID` query; the answer's `Last-Event-ID` says where the replay starts; `earliest`
/// replays all that is held; an unknown id is `earliest` in the answer and a `gap` event.
#[tokio::test]
async fn reconnection() {
    let hub = hub("anonymous", &[]).await;
    let mut ids = Vec::new();
    for data in ["1", "2", "3"] {
        ids.push(publish(&hub, &[("topic", "/t"), ("data", data)]).await);
    }
    let data = |events: Vec<common::Event>| events.into_iter().map(|e| e.data).collect::<Vec<_>>();

    let mut header = open(&hub, &format!("topic=%2Ft&lastEventID={}", ids[0]), &[("Last-Event-ID", &ids[1])]).await;
    assert_eq!(header.headers["last-event-id"], ids[1].as_str());
    assert_eq!(data(header.take(1).await), ["3"]);
    let mut query = open(&hub, &format!("topic=%2Ft&lastEventID={}&Last-Event-ID={}", ids[0], ids[1]), &[]).await;
    assert_eq!(query.headers["last-event-id"], ids[0].as_str());
    assert_eq!(data(query.take(2).await), ["2", "3"]);
    let mut older = open(&hub, &format!("topic=%2Ft&Last-Event-ID={}", ids[1]), &[]).await;
    assert_eq!(data(older.take(1).await), ["3"]);
    let mut earliest = open(&hub, "topic=%2Ft&lastEventID=earliest", &[]).await;
    assert_eq!(earliest.headers["last-event-id"], "earliest");
    assert_eq!(data(earliest.take(3).await), ["1", "2", "3"]);
    let mut unknown = open(&hub, "topic=%2Ft&lastEventID=urn%3Agone", &[]).await;
    assert_eq!(unknown.headers["last-event-id"], "earliest");
    let gap = unknown.next().await;
    assert_eq!(gap.event, "gap");
    assert_eq!(serde_json::from_str::<Value>(&gap.data).unwrap()["lastEventId"], "urn:gone");
    assert_eq!(data(unknown.take(3).await), ["1", "2", "3"]);
    let fresh = open(&hub, "topic=%2Ft", &[]).await;
    assert!(fresh.headers.get("last-event-id").is_none(), "no id asked, no answer header");
    hub.stop().await;
}

/// A private update reaches only subscribers whose `mercure.subscribe` matches one of its
/// topics (here an alternate one), whichever way their token came: header, query or cookie.
#[tokio::test]
async fn private_updates_need_the_subscribe_claim() {
    let hub = hub("anonymous", &[]).await;
    let token = subscriber(&["https://example.com/users/amy/{?topic}"]);
    let topic = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D";
    let mut anonymous = open(&hub, topic, &[]).await;
    let mut by_header = open(&hub, topic, &[("Authorization", &format!("Bearer {token}"))]).await;
    let mut by_query = open(&hub, &format!("{topic}&authorization={token}"), &[]).await;
    let mut by_cookie = open(&hub, topic, &[("Cookie", &format!("theme=dark; mercureAuthorization={token}"))]).await;
    let mut unrelated = open(&hub, topic, &[("Authorization", &format!("Bearer {}", subscriber(&["/other"])))]).await;
    wait_streams(&hub, 5).await;

    let alternate = "https://example.com/users/amy/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1";
    publish(
        &hub,
        &[("topic", "https://example.com/books/1"), ("topic", alternate), ("data", "secret"), ("private", "on")],
    )
    .await;
    publish(&hub, &[("topic", "https://example.com/books/1"), ("data", "public")]).await;
    for stream in [&mut by_header, &mut by_query, &mut by_cookie] {
        assert_eq!(stream.next().await.data, "secret");
        assert_eq!(stream.next().await.data, "public");
    }
    for stream in [&mut anonymous, &mut unrelated] {
        assert_eq!(stream.next().await.data, "public", "the private one never came first");
    }
    let mut replay = open(&hub, &format!("{topic}&lastEventID=earliest"), &[]).await;
    assert_eq!(replay.next().await.data, "public", "nor in an anonymous replay");
    hub.stop().await;
}

/// Who may do what: anonymous subscribers only when on; bad tokens 401; a publisher must be
/// allowed every topic of its update (403, and nothing is delivered); a cookie publishes only
/// from `publish_origins`; wrong bodies say what is wrong.
#[tokio::test]
async fn refusals() {
    let hub = hub("publish_origins https://app.example", &["--max-data", "100"]).await;
    let topic = "topic=%2Fbooks%2F1";
    assert_eq!(open(&hub, topic, &[]).await.status, 401, "anonymous is off by default");
    let forged = sign("another-key-of-at-least-32-bytes!!!", json!({"mercure": {"subscribe": ["*"]}}));
    assert_eq!(open(&hub, &format!("{topic}&authorization={forged}"), &[]).await.status, 401);
    let publisher_key_token = sign(PUBLISHER_KEY, json!({"mercure": {"subscribe": ["*"]}}));
    assert_eq!(
        open(&hub, &format!("{topic}&authorization={publisher_key_token}"), &[]).await.status,
        401,
        "separate keys"
    );
    let mut stream = open(&hub, topic, &[("Authorization", &format!("Bearer {}", subscriber(&["*"])))]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(open(&hub, "", &[("Authorization", &format!("Bearer {}", subscriber(&["*"])))]).await.status, 400);

    let form = [("topic", "/books/1"), ("data", "x")];
    assert_eq!(post(&hub, None, &form).await.0, 401);
    assert_eq!(post(&hub, Some(&forged), &form).await.0, 401);
    assert_eq!(post(&hub, Some(&sign(PUBLISHER_KEY, json!({"mercure": {"publish": []}}))), &form).await.0, 403);
    let (status, body) =
        post(&hub, Some(&publisher(&["/books/{id}"])), &[("topic", "/books/1"), ("topic", "/secret"), ("data", "x")])
            .await;
    assert_eq!(status, 403);
    assert!(body.contains("/secret"), "{body}");
    assert_eq!(post(&hub, Some(&publisher(&["*"])), &[("data", "x")]).await.0, 400, "no topic");
    assert_eq!(post(&hub, Some(&publisher(&["*"])), &[("topic", "/books/1"), ("data", &"x".repeat(101))]).await.0, 413);
    let json = hub
        .client
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(publisher(&["*"]))
        .json(&json!({"topic": "/books/1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);

    let cookie = format!("mercureAuthorization={}", publisher(&["*"]));
    let by_cookie = |origin: &'static str| {
        hub.client
            .post(hub.url("/.well-known/mercure"))
            .header("Cookie", cookie.clone())
            .header("Origin", origin)
            .form(&form)
            .send()
    };
    assert_eq!(by_cookie("https://evil.example").await.unwrap().status(), 403);
    let listed = by_cookie("https://app.example").await.unwrap();
    assert_eq!(listed.status(), 200);
    let id = listed.text().await.unwrap();
    let event = stream.next().await;
    assert_eq!((event.id, event.data), (id, "x".to_owned()), "only the allowed publish arrived");
    hub.stop().await;
}

/// CORS: a listed origin is answered with itself and credentials; another gets no grant.
#[tokio::test]
async fn cors_with_credentials_for_listed_origins() {
    let hub = hub("anonymous\ncors_origins https://app.example", &[]).await;
    let preflight = |origin: &'static str| {
        hub.client
            .request(reqwest::Method::OPTIONS, hub.url("/.well-known/mercure"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "last-event-id")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    hub.stop().await;
}

/// A stream ends when its token expires (`exp` plus the 5 s leeway).
#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let hub = hub("", &[]).await;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 4;
    let token = sign(SUBSCRIBER_KEY, json!({"exp": exp, "mercure": {"subscribe": ["*"]}}));
    let mut stream = open(&hub, &format!("topic=%2Ft&authorization={token}"), &[]).await;
    assert_eq!(stream.status, 200);
    assert!(stream.ends_within(Duration::from_secs(4)).await, "the stream outlived its token");
    hub.stop().await;
}

/// One hub, one history: a Tidings publish about a topic reaches a Mercure subscriber, and a
/// Mercure update reaches a Tidings topic stream, live and in a replay.
#[tokio::test]
async fn one_history_for_both_protocols() {
    let hub = hub("anonymous", &[]).await;
    let mut mercure = open(&hub, "topic=%2Forders%2F%7Bid%7D", &[]).await;
    let mut tidings = hub.subscribe("topic=%2Forders%2F%7Bid%7D", None).await.welcomed().await;
    wait_streams(&hub, 2).await;
    let from_tidings = hub.publish_id(json!({"topic": "/orders/1", "data": {"state": "paid"}})).await;
    let from_mercure = publish(&hub, &[("topic", "/orders/2"), ("data", "shipped")]).await;
    for stream in [&mut mercure, &mut tidings] {
        let events = stream.take(2).await;
        assert_eq!((events[0].id.as_str(), events[0].data.as_str()), (from_tidings.as_str(), r#"{"state":"paid"}"#));
        assert_eq!((events[1].id.as_str(), events[1].data.as_str()), (from_mercure.as_str(), "shipped"));
    }
    let mut replay = hub.subscribe("topic=%2Forders%2F2", Some(&from_tidings)).await.welcomed().await;
    assert_eq!(replay.next().await.id, from_mercure);
    hub.stop().await;
}

/// In a cluster, an update published on one node reaches subscribers of another, private
/// rules and custom ids included, and a replay on a third resumes after a custom id.
#[tokio::test]
async fn mercure_across_a_cluster() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = hub("anonymous", &["--redis-url", &url]).await;
    let b = hub("anonymous", &["--redis-url", &url]).await;
    let token = subscriber(&["/t"]);
    let mut anonymous = open(&b, "topic=%2Ft", &[]).await;
    let mut allowed = open(&b, &format!("topic=%2Ft&authorization={token}"), &[]).await;
    wait_streams(&b, 2).await;
    publish(&a, &[("topic", "/t"), ("data", "p"), ("private", ""), ("id", "urn:one")]).await;
    publish(&a, &[("topic", "/t"), ("data", "q"), ("id", "urn:two"), ("retry", "900")]).await;
    assert_eq!(allowed.next().await.id, "urn:one");
    assert_eq!(allowed.next().await.id, "urn:two");
    let event = anonymous.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), ("urn:two", "q"));
    assert!(anonymous.raw().contains("retry: 900\n"));

    let c = hub("anonymous", &["--redis-url", &url]).await;
    let mut replay = open(&c, &format!("topic=%2Ft&lastEventID=urn%3Aone&authorization={token}"), &[]).await;
    assert_eq!(replay.headers["last-event-id"], "urn:one");
    assert_eq!(replay.next().await.id, "urn:two");
    for hub in [a, b, c] {
        hub.stop().await;
    }
}

/// A hub without a Mercure key answers the path with a JSON 404 that says how to turn it on;
/// a bad key stops the start with a message naming it.
#[tokio::test]
async fn off_by_default_and_bad_keys_are_named() {
    let hub = start(&[]).await;
    let (status, body) = hub.get_json("/.well-known/mercure?topic=a").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("MERCURE_PUBLISHER_JWT_KEY"), "{body}");
    hub.stop().await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["--addr", "127.0.0.1:0", "--mercure-publisher-jwt-key", "short"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MERCURE_PUBLISHER_JWT_KEY") && stderr.contains("32 bytes"), "{stderr}");
}
