//! The body of `POST /api/events`: one event, or a batch (a JSON array) whose elements are
//! checked one by one, each read by [`PublishRequest::parse`] straight from the body's bytes.

use super::PublishRequest;
use serde_json::value::RawValue;

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
            Ok(PublishBody::Batch(items.into_iter().map(|item| PublishRequest::parse(item.get())).collect()))
        } else {
            let item: &RawValue = serde_json::from_slice(bytes).map_err(malformed)?;
            Ok(PublishBody::One(PublishRequest::parse(item.get())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Recipients;
    use serde_json::json;

    /// An element of a batch means what the same event sent alone means.
    #[test]
    fn a_batch_element_reads_as_the_event_alone() {
        let cases = [
            json!({"to": "amy", "data": "text"}),
            json!({"to": "*", "event": "news", "data": {"n": 1, "list": [1, 2]}}),
            json!({"to": ["amy", "bob", "amy"], "event": null, "data": 5}),
            json!({"to": "é\"quoted\"", "data": "line\nbreak"}),
            json!({"to": "", "data": 1}),
            json!({"to": "amy", "event": " padded", "data": 1}),
            json!({"topic": ["a", "b", "a"], "to": "amy", "event": "x", "data": 1}),
            json!({"data": 1}),
            json!("not an object"),
        ];
        for case in cases {
            let alone = PublishRequest::parse(&case.to_string());
            let body = serde_json::to_vec(&case).unwrap_or_default();
            assert_eq!(PublishBody::parse(&body), Ok(PublishBody::One(alone.clone())), "{case}");
            let batch = serde_json::to_vec(&json!([case, {"to": "z", "data": 0}])).unwrap_or_default();
            let Ok(PublishBody::Batch(items)) = PublishBody::parse(&batch) else { panic!("{case}") };
            assert_eq!(items[0], alone, "{case} in a batch");
            assert!(items[1].is_ok());
        }
    }

    /// JSON data is compact whichever way it was written; escaped names are read.
    #[test]
    fn spaced_json_data_is_compacted() {
        let body = br#"{ "to" : "am\u0079", "data" : { "n" : [1, 2] , "s": "a b" } }"#;
        let Ok(PublishBody::One(Ok(request))) = PublishBody::parse(body) else { panic!("parses") };
        assert_eq!(request.data, r#"{"n":[1,2],"s":"a b"}"#);
        assert_eq!(request.to.to_json(), json!(["amy"]));
    }

    /// `to` lists are held to the limit, saying how long the list was; a store reads back a
    /// longer one it kept.
    #[test]
    fn long_lists_are_refused_on_the_wire() {
        let names: Vec<String> = (0..Recipients::MAX_NAMES + 5).map(|i| format!("u{i}")).collect();
        let body = serde_json::to_vec(&json!({"to": names, "data": 1})).unwrap_or_default();
        let Ok(PublishBody::One(Err(err))) = PublishBody::parse(&body) else { panic!("refused") };
        assert!(err.contains("10005 names") && err.contains("limit is 10000"), "{err}");
        assert!(
            PublishRequest::from_stored(&body).is_ok_and(|r| r.to.to_json().as_array().map(Vec::len) == Some(10_005))
        );
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
