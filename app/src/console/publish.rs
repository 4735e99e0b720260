//! The publish form: `To` (a user, a comma list, or `*`), `Event`, `Data` (text or JSON), posted
//! to `POST /api/events`. The hub's refusal is shown as the hub worded it.

use super::{source, Shared};
use leptos::prelude::*;
use serde_json::{json, Value};

/// The JSON body for the form's fields: `*` or one name as a string, several as a list; data
/// that parses as JSON is sent as JSON, anything else as text.
pub fn request_body(to: &str, event: &str, data: &str) -> Value {
    let names: Vec<&str> = to.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let to = match names.as_slice() {
        [one] => json!(one),
        _ => json!(names),
    };
    let data = serde_json::from_str::<Value>(data).unwrap_or_else(|_| Value::String(data.to_owned()));
    let event = event.trim();
    if event.is_empty() {
        json!({ "to": to, "data": data })
    } else {
        json!({ "to": to, "event": event, "data": data })
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    Sent(String),
    Refused(String),
}

#[component]
pub fn PublishForm() -> impl IntoView {
    let to = RwSignal::new(String::from("Alpha User"));
    let event = RwSignal::new(String::from("message"));
    let data = RwSignal::new(String::from(r#"{"hello": "world"}"#));
    let outcome = RwSignal::new(None::<Outcome>);
    let shared = expect_context::<Shared>();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = request_body(&to.get_untracked(), &event.get_untracked(), &data.get_untracked());
        let token = shared.publisher_token.get_untracked();
        leptos::task::spawn_local(async move {
            outcome.set(Some(match source::publish(body, token).await {
                Ok(ack) => Outcome::Sent(match ack.connections {
                    Some(n) => format!("Published {} to {n} connection(s)", ack.id),
                    None => format!("Published {}", ack.id),
                }),
                Err(why) => Outcome::Refused(why),
            }));
        });
    };
    view! {
        <form class="publish" on:submit=submit aria-label="Publish an event">
            <h2>"Publish"</h2>
            <label>"To" <input type="text" bind:value=to/></label>
            <label>"Event" <input type="text" bind:value=event/></label>
            <label>"Data" <textarea bind:value=data rows="3"></textarea></label>
            <button type="submit">"Publish"</button>
            {move || outcome.get().map(|o| match o {
                Outcome::Sent(text) => view! { <p class="sent" role="status">{text}</p> }.into_any(),
                Outcome::Refused(text) => view! { <p class="refused" role="alert">{text}</p> }.into_any(),
            })}
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::request_body;
    use serde_json::json;

    /// The form's text becomes the API's shapes: one name, a list, `*`, JSON or text data.
    #[test]
    fn form_fields_become_a_publish_body() {
        assert_eq!(request_body("alice", "", "hi"), json!({"to": "alice", "data": "hi"}));
        assert_eq!(
            request_body("a, b", "tick", r#"{"n":1}"#),
            json!({"to": ["a", "b"], "event": "tick", "data": {"n": 1}})
        );
        assert_eq!(
            request_body("*", "message", "<b>x</b>"),
            json!({"to": "*", "event": "message", "data": "<b>x</b>"})
        );
    }
}
