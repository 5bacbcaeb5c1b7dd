//! `spec.disruption`: how the model's pods weather voluntary disruptions (a node drained, an
//! eviction): a PodDisruptionBudget and soft topology spread.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Voluntary disruptions: the PodDisruptionBudget and the pods' spread.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionSpec {
    /// Whether the operator makes a PodDisruptionBudget for the pods (default `Auto`: one
    /// when the model runs, or may scale to, two pods or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetMode>,

    /// Most pods an eviction may leave unavailable at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1")
        .message("spec.disruption.maxUnavailable must be >= 1 (0 would block every node drain)"))]
    pub max_unavailable: Option<i32>,

    /// Soft `topologySpreadConstraints` across nodes and zones (`ScheduleAnyway`; default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<bool>,
}

/// When the operator makes a PodDisruptionBudget.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetMode {
    /// When `replicas` (or `autoscaling.maxReplicas`) is 2 or more.
    #[default]
    Auto,
    /// Always, whatever the replicas.
    Always,
    /// Never (a budget the operator made before is deleted).
    Never,
}
