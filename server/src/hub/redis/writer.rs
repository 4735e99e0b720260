//! The node's publishing to Redis, grouped: one task takes every publish waiting on this node
//! and stores them as one stream entry (see `entry`), so many publishes share one append, one
//! write, one round trip and one reply, as the file store's writer shares one commit.
//!
//! Order: a group's events are in the order their publishes were queued, and a batch's events
//! are consecutive in it. Each publish is answered only after the append that stored it
//! returned, so a publisher that waits for its answer before the next publish (as HTTP does on
//! one connection) sees its events stored in order. A group is one entry: all of it is stored
//! or none is, so a 503 never hides an event that was stored.

use super::super::{EventId, Hub, PublishAck, StoreUnavailable};
use super::entry;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// Events one group holds at most; a queued batch is never split.
const MAX_EVENTS: usize = 4096;
/// Bytes of JSON one group holds at most, unless one publish alone is larger.
const MAX_BYTES: usize = 4 << 20;
/// Publishes (single events or batches) waiting for the writer at most; a publisher beyond
/// them waits for room.
const QUEUE: usize = 4096;

/// The queue into the writer task.
pub(super) struct Writer {
    queue: mpsc::Sender<Pending>,
}

/// The writer's end of the queue, until [`Waiting::write`] runs it.
pub(super) struct Waiting(mpsc::Receiver<Pending>);

/// One publish: its events as JSON, comma-separated, and where its answer goes.
struct Pending {
    events: String,
    count: usize,
    reply: oneshot::Sender<Result<Vec<EventId>, StoreUnavailable>>,
}

fn unavailable(cause: impl std::fmt::Display) -> StoreUnavailable {
    StoreUnavailable(format!("the event store (Redis) is unavailable: {cause}"))
}

impl Writer {
    /// The queue; publishes wait in it until its other end is written.
    pub fn new() -> (Writer, Waiting) {
        let (queue, waiting) = mpsc::channel(QUEUE);
        (Writer { queue }, Waiting(waiting))
    }

    /// Stores the events (each as [`entry::encode`] gives it) together and answers their ids,
    /// in order; `Err`: none was stored.
    pub async fn append(&self, events: Vec<String>) -> Result<Vec<PublishAck>, StoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        let stopped = || unavailable("this node is shutting down");
        let pending = Pending { count: events.len(), events: events.join(","), reply };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        let ids = answer.await.map_err(|_| stopped())??;
        Ok(ids.into_iter().map(|id| PublishAck { id: id.to_string(), connections: None }).collect())
    }
}

impl Waiting {
    /// The writer task: takes what is waiting, up to a group, stores it as one entry and
    /// answers each publish; at shutdown it takes no more and writes what was queued. Redis
    /// keeps what `hub`'s history keeps: entries before it are trimmed as groups are added.
    pub async fn write(self, mut connection: ConnectionManager, key: &'static str, hub: Hub) {
        let shutdown = hub.shutdown_token();
        let mut waiting = self.0;
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(first) => Some(first),
                None => tokio::select! {
                    first = waiting.recv() => first,
                    () = shutdown.cancelled() => {
                        waiting.close();
                        waiting.recv().await
                    }
                },
            };
            let Some(first) = first else { return };
            let (mut count, mut bytes) = (first.count, first.events.len());
            let mut group = vec![first];
            while count < MAX_EVENTS && bytes < MAX_BYTES {
                match waiting.try_recv() {
                    Ok(pending) if count + pending.count > MAX_EVENTS || bytes + pending.events.len() > MAX_BYTES => {
                        next = Some(pending);
                        break;
                    }
                    Ok(pending) => {
                        (count, bytes) = (count + pending.count, bytes + pending.events.len() + 1);
                        group.push(pending);
                    }
                    Err(_) => break,
                }
            }
            let mut events = String::with_capacity(bytes + 2);
            events.push('[');
            for (n, pending) in group.iter().enumerate() {
                if n > 0 {
                    events.push(',');
                }
                events.push_str(&pending.events);
            }
            events.push(']');
            let floor = hub.history_floor();
            let kept = EventId { millis: floor.millis, seq: floor.seq.saturating_add(1) };
            let append = entry::append(key, kept, &events, count);
            match append.query_async::<String>(&mut connection).await.map(|id| id.parse::<EventId>()) {
                Ok(Ok(first)) => {
                    let mut ids = entry::ids(first, count);
                    for pending in group {
                        let _ = pending.reply.send(Ok(ids.by_ref().take(pending.count).collect()));
                    }
                }
                Ok(Err(_)) => answer_all(group, "it answered an id that is not <millis>-<seq>"),
                Err(cause) => answer_all(group, cause),
            }
        }
    }
}

fn answer_all(group: Vec<Pending>, cause: impl std::fmt::Display) {
    let cause = unavailable(cause);
    for pending in group {
        let _ = pending.reply.send(Err(StoreUnavailable(cause.0.clone())));
    }
}
