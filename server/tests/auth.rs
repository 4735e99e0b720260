//! Authentication: tokens by query or header, one-time tickets, publisher tokens, expiry.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Hub};
use serde_json::{json, Value};
use std::time::Duration;
use tidings::auth::{issue_token, unix_now, Claims, MAX_EXP};

const SECRET: &str = "integration-test-secret-32-bytes";

fn token(sub: Option<&str>, ttl_secs: i64, publish: bool) -> String {
    let exp = (unix_now() as i64 + ttl_secs) as u64;
    issue_token(SECRET, &Claims { sub: sub.map(Into::into), exp, publish: publish.into(), subscribe: None }).unwrap()
}

async fn secured(extra: &[&str]) -> Hub {
    let mut args = vec!["--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    start(&args).await
}

/// GET a stream URL, returning the status and the JSON error (or Null for a stream).
async fn open(hub: &Hub, query: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = hub.client.get(hub.url(&format!("/stream-sse?{query}")));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        return (status, Value::Null);
    }
    assert_eq!(response.headers()["content-type"], "application/json", "errors come before any stream bytes");
    (status, response.json().await.unwrap())
}

/// A token by query or header opens the stream for its `sub`; every bad token is 401, a
/// differing `user` 403, each with the usual JSON error.
#[tokio::test]
async fn stream_tokens() {
    let hub = secured(&[]).await;
    let good = token(Some("amy"), 60, false);
    assert_eq!(open(&hub, &format!("token={good}"), None).await.0, 200);
    assert_eq!(open(&hub, &format!("user=amy&token={good}"), None).await.0, 200);
    assert_eq!(open(&hub, "user=amy", Some(&good)).await.0, 200);
    let mut stream = hub.subscribe(&format!("token={good}"), None).await;
    assert_eq!(stream.next().await.data, "amy", "the stream is for the token's sub");

    let other_secret = issue_token(
        "wrong",
        &Claims { sub: Some("amy".into()), exp: unix_now() + 60, publish: false.into(), subscribe: None },
    )
    .unwrap();
    let cases = [
        ("user=amy".to_owned(), None, 401),
        ("user=amy&token=garbage".to_owned(), None, 401),
        (format!("token={other_secret}"), None, 401),
        (format!("token={}", token(Some("amy"), -30, false)), None, 401),
        ("user=amy".to_owned(), Some("garbage".to_owned()), 401),
        (format!("user=bob&token={good}"), None, 403),
        ("user=bob".to_owned(), Some(good.clone()), 403),
    ];
    for (query, bearer, expected) in cases {
        let (status, error) = open(&hub, &query, bearer.as_deref()).await;
        assert_eq!(status, expected, "{query} {bearer:?}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{error}");
    }
    hub.stop().await;
}

/// `POST /api/tickets` with `token`: the status and the JSON answer.
async fn try_buy(hub: &Hub, token: &str) -> (u16, Value) {
    let response = hub.client.post(hub.url("/api/tickets")).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A ticket bought with `token`.
async fn buy(hub: &Hub, token: &str) -> String {
    let (status, answer) = try_buy(hub, token).await;
    assert_eq!(status, 200, "{answer}");
    answer["ticket"].as_str().unwrap().to_owned()
}

/// A ticket opens exactly one stream, for its user, within its lifetime; it is never a token,
/// and a token is never a ticket.
#[tokio::test]
async fn tickets_open_one_stream() {
    let hub = secured(&["--ticket-ttl", "1s"]).await;
    let amy = token(Some("amy"), 60, false);
    let buy = || buy(&hub, &amy);
    let ticket = buy().await;
    assert_eq!(open(&hub, &format!("ticket={ticket}&lastEventId=1-0"), None).await.0, 200);
    assert_eq!(open(&hub, &format!("ticket={ticket}"), None).await.0, 401, "reused");
    assert_eq!(open(&hub, "ticket=garbage", None).await.0, 401);
    let for_amy = buy().await;
    assert_eq!(open(&hub, &format!("user=bob&ticket={for_amy}"), None).await.0, 403);
    let as_token = buy().await;
    assert_eq!(open(&hub, &format!("token={as_token}"), None).await.0, 401, "a ticket is not a token");
    assert_eq!(open(&hub, &format!("ticket={amy}"), None).await.0, 401, "a token is not a ticket");
    let stale = buy().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(open(&hub, &format!("ticket={stale}"), None).await.0, 401, "stale");

    assert_eq!(hub.client.post(hub.url("/api/tickets")).send().await.unwrap().status(), 401);
    hub.stop().await;
}

/// Neither a HEAD request (405, `Allow: GET`) nor a ticket presented with another `user=` (403)
/// spends the ticket: it still opens its user's stream afterwards.
#[tokio::test]
async fn refused_requests_do_not_spend_a_ticket() {
    let hub = secured(&[]).await;
    let ticket = buy(&hub, &token(Some("amy"), 60, false)).await;
    let head = hub.client.head(hub.url(&format!("/stream-sse?ticket={ticket}"))).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "GET");
    assert_eq!(head.headers()["content-type"], "application/json");
    let (status, error) = open(&hub, &format!("user=bob&ticket={ticket}"), None).await;
    assert_eq!(status, 403, "{error}");
    let mut stream = hub.subscribe(&format!("user=amy&ticket={ticket}"), None).await;
    assert_eq!(stream.status, 200, "the ticket is still good");
    assert_eq!(stream.next().await.data, "amy");
    hub.stop().await;
}

/// One user at its cap of 16 unused tickets gets 429 JSON and cannot stop another user from
/// getting one; using a ticket makes room again.
#[tokio::test]
async fn one_user_cannot_take_every_ticket() {
    let hub = secured(&[]).await;
    let amy = token(Some("amy"), 60, false);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(buy(&hub, &amy).await);
    }
    let (status, error) = try_buy(&hub, &amy).await;
    assert_eq!(status, 429, "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("16")), "{error}");
    buy(&hub, &token(Some("bob"), 60, false)).await;
    assert_eq!(open(&hub, &format!("ticket={}", held[0]), None).await.0, 200);
    buy(&hub, &amy).await;
    hub.stop().await;
}

/// Publishing and listing users need a publisher token in the header.
#[tokio::test]
async fn publishing_needs_a_publisher() {
    let hub = secured(&[]).await;
    let body = json!({"to": "amy", "data": 1});
    let post = |bearer: Option<String>| {
        let mut request = hub.client.post(hub.url("/api/events")).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("garbage".into())).await.unwrap().status(), 401);
    let refused = post(Some(token(Some("amy"), 60, false))).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(post(Some(token(None, 60, true))).await.unwrap().status(), 202);

    assert_eq!(hub.get_json("/api/users").await.0, 401);
    let users = hub.client.get(hub.url("/api/users")).bearer_auth(token(None, 60, true)).send().await.unwrap();
    assert_eq!(users.status(), 200);
    assert_eq!(hub.get_json("/api/info").await.1["auth"], true);
    hub.stop().await;
}

/// Each user's token stream gets that user's events only.
#[tokio::test]
async fn token_streams_get_their_own_events() {
    let hub = secured(&[]).await;
    let publisher = token(None, 60, true);
    let mut amy = hub.subscribe(&format!("token={}", token(Some("amy"), 60, false)), None).await.welcomed().await;
    let mut bob = hub.subscribe(&format!("token={}", token(Some("bob"), 60, false)), None).await.welcomed().await;
    for (to, data) in [("bob", "for bob"), ("amy", "for amy")] {
        let response = hub
            .client
            .post(hub.url("/api/events"))
            .bearer_auth(&publisher)
            .json(&json!({"to": to, "data": data}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    assert_eq!(amy.next().await.data, "for amy");
    assert_eq!(bob.next().await.data, "for bob");
    hub.stop().await;
}

/// One rule for a new stream and an open one: a token is valid until `exp` + 5 s. Past that a
/// stream is refused; before it one opens, and it ends at that instant (not at `exp`).
#[tokio::test]
async fn streams_end_when_the_token_expires() {
    let hub = secured(&["--keep-alive", "200ms"]).await;
    // `exp` 5 s ago: the leeway is over, whatever fraction of a second it is now.
    let (status, error) = open(&hub, &format!("token={}", token(Some("amy"), -5, false)), None).await;
    assert_eq!(status, 401, "{error}");
    // `exp` 3 s ago: between 1 and 2 s of leeway are left, and the stream lives that long.
    let mut stream = hub.subscribe(&format!("token={}", token(Some("amy"), -3, false)), None).await.welcomed().await;
    assert!(!stream.ends_within(Duration::from_millis(900)).await, "open until exp + 5 s");
    assert!(stream.ends_within(Duration::from_millis(1_500)).await, "ended at exp + 5 s");
    hub.stop().await;
}

/// A validly signed token whose `exp` is absurd (2^63 and up) is 401 JSON for a stream and for
/// a ticket, never a panic; the latest `exp` accepted (the end of 9999) opens a stream.
#[tokio::test]
async fn absurd_expiry_is_refused() {
    let hub = secured(&[]).await;
    for exp in [1u64 << 63, u64::MAX] {
        let absurd =
            issue_token(SECRET, &Claims { sub: Some("amy".into()), exp, publish: true.into(), subscribe: None })
                .unwrap();
        let (status, error) = open(&hub, &format!("token={absurd}"), None).await;
        assert_eq!(status, 401, "{error}");
        assert!(error["error"].as_str().is_some_and(|e| e.contains("exp")), "{error}");
        let ticket = hub.client.post(hub.url("/api/tickets")).bearer_auth(&absurd).send().await.unwrap();
        assert_eq!(ticket.status(), 401);
        assert!(ticket.json::<Value>().await.unwrap()["error"].is_string());
    }
    let latest =
        issue_token(SECRET, &Claims { sub: Some("amy".into()), exp: MAX_EXP, publish: false.into(), subscribe: None })
            .unwrap();
    assert_eq!(open(&hub, &format!("token={latest}"), None).await.0, 200, "the latest exp accepted opens a stream");
    assert_eq!(hub.get_json("/healthz").await.0, 200);
    hub.stop().await;
}

/// With auth on, CORS allows only listed origins, never `null` unless listed, never credentials.
#[tokio::test]
async fn cors_with_auth() {
    let check = |hub: &Hub, origin: &'static str| {
        let request = hub.client.get(hub.url("/healthz")).header("Origin", origin).send();
        async move {
            let response = request.await.unwrap();
            assert!(response.headers().get("access-control-allow-credentials").is_none());
            response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let unlisted = secured(&[]).await;
    assert_eq!(check(&unlisted, "http://any.test").await, None);
    assert_eq!(check(&unlisted, "null").await, None);
    unlisted.stop().await;
    let listed = secured(&["--cors-origin", "http://good.test"]).await;
    assert_eq!(check(&listed, "http://good.test").await.as_deref(), Some("http://good.test"));
    assert_eq!(check(&listed, "null").await, None);
    listed.stop().await;
}

fn claims(sub: Option<&str>, publish: tidings::auth::PublishRight, subscribe: Option<&[&str]>) -> String {
    let claims = Claims {
        sub: sub.map(Into::into),
        exp: unix_now() + 600,
        publish,
        subscribe: subscribe.map(|s| s.iter().map(|&s| s.to_owned()).collect()),
    };
    issue_token(SECRET, &claims).unwrap()
}

/// `POST /api/events` with a bearer token; the status and the JSON answer.
async fn publish_as(hub: &Hub, token: &str, body: Value) -> (u16, Value) {
    let response = hub.client.post(hub.url("/api/events")).bearer_auth(token).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// A subscriber's `subscribe` claim bounds the topics its streams may ask for (403 naming the
/// refused one); without it, a token opens its own user's stream only. A ticket carries the
/// token's topic rights, and one refused for a topic stays unspent.
#[tokio::test]
async fn subscribe_claims_bound_topics() {
    let hub = secured(&[]).await;
    let plain = claims(Some("amy"), false.into(), None);
    assert_eq!(open(&hub, "topic=orders%2F1", Some(&plain)).await.0, 403);
    assert_eq!(open(&hub, "", Some(&plain)).await.0, 200, "its own stream");
    let orders = claims(Some("amy"), false.into(), Some(&["orders/{id}", "news"]));
    assert_eq!(open(&hub, "topic=orders%2F1&topic=news", Some(&orders)).await.0, 200);
    assert_eq!(open(&hub, "topic=orders%2F%7Bid%7D", Some(&orders)).await.0, 200, "the template it holds");
    let (status, error) = open(&hub, "topic=orders%2F1&topic=users%2F1", Some(&orders)).await;
    assert_eq!(status, 403);
    assert!(error["error"].as_str().unwrap().contains("users/1"), "{error}");
    assert_eq!(open(&hub, "topic=*", Some(&orders)).await.0, 403, "`*` is more than it holds");
    let everything = claims(Some("amy"), false.into(), Some(&["*"]));
    assert_eq!(open(&hub, "topic=*&topic=x%2F%7By%7D", Some(&everything)).await.0, 200);
    let broken = claims(Some("amy"), false.into(), Some(&["orders/{id"]));
    assert_eq!(open(&hub, "topic=x", Some(&broken)).await.0, 403);

    let ticket: Value =
        hub.client.post(hub.url("/api/tickets")).bearer_auth(&orders).send().await.unwrap().json().await.unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    assert_eq!(open(&hub, &format!("ticket={ticket}&topic=users%2F1"), None).await.0, 403);
    // The refusal left the ticket unspent.
    let mut stream = hub.subscribe(&format!("ticket={ticket}&topic=orders%2F7"), None).await.welcomed().await;
    let publisher = claims(None, true.into(), None);
    let (status, _) = publish_as(&hub, &publisher, json!({"topic": "orders/7", "data": "via ticket"})).await;
    assert_eq!(status, 202);
    assert_eq!(stream.next().await.data, "via ticket");
    hub.stop().await;
}

/// A `publish` claim of selectors allows exactly the topics they match, and no `to`; `true`
/// allows everything; either may list topics.
#[tokio::test]
async fn publish_claims_bound_topics() {
    let hub = secured(&[]).await;
    let orders = claims(None, tidings::auth::PublishRight::Topics(vec!["orders/{id}".into()]), None);
    assert_eq!(publish_as(&hub, &orders, json!({"topic": "orders/1", "data": 1})).await.0, 202);
    let (status, error) = publish_as(&hub, &orders, json!({"topic": ["orders/1", "users/1"], "data": 1})).await;
    assert_eq!(status, 403);
    assert!(error["error"].as_str().unwrap().contains("users/1"), "{error}");
    let (status, error) = publish_as(&hub, &orders, json!({"to": "amy", "topic": "orders/1", "data": 1})).await;
    assert_eq!(status, 403);
    assert!(error["error"].as_str().unwrap().contains("`to`"), "{error}");
    let (status, answers) =
        publish_as(&hub, &orders, json!([{"topic": "orders/2", "data": 1}, {"topic": "users/2", "data": 1}])).await;
    assert_eq!(status, 202);
    assert!(answers[0]["id"].is_string() && answers[1]["status"] == 403, "{answers}");
    let anything = claims(None, true.into(), None);
    assert_eq!(publish_as(&hub, &anything, json!({"to": "amy", "topic": "users/1", "data": 1})).await.0, 202);
    let listed = hub.client.get(hub.url("/api/topics")).bearer_auth(&orders).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let subscriber = claims(Some("amy"), false.into(), None);
    let refused = hub.client.get(hub.url("/api/topics")).bearer_auth(&subscriber).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    hub.stop().await;
}
