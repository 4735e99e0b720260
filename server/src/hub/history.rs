//! The retained events: the newest `capacity` across all users, in id order, each encoded once.

use app::event::{EventId, Recipients, UserName};
use bytes::Bytes;
use std::collections::VecDeque;

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
    capacity: usize,
    /// The newest id no longer held (or the hub's start position): a client that has seen it has
    /// seen everything that was evicted.
    floor: EventId,
}

impl History {
    pub fn new(capacity: usize, start: EventId) -> Self {
        History { events: VecDeque::new(), capacity, floor: start }
    }

    pub fn push(&mut self, stored: Stored) {
        if self.capacity == 0 {
            self.floor = stored.id;
            return;
        }
        self.events.push_back(stored);
        while self.events.len() > self.capacity {
            if let Some(evicted) = self.events.pop_front() {
                self.floor = evicted.id;
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
        let start = after.map_or(0, |after| self.events.partition_point(|e| e.id <= after));
        self.events.range(start..).filter(move |e| e.to.includes(user)).map(|e| &e.frame)
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
