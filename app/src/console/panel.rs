//! One panel: a stream for a user and/or topic selectors (or a Mercure subscription to topic
//! selectors), its state, and the table of what arrived (No, lastEventId, type, data), as in the
//! original page — without its leaks: a panel holds one connection at most.

use super::source::{Connection, Protocol, SourceEvent, StreamRequest, Transport};
use super::{format::display_data, split_topics, Shared};
use crate::event::EventName;
use leptos::prelude::*;
use std::collections::VecDeque;

/// A table keeps this many of its newest rows, so a long session does not grow without bound.
pub const MAX_ROWS: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Closed,
    Connecting,
    Open,
    Reconnecting,
}

#[derive(Clone, Debug)]
struct Row {
    no: u64,
    last_event_id: String,
    kind: String,
    data: String,
}

/// The CSS class of a row's type cell: the original's colours, plus the hub's `gap`.
fn kind_class(kind: &str) -> &'static str {
    match kind {
        "open" => "kind open",
        "error" => "kind error",
        EventName::MESSAGE => "kind message",
        EventName::GAP => "kind gap",
        _ => "kind named",
    }
}

#[component]
pub fn Panel(key: u32, initial_user: String, on_remove: Callback<u32>) -> impl IntoView {
    let shared = expect_context::<Shared>();
    let user = RwSignal::new(initial_user);
    let topics = RwSignal::new(String::new());
    let protocol = RwSignal::new(Protocol::Tidings);
    let token = RwSignal::new(String::new());
    let transport = RwSignal::new(Transport::EventSource);
    let status = RwSignal::new(Status::Closed);
    let reconnects = RwSignal::new(0u32);
    let rows = RwSignal::new(VecDeque::<Row>::new());
    let next_no = StoredValue::new(1u64);
    let names = RwSignal::new(vec![EventName::MESSAGE.to_owned()]);
    let new_name = RwSignal::new(String::new());
    let name_error = RwSignal::new(None::<String>);
    let connection = StoredValue::new_local(None::<Connection>);
    let table = NodeRef::<leptos::html::Div>::new();

    let push_row = move |kind: &str, last_event_id: String, data: String| {
        let no = next_no.get_value();
        next_no.set_value(no + 1);
        rows.update(|rows| {
            rows.push_back(Row { no, last_event_id, kind: kind.to_owned(), data });
            while rows.len() > MAX_ROWS {
                rows.pop_front();
            }
        });
    };
    let set_active = move |active: bool| {
        shared.active.update(|set| {
            if active {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        })
    };
    let disconnect = move || {
        connection.set_value(None);
        status.set(Status::Closed);
        set_active(false);
    };
    let connect = move || {
        // Close the previous stream before opening another: never two at once.
        connection.set_value(None);
        reconnects.set(0);
        let sink = move |event: SourceEvent| match event {
            SourceEvent::Open => {
                status.set(Status::Open);
                push_row("open", String::new(), String::new());
            }
            SourceEvent::Error { reconnecting, reason } => {
                push_row("error", String::new(), reason.unwrap_or_default());
                if reconnecting {
                    reconnects.update(|n| *n += 1);
                    status.set(Status::Reconnecting);
                } else {
                    status.set(Status::Closed);
                    set_active(false);
                }
            }
            SourceEvent::Message { event, data, last_event_id } => {
                push_row(&event, last_event_id, display_data(&data));
            }
        };
        let mut listen = names.get_untracked();
        listen.push(EventName::GAP.to_owned());
        let request = StreamRequest {
            protocol: protocol.get_untracked(),
            user: user.get_untracked(),
            topics: split_topics(&topics.get_untracked()),
            token: token.get_untracked(),
            transport: transport.get_untracked(),
        };
        match Connection::open(request, &listen, sink) {
            Ok(opened) => {
                connection.set_value(Some(opened));
                status.set(Status::Connecting);
                set_active(true);
            }
            Err(cause) => push_row("error", String::new(), cause),
        }
    };

    // "Connect all" connects this panel unless it already holds a stream.
    Effect::new(move |previous: Option<u32>| {
        let round = shared.connect_all.get();
        if previous.is_some() && status.get_untracked() == Status::Closed {
            connect();
        }
        round
    });
    // Keep the newest row in view, as the original page did.
    Effect::new(move |_| {
        rows.track();
        if let Some(el) = table.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });
    on_cleanup(move || {
        connection.try_update_value(|c| *c = None);
        shared.active.try_update(|set| set.remove(&key));
    });

    let add_name = move || {
        let name = new_name.get_untracked();
        match EventName::new(name.trim()) {
            Ok(name) => {
                let name = name.as_str().to_owned();
                connection.update_value(|c| {
                    if let Some(c) = c {
                        c.listen(&name);
                    }
                });
                names.update(|names| {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                });
                new_name.set(String::new());
                name_error.set(None);
            }
            Err(why) => name_error.set(Some(why)),
        }
    };
    let status_text = move || match status.get() {
        Status::Closed => "closed".to_owned(),
        Status::Connecting => "connecting".to_owned(),
        Status::Open if reconnects.get() > 0 => format!("open (reconnected {}×)", reconnects.get()),
        Status::Open => "open".to_owned(),
        Status::Reconnecting => format!("reconnecting ({})", reconnects.get()),
    };
    let label = format!("Panel {key}");
    let tidings = move || protocol.get() == Protocol::Tidings;
    // A transport the new protocol cannot use (Mercure has no `?token=`) falls back to EventSource.
    let choose_protocol = move |chosen: Protocol| {
        protocol.set(chosen);
        if !chosen.transports().contains(&transport.get_untracked()) {
            transport.set(Transport::EventSource);
        }
    };

    view! {
        <section class="panel" aria-label=label>
            <div class="panel-controls">
                <Show when=tidings>
                    <label>"User" <input type="text" bind:value=user/></label>
                </Show>
                <button on:click=move |_| {
                    if status.get_untracked() == Status::Closed { connect() } else { disconnect() }
                }>
                    {move || if status.get() == Status::Closed { "Connect" } else { "Disconnect" }}
                </button>
                <button on:click=move |_| {
                    rows.set(VecDeque::new());
                    next_no.set_value(1);
                }>"Clear"</button>
                <button aria-label=format!("Remove panel {key}") on:click=move |_| on_remove.run(key)>"×"</button>
            </div>
            <label class="panel-topics">
                "Topics"
                <textarea
                    rows="1"
                    placeholder="selectors, one per line or space-separated: * or https://shop.example/orders/{id}"
                    bind:value=topics
                ></textarea>
            </label>
            <div class="panel-auth">
                <label>
                    "Protocol "
                    <select on:change=move |ev| choose_protocol(Protocol::from_key(&event_target_value(&ev)))>
                        {Protocol::ALL
                            .into_iter()
                            .map(|p| view! { <option value=p.key() selected=move || protocol.get() == p>{p.label()}</option> })
                            .collect_view()}
                    </select>
                </label>
                // A Mercure hub takes a subscriber JWT even when Tidings' own API is open.
                <Show when=move || shared.auth.get() || !tidings()>
                    <label>
                        "Token"
                        <input
                            type="password"
                            autocomplete="off"
                            placeholder=move || if tidings() { "" } else { "subscriber JWT, empty if anonymous" }
                            bind:value=token
                        />
                    </label>
                </Show>
                <label>
                    "Transport "
                    <select on:change=move |ev| transport.set(Transport::from_key(&event_target_value(&ev)))>
                        {move || {
                            let chosen = protocol.get();
                            chosen
                                .transports()
                                .iter()
                                .map(|&t| view! { <option value=t.key() selected=move || transport.get() == t>{t.label(chosen)}</option> })
                                .collect_view()
                        }}
                    </select>
                </label>
            </div>
            <p class="status" aria-live="polite">"Stream: " <span class=move || format!("state {:?}", status.get()).to_lowercase()>{status_text}</span></p>
            <div class="names">
                <span>"Listening to: "</span>
                <For each=move || names.get() key=|name| name.clone() let:name>
                    <span class="chip">{name}</span>
                </For>
                <span class="chip gap">"gap"</span>
                <input
                    type="text"
                    aria-label="Add event name"
                    placeholder="add event name ⏎"
                    bind:value=new_name
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" {
                            add_name();
                        }
                    }
                />
                {move || name_error.get().map(|why| view! { <span class="field-error" role="alert">{why}</span> })}
            </div>
            <div class="table-wrap" node_ref=table>
                <table>
                    <caption>"EventStream"</caption>
                    <thead>
                        <tr><th>"No"</th><th>"lastEventId"</th><th>"type"</th><th>"data"</th></tr>
                    </thead>
                    <tbody>
                        <For each=move || rows.get() key=|row| row.no let:row>
                            <tr>
                                <td>{row.no}</td>
                                <td>{row.last_event_id.clone()}</td>
                                <td class=kind_class(&row.kind)>{row.kind.clone()}</td>
                                <td class="data">{row.data.clone()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
    }
}
