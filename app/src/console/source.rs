//! The browser side of the console: one `EventSource` per panel, and the hub's HTTP API through
//! `gloo-net`. On the server these do nothing: the page is only rendered there.

use crate::event::{PublishAck, UserConnections};

/// What a panel's connection reports.
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    Open,
    /// The connection failed; `reconnecting` says whether the browser will retry by itself.
    Error {
        reconnecting: bool,
    },
    /// A dispatched event: its type, data and the stream's last event id.
    Message {
        event: String,
        data: String,
        last_event_id: String,
    },
}

/// The base URL of the hub: the page's own origin, or `?hub=` in the page's URL (for a console
/// served from elsewhere, such as the Trunk build).
pub fn hub_base() -> String {
    #[cfg(feature = "browser")]
    {
        let hub = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
            .and_then(|params| params.get("hub"));
        if let Some(hub) = hub {
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
        if let Some(entry) = entry {
            if let Some(p) = js_sys::Reflect::get(&entry, &"nextHopProtocol".into()).ok().and_then(|p| p.as_string()) {
                return p;
            }
        }
    }
    String::new()
}

#[cfg(feature = "browser")]
pub use browser::Connection;

/// On the server no connection is ever opened.
#[cfg(not(feature = "browser"))]
pub struct Connection;

#[cfg(not(feature = "browser"))]
impl Connection {
    pub fn open(_url: &str, _names: &[String], _sink: impl Fn(SourceEvent) + 'static) -> Result<Self, String> {
        Err("streams are opened in the browser".into())
    }

    pub fn listen(&mut self, _name: &str) {}
}

#[cfg(feature = "browser")]
mod browser {
    use super::SourceEvent;
    use std::rc::Rc;
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{Event, EventSource, MessageEvent};

    type Listener = Closure<dyn FnMut(Event)>;

    /// One open `EventSource` and the listeners it needs kept alive. Dropping it closes the
    /// stream, so a panel can never leak a connection.
    pub struct Connection {
        source: EventSource,
        sink: Rc<dyn Fn(SourceEvent)>,
        listeners: Vec<(String, Listener)>,
    }

    impl Connection {
        /// Opens `url` and listens for `open`, `error` and each name in `names`.
        pub fn open(url: &str, names: &[String], sink: impl Fn(SourceEvent) + 'static) -> Result<Self, String> {
            let source = EventSource::new(url).map_err(|e| format!("{e:?}"))?;
            let mut connection = Connection { source, sink: Rc::new(sink), listeners: Vec::new() };
            connection.add("open", |sink, _, _| sink(SourceEvent::Open));
            connection.add("error", |sink, _, source| {
                let reconnecting = source.ready_state() == EventSource::CONNECTING;
                sink(SourceEvent::Error { reconnecting })
            });
            for name in names {
                connection.listen(name);
            }
            Ok(connection)
        }

        /// Starts delivering events of type `name` (once per name).
        pub fn listen(&mut self, name: &str) {
            let name_owned = name.to_owned();
            self.add(name, move |sink, event, _| {
                if let Some(message) = event.dyn_ref::<MessageEvent>() {
                    sink(SourceEvent::Message {
                        event: name_owned.clone(),
                        data: message.data().as_string().unwrap_or_default(),
                        last_event_id: message.last_event_id(),
                    });
                }
            });
        }

        fn add(&mut self, name: &str, handle: impl Fn(&dyn Fn(SourceEvent), &Event, &EventSource) + 'static) {
            if self.listeners.iter().any(|(n, _)| n == name) {
                return;
            }
            let sink = Rc::clone(&self.sink);
            let source = self.source.clone();
            let listener: Listener = Closure::new(move |event: Event| handle(&*sink, &event, &source));
            // Adding a listener to a live EventSource cannot fail.
            let _ = self.source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            self.listeners.push((name.to_owned(), listener));
        }
    }

    impl Drop for Connection {
        fn drop(&mut self) {
            self.source.close();
            for (name, listener) in &self.listeners {
                let _ = self.source.remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            }
        }
    }
}

/// `POST /api/events`; the error is the hub's own message when it refuses.
pub async fn publish(body: serde_json::Value) -> Result<PublishAck, String> {
    #[cfg(feature = "browser")]
    {
        use crate::event::ErrorBody;
        let response = gloo_net::http::Request::post(&format!("{}/api/events", hub_base()))
            .json(&body)
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.ok() {
            return response.json::<PublishAck>().await.map_err(|e| e.to_string());
        }
        let status = response.status();
        return Err(match response.json::<ErrorBody>().await {
            Ok(body) => body.error,
            Err(_) => format!("the hub answered {status}"),
        });
    }
    #[cfg(not(feature = "browser"))]
    {
        let _ = body;
        Err("events are published from the browser".into())
    }
}

/// `GET /api/users`.
pub async fn users() -> Result<Vec<UserConnections>, String> {
    #[cfg(feature = "browser")]
    {
        let response = gloo_net::http::Request::get(&format!("{}/api/users", hub_base()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.ok() {
            return Err(format!("the hub answered {}", response.status()));
        }
        return response.json().await.map_err(|e| e.to_string());
    }
    #[cfg(not(feature = "browser"))]
    Err("the user list is read in the browser".into())
}

/// The stream URL for `user`, percent-encoded.
pub fn stream_url(user: &str) -> String {
    let mut url = format!("{}/stream-sse?user=", hub_base());
    for byte in user.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}
