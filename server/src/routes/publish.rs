//! `POST /api/events`: one event (a JSON object) or a batch (a JSON array, each element answered
//! in order). Every refusal says what was wrong, with 400, 401, 403, 408, 413 or 415.
//!
//! The caller and the content type are checked before a byte of the body is read, and the body
//! is read here, bounded in size and in time: nobody can make the hub buffer a body it would
//! refuse, or hold one open for ever.

use super::AppState;
use crate::auth::Publisher;
use crate::error::AppError;
use app::event::{PublishAck, PublishBody, PublishRequest};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use futures::StreamExt;
use std::time::Duration;

/// The largest publish body accepted (or twice `--max-data`, if more): room for a batch.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The longest a whole body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies larger than this are parsed on a blocking thread, not on the workers serving streams.
const PARSE_INLINE: usize = 64 * 1024;

/// Admits the caller, then reads the body, then publishes: a refusal costs the hub no body.
pub async fn publish(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = state
        .auth
        .require_publisher(&parts.headers)
        .and_then(|publisher| require_json(&parts.headers).map(|()| publisher));
    let body = match admitted {
        Ok(publisher) => read_body(&parts.headers, body, MAX_BODY.max(state.max_data.saturating_mul(2)))
            .await
            .map(|body| (publisher, body)),
        Err(refusal) => Err(refusal),
    };
    match body {
        Ok((publisher, body)) => answer(&state, &publisher, body).await.unwrap_or_else(IntoResponse::into_response),
        Err(refusal) => closing(refusal.into_response(), parts.version),
    }
}

/// A refusal sent before the body was read whole: the connection closes after it, rather than
/// wait for (or read) the rest.
pub(crate) fn closing(mut response: Response, version: Version) -> Response {
    if version <= Version::HTTP_11 {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The whole body, if it is at most `limit` bytes (413 at once when its declared length is
/// more) and arrives within [`BODY_TIMEOUT`] (else 408).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, AppError> {
    let too_large = || AppError::PayloadTooLarge(format!("the request body is over {limit} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut chunks = body.into_data_stream();
        // Most bodies come in one chunk, which is kept as it is; more are joined.
        let mut only: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| AppError::BadRequest(format!("could not read the request body: {e}")))?;
            if only.as_ref().map_or(joined.len(), Bytes::len) + chunk.len() > limit {
                return Err(too_large());
            }
            match only.take() {
                None if joined.is_empty() => only = Some(chunk),
                None => joined.extend_from_slice(&chunk),
                Some(first) => {
                    joined.extend_from_slice(&first);
                    joined.extend_from_slice(&chunk);
                }
            }
        }
        Ok(only.unwrap_or_else(|| joined.freeze()))
    };
    tokio::time::timeout(BODY_TIMEOUT, read).await.unwrap_or_else(|_| {
        Err(AppError::RequestTimeout(format!("the request body did not arrive within {}s", BODY_TIMEOUT.as_secs())))
    })
}

/// Parses and publishes a body read whole.
async fn answer(state: &AppState, publisher: &Publisher, body: Bytes) -> Result<Response, AppError> {
    let parsed = if body.len() > PARSE_INLINE {
        tokio::task::spawn_blocking(move || PublishBody::parse(&body))
            .await
            .map_err(|e| AppError::Internal(format!("parsing a publish body failed: {e}")))?
    } else {
        PublishBody::parse(&body)
    };
    match parsed.map_err(AppError::BadRequest)? {
        PublishBody::Batch(items) => publish_batch(state, publisher, items).await,
        PublishBody::One(request) => {
            let request = validate(state, publisher, request)?;
            let ack = state.hub.publish(request).await?;
            Ok((StatusCode::ACCEPTED, Json(ack)).into_response())
        }
    }
}

/// Publishes every valid element in one go; the answer lists, in order, an ack or the
/// element's error.
async fn publish_batch(
    state: &AppState,
    publisher: &Publisher,
    items: Vec<Result<PublishRequest, String>>,
) -> Result<Response, AppError> {
    if items.is_empty() {
        return Err(AppError::BadRequest("an empty batch publishes nothing".into()));
    }
    let mut valid = Vec::with_capacity(items.len());
    // In order: `None` for an element that went into `valid`, else why it was refused.
    let mut refusals = Vec::with_capacity(items.len());
    for item in items {
        match validate(state, publisher, item) {
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

/// A parsed element, held to the data size limit and to what the publisher may publish.
fn validate(
    state: &AppState,
    publisher: &Publisher,
    request: Result<PublishRequest, String>,
) -> Result<PublishRequest, AppError> {
    let request = request.map_err(AppError::BadRequest)?;
    publisher.check(&request)?;
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
