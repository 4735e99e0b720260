//! Cleartext HTTP, and why it is not just `axum::serve`.
//!
//! hyper keeps an 8 KB read buffer and an 8 KB write buffer for each connection for as long as it
//! lives: for an idle event stream that was two thirds of what it cost. So a connection whose
//! first request is an HTTP/1.1 `GET /stream-sse` is served here. The request still goes through
//! the router like any other (auth, CORS, errors, logs); when the answer is a stream, the router
//! leaves the body in a [`TakeOver`] and its frames are written straight to the socket as
//! HTTP/1.1 chunks, from no buffer but the hub's outbox. Every other connection (the console,
//! publishing, cleartext HTTP/2, a stream asked for after other requests on one connection) is
//! handed to hyper whole, with the bytes already read.

use crate::hub::Hub;
use crate::routes::{Frames, TakeOver};
use axum::body::Body;
use axum::http::{response, HeaderName, HeaderValue, Method, Request, Response, Version};
use axum::Router;
use bytes::{Bytes, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Longest the first request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest head read here; a longer one goes to hyper, which refuses it.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Largest refusal body written here (refusals are short JSON).
const MAX_REFUSAL: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves or the hub shuts down; then ends
/// every stream and waits up to `grace` for connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    let stopping = hub.shutdown_token();
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
        connections.spawn(connection(tcp, router.clone(), graceful.watcher(), stopping.clone()));
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    hub.shutdown();
    connections.close();
    let finished = async {
        graceful.shutdown().await;
        connections.wait().await;
    };
    if tokio::time::timeout(grace, finished).await.is_err() {
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

/// What a connection's first request head says about who serves it.
enum First {
    /// An HTTP/1.1 `GET /stream-sse`, ready for the router.
    Stream(Box<Request<Body>>),
    /// Anything else, or something this parser does not take: hyper's.
    Hyper,
}

async fn connection(mut tcp: TcpStream, router: Router, watcher: Watcher, stopping: CancellationToken) {
    // Every phase before the pump is boxed and freed when done: inline, the largest of them
    // would size this task for as long as an idle stream lives.
    let Some((first, head)) = Box::pin(read_first(&mut tcp, &stopping)).await else { return };
    match first {
        First::Hyper => Box::pin(hand_to_hyper(tcp, head, router, watcher)).await,
        First::Stream(request) => {
            drop(head);
            let Some(frames) = Box::pin(open_stream(&mut tcp, *request, router)).await else { return };
            tokio::select! {
                biased;
                () = pump(tcp, frames) => {}
                () = stopping.cancelled() => {}
            }
        }
    }
}

/// The first request head and the bytes read with it; `None` when the connection closed,
/// broke or stayed silent before a whole request (nothing to answer), or at shutdown.
async fn read_first(tcp: &mut TcpStream, stopping: &CancellationToken) -> Option<(First, Bytes)> {
    let mut head = BytesMut::with_capacity(2048);
    tokio::select! {
        () = stopping.cancelled() => None,
        read = tokio::time::timeout(HEAD_TIMEOUT, read_head(tcp, &mut head)) => match read {
            Ok(Ok(first)) => Some((first, head.freeze())),
            _ => None,
        },
    }
}

/// Reads until `buf` holds a whole request head (or one that is not ours to parse).
async fn read_head(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<First> {
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        if tcp.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match parse(buf) {
            Some(first) => return Ok(first),
            None if buf.len() >= MAX_HEAD => return Ok(First::Hyper),
            None => {}
        }
    }
}

/// `None` while the head is incomplete.
fn parse(buf: &[u8]) -> Option<First> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(_)) => {}
        Err(_) => return Some(First::Hyper),
    }
    let path = parsed.path.unwrap_or("");
    let is_stream = parsed.method == Some("GET")
        && parsed.version == Some(1)
        && (path == "/stream-sse" || path.starts_with("/stream-sse?"))
        && !parsed.headers.iter().any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    if !is_stream {
        return Some(First::Hyper);
    }
    let mut request = Request::builder().method(Method::GET).uri(path).version(Version::HTTP_11);
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(header.value))
        else {
            return Some(First::Hyper);
        };
        request = request.header(name, value);
    }
    Some(request.body(Body::empty()).map_or(First::Hyper, |request| First::Stream(Box::new(request))))
}

/// Runs the request through the router. For a stream, writes the response head and returns
/// the frames to pump; for a refusal, writes it whole and returns `None`.
async fn open_stream(tcp: &mut TcpStream, mut request: Request<Body>, router: Router) -> Option<Frames> {
    let slot = TakeOver::default();
    request.extensions_mut().insert(slot.clone());
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let Some(frames) = slot.take() else {
        refuse(tcp, response).await;
        return None;
    };
    let (parts, _empty) = response.into_parts();
    tcp.write_all(&response_head(&parts, b"transfer-encoding: chunked\r\n\r\n")).await.ok()?;
    Some(frames)
}

/// Writes frames as HTTP/1.1 chunks until the stream ends or the reader leaves: everything
/// pending goes out as one chunk in one vectored write, straight from the shared frames. A
/// reader that closes its side is noticed at once, not at the next event's failed write.
async fn pump(mut tcp: TcpStream, mut frames: Frames) {
    let mut batch = Vec::new();
    loop {
        let more = std::future::poll_fn(|cx| {
            if poll_departed(&tcp, cx).is_ready() {
                return Poll::Ready(None);
            }
            frames.poll_take(cx, &mut batch).map(Some)
        })
        .await;
        let Some(more) = more else { return };
        if !more {
            // The stream ended (shutdown, timeout, expiry, a reader too far behind).
            let _ = tcp.write_all(b"0\r\n\r\n").await;
            return;
        }
        if write_chunk(&mut tcp, &batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// Reads (and drops) at most this many small reads per wake-up from a stream's reader.
const MAX_DROPPED_READS: usize = 16;

/// `Ready` when the reader closed the connection or it broke. Whatever the reader sends on a
/// stream's connection is read and dropped. Polled with the frames, so waiting costs no future
/// per event: the socket keeps the waker.
fn poll_departed(tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<()> {
    let mut sink = [0u8; 64];
    for _ in 0..MAX_DROPPED_READS {
        match tcp.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => match tcp.try_read(&mut sink) {
                Ok(0) => return Poll::Ready(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            },
        }
    }
    // A chatty reader: come back later rather than spin here.
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Most slices in one vectored write.
const MAX_SLICES: usize = 64;

/// `frames` as one chunk (size line, the frames, CRLF), in as few writes as the socket takes.
async fn write_chunk(tcp: &mut TcpStream, frames: &[Bytes]) -> io::Result<()> {
    let length: usize = frames.iter().map(Bytes::len).sum();
    let (digits, used) = size_line(length);
    let size = &digits[digits.len() - used..];
    let whole = size.len() + length + 2;
    let mut written = 0;
    while written < whole {
        // The slices are built inside the poll, on the stack: an idle stream's task keeps none.
        let wrote = std::future::poll_fn(|cx| {
            let parts =
                std::iter::once(size).chain(frames.iter().map(|frame| &frame[..])).chain(std::iter::once(&b"\r\n"[..]));
            let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
            let (mut count, mut skip) = (0, written);
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = io::IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
                if count == MAX_SLICES {
                    break;
                }
            }
            std::pin::Pin::new(&mut *tcp).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if wrote == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += wrote;
    }
    Ok(())
}

/// A chunk's size line (hex digits, CRLF), right-aligned in a stack buffer, and its length.
fn size_line(mut length: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let mut at = line.len() - 2;
    line[at..].copy_from_slice(b"\r\n");
    loop {
        at -= 1;
        line[at] = b"0123456789abcdef"[length % 16];
        length /= 16;
        if length == 0 {
            return (line, line.len() - at);
        }
    }
}

/// A refusal (the router's JSON error) with its length, then the connection is closed.
async fn refuse(tcp: &mut TcpStream, response: Response<Body>) {
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_REFUSAL).await else { return };
    let framing = format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let mut out = response_head(&parts, framing.as_bytes());
    out.extend_from_slice(&body);
    if tcp.write_all(&out).await.is_ok() {
        let _ = tcp.shutdown().await;
    }
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

/// Serves the connection with hyper (HTTP/1.1 or HTTP/2, by what the client sent), replaying
/// the bytes already read first.
async fn hand_to_hyper(tcp: TcpStream, read: Bytes, router: Router, watcher: Watcher) {
    let (reader, writer) = tcp.into_split();
    let io = tokio::io::join(AsyncReadExt::chain(std::io::Cursor::new(read), reader), writer);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(router));
    if let Err(cause) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%cause, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::size_line;

    /// Chunk sizes are lower-case hex with CRLF, as HTTP/1.1 wants.
    #[test]
    fn size_lines_are_hex() {
        for (length, line) in
            [(0, "0\r\n"), (9, "9\r\n"), (255, "ff\r\n"), (4096, "1000\r\n"), (usize::MAX, "ffffffffffffffff\r\n")]
        {
            let (digits, used) = size_line(length);
            assert_eq!(&digits[digits.len() - used..], line.as_bytes());
        }
    }
}
