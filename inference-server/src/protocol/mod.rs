//! Wire formats: the Open Inference Protocol v2 (JSON and the binary tensor
//! data extension, and its gRPC messages) and the v1
//! `instances`/`predictions` format.
//!
//! Parsing turns bytes into [`crate::tensor::Tensor`]s and encoding turns
//! tensors back into bytes; neither knows about HTTP or models. [`v2`] and
//! [`v1`] are the bodies, [`grpc`] the gRPC messages; [`json_data`] the one JSON reader and writer of
//! tensor data (also used by `predict`), [`binary`] the binary extension's
//! element layout, [`schema`] the body types the OpenAPI document shows.

pub mod binary;
pub mod grpc;
pub mod json_data;
pub mod schema;
pub mod v1;
pub mod v2;

/// A request the client got wrong: HTTP 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl BadRequest {
    pub fn new(msg: impl Into<String>) -> Self {
        BadRequest(msg.into())
    }
}
