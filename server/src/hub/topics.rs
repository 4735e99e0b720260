//! Who wants which topics: what a stream asks for ([`Interest`]), and the index the publish path
//! walks ([`TopicIndex`]). A publish to exact topics visits only the streams subscribed to them;
//! each distinct template is matched once per topic, and the answer kept.

use super::core::Subscriber;
use super::selector::Selector;
use app::event::{Recipients, Topic, TopicStreams, UserName};
use std::collections::HashMap;
use std::sync::Arc;

/// What a stream asks for: its user's events (if it has a user), and the events on a topic one
/// of its selectors matches.
#[derive(Clone, Debug, Default)]
pub struct Interest {
    pub user: Option<UserName>,
    pub selectors: Vec<Selector>,
    /// The selectors of the topics whose private events the stream's credential allows
    /// (Mercure's `mercure.subscribe` claim, Tidings' `subscribe` claim).
    pub authorized: Arc<[Selector]>,
}

impl Interest {
    /// One user's stream, as before topics.
    pub fn user(user: UserName) -> Interest {
        Interest { user: Some(user), ..Interest::default() }
    }

    /// Whether an event for `to` about `topics` is for this stream.
    pub fn wants(&self, to: &Recipients, topics: &[Topic], private: bool) -> bool {
        self.user.as_ref().is_some_and(|user| to.includes(user)) || self.wants_topic(topics, private)
    }

    /// Whether one of `topics` matches one of the selectors (and, for a private event, one of
    /// them is authorized).
    pub fn wants_topic(&self, topics: &[Topic], private: bool) -> bool {
        topics.iter().any(|topic| self.selectors.iter().any(|s| s.matches(topic)))
            && (!private || self.authorizes(topics))
    }

    /// Whether the credential allows the private events about one of `topics`.
    pub fn authorizes(&self, topics: &[Topic]) -> bool {
        authorizes(&self.authorized, topics)
    }

    /// Whether a selector is more than an exact topic (`*` or a template).
    pub fn has_patterns(&self) -> bool {
        self.selectors.iter().any(|s| !matches!(s, Selector::Exact(_)))
    }

    /// The user, for logs: `-` for an anonymous stream.
    pub fn label(&self) -> &str {
        self.user.as_ref().map_or("-", UserName::as_str)
    }
}

/// Whether one of `allowed` matches one of `topics`: Mercure's rule for private updates, where
/// an alternate topic may carry the authorization.
pub fn authorizes(allowed: &[Selector], topics: &[Topic]) -> bool {
    topics.iter().any(|topic| allowed.iter().any(|s| s.matches(topic)))
}

/// Match answers one template keeps, at most; past it they are forgotten and worked out anew.
const MATCH_CACHE: usize = 4096;

/// The streams subscribed by topic, by selector.
#[derive(Default)]
pub(super) struct TopicIndex {
    exact: HashMap<Topic, Vec<Arc<Subscriber>>>,
    all: Vec<Arc<Subscriber>>,
    templates: HashMap<String, Watchers>,
}

/// The streams of one template, and which topics it matched so far.
struct Watchers {
    template: Selector,
    subscribers: Vec<Arc<Subscriber>>,
    matched: HashMap<Topic, bool>,
}

impl TopicIndex {
    pub fn add(&mut self, subscriber: &Arc<Subscriber>, selectors: &[Selector]) {
        for selector in selectors {
            let list = match selector {
                Selector::All => &mut self.all,
                Selector::Exact(topic) => self.exact.entry(topic.clone()).or_default(),
                Selector::Template(_) => {
                    &mut self
                        .templates
                        .entry(selector.as_str().to_owned())
                        .or_insert_with(|| Watchers {
                            template: selector.clone(),
                            subscribers: Vec::new(),
                            matched: HashMap::new(),
                        })
                        .subscribers
                }
            };
            list.push(Arc::clone(subscriber));
        }
    }

    pub fn remove(&mut self, id: u64, selectors: &[Selector]) {
        for selector in selectors {
            match selector {
                Selector::All => self.all.retain(|s| s.id != id),
                Selector::Exact(topic) => {
                    if let Some(list) = self.exact.get_mut(topic) {
                        list.retain(|s| s.id != id);
                        if list.is_empty() {
                            self.exact.remove(topic);
                        }
                    }
                }
                Selector::Template(_) => {
                    if let Some(watchers) = self.templates.get_mut(selector.as_str()) {
                        watchers.subscribers.retain(|s| s.id != id);
                        if watchers.subscribers.is_empty() {
                            self.templates.remove(selector.as_str());
                        }
                    }
                }
            }
        }
    }

    /// Calls `visit` with every list of streams whose selector matches one of `topics` (a
    /// stream may be in several: the caller delivers once).
    pub fn matching(&mut self, topics: &[Topic], mut visit: impl FnMut(&mut Vec<Arc<Subscriber>>)) {
        if topics.is_empty() {
            return;
        }
        if !self.all.is_empty() {
            visit(&mut self.all);
        }
        for topic in topics {
            if let Some(list) = self.exact.get_mut(topic) {
                visit(list);
            }
        }
        for watchers in self.templates.values_mut() {
            let template = &watchers.template;
            let hit = topics.iter().any(|topic| {
                if let Some(&known) = watchers.matched.get(topic) {
                    return known;
                }
                if watchers.matched.len() >= MATCH_CACHE {
                    watchers.matched.clear();
                }
                let hit = template.matches(topic);
                watchers.matched.insert(topic.clone(), hit);
                hit
            });
            if hit {
                visit(&mut watchers.subscribers);
            }
        }
    }

    /// Every stream subscribed by topic (one with several selectors, more than once).
    pub fn subscribers(&self) -> impl Iterator<Item = &Arc<Subscriber>> {
        let exact = self.exact.values().flatten();
        let templates = self.templates.values().flat_map(|w| &w.subscribers);
        self.all.iter().chain(exact).chain(templates)
    }

    /// Drops the lists left empty by streams cut off during a publish.
    pub fn prune(&mut self) {
        self.exact.retain(|_, list| !list.is_empty());
        self.templates.retain(|_, watchers| !watchers.subscribers.is_empty());
    }

    /// The exact topics with at least one stream, sorted, with their stream counts.
    pub fn exact_topics(&self) -> Vec<TopicStreams> {
        let mut topics: Vec<TopicStreams> = self
            .exact
            .iter()
            .map(|(topic, list)| TopicStreams { topic: topic.to_string(), streams: list.len() })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
    }

    /// How many distinct exact topics streams subscribe to.
    pub fn distinct(&self) -> usize {
        self.exact.len()
    }
}
