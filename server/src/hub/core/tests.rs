//! Unit tests of the core. The clock is a parameter, so time is whatever a test says it is: no
//! sleeps, no runtime.

use super::*;
use crate::hub::selector::Selector;
use app::event::Topic;
use app::sse::Parser;
use std::task::{Context, Poll};
use std::time::Duration;

/// The start position, and the clock's reading when a test does not care.
const T0: u64 = 1_000_000;

fn settings() -> HubSettings {
    HubSettings {
        history: 100,
        history_bytes: usize::MAX,
        history_ttl: None,
        retry: Duration::from_secs(3),
        max_queue: 1 << 20,
        max_per_user: 4,
        max_connections: 8,
    }
}

fn core(settings: HubSettings) -> Core {
    Core::new(settings, EventId { millis: T0, seq: 0 })
}

/// `to`: `*`, a user's name, or empty for nobody by name.
fn request(to: &str, topics: &[&str], data: &str) -> PublishRequest {
    let to = match to {
        "*" => Recipients::All,
        "" => Recipients::nobody(),
        name => Recipients::Users(vec![UserName::new(name).unwrap()]),
    };
    let topics = topics.iter().map(|t| Topic::new(*t).unwrap()).collect();
    PublishRequest { topics, ..PublishRequest::new(to, EventName::message(), data) }
}

fn interest(user: Option<&str>, selectors: &[&str]) -> Interest {
    Interest {
        user: user.map(|u| UserName::new(u).unwrap()),
        selectors: selectors.iter().map(|s| Selector::parse(s).unwrap()).collect(),
        ..Interest::default()
    }
}

/// Publishes `data` at `now` and returns its id.
fn publish(core: &mut Core, to: &str, topics: &[&str], data: &str, now: u64) -> EventId {
    core.publish(request(to, topics, data), now).0
}

/// The data of the events in `frames`, in order.
fn data(frames: &[Bytes]) -> Vec<String> {
    let mut parser = Parser::new();
    frames.iter().flat_map(|frame| parser.feed(frame)).map(|e| e.data).collect()
}

/// The data of what waits in the stream's outbox (taken), or `None` once it is closed.
fn queued(subscriber: &Subscriber) -> Option<Vec<String>> {
    let mut frames = Vec::new();
    match subscriber.outbox.poll_take(&mut Context::from_waker(std::task::Waker::noop()), &mut frames) {
        Poll::Ready(false) => None,
        _ => Some(data(&frames)),
    }
}

/// A stream whose user's events and several selectors all match one event gets it once; the
/// delivery counts each stream once, and a stream nothing matches gets nothing.
#[test]
fn an_event_reaches_each_stream_once() {
    let mut core = core(settings());
    let amy = core.subscribe(&interest(Some("amy"), &["/orders/1", "/orders/{id}", "*"]), None, T0).unwrap();
    let bob = core.subscribe(&interest(Some("bob"), &[]), None, T0).unwrap();
    let orders = core.subscribe(&interest(None, &["/orders/{id}"]), None, T0).unwrap();

    let reached = |d: Option<Delivery>| d.map(|d| d.reached);
    assert_eq!(reached(core.publish(request("amy", &["/orders/1"], "a"), T0).1), Some(2));
    assert_eq!(reached(core.publish(request("*", &[], "b"), T0).1), Some(2));
    assert_eq!(reached(core.publish(request("", &["/news"], "c"), T0).1), Some(1));
    assert_eq!(reached(core.publish(request("", &["/orders/2", "/orders/3"], "d"), T0).1), Some(2));

    assert_eq!(queued(&amy.subscriber).unwrap(), ["a", "b", "c", "d"]);
    assert_eq!(queued(&bob.subscriber).unwrap(), ["b"]);
    assert_eq!(queued(&orders.subscriber).unwrap(), ["a", "d"]);
}

/// A replay is exactly what the stream missed after the id it gives: its user's events and
/// the broadcasts, in order; live events follow in the outbox, none twice.
#[test]
fn a_replay_is_exactly_what_was_missed() {
    let mut core = core(settings());
    let seen = publish(&mut core, "amy", &[], "1", T0);
    for (to, data) in [("bob", "2"), ("amy", "3"), ("*", "4"), ("", "5")] {
        publish(&mut core, to, &["/news"], data, T0);
    }
    let newest = publish(&mut core, "amy", &[], "6", T0 + 1);

    let opened = core.subscribe(&interest(Some("amy"), &[]), Some(&seen.to_string()), T0 + 1).unwrap();
    assert_eq!((opened.cursor, opened.gap, opened.replay), (newest, None, None));
    assert_eq!(data(&opened.replayed), ["3", "4", "6"]);
    publish(&mut core, "amy", &[], "7", T0 + 2);
    assert_eq!(queued(&opened.subscriber).unwrap(), ["7"]);

    let news = core.subscribe(&interest(None, &["/news"]), Some(&seen.to_string()), T0 + 2).unwrap();
    assert_eq!(data(&news.replayed), ["2", "3", "4", "5"]);
    let current = core.subscribe(&interest(Some("amy"), &[]), Some(&newest.to_string()), T0 + 2).unwrap();
    assert_eq!(data(&current.replayed), ["7"], "from the newest id seen: only what came after");
}

/// An id that is no longer held is a gap naming it and the earliest id held, then the
/// replay of everything held; evicted by count, the history keeps the newest events.
#[test]
fn an_evicted_id_is_a_gap_then_everything_held() {
    let mut core = core(HubSettings { history: 3, ..settings() });
    let ids: Vec<EventId> = (1..=5).map(|n| publish(&mut core, "amy", &[], &n.to_string(), T0)).collect();

    let opened = core.subscribe(&interest(Some("amy"), &[]), Some(&ids[0].to_string()), T0).unwrap();
    let gap = Parser::new().feed(&opened.gap.unwrap()).remove(0);
    assert_eq!(gap.event, "gap");
    let notice: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(notice, serde_json::json!({"lastEventId": ids[0].to_string(), "earliest": ids[2].to_string()}));
    assert_eq!(data(&opened.replayed), ["3", "4", "5"]);

    let last_evicted = core.subscribe(&interest(Some("amy"), &[]), Some(&ids[1].to_string()), T0).unwrap();
    assert!(last_evicted.gap.is_none(), "a client that saw the last evicted event missed nothing");
    let unknown = core.subscribe(&interest(Some("amy"), &[]), Some("not-an-id"), T0).unwrap();
    assert!(unknown.gap.is_some());
}

/// The byte bound evicts too, whichever comes first: events of about 1,250 bytes each in a
/// history of 3,500 bytes keep the newest two, though the count allows a hundred.
#[test]
fn evicts_by_bytes_before_the_count() {
    let mut core = core(HubSettings { history_bytes: 3500, ..settings() });
    let big = "x".repeat(1000);
    for n in 1..=5 {
        publish(&mut core, "amy", &[], &format!("{n}{big}"), T0);
    }
    let opened = core.subscribe(&interest(Some("amy"), &[]), Some("0-0"), T0).unwrap();
    assert!(opened.gap.is_some());
    let kept: Vec<String> = data(&opened.replayed).iter().map(|d| d[..1].to_owned()).collect();
    assert_eq!(kept, ["4", "5"]);
}

/// With `--history-ttl`, an event older than it by the clock the core is given is evicted
/// (at a publish, a subscribe and a replay's next part); without one, age evicts nothing.
#[test]
fn expires_by_age_on_the_clock_it_is_given() {
    let ttl = HubSettings { history_ttl: Some(Duration::from_secs(1)), ..settings() };
    let mut core = core(ttl);
    let a = publish(&mut core, "amy", &[], "a", T0 + 1000);
    let b = publish(&mut core, "amy", &[], "b", T0 + 1500);
    publish(&mut core, "amy", &[], "c", T0 + 2000);

    let young = core.subscribe(&interest(Some("amy"), &[]), Some(&a.to_string()), T0 + 2000).unwrap();
    assert_eq!((young.gap.is_none(), data(&young.replayed)), (true, vec!["b".into(), "c".into()]), "1 s old: kept");
    let later = core.subscribe(&interest(Some("amy"), &[]), Some(&a.to_string()), T0 + 2600).unwrap();
    assert!(later.gap.is_some(), "a and b expired at 1600 ms");
    assert_eq!(data(&later.replayed), ["c"]);
    let after_b = core.subscribe(&interest(Some("amy"), &[]), Some(&b.to_string()), T0 + 2600).unwrap();
    assert_eq!((after_b.gap.is_none(), data(&after_b.replayed)), (true, vec!["c".into()]));

    publish(&mut core, "amy", &[], "d", T0 + 5000);
    let opened = core.subscribe(&interest(Some("amy"), &[]), Some("0-0"), T0 + 5000).unwrap();
    assert_eq!(data(&opened.replayed), ["d"], "c expired when d came");

    let mut kept = Core::new(settings(), EventId { millis: T0, seq: 0 });
    publish(&mut kept, "amy", &[], "old", T0 + 1);
    let opened = kept.subscribe(&interest(Some("amy"), &[]), Some("0-0"), u64::MAX).unwrap();
    assert_eq!(data(&opened.replayed), ["old"]);
}

/// A replay longer than `--max-queue` comes in parts; what is published meanwhile is not
/// queued but reached by the replay, and once it catches up the outbox is live.
#[test]
fn a_replay_in_parts_goes_live_once_caught_up() {
    let mut core = core(HubSettings { max_queue: 200, ..settings() });
    let seen = publish(&mut core, "amy", &[], "seen", T0);
    for n in 0..10 {
        publish(&mut core, "amy", &[], &format!("{n:0>60}"), T0);
    }
    let stream = interest(Some("amy"), &[]);
    let opened = core.subscribe(&stream, Some(&seen.to_string()), T0).unwrap();
    let mut got = data(&opened.replayed);
    let mut after = opened.replay.expect("more than one part");
    publish(&mut core, "amy", &[], "during", T0);
    assert_eq!(queued(&opened.subscriber).unwrap(), Vec::<String>::new(), "nothing queued while replaying");
    loop {
        let mut part = Vec::new();
        let next = core.replay_next(&stream, after, &opened.subscriber, &mut part, T0);
        assert!(part.iter().map(Bytes::len).sum::<usize>() <= 200);
        got.extend(data(&part));
        match next {
            Some(id) => after = id,
            None => break,
        }
    }
    let expected: Vec<String> = (0..10).map(|n| format!("{n:0>60}")).chain(["during".into()]).collect();
    assert_eq!(got, expected);
    publish(&mut core, "amy", &[], "live", T0);
    assert_eq!(queued(&opened.subscriber).unwrap(), ["live"]);
}

/// A reader more than `--max-queue` behind is cut off by the publish that overflows it, counted
/// once as dropped, and leaves the lists that publish walked (here its topic's) at once; it
/// still counts as a connection, and under its user, until its writer unregisters it. A reader
/// that keeps up is not touched.
#[test]
fn a_reader_that_falls_behind_is_cut_off_and_counted_once() {
    let mut core = core(HubSettings { max_queue: 100, ..settings() });
    let stalled = core.subscribe(&interest(Some("amy"), &["/t"]), None, T0).unwrap();
    let reading = core.subscribe(&interest(Some("bob"), &["/t"]), None, T0).unwrap();
    let event = "x".repeat(30);

    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(core.publish(request("", &["/t"], &event), T0).1.unwrap());
        assert_eq!(queued(&reading.subscriber).unwrap().len(), 1);
    }
    let delivery = |reached, dropped| Delivery { reached, dropped };
    assert_eq!(deliveries, [delivery(2, 0), delivery(1, 1), delivery(1, 0)]);
    assert!(stalled.subscriber.outbox.overflowed());
    assert_eq!(queued(&stalled.subscriber), None);
    assert_eq!(core.topics().iter().map(|t| t.streams).collect::<Vec<_>>(), [1]);
    assert_eq!(core.connections(), 2, "counted until its writer ends");

    core.unregister(&interest(Some("amy"), &["/t"]), stalled.subscriber.id);
    assert_eq!(core.connections(), 1);
    assert_eq!(core.users().iter().map(|u| u.user.as_str()).collect::<Vec<_>>(), ["bob"]);
}

/// The limits refuse a stream past `--max-per-user` and `--max-connections`, free up when a
/// stream ends, and after shutdown every stream is refused and every outbox closed.
#[test]
fn limits_and_shutdown_refuse_streams() {
    let mut core = core(HubSettings { max_per_user: 2, max_connections: 3, ..settings() });
    let amy = interest(Some("amy"), &[]);
    let first = core.subscribe(&amy, None, T0).unwrap();
    core.subscribe(&amy, None, T0).unwrap();
    assert_eq!(core.subscribe(&amy, None, T0).err(), Some(SubscribeError::UserFull(2)));
    let anonymous = core.subscribe(&interest(None, &["*"]), None, T0).unwrap();
    assert_eq!(core.subscribe(&interest(Some("bob"), &[]), None, T0).err(), Some(SubscribeError::HubFull));
    core.unregister(&amy, first.subscriber.id);
    assert!(core.subscribe(&interest(Some("bob"), &[]), None, T0).is_ok());

    core.close();
    assert_eq!(queued(&anonymous.subscriber), None);
    core.unregister(&interest(None, &["*"]), anonymous.subscriber.id);
    assert_eq!(core.subscribe(&interest(Some("carol"), &[]), None, T0).err(), Some(SubscribeError::ShuttingDown));
}

/// Ids increase whatever the clock does, reserved ones included; an event whose id is not
/// after the newest applied (a store reading it again) changes nothing.
#[test]
fn ids_increase_and_an_old_id_is_applied_never() {
    let mut core = core(settings());
    let ids = [core.reserve(T0), core.reserve(T0 + 5), core.reserve(T0 + 5), core.reserve(T0 + 2)];
    let shown: Vec<String> = ids.iter().map(EventId::to_string).collect();
    let expected = [T0 + 5, T0 + 5, T0 + 5].iter().zip(0..).map(|(m, s)| format!("{m}-{s}"));
    assert_eq!(shown, [format!("{T0}-1")].into_iter().chain(expected).collect::<Vec<_>>());

    let stream = core.subscribe(&interest(Some("amy"), &[]), None, T0).unwrap();
    assert!(core.apply(ids[1], request("amy", &[], "b"), T0).is_some());
    assert_eq!(core.apply(ids[0], request("amy", &[], "a"), T0), None, "older than the newest");
    assert_eq!(core.apply(ids[1], request("amy", &[], "b again"), T0), None);
    assert_eq!(core.publish(request("amy", &[], "c"), T0).0, EventId { millis: T0 + 5, seq: 3 });
    assert_eq!(queued(&stream.subscriber).unwrap(), ["b", "c"]);
}

/// The listings: streams per user and per exact topic, sorted; a random user is a connected one.
#[test]
fn lists_users_and_topics() {
    let mut core = core(settings());
    assert_eq!(core.random_user(&mut rand::rng()), None);
    for (user, selectors) in [(Some("bob"), &["/b"][..]), (Some("amy"), &["/a", "/b"]), (None, &["/{x}"])] {
        core.subscribe(&interest(user, selectors), None, T0).unwrap();
    }
    let users: Vec<(String, usize)> = core.users().into_iter().map(|u| (u.user, u.connections)).collect();
    assert_eq!(users, [("amy".into(), 1), ("bob".into(), 1)]);
    let topics: Vec<(String, usize)> = core.topics().into_iter().map(|t| (t.topic, t.streams)).collect();
    assert_eq!(topics, [("/a".into(), 1), ("/b".into(), 2)], "templates are not exact topics");
    assert_eq!((core.topic_count(), core.connections()), (2, 3));
    let chosen = core.random_user(&mut rand::rng()).unwrap();
    assert!(["amy", "bob"].contains(&chosen.as_str()));
}

/// A stream allowed `authorized`, asking for `selectors`, with no user.
fn authorized(selectors: &[&str], allowed: &[&str]) -> Interest {
    Interest { authorized: allowed.iter().map(|s| Selector::parse(s).unwrap()).collect(), ..interest(None, selectors) }
}

/// A private event reaches, live and in a replay, only the streams whose credential allows one
/// of its topics (an alternate one will do) and the users it names; public ones reach every
/// stream that asked.
#[test]
fn private_events_reach_only_authorized_streams() {
    let mut core = core(settings());
    let anonymous = core.subscribe(&interest(None, &["/books/{id}"]), None, T0).unwrap();
    let reader = core.subscribe(&authorized(&["/books/{id}"], &["/users/amy/{?topic}"]), None, T0).unwrap();
    let amy = core.subscribe(&interest(Some("amy"), &[]), None, T0).unwrap();
    let wrong = core.subscribe(&authorized(&["/books/{id}"], &["/books/2"]), None, T0).unwrap();

    let private = |to: &str, topics: &[&str], data: &str| PublishRequest { private: true, ..request(to, topics, data) };
    let start = core.newest;
    core.publish(private("", &["/books/1", "/users/amy/?topic=%2Fbooks%2F1"], "p1"), T0);
    core.publish(request("", &["/books/1"], "public"), T0);
    core.publish(private("amy", &["/books/1"], "p2"), T0);

    assert_eq!(queued(&anonymous.subscriber).unwrap(), ["public"]);
    assert_eq!(queued(&reader.subscriber).unwrap(), ["p1", "public"]);
    assert_eq!(queued(&amy.subscriber).unwrap(), ["p2"], "named, a user gets its private event");
    assert_eq!(queued(&wrong.subscriber).unwrap(), ["public"]);

    let since = Some(start.to_string());
    let replay =
        |core: &mut Core, interest: &Interest| data(&core.subscribe(interest, since.as_deref(), T0).unwrap().replayed);
    assert_eq!(replay(&mut core, &interest(None, &["/books/1"])), ["public"]);
    assert_eq!(replay(&mut core, &interest(None, &["*"])), ["public"]);
    assert_eq!(replay(&mut core, &authorized(&["/books/1"], &["/users/amy/{?topic}"])), ["p1", "public"]);
    assert_eq!(replay(&mut core, &authorized(&["*"], &["*"])), ["p1", "public", "p2"]);
}

/// A publisher's id is the event's SSE id, a replay resumes after it, `earliest` replays all
/// that is held, and once evicted it is a gap that names the oldest id held.
#[test]
fn custom_ids_are_sse_ids_and_resume_points() {
    let mut core = core(HubSettings { history: 3, ..settings() });
    let custom = |id: &str, data: &str| PublishRequest {
        id: Some(app::event::CustomId::new(id).unwrap()),
        retry: Some(1500),
        ..request("", &["/t"], data)
    };
    let stream = core.subscribe(&interest(None, &["/t"]), None, T0).unwrap();
    core.publish(custom("urn:uuid:1", "a"), T0);
    core.publish(request("", &["/t"], "b"), T0);
    core.publish(custom("urn:uuid:3", "c"), T0);

    let mut frames = Vec::new();
    let _ = stream.subscriber.outbox.poll_take(&mut Context::from_waker(std::task::Waker::noop()), &mut frames);
    let mut parser = Parser::new();
    let events: Vec<_> = frames.iter().flat_map(|f| parser.feed(f)).collect();
    assert_eq!(events[0].last_event_id, "urn:uuid:1");
    assert_eq!(events[2].last_event_id, "urn:uuid:3");
    assert_eq!(parser.retry(), Some(1500), "the publisher's retry is sent with its event");
    assert!(core.holds(&app::event::CustomId::new("urn:uuid:1").unwrap()));

    let t = interest(None, &["/t"]);
    let opened = core.subscribe(&t, Some("urn:uuid:1"), T0).unwrap();
    assert_eq!((opened.gap.is_none(), data(&opened.replayed)), (true, vec!["b".to_owned(), "c".to_owned()]));
    let earliest = core.subscribe(&t, Some("earliest"), T0).unwrap();
    assert_eq!((earliest.gap.is_none(), data(&earliest.replayed)), (true, vec!["a".into(), "b".into(), "c".into()]));

    core.publish(request("", &["/t"], "d"), T0);
    assert!(!core.holds(&app::event::CustomId::new("urn:uuid:1").unwrap()), "evicted with its event");
    let evicted = core.subscribe(&t, Some("urn:uuid:1"), T0).unwrap();
    let gap = data(&[evicted.gap.unwrap()]).remove(0);
    assert!(gap.contains(r#""lastEventId":"urn:uuid:1""#), "{gap}");
    assert!(!gap.contains("urn:uuid:3") && gap.contains(r#""earliest":""#), "{gap}");
    assert_eq!(data(&evicted.replayed), ["b", "c", "d"]);
}

/// A reused publisher's id resumes after its oldest holder, and after that one's eviction
/// after the next: a client may see events twice, never miss one.
#[test]
fn a_reused_id_resumes_after_its_oldest_holder() {
    let mut core = core(HubSettings { history: 3, ..settings() });
    let with_id =
        |data: &str| PublishRequest { id: Some(app::event::CustomId::new("x").unwrap()), ..request("", &["/t"], data) };
    core.publish(with_id("1"), T0);
    core.publish(request("", &["/t"], "2"), T0);
    core.publish(with_id("3"), T0);
    let t = interest(None, &["/t"]);
    assert_eq!(data(&core.subscribe(&t, Some("x"), T0).unwrap().replayed), ["2", "3"]);
    core.publish(request("", &["/t"], "4"), T0);
    let opened = core.subscribe(&t, Some("x"), T0).unwrap();
    assert_eq!((opened.gap, data(&opened.replayed)), (None, vec!["4".to_owned()]));
}
