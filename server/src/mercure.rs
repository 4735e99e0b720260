//! The Mercure protocol on top of the hub (draft-dunglas-mercure, as the Symfony component and
//! API Platform speak it): `GET /.well-known/mercure?topic=...` subscribes, a form `POST` to the
//! same path publishes. Updates go through the same hub, history and store as Tidings' own API,
//! so a Mercure publisher reaches Tidings streams about the same topics and the other way round,
//! on one node or across a cluster.
//!
//! - `settings`: the keys and directives, read from the Mercure hub's own environment names.
//! - `jwt`: the `mercure` claim, and where a request carries its token.
//! - `subscribe`, `publish`: the two sides of the endpoint.
//! - `subscriptions`: active subscriptions, announced and listed (the `subscriptions` directive).

mod jwt;
mod publish;
pub mod settings;
mod subscribe;
pub mod subscriptions;

pub use settings::MercureSettings;

use crate::hub::selector::Selectors;
use crate::hub::Hub;
use crate::routes::AppState;
use crate::transport::MERCURE_PATH;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use settings::Origins;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The Mercure endpoint of a hub: its settings, and the registry of active subscriptions when
/// they are on.
pub struct Mercure {
    pub settings: MercureSettings,
    pub subscriptions: Option<subscriptions::Registry>,
}

impl Mercure {
    /// Starts what the settings turn on (the subscriptions registry follows `hub`).
    pub fn start(settings: MercureSettings, hub: &Hub, selectors: &Selectors) -> Mercure {
        let subscriptions = settings.subscriptions.then(|| subscriptions::Registry::start(hub, selectors));
        Mercure { settings, subscriptions }
    }
}

/// The Mercure routes, with Mercure's CORS: credentials (the `mercureAuthorization` cookie)
/// allowed from the listed origins only.
pub fn routes(mercure: &Mercure) -> Router<AppState> {
    use subscriptions::{api, SUBSCRIPTIONS_PATH};
    // Always routed: with the feature off they say how to turn it on.
    let router = Router::new()
        .route(MERCURE_PATH, get(subscribe::subscribe).post(publish::publish))
        .route(SUBSCRIPTIONS_PATH, get(api::all))
        .route(&format!("{SUBSCRIPTIONS_PATH}/{{topic}}"), get(api::for_topic))
        .route(&format!("{SUBSCRIPTIONS_PATH}/{{topic}}/{{subscriber}}"), get(api::one));
    match cors(&mercure.settings.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// The Mercure path on a hub started without it: a JSON 404 that says how to turn it on.
pub fn routes_off() -> Router<AppState> {
    Router::new().route(MERCURE_PATH, get(off).post(off)).route(&format!("{MERCURE_PATH}/{{*rest}}"), get(off))
}

async fn off() -> crate::error::AppError {
    subscribe::off()
}

fn cors(origins: &Origins) -> Option<CorsLayer> {
    let allow = match origins {
        Origins::None => return None,
        // Credentials cannot go with `*`: each origin is answered with itself.
        Origins::Any => AllowOrigin::mirror_request(),
        Origins::List(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CACHE_CONTROL,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static("last-event-id")])
            .max_age(Duration::from_secs(3600)),
    )
}
