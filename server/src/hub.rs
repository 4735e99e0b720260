//! The hub: who is connected, what was published, and the one path every event takes — an id,
//! one encoding, the history, then every matching stream's outbox.
//!
//! Where events are kept is the event log's business: in memory, in a file (`file`), or in Redis
//! shared by a cluster (`redis`). Whatever the log, events reach streams through
//! [`Hub::apply`], in id order. This handle owns the lock on the core and is the only code that
//! takes it; the core does no I/O and reads no clock.
//!
//! - `core`: the synchronous core: the streams by user and by topic, the history, the ids, and
//!   the delivery of one event.
//! - `log`: the event log every store implements, and the memory log.
//! - `history`: the retained events and where a replay starts.
//! - `outbox`: one stream's bounded queue of bytes.
//! - `subscription`: one open stream as its writer sees it, and its replay, read from the
//!   history part by part as the reader drains.
//! - `selector`, `topics`: topic selectors, what a stream asks for, and the index by topic.
//! - `file`: the embedded database store, with group commit.
//! - `redis`: the cluster store on Redis Streams.

mod core;
mod file;
mod history;
mod log;
mod outbox;
mod redis;
pub mod selector;
mod subscription;
mod topics;

use self::core::{Core, Delivery, Subscriber};
use self::log::{EventLog, MemoryLog, Published};
use app::event::{EventId, EventName, PublishAck, PublishRequest, TopicStreams, UserConnections, UserName};
use app::sse;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subscription::Registration;
use tokio_util::sync::CancellationToken;

pub use self::core::SubscribeError;
pub use self::log::StoreUnavailable;
pub use subscription::Subscription;
pub use topics::Interest;

/// Where the history lives, chosen at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Memory,
    /// A database file in this directory; survives restarts.
    File(std::path::PathBuf),
    /// A Redis URL; every node of a cluster shares it.
    Redis(String),
}

/// The limits the hub enforces.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Events kept for replay (`--history`).
    pub history: usize,
    /// Bytes the kept events may cost (`--history-bytes`); whichever bound is hit first evicts.
    pub history_bytes: usize,
    /// Kept events older than this are evicted (`--history-ttl`; `None`: kept by the bounds only).
    pub history_ttl: Option<Duration>,
    pub retry: Duration,
    pub max_queue: usize,
    pub max_per_user: usize,
    pub max_connections: usize,
}

/// What a stream gets before its events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Preamble {
    /// Retry, cursor and the welcome `message` (Tidings' streams).
    Welcome,
    /// Retry and cursor only.
    Quiet,
}

/// A cheap-to-clone handle on the hub's shared state.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    log: Arc<dyn EventLog>,
    // A std mutex: every section under it is short and synchronous (assign an id, append bytes
    // to outboxes), and it is never held across an await.
    core: Mutex<Core>,
    /// `--retry`, the first line of every stream.
    retry: Duration,
    metrics: Metrics,
    /// Cancelled at shutdown: every stream and background task ends on it.
    shutdown: CancellationToken,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub slow_consumers_dropped: AtomicU64,
}

/// The wall clock, in milliseconds since the epoch: an id's time.
fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub keeping its history in memory.
    pub fn new(settings: HubSettings) -> Hub {
        Hub::with_log(settings, Arc::new(MemoryLog), EventId { millis: now_millis(), seq: 0 })
    }

    fn with_log(settings: HubSettings, log: Arc<dyn EventLog>, start: EventId) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                log,
                retry: settings.retry,
                core: Mutex::new(Core::new(settings, start)),
                metrics: Metrics::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Opens the configured store, loads the history it holds and starts its background task.
    pub async fn open(settings: HubSettings, store: &StoreConfig) -> std::io::Result<Hub> {
        match store {
            StoreConfig::Memory => Ok(Hub::new(settings)),
            StoreConfig::File(dir) => file::open(settings, dir).await,
            StoreConfig::Redis(url) => redis::open(settings, url).await,
        }
    }

    /// Whether the store can take events; `Err` says why not.
    pub fn store_health(&self) -> Result<(), String> {
        self.shared.log.health()
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere cannot leave the core half-written: every section is a few
        // assignments, so a poisoned lock is still consistent.
        self.shared.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Ends every stream and background task.
    pub fn shutdown(&self) {
        let mut core = self.core();
        // Under the lock, so no stream registers after its outbox could have been closed.
        self.shared.shutdown.cancel();
        core.close();
    }

    /// After [`Hub::shutdown`]: waits until the store has written what it accepted and closed.
    pub async fn close(&self) {
        self.shared.log.close().await;
    }

    /// Resolves when the hub is shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stores the event and writes it to every matching stream. Never waits for a subscriber:
    /// a stream whose outbox is full is cut off instead. `Err` means nothing was stored.
    pub async fn publish(&self, request: PublishRequest) -> Published {
        self.shared.log.publish(self, request).await
    }

    /// Publishes `requests` in order, as [`Hub::publish`] would one by one, but in one go: one
    /// lock in memory, one group of commits in the file, one transaction in Redis.
    pub async fn publish_all(&self, requests: Vec<PublishRequest>) -> Vec<Published> {
        self.shared.log.publish_all(self, requests).await
    }

    /// The memory log's publish: an id, then history and streams.
    fn publish_now(&self, request: PublishRequest) -> PublishAck {
        self.publish_locked(&mut self.core(), request)
    }

    /// The memory log's publish of several, under one lock.
    fn publish_all_now(&self, requests: Vec<PublishRequest>) -> Vec<PublishAck> {
        let mut core = self.core();
        requests.into_iter().map(|request| self.publish_locked(&mut core, request)).collect()
    }

    fn publish_locked(&self, core: &mut Core, request: PublishRequest) -> PublishAck {
        let (id, delivery) = core.publish(request, now_millis());
        PublishAck { id: id.to_string(), connections: Some(self.count(delivery)) }
    }

    /// Hands out `n` ids, in order, for events the caller applies later.
    fn reserve(&self, n: usize) -> Vec<EventId> {
        let mut core = self.core();
        (0..n).map(|_| core.reserve(now_millis())).collect()
    }

    /// Applies stored events, in id order: history, then every matching stream. Returns how
    /// many streams each reached. Ids not after the newest are skipped (a store re-reading).
    fn apply(&self, events: impl IntoIterator<Item = (EventId, PublishRequest)>) -> Vec<usize> {
        let mut core = self.core();
        events.into_iter().map(|(id, request)| self.count(core.apply(id, request, now_millis()))).collect()
    }

    /// The newest id this node's history no longer holds (what a store may forget too).
    fn history_floor(&self) -> EventId {
        self.core().history_floor()
    }

    /// Loads events a store kept from before this process started: history only, not counted
    /// as published.
    fn restore(&self, events: impl IntoIterator<Item = (EventId, PublishRequest)>) {
        let mut core = self.core();
        for (id, request) in events {
            core.apply(id, request, now_millis());
        }
    }

    /// Counts a live event in the metrics (under the lock, as it was applied); returns how many
    /// streams it reached.
    fn count(&self, delivery: Option<Delivery>) -> usize {
        let Some(Delivery { reached, dropped }) = delivery else { return 0 };
        let metrics = &self.shared.metrics;
        metrics.published.fetch_add(1, Ordering::Relaxed);
        metrics.delivered.fetch_add(reached as u64, Ordering::Relaxed);
        if dropped > 0 {
            metrics.slow_consumers_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(dropped, "closed streams whose readers fell more than --max-queue behind");
        }
        reached
    }

    /// Opens a stream for what `interest` asks: the preamble (retry, cursor, welcome), the
    /// replay after `last_event_id`, then live events. Registration and the replay's first part
    /// happen under one lock, so no event is missed or sent twice; a replay longer than
    /// `--max-queue` goes on from the history as the reader drains it. The cursor comes before
    /// the welcome so that the welcome already carries it as its `lastEventId`: a client
    /// resuming from the last event it saw resumes from the cursor even if no other event came.
    /// The welcome's data is the user's name (empty for an anonymous stream).
    pub fn subscribe(&self, interest: Interest, last_event_id: Option<&str>) -> Result<Subscription, SubscribeError> {
        self.open_stream(interest, last_event_id, Preamble::Welcome)
    }

    /// Opens a stream as [`Hub::subscribe`] does, but without the welcome event: a Mercure
    /// subscriber gets only the events it asked for.
    pub fn subscribe_quietly(
        &self,
        interest: Interest,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, SubscribeError> {
        self.open_stream(interest, last_event_id, Preamble::Quiet)
    }

    fn open_stream(
        &self,
        interest: Interest,
        last_event_id: Option<&str>,
        preamble: Preamble,
    ) -> Result<Subscription, SubscribeError> {
        let mut head = BytesMut::new();
        head.extend_from_slice(sse::retry(self.shared.retry.as_millis() as u64).as_bytes());
        let welcome = (preamble == Preamble::Welcome)
            .then(|| sse::event(None, &EventName::message(), interest.user.as_ref().map_or("", UserName::as_str)));

        let opened = self.core().subscribe(&interest, last_event_id, now_millis())?;
        head.extend_from_slice(sse::id_only(&opened.cursor).as_bytes());
        if let Some(welcome) = welcome {
            head.extend_from_slice(welcome.as_bytes());
        }
        let resumed = last_event_id.is_some() && opened.gap.is_none();
        if let Some(gap) = &opened.gap {
            head.extend_from_slice(gap);
        }

        tracing::info!(user = %interest.label(), topics = interest.selectors.len(), "stream opened");
        let mut first = opened.replayed;
        first.insert(0, head.freeze());
        let id = opened.subscriber.id;
        Ok(Subscription::new(
            first,
            opened.replay,
            opened.subscriber,
            Registration { hub: self.clone(), interest, id, opened: Instant::now() },
            resumed,
        ))
    }

    /// The next part of a replay: see [`Core::replay_next`].
    fn replay_next(
        &self,
        interest: &Interest,
        after: EventId,
        subscriber: &Subscriber,
        into: &mut Vec<Bytes>,
    ) -> Option<EventId> {
        self.core().replay_next(interest, after, subscriber, into, now_millis())
    }

    fn unregister(&self, interest: &Interest, id: u64) {
        self.core().unregister(interest, id);
    }

    /// Open streams per exact topic, sorted by topic.
    pub fn topics(&self) -> Vec<TopicStreams> {
        self.core().topics()
    }

    /// How many distinct exact topics open streams subscribe to.
    pub fn topic_count(&self) -> usize {
        self.core().topic_count()
    }

    /// Open streams per user, sorted by user.
    pub fn users(&self) -> Vec<UserConnections> {
        self.core().users()
    }

    /// How many streams are open.
    pub fn connections(&self) -> usize {
        self.core().connections()
    }

    /// One connected user chosen uniformly at random, for the ticker.
    pub fn random_user(&self, rng: &mut impl rand::Rng) -> Option<UserName> {
        self.core().random_user(rng)
    }
}
