//! The `ModelDeployment` API (`modelship.io/v1alpha1`).
//!
//! The CRD is generated from these types (`modelship-operator crd`). Rules the API server can
//! check on its own are CEL rules (`x-kubernetes-validations`) whose messages name the field;
//! the operator's `validate` module checks the same rules again, for objects created before a
//! rule existed and for unit tests.

mod disruption;
mod monitoring;
mod traffic;

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::CustomResourceExt;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use disruption::{BudgetMode, DisruptionSpec};
pub use monitoring::{
    FeedbackSpec, MAX_FEEDBACK_WINDOW, MonitoringSpec, PayloadLogMode, PayloadLogSpec,
    PayloadLogStatus,
};
pub use traffic::{
    AddressStatus, AuthSpec, CanaryModelSpec, CanarySpec, CanaryStatus, ExposeSpec, ExposeTls,
};

/// API group of the `ModelDeployment` kind.
pub const GROUP: &str = "modelship.io";

/// A model served over the Open Inference Protocol (v2) by a set of `modelship-server` pods.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "modelship.io",
    version = "v1alpha1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    shortname = "mdep",
    namespaced,
    status = "ModelDeploymentStatus",
    derive = "PartialEq",
    derive = "Default",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label of at most 63 characters starting with a letter (it names the Service)"),
    validation = kube::core::Rule::new("!has(self.spec.canary) || size(self.metadata.name) <= 56")
        .message("metadata.name must be at most 56 characters with spec.canary (the canary's Deployment and Service are NAME-canary)"),
    doc = "A model served over the Open Inference Protocol (v2) by modelship-server pods.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Ready replicas / desired replicas",
        json_path = ".status.ready"
    ),
    printcolumn(
        name = "Model",
        type_ = "string",
        description = "Served model name",
        json_path = ".status.model.name"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        description = "Public v2 endpoint of the model when exposed, else the in-cluster one",
        json_path = ".status.url"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "URI",
        type_ = "string",
        description = "Where the model comes from",
        json_path = ".spec.model.uri",
        priority = 1
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        description = "In-cluster v2 endpoint of the model",
        json_path = ".status.address.url",
        priority = 1
    ),
    printcolumn(
        name = "Canary",
        type_ = "integer",
        description = "Percent of the public traffic sent to the canary",
        json_path = ".status.canary.trafficPercent",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.canary) || has(self.expose)")
    .message("spec.canary requires spec.expose: the traffic split is made by the public route"))]
pub struct ModelDeploymentSpec {
    /// The model to serve and where to get it.
    pub model: ModelSpec,

    /// Number of pods when `autoscaling` is not set (default 1). Ignored when `autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("spec.replicas must be >= 0"))]
    pub replicas: Option<i32>,

    /// Scale with a HorizontalPodAutoscaler instead of a fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Compute resources of the server container (GPUs such as `nvidia.com/gpu` included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Dynamic batching of inference requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSpec>,

    /// The server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSpec>,

    /// The Service in front of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,

    /// Pod-level settings: labels, scheduling, service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSpec>,

    /// A public URL: a Gateway API HTTPRoute or an Ingress to the Service (absent: in-cluster only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<ExposeSpec>,

    /// A second model behind the public route, sent a share of its traffic (needs `expose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,

    /// API keys the server requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Voluntary disruptions: a PodDisruptionBudget and soft topology spread of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<DisruptionSpec>,

    /// Payload logging, ground-truth feedback and the Prometheus the page reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// The model to serve.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Where the model comes from: `builtin://NAME`, `file:///PATH`, `http(s)://...`,
    /// `s3://BUCKET/KEY` or `pvc://CLAIM/PATH`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^(builtin|file|http|https|s3|pvc)://.+')")
            .message("spec.model.uri must start with builtin://, file://, http://, https://, s3:// or pvc://"),
        validation = kube::core::Rule::new("!self.startsWith('pvc://') || self.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/.+')")
            .message("spec.model.uri must be pvc://CLAIM/PATH for a PersistentVolumeClaim")
    )]
    pub uri: String,

    /// Name the model is served under (default: the ModelDeployment's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*$')")
        .message("spec.model.name must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"))]
    pub name: Option<String>,

    /// Version the model is served under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*$')")
        .message("spec.model.version must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"))]
    pub version: Option<String>,

    /// Expected SHA-256 of the model file (64 hex digits); the server refuses a model that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9a-fA-F]{64}$')")
        .message("spec.model.sha256 must be 64 hexadecimal digits"))]
    pub sha256: Option<String>,

    /// Inference runtime (default `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,

    /// Secret whose keys become environment variables of the fetching init container
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
}

/// Inference runtime of the server.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Let the server choose.
    #[default]
    Auto,
    /// The pure-Rust tract runtime.
    Tract,
    /// ONNX Runtime (needed for GPUs).
    Onnxruntime,
}

impl Runtime {
    /// The value the server takes in `MODELSHIP_RUNTIME`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Auto => "auto",
            Runtime::Tract => "tract",
            Runtime::Onnxruntime => "onnxruntime",
        }
    }
}

/// HorizontalPodAutoscaler settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .message("spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("spec.autoscaling.minReplicas must be >= 1"))]
    pub min_replicas: Option<i32>,

    /// Most pods.
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("spec.autoscaling.maxReplicas must be >= 1"))]
    pub max_replicas: i32,

    /// Target average CPU utilization in percent of the CPU request (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1")
        .message("spec.autoscaling.targetCPUUtilizationPercentage must be >= 1"))]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Target average memory utilization in percent of the memory request (no memory target when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1")
        .message("spec.autoscaling.targetMemoryUtilizationPercentage must be >= 1"))]
    pub target_memory_utilization_percentage: Option<i32>,

    /// Scaling behavior, as in a HorizontalPodAutoscaler (`autoscaling/v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// Largest `spec.batching.maxBatchSize` accepted.
pub const MAX_BATCH_SIZE: i32 = 4096;

/// Dynamic batching of inference requests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchingSpec {
    /// Most requests run together in one batch (1 to 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 4096")
        .message("spec.batching.maxBatchSize must be between 1 and 4096"))]
    pub max_batch_size: Option<i32>,

    /// Longest a forming batch waits for requests the server has already received and is
    /// still reading or decoding, as a duration like `2ms`, `500us` or `1s` (at most 1s). With
    /// none on their way a batch runs at once, so a lone request never waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^[0-9]+(us|ms|s)$')")
            .message("spec.batching.maxBatchDelay must be a duration like 2ms, 500us or 1s"),
        validation = kube::core::Rule::new("!self.matches('^[0-9]+(us|ms|s)$') || duration(self) <= duration('1s')")
            .message("spec.batching.maxBatchDelay must be at most 1s")
    )]
    pub max_batch_delay: Option<String>,
}

/// The server container.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Server image (default: the operator's `--server-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy of the server and init containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Extra environment variables of the server container; they win over the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Extra arguments appended after `serve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// When the kubelet pulls the image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The Service in front of the pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type (default `ClusterIP`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,

    /// Service port (default 80); it targets the server's `http` port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 65535")
        .message("spec.service.port must be between 1 and 65535"))]
    pub port: Option<i32>,
}

/// Kubernetes Service type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Pod-level settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Extra pod labels (the `app.kubernetes.io/*` labels of the operator win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels a pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity and anti-affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Service account of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets for pulling the server image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that pass their readiness probe (the model is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods running the latest pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The v2 endpoint of the model: the public one when exposed, else the in-cluster one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The in-cluster endpoint, exposed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressStatus>,
    /// The canary, when `spec.canary` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// The payload log of the pods, when `spec.monitoring` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_log: Option<PayloadLogStatus>,
    /// The model being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelStatus>,
    /// `Ready`, `Progressing` and `Degraded`; `Exposed` with `spec.expose`, `CanaryReady` with
    /// `spec.canary`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The model being served.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub uri: String,
}

/// The CRD as YAML, as `modelship-operator crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = ModelDeployment::crd();
    let yaml = serde_yaml::to_string(&crd).expect("the CRD serializes");
    format!("---\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_object_deserializes() {
        let md: ModelDeployment = serde_yaml::from_str(
            "apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\nspec:\n  model: {uri: builtin://iris}\n",
        )
        .unwrap();
        assert_eq!(md.spec.model.uri, "builtin://iris");
        assert_eq!(md.spec.replicas, None);
    }

    #[test]
    fn crd_has_cel_rules_scale_and_short_name() {
        let yaml = crd_yaml();
        for needle in [
            "x-kubernetes-validations",
            "spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas",
            "spec.model.uri must start with",
            "spec.replicas must be >= 0",
            "spec.batching.maxBatchSize must be between 1 and 4096",
            "specReplicasPath: .spec.replicas",
            "labelSelectorPath: .status.selector",
            "- mdep",
            "x-kubernetes-list-type: map",
            "spec.canary.trafficPercent must be between 0 and 100",
            "spec.canary requires spec.expose",
            "spec.expose.host must be a lowercase DNS name",
            "jsonPath: .status.address.url",
        ] {
            assert!(yaml.contains(needle), "CRD lacks {needle:?}");
        }
    }
}
