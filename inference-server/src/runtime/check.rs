//! The load-time sanity check of a classifier: its label is its most
//! probable class.
//!
//! A classifier with both a label output and a probabilities output (what
//! skl2onnx, onnxmltools and most exporters write) says the same thing
//! twice. When a runtime misreads the model (tract 0.23's binary tree
//! ensembles answered class 0 for every row while the probabilities were
//! right), the two disagree. [`label_is_most_probable`] runs the model once
//! on a batch of check rows (zeros, the card's example, rows of large and
//! small values and mixes of them: the invariant holds for any input, so the
//! rows need not be realistic) and refuses the model when a row's label is
//! not the class of its highest probability. Rows whose two highest
//! probabilities are within [`TIE`] are left out (float32 thresholds may flip
//! either way there).
//!
//! Which column is which class: when the label comes straight (through
//! `Identity`/`Cast` only) from an `ai.onnx.ml` classifier node, its
//! `classlabels_*` attribute says it, and each row is checked against it.
//! Otherwise the check needs the label to be one function of the most
//! probable column: one label per column, and no two columns sharing one.
//!
//! An `SVMClassifier`'s label is its pairwise votes, not its most probable
//! class (scikit-learn's `SVC(probability=True)` disagrees with itself the
//! same way): the check does not apply to it, nor to a float output whose
//! rows are not probabilities (each in 0..1, summing to 1). Models the check
//! cannot drive are let through with a log line too: inputs that are not
//! numbers, no dynamic batch dimension, or an inference error on the check
//! rows (the warm-up that follows reports real failures).

use std::collections::BTreeMap;

use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use super::{Backend, LoadError};
use crate::model::ModelArtifact;
use crate::tensor::{DataType, ModelSignature, Tensor, TensorData};

/// Two probabilities closer than this are a tie: the row is not checked.
pub const TIE: f64 = 1e-4;

/// Rows in the check batch.
const CHECK_ROWS: usize = 48;

/// A class as the label output spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Int(v) => write!(f, "{v}"),
            Label::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Refuses a classifier whose label is not its most probable class on the
/// check rows. Anything that is not such a classifier passes untouched.
pub fn label_is_most_probable(
    backend: &dyn Backend,
    artifact: &ModelArtifact,
) -> Result<(), LoadError> {
    let signature = backend.signature();
    let Some((label_ix, probs_ix)) = classifier_outputs(signature) else {
        return Ok(());
    };
    if label_from_votes(&artifact.onnx, &signature.outputs[label_ix].name) {
        tracing::info!(model = %artifact.origin, "label check skipped: an SVMClassifier's label is its votes, not its most probable class");
        return Ok(());
    }
    let example = artifact.card.as_ref().map(|c| c.example.as_slice());
    let Some(inputs) = check_inputs(signature, example.unwrap_or(&[])) else {
        tracing::info!(model = %artifact.origin, "label check skipped: the inputs are not numbers with a dynamic batch dimension");
        return Ok(());
    };
    let outputs = match backend.infer(&inputs) {
        Ok(outputs) => outputs,
        Err(e) => {
            tracing::warn!(model = %artifact.origin, error = %e, "label check skipped: the check rows did not run");
            return Ok(());
        }
    };
    let (Some(labels), Some(probs)) = (
        labels_of(&outputs[label_ix]),
        probabilities_of(&outputs[probs_ix]),
    ) else {
        return Ok(());
    };
    if !probs.iter().all(|row| is_distribution(row)) {
        tracing::info!(model = %artifact.origin, "label check skipped: the float output's rows are not probabilities (each in 0..1, summing to 1)");
        return Ok(());
    }
    let classes = class_labels_of(&artifact.onnx, &signature.outputs[label_ix].name);
    let verdict = judge(&labels, &probs, classes.as_deref());
    match verdict {
        Ok(()) => Ok(()),
        Err(why) => {
            let hint = if backend.platform() == "tract" {
                "; ONNX Runtime may read it right: try --runtime onnxruntime"
            } else {
                "; the model or its conversion is wrong (modelship-convert checks a conversion against the original)"
            };
            Err(LoadError::Runtime {
                runtime: backend.platform(),
                message: format!(
                    "the classifier's label output '{}' disagrees with its probabilities output '{}': {why}; \
                     a label must be the most probable class, so the model is not served{hint}",
                    signature.outputs[label_ix].name, signature.outputs[probs_ix].name
                ),
            })
        }
    }
}

/// The label output (integers or strings, one per row) and the
/// probabilities output (floats, one column per class), when the model has
/// exactly one of each.
fn classifier_outputs(signature: &ModelSignature) -> Option<(usize, usize)> {
    let one_per_row = |shape: &[i64]| shape.len() == 1 || (shape.len() == 2 && shape[1] == 1);
    let labels: Vec<usize> = signature
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            matches!(
                o.datatype,
                DataType::Int64 | DataType::Int32 | DataType::Bytes
            ) && one_per_row(&o.shape)
        })
        .map(|(ix, _)| ix)
        .collect();
    let probs: Vec<usize> = signature
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            matches!(o.datatype, DataType::Fp32 | DataType::Fp64)
                && o.shape.len() == 2
                && o.shape[1] != 1
        })
        .map(|(ix, _)| ix)
        .collect();
    match (labels.as_slice(), probs.as_slice()) {
        ([label], [probs]) => Some((*label, *probs)),
        _ => None,
    }
}

/// The check batch: [`CHECK_ROWS`] rows for each input, or `None` when an
/// input is not a number or has no dynamic batch dimension.
fn check_inputs(signature: &ModelSignature, example: &[f64]) -> Option<Vec<Tensor>> {
    let single = signature.inputs.len() == 1;
    signature
        .inputs
        .iter()
        .enumerate()
        .map(|(input_ix, spec)| {
            if spec.shape.first() != Some(&-1) {
                return None;
            }
            let row_shape: Vec<usize> = spec.shape[1..]
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let per_row: usize = row_shape.iter().product();
            let example = (single && example.len() == per_row).then_some(example);
            let values = check_values(per_row, example, input_ix as u64);
            let data: TensorData = match spec.datatype {
                DataType::Fp32 => values.iter().map(|&v| v as f32).collect::<Vec<_>>().into(),
                DataType::Fp64 => values.into(),
                DataType::Int64 => values
                    .iter()
                    .map(|&v| v.round() as i64)
                    .collect::<Vec<_>>()
                    .into(),
                DataType::Int32 => values
                    .iter()
                    .map(|&v| v.round() as i32)
                    .collect::<Vec<_>>()
                    .into(),
                _ => return None,
            };
            let mut shape = vec![CHECK_ROWS];
            shape.extend(row_shape);
            Tensor::new(spec.name.clone(), shape, data).ok()
        })
        .collect()
}

/// The check rows' values, row-major: zeros, the example and scaled copies of
/// it, rows of one value at many scales (trees split on thresholds: extremes
/// reach leaves that ordinary rows do not), then mixes of those values.
fn check_values(per_row: usize, example: Option<&[f64]>, seed: u64) -> Vec<f64> {
    const SCALES: [f64; 14] = [
        -1e6, -1e3, -100.0, -10.0, -1.0, -0.5, -0.1, 0.1, 0.5, 1.0, 10.0, 100.0, 1e3, 1e6,
    ];
    let mut rows: Vec<Vec<f64>> = vec![vec![0.0; per_row]];
    if let Some(example) = example {
        for factor in [1.0, 0.5, 2.0, -1.0] {
            rows.push(example.iter().map(|v| v * factor).collect());
        }
    }
    rows.extend(SCALES.iter().map(|&s| vec![s; per_row]));
    // xorshift64: a fixed, dependency-free sequence, so the rows never vary.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while rows.len() < CHECK_ROWS {
        let row = (0..per_row)
            .map(|j| match (example, next() % 3) {
                (Some(example), 0) => example[j] * ((next() % 9) as f64 / 4.0),
                _ => SCALES[(next() % SCALES.len() as u64) as usize],
            })
            .collect();
        rows.push(row);
    }
    rows.truncate(CHECK_ROWS);
    rows.concat()
}

fn labels_of(t: &Tensor) -> Option<Vec<Label>> {
    Some(match t.data() {
        TensorData::Int64(v) => v.iter().map(|&x| Label::Int(x)).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| Label::Int(x.into())).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .map(|b| Label::Text(String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => return None,
    })
}

fn probabilities_of(t: &Tensor) -> Option<Vec<Vec<f64>>> {
    let columns = *t.shape().get(1)?;
    if columns < 2 {
        return None;
    }
    let values: Vec<f64> = match t.data() {
        TensorData::Fp32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::Fp64(v) => v.clone(),
        _ => return None,
    };
    Some(values.chunks(columns).map(<[f64]>::to_vec).collect())
}

/// A row of probabilities: each in 0..1 and summing to 1 (within float32
/// error), or NaN somewhere (such rows are left out later). Scores that are
/// not probabilities (an SVM's decision values, a detector's boxes beside its
/// class ids) make the output something else, and the check does not apply.
fn is_distribution(row: &[f64]) -> bool {
    if row.iter().any(|p| p.is_nan()) {
        return true;
    }
    let sum: f64 = row.iter().sum();
    row.iter().all(|p| (-1e-6..=1.0 + 1e-6).contains(p)) && (sum - 1.0).abs() <= 1e-3
}

/// The most probable column of a row, or `None` for a tie (or NaN).
fn most_probable(row: &[f64]) -> Option<(usize, f64)> {
    if row.iter().any(|p| p.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let (best, second) = (order[0], order[1]);
    (row[best] - row[second] > TIE).then_some((best, row[best]))
}

/// Checks every untied row: against the class labels the ONNX file names
/// when known, else that the label is one function of the winning column.
fn judge(labels: &[Label], probs: &[Vec<f64>], classes: Option<&[Label]>) -> Result<(), String> {
    let classes = classes.filter(|c| probs.first().is_some_and(|row| row.len() == c.len()));
    let mut by_column: BTreeMap<usize, (Label, usize)> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut checked = 0;
    for (row, (label, p)) in labels.iter().zip(probs).enumerate() {
        let Some((column, best)) = most_probable(p) else {
            continue;
        };
        checked += 1;
        if let Some(classes) = classes {
            if *label != classes[column] {
                wrong.push(format!(
                    "check row {row} has label {label} but its most probable class is {} (p = {best:.4})",
                    classes[column]
                ));
            }
            continue;
        }
        match by_column.get(&column) {
            Some((seen, seen_row)) if seen != label => {
                return Err(format!(
                    "check rows {seen_row} and {row} both have probability column {column} highest \
                     but answer labels {seen} and {label}"
                ));
            }
            Some(_) => {}
            None => {
                by_column.insert(column, (label.clone(), row));
            }
        }
    }
    if let Some(first) = wrong.first() {
        return Err(format!(
            "on {} of {checked} check rows the label is not the most probable class ({first})",
            wrong.len()
        ));
    }
    let mut columns_of: BTreeMap<&Label, Vec<usize>> = BTreeMap::new();
    for (column, (label, _)) in &by_column {
        columns_of.entry(label).or_default().push(*column);
    }
    if let Some((label, columns)) = columns_of.iter().find(|(_, c)| c.len() > 1) {
        return Err(format!(
            "label {label} is answered for rows whose most probable column is {} (one label cannot be several classes)",
            columns
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    Ok(())
}

/// The class labels of the `ai.onnx.ml` classifier node the label output
/// comes from (through `Identity` and `Cast` only), in column order.
fn class_labels_of(onnx_bytes: &[u8], label_output: &str) -> Option<Vec<Label>> {
    class_labels_attr(&label_producer(onnx_bytes, label_output)?)
}

/// The node the label output comes from, through `Identity` and `Cast` only.
fn label_producer(onnx_bytes: &[u8], label_output: &str) -> Option<pb::NodeProto> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &onnx_bytes[..])
        .ok()?;
    let graph = proto.graph.as_ref()?;
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == name))
    };
    let mut node = producer(label_output)?;
    for _ in 0..8 {
        if !matches!(node.op_type.as_str(), "Identity" | "Cast") {
            break;
        }
        node = producer(node.input.first()?)?;
    }
    Some(node.clone())
}

/// An `SVMClassifier` takes its label from the pairwise votes and its
/// probabilities from Platt scaling: the two may disagree by design, as
/// scikit-learn's `SVC(probability=True)` documents, so the check does not
/// apply.
fn label_from_votes(onnx_bytes: &[u8], label_output: &str) -> bool {
    label_producer(onnx_bytes, label_output).is_some_and(|n| n.op_type == "SVMClassifier")
}

fn class_labels_attr(node: &pb::NodeProto) -> Option<Vec<Label>> {
    if node.domain != "ai.onnx.ml" {
        return None;
    }
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    // Tree ensembles name them `classlabels_int64s`, linear and SVM classifiers `classlabels_ints`.
    let ints = attr("classlabels_int64s").or_else(|| attr("classlabels_ints"));
    if let Some(a) = ints.filter(|a| !a.ints.is_empty()) {
        return Some(a.ints.iter().map(|&v| Label::Int(v)).collect());
    }
    let a = attr("classlabels_strings").filter(|a| !a.strings.is_empty())?;
    Some(
        a.strings
            .iter()
            .map(|s| Label::Text(String::from_utf8_lossy(s).into_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
