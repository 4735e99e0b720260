//! The live list of connected users, read from `GET /api/users` every two seconds.

use super::{source, Shared};
use crate::event::UserConnections;
use leptos::prelude::*;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(2);

#[component]
pub fn UserList() -> impl IntoView {
    let users = RwSignal::new(Vec::<UserConnections>::new());
    let failure = RwSignal::new(None::<String>);
    let shared = expect_context::<Shared>();
    let refresh = move || {
        let token = shared.publisher_token.get_untracked();
        leptos::task::spawn_local(async move {
            match source::users(token).await {
                Ok(list) => {
                    users.set(list);
                    failure.set(None);
                }
                Err(why) => failure.set(Some(why)),
            }
        })
    };
    // Effects run only in the browser, so polling starts after hydration.
    Effect::new(move |_| {
        refresh();
        if let Ok(handle) = set_interval_with_handle(refresh, REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <section class="users" aria-label="Connected users">
            <h2>"Connected users"</h2>
            {move || failure.get().map(|why| view! { <p class="refused">{why}</p> })}
            <ul>
                <For each=move || users.get() key=|u| (u.user.clone(), u.connections) let:entry>
                    <li>{entry.user.clone()} ": " {entry.connections} {if entry.connections == 1 { " connection" } else { " connections" }}</li>
                </For>
            </ul>
            <Show when=move || users.with(Vec::is_empty)>
                <p class="empty">"Nobody is connected."</p>
            </Show>
        </section>
    }
}
