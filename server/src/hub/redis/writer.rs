//! The node's publishing to Redis, grouped: one task takes every publish waiting on this node
//! and sends them as one `MULTI`/`EXEC` of `XADD`s, so many publishes share one write, one
//! round trip and one reply, as the file store's writer shares one commit.
//!
//! Order: a group's appends are in the order their publishes were queued, and a batch's events
//! are consecutive in it. Each publish is answered only after the `EXEC` that stored it
//! returned, so a publisher that waits for its answer before the next publish (as HTTP does on
//! one connection) sees its events stored in order. All of a group is stored or none is, so a
//! 503 never hides an event that was stored.

use super::super::{PublishAck, StoreUnavailable};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Appends one group may hold at most; a queued batch is never split.
const MAX_GROUP: usize = 4096;
/// Publishes (single events or batches) waiting for the writer at most; a publisher beyond
/// them waits for room.
const QUEUE: usize = 4096;

/// The queue into the writer task.
pub(super) struct Writer {
    queue: mpsc::Sender<Pending>,
}

/// One publish: its `XADD`s, and where its answer goes.
struct Pending {
    appends: Vec<redis::Cmd>,
    reply: oneshot::Sender<Result<Vec<String>, StoreUnavailable>>,
}

fn unavailable(cause: impl std::fmt::Display) -> StoreUnavailable {
    StoreUnavailable(format!("the event store (Redis) is unavailable: {cause}"))
}

/// The writer's end of the queue, until [`Waiting::write`] runs it.
pub(super) struct Waiting(mpsc::Receiver<Pending>);

impl Writer {
    /// The queue; publishes wait in it until its other end is written.
    pub fn new() -> (Writer, Waiting) {
        let (queue, waiting) = mpsc::channel(QUEUE);
        (Writer { queue }, Waiting(waiting))
    }

    /// Stores `appends` together and answers their ids, in order; `Err`: none was stored.
    pub async fn append(&self, appends: Vec<redis::Cmd>) -> Result<Vec<PublishAck>, StoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        let stopped = || unavailable("this node is shutting down");
        self.queue.send(Pending { appends, reply }).await.map_err(|_| stopped())?;
        let ids = answer.await.map_err(|_| stopped())??;
        Ok(ids.into_iter().map(|id| PublishAck { id, connections: None }).collect())
    }
}

impl Waiting {
    /// The writer task: takes what is waiting, up to a group, sends it as one transaction and
    /// answers each publish; at shutdown it takes no more and writes what was queued.
    pub async fn write(self, connection: ConnectionManager, shutdown: CancellationToken) {
        write_loop(connection, self.0, shutdown).await;
    }
}

async fn write_loop(
    mut connection: ConnectionManager,
    mut waiting: mpsc::Receiver<Pending>,
    shutdown: CancellationToken,
) {
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
        let mut group = vec![first];
        let mut appends = group[0].appends.len();
        while appends < MAX_GROUP {
            match waiting.try_recv() {
                Ok(pending) if appends + pending.appends.len() > MAX_GROUP => {
                    next = Some(pending);
                    break;
                }
                Ok(pending) => {
                    appends += pending.appends.len();
                    group.push(pending);
                }
                Err(_) => break,
            }
        }
        let mut transaction = redis::pipe();
        transaction.atomic();
        let counts: Vec<usize> = group.iter().map(|pending| pending.appends.len()).collect();
        for append in group.iter_mut().flat_map(|pending| std::mem::take(&mut pending.appends)) {
            transaction.add_command(append);
        }
        match transaction.query_async::<Vec<String>>(&mut connection).await {
            Ok(ids) if ids.len() == appends => {
                let mut ids = ids.into_iter();
                for (pending, count) in group.into_iter().zip(counts) {
                    let _ = pending.reply.send(Ok(ids.by_ref().take(count).collect()));
                }
            }
            Ok(ids) => {
                tracing::error!(sent = appends, answered = ids.len(), "redis answered a group of appends oddly");
                answer_all(group, "it answered an unexpected number of ids");
            }
            Err(cause) => answer_all(group, cause),
        }
    }
}

fn answer_all(group: Vec<Pending>, cause: impl std::fmt::Display) {
    let cause = unavailable(cause);
    for pending in group {
        let _ = pending.reply.send(Err(StoreUnavailable(cause.0.clone())));
    }
}
