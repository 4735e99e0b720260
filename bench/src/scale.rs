//! The scale scenario (issue #14): streams from 1,000 to 100,000 on this one machine. Up to
//! `--scale-single-max` streams one hub process holds them (a Tidings node, an nginx with one
//! worker); beyond, a cluster of `--scale-nodes` Tidings nodes on one `redis-server` and an
//! nginx with as many workers. At each size: connect time and rate, memory per stream summed
//! over the hub's processes, and broadcast publish-to-arrival p50 / p99 over several rounds; at
//! the largest also a unicast run and, for Tidings, a reconnect storm onto other nodes with
//! `Last-Event-ID`. One process may hold only ~19,000 descriptors here, so the streams are held
//! by holder processes (`holder`), each from loopback source addresses of its own.
//!
//! Layout: `holder` (the holder process and its line protocol), `hubs` (starting and stopping
//! the hubs), `report` (the Markdown section and the chart).

mod holder;
mod hubs;
mod report;

use crate::http::Conn;
use crate::load::{self, now_nanos, Sources, STREAMS_PER_SOURCE};
use hubs::{Flavour, Hub};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub use holder::serve as hold;
pub use report::splice;

/// The first argument that makes `tidings-bench` a holder.
pub const HOLD: &str = "hold";

/// The scale scenario's flags.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Stream counts for the scale scenario, e.g. 1000,10000,19000,50000,100000 (none: skip it).
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
    /// Repetitions of the scale scenario; the report gives medians.
    #[arg(long, default_value_t = 1)]
    pub scale_reps: usize,
    /// Tidings nodes (and nginx workers) past `--scale-single-max` streams.
    #[arg(long, default_value_t = 6)]
    pub scale_nodes: usize,
    /// The most streams one hub process is given (this machine: 20,000 descriptors a process).
    #[arg(long, default_value_t = 19_000)]
    pub scale_single_max: usize,
    /// The most streams one holder process holds.
    #[arg(long, default_value_t = 17_000)]
    pub scale_holder_streams: usize,
    /// Hubs in the scale scenario: tidings, nchan.
    #[arg(long, value_delimiter = ',', default_value = "tidings,nchan")]
    pub scale_hubs: Vec<String>,
    /// Worker threads of each cluster node (`TOKIO_WORKER_THREADS`; 0: the runtime's default,
    /// one per core). One: six nodes on two cores, as nginx runs one thread per worker; with
    /// two each, a broadcast's p99 at 100,000 streams was 2.3-2.9 s against 1.2-1.4 s.
    #[arg(long, default_value_t = 1)]
    pub scale_node_threads: usize,
    /// Where to write the scale chart (SVG), when the report goes to a file.
    #[arg(long, default_value = "docs/bench-scale.svg")]
    pub scale_chart: std::path::PathBuf,
}

/// Broadcast rounds at each size.
const ROUNDS: usize = 5;
/// The longest one broadcast may take to reach every stream.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent publishers in the unicast run.
const UNICAST_PUBLISHERS: usize = 32;
/// The storm's missed events per stream: its own, then this many broadcasts.
const STORM_BROADCASTS: u64 = 2;
/// The longest the storm may take to replay everything.
const STORM_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a holder may take to answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Ports from here, 20 per hub started (nodes, then Redis on the 20th).
const FIRST_PORT: u16 = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    ConnectSeconds,
    ConnectsPerSec,
    /// Memory the streams added, per stream (KB).
    KbAdded,
    /// All the hub's memory, its fixed cost included, per stream (KB).
    KbTotal,
    RedisMb,
    /// CPU that processes outside this run took during the broadcast rounds, in % of the
    /// machine's cores.
    OtherCpuPct,
    /// CPU per broadcast round: the hub's processes (Redis included), and the holders' (ms).
    HubCpuMs,
    HoldersCpuMs,
    P50Ms,
    P99Ms,
    DeliveredPct,
    UnicastPerSec,
    UnicastDeliveredPct,
    StormSeconds,
    StormReplayedPct,
    /// Events the storm delivered, against one per missed event per stream.
    StormEventsPct,
}

/// What the scenario measured, and what it found.
#[derive(Default)]
pub struct Outcome {
    values: BTreeMap<(Flavour, usize, Metric), Vec<f64>>,
    /// The hub's shape at each size ("6 nodes on Redis").
    shapes: BTreeMap<(Flavour, usize), String>,
    /// Holder processes and source addresses at each size.
    holders: BTreeMap<usize, (usize, usize)>,
    notes: Vec<String>,
    reps: usize,
    single_max: usize,
    /// Where the chart goes, as the report links it.
    chart_path: String,
    node_threads: usize,
    pub healthy: bool,
}

impl Outcome {
    fn add(&mut self, flavour: Flavour, n: usize, metric: Metric, value: f64) {
        self.values.entry((flavour, n, metric)).or_default().push(value);
    }

    fn median(&self, flavour: Flavour, n: usize, metric: Metric) -> Option<f64> {
        let mut values = self.values.get(&(flavour, n, metric))?.clone();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }

    fn note(&mut self, note: String) {
        eprintln!("scale: {note}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The report's section.
    pub fn markdown(&self) -> String {
        report::markdown(self)
    }

    /// The chart of latency and memory against streams.
    pub fn chart(&self) -> String {
        report::chart(self)
    }
}

/// Runs the scenario at every size asked for, interleaving the hubs, `scale_reps` times.
pub async fn run(options: &Options, tidings: &Path, root: &Path, sources: &Sources) -> Outcome {
    let mut outcome = Outcome {
        reps: options.scale_reps,
        single_max: options.scale_single_max,
        chart_path: options.scale_chart.display().to_string(),
        node_threads: options.scale_node_threads,
        healthy: true,
        ..Outcome::default()
    };
    let flavours: Vec<Flavour> = [("tidings", Flavour::Tidings), ("nchan", Flavour::Nchan)]
        .into_iter()
        .filter(|(name, _)| options.scale_hubs.iter().any(|h| h == name))
        .map(|(_, flavour)| flavour)
        .collect();
    let largest = options.scale.iter().copied().max().unwrap_or(0);
    let mut port = FIRST_PORT;
    for rep in 0..options.scale_reps {
        for &n in &options.scale {
            for &flavour in &flavours {
                let processes = if n > options.scale_single_max { options.scale_nodes.max(1) } else { 1 };
                let started = match flavour {
                    Flavour::Tidings => hubs::tidings(tidings, port, processes, n, options.scale_node_threads).await,
                    Flavour::Nchan => hubs::nchan(root, port, processes).await,
                };
                port += 20;
                let hub = match started {
                    Ok(hub) => hub,
                    Err(e) => {
                        outcome.note(format!("cannot start {}: {e}", flavour.name()));
                        outcome.healthy = false;
                        continue;
                    }
                };
                eprintln!("scale, rep {} of {}: {} at {n} streams", rep + 1, options.scale_reps, hub.label());
                let ok = match size(&hub, n, n == largest, options, sources, &mut outcome).await {
                    Ok(ok) => ok,
                    Err(e) => {
                        outcome.note(format!("{} at {n}: {e}", hub.label()));
                        false
                    }
                };
                // Another hub's limits are a finding; ours failing is a fault.
                outcome.healthy &= ok || flavour == Flavour::Nchan;
                hub.stop().await;
            }
        }
    }
    outcome
}

/// One hub at `n` streams: connect, memory, broadcast rounds; with `full`, unicast and the
/// storm too. Returns whether every stream opened and every event arrived.
async fn size(
    hub: &Hub,
    n: usize,
    full: bool,
    options: &Options,
    sources: &Sources,
    outcome: &mut Outcome,
) -> std::io::Result<bool> {
    let flavour = hub.flavour;
    outcome.shapes.insert((flavour, n), hub.shape.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fixed = pss_bytes(&hub.pids());
    let descriptors_before = load::descriptors(&hub.pids());
    let mut holders = Holders::spawn(n, options.scale_holder_streams)?;
    let nodes = hub.nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");

    // Connect.
    let (sources_used, answers, took) = holders.open(sources, hub, &nodes, 0, 0, "-").await?;
    outcome.holders.insert(n, (holders.all.len(), sources_used));
    let opened: usize = answers.iter().map(|a| word::<usize>(a, 1)).sum();
    let mut ok = opened == n;
    if !ok {
        outcome.note(format!("{} at {n}: {opened} of {n} streams opened", hub.label()));
    }
    outcome.add(flavour, n, Metric::ConnectSeconds, took.as_secs_f64());
    outcome.add(flavour, n, Metric::ConnectsPerSec, opened as f64 / took.as_secs_f64());

    // Memory, once the streams have settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = pss_bytes(&hub.pids());
    let per = |bytes: u64| bytes as f64 / opened.max(1) as f64 / 1000.0;
    outcome.add(flavour, n, Metric::KbAdded, per(total.saturating_sub(fixed)));
    outcome.add(flavour, n, Metric::KbTotal, per(total));
    if let Some(redis) = hub.redis_pid() {
        outcome.add(flavour, n, Metric::RedisMb, pss_bytes(&[redis]) as f64 / 1e6);
    }

    // Broadcast rounds, each published to the next node.
    let mut latencies = BTreeMap::<u64, u64>::new();
    let mut delivered = 0;
    // CPU over the rounds: the hub's (Redis included), the holders', and everyone else's.
    let mut hub_pids = hub.pids();
    hub_pids.extend(hub.redis_pid());
    let holder_pids: Vec<u32> = holders.all.iter().filter_map(|h| h.child.id()).collect();
    let cpu =
        || (load::cpu_seconds(&hub_pids), load::cpu_seconds(&holder_pids), load::cpu_seconds(&[std::process::id()]));
    let (cpu_before, busy_before, rounds_started) = (cpu(), busy_seconds(), Instant::now());
    for round in 0..ROUNDS {
        holders.ask(|_, _| "arm".into()).await?;
        let mut conn = Conn::new(hub.nodes[round % hub.nodes.len()]);
        if hub.publish(&mut conn, None, &format!(r#"{{"t":{}}}"#, now_nanos())).await.is_none() {
            outcome.note(format!("{} at {n}: a broadcast was refused", hub.label()));
            ok = false;
        }
        let timeout = ROUND_TIMEOUT.as_millis();
        for answer in holders.ask(|_, _| format!("wait 1 {timeout}")).await? {
            delivered += word::<u64>(&answer, 1);
            for pair in answer.iter().skip(2) {
                let (bucket, count) = pair.split_once(':').unwrap_or_default();
                *latencies.entry(bucket.parse().unwrap_or(0)).or_default() += count.parse::<u64>().unwrap_or(0);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cpu_after, busy) = (cpu(), busy_seconds() - busy_before);
    let per_round = |before: f64, after: f64| (after - before) * 1000.0 / ROUNDS as f64;
    outcome.add(flavour, n, Metric::HubCpuMs, per_round(cpu_before.0, cpu_after.0));
    outcome.add(flavour, n, Metric::HoldersCpuMs, per_round(cpu_before.1, cpu_after.1));
    let ours = (cpu_after.0 - cpu_before.0) + (cpu_after.1 - cpu_before.1) + (cpu_after.2 - cpu_before.2);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let other = 100.0 * (busy - ours) / rounds_started.elapsed().as_secs_f64() / cores;
    outcome.add(flavour, n, Metric::OtherCpuPct, other.clamp(0.0, 100.0));
    let expected = (opened * ROUNDS) as u64;
    if delivered != expected {
        outcome.note(format!("{} at {n}: broadcasts delivered {delivered} of {expected} events", hub.label()));
        ok = false;
    }
    outcome.add(flavour, n, Metric::DeliveredPct, 100.0 * delivered as f64 / expected.max(1) as f64);
    outcome.add(flavour, n, Metric::P50Ms, percentile_ms(&latencies, 50.0));
    outcome.add(flavour, n, Metric::P99Ms, percentile_ms(&latencies, 99.0));

    if full {
        let window = Duration::from_secs(3);
        let (rate, share) = unicast(hub, &mut holders, n, window).await?;
        outcome.add(flavour, n, Metric::UnicastPerSec, rate);
        outcome.add(flavour, n, Metric::UnicastDeliveredPct, share);
        if share < 100.0 {
            outcome.note(format!("{} at {n}: unicast delivered {share:.2}% of the events accepted", hub.label()));
            ok = false;
        }
        if flavour == Flavour::Tidings {
            ok &= storm(hub, &mut holders, n, &nodes, descriptors_before, sources, outcome).await?;
        }
    }
    holders.close().await;
    Ok(ok)
}

/// CPU time (seconds) every process on the machine has spent so far, from /proc/stat.
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    // user, nice, system, (idle, iowait), irq, softirq, steal
    let ticks: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum::<f64>() / 100.0
}

/// Single-user publishes from [`UNICAST_PUBLISHERS`] publishers spread over the nodes for
/// `window`: accepted per second, and the share of them that arrived.
async fn unicast(hub: &Hub, holders: &mut Holders, n: usize, window: Duration) -> std::io::Result<(f64, f64)> {
    let before = holders.events().await?;
    let accepted = AtomicU64::new(0);
    let started = Instant::now();
    let publisher = |p: usize| {
        let accepted = &accepted;
        async move {
            let mut conn = Conn::new(hub.nodes[p % hub.nodes.len()]);
            let mut round = 0;
            while started.elapsed() < window {
                let to = (p + UNICAST_PUBLISHERS * round) * 7919 % n;
                if hub.publish(&mut conn, Some(to), &format!(r#"{{"t":{}}}"#, now_nanos())).await.is_some() {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        }
    };
    crate::futures_join_all((0..UNICAST_PUBLISHERS).map(publisher)).await;
    let rate = accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    let waited = Instant::now();
    let mut arrived = holders.events().await? - before;
    while arrived < accepted && waited.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        arrived = holders.events().await? - before;
    }
    Ok((rate, 100.0 * arrived as f64 / accepted.max(1) as f64))
}

/// The reconnect storm: every stream dropped; while they are away, one event to each user and
/// [`STORM_BROADCASTS`] broadcasts; then all reopened at once, each on the next node, with the
/// `Last-Event-ID` from before. Records the seconds until every stream had every missed event.
async fn storm(
    hub: &Hub,
    holders: &mut Holders,
    n: usize,
    nodes: &str,
    descriptors_before: usize,
    sources: &Sources,
    outcome: &mut Outcome,
) -> std::io::Result<bool> {
    let label = hub.label();
    let mut conn = Conn::new(hub.nodes[0]);
    let mark = hub.publish(&mut conn, None, r#"{"mark":true}"#).await.unwrap_or_default();
    if mark.is_empty() {
        outcome.note(format!("{label} at {n}: storm: the mark was refused"));
        return Ok(false);
    }
    holders.ask(|_, _| "drop".into()).await?;
    // The nodes must have let go of the old streams, or the new ones pass their budget.
    let waited = Instant::now();
    while load::descriptors(&hub.pids()) > descriptors_before + 64 && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conns: Vec<Conn> = hub.nodes.iter().map(|&a| Conn::new(a)).collect();
    let mut accepted = 0;
    for (k, first) in (0..n).step_by(1000).enumerate() {
        let node = k % conns.len();
        match hub.publish_batch(&mut conns[node], first..(first + 1000).min(n)).await {
            Ok(count) => accepted += count,
            Err(why) => outcome.note(format!("{label} at {n}: storm: a batch was refused: {why}")),
        }
    }
    // A fresh connection: the hub closes one left idle past its header timeout (10 s).
    let mut conn = Conn::new(hub.nodes[0]);
    for _ in 0..STORM_BROADCASTS {
        match hub.try_publish(&mut conn, None, &format!(r#"{{"t":{}}}"#, now_nanos())).await {
            Ok(_) => accepted += 1,
            Err(why) => outcome.note(format!("{label} at {n}: storm: a broadcast was refused: {why}")),
        }
    }
    let missed = n + STORM_BROADCASTS as usize;
    if accepted < missed {
        outcome.note(format!("{label} at {n}: storm: {accepted} of {missed} missed events accepted"));
        return Ok(false);
    }
    let goal = 1 + STORM_BROADCASTS;
    let (_, answers, _) = holders.open(sources, hub, nodes, 1, goal, &mark).await?;
    let reopened: usize = answers.iter().map(|a| word::<usize>(a, 1)).sum();
    let timeout = STORM_TIMEOUT.as_millis();
    let done = holders.ask(|_, _| format!("done {timeout}")).await?;
    let at_goal: usize = done.iter().map(|a| word::<usize>(a, 1)).sum();
    let events: u64 = done.iter().map(|a| word::<u64>(a, 2)).sum();
    let seconds = done.iter().map(|a| word::<u64>(a, 3)).max().unwrap_or(0) as f64 / 1000.0;
    let expected = n as u64 * goal;
    outcome.add(Flavour::Tidings, n, Metric::StormSeconds, seconds);
    outcome.add(Flavour::Tidings, n, Metric::StormReplayedPct, 100.0 * at_goal as f64 / n as f64);
    outcome.add(Flavour::Tidings, n, Metric::StormEventsPct, 100.0 * events as f64 / expected as f64);
    let ok = reopened == n && at_goal == n && events == expected && seconds <= STORM_TIMEOUT.as_secs_f64();
    if !ok {
        outcome.note(format!(
            "{label} at {n}: storm: {reopened} reopened, {at_goal} had every missed event, {events} events for {expected} expected"
        ));
    }
    Ok(ok)
}

/// The holder processes of one size, each holding its share of the users.
struct Holders {
    all: Vec<Holder>,
}

struct Holder {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    first_user: usize,
    count: usize,
}

impl Holders {
    /// As many holders as `n` streams need at `per_holder` each, with equal shares.
    fn spawn(n: usize, per_holder: usize) -> std::io::Result<Holders> {
        let processes = n.div_ceil(per_holder.max(1)).max(1);
        let share = n.div_ceil(processes);
        let exe = std::env::current_exe()?;
        let mut all = Vec::new();
        for first_user in (0..n).step_by(share.max(1)) {
            let mut child =
                Command::new(&exe).arg(HOLD).stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(std::io::Error::other("a holder has no pipes"));
            };
            let lines = BufReader::new(stdout).lines();
            all.push(Holder { child, stdin, lines, first_user, count: share.min(n - first_user) });
        }
        Ok(Holders { all })
    }

    /// Sends each holder its line, then reads every answer (split in words).
    async fn ask(&mut self, line: impl Fn(usize, &Holder) -> String) -> std::io::Result<Vec<Vec<String>>> {
        for (k, holder) in self.all.iter_mut().enumerate() {
            let text = format!("{}\n", line(k, holder));
            holder.stdin.write_all(text.as_bytes()).await?;
            holder.stdin.flush().await?;
        }
        let mut answers = Vec::new();
        for holder in &mut self.all {
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, holder.lines.next_line())
                .await
                .map_err(|_| std::io::Error::other("a holder did not answer"))??
                .ok_or_else(|| std::io::Error::other("a holder ended"))?;
            if answer.starts_with("error") {
                return Err(std::io::Error::other(format!("a holder: {answer}")));
            }
            answers.push(answer.split_whitespace().map(str::to_owned).collect());
        }
        Ok(answers)
    }

    /// Every holder opens its streams on `hub` (user `u` on node `(u + shift) % nodes`), from
    /// fresh source addresses; returns the addresses used, the answers and the time to the last.
    async fn open(
        &mut self,
        sources: &Sources,
        hub: &Hub,
        nodes: &str,
        shift: usize,
        goal: u64,
        last_event_id: &str,
    ) -> std::io::Result<(usize, Vec<Vec<String>>, Duration)> {
        let firsts: Vec<(usize, usize)> = self
            .all
            .iter()
            .map(|h| {
                let count = h.count.div_ceil(STREAMS_PER_SOURCE);
                (sources.take(count), count)
            })
            .collect();
        let path = hub.stream_path();
        let started = Instant::now();
        // As many connects in flight per hub process as the rest of the bench has, so a single
        // node at its request-connection cap is not flooded.
        let in_flight = load::CONNECTS_IN_FLIGHT * hub.processes.max(1) / self.all.len().max(1);
        let answers = self
            .ask(|k, h| {
                let (source, first, count) = (firsts[k].0, h.first_user, h.count);
                format!("open {source} {first} {count} {shift} {goal} {last_event_id} {path} {nodes} {in_flight}")
            })
            .await?;
        Ok((firsts.iter().map(|f| f.1).sum(), answers, started.elapsed()))
    }

    /// Events seen so far, over all holders.
    async fn events(&mut self) -> std::io::Result<u64> {
        Ok(self.ask(|_, _| "count".into()).await?.iter().map(|a| word::<u64>(a, 1)).sum())
    }

    /// Ends every holder (end of input closes its streams) and waits for it.
    async fn close(self) {
        for mut holder in self.all {
            drop(holder.stdin);
            if tokio::time::timeout(Duration::from_secs(30), holder.child.wait()).await.is_err() {
                let _ = holder.child.kill().await;
            }
        }
    }
}

/// The `at`-th word of an answer, as a number (0 if it is not one).
fn word<T: std::str::FromStr + Default>(answer: &[String], at: usize) -> T {
    answer.get(at).and_then(|w| w.parse().ok()).unwrap_or_default()
}

/// The p-th percentile of a latency histogram (buckets of `holder::BUCKET_NANOS`), in ms: the
/// bucket's upper edge.
fn percentile_ms(histogram: &BTreeMap<u64, u64>, p: f64) -> f64 {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((p / 100.0) * (total - 1) as f64).round() as u64;
    let mut seen = 0;
    for (&bucket, &count) in histogram {
        seen += count;
        if seen > rank {
            return ((bucket + 1) * holder::BUCKET_NANOS) as f64 / 1e6;
        }
    }
    0.0
}

/// Proportional set size (bytes) of `pids` and their children: resident memory with pages
/// shared between processes (nchan's shared memory, the binary) divided among them, so a sum
/// over processes counts each page once.
fn pss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .flat_map(|&pid| load::family(pid))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|rollup| {
            let line = rollup.lines().find(|l| l.starts_with("Pss:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;
    use std::collections::BTreeMap;

    /// Percentiles read a merged histogram at bucket resolution (0.1 ms), upper edges.
    #[test]
    fn percentiles_from_buckets() {
        let histogram: BTreeMap<u64, u64> = [(0, 50), (9, 49), (100, 1)].into_iter().collect();
        assert!((percentile_ms(&histogram, 50.0) - 1.0).abs() < 1e-9);
        assert!((percentile_ms(&histogram, 99.0) - 1.0).abs() < 1e-9);
        assert!((percentile_ms(&histogram, 100.0) - 10.1).abs() < 1e-9);
        assert_eq!(percentile_ms(&BTreeMap::new(), 99.0), 0.0);
    }
}
