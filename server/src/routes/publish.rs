//! `POST /api/events`: one event (a JSON object) or a batch (a JSON array, each element answered
//! in order). Every refusal says what was wrong, with 400, 413 or 415.

use super::AppState;
use crate::error::AppError;
use app::event::{PublishAck, PublishBody, PublishRequest};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

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
    match PublishBody::parse(&body).map_err(AppError::BadRequest)? {
        PublishBody::Batch(items) => publish_batch(&state, items).await,
        PublishBody::One(request) => {
            let request = validate(&state, request)?;
            let ack = state.hub.publish(request).await?;
            Ok((StatusCode::ACCEPTED, Json(ack)).into_response())
        }
    }
}

/// Publishes every valid element in one go; the answer lists, in order, an ack or the
/// element's error.
async fn publish_batch(state: &AppState, items: Vec<Result<PublishRequest, String>>) -> Result<Response, AppError> {
    if items.is_empty() {
        return Err(AppError::BadRequest("an empty batch publishes nothing".into()));
    }
    let mut valid = Vec::with_capacity(items.len());
    // In order: `None` for an element that went into `valid`, else why it was refused.
    let mut refusals = Vec::with_capacity(items.len());
    for item in items {
        match validate(state, item) {
            Ok(request) => {
                valid.push(request);
                refusals.push(None);
            }
            Err(refusal) => refusals.push(Some(refusal)),
        }
    }
    let mut published = state.hub.publish_all(valid).await.into_iter();
    // A cause of the hub's own is logged once per batch, not once per element it refused.
    let mut logged = false;
    let answers: Vec<BatchAnswer> = refusals
        .into_iter()
        .map(|refusal| {
            let refusal = match refusal {
                Some(e) => e,
                None => {
                    let e = match published.next() {
                        Some(Ok(ack)) => return BatchAnswer::Accepted(ack),
                        Some(Err(e)) => AppError::from(e),
                        None => AppError::Internal("the store answered fewer events than it was given".into()),
                    };
                    if !std::mem::replace(&mut logged, true) {
                        e.log_cause();
                    }
                    e
                }
            };
            BatchAnswer::Refused { status: refusal.status().as_u16(), error: refusal.message() }
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(answers)).into_response())
}

/// One element of a batch's answer.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum BatchAnswer {
    Accepted(PublishAck),
    Refused { status: u16, error: String },
}

/// A parsed element, held to the data size limit.
fn validate(state: &AppState, request: Result<PublishRequest, String>) -> Result<PublishRequest, AppError> {
    let request = request.map_err(AppError::BadRequest)?;
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
