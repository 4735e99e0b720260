//! The hub's synchronous core: the registry of open streams by user and by topic, the history,
//! the ids, and the one path an event takes to the outboxes. No I/O, no async, no clock: the
//! [`Hub`](super::Hub) holds it under its mutex (the only lock it knows of is each outbox's own)
//! and passes the time in (`now`: milliseconds since the epoch, an id's time), so tests drive it
//! with any clock they like.

use super::history::{History, Resume, Stored};
use super::outbox::Outbox;
use super::selector::Selector;
use super::topics::{authorizes, Interest, TopicIndex};
use super::HubSettings;
use app::event::{EventId, EventName, GapNotice, PublishRequest, Recipients, TopicStreams, UserConnections, UserName};
use app::sse;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One open stream as the publish path sees it.
pub(super) struct Subscriber {
    pub id: u64,
    pub outbox: Outbox,
    /// The selectors whose private events this stream may get (see [`Interest::authorized`]).
    authorized: Arc<[Selector]>,
    /// The stamp of the last event written to this stream (only changed under the hub's lock).
    stamp: AtomicU64,
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

/// What applying one event did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Delivery {
    /// Streams it was written to (or taken as delivered, for a stream still replaying).
    pub reached: usize,
    /// Streams it cut off: their readers fell more than `--max-queue` behind.
    pub dropped: usize,
}

/// A stream just registered, and what it is owed before live events.
pub(super) struct Opened {
    /// The newest id applied: the cursor its preamble carries.
    pub cursor: EventId,
    /// The `gap` event, if the id it resumes from is not in the history.
    pub gap: Option<Bytes>,
    /// The replay's first part.
    pub replayed: Vec<Bytes>,
    /// While the replay has not caught up: where it goes on.
    pub replay: Option<EventId>,
    pub subscriber: Arc<Subscriber>,
}

pub(super) struct Core {
    settings: HubSettings,
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
    /// Set at shutdown: no stream registers after its outbox could have been closed.
    closed: bool,
}

impl Core {
    /// A core whose history starts after `start` (a store's floor, or the memory's start time).
    pub fn new(settings: HubSettings, start: EventId) -> Core {
        Core {
            newest: start,
            reserved: start,
            history: History::new(settings.history, settings.history_bytes, start),
            users: BTreeMap::new(),
            topics: TopicIndex::default(),
            connections: 0,
            next_subscriber: 0,
            stamp: 0,
            closed: false,
            settings,
        }
    }

    /// Hands out the next id, for an event applied now or later.
    pub fn reserve(&mut self, now: u64) -> EventId {
        self.reserved = self.reserved.next(now);
        self.reserved
    }

    /// The memory store's publish: an id, then history and streams.
    pub fn publish(&mut self, request: PublishRequest, now: u64) -> (EventId, Option<Delivery>) {
        let id = self.reserve(now);
        (id, self.apply(id, request, now))
    }

    /// Applies a stored event: history, then every matching stream, each once. `None` for an
    /// id not after the newest (a store re-reading), which changes nothing.
    pub fn apply(&mut self, id: EventId, request: PublishRequest, now: u64) -> Option<Delivery> {
        if id <= self.newest {
            return None;
        }
        self.newest = id;
        self.reserved = self.reserved.max(id);
        self.expire(now);
        let max_queue = self.settings.max_queue;
        let frame = Bytes::from(sse::update(&request.public_id(&id), &request.event, request.retry, &request.data));
        // By name, an event always reaches its user; by topic, a private one only the streams
        // whose credential allows one of its topics.
        let private = request.private.then_some(request.topics.as_slice());
        self.stamp += 1;
        let stamp = self.stamp;
        let mut delivery = Delivery::default();
        let Core { users, topics, .. } = self;
        let mut deliver = |subscribers: &mut Vec<Arc<Subscriber>>, by_topic: bool| {
            subscribers.retain(|s| {
                if by_topic && private.is_some_and(|topics| !authorizes(&s.authorized, topics)) {
                    return true;
                }
                if s.stamp.swap(stamp, Ordering::Relaxed) == stamp {
                    return true;
                }
                match s.outbox.push(&frame, max_queue) {
                    Ok(()) => {
                        delivery.reached += 1;
                        true
                    }
                    Err(closed) => {
                        delivery.dropped += usize::from(closed.overflowed_now);
                        false
                    }
                }
            });
        };
        match &request.to {
            Recipients::All => users.values_mut().for_each(|list| deliver(list, false)),
            Recipients::Users(names) => {
                for name in names {
                    if let Some(subscribers) = users.get_mut(name) {
                        deliver(subscribers, false);
                    }
                }
            }
        }
        topics.matching(&request.topics, |list| deliver(list, true));
        if delivery.dropped > 0 {
            // Still counted until their writers have closed their sockets (`unregister`), so
            // the count never falls below the descriptors streams hold.
            users.retain(|_, subscribers| !subscribers.is_empty());
            topics.prune();
        }
        self.history.push(Stored {
            id,
            to: request.to,
            topics: request.topics,
            private: request.private,
            custom: request.id,
            frame,
        });
        Some(delivery)
    }

    /// The newest id the history no longer holds: everything after it is kept.
    pub fn history_floor(&self) -> EventId {
        self.history.floor()
    }

    /// Whether the history holds an event with this publisher's id.
    #[cfg(test)]
    pub fn holds(&self, custom: &app::event::CustomId) -> bool {
        self.history.holds(custom)
    }

    /// Evicts the kept events older than `--history-ttl`.
    fn expire(&mut self, now: u64) {
        if let Some(ttl) = self.settings.history_ttl {
            self.history.expire(now.saturating_sub(ttl.as_millis() as u64));
        }
    }

    /// Registers a stream for what `interest` asks and takes the replay's first part after
    /// `last_event_id`, in one step, so no event is missed or sent twice; a replay longer than
    /// `--max-queue` goes on from the history ([`Core::replay_next`]) as the reader drains it.
    pub fn subscribe(
        &mut self,
        interest: &Interest,
        last_event_id: Option<&str>,
        now: u64,
    ) -> Result<Opened, SubscribeError> {
        let settings = &self.settings;
        if self.closed {
            return Err(SubscribeError::ShuttingDown);
        }
        if self.connections >= settings.max_connections {
            return Err(SubscribeError::HubFull);
        }
        if let Some(user) = &interest.user {
            let held = self.users.get(user).map_or(0, Vec::len);
            if held >= settings.max_per_user {
                return Err(SubscribeError::UserFull(settings.max_per_user));
            }
        }
        self.expire(now);
        let (mut gap, mut replayed, mut replay) = (None, Vec::new(), None);
        if let Some(asked) = last_event_id {
            let after = match self.history.resume(asked, self.newest) {
                Resume::After(id) => id,
                Resume::Gap => {
                    gap = Some(gap_notice(asked, &self.history));
                    self.history.floor()
                }
            };
            let part = self.history.replay(interest, after, self.settings.max_queue, &mut replayed);
            if !part.done {
                replay = Some(part.last.unwrap_or(after));
            }
        }
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let outbox = if replay.is_some() { Outbox::replaying() } else { Outbox::default() };
        let subscriber = Arc::new(Subscriber {
            id,
            outbox,
            authorized: Arc::clone(&interest.authorized),
            stamp: AtomicU64::new(self.stamp),
        });
        if let Some(user) = &interest.user {
            self.users.entry(user.clone()).or_default().push(Arc::clone(&subscriber));
        }
        self.topics.add(&subscriber, &interest.selectors);
        self.connections += 1;
        Ok(Opened { cursor: self.newest, gap, replayed, replay, subscriber })
    }

    /// Moves the next part of a replay into `into`: the stream's frames after `after`, up to
    /// `--max-queue` bytes. Returns where the replay goes on, or `None` once it has caught up
    /// (the outbox is live from here) or the stream is closed. If `after` fell out of the
    /// history meanwhile, a `gap` comes first and the replay goes on from the oldest event held.
    pub fn replay_next(
        &mut self,
        interest: &Interest,
        after: EventId,
        subscriber: &Subscriber,
        into: &mut Vec<Bytes>,
        now: u64,
    ) -> Option<EventId> {
        if subscriber.outbox.is_closed() {
            return None;
        }
        self.expire(now);
        let mut after = after;
        if after < self.history.floor() {
            into.push(gap_notice(&after.to_string(), &self.history));
            after = self.history.floor();
        }
        let part = self.history.replay(interest, after, self.settings.max_queue, into);
        if part.done {
            subscriber.outbox.go_live();
            return None;
        }
        part.last.or(Some(after))
    }

    /// Removes a stream that ended, however it ended.
    pub fn unregister(&mut self, interest: &Interest, id: u64) {
        self.connections -= 1;
        self.topics.remove(id, &interest.selectors);
        let Some(user) = &interest.user else { return };
        let Some(subscribers) = self.users.get_mut(user) else { return };
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            self.users.remove(user);
        }
    }

    /// Shutdown: closes every outbox, and refuses streams from now on.
    pub fn close(&mut self) {
        self.closed = true;
        // A stream with a user and topics is in several lists; closing twice is harmless.
        for subscriber in self.users.values().flatten().chain(self.topics.subscribers()) {
            subscriber.outbox.close();
        }
    }

    /// Open streams per exact topic, sorted by topic.
    pub fn topics(&self) -> Vec<TopicStreams> {
        self.topics.exact_topics()
    }

    /// How many distinct exact topics open streams subscribe to.
    pub fn topic_count(&self) -> usize {
        self.topics.distinct()
    }

    /// Open streams per user, sorted by user.
    pub fn users(&self) -> Vec<UserConnections> {
        self.users
            .iter()
            .map(|(user, subs)| UserConnections { user: user.to_string(), connections: subs.len() })
            .collect()
    }

    /// How many streams are open (cut-off ones included until their writers end).
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// One connected user chosen uniformly at random.
    pub fn random_user(&self, rng: &mut impl rand::Rng) -> Option<UserName> {
        use rand::seq::IteratorRandom;
        self.users.keys().choose(rng).cloned()
    }
}

/// The `gap` event for a client whose last id `asked` is not in the history.
fn gap_notice(asked: &str, history: &History) -> Bytes {
    let notice = GapNotice { last_event_id: asked.to_owned(), earliest: history.earliest() };
    let data = serde_json::to_string(&notice).unwrap_or_default();
    Bytes::from(sse::event(None, &EventName::gap(), &data))
}

// The core's tests are in their own file, to keep this one short.
#[cfg(test)]
mod tests;
