//! One event as a Redis stream entry, and back.
//!
//! An entry holds the request as the stores keep it ([`PublishRequest::to_json`]) in one field,
//! `request`, so a follower reads it with one JSON parse. Entries written before that kept each
//! part in a field of its own (`to`, `topic`, `private`, `id`, `retry`, `event`, `data`); they
//! are still read, so a cluster can be upgraded node by node.

use super::super::{EventId, PublishRequest};
use redis::Value;

/// The field of an entry that holds the request.
const REQUEST: &str = "request";

/// `XADD key MAXLEN ~ capacity * request <json>`: Redis trims whole nodes of the stream, so it
/// keeps at least `capacity` entries at little cost (an exact trim rewrites a node per append).
pub(super) fn append(key: &str, capacity: usize, request: &PublishRequest) -> redis::Cmd {
    let mut command = redis::cmd("XADD");
    command.arg(key).arg("MAXLEN").arg("~").arg(capacity.max(1)).arg("*");
    command.arg(REQUEST).arg(request.to_json().to_string());
    command
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

    /// The entry as an event, or `None` for one this hub did not write.
    pub fn decode(&self) -> Option<(EventId, PublishRequest)> {
        let id = self.id.parse().ok()?;
        if let Some(json) = self.field(REQUEST) {
            return PublishRequest::from_stored(json).ok().map(|request| (id, request));
        }
        self.decode_fields().map(|request| (id, request))
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

    /// What a node appends is what every follower reads back: users, topics, privacy, a custom
    /// id and a retry survive the trip through one entry.
    #[test]
    fn an_event_survives_the_round_trip() {
        let body = r#"{"to": ["amy", "bo"], "topic": ["orders/42"], "event": "update", "data": {"n": 1},
                       "private": true, "id": "urn:x", "retry": 5000}"#;
        let request = PublishRequest::parse(body).unwrap();
        let command = append("k", 10, &request);
        let args: Vec<Vec<u8>> = command
            .args_iter()
            .map(|arg| if let redis::Arg::Simple(bytes) = arg { bytes.to_vec() } else { Vec::new() })
            .collect();
        assert_eq!(&args[..6], [&b"XADD"[..], b"k", b"MAXLEN", b"~", b"10", b"*"].map(<[u8]>::to_vec));
        let fields: Vec<(&str, &str)> = vec![(REQUEST, std::str::from_utf8(&args[7]).unwrap())];
        let reply = Value::Array(vec![Value::Array(vec![bulk("k"), Value::Array(vec![entry("7-3", &fields)])])]);
        let read = read_reply(reply);
        let (id, back) = read[0].decode().unwrap();
        assert_eq!(id, EventId { millis: 7, seq: 3 });
        assert_eq!(back.to_json(), request.to_json());
    }

    /// An entry written one field per part, as nodes did before, reads as the same event; one
    /// another program wrote is skipped.
    #[test]
    fn entries_of_the_earlier_layout_are_read() {
        let old = entry("5-0", &[("to", r#"["amy"]"#), ("topic", r#"["a/b"]"#), ("event", "tick"), ("data", "x")]);
        let foreign = entry("6-0", &[("hello", "world")]);
        let read = entries(Value::Array(vec![old, foreign]));
        let (id, request) = read[0].decode().unwrap();
        assert_eq!(id, EventId { millis: 5, seq: 0 });
        let expected = PublishRequest::parse(r#"{"to": ["amy"], "topic": ["a/b"], "event": "tick", "data": "x"}"#);
        assert_eq!(request.to_json(), expected.unwrap().to_json());
        assert!(read[1].decode().is_none());
        assert_eq!(read[0].size(), r#"["amy"]"#.len() + r#"["a/b"]"#.len() + "tick".len() + 1);
    }
}
