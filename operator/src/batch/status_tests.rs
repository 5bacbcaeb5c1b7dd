//! Status from tables of Jobs and pods: what each combination reports.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::batch::crd::{BatchPrediction, Phase, UsedModel};

fn now() -> Time {
    Time("2026-12-01T10:00:00Z".parse::<Timestamp>().unwrap())
}

fn bp() -> BatchPrediction {
    serde_yaml::from_str(
        "apiVersion: modelship.io/v1alpha1\nkind: BatchPrediction\nmetadata: {name: nightly, namespace: ml, generation: 1}\nspec:\n  model: {uri: builtin://iris}\n  input: {uri: s3://data/x/}\n  output: {uri: s3://scores/x/}\n",
    )
    .unwrap()
}

fn job(status: serde_json::Value) -> Job {
    serde_json::from_value(json!({"metadata": {"name": "nightly"}, "status": status})).unwrap()
}

/// A pod of shard `index` in `phase`, its `predict` container (or, with `init`, its `fetch`
/// init container) terminated with `code` and `message`.
fn pod(name: &str, index: i32, phase: &str, code: i32, message: &str, init: bool) -> Pod {
    let terminated = json!({"state": {"terminated": {
        "exitCode": code, "message": message, "reason": if code == 137 { "OOMKilled" } else if code == 0 { "Completed" } else { "Error" },
        "finishedAt": format!("2026-12-01T09:{:02}:00Z", name.len() + index as usize),
    }}, "name": if init { "fetch" } else { "predict" }, "image": "i", "imageID": "", "ready": false, "restartCount": 0});
    let statuses = if init {
        "initContainerStatuses"
    } else {
        "containerStatuses"
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": name, "labels": {INDEX_LABEL: index.to_string()}},
        "status": {"phase": phase, statuses: [terminated]},
    }))
    .unwrap()
}

fn summary(index: i32, scored: i64, skipped: i64) -> String {
    json!({"shard": index, "shards": 4, "runId": "u", "rows": {"scored": scored, "skipped": skipped}, "part": format!("part-{index:05}.jsonl")}).to_string()
}

fn status_of(observed: &Observed<'_>) -> BatchPredictionStatus {
    compute_status(
        &bp(),
        UsedModel::default(),
        4,
        "s3://scores/x/_manifest.json".into(),
        observed,
        &now(),
    )
}

fn failed(status: &BatchPredictionStatus) -> &Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
}

#[test]
fn indexes_parse_in_the_job_notation() {
    assert_eq!(
        parse_indexes(Some("0,2-4,7"))
            .into_iter()
            .collect::<Vec<_>>(),
        [0, 2, 3, 4, 7]
    );
    assert!(parse_indexes(None).is_empty());
    assert!(parse_indexes(Some("")).is_empty());
}

#[test]
fn no_job_yet_is_pending() {
    let status = status_of(&Observed::default());
    assert_eq!(status.phase, Phase::Pending);
    assert_eq!(failed(&status).status, "False");
}

#[test]
fn rows_count_each_completed_shard_once_from_its_succeeded_pod() {
    let job = job(
        json!({"startTime": "2026-12-01T09:00:00Z", "active": 1, "failed": 1, "completedIndexes": "0,2"}),
    );
    let pods = [
        pod("a", 0, "Succeeded", 0, &summary(0, 100, 1), false),
        // Shard 2 failed once (its partial count is not counted), then succeeded.
        pod("b", 2, "Failed", 143, &summary(2, 40, 0), false),
        pod("c", 2, "Succeeded", 0, &summary(2, 250, 2), false),
        // Shard 1 runs; its pod says nothing yet.
        serde_json::from_value(json!({"metadata": {"name": "d", "labels": {INDEX_LABEL: "1"}}, "status": {"phase": "Running"}})).unwrap(),
    ];
    let status = status_of(&Observed {
        job: Some(&job),
        pods: &pods,
        ..Observed::default()
    });
    assert_eq!(status.phase, Phase::Running);
    let shards = status.shards.unwrap();
    assert_eq!(
        (
            shards.total,
            shards.succeeded,
            shards.failed,
            shards.running
        ),
        (4, 2, 0, 1)
    );
    assert_eq!(shards.done, "2/4");
    let rows = status.rows.unwrap();
    assert_eq!((rows.scored, rows.skipped), (350, 3));
    assert_eq!(status.retries, Some(1));
    assert_eq!(status.output_manifest, None);
}

#[test]
fn a_permanent_exit_code_fails_with_its_reason_and_the_summary_message() {
    let job = job(json!({"startTime": "2026-12-01T09:00:00Z", "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy", "message": "Container predict for pod ml/nightly-1-x failed with exit code 10 matching FailJob rule at index 0"},
    ]}));
    let message = json!({"shard": 1, "shards": 4, "runId": "u", "reason": "InputNotFound", "message": "no object under s3://data/x/"}).to_string();
    let pods = [pod("nightly-1-x", 1, "Failed", 10, &message, false)];
    let status = status_of(&Observed {
        job: Some(&job),
        pods: &pods,
        ..Observed::default()
    });
    assert_eq!(status.phase, Phase::Failed);
    let c = failed(&status);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "InputNotFound")
    );
    assert_eq!(c.message, "shard 1: no object under s3://data/x/");
    assert_eq!(status.completion_time, Some(now()));
}

#[test]
fn every_permanent_code_maps_to_its_reason_even_without_a_summary() {
    for (code, reason) in PERMANENT_EXIT_CODES {
        let job = job(
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}),
        );
        let pods = [pod("p", 0, "Failed", code, "", code == 12)];
        let status = status_of(&Observed {
            job: Some(&job),
            pods: &pods,
            ..Observed::default()
        });
        let c = failed(&status);
        assert_eq!(c.reason, reason, "exit code {code}");
        assert!(
            c.message.contains(&format!("exit code {code}")),
            "{}",
            c.message
        );
    }
}

#[test]
fn a_shard_out_of_retries_is_named_with_its_last_cause() {
    let job = job(
        json!({"failedIndexes": "3", "completedIndexes": "0-2", "conditions": [
            {"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded", "message": "Job has exceeded the specified maximal number of failed indexes"},
        ]}),
    );
    let pods = [
        pod("n-3-a", 3, "Failed", 1, "connection reset by peer", false),
        pod("n-3-bb", 3, "Failed", 137, "", false),
    ];
    let status = status_of(&Observed {
        job: Some(&job),
        pods: &pods,
        ..Observed::default()
    });
    let c = failed(&status);
    assert_eq!(c.reason, "ShardsFailed");
    assert_eq!(
        c.message,
        "shard 3 failed 2 times (retries exhausted); last cause: OOMKilled (exit code 137)"
    );
    assert_eq!(status.shards.unwrap().failed, 1);
}

#[test]
fn done_only_once_the_manifest_is_written() {
    let done = job(
        json!({"completedIndexes": "0-3", "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    let status = status_of(&Observed {
        job: Some(&done),
        ..Observed::default()
    });
    assert_eq!(status.phase, Phase::Running);
    let writing = job(json!({"active": 1}));
    let status = status_of(&Observed {
        job: Some(&done),
        manifest_job: Some(&writing),
        ..Observed::default()
    });
    assert_eq!(status.phase, Phase::Running);

    let written = job(json!({"conditions": [{"type": "Complete", "status": "True"}]}));
    let status = status_of(&Observed {
        job: Some(&done),
        manifest_job: Some(&written),
        ..Observed::default()
    });
    assert_eq!(status.phase, Phase::Succeeded);
    assert_eq!(
        status.output_manifest.as_deref(),
        Some("s3://scores/x/_manifest.json")
    );
    let complete = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .unwrap();
    assert_eq!(complete.status, "True");

    let broken = job(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    let pods = [pod(
        "m",
        0,
        "Failed",
        1,
        "missing report _reports/part-00002.json",
        false,
    )];
    let status = status_of(&Observed {
        job: Some(&done),
        manifest_job: Some(&broken),
        manifest_pods: &pods,
        ..Observed::default()
    });
    let c = failed(&status);
    assert_eq!(
        (status.phase, c.reason.as_str()),
        (Phase::Failed, "ManifestFailed")
    );
    assert!(
        c.message.contains("_reports/part-00002.json"),
        "{}",
        c.message
    );
}

#[test]
fn an_unchanged_condition_keeps_its_transition_time() {
    let job = job(json!({"startTime": "2026-12-01T09:00:00Z", "active": 2}));
    let observed = Observed {
        job: Some(&job),
        ..Observed::default()
    };
    let first = status_of(&observed);
    let mut bp = bp();
    bp.status = Some(first.clone());
    let later = Time("2026-12-01T11:00:00Z".parse::<Timestamp>().unwrap());
    let second = compute_status(
        &bp,
        UsedModel::default(),
        4,
        String::new(),
        &observed,
        &later,
    );
    assert_eq!(failed(&second).last_transition_time, now());
}

#[test]
fn an_invalid_spec_fails_at_once_naming_the_field() {
    let invalid = InvalidSpec(vec![crate::validate::FieldError {
        field: "spec.parallelism".into(),
        rule: "must be >= 1".into(),
    }]);
    let status = invalid_status(&bp(), &invalid, &now());
    assert_eq!(status.phase, Phase::Failed);
    let c = failed(&status);
    assert_eq!(c.reason, "InvalidSpec");
    assert!(c.message.contains("spec.parallelism"), "{}", c.message);
}

#[test]
fn a_missing_model_deployment_waits_pending_and_says_why() {
    let status = waiting_status(
        &bp(),
        "ModelDeploymentNotFound",
        "waiting for ModelDeployment iris (spec.modelDeploymentRef.name): not found".into(),
        &now(),
    );
    assert_eq!(status.phase, Phase::Pending);
    let complete = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .unwrap();
    assert_eq!(
        (complete.status.as_str(), complete.reason.as_str()),
        ("False", "ModelDeploymentNotFound")
    );
    assert!(complete.message.contains("spec.modelDeploymentRef.name"));
    assert_eq!(failed(&status).status, "False", "waiting is not a failure");
    assert!(status.completion_time.is_none());
}
