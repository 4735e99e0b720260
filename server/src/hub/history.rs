//! The retained events: the newest `capacity` across all users, in id order, each encoded once,
//! indexed by user so a replay reads only the events it returns (a reconnect storm of thousands
//! of clients must not scan the whole history once per client, under the hub's lock).

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
    /// The newest id no longer held (or the hub's start position): a client that has seen it has
    /// seen everything that was evicted.
    floor: EventId,
}

impl History {
    pub fn new(capacity: usize, start: EventId) -> Self {
        History {
            events: VecDeque::new(),
            first: 0,
            by_user: HashMap::new(),
            broadcasts: VecDeque::new(),
            capacity,
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
        self.events.push_back(stored);
        while self.events.len() > self.capacity {
            if let Some(evicted) = self.events.pop_front() {
                self.forget(&evicted);
                self.first += 1;
                self.floor = evicted.id;
            }
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

    /// The frames for `user` with an id after `after` (all held ones for `None`), in order.
    pub fn frames_for<'a>(
        &'a self,
        user: &'a UserName,
        after: Option<EventId>,
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        let start = self.first + after.map_or(0, |after| self.events.partition_point(|e| e.id <= after)) as u64;
        let from = |positions: &'a VecDeque<u64>| positions.range(positions.partition_point(|&p| p < start)..);
        let mut positions: Vec<u64> = self.by_user.get(user).map(from).into_iter().flatten().copied().collect();
        positions.extend(from(&self.broadcasts));
        positions.sort_unstable();
        positions.into_iter().filter_map(move |p| self.events.get((p - self.first) as usize)).map(|e| &e.frame)
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
        history.frames_for(&user, after).cloned().collect()
    }

    /// Replay returns only the user's and broadcast events after the id, in order.
    #[test]
    fn replays_a_users_events_after_an_id() {
        let mut history = History::new(10, id(1));
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
        let mut history = History::new(2, id(1));
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
        let mut history = History::new(7, id(0));
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
        let mut history = History::new(0, id(1));
        history.push(stored(2, "a"));
        assert_eq!(history.earliest(), None);
        assert_eq!(history.resume("2-0", id(2)), Resume::After(id(2)));
        assert_eq!(history.resume("1-0", id(2)), Resume::Gap);
    }
}
