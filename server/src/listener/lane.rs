//! The publish lane: HTTP/1.1 `POST`s to the publish endpoints (`/api/events`, and Mercure's), with
//! their length declared, are read and answered here on a kept-alive connection, request after
//! request, rather than by hyper (issue #15: a backend's unicast publish is the request the hub
//! exists for; a body that came with its head needs no body channel, and the answer goes out in
//! one write). Each request still goes through the router like any other, so auth, CORS, limits,
//! errors and logs are the same; only the reading of the head and body and the writing of the
//! answer are this module's.
//!
//! What the lane takes is narrow on purpose (see `listener::parse`): a `Content-Length` body of at
//! most [`LANE_BODY`], no `Transfer-Encoding`, `Expect` or `Upgrade`. Anything else on the
//! connection, before or after, is hyper's, which gets the bytes already read.

use super::{whole_response, Served};
use crate::transport::Socket;
use axum::body::Body;
use axum::http::{header, Request, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures::SinkExt;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Largest body the lane reads; a publish with a longer one is hyper's (which reads it, up to the
/// publish limit, or refuses it).
pub(super) const LANE_BODY: usize = 1024 * 1024;

/// A publish request whose head was read: what the lane needs to read its body and answer.
pub(super) struct Publish {
    /// The request, its body still to be read.
    pub request: Request<()>,
    /// Bytes of the head, at the start of the buffer.
    pub head_len: usize,
    /// Bytes of the body, declared by `Content-Length`.
    pub body_len: usize,
    /// The client asked to close the connection after this request.
    pub close: bool,
}

impl Served {
    /// Runs `publish` through the router, its body read from `buf` (which holds its head and
    /// what followed it) and then from the socket, and writes the answer. `buf` is left with what
    /// the client sent after the body (a pipelined request). True when the connection stays open
    /// for another request.
    ///
    /// A body that came whole with its head is handed over as it is. One still on its way is
    /// streamed to the handler as it arrives, as hyper does: the caller's credentials and the
    /// content type are checked before the hub waits for a byte of it, and the handler's own
    /// timer bounds how long it may take (408). An answer given before the body was read whole
    /// ends the connection.
    pub(super) async fn publish<S: Socket>(
        &self,
        socket: &mut S,
        buf: &mut BytesMut,
        date: &mut Date,
        publish: Publish,
    ) -> bool {
        let Publish { request, head_len, body_len, close } = publish;
        buf.advance(head_len);
        let (response, whole) = if buf.len() >= body_len {
            let body = buf.split_to(body_len).freeze();
            (self.route(request.map(|()| Body::from(body))).await, true)
        } else {
            let (sender, receiver) = futures::channel::mpsc::channel(1);
            let routed = self.route(request.map(|()| Body::from_stream(receiver)));
            let pumped = pump(socket, buf, body_len, sender);
            tokio::pin!(routed, pumped);
            let mut whole = false;
            let response = loop {
                tokio::select! {
                    response = &mut routed => break response,
                    done = &mut pumped, if !whole => match done {
                        Ok(()) => whole = true,
                        // The client left (or broke) within its body: nobody is there to answer.
                        Err(_) => return false,
                    },
                }
            };
            (response, whole)
        };
        // At shutdown the answer is the connection's last.
        let close = close || !whole || self.stopping.is_cancelled();
        self.answer(socket, response, date.now(), close).await
    }

    async fn route(&self, request: Request<Body>) -> Response<Body> {
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Writes `response` whole, with its length, `date` and, when `close` or when the router
    /// says so, `connection: close`; within the write timeout. True when it was written and the
    /// connection may go on.
    async fn answer<S: Socket>(&self, socket: &mut S, response: Response<Body>, date: &str, close: bool) -> bool {
        let closes = close
            || response.headers().get(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let (parts, body) = response.into_parts();
        // The router's answers to a publish are short JSON, held whole.
        let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else { return false };
        let out = whole_response(&parts, &body, Some(date), closes);
        let write = async {
            socket.write_all(&out).await?;
            if closes {
                socket.shutdown().await?;
            }
            io::Result::Ok(())
        };
        matches!(tokio::time::timeout(self.settings.write_timeout, write).await, Ok(Ok(()))) && !closes
    }
}

/// Passes a body on to its handler as it arrives: what `buf` holds of it, then what the socket
/// brings, until `body_len` bytes in all. What follows the body stays in `buf`. Ends with an error
/// when the client closes or breaks the connection first; a handler that stopped reading (it
/// answered already) only stops the sending.
async fn pump<S: Socket>(
    socket: &mut S,
    buf: &mut BytesMut,
    mut body_len: usize,
    mut sender: futures::channel::mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    loop {
        let chunk = buf.split_to(buf.len().min(body_len)).freeze();
        body_len -= chunk.len();
        if !chunk.is_empty() && sender.send(Ok(chunk)).await.is_err() {
            // The handler answered without the rest: the connection closes after the answer.
            return std::future::pending().await;
        }
        if body_len == 0 {
            return Ok(());
        }
        buf.reserve(body_len.min(64 * 1024));
        if socket.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The `date` of a connection's answers, formatted once a second rather than once an answer.
#[derive(Default)]
pub(super) struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = std::time::SystemTime::now();
        let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    /// The cached date is the current one, as an HTTP date.
    #[test]
    fn the_date_is_now() {
        let mut date = Date::default();
        let parsed = httpdate::parse_http_date(date.now()).expect("an HTTP date");
        let off = std::time::SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off < std::time::Duration::from_secs(2), "{off:?} behind");
        date.second -= 10;
        date.text = "stale".into();
        assert!(httpdate::parse_http_date(date.now()).is_ok(), "refreshed once its second has passed");
    }
}
