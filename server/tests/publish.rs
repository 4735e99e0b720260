//! `POST /api/events`: what is accepted, how data reaches the client, and every refusal.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use serde_json::{json, Value};

/// 202 with the id and how many streams were reached; the subscriber gets the event with it.
#[tokio::test]
async fn accepted_events_reach_their_user() {
    let hub = start(&[]).await;
    let mut alice = hub.subscribe("user=alice", None).await.welcomed().await;
    let (status, ack) =
        hub.publish(json!({"to": "alice", "event": "order", "data": {"n": 1, "a": [true, null]}})).await;
    assert_eq!(status, 202);
    assert_eq!(ack["connections"], 1);
    let event = alice.next().await;
    assert_eq!(event.id, ack["id"].as_str().unwrap());
    assert_eq!(event.event, "order");
    assert_eq!(event.data, r#"{"n":1,"a":[true,null]}"#, "non-string data is sent compact, in order");
    hub.stop().await;
}

/// String data comes back as the same string: line ends as LF, blank lines and a trailing
/// newline kept, `""` as an empty event.
#[tokio::test]
async fn string_data_round_trips() {
    let hub = start(&[]).await;
    let mut a = hub.subscribe("user=a", None).await.welcomed().await;
    let cases = [
        ("one line", "one line"),
        ("two\nlines", "two\nlines"),
        ("blank\n\nline", "blank\n\nline"),
        ("trailing\n", "trailing\n"),
        ("cr\rcrlf\r\nend", "cr\ncrlf\nend"),
        ("", ""),
        ("\n", "\n"),
        ("  spaced  ", "  spaced  "),
        (": not a comment", ": not a comment"),
    ];
    for (sent, _) in cases {
        hub.publish_id(json!({"to": "a", "data": sent})).await;
    }
    for (sent, expected) in cases {
        assert_eq!(a.next().await.data, expected, "sent {sent:?}");
    }
    hub.stop().await;
}

/// CR, LF and NUL in any position never create a field or an event the publisher did not ask
/// for: names with them are refused, data with them arrives as data.
#[tokio::test]
async fn hostile_strings_cannot_forge_fields() {
    let hub = start(&[]).await;
    let mut a = hub.subscribe("user=a", None).await.welcomed().await;
    let hostile = [
        "\r\nevent: forged\r\ndata: x\r\n\r\n",
        "\n\nid: 999-0\nevent: forged\n\n",
        "\rretry: 1\r\r",
        "x\0\nid: 1-0\0",
        "\u{feff}data: bom",
        "end\r",
    ];
    for text in hostile {
        for body in [
            json!({"to": text, "data": "x"}),
            json!({"to": ["a", text], "data": "x"}),
            json!({"to": "a", "event": text, "data": "x"}),
            json!({"to": "a", "event": format!("ok{text}"), "data": "x"}),
        ] {
            let (status, answer) = hub.publish(body.clone()).await;
            if text.chars().any(char::is_control) {
                assert_eq!(status, 400, "{body}: {answer}");
            } else {
                assert_eq!(status, 202, "{body}: {answer}");
                let to_a = body["to"] == "a" || body["to"].as_array().is_some_and(|to| to.contains(&json!("a")));
                if to_a {
                    assert_eq!(a.next().await.event, body["event"].as_str().unwrap_or("message"));
                }
            }
        }
        let id = hub.publish_id(json!({"to": "a", "data": text})).await;
        let event = a.next().await;
        assert_eq!(event.event, "message", "{text:?}");
        assert_eq!(event.id, id, "{text:?}");
        assert_eq!(event.data, text.replace("\r\n", "\n").replace('\r', "\n"), "{text:?}");
    }
    let marker = hub.publish_id(json!({"to": "a", "data": "marker"})).await;
    let last = a.next().await;
    assert_eq!(last.id, marker, "no extra event was created");
    assert!(!a.raw().contains("\nretry: 1"), "no retry field was forged");
    hub.stop().await;
}

/// Each malformed body gets 400 with a JSON error saying what is wrong.
#[tokio::test]
async fn bad_bodies_get_400() {
    let hub = start(&[]).await;
    let cases: [(&str, &str); 10] = [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        (r#"{"data": 1}"#, "missing field `to`"),
        (r#"{"to": "", "data": 1}"#, "empty"),
        (r#"{"to": [], "data": 1}"#, "at least one"),
        (r#"{"to": 7, "data": 1}"#, "expected `to` to be a user name"),
        (r#"{"to": "a", "event": " x", "data": 1}"#, "whitespace"),
        (r#"{"to": "a", "event": "", "data": 1}"#, "empty"),
        (r#"{"to": "a"}"#, "missing field `data`"),
        (r#""just a string""#, "JSON object"),
    ];
    for (body, expected) in cases {
        let response = hub
            .client
            .post(hub.url("/api/events"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(expected), "{body}: {error}");
    }
    hub.stop().await;
}

/// Data over `--max-data` (as sent) gets 413; a body that is not JSON gets 415.
#[tokio::test]
async fn too_large_and_not_json() {
    let hub = start(&["--max-data", "100"]).await;
    assert_eq!(hub.publish(json!({"to": "a", "data": "x".repeat(100)})).await.0, 202);
    let (status, error) = hub.publish(json!({"to": "a", "data": "x".repeat(101)})).await;
    assert_eq!(status, 413);
    assert!(error["error"].as_str().unwrap().contains("--max-data"));
    let (status, _) = hub.publish(json!({"to": "a", "data": vec![1; 60]})).await;
    assert_eq!(status, 413, "JSON data is measured as sent, compact");
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = hub.client.post(hub.url("/api/events")).body(r#"{"to":"a","data":1}"#);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    let ok = hub
        .client
        .post(hub.url("/api/events"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"to":"a","data":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    hub.stop().await;
}

/// A CORS preflight for a publish allows `Authorization` and `Content-Type`.
#[tokio::test]
async fn preflight_allows_auth_and_content_type() {
    let hub = start(&[]).await;
    let response = hub
        .client
        .request(reqwest::Method::OPTIONS, hub.url("/api/events"))
        .header("Origin", "http://page.test")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let allowed = response.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    hub.stop().await;
}

/// A batch (JSON array) is answered element by element, in order; bad elements do not stop
/// good ones.
#[tokio::test]
async fn batches_are_answered_in_order() {
    let hub = start(&[]).await;
    let mut a = hub.subscribe("user=a", None).await.welcomed().await;
    let (status, answers) = hub
        .publish(json!([
            {"to": "a", "data": "first"},
            {"to": "", "data": "bad"},
            {"to": "a", "data": "second"}
        ]))
        .await;
    assert_eq!(status, 202);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers[0]["id"].is_string());
    assert_eq!(answers[1]["status"], 400);
    assert!(answers[1]["error"].is_string());
    assert_eq!(a.next().await.data, "first");
    assert_eq!(a.next().await.data, "second");
    assert_eq!(hub.publish(json!([])).await.0, 400);
    hub.stop().await;
}

/// Events for a user who is not connected are kept and replayed.
#[tokio::test]
async fn events_for_absent_users_are_kept() {
    let hub = start(&[]).await;
    let (_, ack) = hub.publish(json!({"to": "later", "data": "waiting"})).await;
    assert_eq!(ack["connections"], 0);
    let mut later = hub.subscribe("user=later", Some("garbage")).await.welcomed().await;
    assert_eq!(later.next().await.event, "gap");
    assert_eq!(later.next().await.data, "waiting");
    hub.stop().await;
}

/// Sends `request` as raw bytes and reads the answer until the hub closes the connection,
/// failing the test if that takes longer than `within`.
async fn exchange(hub: &common::Hub, request: &str, within: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(hub.base.trim_start_matches("http://")).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer and close within {within:?}: {:?}", String::from_utf8_lossy(&answer));
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON error at the end of a raw answer.
fn error_of(answer: &str) -> String {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let error: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    error["error"].as_str().unwrap().to_owned()
}

/// With auth on, a publish without a token is refused before its body is read: one that
/// declares 10 MB and never sends them gets its 401 at once, and the connection is closed.
#[tokio::test]
async fn unauthenticated_publishes_are_refused_before_the_body() {
    let hub = start(&["--jwt-secret", "a-test-secret-of-at-least-32-bytes!"]).await;
    let head = "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let answer = exchange(&hub, &format!("{head}Content-Length: 10000000\r\n\r\n{{\"to\":"), common::PATIENCE).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer:?}");
    assert!(!error_of(&answer).is_empty());
    let token = "Authorization: Bearer not-a-token\r\n";
    let answer = exchange(&hub, &format!("{head}{token}Content-Length: 10000000\r\n\r\n"), common::PATIENCE).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "a bad token too: {answer:?}");
    hub.stop().await;
}

/// A body declared larger than the limit gets 413 at once, without a byte of it read.
#[tokio::test]
async fn bodies_declared_too_large_are_refused_at_once() {
    let hub = start(&[]).await;
    let request = "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                   Content-Length: 100000000\r\n\r\n";
    let answer = exchange(&hub, request, common::PATIENCE).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(error_of(&answer).contains("over 16777216 bytes"), "{answer:?}");
    hub.stop().await;
}

/// A body that stalls is answered 408 with a JSON error once 30 s have passed (paused time),
/// and its connection is closed; the hub goes on serving.
#[tokio::test(start_paused = true)]
async fn stalled_bodies_time_out() {
    let hub = start(&[]).await;
    let started = tokio::time::Instant::now();
    let request = "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                   Content-Length: 100\r\n\r\n{\"to\": \"amy\", ";
    let answer = exchange(&hub, request, std::time::Duration::from_secs(120)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer:?}");
    assert!(error_of(&answer).contains("did not arrive within 30s"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(hub.publish(json!({"to": "amy", "data": 1})).await.0, 202);
    hub.stop().await;
}

/// A `to` list of more than 10,000 names is refused with 400 naming the limit; one of exactly
/// 10,000 (here with duplicates) is accepted and reaches each user once.
#[tokio::test]
async fn to_lists_are_capped() {
    let hub = start(&[]).await;
    let mut amy = hub.subscribe("user=amy", None).await.welcomed().await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("user-{i}")).collect();
    let (status, error) = hub.publish(json!({"to": too_many, "data": "x"})).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("the limit is 10000"), "{error}");
    let mut at_limit: Vec<String> = (0..5_000).map(|i| format!("user-{i}")).collect();
    at_limit.extend(at_limit.clone());
    at_limit[7_000] = "amy".into();
    at_limit[9_000] = "amy".into();
    let (status, ack) = hub.publish(json!({"to": at_limit, "data": "once"})).await;
    assert_eq!((status, &ack["connections"]), (202, &json!(1)), "{ack}");
    assert_eq!(amy.next().await.data, "once");
    let marker = hub.publish_id(json!({"to": "amy", "data": "marker"})).await;
    assert_eq!(amy.next().await.id, marker, "delivered once");
    hub.stop().await;
}

/// A batch far past the size parsed inline (parsed on a blocking thread) is answered and
/// delivered whole, in order.
#[tokio::test]
async fn large_batches_are_published_whole() {
    let hub = start(&[]).await;
    let mut amy = hub.subscribe("user=amy", None).await.welcomed().await;
    let batch: Vec<Value> = (0..2_000).map(|i| json!({"to": "amy", "data": format!("{i:0>100}")})).collect();
    assert!(serde_json::to_vec(&batch).unwrap().len() > 200_000);
    let (status, answers) = hub.publish(json!(batch)).await;
    assert_eq!(status, 202);
    assert_eq!(answers.as_array().unwrap().iter().filter(|a| a["id"].is_string()).count(), 2_000);
    for i in 0..2_000 {
        assert_eq!(amy.next().await.data, format!("{i:0>100}"));
    }
    hub.stop().await;
}
