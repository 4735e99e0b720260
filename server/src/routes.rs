//! The HTTP surface: [`app`] builds the router the binary serves and the tests drive.
//!
//! - `stream`: `GET /stream-sse`, the event streams.
//! - `publish`: `POST /api/events`.
//! - `ops`: `GET /api/users`, `/api/topics`, `/healthz`, `/metrics`.

mod ops;
pub(crate) mod publish;
mod stream;

pub use crate::transport::StreamSettings;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::AppError;
use crate::hub::Hub;
use crate::telemetry::redact_query;
use app::console::{shell, App};
use axum::extract::FromRef;
use axum::http::{header, HeaderValue, Method, Request};
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub auth: Auth,
    pub streams: StreamSettings,
    /// Largest event data in bytes (`--max-data`).
    pub max_data: usize,
    /// The topic templates streams ask for, each compiled once.
    pub selectors: std::sync::Arc<crate::hub::selector::Selectors>,
    /// The Mercure endpoint; `None` when it is off.
    pub mercure: Option<std::sync::Arc<crate::mercure::Mercure>>,
    /// Shared: the state is cloned for every request, and the options are a dozen strings that
    /// only the console's pages read.
    pub leptos_options: std::sync::Arc<LeptosOptions>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        LeptosOptions::clone(&state.leptos_options)
    }
}

pub fn app(state: AppState, config: &Config) -> Router {
    let options = LeptosOptions::clone(&state.leptos_options);
    let api = Router::new()
        .route("/users", get(ops::users))
        .route("/topics", get(ops::topics))
        .route("/tickets", post(ops::ticket))
        .route("/info", get(ops::info))
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed });
    let router = Router::new()
        // HEAD would run the GET handler and spend a ticket on a body nobody reads.
        .route(
            crate::transport::STREAM_PATH,
            get(stream::stream).head(|| async { ([(header::ALLOW, "GET")], AppError::MethodNotAllowed) }),
        )
        // Not in the nest below: the publish path, the one publishers hit most, skips its prefix
        // rewriting.
        .route(crate::transport::PUBLISH_PATH, post(publish::publish).fallback(|| async { AppError::MethodNotAllowed }))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .nest("/api", api)
        .leptos_routes(&state, generate_route_list(App), move || shell(options.clone()));
    let tidings = crate::assets::serve_site(router).layer(cors(&config.cors_origin, config.jwt_secret.is_some()));
    // Mercure's routes answer CORS their own way (credentials, its origin lists).
    let mercure = match &state.mercure {
        Some(mercure) => crate::mercure::routes(mercure),
        None => crate::mercure::routes_off(),
    };
    tidings
        .merge(mercure)
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            tracing::debug_span!("request", method = %request.method(), uri = %redact_query(request.uri()))
        }))
        .with_state(state)
}

/// Any origin by default, as the original allowed `*`; `--cors-origin` lists the allowed ones.
/// With auth on only listed origins are allowed (none by default, so `null` never is unless
/// listed), and credentials are never allowed: tokens travel in headers, not cookies.
///
/// Answers vary with the `Origin` only when origins are listed: with `*` they are the same for
/// every origin (and preflights name fixed methods and headers), so no `Vary` is sent, which also
/// spares every request the header's rebuilding.
fn cors(origins: &[String], auth: bool) -> CorsLayer {
    let (allow, vary) = if origins.is_empty() && !auth {
        (AllowOrigin::any(), Vec::new())
    } else {
        (AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok())), vec![header::ORIGIN])
    };
    CorsLayer::new()
        .allow_origin(allow)
        .vary(vary)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("last-event-id")])
        .max_age(Duration::from_secs(3600))
}
