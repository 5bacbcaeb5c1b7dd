//! The HorizontalPodAutoscaler, present only when `spec.autoscaling` is set.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::child_meta;
use crate::validate::{Scaling, Validated};

/// Builds the HPA of `v`, or `None` when its replicas are fixed (then any HPA the operator made
/// before must be deleted).
pub fn build_hpa(v: &Validated) -> Option<HorizontalPodAutoscaler> {
    let Scaling::Autoscaled(auto) = &v.scaling else {
        return None;
    };
    let mut metrics = vec![resource_metric("cpu", auto.target_cpu_utilization)];
    if let Some(memory) = auto.target_memory_utilization {
        metrics.push(resource_metric("memory", memory));
    }
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(v),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: v.name.clone(),
            },
            min_replicas: Some(auto.min_replicas),
            max_replicas: auto.max_replicas,
            metrics: Some(metrics),
            behavior: auto.behavior.clone(),
        }),
        status: None,
    })
}

fn resource_metric(name: &str, utilization: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn hpa_matches_fixture() {
        let hpa = build_hpa(&fixtures::validated("autoscaled.yaml")).unwrap();
        fixtures::assert_matches(&hpa, "autoscaled.hpa.yaml");
    }

    #[test]
    fn no_autoscaling_means_no_hpa() {
        assert!(build_hpa(&fixtures::validated("iris.yaml")).is_none());
    }
}
