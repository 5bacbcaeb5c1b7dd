//! The server container's part of feedback from production: the pod's own name, namespace
//! and IP from the downward API (the server puts them in its inference ids and payload-log
//! events, and forwards feedback by id to the pod that served the inference), and
//! `spec.monitoring` as the server's variables.

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, SecretEnvSource,
};

use crate::validate::Validated;

/// The downward-API variables of every server container, and the pod field each reads.
pub const DOWNWARD_ENV: [(&str, &str); 3] = [
    ("MODELSHIP_NAMESPACE", "metadata.namespace"),
    ("MODELSHIP_POD_NAME", "metadata.name"),
    ("MODELSHIP_POD_IP", "status.podIP"),
];
/// The server's variable for the payload log's sink (`--payload-log`).
pub const PAYLOAD_LOG_ENV: &str = "MODELSHIP_PAYLOAD_LOG";
/// `--payload-log-mode`.
pub const PAYLOAD_LOG_MODE_ENV: &str = "MODELSHIP_PAYLOAD_LOG_MODE";
/// `--payload-log-sample-rate`.
pub const PAYLOAD_LOG_SAMPLE_RATE_ENV: &str = "MODELSHIP_PAYLOAD_LOG_SAMPLE_RATE";
/// `--payload-log-http-batch`.
pub const PAYLOAD_LOG_HTTP_BATCH_ENV: &str = "MODELSHIP_PAYLOAD_LOG_HTTP_BATCH";
/// `--feedback-window`.
pub const FEEDBACK_WINDOW_ENV: &str = "MODELSHIP_FEEDBACK_WINDOW";
/// `--prometheus-url`.
pub const PROMETHEUS_URL_ENV: &str = "MODELSHIP_PROMETHEUS_URL";

/// Adds the downward-API variables and `spec.monitoring`'s to the server container. It runs
/// after the user's `spec.server.env` was merged, and a variable the user set is left as the
/// user set it.
pub(super) fn add_monitoring(v: &Validated, server: &mut Container) {
    let mut vars: Vec<EnvVar> = DOWNWARD_ENV
        .iter()
        .map(|(name, field)| EnvVar {
            name: (*name).into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: (*field).into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect();
    let monitoring = v.monitoring.as_ref();
    let log = monitoring.and_then(|m| m.payload_log.as_ref());
    if let Some(log) = log {
        vars.push(plain(PAYLOAD_LOG_ENV, &log.url));
        vars.push(plain(PAYLOAD_LOG_MODE_ENV, log.mode.as_str()));
        vars.push(plain(
            PAYLOAD_LOG_SAMPLE_RATE_ENV,
            &log.sample_rate.to_string(),
        ));
        if let Some(n) = log.http_batch {
            vars.push(plain(PAYLOAD_LOG_HTTP_BATCH_ENV, &n.to_string()));
        }
    }
    if let Some(window) = monitoring.and_then(|m| m.feedback_window.as_ref()) {
        vars.push(plain(FEEDBACK_WINDOW_ENV, window));
    }
    if let Some(url) = monitoring.and_then(|m| m.prometheus_url.as_ref()) {
        vars.push(plain(PROMETHEUS_URL_ENV, url));
    }
    let env = server.env.get_or_insert_with(Vec::new);
    for var in vars {
        if !env.iter().any(|e| e.name == var.name) {
            env.push(var);
        }
    }
    // The sink's credentials: the Secret's keys as variables, never its values in the spec.
    if let Some(secret) = log.and_then(|l| l.credentials_secret.as_ref()) {
        server
            .env_from
            .get_or_insert_with(Vec::new)
            .push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            });
    }
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::build::fixtures;
    use crate::build::{build_canary_deployment, build_deployment};
    use crate::config::Config;
    use crate::crd::ModelDeployment;
    use crate::validate::validate;

    fn server(md: &ModelDeployment) -> Container {
        let d = build_deployment(&validate(md, &Config::default()).unwrap());
        d.spec.unwrap().template.spec.unwrap().containers[0].clone()
    }

    fn values(c: &Container) -> BTreeMap<String, Option<String>> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }

    fn with_monitoring(yaml: &str) -> ModelDeployment {
        let mut md = fixtures::model_deployment("iris.yaml");
        md.spec.monitoring = Some(serde_yaml::from_str(yaml).unwrap());
        md
    }

    #[test]
    fn every_pod_learns_its_name_namespace_and_ip_from_the_downward_api() {
        let v = fixtures::validated("canary.yaml");
        for d in [
            build_deployment(&v),
            build_canary_deployment(&v, v.canary.as_ref().unwrap()),
        ] {
            let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
            for (name, field) in DOWNWARD_ENV {
                let var = c.env.iter().flatten().find(|e| e.name == name).unwrap();
                let path = &var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
                assert_eq!(path.field_path, field, "{name}");
                assert_eq!(var.value, None);
            }
        }
    }

    #[test]
    fn without_monitoring_no_monitoring_variable_is_set() {
        let env = values(&server(&fixtures::model_deployment("iris.yaml")));
        for name in [
            PAYLOAD_LOG_ENV,
            PAYLOAD_LOG_MODE_ENV,
            PAYLOAD_LOG_SAMPLE_RATE_ENV,
            PAYLOAD_LOG_HTTP_BATCH_ENV,
            FEEDBACK_WINDOW_ENV,
            PROMETHEUS_URL_ENV,
        ] {
            assert!(!env.contains_key(name), "{name}");
        }
    }

    #[test]
    fn the_spec_becomes_the_servers_variables_and_credentials_come_from_the_secret() {
        let c = server(&with_monitoring(concat!(
            "payloadLog: {url: 's3://logs/iris', mode: response, sampleRate: 0.1, httpBatch: 1,\n",
            "  credentialsSecretRef: {name: log-creds}}\n",
            "feedback: {window: 30m}\n",
            "prometheusURL: http://prometheus.monitoring.svc:9090\n",
        )));
        let env = values(&c);
        assert_eq!(env[PAYLOAD_LOG_ENV].as_deref(), Some("s3://logs/iris"));
        assert_eq!(env[PAYLOAD_LOG_MODE_ENV].as_deref(), Some("response"));
        assert_eq!(env[PAYLOAD_LOG_SAMPLE_RATE_ENV].as_deref(), Some("0.1"));
        assert_eq!(env[PAYLOAD_LOG_HTTP_BATCH_ENV].as_deref(), Some("1"));
        assert_eq!(env[FEEDBACK_WINDOW_ENV].as_deref(), Some("30m"));
        assert_eq!(
            env[PROMETHEUS_URL_ENV].as_deref(),
            Some("http://prometheus.monitoring.svc:9090")
        );
        let from = c.env_from.unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "log-creds");
    }

    #[test]
    fn a_variable_the_user_sets_wins_and_is_not_duplicated() {
        let mut md = with_monitoring("payloadLog: {url: 'http://receiver/'}\n");
        md.spec.server.get_or_insert_with(Default::default).env = vec![EnvVar {
            name: PAYLOAD_LOG_SAMPLE_RATE_ENV.into(),
            value: Some("0.5".into()),
            ..EnvVar::default()
        }];
        let c = server(&md);
        let rates: Vec<_> = c
            .env
            .iter()
            .flatten()
            .filter(|e| e.name == PAYLOAD_LOG_SAMPLE_RATE_ENV)
            .collect();
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].value.as_deref(), Some("0.5"));
        assert_eq!(values(&c)[PAYLOAD_LOG_MODE_ENV].as_deref(), Some("all"));
        assert!(
            !values(&c).contains_key(PAYLOAD_LOG_HTTP_BATCH_ENV),
            "no httpBatch: the server's default"
        );
        assert!(c.env_from.is_none());
    }
}
