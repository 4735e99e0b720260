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
    #[serde(borrow)]
    to: &'a RawValue,
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
    let to = wire.to.get();
    let to = if to.starts_with('"') {
        let name: Cow<'_, str> = serde_json::from_str(to).ok()?;
        if name == "*" {
            Ok(Recipients::All)
        } else {
            Recipients::from_names(vec![&name])
        }
    } else if to.starts_with('[') {
        let names: Vec<Cow<'_, str>> = serde_json::from_str(to).ok()?;
        Recipients::from_names(names.iter().map(|n| n.as_ref()).collect())
    } else {
        return None;
    };
    let to = match to {
        Ok(to) => to,
        Err(e) => return Some(Err(e)),
    };
    let event = match &wire.event {
        None => EventName::message(),
        Some(name) => match EventName::new(name.as_ref()) {
            Ok(name) => name,
            Err(e) => return Some(Err(e)),
        },
    };
    Some(Ok(PublishRequest { to, event, data: data_text(wire.data)? }))
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

    /// A body that is not JSON is refused whole.
    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b"{"[..], b"[{}", b"", b"nope"] {
            assert!(PublishBody::parse(body).is_err_and(|e| e.starts_with("malformed JSON")));
        }
    }
}
