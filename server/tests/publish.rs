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
        (r#"{"to": 7, "data": 1}"#, "`to` must be"),
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
