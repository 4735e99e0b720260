//! One open stream as its writer sees it: the preamble, the replay, then live events.
//!
//! A replay is read from the history as the reader drains it, never copied: each part is at most
//! `--max-queue` bytes of frames shared with the history, taken under the hub's lock when the
//! writer asks for more. While a stream replays its outbox queues nothing, since whatever is
//! published meanwhile is in the history and the replay comes to it in order; once a part
//! reaches the newest event the outbox goes live under the same lock, so nothing is doubled or
//! skipped. A reader that never reads holds one part at most.

use super::core::Subscriber;
use super::{EventId, Hub, Interest};
use bytes::Bytes;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// One open stream: its first bytes, the rest of its replay, then whatever is published for it.
pub struct Subscription {
    /// The preamble and the replay's first part, taken on the first call.
    first: Vec<Bytes>,
    /// While the replay has not caught up: the id of the last event it gave.
    replay: Option<EventId>,
    subscriber: Arc<Subscriber>,
    /// Unregisters the stream however it ends.
    registration: Registration,
    /// Whether the replay starts right after the last event id asked for (no `gap`).
    resumed: bool,
}

impl Subscription {
    pub(super) fn new(
        first: Vec<Bytes>,
        replay: Option<EventId>,
        subscriber: Arc<Subscriber>,
        registration: Registration,
        resumed: bool,
    ) -> Subscription {
        Subscription { first, replay, subscriber, registration, resumed }
    }

    /// Whether a last event id was asked for and the replay starts right after it.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Moves the frames waiting to be written into `into` (emptied by the caller).
    /// `Ready(false)` once the stream is over: its reader fell too far behind, or shutdown.
    pub fn poll_take(&mut self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<bool> {
        if !self.first.is_empty() {
            into.append(&mut self.first);
            self.first = Vec::new();
            return Poll::Ready(true);
        }
        if let Some(after) = self.replay {
            let Registration { hub, interest, .. } = &self.registration;
            self.replay = hub.replay_next(interest, after, &self.subscriber, into);
            if !into.is_empty() {
                return Poll::Ready(true);
            }
        }
        self.subscriber.outbox.poll_take(cx, into)
    }

    /// `Ready` once the hub cut the stream off: its reader fell too far behind.
    pub fn poll_overflowed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.subscriber.outbox.poll_overflowed(cx)
    }

    /// Whether the stream ended because its reader fell too far behind.
    pub fn overflowed(&self) -> bool {
        self.subscriber.outbox.overflowed()
    }
}

/// Removes a stream from the hub when it ends, whatever ended it, and logs how long it lived.
pub(super) struct Registration {
    pub(super) hub: Hub,
    pub(super) interest: Interest,
    pub(super) id: u64,
    pub(super) opened: Instant,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.interest, self.id);
        let seconds = self.opened.elapsed().as_secs_f64();
        tracing::info!(user = %self.interest.label(), duration_s = format_args!("{seconds:.3}"), "stream closed");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{HubSettings, PublishRequest};
    use super::*;
    use app::event::{EventName, Recipients, UserName};
    use app::sse::{ParsedEvent, Parser};
    use std::time::Duration;

    fn hub(history: usize, max_queue: usize) -> Hub {
        Hub::new(HubSettings {
            history,
            history_bytes: usize::MAX,
            history_ttl: None,
            retry: Duration::from_secs(3),
            max_queue,
            max_per_user: 16,
            max_connections: 100,
        })
    }

    fn publish(hub: &Hub, to: &str, data: String) -> String {
        let to = if to == "*" { Recipients::All } else { Recipients::Users(vec![UserName::new(to).unwrap()]) };
        let request = PublishRequest::new(to, EventName::message(), data);
        hub.publish_now(request).id
    }

    fn amy() -> Interest {
        Interest::user(UserName::new("amy").unwrap())
    }

    /// One call of the writer: the frames it takes (none while nothing waits), `None` once the
    /// stream is over.
    fn take(subscription: &mut Subscription) -> Option<Vec<Bytes>> {
        let mut into = Vec::new();
        match subscription.poll_take(&mut Context::from_waker(std::task::Waker::noop()), &mut into) {
            Poll::Ready(true) => Some(into),
            Poll::Ready(false) => None,
            Poll::Pending => Some(Vec::new()),
        }
    }

    fn bytes(frames: &[Bytes]) -> usize {
        frames.iter().map(Bytes::len).sum()
    }

    /// The events in `frames` as a client dispatches them, after the welcome.
    fn events(parser: &mut Parser, frames: &[Bytes]) -> Vec<ParsedEvent> {
        frames.iter().flat_map(|frame| parser.feed(frame)).filter(|e| e.data != "amy").collect()
    }

    /// A replay many times `--max-queue` reaches a reader that drains it whole, in order and
    /// each event once, in parts of at most `--max-queue`, with the events published during
    /// it after it; the frames are the history's, shared, not copied.
    #[test]
    fn a_long_replay_arrives_whole_to_a_draining_reader() {
        let hub = hub(1000, 1024);
        let mut expected = Vec::new();
        let first = publish(&hub, "amy", "first".into());
        for i in 0..200 {
            let to = ["amy", "bob", "*"][i % 3];
            let id = publish(&hub, to, format!("{i:0>100}"));
            if to != "bob" {
                expected.push(id);
            }
        }
        let mut live = hub.subscribe(amy(), None).unwrap();
        take(&mut live);
        let mut replay = hub.subscribe(amy(), Some(&first)).unwrap();
        let (mut parser, mut got, mut parts) = (Parser::new(), Vec::new(), 0);
        loop {
            let part = take(&mut replay).unwrap();
            if part.is_empty() {
                break;
            }
            let replayed = if parts == 0 { &part[1..] } else { &part[..] };
            assert!(bytes(replayed) <= 1024, "part {parts} is {} bytes", bytes(replayed));
            got.extend(events(&mut parser, &part).into_iter().map(|e| e.last_event_id));
            if parts < 10 {
                expected.push(publish(&hub, "amy", format!("live {parts}")));
            }
            parts += 1;
        }
        assert!(parts > 10, "in many parts: {parts}");
        assert_eq!(got, expected);

        let newest = publish(&hub, "amy", "after".into());
        let after = take(&mut replay).unwrap();
        assert_eq!(events(&mut parser, &after)[0].last_event_id, newest, "live once caught up");
        let shared = take(&mut live).unwrap().into_iter().last().unwrap();
        assert_eq!(after[0].as_ptr(), shared.as_ptr(), "the same bytes as every other stream's");
    }

    /// A reader that never reads holds one part of its replay (at most `--max-queue`) however
    /// much is retained for it, queues nothing of what is published meanwhile and is not cut
    /// off; when it reads again it gets everything, in order.
    #[test]
    fn a_reader_that_never_reads_holds_one_part() {
        let hub = hub(1000, 1024);
        let ids: Vec<String> = (0..300).map(|i| publish(&hub, "amy", format!("{i:0>200}"))).collect();
        let mut stalled = hub.subscribe(amy(), Some("unknown")).unwrap();
        let first = take(&mut stalled).unwrap();
        assert!(bytes(&first[1..]) <= 1024, "after the preamble, {} bytes", bytes(&first[1..]));
        let more: Vec<String> = (0..300).map(|i| publish(&hub, "amy", format!("{i:0>200}"))).collect();
        assert_eq!(stalled.subscriber.outbox.queued(), 0, "nothing queued while replaying");
        assert_eq!(hub.connections(), 1, "not cut off");

        let mut parser = Parser::new();
        let mut got: Vec<ParsedEvent> = events(&mut parser, &first);
        while let Some(part) = take(&mut stalled).filter(|p| !p.is_empty()) {
            assert!(bytes(&part) <= 1024);
            got.extend(events(&mut parser, &part));
        }
        assert_eq!(got[0].event, "gap");
        let ids_got: Vec<String> = got[1..].iter().map(|e| e.last_event_id.clone()).collect();
        assert_eq!(ids_got, [ids, more].concat());
    }

    /// When the replay's next event is evicted before the reader gets to it, the stream gets a
    /// `gap` naming the last id it had, then goes on from the oldest event held, nothing twice.
    #[test]
    fn eviction_during_a_slow_replay_is_a_gap() {
        let hub = hub(20, 250);
        let ids: Vec<String> = (0..20).map(|i| publish(&hub, "amy", format!("{i:0>100}"))).collect();
        let mut slow = hub.subscribe(amy(), Some(&ids[0])).unwrap();
        let mut parser = Parser::new();
        let got = events(&mut parser, &take(&mut slow).unwrap());
        let seen: Vec<&str> = got.iter().map(|e| e.last_event_id.as_str()).collect();
        assert_eq!(seen, [ids[1].as_str()], "one part of 250 bytes: one frame");
        let later: Vec<String> = (0..30).map(|i| publish(&hub, "amy", format!("later {i}"))).collect();

        let mut rest = Vec::new();
        while let Some(part) = take(&mut slow).filter(|p| !p.is_empty()) {
            rest.extend(events(&mut parser, &part));
        }
        assert_eq!(rest[0].event, "gap");
        let notice: serde_json::Value = serde_json::from_str(&rest[0].data).unwrap();
        assert_eq!(notice, serde_json::json!({"lastEventId": ids[1], "earliest": later[10]}));
        let after_gap: Vec<&str> = rest[1..].iter().map(|e| e.last_event_id.as_str()).collect();
        assert_eq!(after_gap, later[10..].iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Shutdown ends a stream that is still replaying.
    #[test]
    fn shutdown_ends_a_replay() {
        let hub = hub(1000, 100);
        let first = publish(&hub, "amy", "first".into());
        for i in 0..10 {
            publish(&hub, "amy", format!("{i:0>100}"));
        }
        let mut replay = hub.subscribe(amy(), Some(&first)).unwrap();
        take(&mut replay).unwrap();
        hub.shutdown();
        assert_eq!(take(&mut replay), None);
    }
}
