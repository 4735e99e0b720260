//! The cluster store: every node shares one Redis. A publish is an `XADD` to one stream (with
//! `MAXLEN` for retention), so its id is Redis's `<millis>-<seq>`, increasing cluster-wide; each
//! node follows the stream with `XREAD` and delivers to its own connections, keeping the
//! retained events in memory for exact replay. If Redis goes away, streams stay open, publishing
//! answers 503, and the follower resumes after the last id it applied: nothing lost or doubled.
//!
//! redis-rs: the standard Rust Redis client, async on tokio, with a reconnecting manager.

use super::log::{EventLog, Published};
use super::{EventId, Hub, HubSettings, PublishAck, PublishRequest, StoreUnavailable};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamRangeReply, StreamReadReply};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The Redis stream every node reads and writes.
const STREAM_KEY: &str = "tidings:events";
/// How long one `XREAD` waits for new entries.
const BLOCK: Duration = Duration::from_secs(2);
/// How long a command may take before Redis counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait between attempts to reach Redis again.
const RETRY: Duration = Duration::from_millis(250);

pub(super) struct RedisStore {
    writer: ConnectionManager,
    capacity: usize,
    /// Whether the follower last reached Redis.
    healthy: Arc<AtomicBool>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreUnavailable {
    StoreUnavailable(format!("the event store (Redis) is unavailable: {e}"))
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("redis: {e}"))
}

/// A stream entry as an event, or `None` for one this hub did not write.
fn decode(id: &str, fields: &std::collections::HashMap<String, redis::Value>) -> Option<(EventId, PublishRequest)> {
    let id = id.parse().ok()?;
    let text = |name: &str| fields.get(name).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
    let mut json = serde_json::json!({ "event": text("event")?, "data": text("data")? });
    // An event for topics only has no `to`; one for users only, no `topic`; a public one with
    // the hub's id and no `retry`, none of the last three.
    for field in ["to", "topic", "private", "retry"] {
        if let Some(value) = text(field) {
            json[field] = serde_json::from_str::<serde_json::Value>(&value).ok()?;
        }
    }
    if let Some(custom) = text("id") {
        json["id"] = serde_json::Value::String(custom);
    }
    PublishRequest::from_stored(json.to_string().as_bytes()).ok().map(|request| (id, request))
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
        (None, None) => EventId { millis: super::now_millis(), seq: 0 },
    };
    // Follow from the newest entry held, or from the very start of an empty stream: never `$`,
    // which would miss entries added between two reads.
    let last = events.last().map_or_else(|| "0-0".to_owned(), |(id, _)| id.to_string());
    let healthy = Arc::new(AtomicBool::new(true));
    let store = RedisStore { writer, capacity, healthy: Arc::clone(&healthy) };
    let hub = Hub::with_log(settings, Arc::new(store), floor);
    let held = events.len();
    hub.restore(events);
    tracing::info!(events = held, "history loaded from Redis");
    tokio::spawn(follow(hub.clone(), client, last, healthy));
    Ok(hub)
}

/// Entries read per `XREVRANGE` at start-up.
const LOAD_PAGE: usize = 1000;

/// The newest entries of the stream, oldest first: newest first, page by page, until `capacity`
/// entries or `max_bytes` of their fields are read, so a start-up never holds more than the
/// memory keeps. When the bytes stopped it, also the id of the newest entry left unread.
async fn load(
    writer: &mut ConnectionManager,
    capacity: usize,
    max_bytes: usize,
) -> std::io::Result<(Vec<(EventId, PublishRequest)>, Option<EventId>)> {
    let size = |value: &redis::Value| match value {
        redis::Value::BulkString(bytes) => bytes.len(),
        _ => 0,
    };
    let (mut events, mut read, mut bytes, mut end) = (Vec::new(), 0, 0usize, "+".to_owned());
    while read < capacity {
        let count = LOAD_PAGE.min(capacity - read);
        let page: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(STREAM_KEY)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(writer)
            .await
            .map_err(io_error)?;
        for entry in &page.ids {
            bytes = bytes.saturating_add(entry.map.values().map(size).sum());
            if bytes > max_bytes {
                events.reverse();
                return Ok((events, entry.id.parse().ok()));
            }
            events.extend(decode(&entry.id, &entry.map));
        }
        read += page.ids.len();
        match page.ids.last() {
            Some(oldest) if page.ids.len() == count => end = format!("({}", oldest.id),
            _ => break,
        }
    }
    events.reverse();
    Ok((events, None))
}

impl EventLog for RedisStore {
    fn publish<'a>(&'a self, _hub: &'a Hub, request: PublishRequest) -> BoxFuture<'a, Published> {
        Box::pin(async move {
            let mut writer = self.writer.clone();
            let id: String = self.append(&request).query_async(&mut writer).await.map_err(unavailable)?;
            // Delivery, here as on every node, comes from following the stream.
            Ok(PublishAck { id, connections: None })
        })
    }

    /// Appends every request in one transaction: all are stored, in order, or none is.
    fn publish_all<'a>(&'a self, _hub: &'a Hub, requests: Vec<PublishRequest>) -> BoxFuture<'a, Vec<Published>> {
        let mut transaction = redis::pipe();
        transaction.atomic();
        for request in &requests {
            transaction.add_command(self.append(request));
        }
        Box::pin(async move {
            let mut writer = self.writer.clone();
            match transaction.query_async::<Vec<String>>(&mut writer).await {
                Ok(ids) => ids.into_iter().map(|id| Ok(PublishAck { id, connections: None })).collect(),
                Err(cause) => {
                    let cause = unavailable(cause);
                    requests.iter().map(|_| Err(StoreUnavailable(cause.0.clone()))).collect()
                }
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

impl RedisStore {
    /// `XADD` of one event, trimming the stream to the retention limit.
    fn append(&self, request: &PublishRequest) -> redis::Cmd {
        let mut command = redis::cmd("XADD");
        command.arg(STREAM_KEY).arg("MAXLEN").arg(self.capacity.max(1)).arg("*");
        if !request.to.is_nobody() {
            command.arg("to").arg(request.to.to_json().to_string());
        }
        if !request.topics.is_empty() {
            command.arg("topic").arg(app::event::topic::to_json(&request.topics).to_string());
        }
        if request.private {
            command.arg("private").arg("true");
        }
        if let Some(custom) = &request.id {
            command.arg("id").arg(custom.as_str());
        }
        if let Some(retry) = request.retry {
            command.arg("retry").arg(retry);
        }
        command.arg("event").arg(request.event.as_str()).arg("data").arg(&request.data);
        command
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
            let read = command.query_async::<Option<StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = read => reply,
            };
            match reply {
                Ok(reply) => {
                    if !healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("redis is back; resuming after {last}");
                    }
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    let mut events = Vec::new();
                    for entry in entries {
                        if let Some(event) = decode(&entry.id, &entry.map) {
                            events.push(event);
                        }
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
