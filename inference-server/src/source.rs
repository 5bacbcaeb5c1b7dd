//! Where models come from: local paths, `file://`, `http(s)://`, `s3://` and `builtin://`.

use std::path::{Path, PathBuf};

use crate::model::ModelArtifact;

/// Why a model could not be fetched. Shown to users as a one-line cause.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unsupported model URI {0:?}: use a path, file://, http(s)://, s3:// or builtin://")]
    UnsupportedUri(String),
    #[error("{0}")]
    Other(String),
}

/// Reads the model named by `uri` into memory, verifying `sha256` when given.
pub async fn load_artifact(uri: &str, sha256: Option<&str>) -> Result<ModelArtifact, SourceError> {
    let _ = sha256;
    Err(SourceError::UnsupportedUri(uri.to_string()))
}

/// Downloads the model named by `uri` into `dir`, keeping its file name, and
/// returns the path written. Used by `modelship-server fetch` (an init container).
pub async fn fetch_to_dir(uri: &str, dir: &Path, sha256: Option<&str>) -> Result<PathBuf, SourceError> {
    let _ = (dir, sha256);
    Err(SourceError::UnsupportedUri(uri.to_string()))
}
