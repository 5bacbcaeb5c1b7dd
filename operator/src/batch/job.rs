//! Pure builders of a BatchPrediction's two Jobs: the Indexed Job whose index `I` scores
//! shard `I` of `N` (`modelship-server predict --shard I/N`), and the short manifest Job that
//! runs once every shard is done (`predict --write-manifest`; the operator has neither the
//! data's credentials nor its claim, so a pod writes it).
//!
//! Failures are told apart by `predict`'s exit codes ([`PERMANENT_EXIT_CODES`]): those no
//! retry can fix fail the whole Job at once through its `podFailurePolicy`; any other failure
//! (exit 1, 143 on SIGTERM, an OOM kill) retries the shard up to `maxRetriesPerShard` times
//! (`backoffLimitPerIndex`), and a shard out of retries fails the Job (`maxFailedIndexes: 0`).
//! A pod evicted or preempted (`DisruptionTarget`) is retried without using up a retry.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretEnvSource, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::crd::BatchPrediction;
use super::plan::{DATA_DIR, Plan};
use crate::build::nonroot_pod_security_context;
use crate::build::{
    INSTANCE_LABEL, MANAGER, MODELS_DIR, empty_dir, fetch_container, mount,
    restricted_security_context,
};
use crate::validate::ModelSource;

/// Name of the container that runs `predict` (its termination message is the shard's summary).
pub const PREDICT_CONTAINER: &str = "predict";
/// `app.kubernetes.io/name` of a BatchPrediction's Jobs and pods: not the servers' `modelship`,
/// so no ModelDeployment's selector or watch ever sees them.
pub const BATCH_APP_NAME: &str = "modelship-batch";
/// `app.kubernetes.io/component` of the shard pods and of the manifest pod.
pub const COMPONENT: &str = "batch-prediction";
pub const MANIFEST_COMPONENT: &str = "batch-manifest";
/// The manifest Job is `NAME` + this.
pub const MANIFEST_SUFFIX: &str = "-manifest";
/// Where `predict` writes its summary (read back by the operator from the pod's status).
const TERMINATION_LOG: &str = "/dev/termination-log";

/// `predict`'s exit codes for causes no retry can fix, with the `Failed` reason each one
/// gives (`fetch`, the init container, exits 12 for a permanent fetch failure).
pub const PERMANENT_EXIT_CODES: [(i32, &str); 6] = [
    (2, "InvalidSpec"),
    (10, "InputNotFound"),
    (11, "OutputNotEmpty"),
    (12, "ModelFetchFailed"),
    (13, "ModelLoadFailed"),
    (14, "BadRows"),
];

/// Labels selecting the Jobs and pods of BatchPrediction `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            BATCH_APP_NAME.to_string(),
        ),
        (INSTANCE_LABEL.to_string(), name.to_string()),
    ])
}

/// Label selector of everything the operator makes for BatchPredictions, in any namespace.
pub fn managed_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/name={BATCH_APP_NAME}")
}

fn labels(name: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/component".into(), component.into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

/// The Indexed Job that scores the shards.
pub fn build_job(bp: &BatchPrediction, plan: &Plan) -> Job {
    let shards = plan.shards;
    let mut args = vec![
        "predict".to_string(),
        "--model".to_string(),
        model_arg(plan),
    ];
    if let (Some(sha), false) = (&plan.model.sha256, plan.model.source.needs_fetch()) {
        args.extend(["--sha256".into(), sha.clone()]);
    }
    if let Some(runtime) = plan.model.runtime {
        args.extend(["--runtime".into(), runtime.as_str().into()]);
    }
    args.extend(["--input".into(), plan.input.arg()]);
    if let Some(format) = plan.input_format {
        args.extend(["--input-format".into(), format.as_str().into()]);
    }
    args.extend(["--output".into(), plan.output.arg()]);
    args.extend(["--output-format".into(), plan.output_format.as_str().into()]);
    // Kubernetes expands $(JOB_COMPLETION_INDEX), the variable it sets in an Indexed Job's pods.
    args.extend([
        "--shard".into(),
        format!("$(JOB_COMPLETION_INDEX)/{shards}"),
    ]);
    if !plan.keep_columns.is_empty() {
        args.extend(["--keep-columns".into(), plan.keep_columns.join(",")]);
    }
    args.extend(["--bad-rows".into(), plan.bad_rows.as_str().into()]);
    if plan.overwrite {
        args.push("--overwrite".into());
    }
    args.extend(run_args(plan));

    let mut pod = pod_template(plan, COMPONENT, args);
    let spec = pod.spec.as_mut().expect("pod_template sets a spec");
    let mut volumes = spec.volumes.take().unwrap_or_default();
    let predict = &mut spec.containers[0];
    match &plan.model.source {
        ModelSource::Http(uri) | ModelSource::S3(uri) => {
            volumes.push(empty_dir("models"));
            push_mount(predict, "models", MODELS_DIR, true);
            let pull = plan.image_pull_policy.map(|p| p.as_str().to_string());
            let fetch_from = (plan.image.as_str(), plan.resources.as_ref());
            spec.init_containers = Some(vec![fetch_container(fetch_from, &plan.model, uri, pull)]);
        }
        ModelSource::Pvc { claim, .. } => {
            volumes.push(claim_volume("models", claim, true));
            push_mount(predict, "models", MODELS_DIR, true);
        }
        ModelSource::Builtin(_) | ModelSource::File(_) => {}
    }
    spec.volumes = Some(volumes);

    Job {
        metadata: meta(bp, plan, &plan.name, COMPONENT),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(shards),
            parallelism: Some(plan.parallelism),
            backoff_limit_per_index: Some(plan.retries_per_shard),
            // One shard out of retries fails the run: its output would miss rows.
            max_failed_indexes: Some(0),
            // A shard's replacement starts only once the pod it replaces has stopped, so two
            // pods never write the same part at once.
            pod_replacement_policy: Some("Failed".into()),
            pod_failure_policy: Some(pod_failure_policy()),
            template: pod,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The Job that writes `_manifest.json` once every shard is done.
pub fn build_manifest_job(bp: &BatchPrediction, plan: &Plan) -> Job {
    let mut args = vec![
        "predict".to_string(),
        "--write-manifest".into(),
        "--output".into(),
        plan.output.arg(),
        "--shards".into(),
        plan.shards.to_string(),
    ];
    args.extend(run_args(plan));
    let name = format!("{}{MANIFEST_SUFFIX}", plan.name);
    Job {
        metadata: meta(bp, plan, &name, MANIFEST_COMPONENT),
        spec: Some(JobSpec {
            completions: Some(1),
            parallelism: Some(1),
            backoff_limit: Some(plan.retries_per_shard),
            pod_replacement_policy: Some("Failed".into()),
            pod_failure_policy: Some(pod_failure_policy()),
            template: pod_template(plan, MANIFEST_COMPONENT, args),
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// FailJob on the permanent exit codes of any container (the `fetch` init container's 12
/// too); a disruption (eviction, preemption, node drain) is retried without counting.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    operator: "In".into(),
                    values: PERMANENT_EXIT_CODES.iter().map(|(code, _)| *code).collect(),
                    container_name: None,
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
            },
        ],
    }
}

fn run_args(plan: &Plan) -> [String; 4] {
    [
        "--run-id".into(),
        plan.uid.clone(),
        "--termination-log".into(),
        TERMINATION_LOG.into(),
    ]
}

fn model_arg(plan: &Plan) -> String {
    match &plan.model.source {
        ModelSource::Builtin(_) | ModelSource::File(_) => plan.model.uri.clone(),
        ModelSource::Http(_) | ModelSource::S3(_) => MODELS_DIR.into(),
        ModelSource::Pvc { path, .. } => format!("{MODELS_DIR}/{path}"),
    }
}

/// The pod of either Job: one `predict` container with the data's credentials and claims.
fn pod_template(plan: &Plan, component: &str, args: Vec<String>) -> PodTemplateSpec {
    let mut volumes = vec![empty_dir("tmp")];
    let mut predict = Container {
        name: PREDICT_CONTAINER.into(),
        image: Some(plan.image.clone()),
        image_pull_policy: plan.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(args),
        env: Some(env(plan)),
        env_from: plan.credentials_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources: plan.resources.clone(),
        security_context: Some(restricted_security_context()),
        // `predict` writes its summary there; a crash without one leaves its log's end.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
        ..Container::default()
    };
    // One volume per claim; read-write when the output is on it.
    let mut claims: Vec<(&str, bool)> = Vec::new();
    for (location, writes) in [(&plan.input, false), (&plan.output, true)] {
        if let Some(claim) = location.claim() {
            match claims.iter_mut().find(|(c, _)| *c == claim) {
                Some((_, rw)) => *rw |= writes,
                None => claims.push((claim, writes)),
            }
        }
    }
    for (i, (claim, writes)) in claims.into_iter().enumerate() {
        let volume = format!("data-{i}");
        volumes.push(claim_volume(&volume, claim, !writes));
        push_mount(
            &mut predict,
            &volume,
            &format!("{DATA_DIR}/{claim}"),
            !writes,
        );
    }
    let pod = &plan.pod;
    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(labels(&plan.name, component));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: (!pod.annotations.is_empty()).then(|| pod.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            containers: vec![predict],
            volumes: Some(volumes),
            security_context: Some(nonroot_pod_security_context()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            service_account_name: pod.service_account_name.clone(),
            priority_class_name: pod.priority_class_name.clone(),
            affinity: pod.affinity.clone(),
            node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
            tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
            image_pull_secrets: (!pod.image_pull_secrets.is_empty())
                .then(|| pod.image_pull_secrets.clone()),
            ..PodSpec::default()
        }),
    }
}

/// The operator's variables, then the spec's (which win, without duplicate names).
fn env(plan: &Plan) -> Vec<EnvVar> {
    let mut env = vec![EnvVar {
        name: "MODELSHIP_LOG_FORMAT".into(),
        value: Some("json".into()),
        ..EnvVar::default()
    }];
    for var in &plan.env {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => *existing = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
}

fn meta(bp: &BatchPrediction, plan: &Plan, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(plan.namespace.clone()),
        labels: Some(labels(&plan.name, component)),
        owner_references: Some(vec![OwnerReference {
            api_version: BatchPrediction::api_version(&()).into_owned(),
            kind: BatchPrediction::kind(&()).into_owned(),
            name: plan.name.clone(),
            uid: bp.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

fn push_mount(container: &mut Container, name: &str, path: &str, read_only: bool) {
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(mount(name, path, read_only));
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
