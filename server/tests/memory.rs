//! What an idle stream keeps on the hub's heap, for as long as it lives. The hub's memory per
//! stream is what lets one process hold tens of thousands of them (`make bench` measures the
//! resident size); this test holds the heap part of it, counted by DHAT's allocator, so a buffer
//! kept by mistake for a stream's life shows here and not months later in a benchmark.
//!
//! One test in this binary: the allocator counts the whole process.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Opens a stream for each of `users` on raw sockets and waits for each one's response head.
fn open_streams(addr: SocketAddr, users: std::ops::Range<usize>, into: &mut Vec<TcpStream>) {
    for user in users {
        let mut socket = TcpStream::connect(addr).expect("connects");
        socket.set_read_timeout(Some(common::PATIENCE)).expect("a read timeout");
        write!(socket, "GET /stream-sse?user=u{user} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .expect("sends its request");
        let mut first = [0u8; 64];
        let read = socket.read(&mut first).expect("an answer");
        assert!(first[..read].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..read]));
        into.push(socket);
    }
}

/// The heap bytes in use once the hub has settled: the same over 200 ms (at most 5 s).
async fn settled_heap() -> u64 {
    let mut last = dhat::HeapStats::get().curr_bytes;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = dhat::HeapStats::get().curr_bytes;
        if now == last {
            break;
        }
        last = now;
    }
    last as u64
}

/// An idle stream keeps its task (its writer's state), its socket's registration, its
/// subscription and its user's entries: about 2 KB. Not its response head once written (half a
/// kilobyte), nor room for the frames it wrote last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_keeps_two_kilobytes_of_heap() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let hub = common::start(&["--keep-alive", "0", "--stream-timeout", "0", "--max-connections-per-user", "10"]).await;
    let addr: SocketAddr = hub.base.trim_start_matches("http://").parse().expect("the hub's address");
    const FIRST: usize = 200;
    const MORE: usize = 1_000;
    // The first streams pay for what grows once (the runtime's and the hub's tables); what the
    // next ones add is what a stream costs.
    let sockets = tokio::task::spawn_blocking(move || {
        let mut sockets = Vec::with_capacity(FIRST + MORE);
        open_streams(addr, 0..FIRST, &mut sockets);
        sockets
    })
    .await
    .expect("the first streams open");
    let at_first = settled_heap().await;
    let sockets = tokio::task::spawn_blocking(move || {
        let mut sockets = sockets;
        open_streams(addr, FIRST..FIRST + MORE, &mut sockets);
        sockets
    })
    .await
    .expect("the next streams open");
    let after = settled_heap().await;
    let per_stream = after.saturating_sub(at_first) / MORE as u64;
    eprintln!("an idle stream keeps {per_stream} bytes of heap");
    assert!(per_stream <= 2_000, "an idle stream keeps {per_stream} bytes of heap (at most 2,000)");
    assert!(per_stream >= 1_000, "{per_stream} bytes a stream: the streams were not counted");
    drop(sockets);
    hub.stop().await;
}
