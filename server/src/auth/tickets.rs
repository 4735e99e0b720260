//! The one-time stream tickets outstanding. They all live `--ticket-ttl`, so issue order is
//! expiry order: expired tickets leave from the front of a queue, never by a scan of the table.
//! Each user may hold only so many, so one subscriber cannot fill the table for everyone.

use app::event::UserName;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// Redeemed tickets stay in the queue until they reach its front; past this many more entries
/// than twice the live tickets the queue is compacted (amortised O(1) per ticket).
const COMPACT_SLACK: usize = 64;

/// Why a ticket was not issued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The user holds the most unredeemed tickets allowed.
    UserFull(usize),
    /// The table holds the most tickets allowed.
    TableFull,
}

pub(super) struct Ticket {
    pub(super) user: UserName,
    /// The topic selectors of the token it was bought with (its `subscribe` claim).
    pub(super) subscribe: Vec<String>,
    /// When the token the ticket was bought with stops being valid: the stream ends there too.
    pub(super) expires: SystemTime,
    issued: Instant,
}

pub(super) struct Tickets {
    ttl: Duration,
    per_user_limit: usize,
    limit: usize,
    by_value: HashMap<String, Ticket>,
    /// Every ticket issued and not yet expired, oldest first (redeemed ones too, until they
    /// reach the front or a compaction).
    order: VecDeque<(Instant, String)>,
    /// Unredeemed, unexpired tickets per user.
    per_user: HashMap<UserName, usize>,
}

impl Tickets {
    pub(super) fn new(ttl: Duration, per_user_limit: usize, limit: usize) -> Tickets {
        Tickets {
            ttl,
            per_user_limit,
            limit,
            by_value: HashMap::new(),
            order: VecDeque::new(),
            per_user: HashMap::new(),
        }
    }

    /// Adds `value` for `user` as of `now`, after dropping the tickets expired by then.
    pub(super) fn issue(
        &mut self,
        value: String,
        user: UserName,
        subscribe: Vec<String>,
        expires: SystemTime,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.expire(now);
        let held = self.per_user.get(&user).copied().unwrap_or(0);
        if held >= self.per_user_limit {
            return Err(Refusal::UserFull(self.per_user_limit));
        }
        if self.by_value.len() >= self.limit {
            return Err(Refusal::TableFull);
        }
        self.per_user.insert(user.clone(), held + 1);
        self.order.push_back((now, value.clone()));
        self.by_value.insert(value, Ticket { user, subscribe, expires, issued: now });
        Ok(())
    }

    pub(super) fn get(&self, value: &str) -> Option<&Ticket> {
        self.by_value.get(value)
    }

    /// Whether `ticket` is still within its lifetime at `now`.
    pub(super) fn is_fresh(&self, ticket: &Ticket, now: Instant) -> bool {
        now.saturating_duration_since(ticket.issued) < self.ttl
    }

    /// Takes a ticket out of the table (its queue entry leaves later).
    pub(super) fn take(&mut self, value: &str) -> Option<Ticket> {
        let ticket = self.by_value.remove(value)?;
        if let Some(held) = self.per_user.get_mut(&ticket.user) {
            *held -= 1;
            if *held == 0 {
                self.per_user.remove(&ticket.user);
            }
        }
        Some(ticket)
    }

    /// Drops the tickets expired at `now`, from the front of the queue only.
    fn expire(&mut self, now: Instant) {
        while let Some((issued, _)) = self.order.front() {
            if now.saturating_duration_since(*issued) < self.ttl {
                break;
            }
            if let Some((_, value)) = self.order.pop_front() {
                self.take(&value);
            }
        }
        if self.order.len() > 2 * self.by_value.len() + COMPACT_SLACK {
            let live = &self.by_value;
            self.order.retain(|(_, value)| live.contains_key(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    fn issue(tickets: &mut Tickets, value: &str, name: &str, now: Instant) -> Result<(), Refusal> {
        tickets.issue(value.to_owned(), user(name), Vec::new(), SystemTime::now() + TTL, now)
    }

    /// A user at the cap is refused; another user is not; redeeming or expiry makes room again.
    #[test]
    fn the_cap_is_per_user() {
        let t0 = Instant::now();
        let mut tickets = Tickets::new(TTL, 2, 100);
        issue(&mut tickets, "a1", "amy", t0).unwrap();
        issue(&mut tickets, "a2", "amy", t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(issue(&mut tickets, "a3", "amy", t0 + Duration::from_secs(2)), Err(Refusal::UserFull(2)));
        assert_eq!(issue(&mut tickets, "b1", "bob", t0 + Duration::from_secs(2)), Ok(()));
        assert!(tickets.take("a2").is_some());
        assert_eq!(
            issue(&mut tickets, "a3", "amy", t0 + Duration::from_secs(3)),
            Ok(()),
            "a redeemed one frees a place"
        );
        assert_eq!(issue(&mut tickets, "a4", "amy", t0 + TTL - Duration::from_millis(1)), Err(Refusal::UserFull(2)));
        assert_eq!(issue(&mut tickets, "a4", "amy", t0 + TTL), Ok(()), "an expired one frees a place");
        assert!(tickets.get("a1").is_none(), "expired tickets leave the table");
    }

    /// Expiry is by issue order and the lifetime is exact: fresh strictly before `ttl`.
    #[test]
    fn tickets_expire_oldest_first() {
        let t0 = Instant::now();
        let mut tickets = Tickets::new(TTL, 16, 100);
        issue(&mut tickets, "old", "amy", t0).unwrap();
        issue(&mut tickets, "new", "bob", t0 + Duration::from_secs(10)).unwrap();
        let old = tickets.get("old").unwrap();
        assert!(tickets.is_fresh(old, t0 + TTL - Duration::from_millis(1)));
        assert!(!tickets.is_fresh(old, t0 + TTL));
        issue(&mut tickets, "later", "cat", t0 + TTL).unwrap();
        assert!(tickets.get("old").is_none());
        assert!(tickets.get("new").is_some());
        assert_eq!(tickets.per_user.get(&user("amy")), None);
    }

    /// The table's own limit still holds, and redeemed tickets do not pile up in the queue.
    #[test]
    fn the_table_and_its_queue_stay_bounded() {
        let t0 = Instant::now();
        let mut tickets = Tickets::new(TTL, 16, 3);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            issue(&mut tickets, &format!("t{i}"), name, t0).unwrap();
        }
        assert_eq!(issue(&mut tickets, "t3", "d", t0), Err(Refusal::TableFull));
        assert!(tickets.take("t0").is_some());
        for i in 0..10_000 {
            let value = format!("cycle{i}");
            issue(&mut tickets, &value, "e", t0).unwrap();
            assert!(tickets.take(&value).is_some());
            assert!(tickets.order.len() <= 2 * tickets.by_value.len() + COMPACT_SLACK + 1, "{}", tickets.order.len());
        }
    }
}
