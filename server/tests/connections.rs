//! Who serves a cleartext connection. A stream asked for first on a connection is written to the
//! socket by the hub's listener; every other connection is hyper's. Both must look the same to a
//! client: these tests speak raw HTTP/1.1 (and HTTP/2) on loopback to check each path's bytes.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, PATIENCE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 client: a response head, then the body as it arrives.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(base: &str) -> Raw {
        Raw { tcp: TcpStream::connect(base.trim_start_matches("http://")).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, request: &str) {
        self.tcp.write_all(request.as_bytes()).await.unwrap();
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.tcp.read(&mut chunk)).await.expect("bytes in time").unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response head, lower-cased, without its blank line.
    async fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf.drain(..end + 4).collect()).unwrap();
                return head.trim_end().to_lowercase();
            }
            assert!(self.fill().await, "the connection ended inside a head");
        }
    }

    /// The next chunk of a chunked body (empty: the last chunk).
    async fn chunk(&mut self) -> String {
        loop {
            if let Some(line) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line]).unwrap(), 16).unwrap();
                if self.buf.len() >= line + 2 + size + 2 {
                    let chunk: Vec<u8> = self.buf.drain(..line + 2 + size + 2).collect();
                    assert_eq!(&chunk[line + 2 + size..], b"\r\n", "a chunk ends with CRLF");
                    return String::from_utf8(chunk[line + 2..line + 2 + size].to_vec()).unwrap();
                }
            }
            assert!(self.fill().await, "the connection ended inside a chunk");
        }
    }

    /// Reads chunks until their text contains `needle`; returns it all.
    async fn body_until(&mut self, needle: &str) -> String {
        let mut body = String::new();
        while !body.contains(needle) {
            body.push_str(&self.chunk().await);
        }
        body
    }

    /// A `content-length` body that follows `head`.
    async fn sized_body(&mut self, head: &str) -> String {
        let length: usize = header(head, "content-length").unwrap().parse().unwrap();
        while self.buf.len() < length {
            assert!(self.fill().await, "the connection ended inside a body");
        }
        String::from_utf8(self.buf.drain(..length).collect()).unwrap()
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

/// A stream that opens a connection is chunked HTTP/1.1 with the usual headers, carries its
/// events as they are published, and ends with the last chunk at shutdown.
#[tokio::test]
async fn a_stream_first_on_its_connection_is_written_by_the_listener() {
    let hub = start(&["--retry", "1000ms"]).await;
    let mut raw = Raw::connect(&hub.base).await;
    raw.send("GET /stream-sse?user=first HTTP/1.1\r\nHost: x\r\nOrigin: http://elsewhere.test\r\n\r\n").await;
    let head = raw.head().await;
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    assert_eq!(header(&head, "x-accel-buffering"), Some("no"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&head, "content-length"), None);
    let preamble = raw.body_until("data: first\n\n").await;
    assert!(preamble.starts_with("retry: 1000\n\nid: "), "{preamble}");
    assert!(preamble.ends_with("\n\nevent: message\ndata: first\n\n"), "{preamble}");

    let id = hub.publish_id(json!({"to": "first", "event": "note", "data": "hello"})).await;
    assert_eq!(raw.chunk().await, format!("id: {id}\nevent: note\ndata: hello\n\n"));
    hub.stop().await;
    assert_eq!(raw.chunk().await, "", "the last chunk ends the body at shutdown");
}

/// Bytes a reader sends on its stream's connection are read and dropped: the stream stays open
/// and keeps delivering; closing the connection then ends the stream at once.
#[tokio::test]
async fn a_reader_that_talks_keeps_its_stream() {
    let hub = start(&["--keep-alive", "0"]).await;
    let mut raw = Raw::connect(&hub.base).await;
    raw.send("GET /stream-sse?user=chatty HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.head().await.starts_with("http/1.1 200"));
    raw.body_until("\n\nid: ").await;
    for _ in 0..50 {
        raw.send(&"noise ".repeat(100)).await;
    }
    let id = hub.publish_id(json!({"to": "chatty", "data": "heard"})).await;
    raw.body_until(&format!("id: {id}\nevent: message\ndata: heard\n\n")).await;
    hub.wait_for_users(|u| u == &json!([{"user": "chatty", "connections": 1}])).await;
    drop(raw);
    hub.wait_for_users(|u| u == &json!([])).await;
    hub.stop().await;
}

/// A stream asked for after another request on the same connection is served by hyper, with
/// the same headers and the same bytes, and ends at shutdown just the same.
#[tokio::test]
async fn a_stream_after_other_requests_on_one_connection_still_streams() {
    let hub = start(&[]).await;
    let mut raw = Raw::connect(&hub.base).await;
    raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.head().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    raw.sized_body(&head).await;
    raw.send("GET /stream-sse?user=second HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.head().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    raw.body_until("\n\nid: ").await;
    let id = hub.publish_id(json!({"to": "second", "data": "kept"})).await;
    raw.body_until(&format!("id: {id}\nevent: message\ndata: kept\n\n")).await;
    hub.stop().await;
    assert_eq!(raw.chunk().await, "", "this stream too ends with the last chunk at shutdown");
}

/// A refused stream on a fresh connection gets the router's JSON error with its length, and
/// the connection is closed after it.
#[tokio::test]
async fn a_refused_stream_gets_its_json_error_then_the_connection_closes() {
    let hub = start(&[]).await;
    let mut raw = Raw::connect(&hub.base).await;
    raw.send("GET /stream-sse?user=%07bell HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.head().await;
    assert!(head.starts_with("http/1.1 400 bad request\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(header(&head, "connection"), Some("close"));
    let body: serde_json::Value = serde_json::from_str(&raw.sized_body(&head).await).unwrap();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(!raw.fill().await, "closed after the refusal");
    hub.stop().await;
}

/// Requests the listener does not take (a head split over several writes is still ours; a
/// malformed one and cleartext HTTP/2 are hyper's) are all answered.
#[tokio::test]
async fn split_malformed_and_http2_requests_are_answered() {
    let hub = start(&[]).await;
    let mut split = Raw::connect(&hub.base).await;
    split.send("GET /stream-sse?us").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    split.send("er=split HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(split.head().await.starts_with("http/1.1 200"));
    split.body_until("data: split\n\n").await;

    let mut malformed = Raw::connect(&hub.base).await;
    malformed.send("GET /stream-sse?user=a HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert!(malformed.head().await.starts_with("http/1.1 400"));

    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(hub.url("/stream-sse?user=h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    hub.stop().await;
}
