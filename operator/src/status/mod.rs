//! Status of a `ModelDeployment`, computed from what the cluster reports: pure functions, the
//! clock passed in.
//!
//! Conditions follow `metav1.Condition`: one per `type`, `lastTransitionTime` changes only
//! when a condition's `status` changes. [`conditions`] holds one function per condition,
//! [`pods`] reads why pods do not serve, [`rollout`] what the Deployment reports, [`route`]
//! what the Gateway said of the HTTPRoute.

pub mod conditions;
pub mod pods;
pub mod rollout;
pub mod route;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

pub use conditions::{ConditionType, Reason, merge_conditions};
pub use pods::{PodProblem, PodReason, pod_problem, summarize_pods};

use crate::build::selector_string;
use crate::build::traffic::{Exposure, Traffic};
use crate::config::Config;
use crate::crd::{
    AddressStatus, CanaryStatus, ModelDeployment, ModelDeploymentStatus, ModelStatus,
};
use crate::validate::{Endpoint, InvalidSpec, Validated};
pub use rollout::Rollout;
pub use route::{RouteVerdict, judge_route};

/// What the reconciler observed, the input of [`compute_status`].
pub enum Observed<'a> {
    /// The spec breaks rules: nothing was built or applied.
    Invalid(&'a InvalidSpec),
    /// The children were applied.
    Applied {
        validated: &'a Validated,
        /// The Deployment as the API server returned it after the apply.
        deployment: &'a Deployment,
        /// Every pod of the ModelDeployment, old ReplicaSets included.
        pods: &'a [Pod],
        /// The route and the canary's share, as applied.
        traffic: &'a Traffic,
        /// The canary's pods (empty without a canary).
        canary_pods: &'a [Pod],
        /// What the Gateway said of the HTTPRoute (`None` without one).
        route: Option<&'a RouteVerdict>,
    },
}

/// Computes the whole status of `md`; `now` stamps conditions whose status changed. `config`
/// names the endpoint of an invalid spec (a valid one carries its own).
pub fn compute_status(
    md: &ModelDeployment,
    config: &Config,
    observed: &Observed<'_>,
    now: &Time,
) -> ModelDeploymentStatus {
    let generation = md.metadata.generation;
    let previous_status = md.status.as_ref();
    let previous = previous_status
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let (rollout, verdicts, endpoint, public_url, canary) = match observed {
        Observed::Invalid(invalid) => (
            Rollout::default(),
            conditions::invalid_spec(invalid).to_vec(),
            Endpoint::of(md, config),
            // Nothing was applied: the route and the canary stay as they were reported.
            previous_status.and_then(|s| s.url.clone()),
            previous_status.and_then(|s| s.canary.clone()),
        ),
        Observed::Applied {
            validated,
            deployment,
            pods,
            traffic,
            canary_pods,
            route,
        } => {
            let rollout = Rollout::of(deployment);
            let problem = summarize_pods(pods);
            let mut verdicts = vec![
                conditions::ready(&rollout, problem.as_ref()),
                conditions::progressing(&rollout),
                conditions::degraded(&rollout, problem.as_ref()),
            ];
            verdicts.extend(
                traffic
                    .exposure
                    .as_ref()
                    .map(|e| conditions::exposed(e, *route)),
            );
            let canary_problem = summarize_pods(canary_pods);
            verdicts.extend(
                traffic
                    .canary_traffic
                    .as_ref()
                    .map(|c| conditions::canary_ready(c, canary_problem.as_ref())),
            );
            let public_url = match &traffic.exposure {
                Some(Exposure::Routed { url, .. }) => Some(url.clone()),
                _ => None,
            };
            (
                rollout,
                verdicts,
                validated.endpoint.clone(),
                public_url,
                canary_status(validated, traffic),
            )
        }
    };
    let updates = verdicts
        .into_iter()
        .map(|v| v.into_condition(generation, now))
        .collect();
    // The optional conditions of a part of the spec that is gone go with it.
    let kept: Vec<_> = match observed {
        Observed::Invalid(_) => previous.to_vec(),
        Observed::Applied { traffic, .. } => previous
            .iter()
            .filter(|c| {
                let gone = |t: ConditionType, present: bool| c.type_ == t.as_str() && !present;
                !gone(ConditionType::Exposed, traffic.exposure.is_some())
                    && !gone(ConditionType::CanaryReady, traffic.canary_traffic.is_some())
            })
            .cloned()
            .collect(),
    };
    ModelDeploymentStatus {
        observed_generation: generation,
        replicas: Some(rollout.replicas),
        ready_replicas: Some(rollout.ready),
        updated_replicas: Some(rollout.updated),
        ready: Some(format!("{}/{}", rollout.ready, rollout.desired)),
        selector: Some(selector_string(&md.name_any())),
        url: Some(public_url.unwrap_or_else(|| endpoint.url.clone())),
        address: Some(AddressStatus { url: endpoint.url }),
        model: Some(ModelStatus {
            name: endpoint.model_name,
            version: endpoint.model_version,
            uri: endpoint.uri,
        }),
        canary,
        payload_log: match observed {
            Observed::Invalid(_) => previous_status.and_then(|s| s.payload_log.clone()),
            Observed::Applied { validated, .. } => {
                validated.monitoring.as_ref().map(|m| m.status())
            }
        },
        conditions: merge_conditions(&kept, updates),
    }
}

/// `status.canary`: the canary's model and the traffic it actually gets (also while a
/// promotion holds it, so that the next reconcile still knows the canary).
fn canary_status(v: &Validated, traffic: &Traffic) -> Option<CanaryStatus> {
    let applied = traffic.canary_traffic.as_ref()?;
    let (version, uri) = match (&v.canary, &traffic.promotion) {
        (Some(c), _) => (c.version.clone(), c.model.uri.clone()),
        (None, Some(p)) => (p.version.clone(), p.uri.clone()),
        (None, None) => return None,
    };
    Some(CanaryStatus {
        model: ModelStatus {
            name: v.endpoint.model_name.clone(),
            version,
            uri,
        },
        ready_replicas: applied.ready_replicas,
        traffic_percent: applied.traffic_percent,
        reason: applied
            .hold
            .as_ref()
            .map(|(hold, _)| conditions::hold_reason(*hold).as_str().to_string()),
        message: applied.hold.as_ref().map(|(_, why)| why.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{GatewayApi, fixtures, plan_traffic};
    use crate::validate::{FieldError, validate};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;

    const READY: &str = "Ready";
    const PROGRESSING: &str = "Progressing";
    const DEGRADED: &str = "Degraded";

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// The status of `md` after its children were applied and `d` came back.
    fn applied(
        md: &ModelDeployment,
        d: &Deployment,
        pods: &[Pod],
        now: i64,
    ) -> ModelDeploymentStatus {
        let validated = validate(md, &Config::default()).unwrap();
        let traffic = plan_traffic(
            &validated,
            &Config::default().expose,
            &GatewayApi::NotChecked,
            0,
            None,
        );
        let observed = Observed::Applied {
            validated: &validated,
            deployment: d,
            pods,
            traffic: &traffic,
            canary_pods: &[],
            route: None,
        };
        compute_status(md, &Config::default(), &observed, &at(now))
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
        let status = applied(&md, &d, &[], 100);
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
        let status = applied(&md, &d, &[], 100);
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
        let status = applied(&md, &d, &pods, 100);
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
        let observed = Observed::Invalid(&invalid);
        let status = compute_status(&md, &Config::default(), &observed, &at(100));
        let degraded = find(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(
            degraded.message,
            "spec is invalid: spec.replicas: must be >= 0 (is -1)"
        );
        assert_eq!(find(&status, READY).reason, "InvalidSpec");
    }

    #[test]
    fn transition_time_changes_only_when_status_changes() {
        let mut md = fixtures::model_deployment("iris.yaml");
        let starting = deployment(STARTING);
        md.status = Some(applied(&md, &starting, &[], 100));
        assert_eq!(
            find(md.status.as_ref().unwrap(), READY).reason,
            "ModelLoading"
        );

        // Same statuses later: times kept, even though messages may change.
        let status = applied(&md, &starting, &[], 200);
        assert_eq!(find(&status, READY).last_transition_time, at(100));
        md.status = Some(status);

        // Ready flips to True: only Ready (and Progressing, now complete) get the new time.
        let d = deployment(ROLLED_OUT);
        let status = applied(&md, &d, &[], 300);
        assert_eq!(find(&status, READY).last_transition_time, at(300));
        assert_eq!(find(&status, PROGRESSING).last_transition_time, at(300));
        assert_eq!(find(&status, DEGRADED).last_transition_time, at(100));
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
        let status = applied(&md, &d, &[], 100);
        assert_eq!(find(&status, DEGRADED).reason, "ProgressDeadlineExceeded");
        assert_eq!(find(&status, READY).status, "False");
    }
}
