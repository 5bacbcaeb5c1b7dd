//! The PodDisruptionBudget of a model's pods (`spec.disruption`), present when the model has
//! a pod to spare or the spec asks for one.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, selector_labels};
use crate::validate::Validated;

/// Builds the budget of `v`'s pods, or `None` when it has none (then one the operator made
/// before must be deleted). It selects the primary's pods only: a canary's pods carry another
/// instance label.
pub fn build_pdb(v: &Validated) -> Option<PodDisruptionBudget> {
    let max_unavailable = v.disruption.max_unavailable?;
    Some(PodDisruptionBudget {
        metadata: child_meta(v),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..LabelSelector::default()
            }),
            // A pod that is not Ready serves nobody: a drain may always evict it, so a
            // crash-looping model never blocks node maintenance.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn two_replicas_get_a_budget_of_one_unavailable() {
        let mut v = fixtures::validated("iris.yaml");
        assert_eq!(build_pdb(&v), None, "one replica: no budget by default");
        v.disruption.max_unavailable = Some(1);
        fixtures::assert_matches(&build_pdb(&v).unwrap(), "iris.pdb.yaml");
    }

    #[test]
    fn autoscaled_model_gets_a_budget_from_its_max_replicas() {
        let v = fixtures::validated("autoscaled.yaml");
        let pdb = build_pdb(&v).expect("maxReplicas 10");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            selector_labels("diabetes")
        );
    }
}
