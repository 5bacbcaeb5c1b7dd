//! The seam between the server core and a model runtime.
//!
//! The core (HTTP, batching, metrics) sees a [`Backend`]: a signature and a
//! blocking `infer` over named tensors. Whether tract or ONNX Runtime runs the
//! model is decided once, when the model is loaded (see `crate::backends`).

use crate::tensor::{ModelSignature, Tensor};

/// A loaded model that can run inference.
///
/// `infer` is blocking and CPU-bound: callers run it on a blocking thread,
/// never on the async runtime. Implementations are shared across threads, so
/// one optimized plan serves every request.
pub trait Backend: Send + Sync + 'static {
    /// Inputs and outputs as the model file declares them (`-1` = dynamic).
    fn signature(&self) -> &ModelSignature;

    /// Short runtime name reported as the model's `platform`: `tract` or `onnxruntime`.
    fn platform(&self) -> &'static str;

    /// Runs the model. `inputs` holds exactly one tensor per signature input,
    /// in signature order, already checked for datatype and shape. Returns
    /// one tensor per signature output, in signature order.
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError>;
}

/// A failure while running a model that the caller could not have prevented
/// by sending different input: it maps to HTTP 500.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InferError(pub String);

impl InferError {
    pub fn new(msg: impl std::fmt::Display) -> Self {
        InferError(msg.to_string())
    }
}
