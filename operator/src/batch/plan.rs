//! A BatchPrediction checked and every default resolved once: the [`Plan`] the Job builders
//! read. The CRD's CEL rules refuse most of this at the API server; the checks run again here
//! for objects created before a rule existed, and in unit tests.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::ResourceExt;

use super::crd::{
    BadRows, BatchPrediction, InputFormat, MAX_RETRIES_PER_SHARD, MAX_SHARDS, OutputFormat,
};
use crate::config::Config;
use crate::crd::{ImagePullPolicy, ModelSpec, PodSpec};
use crate::validate::{FieldError, InvalidSpec, Model, ModelSource, validate_model};

/// Default retries of one shard.
pub const DEFAULT_RETRIES_PER_SHARD: i32 = 3;
/// Default shards per pod: a few, so a retry redoes a fraction of a pod's work and a slow
/// shard does not hold up the whole run.
pub const DEFAULT_SHARDS_PER_POD: i32 = 4;
/// Longest BatchPrediction name: it names the Job (`NAME`, its pods `NAME-I-xxxxx`) and the
/// manifest Job (`NAME-manifest`), both label values of at most 63 characters.
pub const MAX_NAME: usize = 52;

/// Where data is, as the `predict` command takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataLocation {
    /// `s3://...` or `file:///...`: passed as is.
    Uri(String),
    /// `pvc://CLAIM/PATH`: the claim is mounted at `/data/CLAIM` and the path passed.
    Pvc { claim: String, path: String },
}

impl DataLocation {
    fn parse(uri: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(
                "must be s3://BUCKET/KEY-OR-PREFIX, pvc://CLAIM/PATH or file:///PATH".into(),
            );
        };
        match scheme {
            "s3" if rest.split('/').next().is_some_and(|b| !b.is_empty()) => {
                Ok(Self::Uri(uri.into()))
            }
            "file" if rest.starts_with('/') => Ok(Self::Uri(uri.into())),
            // The ModelDeployment's rules for a claim and its path.
            "pvc" => match ModelSource::parse(uri) {
                Ok(ModelSource::Pvc { claim, path }) => Ok(Self::Pvc { claim, path }),
                Err(rule) => Err(rule),
                Ok(_) => Err("must be pvc://CLAIM/PATH".into()),
            },
            _ => Err("must be s3://BUCKET/KEY-OR-PREFIX, pvc://CLAIM/PATH or file:///PATH".into()),
        }
    }

    /// The claim to mount, if any.
    pub fn claim(&self) -> Option<&str> {
        match self {
            Self::Pvc { claim, .. } => Some(claim),
            Self::Uri(_) => None,
        }
    }

    /// The `--input`/`--output` argument: a pvc is mounted at `/data/CLAIM`.
    pub fn arg(&self) -> String {
        match self {
            Self::Uri(uri) => uri.clone(),
            Self::Pvc { claim, path } => format!("{DATA_DIR}/{claim}/{path}"),
        }
    }
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, as the CRD's rule on `metadata.name`.
fn is_dns_label(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Where `pvc://` claims are mounted.
pub const DATA_DIR: &str = "/data";

/// Everything the Job builders need, every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    /// The run id of every part and report (the object's UID).
    pub uid: String,
    pub model: Model,
    pub input: DataLocation,
    pub input_format: Option<InputFormat>,
    pub credentials_secret: Option<String>,
    pub output: DataLocation,
    pub output_format: OutputFormat,
    pub overwrite: bool,
    pub keep_columns: Vec<String>,
    pub parallelism: i32,
    pub shards: i32,
    pub retries_per_shard: i32,
    pub bad_rows: BadRows,
    pub image: String,
    pub image_pull_policy: Option<ImagePullPolicy>,
    pub env: Vec<EnvVar>,
    pub resources: Option<ResourceRequirements>,
    pub pod: PodSpec,
}

/// Checks `bp` with the model it runs (`spec.model`, or the one its `modelDeploymentRef`
/// resolved to) and resolves every default; the error names every broken field.
pub fn plan(bp: &BatchPrediction, model: &ModelSpec, config: &Config) -> Result<Plan, InvalidSpec> {
    let spec = &bp.spec;
    let mut errors = Vec::new();
    let mut fail = |field: &str, rule: String| {
        errors.push(FieldError {
            field: field.into(),
            rule,
        })
    };
    let name = bp.name_any();
    if name.len() > MAX_NAME || !is_dns_label(&name) {
        fail(
            "metadata.name",
            format!(
                "must be a DNS label of at most {MAX_NAME} characters starting with a letter (it names the Job)"
            ),
        );
    }
    let namespace = bp.namespace();
    if namespace.is_none() {
        fail("metadata.namespace", "must be set".into());
    }
    if spec.model.is_some() == spec.model_deployment_ref.is_some() {
        fail(
            "spec",
            "must set exactly one of spec.model and spec.modelDeploymentRef".into(),
        );
    }
    let model = validate_model(model).map_err(|e| errors.extend(e.0)).ok();
    let input = DataLocation::parse(&spec.input.uri)
        .map_err(|rule| {
            errors.push(FieldError {
                field: "spec.input.uri".into(),
                rule,
            })
        })
        .ok();
    let output = DataLocation::parse(&spec.output.uri)
        .map_err(|rule| {
            errors.push(FieldError {
                field: "spec.output.uri".into(),
                rule,
            })
        })
        .ok();
    let mut fail = |field: &str, rule: String| {
        errors.push(FieldError {
            field: field.into(),
            rule,
        })
    };
    let parallelism = spec.parallelism.unwrap_or(1);
    if parallelism < 1 {
        fail("spec.parallelism", "must be >= 1".into());
    }
    let shards = spec.shards.unwrap_or_else(|| {
        parallelism
            .max(1)
            .saturating_mul(DEFAULT_SHARDS_PER_POD)
            .min(MAX_SHARDS)
    });
    if !(1..=MAX_SHARDS).contains(&shards) {
        fail("spec.shards", format!("must be between 1 and {MAX_SHARDS}"));
    }
    let retries_per_shard = spec
        .max_retries_per_shard
        .unwrap_or(DEFAULT_RETRIES_PER_SHARD);
    if !(0..=MAX_RETRIES_PER_SHARD).contains(&retries_per_shard) {
        fail(
            "spec.maxRetriesPerShard",
            format!("must be between 0 and {MAX_RETRIES_PER_SHARD}"),
        );
    }
    for (i, column) in spec.keep_columns.iter().enumerate() {
        if column.is_empty() || column.contains(',') {
            fail(
                &format!("spec.keepColumns[{i}]"),
                "must be a non-empty column name without ','".into(),
            );
        }
    }
    if let (Some(input), Some(output)) = (&input, &output)
        && input == output
    {
        fail("spec.output.uri", "must differ from spec.input.uri".into());
    }
    let (Some(namespace), Some(model), Some(input), Some(output), true) =
        (namespace, model, input, output, errors.is_empty())
    else {
        return Err(InvalidSpec(errors));
    };
    let server = spec.server.clone().unwrap_or_default();
    Ok(Plan {
        uid: bp.uid().unwrap_or_default(),
        name,
        namespace,
        model,
        input,
        input_format: spec.input.format,
        credentials_secret: spec
            .input
            .credentials_secret_ref
            .as_ref()
            .map(|s| s.name.clone()),
        output,
        output_format: spec.output.format.unwrap_or_default(),
        overwrite: spec.output.overwrite.unwrap_or(false),
        keep_columns: spec.keep_columns.clone(),
        parallelism,
        shards,
        retries_per_shard,
        bad_rows: spec.bad_rows.unwrap_or_default(),
        image: server.image.unwrap_or_else(|| config.server_image.clone()),
        image_pull_policy: server.image_pull_policy,
        env: server.env,
        resources: spec.resources.clone(),
        pod: spec.pod.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(spec_yaml: &str) -> BatchPrediction {
        let mut bp: BatchPrediction = serde_yaml::from_str(&format!(
            "apiVersion: modelship.io/v1alpha1\nkind: BatchPrediction\nmetadata: {{name: nightly, namespace: ml, uid: u-1}}\nspec:\n{spec_yaml}"
        ))
        .unwrap();
        bp.metadata.namespace.get_or_insert_with(|| "ml".into());
        bp
    }

    fn model() -> ModelSpec {
        ModelSpec {
            uri: "s3://models/iris.onnx".into(),
            ..ModelSpec::default()
        }
    }

    fn fields(result: Result<Plan, InvalidSpec>) -> Vec<String> {
        result.unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_resolved_once() {
        let bp = bp(
            "  model: {uri: s3://models/iris.onnx}\n  input: {uri: s3://data/day/}\n  output: {uri: s3://scores/day/}\n  parallelism: 3\n",
        );
        let plan = plan(&bp, &model(), &Config::default()).unwrap();
        assert_eq!(
            (plan.parallelism, plan.shards, plan.retries_per_shard),
            (3, 12, 3)
        );
        assert_eq!(plan.bad_rows, BadRows::Skip);
        assert_eq!(plan.output_format, OutputFormat::Jsonl);
        assert_eq!(plan.image, Config::default().server_image);
        assert_eq!(plan.uid, "u-1");
        assert_eq!(plan.input, DataLocation::Uri("s3://data/day/".into()));
    }

    #[test]
    fn a_pvc_input_is_mounted_under_data() {
        let bp = bp(
            "  model: {uri: s3://models/iris.onnx}\n  input: {uri: pvc://datasets/day/1.csv}\n  output: {uri: s3://scores/day/}\n",
        );
        let plan = plan(&bp, &model(), &Config::default()).unwrap();
        assert_eq!(plan.input.claim(), Some("datasets"));
        assert_eq!(plan.input.arg(), "/data/datasets/day/1.csv");
    }

    #[test]
    fn every_broken_field_is_named() {
        let bp = bp(
            "  model: {uri: s3://models/iris.onnx}\n  modelDeploymentRef: {name: iris}\n  input: {uri: 'gs://data/'}\n  output: {uri: 'pvc://Bad_Claim/x'}\n  parallelism: 0\n  shards: 0\n  maxRetriesPerShard: -1\n  keepColumns: ['a,b']\n",
        );
        assert_eq!(
            fields(plan(&bp, &model(), &Config::default())),
            [
                "spec",
                "spec.input.uri",
                "spec.output.uri",
                "spec.parallelism",
                "spec.shards",
                "spec.maxRetriesPerShard",
                "spec.keepColumns[0]"
            ]
        );
    }

    #[test]
    fn a_broken_model_is_named_and_the_output_must_differ_from_the_input() {
        let bp = bp(
            "  model: {uri: 'ftp://m'}\n  input: {uri: s3://data/x/}\n  output: {uri: s3://data/x/}\n",
        );
        let broken = ModelSpec {
            uri: "ftp://m".into(),
            ..ModelSpec::default()
        };
        assert_eq!(
            fields(plan(&bp, &broken, &Config::default())),
            ["spec.model.uri", "spec.output.uri"]
        );
    }
}
