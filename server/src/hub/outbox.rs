//! One stream's outgoing bytes. Publishers append frames without waiting; the stream takes
//! everything pending in one write. The queue is bounded: a reader that falls too far behind is
//! cut off, so nobody else ever waits for it.

use bytes::{Bytes, BytesMut};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    // A std mutex: held only to append or take bytes, never across an await.
    pending: Mutex<Pending>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: BytesMut,
    overflowed: bool,
}

/// The stream's reader fell more than the limit behind and has been cut off.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

impl Outbox {
    /// Appends `frame` unless that would put more than `limit` bytes in waiting.
    pub fn push(&self, frame: &[u8], limit: usize) -> Result<(), Overflow> {
        let result = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.overflowed {
                return Err(Overflow);
            }
            if pending.bytes.len() + frame.len() > limit {
                pending.overflowed = true;
                pending.bytes = BytesMut::new();
                Err(Overflow)
            } else {
                pending.bytes.extend_from_slice(frame);
                Ok(())
            }
        };
        self.ready.notify_one();
        result
    }

    /// Waits for pending bytes and takes them all; `None` once the reader was cut off.
    pub async fn next(&self) -> Option<Bytes> {
        loop {
            {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if pending.overflowed {
                    return None;
                }
                if !pending.bytes.is_empty() {
                    return Some(pending.bytes.split().freeze());
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames pushed before a read come out as one coalesced chunk, in order.
    #[tokio::test]
    async fn pending_frames_are_coalesced() {
        let outbox = Outbox::default();
        outbox.push(b"a\n\n", 100).unwrap();
        outbox.push(b"b\n\n", 100).unwrap();
        assert_eq!(outbox.next().await.unwrap(), "a\n\nb\n\n");
    }

    /// Past the limit the outbox refuses and the reader learns it is cut off.
    #[tokio::test]
    async fn a_full_outbox_cuts_the_reader_off() {
        let outbox = Outbox::default();
        outbox.push(&[b'x'; 8], 10).unwrap();
        assert_eq!(outbox.push(&[b'y'; 8], 10), Err(Overflow));
        assert_eq!(outbox.next().await, None);
    }
}
