//! Events as Redis stream entries, and back.
//!
//! A node's writer stores a group of events as one entry: its field `events` holds them as a
//! JSON array, each as the stores keep it ([`PublishRequest::to_json`]). The entry's id
//! `<millis>-<seq>` is the first event's; the others follow it, `<millis>-<seq + 1>` and on, and
//! the stream's last id is moved past them (`XSETID`), so the next entry's id is greater still.
//! Ids stay Redis's, increasing cluster-wide, and a group costs Redis one append.
//!
//! Entries written one field per part (`to`, `topic`, `private`, `id`, `retry`, `event`,
//! `data`), as nodes did before, are still read, so a cluster can be upgraded node by node.

use super::super::{EventId, PublishRequest};
use redis::Value;
use serde_json::value::RawValue;

/// The field of an entry that holds its events.
const EVENTS: &str = "events";

/// Appends a group of `count` events (`events`, a JSON array) and reserves their ids, at once:
/// a script runs alone in Redis, so no other node's entry comes between the append and the
/// move of the last id. Trimmed with `MINID ~`: entries older than what the node's history
/// still holds go, whole nodes of the stream at a time, at little cost.
const APPEND: &str = r"
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', 'events', ARGV[2])
local count = tonumber(ARGV[3])
if count > 1 then
  local millis, seq = string.match(id, '^(%d+)-(%d+)$')
  redis.call('XSETID', KEYS[1], millis .. '-' .. string.format('%d', tonumber(seq) + count - 1))
end
return id
";

/// The command appending `count` events, `events` being their JSON array, and dropping the
/// entries before `kept` (the oldest id still wanted).
pub(super) fn append(key: &str, kept: EventId, events: &str, count: usize) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(APPEND).arg(1).arg(key).arg(kept.to_string()).arg(events).arg(count);
    command
}

/// One event as it goes into an entry's array.
pub(super) fn encode(request: &PublishRequest) -> String {
    request.to_json().to_string()
}

/// The ids of a group whose entry Redis gave `first`: `count` of them, one after another.
pub(super) fn ids(first: EventId, count: usize) -> impl Iterator<Item = EventId> {
    (0..count as u64).map(move |n| EventId { millis: first.millis, seq: first.seq + n })
}

/// One event read from an entry.
pub(super) struct Decoded {
    pub id: EventId,
    pub request: PublishRequest,
    pub bytes: usize,
}

/// An entry's id and its fields, as `XREAD` and `XREVRANGE` answer them.
pub(super) struct Entry {
    pub id: String,
    fields: Vec<Value>,
}

impl Entry {
    /// The bytes of the entry's field values (what the history's byte bound counts).
    pub fn size(&self) -> usize {
        self.fields.iter().skip(1).step_by(2).map(|v| if let Value::BulkString(b) = v { b.len() } else { 0 }).sum()
    }

    /// The entry's events with their ids and sizes (the bytes of their JSON, which the
    /// history's byte bound counts); none for an entry this hub did not write.
    pub fn decode(&self) -> Vec<Decoded> {
        let Ok(first) = self.id.parse::<EventId>() else { return Vec::new() };
        if let Some(json) = self.field(EVENTS) {
            let Ok(events) = serde_json::from_slice::<Vec<&RawValue>>(json) else { return Vec::new() };
            return ids(first, events.len())
                .zip(events)
                .filter_map(|(id, raw)| {
                    let request = PublishRequest::from_stored(raw.get().as_bytes()).ok()?;
                    Some(Decoded { id, request, bytes: raw.get().len() })
                })
                .collect();
        }
        let bytes = self.size();
        self.decode_fields().map(|request| vec![Decoded { id: first, request, bytes }]).unwrap_or_default()
    }

    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.chunks_exact(2).find_map(|pair| match pair {
            [Value::BulkString(k), Value::BulkString(v)] if k == name.as_bytes() => Some(v.as_slice()),
            _ => None,
        })
    }

    /// An entry of the earlier layout, one field per part.
    fn decode_fields(&self) -> Option<PublishRequest> {
        let text = |name: &str| self.field(name).and_then(|v| std::str::from_utf8(v).ok());
        let mut json = serde_json::json!({ "event": text("event")?, "data": text("data")? });
        for field in ["to", "topic", "private", "retry"] {
            if let Some(value) = text(field) {
                json[field] = serde_json::from_str::<serde_json::Value>(value).ok()?;
            }
        }
        if let Some(custom) = text("id") {
            json["id"] = serde_json::Value::String(custom.to_owned());
        }
        PublishRequest::from_stored(json.to_string().as_bytes()).ok()
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` answer: `[[id, [field, value, ...]], ...]`.
pub(super) fn entries(reply: Value) -> Vec<Entry> {
    let Value::Array(items) = reply else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(pair) => {
                let mut pair = pair.into_iter();
                match (pair.next(), pair.next()) {
                    (Some(id), Some(Value::Array(fields))) => Some(Entry { id: text(id)?, fields }),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// The entries of an `XREAD` answer on one stream: nil when nothing came, else
/// `[[key, entries]]` (RESP2) or `{key: entries}` (RESP3).
pub(super) fn read_reply(reply: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| if let Value::Array(s) = s { s.into_iter().nth(1) } else { None })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    streams.into_iter().flat_map(entries).collect()
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let fields = fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect();
        Value::Array(vec![bulk(id), Value::Array(fields)])
    }

    /// A group read back is the events that were appended, with consecutive ids from the
    /// entry's: users, topics, privacy, a custom id and a retry survive the trip.
    #[test]
    fn a_group_survives_the_round_trip() {
        let bodies = [
            r#"{"to": ["amy", "bo"], "topic": ["orders/42"], "event": "update", "data": {"n": 1},
                "private": true, "id": "urn:x", "retry": 5000}"#,
            r#"{"topic": "a/b", "data": "plain"}"#,
        ];
        let requests: Vec<PublishRequest> = bodies.iter().map(|b| PublishRequest::parse(b).unwrap()).collect();
        let events = format!("[{}]", requests.iter().map(encode).collect::<Vec<_>>().join(","));
        let reply =
            Value::Array(vec![Value::Array(vec![bulk("k"), Value::Array(vec![entry("7-3", &[(EVENTS, &events)])])])]);
        let read = read_reply(reply);
        let back = read[0].decode();
        let ids: Vec<EventId> = back.iter().map(|e| e.id).collect();
        assert_eq!(ids, [EventId { millis: 7, seq: 3 }, EventId { millis: 7, seq: 4 }]);
        for (got, sent) in back.iter().zip(&requests) {
            assert_eq!(got.request.to_json(), sent.to_json());
            assert_eq!(got.bytes, encode(sent).len());
        }
    }

    /// An entry written one field per part, as nodes did before, reads as the same event; one
    /// another program wrote is skipped.
    #[test]
    fn entries_of_the_earlier_layout_are_read() {
        let old = entry("5-0", &[("to", r#"["amy"]"#), ("topic", r#"["a/b"]"#), ("event", "tick"), ("data", "x")]);
        let foreign = entry("6-0", &[("hello", "world")]);
        let read = entries(Value::Array(vec![old, foreign]));
        let events = read[0].decode();
        assert_eq!(events[0].id, EventId { millis: 5, seq: 0 });
        let expected = PublishRequest::parse(r#"{"to": ["amy"], "topic": ["a/b"], "event": "tick", "data": "x"}"#);
        assert_eq!(events[0].request.to_json(), expected.unwrap().to_json());
        assert_eq!(events[0].bytes, r#"["amy"]"#.len() + r#"["a/b"]"#.len() + "tick".len() + 1);
        assert!(read[1].decode().is_empty());
    }
}
