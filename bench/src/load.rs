//! The load itself: many SSE streams over raw TCP (no HTTP client per stream, so the generator
//! stays cheap), each bound to a loopback source address of its own range so ports do not run
//! out, and a minimal reader that finds the publish timestamp `"t":<nanos>` in what arrives.

use crate::http::find;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Streams per source address (each address has its own ephemeral port range).
pub const STREAMS_PER_SOURCE: usize = 10_000;
/// Loopback source addresses (127.0.x.y from 127.0.0.2 on), each handed out once per run.
pub struct Sources {
    next: AtomicUsize,
}

impl Sources {
    /// Starts at an offset taken from the clock, so back-to-back runs do not meet their own
    /// connections in TIME_WAIT.
    pub fn new() -> Sources {
        Sources { next: AtomicUsize::new((now_nanos() / 1_000) as usize % 30_000) }
    }

    /// Hands out addresses from the `first` on (a holder process, given its share by the
    /// coordinator's `Sources`).
    pub fn starting_at(first: usize) -> Sources {
        Sources { next: AtomicUsize::new(first) }
    }

    /// The first of `count` fresh source addresses, by number.
    pub fn take(&self, count: usize) -> usize {
        self.next.fetch_add(count, Ordering::Relaxed)
    }

    /// `count` fresh source addresses.
    pub fn addresses(&self, count: usize) -> Vec<Ipv4Addr> {
        let first = self.take(count);
        (first..first + count).map(source_address).collect()
    }
}

/// The k-th loopback source address.
fn source_address(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (k / 250 % 250) as u8, 2 + (k % 250) as u8)
}

/// Connects in flight at once.
pub const CONNECTS_IN_FLIGHT: usize = 256;

pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What every stream reports.
#[derive(Default)]
pub struct Tally {
    pub opened: AtomicUsize,
    pub failed: AtomicUsize,
    /// Streams that opened and have since ended.
    pub closed: AtomicUsize,
    /// Events seen, across all streams.
    pub events: AtomicU64,
    /// Streams that have seen at least one event.
    pub streams_with_events: AtomicUsize,
    /// Publish-to-arrival latencies (ns) while recording is on.
    pub latencies: Mutex<Vec<u64>>,
    pub recording: std::sync::atomic::AtomicBool,
    /// Events each stream should see (0: not tracked); see `streams_at_goal`.
    pub goal: AtomicU64,
    /// Streams that have seen `goal` events (a replay complete).
    pub streams_at_goal: AtomicUsize,
}

pub struct Streams {
    pub tally: Arc<Tally>,
    tasks: JoinSet<()>,
}

/// Opens `n` streams to `server`, the i-th at `path(i)`; returns once all are open (or failed)
/// or `deadline` passed, with the time it took.
pub async fn open(
    sources: &Sources,
    server: impl Fn(usize) -> SocketAddr,
    n: usize,
    path: impl Fn(usize) -> String,
    header: Option<&str>,
    deadline: Duration,
) -> (Streams, Duration) {
    open_into(Arc::new(Tally::default()), CONNECTS_IN_FLIGHT, sources, server, n, path, header, deadline).await
}

/// [`open`], counting into `tally` (made beforehand, so a `goal` is in place before the first
/// event arrives), with `in_flight` connects at once.
#[allow(clippy::too_many_arguments)] // `open`'s, and the two it leaves to its default
pub async fn open_into(
    tally: Arc<Tally>,
    in_flight: usize,
    sources: &Sources,
    server: impl Fn(usize) -> SocketAddr,
    n: usize,
    path: impl Fn(usize) -> String,
    header: Option<&str>,
    deadline: Duration,
) -> (Streams, Duration) {
    let extra = header.map_or_else(String::new, |h| format!("{h}\r\n"));
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    // Fresh source addresses for every call: the last call's ports sit in TIME_WAIT.
    let first_source = sources.take(n.div_ceil(STREAMS_PER_SOURCE));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let source = source_address(first_source + i / STREAMS_PER_SOURCE);
        let request = format!("GET {} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{extra}\r\n", path(i));
        let (tally, gate) = (Arc::clone(&tally), Arc::clone(&gate));
        let server = server(i);
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            match connect(source, server, &request).await {
                Ok((stream, early)) => {
                    drop(permit);
                    tally.opened.fetch_add(1, Ordering::Relaxed);
                    read_events(stream, early, &tally).await;
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if tally.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("a stream failed to open: {e}");
                    }
                }
            }
        });
    }
    while tally.opened.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < n
        && started.elapsed() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    (Streams { tally, tasks }, took)
}

/// Connects, sends the request and reads a 200 response's headers; returns the stream and
/// whatever body bytes came with the headers.
pub async fn connect(
    source: Ipv4Addr,
    server: SocketAddr,
    request: &str,
) -> std::io::Result<(tokio::net::TcpStream, Vec<u8>)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(std::io::Error::other("closed before the headers ended"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&head, b"\r\n\r\n") {
            break at + 4;
        }
    };
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned()));
    }
    Ok((stream, head.split_off(end)))
}

/// Reads until the stream ends, counting events and, while recording, their latencies.
async fn read_events(mut stream: tokio::net::TcpStream, early: Vec<u8>, tally: &Tally) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending = Some(early);
    let mut seen_any = false;
    let mut seen = 0u64;
    loop {
        let (arrived, chunk): (u64, &[u8]) = match pending.take() {
            Some(early) if !early.is_empty() => {
                let n = early.len().min(buf.len());
                buf[..n].copy_from_slice(&early[..n]);
                (now_nanos(), &buf[..n])
            }
            _ => match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => (now_nanos(), &buf[..n]),
            },
        };
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(pos) = find(&chunk[at..], b"\"t\":") {
            let digits = &chunk[at + pos + 4..];
            let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
            if let Ok(sent) = std::str::from_utf8(&digits[..end]).unwrap_or("").parse::<u64>() {
                found.push(arrived.saturating_sub(sent));
            }
            at += pos + 4 + end;
        }
        if !found.is_empty() {
            if !seen_any {
                seen_any = true;
                tally.streams_with_events.fetch_add(1, Ordering::Relaxed);
            }
            tally.events.fetch_add(found.len() as u64, Ordering::Relaxed);
            let goal = tally.goal.load(Ordering::Relaxed);
            if goal > 0 && seen < goal && seen + found.len() as u64 >= goal {
                tally.streams_at_goal.fetch_add(1, Ordering::Relaxed);
            }
            seen += found.len() as u64;
            if tally.recording.load(Ordering::Relaxed) {
                if let Ok(mut latencies) = tally.latencies.lock() {
                    latencies.extend(found);
                }
            }
        }
    }
}

impl Streams {
    /// Closes every stream.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// `pid` and its children (nginx's worker is the master's child).
pub fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The resident memory (bytes) of `pids` and their children, from /proc.
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .flat_map(|&pid| family(pid))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}

/// The open file descriptors of `pids` and their children, from /proc.
pub fn descriptors(pids: &[u32]) -> usize {
    pids.iter()
        .flat_map(|&pid| family(pid))
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(Iterator::count)
        .sum()
}

/// CPU time (user + system, seconds) of `pids` and their children so far, from /proc.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .flat_map(|&pid| family(pid))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            let after = stat.rsplit(')').next().unwrap_or("").to_owned();
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}

/// The p-th percentile (0–100) of `values`, sorted in place.
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
