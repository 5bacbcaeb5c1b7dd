//! Soft topology spread of a model's pods across nodes and zones (`spec.disruption.spread`,
//! on by default): `ScheduleAnyway`, so a one-node cluster still runs every pod.

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::selector_labels;
use crate::validate::Validated;

/// The node label each constraint spreads over, most local first.
pub const SPREAD_KEYS: [&str; 2] = ["kubernetes.io/hostname", "topology.kubernetes.io/zone"];

/// The constraints of the pods of the Deployment `deployment` (the primary's or the canary's),
/// or `None` when `spec.disruption.spread` is false.
pub fn topology_spread(v: &Validated, deployment: &str) -> Option<Vec<TopologySpreadConstraint>> {
    v.disruption.spread.then(|| {
        SPREAD_KEYS
            .iter()
            .map(|key| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: key.to_string(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(deployment)),
                    ..LabelSelector::default()
                }),
                // Spread each rollout's pods on their own: counting the old ReplicaSet's
                // pods would skew where the new ones go.
                match_label_keys: Some(vec!["pod-template-hash".into()]),
                ..TopologySpreadConstraint::default()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn spread_is_soft_over_hostname_and_zone_by_default() {
        let v = fixtures::validated("iris.yaml");
        let constraints = topology_spread(&v, "iris").expect("on by default");
        let keys: Vec<&str> = constraints
            .iter()
            .map(|c| c.topology_key.as_str())
            .collect();
        assert_eq!(keys, SPREAD_KEYS);
        for c in &constraints {
            assert_eq!(c.when_unsatisfiable, "ScheduleAnyway");
            assert_eq!(c.max_skew, 1);
        }
    }

    #[test]
    fn spread_off_leaves_no_constraint() {
        let mut v = fixtures::validated("iris.yaml");
        v.disruption.spread = false;
        assert_eq!(topology_spread(&v, "iris"), None);
    }
}
