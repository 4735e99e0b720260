//! The one error type at the HTTP edge. Every refusal is JSON `{"error": "..."}` with the status
//! that says what the caller did wrong; a fault of the hub's own (`Internal`, `StoreUnavailable`)
//! is logged here and its detail is not sent.

use app::event::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub enum AppError {
    /// The request is malformed or names something invalid.
    BadRequest(String),
    /// No credential, or one that is malformed, badly signed or expired.
    Unauthorized(String),
    /// A valid credential that does not allow this.
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    /// The body is not JSON.
    UnsupportedMediaType(String),
    /// The body or the event's data is over a limit.
    PayloadTooLarge(String),
    /// The body did not arrive in time.
    RequestTimeout(String),
    /// The user already holds the most streams allowed.
    TooManyRequests(String),
    /// The hub cannot take this now (at its connection limit); try again later.
    Unavailable(String),
    /// The event store did not take a publish (Redis away, the database failing): the cause
    /// is logged, the client only told to retry.
    StoreUnavailable(String),
    /// A fault of the hub's own: logged, never detailed to the client.
    Internal(String),
}

/// What a client is told when the store refused its publish.
const STORE_UNAVAILABLE: &str = "the event store is unavailable; retry later";

impl From<crate::hub::StoreUnavailable> for AppError {
    fn from(e: crate::hub::StoreUnavailable) -> Self {
        AppError::StoreUnavailable(e.0)
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client sees.
    pub fn message(&self) -> String {
        match self {
            AppError::BadRequest(m)
            | AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::UnsupportedMediaType(m)
            | AppError::PayloadTooLarge(m)
            | AppError::RequestTimeout(m)
            | AppError::TooManyRequests(m)
            | AppError::Unavailable(m) => m.clone(),
            AppError::MethodNotAllowed => "method not allowed".into(),
            AppError::StoreUnavailable(_) => STORE_UNAVAILABLE.into(),
            AppError::Internal(_) => "internal error".into(),
        }
    }

    /// Logs the cause of a fault of the hub's own, which [`AppError::message`] leaves out.
    pub fn log_cause(&self) {
        match self {
            AppError::StoreUnavailable(cause) => tracing::warn!(%cause, "a publish was not stored"),
            AppError::Internal(cause) => tracing::error!(%cause, "request failed"),
            _ => {}
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log_cause();
        (self.status(), Json(ErrorBody { error: self.message() })).into_response()
    }
}
