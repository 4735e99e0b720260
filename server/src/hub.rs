//! The hub: who is connected, what was published, and the one path every event takes — an id,
//! one encoding, the history, then every matching stream's outbox.
//!
//! Where events are kept is the store's business: in memory, in a file (`file`), or in Redis
//! shared by a cluster (`redis`). Whatever the store, events reach streams through
//! [`Hub::apply`], in id order.
//!
//! - `history`: the retained events and where a replay starts.
//! - `outbox`: one stream's bounded queue of bytes.
//! - `subscription`: one open stream as its writer sees it, and its replay, read from the
//!   history part by part as the reader drains.
//! - `selector`, `topics`: topic selectors, what a stream asks for, and the index by topic.
//! - `file`: the embedded database store, with group commit.
//! - `redis`: the cluster store on Redis Streams.

mod file;
mod history;
mod outbox;
mod redis;
pub mod selector;
mod subscription;
mod topics;

use app::event::{EventId, EventName, GapNotice, PublishAck, PublishRequest, TopicStreams, UserConnections, UserName};
use app::sse;
use bytes::{Bytes, BytesMut};
use history::{History, Resume, Stored};
use outbox::Outbox;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subscription::Registration;
pub use subscription::Subscription;
use tokio_util::sync::CancellationToken;
pub use topics::Interest;
use topics::TopicIndex;

/// Where the history lives, chosen at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Memory,
    /// A database file in this directory; survives restarts.
    File(std::path::PathBuf),
    /// A Redis URL; every node of a cluster shares it.
    Redis(String),
}

/// Why a publish was not stored (503: nothing was accepted).
#[derive(Debug)]
pub struct StoreUnavailable(pub String);

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

/// A cheap-to-clone handle on the hub's shared state.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    // A std mutex: every section under it is short and synchronous (assign an id, append bytes
    // to outboxes), and it is never held across an await.
    state: Mutex<State>,
    settings: HubSettings,
    metrics: Metrics,
    /// Cancelled at shutdown: every stream and background task ends on it.
    shutdown: CancellationToken,
}

/// The store behind the hub's publish path.
enum Store {
    Memory,
    File(file::FileStore),
    Redis(redis::RedisStore),
}

struct State {
    /// The newest id applied (delivered and in the history): the cursor streams are given.
    newest: EventId,
    /// The newest id handed out, which may not be applied yet (the file store assigns ids
    /// before its write commits).
    reserved: EventId,
    history: History,
    /// The streams of each user.
    users: BTreeMap<UserName, Vec<Arc<Subscriber>>>,
    /// The streams of each topic selector.
    topics: TopicIndex,
    connections: usize,
    next_subscriber: u64,
    /// Counts events applied: a stream that several lists reach is written once per event.
    stamp: u64,
}

struct Subscriber {
    id: u64,
    outbox: Outbox,
    /// The stamp of the last event written to this stream (only changed under the hub's lock).
    stamp: AtomicU64,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub slow_consumers_dropped: AtomicU64,
}

/// Why a stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The user already holds `max_per_user` streams.
    UserFull(usize),
    /// The hub holds `max_connections` streams.
    HubFull,
    /// The hub is shutting down.
    ShuttingDown,
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub keeping its history in memory.
    pub fn new(settings: HubSettings) -> Hub {
        Hub::with_store(settings, Store::Memory, EventId { millis: now_millis(), seq: 0 })
    }

    fn with_store(settings: HubSettings, store: Store, start: EventId) -> Hub {
        let state = State {
            newest: start,
            reserved: start,
            history: History::new(settings.history, settings.history_bytes, start),
            users: BTreeMap::new(),
            topics: TopicIndex::default(),
            connections: 0,
            next_subscriber: 0,
            stamp: 0,
        };
        Hub {
            shared: Arc::new(Shared {
                store,
                state: Mutex::new(state),
                settings,
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
        match &self.shared.store {
            Store::Memory => Ok(()),
            Store::File(file) => file.health(),
            Store::Redis(redis) => redis.health(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-written: every section is a few
        // assignments, so a poisoned lock is still consistent.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Ends every stream and background task.
    pub fn shutdown(&self) {
        let state = self.state();
        // Under the lock, so no stream registers after its outbox could have been closed.
        self.shared.shutdown.cancel();
        // A stream with a user and topics is in several lists; closing twice is harmless.
        for subscriber in state.users.values().flatten().chain(state.topics.subscribers()) {
            subscriber.outbox.close();
        }
    }

    /// After [`Hub::shutdown`]: waits until the store has written what it accepted and closed.
    pub async fn close(&self) {
        if let Store::File(file) = &self.shared.store {
            file.close().await;
        }
    }

    /// Resolves when the hub is shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stores the event and writes it to every matching stream. Never waits for a subscriber:
    /// a stream whose outbox is full is cut off instead. `Err` means nothing was stored.
    pub async fn publish(&self, request: PublishRequest) -> Result<PublishAck, StoreUnavailable> {
        match &self.shared.store {
            Store::Memory => Ok(self.publish_locked(&mut self.state(), request)),
            Store::File(file) => file.publish(request).await,
            Store::Redis(redis) => redis.publish(request).await,
        }
    }

    /// Publishes `requests` in order, as [`Hub::publish`] would one by one, but in one go: one
    /// lock in memory, one group of commits in the file, one transaction in Redis.
    pub async fn publish_all(&self, requests: Vec<PublishRequest>) -> Vec<Result<PublishAck, StoreUnavailable>> {
        match &self.shared.store {
            Store::Memory => {
                let mut state = self.state();
                requests.into_iter().map(|request| Ok(self.publish_locked(&mut state, request))).collect()
            }
            // Queued in order; the writer commits whatever is waiting together.
            Store::File(file) => futures::future::join_all(requests.into_iter().map(|r| file.publish(r))).await,
            Store::Redis(redis) => redis.publish_all(requests).await,
        }
    }

    /// The memory store's publish: an id, then history and streams.
    fn publish_locked(&self, state: &mut State, request: PublishRequest) -> PublishAck {
        let id = state.reserved.next(now_millis());
        state.reserved = id;
        let reached = self.apply_locked(state, id, request, true);
        PublishAck { id: id.to_string(), connections: Some(reached) }
    }

    /// Hands out `n` ids, in order, for events the caller applies later.
    fn reserve(&self, n: usize) -> Vec<EventId> {
        let mut state = self.state();
        (0..n)
            .map(|_| {
                let id = state.reserved.next(now_millis());
                state.reserved = id;
                id
            })
            .collect()
    }

    /// Applies stored events, in id order: history, then every matching stream. Returns how
    /// many streams each reached. Ids not after the newest are skipped (a store re-reading).
    fn apply(&self, events: impl IntoIterator<Item = (EventId, PublishRequest)>) -> Vec<usize> {
        let mut state = self.state();
        events.into_iter().map(|(id, request)| self.apply_locked(&mut state, id, request, true)).collect()
    }

    /// Loads events a store kept from before this process started: history only, not counted
    /// as published.
    fn restore(&self, events: impl IntoIterator<Item = (EventId, PublishRequest)>) {
        let mut state = self.state();
        for (id, request) in events {
            self.apply_locked(&mut state, id, request, false);
        }
    }

    fn apply_locked(&self, state: &mut State, id: EventId, request: PublishRequest, live: bool) -> usize {
        if id <= state.newest {
            return 0;
        }
        state.newest = id;
        state.reserved = state.reserved.max(id);
        self.expire(state);
        let max_queue = self.shared.settings.max_queue;
        let frame = Bytes::from(sse::event(Some(&id), &request.event, &request.data));
        state.stamp += 1;
        let stamp = state.stamp;
        let mut reached = 0;
        let mut dropped = 0;
        let State { users, topics, .. } = state;
        let mut deliver = |subscribers: &mut Vec<Arc<Subscriber>>| {
            subscribers.retain(|s| {
                if s.stamp.swap(stamp, Ordering::Relaxed) == stamp {
                    return true;
                }
                match s.outbox.push(&frame, max_queue) {
                    Ok(()) => {
                        reached += 1;
                        true
                    }
                    Err(closed) => {
                        dropped += usize::from(closed.overflowed_now);
                        false
                    }
                }
            });
        };
        match &request.to {
            app::event::Recipients::All => users.values_mut().for_each(&mut deliver),
            app::event::Recipients::Users(names) => {
                for name in names {
                    if let Some(subscribers) = users.get_mut(name) {
                        deliver(subscribers);
                    }
                }
            }
        }
        topics.matching(&request.topics, &mut deliver);
        if dropped > 0 {
            // Still counted until their writers have closed their sockets (`unregister`), so
            // the count never falls below the descriptors streams hold.
            users.retain(|_, subscribers| !subscribers.is_empty());
            topics.prune();
        }
        state.history.push(Stored { id, to: request.to, topics: request.topics, frame });
        if !live {
            return reached;
        }
        let metrics = &self.shared.metrics;
        metrics.published.fetch_add(1, Ordering::Relaxed);
        metrics.delivered.fetch_add(reached as u64, Ordering::Relaxed);
        if dropped > 0 {
            metrics.slow_consumers_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(dropped, "closed streams whose readers fell more than --max-queue behind");
        }
        reached
    }

    /// Evicts the kept events older than `--history-ttl`.
    fn expire(&self, state: &mut State) {
        if let Some(ttl) = self.shared.settings.history_ttl {
            state.history.expire(now_millis().saturating_sub(ttl.as_millis() as u64));
        }
    }

    /// Opens a stream for what `interest` asks: the preamble (retry, cursor, welcome), the
    /// replay after `last_event_id`, then live events. Registration and the replay's first part
    /// happen under one lock, so no event is missed or sent twice; a replay longer than
    /// `--max-queue` goes on from the history as the reader drains it. The cursor comes before
    /// the welcome so that the welcome already carries it as its `lastEventId`: a client
    /// resuming from the last event it saw resumes from the cursor even if no other event came.
    /// The welcome's data is the user's name (empty for an anonymous stream).
    pub fn subscribe(&self, interest: Interest, last_event_id: Option<&str>) -> Result<Subscription, SubscribeError> {
        let settings = &self.shared.settings;
        let mut head = BytesMut::new();
        head.extend_from_slice(sse::retry(settings.retry.as_millis() as u64).as_bytes());
        let welcome = sse::event(None, &EventName::message(), interest.user.as_ref().map_or("", UserName::as_str));

        let mut state = self.state();
        if self.shared.shutdown.is_cancelled() {
            return Err(SubscribeError::ShuttingDown);
        }
        if state.connections >= settings.max_connections {
            return Err(SubscribeError::HubFull);
        }
        if let Some(user) = &interest.user {
            let held = state.users.get(user).map_or(0, Vec::len);
            if held >= settings.max_per_user {
                return Err(SubscribeError::UserFull(settings.max_per_user));
            }
        }
        self.expire(&mut state);
        head.extend_from_slice(sse::id_only(&state.newest).as_bytes());
        head.extend_from_slice(welcome.as_bytes());
        let mut replayed = Vec::new();
        let mut replay = None;
        if let Some(asked) = last_event_id {
            let after = match state.history.resume(asked, state.newest) {
                Resume::After(id) => id,
                Resume::Gap => {
                    head.extend_from_slice(&gap_notice(asked, &state.history));
                    state.history.floor()
                }
            };
            let part = state.history.replay(&interest, after, settings.max_queue, &mut replayed);
            if !part.done {
                replay = Some(part.last.unwrap_or(after));
            }
        }
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        let outbox = if replay.is_some() { Outbox::replaying() } else { Outbox::default() };
        let subscriber = Arc::new(Subscriber { id, outbox, stamp: AtomicU64::new(state.stamp) });
        if let Some(user) = &interest.user {
            state.users.entry(user.clone()).or_default().push(Arc::clone(&subscriber));
        }
        state.topics.add(&subscriber, &interest.selectors);
        state.connections += 1;
        drop(state);

        tracing::info!(user = %interest.label(), topics = interest.selectors.len(), "stream opened");
        replayed.insert(0, head.freeze());
        Ok(Subscription::new(
            replayed,
            replay,
            subscriber,
            Registration { hub: self.clone(), interest, id, opened: Instant::now() },
        ))
    }

    fn unregister(&self, interest: &Interest, id: u64) {
        let mut state = self.state();
        state.connections -= 1;
        state.topics.remove(id, &interest.selectors);
        let Some(user) = &interest.user else { return };
        let Some(subscribers) = state.users.get_mut(user) else { return };
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            state.users.remove(user);
        }
    }

    /// Open streams per exact topic, sorted by topic.
    pub fn topics(&self) -> Vec<TopicStreams> {
        self.state().topics.exact_topics()
    }

    /// How many distinct exact topics open streams subscribe to.
    pub fn topic_count(&self) -> usize {
        self.state().topics.distinct()
    }

    /// Open streams per user, sorted by user.
    pub fn users(&self) -> Vec<UserConnections> {
        let state = self.state();
        state
            .users
            .iter()
            .map(|(user, subs)| UserConnections { user: user.to_string(), connections: subs.len() })
            .collect()
    }

    /// How many streams are open.
    pub fn connections(&self) -> usize {
        self.state().connections
    }

    /// One connected user chosen uniformly at random, for the ticker.
    pub fn random_user(&self, rng: &mut impl rand::Rng) -> Option<UserName> {
        use rand::seq::IteratorRandom;
        self.state().users.keys().choose(rng).cloned()
    }
}

/// The `gap` event for a client whose last id `asked` is not in the history.
fn gap_notice(asked: &str, history: &History) -> Bytes {
    let notice = GapNotice { last_event_id: asked.to_owned(), earliest: history.earliest().map(|id| id.to_string()) };
    let data = serde_json::to_string(&notice).unwrap_or_default();
    Bytes::from(sse::event(None, &EventName::gap(), &data))
}
