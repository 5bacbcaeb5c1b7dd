//! A BatchPrediction's status from what its Jobs and pods say (pure; the clock passed in).
//!
//! Shards come from the Job's `completedIndexes`/`failedIndexes`/`active`; rows are summed
//! from the termination messages `predict` writes (its JSON summary, at most 4 KiB), one
//! succeeded pod per completed index, so a retried shard is never counted twice. A failure's
//! reason comes from the exit code of the pod that failed the Job (or from its summary's
//! `reason`), its message from the summary's `message`, else from the container's state.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Deserialize;

use super::crd::{
    BatchPrediction, BatchPredictionStatus, Phase, RowCounts, ShardCounts, UsedModel,
};
use super::job::{PERMANENT_EXIT_CODES, PREDICT_CONTAINER};
use crate::status::conditions::merge_conditions;
use crate::validate::InvalidSpec;

/// The label the Job controller gives each pod: its index.
pub const INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";
/// Longest failure message kept in a condition or an Event.
const MAX_MESSAGE: usize = 1024;

/// What the reconciler read: the two Jobs (when they exist) and their pods.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed<'a> {
    pub job: Option<&'a Job>,
    pub pods: &'a [Pod],
    pub manifest_job: Option<&'a Job>,
    pub manifest_pods: &'a [Pod],
}

/// Why a pod failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// A `Failed` reason when the exit code (or the summary) names one.
    pub reason: Option<String>,
    pub message: String,
    pub exit_code: Option<i32>,
}

/// A failed pod of the shard Job, for the `ShardFailed` Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedPod {
    pub uid: String,
    pub name: String,
    pub shard: Option<i32>,
    pub cause: Cause,
}

/// The JSON summary `predict` writes as its termination message.
#[derive(Deserialize, Default)]
struct Summary {
    #[serde(default)]
    rows: Option<SummaryRows>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct SummaryRows {
    #[serde(default)]
    scored: i64,
    #[serde(default)]
    skipped: i64,
}

/// The status of a run: `model` is the model it uses, `manifest` the manifest's URI.
pub fn compute_status(
    bp: &BatchPrediction,
    model: UsedModel,
    shards: i32,
    manifest: String,
    observed: &Observed<'_>,
    now: &Time,
) -> BatchPredictionStatus {
    let previous = bp.status.clone().unwrap_or_default();
    let job_status = observed.job.and_then(|j| j.status.as_ref());
    let completed = parse_indexes(job_status.and_then(|s| s.completed_indexes.as_deref()));
    let failed = parse_indexes(job_status.and_then(|s| s.failed_indexes.as_deref()));
    let succeeded = completed.len() as i32;
    let shard_counts = ShardCounts {
        total: shards,
        succeeded,
        failed: failed.len() as i32,
        running: job_status.and_then(|s| s.active).unwrap_or(0),
        done: format!("{succeeded}/{shards}"),
    };
    let rows = rows_of(observed.pods, &completed);

    let (phase, failure) = if let Some(failure) = job_failure(observed.job, observed.pods, &failed)
    {
        (Phase::Failed, Some(failure))
    } else if is_true(observed.job, "Complete") {
        if is_true(observed.manifest_job, "Complete") {
            (Phase::Succeeded, None)
        } else if let Some(cause) = manifest_failure(observed.manifest_job, observed.manifest_pods)
        {
            (Phase::Failed, Some(cause))
        } else {
            (Phase::Running, None)
        }
    } else if job_status.and_then(|s| s.start_time.as_ref()).is_some() {
        (Phase::Running, None)
    } else {
        (Phase::Pending, None)
    };

    let generation = bp.metadata.generation;
    let conditions = conditions(phase, failure.as_ref(), &shard_counts, generation, now);
    BatchPredictionStatus {
        observed_generation: generation,
        phase,
        model: Some(model),
        shards: Some(shard_counts),
        rows: Some(rows),
        retries: job_status.and_then(|s| s.failed),
        start_time: previous
            .start_time
            .or_else(|| job_status.and_then(|s| s.start_time.clone())),
        completion_time: phase
            .is_final()
            .then(|| previous.completion_time.unwrap_or(now.clone())),
        job_name: observed
            .job
            .and_then(|j| j.metadata.name.clone())
            .or(previous.job_name),
        output_manifest: (phase == Phase::Succeeded).then_some(manifest),
        conditions: merge_conditions(&previous.conditions, conditions),
    }
}

/// The status of an object whose spec is invalid: `Failed` with `InvalidSpec`, at once.
pub fn invalid_status(
    bp: &BatchPrediction,
    invalid: &InvalidSpec,
    now: &Time,
) -> BatchPredictionStatus {
    let previous = bp.status.clone().unwrap_or_default();
    let cause = Cause {
        reason: Some("InvalidSpec".into()),
        message: invalid.to_string(),
        exit_code: None,
    };
    let generation = bp.metadata.generation;
    BatchPredictionStatus {
        observed_generation: generation,
        phase: Phase::Failed,
        completion_time: Some(previous.completion_time.clone().unwrap_or(now.clone())),
        conditions: merge_conditions(
            &previous.conditions,
            conditions(
                Phase::Failed,
                Some(&cause),
                &ShardCounts::default(),
                generation,
                now,
            ),
        ),
        ..previous
    }
}

/// The status of a run that cannot start yet (its referenced ModelDeployment does not
/// exist): `Pending`, `Complete` false with `reason` and `message`, nothing failed.
pub fn waiting_status(
    bp: &BatchPrediction,
    reason: &str,
    message: String,
    now: &Time,
) -> BatchPredictionStatus {
    let previous = bp.status.clone().unwrap_or_default();
    let generation = bp.metadata.generation;
    let mut conditions = conditions(
        Phase::Pending,
        None,
        &ShardCounts::default(),
        generation,
        now,
    );
    conditions[0].reason = reason.into();
    conditions[0].message = message;
    BatchPredictionStatus {
        observed_generation: generation,
        phase: Phase::Pending,
        conditions: merge_conditions(&previous.conditions, conditions),
        ..previous
    }
}

fn conditions(
    phase: Phase,
    failure: Option<&Cause>,
    shards: &ShardCounts,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let condition = |type_: &str, status: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let complete = match phase {
        Phase::Succeeded => condition(
            "Complete",
            true,
            "Succeeded",
            format!("{} shards scored; manifest written", shards.total),
        ),
        Phase::Failed => condition("Complete", false, "Failed", "the run failed".into()),
        Phase::Running => condition(
            "Complete",
            false,
            "Running",
            format!(
                "{} of {} shards done, {} running",
                shards.succeeded, shards.total, shards.running
            ),
        ),
        Phase::Pending => condition(
            "Complete",
            false,
            "Pending",
            "waiting for the Job to start".into(),
        ),
    };
    let failed = match failure {
        Some(cause) => condition(
            "Failed",
            true,
            cause.reason.as_deref().unwrap_or("JobFailed"),
            cause.message.clone(),
        ),
        None => condition("Failed", false, "AsExpected", "no failure".into()),
    };
    vec![complete, failed]
}

/// Rows of the completed shards, from one succeeded pod per index.
fn rows_of(pods: &[Pod], completed: &BTreeSet<i32>) -> RowCounts {
    let mut counted = BTreeSet::new();
    let mut rows = RowCounts::default();
    for pod in pods {
        let Some(index) = index_of(pod) else { continue };
        if !completed.contains(&index) || phase_of(pod) != "Succeeded" || !counted.insert(index) {
            continue;
        }
        if let Some(summary) = terminated(pod, PREDICT_CONTAINER, false).and_then(summary_of)
            && let Some(r) = summary.rows
        {
            rows.scored += r.scored;
            rows.skipped += r.skipped;
        }
    }
    rows
}

/// Why the shard Job failed, if it did (or is failing: `FailureTarget`).
fn job_failure(job: Option<&Job>, pods: &[Pod], failed: &BTreeSet<i32>) -> Option<Cause> {
    let condition = job_condition(job, "Failed").or_else(|| job_condition(job, "FailureTarget"))?;
    let failed_pods = failed_pods(pods);
    // A pod that failed with a permanent exit code made the Job fail at once.
    if let Some(pod) = failed_pods.iter().find(|p| {
        p.cause
            .exit_code
            .is_some_and(|code| PERMANENT_EXIT_CODES.iter().any(|(c, _)| *c == code))
    }) {
        let mut cause = pod.cause.clone();
        if let Some(shard) = pod.shard {
            cause.message = format!("shard {shard}: {}", cause.message);
        }
        return Some(cause);
    }
    if let Some(shard) = failed.iter().next() {
        let last = failed_pods.iter().rev().find(|p| p.shard == Some(*shard));
        let tries = failed_pods
            .iter()
            .filter(|p| p.shard == Some(*shard))
            .count();
        let last = last.map_or_else(|| condition.1.clone(), |p| p.cause.message.clone());
        return Some(Cause {
            reason: Some("ShardsFailed".into()),
            message: truncate(format!(
                "shard {shard} failed {tries} times (retries exhausted); last cause: {last}"
            )),
            exit_code: None,
        });
    }
    Some(Cause {
        reason: Some("JobFailed".into()),
        message: truncate(format!("{}: {}", condition.0, condition.1)),
        exit_code: None,
    })
}

fn manifest_failure(job: Option<&Job>, pods: &[Pod]) -> Option<Cause> {
    let condition = job_condition(job, "Failed")?;
    let last = failed_pods(pods).pop();
    let cause = last.map_or_else(|| condition.1.clone(), |p| p.cause.message);
    Some(Cause {
        reason: Some("ManifestFailed".into()),
        message: truncate(format!("writing _manifest.json failed: {cause}")),
        exit_code: None,
    })
}

/// The failed pods among `pods`, oldest failure first, each with its cause.
pub fn failed_pods(pods: &[Pod]) -> Vec<FailedPod> {
    let mut failed: Vec<(Option<Time>, FailedPod)> = pods
        .iter()
        .filter(|p| phase_of(p) == "Failed")
        .map(|pod| {
            let (finished, cause) = cause_of(pod);
            (
                finished,
                FailedPod {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    shard: index_of(pod),
                    cause,
                },
            )
        })
        .collect();
    failed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    failed.into_iter().map(|(_, p)| p).collect()
}

/// The first container that failed (the init container first) and what it said.
fn cause_of(pod: &Pod) -> (Option<Time>, Cause) {
    let status = pod.status.as_ref();
    let failed = terminated(pod, "", true).or_else(|| terminated(pod, PREDICT_CONTAINER, false));
    let Some(t) = failed.filter(|t| t.exit_code != 0) else {
        let reason = status
            .and_then(|s| s.reason.clone())
            .unwrap_or_else(|| "Failed".into());
        let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
        return (
            None,
            Cause {
                reason: None,
                message: truncate(
                    format!("pod {reason}: {message}")
                        .trim_end_matches(": ")
                        .into(),
                ),
                exit_code: None,
            },
        );
    };
    let summary = summary_of(t);
    let by_code = PERMANENT_EXIT_CODES
        .iter()
        .find(|(code, _)| *code == t.exit_code)
        .map(|(_, reason)| reason.to_string());
    let known = |r: &String| PERMANENT_EXIT_CODES.iter().any(|(_, known)| known == r);
    let reason = summary
        .as_ref()
        .and_then(|s| s.reason.clone())
        .filter(|r| by_code.is_some() && known(r))
        .or(by_code);
    let message = summary
        .and_then(|s| s.message)
        .or_else(|| {
            t.message
                .clone()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
        })
        .unwrap_or_else(|| {
            format!(
                "{} (exit code {})",
                t.reason.clone().unwrap_or_else(|| "Error".into()),
                t.exit_code
            )
        });
    (
        t.finished_at.clone(),
        Cause {
            reason,
            message: truncate(message),
            exit_code: Some(t.exit_code),
        },
    )
}

/// The terminated state of container `name` (`init`: the first failed init container).
fn terminated<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a ContainerStateTerminated> {
    let status = pod.status.as_ref()?;
    let statuses = if init {
        status.init_container_statuses.as_ref()?
    } else {
        status.container_statuses.as_ref()?
    };
    statuses
        .iter()
        .filter(|c| init || c.name == name)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .find(|t| !init || t.exit_code != 0)
}

fn summary_of(t: &ContainerStateTerminated) -> Option<Summary> {
    serde_json::from_str(t.message.as_deref()?.trim()).ok()
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata.labels.as_ref()?.get(INDEX_LABEL)?.parse().ok()
}

fn phase_of(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn job_condition(job: Option<&Job>, type_: &str) -> Option<(String, String)> {
    job?.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn is_true(job: Option<&Job>, type_: &str) -> bool {
    job_condition(job, type_).is_some()
}

/// `"1,3-5"` → {1, 3, 4, 5}: the Job's notation of index sets.
pub fn parse_indexes(text: Option<&str>) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(from), Ok(to)) = (from.trim().parse::<i32>(), to.trim().parse::<i32>()) {
            set.extend(from..=to);
        }
    }
    set
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
