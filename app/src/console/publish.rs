//! The publish form: `To` (a user, a comma list, or `*`), `Topics` (separated by whitespace),
//! `Event`, `Data` (text or JSON), posted to `POST /api/events`. The hub's refusal is shown as the
//! hub worded it.

use super::{source, split_topics, Shared};
use leptos::prelude::*;
use serde_json::{json, Value};

/// The JSON body for the form's fields: `*` or one name as a string, several as a list, and
/// the same for topics; `to` is left out when topics alone address the event (and kept, empty,
/// when nothing does, so the hub says what is missing). Data that parses as JSON is sent as
/// JSON, anything else as text.
pub fn request_body(to: &str, topics: &str, event: &str, data: &str) -> Value {
    let names: Vec<&str> = to.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let topics = split_topics(topics);
    let data = serde_json::from_str::<Value>(data).unwrap_or_else(|_| Value::String(data.to_owned()));
    let mut body = json!({ "data": data });
    if !names.is_empty() || topics.is_empty() {
        body["to"] = one_or_list(&names);
    }
    if !topics.is_empty() {
        body["topic"] = one_or_list(&topics);
    }
    let event = event.trim();
    if !event.is_empty() {
        body["event"] = json!(event);
    }
    body
}

/// One entry as a string, any other number of them as a list.
fn one_or_list(entries: &[impl AsRef<str>]) -> Value {
    match entries {
        [one] => json!(one.as_ref()),
        _ => json!(entries.iter().map(AsRef::as_ref).collect::<Vec<&str>>()),
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
    let topics = RwSignal::new(String::new());
    let event = RwSignal::new(String::from("message"));
    let data = RwSignal::new(String::from(r#"{"hello": "world"}"#));
    let outcome = RwSignal::new(None::<Outcome>);
    let shared = expect_context::<Shared>();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body =
            request_body(&to.get_untracked(), &topics.get_untracked(), &event.get_untracked(), &data.get_untracked());
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
            <label>
                "Topics"
                <input type="text" placeholder="space-separated, e.g. https://shop.example/orders/42" bind:value=topics/>
            </label>
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
        assert_eq!(request_body("alice", "", "", "hi"), json!({"to": "alice", "data": "hi"}));
        assert_eq!(
            request_body("a, b", " ", "tick", r#"{"n":1}"#),
            json!({"to": ["a", "b"], "event": "tick", "data": {"n": 1}})
        );
        assert_eq!(
            request_body("*", "", "message", "<b>x</b>"),
            json!({"to": "*", "event": "message", "data": "<b>x</b>"})
        );
        // Nothing addresses it: the hub's refusal says so.
        assert_eq!(request_body(" , ", "", "", "x"), json!({"to": [], "data": "x"}));
    }

    /// Topics are split on whitespace (commas stay in URLs): one is a string, several a list, and
    /// `to` goes only when it names someone.
    #[test]
    fn topics_join_or_replace_the_recipients() {
        assert_eq!(
            request_body("", "https://shop.example/orders/42", "order", "7"),
            json!({"topic": "https://shop.example/orders/42", "event": "order", "data": 7})
        );
        assert_eq!(
            request_body("ann", " https://a.example/x,y\n  b https://a.example/x,y", "", "hi"),
            json!({"to": "ann", "topic": ["https://a.example/x,y", "b"], "data": "hi"})
        );
    }
}
