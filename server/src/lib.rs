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
//! - `listener`: accepting connections (cleartext or TLS), with timers and a cap on them.
//! - [`transport`]: an event stream on the wire, and every way it ends.

pub mod assets;
pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod limits;
mod listener;
pub mod mercure;
pub mod query;
pub mod routes;
pub mod telemetry;
pub mod ticker;
pub mod transport;

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
        history_ttl: timer(config.history_ttl),
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
    let mercure = mercure::MercureSettings::from_env(&mercure::settings::MercureEnv {
        publisher_key: config.mercure_publisher_jwt_key.clone(),
        publisher_alg: config.mercure_publisher_jwt_alg.clone(),
        subscriber_key: config.mercure_subscriber_jwt_key.clone(),
        subscriber_alg: config.mercure_subscriber_jwt_alg.clone(),
        directives: config.mercure_extra_directives.clone(),
    })
    .map_err(std::io::Error::other)?;
    let selectors = std::sync::Arc::<hub::selector::Selectors>::default();
    let mercure = mercure.map(|settings| std::sync::Arc::new(mercure::Mercure::start(settings, &hub, &selectors)));
    Ok(AppState {
        mercure,
        selectors,
        hub,
        auth,
        streams: StreamSettings {
            keep_alive: timer(config.keep_alive),
            timeout: timer(config.stream_timeout),
            write_timeout: config.write_timeout,
        },
        max_data: config.max_data,
        leptos_options: std::sync::Arc::new(leptos_options(config)),
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
    let budget = limits::budget(config.max_connections, config.max_request_connections);
    let max_connections = budget.streams;
    let state = state(&config, max_connections).await?;
    let hub = state.hub.clone();
    tokio::spawn(ticker::run(hub.clone(), timer(config.tick_interval)));
    let router = routes::app(state, &config);
    let max_request_connections = budget.request_connections;
    tracing::info!(addr = %listener.local_addr()?, max_connections, max_request_connections, "listening");

    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?.get_inner())
        }
        _ => None,
    };
    let settings = listener::ListenSettings {
        header_timeout: config.header_timeout,
        idle_timeout: timer(config.idle_timeout),
        write_timeout: config.write_timeout,
        max_request_connections,
        grace: SHUTDOWN_GRACE,
    };
    let served = listener::serve(listener, tls, router, hub.clone(), settings, shutdown).await;
    hub.shutdown();
    hub.close().await;
    served
}
