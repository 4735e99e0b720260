//! The browser side of the console: a panel's stream (native `EventSource` or a `fetch` stream
//! read with the SSE parser from [`crate::sse`]) and the hub's HTTP API through `gloo-net`. On
//! the server these do nothing: the page is only rendered there.

#[cfg(feature = "browser")]
mod browser;

use crate::event::{HubInfo, PublishAck, TopicStreams, UserConnections};

/// The API a panel subscribes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `GET /stream-sse`: a user and/or topic selectors, with Tidings' tokens and tickets.
    Tidings,
    /// `GET /.well-known/mercure`: topic selectors alone, with a Mercure subscriber JWT (its
    /// `mercure.subscribe` claim says which private updates come). Mercure has no users and no
    /// tickets.
    Mercure,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tidings, Protocol::Mercure];

    pub fn key(self) -> &'static str {
        match self {
            Protocol::Tidings => "tidings",
            Protocol::Mercure => "mercure",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tidings => "Tidings",
            Protocol::Mercure => "Mercure",
        }
    }

    pub fn from_key(key: &str) -> Protocol {
        Protocol::ALL.into_iter().find(|p| p.key() == key).unwrap_or(Protocol::Tidings)
    }

    /// The transports this protocol can use: Mercure takes its token in `?authorization=` or the
    /// header, so it has no ticket and no `?token=`.
    pub fn transports(self) -> &'static [Transport] {
        match self {
            Protocol::Tidings => &Transport::ALL,
            Protocol::Mercure => &[Transport::EventSource, Transport::Fetch],
        }
    }
}

/// The path of Mercure's subscribe endpoint on the hub.
const MERCURE_PATH: &str = "/.well-known/mercure";

/// How a panel reaches its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A native `EventSource`; with a token, a one-time ticket goes in the URL, so no
    /// long-lived token does (Mercure has no tickets: its JWT goes in `?authorization=`).
    EventSource,
    /// A native `EventSource` with `?token=` in the URL (leaks into logs and history; here for
    /// hubs that must accept it).
    EventSourceToken,
    /// A `fetch` stream that sends `Authorization: Bearer`, parsed in WASM.
    Fetch,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::EventSource, Transport::EventSourceToken, Transport::Fetch];

    pub fn key(self) -> &'static str {
        match self {
            Transport::EventSource => "eventsource",
            Transport::EventSourceToken => "eventsource-token",
            Transport::Fetch => "fetch",
        }
    }

    /// What this transport is called under `protocol`: a Mercure `EventSource` sends its token
    /// in `?authorization=`, not through a ticket.
    pub fn label(self, protocol: Protocol) -> &'static str {
        match (self, protocol) {
            (Transport::EventSource, Protocol::Tidings) => "EventSource (ticket)",
            (Transport::EventSource, Protocol::Mercure) => "EventSource (?authorization=)",
            (Transport::EventSourceToken, _) => "EventSource (?token=)",
            (Transport::Fetch, _) => "fetch (Authorization header)",
        }
    }

    pub fn from_key(key: &str) -> Transport {
        Transport::ALL.into_iter().find(|t| t.key() == key).unwrap_or(Transport::EventSource)
    }
}

/// What a panel asks to open.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
#[derive(Clone, Debug)]
pub struct StreamRequest {
    pub protocol: Protocol,
    /// Empty for a stream of topics alone (the URL then has no `user=`); Mercure has no users.
    pub user: String,
    /// Topic selectors, each sent as a `topic=`; none leaves the URL as it was before topics.
    pub topics: Vec<String>,
    /// A subscriber token (Tidings' or a Mercure JWT), or empty on an open hub.
    pub token: String,
    pub transport: Transport,
}

/// What a panel's connection reports.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    Open,
    /// The connection failed; `reconnecting` says whether it will be retried, `reason` what the
    /// hub said when it refused.
    Error {
        reconnecting: bool,
        reason: Option<String>,
    },
    /// A dispatched event: its type, data and the stream's last event id.
    Message {
        event: String,
        data: String,
        last_event_id: String,
    },
}

/// The base URL of the hub: `?hub=` in the page's URL, else `TIDINGS_HUB` at build time (for a
/// console served from elsewhere, such as the Trunk build), else the page's own origin.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
pub fn hub_base() -> String {
    #[cfg(feature = "browser")]
    {
        let hub = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
            .and_then(|params| params.get("hub"));
        if let Some(hub) = hub.or_else(|| option_env!("TIDINGS_HUB").map(str::to_owned)) {
            return hub.trim_end_matches('/').to_owned();
        }
    }
    String::new()
}

/// The protocol the page was loaded over (`http/1.1`, `h2`, ...), or empty when unknown.
pub fn page_protocol() -> String {
    #[cfg(feature = "browser")]
    {
        use wasm_bindgen::JsCast;
        let entry = web_sys::window()
            .and_then(|w| js_sys::Reflect::get(&w, &"performance".into()).ok())
            .and_then(|perf| {
                let get = js_sys::Reflect::get(&perf, &"getEntriesByType".into()).ok()?;
                let get: js_sys::Function = get.dyn_into().ok()?;
                get.call1(&perf, &"navigation".into()).ok()
            })
            .map(|entries| js_sys::Array::from(&entries).get(0));
        if let Some(protocol) = entry
            .and_then(|entry| js_sys::Reflect::get(&entry, &"nextHopProtocol".into()).ok())
            .and_then(|p| p.as_string())
        {
            return protocol;
        }
    }
    String::new()
}

impl StreamRequest {
    /// Why this request cannot be opened, if it cannot: a Mercure subscription names at least
    /// one topic (the hub would refuse it, and an `EventSource` cannot say why).
    #[cfg_attr(not(feature = "browser"), allow(dead_code))]
    pub fn check(&self) -> Result<(), String> {
        if self.protocol == Protocol::Mercure && self.topics.is_empty() {
            return Err("a Mercure subscription names at least one topic".into());
        }
        Ok(())
    }

    /// Whether the stream is opened with a one-time ticket bought with the token (Tidings'
    /// `EventSource` with a token), and so must buy a new one to reconnect.
    #[cfg_attr(not(feature = "browser"), allow(dead_code))]
    pub fn uses_ticket(&self) -> bool {
        self.protocol == Protocol::Tidings && self.transport == Transport::EventSource && !self.token.is_empty()
    }

    /// This request's stream URL with `extra` query parameters (a credential, a last event id).
    #[cfg_attr(not(feature = "browser"), allow(dead_code))]
    pub fn url(&self, extra: &[(&str, &str)]) -> String {
        let topics = self.topics.iter().map(|topic| ("topic", topic.as_str()));
        match self.protocol {
            Protocol::Tidings => stream_url(
                "/stream-sse",
                std::iter::once(("user", self.user.as_str())).chain(topics).chain(extra.iter().copied()),
            ),
            Protocol::Mercure => stream_url(MERCURE_PATH, topics.chain(extra.iter().copied())),
        }
    }
}

/// The URL of `path` on the hub with these query parameters in order, percent-encoded; empty
/// values are left out.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
fn stream_url<'a>(path: &str, params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut url = format!("{}{path}?", hub_base());
    let mut first = true;
    for (name, value) in params {
        if value.is_empty() {
            continue;
        }
        if !first {
            url.push('&');
        }
        first = false;
        url.push_str(name);
        url.push('=');
        url.push_str(&percent_encode(value));
    }
    url
}

#[cfg_attr(not(feature = "browser"), allow(dead_code))]
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(feature = "browser")]
pub use browser::Connection;

/// On the server no connection is ever opened.
#[cfg(not(feature = "browser"))]
pub struct Connection;

#[cfg(not(feature = "browser"))]
impl Connection {
    pub fn open(
        _request: StreamRequest,
        _names: &[String],
        _sink: impl Fn(SourceEvent) + 'static,
    ) -> Result<Self, String> {
        Err("streams are opened in the browser".into())
    }

    pub fn listen(&mut self, _name: &str) {}
}

/// A request to the hub's API, with the publisher token when there is one.
#[cfg(feature = "browser")]
fn api(method: &str, path: &str, token: &str) -> gloo_net::http::RequestBuilder {
    let url = format!("{}{path}", hub_base());
    let builder = match method {
        "POST" => gloo_net::http::Request::post(&url),
        _ => gloo_net::http::Request::get(&url),
    };
    if token.is_empty() {
        builder
    } else {
        builder.header("Authorization", &format!("Bearer {token}"))
    }
}

/// The hub's error message for a refused request.
#[cfg(feature = "browser")]
async fn refusal(response: gloo_net::http::Response) -> String {
    let status = response.status();
    match response.json::<crate::event::ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => format!("the hub answered {status}"),
    }
}

/// `POST /api/events`; the error is the hub's own message when it refuses.
#[cfg(feature = "browser")]
pub async fn publish(body: serde_json::Value, token: String) -> Result<PublishAck, String> {
    let response = api("POST", "/api/events", &token)
        .json(&body)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    response.json::<PublishAck>().await.map_err(|e| e.to_string())
}

/// `GET /api/users`.
#[cfg(feature = "browser")]
pub async fn users(token: String) -> Result<Vec<UserConnections>, String> {
    get_list("/api/users", &token).await
}

/// `GET /api/topics`.
#[cfg(feature = "browser")]
pub async fn topics(token: String) -> Result<Vec<TopicStreams>, String> {
    get_list("/api/topics", &token).await
}

/// A list the hub answers a publisher's `GET` with.
#[cfg(feature = "browser")]
async fn get_list<T: serde::de::DeserializeOwned>(path: &str, token: &str) -> Result<Vec<T>, String> {
    let response = api("GET", path, token).send().await.map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    response.json().await.map_err(|e| e.to_string())
}

/// `GET /api/info`: whether the hub wants tokens.
#[cfg(feature = "browser")]
pub async fn hub_info() -> Result<HubInfo, String> {
    let response = api("GET", "/api/info", "").send().await.map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    response.json().await.map_err(|e| e.to_string())
}

// On the server the page is only rendered: these are never called there.
#[cfg(not(feature = "browser"))]
pub async fn publish(_body: serde_json::Value, _token: String) -> Result<PublishAck, String> {
    Err("events are published from the browser".into())
}

#[cfg(not(feature = "browser"))]
pub async fn users(_token: String) -> Result<Vec<UserConnections>, String> {
    Err("the user list is read in the browser".into())
}

#[cfg(not(feature = "browser"))]
pub async fn topics(_token: String) -> Result<Vec<TopicStreams>, String> {
    Err("the topic list is read in the browser".into())
}

#[cfg(not(feature = "browser"))]
pub async fn hub_info() -> Result<HubInfo, String> {
    Err("the hub is asked from the browser".into())
}

/// `POST /api/tickets`: a one-time ticket for the token's user.
#[cfg(feature = "browser")]
async fn ticket(token: &str) -> Result<String, String> {
    let response = api("POST", "/api/tickets", token).send().await.map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(refusal(response).await);
    }
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    body["ticket"].as_str().map(str::to_owned).ok_or_else(|| "the hub sent no ticket".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str, topics: &[&str]) -> StreamRequest {
        StreamRequest {
            protocol: Protocol::Tidings,
            user: user.to_owned(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            token: String::new(),
            transport: Transport::EventSource,
        }
    }

    /// Stream URLs carry the user and the credential, encoded, and leave out empty values.
    #[test]
    fn stream_urls_are_encoded() {
        assert_eq!(request("Alpha User", &[]).url(&[]), "/stream-sse?user=Alpha%20User");
        assert_eq!(request("a", &[]).url(&[("ticket", "t&x"), ("lastEventId", "")]), "/stream-sse?user=a&ticket=t%26x");
        assert_eq!(request("", &[]).url(&[("token", "abc")]), "/stream-sse?token=abc");
    }

    /// Each selector is one `topic=`, after the user (or alone) and before the credential, with
    /// every reserved character of a URL or a template encoded.
    #[test]
    fn topics_are_one_parameter_each() {
        assert_eq!(
            request("ann", &["https://shop.example/orders/42", "*"]).url(&[("ticket", "t")]),
            "/stream-sse?user=ann&topic=https%3A%2F%2Fshop.example%2Forders%2F42&topic=%2A&ticket=t"
        );
        assert_eq!(
            request("", &["https://shop.example/orders/{id}", "a&b=c d"]).url(&[]),
            "/stream-sse?topic=https%3A%2F%2Fshop.example%2Forders%2F%7Bid%7D&topic=a%26b%3Dc%20d"
        );
        assert_eq!(request("", &["é"]).url(&[]), "/stream-sse?topic=%C3%A9");
    }

    fn mercure(topics: &[&str], token: &str, transport: Transport) -> StreamRequest {
        StreamRequest { protocol: Protocol::Mercure, token: token.to_owned(), transport, ..request("ann", topics) }
    }

    /// A Mercure URL is the subscribe endpoint with one `topic=` a selector and no `user=`; the
    /// JWT and the resume point go in the parameters Mercure names.
    #[test]
    fn mercure_urls_name_topics_alone() {
        let request = mercure(&["https://example.com/books/{id}", "*"], "a.b.c", Transport::EventSource);
        assert_eq!(
            request.url(&[("authorization", "a.b.c"), ("lastEventID", "urn:uuid:1")]),
            "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D&topic=%2A\
             &authorization=a.b.c&lastEventID=urn%3Auuid%3A1"
        );
    }

    /// Mercure has no tickets, so a Mercure panel with a token never buys one; a Mercure
    /// subscription without a topic is stopped before it reaches the hub.
    #[test]
    fn mercure_needs_topics_and_no_ticket() {
        assert!(request("ann", &[]).check().is_ok());
        assert!(StreamRequest { token: "t".into(), ..request("ann", &[]) }.uses_ticket());
        assert!(!mercure(&["*"], "t", Transport::EventSource).uses_ticket());
        assert!(mercure(&["*"], "", Transport::Fetch).check().is_ok());
        assert_eq!(
            mercure(&[], "t", Transport::Fetch).check().unwrap_err(),
            "a Mercure subscription names at least one topic"
        );
    }

    /// A Mercure panel offers only the transports Mercure can use, with the credential each sends.
    #[test]
    fn mercure_offers_no_ticket_and_no_token_parameter() {
        let labels: Vec<_> = Protocol::Mercure.transports().iter().map(|t| t.label(Protocol::Mercure)).collect();
        assert_eq!(labels, ["EventSource (?authorization=)", "fetch (Authorization header)"]);
        assert_eq!(Protocol::from_key("mercure"), Protocol::Mercure);
        assert_eq!(Protocol::from_key("other"), Protocol::Tidings);
    }
}
