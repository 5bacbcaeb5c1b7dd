//! Models in S3 or an S3-compatible store (MinIO, Ceph, moto), through object_store.
//!
//! Configured like every AWS tool: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, web identity (IRSA)
//! and instance metadata. An `http://` endpoint is allowed as given.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::{ByteStream, ModelUri, SourceError, error_chain, local::is_onnx};

/// A bucket, ready to read from.
#[derive(Clone)]
pub struct S3Store {
    pub(crate) store: Arc<AmazonS3>,
    bucket: String,
}

impl S3Store {
    /// Configures the client from the `AWS_*` environment, then `overrides`
    /// (object_store key names such as `aws_endpoint`).
    pub fn new(
        bucket: &str,
        overrides: &[(String, String)],
        uri: &ModelUri,
    ) -> Result<Self, SourceError> {
        let config_error = |cause: String| SourceError::Read {
            uri: uri.to_string(),
            cause,
        };
        let client = ClientOptions::new()
            // object_store's 30 s default covers the whole body: too short for a large model.
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(60));
        // No retry here: `retry.rs` retries the whole read (listing, request and body) with
        // one policy for every remote source, so the limits it states are the only ones.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: Duration::from_secs(60),
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry);
        // What `AmazonS3Builder::from_env` does, after our client defaults so the
        // environment can still override them.
        for (key, value) in std::env::vars_os() {
            if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
                && key.starts_with("AWS_")
                && let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                builder = builder.with_config(key, value);
            }
        }
        for (key, value) in overrides {
            let key = key
                .parse::<AmazonS3ConfigKey>()
                .map_err(|_| config_error(format!("unknown S3 setting {key:?}")))?;
            builder = builder.with_config(key, value);
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        if endpoint.is_some_and(|e| e.to_ascii_lowercase().starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| config_error(error_chain(&e)))?;
        Ok(Self {
            store: Arc::new(store),
            bucket: bucket.to_string(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `key` itself, or for a prefix (empty or ending in `/`) its single `*.onnx` object.
    pub async fn resolve(&self, key: &str) -> Result<String, SourceError> {
        if !key.is_empty() && !key.ends_with('/') {
            return Ok(key.to_string());
        }
        let prefix = key.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.error(key, e))?;
        let mut models: Vec<String> = listing
            .objects
            .iter()
            .filter(|o| {
                o.location
                    .filename()
                    .is_some_and(|n| is_onnx(n) && !n.starts_with('.'))
            })
            .map(|o| o.location.to_string())
            .collect();
        models.sort();
        let dir = self.shown(key);
        match models.len() {
            1 => Ok(models.remove(0)),
            0 => Err(SourceError::NoModelInDir { dir }),
            _ => Err(SourceError::SeveralModelsInDir {
                dir,
                names: models
                    .iter()
                    .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
                    .collect(),
            }),
        }
    }

    /// Streams the object's bytes.
    pub async fn open(&self, key: &str) -> Result<ByteStream, SourceError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(|e| self.error(key, e))?;
        let this = self.clone();
        let key = key.to_string();
        Ok(result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| this.error(&key, e)))
            .boxed())
    }

    /// The whole object, or `None` when it is missing or forbidden (S3 answers 403 for a
    /// missing key to a reader without list rights).
    pub async fn read_optional(&self, key: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let result = match self.store.get(&Path::from(key)).await {
            Ok(result) => result,
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. },
            ) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error(key, e)),
        };
        let bytes = result.bytes().await.map_err(|e| self.error(key, e))?;
        Ok(Some(bytes.to_vec()))
    }

    fn shown(&self, key: &str) -> String {
        ModelUri::S3 {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
        .to_string()
    }

    fn error(&self, key: &str, e: object_store::Error) -> SourceError {
        let uri = self.shown(key);
        match &e {
            object_store::Error::NotFound { source, .. } => SourceError::NotFound {
                uri,
                cause: s3_cause(source.as_ref()),
            },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => SourceError::AccessDenied {
                uri,
                cause: s3_cause(source.as_ref()),
            },
            _ => SourceError::Read {
                uri,
                cause: s3_cause(&e),
            },
        }
    }
}

/// The cause of a failed S3 request, short: `404 Not Found: NoSuchKey: The specified key
/// does not exist.` when the store answered with an S3 error document, else the error chain
/// (which names the endpoint and, for connection failures, why).
fn s3_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let chain = error_chain(error);
    let between = |open: &str, close: &str| {
        let start = chain.find(open)? + open.len();
        let len = chain[start..].find(close)?;
        Some(chain[start..start + len].to_string())
    };
    match (between("status code: ", ":"), between("<Code>", "</Code>")) {
        (Some(status), Some(code)) => match between("<Message>", "</Message>") {
            Some(message) => format!("{status}: {code}: {message}"),
            None => format!("{status}: {code}"),
        },
        _ => chain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_summarized() {
        let body = "Error performing GET http://127.0.0.1:1/b/k in 4ms - Server returned non-2xx status code: \
                    404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code>\
                    <Message>The specified key does not exist.</Message><RequestId>x</RequestId></Error>";
        let error = std::io::Error::other(body);
        assert_eq!(
            s3_cause(&error),
            "404 Not Found: NoSuchKey: The specified key does not exist."
        );
        let error = std::io::Error::other("tcp connect error: Connection refused");
        assert_eq!(s3_cause(&error), "tcp connect error: Connection refused");
    }
}
