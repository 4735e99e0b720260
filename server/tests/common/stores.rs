//! Real back-ends for store tests: a temporary data directory, or a real `redis-server` on a
//! free loopback port (Debian's package), stopped by its PID.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let unique = format!("tidings-{label}-{}-{}", std::process::id(), rand_suffix());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A `redis-server` of the test's own, with append-only persistence so a restart keeps the
/// stream, as a production Redis would.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, dir: TempDir::new("redis"), child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and directory, and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir.path()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make setup)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").await.is_ok() && conn.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    }

    /// Kills the server with SIGKILL, as a crash would: only what it fsynced is kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (it flushes its append-only file) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One of the three stores, ready for a hub.
pub enum Backend {
    Memory,
    File(TempDir),
    Redis(RedisServer),
}

impl Backend {
    pub async fn new(kind: &str) -> Backend {
        match kind {
            "memory" => Backend::Memory,
            "file" => Backend::File(TempDir::new("data")),
            "redis" => Backend::Redis(RedisServer::start().await),
            other => panic!("unknown store {other}"),
        }
    }

    /// The flags that select this store.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backend::Memory => vec![],
            Backend::File(dir) => vec!["--data-dir".into(), dir.path().into()],
            Backend::Redis(redis) => vec!["--redis-url".into(), redis.url()],
        }
    }

    /// Starts a hub on this store with `extra` flags.
    pub async fn start(&self, extra: &[&str]) -> super::Hub {
        let mut args = self.args();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        super::start(&args).await
    }
}
