//! A real hub on a loopback port, and a real SSE client to read it: reqwest for HTTP and the
//! spec-faithful parser from `app::sse` (checked against the WHATWG rules and against
//! eventsource-stream in `app`; eventsource-stream itself mishandles NUL in data, which the
//! hostile-string tests send). Each test starts its own hub with the flags it needs.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

pub mod mercure;
pub mod stores;

use clap::Parser as _;
use futures::StreamExt;
use serde_json::Value;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub struct Hub {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub client: reqwest::Client,
}

/// Starts a hub on 127.0.0.1:0 with the ticker off and `args` added.
pub async fn start(args: &[&str]) -> Hub {
    let mut argv = vec!["tidings"];
    if !args.contains(&"--tick-interval") {
        argv.extend_from_slice(&["--tick-interval", "0"]);
    }
    argv.extend_from_slice(args);
    let config = tidings::config::Config::parse_from(argv);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tidings::serve(listener, config, async move {
        let _ = stopped.await;
    }));
    Hub { base, stop: Some(stop), task, client: reqwest::Client::new() }
}

impl Hub {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST /api/events` with a JSON body; returns the status and the JSON answer.
    pub async fn publish(&self, body: Value) -> (u16, Value) {
        let response = self.client.post(self.url("/api/events")).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Publishes and returns the new event's id.
    pub async fn publish_id(&self, body: Value) -> String {
        let (status, answer) = self.publish(body).await;
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Opens `/stream-sse?{query}`, optionally with a `Last-Event-ID` header.
    pub async fn subscribe(&self, query: &str, last_event_id: Option<&str>) -> Subscriber {
        let mut request = self.client.get(self.url(&format!("/stream-sse?{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        Subscriber::new(request.send().await.unwrap())
    }

    /// Waits until `GET /api/users` satisfies `check`.
    pub async fn wait_for_users(&self, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, users) = self.get_json("/api/users").await;
            if check(&users) {
                return users;
            }
            assert!(tokio::time::Instant::now() < deadline, "users never matched: {users}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts shutting the hub down without waiting for it (streams then end).
    pub fn stop_streams(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
    }
}

/// One dispatched event, as a browser's `MessageEvent` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
    /// The stream's last event id at dispatch (`lastEventId`).
    pub id: String,
}

impl From<app::sse::ParsedEvent> for Event {
    fn from(e: app::sse::ParsedEvent) -> Self {
        Event { event: e.event, data: e.data, id: e.last_event_id }
    }
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<Event, String>> + Send>>;

/// One open stream, read as events, with its raw text kept for wire-level checks.
pub struct Subscriber {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    raw: Arc<Mutex<String>>,
    events: Events,
}

impl Subscriber {
    pub fn new(response: reqwest::Response) -> Subscriber {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = Arc::new(Mutex::new(String::new()));
        let tee = Arc::clone(&raw);
        let bytes = response.bytes_stream().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                tee.lock().unwrap().push_str(&String::from_utf8_lossy(chunk));
            }
        });
        let events = bytes
            .scan(app::sse::Parser::new(), |parser, chunk| {
                let parsed: Vec<Result<Event, String>> = match chunk {
                    Ok(chunk) => parser.feed(&chunk).into_iter().map(|e| Ok(Event::from(e))).collect(),
                    Err(e) => vec![Err(e.to_string())],
                };
                futures::future::ready(Some(futures::stream::iter(parsed)))
            })
            .flatten();
        Subscriber { status, headers, raw, events: Box::pin(events) }
    }

    /// The next event, failing the test if none comes within [`PATIENCE`].
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(PATIENCE, self.events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("stream failed: {e}"),
            Ok(None) => panic!("stream ended; raw so far: {:?}", self.raw()),
            Err(_) => panic!("no event within {PATIENCE:?}; raw so far: {:?}", self.raw()),
        }
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }

    /// Skips the welcome event (and the preamble blocks that dispatch nothing).
    pub async fn welcomed(mut self) -> Subscriber {
        let welcome = self.next().await;
        assert_eq!(welcome.event, "message");
        assert!(!welcome.id.is_empty(), "the welcome carries the cursor sent before it: {welcome:?}");
        self
    }

    /// Whether the stream ends (rather than yields an event) within `within`.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        loop {
            match tokio::time::timeout(within, self.events.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Asserts that no event arrives within `within`.
    pub async fn expect_silence(&mut self, within: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(within, self.events.next()).await {
            panic!("unexpected event: {event:?}");
        }
    }

    /// Waits until the raw text received so far contains `needle`.
    pub async fn wait_raw(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let raw = self.raw();
            if raw.contains(needle) {
                return raw;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "never saw {needle:?}; raw: {raw:?}");
            // Drive the body; events parsed meanwhile are kept in the raw text.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), self.events.next()).await;
        }
    }

    pub fn raw(&self) -> String {
        self.raw.lock().unwrap().clone()
    }
}

/// An id of the hub's form, `<millis>-<seq>`, split for comparison.
pub fn id_parts(id: &str) -> (u64, u64) {
    let (millis, seq) = id.split_once('-').unwrap_or_else(|| panic!("bad id {id:?}"));
    (millis.parse().unwrap(), seq.parse().unwrap())
}

/// Starts the real `tidings` binary on a free port with `args`; returns it, its base URL and
/// its log lines (JSON) from the `listening` one on, read from stderr.
pub async fn spawn(args: &[&str]) -> (tokio::process::Child, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    spawn_from(tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings")), args).await
}

/// As [`spawn`], with the descriptor limit set by `prlimit --nofile=SOFT:HARD`.
pub async fn spawn_with_nofile(
    limit: &str,
    args: &[&str],
) -> (tokio::process::Child, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut command = tokio::process::Command::new("prlimit");
    command.arg(format!("--nofile={limit}")).arg("--").arg(env!("CARGO_BIN_EXE_tidings"));
    spawn_from(command, args).await
}

async fn spawn_from(
    mut command: tokio::process::Command,
    args: &[&str],
) -> (tokio::process::Child, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .args(["--addr", "127.0.0.1:0", "--tick-interval", "0", "--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the tidings binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the server logs before it exits");
            let json: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
            if json["message"] == "listening" {
                let _ = tx.send(line);
                return json["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("the server says where it listens");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, format!("http://{addr}"), rx)
}

/// Sends a signal (`TERM`, `KILL`, ...) to a child process by its PID.
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
    assert!(status.success());
}

/// A handle on a hub started as a separate process (see [`spawn`]), for tests that kill it.
pub fn remote(base: &str) -> Hub {
    let (stop, _) = oneshot::channel();
    Hub {
        base: base.to_owned(),
        stop: Some(stop),
        task: tokio::spawn(async { Ok(()) }),
        client: reqwest::Client::new(),
    }
}
