//! The modelship inference server: Open Inference Protocol v2 over ONNX models.
//!
//! Modules, from the bottom up (each uses only those before it):
//! - [`tensor`]: named tensors, the 13 datatypes and their one dispatch;
//!   [`model`]: a model's bytes and card; [`metrics`].
//! - [`protocol`]: wire formats (v2 JSON and binary, v1) ↔ tensors.
//! - [`runtime`]: the [`runtime::Backend`] trait and the runtimes behind it
//!   (tract, ONNX Runtime); [`builtin`] and [`source`]: where models come from.
//! - [`engine`]: validation, the bounded queue and dynamic batching of one model.
//! - [`monitor`]: the inference id, payload logging, feedback, quality
//!   and drift figures of each model.
//! - [`auth`]: the API keys (a directory of files, reloaded) and their check.
//! - [`state`]: the served models, readiness, the keys and the variant.
//! - [`http`]: routes, error mapping, the OpenAPI document, the web page.
//! - [`grpc`]: the same protocol over gRPC (with health and reflection), on
//!   its own listener, over the same state and engines.
//! - [`predict`]: offline batch scoring of files.
//! - [`cmd`]: the subcommands (`serve`, `fetch`, `predict`) and their flags.

pub mod auth;
pub mod builtin;
pub mod cmd;
pub mod engine;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod predict;
pub mod protocol;
pub mod runtime;
pub mod source;
pub mod state;
pub mod tensor;
