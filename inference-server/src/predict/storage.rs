//! Where a batch run's inputs and outputs live: a local path (a PVC mounted
//! in the pod, or any directory) or S3, behind one small, blocking API the
//! reader and writer threads call.
//!
//! S3 goes through object_store, configured by `source::s3::S3Store` exactly
//! as model downloads are (the `AWS_*` environment); its async calls run on
//! the caller's tokio runtime through [`Handle::block_on`] (never called from
//! a runtime thread: the pipeline runs on plain threads). Reads stream (a
//! ranged GET read as it is consumed), so no input is ever copied whole.
//! Writes of a part are all or nothing: a local part is written to a hidden
//! temporary file and renamed; an S3 part is one PUT when it is small, else a
//! multipart upload completed only by [`PartWriter::commit`] and aborted
//! otherwise.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
};
use tokio::runtime::Handle;

use crate::source::ModelUri;
use crate::source::s3::S3Store;

/// A storage failure: `missing` when the object or prefix does not exist.
#[derive(Debug, Clone)]
pub struct StorageError {
    pub message: String,
    pub missing: bool,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(message: String) -> StorageError {
    StorageError {
        message,
        missing: false,
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// One object: its key (a path for local storage) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// A local directory tree or an S3 bucket.
#[derive(Clone)]
pub struct Store {
    kind: Kind,
    handle: Handle,
}

#[derive(Clone)]
enum Kind {
    Local,
    S3 {
        store: Arc<dyn ObjectStore>,
        bucket: String,
    },
}

/// A parsed `--input`/`--output`: the store and the key (or local path) in it.
pub struct Location {
    pub store: Store,
    pub key: String,
}

impl Location {
    /// Parses `s3://bucket/key`, `file:///abs/path` or a plain path.
    pub fn parse(uri: &str, handle: &Handle) -> std::result::Result<Location, String> {
        let parsed = ModelUri::parse(uri).map_err(|e| e.to_string())?;
        let (kind, key) = match parsed {
            ModelUri::Local(path) => (Kind::Local, path.to_string_lossy().into_owned()),
            ModelUri::S3 { bucket, key } => {
                let s3 = S3Store::new(
                    &bucket,
                    &[],
                    &ModelUri::parse(uri).map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
                let store: Arc<dyn ObjectStore> = s3.store;
                (Kind::S3 { store, bucket }, key)
            }
            _ => {
                return Err(format!(
                    "{uri}: use s3://bucket/key, file:///absolute/path or a path"
                ));
            }
        };
        Ok(Location {
            store: Store {
                kind,
                handle: handle.clone(),
            },
            key,
        })
    }
}

impl Store {
    /// `key` as the user would write it (`s3://bucket/key` or the path).
    pub fn shown(&self, key: &str) -> String {
        match &self.kind {
            Kind::Local => key.to_string(),
            Kind::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local)
    }

    /// The key of `name` under the prefix `prefix` (a directory or key prefix).
    pub fn join(&self, prefix: &str, name: &str) -> String {
        match &self.kind {
            Kind::Local => Path::new(prefix).join(name).to_string_lossy().into_owned(),
            Kind::S3 { .. } if prefix.is_empty() => name.to_string(),
            Kind::S3 { .. } => format!("{}/{name}", prefix.trim_end_matches('/')),
        }
    }

    fn error(&self, key: &str, e: object_store::Error) -> StorageError {
        let missing = matches!(e, object_store::Error::NotFound { .. });
        StorageError {
            message: format!("{}: {}", self.shown(key), crate::source::error_chain(&e)),
            missing,
        }
    }

    /// The object `key` when it exists and is a file (`None` when it does not exist).
    pub fn head(&self, key: &str) -> Result<Option<Object>> {
        match &self.kind {
            Kind::Local => match fs::metadata(key) {
                Ok(m) if m.is_file() => Ok(Some(Object {
                    key: key.to_string(),
                    size: m.len(),
                })),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(err(format!("{key}: {e}"))),
            },
            Kind::S3 { store, .. } if !key.is_empty() && !key.ends_with('/') => {
                match self.handle.block_on(store.head(&StorePath::from(key))) {
                    Ok(meta) => Ok(Some(Object {
                        key: key.to_string(),
                        size: meta.size,
                    })),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.error(key, e)),
                }
            }
            Kind::S3 { .. } => Ok(None),
        }
    }

    /// Every object under the prefix `prefix` (recursively), with its key;
    /// an empty list when the prefix does not exist.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        match &self.kind {
            Kind::Local => {
                let mut out = Vec::new();
                match fs::metadata(prefix) {
                    Ok(m) if m.is_dir() => walk(Path::new(prefix), &mut out)?,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err(format!("{prefix}: {e}"))),
                }
                Ok(out)
            }
            Kind::S3 { store, .. } => {
                let trimmed = prefix.trim_end_matches('/');
                let path = (!trimmed.is_empty()).then(|| StorePath::from(trimmed));
                let mut listing = store.list(path.as_ref());
                let mut out = Vec::new();
                self.handle.block_on(async {
                    while let Some(meta) = listing.next().await {
                        let meta = meta.map_err(|e| self.error(prefix, e))?;
                        out.push(Object {
                            key: meta.location.to_string(),
                            size: meta.size,
                        });
                    }
                    Ok::<_, StorageError>(())
                })?;
                Ok(out)
            }
        }
    }

    /// Reads `key` from byte `start` to its end (`size`), as it is consumed.
    pub fn open(&self, key: &str, start: u64, size: u64) -> Result<Box<dyn Read + Send>> {
        match &self.kind {
            Kind::Local => {
                let mut file = File::open(key).map_err(|e| local_error(key, &e))?;
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| err(format!("{key}: {e}")))?;
                Ok(Box::new(file))
            }
            Kind::S3 { .. } if start >= size => Ok(Box::new(io::empty())),
            Kind::S3 { store, .. } => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(start..size)),
                    ..Default::default()
                };
                let result = self
                    .handle
                    .block_on(store.get_opts(&StorePath::from(key), options))
                    .map_err(|e| self.error(key, e))?;
                let this = self.clone();
                let shown = key.to_string();
                let stream = result
                    .into_stream()
                    .map(move |chunk| chunk.map_err(|e| this.error(&shown, e)))
                    .boxed();
                Ok(Box::new(StreamRead {
                    handle: self.handle.clone(),
                    stream,
                    chunk: Bytes::new(),
                }))
            }
        }
    }

    /// Bytes `start..start + len` of `key`.
    pub fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        match &self.kind {
            Kind::Local => {
                let mut file = File::open(key).map_err(|e| local_error(key, &e))?;
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| err(format!("{key}: {e}")))?;
                let mut buf = vec![0; len as usize];
                file.read_exact(&mut buf)
                    .map_err(|e| err(format!("{key}: {e}")))?;
                Ok(buf.into())
            }
            Kind::S3 { store, .. } => self
                .handle
                .block_on(store.get_range(&StorePath::from(key), start..start + len))
                .map_err(|e| self.error(key, e)),
        }
    }

    /// The whole (small) object, or `None` when it does not exist.
    pub fn read_optional(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match &self.kind {
            Kind::Local => match fs::read(key) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(err(format!("{key}: {e}"))),
            },
            Kind::S3 { store, .. } => {
                let got = self.handle.block_on(async {
                    let result = store.get(&StorePath::from(key)).await?;
                    result.bytes().await
                });
                match got {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.error(key, e)),
                }
            }
        }
    }

    /// Writes a small object whole (through a temporary file locally).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let mut part = self.create(key, "put")?;
        part.write_all(&bytes)
            .map_err(|e| err(format!("{}: {e}", self.shown(key))))?;
        part.commit()
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        match &self.kind {
            Kind::Local => match fs::remove_file(key) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(err(format!("{key}: {e}"))),
            },
            Kind::S3 { store, .. } => {
                match self.handle.block_on(store.delete(&StorePath::from(key))) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.error(key, e)),
                }
            }
        }
    }

    /// Starts writing `key`: nothing appears under that name before
    /// [`PartWriter::commit`]. `tag` makes the local temporary name unique to the writer.
    pub fn create(&self, key: &str, tag: &str) -> Result<PartWriter> {
        let target = match &self.kind {
            Kind::Local => {
                let path = PathBuf::from(key);
                let dir = path.parent().unwrap_or(Path::new("."));
                fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let temp = dir.join(format!(".{name}.{tag}.{}.tmp", std::process::id()));
                let file =
                    File::create(&temp).map_err(|e| err(format!("{}: {e}", temp.display())))?;
                Target::Local {
                    file: Some(BufWriter::with_capacity(256 * 1024, file)),
                    temp,
                    path,
                }
            }
            Kind::S3 { store, .. } => Target::S3 {
                store: store.clone(),
                key: key.to_string(),
                buffer: Vec::new(),
                upload: None,
            },
        };
        Ok(PartWriter {
            target,
            handle: self.handle.clone(),
            shown: self.shown(key),
            done: false,
        })
    }
}

/// Recursively lists the files under `dir`.
fn walk(dir: &Path, out: &mut Vec<Object>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if meta.is_file() {
            out.push(Object {
                key: path.to_string_lossy().into_owned(),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn local_error(key: &str, e: &io::Error) -> StorageError {
    StorageError {
        message: format!("{key}: {e}"),
        missing: e.kind() == io::ErrorKind::NotFound,
    }
}

/// A blocking reader over an object_store byte stream.
struct StreamRead {
    handle: Handle,
    stream: BoxStream<'static, Result<Bytes>>,
    chunk: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(e.message)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// S3 parts of a multipart upload: 8 MiB (S3 wants at least 5 MiB but the last).
const UPLOAD_PART: usize = 8 * 1024 * 1024;

enum Target {
    Local {
        file: Option<BufWriter<File>>,
        temp: PathBuf,
        path: PathBuf,
    },
    S3 {
        store: Arc<dyn ObjectStore>,
        key: String,
        buffer: Vec<u8>,
        upload: Option<Box<dyn MultipartUpload>>,
    },
}

/// An object being written: it appears whole at [`PartWriter::commit`], and
/// never when the writer is dropped without it.
pub struct PartWriter {
    target: Target,
    handle: Handle,
    shown: String,
    done: bool,
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.target {
            Target::Local { file, .. } => file.as_mut().expect("written before commit").write(buf),
            Target::S3 {
                store,
                key,
                buffer,
                upload,
            } => {
                buffer.extend_from_slice(buf);
                if buffer.len() >= UPLOAD_PART {
                    if upload.is_none() {
                        let started = self
                            .handle
                            .block_on(store.put_multipart(&StorePath::from(key.as_str())))
                            .map_err(io::Error::other)?;
                        *upload = Some(started);
                    }
                    let part = PutPayload::from(std::mem::take(buffer));
                    let pending = upload.as_mut().expect("started above").put_part(part);
                    self.handle.block_on(pending).map_err(io::Error::other)?;
                }
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::Local { file, .. } => file.as_mut().map_or(Ok(()), |f| f.flush()),
            Target::S3 { .. } => Ok(()),
        }
    }
}

impl PartWriter {
    /// Makes the object appear, whole.
    pub fn commit(mut self) -> Result<()> {
        let shown = self.shown.clone();
        let fail = |e: String| err(format!("cannot write {shown}: {e}"));
        match &mut self.target {
            Target::Local { file, temp, path } => {
                let file = file.take().expect("committed once");
                let file = file.into_inner().map_err(|e| fail(e.error().to_string()))?;
                file.sync_all().map_err(|e| fail(e.to_string()))?;
                fs::rename(&*temp, &*path).map_err(|e| fail(e.to_string()))?;
            }
            Target::S3 {
                store,
                key,
                buffer,
                upload,
            } => match upload.as_mut() {
                None => {
                    let payload = PutPayload::from(std::mem::take(buffer));
                    self.handle
                        .block_on(store.put(&StorePath::from(key.as_str()), payload))
                        .map_err(|e| fail(e.to_string()))?;
                }
                Some(upload) => {
                    if !buffer.is_empty() {
                        let part = PutPayload::from(std::mem::take(buffer));
                        self.handle
                            .block_on(upload.put_part(part))
                            .map_err(|e| fail(e.to_string()))?;
                    }
                    self.handle
                        .block_on(upload.complete())
                        .map_err(|e| fail(e.to_string()))?;
                }
            },
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &mut self.target {
            Target::Local { file, temp, .. } => {
                drop(file.take());
                let _ = fs::remove_file(&*temp);
            }
            Target::S3 { upload, .. } => {
                if let Some(upload) = upload.as_mut() {
                    let _ = self.handle.block_on(upload.abort());
                }
            }
        }
    }
}
