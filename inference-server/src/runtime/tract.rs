//! tract: the pure-Rust runtime that is always built in.
//!
//! The model's dynamic batch dimension becomes one symbol, `N`, before
//! optimization, so a single optimized plan serves every batch size and is
//! shared by all requests (`SimplePlan::run` takes `&Arc<Self>`).

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTValue, TDim,
    TValue, TVec, Tensor as TractTensor, TractError, TractResult, TypedRunnableModel,
    tract_ndarray,
};

use super::LoadError;
use super::{Backend, InferError};
use crate::tensor::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};

/// The symbol that stands for every dynamic batch dimension.
const BATCH_SYMBOL: &str = "N";

pub struct TractBackend {
    signature: ModelSignature,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for TractBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractBackend")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

/// One dimension as the ONNX file declares it.
#[derive(Debug, Clone, PartialEq)]
enum DeclaredDim {
    Fixed(usize),
    Named(String),
    Unknown,
}

/// An input or output as the ONNX file declares it; `datatype` is `None`
/// when the file leaves it out.
#[derive(Debug, Clone)]
struct Declared {
    name: String,
    datatype: Option<DataType>,
    dims: Option<Vec<DeclaredDim>>,
}

impl TractBackend {
    /// Parses, checks and optimizes an ONNX model held in memory.
    pub fn load(onnx_bytes: &[u8]) -> Result<TractBackend, LoadError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &onnx_bytes[..])
            .map_err(|e| LoadError::InvalidModel(format!("{e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| LoadError::InvalidModel("the model has no graph".into()))?;

        // tract parses unknown operators into placeholders and only fails much
        // later with a vague message: name the first missing one up front.
        if let Some(op) =
            first_unsupported_op(graph, &|op_type| onnx.op_register.0.contains_key(op_type))
        {
            return Err(LoadError::UnsupportedOperator { op });
        }
        // tract knows these operators but would answer wrong for this use of
        // them: refuse rather than serve a wrong label.
        if let Some(op) = graph.node.iter().find_map(misread_tree_classifier) {
            return Err(LoadError::UnsupportedOperator { op });
        }

        let inputs = declared_inputs(graph);
        let outputs: Vec<Declared> = graph.output.iter().map(declared).collect();

        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| build_error(graph, &e))?;
        let batch = model.symbols.sym(BATCH_SYMBOL);
        let mut input_specs = Vec::with_capacity(inputs.len());
        for (ix, input) in inputs.iter().enumerate() {
            let datatype = input.datatype.ok_or_else(|| {
                LoadError::InvalidModel(format!("input {} declares no datatype", input.name))
            })?;
            let dims = input.dims.as_ref().ok_or_else(|| {
                LoadError::InvalidModel(format!("input {} declares no shape", input.name))
            })?;
            let shape: TVec<TDim> = dims
                .iter()
                .enumerate()
                .map(|(axis, dim)| match dim {
                    DeclaredDim::Fixed(n) => TDim::from(*n),
                    DeclaredDim::Named(_) | DeclaredDim::Unknown if axis == 0 => {
                        TDim::from(batch.clone())
                    }
                    DeclaredDim::Named(name) => TDim::from(model.symbols.sym(name)),
                    DeclaredDim::Unknown => {
                        TDim::from(model.symbols.sym(&format!("{}_{axis}", input.name)))
                    }
                })
                .collect();
            model
                .set_input_fact(ix, InferenceFact::dt_shape(datum_type(datatype), shape))
                .map_err(|e| tract_error(&e))?;
            input_specs.push(TensorSpec {
                name: input.name.clone(),
                datatype,
                shape: spec_shape(dims),
            });
        }

        let optimized = model.into_optimized().map_err(|e| tract_error(&e))?;
        let mut output_specs = Vec::with_capacity(outputs.len());
        for (ix, output) in outputs.iter().enumerate() {
            // What the file declares wins; what tract inferred fills the gaps.
            let fact = optimized
                .output_fact(ix)
                .map_err(|e| tract_error(&e))?
                .clone();
            let datatype = match output.datatype {
                Some(dt) => dt,
                None => data_type(fact.datum_type).ok_or_else(|| LoadError::Runtime {
                    runtime: "tract",
                    message: format!(
                        "output {} has datatype {:?}, which the server cannot send",
                        output.name, fact.datum_type
                    ),
                })?,
            };
            let shape = match &output.dims {
                Some(dims) => spec_shape(dims),
                None => fact
                    .shape
                    .iter()
                    .map(|d| d.to_i64().unwrap_or(-1))
                    .collect(),
            };
            output_specs.push(TensorSpec {
                name: output.name.clone(),
                datatype,
                shape,
            });
        }

        let plan = optimized.into_runnable().map_err(|e| tract_error(&e))?;
        Ok(TractBackend {
            signature: ModelSignature {
                inputs: input_specs,
                outputs: output_specs,
            },
            plan,
        })
    }
}

impl Backend for TractBackend {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "tract"
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        super::check_input_count(&self.signature, inputs)?;
        let values = inputs
            .iter()
            .map(|t| to_tract(t).map(IntoTValue::into_tvalue))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(|e| InferError::new(format!("{e:#}")))?;
        let outputs = self
            .plan
            .run(values)
            .map_err(|e| InferError::new(format!("tract: {e:#}")))?;
        outputs
            .into_iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| {
                from_tract(&value, spec)
                    .map_err(|e| InferError::new(format!("output {}: {e:#}", spec.name)))
            })
            .collect()
    }
}

/// The graph inputs that are real inputs: old exporters also list
/// initializers (weights) among them.
fn declared_inputs(graph: &pb::GraphProto) -> Vec<Declared> {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .map(declared)
        .collect()
}

fn declared(info: &pb::ValueInfoProto) -> Declared {
    let tensor = info.r#type.as_ref().and_then(|t| match &t.value {
        Some(pb::type_proto::Value::TensorType(t)) => Some(t),
        _ => None,
    });
    Declared {
        name: info.name.clone(),
        datatype: tensor.and_then(|t| onnx_elem_type(t.elem_type)),
        dims: tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
            use pb::tensor_shape_proto::dimension::Value;
            shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(Value::DimValue(v)) if *v >= 0 => DeclaredDim::Fixed(*v as usize),
                    Some(Value::DimParam(p)) if !p.is_empty() && p != "?" => {
                        DeclaredDim::Named(p.clone())
                    }
                    _ => DeclaredDim::Unknown,
                })
                .collect()
        }),
    }
}

fn spec_shape(dims: &[DeclaredDim]) -> Vec<i64> {
    dims.iter()
        .map(|d| match d {
            DeclaredDim::Fixed(n) => *n as i64,
            _ => -1,
        })
        .collect()
}

/// The first operator (in graph order, subgraphs included) that `known` rejects.
fn first_unsupported_op(graph: &pb::GraphProto, known: &dyn Fn(&str) -> bool) -> Option<String> {
    for node in &graph.node {
        if !known(&node.op_type) {
            return Some(if node.domain.is_empty() || node.domain == "ai.onnx" {
                node.op_type.clone()
            } else {
                format!("{} (domain {})", node.op_type, node.domain)
            });
        }
        for attr in &node.attribute {
            for sub in attr.g.iter().chain(&attr.graphs) {
                if let Some(op) = first_unsupported_op(sub, known) {
                    return Some(op);
                }
            }
        }
    }
    None
}

/// A `TreeEnsembleClassifier` that tract 0.23 builds but answers wrong, or
/// refuses with a message that does not say why, named with the reason.
///
/// A binary classifier whose leaves all score class 0 (skl2onnx's random
/// forests and gradient boosting, onnxmltools' XGBoost and LightGBM) makes
/// tract expand the one score into two probabilities (`1 - s`, `s`) but take
/// the label's argmax over the single score column, so the label is the first
/// class for every row while the probabilities are right. A `base_values`
/// list whose length is not the class count (XGBoost's one base score) is
/// refused by tract with only the attribute's name.
fn misread_tree_classifier(node: &pb::NodeProto) -> Option<String> {
    if node.op_type != "TreeEnsembleClassifier" {
        return None;
    }
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let classes = attr("classlabels_int64s")
        .map(|a| a.ints.len())
        .or_else(|| attr("classlabels_strings").map(|a| a.strings.len()))?;
    let one_score = attr("class_ids").is_some_and(|a| a.ints.iter().all(|&id| id == 0));
    if classes < 3 && one_score {
        return Some(format!(
            "TreeEnsembleClassifier (a binary classifier whose trees score one class: \
             tract 0.23 would answer label {} for every row; ONNX Runtime runs it)",
            class_name(node, 0)
        ));
    }
    let base_values = attr("base_values").map_or(0, |a| a.floats.len());
    if base_values != 0 && base_values != classes {
        return Some(format!(
            "TreeEnsembleClassifier (base_values has {base_values} values for {classes} classes, \
             which tract does not accept; ONNX Runtime runs it)"
        ));
    }
    None
}

/// The label of class `ix` of a classifier node, as its attributes spell it.
fn class_name(node: &pb::NodeProto, ix: usize) -> String {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    if let Some(label) = attr("classlabels_int64s").and_then(|a| a.ints.get(ix)) {
        return label.to_string();
    }
    attr("classlabels_strings")
        .and_then(|a| a.strings.get(ix))
        .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
        .unwrap_or_else(|| ix.to_string())
}

/// tract knows the operator but not this use of it (an attribute value it
/// lacks, say): still an unsupported operator, with tract's reason.
fn build_error(graph: &pb::GraphProto, e: &TractError) -> LoadError {
    let message = format!("{e:#}");
    let failed = graph
        .node
        .iter()
        .find(|node| message.contains(&format!("Building node {} ({})", node.name, node.op_type)));
    match failed {
        Some(node) => LoadError::UnsupportedOperator {
            op: format!("{} ({})", node.op_type, e.root_cause()),
        },
        None => tract_error(e),
    }
}

fn tract_error(e: &TractError) -> LoadError {
    LoadError::Runtime {
        runtime: "tract",
        message: format!("{e:#}"),
    }
}

/// The datatype of an ONNX `TensorProto.DataType` code, as tract reads it.
fn onnx_elem_type(code: i32) -> Option<DataType> {
    let onnx = pb::tensor_proto::DataType::try_from(code).ok()?;
    data_type(DatumType::try_from(onnx).ok()?)
}

fn datum_type(dt: DataType) -> DatumType {
    crate::match_datatype!(dt, {
        fixed T => T::datum_type(),
        bytes B => DatumType::String,
    })
}

fn data_type(dt: DatumType) -> Option<DataType> {
    DataType::ALL.into_iter().find(|&d| datum_type(d) == dt)
}

fn to_tract(t: &Tensor) -> TractResult<TractTensor> {
    let shape = t.shape();
    Ok(crate::match_data!(t.data(), {
        fixed v => TractTensor::from_shape(shape, v)?,
        bytes v => {
            let strings = v
                .iter()
                .map(|b| String::from_utf8(b.clone()))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|_| {
                    TractError::msg(format!(
                        "input {}: tract only takes UTF-8 strings as BYTES",
                        t.name()
                    ))
                })?;
            tract_ndarray::ArrayD::from_shape_vec(shape, strings)?.into()
        },
    }))
}

/// Converts a tract output to the datatype the model declares (tract may
/// compute, say, labels in another integer type than the file promises).
fn from_tract(t: &TractTensor, spec: &TensorSpec) -> TractResult<Tensor> {
    let t = t.cast_to_dt(datum_type(spec.datatype))?;
    fn vec<T: Datum + Clone>(t: &TractTensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    let data: TensorData = crate::match_datatype!(spec.datatype, {
        fixed T => vec::<T>(&t)?.into(),
        bytes B => vec::<String>(&t)?
            .into_iter()
            .map(String::into_bytes)
            .collect::<Vec<B>>()
            .into(),
    });
    Ok(Tensor::new(spec.name.clone(), t.shape().to_vec(), data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operator_is_named_with_its_domain() {
        let graph = pb::GraphProto {
            node: vec![
                pb::NodeProto {
                    op_type: "Add".into(),
                    ..Default::default()
                },
                pb::NodeProto {
                    op_type: "TreeEnsembleRegressor".into(),
                    domain: "ai.onnx.ml".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let op = first_unsupported_op(&graph, &|op| op == "Add");
        assert_eq!(
            op.as_deref(),
            Some("TreeEnsembleRegressor (domain ai.onnx.ml)")
        );
    }

    #[test]
    fn the_dynamic_batch_dimension_becomes_the_symbol_n() {
        let iris = crate::builtin::artifact("iris").unwrap();
        let backend = TractBackend::load(&iris.onnx).unwrap();
        let fact = backend.plan.model().input_fact(0).unwrap();
        assert_eq!(fact.datum_type, DatumType::F32);
        assert_eq!(format!("{:?}", fact.shape), "N,4");
        assert_eq!(backend.signature.inputs[0].shape, vec![-1, 4]);
    }

    #[test]
    fn an_operator_tract_cannot_build_is_named_with_the_reason() {
        let node = pb::NodeProto {
            name: "forest".into(),
            op_type: "TreeEnsembleClassifier".into(),
            ..Default::default()
        };
        let graph = pb::GraphProto {
            node: vec![node],
            ..Default::default()
        };
        let e = TractError::msg("PROBIT and SOFTMAX_ZERO unsupported")
            .context("Building node forest (TreeEnsembleClassifier)");
        let err = build_error(&graph, &e);
        assert!(
            matches!(&err, LoadError::UnsupportedOperator { op }
                if op == "TreeEnsembleClassifier (PROBIT and SOFTMAX_ZERO unsupported)"),
            "{err:?}"
        );
    }

    fn attr_ints(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
        pb::AttributeProto {
            name: name.into(),
            ints,
            ..Default::default()
        }
    }

    fn tree_classifier(attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
        pb::NodeProto {
            op_type: "TreeEnsembleClassifier".into(),
            domain: "ai.onnx.ml".into(),
            attribute,
            ..Default::default()
        }
    }

    #[test]
    fn a_binary_classifier_scoring_one_class_is_refused_with_why() {
        let node = tree_classifier(vec![
            attr_ints("classlabels_int64s", vec![0, 1]),
            attr_ints("class_ids", vec![0, 0, 0]),
        ]);
        let op = misread_tree_classifier(&node).unwrap();
        assert!(
            op.starts_with("TreeEnsembleClassifier (a binary classifier"),
            "{op}"
        );
        assert!(op.contains("label 0 for every row"), "{op}");
        assert!(op.contains("ONNX Runtime runs it"), "{op}");
    }

    #[test]
    fn string_labels_are_named_in_the_refusal() {
        let node = tree_classifier(vec![
            pb::AttributeProto {
                name: "classlabels_strings".into(),
                strings: vec![b"benign".to_vec(), b"malignant".to_vec()],
                ..Default::default()
            },
            attr_ints("class_ids", vec![0, 0]),
        ]);
        let op = misread_tree_classifier(&node).unwrap();
        assert!(op.contains("label \"benign\" for every row"), "{op}");
    }

    #[test]
    fn classifiers_tract_reads_right_are_not_refused() {
        // Binary with a score per class, and multiclass with one class id per leaf.
        let binary_two_scores = tree_classifier(vec![
            attr_ints("classlabels_int64s", vec![0, 1]),
            attr_ints("class_ids", vec![0, 1, 0, 1]),
        ]);
        let multiclass = tree_classifier(vec![
            attr_ints("classlabels_int64s", vec![0, 1, 2]),
            attr_ints("class_ids", vec![0, 0, 0]),
        ]);
        assert_eq!(misread_tree_classifier(&binary_two_scores), None);
        assert_eq!(misread_tree_classifier(&multiclass), None);
    }

    #[test]
    fn base_values_of_the_wrong_length_are_named() {
        let node = tree_classifier(vec![
            attr_ints("classlabels_int64s", vec![0, 1, 2]),
            attr_ints("class_ids", vec![0, 1, 2]),
            pb::AttributeProto {
                name: "base_values".into(),
                floats: vec![0.5],
                ..Default::default()
            },
        ]);
        let op = misread_tree_classifier(&node).unwrap();
        assert!(
            op.contains("base_values has 1 values for 3 classes"),
            "{op}"
        );
    }

    #[test]
    fn garbage_bytes_are_an_invalid_model() {
        let err = TractBackend::load(b"definitely not protobuf").unwrap_err();
        assert!(
            matches!(err, LoadError::InvalidModel(_) | LoadError::Runtime { .. }),
            "{err}"
        );
    }
}
