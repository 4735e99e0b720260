//! The hub's vocabulary, shared by the server and the console: event ids, user and event names,
//! and the JSON bodies of the HTTP API. Every name is validated here, once, so the SSE encoder
//! never sees a value that could break a line.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

mod body;
mod request;
pub mod topic;

pub use body::PublishBody;
pub use topic::Topic;

/// An event id, `<unix-millis>-<sequence>`: strictly increasing across the hub, so replay can
/// compare ids instead of trusting clocks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EventId {
    pub millis: u64,
    pub seq: u64,
}

impl EventId {
    /// The id that follows `self` when the clock reads `now_millis`: a new millisecond starts a
    /// new sequence, a clock that stalls or steps back keeps counting in the last millisecond.
    pub fn next(self, now_millis: u64) -> EventId {
        if now_millis > self.millis {
            EventId { millis: now_millis, seq: 0 }
        } else {
            EventId { millis: self.millis, seq: self.seq + 1 }
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.millis, self.seq)
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEventId;

impl FromStr for EventId {
    type Err = BadEventId;

    /// Accepts exactly `digits-digits`: no sign, no spaces, no empty part.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (millis, seq) = s.split_once('-').ok_or(BadEventId)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadEventId);
            }
            part.parse::<u64>().map_err(|_| BadEventId)
        };
        Ok(EventId { millis: number(millis)?, seq: number(seq)? })
    }
}

/// Checks the rule shared by user and event names: 1–64 bytes of UTF-8, no control character
/// (Unicode Cc, which covers CR, LF, NUL, TAB, ESC, DEL and U+0085).
fn check_name(kind: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if s.len() > 64 {
        return Err(format!("{kind} is {} bytes long; the limit is 64", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{kind} must not contain control characters"));
    }
    Ok(())
}

/// A subscriber's name: who a stream is for and whom an event is addressed to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_name("user name", &s)?;
        Ok(UserName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An SSE event type (`event:` field). Besides the name rule it may not start or end with
/// whitespace: the SSE parser would keep it, but nobody can type it into `addEventListener`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct EventName(String);

impl EventName {
    pub const MESSAGE: &'static str = "message";
    pub const GAP: &'static str = "gap";

    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_name("event name", &s)?;
        if s.trim() != s {
            return Err("event name must not start or end with whitespace".into());
        }
        Ok(EventName(s))
    }

    /// The default event type, `message`.
    pub fn message() -> Self {
        EventName(Self::MESSAGE.into())
    }

    /// The hub's own notice that a replay could not start where the client asked.
    pub fn gap() -> Self {
        EventName(Self::GAP.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who receives an event.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Recipients {
    /// `"*"`: every user, connected now or replaying later.
    All,
    /// One or more named users (deduplicated, in the order given).
    Users(Vec<UserName>),
}

impl Recipients {
    /// The most names one `to` list may hold (duplicates counted): each one is kept with the
    /// event for as long as it is retained, so a publisher cannot make one event arbitrarily
    /// large. Past it, the publish is refused.
    pub const MAX_NAMES: usize = 10_000;

    /// No user by name: an event addressed by topic only.
    pub fn nobody() -> Self {
        Recipients::Users(Vec::new())
    }

    pub fn is_nobody(&self) -> bool {
        matches!(self, Recipients::Users(users) if users.is_empty())
    }

    pub fn includes(&self, user: &UserName) -> bool {
        match self {
            Recipients::All => true,
            Recipients::Users(users) => users.contains(user),
        }
    }

    /// The `to` field as JSON: `"*"` or a list of names.
    pub fn to_json(&self) -> Value {
        match self {
            Recipients::All => Value::String("*".into()),
            Recipients::Users(users) => Value::Array(users.iter().map(|u| Value::String(u.0.clone())).collect()),
        }
    }

    /// The names of a `to` list (or the one name given), checked and deduplicated in linear
    /// time, first occurrence kept; more than `max_names` are refused before any is checked.
    pub(crate) fn from_names(names: Vec<&str>, max_names: usize) -> Result<Self, String> {
        if names.is_empty() {
            return Err("`to` must name at least one user".into());
        }
        if names.len() > max_names {
            return Err(too_many_names(names.len(), max_names));
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
        let mut users: Vec<UserName> = Vec::with_capacity(names.len());
        for name in names {
            if name == "*" {
                return Err("\"*\" addresses every user and cannot be listed with others".into());
            }
            let user = UserName::new(name).map_err(|e| format!("`to`: {e}"))?;
            if seen.insert(name) {
                users.push(user);
            }
        }
        Ok(Recipients::Users(users))
    }
}

/// Why a `to` list of `listed` names is refused.
pub(crate) fn too_many_names(listed: usize, max_names: usize) -> String {
    format!("`to` lists {listed} names; the limit is {max_names} per event")
}

/// One event as a publisher asks for it: the body of `POST /api/events` (or one element of a
/// batch). It reaches the streams of the users in `to` and the streams whose selectors match
/// one of its `topics`; at least one of the two names someone.
#[derive(Clone, PartialEq, Debug)]
pub struct PublishRequest {
    /// The users it is for; an empty list when it is addressed by topic only.
    pub to: Recipients,
    /// What it is about, deduplicated, in the order given.
    pub topics: Vec<Topic>,
    pub event: EventName,
    /// The text of the `data:` lines: a JSON string as-is, any other JSON value compact.
    pub data: String,
    /// Only for streams whose credential allows one of its topics (a user it is addressed to
    /// by name always gets it): Mercure's private updates.
    pub private: bool,
    /// The SSE id the publisher chose (Mercure's `id`); without one, streams see the hub's.
    pub id: Option<CustomId>,
    /// An SSE `retry:` to send with the event, in milliseconds.
    pub retry: Option<u64>,
}

impl PublishRequest {
    /// The request as JSON, as stores keep it; [`PublishRequest::from_stored`] reads it back.
    pub fn to_json(&self) -> Value {
        let mut json = serde_json::json!({ "event": self.event.as_str(), "data": self.data });
        if !self.to.is_nobody() {
            json["to"] = self.to.to_json();
        }
        if !self.topics.is_empty() {
            json["topic"] = topic::to_json(&self.topics);
        }
        if self.private {
            json["private"] = Value::Bool(true);
        }
        if let Some(id) = &self.id {
            json["id"] = Value::String(id.0.clone());
        }
        if let Some(retry) = self.retry {
            json["retry"] = retry.into();
        }
        json
    }

    /// An event with only what it needs: `data` for `to`, about nothing else, public, with the
    /// hub's id.
    pub fn new(to: Recipients, event: EventName, data: impl Into<String>) -> PublishRequest {
        PublishRequest { to, topics: Vec::new(), event, data: data.into(), private: false, id: None, retry: None }
    }

    /// The id streams see: the publisher's, or the hub's `id`.
    pub fn public_id(&self, id: &EventId) -> String {
        self.id.as_ref().map_or_else(|| id.to_string(), |custom| custom.0.clone())
    }
}

/// An event id the publisher chose (Mercure lets publishers name their updates): 1–1,024 bytes
/// of UTF-8 without control characters, not starting with `#` (Mercure keeps those for hubs),
/// and not of the hub's own form `digits-digits`, so an id always says which kind it is.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct CustomId(String);

impl CustomId {
    pub const MAX_LEN: usize = 1024;

    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.is_empty() {
            return Err("an id must not be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("an id is {} bytes long; the limit is {}", s.len(), Self::MAX_LEN));
        }
        if s.chars().any(char::is_control) {
            return Err("an id must not contain control characters".into());
        }
        if s.starts_with('#') {
            return Err("an id must not start with `#`".into());
        }
        if s.parse::<EventId>().is_ok() {
            return Err(format!("{s:?} has the form of the hub's own ids (digits-digits); choose another"));
        }
        if s == "earliest" {
            return Err("`earliest` is reserved: it asks for the whole history".into());
        }
        Ok(CustomId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer to an accepted publish.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishAck {
    pub id: String,
    /// How many open streams the event was written to right away; unknown (absent) in a
    /// cluster, where other nodes deliver it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

/// One row of `GET /api/users`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserConnections {
    pub user: String,
    pub connections: usize,
}

/// One row of `GET /api/topics`: an exact topic at least one open stream subscribes to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicStreams {
    pub topic: String,
    pub streams: usize,
}

/// `GET /api/info`: what the console needs to know about the hub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HubInfo {
    /// Whether streams and publishing need tokens.
    pub auth: bool,
    pub version: String,
}

/// Every error the hub answers with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}

/// The data of a `gap` event: the replay could not start at `last_event_id`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GapNotice {
    pub last_event_id: String,
    /// The oldest id the hub still holds, or `None` when it holds nothing.
    pub earliest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: &Value) -> Result<PublishRequest, String> {
        PublishRequest::parse(&value.to_string())
    }

    fn stored(request: &PublishRequest) -> PublishRequest {
        PublishRequest::from_stored(request.to_json().to_string().as_bytes()).unwrap()
    }

    /// Ids order by time, then by sequence, and a stalled clock still yields increasing ids.
    #[test]
    fn ids_increase_even_when_the_clock_stalls() {
        let a = EventId { millis: 10, seq: 0 };
        let b = a.next(10);
        let c = b.next(9);
        let d = c.next(11);
        assert!(a < b && b < c && c < d);
        assert_eq!(d, EventId { millis: 11, seq: 0 });
        assert_eq!("11-0".parse::<EventId>(), Ok(d));
    }

    /// Anything but `digits-digits` is refused, so a malformed id is reported as a gap.
    #[test]
    fn malformed_ids_do_not_parse() {
        for bad in ["", "1", "1-", "-1", "a-1", "1-+2", " 1-2", "1-2-3", "99999999999999999999-0"] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
    }

    /// The user-name rule: 1–64 bytes, no Cc character (TAB, ESC, DEL, U+0085 included).
    #[test]
    fn user_names_follow_the_rule() {
        assert!(UserName::new("Alpha User").is_ok());
        assert!(UserName::new("ü".repeat(32)).is_ok());
        assert!(UserName::new("ü".repeat(33)).is_err());
        for bad in ["", "a\tb", "a\u{1b}", "a\u{7f}", "a\u{85}", "a\r", "a\n", "a\0"] {
            assert!(UserName::new(bad).is_err(), "{bad:?}");
        }
    }

    /// Event names also refuse surrounding whitespace.
    #[test]
    fn event_names_refuse_edges_and_controls() {
        assert!(EventName::new("time tick").is_ok());
        for bad in ["", " a", "a ", "a\nb", "a\rb", "x".repeat(65).as_str()] {
            assert!(EventName::new(bad).is_err(), "{bad:?}");
        }
    }

    /// The three forms of `to`, defaults, and data as text.
    #[test]
    fn publish_requests_parse() {
        let one = parse(&json!({"to": "alice", "data": "hi"})).unwrap();
        assert_eq!(one.to, Recipients::Users(vec![UserName::new("alice").unwrap()]));
        assert_eq!(one.event.as_str(), "message");
        assert_eq!(one.data, "hi");
        let all = parse(&json!({"to": "*", "event": "x", "data": {"a": [1, 2]}})).unwrap();
        assert_eq!(all.to, Recipients::All);
        assert_eq!(all.data, r#"{"a":[1,2]}"#);
        let many = parse(&json!({"to": ["a", "b", "a"], "data": 1})).unwrap();
        assert_eq!(stored(&many), many, "stores read back what they wrote");
        assert_eq!(stored(&all), all);
        assert_eq!(many.to, Recipients::Users(vec![UserName::new("a").unwrap(), UserName::new("b").unwrap()]));
        let topical = parse(&json!({"topic": ["t1", "t2"], "data": 1})).unwrap();
        assert!(topical.to.is_nobody() && topical.topics.len() == 2);
        assert_eq!(topical.to_json(), json!({"topic": ["t1", "t2"], "event": "message", "data": "1"}));
        assert_eq!(stored(&topical), topical);
        let both = parse(&json!({"to": "a", "topic": "t", "data": 1})).unwrap();
        assert_eq!(stored(&both), both);
    }

    /// A `to` list keeps each name once, where it first appeared.
    #[test]
    fn recipients_keep_first_seen_order() {
        let request = parse(&json!({"to": ["c", "a", "c", "b", "a", "d"], "data": 1})).unwrap();
        let names = ["c", "a", "b", "d"].map(|n| UserName::new(n).unwrap());
        assert_eq!(request.to, Recipients::Users(names.to_vec()));
    }

    /// A list of the most names allowed, each twice, is deduplicated whole (the old quadratic
    /// dedup took seconds at this size; a linear one finishes at once).
    #[test]
    fn the_largest_list_is_deduplicated() {
        let names: Vec<String> = (0..Recipients::MAX_NAMES / 2).map(|i| format!("user-{i}")).collect();
        let twice: Vec<&str> = names.iter().chain(&names).map(String::as_str).collect();
        assert_eq!(twice.len(), Recipients::MAX_NAMES);
        let Ok(Recipients::Users(users)) = Recipients::from_names(twice, Recipients::MAX_NAMES) else {
            panic!("the largest list is accepted")
        };
        assert_eq!(users.len(), names.len());
        assert!(users.iter().zip(&names).all(|(user, name)| user.as_str() == name), "in the order given");
    }

    /// One name past the limit is refused with a message naming the limit; a store reads back
    /// what it kept whatever its length.
    #[test]
    fn lists_past_the_limit_are_refused() {
        let names: Vec<String> = (0..=Recipients::MAX_NAMES).map(|i| format!("u{i}")).collect();
        let body = json!({"to": names, "data": 1});
        let err = parse(&body).unwrap_err();
        assert!(err.contains("10001 names") && err.contains("limit is 10000"), "{err}");
        let stored = PublishRequest::from_stored(body.to_string().as_bytes()).unwrap();
        assert!(matches!(&stored.to, Recipients::Users(users) if users.len() == names.len()));
    }

    /// Each wrong shape is refused with a message naming the problem.
    #[test]
    fn bad_publish_requests_say_why() {
        let cases = [
            (json!([]), "JSON object"),
            (json!("text"), "JSON object"),
            (json!({"data": 1}), "missing field `to`"),
            (json!({"topic": [], "to": "a", "data": 1}), "at least one topic"),
            (json!({"to": "", "data": 1}), "empty"),
            (json!({"to": [], "data": 1}), "at least one"),
            (json!({"to": 5, "data": 1}), "`to` to be"),
            (json!({"to": [5], "data": 1}), "expected a string"),
            (json!({"to": ["*", "a"], "data": 1}), "cannot be listed"),
            (json!({"to": "a"}), "missing field `data`"),
            (json!({"to": "a", "event": "a\nb", "data": 1}), "control"),
            (json!({"to": "a", "event": 3, "data": 1}), "`event` must be a string"),
            (json!({"to": "a", "date": 1}), "unknown field `date`"),
        ];
        for (body, expected) in cases {
            let err = parse(&body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }
}
