//! The file store: the history in an embedded database (redb) under `--data-dir`, so a restart
//! loses nothing. A single writer task takes every publish, assigns ids, writes the whole batch
//! in one transaction (one fsync for many events: group commit), and only then applies it to
//! streams and answers 202 — so a publish answered 202 survives SIGKILL.
//!
//! redb: a pure-Rust, ACID, crash-safe embedded key-value store, actively kept; no C library and
//! no server to run.

use super::log::{EventLog, Published};
use super::{EventId, Hub, HubSettings, PublishAck, PublishRequest, StoreUnavailable};
use futures::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Events by id (`millis << 64 | seq`, so keys sort as ids do) → the publish request as JSON.
const EVENTS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("events");
/// `floor`: the newest id no longer held (or the store's first start position).
const META: TableDefinition<'_, &str, u128> = TableDefinition::new("meta");
/// Publishes written in one transaction at most.
const MAX_BATCH: usize = 1024;

fn key(id: EventId) -> u128 {
    (u128::from(id.millis) << 64) | u128::from(id.seq)
}

fn id_of(key: u128) -> EventId {
    EventId { millis: (key >> 64) as u64, seq: key as u64 }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("history database: {e}"))
}

pub(super) struct FileStore {
    queue: mpsc::Sender<Pending>,
    /// The writer, awaited at shutdown so the database is closed before the process ends.
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Pending {
    request: PublishRequest,
    reply: oneshot::Sender<Result<PublishAck, StoreUnavailable>>,
}

/// The database and what the writer knows of it.
struct Ledger {
    db: Arc<Database>,
    held: u64,
    capacity: usize,
}

/// Opens (or creates) `dir/history.redb`, loads what it holds, and starts the writer.
pub(super) async fn open(settings: HubSettings, dir: &Path) -> std::io::Result<Hub> {
    open_with_store(settings, dir).await.map(|(hub, _)| hub)
}

/// [`open`], also handing back the store the hub writes through.
async fn open_with_store(settings: HubSettings, dir: &Path) -> std::io::Result<(Hub, Arc<FileStore>)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("history.redb");
    let (capacity, max_bytes) = (settings.history, settings.history_bytes);
    let (ledger, floor, events) =
        tokio::task::spawn_blocking(move || load(&path, capacity, max_bytes)).await.map_err(io_error)??;
    let (queue, pending) = mpsc::channel(MAX_BATCH * 4);
    let store = Arc::new(FileStore { queue, writer: std::sync::Mutex::new(None) });
    let hub = Hub::with_log(settings, Arc::clone(&store) as Arc<dyn EventLog>, floor);
    let held = events.len();
    hub.restore(events);
    tracing::info!(events = held, "history loaded from the data directory");
    let writer = tokio::spawn(write_loop(hub.clone(), ledger, pending));
    *store.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
    Ok((hub, store))
}

/// What a database holds at start-up: the writer's ledger, the floor, and the events.
type Loaded = (Ledger, EventId, Vec<(EventId, PublishRequest)>);

/// Opens the database and reads the newest events it holds, as many as `max_bytes` of records
/// allow (the memory's bound, so a start-up never reads more than the history would keep); the
/// floor is then the newest left unread.
fn load(path: &Path, capacity: usize, max_bytes: usize) -> std::io::Result<Loaded> {
    let db = Database::create(path).map_err(io_error)?;
    let write = db.begin_write().map_err(io_error)?;
    let mut floor = {
        let mut meta = write.open_table(META).map_err(io_error)?;
        let floor = meta.get("floor").map_err(io_error)?.map(|v| v.value());
        match floor {
            Some(floor) => id_of(floor),
            None => {
                let start = EventId { millis: super::now_millis(), seq: 0 };
                meta.insert("floor", key(start)).map_err(io_error)?;
                start
            }
        }
    };
    write.open_table(EVENTS).map_err(io_error)?;
    write.commit().map_err(io_error)?;

    let read = db.begin_read().map_err(io_error)?;
    let table = read.open_table(EVENTS).map_err(io_error)?;
    let held = table.len().map_err(io_error)?;
    let mut events = Vec::new();
    let mut bytes = 0usize;
    for entry in table.iter().map_err(io_error)?.rev() {
        let (k, v) = entry.map_err(io_error)?;
        bytes = bytes.saturating_add(v.value().len());
        if bytes > max_bytes {
            floor = floor.max(id_of(k.value()));
            break;
        }
        let request = PublishRequest::from_stored(v.value()).map_err(io_error)?;
        events.push((id_of(k.value()), request));
    }
    events.reverse();
    drop(table);
    drop(read);
    Ok((Ledger { db: Arc::new(db), held, capacity }, floor, events))
}

impl FileStore {
    /// Queues the publish for the writer and waits for its group commit.
    async fn commit(&self, request: PublishRequest) -> Published {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreUnavailable("the history database is shutting down".into());
        self.queue.send(Pending { request, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl EventLog for FileStore {
    fn publish<'a>(&'a self, _hub: &'a Hub, request: PublishRequest) -> BoxFuture<'a, Published> {
        Box::pin(self.commit(request))
    }

    fn publish_all<'a>(&'a self, _hub: &'a Hub, requests: Vec<PublishRequest>) -> BoxFuture<'a, Vec<Published>> {
        // Queued in order; the writer commits whatever is waiting together.
        Box::pin(futures::future::join_all(requests.into_iter().map(|r| self.commit(r))))
    }

    /// `Err` once the writer has stopped: it ends on a panic in a write (or in applying one),
    /// and at shutdown; nothing is stored after that.
    fn health(&self) -> Result<(), String> {
        if self.queue.is_closed() {
            Err("the history writer has stopped".into())
        } else {
            Ok(())
        }
    }

    /// Waits for the writer to finish what was queued and close the database.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(writer) = writer {
                let _ = writer.await;
            }
        })
    }
}

/// Takes whatever publishes are waiting, writes them in one transaction, then applies them.
/// At shutdown it takes no more, finishes what was queued, and closes the database.
async fn write_loop(hub: Hub, mut ledger: Ledger, mut pending: mpsc::Receiver<Pending>) {
    let shutdown = hub.shutdown_token();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            received = pending.recv_many(&mut batch, MAX_BATCH) => received,
            () = shutdown.cancelled() => {
                pending.close();
                pending.recv_many(&mut batch, MAX_BATCH).await
            }
        };
        if received == 0 {
            break;
        }
        let ids = hub.reserve(batch.len());
        let records: Vec<(u128, Vec<u8>)> =
            ids.iter().zip(&batch).map(|(id, p)| (key(*id), p.request.to_json().to_string().into_bytes())).collect();
        let written = tokio::task::spawn_blocking(move || {
            let result = write(&mut ledger, &records);
            (ledger, result)
        })
        .await;
        let result = match written {
            Ok((returned, result)) => {
                ledger = returned;
                result
            }
            Err(e) => {
                tracing::error!(cause = %e, "the history writer failed");
                return;
            }
        };
        match result {
            Ok(()) => {
                let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|p| (p.request, p.reply)).unzip();
                let reached = hub.apply(ids.iter().copied().zip(requests));
                for ((id, reply), reached) in ids.iter().zip(replies).zip(reached) {
                    let _ = reply.send(Ok(PublishAck { id: id.to_string(), connections: Some(reached) }));
                }
            }
            Err(cause) => {
                tracing::error!(%cause, "could not write events to the history database");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(StoreUnavailable("the history database could not be written".into())));
                }
            }
        }
    }
}

/// Appends the records and evicts the oldest past the capacity, in one durable transaction.
fn write(ledger: &mut Ledger, records: &[(u128, Vec<u8>)]) -> Result<(), redb::Error> {
    let tx = ledger.db.begin_write()?;
    let mut held = ledger.held;
    {
        let mut events = tx.open_table(EVENTS)?;
        for (k, v) in records {
            events.insert(*k, v.as_slice())?;
            held += 1;
        }
        let mut floor = None;
        while held > ledger.capacity as u64 {
            match events.pop_first()? {
                Some((k, _)) => floor = Some(k.value()),
                None => break,
            }
            held -= 1;
        }
        if let Some(floor) = floor {
            tx.open_table(META)?.insert("floor", floor)?;
        }
    }
    tx.commit()?;
    ledger.held = held;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A start-up reads only the newest events that fit the memory's bound, and the floor
    /// moves to the newest left unread, so a replay asking before it gets a gap.
    #[test]
    fn loads_only_what_the_memory_keeps() {
        let dir =
            std::env::temp_dir().join(format!("tidings-load-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.redb");
        let (mut ledger, start, _) = load(&path, 100, usize::MAX).unwrap();
        let id = |n: u64| EventId { millis: start.millis + n, seq: 0 };
        let request =
            PublishRequest::parse(&serde_json::json!({"to": "amy", "data": "x".repeat(100)}).to_string()).unwrap();
        let record = request.to_json().to_string().into_bytes();
        let records: Vec<(u128, Vec<u8>)> = (1..=10).map(|n| (key(id(n)), record.clone())).collect();
        write(&mut ledger, &records).unwrap();
        drop(ledger);

        let (ledger, floor, events) = load(&path, 100, record.len() * 7 / 2).unwrap();
        let ids: Vec<EventId> = events.iter().map(|(id, _)| *id).collect();
        assert_eq!((ids, floor), (vec![id(8), id(9), id(10)], id(7)));
        drop(ledger);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Once the writer task is gone (as after a panic in a write), the store reports it, so
    /// `/healthz` says degraded, and a publish is refused at once.
    #[tokio::test]
    async fn a_dead_writer_makes_the_store_unhealthy() {
        let dir = std::env::temp_dir().join(format!("tidings-file-writer-{}", std::process::id()));
        let settings = HubSettings {
            history: 8,
            history_bytes: 1 << 20,
            history_ttl: None,
            retry: std::time::Duration::from_secs(3),
            max_queue: 1 << 20,
            max_per_user: 1,
            max_connections: 1,
        };
        let (hub, store) = open_with_store(settings, &dir).await.unwrap();
        let request = || PublishRequest::parse(r#"{"to": "amy", "data": "x"}"#).unwrap();
        assert!(hub.publish(request()).await.is_ok());
        assert_eq!(hub.store_health(), Ok(()));

        let writer = store.writer.lock().unwrap().take().unwrap();
        writer.abort();
        assert!(writer.await.is_err(), "the writer ended abnormally");
        assert!(hub.store_health().is_err(), "a dead writer is reported");
        assert!(hub.publish(request()).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
