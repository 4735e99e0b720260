//! A panel's stream in the browser, by any of the three transports, from Tidings' API or
//! Mercure's. All of them report the same [`SourceEvent`]s: open, error (reconnecting or not),
//! and the events of the listened names, and all of them reconnect with the last event id, so a
//! person sees no difference.

use super::{ticket, Protocol, SourceEvent, StreamRequest, Transport};
use crate::event::EventName;
use crate::sse::Parser;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{AbortController, Event, EventSource, MessageEvent};

/// The reconnection delay when the stream named none, as browsers do.
const DEFAULT_RETRY_MS: u32 = 3000;

type Listener = Closure<dyn FnMut(Event)>;

/// One panel's stream. Dropping it closes the stream, so a panel never leaks a connection.
pub struct Connection {
    inner: Rc<Inner>,
}

struct Inner {
    request: StreamRequest,
    sink: Box<dyn Fn(SourceEvent)>,
    /// Event names delivered besides `gap`.
    names: RefCell<Vec<String>>,
    /// The last event id seen, sent when reopening.
    last_id: RefCell<String>,
    closed: Cell<bool>,
    native: RefCell<Option<Native>>,
    abort: RefCell<Option<AbortController>>,
}

/// A native `EventSource` and the listeners it needs kept alive.
struct Native {
    source: EventSource,
    listeners: Vec<(String, Listener)>,
}

impl Drop for Native {
    fn drop(&mut self) {
        self.source.close();
        for (name, listener) in &self.listeners {
            let _ = self.source.remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}

impl Connection {
    /// Starts the stream; events arrive through `sink`.
    pub fn open(
        request: StreamRequest,
        names: &[String],
        sink: impl Fn(SourceEvent) + 'static,
    ) -> Result<Self, String> {
        request.check()?;
        let inner = Rc::new(Inner {
            request,
            sink: Box::new(sink),
            names: RefCell::new(names.to_vec()),
            last_id: RefCell::new(String::new()),
            closed: Cell::new(false),
            native: RefCell::new(None),
            abort: RefCell::new(None),
        });
        let token = inner.request.token.clone();
        match (inner.request.protocol, inner.request.transport) {
            (_, Transport::Fetch) => spawn_local(run_fetch(Rc::downgrade(&inner))),
            _ if inner.request.uses_ticket() => spawn_local(open_with_ticket(Rc::downgrade(&inner))),
            // The browser's own reconnection sends `Last-Event-ID`, which Mercure reads first:
            // unlike a `lastEventID=` this page could write, it holds the id the hub opened the
            // stream with, so a panel that drops before its first update misses nothing.
            (Protocol::Mercure, _) => open_native(&inner, &inner.request.url(&[("authorization", &token)]))?,
            (Protocol::Tidings, Transport::EventSource) => open_native(&inner, &inner.request.url(&[]))?,
            (Protocol::Tidings, Transport::EventSourceToken) => {
                open_native(&inner, &inner.request.url(&[("token", &token)]))?
            }
        }
        Ok(Connection { inner })
    }

    /// Starts delivering events of type `name` too.
    pub fn listen(&mut self, name: &str) {
        if !self.inner.wants(name) {
            self.inner.names.borrow_mut().push(name.to_owned());
        }
        if let Some(native) = self.inner.native.borrow_mut().as_mut() {
            add_message_listener(&self.inner, native, name);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.inner.closed.set(true);
        self.inner.native.borrow_mut().take();
        if let Some(abort) = self.inner.abort.borrow_mut().take() {
            abort.abort();
        }
    }
}

impl Inner {
    fn wants(&self, name: &str) -> bool {
        name == EventName::GAP || self.names.borrow().iter().any(|n| n == name)
    }

    /// Keeps `id` as the point to resume from. An empty id (an event dispatched before the
    /// stream named any) never replaces one: reopening without it would lose what came meanwhile.
    fn remember(&self, id: &str) {
        if !id.is_empty() {
            self.last_id.replace(id.to_owned());
        }
    }

    fn emit(&self, event: SourceEvent) {
        if !self.closed.get() {
            (self.sink)(event);
        }
    }
}

/// Opens a native `EventSource` at `url`, replacing the previous one.
fn open_native(inner: &Rc<Inner>, url: &str) -> Result<(), String> {
    let source = EventSource::new(url).map_err(|e| format!("{e:?}"))?;
    let mut native = Native { source, listeners: Vec::new() };
    let weak = Rc::downgrade(inner);
    add_listener(&mut native, "open", {
        let weak = weak.clone();
        move |_| {
            if let Some(inner) = weak.upgrade() {
                inner.emit(SourceEvent::Open);
            }
        }
    });
    let source = native.source.clone();
    add_listener(&mut native, "error", {
        move |_| {
            let Some(inner) = weak.upgrade() else { return };
            if inner.request.uses_ticket() {
                // The ticket is spent: the browser's own retry would be refused. Buy a new one.
                source.close();
                inner.emit(SourceEvent::Error { reconnecting: true, reason: None });
                let weak = weak.clone();
                spawn_local(async move {
                    sleep(DEFAULT_RETRY_MS).await;
                    open_with_ticket(weak).await;
                });
            } else {
                let reconnecting = source.ready_state() == EventSource::CONNECTING;
                inner.emit(SourceEvent::Error { reconnecting, reason: None });
            }
        }
    });
    let names: Vec<String> = inner.names.borrow().clone();
    for name in names.iter().map(String::as_str).chain([EventName::GAP]) {
        add_message_listener(inner, &mut native, name);
    }
    // Dropping the old source (if any) happens here, outside any of its own listeners.
    *inner.native.borrow_mut() = Some(native);
    Ok(())
}

fn add_listener(native: &mut Native, name: &str, handle: impl FnMut(Event) + 'static) {
    if native.listeners.iter().any(|(n, _)| n == name) {
        return;
    }
    let listener: Listener = Closure::new(handle);
    // Adding a listener to a live EventSource cannot fail.
    let _ = native.source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
    native.listeners.push((name.to_owned(), listener));
}

fn add_message_listener(inner: &Rc<Inner>, native: &mut Native, name: &str) {
    let weak = Rc::downgrade(inner);
    let event_name = name.to_owned();
    add_listener(native, name, move |event| {
        let (Some(inner), Some(message)) = (weak.upgrade(), event.dyn_ref::<MessageEvent>()) else { return };
        let last_event_id = message.last_event_id();
        inner.remember(&last_event_id);
        let data = message.data().as_string().unwrap_or_default();
        inner.emit(SourceEvent::Message { event: event_name.clone(), data, last_event_id });
    });
}

/// Buys a one-time ticket and opens a native stream with it, resuming after the last event id.
async fn open_with_ticket(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    if inner.closed.get() {
        return;
    }
    let ticket = match ticket(&inner.request.token).await {
        Ok(ticket) => ticket,
        Err(reason) => return inner.emit(SourceEvent::Error { reconnecting: false, reason: Some(reason) }),
    };
    if inner.closed.get() {
        return;
    }
    let last_id = inner.last_id.borrow().clone();
    let url = inner.request.url(&[("ticket", &ticket), ("lastEventId", &last_id)]);
    if let Err(reason) = open_native(&inner, &url) {
        inner.emit(SourceEvent::Error { reconnecting: false, reason: Some(reason) });
    }
}

/// The `fetch` transport: open, read and parse until the stream ends, then wait `retry` and
/// reopen with `Last-Event-ID` (Mercure: `lastEventID=`), until the connection is dropped or the
/// hub refuses for good.
async fn run_fetch(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.get() {
            return;
        }
        let retry = match fetch_once(&inner).await {
            Ok(retry) => retry,
            Err(Refused::Finally(reason)) => {
                return inner.emit(SourceEvent::Error { reconnecting: false, reason: Some(reason) });
            }
            Err(Refused::ForNow(reason)) => {
                inner.emit(SourceEvent::Error { reconnecting: true, reason });
                DEFAULT_RETRY_MS
            }
        };
        if inner.closed.get() {
            return;
        }
        drop(inner);
        sleep(retry).await;
    }
}

enum Refused {
    /// Worth retrying (network failure, 429, 5xx).
    ForNow(Option<String>),
    /// Not worth retrying (401, 403, 400).
    Finally(String),
}

/// One `fetch` stream. Returns the reconnection delay once it ended normally.
async fn fetch_once(inner: &Inner) -> Result<u32, Refused> {
    let window = web_sys::window().ok_or(Refused::Finally("no window".into()))?;
    let headers = web_sys::Headers::new().map_err(|_| Refused::Finally("no Headers".into()))?;
    let _ = headers.set("Accept", "text/event-stream");
    if !inner.request.token.is_empty() {
        let _ = headers.set("Authorization", &format!("Bearer {}", inner.request.token));
    }
    let last_id = inner.last_id.borrow().clone();
    let url = match inner.request.protocol {
        Protocol::Tidings => {
            if !last_id.is_empty() {
                let _ = headers.set("Last-Event-ID", &last_id);
            }
            inner.request.url(&[])
        }
        Protocol::Mercure => inner.request.url(&[("lastEventID", &last_id)]),
    };
    let abort = AbortController::new().map_err(|_| Refused::Finally("no AbortController".into()))?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    init.set_signal(Some(&abort.signal()));
    inner.abort.replace(Some(abort));
    let response = JsFuture::from(window.fetch_with_str_and_init(&url, &init))
        .await
        .map_err(|_| Refused::ForNow(None))?
        .unchecked_into::<web_sys::Response>();
    if !response.ok() {
        let status = response.status();
        let reason = match JsFuture::from(response.text().map_err(|_| Refused::ForNow(None))?).await {
            Ok(text) => text
                .as_string()
                .and_then(|t| serde_json::from_str::<crate::event::ErrorBody>(&t).ok())
                .map_or_else(|| format!("the hub answered {status}"), |body| body.error),
            Err(_) => format!("the hub answered {status}"),
        };
        return Err(if status == 429 || status >= 500 {
            Refused::ForNow(Some(reason))
        } else {
            Refused::Finally(reason)
        });
    }
    let reader = response
        .body()
        .ok_or(Refused::ForNow(None))?
        .get_reader()
        .unchecked_into::<web_sys::ReadableStreamDefaultReader>();
    inner.emit(SourceEvent::Open);
    let mut parser = Parser::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| Refused::ForNow(None))?;
        let done = js_sys::Reflect::get(&chunk, &JsValue::from_str("done")).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let Ok(value) = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")) else { break };
        let bytes = js_sys::Uint8Array::new(&value).to_vec();
        for event in parser.feed(&bytes) {
            if inner.wants(&event.event) {
                inner.emit(SourceEvent::Message {
                    event: event.event,
                    data: event.data,
                    last_event_id: event.last_event_id,
                });
            }
        }
        inner.remember(parser.last_event_id());
        if inner.closed.get() {
            return Ok(0);
        }
    }
    inner.emit(SourceEvent::Error { reconnecting: true, reason: None });
    Ok(parser.retry().map_or(DEFAULT_RETRY_MS, |ms| ms as u32))
}

/// Waits `ms` milliseconds on the browser's timer.
async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    });
    let _ = JsFuture::from(promise).await;
}
