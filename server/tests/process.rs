//! The real `tidings` binary: flags, logs, shutdown on SIGTERM, and the descriptor limit.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{signal, spawn, spawn_with_nofile};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Secrets of the shortest length the hub accepts (32 bytes).
const CLI_SECRET: &str = "cli-secret-of-thirty-two-bytes-x";
const LOG_SECRET: &str = "log-secret-of-thirty-two-bytes-x";

/// `--help` lists the flags; `--version` names the binary.
#[tokio::test]
async fn help_lists_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings")).arg("--help").output().await.unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--history",
        "--retry",
        "--keep-alive",
        "--stream-timeout",
        "--tick-interval",
        "--max-connections-per-user",
        "--max-connections",
        "--max-data",
        "--max-queue",
        "--cors-origin",
        "TIDINGS_HISTORY",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tidings")).arg("--version").output().await.unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("tidings "));
}

/// SIGTERM ends every stream within 1 s and the process exits 0 within 5 s; each stream logs
/// one line when it opens and one when it closes, with the user and the duration.
#[tokio::test]
async fn sigterm_ends_streams_and_exits_cleanly() {
    let (mut child, base, mut logs) = spawn(&[]).await;
    let mut stream = reqwest::get(format!("{base}/stream-sse?user=leaving")).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.unwrap().is_some());

    let signalled = Instant::now();
    signal(&child, "TERM");
    let ended =
        tokio::time::timeout(Duration::from_secs(1), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the stream did not end within 1 s of SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.expect("exits within 5 s").unwrap();
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));

    let mut lines = Vec::new();
    while let Ok(line) = logs.try_recv() {
        lines.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let opened = lines.iter().filter(|l| l["message"] == "stream opened" && l["user"] == "leaving").count();
    let closed: Vec<_> = lines.iter().filter(|l| l["message"] == "stream closed" && l["user"] == "leaving").collect();
    assert_eq!(opened, 1, "{lines:?}");
    assert_eq!(closed.len(), 1, "{lines:?}");
    assert!(closed[0]["duration_s"].is_string() || closed[0]["duration_s"].is_number(), "{lines:?}");
}

/// `tidings token` prints a token the hub accepts.
#[tokio::test]
async fn token_command_prints_a_working_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["token", "--user", "amy", "--ttl", "1h"])
        .env("TIDINGS_JWT_SECRET", CLI_SECRET)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (mut child, base, _) = spawn(&["--jwt-secret", CLI_SECRET]).await;
    let response = reqwest::get(format!("{base}/stream-sse?token={token}")).await.unwrap();
    assert_eq!(response.status(), 200);
    let token_for = |args: &'static [&'static str]| async move {
        let out =
            Command::new(env!("CARGO_BIN_EXE_tidings")).args(args).env("TIDINGS_JWT_SECRET", CLI_SECRET).output().await;
        let out = out.unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap().trim().to_owned(), out.stderr)
    };
    let (ok, topics, _) = token_for(&["token", "--user", "amy", "--subscribe", "orders/{id}"]).await;
    assert!(ok);
    let topic = reqwest::get(format!("{base}/stream-sse?token={topics}&topic=orders%2F1")).await.unwrap();
    assert_eq!(topic.status(), 200);
    let other = reqwest::get(format!("{base}/stream-sse?token={topics}&topic=users%2F1")).await.unwrap();
    assert_eq!(other.status(), 403);
    let (ok, publisher, _) = token_for(&["token", "--publish-topic", "orders/{id}"]).await;
    assert!(ok);
    let client = reqwest::Client::new();
    let publish =
        |body: serde_json::Value| client.post(format!("{base}/api/events")).bearer_auth(&publisher).json(&body).send();
    assert_eq!(publish(serde_json::json!({"topic": "orders/1", "data": 1})).await.unwrap().status(), 202);
    assert_eq!(publish(serde_json::json!({"topic": "users/1", "data": 1})).await.unwrap().status(), 403);
    let (ok, _, stderr) = token_for(&["token", "--subscribe", "orders/{id"]).await;
    assert!(!ok && String::from_utf8_lossy(&stderr).contains("not closed"));
    let missing = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["token", "--user", "a"])
        .env_remove("TIDINGS_JWT_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    child.kill().await.unwrap();
}

/// A hub whose log pipe is gone (the reader of its stderr exited) goes on serving: a log line
/// it cannot write is dropped, never a panic in the request that logged it.
#[tokio::test]
async fn a_closed_log_pipe_breaks_nothing() {
    let (mut child, base, logs) = spawn(&[]).await;
    drop(logs);
    let client = reqwest::Client::new();
    for i in 0..3 {
        // The first lines fill what the pipe still held; the next ones meet a closed pipe.
        let stream = client.get(format!("{base}/stream-sse?user=u{i}")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let published = client
            .post(format!("{base}/api/events"))
            .json(&serde_json::json!({"to": format!("u{i}"), "data": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 202);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
    child.kill().await.unwrap();
}

/// A secret shorter than 32 bytes, by flag or by an empty or short `TIDINGS_JWT_SECRET`, stops
/// the hub and `tidings token` at start with a message saying why (and not the secret).
#[tokio::test]
async fn short_secrets_stop_the_binary() {
    let runs: [(&[&str], Option<&str>); 4] = [
        (&["--addr", "127.0.0.1:0", "--jwt-secret", ""], None),
        (&["--addr", "127.0.0.1:0"], Some("")),
        (&["--addr", "127.0.0.1:0"], Some("short-secret")),
        (&["token", "--user", "amy"], Some("short-secret")),
    ];
    for (args, env) in runs {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        command.args(args).env_remove("TIDINGS_JWT_SECRET").stdout(Stdio::piped()).kill_on_drop(true);
        if let Some(secret) = env {
            command.env("TIDINGS_JWT_SECRET", secret);
        }
        let out = tokio::time::timeout(Duration::from_secs(10), command.output()).await.expect("exits").unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("at least 32 bytes"), "{args:?} {env:?}: {stderr}");
        assert!(!stderr.contains("short-secret"), "{stderr}");
        assert!(out.stdout.is_empty(), "no token is printed");
    }
}

/// Tokens and tickets never reach a log line, even with request tracing on.
#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["--addr", "127.0.0.1:0", "--tick-interval", "0", "--jwt-secret", LOG_SECRET])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = lines.next_line().await.unwrap().unwrap();
        log.push(line.clone());
        if let Some(at) = line.find("addr=") {
            break line[at + 5..].split_whitespace().next().unwrap().to_owned();
        }
    };
    let token = issue(LOG_SECRET, "amy");
    let client = reqwest::Client::new();
    let ticket: serde_json::Value = client
        .post(format!("http://{addr}/api/tickets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    for query in [
        format!("token={token}"),
        format!("ticket={ticket}"),
        format!("user=amy&TOKEN={token}"),
        format!("tok%65n={token}"),
    ] {
        let response = client.get(format!("http://{addr}/stream-sse?{query}")).send().await.unwrap();
        drop(response);
    }
    assert_eq!(client.get(format!("http://{addr}/healthz")).send().await.unwrap().status(), 200);
    signal(&child, "TERM");
    let _ = child.wait().await;
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("token=REDACTED"), "requests are logged, redacted: {log}");
    assert!(log.contains("ticket=REDACTED"), "{log}");
    assert!(!log.contains(&token), "a token reached the log");
    assert!(!log.contains(&ticket), "a ticket reached the log");
    assert!(!log.contains(LOG_SECRET), "the secret reached the log");
}

fn issue(secret: &str, user: &str) -> String {
    let claims = tidings::auth::Claims {
        sub: Some(user.into()),
        exp: tidings::auth::unix_now() + 600,
        publish: false.into(),
        subscribe: None,
    };
    tidings::auth::issue_token(secret, &claims).unwrap()
}

/// Started with a soft descriptor limit of 150 under a hard one of 300, the hub raises its soft
/// limit and admits 300 streams less its request connections (18) and its own 36; past them it answers 503 with the JSON error at once,
/// while publishing, `/healthz` and `/metrics` keep answering.
#[tokio::test]
async fn at_the_descriptor_limit_the_hub_stays_in_charge() {
    let (child, base, mut logs) = spawn_with_nofile("150:300", &["--keep-alive", "0"]).await;
    let listening: serde_json::Value = serde_json::from_str(&logs.recv().await.unwrap()).unwrap();
    assert_eq!(listening["max_connections"], 246, "{listening}");
    assert_eq!(listening["max_request_connections"], 18, "{listening}");

    let mut streams = Vec::new();
    for i in 0..246 {
        let stream = reqwest::get(format!("{base}/stream-sse?user=u{i}")).await.unwrap();
        assert_eq!(stream.status(), 200, "stream {i}");
        streams.push(stream);
    }
    let started = Instant::now();
    let refused = reqwest::get(format!("{base}/stream-sse?user=one-too-many")).await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| e.contains("connection limit")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once");

    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tidings_connections 246\n"), "{metrics}");
    let published = client
        .post(format!("{base}/api/events"))
        .json(&serde_json::json!({"to": "*", "data": "still publishing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    assert_eq!(published.json::<serde_json::Value>().await.unwrap()["connections"], 246);
    drop(streams);
    drop(child);
}

/// How many descriptors the process `pid` holds.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Under a 300-descriptor limit, 290 connections that open and say nothing (or half a request)
/// cannot lock anyone out: `/healthz`, a stream and a publish still answer at once.
#[tokio::test]
async fn idle_connections_cannot_fill_the_descriptor_table() {
    let (child, base, _logs) = spawn_with_nofile("150:300", &["--keep-alive", "0"]).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for i in 0..290 {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        }
        idle.push(tcp);
    }
    let client = reqwest::Client::new();
    let started = Instant::now();
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let stream = client.get(format!("{base}/stream-sse?user=in")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let published = client
        .post(format!("{base}/api/events"))
        .json(&serde_json::json!({"to": "in", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    assert!(started.elapsed() < Duration::from_secs(3), "answered within moments");
    assert!(descriptors(child.id().unwrap()) < 300);
    drop(idle);
    drop(child);
}

/// Readers that stop reading are cut after `--write-timeout` and their descriptors freed, so
/// `--max-connections` keeps bounding what streams hold: three rounds of 20 stalled readers
/// against a limit of 20 are each admitted, and the hub's descriptors fall back each time.
#[tokio::test]
async fn stalled_readers_give_their_descriptors_back() {
    let args = ["--keep-alive", "0", "--max-connections", "20", "--write-timeout", "1s", "--max-queue", "100000000"];
    let (child, base, _logs) = spawn(&args).await;
    let pid = child.id().unwrap();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let client = reqwest::Client::new();
    let baseline = descriptors(pid);
    let data = "x".repeat(60_000);
    for round in 0..3 {
        let mut stalled = Vec::new();
        for i in 0..20 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut tcp = socket.connect(addr).await.unwrap();
            let request = format!("GET /stream-sse?user=r{round}s{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes()).await.unwrap();
            stalled.push(tcp);
        }
        let metrics = || async { client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap() };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !metrics().await.contains("tidings_connections 20\n") {
            assert!(Instant::now() < deadline, "round {round}: 20 streams admitted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..10 {
            let batch: Vec<_> = (0..16).map(|_| serde_json::json!({"to": "*", "data": data})).collect();
            let published = client.post(format!("{base}/api/events")).json(&batch).send().await.unwrap();
            assert_eq!(published.status(), 202);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !metrics().await.contains("tidings_connections 0\n") || descriptors(pid) > baseline + 2 {
            assert!(Instant::now() < deadline, "round {round}: {} descriptors", descriptors(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(stalled);
    }
    drop(child);
}
