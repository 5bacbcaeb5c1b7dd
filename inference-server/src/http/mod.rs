//! HTTP routes. Handlers are thin: parse, hand to the engine, map errors in
//! one place (`error.rs`).

pub mod error;
pub mod page;
pub mod v1;
pub mod v2;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::RequestLabels;
use crate::state::{AppState, Lookup, ServedModel};
use error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the server's router over `state`.
pub fn router(state: Arc<AppState>, body_timeout: Duration) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(v1::routes())
        .merge(page::routes())
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .fallback(not_found)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<Body>| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id = id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(RequestBodyTimeoutLayer::new(body_timeout)),
        )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Requests, latencies, batch sizes, queue depth, load time", content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
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
            served
                .metrics
                .request_seconds
                .observe(started.elapsed().as_secs_f64());
            resp
        }
        Err(e) => e.into_response(),
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            model: model.to_string(),
            protocol,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}
