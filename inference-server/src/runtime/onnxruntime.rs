//! ONNX Runtime through the `ort` crate, loaded at run time from the shared
//! library that the `onnxruntime` wheel on PyPI ships
//! (`onnxruntime/capi/libonnxruntime.so.<version>`): nothing is downloaded at
//! build time and the binary runs without it (tract then serves).
//!
//! `ort` loads the library and creates its environment once per process; a
//! `Mutex` here makes that safe when several models load at once.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, IntoTensorElementType, TensorElementType, TensorRef, ValueType};

use super::LoadError;
use super::{Backend, InferError};
use crate::tensor::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};

/// Environment variables naming the library, in the order they are read.
pub const LIBRARY_ENV_VARS: [&str; 2] = ["MODELSHIP_ORT_LIBRARY", "ORT_DYLIB_PATH"];

/// Directories searched for `libonnxruntime.so*` when neither a flag nor an
/// environment variable names the library: where the container image puts it.
const LIBRARY_DIRS: [&str; 3] = ["/usr/lib/modelship", "/usr/local/lib", "/usr/lib"];

/// Most sessions kept per model. `Session::run` takes `&mut self` in ort
/// 2.0.0-rc.15, so each session sits behind a `Mutex`; a few of them let
/// concurrent requests run in parallel when each uses few threads.
const MAX_SESSIONS: usize = 4;

pub struct OrtBackend {
    signature: ModelSignature,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("signature", &self.signature)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// Finds `libonnxruntime.so*`: the explicit path when given (it must exist),
/// else `$MODELSHIP_ORT_LIBRARY` or `$ORT_DYLIB_PATH`, else the container's
/// and system library directories, else an `onnxruntime` wheel in
/// `$VIRTUAL_ENV` or `./.venv`. The error lists every place that was tried.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return existing(path).ok_or_else(|| format!("{} does not exist", path.display()));
    }
    for var in LIBRARY_ENV_VARS {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            return existing(&path)
                .ok_or_else(|| format!("{var}={} does not exist", path.display()));
        }
    }
    let mut dirs: Vec<PathBuf> = LIBRARY_DIRS.iter().map(PathBuf::from).collect();
    let venvs = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(".venv")]);
    for venv in venvs {
        dirs.extend(wheel_dirs(&venv));
    }
    for dir in &dirs {
        if let Some(lib) = library_in(dir) {
            return Ok(std::path::absolute(&lib).unwrap_or(lib));
        }
    }
    Err(format!(
        "libonnxruntime.so not found: set --ort-library or {}, or install it in one of {}",
        LIBRARY_ENV_VARS.join(" or "),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `<venv>/lib/python3.*/site-packages/onnxruntime/capi` for each Python of a venv.
pub fn wheel_dirs(venv: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The ONNX Runtime library in `dir`, preferring a versioned file
/// (`libonnxruntime.so.1.31.1`, as the wheel ships it) over a bare `.so`.
pub fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
        })
        .map(|e| e.path())
        .collect();
    // Longest name first: the fully versioned file, not a symlink to it.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

fn existing(path: &Path) -> Option<PathBuf> {
    path.is_file().then(|| path.to_path_buf())
}

/// The process's ONNX Runtime environment and the library it came from.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads the library and creates the environment, once per process. A
/// failed attempt can be retried with another path; after a success, later
/// calls get the same environment (ONNX Runtime cannot be loaded twice).
fn environment(library: &Path) -> Result<Environment, LoadError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((loaded, env)) = slot.as_ref() {
        if loaded != library {
            tracing::warn!(
                loaded = %loaded.display(),
                requested = %library.display(),
                "ONNX Runtime is already loaded from another file; using that one"
            );
        }
        return Ok(env.clone());
    }
    let env = ort::init_from(library)
        .map_err(|e| LoadError::OrtUnavailable(format!("{}: {e}", library.display())))?
        .with_name("modelship")
        .with_telemetry(false)
        .build()
        .map_err(|e| LoadError::OrtUnavailable(format!("{}: {e}", library.display())))?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    *slot = Some((library.to_path_buf(), env.clone()));
    Ok(env)
}

impl OrtBackend {
    /// Creates the sessions for a model held in memory. `intra_op_threads`
    /// bounds the threads one inference uses (ONNX Runtime's default: one
    /// per core).
    pub fn load(
        onnx_bytes: &[u8],
        library: &Path,
        intra_op_threads: Option<usize>,
    ) -> Result<OrtBackend, LoadError> {
        let env = environment(library)?;
        let cores = super::threads(0);
        let threads = intra_op_threads.unwrap_or(cores).max(1);
        let pool = (cores / threads).clamp(1, MAX_SESSIONS);

        let sessions = (0..pool)
            .map(|_| new_session(&env, onnx_bytes, intra_op_threads))
            .collect::<Result<Vec<_>, _>>()?;
        let signature = signature(&sessions[0])?;
        Ok(OrtBackend {
            signature,
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// A free session if there is one, else the next one in turn.
    fn session(&self) -> MutexGuard<'_, Session> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            if let Ok(guard) = self.sessions[(start + i) % n].try_lock() {
                return guard;
            }
        }
        // A panic inside ONNX Runtime's call leaves the session usable.
        self.sessions[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn new_session(
    env: &Environment,
    onnx_bytes: &[u8],
    intra_op_threads: Option<usize>,
) -> Result<Session, LoadError> {
    let fail = |e: &dyn std::fmt::Display| LoadError::Runtime {
        runtime: "onnxruntime",
        message: e.to_string(),
    };
    let mut builder = Session::builder(env)
        .map_err(|e| fail(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(&e))?;
    if let Some(n) = intra_op_threads {
        builder = builder.with_intra_threads(n).map_err(|e| fail(&e))?;
    }
    builder.commit_from_memory(onnx_bytes).map_err(|e| {
        let message = e.to_string();
        if message.contains("INVALID_PROTOBUF") || message.contains("Protobuf parsing failed") {
            LoadError::InvalidModel(message)
        } else {
            fail(&message)
        }
    })
}

fn signature(session: &Session) -> Result<ModelSignature, LoadError> {
    let spec = |name: &str, dtype: &ValueType| -> Result<TensorSpec, LoadError> {
        let ValueType::Tensor { ty, shape, .. } = dtype else {
            return Err(LoadError::Runtime {
                runtime: "onnxruntime",
                message: format!(
                    "{name} is a {dtype}, not a tensor (for a classifier converted with skl2onnx, \
                     use the option zipmap=False)"
                ),
            });
        };
        let datatype = data_type(*ty).ok_or_else(|| LoadError::Runtime {
            runtime: "onnxruntime",
            message: format!("{name} has datatype {ty:?}, which the server does not support"),
        })?;
        Ok(TensorSpec {
            name: name.to_string(),
            datatype,
            shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
        })
    };
    Ok(ModelSignature {
        inputs: session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<_, _>>()?,
        outputs: session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<_, _>>()?,
    })
}

impl Backend for OrtBackend {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "onnxruntime"
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        super::check_input_count(&self.signature, inputs)?;
        let values = inputs
            .iter()
            .zip(&self.signature.inputs)
            .map(|(t, spec)| Ok((Cow::Borrowed(spec.name.as_str()), to_ort(t)?)))
            .collect::<Result<Vec<(Cow<'_, str>, SessionInputValue<'_>)>, ort::Error>>()
            .map_err(|e| InferError::new(format!("onnxruntime: {e}")))?;
        let mut session = self.session();
        let outputs = session
            .run(values)
            .map_err(|e| InferError::new(format!("onnxruntime: {e}")))?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    InferError::new(format!("onnxruntime returned no output {}", spec.name))
                })?;
                from_ort(value, spec)
                    .map_err(|e| InferError::new(format!("output {}: {e}", spec.name)))
            })
            .collect()
    }
}

/// Borrows the tensor's data (no copy) as an ONNX Runtime input;
/// strings are the exception, ONNX Runtime keeps its own copy.
fn to_ort(t: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    let shape = t.shape().to_vec();
    Ok(crate::match_data!(t.data(), {
        fixed v => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        bytes v => {
            let strings: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let array = ndarray::ArrayD::from_shape_vec(shape, strings)
                .map_err(|e| ort::Error::new(e.to_string()))?;
            ort::value::Tensor::from_string_array(&array)?.into()
        },
    }))
}

fn from_ort(value: &DynValue, spec: &TensorSpec) -> ort::Result<Tensor> {
    fn take<T: ort::value::PrimitiveTensorElementType + Clone>(
        value: &DynValue,
    ) -> ort::Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        Ok((dims(shape), data.to_vec()))
    }
    fn dims(shape: &[i64]) -> Vec<usize> {
        shape.iter().map(|&d| d.max(0) as usize).collect()
    }
    let (shape, data): (Vec<usize>, TensorData) = crate::match_datatype!(spec.datatype, {
        fixed T => take::<T>(value).map(|(s, v)| (s, v.into()))?,
        bytes B => {
            let (shape, strings) = value.try_extract_strings()?;
            let bytes: Vec<B> = strings.into_iter().map(String::into_bytes).collect();
            (dims(shape), bytes.into())
        },
    });
    Tensor::new(spec.name.clone(), shape, data).map_err(|e| ort::Error::new(e.to_string()))
}

/// The ONNX Runtime element type of a datatype.
fn element_type(dt: DataType) -> TensorElementType {
    crate::match_datatype!(dt, {
        fixed T => <T as IntoTensorElementType>::into_tensor_element_type(),
        bytes B => TensorElementType::String,
    })
}

fn data_type(ty: TensorElementType) -> Option<DataType> {
    DataType::ALL.into_iter().find(|&d| element_type(d) == ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_versioned_library_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            library_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.31.1"))
        );
    }

    #[test]
    fn an_explicit_path_that_does_not_exist_is_an_error() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    }

    #[test]
    fn finds_the_wheel_inside_a_venv() {
        let venv = tempfile::tempdir().unwrap();
        let capi = venv
            .path()
            .join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        let dirs = wheel_dirs(venv.path());
        assert_eq!(dirs, vec![capi.clone()]);
        assert_eq!(
            library_in(&dirs[0]),
            Some(capi.join("libonnxruntime.so.1.31.1"))
        );
    }
}
