//! The modelship inference server: Open Inference Protocol v2 over ONNX models.
//!
//! Layers, from the wire inwards: [`http`] (routes, error mapping) →
//! [`protocol`] (v2/v1 bodies ↔ tensors) → [`engine`] (validation, queue,
//! dynamic batching) → [`backend::Backend`] (a model runtime from
//! [`backends`]). [`source`] fetches models; [`serve`] ties it together.

pub mod backend;
pub mod backends;
pub mod builtin;
pub mod config;
pub mod engine;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod predict;
pub mod protocol;
pub mod serve;
pub mod source;
pub mod state;
pub mod tensor;
