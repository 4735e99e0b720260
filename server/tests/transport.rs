//! The stream transport, byte by byte, on every way a stream reaches its reader: written by the
//! listener on a fresh cleartext connection (`direct`), by hyper after another request on the
//! connection (`after`), and by the listener over TLS negotiated as HTTP/1.1 (`tls`). Each test
//! body runs on all three, as the store tests run on every store; then the timers and the cap
//! that guard connections which are not streams.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Hub, PATIENCE};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Direct,
    After,
    Tls,
}

/// A hub for `kind` (with a certificate for `tls`) and the certificate's DER, if any.
struct Setup {
    hub: Hub,
    kind: Kind,
    roots: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    _dir: Option<common::stores::TempDir>,
}

impl Setup {
    async fn new(kind: Kind, args: &[&str]) -> Setup {
        if kind != Kind::Tls {
            return Setup { hub: start(args).await, kind, roots: None, _dir: None };
        }
        let dir = common::stores::TempDir::new("tls");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let (cert_path, key_path) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let mut config =
            tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut argv = vec!["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let hub = start(&argv).await;
        Setup { hub, kind, roots: Some(Arc::new(config)), _dir: Some(dir) }
    }

    fn addr(&self) -> String {
        self.hub.base.trim_start_matches("http://").to_owned()
    }

    /// A connection ready for a stream request; `stalled` makes its receive buffer tiny (and the
    /// test then never reads it).
    async fn connect(&self, stalled: bool) -> Raw {
        let socket = TcpSocket::new_v4().unwrap();
        if stalled {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let tcp = socket.connect(self.addr().parse().unwrap()).await.unwrap();
        let io: Box<dyn Io> = match &self.roots {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                Box::new(connector.connect(name, tcp).await.unwrap())
            }
            None => Box::new(tcp),
        };
        let mut raw = Raw { io, buf: Vec::new() };
        if self.kind == Kind::After {
            raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let head = raw.head().await;
            assert!(head.starts_with("http/1.1 200"), "{head}");
            raw.sized_body(&head).await;
        }
        raw
    }

    /// Opens a stream for `user` and reads its head and preamble (unless `stalled`).
    async fn stream(&self, user: &str, stalled: bool) -> Raw {
        let open = self.metric("tidings_connections").await;
        let mut raw = self.connect(stalled).await;
        raw.send(&format!("GET /stream-sse?user={user} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        if !stalled {
            let head = raw.head().await;
            assert!(head.starts_with("http/1.1 200"), "{head}");
            raw.body_until("\n\nid: ").await;
        }
        self.wait_streams(open + 1).await;
        raw
    }

    /// Waits until `/metrics` counts `n` open streams.
    async fn wait_streams(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let open = self.metric("tidings_connections").await;
            if open == n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{open} streams open, waiting for {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self.plain_get("/metrics").await;
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap()
    }

    /// A GET over a connection of this setup's kind of security.
    async fn plain_get(&self, path: &str) -> String {
        let mut raw = self.connect(false).await;
        raw.send(&format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
        let head = raw.head().await;
        raw.sized_body(&head).await
    }

    /// Publishes `count` events of about `size` bytes each to `user`.
    async fn flood(&self, user: &str, count: usize, size: usize) {
        let data = "x".repeat(size);
        let batch: Vec<_> = (0..count).map(|_| json!({"to": user, "data": data})).collect();
        for chunk in batch.chunks(16) {
            let (status, answer) = self.publish(json!(chunk)).await;
            assert_eq!(status, 202, "{answer}");
        }
    }

    async fn publish(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let body = body.to_string();
        let mut raw = self.connect(false).await;
        raw.send(&format!(
            "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let head = raw.head().await;
        let status = head[9..12].parse().unwrap();
        (status, serde_json::from_str(&raw.sized_body(&head).await).unwrap())
    }
}

/// A raw HTTP/1.1 client: a response head, then the body as it arrives.
struct Raw {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Raw {
    async fn send(&mut self, request: &str) {
        self.io.write_all(request.as_bytes()).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Reads more bytes; false at the end of the connection (or when it was reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(PATIENCE, self.io.read(&mut chunk)).await.expect("bytes in time") {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n > 0
            }
            Err(_) => false,
        }
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

    async fn body_until(&mut self, needle: &str) -> String {
        let mut body = String::new();
        while !body.contains(needle) {
            body.push_str(&self.chunk().await);
        }
        body
    }

    async fn sized_body(&mut self, head: &str) -> String {
        let length: usize = header(head, "content-length").unwrap().parse().unwrap();
        while self.buf.len() < length {
            assert!(self.fill().await, "the connection ended inside a body");
        }
        String::from_utf8(self.buf.drain(..length).collect()).unwrap()
    }

    /// Whether the peer ends the connection within `within` (reading and dropping what comes).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut sink = [0u8; 16384];
        tokio::time::timeout(within, async {
            while let Ok(n) = self.io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

macro_rules! on_every_transport {
    ($(#[doc = $doc:literal])* $name:ident, $args:expr, |$setup:ident| $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;
            async fn body($setup: &mut Setup) $body
            async fn run(kind: Kind) {
                let mut setup = Setup::new(kind, $args).await;
                body(&mut setup).await;
                setup.hub.stop().await;
            }
            #[tokio::test]
            async fn direct() { run(Kind::Direct).await }
            #[tokio::test]
            async fn after() { run(Kind::After).await }
            #[tokio::test]
            async fn tls() { run(Kind::Tls).await }
        }
    };
}

on_every_transport!(
    /// A stream is chunked HTTP/1.1 with the usual headers, carries its events as they are
    /// published, and ends with the last chunk when the hub shuts down.
    streams_then_ends_cleanly_at_shutdown, &["--retry", "1000ms", "--keep-alive", "0"], |setup| {
        let mut raw = setup.connect(false).await;
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
        assert!(preamble.starts_with("retry: 1000\n\n"), "{preamble}");
        let (status, answer) = setup.publish(json!({"to": "first", "event": "note", "data": "hello"})).await;
        assert_eq!(status, 202);
        let id = answer["id"].as_str().unwrap();
        assert_eq!(raw.chunk().await, format!("id: {id}\nevent: note\ndata: hello\n\n"));
        setup.hub.stop_streams();
        assert_eq!(raw.chunk().await, "", "the last chunk ends the body at shutdown");
    }
);

on_every_transport!(
    /// A reader that stops reading is cut off once a write has made no progress for
    /// `--write-timeout`, and its stream leaves the hub.
    a_stalled_reader_is_cut_after_the_write_timeout,
    &["--write-timeout", "1s", "--max-queue", "100000000", "--keep-alive", "0"],
    |setup| {
        let _stalled = setup.stream("stalled", true).await;
        setup.flood("stalled", 160, 60_000).await;
        setup.wait_streams(0).await;
        assert_eq!(setup.metric("tidings_slow_consumers_dropped_total").await, 0, "not by --max-queue");
    }
);

on_every_transport!(
    /// A reader that falls more than `--max-queue` behind is cut at once, even while a write to
    /// it is still waiting (the write timeout is far off).
    an_overflowing_queue_cuts_a_stalled_stream_at_once,
    &["--write-timeout", "1h", "--max-queue", "1000000", "--keep-alive", "0"],
    |setup| {
        let _stalled = setup.stream("behind", true).await;
        setup.flood("behind", 160, 60_000).await;
        setup.wait_streams(0).await;
        assert!(setup.metric("tidings_slow_consumers_dropped_total").await >= 1);
    }
);

on_every_transport!(
    /// The stream deadline ends a stream even while a write to it is waiting.
    the_deadline_cuts_a_stalled_stream,
    &["--write-timeout", "1h", "--max-queue", "100000000", "--stream-timeout", "2s", "--keep-alive", "0"],
    |setup| {
        let _stalled = setup.stream("late", true).await;
        setup.flood("late", 160, 60_000).await;
        setup.wait_streams(0).await;
    }
);

/// The lean path is the one taken for a stream first on a cleartext or HTTPS/1.1 connection:
/// its response is written by the listener (`connection: close`, no `date` header, which hyper
/// always adds), while hyper writes a stream that follows another request.
#[tokio::test]
async fn the_listener_writes_first_streams_and_hyper_the_rest() {
    for (kind, lean) in [(Kind::Direct, true), (Kind::Tls, true), (Kind::After, false)] {
        let setup = Setup::new(kind, &[]).await;
        let mut raw = setup.connect(false).await;
        raw.send("GET /stream-sse?user=path HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 200"), "{kind:?}: {head}");
        assert_eq!(header(&head, "date").is_none(), lean, "{kind:?}: {head}");
        assert_eq!(header(&head, "connection") == Some("close"), lean, "{kind:?}: {head}");
        setup.hub.stop().await;
    }
}

/// A stream's reader may say a little on its connection, but one that sends more than a few KB
/// is cut off.
#[tokio::test]
async fn a_reader_that_talks_too_much_is_cut_off() {
    for kind in [Kind::Direct, Kind::Tls] {
        let setup = Setup::new(kind, &["--keep-alive", "0"]).await;
        let mut quiet = setup.stream("quiet", false).await;
        quiet.send(&"a".repeat(1000)).await;
        let mut loud = setup.stream("loud", false).await;
        setup.wait_streams(2).await;
        for _ in 0..20 {
            loud.send(&"noise ".repeat(100)).await;
        }
        assert!(loud.closed_within(PATIENCE).await, "{kind:?}: the loud reader is cut off");
        setup.wait_streams(1).await;
        let (_, answer) = setup.publish(json!({"to": "quiet", "data": "still here"})).await;
        let id = answer["id"].as_str().unwrap();
        quiet.body_until(&format!("id: {id}\nevent: message\ndata: still here\n\n")).await;
        drop(quiet);
        setup.wait_streams(0).await;
        setup.hub.stop().await;
    }
}

/// A stream request that declares a body is read as hyper reads it: an invalid
/// `Content-Length` or `Transfer-Encoding` is a 400, and a valid body is read past and the
/// stream served like any other.
#[tokio::test]
async fn stream_requests_with_bodies_are_framed_as_hyper_frames_them() {
    let setup = Setup::new(Kind::Direct, &[]).await;
    let mut bad = setup.connect(false).await;
    bad.send("GET /stream-sse?user=a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n").await;
    assert!(bad.head().await.starts_with("http/1.1 400"));
    let mut coded = setup.connect(false).await;
    coded.send("GET /stream-sse?user=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").await;
    assert!(coded.head().await.starts_with("http/1.1 400"));
    let mut chunked = setup.connect(false).await;
    chunked
        .send("GET /stream-sse?user=chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await;
    assert!(chunked.head().await.starts_with("http/1.1 200"));
    chunked.body_until("data: chunked\n\n").await;
    let mut sized = setup.connect(false).await;
    sized.send("GET /stream-sse?user=sized HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").await;
    let head = sized.head().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    sized.body_until("data: sized\n\n").await;
    setup.hub.stop().await;
}

/// Connections that send nothing, drip a head, idle between requests, never finish a TLS
/// handshake or open HTTP/2 and go quiet are all closed by the hub's timers.
#[tokio::test]
async fn connections_that_stop_moving_are_closed() {
    let args = ["--header-timeout", "1s", "--idle-timeout", "2s"];
    let setup = Setup::new(Kind::Direct, &args).await;
    let addr = setup.addr();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut dripping = TcpStream::connect(&addr).await.unwrap();
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Kept alive by the publish lane, then idle; and one that drips its second head.
    let mut kept_publisher = TcpStream::connect(&addr).await.unwrap();
    kept_publisher.write_all(publish_request(r#"{"to": "a", "data": "b"}"#, "").as_bytes()).await.unwrap();
    let mut second_head = TcpStream::connect(&addr).await.unwrap();
    second_head.write_all(publish_request(r#"{"to": "a", "data": "c"}"#, "").as_bytes()).await.unwrap();
    let drip_second = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for byte in b"POST /api/events HTTP/1.1\r\nHost: x\r\n" {
            if second_head.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        closed(&mut second_head, Duration::ZERO).await
    });
    let mut h2 = TcpStream::connect(&addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let drip = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" {
            if dripping.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        closed(&mut dripping, Duration::ZERO).await
    });
    assert!(closed(&mut silent, Duration::from_secs(3)).await, "a silent connection is closed");
    assert!(closed(&mut kept, Duration::from_secs(4)).await, "an idle kept-alive connection is closed");
    assert!(closed(&mut kept_publisher, Duration::ZERO).await, "an idle kept-alive publisher is closed");
    assert!(drip_second.await.unwrap(), "a dripping second head is cut off");
    assert!(closed(&mut h2, Duration::from_secs(4)).await, "a quiet HTTP/2 connection is closed");
    assert!(drip.await.unwrap(), "a dripping head is cut off");
    setup.hub.stop().await;

    let tls = Setup::new(Kind::Tls, &args).await;
    let mut no_handshake = TcpStream::connect(tls.addr()).await.unwrap();
    assert!(closed(&mut no_handshake, Duration::from_secs(3)).await, "a TLS handshake that never comes");
    tls.hub.stop().await;
}

/// Whether the peer closes `tcp` within `within` plus a second (reading what it sends).
async fn closed(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(within + Duration::from_secs(1), async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// At the cap on request connections, idle ones make room for a publisher; when every one is
/// busy, a newcomer gets a 503 JSON error at once; streams never count against the cap.
#[tokio::test]
async fn the_request_cap_makes_room_or_says_why() {
    let setup = Setup::new(Kind::Direct, &["--max-request-connections", "4", "--keep-alive", "0"]).await;
    let _streams = [setup.stream("s1", false).await, setup.stream("s2", false).await];
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(setup.addr()).await.unwrap());
    }
    let (status, _) = setup.publish(json!({"to": "s1", "data": "in"})).await;
    assert_eq!(status, 202, "idle connections made room");
    // Four uploads that never finish keep every slot busy.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
        tcp.write_all(
            b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(setup.addr()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, refused.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#"{"error":"#), "{answer}");
    drop(busy);
    setup.wait_streams(2).await;
    setup.hub.stop().await;
}

/// A reconnect storm far past the request cap: 500 clients connect and send their stream
/// requests before the hub has accepted any; every stream opens. The cap closes only
/// connections seen waiting on their clients, never one the hub has not read yet or is still
/// answering.
#[tokio::test]
async fn a_storm_of_streams_opens_past_the_request_cap() {
    let setup = Setup::new(Kind::Direct, &["--max-request-connections", "4", "--keep-alive", "0"]).await;
    let mut storm = Vec::new();
    for i in 0..500 {
        let mut raw = setup.connect(false).await;
        raw.send(&format!("GET /stream-sse?user=u{i} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        storm.push(raw);
    }
    for raw in &mut storm {
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    setup.wait_streams(500).await;
    drop(storm);
    setup.hub.stop().await;
}

/// A refused stream on a fresh connection gets the router's JSON error with its length, and
/// the connection is closed after it.
#[tokio::test]
async fn a_refused_stream_gets_its_json_error_then_the_connection_closes() {
    for kind in [Kind::Direct, Kind::Tls] {
        let setup = Setup::new(kind, &[]).await;
        let mut raw = setup.connect(false).await;
        raw.send("GET /stream-sse?user=%07bell HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 400 bad request\r\n"), "{head}");
        assert_eq!(header(&head, "content-type"), Some("application/json"));
        assert_eq!(header(&head, "connection"), Some("close"));
        let body: serde_json::Value = serde_json::from_str(&raw.sized_body(&head).await).unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        assert!(!raw.fill().await, "closed after the refusal");
        setup.hub.stop().await;
    }
}

/// Requests the listener does not take (a head split over several writes is still its own; a
/// malformed one, an oversized one and cleartext HTTP/2 are hyper's) are all answered.
#[tokio::test]
async fn split_malformed_oversized_and_http2_requests_are_answered() {
    let setup = Setup::new(Kind::Direct, &[]).await;
    let mut split = setup.connect(false).await;
    split.send("GET /stream-sse?us").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    split.send("er=split HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(split.head().await.starts_with("http/1.1 200"));
    split.body_until("data: split\n\n").await;

    let mut malformed = setup.connect(false).await;
    malformed.send("GET /stream-sse?user=a HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert!(malformed.head().await.starts_with("http/1.1 400"));

    let mut huge = setup.connect(false).await;
    let cookie = "c".repeat(40_000);
    huge.send(&format!("GET /stream-sse?user=big HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n")).await;
    let head = huge.head().await;
    assert!(head.starts_with("http/1.1 431"), "a head past 16 KB is refused: {head}");

    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(setup.hub.url("/stream-sse?user=h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    setup.hub.stop().await;
}

/// A publish as raw HTTP/1.1 (kept alive unless `extra` says otherwise).
fn publish_request(body: &str, extra: &str) -> String {
    format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An answer as the client sees it: the status line, the header names and values (without
/// `date`, which only says when) and the JSON body with ids taken out (each publish gets its own).
async fn answer_of(raw: &mut Raw) -> (String, Vec<String>, serde_json::Value) {
    let head = raw.head().await;
    let body = raw.sized_body(&head).await;
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let mut headers: Vec<String> = lines.filter(|l| !l.starts_with("date: ")).map(str::to_owned).collect();
    headers.sort();
    let mut body: serde_json::Value = serde_json::from_str(&body).unwrap();
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                fields.remove("id");
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut body);
    (status, headers, body)
}

/// Publishes are served on a fresh HTTP/1.1 connection by the listener's lane, and by hyper
/// after any other request: the two answer every publish alike (status, headers, JSON), for
/// accepted events and for each refusal, with a browser's `Origin` or without, in cleartext and
/// over TLS.
#[tokio::test]
async fn the_lane_answers_publishes_as_hyper_does() {
    let open = ["--max-data", "64"];
    let auth = ["--jwt-secret", "a-test-secret-of-at-least-32-bytes!", "--max-data", "64"];
    let origin = "Origin: http://elsewhere.test\r\n";
    let cases: [(&[&str], &str, &str); 8] = [
        (&open, r#"{"to": "amy", "data": "hello"}"#, ""),
        (&open, r#"{"to": "amy", "data": "hello"}"#, origin),
        (&open, r#"[{"to": "amy", "data": "one"}, {"to": "", "data": "bad"}]"#, ""),
        (&open, r#"{"to": "amy", "data": "#, ""),
        (&open, r#"{"to": "amy", "data": "a longer string than the sixty-four bytes that --max-data allows"}"#, ""),
        (&open, "[]", origin),
        (&auth, r#"{"to": "amy", "data": "hello"}"#, ""),
        (&auth, r#"{"to": "amy", "data": "hello"}"#, origin),
    ];
    for kind in [Kind::Direct, Kind::Tls] {
        for (args, body, extra) in cases {
            let setup = Setup::new(kind, args).await;
            let mut lane = setup.connect(false).await;
            lane.send(&publish_request(body, extra)).await;
            let by_lane = answer_of(&mut lane).await;
            let mut hyper = setup.connect(false).await;
            hyper.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let head = hyper.head().await;
            hyper.sized_body(&head).await;
            hyper.send(&publish_request(body, extra)).await;
            let by_hyper = answer_of(&mut hyper).await;
            assert_eq!(by_lane, by_hyper, "{kind:?} {args:?}: {body} {extra}");
            setup.hub.stop().await;
        }
    }
    // A wrong content type, and the batch answer, through the lane.
    let setup = Setup::new(Kind::Direct, &open).await;
    let mut raw = setup.connect(false).await;
    raw.send(&publish_request("[]", "").replace("application/json", "text/plain")).await;
    let (status, headers, body) = answer_of(&mut raw).await;
    assert_eq!(status, "http/1.1 415 unsupported media type");
    assert!(headers.contains(&"connection: close".to_owned()), "{headers:?}");
    assert!(body["error"].as_str().unwrap().contains("Content-Type: application/json"), "{body}");
    assert!(raw.closed_within(PATIENCE).await, "a refusal before the body ends the connection");
    setup.hub.stop().await;
}

/// One kept-alive connection carries publish after publish, pipelined, each answered in order;
/// a request the lane does not take (here `/healthz`) hands the rest of the connection to hyper,
/// bytes already read included; a stream asked for after publishes is still written by the
/// listener. Every accepted event reaches its reader, in order.
#[tokio::test]
async fn kept_alive_publishes_pipeline_then_hyper_takes_over() {
    for kind in [Kind::Direct, Kind::Tls] {
        let setup = Setup::new(kind, &["--keep-alive", "0"]).await;
        let mut reader = setup.stream("piper", false).await;
        let mut raw = setup.connect(false).await;
        let publishes: String =
            (0..3).map(|i| publish_request(&format!(r#"{{"to": "piper", "data": "{i}"}}"#), "")).collect();
        let tail = publish_request(r#"{"to": "piper", "data": "3"}"#, "");
        raw.send(&format!("{publishes}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n{tail}")).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let head = raw.head().await;
            assert!(head.starts_with("http/1.1 202"), "{kind:?} publish {i}: {head}");
            assert_eq!(header(&head, "connection"), None, "kept alive");
            let answer: serde_json::Value = serde_json::from_str(&raw.sized_body(&head).await).unwrap();
            ids.push(answer["id"].as_str().unwrap().to_owned());
        }
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 200"), "{kind:?}: {head}");
        assert_eq!(raw.sized_body(&head).await, r#"{"status":"ok"}"#);
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 202"), "{kind:?}, by hyper: {head}");
        let answer: serde_json::Value = serde_json::from_str(&raw.sized_body(&head).await).unwrap();
        ids.push(answer["id"].as_str().unwrap().to_owned());
        let expected: String =
            ids.iter().enumerate().map(|(i, id)| format!("id: {id}\nevent: message\ndata: {i}\n\n")).collect();
        assert_eq!(reader.body_until("data: 3\n\n").await, expected, "{kind:?}");

        let mut raw = setup.connect(false).await;
        raw.send(&publish_request(r#"{"to": "nobody", "data": "x"}"#, "")).await;
        let head = raw.head().await;
        raw.sized_body(&head).await;
        raw.send("GET /stream-sse?user=later HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 200"), "{kind:?}: {head}");
        assert_eq!(header(&head, "date"), None, "{kind:?}: written by the listener: {head}");
        setup.hub.stop().await;
    }
}

/// A body that comes in pieces is read as it comes, and the connection goes on after it; one
/// the client asks to be the last is answered with `connection: close`, then closed.
#[tokio::test]
async fn lane_bodies_in_pieces_and_last_requests() {
    for kind in [Kind::Direct, Kind::Tls] {
        let setup = Setup::new(kind, &[]).await;
        let mut raw = setup.connect(false).await;
        let request = publish_request(r#"{"to": "slow", "data": "in pieces"}"#, "");
        let (first, rest) = request.split_at(request.len() - 12);
        raw.send(first).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        raw.send(rest).await;
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 202"), "{kind:?}: {head}");
        raw.sized_body(&head).await;
        raw.send(&publish_request(r#"{"to": "slow", "data": "last"}"#, "Connection: close\r\n")).await;
        let head = raw.head().await;
        assert!(head.starts_with("http/1.1 202"), "{kind:?}: {head}");
        assert_eq!(header(&head, "connection"), Some("close"), "{kind:?}: {head}");
        raw.sized_body(&head).await;
        assert!(raw.closed_within(PATIENCE).await, "{kind:?}: closed after the last request");
        setup.hub.stop().await;
    }
}

/// With auth on, a publish without a token is refused before its body arrives on the lane too:
/// one that declares a short body and never sends it gets its 401 at once, then the connection
/// closes; a kept-alive publisher's connection ends when the hub shuts down.
#[tokio::test]
async fn the_lane_refuses_before_the_body_and_ends_at_shutdown() {
    let setup = Setup::new(Kind::Direct, &["--jwt-secret", "a-test-secret-of-at-least-32-bytes!"]).await;
    let mut raw = setup.connect(false).await;
    raw.send("POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"to\":")
        .await;
    let head = raw.head().await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    raw.sized_body(&head).await;
    assert!(raw.closed_within(PATIENCE).await, "closed without the body");
    setup.hub.stop().await;

    let setup = Setup::new(Kind::Direct, &[]).await;
    let mut raw = setup.connect(false).await;
    raw.send(&publish_request(r#"{"to": "x", "data": "y"}"#, "")).await;
    let head = raw.head().await;
    raw.sized_body(&head).await;
    let stopped = tokio::time::Instant::now();
    setup.hub.stop().await;
    assert!(raw.closed_within(Duration::from_secs(1)).await, "an idle kept-alive publisher is let go at shutdown");
    assert!(stopped.elapsed() < Duration::from_secs(4), "shutdown waited {:?}", stopped.elapsed());
}

/// An HTTP/2 stream whose reader never opens its window: hyper stops asking for the body while
/// the connection stays alive (its pings are answered), so only the task that feeds hyper sees
/// the stream stall, and it cuts the stream after `--write-timeout`, as a stalled HTTP/1.1
/// reader is cut. Not by `--max-queue`: the queue has room for the whole flood.
#[tokio::test]
async fn an_http2_stream_whose_window_stays_shut_is_cut_after_the_write_timeout() {
    let setup =
        Setup::new(Kind::Direct, &["--write-timeout", "1s", "--max-queue", "100000000", "--keep-alive", "0"]).await;
    let tcp = TcpStream::connect(setup.addr()).await.unwrap();
    // A stream window of 1 KB, never released: the hub may send 1 KB on the stream, no more.
    let (mut client, connection) =
        h2::client::Builder::new().initial_window_size(1024).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get(format!("http://{}/stream-sse?user=shut", setup.addr())).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(PATIENCE, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let _unread = response.into_body();
    setup.wait_streams(1).await;
    // Rounds apart, so they leave as separate chunks: h2 takes the first whole while the window
    // has room and holds what the window refuses, hyper holds the second waiting for room, the
    // third waits in the handoff, the fourth finds no room there: the write timeout runs.
    for _ in 0..5 {
        setup.flood("shut", 4, 1_000).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup.wait_streams(0).await;
    assert_eq!(setup.metric("tidings_slow_consumers_dropped_total").await, 0, "not by --max-queue");
    // hyper still holds the stream, waiting for the window: a write timeout later the hub
    // closes the connection, and what hyper held for the stream goes with it.
    let closed = tokio::time::timeout(PATIENCE, connection).await;
    assert!(closed.is_ok(), "the connection was not closed");
    setup.hub.stop().await;
}

/// A stream that ends while its reader reads (here at `--stream-timeout`) lets hyper finish it
/// at once: the connection is not closed for it, and carries the next stream.
#[tokio::test]
async fn an_http2_stream_that_ends_while_read_leaves_its_connection_open() {
    let setup =
        Setup::new(Kind::Direct, &["--write-timeout", "1s", "--stream-timeout", "1s", "--keep-alive", "0"]).await;
    let tcp = TcpStream::connect(setup.addr()).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    for user in ["first", "second"] {
        let request =
            axum::http::Request::get(format!("http://{}/stream-sse?user={user}", setup.addr())).body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let mut body = tokio::time::timeout(PATIENCE, response).await.unwrap().unwrap().into_body();
        let mut text = Vec::new();
        while let Some(chunk) = tokio::time::timeout(PATIENCE, body.data()).await.unwrap() {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(&format!("data: {user}\n\n")), "{text}");
    }
    // Past the write timeout after the second stream's end: the connection is still up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!connection.is_finished(), "the connection was closed");
    setup.hub.stop().await;
}
