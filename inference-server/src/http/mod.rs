//! The HTTP server: the router and its layers (request id, tracing span,
//! body timeout). Handlers are thin: read the body, decode it with
//! `protocol`, hand the tensors to the model's engine, encode the answer;
//! every error becomes a status code in one place (`error.rs`).
//!
//! Routes: `v2.rs` (Open Inference Protocol v2), `v1.rs` (`instances` /
//! `predictions`), `page.rs` (the web page), `metrics.rs`, `openapi.rs`
//! (the document of them all); `shared.rs` holds what they share.

pub mod error;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod shared;
pub mod v1;
pub mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;
pub use shared::REQUEST_ID;

/// Builds the server's router over `state`.
pub fn router(state: Arc<AppState>, body_timeout: Duration) -> Router {
    let routes = Router::new()
        .merge(v2::routes())
        .merge(v1::routes())
        .merge(page::routes())
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .with_state(state)
        .layer(RequestBodyTimeoutLayer::new(body_timeout));
    with_request_id(routes)
}

/// Gives every request an `x-request-id` (kept when the client sends one,
/// and returned with the answer) and a `request` span carrying it. The gRPC
/// listener's routes get the same (the id travels as metadata there).
pub fn with_request_id(routes: Router) -> Router {
    routes.layer(
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
            .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
