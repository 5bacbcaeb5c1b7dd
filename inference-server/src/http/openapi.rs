//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated
//! from the handlers' `#[utoipa::path]` annotations, the body types of
//! `protocol::schema` and the error responses of `error.rs`.

use utoipa::OpenApi;

use super::error::ErrorBody;
use super::page::CardResponse;
use crate::protocol::schema::{
    Element, InferenceRequest, InferenceResponse, Live, ModelReady, PredictRequest,
    PredictResponse, Ready, RequestInput, RequestOutput, ResponseOutput,
};
use crate::protocol::v2::{ModelMetadata, ServerMetadata, TensorMetadata};
use crate::tensor::DataType;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "modelship-server",
        description = "Open Inference Protocol v2 (REST, with the binary tensor data extension), the v1 `instances`/`predictions` protocol, and a web page to try the models. Every error is a JSON object `{\"error\": \"...\"}` that names the offending input.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::http::v2::server_metadata,
        crate::http::v2::live,
        crate::http::v2::ready,
        crate::http::v2::model_metadata,
        crate::http::v2::model_metadata_version,
        crate::http::v2::model_ready,
        crate::http::v2::model_ready_version,
        crate::http::v2::infer,
        crate::http::v2::infer_version,
        crate::http::monitor::feedback,
        crate::http::monitor::feedback_version,
        crate::http::monitor::monitor,
        crate::http::monitor::panel_js,
        crate::http::v1::model_status,
        crate::http::v1::predict,
        crate::http::page::index,
        crate::http::page::model_page,
        crate::http::page::model_card,
        crate::http::page::style_css,
        crate::http::page::model_js,
        crate::http::metrics::metrics,
        openapi_json,
    ),
    components(schemas(
        ErrorBody,
        ServerMetadata,
        ModelMetadata,
        TensorMetadata,
        CardResponse,
        DataType,
        Element,
        InferenceRequest,
        RequestInput,
        RequestOutput,
        InferenceResponse,
        ResponseOutput,
        Live,
        Ready,
        ModelReady,
        PredictRequest,
        PredictResponse,
        crate::http::monitor::FeedbackRequest,
        crate::http::monitor::FeedbackItem,
        crate::http::monitor::FeedbackAnswer,
    )),
    tags(
        (name = "v2", description = "Open Inference Protocol v2"),
        (name = "v1", description = "The v1 protocol (`instances` in, `predictions` out)"),
        (name = "page", description = "The web page for people, and what it reads"),
        (name = "server", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v2",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/{name}",
            "/v2/models/{name}/versions/{version}",
            "/v2/models/{name}/ready",
            "/v2/models/{name}/versions/{version}/ready",
            "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}/infer",
            "/v2/models/{name}/feedback",
            "/v2/models/{name}/versions/{version}/feedback",
            "/v2/models/{name}/monitor",
            "/v1/models/{name}",
            "/v1/models/{name}:predict",
            "/",
            "/models/{name}",
            "/models/{name}/card",
            "/assets/style.css",
            "/assets/model.js",
            "/assets/panel.js",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is not in the document");
        }
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    }
}
