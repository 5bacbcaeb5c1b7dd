//! Validation of a `ModelDeployment` in the operator.
//!
//! The CRD's CEL rules make the API server reject most bad objects; the same rules are checked
//! here so that an object stored before a rule existed (or applied with validation off) ends up
//! `Degraded`/`InvalidSpec` with a message naming the field instead of half-built children.

use std::fmt;
use std::time::Duration;

use kube::ResourceExt;

use crate::crd::{MAX_BATCH_SIZE, ModelDeployment};

/// One broken rule: the field's path and what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// Every broken rule of a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

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

/// Parses a batching delay such as `2ms`, `500us` or `1s`.
pub fn parse_batch_delay(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        _ => None,
    }
}

/// Checks every rule of the API on `md`; the error lists all broken rules.
pub fn validate(md: &ModelDeployment) -> Result<ModelSource, InvalidSpec> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, rule: String| {
        errors.push(FieldError {
            field: field.into(),
            rule,
        })
    };
    let spec = &md.spec;

    let name = md.name_any();
    if name.len() > 63 || !is_dns_label(&name) {
        fail(
            "metadata.name",
            "must be a DNS label of at most 63 characters starting with a letter (it names the Service)".into(),
        );
    }

    let source = ModelSource::parse(&spec.model.uri);
    if let Err(rule) = &source {
        fail("spec.model.uri", rule.clone());
    }
    if let Some(model_name) = &spec.model.name
        && !is_token(model_name)
    {
        fail("spec.model.name", TOKEN_RULE.into());
    }
    if let Some(version) = &spec.model.version
        && !is_token(version)
    {
        fail("spec.model.version", TOKEN_RULE.into());
    }
    if let Some(sha) = &spec.model.sha256
        && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
    {
        fail("spec.model.sha256", "must be 64 hexadecimal digits".into());
    }

    if let Some(replicas) = spec.replicas
        && replicas < 0
    {
        fail("spec.replicas", format!("must be >= 0 (is {replicas})"));
    }

    if let Some(auto) = &spec.autoscaling {
        let min = auto.min_replicas.unwrap_or(1);
        if min < 1 {
            fail(
                "spec.autoscaling.minReplicas",
                format!("must be >= 1 (is {min})"),
            );
        }
        if auto.max_replicas < 1 {
            fail(
                "spec.autoscaling.maxReplicas",
                format!("must be >= 1 (is {})", auto.max_replicas),
            );
        }
        if min > auto.max_replicas {
            fail(
                "spec.autoscaling.minReplicas",
                format!(
                    "must be <= spec.autoscaling.maxReplicas ({min} > {})",
                    auto.max_replicas
                ),
            );
        }
        for (field, value) in [
            (
                "spec.autoscaling.targetCPUUtilizationPercentage",
                auto.target_cpu_utilization_percentage,
            ),
            (
                "spec.autoscaling.targetMemoryUtilizationPercentage",
                auto.target_memory_utilization_percentage,
            ),
        ] {
            if let Some(v) = value
                && v < 1
            {
                fail(field, format!("must be >= 1 (is {v})"));
            }
        }
    }

    if let Some(batching) = &spec.batching {
        if let Some(size) = batching.max_batch_size
            && !(1..=MAX_BATCH_SIZE).contains(&size)
        {
            fail(
                "spec.batching.maxBatchSize",
                format!("must be between 1 and {MAX_BATCH_SIZE} (is {size})"),
            );
        }
        if let Some(delay) = &batching.max_batch_delay {
            match parse_batch_delay(delay) {
                None => fail(
                    "spec.batching.maxBatchDelay",
                    format!("must be a duration like 2ms, 500us or 1s (is {delay:?})"),
                ),
                Some(d) if d > Duration::from_secs(1) => fail(
                    "spec.batching.maxBatchDelay",
                    format!("must be at most 1s (is {delay})"),
                ),
                Some(_) => {}
            }
        }
    }

    if let Some(port) = spec.service.as_ref().and_then(|s| s.port)
        && !(1..=65535).contains(&port)
    {
        fail(
            "spec.service.port",
            format!("must be between 1 and 65535 (is {port})"),
        );
    }

    match source {
        Ok(source) if errors.is_empty() => Ok(source),
        _ => Err(InvalidSpec(errors)),
    }
}

const TOKEN_RULE: &str =
    "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'";

fn is_token(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(spec_yaml: &str) -> ModelDeployment {
        let yaml = format!(
            "apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: iris, namespace: ml}}\nspec:\n{spec_yaml}"
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn fields(result: Result<ModelSource, InvalidSpec>) -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn minimal_spec_is_valid() {
        let source = validate(&md("  model: {uri: builtin://iris}\n")).unwrap();
        assert_eq!(source, ModelSource::Builtin("iris".into()));
    }

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

    #[test]
    fn unsupported_scheme_is_rejected_naming_the_field() {
        let errors = fields(validate(&md("  model: {uri: 'ftp://h/m.onnx'}\n")));
        assert_eq!(
            errors,
            [
                "spec.model.uri: must start with builtin://, file://, http://, https://, s3:// or pvc:// (not ftp://)"
            ]
        );
    }

    #[test]
    fn pvc_uri_needs_claim_and_path() {
        for uri in ["pvc://models", "pvc://Models/x.onnx", "pvc://m/../etc/x"] {
            let errors = fields(validate(&md(&format!("  model: {{uri: '{uri}'}}\n"))));
            assert!(
                errors[0].starts_with("spec.model.uri: must"),
                "{uri}: {errors:?}"
            );
        }
    }

    #[test]
    fn min_replicas_above_max_is_rejected() {
        let errors = fields(validate(&md(
            "  model: {uri: builtin://iris}\n  autoscaling: {minReplicas: 3, maxReplicas: 2}\n",
        )));
        assert_eq!(
            errors,
            ["spec.autoscaling.minReplicas: must be <= spec.autoscaling.maxReplicas (3 > 2)"]
        );
    }

    #[test]
    fn negative_replicas_are_rejected() {
        let errors = fields(validate(&md(
            "  model: {uri: builtin://iris}\n  replicas: -1\n",
        )));
        assert_eq!(errors, ["spec.replicas: must be >= 0 (is -1)"]);
    }

    #[test]
    fn batching_bounds_are_checked() {
        let errors = fields(validate(&md(
            "  model: {uri: builtin://iris}\n  batching: {maxBatchSize: 0, maxBatchDelay: 2s}\n",
        )));
        assert_eq!(
            errors,
            [
                "spec.batching.maxBatchSize: must be between 1 and 4096 (is 0)",
                "spec.batching.maxBatchDelay: must be at most 1s (is 2s)"
            ]
        );
        let errors = fields(validate(&md(
            "  model: {uri: builtin://iris}\n  batching: {maxBatchDelay: 5 ms}\n",
        )));
        assert_eq!(
            errors,
            ["spec.batching.maxBatchDelay: must be a duration like 2ms, 500us or 1s (is \"5 ms\")"]
        );
    }

    #[test]
    fn batch_delays_parse() {
        assert_eq!(parse_batch_delay("500us"), Some(Duration::from_micros(500)));
        assert_eq!(parse_batch_delay("2ms"), Some(Duration::from_millis(2)));
        assert_eq!(parse_batch_delay("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_batch_delay("ms"), None);
        assert_eq!(parse_batch_delay("1m"), None);
    }

    #[test]
    fn all_broken_rules_are_reported_together() {
        let errors = fields(validate(&md(
            "  model: {uri: builtin://iris, sha256: abc, name: '-x'}\n  service: {port: 0}\n",
        )));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("spec.model.name:"));
        assert!(errors[1].starts_with("spec.model.sha256:"));
        assert!(errors[2].starts_with("spec.service.port:"));
    }

    #[test]
    fn name_must_fit_a_service() {
        let mut bad = md("  model: {uri: builtin://iris}\n");
        bad.metadata.name = Some("iris.v2".into());
        assert!(fields(validate(&bad))[0].starts_with("metadata.name:"));
    }
}
