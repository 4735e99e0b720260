//! Faults at scale, on real processes and a real `redis-server` with append-only persistence:
//! Redis killed and restarted under steady publishing, and a node killed with SIGKILL while
//! 19,000 streams are on it. Whatever was acknowledged reaches every stream it is for, once and
//! in id order, including streams that reconnect to another node with their `Last-Event-ID`.
//!
//! 19,000 and not 20,000 streams: this machine allows 20,000 descriptors per process, and the
//! node needs a few of its own (as does this test, which holds the client side).
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::stores::RedisServer;
use common::{id_parts, remote, signal, spawn, start, PATIENCE};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Redis is killed (SIGKILL, so only what it fsynced survives) and started again while four
/// publishers on two nodes publish without pause. Each publish answered 202 reaches the
/// streams on both nodes exactly once, in id order and in each publisher's order; a publish
/// refused with 503 in the outage may or may not have been stored, and is never doubled.
#[tokio::test]
async fn redis_killed_under_steady_publishing() {
    let mut redis = RedisServer::start().await;
    let a = start(&["--redis-url", &redis.url()]).await;
    let b = start(&["--redis-url", &redis.url()]).await;
    let streams =
        [a.subscribe("user=amy", None).await.welcomed().await, b.subscribe("user=amy", None).await.welcomed().await];
    let (stop, restarted, after_restart) = (AtomicBool::new(false), AtomicBool::new(false), AtomicUsize::new(0));
    let publisher = |p: usize| {
        let (node, stop) = (if p.is_multiple_of(2) { &a } else { &b }, &stop);
        let (restarted, after_restart) = (&restarted, &after_restart);
        async move {
            let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let data = format!("{p}/{n}");
                match node.publish(json!({"to": "amy", "data": data})).await {
                    (202, ack) => {
                        acknowledged.push((ack["id"].as_str().unwrap().to_owned(), data));
                        if restarted.load(Ordering::Relaxed) {
                            after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    (503, _) => refused.push(data),
                    (status, answer) => panic!("publish answered {status}: {answer}"),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acknowledged, refused)
        }
    };
    let faults = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.restart().await;
        restarted.store(true, Ordering::Relaxed);
        // Publishing resumes once the nodes reconnect; let it go on a while.
        let deadline = tokio::time::Instant::now() + PATIENCE * 4;
        while after_restart.load(Ordering::Relaxed) < 400 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let (results, ()) = tokio::join!(futures::future::join_all((0..4).map(publisher)), faults);
    let acknowledged: usize = results.iter().map(|(acked, _)| acked.len()).sum();
    let refused: Vec<&String> = results.iter().flat_map(|(_, refused)| refused).collect();
    let counts: Vec<(usize, usize)> = results.iter().map(|(acked, refused)| (acked.len(), refused.len())).collect();
    assert!(after_restart.load(Ordering::Relaxed) >= 400, "publishing went on after the restart: {counts:?}");
    assert!(!refused.is_empty(), "the outage was seen");

    for mut stream in streams {
        let mut delivered = Vec::new();
        while delivered.len() < acknowledged {
            let event = stream.next().await;
            if refused.contains(&&event.data) {
                continue; // stored before the crash, its answer lost: allowed, once
            }
            delivered.push(event);
        }
        stream.expect_silence(Duration::from_millis(300)).await;
        let ids: Vec<(u64, u64)> = delivered.iter().map(|e| id_parts(&e.id)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order, none twice");
        for (acked, _) in &results {
            let prefix = acked[0].1.split('/').next().unwrap().to_owned() + "/";
            let got: Vec<(String, String)> = delivered
                .iter()
                .filter(|e| e.data.starts_with(&prefix))
                .map(|e| (e.id.clone(), e.data.clone()))
                .collect();
            assert_eq!(&got, acked, "every acknowledged event, in the publisher's order");
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Streams held on the node killed below.
const STREAMS: usize = 19_000;
/// Streams being opened at once: fewer than the nodes' 256 request connections, so the storm
/// never fills the cap and the publisher's kept-alive connection is not closed to make room
/// (a publisher must be ready for that; this test checks what was stored, not retries).
const CONNECTING: usize = 128;

/// A node holding 19,000 streams is killed with SIGKILL while events are published on
/// another. Every stream reconnects to the survivor with the id of the last event it got and
/// receives everything published since, once: the topic events published around the kill and
/// one event of its own published while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_19000_streams() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let redis = RedisServer::start().await;
    let url = redis.url();
    let args = ["--redis-url", &url, "--history", "50000", "--max-request-connections", "256", "--stream-timeout", "0"];
    let (doomed, doomed_base, _) = spawn(&args).await;
    let (mut survivor_child, survivor_base, mut logs) = spawn(&args).await;
    tokio::spawn(async move {
        loop {
            if let Ok(Some(st)) = survivor_child.try_wait() {
                eprintln!("SURVIVOR EXIT {st:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::spawn(async move {
        while let Some(l) = logs.recv().await {
            if !l.contains("INFO") {
                eprintln!("{l}");
            }
        }
    });
    let survivor = remote(&survivor_base);
    let addr = |base: &str| base.trim_start_matches("http://").parse::<SocketAddr>().unwrap();
    let (first, second) = (addr(&doomed_base), addr(&survivor_base));

    let tally = Arc::new(Tally::default());
    let done = CancellationToken::new();
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let holders: Vec<_> = (0..STREAMS)
        .map(|i| tokio::spawn(hold(i, [first, second], Arc::clone(&tally), Arc::clone(&connecting), done.clone())))
        .collect();
    tally.wait(|t| t.welcomed.load(Ordering::Relaxed) == STREAMS, "every stream opened on the first node").await;

    let mut topic_events = vec![survivor.publish_id(json!({"topic": "all", "data": "t0"})).await];
    tally.wait(|t| t.events.load(Ordering::Relaxed) == STREAMS, "the first event reached every stream").await;

    // Topic events go on around the kill; each stream's own event is published while it is away.
    let steady = async {
        let mut ids = Vec::new();
        for n in 1..=20 {
            ids.push(survivor.publish_id(json!({"topic": "all", "data": format!("t{n}")})).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids
    };
    let kill = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(&doomed, "KILL");
        let mut own = Vec::with_capacity(STREAMS);
        for chunk in (0..STREAMS).collect::<Vec<_>>().chunks(1000) {
            let events: Vec<_> =
                chunk.iter().map(|i| json!({"to": format!("u{i}"), "data": format!("u{i}")})).collect();
            let (status, answers) = survivor.publish(json!(events)).await;
            assert_eq!(status, 202, "{answers}");
            own.extend(answers.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        }
        own
    };
    let (steady, own) = tokio::join!(steady, kill);
    topic_events.extend(steady);
    tally.wait(|t| t.welcomed.load(Ordering::Relaxed) == 2 * STREAMS, "every stream reconnected to the survivor").await;
    let expected = STREAMS * (topic_events.len() + 1);
    tally.wait(|t| t.events.load(Ordering::Relaxed) >= expected, "every stream got what it missed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.cancel();

    for (i, holder) in holders.into_iter().enumerate() {
        let got = holder.await.unwrap();
        let mut wanted: Vec<&str> = topic_events.iter().map(String::as_str).collect();
        wanted.push(&own[i]);
        wanted.sort_by_key(|id| id_parts(id));
        assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), wanted, "stream {i}: all of it, once, in order");
    }
}

/// What the streams have seen so far, all together.
#[derive(Default)]
struct Tally {
    /// Streams opened (the hub's first block read), counting reopenings.
    welcomed: AtomicUsize,
    /// Events received, over all streams.
    events: AtomicUsize,
}

impl Tally {
    async fn wait(&self, reached: impl Fn(&Tally) -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE * 12;
        while !reached(self) {
            let (welcomed, events) = (self.welcomed.load(Ordering::Relaxed), self.events.load(Ordering::Relaxed));
            assert!(tokio::time::Instant::now() < deadline, "{what}: not in time ({welcomed} opened, {events} events)");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Stream `i` (user `u{i}` and the topic `all`), on the first node, then, once that one is gone,
/// on the second with the `Last-Event-ID` of the last event it got; returns the ids of the
/// events it received, until `done`.
async fn hold(
    i: usize,
    nodes: [SocketAddr; 2],
    tally: Arc<Tally>,
    connecting: Arc<Semaphore>,
    done: CancellationToken,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    for node in nodes {
        // Held until the hub's first block, so at most CONNECTING streams are being opened.
        let mut permit = Some(connecting.acquire().await.unwrap());
        // A source address of its own for every 4,000 streams, so ports never run short here
        // whatever else holds connections from 127.0.0.1.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 3, 1 + (i / 4000) as u8], 0))).unwrap();
        let mut socket = socket.connect(node).await.unwrap();
        let resume = cursor.as_ref().map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        let head = format!("GET /stream-sse?user=u{i}&topic=all HTTP/1.1\r\nHost: hub\r\n{resume}\r\n");
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut reader = Blocks::default();
        loop {
            let block = tokio::select! {
                block = reader.next(&mut socket) => block,
                () = done.cancelled() => return ids,
            };
            let Some(block) = block else { break };
            let id = block.lines().find_map(|line| line.strip_prefix("id: ")).map(str::to_owned);
            let is_event = block.lines().any(|line| line.starts_with("data: "));
            match (id, is_event) {
                (Some(id), true) => {
                    tally.events.fetch_add(1, Ordering::Relaxed);
                    ids.push(id.clone());
                    cursor = Some(id);
                }
                // The hub's opening block: the position the stream starts from.
                (Some(id), false) if permit.is_some() => {
                    permit = None;
                    tally.welcomed.fetch_add(1, Ordering::Relaxed);
                    cursor.get_or_insert(id);
                }
                _ => {}
            }
        }
    }
    done.cancelled().await;
    ids
}

/// SSE blocks read from a raw HTTP/1.1 response (chunked or not: a chunk-size line is its own
/// short line without a colon, and is skipped).
#[derive(Default)]
struct Blocks {
    buffer: Vec<u8>,
    headers_done: bool,
}

impl Blocks {
    /// The next block of lines, or `None` once the connection ends.
    async fn next(&mut self, socket: &mut tokio::net::TcpStream) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block).replace('\r', "");
                if !self.headers_done {
                    self.headers_done = true;
                    continue;
                }
                let lines: Vec<&str> = text.lines().filter(|l| l.contains(':') || l.is_empty()).collect();
                return Some(lines.join("\n"));
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self
                    .buffer
                    .extend_from_slice(&chunk[..n].iter().copied().filter(|b| *b != b'\r').collect::<Vec<_>>()),
            }
        }
    }
}
