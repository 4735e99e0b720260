//! Mercure's active subscriptions (the `subscriptions` directive): every subscription announces
//! itself when it opens and when it ends, as a private update on
//! `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, and the web API under that path
//! lists the ones open.
//!
//! The announcements go through the hub like any update, so they are stored and reach every
//! node of a cluster. Each node's [`Registry`] is built from them, not from its own streams: it
//! follows them as an ordinary stream of the hub would (replaying what the history holds when it
//! starts, resuming where it was if it ever falls behind), so the API on any node lists the
//! subscriptions of all of them.

pub mod api;

use crate::hub::selector::{Selector, Selectors};
use crate::hub::{Hub, Interest, SubscribeError};
use app::event::{CustomId, EventName, PublishRequest, Recipients, Topic};
use app::sse;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The path of the subscriptions API, and the prefix of every announcement's topic.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";
/// The `@context` of Mercure's JSON-LD documents.
pub const CONTEXT: &str = "https://mercure.rocks/";

/// RFC 6570 simple expansion: everything but the unreserved characters is percent-encoded.
const EXPANDED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// One subscription, as Mercure's JSON-LD has it: the data of its announcements, and an element
/// of the API's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "@context", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The announcement's topic, which is also where the API serves this document.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The selector the subscriber asked for.
    pub topic: String,
    pub subscriber: String,
    pub active: bool,
    /// The `mercure.payload` of the subscriber's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl Document {
    fn new(topic: &str, subscriber: &str, payload: Option<serde_json::Value>) -> Document {
        let id = format!(
            "{SUBSCRIPTIONS_PATH}/{}/{}",
            utf8_percent_encode(topic, EXPANDED),
            utf8_percent_encode(subscriber, EXPANDED)
        );
        Document {
            context: Some(CONTEXT.into()),
            id,
            kind: "Subscription".into(),
            topic: topic.into(),
            subscriber: subscriber.into(),
            active: true,
            payload,
        }
    }

    /// The private update announcing this document; `None` when its topic is over the topic
    /// length limit (a selector near the limit, expanded).
    fn announcement(&self) -> Option<PublishRequest> {
        let topic = Topic::new(self.id.clone()).ok()?;
        let data = serde_json::to_string(self).ok()?;
        let id = CustomId::new(format!("urn:uuid:{}", uuid::Uuid::new_v4())).ok()?;
        Some(PublishRequest {
            topics: vec![topic],
            private: true,
            id: Some(id),
            ..PublishRequest::new(Recipients::nobody(), EventName::message(), data)
        })
    }
}

/// A new subscriber's id, the same for each of its selectors.
pub fn subscriber_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// Announces that `subscriber` subscribed to each of `topics`; the returned guard announces the
/// end when it is dropped, which the stream's writer does when the stream ends, however it ends.
pub async fn announce(hub: &Hub, topics: &[&str], subscriber: &str, payload: Option<&serde_json::Value>) -> Announced {
    let documents: Vec<Document> = topics.iter().map(|t| Document::new(t, subscriber, payload.cloned())).collect();
    publish(hub, &documents).await;
    Announced { hub: hub.clone(), documents }
}

async fn publish(hub: &Hub, documents: &[Document]) {
    let requests: Vec<PublishRequest> = documents
        .iter()
        .filter_map(|document| {
            let announcement = document.announcement();
            if announcement.is_none() {
                tracing::warn!(topic = %document.topic, "subscription not announced: its topic would be too long");
            }
            announcement
        })
        .collect();
    for published in hub.publish_all(requests).await {
        if let Err(crate::hub::StoreUnavailable(cause)) = published {
            tracing::warn!(%cause, "a subscription announcement was not stored");
        }
    }
}

/// Announces the end of its subscriptions when dropped.
pub struct Announced {
    hub: Hub,
    documents: Vec<Document>,
}

impl Drop for Announced {
    fn drop(&mut self) {
        let mut documents = std::mem::take(&mut self.documents);
        documents.iter_mut().for_each(|d| d.active = false);
        let hub = self.hub.clone();
        // Outside a runtime (a test dropping a stream on its own thread) there is no store to tell.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { publish(&hub, &documents).await });
        }
    }
}

/// The open subscriptions, as the announcements tell them, and how far they have been read.
#[derive(Clone)]
pub struct Registry {
    known: Arc<Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    /// Open subscriptions by document id.
    open: BTreeMap<String, Document>,
    /// The id of the last event read: the registry is up to date until there.
    last_event_id: String,
}

/// What the API answers from: the matching subscriptions and the id they are current at.
pub struct Snapshot {
    pub documents: Vec<Document>,
    pub last_event_id: String,
}

impl Registry {
    /// Starts following the announcements of `hub`, until it shuts down.
    pub fn start(hub: &Hub, selectors: &Selectors) -> Registry {
        let registry = Registry { known: Arc::default() };
        let template = format!("{SUBSCRIPTIONS_PATH}/{{topic}}/{{subscriber}}");
        match selectors.parse(&template) {
            Ok(selector) => {
                tokio::spawn(follow(hub.clone(), selector, registry.clone()));
            }
            Err(e) => tracing::error!(cause = %e, "the subscriptions registry cannot start"),
        }
        registry
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        // Every section leaves the map whole.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open subscriptions whose selector is `topic` (all when `None`), and for one
    /// `subscriber` only when given.
    pub fn snapshot(&self, topic: Option<&str>, subscriber: Option<&str>) -> Snapshot {
        let known = self.known();
        let documents = known
            .open
            .values()
            .filter(|d| topic.is_none_or(|t| d.topic == t) && subscriber.is_none_or(|s| d.subscriber == s))
            .cloned()
            .collect();
        let last_event_id =
            if known.last_event_id.is_empty() { "earliest".into() } else { known.last_event_id.clone() };
        Snapshot { documents, last_event_id }
    }

    fn read(&self, events: Vec<sse::ParsedEvent>, last_event_id: &str) {
        let mut known = self.known();
        for event in events.into_iter().filter(|e| e.event == EventName::MESSAGE) {
            match serde_json::from_str::<Document>(&event.data) {
                Ok(document) if document.active => {
                    known.open.insert(document.id.clone(), Document { context: None, ..document });
                }
                Ok(document) => {
                    known.open.remove(&document.id);
                }
                Err(e) => tracing::warn!(cause = %e, "an update on a subscription topic is not a subscription"),
            }
        }
        known.last_event_id = last_event_id.to_owned();
    }
}

/// Reads the announcements as a stream of the hub would, from the oldest held: if the hub cuts
/// it off for falling behind, it resumes after the last one read.
async fn follow(hub: Hub, selector: Selector, registry: Registry) {
    let shutdown = hub.shutdown_token();
    let mut resume_from = String::from("earliest");
    loop {
        let interest =
            Interest { user: None, selectors: vec![selector.clone()], authorized: vec![selector.clone()].into() };
        let mut subscription = match hub.subscribe_quietly(interest, Some(&resume_from)) {
            Ok(subscription) => subscription,
            Err(SubscribeError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(cause = ?e, "the subscriptions registry waits for a free stream");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let mut parser = sse::Parser::new();
        let mut frames = Vec::new();
        loop {
            let more = tokio::select! {
                more = std::future::poll_fn(|cx| subscription.poll_take(cx, &mut frames)) => more,
                _ = shutdown.cancelled() => return,
            };
            let events: Vec<sse::ParsedEvent> = frames.drain(..).flat_map(|frame| parser.feed(&frame)).collect();
            registry.read(events, parser.last_event_id());
            if !more {
                break;
            }
        }
        if !parser.last_event_id().is_empty() {
            resume_from = parser.last_event_id().to_owned();
        }
        tracing::warn!(resume_from, "the subscriptions registry fell behind; resuming");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document's id is its topic and subscriber expanded as RFC 6570 says, so a subscriber
    /// selector like `/.well-known/mercure/subscriptions/{topic}/{subscriber}` matches it.
    #[test]
    fn ids_expand_topic_and_subscriber() {
        let document = Document::new("https://example.com/{selector}", "urn:uuid:bb3de268", None);
        assert_eq!(
            document.id,
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3de268"
        );
        let announcement = document.announcement().expect("a short topic is announced");
        assert!(announcement.private, "subscription events are private");
        let json: serde_json::Value = serde_json::from_str(&announcement.data).expect("JSON");
        assert_eq!(json["@context"], CONTEXT);
        assert_eq!(json["type"], "Subscription");
        assert_eq!(json["active"], true);
        assert!(json.get("payload").is_none(), "no payload, no property");
    }

    /// A selector whose expansion is over the topic limit is not announced rather than failing.
    #[test]
    fn an_overlong_expansion_is_not_announced() {
        let long = format!("https://example.com/{}", "é".repeat(300));
        assert!(Document::new(&long, "urn:uuid:x", None).announcement().is_none());
    }
}
