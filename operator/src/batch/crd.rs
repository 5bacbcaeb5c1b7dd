//! The `BatchPrediction` API (`modelship.io/v1alpha1`): a dataset scored once by an Indexed Job.
//!
//! The spec is immutable (a CEL transition rule), so a result always matches the spec that made
//! it; running again is a new object. The CRD is generated from these types
//! (`modelship-operator crd batchprediction`) into `crds/modelship.io_batchpredictions.yaml`.

use k8s_openapi::api::core::v1::{EnvVar, LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::CustomResourceExt;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{ImagePullPolicy, ModelSpec, PodSpec, Runtime};

/// Most shards of one BatchPrediction (the Job API's limit of completions with a per-index
/// backoff limit).
pub const MAX_SHARDS: i32 = 100_000;
/// Most retries of one shard.
pub const MAX_RETRIES_PER_SHARD: i32 = 100;

/// A dataset scored once, in parallel, by an Indexed Job of `modelship-server predict` pods.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "modelship.io",
    version = "v1alpha1",
    kind = "BatchPrediction",
    plural = "batchpredictions",
    shortname = "bpred",
    namespaced,
    status = "BatchPredictionStatus",
    derive = "PartialEq",
    derive = "Default",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label of at most 52 characters starting with a letter (it names the Job, whose pods' names add a suffix)"),
    doc = "A dataset scored once, in parallel, by an Indexed Job of modelship-server predict pods.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Shards",
        type_ = "string",
        description = "Shards done / shards",
        json_path = ".status.shards.done"
    ),
    printcolumn(
        name = "Rows",
        type_ = "integer",
        description = "Rows scored",
        json_path = ".status.rows.scored"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        description = "Why it failed",
        json_path = ".status.conditions[?(@.type==\"Failed\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Output",
        type_ = "string",
        json_path = ".spec.output.uri",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self == oldSelf")
        .message("spec is immutable: a BatchPrediction's result always matches its spec; create a new BatchPrediction to run again"),
    validation = kube::core::Rule::new("has(self.model) != has(self.modelDeploymentRef)")
        .message("spec must set exactly one of spec.model and spec.modelDeploymentRef")
)]
pub struct BatchPredictionSpec {
    /// The model, as in a ModelDeployment (exactly one of `model` and `modelDeploymentRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,

    /// The model a ModelDeployment of this namespace serves, read once when the run starts
    /// (recorded in `status.model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_deployment_ref: Option<ModelDeploymentRef>,

    /// What to score.
    pub input: BatchInput,

    /// Where the scores go: one part per shard, its report, and `_manifest.json` at the end.
    pub output: BatchOutput,

    /// Input columns copied beside the predictions, in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub keep_columns: Vec<String>,

    /// Pods at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("spec.parallelism must be >= 1"))]
    pub parallelism: Option<i32>,

    /// Deterministic slices of the input, one Job index each (default 4 x parallelism, at most
    /// 100000). More shards than pods spread the work and make a retry cheaper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 100000")
        .message("spec.shards must be between 1 and 100000"))]
    pub shards: Option<i32>,

    /// Retries of a shard whose pod failed for a cause a retry may fix (default 3, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3))]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 100")
        .message("spec.maxRetriesPerShard must be between 0 and 100"))]
    pub max_retries_per_shard: Option<i32>,

    /// Rows that cannot be read: `skip` (counted, with their line numbers in the shard's
    /// report) or `fail` (the whole run fails with `BadRows`). Default `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_rows: Option<BadRows>,

    /// Compute resources of each pod's `predict` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The `predict` container's image, pull policy and extra environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<BatchServerSpec>,

    /// Pod-level settings: labels, scheduling, service account (as in a ModelDeployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSpec>,
}

/// A ModelDeployment of the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ModelDeploymentRef {
    pub name: String,
}

/// `s3://BUCKET/KEY-OR-PREFIX`, `pvc://CLAIM/PATH` (`file:///PATH` for a custom image).
const DATA_URI_RULE: &str = "self.matches('^(s3|pvc|file)://.+') && (!self.startsWith('pvc://') || self.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/.*'))";

/// What to score.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchInput {
    /// A file or a prefix: `s3://BUCKET/KEY`, `s3://BUCKET/PREFIX/`, `pvc://CLAIM/PATH` (the
    /// claim is mounted read-only) or `file:///PATH` (inside the image).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(DATA_URI_RULE)
        .message("spec.input.uri must be s3://BUCKET/KEY-OR-PREFIX, pvc://CLAIM/PATH or file:///PATH"))]
    pub uri: String,

    /// `csv`, `jsonl` or `parquet` (default: from the files' extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,

    /// Secret whose keys become environment variables of every container
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`): the
    /// input's and the output's object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
}

/// Where the scores go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutput {
    /// A prefix: `s3://BUCKET/PREFIX/` or `pvc://CLAIM/PATH/` (mounted read-write).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(DATA_URI_RULE)
        .message("spec.output.uri must be s3://BUCKET/PREFIX/, pvc://CLAIM/PATH/ or file:///PATH/"))]
    pub uri: String,

    /// `jsonl`, `csv` or `parquet` (default `jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,

    /// Replace parts of another run at the prefix instead of failing with `OutputNotEmpty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
}

/// Format of the input files.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Csv,
    Jsonl,
    Parquet,
}

/// Format of the parts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Jsonl,
    Csv,
    Parquet,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Csv => "csv",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Parquet => "parquet",
        }
    }
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
        }
    }
}

/// What a row that cannot be read does.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BadRows {
    /// Counted and listed (file and line) in the shard's report; the run goes on.
    #[default]
    Skip,
    /// The run fails with `BadRows`, naming the file and line.
    Fail,
}

impl BadRows {
    pub fn as_str(self) -> &'static str {
        match self {
            BadRows::Skip => "skip",
            BadRows::Fail => "fail",
        }
    }
}

/// The `predict` container.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchServerSpec {
    /// Image (default: the operator's `--server-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy of every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Extra environment variables of the `predict` container; they win over the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// `Pending`, `Running`, `Succeeded` or `Failed`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its Job to start.
    #[default]
    Pending,
    /// The Job runs (or the manifest is being written).
    Running,
    /// Every shard is done and `_manifest.json` is written.
    Succeeded,
    /// The run stopped; the `Failed` condition says why.
    Failed,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchPredictionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: Phase,
    /// The model actually used (a `modelDeploymentRef` is resolved once, at the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<UsedModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardCounts>,
    /// Rows of the shards done (each shard counted once, from its succeeded pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowCounts>,
    /// Retries so far: failed pods whose shard was run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The Job that runs the shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// `OUTPUT/_manifest.json`, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_manifest: Option<String>,
    /// `Complete` and `Failed` (with the reason: `InputNotFound`, `OutputNotEmpty`,
    /// `ModelFetchFailed`, `ModelLoadFailed`, `BadRows`, `ShardsFailed`, `ManifestFailed`,
    /// `InvalidSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The model a run used.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsedModel {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// The model's credentials Secret, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
    /// The ModelDeployment it was read from, for a `modelDeploymentRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_deployment: Option<String>,
}

impl UsedModel {
    /// The ModelSpec the Job's pods fetch and load.
    pub fn to_spec(&self) -> ModelSpec {
        ModelSpec {
            uri: self.uri.clone(),
            sha256: self.sha256.clone(),
            runtime: self.runtime,
            credentials_secret_ref: self.credentials_secret_ref.clone(),
            ..ModelSpec::default()
        }
    }

    pub fn of(spec: &ModelSpec, model_deployment: Option<String>) -> Self {
        Self {
            uri: spec.uri.clone(),
            sha256: spec.sha256.clone(),
            runtime: spec.runtime,
            credentials_secret_ref: spec.credentials_secret_ref.clone(),
            model_deployment,
        }
    }
}

/// Shards by state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardCounts {
    pub total: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub running: i32,
    /// `succeeded/total`, for `kubectl get`.
    pub done: String,
}

/// Rows of the shards done.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RowCounts {
    pub scored: i64,
    pub skipped: i64,
}

/// The CRD as YAML, as `modelship-operator crd batchprediction` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = BatchPrediction::crd();
    let yaml = serde_yaml::to_string(&crd).expect("the CRD serializes");
    format!("---\n{yaml}")
}
