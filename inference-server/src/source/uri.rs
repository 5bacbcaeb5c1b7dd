//! Parsing model URIs, and showing them without their secrets.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::SourceError;

/// Where a model lives, as the user wrote it in `--model` or `fetch URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// A file, or a directory holding exactly one `*.onnx` file. `file://` URIs land here too.
    Local(PathBuf),
    /// An `http://` or `https://` URL (query strings such as presigned signatures are kept).
    Http(Url),
    /// `s3://bucket/key`; a key ending in `/` (or empty) is a prefix holding one `*.onnx` object.
    S3 { bucket: String, key: String },
    /// `builtin://NAME`: a model embedded in the binary.
    Builtin(String),
}

impl ModelUri {
    /// Parses a model URI; anything without a `scheme://` is a local path.
    pub fn parse(raw: &str) -> Result<Self, SourceError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid(raw, "the URI is empty"));
        }
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(raw)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "builtin" => {
                let name = rest.trim_end_matches('/');
                if name.is_empty() || name.contains('/') {
                    return Err(invalid(raw, "expected builtin://NAME"));
                }
                Ok(Self::Builtin(name.to_string()))
            }
            "file" => {
                let url = Url::parse(raw).map_err(|e| invalid(raw, &e.to_string()))?;
                let remote = url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost");
                match url.to_file_path() {
                    Ok(path) if !remote => Ok(Self::Local(path)),
                    _ => Err(invalid(raw, "expected file:///absolute/path")),
                }
            }
            "http" | "https" => {
                let url = Url::parse(raw).map_err(|e| invalid(&redact(raw), &e.to_string()))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid(&redact(raw), "the URL has no host"));
                }
                Ok(Self::Http(url))
            }
            "s3" => {
                let url = Url::parse(raw).map_err(|e| invalid(raw, &e.to_string()))?;
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    return Err(invalid(raw, "expected s3://BUCKET/KEY"));
                }
                let key = percent_decode(url.path().trim_start_matches('/'));
                Ok(Self::S3 { bucket, key })
            }
            "pvc" => Err(invalid(
                raw,
                "pvc:// is resolved by the operator, which mounts the claim; give the server the mounted path",
            )),
            _ => Err(SourceError::UnsupportedUri(redact(raw))),
        }
    }

    /// The name the object has at its origin (`iris.onnx`), used for the downloaded file.
    /// `None` for directories and prefixes, which are resolved to one file first.
    pub fn file_name(&self) -> Option<String> {
        let name = match self {
            Self::Local(path) => path.file_name()?.to_string_lossy().into_owned(),
            Self::Http(url) => percent_decode(url.path_segments()?.next_back()?),
            Self::S3 { key, .. } => key.rsplit('/').next()?.to_string(),
            Self::Builtin(name) => format!("{name}.onnx"),
        };
        let usable = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
        usable.then_some(name)
    }

    /// The object named `name` in the same directory, bucket prefix or URL path.
    /// Used for the model card that sits beside a model.
    pub fn sibling(&self, name: &str) -> Option<Self> {
        match self {
            Self::Local(path) => Some(Self::Local(path.with_file_name(name))),
            Self::Http(url) => {
                let mut url = url.clone();
                // A presigned query signs one object only; the sibling is asked for without it.
                url.set_query(None);
                url.set_fragment(None);
                url.path_segments_mut().ok()?.pop().push(name);
                Some(Self::Http(url))
            }
            Self::S3 { bucket, key } => {
                let dir = key
                    .rsplit_once('/')
                    .map(|(dir, _)| format!("{dir}/"))
                    .unwrap_or_default();
                Some(Self::S3 {
                    bucket: bucket.clone(),
                    key: format!("{dir}{name}"),
                })
            }
            Self::Builtin(_) => None,
        }
    }
}

/// Shows the URI the way errors and logs may: no user:password, no query string
/// (presigned URLs carry credentials there).
impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Http(url) => f.write_str(&redact_url(url)),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::Builtin(name) => write!(f, "builtin://{name}"),
        }
    }
}

/// The model file name without its extension: `iris` for `iris.onnx`.
pub fn file_stem(file_name: &str) -> &str {
    match file_name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file_name,
    }
}

/// The model card's file name for a model file name: `iris.card.json` for `iris.onnx`.
pub fn card_file_name(model_file_name: &str) -> String {
    format!("{}.card.json", file_stem(model_file_name))
}

/// A raw URI string with any credentials removed, for messages about URIs that did not parse.
pub fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) if url.has_host() => redact_url(&url),
        _ if raw.contains('@') || raw.contains('?') => {
            "<URI with credentials redacted>".to_string()
        }
        _ => raw.to_string(),
    }
}

fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let had_userinfo = !url.username().is_empty() || url.password().is_some();
    if had_userinfo {
        // Cannot fail on URLs with a host.
        let _ = shown.set_password(None);
        let _ = shown.set_username("***");
    }
    shown.set_query(None);
    shown.set_fragment(None);
    match url.query() {
        Some(_) => format!("{shown}?<redacted>"),
        None => shown.to_string(),
    }
}

fn percent_decode(segment: &str) -> String {
    // `url` keeps paths percent-encoded; the object name is the decoded one.
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_string())
}

fn invalid(uri: &str, reason: &str) -> SourceError {
    SourceError::InvalidUri {
        uri: uri.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> ModelUri {
        ModelUri::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn plain_paths_are_local() {
        assert_eq!(
            parse("/models/iris.onnx"),
            ModelUri::Local("/models/iris.onnx".into())
        );
        assert_eq!(parse("models"), ModelUri::Local("models".into()));
        assert_eq!(
            parse("./a b/iris.onnx"),
            ModelUri::Local("./a b/iris.onnx".into())
        );
    }

    #[test]
    fn file_urls_become_paths() {
        assert_eq!(
            parse("file:///models/iris.onnx"),
            ModelUri::Local("/models/iris.onnx".into())
        );
        assert_eq!(
            parse("file:///m/a%20b.onnx"),
            ModelUri::Local("/m/a b.onnx".into())
        );
        assert_eq!(
            parse("file://localhost/m/iris.onnx"),
            ModelUri::Local("/m/iris.onnx".into())
        );
        assert!(matches!(
            ModelUri::parse("file://server/iris.onnx"),
            Err(SourceError::InvalidUri { .. })
        ));
    }

    #[test]
    fn http_urls_keep_their_query() {
        let uri = parse("https://example.com/m/iris.onnx?X-Amz-Signature=abc");
        let ModelUri::Http(url) = &uri else {
            panic!("{uri:?}")
        };
        assert_eq!(url.query(), Some("X-Amz-Signature=abc"));
        assert_eq!(uri.file_name().as_deref(), Some("iris.onnx"));
    }

    #[test]
    fn s3_urls_split_bucket_and_key() {
        assert_eq!(
            parse("s3://models/team/iris.onnx"),
            ModelUri::S3 {
                bucket: "models".into(),
                key: "team/iris.onnx".into()
            }
        );
        assert_eq!(
            parse("s3://models/"),
            ModelUri::S3 {
                bucket: "models".into(),
                key: "".into()
            }
        );
        assert_eq!(
            parse("s3://models/a%20b.onnx"),
            ModelUri::S3 {
                bucket: "models".into(),
                key: "a b.onnx".into()
            }
        );
        assert!(matches!(
            ModelUri::parse("s3:///key"),
            Err(SourceError::InvalidUri { .. })
        ));
    }

    #[test]
    fn builtin_names() {
        assert_eq!(parse("builtin://iris"), ModelUri::Builtin("iris".into()));
        assert_eq!(
            parse("BUILTIN://iris-rf/"),
            ModelUri::Builtin("iris-rf".into())
        );
        assert!(matches!(
            ModelUri::parse("builtin://"),
            Err(SourceError::InvalidUri { .. })
        ));
    }

    #[test]
    fn unknown_schemes_are_rejected_with_the_supported_list() {
        let err = ModelUri::parse("gs://bucket/iris.onnx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gs://bucket/iris.onnx") && err.contains("s3://"),
            "{err}"
        );
        let err = ModelUri::parse("pvc://claim/iris.onnx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mounted path"), "{err}");
        assert!(matches!(
            ModelUri::parse("  "),
            Err(SourceError::InvalidUri { .. })
        ));
    }

    #[test]
    fn display_hides_credentials() {
        let uri = parse("https://user:secret@example.com/iris.onnx?X-Amz-Signature=abc#x");
        let shown = uri.to_string();
        assert!(
            !shown.contains("secret") && !shown.contains("abc") && !shown.contains("user"),
            "{shown}"
        );
        assert_eq!(shown, "https://***@example.com/iris.onnx?<redacted>");
        assert_eq!(
            parse("http://example.com/iris.onnx").to_string(),
            "http://example.com/iris.onnx"
        );
        assert!(!redact("https://user:secret@exa mple.com/").contains("secret"));
    }

    #[test]
    fn file_names_and_siblings() {
        let uri = parse("https://example.com/m/iris%20v2.onnx?sig=1");
        assert_eq!(uri.file_name().as_deref(), Some("iris v2.onnx"));
        let card = uri.sibling(&card_file_name("iris v2.onnx")).unwrap();
        assert_eq!(
            card.to_string(),
            "https://example.com/m/iris%20v2.card.json"
        );

        let uri = parse("s3://b/team/iris.onnx");
        assert_eq!(
            uri.sibling("iris.card.json"),
            Some(parse("s3://b/team/iris.card.json"))
        );
        let uri = parse("s3://b/iris.onnx");
        assert_eq!(
            uri.sibling("iris.card.json"),
            Some(parse("s3://b/iris.card.json"))
        );

        let uri = parse("/m/iris.onnx");
        assert_eq!(
            uri.sibling("iris.card.json"),
            Some(parse("/m/iris.card.json"))
        );
        assert_eq!(
            parse("builtin://iris").file_name().as_deref(),
            Some("iris.onnx")
        );
        assert_eq!(parse("https://example.com/").file_name(), None);
        assert_eq!(parse("https://example.com/a%2F..").file_name(), None);
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem("iris.onnx"), "iris");
        assert_eq!(file_stem("iris.v2.onnx"), "iris.v2");
        assert_eq!(file_stem("model"), "model");
        assert_eq!(file_stem(".onnx"), ".onnx");
        assert_eq!(card_file_name("iris.onnx"), "iris.card.json");
    }
}
