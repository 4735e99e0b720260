//! `tidings-bench`: runs the same scenarios against Tidings and nginx + nchan, interleaved and
//! repeated, and writes a table of medians (with the ratio to nchan) and a latency chart.
//! Then, with `--soak-seconds`, a soak of hostile connections against a fresh Tidings, and with
//! `--tls-http1` / `--tls-http2`, idle streams over HTTPS (`tls`).
//! Loopback only; every loop is bounded in count and time. Exits non-zero when a stream could
//! not open, a broadcast did not reach every stream or a soak probe failed, so a smoke run in
//! `make test` catches rot.

mod floor;
mod http;
mod load;
mod report;
mod scale;
mod soak;
mod target;
mod tls;

use clap::Parser;
use http::Conn;
use load::{now_nanos, percentile};
use report::{Metric, Results};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Kind, Running};

#[derive(Parser, Debug)]
#[command(about = "Benchmark Tidings against nginx + nchan on loopback")]
struct Args {
    /// Streams held in the main scenarios.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Interleaved repetitions; the report gives medians.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Hubs to measure: tidings, cluster (two nodes on Redis), mercure (Tidings over the
    /// Mercure protocol), nchan, baseline (a bare axum handler, for the unicast floor only).
    #[arg(long, value_delimiter = ',', default_value = "tidings,nchan")]
    targets: Vec<String>,
    /// The Tidings binary.
    #[arg(long, default_value = "target/release/tidings")]
    tidings: PathBuf,
    /// Where to write the Markdown report (`-`: standard output).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: String,
    /// Where to write the latency chart (SVG).
    #[arg(long, default_value = "docs/bench-latency.svg")]
    chart: PathBuf,
    /// Streams held in the idle run, which only measures memory (0: skip it).
    #[arg(long, default_value_t = 19_000)]
    idle: usize,
    /// Seconds each throughput scenario runs.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Seconds the soak holds its hostile connections against a fresh Tidings (0: skip it).
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// Hostile connections the soak holds, spread over its seven kinds (0: skip it).
    #[arg(long, default_value_t = 2000)]
    soak_connections: usize,
    /// Flags for the soak's hub (short timeouts, so reclamation shows within the soak); those
    /// the hub does not know are left out, and the report says so.
    #[arg(long, allow_hyphen_values = true, default_value = SOAK_HUB_ARGS)]
    soak_hub_args: String,
    #[command(flatten)]
    scale: scale::Options,
    /// HTTPS HTTP/1.1 idle-stream sizes, each on a fresh hub (`tls`; none: skip).
    #[arg(long, value_delimiter = ',')]
    tls_http1: Vec<usize>,
    /// HTTP/2 idle-stream sizes, 100 streams per TLS connection (`tls`; none: skip).
    #[arg(long, value_delimiter = ',')]
    tls_http2: Vec<usize>,
    /// Repetitions of the HTTPS scenario; the report gives medians.
    #[arg(long, default_value_t = 3)]
    tls_reps: usize,
    /// Measure only the unicast floor on each target (Tidings and the baseline).
    #[arg(long)]
    floor_only: bool,
}

const SOAK_HUB_ARGS: &str = "--write-timeout 5s --header-timeout 5s --idle-timeout 10s";
/// The soak's hub listens here, clear of the other scenarios' ports.
const SOAK_PORT: u16 = 17_800;

const BROADCAST_ROUNDS: usize = 5;

/// Flags for the measured Tidings nodes (not the soak's, which runs at the hub's defaults): the
/// scenarios hold a few dozen request connections at most, so the rest of the descriptor limit
/// goes to streams and the 19,000-stream idle run fits under this machine's 20,000.
fn measured_node_args() -> Vec<String> {
    vec!["--max-request-connections".into(), "256".into()]
}

fn main() -> std::process::ExitCode {
    // A holder of the scale scenario's streams runs on a runtime of its own.
    if std::env::args().nth(1).as_deref() == Some(scale::HOLD) {
        return scale::hold();
    }
    coordinate()
}

#[tokio::main]
async fn coordinate() -> std::process::ExitCode {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let root = std::env::current_dir().unwrap_or_default();
    let kinds: Vec<Kind> = args
        .targets
        .iter()
        .filter_map(|t| match t.as_str() {
            "tidings" => Some(Kind::Tidings),
            "cluster" => Some(Kind::Cluster),
            "mercure" => Some(Kind::Mercure),
            "baseline" => Some(Kind::Baseline),
            "nchan" => Some(Kind::Nchan),
            _ => None,
        })
        .collect();
    let sizes: Vec<usize> =
        [args.subscribers / 10, args.subscribers / 2, args.subscribers].into_iter().filter(|&n| n > 0).collect();
    let mut results = Results::default();
    results.floor_only = args.floor_only;
    let sources = load::Sources::new();
    let mut healthy = true;
    for rep in 0..args.reps {
        for (k, &kind) in kinds.iter().enumerate() {
            let port = 18_000 + (rep * kinds.len() + k) as u16 * 3;
            let hub = match target::start(kind, port, &args.tidings, &root, &measured_node_args()).await {
                Ok(hub) => hub,
                Err(e) => {
                    eprintln!("cannot start {}: {e}", kind.name());
                    return std::process::ExitCode::FAILURE;
                }
            };
            if matches!(kind, Kind::Tidings | Kind::Baseline) {
                let window = Duration::from_secs(args.seconds);
                healthy &= floor::run(&hub, &sources, args.subscribers, window, &mut results).await;
            }
            if kind == Kind::Baseline || args.floor_only {
                hub.stop().await;
                eprintln!("rep {} of {}: {} done", rep + 1, args.reps, kind.name());
                continue;
            }
            for &n in &sizes {
                healthy &= scenario(&hub, &sources, n, n == args.subscribers, &args, &mut results).await;
            }
            if kind.batches() {
                match storm(&hub, &sources, args.subscribers).await {
                    Some(seconds) => results.add(kind, Metric::StormSeconds, args.subscribers, seconds),
                    None => healthy = false,
                }
            }
            hub.stop().await;
            // Memory is measured on a fresh process: a hub that already served and freed
            // streams reuses that memory, and its RSS hides what a stream costs.
            for (offset, (metric, n)) in
                [(Metric::RssPerStreamKb, args.subscribers), (Metric::IdleRssPerStreamKb, args.idle)]
                    .into_iter()
                    .enumerate()
            {
                if n == 0 {
                    continue;
                }
                let hub =
                    match target::start(kind, port + 1 + offset as u16, &args.tidings, &root, &measured_node_args())
                        .await
                    {
                        Ok(hub) => hub,
                        Err(e) => {
                            eprintln!("cannot start {}: {e}", kind.name());
                            return std::process::ExitCode::FAILURE;
                        }
                    };
                let (kb, opened) = idle_memory(&hub, &sources, n).await;
                hub.stop().await;
                results.add(kind, metric, args.subscribers, kb);
                if opened < n {
                    results.note(format!(
                        "{}: an idle run opened {opened} of {n} streams; its figure is per stream opened.",
                        kind.name()
                    ));
                    // Another hub's limits are a finding; ours failing is a fault.
                    healthy &= kind == Kind::Nchan;
                }
            }
            eprintln!("rep {} of {}: {} done", rep + 1, args.reps, kind.name());
        }
    }
    if args.soak_seconds > 0 && args.soak_connections > 0 {
        let hub_args: Vec<String> = args.soak_hub_args.split_whitespace().map(str::to_owned).collect();
        let settings = soak::Settings {
            seconds: args.soak_seconds,
            connections: args.soak_connections,
            tidings: &args.tidings,
            root: &root,
            hub_args: &hub_args,
            port: SOAK_PORT,
        };
        match soak::run(&settings, &sources).await {
            Ok(outcome) => {
                if !outcome.healthy() {
                    eprintln!("soak: some probes failed or the descriptors did not fall back");
                    healthy = false;
                }
                results.soak = Some(outcome);
            }
            Err(e) => {
                eprintln!("cannot run the soak: {e}");
                healthy = false;
            }
        }
    }
    if !args.tls_http1.is_empty() || !args.tls_http2.is_empty() {
        let settings = tls::Settings {
            tidings: &args.tidings,
            http1: &args.tls_http1,
            http2: &args.tls_http2,
            reps: args.tls_reps,
        };
        match tls::run(&settings, &sources).await {
            Ok(outcome) => {
                healthy &= outcome.complete;
                results.tls = Some((outcome, args.tls_reps));
            }
            Err(e) => {
                eprintln!("cannot run the HTTPS scenario: {e}");
                healthy = false;
            }
        }
    }
    let scale = if args.scale.scale.is_empty() {
        None
    } else {
        Some(scale::run(&args.scale, &args.tidings, &root, &sources).await)
    };
    healthy &= scale.as_ref().is_none_or(|s| s.healthy);
    let mut markdown = report::markdown(&results, &kinds, args.subscribers, args.idle, args.reps);
    if let Some(scale) = &scale {
        markdown.push_str(&scale.markdown());
        // A run of the scale scenario alone replaces only its section.
        if args.reps == 0 && results.soak.is_none() && args.out != "-" {
            markdown = scale::splice(&std::fs::read_to_string(&args.out).unwrap_or_default(), &scale.markdown());
        }
    }
    let scale_chart = scale.as_ref().map(|s| (&args.scale.scale_chart, s.chart()));
    // A run of the soak alone leaves the chart as it was.
    let chart = (args.reps > 0).then(|| report::chart(&results, &kinds, &sizes));
    if args.out == "-" {
        #[allow(clippy::print_stdout)] // the report is this mode's output
        {
            println!("{markdown}");
        }
    } else if let Err(e) = std::fs::write(&args.out, markdown)
        .and_then(|()| chart.map_or(Ok(()), |chart| std::fs::write(&args.chart, chart)))
        .and_then(|()| scale_chart.map_or(Ok(()), |(path, chart)| std::fs::write(path, chart)))
    {
        eprintln!("cannot write the report: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if healthy {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("some streams did not open, some broadcasts were not fully delivered, or the soak failed");
        std::process::ExitCode::FAILURE
    }
}

/// One scenario run at `n` streams; the full set only at the main size. Returns false when a
/// stream failed to open or a broadcast did not reach all.
async fn scenario(
    hub: &Running,
    sources: &load::Sources,
    n: usize,
    full: bool,
    args: &Args,
    results: &mut Results,
) -> bool {
    let kind = hub.kind;
    let mut conn = Conn::new(hub.addr);
    let (streams, took) =
        load::open(sources, |i| hub.stream_addr(i), n, |i| hub.stream_path(i), None, Duration::from_secs(60)).await;
    let tally = Arc::clone(&streams.tally);
    let opened = tally.opened.load(Ordering::Relaxed);
    let mut ok = opened == n;
    if !ok {
        eprintln!("{}: {opened} of {n} streams opened", kind.name());
    }
    if full {
        results.add(kind, Metric::ConnectsPerSec, n, opened as f64 / took.as_secs_f64());
    }

    // Broadcast latency: one event to every stream, a few times.
    let mut latencies = Vec::new();
    for _ in 0..BROADCAST_ROUNDS {
        let before = tally.events.load(Ordering::Relaxed);
        tally.latencies.lock().map(|mut l| l.clear()).ok();
        tally.recording.store(true, Ordering::Relaxed);
        ok &= hub.publish(&mut conn, None, &format!(r#"{{"t":{}}}"#, now_nanos())).await.is_some();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tally.events.load(Ordering::Relaxed) < before + opened as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tally.recording.store(false, Ordering::Relaxed);
        let reached = tally.events.load(Ordering::Relaxed) - before;
        if reached < opened as u64 {
            eprintln!("{}: a broadcast reached {reached} of {opened} streams within 10 s", kind.name());
            ok = false;
        }
        latencies.extend(tally.latencies.lock().map(|l| l.clone()).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    results.add(kind, Metric::BroadcastP50Ms, n, percentile(&mut latencies, 50.0) as f64 / 1e6);
    results.add(kind, Metric::BroadcastP99Ms, n, percentile(&mut latencies, 99.0) as f64 / 1e6);

    if full {
        let window = Duration::from_secs(args.seconds);
        let before = tally.events.load(Ordering::Relaxed);
        let cpu = load::cpu_seconds(&hub.pids());
        let (accepted, rate) = sustained(hub, &tally, window).await;
        results.add(kind, Metric::DeliveriesPerSec, n, rate);
        results.add(kind, Metric::HubCpuPct, n, 100.0 * (load::cpu_seconds(&hub.pids()) - cpu) / window.as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let expected = (accepted * opened as u64).max(1);
        let delivered = tally.events.load(Ordering::Relaxed) - before;
        results.add(kind, Metric::SustainedDeliveredPct, n, 100.0 * delivered as f64 / expected as f64);
        results.add(kind, Metric::UnicastPerSec, n, unicast(hub, n, window).await);
        if kind.batches() {
            results.add(kind, Metric::BatchEventsPerSec, n, batches(hub, n, window).await);
        }
    }
    streams.close().await;
    ok
}

/// Broadcasts as fast as 4 publishers can for `window`; returns events accepted and the
/// deliveries per second the streams saw.
async fn sustained(hub: &Running, tally: &load::Tally, window: Duration) -> (u64, f64) {
    let accepted = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let before = tally.events.load(Ordering::Relaxed);
    let started = Instant::now();
    let publisher = || async {
        let mut conn = Conn::new(hub.addr);
        while !stop.load(Ordering::Relaxed) {
            if hub.publish(&mut conn, None, &format!(r#"{{"t":{}}}"#, now_nanos())).await.is_some() {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let timer = async {
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(publisher(), publisher(), publisher(), publisher(), timer);
    let delivered = tally.events.load(Ordering::Relaxed) - before;
    (accepted.load(Ordering::Relaxed), delivered as f64 / started.elapsed().as_secs_f64())
}

/// Single-user publishes from 32 concurrent publishers for `window`: accepted per second.
async fn unicast(hub: &Running, users: usize, window: Duration) -> f64 {
    let data = || format!(r#"{{"t":{}}}"#, now_nanos());
    accepted_per_sec(hub, 32, window, async |conn, p, round| {
        usize::from(hub.publish(conn, Some((p + 32 * round) % users), &data()).await.is_some())
    })
    .await
}

/// Batches of 1,000 single-user events from 4 publishers for `window`: events per second.
async fn batches(hub: &Running, users: usize, window: Duration) -> f64 {
    accepted_per_sec(hub, 4, window, async |conn, p, round| {
        hub.publish_batch(conn, (p + 4 * round) * 1000, 1000, users).await
    })
    .await
}

/// Runs `publishers` concurrent publishers, each on a connection of its own, calling
/// `send(conn, publisher, round)` (which returns how many events were accepted) until `window`
/// is over; returns the events accepted per second.
async fn accepted_per_sec(
    hub: &Running,
    publishers: usize,
    window: Duration,
    send: impl AsyncFn(&mut Conn, usize, usize) -> usize,
) -> f64 {
    let accepted = AtomicU64::new(0);
    let started = Instant::now();
    let publisher = |p: usize| {
        let (accepted, send) = (&accepted, &send);
        async move {
            let mut conn = Conn::new(hub.publish_addr(p));
            let mut round = 0;
            while started.elapsed() < window {
                accepted.fetch_add(send(&mut conn, p, round).await as u64, Ordering::Relaxed);
                round += 1;
            }
        }
    };
    futures_join_all((0..publishers).map(publisher)).await;
    accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// A reconnect storm: with no stream open, one event is published to each of `n` users, then
/// all `n` reconnect at once with the `Last-Event-ID` from before those events. Returns the
/// seconds until every stream had its missed event; `None` if some did not within 30 s.
async fn storm(hub: &Running, sources: &load::Sources, n: usize) -> Option<f64> {
    let mut conn = Conn::new(hub.addr);
    let mark = hub.publish(&mut conn, None, r#"{"mark":true}"#).await?;
    let mut accepted = 0;
    for first in (0..n).step_by(1000) {
        accepted += hub.publish_batch(&mut conn, first, 1000.min(n - first), n).await;
    }
    if accepted < n {
        eprintln!("{}: storm: {accepted} of {n} missed events accepted", hub.kind.name());
        return None;
    }
    let started = Instant::now();
    let header = format!("Last-Event-ID: {mark}");
    let deadline = Duration::from_secs(30);
    let (streams, _) =
        load::open(sources, |i| hub.stream_addr(i), n, |i| hub.stream_path(i), Some(&header), deadline).await;
    let tally = Arc::clone(&streams.tally);
    while tally.streams_with_events.load(Ordering::Relaxed) < n && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let replayed = tally.streams_with_events.load(Ordering::Relaxed);
    streams.close().await;
    if replayed < n {
        eprintln!("{}: storm: {replayed} of {n} streams had their replay within 30 s", hub.kind.name());
        return None;
    }
    Some(took)
}

/// Opens `n` streams and leaves them idle: the hub's memory per stream opened, in KB, and how
/// many opened.
async fn idle_memory(hub: &Running, sources: &load::Sources, n: usize) -> (f64, usize) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = load::rss_bytes(&hub.pids());
    let (streams, _) =
        load::open(sources, |i| hub.stream_addr(i), n, |i| hub.stream_path(i), None, Duration::from_secs(60)).await;
    let opened = streams.tally.opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_stream = load::rss_bytes(&hub.pids()).saturating_sub(baseline) as f64 / opened.max(1) as f64;
    streams.close().await;
    (per_stream / 1000.0, opened)
}

/// Runs futures concurrently on this task and waits for all.
pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
