//! Model runtimes: tract (pure Rust, always built in) and ONNX Runtime
//! (loaded dynamically from the `onnxruntime` wheel's shared library).

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::Backend;
use crate::model::ModelArtifact;

/// Which runtime executes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RuntimeChoice {
    /// ONNX Runtime when its library can be found, tract otherwise.
    #[default]
    Auto,
    Tract,
    Onnxruntime,
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    pub runtime: RuntimeChoice,
    /// Path to `libonnxruntime.so.*`; when unset, searched for in the usual places.
    pub ort_library: Option<PathBuf>,
    /// Threads one inference may use; `None` lets the runtime decide.
    pub intra_op_threads: Option<usize>,
}

/// Why a model could not be loaded. The message is shown to users as is
/// (logs, termination message, status of the ModelDeployment).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the model is not a valid ONNX file: {0}")]
    InvalidModel(String),
    #[error("tract cannot run operator {op}: use --runtime onnxruntime (or auto with the ONNX Runtime library present)")]
    UnsupportedOperator { op: String },
    #[error("ONNX Runtime is not available: {0}")]
    OrtUnavailable(String),
    #[error("{runtime} failed to load the model: {message}")]
    Runtime {
        runtime: &'static str,
        message: String,
    },
}

/// Loads `artifact` with the runtime chosen by `opts`.
pub fn load(artifact: &ModelArtifact, opts: &RuntimeOptions) -> Result<Arc<dyn Backend>, LoadError> {
    let _ = (artifact, opts);
    Err(LoadError::OrtUnavailable("no runtime implemented yet".into()))
}
