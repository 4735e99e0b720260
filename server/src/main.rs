//! The `tidings` binary: read the configuration, start logging, serve until SIGINT or SIGTERM.

use clap::Parser;
use std::process::ExitCode;
use tidings::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tidings::telemetry::init(config.log_format);
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
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
