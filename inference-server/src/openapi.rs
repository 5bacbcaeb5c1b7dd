//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated
//! from the handlers' `#[utoipa::path]` annotations.
//!
//! The v2 and v1 parsers read request bodies straight from bytes with
//! borrowed, private wire types (see `protocol::v2`), so the request and
//! response bodies are described here by plain schema types that mirror
//! those wire types. The schemathesis run in `tests/server/test_openapi.py`
//! checks the server's answers against this document, so the two cannot
//! drift apart unnoticed.

#![allow(dead_code)] // the types below exist only to be described

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};

use crate::http::error::ErrorBody;
use crate::http::page::CardResponse;
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
        crate::http::v1::model_status,
        crate::http::v1::predict,
        crate::http::page::index,
        crate::http::page::model_page,
        crate::http::page::model_card,
        crate::http::page::style_css,
        crate::http::page::model_js,
        crate::http::metrics,
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

/// An inference request. With the binary tensor data extension the body is
/// this JSON (its length in the `Inference-Header-Content-Length` header)
/// followed by the inputs' raw little-endian bytes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "r1", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.9, 3.1, 5.4, 2.1]}]}))]
pub struct InferenceRequest {
    /// Echoed in the response; generated when absent.
    pub id: Option<String>,
    /// `binary_data_output: true` asks for every output as binary data; other keys are ignored.
    pub parameters: Option<Map<String, Value>>,
    #[schema(min_items = 1)]
    pub inputs: Vec<RequestInput>,
    /// Outputs to return, in order; all of them when absent.
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor of a request.
#[derive(Serialize, ToSchema)]
pub struct RequestInput {
    pub name: String,
    /// Concrete dimensions, row-major; the first is the batch size.
    pub shape: Vec<i64>,
    pub datatype: DataType,
    /// `binary_data_size`: the input's bytes follow the JSON instead of `data`.
    pub parameters: Option<Map<String, Value>>,
    /// The values, row-major: flat, or nested as the shape; required unless
    /// `parameters.binary_data_size` is set.
    pub data: Option<Vec<Element>>,
}

/// One tensor element: a number, a boolean (BOOL) or a string (BYTES).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Element {
    Number(f64),
    Bool(bool),
    Text(String),
}

/// An output the client asks for.
#[derive(Serialize, ToSchema)]
pub struct RequestOutput {
    pub name: String,
    /// `binary_data: true` returns this output as binary data.
    pub parameters: Option<Map<String, Value>>,
}

/// An inference response.
#[derive(Serialize, ToSchema)]
pub struct InferenceResponse {
    pub model_name: String,
    #[schema(nullable = false)]
    pub model_version: Option<String>,
    pub id: String,
    pub outputs: Vec<ResponseOutput>,
}

/// One output tensor of a response.
#[derive(Serialize, ToSchema)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<u64>,
    /// `binary_data_size` when the output follows the JSON as binary data.
    #[schema(nullable = false)]
    pub parameters: Option<Map<String, Value>>,
    /// The values, flat, row-major; absent for binary outputs.
    #[schema(nullable = false)]
    pub data: Option<Vec<Value>>,
}

/// `GET /v2/health/live`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// Readiness of one model.
#[derive(Serialize, ToSchema)]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// `POST /v1/models/{name}:predict`: one instance per row of the model's
/// input; for a model with several inputs, an object keyed by input name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"instances": [[6.9, 3.1, 5.4, 2.1]]}))]
pub struct PredictRequest {
    /// Rows of the model's input (objects keyed by input name for a model with several inputs).
    #[schema(min_items = 1)]
    pub instances: Vec<Vec<Element>>,
}

/// One prediction per instance: the output's row, or an object keyed by
/// output name when the model has several outputs.
#[derive(Serialize, ToSchema)]
pub struct PredictResponse {
    pub predictions: Vec<Value>,
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
            "/v1/models/{name}",
            "/v1/models/{name}:predict",
            "/",
            "/models/{name}",
            "/models/{name}/card",
            "/assets/style.css",
            "/assets/model.js",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is not in the document");
        }
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    }
}
