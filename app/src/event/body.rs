//! The body of `POST /api/events`: one event, or a batch (a JSON array) whose elements are
//! checked one by one. A well-formed element is read straight from the body's bytes, with no
//! JSON tree built for it; only an element that fails is parsed again as a tree, to say exactly
//! what is wrong with it.

use super::{EventName, PublishRequest, Recipients};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A parsed publish body: each element is a request, or why it was refused.
#[derive(Debug, PartialEq)]
pub enum PublishBody {
    One(Result<PublishRequest, String>),
    Batch(Vec<Result<PublishRequest, String>>),
}

impl PublishBody {
    /// Reads a body; `Err` when it is not JSON at all.
    pub fn parse(bytes: &[u8]) -> Result<PublishBody, String> {
        let malformed = |e: serde_json::Error| format!("malformed JSON: {e}");
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(malformed)?;
            Ok(PublishBody::Batch(items.into_iter().map(element).collect()))
        } else {
            let item: &RawValue = serde_json::from_slice(bytes).map_err(malformed)?;
            Ok(PublishBody::One(element(item)))
        }
    }
}

/// One event as it is written, borrowed from the body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(default, borrow)]
    to: Option<&'a RawValue>,
    #[serde(default, borrow)]
    topic: Option<&'a RawValue>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn element(raw: &RawValue) -> Result<PublishRequest, String> {
    match serde_json::from_str::<Wire<'_>>(raw.get()).ok().and_then(|wire| from_wire(&wire)) {
        Some(request) => request,
        // Not the usual shape: the tree says precisely why.
        None => {
            let value: Value = serde_json::from_str(raw.get()).map_err(|e| format!("malformed JSON: {e}"))?;
            PublishRequest::from_json(&value)
        }
    }
}

/// The request a well-shaped element asks for; `None` when its `to` or `data` is not of the
/// usual kinds, for [`PublishRequest::from_json`] to explain.
fn from_wire(wire: &Wire<'_>) -> Option<Result<PublishRequest, String>> {
    let topics = match wire.topic {
        None => Vec::new(),
        Some(raw) => match super::topic::from_json(&serde_json::from_str(raw.get()).ok()?) {
            Ok(topics) => topics,
            Err(e) => return Some(Err(e)),
        },
    };
    let Some(to) = wire.to else {
        // No `to`: the tree's rules (topic only, or a missing field) apply.
        return if topics.is_empty() {
            None
        } else {
            Some(Ok(PublishRequest {
                to: Recipients::nobody(),
                topics,
                event: event_name(wire)?.ok()?,
                data: data_text(wire.data)?,
            }))
        };
    };
    let to = to.get();
    let to = if to.starts_with('"') {
        let name: Cow<'_, str> = serde_json::from_str(to).ok()?;
        if name == "*" {
            Ok(Recipients::All)
        } else {
            Recipients::from_names(vec![&name], Recipients::MAX_NAMES)
        }
    } else if to.starts_with('[') {
        let listed: Listed<'_> = serde_json::from_str(to).ok()?;
        if listed.total > Recipients::MAX_NAMES {
            return Some(Err(super::too_many_names(listed.total, Recipients::MAX_NAMES)));
        }
        Recipients::from_names(listed.names.iter().map(|n| n.0.as_ref()).collect(), Recipients::MAX_NAMES)
    } else {
        return None;
    };
    let to = match to {
        Ok(to) => to,
        Err(e) => return Some(Err(e)),
    };
    let event = match event_name(wire)? {
        Ok(name) => name,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(PublishRequest { to, topics, event, data: data_text(wire.data)? }))
}

fn event_name(wire: &Wire<'_>) -> Option<Result<EventName, String>> {
    Some(match &wire.event {
        None => Ok(EventName::message()),
        Some(name) => EventName::new(name.as_ref()),
    })
}

/// A `to` list as written, holding at most [`Recipients::MAX_NAMES`] names: past it the rest
/// are only counted, so a huge list costs no memory before it is refused.
struct Listed<'a> {
    names: Vec<Name<'a>>,
    total: usize,
}

/// One listed name, borrowed from the body unless it has escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for Listed<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = Listed<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of user names")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Listed<'de>, A::Error> {
                let mut names = Vec::new();
                while names.len() < Recipients::MAX_NAMES {
                    match seq.next_element::<Name<'de>>()? {
                        Some(name) => names.push(name),
                        None => return Ok(Listed { total: names.len(), names }),
                    }
                }
                let mut total = names.len();
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    total += 1;
                }
                Ok(Listed { names, total })
            }
        }
        deserializer.deserialize_seq(Names)
    }
}

/// A JSON string as its text; any other value compact: as written when it has no whitespace to
/// drop, else written anew.
fn data_text(data: &RawValue) -> Option<String> {
    let text = data.get();
    if text.starts_with('"') {
        return serde_json::from_str(text).ok();
    }
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        return serde_json::from_str::<Value>(text).ok().map(|v| v.to_string());
    }
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whatever the path, a body means what `PublishRequest::from_json` says it means.
    #[test]
    fn the_fast_path_agrees_with_the_tree() {
        let cases = [
            json!({"to": "amy", "data": "text"}),
            json!({"to": "*", "event": "news", "data": {"n": 1, "list": [1, 2]}}),
            json!({"to": ["amy", "bob", "amy"], "event": null, "data": 5}),
            json!({"to": "é\"quoted\"", "data": "line\nbreak"}),
            json!({"to": "amy", "data": null}),
            json!({"to": "", "data": 1}),
            json!({"to": ["*", "amy"], "data": 1}),
            json!({"to": [], "data": 1}),
            json!({"to": 5, "data": 1}),
            json!({"to": [5], "data": 1}),
            json!({"to": "amy", "event": "", "data": 1}),
            json!({"to": "amy", "event": " padded", "data": 1}),
            json!({"to": "amy", "event": 7, "data": 1}),
            json!({"to": "amy"}),
            json!({"data": 1}),
            json!({"to": "amy", "data": 1, "extra": true}),
            json!("not an object"),
            json!({"to": "bell\u{7}", "data": 1}),
            json!({"topic": "https://shop.example/orders/42", "data": 1}),
            json!({"topic": ["a", "b", "a"], "to": "amy", "event": "x", "data": 1}),
            json!({"topic": [], "data": 1}),
            json!({"topic": 5, "data": 1}),
            json!({"topic": "a", "event": "", "data": 1}),
            json!({"topic": "a\u{7}", "data": 1}),
        ];
        for case in cases {
            let expected = PublishRequest::from_json(&case);
            let body = serde_json::to_vec(&case).unwrap_or_default();
            assert_eq!(PublishBody::parse(&body), Ok(PublishBody::One(expected.clone())), "{case}");
            let batch = serde_json::to_vec(&json!([case, {"to": "z", "data": 0}])).unwrap_or_default();
            let Ok(PublishBody::Batch(items)) = PublishBody::parse(&batch) else { panic!("{case}") };
            assert_eq!(items[0], expected, "{case} in a batch");
        }
    }

    /// JSON data is compact whichever way it was written.
    #[test]
    fn spaced_json_data_is_compacted() {
        let body = br#"{ "to" : "amy", "data" : { "n" : [1, 2] , "s": "a b" } }"#;
        let Ok(PublishBody::One(Ok(request))) = PublishBody::parse(body) else { panic!("parses") };
        assert_eq!(request.data, r#"{"n":[1,2],"s":"a b"}"#);
    }

    /// The wire path holds `to` lists to the same limit, and says how long the list was.
    #[test]
    fn long_lists_are_refused_on_the_wire() {
        let names: Vec<String> = (0..Recipients::MAX_NAMES + 5).map(|i| format!("u{i}")).collect();
        let body = serde_json::to_vec(&json!({"to": names, "data": 1})).unwrap_or_default();
        let Ok(PublishBody::One(Err(err))) = PublishBody::parse(&body) else { panic!("refused") };
        assert!(err.contains("10005 names") && err.contains("limit is 10000"), "{err}");
        let at_limit =
            serde_json::to_vec(&json!({"to": &names[..Recipients::MAX_NAMES], "data": 1})).unwrap_or_default();
        assert!(matches!(PublishBody::parse(&at_limit), Ok(PublishBody::One(Ok(_)))));
    }

    /// A body that is not JSON is refused whole.
    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b"{"[..], b"[{}", b"", b"nope"] {
            assert!(PublishBody::parse(body).is_err_and(|e| e.starts_with("malformed JSON")));
        }
    }
}
