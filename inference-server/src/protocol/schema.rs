//! Schema types of the request and response bodies, for the OpenAPI
//! document (`http::openapi`).
//!
//! The v2 and v1 parsers read request bodies straight from bytes with
//! borrowed, private wire types (see [`super::v2`]), so the bodies are
//! described by these plain types that mirror them. The schemathesis run in
//! `tests/server/test_openapi.py` checks the server's answers against the
//! document, so the two cannot drift apart unnoticed. The health and
//! readiness bodies ([`Live`], [`Ready`], [`ModelReady`]) are also what the
//! routes send.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::tensor::DataType;

/// An inference request. With the binary tensor data extension the body is
/// this JSON (its length in the `Inference-Header-Content-Length` header)
/// followed by the inputs' raw little-endian bytes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "r1", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.9, 3.1, 5.4, 2.1]}]}))]
#[allow(dead_code)] // described, never built: the parser reads the wire types
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
#[allow(dead_code)]
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
#[allow(dead_code)]
pub enum Element {
    Number(f64),
    Bool(bool),
    Text(String),
}

/// An output the client asks for.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RequestOutput {
    pub name: String,
    /// `binary_data: true` returns this output as binary data.
    pub parameters: Option<Map<String, Value>>,
}

/// An inference response.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct InferenceResponse {
    pub model_name: String,
    #[schema(nullable = false)]
    pub model_version: Option<String>,
    pub id: String,
    /// `modelship_inference_id`: the server's id of this inference, for feedback.
    #[schema(nullable = false)]
    pub parameters: Option<ResponseParameters>,
    pub outputs: Vec<ResponseOutput>,
}

/// The parameters of a response.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ResponseParameters {
    /// The server's inference id (also the `x-modelship-inference-id` header).
    pub modelship_inference_id: String,
}

/// One output tensor of a response.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct PredictRequest {
    /// Rows of the model's input (objects keyed by input name for a model with several inputs).
    #[schema(min_items = 1)]
    pub instances: Vec<Vec<Element>>,
}

/// One prediction per instance: the output's row, or an object keyed by
/// output name when the model has several outputs.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PredictResponse {
    pub predictions: Vec<Value>,
}
