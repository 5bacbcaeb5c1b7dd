//! Where a model comes from: `spec.model.uri` parsed into a [`ModelSource`].

use super::names::is_dns_subdomain;

/// Where a model comes from, parsed from `spec.model.uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// `builtin://NAME`: compiled into the server, nothing to fetch.
    Builtin(String),
    /// `file:///PATH`: already on the server's file system (a custom image).
    File(String),
    /// `http://` or `https://`: fetched by the init container.
    Http(String),
    /// `s3://BUCKET/KEY`: fetched by the init container with the credentials Secret.
    S3(String),
    /// `pvc://CLAIM/PATH`: the claim is mounted read-only.
    Pvc { claim: String, path: String },
}

impl ModelSource {
    /// Parses a model URI; the error says what the URI must look like.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err("must be a URI such as builtin://iris, https://HOST/model.onnx, s3://BUCKET/KEY or pvc://CLAIM/PATH".into());
        };
        if rest.is_empty() {
            return Err(format!("must name something after {scheme}://"));
        }
        match scheme {
            "builtin" => Ok(Self::Builtin(rest.to_string())),
            "file" => Ok(Self::File(uri.to_string())),
            "http" | "https" => Ok(Self::Http(uri.to_string())),
            "s3" => Ok(Self::S3(uri.to_string())),
            "pvc" => {
                let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
                if !is_dns_subdomain(claim) || path.is_empty() {
                    return Err("must be pvc://CLAIM/PATH for a PersistentVolumeClaim".into());
                }
                if path.split('/').any(|segment| segment == "..") {
                    return Err("must not contain '..' in the path of a pvc:// URI".into());
                }
                Ok(Self::Pvc {
                    claim: claim.to_string(),
                    path: path.trim_start_matches('/').to_string(),
                })
            }
            other => Err(format!(
                "must start with builtin://, file://, http://, https://, s3:// or pvc:// (not {other}://)"
            )),
        }
    }

    /// Whether an init container downloads the model before the server starts.
    pub fn needs_fetch(&self) -> bool {
        matches!(self, Self::Http(_) | Self::S3(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_to_its_source() {
        assert!(
            ModelSource::parse("https://h/m.onnx")
                .unwrap()
                .needs_fetch()
        );
        assert!(ModelSource::parse("s3://b/k.onnx").unwrap().needs_fetch());
        assert!(!ModelSource::parse("file:///m.onnx").unwrap().needs_fetch());
        assert_eq!(
            ModelSource::parse("pvc://models/iris/model.onnx").unwrap(),
            ModelSource::Pvc {
                claim: "models".into(),
                path: "iris/model.onnx".into()
            }
        );
    }
}
