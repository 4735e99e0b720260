//! The cap on connections that are not streams. Each one holds a [`Slot`] from accept until it
//! becomes a stream (counted by the hub from then on) or closes. At the cap, the connection idle
//! longest is closed to make room; with none idle, the newcomer is turned away. Idle means
//! nothing in flight: waiting for a first request, or between requests. A connection carrying an
//! event stream through hyper (HTTP/2) leaves the cap while its streams are open, since the hub
//! counts those.
//!
//! A connection only counts as idle once it has been seen waiting on its client: from accept
//! until its task first reads, and while the router answers, it is the hub that is slow, and
//! closing it then would turn away the clients of a reconnect storm for the hub's own delay.

use crate::transport::Socket;
use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response};
use axum::Router;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a connection must have waited on its client, with nothing of a request under way,
/// before it is closed to make room: a client that connects sends its request at once.
const EVICT_AFTER: Duration = Duration::from_millis(20);
/// The same for a connection in the middle of a request head or a TLS handshake, counted from
/// the last bytes it sent: a client under load may take a moment between two writes.
const EVICT_PARTIAL_AFTER: Duration = Duration::from_millis(200);
/// `idle_since` of a connection whose task has not yet looked at its socket.
const UNSEEN: u64 = u64::MAX;
/// How long a newcomer waits for room when every connection is busy, before it is turned away.
const ADMIT_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Gate {
    cap: usize,
    /// Signalled when a slot is given up.
    freed: tokio::sync::Notify,
    // A std mutex: held to insert, remove or scan at most `cap` entries, never across an await.
    open: Mutex<Open>,
    epoch: Instant,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// The connections under the cap, by id.
    entries: HashMap<u64, Arc<Entry>>,
}

struct Entry {
    /// Requests in flight (their responses' bodies included).
    busy: AtomicUsize,
    /// Event streams open on the connection, through hyper.
    streams: AtomicUsize,
    /// Since when the connection has waited on its client (its last bytes, or `busy` falling to
    /// zero), in milliseconds since the gate's epoch; [`UNSEEN`] until its task first reads.
    idle_since: AtomicU64,
    /// Bytes of a request (or of a TLS handshake) arrived and no request has been served since.
    partial: std::sync::atomic::AtomicBool,
    /// The gate's epoch, for the socket's reads to tell the time.
    epoch: Instant,
    /// When the connection was admitted, in milliseconds since the epoch.
    admitted: u64,
    /// Cancelled to close the connection.
    close: CancellationToken,
    /// False once the connection's slot is gone.
    alive: std::sync::atomic::AtomicBool,
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

impl Entry {
    /// Whether the connection may be closed to make room: nothing in flight, seen waiting on
    /// its client, and for long enough.
    fn evictable(&self, now: u64) -> bool {
        if self.busy.load(Ordering::Acquire) != 0 {
            return false;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        let after = if self.partial.load(Ordering::Acquire) { EVICT_PARTIAL_AFTER } else { EVICT_AFTER };
        since != UNSEEN && now.saturating_sub(since) >= after.as_millis() as u64
    }

    /// The connection's task read its socket: `heard` bytes, or found nothing there yet.
    fn read(&self, heard: bool) {
        let now = millis_since(self.epoch);
        if heard {
            if self.busy.load(Ordering::Acquire) == 0 {
                self.partial.store(true, Ordering::Release);
                self.idle_since.store(now, Ordering::Release);
            }
        } else {
            // Only the first wait starts the clock; later ones do not restart it.
            let _ = self.idle_since.compare_exchange(UNSEEN, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

impl Gate {
    pub fn new(cap: usize) -> Arc<Gate> {
        Arc::new(Gate {
            cap,
            freed: tokio::sync::Notify::new(),
            open: Mutex::new(Open::default()),
            epoch: Instant::now(),
        })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // Every section leaves the map whole, so a poisoned lock is consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// A slot for a new connection. At the cap, the connection idle longest is closed to make
    /// room, once it has been idle for [`EVICT_AFTER`]; until one has, the caller waits (new
    /// connections wait in the kernel's accept queue meanwhile). `None` when every connection
    /// stayed busy for [`ADMIT_WAIT`].
    pub async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let give_up = Instant::now() + ADMIT_WAIT;
        loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.try_admit() {
                return Some(slot);
            }
            let now = Instant::now();
            if now >= give_up {
                return None;
            }
            let recheck = (now + EVICT_AFTER / 4).min(give_up);
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(recheck) => {}
            }
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open();
        if open.entries.len() >= self.cap {
            let now = self.now();
            let idlest = open
                .entries
                .iter()
                .filter(|(_, e)| e.evictable(now))
                .min_by_key(|(_, e)| e.idle_since.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            if let Some(evicted) = open.entries.remove(&idlest) {
                evicted.close.cancel();
            }
        }
        let id = open.next;
        open.next += 1;
        let entry = Arc::new(Entry {
            busy: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            idle_since: AtomicU64::new(UNSEEN),
            partial: std::sync::atomic::AtomicBool::new(false),
            epoch: self.epoch,
            admitted: self.now(),
            close: CancellationToken::new(),
            alive: std::sync::atomic::AtomicBool::new(true),
        });
        open.entries.insert(id, Arc::clone(&entry));
        Some(Slot(Arc::new(SlotInner { gate: Arc::clone(self), id, entry })))
    }

    /// Closes, every second, the connections idle for longer than `idle`, until `stopping`.
    pub async fn sweep(self: Arc<Self>, idle: Duration, stopping: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(1).min(idle));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = idle.as_millis() as u64;
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = self.now();
            self.open().entries.retain(|_, entry| {
                // `busy` first: a request that ends in between then reads as busy, not long idle.
                let free = entry.busy.load(Ordering::Acquire) == 0;
                // A connection not yet seen by its task counts from its admission.
                let since = entry.idle_since.load(Ordering::Acquire);
                let since = if since == UNSEEN { entry.admitted } else { since };
                let idle_for = now.saturating_sub(since);
                let stale = free && idle_for >= idle;
                if stale {
                    entry.close.cancel();
                }
                !stale
            });
        }
    }
}

/// One connection's place under the cap; dropping the last clone gives it up.
#[derive(Clone)]
pub(super) struct Slot(Arc<SlotInner>);

struct SlotInner {
    gate: Arc<Gate>,
    id: u64,
    entry: Arc<Entry>,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut open = self.gate.open();
        self.entry.alive.store(false, Ordering::Release);
        if open.entries.remove(&self.id).is_some() {
            self.gate.freed.notify_one();
        }
    }
}

impl Slot {
    /// Resolves when the gate closes this connection (idle too long, or to make room).
    pub async fn closed(&self) {
        self.0.entry.close.cancelled().await;
    }

    /// What closes this connection from a stream's task, as the gate closes it.
    pub fn hangup(&self) -> crate::transport::Hangup {
        crate::transport::Hangup::new(self.0.entry.close.clone())
    }

    /// The connection's socket, its reads telling the gate when the connection waits on its
    /// client (see [`Watched`]).
    pub fn watch<S>(&self, socket: S) -> Watched<S> {
        Watched { socket, entry: Some(Arc::clone(&self.0.entry)) }
    }

    /// Marks a request in flight until the guard drops.
    pub fn busy(&self) -> Busy {
        self.0.entry.busy.fetch_add(1, Ordering::AcqRel);
        Busy { slot: self.clone(), streaming: false }
    }
}

/// A request in flight on a connection, and whether it is an event stream.
pub(super) struct Busy {
    slot: Slot,
    streaming: bool,
}

impl Busy {
    /// The request is an event stream: while it lasts, the connection leaves the cap.
    fn streaming(mut self) -> Busy {
        let inner = &self.slot.0;
        if inner.entry.streams.fetch_add(1, Ordering::AcqRel) == 0
            && inner.gate.open().entries.remove(&inner.id).is_some()
        {
            inner.gate.freed.notify_one();
        }
        self.streaming = true;
        self
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let inner = &self.slot.0;
        let gate = &inner.gate;
        if self.streaming && inner.entry.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut open = gate.open();
            if inner.entry.alive.load(Ordering::Acquire) {
                open.entries.insert(inner.id, Arc::clone(&inner.entry));
            }
        }
        inner.entry.partial.store(false, Ordering::Release);
        inner.entry.idle_since.store(gate.now(), Ordering::Release);
        inner.entry.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket that tells its gate entry what each read found. Once the connection
/// has left the gate for good (it became a lean stream), the entry is let go at the next read.
pub(super) struct Watched<S> {
    socket: S,
    entry: Option<Arc<Entry>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.socket).poll_read(cx, buf);
        if this.entry.as_ref().is_some_and(|e| !e.alive.load(Ordering::Acquire)) {
            this.entry = None;
        }
        if let Some(entry) = &this.entry {
            match &polled {
                Poll::Pending => entry.read(false),
                Poll::Ready(Ok(())) if buf.filled().len() > before => entry.read(true),
                Poll::Ready(_) => {}
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

impl<S: Socket> Socket for Watched<S> {
    fn reset_on_close(&self) {
        self.socket.reset_on_close();
    }
}

/// The router as hyper's service, marking each request busy until its response body is done.
#[derive(Clone)]
pub(super) struct Tracking {
    router: Router,
    slot: Slot,
}

impl Tracking {
    pub fn new(router: Router, slot: Slot) -> Tracking {
        Tracking { router, slot }
    }
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for Tracking {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<hyper::body::Incoming>) -> Self::Future {
        // A stream hyper writes can close this connection if hyper holds it past its end.
        if request.method() == axum::http::Method::GET {
            request.extensions_mut().insert(self.slot.hangup());
        }
        let busy = self.slot.busy();
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            let streaming = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let busy = if streaming { busy.streaming() } else { busy };
            Ok(response.map(|body| Body::new(Guarded { body, _busy: busy })))
        })
    }
}

/// A response body that keeps its request marked busy until it is done or dropped.
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the cap the idlest connection is closed for a newcomer once it has idled a moment;
    /// with every one busy, the newcomer is refused after a wait; a request done makes room.
    #[tokio::test(start_paused = true)]
    async fn the_cap_closes_the_idlest_or_refuses() {
        let gate = Gate::new(2);
        let first = gate.admit().await.unwrap();
        first.0.entry.read(false);
        tokio::time::advance(Duration::from_millis(10)).await;
        let second = gate.admit().await.unwrap();
        second.0.entry.read(false);
        let busy = second.busy();
        let started = Instant::now();
        let third = gate.admit().await.expect("the idle first makes room");
        assert!(started.elapsed() >= EVICT_AFTER - Duration::from_millis(10), "not before it idled a while");
        assert!(first.0.entry.close.is_cancelled(), "the idle one was closed");
        assert!(!second.0.entry.close.is_cancelled());
        third.0.entry.read(false);
        let _busy_too = third.busy();
        assert!(gate.admit().await.is_none(), "every connection is busy");
        drop(busy);
        assert!(gate.admit().await.is_some(), "the second is idle again");
        drop(first);
    }

    /// A connection is not closed to make room before its task has looked at its socket, nor
    /// in the middle of a head until it has been silent a while longer.
    #[tokio::test(start_paused = true)]
    async fn only_connections_seen_waiting_are_closed() {
        let gate = Gate::new(1);
        let unseen = gate.admit().await.unwrap();
        assert!(gate.admit().await.is_none(), "a connection its task has not read yet stays");
        assert!(!unseen.0.entry.close.is_cancelled());
        unseen.0.entry.read(false);
        unseen.0.entry.read(true);
        tokio::time::advance(EVICT_AFTER).await;
        assert!(!unseen.0.entry.evictable(gate.now()), "half a head: not yet");
        let started = Instant::now();
        let next = gate.admit().await.expect("a head that stopped for long makes room");
        assert!(started.elapsed() >= EVICT_PARTIAL_AFTER - EVICT_AFTER - Duration::from_millis(10));
        assert!(unseen.0.entry.close.is_cancelled());
        drop(next);
    }

    /// A newcomer waiting at the cap gets the slot of a connection that closes.
    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_admits_a_waiting_one() {
        let gate = Gate::new(1);
        let only = gate.admit().await.unwrap();
        let busy = only.busy();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(busy);
        drop(only);
        assert!(waiting.await.unwrap());
    }

    /// A connection carrying a stream leaves the cap until the stream ends.
    #[tokio::test]
    async fn streams_leave_the_cap() {
        let gate = Gate::new(1);
        let slot = gate.admit().await.unwrap();
        let stream = slot.busy().streaming();
        let other = gate.admit().await.expect("the streaming connection is not counted");
        assert!(!slot.0.entry.close.is_cancelled());
        drop(other);
        drop(stream);
        assert_eq!(gate.open().entries.len(), 1, "back under the cap when its stream ends");
    }

    /// The sweep closes connections idle past the limit and keeps busy ones.
    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_idle_connections() {
        let gate = Gate::new(10);
        let idle = gate.admit().await.unwrap();
        let working = gate.admit().await.unwrap();
        let _busy = working.busy();
        let stopping = CancellationToken::new();
        tokio::spawn(gate.clone().sweep(Duration::from_secs(5), stopping.clone()));
        tokio::time::timeout(Duration::from_secs(7), idle.closed()).await.expect("closed when idle");
        assert!(!working.0.entry.close.is_cancelled());
        stopping.cancel();
    }
}
