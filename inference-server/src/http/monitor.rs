//! `POST /v2/models/{name}/feedback` (ground truth for answers, by the
//! server's inference id), `GET /v2/models/{name}/monitor` (the page
//! panel's figures) and the panel's script (`/assets/panel.js`). An item that names another pod's id and carries no
//! `predicted` values is forwarded to that pod, once, with the caller's API
//! key, so every item is counted by the pod that served it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::routing::{get, post};
use serde::Serialize;

use super::error::{ApiError, InferErrors, ModelErrors};
use super::shared::{Authorized, X_API_KEY, find_model, read_body};
use crate::monitor::feedback::{self, Answer, Item, Outcome};
use crate::monitor::summary::{self, Summary};
use crate::state::{AppState, ServedModel};

/// Marks a feedback call forwarded by another replica: never forwarded again.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-modelship-forwarded");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/models/{name}/feedback", post(feedback))
        .route(
            "/v2/models/{name}/versions/{version}/feedback",
            post(feedback_version),
        )
        .route("/v2/models/{name}/monitor", get(monitor))
        .route("/assets/panel.js", get(panel_js))
}

const PANEL_JS: &str = include_str!("../../assets/panel.js");

/// The script of the page's "How it is doing" panel.
#[utoipa::path(get, path = "/assets/panel.js", tag = "page",
    responses((status = 200, description = "The script of the model page's monitoring panel", content_type = "text/javascript", body = String)))]
pub(crate) async fn panel_js() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PANEL_JS,
    )
        .into_response()
}

/// A feedback body, as documented (the handler reads it by hand to name each bad field).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedbackRequest {
    pub items: Vec<FeedbackItem>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedbackItem {
    /// The server's inference id (`x-modelship-inference-id`).
    pub id: Option<String>,
    /// One per row of that inference: a class index or label, or a number.
    #[schema(value_type = Vec<Object>)]
    pub truth: Vec<serde_json::Value>,
    /// The values the client received; makes the item complete on any replica.
    #[schema(value_type = Option<Vec<Object>>)]
    pub predicted: Option<Vec<serde_json::Value>>,
}

/// How many items were counted, and why the others were not.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedbackAnswer {
    pub counted: u64,
    pub unknown: u64,
    pub expired: u64,
    pub duplicate: u64,
    pub invalid: u64,
    pub unreachable: u64,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<serde_json::Value>,
}

/// Ground truth for answers given: counted once, by the pod that served them.
#[utoipa::path(post, path = "/v2/models/{name}/feedback", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    request_body(content = FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Items counted, unknown, expired, duplicate, invalid, unreachable", body = FeedbackAnswer),
        InferErrors,
    ))]
pub(crate) async fn feedback(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Answer>, ApiError> {
    run_feedback(&state, &name, None, &headers, body).await
}

#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/feedback", tag = "v2",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Model version")),
    request_body(content = FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Items counted, unknown, expired, duplicate, invalid, unreachable", body = FeedbackAnswer),
        InferErrors,
    ))]
pub(crate) async fn feedback_version(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Answer>, ApiError> {
    run_feedback(&state, &name, Some(&version), &headers, body).await
}

async fn run_feedback(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Answer>, ApiError> {
    let model = find_model(state, name, version)?;
    let body = read_body(body, state.limits.max_body_bytes).await?;
    let items = feedback::parse_items(&body).map_err(ApiError::BadRequest)?;
    let forwarded = headers.contains_key(&FORWARDED);
    let monitor = model.monitor.monitor();
    let mut local = Vec::new();
    let mut remote: HashMap<SocketAddr, Vec<Item>> = HashMap::new();
    for item in items {
        let owner = match (&item.id, &item.predicted) {
            (Some(id), None) if !forwarded => monitor.owner_elsewhere(id),
            _ => None,
        };
        match owner {
            Some(addr) => remote.entry(addr).or_default().push(item),
            None => local.push(item),
        }
    }
    let mut answer = model.monitor.feedback(&local);
    let calls = remote
        .into_iter()
        .map(|(addr, items)| forward(&model, addr, version, headers, items));
    for part in futures::future::join_all(calls).await {
        answer.merge(part);
    }
    Ok(Json(answer))
}

/// Sends `items` to the pod at `addr`; when it cannot answer they are `unreachable`.
async fn forward(
    model: &ServedModel,
    addr: SocketAddr,
    version: Option<&str>,
    headers: &HeaderMap,
    items: Vec<Item>,
) -> Answer {
    let path = match version {
        Some(v) => format!("/v2/models/{}/versions/{v}/feedback", model.name),
        None => format!("/v2/models/{}/feedback", model.name),
    };
    let raw: Vec<_> = items.iter().map(|i| i.raw.clone()).collect();
    let mut req = model
        .monitor
        .monitor()
        .client
        .post(format!("http://{addr}{path}"))
        .header(FORWARDED.as_str(), "1")
        .json(&serde_json::json!({ "items": raw }));
    for name in [header::AUTHORIZATION, X_API_KEY] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name.as_str(), v.as_bytes());
        }
    }
    let answered = match req.send().await {
        Ok(r) if r.status().is_success() => r.json::<Answer>().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    match answered {
        Ok(mut a) => {
            // The other pod numbered the items of its call: put back their places here.
            for e in &mut a.errors {
                let Some(j) = e["item"].as_u64().map(|j| j as usize) else {
                    continue;
                };
                if let Some(item) = items.get(j) {
                    e["item"] = item.index.into();
                    if let Some(f) = e["field"].as_str() {
                        let field = f.replacen(
                            &format!("items[{j}]"),
                            &format!("items[{}]", item.index),
                            1,
                        );
                        e["field"] = field.into();
                    }
                }
            }
            a
        }
        Err(why) => {
            tracing::warn!(%addr, items = items.len(), "feedback not forwarded: {why}");
            model
                .monitor
                .count_outcome(Outcome::Unreachable, items.len() as u64);
            let mut a = Answer::default();
            a.add(Outcome::Unreachable, items.len() as u64);
            a
        }
    }
}

/// The page panel's figures: every replica's when the server has
/// `--prometheus-url` (and Prometheus answers), else this pod's.
#[utoipa::path(get, path = "/v2/models/{name}/monitor", tag = "page",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Traffic, class mix, accuracy from feedback and drift per feature", body = Object),
        ModelErrors,
    ))]
pub(crate) async fn monitor(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Summary>, ApiError> {
    let model = find_model(&state, &name, None)?;
    let m = &model.monitor;
    if let Some(url) = &m.monitor().args.prometheus_url {
        match crate::monitor::prometheus::all_replicas(m, url).await {
            Ok(s) => return Ok(Json(s)),
            Err(why) => {
                let mut s = summary::pod(m);
                s.scope_note = format!("These figures are this pod's only: {why}");
                return Ok(Json(s));
            }
        }
    }
    Ok(Json(summary::pod(m)))
}
