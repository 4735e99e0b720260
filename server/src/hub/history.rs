//! The retained events: the newest across all users, at most `capacity` of them and at most
//! `max_bytes` of memory (and, with a time to live, none older than it), in id order, each
//! encoded once, indexed by user and by topic so a replay reads only the events it returns (a
//! reconnect storm of thousands of clients must not scan the whole history once per client,
//! under the hub's lock). A stream with `*` or a template reads the events that have topics and
//! keeps those its selectors match.

use super::topics::Interest;
use app::event::{CustomId, EventId, Recipients, Topic};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// One published event as it is kept: who it is for, and its frame exactly as streams get it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub id: EventId,
    pub to: Recipients,
    pub topics: Vec<Topic>,
    /// Only for streams whose credential allows one of `topics` (or addressed by name).
    pub private: bool,
    /// The id the publisher chose, which streams see instead of `id`.
    pub custom: Option<CustomId>,
    pub frame: Bytes,
}

impl Stored {
    /// The id streams see.
    pub fn public_id(&self) -> String {
        self.custom.as_ref().map_or_else(|| self.id.to_string(), |c| c.as_str().to_owned())
    }
}

/// Where a replay starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Everything after the id is still held: replay exactly what was missed.
    After(EventId),
    /// The id is unknown (evicted, from before a restart, in the future, or malformed): tell the
    /// client with a `gap`, then replay all that is held.
    Gap,
}

#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Stored>,
    /// The position of `events[0]` among all events ever pushed: positions stay put as the
    /// front is evicted.
    first: u64,
    /// Positions of the events addressed to each user by name, oldest first.
    by_user: HashMap<app::event::UserName, VecDeque<u64>>,
    /// Positions of the broadcasts, oldest first.
    broadcasts: VecDeque<u64>,
    /// Positions of the events about each topic, oldest first.
    by_topic: HashMap<Topic, VecDeque<u64>>,
    /// Positions of the events with any topic, oldest first.
    topical: VecDeque<u64>,
    /// The events held whose publisher chose their id, by that id (the oldest held, if a
    /// publisher reused an id: a client resuming from it may see some events twice, never
    /// miss one).
    by_custom: HashMap<CustomId, EventId>,
    capacity: usize,
    /// The most the retained events may cost, in bytes (see [`cost`]).
    max_bytes: usize,
    /// What the retained events cost now.
    bytes: usize,
    /// The newest id no longer held (or the hub's start position): a client that has seen it has
    /// seen everything that was evicted.
    floor: EventId,
}

/// What one event costs beyond its frame's bytes: its slot, the frame's shared header and its
/// index entry. An estimate, so the byte bound holds within a small factor of what the allocator
/// hands out.
const EVENT_OVERHEAD: usize = 128;
/// What each named recipient costs beyond its name: its place in the `to` list and in the index.
const RECIPIENT_OVERHEAD: usize = 64;

/// The memory one retained event is counted for. Names count too: a `to` list of thousands of
/// users can outweigh the frame.
fn cost(stored: &Stored) -> usize {
    let names: usize = match &stored.to {
        Recipients::All => 0,
        Recipients::Users(users) => users.iter().map(|u| u.as_str().len() + RECIPIENT_OVERHEAD).sum(),
    };
    let topics: usize = stored.topics.iter().map(|t| t.as_str().len() + RECIPIENT_OVERHEAD).sum();
    let custom = stored.custom.as_ref().map_or(0, |c| c.as_str().len() + RECIPIENT_OVERHEAD);
    stored.frame.len() + EVENT_OVERHEAD + names + topics + custom
}

/// What [`History::replay`] appended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    /// The id of the last frame appended, if any.
    pub last: Option<EventId>,
    /// Whether it was everything held after the id asked for.
    pub done: bool,
}

/// Appends `position` to the list of `key`.
fn index<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, VecDeque<u64>>, key: &K, position: u64) {
    match map.get_mut(key) {
        Some(positions) => positions.push_back(position),
        None => {
            map.insert(key.clone(), VecDeque::from([position]));
        }
    }
}

/// Drops the oldest position of `key` (the oldest event's, being evicted).
fn unindex<K: std::hash::Hash + Eq>(map: &mut HashMap<K, VecDeque<u64>>, key: &K) {
    if let Some(positions) = map.get_mut(key) {
        positions.pop_front();
        if positions.is_empty() {
            map.remove(key);
        }
    }
}

/// The last event id that asks for everything held.
pub(crate) const EARLIEST: &str = "earliest";

/// No positions: the index of a user nothing is held for.
static NONE: VecDeque<u64> = VecDeque::new();

impl History {
    pub fn new(capacity: usize, max_bytes: usize, start: EventId) -> Self {
        History {
            events: VecDeque::new(),
            first: 0,
            by_user: HashMap::new(),
            broadcasts: VecDeque::new(),
            by_topic: HashMap::new(),
            topical: VecDeque::new(),
            by_custom: HashMap::new(),
            capacity,
            max_bytes,
            bytes: 0,
            floor: start,
        }
    }

    pub fn push(&mut self, stored: Stored) {
        if self.capacity == 0 {
            self.floor = stored.id;
            return;
        }
        let position = self.first + self.events.len() as u64;
        match &stored.to {
            Recipients::All => self.broadcasts.push_back(position),
            Recipients::Users(users) => users.iter().for_each(|user| index(&mut self.by_user, user, position)),
        }
        if !stored.topics.is_empty() {
            self.topical.push_back(position);
            stored.topics.iter().for_each(|topic| index(&mut self.by_topic, topic, position));
        }
        if let Some(custom) = &stored.custom {
            self.by_custom.entry(custom.clone()).or_insert(stored.id);
        }
        self.bytes += cost(&stored);
        self.events.push_back(stored);
        // Whichever bound is reached first; an event too large for the bytes alone goes at once.
        while self.events.len() > self.capacity || self.bytes > self.max_bytes {
            self.evict_oldest();
        }
    }

    /// Evicts the events published before `before` (milliseconds since the epoch: an id's time).
    pub fn expire(&mut self, before: u64) {
        while self.events.front().is_some_and(|e| e.id.millis < before) {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let Some(evicted) = self.events.pop_front() else { return };
        self.bytes -= cost(&evicted);
        self.forget(&evicted);
        self.first += 1;
        self.floor = evicted.id;
    }

    /// Drops the oldest event's index entries (they are the oldest in each list).
    fn forget(&mut self, evicted: &Stored) {
        match &evicted.to {
            Recipients::All => {
                self.broadcasts.pop_front();
            }
            Recipients::Users(users) => users.iter().for_each(|user| unindex(&mut self.by_user, user)),
        }
        if !evicted.topics.is_empty() {
            self.topical.pop_front();
            evicted.topics.iter().for_each(|topic| unindex(&mut self.by_topic, topic));
        }
        if let Some(custom) = &evicted.custom {
            if self.by_custom.get(custom) == Some(&evicted.id) {
                // A reused id now names its next oldest holder, if any (a rare scan).
                match self.events.iter().find(|e| e.custom.as_ref() == Some(custom)) {
                    Some(next) => self.by_custom.insert(custom.clone(), next.id),
                    None => self.by_custom.remove(custom),
                };
            }
        }
    }

    /// The oldest id held, if any, as streams saw it.
    pub fn earliest(&self) -> Option<String> {
        self.events.front().map(Stored::public_id)
    }

    /// Whether an event with this publisher's id is held.
    #[cfg(test)]
    pub fn holds(&self, custom: &CustomId) -> bool {
        self.by_custom.contains_key(custom)
    }

    /// Decides where a client that last saw `asked` resumes, given the newest id assigned:
    /// after a publisher's id held, after one of the hub's ids not yet evicted, or from the
    /// start of the history for `earliest` (Mercure's "all you have").
    pub fn resume(&self, asked: &str, newest: EventId) -> Resume {
        if asked == EARLIEST {
            return Resume::After(self.floor);
        }
        if let Some(id) = CustomId::new(asked).ok().and_then(|custom| self.by_custom.get(&custom)) {
            return Resume::After(*id);
        }
        match asked.parse::<EventId>() {
            Ok(id) if self.floor <= id && id <= newest => Resume::After(id),
            _ => Resume::Gap,
        }
    }

    /// The newest id no longer held: everything after it is.
    pub fn floor(&self) -> EventId {
        self.floor
    }

    /// The events `interest` wants with an id after `after`, in order, each once: the lists of
    /// positions it draws on (its user's, the broadcasts', its topics' or every topical event,
    /// filtered by its selectors), merged as they are read.
    fn events_for<'a>(&'a self, interest: &'a Interest, after: EventId) -> impl Iterator<Item = &'a Stored> + 'a {
        let start = self.first + self.events.partition_point(|e| e.id <= after) as u64;
        let from = |positions: &'a VecDeque<u64>| positions.range(positions.partition_point(|&p| p < start)..).copied();
        let mut lists: Vec<std::iter::Peekable<Box<dyn Iterator<Item = u64> + 'a>>> = Vec::new();
        if let Some(user) = &interest.user {
            lists.push(
                (Box::new(from(self.by_user.get(user).unwrap_or(&NONE))) as Box<dyn Iterator<Item = u64>>).peekable(),
            );
            lists.push((Box::new(from(&self.broadcasts)) as Box<dyn Iterator<Item = u64>>).peekable());
        }
        if interest.has_patterns() {
            let wanted = move |p: &u64| self.event(*p).is_some_and(|e| interest.wants_topic(&e.topics, e.private));
            lists.push((Box::new(from(&self.topical).filter(wanted)) as Box<dyn Iterator<Item = u64>>).peekable());
        } else {
            for selector in &interest.selectors {
                if let super::selector::Selector::Exact(topic) = selector {
                    let positions = self.by_topic.get(topic).unwrap_or(&NONE);
                    let allowed =
                        move |p: &u64| self.event(*p).is_some_and(|e| !e.private || interest.authorizes(&e.topics));
                    lists.push((Box::new(from(positions).filter(allowed)) as Box<dyn Iterator<Item = u64>>).peekable());
                }
            }
        }
        let mut last = None;
        std::iter::from_fn(move || loop {
            let (at, _) =
                lists.iter_mut().enumerate().filter_map(|(i, l)| Some((i, *l.peek()?))).min_by_key(|&(_, p)| p)?;
            let next = lists[at].next()?;
            // A position in several lists (an event for the user and about a topic) comes once.
            if last == Some(next) {
                continue;
            }
            last = Some(next);
            return self.event(next);
        })
    }

    fn event(&self, position: u64) -> Option<&Stored> {
        self.events.get(position.checked_sub(self.first)? as usize)
    }

    /// Appends to `into` the frames `interest` wants after `after`, oldest first, shared with
    /// the history, until they hold `budget` bytes (one frame at least).
    pub fn replay(&self, interest: &Interest, after: EventId, budget: usize, into: &mut Vec<Bytes>) -> Part {
        let mut events = self.events_for(interest, after).peekable();
        let (mut taken, mut last) = (0, None);
        while let Some(event) = events.next_if(|e| last.is_none() || taken + e.frame.len() <= budget) {
            taken += event.frame.len();
            into.push(event.frame.clone());
            last = Some(event.id);
        }
        Part { last, done: events.peek().is_none() }
    }
}

#[cfg(test)]
mod tests {
    use super::super::selector::Selector;
    use super::*;
    use app::event::UserName;

    fn id(millis: u64) -> EventId {
        EventId { millis, seq: 0 }
    }

    fn stored(millis: u64, to: &str) -> Stored {
        let to = if to == "*" { Recipients::All } else { Recipients::Users(vec![UserName::new(to).unwrap()]) };
        Stored {
            id: id(millis),
            to,
            topics: Vec::new(),
            private: false,
            custom: None,
            frame: Bytes::from(millis.to_string()),
        }
    }

    fn replay(history: &History, user: &str, after: Option<EventId>) -> Vec<Bytes> {
        replay_for(history, &Interest::user(UserName::new(user).unwrap()), after)
    }

    fn replay_for(history: &History, interest: &Interest, after: Option<EventId>) -> Vec<Bytes> {
        let mut frames = Vec::new();
        let part = history.replay(interest, after.unwrap_or(history.floor()), usize::MAX, &mut frames);
        assert!(part.done, "an unbounded replay takes everything");
        frames
    }

    /// Replay returns only the user's and broadcast events after the id, in order.
    #[test]
    fn replays_a_users_events_after_an_id() {
        let mut history = History::new(10, usize::MAX, id(1));
        for (millis, to) in [(2, "a"), (3, "b"), (4, "*"), (5, "a")] {
            history.push(stored(millis, to));
        }
        assert_eq!(replay(&history, "a", Some(id(2))), ["4", "5"]);
        assert_eq!(replay(&history, "b", None), ["3", "4"]);
        assert_eq!(history.resume("3-0", id(5)), Resume::After(id(3)));
        assert_eq!(history.resume("1-0", id(5)), Resume::After(id(1)), "the start position is known");
    }

    /// Evicted, pre-start, future and malformed ids are gaps.
    #[test]
    fn unknown_ids_are_gaps() {
        let mut history = History::new(2, usize::MAX, id(1));
        for millis in 2..=5 {
            history.push(stored(millis, "a"));
        }
        assert_eq!(history.earliest(), Some(id(4).to_string()));
        assert_eq!(history.resume("3-0", id(5)), Resume::After(id(3)), "3 was the last evicted");
        assert_eq!(history.resume("2-0", id(5)), Resume::Gap);
        assert_eq!(history.resume("0-5", id(5)), Resume::Gap);
        assert_eq!(history.resume("6-0", id(5)), Resume::Gap);
        assert_eq!(history.resume("x", id(5)), Resume::Gap);
    }

    /// The index follows eviction: replays after it are exactly the scan's answer, for users
    /// addressed alone, together and by broadcast.
    #[test]
    fn the_index_agrees_with_a_scan_through_eviction() {
        let names = ["a", "b", "c"];
        let mut history = History::new(7, usize::MAX, id(0));
        let mut all = Vec::new();
        for millis in 1..=40u64 {
            let to = match millis % 5 {
                0 => Recipients::All,
                1 => Recipients::Users(vec![UserName::new("a").unwrap(), UserName::new("b").unwrap()]),
                k => Recipients::Users(vec![UserName::new(names[k as usize % 3]).unwrap()]),
            };
            all.push((id(millis), to.clone()));
            history.push(Stored {
                id: id(millis),
                to,
                topics: Vec::new(),
                private: false,
                custom: None,
                frame: Bytes::from(millis.to_string()),
            });
            let held = &all[all.len().saturating_sub(7)..];
            for name in names {
                let user = UserName::new(name).unwrap();
                for after in [None, Some(id(millis.saturating_sub(3)))] {
                    let expected: Vec<String> = held
                        .iter()
                        .filter(|(i, to)| after.is_none_or(|a| *i > a) && to.includes(&user))
                        .map(|(i, _)| i.millis.to_string())
                        .collect();
                    assert_eq!(replay(&history, name, after), expected, "{name} after {after:?} at {millis}");
                }
            }
        }
        assert!(history.by_user.values().all(|p| p.len() <= 7), "evicted positions are forgotten");
    }

    /// A history of zero keeps nothing and knows only the newest id.
    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut history = History::new(0, usize::MAX, id(1));
        history.push(stored(2, "a"));
        assert_eq!(history.earliest(), None);
        assert_eq!(history.resume("2-0", id(2)), Resume::After(id(2)));
        assert_eq!(history.resume("1-0", id(2)), Resume::Gap);
    }

    /// Whichever bound is reached first evicts: the byte bound counts frames, names and a fixed
    /// overhead, and an evicted id becomes the floor (a gap for a client that asks after it).
    #[test]
    fn evicts_by_bytes_or_count_whichever_comes_first() {
        let one = cost(&stored(2, "a"));
        let mut by_bytes = History::new(100, one * 3, id(1));
        for millis in 2..=6 {
            by_bytes.push(stored(millis, "a"));
        }
        assert_eq!(replay(&by_bytes, "a", None), ["4", "5", "6"]);
        assert_eq!(by_bytes.bytes, one * 3);
        assert_eq!(by_bytes.resume("2-0", id(6)), Resume::Gap);
        assert_eq!(by_bytes.resume("3-0", id(6)), Resume::After(id(3)));

        let mut by_count = History::new(2, one * 3, id(1));
        for millis in 2..=6 {
            by_count.push(stored(millis, "a"));
        }
        assert_eq!(replay(&by_count, "a", None), ["5", "6"]);

        let mut too_big = History::new(100, one - 1, id(1));
        too_big.push(stored(2, "a"));
        assert_eq!((too_big.earliest(), too_big.bytes, too_big.floor()), (None, 0, id(2)));
    }

    /// A long `to` list is counted by its names, so it cannot hide behind a small frame.
    #[test]
    fn names_count_towards_the_bytes() {
        let names: Vec<UserName> = (0..1000).map(|i| UserName::new(format!("user-{i}")).unwrap()).collect();
        let wide = Stored {
            id: id(2),
            to: Recipients::Users(names),
            topics: Vec::new(),
            private: false,
            custom: None,
            frame: Bytes::from_static(b"x"),
        };
        assert!(cost(&wide) > 1000 * RECIPIENT_OVERHEAD);
        let mut history = History::new(100, 10 * 1024, id(1));
        history.push(wide);
        assert_eq!(history.earliest(), None, "the list alone is over the bound");
        assert!(history.by_user.is_empty(), "and its index entries went with it");
    }

    /// A replay comes in parts of at most the budget (one frame at least), each part going on
    /// after the last, and says when it has taken everything.
    #[test]
    fn replays_in_parts_within_a_budget() {
        let mut history = History::new(100, usize::MAX, id(1));
        for millis in 10..20 {
            history.push(stored(millis, if millis % 3 == 0 { "*" } else { "a" }));
        }
        let user = Interest::user(UserName::new("a").unwrap());
        let (mut after, mut all) = (history.floor(), Vec::new());
        loop {
            let mut part = Vec::new();
            let Part { last, done } = history.replay(&user, after, 5, &mut part);
            assert!(part.len() == 1 || part.iter().map(Bytes::len).sum::<usize>() <= 5, "{part:?}");
            all.extend(part);
            after = last.unwrap_or(after);
            if done {
                break;
            }
        }
        let expected: Vec<String> = (10..20).map(|m: u64| m.to_string()).collect();
        assert_eq!(all, expected);
        let mut none = Vec::new();
        assert_eq!(history.replay(&user, id(19), 5, &mut none), Part { last: None, done: true });
    }

    /// A stream's replay is exactly what it would have had live: its user's events, and the
    /// events on topics its selectors match, each once, in order, through eviction and by age.
    #[test]
    fn topic_replays_agree_with_a_scan() {
        let topic = |t: &str| Topic::new(t).unwrap();
        let mut history = History::new(9, usize::MAX, id(0));
        let mut all: Vec<(EventId, Recipients, Vec<Topic>)> = Vec::new();
        let interests = [
            Interest { user: None, selectors: vec![Selector::parse("/orders/1").unwrap()], ..Interest::default() },
            Interest { user: None, selectors: vec![Selector::parse("/orders/{id}").unwrap()], ..Interest::default() },
            Interest { user: None, selectors: vec![Selector::parse("*").unwrap()], ..Interest::default() },
            Interest {
                user: Some(UserName::new("a").unwrap()),
                selectors: vec![Selector::parse("/orders/1").unwrap(), Selector::parse("/news").unwrap()],
                ..Interest::default()
            },
        ];
        for millis in 1..=40u64 {
            let (to, topics) = match millis % 6 {
                0 => (Recipients::All, vec![]),
                1 => (Recipients::nobody(), vec![topic("/orders/1"), topic("/news")]),
                2 => (Recipients::Users(vec![UserName::new("a").unwrap()]), vec![topic("/orders/1")]),
                3 => (Recipients::nobody(), vec![topic("/orders/2")]),
                4 => (Recipients::Users(vec![UserName::new("b").unwrap()]), vec![]),
                _ => (Recipients::nobody(), vec![topic("/other")]),
            };
            all.push((id(millis), to.clone(), topics.clone()));
            history.push(Stored {
                id: id(millis),
                to,
                topics,
                private: false,
                custom: None,
                frame: Bytes::from(millis.to_string()),
            });
            let held = &all[all.len().saturating_sub(9)..];
            for interest in &interests {
                for after in [None, Some(id(millis.saturating_sub(4)))] {
                    let expected: Vec<String> = held
                        .iter()
                        .filter(|(i, to, topics)| after.is_none_or(|a| *i > a) && interest.wants(to, topics, false))
                        .map(|(i, _, _)| i.millis.to_string())
                        .collect();
                    assert_eq!(replay_for(&history, interest, after), expected, "{interest:?} after {after:?}");
                }
            }
        }
        assert!(history.by_topic.values().all(|p| p.len() <= 9) && history.topical.len() <= 9);
        history.expire(38);
        // 38 and 39 have topics; 40 is for b only.
        assert_eq!(replay_for(&history, &interests[2], None), ["38", "39"]);
        assert_eq!(history.floor(), id(37), "an id evicted by age is a gap");
        assert_eq!(history.resume("36-0", id(40)), Resume::Gap);
    }
}
