//! Validation of a `ModelDeployment`: the rules of the API checked, every default resolved.
//!
//! [`validate`] turns a `ModelDeployment` into a [`Validated`], the one input of the builders,
//! or into an [`InvalidSpec`] that names every broken rule with its field. The CRD's CEL rules
//! make the API server reject most bad objects; the same rules are checked here so that an
//! object stored before a rule existed (or applied with validation off) ends up
//! `Degraded`/`InvalidSpec` with a message naming the field instead of half-built children.

mod disruption;
mod monitoring;
mod names;
mod source;
mod traffic;
mod validated;

use std::fmt;
use std::time::Duration;

use kube::ResourceExt;

use crate::config::Config;
use crate::crd::{
    AutoscalingSpec, BatchingSpec, MAX_BATCH_SIZE, ModelDeployment, ModelDeploymentSpec, ModelSpec,
    ServiceType,
};
use names::{TOKEN_RULE, is_dns_label, is_token};

pub use disruption::{AUTO_BUDGET_REPLICAS, DEFAULT_MAX_UNAVAILABLE, Disruption};
pub use monitoring::{Monitoring, PayloadLog};
pub use source::ModelSource;
pub use traffic::{CANARY_SUFFIX, DEFAULT_CANARY_REPLICAS, MAX_NAME_WITH_CANARY, canary_name};
pub use validated::{
    Auth, Autoscaling, BatchDelay, Batching, Canary, DEFAULT_MIN_REPLICAS, DEFAULT_REPLICAS,
    DEFAULT_SERVICE_PORT, DEFAULT_TARGET_CPU, Endpoint, Expose, Model, Scaling, Server,
    ServiceSettings, Validated,
};

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

/// The broken rules found so far.
#[derive(Default)]
struct Rules(Vec<FieldError>);

impl Rules {
    fn fail(&mut self, field: &str, rule: String) {
        self.0.push(FieldError {
            field: field.into(),
            rule,
        });
    }
}

/// Checks every rule of the API on `md` and resolves every default; the error lists all broken
/// rules, in the order of the spec's fields.
pub fn validate(md: &ModelDeployment, config: &Config) -> Result<Validated, InvalidSpec> {
    let mut rules = Rules::default();
    let spec = &md.spec;

    let name = md.name_any();
    if name.len() > 63 || !is_dns_label(&name) {
        rules.fail(
            "metadata.name",
            "must be a DNS label of at most 63 characters starting with a letter (it names the Service)".into(),
        );
    }
    let namespace = md.namespace();
    if namespace.is_none() {
        rules.fail("metadata.namespace", "must be set".into());
    }
    let model = model(&spec.model, &mut rules);
    let scaling = scaling(spec, &mut rules);
    let batching = batching(spec.batching.as_ref(), &mut rules);
    let service = service(spec, &mut rules);
    let expose = traffic::expose(
        spec.expose.as_ref(),
        &name,
        namespace.as_deref().unwrap_or_default(),
        config,
        &mut rules,
    );
    let canary = traffic::canary(spec, &name, model.as_ref(), &mut rules);
    let auth = traffic::auth(spec.auth.as_ref(), &mut rules);
    let disruption = disruption::disruption(spec.disruption.as_ref(), scaling.as_ref(), &mut rules);
    let monitoring = monitoring::monitoring(spec.monitoring.as_ref(), &mut rules);

    let (
        Some(namespace),
        Some(model),
        Some(scaling),
        Some(batching),
        Some(service),
        Some(expose),
        Some(canary),
        Some(auth),
    ) = (
        namespace, model, scaling, batching, service, expose, canary, auth,
    )
    else {
        return Err(InvalidSpec(rules.0));
    };
    if !rules.0.is_empty() {
        return Err(InvalidSpec(rules.0));
    }
    let server = spec.server.clone().unwrap_or_default();
    Ok(Validated {
        endpoint: Endpoint::of(md, config),
        uid: md.uid().unwrap_or_default(),
        name,
        namespace,
        model,
        scaling,
        server: Server {
            image: server.image.unwrap_or_else(|| config.server_image.clone()),
            image_pull_policy: server.image_pull_policy,
            env: server.env,
            args: server.args,
        },
        resources: spec.resources.clone(),
        batching,
        service,
        pod: spec.pod.clone().unwrap_or_default(),
        expose,
        canary,
        auth,
        monitoring,
        disruption,
    })
}

/// A `spec.model` alone, by the ModelDeployment's rules: a BatchPrediction's model.
pub fn validate_model(spec: &ModelSpec) -> Result<Model, InvalidSpec> {
    let mut rules = Rules::default();
    match model(spec, &mut rules) {
        Some(model) if rules.0.is_empty() => Ok(model),
        _ => Err(InvalidSpec(rules.0)),
    }
}

/// `spec.model`: the URI parsed, the names and checksum checked.
fn model(model: &ModelSpec, rules: &mut Rules) -> Option<Model> {
    let source = ModelSource::parse(&model.uri)
        .map_err(|rule| rules.fail("spec.model.uri", rule))
        .ok();
    if let Some(model_name) = &model.name
        && !is_token(model_name)
    {
        rules.fail("spec.model.name", TOKEN_RULE.into());
    }
    if let Some(version) = &model.version
        && !is_token(version)
    {
        rules.fail("spec.model.version", TOKEN_RULE.into());
    }
    if let Some(sha) = &model.sha256
        && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
    {
        rules.fail("spec.model.sha256", "must be 64 hexadecimal digits".into());
    }
    Some(Model {
        uri: model.uri.clone(),
        source: source?,
        sha256: model.sha256.clone(),
        runtime: model.runtime,
        credentials_secret: model
            .credentials_secret_ref
            .as_ref()
            .map(|s| s.name.clone()),
    })
}

/// `spec.replicas` or `spec.autoscaling`: the latter wins, as the CRD documents.
fn scaling(spec: &ModelDeploymentSpec, rules: &mut Rules) -> Option<Scaling> {
    let replicas = spec.replicas.unwrap_or(DEFAULT_REPLICAS);
    let fixed_ok = replicas >= 0;
    if !fixed_ok {
        rules.fail("spec.replicas", format!("must be >= 0 (is {replicas})"));
    }
    let scaling = match &spec.autoscaling {
        Some(auto) => Scaling::Autoscaled(autoscaling(auto, rules)?),
        None => Scaling::Fixed { replicas },
    };
    fixed_ok.then_some(scaling)
}

fn autoscaling(auto: &AutoscalingSpec, rules: &mut Rules) -> Option<Autoscaling> {
    let before = rules.0.len();
    let min = auto.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS);
    if min < 1 {
        rules.fail(
            "spec.autoscaling.minReplicas",
            format!("must be >= 1 (is {min})"),
        );
    }
    if auto.max_replicas < 1 {
        rules.fail(
            "spec.autoscaling.maxReplicas",
            format!("must be >= 1 (is {})", auto.max_replicas),
        );
    }
    if min > auto.max_replicas {
        rules.fail(
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
            rules.fail(field, format!("must be >= 1 (is {v})"));
        }
    }
    (rules.0.len() == before).then(|| Autoscaling {
        min_replicas: min,
        max_replicas: auto.max_replicas,
        target_cpu_utilization: auto
            .target_cpu_utilization_percentage
            .unwrap_or(DEFAULT_TARGET_CPU),
        target_memory_utilization: auto.target_memory_utilization_percentage,
        behavior: auto.behavior.clone(),
    })
}

fn batching(batching: Option<&BatchingSpec>, rules: &mut Rules) -> Option<Batching> {
    let Some(batching) = batching else {
        return Some(Batching::default());
    };
    let before = rules.0.len();
    if let Some(size) = batching.max_batch_size
        && !(1..=MAX_BATCH_SIZE).contains(&size)
    {
        rules.fail(
            "spec.batching.maxBatchSize",
            format!("must be between 1 and {MAX_BATCH_SIZE} (is {size})"),
        );
    }
    let mut max_batch_delay = None;
    if let Some(delay) = &batching.max_batch_delay {
        match parse_batch_delay(delay) {
            None => rules.fail(
                "spec.batching.maxBatchDelay",
                format!("must be a duration like 2ms, 500us or 1s (is {delay:?})"),
            ),
            Some(d) if d > Duration::from_secs(1) => rules.fail(
                "spec.batching.maxBatchDelay",
                format!("must be at most 1s (is {delay})"),
            ),
            Some(duration) => {
                max_batch_delay = Some(BatchDelay {
                    duration,
                    text: delay.clone(),
                })
            }
        }
    }
    (rules.0.len() == before).then_some(Batching {
        max_batch_size: batching.max_batch_size,
        max_batch_delay,
    })
}

fn service(spec: &ModelDeploymentSpec, rules: &mut Rules) -> Option<ServiceSettings> {
    let port = validated::service_port(spec);
    if !(1..=65535).contains(&port) {
        rules.fail(
            "spec.service.port",
            format!("must be between 1 and 65535 (is {port})"),
        );
        return None;
    }
    Some(ServiceSettings {
        type_: spec
            .service
            .as_ref()
            .and_then(|s| s.type_)
            .unwrap_or(ServiceType::ClusterIP),
        port,
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

    fn fields(result: Result<Validated, InvalidSpec>) -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn check(md: &ModelDeployment) -> Result<Validated, InvalidSpec> {
        validate(md, &Config::default())
    }

    #[test]
    fn minimal_spec_is_valid_with_every_default_resolved() {
        let v = check(&md("  model: {uri: builtin://iris}\n")).unwrap();
        assert_eq!(v.model.source, ModelSource::Builtin("iris".into()));
        assert_eq!(v.scaling, Scaling::Fixed { replicas: 1 });
        assert_eq!(v.server.image, Config::default().server_image);
        assert_eq!(
            v.service,
            ServiceSettings {
                type_: ServiceType::ClusterIP,
                port: 80
            }
        );
        assert_eq!(v.batching, Batching::default());
        assert_eq!(v.endpoint.model_name, "iris");
        assert_eq!(
            v.endpoint.url,
            "http://iris.ml.svc.cluster.local/v2/models/iris"
        );
    }

    #[test]
    fn autoscaling_defaults_are_resolved_and_win_over_replicas() {
        let v = check(&md(
            "  model: {uri: builtin://iris}\n  replicas: 3\n  autoscaling: {maxReplicas: 4}\n",
        ))
        .unwrap();
        assert_eq!(
            v.scaling,
            Scaling::Autoscaled(Autoscaling {
                min_replicas: 1,
                max_replicas: 4,
                target_cpu_utilization: 80,
                target_memory_utilization: None,
                behavior: None,
            })
        );
    }

    #[test]
    fn batch_delay_keeps_its_text_beside_its_value() {
        let v = check(&md(
            "  model: {uri: builtin://iris}\n  batching: {maxBatchDelay: 1000ms}\n",
        ))
        .unwrap();
        assert_eq!(
            v.batching.max_batch_delay,
            Some(BatchDelay {
                duration: Duration::from_secs(1),
                text: "1000ms".into()
            })
        );
    }

    #[test]
    fn a_port_off_the_default_shows_in_the_url() {
        let v = check(&md(
            "  model: {uri: builtin://iris, name: flowers}\n  service: {port: 8000}\n",
        ))
        .unwrap();
        assert_eq!(
            v.endpoint.url,
            "http://iris.ml.svc.cluster.local:8000/v2/models/flowers"
        );
    }

    #[test]
    fn a_missing_namespace_is_reported() {
        let mut bad = md("  model: {uri: builtin://iris}\n");
        bad.metadata.namespace = None;
        assert_eq!(fields(check(&bad)), ["metadata.namespace: must be set"]);
    }

    #[test]
    fn unsupported_scheme_is_rejected_naming_the_field() {
        let errors = fields(check(&md("  model: {uri: 'ftp://h/m.onnx'}\n")));
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
            let errors = fields(check(&md(&format!("  model: {{uri: '{uri}'}}\n"))));
            assert!(
                errors[0].starts_with("spec.model.uri: must"),
                "{uri}: {errors:?}"
            );
        }
    }

    #[test]
    fn min_replicas_above_max_is_rejected() {
        let errors = fields(check(&md(
            "  model: {uri: builtin://iris}\n  autoscaling: {minReplicas: 3, maxReplicas: 2}\n",
        )));
        assert_eq!(
            errors,
            ["spec.autoscaling.minReplicas: must be <= spec.autoscaling.maxReplicas (3 > 2)"]
        );
    }

    #[test]
    fn negative_replicas_are_rejected() {
        let errors = fields(check(&md(
            "  model: {uri: builtin://iris}\n  replicas: -1\n",
        )));
        assert_eq!(errors, ["spec.replicas: must be >= 0 (is -1)"]);
    }

    #[test]
    fn batching_bounds_are_checked() {
        let errors = fields(check(&md(
            "  model: {uri: builtin://iris}\n  batching: {maxBatchSize: 0, maxBatchDelay: 2s}\n",
        )));
        assert_eq!(
            errors,
            [
                "spec.batching.maxBatchSize: must be between 1 and 4096 (is 0)",
                "spec.batching.maxBatchDelay: must be at most 1s (is 2s)"
            ]
        );
        let errors = fields(check(&md(
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
        let errors = fields(check(&md(
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
        assert!(fields(check(&bad))[0].starts_with("metadata.name:"));
    }
}
