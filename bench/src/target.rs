//! The hubs under test, started as child processes on loopback and stopped by their PID:
//! Tidings (the release binary) and nginx + nchan (Debian's packages, `bench/nchan.conf`).

use crate::http::Conn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tidings,
    /// Two Tidings nodes sharing one `redis-server`; streams alternate between the nodes and
    /// every publish goes to the first.
    Cluster,
    /// Tidings speaking Mercure: each stream subscribes to its own topic and a shared one, and
    /// every publish is a form POST with a publisher JWT.
    Mercure,
    Nchan,
    /// `tidings-baseline`, a bare axum handler: only the unicast floor is measured on it.
    Baseline,
}

impl Kind {
    /// Whether it takes Tidings' JSON batches (and so runs the batch and storm scenarios).
    pub fn batches(self) -> bool {
        matches!(self, Kind::Tidings | Kind::Cluster)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tidings => "Tidings",
            Kind::Cluster => "Tidings, 2 nodes on Redis",
            Kind::Mercure => "Tidings over Mercure",
            Kind::Baseline => "baseline: bare axum handler",
            Kind::Nchan => "nginx + nchan (1 worker)",
        }
    }
}

/// Mercure's demo key (its conformance suite's) and a token for it that may publish anything.
const MERCURE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const MERCURE_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g";

pub struct Running {
    pub kind: Kind,
    /// Where publishes go.
    pub addr: SocketAddr,
    /// Where streams go, in turn.
    nodes: Vec<SocketAddr>,
    children: Vec<Child>,
    _prefix: Option<TempPrefix>,
}

/// A Tidings node on `addr`, with `extra` flags after the bench's own.
fn tidings_node(tidings: &Path, addr: SocketAddr, redis: Option<&str>, extra: &[String]) -> std::io::Result<Child> {
    let mut command = Command::new(tidings);
    command
        .args(["--addr", &addr.to_string(), "--tick-interval", "0", "--keep-alive", "0", "--stream-timeout", "0"])
        .args(["--max-connections-per-user", "100000", "--history", "100000"])
        .args(extra);
    if let Some(url) = redis {
        command.args(["--redis-url", url]);
    }
    command.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true).spawn()
}

async fn wait_until_up(addr: SocketAddr, name: &str) -> std::io::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("http://{addr}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(std::io::Error::other(format!("{name} did not start on {addr}")))
}

struct TempPrefix(PathBuf);

impl Drop for TempPrefix {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `kind` on `port` (and the ports after it) and waits until it answers; Tidings nodes
/// get the flags in `extra` too.
pub async fn start(kind: Kind, port: u16, tidings: &Path, root: &Path, extra: &[String]) -> std::io::Result<Running> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let running = match kind {
        Kind::Tidings => {
            let child = tidings_node(tidings, addr, None, extra)?;
            Running { kind, addr, nodes: vec![addr], children: vec![child], _prefix: None }
        }
        Kind::Baseline => {
            let child = Command::new(tidings.with_file_name("tidings-baseline"))
                .arg(addr.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            Running { kind, addr, nodes: vec![addr], children: vec![child], _prefix: None }
        }
        Kind::Mercure => {
            let mut flags = vec!["--mercure-publisher-jwt-key".to_owned(), MERCURE_KEY.to_owned()];
            flags.extend(["--mercure-extra-directives".to_owned(), "anonymous".to_owned()]);
            flags.extend_from_slice(extra);
            let child = tidings_node(tidings, addr, None, &flags)?;
            Running { kind, addr, nodes: vec![addr], children: vec![child], _prefix: None }
        }
        Kind::Cluster => {
            let prefix = std::env::temp_dir().join(format!("tidings-bench-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&prefix)?;
            let redis_port = port + 1000;
            let redis = Command::new("redis-server")
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let url = format!("redis://127.0.0.1:{redis_port}");
            let second = SocketAddr::from(([127, 0, 0, 1], port + 500));
            let a = tidings_node(tidings, addr, Some(&url), extra)?;
            let b = tidings_node(tidings, second, Some(&url), extra)?;
            // Redis last, so it outlives the nodes when they are stopped in order.
            Running {
                kind,
                addr,
                nodes: vec![addr, second],
                children: vec![a, b, redis],
                _prefix: Some(TempPrefix(prefix)),
            }
        }
        Kind::Nchan => {
            let prefix = std::env::temp_dir().join(format!("tidings-bench-nginx-{}", std::process::id()));
            std::fs::create_dir_all(&prefix)?;
            let conf = std::fs::read_to_string(root.join("bench/nchan.conf"))?
                .replace("PREFIX", prefix.to_str().unwrap_or("/tmp"))
                .replace("PORT", &port.to_string());
            let conf_path = prefix.join("nginx.conf");
            std::fs::write(&conf_path, conf)?;
            let child = Command::new("/usr/sbin/nginx")
                .args(["-p", prefix.to_str().unwrap_or("/tmp"), "-c"])
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            Running { kind, addr, nodes: vec![addr], children: vec![child], _prefix: Some(TempPrefix(prefix)) }
        }
    };
    for node in &running.nodes {
        wait_until_up(*node, kind.name()).await?;
    }
    Ok(running)
}

impl Running {
    /// The hub's processes (with their children, nginx's worker among them).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Where stream `i` connects.
    pub fn stream_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i % self.nodes.len()]
    }

    /// Where publisher `p` publishes: publishers alternate between the nodes, as an
    /// application's servers behind a load balancer would.
    pub fn publish_addr(&self, p: usize) -> SocketAddr {
        self.nodes[p % self.nodes.len()]
    }

    /// The stream path for subscriber `i`.
    pub fn stream_path(&self, i: usize) -> String {
        match self.kind {
            Kind::Tidings | Kind::Cluster | Kind::Baseline => format!("/stream-sse?user=u{i}"),
            Kind::Mercure => format!("/.well-known/mercure?topic=%2Fu%2F{i}&topic=%2Fall"),
            Kind::Nchan => format!("/sub?user=u{i}"),
        }
    }

    /// Publishes `data` to user `to` (`None`: everyone); returns the new event's id (Tidings)
    /// or an empty string (nchan), or `None` when it was not accepted.
    pub async fn publish(&self, conn: &mut Conn, to: Option<usize>, data: &str) -> Option<String> {
        let (path, content_type, headers, body) = match self.kind {
            Kind::Tidings | Kind::Cluster | Kind::Baseline => {
                let to = to.map_or_else(|| "*".to_owned(), |i| format!("u{i}"));
                (
                    "/api/events".to_owned(),
                    "application/json",
                    String::new(),
                    format!(r#"{{"to":"{to}","data":{data}}}"#),
                )
            }
            Kind::Mercure => {
                let topic = to.map_or_else(|| "%2Fall".to_owned(), |i| format!("%2Fu%2F{i}"));
                let body = format!("topic={topic}&data={}", form_encoded(data));
                let authorization = format!("Authorization: Bearer {MERCURE_TOKEN}\r\n");
                ("/.well-known/mercure".to_owned(), "application/x-www-form-urlencoded", authorization, body)
            }
            Kind::Nchan => {
                let channel = to.map_or_else(|| "broadcast".to_owned(), |i| format!("u{i}"));
                (format!("/pub/{channel}"), "application/json", String::new(), data.to_owned())
            }
        };
        let (status, answer) = conn.post_with(&path, content_type, &headers, body.as_bytes()).await.ok()?;
        if !(200..300).contains(&status) {
            return None;
        }
        if self.kind == Kind::Mercure {
            // Mercure answers the id as text.
            return Some(String::from_utf8_lossy(&answer).into_owned());
        }
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        Some(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Publishes a batch of unicast events, to users `first_user..first_user + n` (modulo
    /// `users`), in one request (Tidings only); returns how many were accepted.
    pub async fn publish_batch(&self, conn: &mut Conn, first_user: usize, n: usize, users: usize) -> usize {
        let events: Vec<String> = (0..n)
            .map(|k| format!(r#"{{"to":"u{}","data":{{"t":{}}}}}"#, (first_user + k) % users, crate::load::now_nanos()))
            .collect();
        let body = format!("[{}]", events.join(","));
        match conn.post("/api/events", "application/json", body.as_bytes()).await {
            // Each accepted element's answer has one `"id"` key; counted without parsing, so
            // the generator spends its CPU on load, not on reading answers.
            Ok((status, answer)) if (200..300).contains(&status) => {
                answer.windows(5).filter(|w| w == b"\"id\":").count()
            }
            _ => 0,
        }
    }

    /// Stops the hub's processes by their PIDs, in order.
    pub async fn stop(mut self) {
        for child in &mut self.children {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = child.kill().await;
        }
    }
}

/// `data` as a form value: all but the unreserved bytes percent-encoded.
fn form_encoded(data: &str) -> String {
    const VALUE: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(data, VALUE).to_string()
}
