//! The `tidings` binary: read the configuration, start logging, serve until SIGINT or SIGTERM.

use clap::Parser;
use std::process::ExitCode;
use tidings::auth::{expiry_in, issue_token, Claims, PublishRight};
use tidings::config::{Command, Config};

/// Small per-event allocations from several threads are mimalloc's strength; glibc's malloc spent
/// a third of the publish path on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Token { user, publish, publish_topic, subscribe, ttl }) = &config.command {
        let publish = match publish_topic.as_slice() {
            [] => PublishRight::Any(*publish),
            topics => PublishRight::Topics(topics.to_vec()),
        };
        let subscribe = (!subscribe.is_empty()).then(|| subscribe.clone());
        let claims = Claims { sub: user.clone(), exp: 0, publish, subscribe };
        return print_token(config.jwt_secret.as_deref(), claims, *ttl);
    }
    tidings::telemetry::init(config.log_format);
    let listener = match listen(config.addr) {
        Ok(listener) => listener,
        Err(cause) => {
            tracing::error!(addr = %config.addr, %cause, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match tidings::serve(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(cause) => {
            tracing::error!(%cause, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Binds `addr` with a deep accept queue: a reconnect storm arrives all at once, and a full
/// queue drops connections that then wait a second for the retransmit.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accept queue's length (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 16_384;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// `tidings token`: prints a token signed with the hub's secret.
fn print_token(secret: Option<&str>, mut claims: Claims, ttl: std::time::Duration) -> ExitCode {
    let Some(secret) = secret else {
        eprintln!("tidings token: set --jwt-secret or TIDINGS_JWT_SECRET");
        return ExitCode::FAILURE;
    };
    if claims.sub.is_none() && claims.publish == PublishRight::Any(false) && claims.subscribe.is_none() {
        eprintln!("tidings token: give --user NAME, --publish, --publish-topic or --subscribe");
        return ExitCode::FAILURE;
    }
    let selectors = claims.subscribe.iter().flatten().chain(match &claims.publish {
        PublishRight::Topics(topics) => topics.as_slice(),
        PublishRight::Any(_) => &[],
    });
    for selector in selectors {
        if let Err(why) = tidings::hub::selector::Selector::parse(selector) {
            eprintln!("tidings token: {why}");
            return ExitCode::FAILURE;
        }
    }
    let exp = match expiry_in(ttl) {
        Ok(exp) => exp,
        Err(why) => {
            eprintln!("tidings token: --ttl {why}");
            return ExitCode::FAILURE;
        }
    };
    claims.exp = exp;
    match issue_token(secret, &claims) {
        Ok(token) => {
            #[allow(clippy::print_stdout)] // the token is this command's output
            {
                println!("{token}");
            }
            ExitCode::SUCCESS
        }
        Err(cause) => {
            eprintln!("tidings token: {cause}");
            ExitCode::FAILURE
        }
    }
}
