//! The real `tidings` binary: flags, logs, and shutdown on SIGTERM.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on a free port and returns it with its address, read from its log.
async fn spawn(args: &[&str]) -> (Child, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["--addr", "127.0.0.1:0", "--tick-interval", "0", "--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the tidings binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the server logs before it exits");
            let json: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
            if json["message"] == "listening" {
                return json["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("the server says where it listens");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, format!("http://{addr}"), rx)
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
    assert!(status.success());
}

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
