//! A holder: `tidings-bench hold`, the bench re-executed to hold a share of the streams, since
//! one process may hold at most this machine's descriptor limit (20,000) of them. It answers
//! the coordinator over stdin and stdout, one command and one answer a line:
//!
//! - `open <source> <first user> <count> <shift> <goal> <last-event-id or -> <path> <nodes>
//!   <in flight>` → `opened <opened> <failed>`: user `first user + k` streams from
//!   `<path><user>` on node `(user + shift) % nodes` (comma-separated), from loopback sources
//!   numbered from `<source>`, `<in flight>` connects at once; with a goal, `done` waits until
//!   each stream has seen that many events.
//! - `arm` → `armed`: latencies are recorded from now.
//! - `wait <events per stream> <timeout ms>` → `got <events since arm> <bucket>:<count> ...`,
//!   latencies in buckets of [`BUCKET_NANOS`].
//! - `count` → `count <events> <open streams>`
//! - `done <timeout ms>` → `done <streams at goal> <events> <ms from open to the last at goal>`
//! - `drop` → `dropped`: every stream closed.
//!
//! End of input ends it (the coordinator's drop of the pipe, or its exit).

use crate::load::{self, Sources, Streams, Tally};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The latency histogram's resolution.
pub const BUCKET_NANOS: u64 = 100_000;
/// The longest an `open` waits for its streams.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);

/// What the holder holds between commands.
#[derive(Default)]
struct Held {
    streams: Option<Streams>,
    tally: Arc<Tally>,
    /// Events seen when `arm` came.
    armed_at: u64,
    /// When the last `open` came.
    opened_at: Option<Instant>,
}

/// Serves commands until standard input ends, on one thread: six holders and six nodes share
/// two cores here, and a runtime of one thread per holder spends none of them on work stealing
/// or on a contended lock per event.
pub fn serve() -> std::process::ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(serve_lines()),
        Err(e) => {
            eprintln!("holder: no runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve_lines() -> std::process::ExitCode {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut held = Held::default();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match answer(&mut held, &words).await {
            Ok(answer) => answer,
            Err(e) => format!("error {e}"),
        };
        if out.write_all(format!("{answer}\n").as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    if let Some(streams) = held.streams.take() {
        streams.close().await;
    }
    std::process::ExitCode::SUCCESS
}

fn number<T: std::str::FromStr>(words: &[&str], at: usize) -> Result<T, String> {
    words.get(at).and_then(|w| w.parse().ok()).ok_or_else(|| format!("argument {at} of {:?}", words.first()))
}

async fn answer(held: &mut Held, words: &[&str]) -> Result<String, String> {
    match words.first().copied() {
        Some("open") => {
            held.opened_at = Some(Instant::now());
            if let Some(streams) = held.streams.take() {
                streams.close().await;
            }
            let (source, first, count, shift, goal) = (
                number::<usize>(words, 1)?,
                number::<usize>(words, 2)?,
                number::<usize>(words, 3)?,
                number::<usize>(words, 4)?,
                number::<u64>(words, 5)?,
            );
            let header = words.get(6).filter(|&&id| id != "-").map(|id| format!("Last-Event-ID: {id}"));
            let path = words.get(7).ok_or("no path")?.to_string();
            let nodes: Vec<SocketAddr> =
                words.get(8).ok_or("no nodes")?.split(',').filter_map(|a| a.parse().ok()).collect();
            let in_flight = number::<usize>(words, 9)?;
            if nodes.is_empty() {
                return Err("no nodes".into());
            }
            let tally = Arc::new(Tally::default());
            tally.goal.store(goal, Ordering::Relaxed);
            let node = |k: usize| nodes[(first + k + shift) % nodes.len()];
            let (streams, _) = load::open_into(
                Arc::clone(&tally),
                in_flight,
                &Sources::starting_at(source),
                node,
                count,
                |k| format!("{path}{}", first + k),
                header.as_deref(),
                OPEN_DEADLINE,
            )
            .await;
            held.streams = Some(streams);
            held.tally = Arc::clone(&tally);
            Ok(format!("opened {} {}", tally.opened.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed)))
        }
        Some("arm") => {
            held.tally.latencies.lock().map(|mut l| l.clear()).ok();
            held.armed_at = held.tally.events.load(Ordering::Relaxed);
            held.tally.recording.store(true, Ordering::Relaxed);
            Ok("armed".into())
        }
        Some("wait") => {
            let per_stream = number::<u64>(words, 1)?;
            let timeout = Duration::from_millis(number(words, 2)?);
            let tally = &held.tally;
            let target = held.armed_at + per_stream * tally.opened.load(Ordering::Relaxed) as u64;
            let started = Instant::now();
            while tally.events.load(Ordering::Relaxed) < target && started.elapsed() < timeout {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tally.recording.store(false, Ordering::Relaxed);
            let latencies = tally.latencies.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
            let mut buckets = BTreeMap::<u64, u64>::new();
            for nanos in latencies {
                *buckets.entry(nanos / BUCKET_NANOS).or_default() += 1;
            }
            let mut answer = format!("got {}", tally.events.load(Ordering::Relaxed) - held.armed_at);
            for (bucket, count) in buckets {
                answer.push_str(&format!(" {bucket}:{count}"));
            }
            Ok(answer)
        }
        Some("count") => {
            let tally = &held.tally;
            let open = tally.opened.load(Ordering::Relaxed) - tally.closed.load(Ordering::Relaxed);
            Ok(format!("count {} {open}", tally.events.load(Ordering::Relaxed)))
        }
        Some("done") => {
            let timeout = Duration::from_millis(number(words, 1)?);
            let tally = &held.tally;
            let started = Instant::now();
            while tally.streams_at_goal.load(Ordering::Relaxed) < tally.opened.load(Ordering::Relaxed)
                && started.elapsed() < timeout
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let took = held.opened_at.map_or(0, |at| at.elapsed().as_millis());
            // Whatever else is on its way (a duplicate would show as more than the goal).
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(format!(
                "done {} {} {took}",
                tally.streams_at_goal.load(Ordering::Relaxed),
                tally.events.load(Ordering::Relaxed)
            ))
        }
        Some("drop") => {
            if let Some(streams) = held.streams.take() {
                streams.close().await;
            }
            Ok("dropped".into())
        }
        other => Err(format!("unknown command {other:?}")),
    }
}
