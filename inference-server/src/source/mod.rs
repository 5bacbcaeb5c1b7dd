//! Where models come from: local paths, `file://`, `http(s)://`, `s3://` and `builtin://`.
//!
//! Every source is read the same way: the URI is parsed ([`ModelUri`]), a directory or
//! S3 prefix is resolved to its single `*.onnx` object, the object is streamed through a
//! SHA-256 hasher into memory ([`load_artifact`]) or into a file ([`fetch_to_dir`]), and the
//! optional `<stem>.card.json` beside it is read into a [`ModelCard`]. A remote read that
//! fails for a transient cause is tried again with bounded backoff (`retry`).

mod http;
mod local;
mod retry;
pub(crate) mod s3;
mod uri;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::builtin;
use crate::model::{ModelArtifact, ModelCard};
pub use retry::RetryPolicy;
pub use uri::ModelUri;

/// Why a model could not be fetched. Shown to users as a one-line cause; URIs in it
/// never carry credentials (see [`ModelUri`]'s `Display`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unsupported model URI {0}: use a path, file://, http(s)://, s3:// or builtin://")]
    UnsupportedUri(String),
    #[error("invalid model URI {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("unknown builtin model {uri}: available are {}", available.join(", "))]
    UnknownBuiltin { uri: String, available: Vec<String> },
    #[error("{uri} not found: {cause}")]
    NotFound { uri: String, cause: String },
    #[error("access to {uri} denied: {cause}")]
    AccessDenied { uri: String, cause: String },
    #[error("GET {uri} returned {status}")]
    HttpStatus {
        uri: String,
        status: String,
        /// The status code, for telling transient answers (5xx, 408, 429) from the rest.
        code: u16,
    },
    #[error("cannot read {uri}: {cause}")]
    Read { uri: String, cause: String },
    #[error("no *.onnx model in {dir}")]
    NoModelInDir { dir: String },
    #[error("several *.onnx models in {dir} ({}): point the URI at one of them", names.join(", "))]
    SeveralModelsInDir { dir: String, names: Vec<String> },
    #[error("invalid sha256 {value:?}: expected 64 hex digits")]
    InvalidSha256 { value: String },
    #[error("sha256 mismatch for {uri}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error("malformed model card {uri}: {cause}")]
    MalformedCard { uri: String, cause: String },
    #[error("cannot write {path}: {cause}")]
    Write { path: String, cause: String },
}

impl SourceError {
    /// A short, stable label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnsupportedUri(_) | Self::InvalidUri { .. } => "invalid_uri",
            Self::UnknownBuiltin { .. } | Self::NotFound { .. } => "not_found",
            Self::AccessDenied { .. } => "access_denied",
            Self::HttpStatus { .. } => "http_status",
            Self::Read { .. } => "read_failed",
            Self::NoModelInDir { .. } | Self::SeveralModelsInDir { .. } => "ambiguous_directory",
            Self::InvalidSha256 { .. } => "invalid_sha256",
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::MalformedCard { .. } => "malformed_card",
            Self::Write { .. } => "write_failed",
        }
    }
}

/// Settings that are not read from the environment.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// object_store S3 settings applied over the `AWS_*` environment variables, as
    /// `(key, value)` pairs with object_store's key names (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, ...). Lets a caller (or a test) point at an S3 endpoint
    /// without touching the process environment.
    pub s3: Vec<(String, String)>,
    /// How a remote read that failed for a transient cause is tried again.
    pub retry: RetryPolicy,
}

/// What [`fetch_to_dir_with`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The model file, `DIR/<file name at the origin>`.
    pub path: PathBuf,
    /// The model card written beside it, when the origin had one.
    pub card: Option<PathBuf>,
    /// Size of the model in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the model.
    pub sha256: String,
}

/// Reads the model named by `uri` into memory, verifying `sha256` when given.
pub async fn load_artifact(uri: &str, sha256: Option<&str>) -> Result<ModelArtifact, SourceError> {
    load_artifact_with(uri, sha256, &SourceOptions::default()).await
}

/// Downloads the model named by `uri` into `dir`, keeping its file name, and
/// returns the path written. Used by `modelship-server fetch` (an init container).
pub async fn fetch_to_dir(
    uri: &str,
    dir: &Path,
    sha256: Option<&str>,
) -> Result<PathBuf, SourceError> {
    Ok(
        fetch_to_dir_with(uri, dir, sha256, &SourceOptions::default())
            .await?
            .path,
    )
}

/// [`load_artifact`] with explicit [`SourceOptions`].
pub async fn load_artifact_with(
    uri: &str,
    sha256: Option<&str>,
    options: &SourceOptions,
) -> Result<ModelArtifact, SourceError> {
    let expected = sha256.map(parse_sha256).transpose()?;
    let parsed = ModelUri::parse(uri)?;
    retry::retrying(&parsed, &options.retry, || {
        load_once(&parsed, expected.as_deref(), options)
    })
    .await
}

/// One try of [`load_artifact_with`].
async fn load_once(
    uri: &ModelUri,
    expected: Option<&str>,
    options: &SourceOptions,
) -> Result<ModelArtifact, SourceError> {
    let model = Source::resolve(uri.clone(), options).await?;
    // The model's request first, so that an unreachable or missing model is what the
    // error names; then the small card, so that a malformed one fails before the body.
    let mut chunks = model.open().await?;
    let card = model.read_card().await?.map(|(card, _raw)| card);
    let mut onnx = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        onnx.extend_from_slice(&chunk);
    }
    verify(&model.uri, expected, &hex::encode(hasher.finalize()))?;
    Ok(ModelArtifact {
        default_name: uri::file_stem(&model.file_name).to_string(),
        origin: model.uri.to_string(),
        onnx,
        card,
    })
}

/// [`fetch_to_dir`] with explicit [`SourceOptions`], telling what was written.
///
/// The model is streamed to a temporary file in `dir` and renamed into place only once
/// complete and verified, so `dir` never holds a partial model under the final name.
/// When `sha256` is given and the file is already there with that digest, it is kept.
/// The body goes from the network to the file through the hasher in chunks: memory stays
/// flat whatever the model's size. A try that fails part-way starts again from the start.
pub async fn fetch_to_dir_with(
    uri: &str,
    dir: &Path,
    sha256: Option<&str>,
    options: &SourceOptions,
) -> Result<Fetched, SourceError> {
    let expected = sha256.map(parse_sha256).transpose()?;
    let parsed = ModelUri::parse(uri)?;
    retry::retrying(&parsed, &options.retry, || {
        fetch_once(&parsed, dir, expected.as_deref(), options)
    })
    .await
}

/// One try of [`fetch_to_dir_with`].
async fn fetch_once(
    uri: &ModelUri,
    dir: &Path,
    expected: Option<&str>,
    options: &SourceOptions,
) -> Result<Fetched, SourceError> {
    let model = Source::resolve(uri.clone(), options).await?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| write_error(dir, &e))?;
    let path = dir.join(&model.file_name);
    let card_path = dir.join(uri::card_file_name(&model.file_name));

    if let Some(expected) = expected
        && let Some(size) = existing_with_digest(&path, expected).await
    {
        tracing::info!(path = %path.display(), "model already present with the expected sha256");
        let card = model.read_card().await?.map(|(_, raw)| raw);
        let card = write_card(&card_path, card).await?;
        return Ok(Fetched {
            path,
            card,
            size,
            sha256: expected.to_string(),
        });
    }

    // As in `load_artifact_with`: the model's request, the card, the model's body. The card
    // is written just before the model is renamed into place, so the model appears last
    // and a failed fetch leaves nothing behind.
    let chunks = model.open().await?;
    let card = model.read_card().await?.map(|(_, raw)| raw);
    let temp = temp_path(&path);
    let downloaded = async {
        let (size, actual) = write_file(&temp, chunks).await?;
        verify(&model.uri, expected, &actual)?;
        let card = write_card(&card_path, card).await?;
        Ok::<_, SourceError>((size, actual, card))
    };
    let (size, actual, card) = match downloaded.await {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&temp, &path)
        .await
        .map_err(|e| write_error(&path, &e))?;
    Ok(Fetched {
        path,
        card,
        size,
        sha256: actual,
    })
}

/// A stream of a model's bytes, errors already naming the URI.
type ByteStream = BoxStream<'static, Result<Bytes, SourceError>>;

/// One model object at its origin, a directory or prefix already resolved to its file.
struct Source {
    object: Object,
    /// The resolved URI, for messages and the artifact's origin.
    uri: ModelUri,
    file_name: String,
}

/// A single object and what it takes to read it.
#[derive(Clone)]
enum Object {
    Local(PathBuf),
    Http(reqwest::Client, url::Url),
    S3(s3::S3Store, String),
    Builtin(String, Box<ModelArtifact>),
}

impl Source {
    async fn resolve(uri: ModelUri, options: &SourceOptions) -> Result<Self, SourceError> {
        let object = match &uri {
            ModelUri::Local(path) => Object::Local(local::resolve(path).await?),
            ModelUri::Http(url) => Object::Http(http::client(&uri)?, url.clone()),
            ModelUri::S3 { bucket, key } => {
                let store = s3::S3Store::new(bucket, &options.s3, &uri)?;
                let key = store.resolve(key).await?;
                Object::S3(store, key)
            }
            ModelUri::Builtin(name) => {
                Object::Builtin(name.clone(), Box::new(builtin_artifact(name)?))
            }
        };
        let uri = object.uri();
        let file_name = uri.file_name().ok_or_else(|| SourceError::InvalidUri {
            uri: uri.to_string(),
            reason: "it names no file".to_string(),
        })?;
        Ok(Source {
            object,
            uri,
            file_name,
        })
    }

    /// Starts reading the model's bytes.
    async fn open(&self) -> Result<ByteStream, SourceError> {
        self.object.open().await
    }

    /// The `<stem>.card.json` beside the model, parsed and raw; `None` when there is none.
    async fn read_card(&self) -> Result<Option<(ModelCard, Vec<u8>)>, SourceError> {
        if let Object::Builtin(_, artifact) = &self.object {
            return Ok(artifact.card.clone().map(|card| {
                let raw = serde_json::to_vec_pretty(&card).expect("a ModelCard always serializes");
                (card, raw)
            }));
        }
        let Some(card) = self.object.sibling(&uri::card_file_name(&self.file_name)) else {
            return Ok(None);
        };
        let Some(raw) = card.read_optional().await? else {
            return Ok(None);
        };
        let parsed = serde_json::from_slice(&raw).map_err(|e| SourceError::MalformedCard {
            uri: card.uri().to_string(),
            cause: e.to_string(),
        })?;
        Ok(Some((parsed, raw)))
    }
}

impl Object {
    fn uri(&self) -> ModelUri {
        match self {
            Self::Local(path) => ModelUri::Local(path.clone()),
            Self::Http(_, url) => ModelUri::Http(url.clone()),
            Self::S3(store, key) => ModelUri::S3 {
                bucket: store.bucket().to_string(),
                key: key.clone(),
            },
            Self::Builtin(name, _) => ModelUri::Builtin(name.clone()),
        }
    }

    async fn open(&self) -> Result<ByteStream, SourceError> {
        match self {
            Self::Local(path) => local::open(path).await,
            Self::Http(client, url) => http::open(client, url).await,
            Self::S3(store, key) => store.open(key).await,
            Self::Builtin(_, artifact) => {
                let onnx = Bytes::from(artifact.onnx.clone());
                Ok(futures::stream::iter([Ok(onnx)]).boxed())
            }
        }
    }

    /// The whole object, or `None` when it does not exist (or, for remote
    /// stores, may not be read: S3 answers 403 for missing keys without list rights).
    async fn read_optional(&self) -> Result<Option<Vec<u8>>, SourceError> {
        match self {
            Self::Local(path) => local::read_optional(path).await,
            Self::Http(client, url) => http::read_optional(client, url).await,
            Self::S3(store, key) => store.read_optional(key).await,
            Self::Builtin(..) => Ok(None),
        }
    }

    /// The object named `name` beside this one.
    fn sibling(&self, name: &str) -> Option<Self> {
        Some(match (self, self.uri().sibling(name)?) {
            (Self::Local(_), ModelUri::Local(path)) => Self::Local(path),
            (Self::Http(client, _), ModelUri::Http(url)) => Self::Http(client.clone(), url),
            (Self::S3(store, _), ModelUri::S3 { key, .. }) => Self::S3(store.clone(), key),
            _ => return None,
        })
    }
}

/// The embedded model `name`, or an error listing the available ones.
fn builtin_artifact(name: &str) -> Result<ModelArtifact, SourceError> {
    builtin::artifact(name).ok_or_else(|| SourceError::UnknownBuiltin {
        uri: format!("builtin://{name}"),
        available: builtin::names().iter().map(|n| n.to_string()).collect(),
    })
}

/// Normalizes a user-given digest: hex, case-insensitive, optionally prefixed `sha256:`.
fn parse_sha256(value: &str) -> Result<String, SourceError> {
    let hex = value.trim();
    let hex = hex
        .strip_prefix("sha256:")
        .unwrap_or(hex)
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(SourceError::InvalidSha256 {
            value: value.to_string(),
        })
    }
}

/// Checks the `actual` hex digest against the expected one, when there is one.
fn verify(uri: &ModelUri, expected: Option<&str>, actual: &str) -> Result<(), SourceError> {
    match expected {
        Some(expected) if expected != actual => Err(SourceError::ChecksumMismatch {
            uri: uri.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The size of `path` when it exists and has the `expected` digest.
async fn existing_with_digest(path: &Path, expected: &str) -> Option<u64> {
    let mut chunks = local::open(path).await.ok()?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.ok()?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()) == expected).then_some(size)
}

/// Writes the card's `raw` bytes, when there is a card, to `path`.
async fn write_card(path: &Path, raw: Option<Vec<u8>>) -> Result<Option<PathBuf>, SourceError> {
    let Some(raw) = raw else { return Ok(None) };
    let chunks = futures::stream::iter([Ok(Bytes::from(raw))]).boxed();
    write_atomically(path, chunks).await?;
    Ok(Some(path.to_path_buf()))
}

/// Writes `chunks` to `path` through a temporary file beside it.
async fn write_atomically(path: &Path, chunks: ByteStream) -> Result<u64, SourceError> {
    let temp = temp_path(path);
    let size = match write_file(&temp, chunks).await {
        Ok((size, _)) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&temp, path)
        .await
        .map_err(|e| write_error(path, &e))?;
    Ok(size)
}

/// Streams `chunks` into a new file at `path` and syncs it; returns the byte count
/// and the hex SHA-256 of what was written.
async fn write_file(path: &Path, mut chunks: ByteStream) -> Result<(u64, String), SourceError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| write_error(path, &e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| write_error(path, &e))?;
    }
    file.sync_all().await.map_err(|e| write_error(path, &e))?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// `.<name>.<pid>.partial` beside `path`: hidden, and distinct per process so two
/// fetchers of the same directory do not write into each other's file.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

fn write_error(path: &Path, e: &std::io::Error) -> SourceError {
    SourceError::Write {
        path: path.display().to_string(),
        cause: e.to_string(),
    }
}

/// An error and its sources on one line: `a: b: c`, repeated messages once.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Collapses whitespace (server bodies can be multi-line XML) and caps the length.
fn one_line(text: &str) -> String {
    const MAX: usize = 400;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_hex_case_insensitive_with_optional_prefix() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_sha256(&hex).unwrap(), "ab".repeat(32));
        assert_eq!(
            parse_sha256(&format!("sha256:{hex}")).unwrap(),
            "ab".repeat(32)
        );
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection\nrefused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "Connection refused");
        assert_eq!(one_line(&"x".repeat(500)).len(), 403);
    }
}
