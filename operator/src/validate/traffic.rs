//! `spec.expose`, `spec.canary` and `spec.auth`: their rules checked, the public host resolved
//! from the operator's host template, the path and the canary's defaults filled in.

use super::names::{TOKEN_RULE, is_dns_subdomain, is_token};
use super::{ModelSource, Rules};
use crate::config::{Config, HOST_DOMAIN, HOST_NAME, HOST_NAMESPACE};
use crate::crd::{AuthSpec, CanarySpec, ExposeSpec, ModelDeploymentSpec};
use crate::validate::{Auth, Canary, Expose, Model};

/// Replicas of a canary when `spec.canary.replicas` is not set.
pub const DEFAULT_CANARY_REPLICAS: i32 = 1;
/// Suffix of the canary's Deployment and Service names.
pub const CANARY_SUFFIX: &str = "-canary";
/// The canary's Deployment and Service of the ModelDeployment `name`.
pub fn canary_name(name: &str) -> String {
    format!("{name}{CANARY_SUFFIX}")
}

/// Longest ModelDeployment name that leaves room for [`CANARY_SUFFIX`] in a DNS label.
pub const MAX_NAME_WITH_CANARY: usize = 63 - CANARY_SUFFIX.len();

/// `spec.expose`: the path normalised (no trailing slash but for `/`), the host resolved.
pub(super) fn expose(
    spec: Option<&ExposeSpec>,
    name: &str,
    namespace: &str,
    config: &Config,
    rules: &mut Rules,
) -> Option<Option<Expose>> {
    let Some(spec) = spec else {
        return Some(None);
    };
    let before = rules.0.len();
    if let Some(host) = &spec.host
        && !is_dns_subdomain(host)
    {
        rules.fail(
            "spec.expose.host",
            format!("must be a lowercase DNS name such as iris.example.com (is {host:?})"),
        );
    }
    let path = spec.path.as_deref().unwrap_or("/");
    if !is_path_prefix(path) {
        rules.fail(
            "spec.expose.path",
            format!(
                "must start with / and hold only letters, digits and -._~ between slashes (is {path:?})"
            ),
        );
    }
    if let Some(tls) = &spec.tls
        && tls.secret_name.is_empty()
    {
        rules.fail("spec.expose.tls.secretName", "must be set".into());
    }
    if rules.0.len() != before {
        return None;
    }
    let host = match &spec.host {
        Some(host) => Ok(host.clone()),
        None => template_host(name, namespace, config),
    };
    let trimmed = path.trim_end_matches('/');
    Some(Some(Expose {
        host,
        path: if trimmed.is_empty() { "/" } else { trimmed }.to_string(),
        tls_secret: spec.tls.as_ref().map(|t| t.secret_name.clone()),
    }))
}

/// The host from the operator's template, or why there is none.
fn template_host(name: &str, namespace: &str, config: &Config) -> Result<String, String> {
    let template = &config.expose.host_template;
    let domain = match &config.expose.domain {
        Some(domain) => domain.as_str(),
        None if template.contains(HOST_DOMAIN) => {
            return Err(format!(
                "spec.expose.host is not set and the operator has no domain for its host template {template:?} (--expose-domain)"
            ));
        }
        None => "",
    };
    let host = template
        .replace(HOST_NAME, name)
        .replace(HOST_NAMESPACE, namespace)
        .replace(HOST_DOMAIN, domain);
    if is_dns_subdomain(&host) {
        Ok(host)
    } else {
        Err(format!(
            "the operator's host template {template:?} gives {host:?}, which is not a DNS name; set spec.expose.host"
        ))
    }
}

/// A path like `/`, `/iris` or `/team/iris/`: segments of letters, digits and `-._~`.
fn is_path_prefix(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.is_empty()
        || rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
        })
}

/// `spec.canary`: it needs `spec.expose` and room for its name; its model gets the primary's
/// runtime and credentials.
pub(super) fn canary(
    spec: &ModelDeploymentSpec,
    name: &str,
    primary: Option<&Model>,
    rules: &mut Rules,
) -> Option<Option<Canary>> {
    let Some(canary) = &spec.canary else {
        return Some(None);
    };
    let before = rules.0.len();
    if spec.expose.is_none() {
        rules.fail(
            "spec.canary",
            "requires spec.expose: the traffic split is made by the public route".into(),
        );
    }
    if name.len() > MAX_NAME_WITH_CANARY {
        rules.fail(
            "metadata.name",
            format!(
                "must be at most {MAX_NAME_WITH_CANARY} characters with spec.canary (the canary's Deployment and Service are NAME{CANARY_SUFFIX})"
            ),
        );
    }
    let CanarySpec {
        model,
        traffic_percent,
        replicas,
    } = canary;
    if !(0..=100).contains(traffic_percent) {
        rules.fail(
            "spec.canary.trafficPercent",
            format!("must be between 0 and 100 (is {traffic_percent})"),
        );
    }
    let replicas = replicas.unwrap_or(DEFAULT_CANARY_REPLICAS);
    if replicas < 0 {
        rules.fail(
            "spec.canary.replicas",
            format!("must be >= 0 (is {replicas})"),
        );
    }
    let source = ModelSource::parse(&model.uri)
        .map_err(|rule| rules.fail("spec.canary.model.uri", rule))
        .ok();
    if let Some(version) = &model.version
        && !is_token(version)
    {
        rules.fail("spec.canary.model.version", TOKEN_RULE.into());
    }
    if let Some(sha) = &model.sha256
        && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
    {
        rules.fail(
            "spec.canary.model.sha256",
            "must be 64 hexadecimal digits".into(),
        );
    }
    let (Some(source), Some(primary), true) = (source, primary, rules.0.len() == before) else {
        return None;
    };
    Some(Some(Canary {
        name: canary_name(name),
        model: Model {
            uri: model.uri.clone(),
            source,
            sha256: model.sha256.clone(),
            runtime: primary.runtime,
            credentials_secret: primary.credentials_secret.clone(),
        },
        version: model.version.clone(),
        traffic_percent: *traffic_percent,
        replicas,
    }))
}

/// `spec.auth`: the API keys' Secret must be named.
pub(super) fn auth(spec: Option<&AuthSpec>, rules: &mut Rules) -> Option<Option<Auth>> {
    let Some(auth) = spec else {
        return Some(None);
    };
    let secret = &auth.api_keys_secret_ref.name;
    if !is_dns_subdomain(secret) {
        rules.fail(
            "spec.auth.apiKeysSecretRef.name",
            format!("must name a Secret (is {secret:?})"),
        );
        return None;
    }
    Some(Some(Auth {
        api_keys_secret: secret.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExposeConfig;
    use crate::crd::ModelDeployment;
    use crate::validate::{InvalidSpec, Validated, validate};

    fn md(spec: &str) -> ModelDeployment {
        serde_yaml::from_str(&format!(
            "apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: iris, namespace: ml}}\nspec:\n  model: {{uri: builtin://iris, version: '1'}}\n{spec}"
        ))
        .unwrap()
    }

    fn with_domain(domain: &str) -> Config {
        Config {
            expose: ExposeConfig {
                domain: Some(domain.into()),
                ..ExposeConfig::default()
            },
            ..Config::default()
        }
    }

    fn check(spec: &str, config: &Config) -> Result<Validated, InvalidSpec> {
        validate(&md(spec), config)
    }

    fn errors(spec: &str) -> Vec<String> {
        check(spec, &Config::default())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn expose_defaults_the_path_and_fills_the_host_template() {
        let v = check("  expose: {}\n", &with_domain("models.example.com")).unwrap();
        assert_eq!(
            v.expose,
            Some(Expose {
                host: Ok("iris-ml.models.example.com".into()),
                path: "/".into(),
                tls_secret: None,
            })
        );
    }

    #[test]
    fn a_template_without_domain_needs_none_and_an_explicit_host_wins() {
        let config = Config {
            expose: ExposeConfig {
                host_template: "{namespace}-{name}.localhost".into(),
                ..ExposeConfig::default()
            },
            ..Config::default()
        };
        let v = check("  expose: {path: /team/iris/}\n", &config).unwrap();
        let expose = v.expose.unwrap();
        assert_eq!(expose.host, Ok("ml-iris.localhost".into()));
        assert_eq!(expose.path, "/team/iris");
        let v = check("  expose: {host: iris.example.com}\n", &config).unwrap();
        assert_eq!(v.expose.unwrap().host, Ok("iris.example.com".into()));
    }

    #[test]
    fn no_host_and_no_domain_is_not_an_invalid_spec_but_says_why() {
        let v = check("  expose: {}\n", &Config::default()).unwrap();
        let why = v.expose.unwrap().host.unwrap_err();
        assert!(why.contains("--expose-domain"), "{why}");
    }

    #[test]
    fn a_template_that_makes_no_dns_name_says_so() {
        let config = Config {
            expose: ExposeConfig {
                host_template: "{name}_{namespace}.{domain}".into(),
                domain: Some("example.com".into()),
                ..ExposeConfig::default()
            },
            ..Config::default()
        };
        let why = check("  expose: {}\n", &config)
            .unwrap()
            .expose
            .unwrap()
            .host
            .unwrap_err();
        assert!(why.contains("\"iris_ml.example.com\""), "{why}");
    }

    #[test]
    fn expose_host_path_and_tls_are_checked_naming_the_field() {
        assert_eq!(
            errors("  expose: {host: Iris.Example.com, path: 'iris', tls: {secretName: ''}}\n"),
            [
                "spec.expose.host: must be a lowercase DNS name such as iris.example.com (is \"Iris.Example.com\")",
                "spec.expose.path: must start with / and hold only letters, digits and -._~ between slashes (is \"iris\")",
                "spec.expose.tls.secretName: must be set",
            ]
        );
        for path in ["/a//b", "/../x", "/a b", "/a?b"] {
            assert!(!is_path_prefix(path), "{path}");
        }
        for path in ["/", "/iris", "/iris/", "/team/iris-v1.2_x~"] {
            assert!(is_path_prefix(path), "{path}");
        }
    }

    #[test]
    fn canary_defaults_and_inherits_runtime_and_credentials() {
        let v = check(
            "  expose: {host: iris.example.com}\n  canary: {model: {uri: 'https://m.example/iris2.onnx', version: '2'}, trafficPercent: 10}\n",
            &Config::default(),
        )
        .unwrap();
        let canary = v.canary.unwrap();
        assert_eq!(canary.name, "iris-canary");
        assert_eq!(canary.replicas, DEFAULT_CANARY_REPLICAS);
        assert_eq!(canary.traffic_percent, 10);
        assert_eq!(canary.version.as_deref(), Some("2"));
        assert_eq!(
            canary.model.source,
            ModelSource::Http("https://m.example/iris2.onnx".into())
        );
        assert_eq!(canary.model.runtime, v.model.runtime);
    }

    #[test]
    fn canary_rules_name_their_fields() {
        assert_eq!(
            errors(
                "  canary: {model: {uri: 'ftp://x/y', version: '-2', sha256: abc}, trafficPercent: 101, replicas: -1}\n"
            ),
            [
                "spec.canary: requires spec.expose: the traffic split is made by the public route",
                "spec.canary.trafficPercent: must be between 0 and 100 (is 101)",
                "spec.canary.replicas: must be >= 0 (is -1)",
                "spec.canary.model.uri: must start with builtin://, file://, http://, https://, s3:// or pvc:// (not ftp://)",
                "spec.canary.model.version: must start with a letter or digit and contain only letters, digits, '.', '_' and '-'",
                "spec.canary.model.sha256: must be 64 hexadecimal digits",
            ]
        );
        assert_eq!(
            errors("  expose: {}\n  canary: {model: {uri: builtin://iris}, trafficPercent: -1}\n"),
            ["spec.canary.trafficPercent: must be between 0 and 100 (is -1)"]
        );
    }

    #[test]
    fn a_canary_needs_room_for_its_name() {
        let mut long =
            md("  expose: {}\n  canary: {model: {uri: builtin://iris}, trafficPercent: 5}\n");
        long.metadata.name = Some("a".repeat(57));
        let errors: Vec<String> = validate(&long, &Config::default())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "metadata.name: must be at most 56 characters with spec.canary (the canary's Deployment and Service are NAME-canary)"
            ]
        );
    }

    #[test]
    fn auth_names_its_secret() {
        let v = check(
            "  auth: {apiKeysSecretRef: {name: iris-keys}}\n",
            &Config::default(),
        )
        .unwrap();
        assert_eq!(
            v.auth,
            Some(Auth {
                api_keys_secret: "iris-keys".into()
            })
        );
        assert_eq!(
            errors("  auth: {apiKeysSecretRef: {name: ''}}\n"),
            ["spec.auth.apiKeysSecretRef.name: must name a Secret (is \"\")"]
        );
    }
}
