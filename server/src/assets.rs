//! The console's built files (WASM, JS, CSS, anything in `public/`). With the `embed` feature
//! they are compiled into the binary, so copying one file deploys the hub; without it (as under
//! `cargo leptos watch`) they are read from `--site-root`.
//!
//! Embedded files are served with their content type, a strong `ETag` (304 on `If-None-Match`),
//! and the precompressed `.br` or `.gz` variant when the client accepts it.

#[cfg(feature = "embed")]
mod embedded {
    use axum::body::Body;
    use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    #[derive(rust_embed::Embed)]
    #[folder = "../target/site"]
    struct Site;

    /// Serves `uri`'s path from the embedded site, or 404.
    pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
        let path = uri.path().trim_start_matches('/');
        let Some(original) = Site::get(path) else {
            return crate::error::AppError::NotFound(format!("no such file: /{path}")).into_response();
        };
        let accepts = |coding: &str| {
            headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|c| c.split(';').next().is_some_and(|c| c.trim().eq_ignore_ascii_case(coding)))
        };
        let (file, encoding) = [("br", ".br"), ("gzip", ".gz")]
            .into_iter()
            .filter(|(coding, _)| accepts(coding))
            .find_map(|(coding, suffix)| Site::get(&format!("{path}{suffix}")).map(|f| (f, Some(coding))))
            .unwrap_or((original.clone(), None));
        let etag = format!(
            "\"{}{}\"",
            file.metadata.sha256_hash().iter().take(16).map(|b| format!("{b:02x}")).collect::<String>(),
            encoding.map_or(String::new(), |e| format!("-{e}"))
        );
        let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            Response::new(Body::from(file.data.into_owned()))
        };
        let out = response.headers_mut();
        let mime = original.metadata.mimetype();
        if let Ok(value) = HeaderValue::from_str(mime) {
            out.insert(header::CONTENT_TYPE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&etag) {
            out.insert(header::ETAG, value);
        }
        // Names are not hashed: let browsers cache, but revalidate with the ETag.
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let Some(encoding) = encoding {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    }
}

use crate::routes::AppState;
use axum::Router;

/// Adds static-file serving to `router`: from the binary with `embed`, from disk otherwise.
pub fn serve_site(router: Router<AppState>) -> Router<AppState> {
    #[cfg(feature = "embed")]
    {
        router.fallback(embedded::serve)
    }
    #[cfg(not(feature = "embed"))]
    {
        router.fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::console::shell))
    }
}
