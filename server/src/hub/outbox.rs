//! One stream's outgoing frames. Publishers append without waiting; the stream takes everything
//! pending at once and writes it in one go. Frames are shared, not copied: every stream holds
//! the same encoded bytes of an event. The queue is bounded: a reader that falls too far behind
//! is cut off, so nobody else ever waits for it.
//!
//! While its stream replays the history, an outbox queues nothing: the events published
//! meanwhile are in the history, and the replay reaches them in order.

use bytes::Bytes;
use futures::task::AtomicWaker;
use std::sync::Mutex;
use std::task::{Context, Poll};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    // A std mutex: held only to append or swap a vector, never across an await.
    pending: Mutex<Pending>,
    /// The stream's task, woken when the outbox stops being empty or is closed.
    reader: AtomicWaker,
}

#[derive(Debug, Default)]
struct Pending {
    frames: Vec<Bytes>,
    bytes: usize,
    /// The reader fell behind or the hub is shutting down: no more frames, ever.
    closed: bool,
    /// Closed because the reader fell more than the limit behind (not by shutdown).
    overflowed: bool,
    /// The stream is still replaying: pushes are taken as delivered and not queued.
    replaying: bool,
}

/// The stream's reader fell more than the limit behind, or the outbox was closed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed {
    /// This push overflowed it (it was open until now).
    pub overflowed_now: bool,
}

impl Outbox {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every section under the lock leaves `Pending` whole, so a poisoned lock is consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An outbox for a stream that replays first: it queues nothing until [`Outbox::go_live`].
    pub fn replaying() -> Outbox {
        Outbox { pending: Mutex::new(Pending { replaying: true, ..Pending::default() }), reader: AtomicWaker::new() }
    }

    /// The replay has caught up: queue from the next push on. Called under the hub's lock, so
    /// no event falls between the replay's last and the first queued.
    pub fn go_live(&self) {
        self.pending().replaying = false;
    }

    pub fn is_closed(&self) -> bool {
        self.pending().closed
    }

    /// Whether the outbox was closed because its reader fell too far behind.
    pub fn overflowed(&self) -> bool {
        self.pending().overflowed
    }

    /// Bytes waiting for the reader.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.pending().bytes
    }

    /// Appends `frame` unless that would put more than `limit` bytes in waiting, in which case
    /// the outbox is closed.
    pub fn push(&self, frame: &Bytes, limit: usize) -> Result<(), Closed> {
        let was_empty = {
            let mut pending = self.pending();
            if pending.closed {
                return Err(Closed { overflowed_now: false });
            }
            if pending.replaying {
                return Ok(());
            }
            if pending.bytes + frame.len() > limit {
                *pending = Pending { closed: true, overflowed: true, ..Pending::default() };
                drop(pending);
                self.reader.wake();
                return Err(Closed { overflowed_now: true });
            }
            pending.frames.push(frame.clone());
            pending.bytes += frame.len();
            pending.frames.len() == 1
        };
        // A non-empty outbox has already woken its reader, who has not taken it yet.
        if was_empty {
            self.reader.wake();
        }
        Ok(())
    }

    /// Ends the stream after what it already took.
    pub fn close(&self) {
        *self.pending() = Pending { closed: true, ..Pending::default() };
        self.reader.wake();
    }

    /// `Ready` once the outbox overflowed (its reader fell too far behind); takes nothing, so a
    /// writer can watch for it in the middle of a write. A close at shutdown is not this: it
    /// lets the write under way finish, then the stream ends cleanly.
    pub fn poll_overflowed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.reader.register(cx.waker());
        if self.pending().overflowed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves every pending frame into `into` (which the caller has emptied, so the two vectors
    /// trade their allocations). `Ready(false)` once closed.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<bool> {
        // Register before looking, so a push in between still wakes this task.
        self.reader.register(cx.waker());
        let mut pending = self.pending();
        if pending.closed {
            return Poll::Ready(false);
        }
        if pending.frames.is_empty() {
            return Poll::Pending;
        }
        std::mem::swap(&mut pending.frames, into);
        pending.bytes = 0;
        Poll::Ready(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take(outbox: &Outbox) -> Option<Vec<Bytes>> {
        let mut frames = Vec::new();
        std::future::poll_fn(|cx| outbox.poll_take(cx, &mut frames)).await.then_some(frames)
    }

    /// Frames pushed before a read come out together, in order, sharing the pushed bytes.
    #[tokio::test]
    async fn pending_frames_are_taken_together() {
        let outbox = Outbox::default();
        let (a, b) = (Bytes::from_static(b"a\n\n"), Bytes::from_static(b"b\n\n"));
        outbox.push(&a, 100).unwrap();
        outbox.push(&b, 100).unwrap();
        let taken = take(&outbox).await.unwrap();
        assert_eq!(taken, [a.clone(), b]);
        assert_eq!(taken[0].as_ptr(), a.as_ptr(), "shared, not copied");
    }

    /// A reader waiting on an empty outbox wakes for the next push.
    #[tokio::test]
    async fn a_waiting_reader_wakes_on_push() {
        let outbox = std::sync::Arc::new(Outbox::default());
        let reader = tokio::spawn({
            let outbox = outbox.clone();
            async move { take(&outbox).await }
        });
        tokio::task::yield_now().await;
        outbox.push(&Bytes::from_static(b"late\n\n"), 100).unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), [Bytes::from_static(b"late\n\n")]);
    }

    /// Past the limit the outbox refuses and the reader learns it is cut off.
    #[tokio::test]
    async fn a_full_outbox_cuts_the_reader_off() {
        let outbox = Outbox::default();
        outbox.push(&Bytes::from_static(&[b'x'; 8]), 10).unwrap();
        assert_eq!(outbox.push(&Bytes::from_static(&[b'y'; 8]), 10), Err(Closed { overflowed_now: true }));
        assert_eq!(outbox.push(&Bytes::from_static(b"z"), 10), Err(Closed { overflowed_now: false }));
        assert_eq!(take(&outbox).await, None);
    }

    /// A replaying outbox queues nothing until it goes live, then queues as usual.
    #[tokio::test]
    async fn a_replaying_outbox_queues_only_once_live() {
        let outbox = Outbox::replaying();
        outbox.push(&Bytes::from_static(b"in the history\n\n"), 10).unwrap();
        outbox.go_live();
        outbox.push(&Bytes::from_static(b"live\n\n"), 10).unwrap();
        assert_eq!(take(&outbox).await.unwrap(), [Bytes::from_static(b"live\n\n")]);
    }

    /// A closed outbox ends its reader and takes nothing more.
    #[tokio::test]
    async fn close_ends_the_reader() {
        let outbox = Outbox::default();
        outbox.close();
        assert_eq!(outbox.push(&Bytes::from_static(b"x"), 10), Err(Closed { overflowed_now: false }));
        assert_eq!(take(&outbox).await, None);
    }
}
