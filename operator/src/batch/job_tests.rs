//! The Job builders against YAML fixtures (`UPDATE_FIXTURES=1` rewrites them).

use super::*;
use crate::batch::crd::BatchPrediction;
use crate::batch::plan::plan;
use crate::build::fixtures;
use crate::config::Config;

fn batch_prediction(name: &str) -> BatchPrediction {
    let text = std::fs::read_to_string(fixtures::path(name)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn plan_of(bp: &BatchPrediction) -> Plan {
    plan(bp, bp.spec.model.as_ref().unwrap(), &Config::default()).unwrap()
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

#[test]
fn indexed_job_matches_fixture() {
    let bp = batch_prediction("batch.yaml");
    fixtures::assert_matches(&build_job(&bp, &plan_of(&bp)), "batch.job.yaml");
}

#[test]
fn manifest_job_matches_fixture() {
    let bp = batch_prediction("batch.yaml");
    fixtures::assert_matches(
        &build_manifest_job(&bp, &plan_of(&bp)),
        "batch.manifest-job.yaml",
    );
}

#[test]
fn one_index_per_shard_retried_per_index_and_failed_on_permanent_codes() {
    let bp = batch_prediction("batch.yaml");
    let job = build_job(&bp, &plan_of(&bp));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    // shards default to 4 per pod.
    assert_eq!((spec.completions, spec.parallelism), (Some(8), Some(2)));
    assert_eq!(spec.backoff_limit_per_index, Some(2));
    assert_eq!(spec.max_failed_indexes, Some(0));
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
    let codes = &rules[0].on_exit_codes.as_ref().unwrap().values;
    assert_eq!(
        (rules[0].action.as_str(), codes.as_slice()),
        ("FailJob", [2, 10, 11, 12, 13, 14].as_slice())
    );
    // No container name: the fetch init container's 12 fails the Job too.
    assert_eq!(
        rules[0].on_exit_codes.as_ref().unwrap().container_name,
        None
    );
    assert_eq!(rules[1].action, "Ignore");
    assert_eq!(pod_spec(&job).restart_policy.as_deref(), Some("Never"));
}

#[test]
fn predict_gets_its_shard_run_id_and_the_data_by_mount_or_uri() {
    let bp = batch_prediction("batch.yaml");
    let job = build_job(&bp, &plan_of(&bp));
    let pod = pod_spec(&job);
    let predict = &pod.containers[0];
    let args = predict.args.as_ref().unwrap();
    assert_eq!(args[0], "predict");
    assert_eq!(
        arg_after(args, "--shard"),
        Some("$(JOB_COMPLETION_INDEX)/8")
    );
    assert_eq!(
        arg_after(args, "--run-id"),
        Some("6f1d2c3e-0000-4000-8000-000000000001")
    );
    assert_eq!(arg_after(args, "--input"), Some("s3://data/2026-12-01/"));
    assert_eq!(
        arg_after(args, "--output"),
        Some("/data/scores/2026-12-01/")
    );
    assert_eq!(arg_after(args, "--keep-columns"), Some("id,customer_id"));
    assert_eq!(arg_after(args, "--bad-rows"), Some("fail"));
    assert_eq!(arg_after(args, "--model"), Some("/models"));
    // The fetched model was checked by fetch; predict is not asked to check it again.
    assert_eq!(arg_after(args, "--sha256"), None);
    assert!(!args.contains(&"--overwrite".to_string()));
    // The output claim is mounted read-write; the data Secret is in predict's environment,
    // the model's only in fetch's.
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data-0")
        .unwrap();
    let claim = data.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("scores", None)
    );
    let secret_of = |c: &Container| {
        c.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name
            .clone()
    };
    assert_eq!(secret_of(predict), "data-credentials");
    let fetch = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(secret_of(fetch), "model-credentials");
    assert_eq!(
        arg_after(fetch.args.as_ref().unwrap(), "--sha256").map(str::len),
        Some(64)
    );
}

#[test]
fn a_builtin_model_needs_no_fetch_and_a_pvc_input_is_read_only() {
    let mut bp = batch_prediction("batch.yaml");
    bp.spec.model.as_mut().unwrap().uri = "builtin://iris".into();
    bp.spec.input.uri = "pvc://datasets/day/".into();
    bp.spec.output.uri = "s3://scores/day/".into();
    bp.spec.output.overwrite = Some(true);
    let job = build_job(&bp, &plan_of(&bp));
    let pod = pod_spec(&job);
    assert!(pod.init_containers.is_none());
    let args = pod.containers[0].args.as_ref().unwrap();
    assert_eq!(arg_after(args, "--model"), Some("builtin://iris"));
    assert_eq!(arg_after(args, "--input"), Some("/data/datasets/day/"));
    assert!(args.contains(&"--overwrite".to_string()));
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data-0")
        .unwrap();
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().read_only,
        Some(true)
    );
}

#[test]
fn jobs_are_owned_by_the_batch_prediction_and_never_selected_by_a_model_deployment() {
    let bp = batch_prediction("batch.yaml");
    let plan = plan_of(&bp);
    for job in [build_job(&bp, &plan), build_manifest_job(&bp, &plan)] {
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("BatchPrediction", Some(true))
        );
        let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels["app.kubernetes.io/name"], BATCH_APP_NAME);
        assert_eq!(pod_labels["team"], "risk");
        let md_selector = crate::build::selector_labels("nightly");
        assert!(
            !md_selector
                .iter()
                .all(|(k, v)| pod_labels.get(k) == Some(v))
        );
    }
}
