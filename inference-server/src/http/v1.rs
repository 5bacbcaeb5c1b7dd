//! v1 routes: `GET /v1/models/{name}` and `POST /v1/models/{name}:predict`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::{ApiError, InferErrors, UnknownModel};
use super::shared::{Authorized, find_model, finish, model_readiness, read_body};
use crate::protocol::v1;
use crate::state::{AppState, ServedModel};

pub fn routes() -> Router<Arc<AppState>> {
    // `{name}:predict` is one path segment, so the action is split off by hand.
    Router::new().route("/v1/models/{name}", get(model_status).post(predict))
}

#[utoipa::path(get, path = "/v1/models/{name}", tag = "v1",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Whether the model is ready", body = crate::protocol::schema::ModelReady),
        UnknownModel,
    ))]
pub(crate) async fn model_status(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    // v1 answers 200 whether or not the model is ready.
    model_readiness(&state, &name, None, StatusCode::OK)
}

// `{name}:predict` is one path segment: axum routes it as `/v1/models/{segment}`.
#[utoipa::path(post, path = "/v1/models/{name}:predict", tag = "v1",
    params(("name" = String, Path, description = "Model name")),
    request_body(content = crate::protocol::schema::PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per instance", body = crate::protocol::schema::PredictResponse),
        InferErrors,
    ))]
pub(crate) async fn predict(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(name) = segment.strip_suffix(":predict") else {
        return ApiError::NotFound(format!(
            "POST /v1/models/{segment}: use /v1/models/{{name}}:predict"
        ))
        .into_response();
    };
    let result = run_predict(&state, name, body).await;
    finish(&state, name, "v1", started, result)
}

async fn run_predict(
    state: &AppState,
    name: &str,
    body: Body,
) -> Result<(Response, Arc<ServedModel>), ApiError> {
    let model = find_model(state, name, None)?;
    // Counted in before the body is read: a forming batch waits for it.
    let admission = model.engine.admit();
    let body = read_body(body, state.limits.max_body_bytes).await?;
    let inputs = v1::parse_instances(&body, &model.engine.signature().inputs)?;
    drop(body);
    let pending = model.monitor.begin(None, &inputs);
    let outputs = model.engine.infer(admission, inputs).await?;
    let predictions = v1::encode_predictions(&outputs)?;
    let inference_id = model.monitor.next_id();
    model.monitor.record(pending, &inference_id, "", outputs);
    let resp = super::v2::with_inference_id(Json(predictions).into_response(), &inference_id);
    Ok((resp, model))
}
