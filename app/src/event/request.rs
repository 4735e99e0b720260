//! The one way a publish request is read, wherever it comes from (a `POST /api/events` body,
//! one element of a batch, the file store, Redis): a serde-derived wire shape of validated
//! newtypes, read straight from the bytes (names borrowed unless escaped, `data` as a borrowed
//! raw value), unknown fields refused. A `to` list longer than the limit costs no memory before
//! it is refused: past the limit the rest is only counted. What a store kept is read whatever
//! the limits are now, so nothing accepted is lost.

use super::{too_many_names, CustomId, EventName, PublishRequest, Recipients, Topic, UserName};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// One event as written; `MAX` bounds a `to` list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an event: a JSON object with `to` or `topic`, `event` and `data`")]
struct Wire<'a, const MAX: usize> {
    #[serde(default)]
    to: Option<To<MAX>>,
    #[serde(default)]
    topic: Option<Topics>,
    #[serde(default)]
    event: Option<EventName>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    id: Option<CustomId>,
    #[serde(default)]
    retry: Option<u64>,
}

impl PublishRequest {
    /// Reads one event as a publisher sent it, with an error message fit to show them.
    pub fn parse(json: &str) -> Result<PublishRequest, String> {
        read::<{ Recipients::MAX_NAMES }>(json.as_bytes())
    }

    /// Reads back an event a store kept (see [`PublishRequest::to_json`]): it was accepted
    /// once, so it is read whatever the limits are now.
    pub fn from_stored(bytes: &[u8]) -> Result<PublishRequest, String> {
        read::<{ usize::MAX }>(bytes)
    }
}

fn read<const MAX: usize>(bytes: &[u8]) -> Result<PublishRequest, String> {
    let wire: Wire<'_, MAX> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let topics = wire.topic.map(|t| t.0).unwrap_or_default();
    let to = match wire.to {
        Some(To(to)) => to,
        None if !topics.is_empty() => Recipients::nobody(),
        None => return Err("missing field `to` (or `topic`): an event needs users or topics".into()),
    };
    let data = data_text(wire.data).ok_or("`data` could not be read")?;
    Ok(PublishRequest {
        to,
        topics,
        event: wire.event.unwrap_or_else(EventName::message),
        data,
        private: wire.private,
        id: wire.id,
        retry: wire.retry,
    })
}

/// A JSON string as its text; any other value compact: as written when it has no whitespace to
/// drop, else written anew.
fn data_text(data: &RawValue) -> Option<String> {
    let text = data.get();
    if text.starts_with('"') {
        return serde_json::from_str(text).ok();
    }
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        return serde_json::from_str::<serde_json::Value>(text).ok().map(|v| v.to_string());
    }
    Some(text.to_owned())
}

impl TryFrom<String> for UserName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        UserName::new(s)
    }
}

impl TryFrom<String> for EventName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        EventName::new(s)
    }
}

impl<'de> Deserialize<'de> for CustomId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = Cow::<'de, str>::deserialize(deserializer).map_err(|_| de::Error::custom("`id` must be a string"))?;
        CustomId::new(id.into_owned()).map_err(|e| de::Error::custom(format!("`id`: {e}")))
    }
}

impl TryFrom<String> for Topic {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Topic::new(s)
    }
}

impl<'de> Deserialize<'de> for EventName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name =
            Cow::<'de, str>::deserialize(deserializer).map_err(|_| de::Error::custom("`event` must be a string"))?;
        EventName::new(name.into_owned()).map_err(de::Error::custom)
    }
}

/// One listed string, borrowed from the body unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The `to` field: `"*"`, one name, or a list of at most `MAX` names (deduplicated, first
/// occurrence kept).
struct To<const MAX: usize>(Recipients);

impl<'de, const MAX: usize> Deserialize<'de> for To<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names<const MAX: usize>;
        impl<'de, const MAX: usize> Visitor<'de> for Names<MAX> {
            type Value = To<MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`to` to be a user name, a list of user names, or \"*\"")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<To<MAX>, E> {
                if name == "*" {
                    return Ok(To(Recipients::All));
                }
                Recipients::from_names(vec![name], MAX).map(To).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<To<MAX>, A::Error> {
                let mut names: Vec<Text<'de>> = Vec::new();
                while names.len() < MAX {
                    match seq.next_element::<Text<'de>>()? {
                        Some(name) => names.push(name),
                        None => {
                            let listed = names.iter().map(|n| n.0.as_ref()).collect();
                            return Recipients::from_names(listed, MAX).map(To).map_err(de::Error::custom);
                        }
                    }
                }
                let mut total = names.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    total += 1;
                }
                if total > MAX {
                    return Err(de::Error::custom(too_many_names(total, MAX)));
                }
                let listed = names.iter().map(|n| n.0.as_ref()).collect();
                Recipients::from_names(listed, MAX).map(To).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(Names::<MAX>)
    }
}

/// The `topic` field: one topic or a list (deduplicated, at most [`Topic::MAX_PER_EVENT`]).
struct Topics(Vec<Topic>);

impl<'de> Deserialize<'de> for Topics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Topics;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`topic` to be a topic or a list of topics")
            }

            fn visit_str<E: de::Error>(self, topic: &str) -> Result<Topics, E> {
                checked(topic).map(|t| Topics(vec![t])).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Topics, A::Error> {
                let mut topics = Vec::new();
                let mut seen = HashSet::new();
                while let Some(Text(topic)) = seq.next_element::<Text<'de>>()? {
                    if topics.len() == Topic::MAX_PER_EVENT && !seen.contains(topic.as_ref()) {
                        return Err(de::Error::custom(format!(
                            "`topic` lists more than {} topics; the limit is {} per event",
                            Topic::MAX_PER_EVENT,
                            Topic::MAX_PER_EVENT
                        )));
                    }
                    if seen.insert(topic.clone().into_owned()) {
                        topics.push(checked(&topic).map_err(de::Error::custom)?);
                    }
                }
                if topics.is_empty() {
                    return Err(de::Error::custom("`topic` must name at least one topic"));
                }
                Ok(Topics(topics))
            }
        }
        deserializer.deserialize_any(List)
    }
}

fn checked(topic: &str) -> Result<Topic, String> {
    Topic::new(topic).map_err(|e| format!("`topic` {topic:?}: {e}"))
}
