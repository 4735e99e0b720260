//! An event stream on the wire: how a stream's frames reach its reader, and every way a stream
//! ends. It knows nothing of routes: the router opens a [`Frames`] and either leaves it in a
//! [`TakeOver`] for the listener, which writes it to the socket with [`write_stream`], or wraps it
//! in a [`body`] for hyper (HTTP/2, or a stream asked for after other requests on a connection).
//!
//! A stream ends, on either path, when
//! - its deadline passes (`--stream-timeout`, or its credential's expiry): a clean end;
//! - the hub shuts down: a clean end;
//! - its reader falls more than `--max-queue` behind: at once, even in the middle of a write;
//! - a write makes no progress for `--write-timeout`: at once;
//! - its reader leaves, or sends more than [`MAX_HEARD`] bytes on a stream's connection.
//!
//! A clean end writes the body's end (the last chunk); any other end resets the connection, so the
//! kernel frees at once what it still held for a reader that stopped reading.

use crate::hub::Subscription;
use app::sse;
use axum::body::Body;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The path of the event stream, for the router and for the listener that recognises it.
pub const STREAM_PATH: &str = "/stream-sse";
/// Mercure's subscribe (`GET`) and publish (`POST`) path.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// The publish path (the router's `/api` and its `/events`), for the listener that recognises it.
pub const PUBLISH_PATH: &str = "/api/events";

/// Whether a request target (path and query) is one of the stream paths.
pub fn is_stream_target(target: &str) -> bool {
    is_one_of(target, &[STREAM_PATH, MERCURE_PATH])
}

/// Whether a request target (path and query) is one of the publish paths.
pub fn is_publish_target(target: &str) -> bool {
    is_one_of(target, &[PUBLISH_PATH, MERCURE_PATH])
}

fn is_one_of(target: &str, paths: &[&str]) -> bool {
    paths.iter().any(|path| target.strip_prefix(path).is_some_and(|rest| rest.is_empty() || rest.starts_with('?')))
}

/// Most bytes a reader may send on a stream's connection after its request; past it, the stream
/// ends (an EventSource sends nothing at all).
pub const MAX_HEARD: usize = 4096;

/// How long streams live and how they are kept open and written.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    pub keep_alive: Option<Duration>,
    pub timeout: Option<Duration>,
    /// A write that makes no progress for this long ends the stream.
    pub write_timeout: Duration,
}

/// A socket a stream can be written to: cleartext TCP, or TLS over it.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Makes the coming close a reset, so the kernel drops what it still holds for this reader.
    fn reset_on_close(&self);
}

impl Socket for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        let _ = self.set_zero_linger();
    }
}

impl<S: Socket> Socket for tokio_rustls::server::TlsStream<S> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
    }
}

/// A TLS connection is moved through a stream's futures boxed (see `listener`).
impl<S: Socket> Socket for Box<S> {
    fn reset_on_close(&self) {
        (**self).reset_on_close();
    }
}

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Deadline, credential expiry or shutdown: the body ended cleanly.
    Finished,
    /// The reader closed the connection, or it broke.
    ReaderLeft,
    /// The reader sent more than [`MAX_HEARD`] bytes on the stream's connection.
    ReaderTalked,
    /// A write made no progress for the write timeout.
    Stalled,
    /// The reader fell too far behind, or the deadline passed, while a write was still waiting.
    Cut,
}

impl End {
    /// Whether the connection is reset rather than closed.
    fn resets(self) -> bool {
        !matches!(self, End::Finished | End::ReaderLeft)
    }
}

/// A request extension the cleartext listener sets when it will write the stream's body to the
/// socket itself: the handler leaves the body here instead of in the response.
#[derive(Clone, Default)]
pub struct TakeOver(Arc<Mutex<Option<Frames>>>);

impl TakeOver {
    pub fn put(&self, frames: Frames) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(frames);
    }

    /// The body the handler left, if the response is a stream.
    pub fn take(&self) -> Option<Frames> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A request extension for a stream hyper writes (HTTP/2, or HTTP/1.1 after other requests on
/// its connection): the connection's hang-up. hyper asks for a stream's body only while the
/// reader's window has room, so a reader that never opens it keeps the stream, and what hyper
/// holds for it, as long as the connection lives, though the hub ended it: when hyper has not
/// let go of a stream's body a write timeout after it ended, the connection is closed.
#[derive(Clone)]
pub struct Hangup(tokio_util::sync::CancellationToken);

impl Hangup {
    pub fn new(connection: tokio_util::sync::CancellationToken) -> Hangup {
        Hangup(connection)
    }
}

/// One stream's frames: the subscription's, a keep-alive comment after silence, and an end at
/// the stream's deadline, at shutdown, or when the reader fell too far behind. Timers are set
/// once per stream, not once per event.
pub struct Frames {
    subscription: Subscription,
    /// The earlier of the stream timeout and the credential's expiry.
    deadline: Option<Pin<Box<Sleep>>>,
    keep_alive: Option<KeepAlive>,
    write_timeout: Duration,
    /// Kept until the stream ends, then dropped: what must happen when it ends (a Mercure
    /// subscription announces its end).
    _held: Option<Box<dyn Send + Sync>>,
}

struct KeepAlive {
    period: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the stream last sent something; the timer is moved past it only when it fires.
    last_sent: Instant,
}

impl Frames {
    /// `expires` is when the stream's credential stops being valid.
    pub fn new(subscription: Subscription, settings: StreamSettings, expires: Option<Instant>) -> Frames {
        let now = Instant::now();
        // A timeout too long for the clock is no timeout.
        let timeout = settings.timeout.and_then(|t| now.checked_add(t));
        let deadline = match (timeout, expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let keep_alive = settings.keep_alive.map(|period| KeepAlive {
            period,
            timer: Box::pin(tokio::time::sleep(period)),
            last_sent: now,
        });
        Frames {
            subscription,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            keep_alive,
            write_timeout: settings.write_timeout,
            _held: None,
        }
    }

    /// Keeps `guard` until the stream ends, however it ends, and drops it then.
    pub fn holding(self, guard: impl Send + Sync + 'static) -> Frames {
        Frames { _held: Some(Box::new(guard)), ..self }
    }

    /// Moves the frames due now into `into` (emptied by the caller); `Ready(false)` when the
    /// stream is over. When nothing is due, `into`'s room is let go: a stream in a burst reuses
    /// it from one write to the next, an idle one keeps none.
    pub fn poll_take(&mut self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<bool> {
        let taken = self.poll_due(cx, into);
        if taken.is_pending() && into.is_empty() {
            *into = Vec::new();
        }
        taken
    }

    fn poll_due(&mut self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<bool> {
        if self.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(false);
        }
        if let Poll::Ready(more) = self.subscription.poll_take(cx, into) {
            if let Some(keep_alive) = &mut self.keep_alive {
                keep_alive.last_sent = Instant::now();
            }
            return Poll::Ready(more);
        }
        let Some(keep_alive) = &mut self.keep_alive else { return Poll::Pending };
        while keep_alive.timer.as_mut().poll(cx).is_ready() {
            let due = keep_alive.last_sent + keep_alive.period;
            if due <= Instant::now() {
                keep_alive.last_sent = Instant::now();
                keep_alive.timer.as_mut().reset(keep_alive.last_sent + keep_alive.period);
                into.push(Bytes::from_static(sse::keep_alive().as_bytes()));
                return Poll::Ready(true);
            }
            keep_alive.timer.as_mut().reset(due);
        }
        Poll::Pending
    }

    /// `Ready` once the stream must end whatever is being written: its deadline passed, or its
    /// reader fell too far behind. Takes no frame. (At shutdown the write under way finishes.)
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(());
        }
        self.subscription.poll_overflowed(cx)
    }

    /// Why a stream whose frames ran out ended: cut off (its reader fell too far behind), or a
    /// clean end (deadline, expiry, shutdown).
    fn ended(&self) -> End {
        if self.subscription.overflowed() {
            End::Cut
        } else {
            End::Finished
        }
    }
}

/// Writes a stream to `socket` until it ends: `head` (the response head), then its frames as
/// HTTP/1.1 chunks, everything pending in one chunk and one vectored write, straight from the
/// shared frames. The socket is closed (or reset) before the stream leaves the hub, so the hub
/// never counts fewer streams than it holds sockets for.
pub async fn write_stream<S: Socket>(mut socket: S, head: Vec<u8>, mut frames: Frames) -> End {
    let mut writer = Writer { stall: WriteStall::new(frames.write_timeout), heard: 0 };
    let mut end = writer.write(&mut socket, &mut frames, &[], &head, true).await.err();
    // Written: an idle stream does not keep its head (half a kilobyte).
    drop(head);
    let mut batch = Vec::new();
    while end.is_none() {
        let more = std::future::poll_fn(|cx| {
            if let Poll::Ready(end) = writer.poll_heard(&mut socket, cx) {
                return Poll::Ready(Err(end));
            }
            frames.poll_take(cx, &mut batch).map(Ok)
        })
        .await;
        end = Some(match more {
            Err(end) => end,
            Ok(false) if frames.ended() == End::Cut => End::Cut,
            Ok(false) => match writer.write(&mut socket, &mut frames, &[], b"0\r\n\r\n", false).await {
                Ok(()) => {
                    let _ = tokio::time::timeout(frames.write_timeout, socket.shutdown()).await;
                    End::Finished
                }
                Err(end) => end,
            },
            Ok(true) => match writer.write_chunk(&mut socket, &mut frames, &batch).await {
                Ok(()) => {
                    batch.clear();
                    continue;
                }
                Err(end) => end,
            },
        });
    }
    let end = end.unwrap_or(End::Finished);
    if end.resets() {
        socket.reset_on_close();
    }
    drop(socket);
    drop(frames);
    end
}

/// The state of one stream's writes: its write timeout, and how much its reader has said.
struct Writer {
    stall: WriteStall,
    heard: usize,
}

/// The write timeout: runs while a write waits without progress. Its timer is made the first
/// time a write waits, so a stream whose writes never wait keeps none.
pub(crate) struct WriteStall {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs: a write is waiting and has made no progress since it was set.
    armed: bool,
}

impl WriteStall {
    pub fn new(timeout: Duration) -> WriteStall {
        WriteStall { timeout, timer: None, armed: false }
    }

    /// A write went through (some bytes at least): the timeout starts again at the next wait.
    pub fn progressed(&mut self) {
        self.armed = false;
    }

    /// A write is waiting: `Ready` once it has waited `timeout` since the last progress.
    pub fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // A timeout too long for the clock never fires.
        let now = Instant::now();
        let at = now.checked_add(self.timeout).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.armed {
            timer.as_mut().reset(at);
            self.armed = true;
        }
        timer.as_mut().poll(cx)
    }
}

/// Most slices in one vectored write.
const MAX_SLICES: usize = 64;

impl Writer {
    /// `frames` as one chunk (size line, the frames, CRLF).
    async fn write_chunk<S: Socket>(
        &mut self,
        socket: &mut S,
        frames: &mut Frames,
        batch: &[Bytes],
    ) -> Result<(), End> {
        let length: usize = batch.iter().map(Bytes::len).sum();
        let (digits, used) = size_line(length);
        self.write(socket, frames, batch, &digits[digits.len() - used..], true).await
    }

    /// Writes `prefix`, then `batch`, then (when `batch` is not empty) CRLF, in as few writes as
    /// the socket takes. With `cuttable`, ends at once when the stream must end mid-write.
    async fn write<S: Socket>(
        &mut self,
        socket: &mut S,
        frames: &mut Frames,
        batch: &[Bytes],
        prefix: &[u8],
        cuttable: bool,
    ) -> Result<(), End> {
        let suffix: &[u8] = if batch.is_empty() { b"" } else { b"\r\n" };
        let whole = prefix.len() + batch.iter().map(Bytes::len).sum::<usize>() + suffix.len();
        let mut written = 0;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(end) = self.poll_heard(socket, cx) {
                return Poll::Ready(Err(end));
            }
            if cuttable && frames.poll_cut(cx).is_ready() {
                return Poll::Ready(Err(End::Cut));
            }
            while written < whole {
                // The slices are built inside the poll, on the stack: an idle stream keeps none.
                let parts =
                    std::iter::once(prefix).chain(batch.iter().map(|frame| &frame[..])).chain(std::iter::once(suffix));
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
                match Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(End::ReaderLeft)),
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        self.stall.progressed();
                    }
                    Poll::Pending => return self.stall.poll_waiting(cx).map(|()| Err(End::Stalled)),
                }
            }
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.stall.progressed();
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(_)) => Poll::Ready(Err(End::ReaderLeft)),
                Poll::Pending => self.stall.poll_waiting(cx).map(|()| Err(End::Stalled)),
            }
        })
        .await
    }

    /// Reads and drops what the reader sends. `Ready` when the reader left, or said too much.
    /// Polled with the frames, so waiting costs no future per event: the socket keeps the waker.
    fn poll_heard<S: Socket>(&mut self, socket: &mut S, cx: &mut Context<'_>) -> Poll<End> {
        let mut sink = [0u8; 512];
        loop {
            let mut buf = ReadBuf::new(&mut sink);
            match Pin::new(&mut *socket).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(End::ReaderLeft),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(End::ReaderLeft),
                Poll::Ready(Ok(())) => {
                    self.heard += buf.filled().len();
                    if self.heard > MAX_HEARD {
                        return Poll::Ready(End::ReaderTalked);
                    }
                }
            }
        }
    }
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

/// A stream's body for hyper, which writes it itself. A task moves the frames, a chunk at a
/// time, into a one-place [`Handoff`] that hyper drains as it writes, and applies the same ends
/// as [`write_stream`]: a chunk that hyper does not take within the write timeout ends the
/// stream, as does a reader too far behind, the deadline or shutdown, whether or not hyper is
/// polling the body. Any end but a clean one is an error of the body, so hyper aborts it
/// (HTTP/1.1: the connection; HTTP/2: the stream) instead of ending it as if nothing were
/// missing. (A channel here cost 1.3 KB per idle stream: its first block of 32 slots.)
pub fn body(frames: Frames, hangup: Option<Hangup>) -> Body {
    let handoff = Arc::new(Handoff::default());
    tokio::spawn(feed(frames, Arc::clone(&handoff), hangup));
    Body::new(Fed(handoff))
}

/// Moves the frames into `handoff` until the stream ends or the body is dropped. Not an async
/// fn: one keeps its arguments apart from its locals, and the frames would be held twice.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn feed(mut frames: Frames, handoff: Arc<Handoff>, hangup: Option<Hangup>) -> impl Future<Output = ()> + Send {
    async move {
        // The write timeout's timer is made the first time hyper is slow to take a chunk: an
        // idle stream's task keeps none (inline, a timer is 112 bytes of every stream's task).
        let mut stall = WriteStall::new(frames.write_timeout);
        let mut batch = Vec::new();
        let clean = loop {
            let more = std::future::poll_fn(|cx| {
                if handoff.poll_dropped(cx).is_ready() {
                    return Poll::Ready(None);
                }
                frames.poll_take(cx, &mut batch).map(Some)
            })
            .await;
            match more {
                // The body is gone: hyper is done with the stream.
                None => break true,
                Some(false) => break frames.ended() == End::Finished,
                Some(true) => {}
            }
            let mut chunk = Some(concat(&mut batch));
            let handed = std::future::poll_fn(|cx| {
                if frames.poll_cut(cx).is_ready() {
                    return Poll::Ready(false);
                }
                match handoff.poll_put(cx, &mut chunk) {
                    Poll::Ready(put) => Poll::Ready(put),
                    // hyper has not taken the last chunk: the write timeout runs.
                    Poll::Pending => stall.poll_waiting(cx).map(|()| false),
                }
            })
            .await;
            if !handed {
                break false;
            }
            stall.progressed();
        };
        handoff.end(clean);
        drop(frames);
        let Some(Hangup(connection)) = hangup else { return };
        // The stream has left the hub; hyper must now let go of its body (it asks for the end
        // once the reader's window has room) within the write timeout, or lose the connection.
        stall.progressed();
        let released = std::future::poll_fn(|cx| {
            if handoff.poll_dropped(cx).is_ready() {
                return Poll::Ready(true);
            }
            stall.poll_waiting(cx).map(|()| false)
        })
        .await;
        if !released {
            tracing::debug!("a stream's reader kept its window shut past its end: closing the connection");
            connection.cancel();
        }
    }
}

/// One chunk on its way from a stream's task to hyper, and how the stream ended.
#[derive(Default)]
struct Handoff {
    // A std mutex: held to put or take one chunk, never across an await.
    state: Mutex<HandoffState>,
}

#[derive(Default)]
struct HandoffState {
    chunk: Option<Bytes>,
    /// `Some(clean)` once the task is done.
    ended: Option<bool>,
    /// The body was dropped.
    dropped: bool,
    /// Woken when a chunk or the end arrives.
    body: Option<std::task::Waker>,
    /// Woken when the chunk is taken or the body dropped.
    task: Option<std::task::Waker>,
}

impl Handoff {
    fn state(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        // Every section leaves the state whole, so a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `chunk` once the last one was taken; `Ready(false)` when the body is gone.
    fn poll_put(&self, cx: &mut Context<'_>, chunk: &mut Option<Bytes>) -> Poll<bool> {
        let mut state = self.state();
        if state.dropped {
            return Poll::Ready(false);
        }
        if state.chunk.is_some() {
            state.task = Some(cx.waker().clone());
            return Poll::Pending;
        }
        state.chunk = chunk.take();
        if let Some(body) = state.body.take() {
            body.wake();
        }
        Poll::Ready(true)
    }

    /// `Ready` once the body was dropped.
    fn poll_dropped(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.dropped {
            return Poll::Ready(());
        }
        state.task = Some(cx.waker().clone());
        Poll::Pending
    }

    fn end(&self, clean: bool) {
        let mut state = self.state();
        state.ended = Some(clean);
        state.task = None;
        if let Some(body) = state.body.take() {
            body.wake();
        }
    }
}

/// The body hyper polls: the chunks the task hands over, then the end (an error once, if the
/// stream was cut).
struct Fed(Arc<Handoff>);

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let mut state = self.0.state();
        if let Some(chunk) = state.chunk.take() {
            if let Some(task) = state.task.take() {
                task.wake();
            }
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        match state.ended {
            Some(true) => Poll::Ready(None),
            Some(false) => {
                // Once: hyper stops at the error.
                state.ended = Some(true);
                Poll::Ready(Some(Err(io::Error::other("the stream was cut off"))))
            }
            None => {
                state.body = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.dropped = true;
        if let Some(task) = state.task.take() {
            task.wake();
        }
    }
}

/// The frames taken at once, as one chunk (one frame is passed on as it is).
fn concat(batch: &mut Vec<Bytes>) -> Bytes {
    if batch.len() == 1 {
        return batch.pop().unwrap_or_default();
    }
    let mut chunk = bytes::BytesMut::with_capacity(batch.iter().map(Bytes::len).sum());
    for frame in batch.drain(..) {
        chunk.extend_from_slice(&frame);
    }
    chunk.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, HubSettings};
    use app::event::UserName;

    /// A stream ends at its credential's deadline, to the millisecond, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_its_deadline() {
        let settings = HubSettings {
            history: 8,
            history_bytes: 1 << 20,
            history_ttl: None,
            retry: Duration::from_secs(3),
            max_queue: 1 << 20,
            max_per_user: 1,
            max_connections: 1,
        };
        let hub = Hub::new(settings);
        let subscription = hub.subscribe(crate::hub::Interest::user(UserName::new("amy").unwrap()), None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let settings = StreamSettings { keep_alive: None, timeout: None, write_timeout: Duration::from_secs(30) };
        let mut frames = Frames::new(subscription, settings, Some(deadline));
        let mut taken = Vec::new();
        let mut take = |frames: &mut Frames| {
            taken.clear();
            let waker = futures::task::noop_waker();
            frames.poll_take(&mut Context::from_waker(&waker), &mut taken)
        };
        assert_eq!(take(&mut frames), Poll::Ready(true), "the preamble");
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(take(&mut frames), Poll::Pending, "open a millisecond before");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(take(&mut frames), Poll::Ready(false), "ended at the deadline");
    }

    /// An HTTP/2 stream's task (which applies its ends while hyper does not poll the body) holds
    /// its frames once (as an async fn it held them twice, 736 bytes in all) and no timer until
    /// hyper is slow to take a chunk (inline, 488 bytes: a 640-byte task instead of 512).
    #[test]
    fn an_http2_stream_task_stays_small() {
        fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(|(frames, handoff, hangup): (Frames, Arc<Handoff>, Option<Hangup>)| {
            feed(frames, handoff, hangup)
        });
        assert!(size <= 384, "an HTTP/2 stream's task is {size} bytes");
    }

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
