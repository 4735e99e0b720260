//! The soak's hostile and broken clients: seven kinds, spread evenly over the slots. Each slot
//! connects from a loopback source address of its own, misbehaves until the hub closes the
//! connection, and connects again (at most once a second) until the soak ends.
//!
//! A reader that never reads cannot see the hub let go of it: the hub's FIN waits behind the
//! unread data. So the hub's side of the socket is looked up in `/proc/net/tcp` instead: once
//! the hub closes its descriptor, the socket there is orphaned (its inode is 0) or gone.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Shortest time between one slot's connects.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Longest a connect may take before it counts as refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a dripping head sends its next byte.
const DRIP_EVERY: Duration = Duration::from_secs(2);
/// How often a chatty reader sends, and how much.
const CHATTER_EVERY: Duration = Duration::from_millis(100);
const CHATTER: [u8; 128] = [b'x'; 128];
/// A never-reading reader's receive buffer (the kernel rounds it up to its minimum).
const STALLED_RECV_BUFFER: u32 = 1024;
/// A huge head's padding: 40 headers of 1,000 bytes.
const HUGE_HEADERS: usize = 40;
/// How often the hub's sockets are looked up in `/proc/net/tcp`.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// The HTTP/2 connection preface and an empty SETTINGS frame.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request head one byte every 2 s, never finishing it.
    Drip,
    /// One `GET /healthz`, then silence on the kept-alive connection.
    IdleKeepAlive,
    /// The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    Http2Preface,
    /// Opens a stream with a tiny receive buffer and never reads it.
    StalledReader,
    /// Opens a stream, reads it, and keeps sending bytes on it.
    ChattyReader,
    /// A request head with 40 KB of headers, to `/healthz` or a stream in turn.
    HugeHead,
}

impl Attack {
    pub const ALL: [Attack; 7] = [
        Attack::Silent,
        Attack::Drip,
        Attack::IdleKeepAlive,
        Attack::Http2Preface,
        Attack::StalledReader,
        Attack::ChattyReader,
        Attack::HugeHead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Silent => "silent TCP",
            Attack::Drip => "head dripping a byte per 2 s",
            Attack::IdleKeepAlive => "idle kept-alive (one GET /healthz)",
            Attack::Http2Preface => "silent HTTP/2 preface",
            Attack::StalledReader => "stream reader that never reads",
            Attack::ChattyReader => "stream reader sending 1.3 KB/s",
            Attack::HugeHead => "40 KB head (/healthz, stream)",
        }
    }
}

/// What one kind's slots saw.
#[derive(Default)]
pub struct Tally {
    /// Connections open now.
    pub held: AtomicUsize,
    pub connects: AtomicU64,
    /// Connections the hub closed (or reset) under the attacker.
    pub cut: AtomicU64,
    /// Connects that failed or took longer than 5 s.
    pub refused: AtomicU64,
    /// HTTP/1.1 answers by status.
    answers: Mutex<BTreeMap<u16, u64>>,
}

impl Tally {
    /// Counts the status when `read` starts with an HTTP/1.1 status line.
    fn answer(&self, read: &[u8]) {
        let Some(status) = read.strip_prefix(b"HTTP/1.1 ").and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok())
        else {
            return;
        };
        if let (Ok(status), Ok(mut answers)) = (status.parse(), self.answers.lock()) {
            *answers.entry(status).or_default() += 1;
        }
    }

    /// The answers seen, as `431 ×12, 200 ×3`, or `—`.
    pub fn answers(&self) -> String {
        let answers = self.answers.lock().map(|a| a.clone()).unwrap_or_default();
        let mut out = String::new();
        for (status, count) in answers.iter().rev() {
            let _ = write!(out, "{}{status} ×{count}", if out.is_empty() { "" } else { ", " });
        }
        if out.is_empty() {
            out.push('—');
        }
        out
    }
}

/// Counts a connection as held while it lives, aborted or not.
struct Held(Arc<Tally>);

impl Held {
    fn new(tally: &Arc<Tally>) -> Held {
        tally.connects.fetch_add(1, Ordering::Relaxed);
        tally.held.fetch_add(1, Ordering::Relaxed);
        Held(Arc::clone(tally))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The peers the hub holds a socket for, as last read from `/proc/net/tcp`.
pub type HubPeers = watch::Receiver<Arc<HashSet<SocketAddrV4>>>;

pub struct Attackers {
    /// Each kind with its number of slots.
    pub kinds: Vec<(Attack, usize, Arc<Tally>)>,
    tasks: JoinSet<()>,
}

/// Starts one slot per source address, spread evenly over the kinds, their first connects
/// spread over `ramp`; each slot stops at `until` at the latest.
pub fn start(hub: SocketAddr, sources: &[Ipv4Addr], ramp: Duration, peers: &HubPeers, until: Instant) -> Attackers {
    let kinds: Vec<(Attack, usize, Arc<Tally>)> = Attack::ALL
        .iter()
        .enumerate()
        .map(|(k, &attack)| (attack, sources.len().saturating_sub(k).div_ceil(Attack::ALL.len()), Arc::default()))
        .collect();
    let mut tasks = JoinSet::new();
    for (i, &source) in sources.iter().enumerate() {
        let (attack, _, tally) = &kinds[i % Attack::ALL.len()];
        let slot = Slot { attack: *attack, ordinal: i / Attack::ALL.len(), source, hub, tally: Arc::clone(tally) };
        let delay = ramp.mul_f64(i as f64 / sources.len() as f64);
        tasks.spawn(slot.run(delay, peers.clone(), until));
    }
    Attackers { kinds, tasks }
}

impl Attackers {
    /// Connections held now, across every kind.
    pub fn held(&self) -> usize {
        self.kinds.iter().map(|(_, _, tally)| tally.held.load(Ordering::Relaxed)).sum()
    }

    /// Drops every attacker's connection.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

struct Slot {
    attack: Attack,
    /// This slot's number among its kind's.
    ordinal: usize,
    source: Ipv4Addr,
    hub: SocketAddr,
    tally: Arc<Tally>,
}

impl Slot {
    async fn run(self, delay: Duration, mut peers: HubPeers, until: Instant) {
        tokio::time::sleep(delay).await;
        while Instant::now() < until {
            let began = Instant::now();
            match self.connect().await {
                Ok(tcp) => {
                    let _held = Held::new(&self.tally);
                    // Returns only once the hub let go of the connection.
                    self.misbehave(tcp, &mut peers).await;
                    self.tally.cut.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.tally.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep_until((began + RECONNECT_PAUSE).into()).await;
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        if self.attack == Attack::StalledReader {
            // Before connecting: the window is offered in the handshake.
            socket.set_recv_buffer_size(STALLED_RECV_BUFFER)?;
        }
        socket.bind(SocketAddr::from((self.source, 0)))?;
        tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(self.hub))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    /// Misbehaves on `tcp` until the hub closes it (a failed write counts as closed).
    async fn misbehave(&self, mut tcp: TcpStream, peers: &mut HubPeers) {
        let tally = &self.tally;
        let first: Vec<u8> = match self.attack {
            Attack::Silent | Attack::Drip => Vec::new(),
            Attack::IdleKeepAlive => b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec(),
            Attack::Http2Preface => HTTP2_PREFACE.to_vec(),
            Attack::StalledReader => stream_request(&format!("soak-stalled-{}", self.ordinal)),
            Attack::ChattyReader => stream_request(&format!("soak-chatty-{}", self.ordinal)),
            Attack::HugeHead => huge_head(self.ordinal),
        };
        if tcp.write_all(&first).await.is_err() {
            // A refused huge head may have been answered before the write failed.
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
                tally.answer(&buf[..n]);
            }
            return;
        }
        match self.attack {
            Attack::Drip => keep_writing(&mut tcp, tally, DRIP_EVERY, |sent| vec![drip_byte(sent)]).await,
            Attack::ChattyReader => keep_writing(&mut tcp, tally, CHATTER_EVERY, |_| CHATTER.to_vec()).await,
            Attack::StalledReader => until_let_go(&tcp, peers).await,
            Attack::Silent | Attack::IdleKeepAlive | Attack::Http2Preface | Attack::HugeHead => {
                hold(&mut tcp, tally).await;
            }
        }
    }
}

fn stream_request(user: &str) -> Vec<u8> {
    format!("GET /stream-sse?user={user} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

/// 40 KB of headers, to `/healthz` (hyper's parser) or a stream (the hub's own) in turn.
fn huge_head(ordinal: usize) -> Vec<u8> {
    let path =
        if ordinal.is_multiple_of(2) { "/healthz".to_owned() } else { format!("/stream-sse?user=soak-huge-{ordinal}") };
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
    let padding = "a".repeat(1000);
    for k in 0..HUGE_HEADERS {
        let _ = write!(head, "X-Pad-{k}: {padding}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The `sent`-th byte of a head that never ends.
fn drip_byte(sent: usize) -> u8 {
    const START: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Drip: ";
    START.get(sent).copied().unwrap_or(b'a')
}

/// Reads (and drops) whatever the hub sends until it closes the connection.
async fn hold(tcp: &mut TcpStream, tally: &Tally) {
    let mut buf = [0u8; 2048];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tally.answer(&buf[..n]),
        }
    }
}

/// Reads what the hub sends and writes `next(count)` every `every`, until the hub closes.
async fn keep_writing(tcp: &mut TcpStream, tally: &Tally, every: Duration, next: impl Fn(usize) -> Vec<u8>) {
    let (mut reader, mut writer) = tcp.split();
    let mut buf = [0u8; 2048];
    let mut ticks = tokio::time::interval(every);
    let mut sent = 0;
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => tally.answer(&buf[..n]),
            },
            _ = ticks.tick() => {
                if writer.write_all(&next(sent)).await.is_err() {
                    return;
                }
                sent += 1;
            }
        }
    }
}

/// Waits, without reading, until the hub no longer holds its side of `tcp`: seen held once,
/// then orphaned or gone.
async fn until_let_go(tcp: &TcpStream, peers: &mut HubPeers) {
    let Ok(SocketAddr::V4(mine)) = tcp.local_addr() else { return };
    let mut seen = false;
    while peers.changed().await.is_ok() {
        let held = peers.borrow().contains(&mine);
        if held {
            seen = true;
        } else if seen {
            return;
        }
    }
    // The scan stopped: the soak is over.
    std::future::pending::<()>().await;
}

/// Reads `/proc/net/tcp` every second until `until`, sending the peers of `hub`'s sockets.
pub async fn scan_hub_sockets(hub: SocketAddrV4, peers: watch::Sender<Arc<HashSet<SocketAddrV4>>>, until: Instant) {
    while Instant::now() < until {
        if let Ok(table) = tokio::fs::read_to_string("/proc/net/tcp").await {
            peers.send_replace(Arc::new(peers_held(&table, hub)));
        }
        tokio::time::sleep(SCAN_EVERY).await;
    }
}

/// The remote ends of the sockets bound to `hub` that a process holds (an orphaned socket,
/// closed by its owner but still in the table, has inode 0).
fn peers_held(table: &str, hub: SocketAddrV4) -> HashSet<SocketAddrV4> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (address(fields.get(1)?)?, address(fields.get(2)?)?, fields.get(9)?);
            (local == hub && *inode != "0").then_some(remote)
        })
        .collect()
}

/// `0100007F:4650` (the address in the kernel's byte order, the port in hex) as 127.0.0.1:18000.
fn address(hex: &str) -> Option<SocketAddrV4> {
    let (ip, port) = hex.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), u16::from_str_radix(port, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only sockets on the hub's address that still have an owner count as held.
    #[test]
    fn peers_held_skips_orphans_and_other_sockets() {
        let ip = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let hub = format!("{}:4650", ip([127, 0, 0, 1]));
        let (peer, other) = (format!("{}:9C40", ip([127, 0, 3, 7])), format!("{}:9C41", ip([127, 0, 3, 7])));
        let row = |local: &str, remote: &str, inode: &str| {
            format!("   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0\n")
        };
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n{}{}{}",
            row(&hub, &peer, "4242"),
            row(&hub, &other, "0"),
            row(&peer, &hub, "4343"),
        );
        let held = peers_held(&table, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 18_000));
        assert_eq!(held, HashSet::from([SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, 7), 40_000)]));
    }

    /// Every kind gets its share of the slots, the first kinds one more when they do not divide.
    #[test]
    fn slots_are_spread_evenly() {
        let sources = vec![Ipv4Addr::LOCALHOST; 100];
        let (_, peers) = watch::channel(Arc::new(HashSet::new()));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let shares: Vec<usize> = runtime.block_on(async {
            let hub = SocketAddr::from(([127, 0, 0, 1], 9));
            let attackers = start(hub, &sources, Duration::ZERO, &peers, Instant::now());
            let shares = attackers.kinds.iter().map(|(_, slots, _)| *slots).collect();
            attackers.stop().await;
            shares
        });
        assert_eq!(shares, [15, 15, 14, 14, 14, 14, 14]);
    }
}
