//! Feedback from production (`spec.monitoring`): where the server logs what it was asked and
//! what it answered, how long it keeps inference ids for ground-truth feedback, and which
//! Prometheus its page reads all-replica figures from; `status.payloadLog` reports the payload
//! log the pods were given.

use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest `spec.monitoring.feedback.window` accepted: the server keeps one entry per
/// inference that long (bounded in number too), so a day is already a lot of memory.
pub const MAX_FEEDBACK_WINDOW: &str = "24h";

/// Payload logging, ground-truth feedback and the Prometheus the model's page reads.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Log every (sampled) inference as CloudEvents to a sink (absent: no payload log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_log: Option<PayloadLogSpec>,

    /// Ground-truth feedback (`POST /v2/models/NAME/feedback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackSpec>,

    /// Prometheus the model's page queries for figures across all replicas, such as
    /// `http://prometheus.monitoring.svc:9090` (absent: the page shows its own pod's figures
    /// and says so).
    #[serde(
        default,
        rename = "prometheusURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^https?://[^/@?#]+(/[^?#]*)?$')")
            .message("spec.monitoring.prometheusURL must be an http:// or https:// URL without credentials, query or fragment")
    )]
    pub prometheus_url: Option<String>,
}

/// Where and what the server logs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PayloadLogSpec {
    /// The sink: an `http://` or `https://` CloudEvents receiver, or `s3://BUCKET/PREFIX`
    /// (gzip JSON Lines objects). Credentials never go in the URL: use `credentialsSecretRef`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^(https?://[^/@?#]+(/[^#]*)?|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/[^#]*)?)$')")
            .message("spec.monitoring.payloadLog.url must be http://HOST/..., https://HOST/... or s3://BUCKET/PREFIX, without credentials (use credentialsSecretRef)")
    )]
    pub url: String,

    /// What is logged: `all` (requests and responses, the default), `request` or `response`
    /// (no inputs: for models whose inputs are personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PayloadLogMode>,

    /// Share of inferences logged, from 0 to 1 (default 1: every inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1.0))]
    #[x_kube(
        validation = kube::core::Rule::new("self >= 0.0 && self <= 1.0")
            .message("spec.monitoring.payloadLog.sampleRate must be between 0 and 1")
    )]
    pub sample_rate: Option<f64>,

    /// An HTTP sink's events per POST at most, from 1 to 10000 (default: the server's, 100).
    /// Above 1 the server sends CloudEvents' batched mode (a JSON array of structured events,
    /// `application/cloudevents-batch+json`); 1 sends each event alone in binary mode, which
    /// is what Knative Eventing's Broker and KafkaSink take: set 1 for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = kube::core::Rule::new("self >= 1 && self <= 10000")
            .message("spec.monitoring.payloadLog.httpBatch must be between 1 and 10000")
    )]
    pub http_batch: Option<u32>,

    /// Secret whose keys become environment variables of the server container: for an S3
    /// sink `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
}

/// What the payload log holds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadLogMode {
    /// A request event and a response event per logged inference.
    #[default]
    All,
    /// Request events only.
    Request,
    /// Response events only: no inputs are logged.
    Response,
}

impl PayloadLogMode {
    /// The value the server takes in `MODELSHIP_PAYLOAD_LOG_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadLogMode::All => "all",
            PayloadLogMode::Request => "request",
            PayloadLogMode::Response => "response",
        }
    }
}

/// Ground-truth feedback.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSpec {
    /// How long a pod remembers an inference for feedback by id, as a duration like `15m`,
    /// `90s` or `2h` (at most 24h; default: the server's). Feedback that carries `predicted`
    /// is counted whenever it comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^[1-9][0-9]*(s|m|h)$')")
            .message("spec.monitoring.feedback.window must be a duration like 90s, 15m or 2h"),
        validation = kube::core::Rule::new("!self.matches('^[1-9][0-9]*(s|m|h)$') || duration(self) <= duration('24h')")
            .message("spec.monitoring.feedback.window must be at most 24h")
    )]
    pub window: Option<String>,
}

/// The payload log the operator gave the pods (`status.payloadLog`; absent without
/// `spec.monitoring`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PayloadLogStatus {
    /// Whether the pod template of this generation logs payloads.
    pub enabled: bool,
    /// The sink, its query left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PayloadLogMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
}
