//! Kubernetes Events for what a user should see in `kubectl describe`: a condition that turns
//! `Degraded` or `Ready`, a public route that cannot be made, a canary refused, and what the
//! operator deleted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::Context;
use crate::crd::ModelDeployment;
use crate::status::{ConditionType, Reason};

/// Longest Event note the API server accepts.
const MAX_NOTE: usize = 1024;

/// Emits an Event when `Ready` or `Degraded` turns true (or changes its reason), so
/// `kubectl describe` tells the story.
pub(super) async fn publish_transitions(
    md: &ModelDeployment,
    conditions: &[Condition],
    ctx: &Context,
) {
    let previous = md
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let changed = |type_: ConditionType| -> Option<&Condition> {
        let new = conditions.iter().find(|c| c.type_ == type_.as_str())?;
        let old = previous.iter().find(|c| c.type_ == type_.as_str());
        let same = old.is_some_and(|o| o.status == new.status && o.reason == new.reason);
        (!same).then_some(new)
    };
    if let Some(degraded) = changed(ConditionType::Degraded)
        && degraded.status == "True"
    {
        publish(
            md,
            ctx,
            EventType::Warning,
            &degraded.reason,
            degraded.message.clone(),
        )
        .await;
    }
    // A route that cannot be made or that its Gateway refused, and a canary refused, are news;
    // a route not yet taken and a canary only loading are not, and a canary held back for want
    // of a route repeats the first.
    if let Some(exposed) = changed(ConditionType::Exposed)
        && exposed.status == "False"
        && exposed.reason != Reason::RoutePending.as_str()
    {
        let note = exposed.message.clone();
        publish(md, ctx, EventType::Warning, &exposed.reason, note).await;
    }
    if let Some(canary) = changed(ConditionType::CanaryReady)
        && canary.reason == Reason::CanaryUnsupported.as_str()
    {
        let note = canary.message.clone();
        publish(md, ctx, EventType::Warning, &canary.reason, note).await;
    }
    // A promotion's first step: the canary holds its share while the primary rolls out.
    if let Some(canary) = changed(ConditionType::CanaryReady)
        && canary.reason == Reason::CanaryPromoting.as_str()
    {
        let note = canary.message.clone();
        publish(md, ctx, EventType::Normal, &canary.reason, note).await;
    }
    if let Some(ready) = changed(ConditionType::Ready)
        && ready.status == "True"
    {
        publish(
            md,
            ctx,
            EventType::Normal,
            Reason::ModelServing.as_str(),
            ready.message.clone(),
        )
        .await;
    }
}

/// Publishes one Event about `md`; a failure is logged, never fatal.
pub(super) async fn publish(
    md: &ModelDeployment,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, MAX_NOTE)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &md.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("aé".into(), 2), "a");
        assert_eq!(truncate("x".repeat(2000), MAX_NOTE).len(), MAX_NOTE);
    }
}
