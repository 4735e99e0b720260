//! The soak (issue #11): a fresh Tidings holds `--soak-connections` idle, stalled and hostile
//! connections of every kind ([`attack`]) for `--soak-seconds`, while a background publisher
//! fills the streams' queues and a probe checks every 100 ms that a publish is accepted, reaches
//! a well-behaved stream, and that a fresh `/healthz` and a fresh stream answer. Afterwards the
//! hub's descriptors and memory must fall back to where they started.

mod attack;

use crate::http::Conn;
use crate::load::{self, now_nanos, percentile, Sources};
use crate::target::{self, Kind, Running};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The probe's cadence, and the longest any of its requests may take before it fails.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the probe runs alone first, for comparison.
const QUIET: Duration = Duration::from_secs(3);
/// The attackers' first connects are spread over this long.
const RAMP: Duration = Duration::from_secs(2);
/// The background publisher's cadence; each broadcast carries about 1 KB.
const BACKGROUND_EVERY: Duration = Duration::from_millis(200);
/// How often descriptors, memory and held connections are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The longest wait for descriptors and memory to fall back once the attackers leave.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Descriptors above the starting count that still count as fallen back.
const FD_SLACK: usize = 4;
/// The probe stream's user and the fresh streams' user (`u<n>`, as the other scenarios name them).
const PROBE_USER: usize = 999_999;
const FRESH_USER: usize = 999_998;

/// What the soak is asked to do.
pub struct Settings<'a> {
    pub seconds: u64,
    pub connections: usize,
    pub tidings: &'a Path,
    pub root: &'a Path,
    /// Flags for the hub (shorter timeouts, so reclamation shows within the run).
    pub hub_args: &'a [String],
    pub port: u16,
}

/// One attacker kind's figures.
pub struct AttackFigures {
    pub name: &'static str,
    pub slots: usize,
    pub peak_held: usize,
    pub mean_held: f64,
    pub connects: u64,
    pub cut: u64,
    pub refused: u64,
    pub answers: String,
}

/// The probe's latencies (ms) and failures.
#[derive(Default)]
pub struct ProbeFigures {
    pub publish: Vec<f64>,
    pub arrival: Vec<f64>,
    pub healthz: Vec<f64>,
    pub fresh_stream: Vec<f64>,
    pub rounds: u64,
    pub failures: u64,
    /// Publishes retried once on a new connection because the kept-alive one had been closed.
    pub publisher_reconnects: u64,
    pub first_failure: Option<String>,
}

impl ProbeFigures {
    fn fail(&mut self, what: &str) {
        self.failures += 1;
        if self.first_failure.is_none() {
            eprintln!("soak: a probe failed: {what}");
            self.first_failure = Some(what.to_owned());
        }
    }

    /// The p50 and p99 of `values`, in ms.
    pub fn p50_p99(values: &[f64]) -> (f64, f64) {
        let mut micros: Vec<u64> = values.iter().map(|ms| (ms * 1000.0) as u64).collect();
        (percentile(&mut micros, 50.0) as f64 / 1000.0, percentile(&mut micros, 99.0) as f64 / 1000.0)
    }
}

/// A reading of the hub's process.
#[derive(Clone, Copy, Default)]
pub struct Reading {
    pub descriptors: usize,
    pub rss_bytes: u64,
}

impl Reading {
    fn of(pids: &[u32]) -> Reading {
        Reading { descriptors: load::descriptors(pids), rss_bytes: load::rss_bytes(pids) }
    }
}

pub struct Outcome {
    pub connections: usize,
    pub seconds: u64,
    /// The flags passed to the hub, and those it did not know (so were left out).
    pub hub_args: Vec<String>,
    pub unknown_args: Vec<String>,
    pub attacks: Vec<AttackFigures>,
    pub quiet: ProbeFigures,
    pub attacked: ProbeFigures,
    pub background_accepted: u64,
    pub background_failed: u64,
    pub before: Reading,
    pub peak: Reading,
    pub after: Reading,
    /// Seconds from the attackers' leaving to the `after` reading.
    pub settled_seconds: f64,
}

impl Outcome {
    /// The memory gave back three quarters of its rise (or came within 2 MB of the start).
    /// Only reported: an allocator may keep freed pages for the next connections.
    pub fn rss_back(&self) -> bool {
        self.after.rss_bytes <= rss_target(self.before, self.peak)
    }

    /// Every probe answered in time and the descriptors fell back.
    pub fn healthy(&self) -> bool {
        self.quiet.failures == 0
            && self.attacked.failures == 0
            && self.after.descriptors <= self.before.descriptors + FD_SLACK
    }
}

/// Runs the soak against a fresh Tidings on `settings.port`.
pub async fn run(settings: &Settings<'_>, sources: &Sources) -> std::io::Result<Outcome> {
    let (hub_args, unknown_args) = known_args(settings.tidings, settings.hub_args).await?;
    if !unknown_args.is_empty() {
        eprintln!("soak: this hub does not know {}; running without", unknown_args.join(", "));
    }
    let hub = target::start(Kind::Tidings, settings.port, settings.tidings, settings.root, &hub_args).await?;
    let pids = hub.pids();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = Reading::of(&pids);

    let mut probe = Probe::open(&hub, sources).await;
    let quiet = probe.run(Instant::now() + QUIET).await;

    let window = Duration::from_secs(settings.seconds);
    let until = Instant::now() + window;
    let SocketAddr::V4(hub_v4) = hub.addr else { return Err(std::io::Error::other("the hub is not on IPv4")) };
    let (peers_tx, peers) = tokio::sync::watch::channel(Arc::new(HashSet::new()));
    let scan = tokio::spawn(attack::scan_hub_sockets(hub_v4, peers_tx, until + SETTLE_LIMIT));
    let attackers = attack::start(hub.addr, &sources.addresses(settings.connections), RAMP, &peers, until);
    eprintln!("soak: {} connections for {} s", settings.connections, settings.seconds);
    let (attacked, (background_accepted, background_failed), (peak, held)) =
        tokio::join!(probe.run(until), background(&hub, until), sample(&pids, &attackers, until));

    let attacks = attackers
        .kinds
        .iter()
        .enumerate()
        .map(|(k, (attack, slots, tally))| {
            let kind_held: Vec<usize> = held.iter().map(|per_kind| per_kind[k]).collect();
            AttackFigures {
                name: attack.name(),
                slots: *slots,
                peak_held: kind_held.iter().copied().max().unwrap_or(0),
                mean_held: kind_held.iter().sum::<usize>() as f64 / kind_held.len().max(1) as f64,
                connects: tally.connects.load(Ordering::Relaxed),
                cut: tally.cut.load(Ordering::Relaxed),
                refused: tally.refused.load(Ordering::Relaxed),
                answers: tally.answers(),
            }
        })
        .collect();
    attackers.stop().await;
    probe.close().await;
    let stopped = Instant::now();
    let after = settle(&pids, before, peak).await;
    let settled_seconds = stopped.elapsed().as_secs_f64();
    scan.abort();
    hub.stop().await;
    Ok(Outcome {
        connections: settings.connections,
        seconds: settings.seconds,
        hub_args,
        unknown_args,
        attacks,
        quiet,
        attacked,
        background_accepted,
        background_failed,
        before,
        peak,
        after,
        settled_seconds,
    })
}

/// `wanted` without the flags (and their values) that `tidings --help` does not list, and the
/// flags left out; a hub older than its flags still runs the soak.
async fn known_args(tidings: &Path, wanted: &[String]) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let help = tokio::process::Command::new(tidings).arg("--help").output().await?;
    Ok(split_known(wanted, &String::from_utf8_lossy(&help.stdout)))
}

fn split_known(wanted: &[String], help: &str) -> (Vec<String>, Vec<String>) {
    let listed: HashSet<&str> = help.split_whitespace().map(|word| word.trim_end_matches(',')).collect();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let mut words = wanted.iter().peekable();
    while let Some(word) = words.next() {
        let name = word.split('=').next().unwrap_or(word);
        let mut flag = vec![word.clone()];
        if !word.contains('=') {
            if let Some(value) = words.next_if(|next| !next.starts_with("--")) {
                flag.push(value.clone());
            }
        }
        if listed.contains(name) {
            known.extend(flag);
        } else {
            unknown.push(name.to_owned());
        }
    }
    (known, unknown)
}

/// A well-behaved client: one stream kept open, one kept-alive publisher.
struct Probe<'a> {
    hub: &'a Running,
    sources: &'a Sources,
    stream: load::Streams,
    publisher: Conn,
}

impl<'a> Probe<'a> {
    async fn open(hub: &'a Running, sources: &'a Sources) -> Probe<'a> {
        Probe { hub, sources, stream: open_probe_stream(hub, sources).await, publisher: Conn::new(hub.addr) }
    }

    /// Probes every 100 ms until `until`.
    async fn run(&mut self, until: Instant) -> ProbeFigures {
        let mut figures = ProbeFigures::default();
        let fresh_request = format!(
            "GET {} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n",
            self.hub.stream_path(FRESH_USER)
        );
        while Instant::now() < until {
            let round = Instant::now();
            figures.rounds += 1;
            let tally = Arc::clone(&self.stream.tally);
            if tally.opened.load(Ordering::Relaxed) == tally.closed.load(Ordering::Relaxed) {
                figures.fail("the probe stream was closed");
                let reopened = open_probe_stream(self.hub, self.sources).await;
                std::mem::replace(&mut self.stream, reopened).close().await;
                tokio::time::sleep_until((round + PROBE_EVERY).into()).await;
                continue;
            }
            let (events, seen) = (tally.events.load(Ordering::Relaxed), latencies_len(&tally));
            let began = Instant::now();
            match tokio::time::timeout(PROBE_TIMEOUT, self.publish(&mut figures)).await {
                Ok(Some(_)) => {
                    figures.publish.push(millis(began));
                    match arrival(&tally, events, seen).await {
                        Some(ms) => figures.arrival.push(ms),
                        None => figures.fail("a publish did not reach the probe stream within 2 s"),
                    }
                }
                _ => {
                    figures.fail("a publish was not accepted within 2 s");
                    self.publisher = Conn::new(self.hub.addr);
                }
            }
            let began = Instant::now();
            match tokio::time::timeout(PROBE_TIMEOUT, Conn::new(self.hub.addr).get("/healthz")).await {
                Ok(Ok((200, _))) => figures.healthz.push(millis(began)),
                Ok(Ok((status, _))) => figures.fail(&format!("a fresh /healthz answered {status}")),
                Ok(Err(cause)) => figures.fail(&format!("a fresh /healthz failed: {cause}")),
                Err(_) => figures.fail("a fresh /healthz did not answer within 2 s"),
            }
            let began = Instant::now();
            match tokio::time::timeout(PROBE_TIMEOUT, load::connect(Ipv4Addr::LOCALHOST, self.hub.addr, &fresh_request))
                .await
            {
                Ok(Ok(_)) => figures.fresh_stream.push(millis(began)),
                Ok(Err(cause)) => figures.fail(&format!("a fresh stream did not open: {cause}")),
                Err(_) => figures.fail("a fresh stream did not open within 2 s"),
            }
            tokio::time::sleep_until((round + PROBE_EVERY).into()).await;
        }
        figures
    }

    /// Publishes to the probe stream. Like any HTTP client with a pool, it retries once on a
    /// new connection when the kept-alive one turns out to have been closed (no answer at all);
    /// a refusal is not retried.
    async fn publish(&mut self, figures: &mut ProbeFigures) -> Option<String> {
        let reused = self.publisher.is_connected();
        let data = format!(r#"{{"t":{}}}"#, now_nanos());
        let published = self.hub.publish(&mut self.publisher, Some(PROBE_USER), &data).await;
        if published.is_some() || !reused || self.publisher.is_connected() {
            return published;
        }
        figures.publisher_reconnects += 1;
        let data = format!(r#"{{"t":{}}}"#, now_nanos());
        self.hub.publish(&mut self.publisher, Some(PROBE_USER), &data).await
    }

    async fn close(self) {
        self.stream.close().await;
    }
}

async fn open_probe_stream(hub: &Running, sources: &Sources) -> load::Streams {
    let (stream, _) =
        load::open(sources, |_| hub.addr, 1, |_| hub.stream_path(PROBE_USER), None, Duration::from_secs(5)).await;
    stream.tally.recording.store(true, Ordering::Relaxed);
    stream
}

fn latencies_len(tally: &load::Tally) -> usize {
    tally.latencies.lock().map_or(0, |l| l.len())
}

/// Waits (at most 2 s) for the probe stream's next timestamped event; its publish-to-arrival
/// time in ms.
async fn arrival(tally: &load::Tally, events: u64, seen: usize) -> Option<f64> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while tally.events.load(Ordering::Relaxed) <= events {
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let latencies = tally.latencies.lock().ok()?;
    latencies.get(seen).map(|&ns| ns as f64 / 1e6)
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Broadcasts about 1 KB five times a second until `until`, so streams that do not read fall
/// behind; returns the events accepted and refused.
async fn background(hub: &Running, until: Instant) -> (u64, u64) {
    let data = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    let mut conn = Conn::new(hub.addr);
    let (mut accepted, mut failed) = (0, 0);
    while Instant::now() < until {
        let began = Instant::now();
        match tokio::time::timeout(PROBE_TIMEOUT, hub.publish(&mut conn, None, &data)).await {
            Ok(Some(_)) => accepted += 1,
            _ => {
                failed += 1;
                conn = Conn::new(hub.addr);
            }
        }
        tokio::time::sleep_until((began + BACKGROUND_EVERY).into()).await;
    }
    (accepted, failed)
}

/// Samples the hub and the attackers every 500 ms until `until`: the peak reading, and the
/// connections each kind held at every sample after the ramp.
async fn sample(pids: &[u32], attackers: &attack::Attackers, until: Instant) -> (Reading, Vec<Vec<usize>>) {
    let ramped = Instant::now() + RAMP;
    let (mut peak, mut held) = (Reading::default(), Vec::new());
    while Instant::now() < until {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let now = Reading::of(pids);
        peak.descriptors = peak.descriptors.max(now.descriptors);
        peak.rss_bytes = peak.rss_bytes.max(now.rss_bytes);
        if Instant::now() > ramped {
            held.push(attackers.kinds.iter().map(|(_, _, tally)| tally.held.load(Ordering::Relaxed)).collect());
        }
    }
    eprintln!("soak: peak {} descriptors, {} attacker connections held at the end", peak.descriptors, attackers.held());
    (peak, held)
}

/// Polls (at most 30 s) until the descriptors are back within a few of `before` and the memory
/// is back within [`rss_target`]; the last reading.
async fn settle(pids: &[u32], before: Reading, peak: Reading) -> Reading {
    let started = Instant::now();
    loop {
        let now = Reading::of(pids);
        let back = now.descriptors <= before.descriptors + FD_SLACK && now.rss_bytes <= rss_target(before, peak);
        if back || started.elapsed() > SETTLE_LIMIT {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The memory that counts as fallen back: a quarter of the rise above the start, or 2 MB.
fn rss_target(before: Reading, peak: Reading) -> u64 {
    let rise = peak.rss_bytes.saturating_sub(before.rss_bytes);
    before.rss_bytes + (rise / 4).max(2 << 20)
}

#[cfg(test)]
mod tests {
    use super::split_known;

    /// Flags the hub lists pass with their values; the others are left out, values and all.
    #[test]
    fn unknown_flags_are_left_out_with_their_values() {
        let help = "Options:\n      --addr <ADDR>\n      --write-timeout <WRITE_TIMEOUT>\n  -h, --help\n";
        let wanted: Vec<String> =
            ["--write-timeout", "5s", "--idle-timeout", "10s", "--addr=127.0.0.1:1", "--header-timeout=5s"]
                .map(String::from)
                .into();
        let (known, unknown) = split_known(&wanted, help);
        assert_eq!(known, ["--write-timeout", "5s", "--addr=127.0.0.1:1"]);
        assert_eq!(unknown, ["--idle-timeout", "--header-timeout"]);
    }
}
