//! The conditions of a `ModelDeployment` (`Ready`, `Progressing`, `Degraded` always; `Exposed`
//! with `spec.expose`, `CanaryReady` with `spec.canary`): their types and reasons as enums, one
//! small function per condition, and the merge that keeps `lastTransitionTime` unless a
//! condition's status changes.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::pods::{PodProblem, PodReason};
use super::rollout::Rollout;
use super::route::RouteVerdict;
use crate::build::traffic::{CanaryHold, CanaryTraffic, Exposure};
use crate::validate::InvalidSpec;

/// The `type` of a condition the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// At least one replica serves the model.
    Ready,
    /// A rollout is under way.
    Progressing,
    /// Something keeps pods from serving, or the spec is invalid.
    Degraded,
    /// The public route is applied (only with `spec.expose`).
    Exposed,
    /// The canary gets the traffic the spec asks (only with `spec.canary`).
    CanaryReady,
}

impl ConditionType {
    /// The conditions every status has.
    pub const ALL: [ConditionType; 3] = [Self::Ready, Self::Progressing, Self::Degraded];
    /// The conditions a status has only while their part of the spec is set.
    pub const OPTIONAL: [ConditionType; 2] = [Self::Exposed, Self::CanaryReady];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Exposed => "Exposed",
            Self::CanaryReady => "CanaryReady",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `reason` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The spec breaks a rule (all three conditions).
    InvalidSpec,
    /// `Ready`: a replica serves the model.
    ModelServing,
    /// `Ready`: replicas are desired, none has loaded the model yet.
    ModelLoading,
    /// `Ready`: no replica is desired.
    ScaledToZero,
    /// The Deployment gave up on its rollout.
    ProgressDeadlineExceeded,
    /// `Progressing`: every desired pod runs the latest template.
    RolloutComplete,
    /// `Progressing`: pods are being replaced.
    RollingOut,
    /// `Degraded`: no pod reports a problem.
    AsExpected,
    /// What keeps the pods from serving.
    Pod(PodReason),
    /// `Exposed`: the route is applied (and, an HTTPRoute, accepted by its Gateway).
    Routed,
    /// `Exposed`: the HTTPRoute is applied; no Gateway has accepted it yet.
    RoutePending,
    /// `Exposed`: a Gateway refused the HTTPRoute or could not resolve its backends.
    RouteNotAccepted,
    /// `Exposed` (and `CanaryReady`): no route can be made; the message says why.
    ExposeUnavailable,
    /// `CanaryReady`: the canary gets the spec's percent.
    CanaryServing,
    /// `CanaryReady`: no canary pod is Ready, so it gets no traffic.
    CanaryNotReady,
    /// `CanaryReady`: the route's API cannot split traffic (Ingress mode).
    CanaryUnsupported,
    /// `CanaryReady` (true): promoted; the canary keeps its share while the primary rolls out
    /// its model.
    CanaryPromoting,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::ModelServing => "ModelServing",
            Self::ModelLoading => "ModelLoading",
            Self::ScaledToZero => "ScaledToZero",
            Self::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Self::RolloutComplete => "RolloutComplete",
            Self::RollingOut => "RollingOut",
            Self::AsExpected => "AsExpected",
            Self::Pod(reason) => reason.as_str(),
            Self::Routed => "Routed",
            Self::RoutePending => "RoutePending",
            Self::RouteNotAccepted => "RouteNotAccepted",
            Self::ExposeUnavailable => "ExposeUnavailable",
            Self::CanaryServing => "CanaryServing",
            Self::CanaryNotReady => "CanaryNotReady",
            Self::CanaryUnsupported => "CanaryUnsupported",
            Self::CanaryPromoting => "CanaryPromoting",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one condition says, before it is stamped with a generation and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    fn new(type_: ConditionType, status: bool, reason: Reason, message: String) -> Self {
        Self {
            type_,
            status,
            reason,
            message,
        }
    }

    /// The `metav1.Condition`, `now` as its transition time (see [`merge_conditions`]).
    pub fn into_condition(self, observed_generation: Option<i64>, now: &Time) -> Condition {
        Condition {
            type_: self.type_.as_str().into(),
            status: if self.status { "True" } else { "False" }.into(),
            reason: self.reason.as_str().into(),
            message: self.message,
            observed_generation,
            last_transition_time: now.clone(),
        }
    }
}

/// All three conditions of a spec that breaks rules: not ready, not progressing, degraded.
pub fn invalid_spec(invalid: &InvalidSpec) -> [Verdict; 3] {
    let message = format!("spec is invalid: {invalid}");
    [
        Verdict::new(
            ConditionType::Ready,
            false,
            Reason::InvalidSpec,
            message.clone(),
        ),
        Verdict::new(
            ConditionType::Progressing,
            false,
            Reason::InvalidSpec,
            message.clone(),
        ),
        Verdict::new(ConditionType::Degraded, true, Reason::InvalidSpec, message),
    ]
}

/// `Ready`: a replica serves and the rollout has not given up; else the most telling cause.
pub fn ready(rollout: &Rollout, pods: Option<&PodProblem>) -> Verdict {
    let verdict =
        |status, reason, message| Verdict::new(ConditionType::Ready, status, reason, message);
    if rollout.stalled {
        return verdict(
            false,
            Reason::ProgressDeadlineExceeded,
            rollout.message.clone(),
        );
    }
    if rollout.ready >= 1 {
        return verdict(true, Reason::ModelServing, rollout.ready_text());
    }
    if let Some(p) = pods {
        return verdict(false, Reason::Pod(p.reason), p.message.clone());
    }
    if rollout.desired == 0 {
        return verdict(
            false,
            Reason::ScaledToZero,
            "no replicas are desired".into(),
        );
    }
    verdict(
        false,
        Reason::ModelLoading,
        format!(
            "waiting for a replica to load the model ({})",
            rollout.ready_text()
        ),
    )
}

/// `Progressing`: true while pods are replaced; false once complete or given up.
pub fn progressing(rollout: &Rollout) -> Verdict {
    let verdict =
        |status, reason, message| Verdict::new(ConditionType::Progressing, status, reason, message);
    if rollout.stalled {
        return verdict(
            false,
            Reason::ProgressDeadlineExceeded,
            rollout.message.clone(),
        );
    }
    if rollout.complete {
        return verdict(false, Reason::RolloutComplete, rollout.ready_text());
    }
    verdict(
        true,
        Reason::RollingOut,
        format!(
            "{} of {} replicas updated, {} ready",
            rollout.updated, rollout.desired, rollout.ready
        ),
    )
}

/// `Degraded`: a pod's problem, else a rollout that gave up, else as expected.
pub fn degraded(rollout: &Rollout, pods: Option<&PodProblem>) -> Verdict {
    let verdict =
        |status, reason, message| Verdict::new(ConditionType::Degraded, status, reason, message);
    match (pods, rollout.stalled) {
        (Some(p), _) => verdict(true, Reason::Pod(p.reason), p.message.clone()),
        (None, true) => verdict(
            true,
            Reason::ProgressDeadlineExceeded,
            rollout.message.clone(),
        ),
        (None, false) => verdict(false, Reason::AsExpected, "no pod reports a problem".into()),
    }
}

/// `Exposed`: the route and the public URL, or why there is no route; `route` is what the
/// Gateway said of the HTTPRoute and the GRPCRoute beside it (`None` for an Ingress, which
/// reports nothing of the kind).
pub fn exposed(exposure: &Exposure, route: Option<&RouteVerdict>) -> Verdict {
    let verdict =
        |status, reason, message| Verdict::new(ConditionType::Exposed, status, reason, message);
    match (exposure, route) {
        (Exposure::Unavailable(why), _) => verdict(false, Reason::ExposeUnavailable, why.clone()),
        (Exposure::Routed { kind, url }, None) => {
            verdict(true, Reason::Routed, format!("{kind} applied: {url}"))
        }
        (Exposure::Routed { url, .. }, Some(RouteVerdict::Accepted { routes, by })) => verdict(
            true,
            Reason::Routed,
            format!(
                "{} accepted by {}: {url}",
                routes.join(" and "),
                by.join(", ")
            ),
        ),
        (_, Some(RouteVerdict::Pending { route })) => verdict(
            false,
            Reason::RoutePending,
            format!(
                "{route} applied; no Gateway has accepted it yet (its status names no parent for this generation)"
            ),
        ),
        (
            _,
            Some(RouteVerdict::Refused {
                route,
                parent,
                reason,
                message,
            }),
        ) => verdict(
            false,
            Reason::RouteNotAccepted,
            format!("{route} not taken by {parent}: {reason}: {message}"),
        ),
    }
}

/// `CanaryReady`: the canary gets its percent, or why it does not (with what keeps its pods
/// from serving, when they report it).
pub fn canary_ready(canary: &CanaryTraffic, pods: Option<&PodProblem>) -> Verdict {
    let verdict =
        |status, reason, message| Verdict::new(ConditionType::CanaryReady, status, reason, message);
    match &canary.hold {
        None => verdict(
            true,
            Reason::CanaryServing,
            format!(
                "{} canary pods Ready, {}% of the public traffic",
                canary.ready_replicas, canary.traffic_percent
            ),
        ),
        Some((CanaryHold::NotReady, why)) => match pods {
            Some(p) => verdict(
                false,
                Reason::CanaryNotReady,
                format!("{why}; {}: {}", p.reason, p.message),
            ),
            None => verdict(false, Reason::CanaryNotReady, why.clone()),
        },
        Some((CanaryHold::Promoting, why)) => verdict(true, Reason::CanaryPromoting, why.clone()),
        Some((hold, why)) => verdict(false, hold_reason(*hold), why.clone()),
    }
}

/// The condition reason of a [`CanaryHold`].
pub fn hold_reason(hold: CanaryHold) -> Reason {
    match hold {
        CanaryHold::NotReady => Reason::CanaryNotReady,
        CanaryHold::Unsupported => Reason::CanaryUnsupported,
        CanaryHold::ExposeUnavailable => Reason::ExposeUnavailable,
        CanaryHold::Promoting => Reason::CanaryPromoting,
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn types_and_reasons_render_as_the_api_documents_them() {
        let types: Vec<&str> = ConditionType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
        for (reason, text) in [
            (Reason::InvalidSpec, "InvalidSpec"),
            (Reason::ModelServing, "ModelServing"),
            (Reason::ModelLoading, "ModelLoading"),
            (Reason::ScaledToZero, "ScaledToZero"),
            (Reason::ProgressDeadlineExceeded, "ProgressDeadlineExceeded"),
            (Reason::RolloutComplete, "RolloutComplete"),
            (Reason::RollingOut, "RollingOut"),
            (Reason::AsExpected, "AsExpected"),
            (Reason::Pod(PodReason::ModelLoadFailed), "ModelLoadFailed"),
            (Reason::Routed, "Routed"),
            (Reason::ExposeUnavailable, "ExposeUnavailable"),
            (Reason::CanaryServing, "CanaryServing"),
            (Reason::CanaryNotReady, "CanaryNotReady"),
            (Reason::CanaryUnsupported, "CanaryUnsupported"),
        ] {
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn a_stalled_rollout_is_not_ready_even_with_ready_replicas() {
        let rollout = Rollout {
            desired: 2,
            ready: 1,
            stalled: true,
            message: "timed out".into(),
            ..Rollout::default()
        };
        let v = ready(&rollout, None);
        assert_eq!(
            (v.status, v.reason, v.message.as_str()),
            (false, Reason::ProgressDeadlineExceeded, "timed out")
        );
    }

    #[test]
    fn zero_desired_replicas_is_scaled_to_zero() {
        let v = ready(&Rollout::default(), None);
        assert_eq!((v.status, v.reason), (false, Reason::ScaledToZero));
    }

    #[test]
    fn merge_keeps_conditions_of_other_types() {
        let at = |s| Time(Timestamp::from_second(s).unwrap());
        let foreign = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(1),
        };
        let update = Condition {
            type_: ConditionType::Ready.as_str().into(),
            last_transition_time: at(5),
            ..foreign.clone()
        };
        let merged = merge_conditions(std::slice::from_ref(&foreign), vec![update.clone()]);
        assert_eq!(merged, vec![update, foreign]);
    }
}
