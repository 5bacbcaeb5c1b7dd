//! What a model predicts, as far as quality metrics go: a classifier (an
//! integer `label` output, classes from the card), a regressor (one float
//! per row), or neither; read from the signature once, at load.

use prometheus_client::metrics::counter::Counter;

use super::feedback::Predicted;
use crate::metrics::{ClassLabels, MonitorFamilies, QualityLabels};
use crate::model::ModelCard;
use crate::tensor::{DataType, ModelSignature, Tensor, TensorData};

/// Classes labelled by index at most, when neither the card nor the model says how many.
const MAX_INDEX_CLASSES: usize = 64;

/// The `[-1, F]` float input's F, when the model has exactly one such input.
pub(super) fn input_features(sig: &ModelSignature) -> Option<usize> {
    match sig.inputs.as_slice() {
        [i] if matches!(i.datatype, DataType::Fp32 | DataType::Fp64)
            && i.shape.len() == 2
            && i.shape[1] > 0 =>
        {
            Some(i.shape[1] as usize)
        }
        _ => None,
    }
}

/// What the model predicts, as far as quality metrics go.
pub enum Task {
    /// An integer `label` output: one class index per row.
    Classifier {
        output: String,
        classes: Vec<String>,
        predictions: Vec<Counter>,
        other: Counter,
    },
    /// A float output with one value per row.
    Regressor {
        output: String,
    },
    Unknown,
}

impl Task {
    pub(super) fn of(
        sig: &ModelSignature,
        card: Option<&ModelCard>,
        labels: &QualityLabels,
        m: &MonitorFamilies,
    ) -> Task {
        let is_int = |d: DataType| matches!(d, DataType::Int64 | DataType::Int32);
        let per_row = |shape: &[i64]| shape.len() == 1 || (shape.len() == 2 && shape[1] == 1);
        if let Some(label) = sig
            .outputs
            .iter()
            .find(|o| o.name == "label" && is_int(o.datatype) && per_row(&o.shape))
        {
            let from_card = card.map(|c| c.class_labels.clone()).unwrap_or_default();
            let from_probabilities = sig
                .outputs
                .iter()
                .find(|o| o.name == "probabilities" && o.shape.len() == 2 && o.shape[1] > 0)
                .map(|o| o.shape[1] as usize);
            let classes: Vec<String> = if !from_card.is_empty() {
                from_card
            } else {
                (0..from_probabilities.unwrap_or(MAX_INDEX_CLASSES))
                    .map(|i| i.to_string())
                    .collect()
            };
            let counter = |class: &str| {
                m.predictions
                    .get_or_create(&ClassLabels {
                        model: labels.model.clone(),
                        version: labels.version.clone(),
                        class: class.to_string(),
                    })
                    .clone()
            };
            return Task::Classifier {
                output: label.name.clone(),
                predictions: classes.iter().map(|c| counter(c)).collect(),
                other: counter("other"),
                classes,
            };
        }
        let float = |d: DataType| matches!(d, DataType::Fp32 | DataType::Fp64);
        let candidates: Vec<_> = sig
            .outputs
            .iter()
            .filter(|o| float(o.datatype) && per_row(&o.shape))
            .collect();
        let pick = candidates
            .iter()
            .find(|o| o.name == "predictions")
            .or_else(|| candidates.first());
        match pick {
            Some(o) if sig.outputs.len() == 1 || o.name == "predictions" => Task::Regressor {
                output: o.name.clone(),
            },
            _ => Task::Unknown,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Task::Classifier { .. } => "classifier",
            Task::Regressor { .. } => "regressor",
            Task::Unknown => "unknown",
        }
    }

    /// What the model answered per row.
    pub(super) fn predicted(&self, outputs: &[Tensor]) -> Option<Predicted> {
        let (Task::Classifier { output, .. } | Task::Regressor { output }) = self else {
            return None;
        };
        let t = outputs.iter().find(|t| t.name() == output)?;
        Some(match (self, t.data()) {
            (Task::Classifier { .. }, TensorData::Int64(v)) => Predicted::Classes(
                v.iter()
                    .map(|&c| c.clamp(0, u32::MAX as i64) as u32)
                    .collect(),
            ),
            (Task::Classifier { .. }, TensorData::Int32(v)) => {
                Predicted::Classes(v.iter().map(|&c| c.max(0) as u32).collect())
            }
            (Task::Regressor { .. }, TensorData::Fp32(v)) => {
                Predicted::Values(v.iter().map(|&x| x as f64).collect())
            }
            (Task::Regressor { .. }, TensorData::Fp64(v)) => Predicted::Values(v.clone()),
            _ => return None,
        })
    }

    pub(super) fn class_name(&self, c: u32) -> String {
        match self {
            Task::Classifier { classes, .. } => classes
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| "other".into()),
            _ => c.to_string(),
        }
    }
}
