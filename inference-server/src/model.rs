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
}
