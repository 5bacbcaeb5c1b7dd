//! A canary's promotion, ordered so that no request fails and none goes backwards: the user
//! promotes by making `spec.model` the canary's and removing `spec.canary`. Done naively, the
//! route would send everything to the primary at once, while the primary's pods still run
//! the old model (a rolling update replaces them one by one), and the canary would go while
//! the gateway may still send it requests. [`promotion`] recognises a promotion in progress;
//! while it holds, [`super::plan_traffic`] keeps the canary's Deployment, Service and share of
//! the route (and sends requests naming the promoted version to it: old primary pods do not
//! serve that version). Once the primary's rollout is complete the route moves every request
//! to the primary, and the canary is retired after the gateway's grace (see
//! `reconcile::traffic`). The steps: primary rolled and Ready, then weights moved, then the
//! canary removed.

use crate::crd::ModelDeploymentStatus;
use crate::validate::{Validated, canary_name};

/// A promotion in progress: the canary as the last status reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The canary's Deployment and Service.
    pub name: String,
    /// The version the canary serves (the primary's new version).
    pub version: Option<String>,
    /// The share the route kept sending the canary.
    pub traffic_percent: i32,
    /// The canary's model URI (now the primary's).
    pub uri: String,
}

/// Whether `v` (with `previous`, the last status written) is a promotion still in progress:
/// no `spec.canary` any more, `spec.model` (URI and version) is what the canary served, the
/// canary had traffic and a Ready pod (`canary_ready`), and the primary's rollout of the new
/// model is not complete (`primary_complete`). A canary without traffic or without a Ready
/// pod has nothing to hand over: the switch is immediate, as for a rollback.
pub fn promotion(
    v: &Validated,
    previous: Option<&ModelDeploymentStatus>,
    canary_ready: i32,
    primary_complete: bool,
) -> Option<Promotion> {
    if v.canary.is_some() || v.expose.is_none() || primary_complete || canary_ready == 0 {
        return None;
    }
    let canary = previous?.canary.as_ref()?;
    let same_model = canary.model.uri == v.model.uri
        && canary.model.version.as_deref() == v.endpoint.model_version.as_deref();
    (same_model && canary.traffic_percent > 0).then(|| Promotion {
        name: canary_name(&v.name),
        version: canary.model.version.clone(),
        traffic_percent: canary.traffic_percent,
        uri: canary.model.uri.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;
    use crate::crd::{CanaryStatus, ModelStatus};

    /// The canary fixture promoted: its canary's model made the primary's, `spec.canary` gone.
    fn promoted() -> Validated {
        let mut md = fixtures::model_deployment("canary.yaml");
        let canary = md.spec.canary.take().unwrap();
        md.spec.model.uri = canary.model.uri;
        md.spec.model.version = canary.model.version;
        crate::validate::validate(&md, &crate::config::Config::default()).unwrap()
    }

    fn status(uri: &str, version: &str, percent: i32) -> ModelDeploymentStatus {
        ModelDeploymentStatus {
            canary: Some(CanaryStatus {
                model: ModelStatus {
                    name: "iris".into(),
                    version: Some(version.into()),
                    uri: uri.into(),
                },
                ready_replicas: 2,
                traffic_percent: percent,
                ..CanaryStatus::default()
            }),
            ..ModelDeploymentStatus::default()
        }
    }

    const URI: &str = "https://models.example/iris-2.onnx";

    #[test]
    fn a_promotion_holds_until_the_primary_has_rolled_out() {
        let v = promoted();
        let before = status(URI, "2", 10);
        assert_eq!(
            promotion(&v, Some(&before), 2, false),
            Some(Promotion {
                name: "iris-canary".into(),
                version: Some("2".into()),
                traffic_percent: 10,
                uri: URI.into(),
            })
        );
        assert_eq!(promotion(&v, Some(&before), 2, true), None, "rolled out");
    }

    #[test]
    fn nothing_to_hand_over_means_no_promotion() {
        let v = promoted();
        // The canary had no traffic, or no Ready pod: switch at once.
        assert_eq!(promotion(&v, Some(&status(URI, "2", 0)), 2, false), None);
        assert_eq!(promotion(&v, Some(&status(URI, "2", 10)), 0, false), None);
        // No canary reported, or another model than the canary's: a rollback or an edit.
        assert_eq!(promotion(&v, None, 2, false), None);
        assert_eq!(
            promotion(&v, Some(&status("builtin://iris", "2", 10)), 2, false),
            None
        );
        assert_eq!(promotion(&v, Some(&status(URI, "3", 10)), 2, false), None);
        // The canary is still in the spec: not a promotion.
        let v = fixtures::validated("canary.yaml");
        assert_eq!(promotion(&v, Some(&status(URI, "2", 10)), 2, false), None);
    }
}
