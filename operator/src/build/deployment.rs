//! The Deployment of model servers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretEnvSource, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    SERVER_PORT, SPEC_HASH_ANNOTATION, canary_labels, child_meta_named, hash_of, labels,
    selector_labels,
};
use crate::validate::{Canary, Model, ModelSource, Scaling, Validated};

/// Name of the server container (its termination message is read for `ModelLoadFailed`).
pub const SERVER_CONTAINER: &str = "server";
/// Name of the init container that downloads the model (read for `ModelFetchFailed`).
pub const FETCH_CONTAINER: &str = "fetch";
/// Where fetched or mounted models appear in the pod.
pub const MODELS_DIR: &str = "/models";
/// UID and GID the containers run as (the "nonroot" user of distroless images).
pub const NONROOT_ID: i64 = 65532;
/// Serving time after SIGTERM while the pod leaves the Service's endpoints.
/// With the server's 20 s shutdown timeout it fits the default 30 s grace period.
const DRAIN_DELAY: &str = "5s";

/// Where the API keys' Secret is mounted in the server container, one file per key.
pub const API_KEYS_DIR: &str = "/var/run/modelship/api-keys";
/// The server's variable naming [`API_KEYS_DIR`]; set only with `spec.auth`.
pub const API_KEYS_DIR_ENV: &str = "MODELSHIP_API_KEYS_DIR";

/// One set of server pods: the primary or the canary.
struct ServerPods<'a> {
    /// Name of the Deployment; its pods are selected by this instance name.
    name: &'a str,
    model: &'a Model,
    version: Option<&'a str>,
    /// `None`: an HPA owns the replicas.
    replicas: Option<i32>,
    labels: BTreeMap<String, String>,
    /// `MODELSHIP_VARIANT` of the server (its answers' `x-modelship-variant` header and its
    /// metrics' `variant` label); `None` leaves the server's default, `primary`.
    variant: Option<&'static str>,
}

/// Builds the Deployment of `v`.
pub fn build_deployment(v: &Validated) -> Deployment {
    server_deployment(
        v,
        &ServerPods {
            name: &v.name,
            model: &v.model,
            version: v.endpoint.model_version.as_deref(),
            // Left out when an HPA owns scaling, so the operator and the HPA never fight.
            replicas: match v.scaling {
                Scaling::Fixed { replicas } => Some(replicas),
                Scaling::Autoscaled(_) => None,
            },
            labels: labels(&v.name),
            variant: None,
        },
    )
}

/// Builds the canary's Deployment: the same server and pod settings as the primary's, the
/// canary's model served under the primary's model name, fixed replicas.
pub fn build_canary_deployment(v: &Validated, canary: &Canary) -> Deployment {
    server_deployment(
        v,
        &ServerPods {
            name: &canary.name,
            model: &canary.model,
            version: canary.version.as_deref(),
            replicas: Some(canary.replicas),
            labels: canary_labels(&v.name, &canary.name),
            variant: Some("canary"),
        },
    )
}

fn server_deployment(v: &Validated, pods: &ServerPods<'_>) -> Deployment {
    let server = &v.server;
    let pod = &v.pod;
    let model = pods.model;
    let pull_policy = server.image_pull_policy.map(|p| p.as_str().to_string());

    let mut volumes = vec![empty_dir("tmp")];
    let mut server_mounts = vec![mount("tmp", "/tmp", false)];
    let mut init_containers = Vec::new();
    let model_arg = match &model.source {
        ModelSource::Builtin(_) | ModelSource::File(_) => model.uri.clone(),
        ModelSource::Http(uri) | ModelSource::S3(uri) => {
            volumes.push(empty_dir("models"));
            server_mounts.push(mount("models", MODELS_DIR, true));
            let fetch_from = (server.image.as_str(), v.resources.as_ref());
            init_containers.push(fetch_container(fetch_from, model, uri, pull_policy.clone()));
            MODELS_DIR.to_string()
        }
        ModelSource::Pvc { claim, path } => {
            volumes.push(Volume {
                name: "models".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            });
            server_mounts.push(mount("models", MODELS_DIR, true));
            format!("{MODELS_DIR}/{path}")
        }
    };

    let mut env = vec![
        env_var("MODELSHIP_MODEL", &model_arg),
        env_var("MODELSHIP_MODEL_NAME", &v.endpoint.model_name),
    ];
    if let Some(version) = pods.version {
        env.push(env_var("MODELSHIP_MODEL_VERSION", version));
    }
    // A fetched model is checked by `fetch`; checking it twice would only slow the start.
    if let (Some(sha), false) = (&model.sha256, model.source.needs_fetch()) {
        env.push(env_var("MODELSHIP_SHA256", sha));
    }
    if let Some(runtime) = model.runtime {
        env.push(env_var("MODELSHIP_RUNTIME", runtime.as_str()));
    }
    env.push(env_var("MODELSHIP_PORT", &SERVER_PORT.to_string()));
    env.push(super::grpc::grpc_env());
    if let Some(size) = v.batching.max_batch_size {
        env.push(env_var("MODELSHIP_MAX_BATCH_SIZE", &size.to_string()));
    }
    if let Some(delay) = &v.batching.max_batch_delay {
        env.push(env_var("MODELSHIP_MAX_BATCH_DELAY", &delay.text));
    }
    env.push(env_var("MODELSHIP_LOG_FORMAT", "json"));
    // On SIGTERM the server reports not-ready but keeps serving this long, so
    // kube-proxy and ingress controllers drop the pod from their endpoints
    // before its listener closes: rolling updates lose no request.
    env.push(env_var("MODELSHIP_DRAIN_DELAY", DRAIN_DELAY));
    if let Some(variant) = pods.variant {
        env.push(env_var("MODELSHIP_VARIANT", variant));
    }
    if let Some(auth) = &v.auth {
        // Files, not variables: the kubelet refreshes a mounted Secret in place, so a
        // rotated key takes effect without a restart.
        volumes.push(Volume {
            name: "api-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(auth.api_keys_secret.clone()),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        server_mounts.push(mount("api-keys", API_KEYS_DIR, true));
        env.push(env_var(API_KEYS_DIR_ENV, API_KEYS_DIR));
    }
    override_env(&mut env, &server.env);

    let readiness = super::grpc::readiness_probe(v, http_probe("/v2/health/ready", 5, 3));
    let mut server_container = Container {
        name: SERVER_CONTAINER.into(),
        image: Some(server.image.clone()),
        image_pull_policy: pull_policy,
        args: Some(
            std::iter::once("serve".to_string())
                .chain(server.args.iter().cloned())
                .collect(),
        ),
        env: Some(env),
        ports: Some(super::grpc::container_ports(v)),
        // The server loads the model before it reports ready; give slow loads ten minutes.
        startup_probe: Some(http_probe("/v2/health/ready", 5, 120)),
        readiness_probe: Some(readiness),
        liveness_probe: Some(http_probe("/v2/health/live", 10, 3)),
        resources: v.resources.clone(),
        security_context: Some(restricted_security_context()),
        // The server writes why it could not load the model to /dev/termination-log; with
        // the `File` policy an empty message means it crashed without saying why.
        termination_message_policy: Some("File".into()),
        volume_mounts: Some(server_mounts),
        ..Container::default()
    };
    super::monitoring::add_monitoring(v, &mut server_container);

    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(pods.labels.clone());
    let pod_spec = PodSpec {
        init_containers: (!init_containers.is_empty()).then_some(init_containers),
        containers: vec![server_container],
        volumes: Some(volumes),
        security_context: Some(super::nonroot_pod_security_context()),
        // The server never calls the Kubernetes API, and service links only add env noise.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        service_account_name: pod.service_account_name.clone(),
        priority_class_name: pod.priority_class_name.clone(),
        affinity: pod.affinity.clone(),
        node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
        tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
        image_pull_secrets: (!pod.image_pull_secrets.is_empty())
            .then(|| pod.image_pull_secrets.clone()),
        topology_spread_constraints: super::spread::topology_spread(v, pods.name),
        ..PodSpec::default()
    };

    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: (!pod.annotations.is_empty()).then(|| pod.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec),
    };
    // Any change to the template rolls the pods anyway; the hash makes "which spec is this pod
    // running" visible, and changes even when only the operator's defaults changed.
    let hash = hash_of(&template);
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.into(), hash);

    Deployment {
        metadata: child_meta_named(v, pods.name, pods.labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: pods.replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(pods.name)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                // Never drop below the desired capacity while a new model version rolls out.
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(3),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The init container that downloads the model into `/models`, with the image and the
/// resources (CPU and memory only are kept) of the pod's main container.
pub fn fetch_container(
    (image, resources): (
        &str,
        Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    ),
    model: &Model,
    uri: &str,
    pull_policy: Option<String>,
) -> Container {
    let mut args = vec!["fetch".to_string(), uri.to_string(), MODELS_DIR.to_string()];
    if let Some(sha) = &model.sha256 {
        args.extend(["--sha256".to_string(), sha.clone()]);
    }
    // Only CPU and memory: extended resources such as GPUs stay with the server container.
    let resources = resources.map(|r| {
        let keep = |m: &Option<BTreeMap<String, Quantity>>| {
            m.as_ref().map(|m| {
                m.iter()
                    .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        k8s_openapi::api::core::v1::ResourceRequirements {
            limits: keep(&r.limits),
            requests: keep(&r.requests),
            ..Default::default()
        }
    });
    Container {
        name: FETCH_CONTAINER.into(),
        image: Some(image.to_string()),
        image_pull_policy: pull_policy,
        args: Some(args),
        env: Some(vec![env_var("MODELSHIP_LOG_FORMAT", "json")]),
        env_from: model.credentials_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources,
        security_context: Some(restricted_security_context()),
        // `fetch` writes the cause to /dev/termination-log; fall back to its log otherwise.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![
            mount("models", MODELS_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    }
}

/// Replaces variables of the same name in place and appends the others: the API server
/// (and server-side apply) reject duplicate names.
fn override_env(env: &mut Vec<EnvVar>, overrides: &[EnvVar]) {
    for var in overrides {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => *existing = var.clone(),
            None => env.push(var.clone()),
        }
    }
}

pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

pub fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;
    use crate::config::Config;
    use crate::crd::ModelDeployment;
    use crate::validate::validate;

    fn build(fixture: &str) -> Deployment {
        build_deployment(&fixtures::validated(fixture))
    }

    fn build_md(md: &ModelDeployment, config: &Config) -> Deployment {
        build_deployment(&validate(md, config).unwrap())
    }

    fn server(d: &Deployment) -> &Container {
        &d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn env_of(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn spec_hash(d: &Deployment) -> String {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[SPEC_HASH_ANNOTATION]
            .clone()
    }

    #[test]
    fn builtin_model_deployment_matches_fixture() {
        fixtures::assert_matches(&build("iris.yaml"), "iris.deployment.yaml");
    }

    #[test]
    fn s3_model_is_fetched_by_an_init_container_with_credentials() {
        fixtures::assert_matches(&build("s3.yaml"), "s3.deployment.yaml");
        let d = build("s3.yaml");
        let pod = d.spec.unwrap().template.spec.unwrap();
        let fetch = &pod.init_containers.unwrap()[0];
        assert_eq!(fetch.name, FETCH_CONTAINER);
        assert_eq!(
            fetch.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "s3-credentials"
        );
        // The GPU stays with the server; the init container keeps only CPU and memory.
        let limits = fetch.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert!(!limits.contains_key("nvidia.com/gpu"));
    }

    #[test]
    fn autoscaled_deployment_leaves_replicas_to_the_hpa() {
        let d = build("autoscaled.yaml");
        assert_eq!(d.spec.unwrap().replicas, None);
        assert_eq!(build("iris.yaml").spec.unwrap().replicas, Some(1));
    }

    #[test]
    fn pvc_model_is_mounted_read_only_and_passed_by_path() {
        let mut md = fixtures::model_deployment("iris.yaml");
        md.spec.model.uri = "pvc://models/iris/model.onnx".into();
        let d = build_md(&md, &Config::default());
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert!(pod.init_containers.is_none());
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "models")
            .unwrap();
        let claim = volume.persistent_volume_claim.unwrap();
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("models", Some(true))
        );
        assert_eq!(
            env_of(&pod.containers[0])["MODELSHIP_MODEL"],
            "/models/iris/model.onnx"
        );
    }

    #[test]
    fn user_env_overrides_operator_env_without_duplicates() {
        let d = build("autoscaled.yaml");
        let env = server(&d).env.clone().unwrap();
        let log_formats: Vec<_> = env
            .iter()
            .filter(|e| e.name == "MODELSHIP_LOG_FORMAT")
            .collect();
        assert_eq!(log_formats.len(), 1);
        assert_eq!(log_formats[0].value.as_deref(), Some("text"));
    }

    #[test]
    fn spec_hash_changes_with_the_spec_and_only_with_it() {
        let md = fixtures::model_deployment("iris.yaml");
        let before = spec_hash(&build_md(&md, &Config::default()));
        assert_eq!(before, spec_hash(&build_md(&md, &Config::default())));

        let mut changed = md.clone();
        changed.spec.model.version = Some("2".into());
        let after = spec_hash(&build_md(&changed, &Config::default()));
        assert_ne!(before, after);

        // Replicas are not part of the pod template: scaling must not roll the pods.
        let mut scaled = md;
        scaled.spec.replicas = Some(5);
        assert_eq!(before, spec_hash(&build_md(&scaled, &Config::default())));
    }

    #[test]
    fn canary_deployment_matches_fixture_and_no_primary_selector_matches_its_pods() {
        let v = fixtures::validated("canary.yaml");
        let canary = v.canary.as_ref().unwrap();
        let d = build_canary_deployment(&v, canary);
        fixtures::assert_matches(&d, "canary.canary-deployment.yaml");
        let pod_labels = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        let pod_labels = pod_labels.labels.as_ref().unwrap();
        let primary = selector_labels(&v.name);
        assert!(
            !primary
                .iter()
                .all(|(k, val)| pod_labels.get(k) == Some(val)),
            "the primary's Deployment and Service would select canary pods"
        );
        assert_eq!(pod_labels[crate::build::VARIANT_LABEL], "canary");
        let env = env_of(server(&d));
        // The canary serves its own model under the primary's name.
        assert_eq!(env["MODELSHIP_MODEL_NAME"], "iris");
        assert_eq!(env["MODELSHIP_MODEL_VERSION"], "2");
        assert_eq!(env["MODELSHIP_MODEL"], "/models");
        assert_eq!(d.spec.unwrap().replicas, Some(2));
    }

    #[test]
    fn api_keys_are_mounted_read_only_and_named_to_the_server() {
        let v = fixtures::validated("canary.yaml");
        for d in [
            build_deployment(&v),
            build_canary_deployment(&v, v.canary.as_ref().unwrap()),
        ] {
            let pod = d.spec.unwrap().template.spec.unwrap();
            let volume = pod
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "api-keys")
                .unwrap();
            assert_eq!(
                volume.secret.unwrap().secret_name.as_deref(),
                Some("iris-keys")
            );
            let server = &pod.containers[0];
            let m = server
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == "api-keys")
                .unwrap();
            assert_eq!(
                (m.mount_path.as_str(), m.read_only),
                (API_KEYS_DIR, Some(true))
            );
            assert_eq!(env_of(server)[API_KEYS_DIR_ENV], API_KEYS_DIR);
        }
        let d = build("iris.yaml");
        assert!(!env_of(server(&d)).contains_key(API_KEYS_DIR_ENV));
    }

    #[test]
    fn server_image_comes_from_config_unless_the_spec_sets_one() {
        let config = Config {
            server_image: "registry.example/modelship/server:1.2.3".into(),
            ..Config::default()
        };
        let d = build_md(&fixtures::model_deployment("iris.yaml"), &config);
        assert_eq!(
            server(&d).image.as_deref(),
            Some("registry.example/modelship/server:1.2.3")
        );
        let d = build_md(&fixtures::model_deployment("autoscaled.yaml"), &config);
        assert_eq!(server(&d).image.as_deref(), Some("modelship/server:custom"));
    }
}
