//! [`Validated`]: a `ModelDeployment` whose rules all hold, with every default resolved. It is
//! the one input of the builders, so no builder falls back to a default of its own.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::ResourceExt;

use super::ModelSource;
use crate::config::Config;
use crate::crd::{
    ImagePullPolicy, ModelDeployment, ModelDeploymentSpec, PodSpec, Runtime, ServiceType,
};

/// Replicas when neither `spec.replicas` nor `spec.autoscaling` is set.
pub const DEFAULT_REPLICAS: i32 = 1;
/// `spec.autoscaling.minReplicas` when not set.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
/// CPU utilization target when `targetCPUUtilizationPercentage` is not set.
pub const DEFAULT_TARGET_CPU: i32 = 80;
/// Service port when `spec.service.port` is not set.
pub const DEFAULT_SERVICE_PORT: i32 = 80;

/// A valid `ModelDeployment`, every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// `metadata.name`: a DNS label; it names every child.
    pub name: String,
    pub namespace: String,
    /// `metadata.uid`, for the children's owner reference.
    pub uid: String,
    pub model: Model,
    pub scaling: Scaling,
    pub server: Server,
    /// Compute resources of the server container, as given.
    pub resources: Option<ResourceRequirements>,
    pub batching: Batching,
    pub service: ServiceSettings,
    /// Pod-level settings, empty when not given.
    pub pod: PodSpec,
    /// How clients reach the model.
    pub endpoint: Endpoint,
    /// `spec.expose`: the public route.
    pub expose: Option<Expose>,
    /// `spec.canary`: the second set of pods behind the route.
    pub canary: Option<Canary>,
    /// `spec.auth`: the API keys the server requires.
    pub auth: Option<Auth>,
    /// `spec.disruption`: the PodDisruptionBudget and the pods' spread.
    pub disruption: super::Disruption,
    /// `spec.monitoring`: payload log, feedback window, the page's Prometheus.
    pub monitoring: Option<super::Monitoring>,
}

/// A checked `spec.expose`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expose {
    /// `spec.expose.host`, else the operator's host template filled in; `Err` says why there
    /// is no host (then no route is made, and the `Exposed` condition says so).
    pub host: Result<String, String>,
    /// The path prefix: `/`, or without a trailing slash (`/team/iris`).
    pub path: String,
    /// `spec.expose.tls.secretName`.
    pub tls_secret: Option<String>,
}

/// A checked `spec.canary`, its defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Canary {
    /// Name of its Deployment and Service: `{name}-canary`.
    pub name: String,
    /// Its model; runtime and credentials are the primary's.
    pub model: Model,
    /// The version it serves under the primary's model name.
    pub version: Option<String>,
    /// The spec's percent of the public traffic.
    pub traffic_percent: i32,
    pub replicas: i32,
}

/// A checked `spec.auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// The Secret whose values are the valid API keys.
    pub api_keys_secret: String,
}

/// The model file and how the server gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `spec.model.uri`, as given.
    pub uri: String,
    pub source: ModelSource,
    pub sha256: Option<String>,
    /// `None`: the server chooses (`auto`).
    pub runtime: Option<Runtime>,
    /// Secret whose keys the fetching init container gets as environment variables.
    pub credentials_secret: Option<String>,
}

/// Who decides the number of pods.
#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    /// The Deployment has exactly this many replicas.
    Fixed { replicas: i32 },
    /// A HorizontalPodAutoscaler owns `replicas`.
    Autoscaled(Autoscaling),
}

/// The HorizontalPodAutoscaler's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Percent of the CPU request.
    pub target_cpu_utilization: i32,
    /// Percent of the memory request; no memory target when `None`.
    pub target_memory_utilization: Option<i32>,
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// The server container.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// `spec.server.image`, else the operator's `--server-image`.
    pub image: String,
    /// `None`: the kubelet's default.
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Extra variables; they win over the operator's.
    pub env: Vec<EnvVar>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
}

/// Dynamic batching; `None` leaves a setting to the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batching {
    pub max_batch_size: Option<i32>,
    pub max_batch_delay: Option<BatchDelay>,
}

/// A checked `spec.batching.maxBatchDelay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchDelay {
    pub duration: Duration,
    /// The text as written in the spec, handed to the server unchanged (so that an operator
    /// upgrade does not roll the pods by rewriting `1000ms` as `1s`).
    pub text: String,
}

/// The Service in front of the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    pub type_: ServiceType,
    pub port: i32,
}

/// How clients reach the model: what `status.model` and `status.url` report. It is derived
/// from the raw spec too, so that the status of an invalid spec still names its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The served model name: `spec.model.name`, else the ModelDeployment's name.
    pub model_name: String,
    pub model_version: Option<String>,
    /// `spec.model.uri`, as given.
    pub uri: String,
    /// The cluster-local v2 endpoint of the model.
    pub url: String,
}

impl Endpoint {
    /// The endpoint of `md`, valid or not.
    pub fn of(md: &ModelDeployment, config: &Config) -> Self {
        let model_name = md.spec.model.name.clone().unwrap_or_else(|| md.name_any());
        let port = match service_port(&md.spec) {
            80 => String::new(),
            p => format!(":{p}"),
        };
        let url = format!(
            "http://{}.{}.svc.{}{port}/v2/models/{model_name}",
            md.name_any(),
            md.namespace().unwrap_or_default(),
            config.cluster_domain,
        );
        Self {
            model_name,
            model_version: md.spec.model.version.clone(),
            uri: md.spec.model.uri.clone(),
            url,
        }
    }
}

/// `spec.service.port`, else [`DEFAULT_SERVICE_PORT`].
pub(super) fn service_port(spec: &ModelDeploymentSpec) -> i32 {
    spec.service
        .as_ref()
        .and_then(|s| s.port)
        .unwrap_or(DEFAULT_SERVICE_PORT)
}
