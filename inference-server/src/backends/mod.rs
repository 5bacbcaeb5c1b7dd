//! Model runtimes: tract (pure Rust, always built in) and ONNX Runtime
//! (loaded dynamically from the `onnxruntime` wheel's shared library).
//!
//! | | tract | ONNX Runtime |
//! | --- | --- | --- |
//! | built in | always | needs `libonnxruntime.so` ≥ 1.31 at run time |
//! | ai.onnx.ml | LinearClassifier, LinearRegressor, Normalizer, CategoryMapper, TreeEnsembleClassifier | all |
//! | sharing | one optimized plan, batch dimension symbolic (`N`) | a few sessions, one `Mutex` each |
//!
//! The ONNX Runtime library is the `--ort-library` path, else
//! `$MODELSHIP_ORT_LIBRARY`, else `$ORT_DYLIB_PATH`, else the first
//! `libonnxruntime.so*` in `/usr/lib/modelship`, `/usr/local/lib`, `/usr/lib`,
//! then `$VIRTUAL_ENV` or `./.venv` (`lib/python3*/site-packages/onnxruntime/capi/`).

pub mod onnxruntime;
pub mod tract;

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
    #[error(
        "tract cannot run operator {op}: use --runtime onnxruntime (or auto with the ONNX Runtime library present)"
    )]
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
///
/// `Auto` uses ONNX Runtime when its library is found (see
/// [`onnxruntime::find_library`]) and tract otherwise. A library that was
/// named (flag or environment variable) but cannot be loaded is an error,
/// not a silent fallback.
pub fn load(
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
