//! Status of a `ModelDeployment`, computed from what the cluster reports: pure functions, the
//! clock passed in.
//!
//! Conditions follow `metav1.Condition`: one per `type`, `lastTransitionTime` changes only
//! when a condition's `status` changes.

mod pods;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

pub use pods::{PodProblem, PodReason, PodsSummary, pod_problem, summarize_pods};

use crate::build::{model_name, model_url, selector_string};
use crate::config::Config;
use crate::crd::{ModelDeployment, ModelDeploymentStatus, ModelStatus};
use crate::validate::InvalidSpec;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Reason of all three conditions when the spec breaks a rule.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// What the reconciler observed, the input of [`compute_status`].
pub struct Observed<'a> {
    /// The Deployment as the API server returned it after the apply (`None` if not built).
    pub deployment: Option<&'a Deployment>,
    /// Every pod of the ModelDeployment, old ReplicaSets included.
    pub pods: &'a [Pod],
    /// Why the spec was not built, if it was not.
    pub invalid: Option<&'a InvalidSpec>,
}

/// Computes the whole status of `md`; `now` stamps conditions whose status changed.
pub fn compute_status(
    md: &ModelDeployment,
    config: &Config,
    observed: &Observed<'_>,
    now: &Time,
) -> ModelDeploymentStatus {
    let generation = md.metadata.generation;
    let rollout = Rollout::of(observed.deployment);
    let pods = summarize_pods(observed.pods);

    let condition = |type_: &str, status: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    };

    let desired_text = format!("{}/{} replicas ready", rollout.ready, rollout.desired);
    let (ready, progressing, degraded) = if let Some(invalid) = observed.invalid {
        let message = format!("spec is invalid: {invalid}");
        (
            condition(READY, false, INVALID_SPEC, message.clone()),
            condition(PROGRESSING, false, INVALID_SPEC, message.clone()),
            condition(DEGRADED, true, INVALID_SPEC, message),
        )
    } else {
        let ready = if rollout.ready >= 1 && !rollout.stalled {
            condition(READY, true, "ModelServing", desired_text.clone())
        } else if rollout.stalled {
            condition(
                READY,
                false,
                "ProgressDeadlineExceeded",
                rollout.message.clone(),
            )
        } else if let Some(p) = &pods {
            condition(READY, false, p.reason.as_str(), p.message.clone())
        } else if rollout.desired == 0 {
            condition(
                READY,
                false,
                "ScaledToZero",
                "no replicas are desired".into(),
            )
        } else {
            condition(
                READY,
                false,
                "ModelLoading",
                format!("waiting for a replica to load the model ({desired_text})"),
            )
        };
        let progressing = if rollout.stalled {
            condition(
                PROGRESSING,
                false,
                "ProgressDeadlineExceeded",
                rollout.message.clone(),
            )
        } else if rollout.complete {
            condition(PROGRESSING, false, "RolloutComplete", desired_text.clone())
        } else {
            condition(
                PROGRESSING,
                true,
                "RollingOut",
                format!(
                    "{} of {} replicas updated, {} ready",
                    rollout.updated, rollout.desired, rollout.ready
                ),
            )
        };
        let degraded = match (&pods, rollout.stalled) {
            (Some(p), _) => condition(DEGRADED, true, p.reason.as_str(), p.message.clone()),
            (None, true) => condition(DEGRADED, true, "ProgressDeadlineExceeded", rollout.message),
            (None, false) => condition(
                DEGRADED,
                false,
                "AsExpected",
                "no pod reports a problem".into(),
            ),
        };
        (ready, progressing, degraded)
    };

    let previous = md
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ModelDeploymentStatus {
        observed_generation: generation,
        replicas: Some(rollout.replicas),
        ready_replicas: Some(rollout.ready),
        updated_replicas: Some(rollout.updated),
        ready: Some(format!("{}/{}", rollout.ready, rollout.desired)),
        selector: Some(selector_string(md)),
        url: Some(model_url(md, config)),
        model: Some(ModelStatus {
            name: model_name(md),
            version: md.spec.model.version.clone(),
            uri: md.spec.model.uri.clone(),
        }),
        conditions: merge_conditions(previous, vec![ready, progressing, degraded]),
    }
}

/// Merges `updates` into `previous`: an updated condition keeps its previous
/// `lastTransitionTime` unless its `status` changed; conditions of other types are kept.
pub fn merge_conditions(previous: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut merged: Vec<Condition> = updates
        .into_iter()
        .map(|mut update| {
            if let Some(old) = previous.iter().find(|c| c.type_ == update.type_)
                && old.status == update.status
            {
                update.last_transition_time = old.last_transition_time.clone();
            }
            update
        })
        .collect();
    for old in previous {
        if !merged.iter().any(|c| c.type_ == old.type_) {
            merged.push(old.clone());
        }
    }
    merged
}

/// The rollout state of the Deployment, in numbers.
#[derive(Debug, Default)]
struct Rollout {
    desired: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    /// Every desired pod runs the latest template and is available; no old pod is left.
    complete: bool,
    /// The Deployment gave up: `Progressing` is `False` with `ProgressDeadlineExceeded`.
    stalled: bool,
    message: String,
}

impl Rollout {
    fn of(deployment: Option<&Deployment>) -> Self {
        let Some(d) = deployment else {
            return Self::default();
        };
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(s) = d.status.as_ref() else {
            return Self {
                desired,
                ..Self::default()
            };
        };
        let replicas = s.replicas.unwrap_or(0);
        let ready = s.ready_replicas.unwrap_or(0);
        let updated = s.updated_replicas.unwrap_or(0);
        let available = s.available_replicas.unwrap_or(0);
        let observed = s.observed_generation >= d.metadata.generation;
        let deadline = s.conditions.iter().flatten().find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        Self {
            desired,
            replicas,
            ready,
            updated,
            complete: observed && updated == desired && replicas == desired && available >= desired,
            stalled: deadline.is_some(),
            message: deadline.and_then(|c| c.message.clone()).unwrap_or_default(),
        }
    }
}

/// The name of `md` for messages: `namespace/name`.
pub fn display_name(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;
    use crate::validate::FieldError;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn find<'a>(status: &'a ModelDeploymentStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    const ROLLED_OUT: &str = r#"
metadata: {name: iris, generation: 2}
spec: {replicas: 2, selector: {}, template: {}}
status: {observedGeneration: 2, replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2}
"#;

    const ROLLING: &str = r#"
metadata: {name: iris, generation: 3}
spec: {replicas: 2, selector: {}, template: {}}
status: {observedGeneration: 3, replicas: 3, readyReplicas: 2, updatedReplicas: 1, availableReplicas: 2}
"#;

    const STARTING: &str = r#"
metadata: {name: iris, generation: 1}
spec: {replicas: 1, selector: {}, template: {}}
status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, unavailableReplicas: 1}
"#;

    #[test]
    fn rolled_out_deployment_is_ready_and_not_progressing() {
        let md = fixtures::model_deployment("iris.yaml");
        let d = deployment(ROLLED_OUT);
        let observed = Observed {
            deployment: Some(&d),
            pods: &[],
            invalid: None,
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        assert_eq!(status.ready.as_deref(), Some("2/2"));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(find(&status, READY).status, "True");
        assert_eq!(find(&status, PROGRESSING).reason, "RolloutComplete");
        assert_eq!(find(&status, DEGRADED).status, "False");
        assert_eq!(status.model.unwrap().name, "iris");
    }

    #[test]
    fn rolling_update_keeps_serving_and_reports_progress() {
        let md = fixtures::model_deployment("iris.yaml");
        let d = deployment(ROLLING);
        let observed = Observed {
            deployment: Some(&d),
            pods: &[],
            invalid: None,
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        assert_eq!(find(&status, READY).status, "True");
        let progressing = find(&status, PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RollingOut")
        );
        assert_eq!(progressing.message, "1 of 2 replicas updated, 2 ready");
    }

    #[test]
    fn pod_failures_make_it_degraded_with_their_reason() {
        let md = fixtures::model_deployment("iris.yaml");
        let d = deployment(STARTING);
        let pod: Pod = serde_yaml::from_str(
            r#"
metadata: {name: iris-1}
status:
  conditions:
  - {type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available"}
"#,
        )
        .unwrap();
        let pods = [pod];
        let observed = Observed {
            deployment: Some(&d),
            pods: &pods,
            invalid: None,
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        let ready = find(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Unschedulable")
        );
        let degraded = find(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Unschedulable")
        );
        assert_eq!(degraded.message, "1 of 1 pods: 0/1 nodes are available");
    }

    #[test]
    fn invalid_spec_sets_all_conditions_with_the_field() {
        let md = fixtures::model_deployment("iris.yaml");
        let invalid = InvalidSpec(vec![FieldError {
            field: "spec.replicas".into(),
            rule: "must be >= 0 (is -1)".into(),
        }]);
        let observed = Observed {
            deployment: None,
            pods: &[],
            invalid: Some(&invalid),
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        let degraded = find(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", INVALID_SPEC)
        );
        assert_eq!(
            degraded.message,
            "spec is invalid: spec.replicas: must be >= 0 (is -1)"
        );
        assert_eq!(find(&status, READY).reason, INVALID_SPEC);
    }

    #[test]
    fn transition_time_changes_only_when_status_changes() {
        let mut md = fixtures::model_deployment("iris.yaml");
        let starting = deployment(STARTING);
        let observed = Observed {
            deployment: Some(&starting),
            pods: &[],
            invalid: None,
        };
        md.status = Some(compute_status(&md, &Config::default(), &observed, &at(100)));
        assert_eq!(
            find(md.status.as_ref().unwrap(), READY).reason,
            "ModelLoading"
        );

        // Same statuses later: times kept, even though messages may change.
        let status = compute_status(&md, &Config::default(), &observed, &at(200));
        assert_eq!(find(&status, READY).last_transition_time, at(100));
        md.status = Some(status);

        // Ready flips to True: only Ready (and Progressing, now complete) get the new time.
        let d = deployment(ROLLED_OUT);
        let observed = Observed {
            deployment: Some(&d),
            pods: &[],
            invalid: None,
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(300));
        assert_eq!(find(&status, READY).last_transition_time, at(300));
        assert_eq!(find(&status, PROGRESSING).last_transition_time, at(300));
        assert_eq!(find(&status, DEGRADED).last_transition_time, at(100));
    }

    #[test]
    fn merge_keeps_conditions_of_other_types() {
        let foreign = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(1),
        };
        let update = Condition {
            type_: READY.into(),
            last_transition_time: at(5),
            ..foreign.clone()
        };
        let merged = merge_conditions(std::slice::from_ref(&foreign), vec![update.clone()]);
        assert_eq!(merged, vec![update, foreign]);
    }

    #[test]
    fn stalled_rollout_is_degraded() {
        let md = fixtures::model_deployment("iris.yaml");
        let d = deployment(
            r#"
metadata: {name: iris, generation: 1}
spec: {replicas: 1, selector: {}, template: {}}
status:
  observedGeneration: 1
  replicas: 1
  conditions:
  - {type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: "ReplicaSet iris-1 has timed out progressing."}
"#,
        );
        let observed = Observed {
            deployment: Some(&d),
            pods: &[],
            invalid: None,
        };
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        assert_eq!(find(&status, DEGRADED).reason, "ProgressDeadlineExceeded");
        assert_eq!(find(&status, READY).status, "False");
    }
}
