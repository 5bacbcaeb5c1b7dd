//! Models on the local file system: a file, or a directory with one `*.onnx` file
//! (what a mounted volume or a `fetch` init container leaves).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio_util::io::ReaderStream;

use super::{ByteStream, SourceError};

/// Read buffer size: large enough that a GB model is not read in 8 KiB steps.
const CHUNK: usize = 256 * 1024;

/// `path` itself when it is a file; the single `*.onnx` file in it when it is a directory.
pub async fn resolve(path: &Path) -> Result<PathBuf, SourceError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| io_error(path, &e))?;
    if !meta.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut entries = tokio::fs::read_dir(path)
        .await
        .map_err(|e| io_error(path, &e))?;
    let mut models = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(path, &e))? {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Hidden files include `fetch`'s partial downloads.
        if !name.starts_with('.') && is_onnx(&name) && !entry.path().is_dir() {
            models.push(name);
        }
    }
    models.sort();
    match models.len() {
        1 => Ok(path.join(&models[0])),
        0 => Err(SourceError::NoModelInDir {
            dir: path.display().to_string(),
        }),
        _ => Err(SourceError::SeveralModelsInDir {
            dir: path.display().to_string(),
            names: models,
        }),
    }
}

/// Streams the file's bytes.
pub async fn open(path: &Path) -> Result<ByteStream, SourceError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error(path, &e))?;
    let shown = path.to_path_buf();
    Ok(ReaderStream::with_capacity(file, CHUNK)
        .map(move |chunk| chunk.map_err(|e| io_error(&shown, &e)))
        .boxed())
}

/// The whole file, or `None` when there is no such file.
pub async fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, SourceError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e)),
    }
}

pub fn is_onnx(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && ext.eq_ignore_ascii_case("onnx"))
}

fn io_error(path: &Path, e: &std::io::Error) -> SourceError {
    let uri = path.display().to_string();
    match e.kind() {
        ErrorKind::NotFound => SourceError::NotFound {
            uri,
            cause: "no such file or directory".to_string(),
        },
        ErrorKind::PermissionDenied => SourceError::AccessDenied {
            uri,
            cause: e.to_string(),
        },
        _ => SourceError::Read {
            uri,
            cause: e.to_string(),
        },
    }
}
