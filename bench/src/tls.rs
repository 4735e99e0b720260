//! Idle streams over HTTPS (issue #14): what a stream costs the hub when it comes over TLS, as
//! HTTP/1.1 (one TLS connection per stream) and as HTTP/2 (many streams on one connection, as a
//! browser's tabs share one). Each size is measured on a fresh Tidings serving a self-signed
//! certificate made here (rcgen), with real TLS clients (tokio-rustls, and h2 over it): the RSS
//! the hub gained, per stream opened.

use crate::load::{self, Sources};
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// HTTP/2 streams per connection: the hub's limit (`MAX_CONCURRENT_STREAMS` in
/// `server/src/listener.rs`), which is also what a browser tab set meets.
pub const H2_STREAMS_PER_CONNECTION: usize = 100;
/// TLS connections per loopback source address.
const CONNECTIONS_PER_SOURCE: usize = 5_000;
/// Handshakes in flight at once: well under the hub's 256 request connections, since a
/// connection still handshaking holds one and, past 200 ms of silence mid-handshake (the client
/// verifying the certificate on a busy core), may be closed to make room for a newcomer.
const CONNECTS_IN_FLIGHT: usize = 64;
/// How long opening one size may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);
/// The hubs listen from here on, clear of the other scenarios' ports.
const FIRST_PORT: u16 = 17_900;

/// How a stream reaches the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS, HTTP/1.1 negotiated by ALPN: one connection per stream.
    Http1,
    /// HTTPS, HTTP/2 negotiated by ALPN: [`H2_STREAMS_PER_CONNECTION`] streams per connection.
    Http2,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Http1 => "HTTPS, HTTP/1.1 (a connection per stream)",
            Transport::Http2 => "HTTPS, HTTP/2 (100 streams per connection)",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Transport::Http1 => b"http/1.1",
            Transport::Http2 => b"h2",
        }
    }
}

/// One fresh hub holding `streams` idle streams over `transport`.
#[derive(Clone, Debug)]
pub struct Run {
    pub transport: Transport,
    pub streams: usize,
    pub opened: usize,
    pub connections: usize,
    /// RSS the hub gained, per stream opened, in KB.
    pub kb_per_stream: f64,
    pub connects_per_sec: f64,
    /// Streams that ended before the measurement was taken.
    pub ended: usize,
}

/// Every run, in order.
#[derive(Default, Debug)]
pub struct Outcome {
    pub runs: Vec<Run>,
    /// Every stream opened and stayed open in every run.
    pub complete: bool,
}

/// What to measure.
pub struct Settings<'a> {
    pub tidings: &'a Path,
    /// HTTPS HTTP/1.1 sizes.
    pub http1: &'a [usize],
    /// HTTP/2 sizes.
    pub http2: &'a [usize],
    pub reps: usize,
}

/// Measures every size of both transports, `reps` times, interleaved.
pub async fn run(settings: &Settings<'_>, sources: &Sources) -> io::Result<Outcome> {
    let certificate = Certificate::new()?;
    let mut outcome = Outcome { runs: Vec::new(), complete: true };
    let sizes: Vec<(Transport, usize)> = settings
        .http1
        .iter()
        .map(|&n| (Transport::Http1, n))
        .chain(settings.http2.iter().map(|&n| (Transport::Http2, n)))
        .filter(|&(_, n)| n > 0)
        .collect();
    let mut port = FIRST_PORT;
    for rep in 0..settings.reps {
        for &(transport, n) in &sizes {
            let hub = Hub::start(settings.tidings, port, &certificate).await?;
            port = if port >= FIRST_PORT + 90 { FIRST_PORT } else { port + 1 };
            let run = idle(&hub, &certificate, sources, transport, n).await;
            hub.stop().await;
            eprintln!(
                "tls rep {}: {}: {} of {n} streams, {:.2} KB per stream",
                rep + 1,
                transport.name(),
                run.opened,
                run.kb_per_stream
            );
            outcome.complete &= run.opened == n && run.ended == 0;
            outcome.runs.push(run);
        }
    }
    Ok(outcome)
}

/// A self-signed certificate for 127.0.0.1, its PEM files, and a client configuration that
/// trusts it.
struct Certificate {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    roots: Arc<rustls::RootCertStore>,
}

impl Certificate {
    fn new() -> io::Result<Certificate> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(io::Error::other)?;
        let dir = std::env::temp_dir().join(format!("tidings-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem())?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).map_err(io::Error::other)?;
        Ok(Certificate { dir, cert, key, roots: Arc::new(roots) })
    }

    /// A connector offering only `alpn`. ring explicitly: more than one provider is linked in.
    fn connector(&self, alpn: &[u8]) -> io::Result<tokio_rustls::TlsConnector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Tidings serving HTTPS, stopped by its PID.
struct Hub {
    child: Child,
    addr: SocketAddr,
}

impl Hub {
    /// The flags the other scenarios' nodes get (no ticker, keep-alive or stream timeout, 256
    /// request connections, so the rest of the descriptors go to streams), and the certificate.
    async fn start(tidings: &Path, port: u16, certificate: &Certificate) -> io::Result<Hub> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(tidings)
            .args(["--addr", &addr.to_string(), "--tick-interval", "0", "--keep-alive", "0", "--stream-timeout", "0"])
            .args(["--max-connections-per-user", "100000", "--history", "100000"])
            .args(["--max-request-connections", "256"])
            .arg("--tls-cert")
            .arg(&certificate.cert)
            .arg("--tls-key")
            .arg(&certificate.key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let hub = Hub { child, addr };
        let pem = std::fs::read(&certificate.cert)?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(io::Error::other)?)
            .build()
            .map_err(io::Error::other)?;
        for _ in 0..200 {
            let answer = client.get(format!("https://127.0.0.1:{port}/healthz")).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(hub);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        hub.stop().await;
        Err(io::Error::other(format!("Tidings did not start with TLS on {addr}")))
    }

    fn pids(&self) -> Vec<u32> {
        self.child.id().into_iter().collect()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// What the streams report.
#[derive(Default)]
struct Tally {
    opened: AtomicUsize,
    failed: AtomicUsize,
    ended: AtomicUsize,
}

/// Opens `n` streams over `transport` on a fresh hub and leaves them idle: the RSS it gained.
async fn idle(hub: &Hub, certificate: &Certificate, sources: &Sources, transport: Transport, n: usize) -> Run {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = load::rss_bytes(&hub.pids());
    let tally = Arc::new(Tally::default());
    let connections = match transport {
        Transport::Http1 => n,
        Transport::Http2 => n.div_ceil(H2_STREAMS_PER_CONNECTION),
    };
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    match certificate.connector(transport.alpn()) {
        Ok(connector) => {
            let addresses = sources.addresses(connections.div_ceil(CONNECTIONS_PER_SOURCE));
            let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
            for c in 0..connections {
                let source = addresses[c / CONNECTIONS_PER_SOURCE];
                let (connector, gate, tally, server) =
                    (connector.clone(), Arc::clone(&gate), Arc::clone(&tally), hub.addr);
                let users = match transport {
                    Transport::Http1 => c..c + 1,
                    Transport::Http2 => c * H2_STREAMS_PER_CONNECTION..((c + 1) * H2_STREAMS_PER_CONNECTION).min(n),
                };
                tasks.spawn(async move {
                    let opened = async {
                        let _permit = gate.acquire_owned().await.map_err(io::Error::other)?;
                        tls_connect(&connector, source, server).await
                    };
                    let held = match opened.await {
                        Ok(tls) if transport == Transport::Http1 => hold_http1(tls, users.start, &tally).await,
                        Ok(tls) => hold_http2(tls, users.clone(), &tally).await,
                        Err(cause) => Err(cause),
                    };
                    if let Err(cause) = held {
                        report_failure(&tally, users.len(), &cause);
                    }
                });
            }
        }
        Err(cause) => report_failure(&tally, n, &cause),
    }
    while tally.opened.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < n
        && started.elapsed() < OPEN_DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let opened = tally.opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let gained = load::rss_bytes(&hub.pids()).saturating_sub(baseline);
    let ended = tally.ended.load(Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Run {
        transport,
        streams: n,
        opened,
        connections,
        kb_per_stream: gained as f64 / opened.max(1) as f64 / 1000.0,
        connects_per_sec: opened as f64 / took.as_secs_f64(),
        ended,
    }
}

/// Counts `streams` as failed, and says why once.
fn report_failure(tally: &Tally, streams: usize, cause: &io::Error) {
    if tally.failed.fetch_add(streams, Ordering::Relaxed) == 0 {
        eprintln!("an HTTPS stream failed: {cause}");
    }
}

/// A TLS connection from `source` to the hub.
async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    source: Ipv4Addr,
    server: SocketAddr,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    connector.connect(ServerName::IpAddress(server.ip().into()), tcp).await
}

/// One HTTP/1.1 stream for user `u{user}`: its request, its 200, then reads until it ends.
async fn hold_http1(mut tls: tokio_rustls::client::TlsStream<TcpStream>, user: usize, tally: &Tally) -> io::Result<()> {
    let request = format!("GET /stream-sse?user=u{user} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while crate::http::find(&head, b"\r\n\r\n").is_none() {
        let n = tls.read(&mut chunk).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(io::Error::other("closed before the headers ended"));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(io::Error::other(String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned()));
    }
    tally.opened.fetch_add(1, Ordering::Relaxed);
    while tls.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
    tally.ended.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// An HTTP/2 connection carrying a stream for each of `users`, each read until it ends.
async fn hold_http2(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    users: std::ops::Range<usize>,
    tally: &Tally,
) -> io::Result<()> {
    let (client, connection) = h2::client::handshake(tls).await.map_err(io::Error::other)?;
    let streams = users.map(|user| {
        let client = client.clone();
        async move {
            if let Err(cause) = hold_h2_stream(client, user, tally).await {
                report_failure(tally, 1, &cause);
            }
        }
    });
    let streams = crate::futures_join_all(streams);
    // The connection is driven as long as its streams are held (and answers the hub's pings).
    let (driven, ()) = tokio::join!(connection, streams);
    driven.map_err(io::Error::other)
}

async fn hold_h2_stream(client: h2::client::SendRequest<bytes::Bytes>, user: usize, tally: &Tally) -> io::Result<()> {
    let request = axum::http::Request::get(format!("https://127.0.0.1/stream-sse?user=u{user}"))
        .header("accept", "text/event-stream")
        .body(())
        .map_err(io::Error::other)?;
    let mut client = client.ready().await.map_err(io::Error::other)?;
    let (response, _) = client.send_request(request, true).map_err(io::Error::other)?;
    let response = response.await.map_err(io::Error::other)?;
    if response.status() != 200 {
        return Err(io::Error::other(format!("HTTP/2 stream answered {}", response.status())));
    }
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let mut body = response.into_body();
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
    }
    tally.ended.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The section of BENCHMARKS.md: medians per transport and size.
pub fn markdown(out: &mut String, outcome: &Outcome, reps: usize) {
    let _ = writeln!(out, "\n## Idle streams over HTTPS\n");
    let _ = writeln!(
        out,
        "A fresh Tidings serving HTTPS (rustls, a self-signed certificate made at bench time) for each size and repetition; the streams come from real TLS clients (tokio-rustls; h2 for HTTP/2): over HTTP/1.1 one TLS connection per stream, over HTTP/2 {H2_STREAMS_PER_CONNECTION} streams on each connection (the hub's limit per connection), as a browser's tabs share one. RSS the hub gained, per stream opened, one second after the last opened; medians of {reps}.\n"
    );
    let _ =
        writeln!(out, "| transport | streams | connections | RSS per idle stream (KB) | streams opened/s | opened |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut keys: Vec<(Transport, usize)> = Vec::new();
    for run in &outcome.runs {
        if !keys.contains(&(run.transport, run.streams)) {
            keys.push((run.transport, run.streams));
        }
    }
    for (transport, streams) in keys {
        let runs: Vec<&Run> =
            outcome.runs.iter().filter(|r| r.transport == transport && r.streams == streams).collect();
        let median = |f: fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(0.0)
        };
        let opened = runs.iter().map(|r| r.opened).min().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {streams} | {} | {:.1} | {:.0} | {}{} |",
            transport.name(),
            runs.first().map_or(0, |r| r.connections),
            median(|r| r.kb_per_stream),
            median(|r| r.connects_per_sec),
            if opened == streams { "all".to_owned() } else { format!("{opened} at least") },
            if runs.iter().any(|r| r.ended > 0) { ", some ended early" } else { "" },
        );
    }
}
