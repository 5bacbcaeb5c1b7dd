//! The HTTP server: the router and its layers (request id, tracing span
//! without headers, so no API key is ever logged, body timeout, the
//! `x-modelship-variant` header on every answer). Handlers are thin: read the body, decode it with
//! `protocol`, hand the tensors to the model's engine, encode the answer;
//! every error becomes a status code in one place (`error.rs`).
//!
//! Routes: `v2.rs` (Open Inference Protocol v2), `v1.rs` (`instances` /
//! `predictions`), `monitor.rs` (feedback, the panel's figures), `page.rs` (the web page), `metrics.rs`, `openapi.rs`
//! (the document of them all); `shared.rs` holds what they share, including
//! the API key check ([`shared::Authorized`]) that the routes taking or
//! revealing model data (infer, predict, model metadata, the page's card)
//! take as an argument; health, readiness, `/metrics`, `/openapi.json` (a
//! static document, no model's schema), the page's HTML and assets are open.
//! `conn.rs` is the accept loop under both listeners (header and idle
//! timeouts, the connection cap).

pub mod conn;
pub mod error;
pub mod metrics;
pub mod monitor;
pub mod openapi;
pub mod page;
pub mod shared;
pub mod v1;
pub mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::HeaderValue;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;
pub use shared::{REQUEST_ID, VARIANT};

/// Builds the server's router over `state`.
pub fn router(state: Arc<AppState>, body_timeout: Duration) -> Router {
    let variant = state.access.variant.clone();
    let routes = Router::new()
        .merge(v2::routes())
        .merge(v1::routes())
        .merge(monitor::routes())
        .merge(page::routes())
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(RequestBodyDeadlineLayer::new(body_timeout));
    with_variant(with_request_id(routes), &variant)
}

/// Names the variant that answered (`x-modelship-variant: primary`) in every
/// response; over gRPC the header is the call's response metadata. A
/// variant that is not a valid header value (the flag's parser prevents it)
/// is left out.
pub fn with_variant(routes: Router, variant: &str) -> Router {
    match HeaderValue::from_str(variant) {
        Ok(value) => routes.layer(SetResponseHeaderLayer::overriding(VARIANT, value)),
        Err(_) => routes,
    }
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

/// A route called with a method it does not take: 405 with a JSON error (axum's own has no
/// body); the `Allow` header names the methods it takes.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{}: method {method} is not allowed", uri.path()))
}
