//! The scale scenario's hubs, started as child processes on loopback and stopped by their PID:
//! Tidings as one node or as a cluster of nodes on one `redis-server`, and nginx + nchan with
//! one worker or several (`reuseport`, so the kernel spreads the streams over the workers).

use crate::http::Conn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flavour {
    Tidings,
    Nchan,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Tidings => "Tidings",
            Flavour::Nchan => "nginx + nchan",
        }
    }
}

pub struct Hub {
    pub flavour: Flavour,
    /// What ran, for the report: "6 nodes on Redis", "1 worker".
    pub shape: String,
    /// Where streams and publishes go, in turn.
    pub nodes: Vec<SocketAddr>,
    /// Processes holding streams: nodes, or nginx's workers.
    pub processes: usize,
    /// The hub's processes, nodes first; nginx's workers are the master's children.
    children: Vec<Child>,
    redis: Option<Child>,
    prefix: Option<PathBuf>,
}

/// Retention: the storm needs every event since its mark (one per user and a few broadcasts).
fn history(streams: usize) -> usize {
    streams + 10_000
}

/// A Tidings node on `addr`: no ticks, keep-alives or stream timeout (they would count as
/// events or end streams) and room for the storm's events. A node alone takes the measured
/// nodes' flags (few request connections, so 19,000 streams fit its descriptors); a cluster's
/// node holds a sixth of 100,000 and keeps the default (1,024 request connections here), so a
/// reconnect storm's connects are not closed at the cap before their requests are read.
fn node(
    tidings: &Path,
    addr: SocketAddr,
    redis: Option<&str>,
    streams: usize,
    threads: usize,
) -> std::io::Result<Child> {
    let mut command = Command::new(tidings);
    command
        .args(["--addr", &addr.to_string(), "--tick-interval", "0", "--keep-alive", "0", "--stream-timeout", "0"])
        .args(["--max-connections-per-user", "100000", "--history", &history(streams).to_string()])
        .args(["--history-bytes", &(512 * 1024 * 1024).to_string()]);
    match redis {
        Some(url) => command.args(["--redis-url", url]),
        None => command.args(crate::measured_node_args()),
    };
    if threads > 0 && redis.is_some() {
        command.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    command.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true).spawn()
}

/// Tidings on `port` (and the `nodes - 1` ports after it); more than one node share a
/// `redis-server` on `port + 9`, and run `threads` worker threads each (0: one per core).
pub async fn tidings(tidings: &Path, port: u16, nodes: usize, streams: usize, threads: usize) -> std::io::Result<Hub> {
    let addrs: Vec<SocketAddr> = (0..nodes as u16).map(|k| SocketAddr::from(([127, 0, 0, 1], port + k))).collect();
    let (mut redis, mut prefix, mut url) = (None, None, None);
    if nodes > 1 {
        let dir = std::env::temp_dir().join(format!("tidings-bench-scale-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let redis_port = (port + 9).to_string();
        redis = Some(
            Command::new("redis-server")
                .args(["--port", &redis_port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?,
        );
        prefix = Some(dir);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port + 9)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        url = Some(format!("redis://127.0.0.1:{redis_port}"));
    }
    let mut children = Vec::new();
    for &addr in &addrs {
        children.push(node(tidings, addr, url.as_deref(), streams, threads)?);
    }
    let shape = if nodes > 1 { format!("{nodes} nodes on Redis") } else { "1 node".to_owned() };
    let hub = Hub { flavour: Flavour::Tidings, shape, nodes: addrs, processes: nodes, children, redis, prefix };
    hub.wait_until_up().await?;
    Ok(hub)
}

/// nginx + nchan on `port` with `workers` workers, from `bench/nchan.conf` with the workers,
/// `reuseport` and a larger shared memory (100,000 channels) put in.
pub async fn nchan(root: &Path, port: u16, workers: usize) -> std::io::Result<Hub> {
    let dir = std::env::temp_dir().join(format!("tidings-bench-scale-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut conf = std::fs::read_to_string(root.join("bench/nchan.conf"))?;
    for (from, to) in [
        ("worker_processes 1;", format!("worker_processes {workers};")),
        ("backlog=65535;", "backlog=65535 reuseport;".to_owned()),
        ("http {", "http {\n  nchan_shared_memory_size 512M;".to_owned()),
        ("PREFIX", dir.to_string_lossy().into_owned()),
        ("PORT", port.to_string()),
    ] {
        if !conf.contains(from) {
            return Err(std::io::Error::other(format!("bench/nchan.conf has no `{from}` to replace")));
        }
        conf = conf.replace(from, &to);
    }
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let shape = if workers == 1 { "1 worker".to_owned() } else { format!("{workers} workers") };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let hub = Hub {
        flavour: Flavour::Nchan,
        shape,
        nodes: vec![addr],
        processes: workers,
        children: vec![child],
        redis: None,
        prefix: Some(dir),
    };
    hub.wait_until_up().await?;
    Ok(hub)
}

impl Hub {
    /// "Tidings, 6 nodes on Redis".
    pub fn label(&self) -> String {
        format!("{}, {}", self.flavour.name(), self.shape)
    }

    async fn wait_until_up(&self) -> std::io::Result<()> {
        for &addr in &self.nodes {
            let mut conn = Conn::new(addr);
            let mut up = false;
            for _ in 0..400 {
                if conn.get("/healthz").await.is_ok_and(|(status, _)| status == 200) {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if !up {
                return Err(std::io::Error::other(format!("{} did not start on {addr}", self.label())));
            }
        }
        Ok(())
    }

    /// The processes that hold streams (nodes, or nginx's master, whose workers are its children).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// The `redis-server`, if any.
    pub fn redis_pid(&self) -> Option<u32> {
        self.redis.as_ref().and_then(Child::id)
    }

    /// The stream path, less the user number.
    pub fn stream_path(&self) -> &'static str {
        match self.flavour {
            Flavour::Tidings => "/stream-sse?user=u",
            Flavour::Nchan => "/sub?user=u",
        }
    }

    /// Publishes `data` to user `to` (`None`: everyone) through `conn`; returns the event's id
    /// (Tidings) or an empty string (nchan), or `None` when it was not accepted.
    pub async fn publish(&self, conn: &mut Conn, to: Option<usize>, data: &str) -> Option<String> {
        self.try_publish(conn, to, data).await.ok()
    }

    /// [`Hub::publish`], saying why a publish was not accepted.
    pub async fn try_publish(&self, conn: &mut Conn, to: Option<usize>, data: &str) -> Result<String, String> {
        let (path, body) = match self.flavour {
            Flavour::Tidings => {
                let to = to.map_or_else(|| "*".to_owned(), |i| format!("u{i}"));
                ("/api/events".to_owned(), format!(r#"{{"to":"{to}","data":{data}}}"#))
            }
            Flavour::Nchan => {
                let channel = to.map_or_else(|| "broadcast".to_owned(), |i| format!("u{i}"));
                (format!("/pub/{channel}"), data.to_owned())
            }
        };
        let (status, answer) =
            conn.post(&path, "application/json", body.as_bytes()).await.map_err(|e| e.to_string())?;
        if !(200..300).contains(&status) {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)])));
        }
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        Ok(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    /// One event (`{"t": <now>}`) to each of `users`, in one request (Tidings only); returns
    /// how many were accepted, or why none was.
    pub async fn publish_batch(&self, conn: &mut Conn, users: std::ops::Range<usize>) -> Result<usize, String> {
        let events: Vec<String> =
            users.map(|i| format!(r#"{{"to":"u{i}","data":{{"t":{}}}}}"#, crate::load::now_nanos())).collect();
        let body = format!("[{}]", events.join(","));
        match conn.post("/api/events", "application/json", body.as_bytes()).await {
            Ok((status, answer)) if (200..300).contains(&status) => {
                Ok(answer.windows(5).filter(|w| w == b"\"id\":").count())
            }
            Ok((status, answer)) => {
                Err(format!("{status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)])))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stops the nodes, then Redis, by their PIDs.
    pub async fn stop(mut self) {
        for child in self.children.iter_mut().chain(self.redis.as_mut()) {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = child.kill().await;
        }
        if let Some(dir) = self.prefix.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
