//! The console: a page of panels, each watching a user's stream and/or topics, plus a publish
//! form and the lists of connected users and of topics with streams. It keeps the shape of the
//! original three-panel page.
//!
//! - [`panel`]: one panel — its connection, state and table of events.
//! - [`publish`]: the publish form.
//! - [`users`]: the live lists of connected users and of topics with streams.
//! - [`source`]: the browser side — `EventSource` and `fetch` calls (a no-op on the server).
//! - [`format`]: how event data is shown.

mod format;
mod panel;
mod publish;
mod source;
mod users;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};
use std::collections::BTreeSet;

/// The page's root: metadata and the one route, `/`.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // The hub serves the stylesheet cargo-leptos built; a Trunk build links its own.
    #[cfg(not(feature = "csr"))]
    let stylesheet = view! { <leptos_meta::Stylesheet id="leptos" href="/pkg/tidings.css"/> };
    #[cfg(feature = "csr")]
    let stylesheet = ();
    view! {
        {stylesheet}
        <Title text="Tidings — SSE console"/>
        <Router>
            <Routes fallback=|| "Page not found.".into_view()>
                <Route path=path!("") view=Console/>
            </Routes>
        </Router>
    }
}

/// The HTML document around [`App`], as the hub serves it.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// What the panels share: the "Connect all" trigger and which panels hold a connection.
#[derive(Clone, Copy)]
pub(crate) struct Shared {
    /// Bumped by "Connect all"; every panel connects when it changes.
    pub connect_all: RwSignal<u32>,
    /// Keys of the panels that hold an open or opening connection.
    pub active: RwSignal<BTreeSet<u32>>,
    /// Whether the hub wants tokens (from `GET /api/info`).
    pub auth: RwSignal<bool>,
    /// The token the publish form and the user list send, when the hub wants one.
    pub publisher_token: RwSignal<String>,
}

/// The entries of a Topics field (a panel's selectors, the publish form's topics), each once, in
/// order. They are separated by whitespace, not commas: URLs and templates hold commas but no
/// spaces (so a topic with a space in it cannot be named here).
fn split_topics(text: &str) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for topic in text.split_whitespace() {
        if !topics.iter().any(|t| t == topic) {
            topics.push(topic.to_owned());
        }
    }
    topics
}

/// Browsers open at most six HTTP/1.1 connections per origin; a seventh stream waits silently.
const HTTP1_STREAMS_PER_ORIGIN: usize = 6;

const SEED_USERS: [&str; 3] = ["Alpha User", "Beta User", "Theta User"];

#[component]
fn Console() -> impl IntoView {
    let shared = Shared {
        connect_all: RwSignal::new(0),
        active: RwSignal::new(BTreeSet::new()),
        auth: RwSignal::new(false),
        publisher_token: RwSignal::new(String::new()),
    };
    provide_context(shared);
    let panels = RwSignal::new(
        SEED_USERS.iter().enumerate().map(|(i, user)| (i as u32 + 1, user.to_string())).collect::<Vec<_>>(),
    );
    let next_key = StoredValue::new(SEED_USERS.len() as u32 + 1);
    let add_panel = move |_| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        panels.update(|p| p.push((key, format!("User {key}"))));
    };
    let remove_panel = Callback::new(move |key: u32| {
        panels.update(|p| p.retain(|(k, _)| *k != key));
        shared.active.update(|a| {
            a.remove(&key);
        });
    });
    // Effects run only in the browser: this marks the page as hydrated for tests and people.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            if let Ok(info) = source::hub_info().await {
                shared.auth.set(info.auth);
            }
        })
    });
    let protocol = RwSignal::new(String::new());
    Effect::new(move |_| protocol.set(source::page_protocol()));
    let stalled = move || {
        let over = shared.active.with(BTreeSet::len) > HTTP1_STREAMS_PER_ORIGIN;
        over && protocol.with(|p| p.eq_ignore_ascii_case("http/1.1"))
    };

    view! {
        <main data-hydrated=move || hydrated.get().then_some("true")>
            <header class="bar">
                <h1>"Tidings"</h1>
                <button on:click=move |_| shared.connect_all.update(|n| *n += 1)>"Connect all"</button>
                <button on:click=add_panel>"Add panel"</button>
                <Show when=move || shared.auth.get()>
                    <label class="publisher-token">
                        "Publisher token " <input type="password" autocomplete="off" bind:value=shared.publisher_token/>
                    </label>
                </Show>
            </header>
            <Show when=stalled>
                <p class="warning" role="alert">
                    "More than six streams over HTTP/1.1: the browser holds back new connections to this origin \
                     until others close. Serve the hub over HTTPS (HTTP/2) to lift the limit."
                </p>
            </Show>
            <div class="panels">
                <For each=move || panels.get() key=|(key, _)| *key let:panel>
                    <panel::Panel key=panel.0 initial_user=panel.1 on_remove=remove_panel/>
                </For>
            </div>
            <div class="side">
                <publish::PublishForm/>
                <users::UserList/>
                <users::TopicList/>
            </div>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::split_topics;

    /// Spaces, tabs and newlines separate entries; commas do not; repeats are dropped.
    #[test]
    fn topics_fields_split_on_whitespace() {
        assert_eq!(split_topics(""), Vec::<String>::new());
        assert_eq!(split_topics("  \n "), Vec::<String>::new());
        assert_eq!(
            split_topics(" https://a.example/x,y\n*\t{+path}/z  https://a.example/x,y "),
            ["https://a.example/x,y", "*", "{+path}/z"]
        );
    }
}
