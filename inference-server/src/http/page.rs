//! The web page for people who are not programmers: `GET /` lists the served
//! models, `GET /models/{name}` is a form to try one. The page is static; its
//! script (`assets/model.js`) reads the v2 metadata and the model card
//! (`GET /models/{name}/card`) and calls the v2 infer endpoint like any
//! other client. Everything is compiled into the binary: no CDN, no fonts.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::error::{ApiError, ModelErrors};
use super::shared::{Authorized, find_model};
use crate::model::ImageInput;
use crate::state::{AppState, ModelState};

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const MODEL_HTML: &str = include_str!("../../assets/model.html");
const STYLE_CSS: &str = include_str!("../../assets/style.css");
const MODEL_JS: &str = include_str!("../../assets/model.js");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/models/{name}", get(model_page))
        .route("/models/{name}/card", get(model_card))
        .route("/assets/style.css", get(style_css))
        .route("/assets/model.js", get(model_js))
}

/// The human-facing description of a model, for the web form: what the
/// ONNX file does not say. Fields are empty when the model has no card.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CardResponse {
    /// The served model name.
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// One name per column of a `[-1, F]` input, in order.
    pub feature_names: Vec<String>,
    /// The class name of each label index of a classifier.
    pub class_labels: Vec<String>,
    /// A row to pre-fill the form with.
    pub example: Vec<f64>,
    /// Present when the one input is a greyscale picture (the page then
    /// offers a drawing pad): its size and the values of no ink and full ink.
    pub image: Option<ImageInput>,
}

/// The list of served models.
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    responses((status = 200, description = "An HTML page listing the served models", content_type = "text/html", body = String))
)]
pub async fn index(State(state): State<Arc<AppState>>) -> Response {
    let items: String = state
        .model_names()
        .iter()
        .map(|name| {
            let (badge, class, title) = match state.model_state(name) {
                Some(ModelState::Ready(m)) => (
                    "ready",
                    "state ready",
                    m.card.as_ref().and_then(|c| c.title.clone()),
                ),
                Some(ModelState::Failed(_)) => ("failed to load", "state", None),
                _ => ("loading", "state", None),
            };
            let title = title
                .map(|t| format!("<div class=\"muted\">{}</div>", escape_html(&t)))
                .unwrap_or_default();
            format!(
                "    <li><a href=\"models/{href}\">{name}</a><span class=\"{class}\">{badge}</span>{title}</li>\n",
                href = escape_html(&encode_path_segment(name)),
                name = escape_html(name),
            )
        })
        .collect();
    html(
        StatusCode::OK,
        INDEX_HTML.replace("{{models}}", items.trim_end()),
    )
}

/// The form for one model.
#[utoipa::path(
    get,
    path = "/models/{name}",
    tag = "page",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "An HTML form to try the model", content_type = "text/html", body = String),
        (status = 404, description = "No such model (an HTML page)", content_type = "text/html", body = String),
    )
)]
pub async fn model_page(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if state.model_state(&name).is_none() {
        let body = INDEX_HTML
            .replace(
                "<h1>Models served here</h1>",
                &format!("<h1>No model named “{}”</h1>", escape_html(&name)),
            )
            .replace(
                "{{models}}",
                &state
                    .model_names()
                    .iter()
                    .map(|n| {
                        format!(
                            "    <li><a href=\"../models/{}\">{}</a></li>",
                            escape_html(&encode_path_segment(n)),
                            escape_html(n)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        return html(StatusCode::NOT_FOUND, body);
    }
    html(
        StatusCode::OK,
        MODEL_HTML.replace("{{name}}", &escape_html(&name)),
    )
}

/// The model card: feature names, class labels, an example row and, for an
/// image model, the picture's size and value range.
#[utoipa::path(
    get,
    path = "/models/{name}/card",
    tag = "page",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model's card", body = CardResponse),
        ModelErrors,
    )
)]
pub async fn model_card(
    _: Authorized,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<CardResponse>, ApiError> {
    let model = find_model(&state, &name, None)?;
    let card = model.card.clone().unwrap_or_default();
    Ok(Json(CardResponse {
        name: model.name.clone(),
        title: card.title,
        description: card.description,
        feature_names: card.feature_names,
        class_labels: card.class_labels,
        example: card.example,
        image: card.image,
    }))
}

/// The page's stylesheet.
#[utoipa::path(
    get,
    path = "/assets/style.css",
    tag = "page",
    responses((status = 200, description = "The stylesheet", content_type = "text/css", body = String))
)]
pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The page's script.
#[utoipa::path(
    get,
    path = "/assets/model.js",
    tag = "page",
    responses((status = 200, description = "The script of the model page", content_type = "text/javascript", body = String))
)]
pub async fn model_js() -> Response {
    asset("text/javascript; charset=utf-8", MODEL_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary; let browsers revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a model name for use as one path segment of a link.
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn model_names_become_one_path_segment() {
        assert_eq!(encode_path_segment("iris-rf"), "iris-rf");
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn templates_have_their_placeholders() {
        assert!(INDEX_HTML.contains("{{models}}"));
        assert!(INDEX_HTML.contains("<h1>Models served here</h1>"));
        assert!(MODEL_HTML.contains("data-model=\"{{name}}\""));
        // No asset may load anything from another origin.
        for asset in [INDEX_HTML, MODEL_HTML, STYLE_CSS, MODEL_JS] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
    }
}
