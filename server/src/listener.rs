//! Accepting connections, cleartext or TLS, and why it is not just `axum::serve`.
//!
//! hyper keeps an 8 KB read and an 8 KB write buffer for each connection for as long as it lives:
//! for an idle event stream that was two thirds of its cost. So a connection whose first request
//! is an HTTP/1.1 `GET /stream-sse` (cleartext, or HTTPS negotiated as HTTP/1.1) is served here:
//! the request still goes through the router like any other (auth, CORS, errors, logs); when the
//! answer is a stream, the router leaves its frames in a [`TakeOver`] and
//! [`transport::write_stream`] writes them to the socket (over TLS 1.3, sealed from the connection's
//! sending key alone: see `sealed`). HTTP/1.1 publishes with a short body are read and answered
//! here too, one after another on a kept-alive connection (see `lane`), and a stream asked for
//! after them is still written here. Every other connection (the console, HTTP/2, a stream or a
//! publish after any other request) is handed to hyper, with the bytes already read.
//!
//! No connection can stay for free. A TLS handshake and a request head must arrive within
//! `--header-timeout` (on a kept-alive connection, from the end of the request before: the lane's
//! timer, or hyper's); a connection with nothing in flight closes after `--idle-timeout`; HTTP/2
//! peers are pinged; a write that makes no progress for `--write-timeout` closes the connection. And
//! connections that are not streams yet (or never) are capped (`--max-request-connections`,
//! within the descriptor reserve): at the cap the one idle longest is closed to make room, so
//! publishers, `/healthz` and `/metrics` always get in (see `gate`).

mod gate;
mod hyper_io;
mod lane;
mod sealed;

use crate::hub::Hub;
use crate::transport::{self, Socket, TakeOver};
use axum::body::Body;
use axum::http::{response, HeaderName, HeaderValue, Method, Request, Response, Version};
use axum::Router;
use bytes::{Bytes, BytesMut};
use gate::{Gate, Slot, Watched};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How the listener guards itself.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    /// Longest a TLS handshake or a request head may take to arrive.
    pub header_timeout: Duration,
    /// A connection with no request in flight closes after this long.
    pub idle_timeout: Option<Duration>,
    /// A write that makes no progress for this long closes its connection.
    pub write_timeout: Duration,
    /// Connections that are not streams, at most.
    pub max_request_connections: usize,
    /// How long connections get to finish once shutdown starts.
    pub grace: Duration,
}

/// Longest head read here; a longer one goes to hyper, which refuses it (431).
const MAX_HEAD: usize = 16 * 1024;
/// Most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Largest refusal body written here (refusals are short JSON).
const MAX_REFUSAL: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// How often an HTTP/2 peer is pinged, and how long it has to answer.
const H2_PING: Duration = Duration::from_secs(20);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves or the hub shuts
/// down; then ends every stream and waits up to `grace` for connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    router: Router,
    hub: Hub,
    settings: ListenSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    let stopping = hub.shutdown_token();
    let gate = Gate::new(settings.max_request_connections);
    let served = Served {
        router,
        settings: Arc::new(settings.clone()),
        tls: tls.map(|config| {
            // A stream's sending key is taken from its connection once the request is served.
            let mut config = Arc::unwrap_or_clone(config);
            config.enable_secret_extraction = true;
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        }),
        stopping: stopping.clone(),
    };
    if let Some(idle) = settings.idle_timeout {
        tokio::spawn(gate.clone().sweep(idle, stopping.clone()));
    }
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            () = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(cause) => {
                    pause_after(cause).await;
                    continue;
                }
            },
        };
        // Events are small and latency matters: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let admitted = tokio::select! {
            () = &mut shutdown => break,
            () = stopping.cancelled() => break,
            admitted = gate.admit() => admitted,
        };
        let Some(slot) = admitted else {
            connections.spawn(turn_away(tcp, served.tls.is_none()));
            continue;
        };
        connections.spawn(served.clone().connection(tcp, slot, graceful.watcher()));
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    hub.shutdown();
    connections.close();
    let finished = async {
        graceful.shutdown().await;
        connections.wait().await;
    };
    if tokio::time::timeout(settings.grace, finished).await.is_err() {
        tracing::warn!("connections still open after the grace period; exiting anyway");
    }
    Ok(())
}

/// An accept that failed: a connection that died in the queue is skipped; anything else (out of
/// descriptors, most likely) is logged and waited out, as `axum::serve` does.
async fn pause_after(cause: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(cause.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%cause, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Every request connection is busy: a cleartext client is told so; then the connection closes.
async fn turn_away(mut tcp: TcpStream, cleartext: bool) {
    tracing::warn!("refused a connection: every request connection is busy (--max-request-connections)");
    if cleartext {
        let body = r#"{"error":"the hub has too many connections open; retry later"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
            body.len()
        );
        let answered = async {
            tcp.write_all(answer.as_bytes()).await?;
            tcp.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
    } else {
        tcp.reset_on_close();
    }
}

/// What every connection is served with.
#[derive(Clone)]
struct Served {
    router: Router,
    settings: Arc<ListenSettings>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopping: CancellationToken,
}

/// What a request head says about who serves it.
enum First {
    /// An HTTP/1.1 `GET /stream-sse` without a body, ready for the router.
    Stream(Box<Request<Body>>),
    /// An HTTP/1.1 publish with a short body of declared length: the lane's.
    Publish(Box<lane::Publish>),
    /// Anything else, or something this parser does not take: hyper's.
    Hyper,
}

impl Served {
    async fn connection(self, tcp: TcpStream, slot: Slot, watcher: Watcher) {
        let tcp = slot.watch(tcp);
        match self.tls.clone() {
            // Boxed: inline, a TLS connection's state (rustls' own, in the handshake and in the
            // stream) would size every connection's task, cleartext streams' included, for as
            // long as they live.
            Some(acceptor) => Box::pin(self.tls(acceptor, tcp, slot, watcher)).await,
            None => self.socket(tcp, slot, watcher).await,
        }
    }

    /// Serves a TLS connection: HTTP/2 by hyper, HTTP/1.1 as a cleartext one. What an HTTPS
    /// HTTP/1.1 stream's task keeps is, as for a cleartext one, its writer alone, with its
    /// sending key (see `sealed`).
    async fn tls(self, acceptor: tokio_rustls::TlsAcceptor, tcp: Watched<TcpStream>, slot: Slot, watcher: Watcher) {
        // Boxed and freed once done: inline, the handshake's state (rustls' connection) would
        // size this future for the stream's whole life.
        let handshake = Box::pin(handshake(acceptor, tcp, &slot, self.settings.header_timeout));
        let Some(tls) = handshake.await else { return };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            // Boxed: inline, hyper's connection state would size this future too.
            return Box::pin(self.hyper(tls, Bytes::new(), slot, watcher)).await;
        }
        let Some((tls, head, frames)) = Box::pin(self.first_request(tls, slot, watcher)).await else {
            return;
        };
        // A stream: written without rustls' connection and its buffers when the keys allow.
        match Box::pin(sealed::seal(tls)).await {
            Some(Ok(sealed)) => transport::write_stream(sealed, head, frames).await,
            Some(Err(tls)) => transport::write_stream(tls, head, frames).await,
            None => return,
        };
    }

    /// Serves a connection once it is cleartext (TCP, or TLS as HTTP/1.1). What this task keeps
    /// while a stream lives is the stream's writer alone: every phase before it is boxed and
    /// freed when done (inline, the largest would size an idle stream's task for its life).
    async fn socket<S: Socket>(self, socket: S, slot: Slot, watcher: Watcher) {
        let Some((socket, head, frames)) = Box::pin(self.first_request(socket, slot, watcher)).await else {
            return;
        };
        transport::write_stream(socket, head, frames).await;
    }

    /// Serves the connection's requests until one is a stream, whose socket, response head and
    /// frames to write are returned; `None` once the connection was served otherwise (publishes
    /// by the lane, anything else by hyper, or a refusal) and closed.
    async fn first_request<S: Socket>(
        self,
        mut socket: S,
        slot: Slot,
        watcher: Watcher,
    ) -> Option<(S, Vec<u8>, transport::Frames)> {
        let mut buf = BytesMut::with_capacity(2048);
        let mut date = lane::Date::default();
        let request = loop {
            match self.read_request(&mut socket, &slot, &mut buf).await? {
                First::Stream(request) => break request,
                First::Publish(publish) => {
                    // The router's time and the body's are the request's: the connection is busy.
                    let busy = slot.busy();
                    if !self.publish(&mut socket, &mut buf, &mut date, *publish).await {
                        return None;
                    }
                    drop(busy);
                }
                First::Hyper => {
                    self.hyper(socket, buf.freeze(), slot, watcher).await;
                    return None;
                }
            }
        };
        drop(buf);
        // The router's time is the hub's, not the client's: the connection is busy.
        let busy = slot.busy();
        let (frames, response_head) = self.open_stream(&mut socket, *request).await?;
        drop(busy);
        // The stream is counted by the hub from here; it no longer takes a request slot.
        drop(slot);
        Some((socket, response_head, frames))
    }

    /// The next request head, read into `buf` after what it holds already; `None` when the
    /// connection closed, broke or stayed silent before a whole request (nothing to answer), at
    /// shutdown, or when the gate closed it (idle too long, or to make room). A head must arrive
    /// within the header timeout, counted from the accept or from the end of the request before,
    /// as hyper counts it.
    async fn read_request<S: Socket>(&self, socket: &mut S, slot: &Slot, buf: &mut BytesMut) -> Option<First> {
        tokio::select! {
            () = self.stopping.cancelled() => None,
            () = slot.closed() => None,
            read = tokio::time::timeout(self.settings.header_timeout, read_head(socket, buf)) => match read {
                Ok(Ok(first)) => Some(first),
                _ => None,
            },
        }
    }

    /// Runs the request through the router. For a stream, returns its frames and the response
    /// head to write; for a refusal, writes it whole and returns `None`.
    async fn open_stream<S: Socket>(
        &self,
        socket: &mut S,
        mut request: Request<Body>,
    ) -> Option<(transport::Frames, Vec<u8>)> {
        let slot = TakeOver::default();
        request.extensions_mut().insert(slot.clone());
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let Some(frames) = slot.take() else {
            let refusal = refusal(response).await?;
            let write = async {
                socket.write_all(&refusal).await?;
                socket.shutdown().await
            };
            let _ = tokio::time::timeout(self.settings.write_timeout, write).await;
            return None;
        };
        let (parts, _empty) = response.into_parts();
        Some((frames, response_head(&parts, b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")))
    }

    /// Serves the connection with hyper (HTTP/1.1 or HTTP/2, by what the client sent), replaying
    /// the bytes already read first.
    async fn hyper<S: Socket>(self, socket: S, read: Bytes, slot: Slot, watcher: Watcher) {
        let io = hyper_io::HyperIo::new(socket, read, self.settings.write_timeout);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_timeout)
            .max_buf_size(MAX_HEAD * 2);
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEAD as u32)
            .keep_alive_interval(H2_PING)
            .keep_alive_timeout(H2_PING);
        let service = gate::Tracking::new(self.router.clone(), slot.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::select! {
            served = watcher.watch(connection.into_owned()) => {
                if let Err(cause) = served {
                    tracing::debug!(%cause, "connection ended with an error");
                }
            }
            // Idle too long, or closed to make room for another: nothing is in flight.
            () = slot.closed() => {}
        }
    }
}

/// The TLS handshake, within `timeout` and until the gate closes the connection. The connection
/// comes boxed: the futures it then passes through keep their arguments apart from their locals,
/// so inline each would hold its own copy of rustls' connection (1.2 KB; 4.8 KB in all).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: Watched<TcpStream>,
    slot: &Slot,
    timeout: Duration,
) -> Option<Box<tokio_rustls::server::TlsStream<Watched<TcpStream>>>> {
    tokio::select! {
        () = slot.closed() => None,
        done = tokio::time::timeout(timeout, acceptor.accept(tcp)) => done.ok().and_then(Result::ok).map(Box::new),
    }
}

/// Reads until `buf` holds a whole request head (or one that is not ours to parse).
async fn read_head<S: Socket>(socket: &mut S, buf: &mut BytesMut) -> io::Result<First> {
    // What a pipelining client sent with the last request may hold the next one whole.
    if !buf.is_empty() {
        match parse(buf) {
            Some(first) => return Ok(first),
            None if buf.len() >= MAX_HEAD => return Ok(First::Hyper),
            None => {}
        }
    }
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        let before = buf.len();
        if socket.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // A head ends with a line: a head trickled a byte at a time is parsed once a line, not
        // once a byte.
        if !buf[before..].contains(&b'\n') && buf.len() < MAX_HEAD {
            continue;
        }
        match parse(buf) {
            Some(first) => return Ok(first),
            None if buf.len() >= MAX_HEAD => return Ok(First::Hyper),
            None => {}
        }
    }
}

/// `None` while the head is incomplete. A stream request that declares a body
/// (`Transfer-Encoding`, or a `Content-Length` other than 0) is hyper's, which reads it or refuses
/// it, and so is a publish that declares its body in any way but one plain `Content-Length` of at
/// most [`lane::LANE_BODY`]: the two paths never disagree on where a request ends.
fn parse(buf: &[u8]) -> Option<First> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Err(_) => return Some(First::Hyper),
    };
    if parsed.version != Some(1) || parsed.headers.iter().any(|h| h.name.eq_ignore_ascii_case("upgrade")) {
        return Some(First::Hyper);
    }
    let path = parsed.path.unwrap_or("");
    let method = parsed.method.unwrap_or("");
    let first = if method == "GET" && transport::is_stream_target(path) {
        let declares_body = |h: &httparse::Header<'_>| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
        };
        if parsed.headers.iter().any(declares_body) {
            return Some(First::Hyper);
        }
        let Some(request) = request(Method::GET, path, parsed.headers) else { return Some(First::Hyper) };
        First::Stream(Box::new(request.map(|()| Body::empty())))
    } else if method == "POST" && transport::is_publish_target(path) {
        let Some(body_len) = lane_body(parsed.headers) else { return Some(First::Hyper) };
        let close = parsed.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value.split(|b| *b == b',').any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        });
        let Some(request) = request(Method::POST, path, parsed.headers) else { return Some(First::Hyper) };
        First::Publish(Box::new(lane::Publish { request, head_len, body_len, close }))
    } else {
        First::Hyper
    };
    Some(first)
}

/// The body length of a publish for the lane: one `Content-Length` of plain digits, at most
/// [`lane::LANE_BODY`], and nothing else that bears on the body (`Transfer-Encoding`, `Expect`).
fn lane_body(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") || h.name.eq_ignore_ascii_case("expect") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() || h.value.is_empty() || h.value.len() > 8 || !h.value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            length = std::str::from_utf8(h.value).ok()?.parse::<usize>().ok();
        }
    }
    length.filter(|length| *length <= lane::LANE_BODY)
}

/// The request a parsed head describes, its body to come; `None` (hyper's, then) for a target
/// or a header the `http` types refuse.
fn request(method: Method, path: &str, headers: &[httparse::Header<'_>]) -> Option<Request<()>> {
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = path.parse().ok()?;
    *request.version_mut() = Version::HTTP_11;
    let map = request.headers_mut();
    map.reserve(headers.len());
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        map.append(name, value);
    }
    Some(request)
}

/// A refusal (the router's JSON error) with its length, for a connection that closes after it.
async fn refusal(response: Response<Body>) -> Option<Vec<u8>> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_REFUSAL).await.ok()?;
    Some(whole_response(&parts, &body, None, true))
}

/// A response with its body held whole: the head with its length (and `date`, when given and the
/// router set none, and `connection: close` when `closes`), then the body.
fn whole_response(parts: &response::Parts, body: &[u8], date: Option<&str>, closes: bool) -> Vec<u8> {
    let mut framing = String::with_capacity(96);
    if let Some(date) = date.filter(|_| !parts.headers.contains_key(axum::http::header::DATE)) {
        framing.push_str("date: ");
        framing.push_str(date);
        framing.push_str("\r\n");
    }
    let _ = write!(framing, "content-length: {}\r\n", body.len());
    framing.push_str(if closes { "connection: close\r\n\r\n" } else { "\r\n" });
    let mut out = response_head(parts, framing.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The status line and headers, then `framing` (the body's length or encoding, and the blank
/// line). Framing headers from the router are left out: this writer decides them.
fn response_head(parts: &response::Parts, framing: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(framing);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle cleartext stream's task stays small: its state is what the hub pays per stream
    /// for as long as the stream lives. TLS state (rustls' connection) once sat in every task,
    /// cleartext ones included, and made an idle stream cost 9.7 KB instead of 2 to 3.
    #[tokio::test]
    async fn a_cleartext_connection_task_carries_no_tls_state() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let client = TcpStream::connect(listener.local_addr().expect("its address")).await.expect("connects");
        let (tcp, _) = listener.accept().await.expect("accepts");
        let slot = Gate::new(1).admit().await.expect("room under the cap");
        let settings = ListenSettings {
            header_timeout: Duration::from_secs(1),
            idle_timeout: None,
            write_timeout: Duration::from_secs(1),
            max_request_connections: 1,
            grace: Duration::from_secs(1),
        };
        let served = Served {
            router: Router::new(),
            settings: Arc::new(settings),
            tls: None,
            stopping: CancellationToken::new(),
        };
        let task = served.connection(tcp, slot, GracefulShutdown::new().watcher());
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1_536, "a connection's task is {size} bytes");
        drop(client);
    }

    /// What the lane takes: an HTTP/1.1 publish with one plain `Content-Length` of at most
    /// `LANE_BODY`, nothing else bearing on its body; every other way of framing a body is
    /// hyper's, so the two never disagree on where a request ends.
    #[test]
    fn the_lane_takes_only_plainly_framed_publishes() {
        let lane = |head: &str| match parse(head.as_bytes()) {
            Some(First::Publish(publish)) => Some((publish.head_len, publish.body_len, publish.close)),
            Some(_) => None,
            None => panic!("incomplete: {head:?}"),
        };
        let head = "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(lane(head), Some((head.len(), 10, false)));
        assert_eq!(lane(&format!("{head}{{\"to\":")), Some((head.len(), 10, false)), "the body is not the head's");
        let mercure =
            "POST /.well-known/mercure?x=1 HTTP/1.1\r\ncontent-length: 0\r\nConnection: keep-alive, Close\r\n\r\n";
        assert_eq!(lane(mercure).map(|(_, length, close)| (length, close)), Some((0, true)));
        let big = format!("POST /api/events HTTP/1.1\r\nContent-Length: {}\r\n\r\n", lane::LANE_BODY + 1);
        for hyper in [
            "POST /api/events HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: +10\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: 10\r\nUpgrade: h2c\r\n\r\n",
            "POST /api/events HTTP/1.1\r\n\r\n",
            "POST /api/events HTTP/1.0\r\nContent-Length: 10\r\n\r\n",
            "POST /api/eventsx HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
            "PUT /api/events HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
            "POST /api/events HTTP/1.1\r\nContent-Length: 10\r\nBad\x01Name: 1\r\n\r\n",
            &big,
        ] {
            assert_eq!(lane(hyper), None, "{hyper:?}");
        }
        assert!(parse(b"POST /api/events HTTP/1.1\r\nContent-Len").is_none(), "incomplete");
    }

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle HTTPS HTTP/1.1 stream's task stays as small as a cleartext one's: rustls'
    /// connection (1.2 KB) is boxed once rather than copied into each future it passes through,
    /// and hyper's state is boxed apart. Inline, the task was 7,240 bytes.
    #[test]
    fn an_https_connection_task_stays_small() {
        let size =
            future_size(|(served, acceptor, tcp, slot, watcher): (Served, _, Watched<TcpStream>, Slot, Watcher)| {
                served.tls(acceptor, tcp, slot, watcher)
            });
        assert!(size <= 1_536, "an HTTPS connection's task is {size} bytes");
    }
}
