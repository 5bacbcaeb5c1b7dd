//! Open Inference Protocol v2 routes.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::error::{
    ApiError, InferErrors, ModelErrors, UnknownModel, UnknownVersion, VersionErrors,
};
use super::shared::{Authorized, REQUEST_ID, find_model, finish, model_readiness, read_body};
use crate::monitor::{INFERENCE_ID_HEADER, INFERENCE_ID_PARAMETER};
use crate::protocol::schema::{Live, Ready};
use crate::protocol::v2::{self, HEADER_CONTENT_LENGTH, ModelMetadata, ServerMetadata};
use crate::state::{AppState, ServedModel};

pub const SERVER_NAME: &str = "modelship";

/// Protocol extensions this server implements, as listed by `GET /v2`.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_version),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
}

#[utoipa::path(get, path = "/v2", tag = "v2",
    responses((status = 200, description = "Server name, version and protocol extensions", body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: SERVER_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
    })
}

#[utoipa::path(get, path = "/v2/health/live", tag = "v2",
    responses((status = 200, description = "The server process answers", body = Live)))]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// 200 once every model is loaded and warmed up; 503 while loading or draining.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2",
    responses(
        (status = 200, description = "Every model is loaded and warmed up", body = Ready),
        (status = 503, description = "A model is loading, or the server is shutting down", body = Ready),
    ))]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { ready })).into_response()
}

#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Inputs and outputs of the model", body = ModelMetadata),
        ModelErrors,
    ))]
pub(crate) async fn model_metadata(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let model = find_model(&state, &name, None)?;
    Ok(Json(model.metadata()))
}

#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, description = "Inputs and outputs of the model", body = ModelMetadata),
        VersionErrors,
    ))]
pub(crate) async fn model_metadata_version(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let model = find_model(&state, &name, Some(&version))?;
    Ok(Json(model.metadata()))
}

#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model is ready", body = crate::protocol::schema::ModelReady),
        UnknownModel,
        (status = 503, description = "The model is loading, failed, or the server is shutting down", body = crate::protocol::schema::ModelReady),
    ))]
pub(crate) async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    model_readiness(&state, &name, None, StatusCode::SERVICE_UNAVAILABLE)
}

#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, description = "The model is ready", body = crate::protocol::schema::ModelReady),
        UnknownVersion,
        (status = 503, description = "The model is loading, failed, or the server is shutting down", body = crate::protocol::schema::ModelReady),
    ))]
pub(crate) async fn model_ready_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_readiness(
        &state,
        &name,
        Some(&version),
        StatusCode::SERVICE_UNAVAILABLE,
    )
}

/// Runs the model. JSON bodies are accepted whatever the Content-Type; with
/// the `Inference-Header-Content-Length` header the JSON is followed by
/// binary tensor data, and binary outputs follow the response's JSON.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    request_body(content = crate::protocol::schema::InferenceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The outputs", body = crate::protocol::schema::InferenceResponse),
        InferErrors,
    ))]
pub(crate) async fn infer(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = run_infer(&state, &name, None, &headers, body).await;
    finish(&state, &name, "v2", started, result)
}

#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Model version")),
    request_body(content = crate::protocol::schema::InferenceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The outputs", body = crate::protocol::schema::InferenceResponse),
        InferErrors,
    ))]
pub(crate) async fn infer_version(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = run_infer(&state, &name, Some(&version), &headers, body).await;
    finish(&state, &name, "v2", started, result)
}

async fn run_infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, Arc<ServedModel>), ApiError> {
    let model = find_model(state, name, version)?;
    // Counted in before the body is read: a forming batch waits for it.
    let admission = model.engine.admit();
    let json_len = binary_json_len(headers)?;
    let body = read_body(body, state.limits.max_body_bytes).await?;
    let request = v2::parse_request(&body, json_len)?;
    drop(body);

    model
        .engine
        .check_outputs(request.outputs.iter().map(|o| o.name.as_str()))?;
    let pending = model.monitor.begin(request.id.as_deref(), &request.inputs);
    let id = request.id.unwrap_or_else(|| request_id(headers));
    let outputs = model.engine.infer(admission, request.inputs).await?;
    let inference_id = model.monitor.next_id();
    let selected = v2::select_outputs(&outputs, &request.outputs, request.binary_output);
    let parameters = serde_json::Map::from_iter([(
        INFERENCE_ID_PARAMETER.to_string(),
        serde_json::Value::String(inference_id.clone()),
    )]);
    let encoded = v2::encode_response_with(
        &model.name,
        model.version.as_deref(),
        &id,
        Some(parameters),
        &selected,
    );
    drop(selected);
    model.monitor.record(pending, &inference_id, &id, outputs);
    Ok((with_inference_id(response(encoded), &inference_id), model))
}

/// Names the server's inference id in the answer's `x-modelship-inference-id`.
pub(crate) fn with_inference_id(mut resp: Response, inference_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(inference_id) {
        resp.headers_mut().insert(INFERENCE_ID_HEADER, v);
    }
    resp
}

/// The `Inference-Header-Content-Length` header: the JSON part's length
/// when binary tensor data follows it.
fn binary_json_len(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER_CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "header {HEADER_CONTENT_LENGTH} must be a non-negative integer"
            ))
        })
}

/// The id of a request that names none: its `x-request-id`, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The HTTP response of an encoded body: JSON, or JSON and binary data.
fn response(encoded: v2::EncodedResponse) -> Response {
    let mut resp = Response::new(Body::from(encoded.body));
    let headers = resp.headers_mut();
    match encoded.json_len {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    resp
}
