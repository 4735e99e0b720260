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
    Nchan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tidings => "Tidings",
            Kind::Cluster => "Tidings, 2 nodes on Redis",
            Kind::Nchan => "nginx + nchan (1 worker)",
        }
    }
}

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

    /// The stream path for subscriber `i`.
    pub fn stream_path(&self, i: usize) -> String {
        match self.kind {
            Kind::Tidings | Kind::Cluster => format!("/stream-sse?user=u{i}"),
            Kind::Nchan => format!("/sub?user=u{i}"),
        }
    }

    /// Publishes `data` to user `to` (`None`: everyone); returns the new event's id (Tidings)
    /// or an empty string (nchan), or `None` when it was not accepted.
    pub async fn publish(&self, conn: &mut Conn, to: Option<usize>, data: &str) -> Option<String> {
        let (path, body) = match self.kind {
            Kind::Tidings | Kind::Cluster => {
                let to = to.map_or_else(|| "*".to_owned(), |i| format!("u{i}"));
                ("/api/events".to_owned(), format!(r#"{{"to":"{to}","data":{data}}}"#))
            }
            Kind::Nchan => {
                let channel = to.map_or_else(|| "broadcast".to_owned(), |i| format!("u{i}"));
                (format!("/pub/{channel}"), data.to_owned())
            }
        };
        let (status, answer) = conn.post(&path, "application/json", body.as_bytes()).await.ok()?;
        if !(200..300).contains(&status) {
            return None;
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
