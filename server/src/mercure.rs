//! The Mercure protocol on top of the hub (draft-dunglas-mercure, as the Symfony component and
//! API Platform speak it): `GET /.well-known/mercure?topic=...` subscribes, a form `POST` to the
//! same path publishes. Updates go through the same hub, history and store as Tidings' own API,
//! so a Mercure publisher reaches Tidings streams about the same topics and the other way round,
//! on one node or across a cluster.
//!
//! - `settings`: the keys and directives, read from the Mercure hub's own environment names.
//! - `jwt`: the `mercure` claim, and where a request carries its token.
//! - `subscribe`, `publish`: the two sides of the endpoint.

mod jwt;
mod publish;
pub mod settings;
mod subscribe;

pub use settings::MercureSettings;

use crate::routes::AppState;
use crate::transport::MERCURE_PATH;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use settings::Origins;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The Mercure routes, with Mercure's CORS: credentials (the `mercureAuthorization` cookie)
/// allowed from the listed origins only.
pub fn routes(settings: &MercureSettings) -> Router<AppState> {
    let router = Router::new().route(MERCURE_PATH, get(subscribe::subscribe).post(publish::publish));
    match cors(&settings.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// The Mercure path on a hub started without it: a JSON 404 that says how to turn it on.
pub fn routes_off() -> Router<AppState> {
    Router::new().route(MERCURE_PATH, get(off).post(off))
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
