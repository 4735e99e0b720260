//! The unicast floor (issue #15): with 10,000 idle streams open, publishers each on one
//! kept-alive connection post `{"to": "<one user>", "event": "message", "data": "<timestamp>"}`
//! in a closed loop, to Tidings and to `tidings-baseline`, a bare axum handler with a map of
//! per-user channels and nothing else. Publishes accepted per second, the p50 and p99 of each
//! publish's round trip, and whether every accepted event reached its stream.

use crate::http::Conn;
use crate::load::{self, now_nanos, percentile};
use crate::report::{Metric, Results};
use crate::target::Running;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The publisher counts measured, and the metrics each fills (per second, p50, p99).
const SHAPES: [(usize, [Metric; 4]); 2] = [
    (8, [Metric::Floor8PerSec, Metric::Floor8P50Ms, Metric::Floor8P99Ms, Metric::Floor8CpuUs]),
    (32, [Metric::Floor32PerSec, Metric::Floor32P50Ms, Metric::Floor32P99Ms, Metric::Floor32CpuUs]),
];

/// Runs both shapes against `hub` with `n` streams open; false when a stream did not open or
/// an accepted event did not arrive.
pub async fn run(hub: &Running, sources: &load::Sources, n: usize, window: Duration, results: &mut Results) -> bool {
    let (streams, _) =
        load::open(sources, |i| hub.stream_addr(i), n, |i| hub.stream_path(i), None, Duration::from_secs(60)).await;
    let tally = Arc::clone(&streams.tally);
    let opened = tally.opened.load(Ordering::Relaxed);
    let mut ok = opened == n;
    for (publishers, [per_sec, p50, p99, cpu_us]) in SHAPES {
        let before = tally.events.load(Ordering::Relaxed);
        let cpu = load::cpu_seconds(&hub.pids());
        let (accepted, rate, mut latencies) = closed_loop(hub, publishers, n, window).await;
        let cpu = load::cpu_seconds(&hub.pids()) - cpu;
        results.add(hub.kind, cpu_us, n, cpu * 1e6 / accepted.max(1) as f64);
        results.add(hub.kind, per_sec, n, rate);
        results.add(hub.kind, p50, n, percentile(&mut latencies, 50.0) as f64 / 1e6);
        results.add(hub.kind, p99, n, percentile(&mut latencies, 99.0) as f64 / 1e6);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tally.events.load(Ordering::Relaxed) - before < accepted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delivered = tally.events.load(Ordering::Relaxed) - before;
        if delivered < accepted {
            results.note(format!(
                "{}: the unicast floor at {publishers} publishers delivered {delivered} of {accepted} accepted events.",
                hub.kind.name()
            ));
            ok = false;
        }
    }
    streams.close().await;
    ok
}

/// `publishers` closed loops for `window`, each on its own connection, each event to the next
/// user in turn: events accepted, accepted per second, and each accepted publish's round trip (ns).
async fn closed_loop(hub: &Running, publishers: usize, users: usize, window: Duration) -> (u64, f64, Vec<u64>) {
    let latencies = Mutex::new(Vec::new());
    let started = Instant::now();
    let publisher = |p: usize| {
        let latencies = &latencies;
        async move {
            let mut conn = Conn::new(hub.addr);
            let mut mine = Vec::with_capacity(200_000);
            let mut round = 0;
            while started.elapsed() < window {
                let user = (p + publishers * round) % users;
                let sent = now_nanos();
                let body = format!(r#"{{"to":"u{user}","event":"message","data":"{{\"t\":{sent}}}"}}"#);
                if let Ok((202, _)) = conn.post("/api/events", "application/json", body.as_bytes()).await {
                    mine.push(now_nanos().saturating_sub(sent));
                }
                round += 1;
            }
            latencies.lock().map(|mut l| l.extend(mine)).ok();
        }
    };
    crate::futures_join_all((0..publishers).map(publisher)).await;
    let latencies = latencies.into_inner().unwrap_or_default();
    let accepted = latencies.len() as u64;
    (accepted, accepted as f64 / started.elapsed().as_secs_f64(), latencies)
}
