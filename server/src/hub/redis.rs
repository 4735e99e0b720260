//! The cluster store: every node shares one Redis. A publish is an `XADD` to one stream (with
//! `MAXLEN ~` for retention), so its id is Redis's `<millis>-<seq>`, increasing cluster-wide;
//! each node follows the stream with `XREAD` and delivers to its own connections, keeping the
//! retained events in memory for exact replay. If Redis goes away, streams stay open, publishing
//! answers 503, and the follower resumes after the last id it applied: nothing lost or doubled.
//!
//! - `entry`: an event as a stream entry, and Redis's answers as entries.
//! - `writer`: the node's publishes, grouped into one transaction per round trip.
//!
//! redis-rs: the standard Rust Redis client, async on tokio, with a reconnecting manager.

mod entry;
mod writer;

use super::log::{EventLog, Published};
use super::{EventId, Hub, HubSettings, PublishRequest, StoreUnavailable};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use writer::Writer;

/// The Redis stream every node reads and writes.
const STREAM_KEY: &str = "tidings:events";
/// How long one `XREAD` waits for new entries.
const BLOCK: Duration = Duration::from_secs(2);
/// How long a command may take before Redis counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait between attempts to reach Redis again.
const RETRY: Duration = Duration::from_millis(250);

pub(super) struct RedisStore {
    writer: Writer,
    /// Whether the follower last reached Redis.
    healthy: Arc<AtomicBool>,
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("redis: {e}"))
}

/// Connects, loads the retained events, and starts following the stream.
pub(super) async fn open(settings: HubSettings, url: &str) -> std::io::Result<Hub> {
    let client = redis::Client::open(url).map_err(io_error)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1);
    let mut writer = ConnectionManager::new_with_config(client.clone(), config).await.map_err(io_error)?;
    let capacity = settings.history;
    let (events, unread) = load(&mut writer, capacity.max(1), settings.history_bytes).await?;
    // Anything older than the oldest entry held was trimmed or left unread: a client that saw
    // the newest entry left unread, or (when it is not known) the one just before the oldest
    // held, has missed nothing.
    let floor = match (unread, events.first()) {
        (Some(unread), _) => unread,
        (None, Some((oldest, _))) if oldest.seq > 0 => EventId { millis: oldest.millis, seq: oldest.seq - 1 },
        (None, Some((oldest, _))) => EventId { millis: oldest.millis.saturating_sub(1), seq: u64::MAX },
        (None, None) => before_now(&mut writer).await?,
    };
    // Follow from the newest entry held, or from the very start of an empty stream: never `$`,
    // which would miss entries added between two reads.
    let last = events.last().map_or_else(|| "0-0".to_owned(), |(id, _)| id.to_string());
    let healthy = Arc::new(AtomicBool::new(true));
    let (queue, waiting) = Writer::new();
    let store = RedisStore { writer: queue, healthy: Arc::clone(&healthy) };
    let hub = Hub::with_log(settings, Arc::new(store), floor);
    let held = events.len();
    hub.restore(events);
    tracing::info!(events = held, "history loaded from Redis");
    tokio::spawn(waiting.write(writer, STREAM_KEY, hub.clone()));
    tokio::spawn(follow(hub.clone(), client, last, healthy));
    Ok(hub)
}

/// For an empty stream, the floor: just before Redis's current millisecond, by Redis's clock
/// (not this node's, which may run ahead), so every entry added from now on is after it.
async fn before_now(writer: &mut ConnectionManager) -> std::io::Result<EventId> {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(writer).await.map_err(io_error)?;
    let millis = seconds * 1000 + micros / 1000;
    Ok(EventId { millis: millis.saturating_sub(1), seq: u64::MAX })
}

/// Entries read per `XREVRANGE` at start-up.
const LOAD_PAGE: usize = 1000;

/// The newest events of the stream, oldest first: read newest first, a page of entries at a
/// time, until `capacity` events or `max_bytes` of events are read, so a start-up never holds
/// more than the memory keeps. When it stopped short of the oldest event, also the id of the
/// newest event left unread.
async fn load(
    writer: &mut ConnectionManager,
    capacity: usize,
    max_bytes: usize,
) -> std::io::Result<(Vec<(EventId, PublishRequest)>, Option<EventId>)> {
    // Newest first until the end, where they are turned around.
    let (mut events, mut bytes, mut end) = (Vec::new(), 0usize, "+".to_owned());
    let mut unread = None;
    'pages: while events.len() < capacity {
        let page: redis::Value = redis::cmd("XREVRANGE")
            .arg(STREAM_KEY)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(LOAD_PAGE)
            .query_async(writer)
            .await
            .map_err(io_error)?;
        let page = entry::entries(page);
        for event in page.iter().flat_map(|entry| entry.decode().into_iter().rev()) {
            bytes = bytes.saturating_add(event.bytes);
            if bytes > max_bytes {
                unread = Some(event.id);
                break 'pages;
            }
            events.push((event.id, event.request));
        }
        match page.last() {
            Some(oldest) if page.len() == LOAD_PAGE => end = format!("({}", oldest.id),
            _ => break,
        }
    }
    if events.len() > capacity {
        unread = Some(events[capacity].0);
        events.truncate(capacity);
    }
    events.reverse();
    Ok((events, unread))
}

impl EventLog for RedisStore {
    /// Queued for this node's writer, which stores it with whatever else is waiting.
    fn publish<'a>(&'a self, _hub: &'a Hub, request: PublishRequest) -> BoxFuture<'a, Published> {
        let event = entry::encode(&request);
        Box::pin(async move {
            // Delivery, here as on every node, comes from following the stream.
            let mut acks = self.writer.append(vec![event]).await?;
            acks.pop().ok_or_else(|| StoreUnavailable("the event store (Redis) answered no id".into()))
        })
    }

    /// All of the batch is stored, in order and in one transaction, or none is.
    fn publish_all<'a>(&'a self, _hub: &'a Hub, requests: Vec<PublishRequest>) -> BoxFuture<'a, Vec<Published>> {
        let events = requests.iter().map(entry::encode).collect();
        Box::pin(async move {
            match self.writer.append(events).await {
                Ok(acks) => acks.into_iter().map(Ok).collect(),
                Err(cause) => requests.iter().map(|_| Err(StoreUnavailable(cause.0.clone()))).collect(),
            }
        })
    }

    fn health(&self) -> Result<(), String> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("redis unavailable".into())
        }
    }

    /// Nothing to wait for: Redis keeps what it acknowledged, and the follower ends at shutdown.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Reads the stream after `last` and applies each entry, until shutdown; reconnects whenever
/// Redis goes away and resumes after the last id applied.
async fn follow(hub: Hub, client: redis::Client, mut last: String, healthy: Arc<AtomicBool>) {
    let shutdown = hub.shutdown_token();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(BLOCK + COMMAND_TIMEOUT));
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = client.get_multiplexed_async_connection_with_config(&config) => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(cause) => {
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%cause, "redis unavailable; streams stay open, publishing answers 503");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let mut command = redis::cmd("XREAD");
            command
                .arg("COUNT")
                .arg(1024)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(STREAM_KEY)
                .arg(&last);
            let read = command.query_async::<redis::Value>(&mut conn);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = read => reply,
            };
            match reply {
                Ok(reply) => {
                    if !healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("redis is back; resuming after {last}");
                    }
                    let entries = entry::read_reply(reply);
                    let mut events = Vec::with_capacity(entries.len());
                    for entry in entries {
                        events.extend(entry.decode().into_iter().map(|event| (event.id, event.request)));
                        last = entry.id;
                    }
                    hub.apply(events);
                }
                Err(cause) => {
                    if healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%cause, "redis unavailable; streams stay open, publishing answers 503");
                    }
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}
