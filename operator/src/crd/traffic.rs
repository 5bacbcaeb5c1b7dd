//! The way into a model from outside the cluster (`spec.expose`), the canary beside it
//! (`spec.canary`), the API keys in front of it (`spec.auth`), and what the status reports about
//! them (`status.address`, `status.canary`).

use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelStatus;

/// A public route to the model: a Gateway API `HTTPRoute` or a `networking.k8s.io/v1` Ingress,
/// whichever the operator is configured for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExposeSpec {
    /// Host name of the public URL (default: the operator's host template, e.g.
    /// `{name}-{namespace}.{domain}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("spec.expose.host must be a lowercase DNS name such as iris.example.com"))]
    pub host: Option<String>,

    /// Path prefix the model is served under (default `/`); the route strips it before the
    /// request reaches the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^/([-A-Za-z0-9._~]+(/[-A-Za-z0-9._~]+)*)?/?$')")
        .message("spec.expose.path must start with / and hold only letters, digits and -._~ between slashes"))]
    pub path: Option<String>,

    /// TLS for the Ingress (Ingress mode only: with a Gateway, TLS belongs to the Gateway's
    /// listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExposeTls>,
}

/// TLS of the public route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExposeTls {
    /// Secret of type `kubernetes.io/tls` holding the certificate for the host.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A second set of pods serving another model under the primary's model name; the public
/// route sends it `trafficPercent` of the requests while its pods are Ready.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Where the canary's model comes from (its runtime and credentials are the primary's).
    pub model: CanaryModelSpec,

    /// Percent of the public route's requests sent to the canary (0 to 100).
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 100")
        .message("spec.canary.trafficPercent must be between 0 and 100"))]
    pub traffic_percent: i32,

    /// Pods of the canary (default 1); the canary has no autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("spec.canary.replicas must be >= 0"))]
    pub replicas: Option<i32>,
}

/// The canary's model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryModelSpec {
    /// Where the model comes from, as `spec.model.uri`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^(builtin|file|http|https|s3|pvc)://.+')")
            .message("spec.canary.model.uri must start with builtin://, file://, http://, https://, s3:// or pvc://"),
        validation = kube::core::Rule::new("!self.startsWith('pvc://') || self.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/.+')")
            .message("spec.canary.model.uri must be pvc://CLAIM/PATH for a PersistentVolumeClaim")
    )]
    pub uri: String,

    /// Version the canary serves; a request naming it goes to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*$')")
        .message("spec.canary.model.version must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"))]
    pub version: Option<String>,

    /// Expected SHA-256 of the canary's model file (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9a-fA-F]{64}$')")
        .message("spec.canary.model.sha256 must be 64 hexadecimal digits"))]
    pub sha256: Option<String>,
}

/// Who may call the model.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret whose every value is a valid API key; its key names label the callers. It is
    /// mounted into the server pods as files.
    pub api_keys_secret_ref: LocalObjectReference,
}

/// How the model is reached from inside the cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AddressStatus {
    /// The in-cluster v2 endpoint of the model (through its Service, bypassing any canary split).
    pub url: String,
}

/// What the canary serves and how much traffic it gets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The canary's model (served under the primary's model name).
    pub model: ModelStatus,
    /// Canary pods that pass their readiness probe.
    pub ready_replicas: i32,
    /// Percent of the public route's requests actually sent to the canary.
    pub traffic_percent: i32,
    /// Why `trafficPercent` is below the spec's (`CanaryNotReady`, `CanaryUnsupported`,
    /// `ExposeUnavailable`); absent when the spec's percent is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
