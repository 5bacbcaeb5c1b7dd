//! Model runtimes behind one trait: the seam between the server core and
//! the library that runs the model.
//!
//! The core (HTTP, batching, metrics, `predict`) sees a [`Backend`]: a
//! signature and a blocking `infer` over named tensors. Whether tract (pure
//! Rust, always built in) or ONNX Runtime (loaded dynamically from the
//! `onnxruntime` wheel's shared library) runs the model is decided once, by
//! [`load`]. How many threads a run may use is decided here too
//! ([`threads`], [`intra_op_threads`]), for every caller.
//!
//! | | tract | ONNX Runtime |
//! | --- | --- | --- |
//! | built in | always | needs `libonnxruntime.so` ≥ 1.31 at run time |
//! | ai.onnx.ml | LinearClassifier, LinearRegressor, Normalizer, CategoryMapper, TreeEnsembleClassifier (multiclass; a binary one scoring one class is refused, [`tract`]) | all |
//! | sharing | one optimized plan, batch dimension symbolic (`N`) | a few sessions, one `Mutex` each |
//!
//! The ONNX Runtime library is the `--ort-library` path, else
//! `$MODELSHIP_ORT_LIBRARY`, else `$ORT_DYLIB_PATH`, else the first
//! `libonnxruntime.so*` in `/usr/lib/modelship`, `/usr/local/lib`, `/usr/lib`,
//! then `$VIRTUAL_ENV` or `./.venv` (`lib/python3*/site-packages/onnxruntime/capi/`).

pub mod check;
pub mod onnxruntime;
pub mod tract;

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::ModelArtifact;
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

/// The runtimes' own guard of [`Backend::infer`]'s contract: one input per
/// signature input (the engine and `predict` build them so; a slip there
/// must be an error, never a silently shortened input list).
pub(crate) fn check_input_count(
    signature: &ModelSignature,
    inputs: &[Tensor],
) -> Result<(), InferError> {
    if inputs.len() == signature.inputs.len() {
        return Ok(());
    }
    Err(InferError::new(format!(
        "expected {} inputs, got {}",
        signature.inputs.len(),
        inputs.len()
    )))
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

/// How many threads `requested` means: itself, or one per core when 0
/// (every `0 = auto` flag of the server reads it this way).
pub fn threads(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Threads one inference may use: `requested`, or when 0, one when
/// `workers` batches run side by side (they share the cores), else all cores.
pub fn intra_op_threads(requested: usize, workers: usize) -> usize {
    match requested {
        0 if workers > 1 => 1,
        n => threads(n),
    }
}

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
    #[error(
        "tract cannot run operator {op}: use --runtime onnxruntime (or auto with the ONNX Runtime library present)"
    )]
    UnsupportedOperator { op: String },
    #[error("ONNX Runtime is not available: {0}")]
    OrtUnavailable(String),
    #[error("the model card does not fit the model: {0}")]
    Card(String),
    #[error("{runtime} failed to load the model: {message}")]
    Runtime {
        runtime: &'static str,
        message: String,
    },
}

/// Loads `artifact` with the runtime chosen by `opts`, then refuses a card
/// that does not fit the model's inputs ([`ModelCard::check`]) and a
/// classifier whose label is not its most probable class ([`check`]).
///
/// [`ModelCard::check`]: crate::model::ModelCard::check
pub fn load(
    artifact: &ModelArtifact,
    opts: &RuntimeOptions,
) -> Result<Arc<dyn Backend>, LoadError> {
    let backend = load_runtime(artifact, opts)?;
    if let Some(card) = &artifact.card {
        card.check(backend.signature()).map_err(LoadError::Card)?;
    }
    check::label_is_most_probable(backend.as_ref(), artifact)?;
    Ok(backend)
}

/// `Auto` uses ONNX Runtime when its library is found (see
/// [`onnxruntime::find_library`]) and tract otherwise. A library that was
/// named (flag or environment variable) but cannot be loaded is an error,
/// not a silent fallback.
fn load_runtime(
    artifact: &ModelArtifact,
    opts: &RuntimeOptions,
) -> Result<Arc<dyn Backend>, LoadError> {
    let model = artifact.origin.as_str();
    match opts.runtime {
        RuntimeChoice::Tract => load_tract(artifact),
        RuntimeChoice::Onnxruntime => {
            let library = onnxruntime::find_library(opts.ort_library.as_deref())
                .map_err(LoadError::OrtUnavailable)?;
            load_onnxruntime(artifact, &library, opts)
        }
        RuntimeChoice::Auto => {
            let named = opts.ort_library.is_some()
                || onnxruntime::LIBRARY_ENV_VARS
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
            match onnxruntime::find_library(opts.ort_library.as_deref()) {
                Ok(library) => {
                    tracing::info!(
                        model,
                        library = %library.display(),
                        "runtime auto: ONNX Runtime library found, using onnxruntime"
                    );
                    match load_onnxruntime(artifact, &library, opts) {
                        // A library found by searching that will not load (another
                        // version, another architecture) is not worth failing for.
                        Err(LoadError::OrtUnavailable(why)) if !named => {
                            tracing::warn!(model, reason = %why, "runtime auto: ONNX Runtime unusable, using tract");
                            load_tract(artifact)
                        }
                        other => other,
                    }
                }
                Err(why) if named => Err(LoadError::OrtUnavailable(why)),
                Err(why) => {
                    tracing::info!(model, reason = %why, "runtime auto: using tract");
                    load_tract(artifact)
                }
            }
        }
    }
}

fn load_tract(artifact: &ModelArtifact) -> Result<Arc<dyn Backend>, LoadError> {
    let started = std::time::Instant::now();
    let backend = tract::TractBackend::load(&artifact.onnx)?;
    tracing::info!(
        model = %artifact.origin,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded with tract"
    );
    Ok(Arc::new(backend))
}

fn load_onnxruntime(
    artifact: &ModelArtifact,
    library: &std::path::Path,
    opts: &RuntimeOptions,
) -> Result<Arc<dyn Backend>, LoadError> {
    let started = std::time::Instant::now();
    let backend = onnxruntime::OrtBackend::load(&artifact.onnx, library, opts.intra_op_threads)?;
    tracing::info!(
        model = %artifact.origin,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded with onnxruntime"
    );
    Ok(Arc::new(backend))
}
