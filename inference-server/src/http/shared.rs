//! What every route shares: reading a body within its limits, finding the
//! model a request names, answering readiness, counting the request, and
//! the API key check of the routes that take or reveal model data
//! ([`Authorized`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics::{Code, RequestLabels};
use crate::protocol::schema::ModelReady;
use crate::state::{AppState, Lookup, ServedModel};

/// The header that carries a request's id (set when the client sends none).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header that names the variant (`primary`, `canary`) that answered.
pub const VARIANT: HeaderName = HeaderName::from_static("x-modelship-variant");

/// The header an API key may come in, instead of `Authorization: Bearer`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Proof that a request presented a valid API key (or that none is asked
/// for): a handler that takes or reveals model data takes this argument, so
/// a missing or wrong key is a 401 before the body is read. The 401 closes
/// an HTTP/1.1 connection (`Connection: close`): the unread body cannot be
/// skipped, and a client told so opens a new connection for its next
/// request instead of finding this one closed under it.
pub struct Authorized;

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let get = |name: &HeaderName| parts.headers.get(name).map(|v| v.as_bytes());
        match state.authorize(get(&header::AUTHORIZATION), get(&X_API_KEY)) {
            Ok(()) => Ok(Authorized),
            Err(refusal) => {
                let mut resp = ApiError::from(refusal).into_response();
                if parts.version <= axum::http::Version::HTTP_11 {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Err(resp)
            }
        }
    }
}

/// Reads a whole request body, enforcing the size limit: 413 when over it,
/// 408 when the client is too slow to send it.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge(format!(
                    "request body is larger than the limit of {limit} bytes"
                ));
            }
            if err.is::<tower_http::timeout::TimeoutError>() {
                return ApiError::RequestTimeout("timed out reading the request body".into());
            }
            source = err.source();
        }
        ApiError::BadRequest(format!("could not read the request body: {e}"))
    })
}

/// Resolves a model for a request: 404 for unknown names or versions, 503
/// while it loads or the server drains.
pub fn find_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ServedModel>, ApiError> {
    match state.lookup(name, version) {
        Lookup::Ready(m) => Ok(m),
        Lookup::NotReady { reason } => Err(ApiError::Unavailable(reason)),
        Lookup::NotFound { message } => Err(ApiError::NotFound(message)),
    }
}

/// Counts an inference request by model, protocol and status code, and
/// observes its latency when it succeeded; returns the response to send.
pub fn finish(
    state: &AppState,
    model: &str,
    protocol: &'static str,
    started: Instant,
    result: Result<(Response, Arc<ServedModel>), ApiError>,
) -> Response {
    let resp = match result {
        Ok((resp, served)) => {
            let seconds = started.elapsed().as_secs_f64();
            served.metrics.request_seconds.observe(seconds);
            served.monitor.timeline.record(true, seconds);
            resp
        }
        Err(e) => {
            crate::state::record_error(state, model);
            e.into_response()
        }
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            model: model.to_string(),
            protocol,
            code: Code::Http(resp.status().as_u16()),
        })
        .inc();
    resp
}

/// How ready one model is, as `{"name", "ready"}`: 404 when it is not served
/// here, else 200 when ready and, when `not_ready` is given, that status
/// when not (v2 answers 503; v1 answers 200 either way).
pub fn model_readiness(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    not_ready: StatusCode,
) -> Response {
    match state.model_ready(name, version) {
        Err(message) => ApiError::NotFound(message).into_response(),
        Ok(ready) => {
            let status = if ready { StatusCode::OK } else { not_ready };
            let body = ModelReady {
                name: name.to_string(),
                ready,
            };
            (status, Json(body)).into_response()
        }
    }
}
