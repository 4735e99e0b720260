//! The retained events: the newest across all users, at most `capacity` of them and at most
//! `max_bytes` of memory, in id order, each encoded once, indexed by user so a replay reads only
//! the events it returns (a reconnect storm of thousands of clients must not scan the whole
//! history once per client, under the hub's lock).

use app::event::{EventId, Recipients, UserName};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// One published event as it is kept: who it is for, and its frame exactly as streams get it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub id: EventId,
    pub to: Recipients,
    pub frame: Bytes,
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
    by_user: HashMap<UserName, VecDeque<u64>>,
    /// Positions of the broadcasts, oldest first.
    broadcasts: VecDeque<u64>,
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
    let names = match &stored.to {
        Recipients::All => 0,
        Recipients::Users(users) => users.iter().map(|u| u.as_str().len() + RECIPIENT_OVERHEAD).sum(),
    };
    stored.frame.len() + EVENT_OVERHEAD + names
}

/// What [`History::replay`] appended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    /// The id of the last frame appended, if any.
    pub last: Option<EventId>,
    /// Whether it was everything held after the id asked for.
    pub done: bool,
}

/// No positions: the index of a user nothing is held for.
static NONE: VecDeque<u64> = VecDeque::new();

impl History {
    pub fn new(capacity: usize, max_bytes: usize, start: EventId) -> Self {
        History {
            events: VecDeque::new(),
            first: 0,
            by_user: HashMap::new(),
            broadcasts: VecDeque::new(),
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
            Recipients::Users(users) => {
                for user in users {
                    match self.by_user.get_mut(user) {
                        Some(positions) => positions.push_back(position),
                        None => {
                            self.by_user.insert(user.clone(), VecDeque::from([position]));
                        }
                    }
                }
            }
        }
        self.bytes += cost(&stored);
        self.events.push_back(stored);
        // Whichever bound is reached first; an event too large for the bytes alone goes at once.
        while self.events.len() > self.capacity || self.bytes > self.max_bytes {
            let Some(evicted) = self.events.pop_front() else { break };
            self.bytes -= cost(&evicted);
            self.forget(&evicted);
            self.first += 1;
            self.floor = evicted.id;
        }
    }

    /// Drops the oldest event's index entries (they are the oldest in each list).
    fn forget(&mut self, evicted: &Stored) {
        match &evicted.to {
            Recipients::All => {
                self.broadcasts.pop_front();
            }
            Recipients::Users(users) => {
                for user in users {
                    if let Some(positions) = self.by_user.get_mut(user) {
                        positions.pop_front();
                        if positions.is_empty() {
                            self.by_user.remove(user);
                        }
                    }
                }
            }
        }
    }

    /// The oldest id held, if any.
    pub fn earliest(&self) -> Option<EventId> {
        self.events.front().map(|e| e.id)
    }

    /// Decides where a client that last saw `asked` resumes, given the newest id assigned.
    pub fn resume(&self, asked: &str, newest: EventId) -> Resume {
        match asked.parse::<EventId>() {
            Ok(id) if self.floor <= id && id <= newest => Resume::After(id),
            _ => Resume::Gap,
        }
    }

    /// The newest id no longer held: everything after it is.
    pub fn floor(&self) -> EventId {
        self.floor
    }

    /// The events for `user` (addressed to them or to all) with an id after `after`, in order:
    /// the user's positions and the broadcasts', merged as they are read.
    fn events_for<'a>(&'a self, user: &UserName, after: EventId) -> impl Iterator<Item = &'a Stored> + 'a {
        let start = self.first + self.events.partition_point(|e| e.id <= after) as u64;
        let from = |positions: &'a VecDeque<u64>| {
            positions.range(positions.partition_point(|&p| p < start)..).copied().peekable()
        };
        let mut own = from(self.by_user.get(user).unwrap_or(&NONE));
        let mut all = from(&self.broadcasts);
        std::iter::from_fn(move || {
            let next = match (own.peek(), all.peek()) {
                (Some(a), Some(b)) if a < b => own.next(),
                (Some(_), None) => own.next(),
                _ => all.next(),
            }?;
            self.events.get((next - self.first) as usize)
        })
    }

    /// Appends to `into` the frames for `user` after `after`, oldest first, shared with the
    /// history, until they hold `budget` bytes (one frame at least).
    pub fn replay(&self, user: &UserName, after: EventId, budget: usize, into: &mut Vec<Bytes>) -> Part {
        let mut events = self.events_for(user, after).peekable();
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
    use super::*;

    fn id(millis: u64) -> EventId {
        EventId { millis, seq: 0 }
    }

    fn stored(millis: u64, to: &str) -> Stored {
        let to = if to == "*" { Recipients::All } else { Recipients::Users(vec![UserName::new(to).unwrap()]) };
        Stored { id: id(millis), to, frame: Bytes::from(millis.to_string()) }
    }

    fn replay(history: &History, user: &str, after: Option<EventId>) -> Vec<Bytes> {
        let user = UserName::new(user).unwrap();
        let mut frames = Vec::new();
        let part = history.replay(&user, after.unwrap_or(history.floor()), usize::MAX, &mut frames);
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
        assert_eq!(history.earliest(), Some(id(4)));
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
            history.push(Stored { id: id(millis), to, frame: Bytes::from(millis.to_string()) });
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
        let wide = Stored { id: id(2), to: Recipients::Users(names), frame: Bytes::from_static(b"x") };
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
        let user = UserName::new("a").unwrap();
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
}
