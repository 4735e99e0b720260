//! Topics: what an event is about (`https://shop.example/orders/42`), beside or instead of whom
//! it is for. Streams subscribe to topics by selectors (the server matches them); here only
//! the topic itself and the `topic` field of a publish.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// A topic: 1–1,024 bytes of UTF-8 without control characters. Usually an IRI, but any such
/// string will do.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// The longest topic, in bytes.
    pub const MAX_LEN: usize = 1024;
    /// The most topics one event may name, and the most selectors one stream may ask for.
    pub const MAX_PER_EVENT: usize = 256;

    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check(&s)?;
        Ok(Topic(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The topic rule, with a message naming what breaks it (selectors follow it too).
pub fn check(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a topic must not be empty".into());
    }
    if s.len() > Topic::MAX_LEN {
        return Err(format!("a topic is {} bytes long; the limit is {}", s.len(), Topic::MAX_LEN));
    }
    if s.chars().any(char::is_control) {
        return Err("a topic must not contain control characters".into());
    }
    Ok(())
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `topic` field as stores keep it: one topic as a string, several as a list.
pub fn to_json(topics: &[Topic]) -> Value {
    match topics {
        [one] => Value::String(one.0.clone()),
        _ => Value::Array(topics.iter().map(|t| Value::String(t.0.clone())).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PublishRequest;
    use serde_json::json;

    fn topics(field: Value) -> Result<Vec<Topic>, String> {
        PublishRequest::parse(&json!({"topic": field, "data": 1}).to_string()).map(|r| r.topics)
    }

    /// Topics follow the rule; a list keeps each once, in order; each wrong shape says why.
    #[test]
    fn topics_parse_or_say_why() {
        assert!(Topic::new("https://shop.example/orders/42").is_ok());
        assert!(Topic::new("x".repeat(1024)).is_ok());
        for (bad, why) in [("", "empty"), ("a\nb", "control"), (&"x".repeat(1025), "limit is 1024")] {
            assert!(Topic::new(bad).is_err_and(|e| e.contains(why)), "{bad:?}");
        }
        let list = topics(json!(["b", "a", "b"])).unwrap();
        assert_eq!(list, [Topic::new("b").unwrap(), Topic::new("a").unwrap()]);
        assert_eq!(to_json(&list), json!(["b", "a"]));
        assert_eq!(to_json(&list[..1]), json!("b"));
        assert_eq!(topics(json!(vec!["t"; 300])).unwrap().len(), 1, "duplicates are not counted");
        for (bad, why) in [
            (json!(5), "`topic` to be"),
            (json!([]), "at least one"),
            (json!([1]), "expected a string"),
            (json!(["ok", "bad\u{7}"]), "control"),
            (json!((0..257).map(|i| format!("t{i}")).collect::<Vec<_>>()), "limit is 256"),
        ] {
            assert!(topics(bad.clone()).is_err_and(|e| e.contains(why)), "{bad}");
        }
    }
}
