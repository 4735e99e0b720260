//! The live lists read from the hub every two seconds: connected users (`GET /api/users`) and
//! topics with streams (`GET /api/topics`).

use super::{source, Shared};
use crate::event::{TopicStreams, UserConnections};
use leptos::prelude::*;
use std::future::Future;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(2);

/// How a list reads: its heading (also its accessible name), its CSS class, what it says when
/// empty, and what its count counts (one, many).
struct Wording {
    heading: &'static str,
    class: &'static str,
    empty: &'static str,
    counted: (&'static str, &'static str),
}

/// A list of `(name, count)` rows kept fresh by `load` (given the publisher token), with why the
/// last load failed. Effects run only in the browser, so polling starts after hydration.
fn live_list<T: 'static, F, Fut>(wording: Wording, load: F, row: fn(T) -> (String, usize)) -> impl IntoView
where
    F: Fn(String) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<Vec<T>, String>> + 'static,
{
    let rows = RwSignal::new(Vec::<(String, usize)>::new());
    let failure = RwSignal::new(None::<String>);
    let shared = expect_context::<Shared>();
    let refresh = move || {
        let token = shared.publisher_token.get_untracked();
        leptos::task::spawn_local(async move {
            match load(token).await {
                Ok(list) => {
                    rows.set(list.into_iter().map(row).collect());
                    failure.set(None);
                }
                Err(why) => failure.set(Some(why)),
            }
        })
    };
    Effect::new(move |_| {
        refresh();
        if let Ok(handle) = set_interval_with_handle(refresh, REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    let Wording { heading, class, empty, counted: (one, many) } = wording;
    view! {
        <section class=class aria-label=heading>
            <h2>{heading}</h2>
            {move || failure.get().map(|why| view! { <p class="refused">{why}</p> })}
            <ul>
                <For each=move || rows.get() key=|row| row.clone() let:((name, count))>
                    <li>{name} ": " {count} " " {if count == 1 { one } else { many }}</li>
                </For>
            </ul>
            <Show when=move || rows.with(Vec::is_empty)>
                <p class="empty">{empty}</p>
            </Show>
        </section>
    }
}

#[component]
pub fn UserList() -> impl IntoView {
    let wording = Wording {
        heading: "Connected users",
        class: "users",
        empty: "Nobody is connected.",
        counted: ("connection", "connections"),
    };
    live_list(wording, source::users, |u: UserConnections| (u.user, u.connections))
}

/// The exact topics open streams subscribe to (the hub lists neither templates nor `*`).
#[component]
pub fn TopicList() -> impl IntoView {
    let wording =
        Wording { heading: "Topics", class: "topics", empty: "No topic has a stream.", counted: ("stream", "streams") };
    live_list(wording, source::topics, |t: TopicStreams| (t.topic, t.streams))
}
