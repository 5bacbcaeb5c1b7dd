//! The HorizontalPodAutoscaler, present only when `spec.autoscaling` is set.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use kube::ResourceExt;

use super::child_meta;
use crate::config::Config;
use crate::crd::ModelDeployment;

/// CPU utilization target when `targetCPUUtilizationPercentage` is not set.
pub const DEFAULT_TARGET_CPU: i32 = 80;

/// Builds the HPA of `md`, or `None` when `spec.autoscaling` is not set (then any HPA the
/// operator made before must be deleted).
pub fn build_hpa(md: &ModelDeployment, _config: &Config) -> Option<HorizontalPodAutoscaler> {
    let auto = md.spec.autoscaling.as_ref()?;
    let mut metrics = vec![resource_metric(
        "cpu",
        auto.target_cpu_utilization_percentage
            .unwrap_or(DEFAULT_TARGET_CPU),
    )];
    if let Some(memory) = auto.target_memory_utilization_percentage {
        metrics.push(resource_metric("memory", memory));
    }
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(md),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: md.name_any(),
            },
            min_replicas: Some(auto.min_replicas.unwrap_or(1)),
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
        let md = fixtures::model_deployment("autoscaled.yaml");
        let hpa = build_hpa(&md, &Config::default()).unwrap();
        fixtures::assert_matches(&hpa, "autoscaled.hpa.yaml");
    }

    #[test]
    fn no_autoscaling_means_no_hpa() {
        let md = fixtures::model_deployment("iris.yaml");
        assert!(build_hpa(&md, &Config::default()).is_none());
    }
}
