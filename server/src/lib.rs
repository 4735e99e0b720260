//! Tidings: a Server-Sent Events hub with replay, a publish API and a live console.
//!
//! # Layout
//! - [`assets`]: the console's built files, embedded in release binaries.
//! - [`auth`]: tokens, tickets and who may listen or publish.
//! - [`config`]: every setting, read once from flags and `TIDINGS_*` variables.
//! - [`hub`]: connected streams, the history, and publishing.
//! - [`routes`]: the HTTP surface ([`routes::app`] builds the router).
//! - [`error`]: the JSON error every refusal uses.
//! - [`ticker`]: the original two-second scheduler.
//! - [`telemetry`]: logging, with secrets redacted.
//! - [`limits`]: the file-descriptor limit and the connection ceiling derived from it.
//! - `plain`: cleartext HTTP, with event streams written straight to their sockets.

pub mod assets;
pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod limits;
mod plain;
pub mod routes;
pub mod telemetry;
pub mod ticker;

use auth::Auth;
use config::{timer, Config};
use hub::{Hub, HubSettings, StoreConfig};
use leptos::prelude::LeptosOptions;
use routes::{AppState, StreamSettings};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long connections get to finish once shutdown starts; streams end at once, so this only
/// bounds requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Builds the state the router serves from the configuration, opening the history's store.
pub async fn state(config: &Config, max_connections: usize) -> std::io::Result<AppState> {
    let settings = HubSettings {
        history: config.history,
        history_bytes: config.history_bytes,
        retry: config.retry,
        max_queue: config.max_queue,
        max_per_user: config.max_connections_per_user,
        max_connections,
    };
    let store = match (&config.data_dir, &config.redis_url) {
        (_, Some(url)) => StoreConfig::Redis(url.clone()),
        (Some(dir), None) => StoreConfig::File(dir.clone()),
        (None, None) => StoreConfig::Memory,
    };
    let hub = Hub::open(settings, &store).await?;
    let auth = match &config.jwt_secret {
        Some(secret) => Auth::with_secret(secret, config.ticket_ttl),
        None => Auth::open(),
    };
    Ok(AppState {
        hub,
        auth,
        streams: StreamSettings { keep_alive: timer(config.keep_alive), timeout: timer(config.stream_timeout) },
        max_data: config.max_data,
        leptos_options: leptos_options(config),
    })
}

/// The console's build settings. cargo-leptos passes them as `LEPTOS_*` variables under
/// `cargo leptos watch`; a released binary runs with none set, so each has a default here.
fn leptos_options(config: &Config) -> LeptosOptions {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    LeptosOptions::builder()
        .output_name(var("LEPTOS_OUTPUT_NAME").unwrap_or_else(|| "tidings".into()))
        .site_root(var("LEPTOS_SITE_ROOT").unwrap_or_else(|| config.site_root.display().to_string()))
        .site_pkg_dir(var("LEPTOS_SITE_PKG_DIR").unwrap_or_else(|| "pkg".into()))
        .site_addr(config.addr)
        .reload_port(var("LEPTOS_RELOAD_PORT").and_then(|p| p.parse().ok()).unwrap_or(3001))
        .env(var("LEPTOS_ENV").map_or(leptos::config::Env::PROD, |e| e.as_str().into()))
        .build()
}

/// Serves the hub on `listener` until `shutdown` resolves, then ends every stream and returns
/// within [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = limits::max_connections(config.max_connections);
    let state = state(&config, max_connections).await?;
    let hub = state.hub.clone();
    tokio::spawn(ticker::run(hub.clone(), timer(config.tick_interval)));
    let router = routes::app(state, &config);
    tracing::info!(addr = %listener.local_addr()?, max_connections, "listening");

    let store = hub.clone();
    let served = if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
        serve_tls(listener, tls, router, hub, shutdown).await
    } else {
        plain::serve(listener, router, hub, shutdown, SHUTDOWN_GRACE).await
    };
    store.shutdown();
    store.close().await;
    served
}

/// HTTPS with HTTP/2 and HTTP/1.1 (negotiated by ALPN), through rustls.
async fn serve_tls(
    listener: TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    router: axum::Router,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: ending every stream");
        hub.shutdown();
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?.handle(handle).serve(router.into_make_service()).await
}
