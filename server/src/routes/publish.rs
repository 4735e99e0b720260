//! `POST /api/events`: one event (a JSON object) or a batch (a JSON array, each element answered
//! in order). Every refusal says what was wrong, with 400, 413 or 415.

use super::AppState;
use crate::error::AppError;
use app::event::PublishRequest;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    state.auth.require_publisher(&headers)?;
    require_json(&headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge("the request body is too large".into()),
        _ => AppError::BadRequest(format!("could not read the request body: {}", e.body_text())),
    })?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("malformed JSON: {e}")))?;
    match value {
        Value::Array(items) => publish_batch(&state, &items).await,
        single => {
            let request = validate(&state, &single)?;
            let ack = state.hub.publish(request).await.map_err(|e| AppError::Unavailable(e.0))?;
            Ok((StatusCode::ACCEPTED, Json(ack)).into_response())
        }
    }
}

/// Publishes each valid element; the answer lists, in order, an ack or the element's error.
async fn publish_batch(state: &AppState, items: &[Value]) -> Result<Response, AppError> {
    if items.is_empty() {
        return Err(AppError::BadRequest("an empty batch publishes nothing".into()));
    }
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let answer = match validate(state, item) {
            Ok(request) => match state.hub.publish(request).await {
                Ok(ack) => serde_json::to_value(ack),
                Err(e) => serde_json::to_value(BatchError { status: 503, error: e.0 }),
            },
            Err(e) => serde_json::to_value(BatchError { status: e.status().as_u16(), error: e.message() }),
        };
        answers.push(answer.unwrap_or(Value::Null));
    }
    Ok((StatusCode::ACCEPTED, Json(answers)).into_response())
}

#[derive(serde::Serialize)]
struct BatchError {
    status: u16,
    error: String,
}

fn validate(state: &AppState, value: &Value) -> Result<PublishRequest, AppError> {
    let request = PublishRequest::from_json(value).map_err(AppError::BadRequest)?;
    if request.data.len() > state.max_data {
        return Err(AppError::PayloadTooLarge(format!(
            "data is {} bytes; the limit is {} (--max-data)",
            request.data.len(),
            state.max_data
        )));
    }
    Ok(request)
}

/// 415 unless the body is declared as JSON (`application/json` or a `+json` type).
fn require_json(headers: &HeaderMap) -> Result<(), AppError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "send the event as JSON with Content-Type: application/json (got {:?})",
            content_type
        )))
    }
}
