//! `GET /metrics`: the server's Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Requests, latencies, batch sizes, queue depth, load time", content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // The pods' own drift figures are computed from their windows when scraped.
    for name in state.model_names() {
        if let Some(crate::state::ModelState::Ready(m)) = state.model_state(&name) {
            m.monitor.refresh();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
