//! A model as it comes from a source, before a runtime loads it.

use serde::{Deserialize, Serialize};

/// The bytes of an ONNX model plus what is known about it.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    /// Name to serve the model under when none is configured: the file stem
    /// (`iris` for `iris.onnx`) or the builtin name.
    pub default_name: String,
    /// Where the model came from, for logs and the model's metadata.
    pub origin: String,
    /// The ONNX protobuf.
    pub onnx: Vec<u8>,
    /// Optional human-facing description (`<stem>.card.json` beside the model).
    pub card: Option<ModelCard>,
}

/// Human-facing facts about a model that the ONNX file does not carry:
/// feature names for the web form and class labels for the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ModelCard {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One name per feature of a `[-1, F]` input, in column order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_names: Vec<String>,
    /// One label per class index of a classifier's `label` output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_labels: Vec<String>,
    /// Example input row, used to pre-fill the web form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example: Vec<f64>,
    /// The training data's distribution, for drift (docs/models.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// A training sample's distribution: per feature (in column order) bin
/// edges and the share of rows in each bin, and the class prior.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub features: Vec<FeatureBaseline>,
    /// The training share of each class index (classifiers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<f64>,
    /// Rows in the training sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// One feature of a [`Baseline`]: `edges` are k ascending interior cut
/// points, `proportions` the k+1 shares below the first edge, between
/// edges, and at or above the last (a value `x` is in bin "number of edges
/// `<= x`").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureBaseline {
    pub name: String,
    pub edges: Vec<f64>,
    pub proportions: Vec<f64>,
}
