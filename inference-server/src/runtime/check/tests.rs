use super::*;
use crate::model::ModelCard;
use crate::runtime::InferError;
use crate::tensor::TensorSpec;

/// A two-class model over two features: probabilities softmax(x0, x1), and a
/// label that is either right (argmax) or always `0`, as tract misread binary
/// tree ensembles.
struct TwoClass {
    signature: ModelSignature,
    platform: &'static str,
    label_always_zero: bool,
}

impl TwoClass {
    fn new(platform: &'static str, label_always_zero: bool) -> TwoClass {
        let spec = |name: &str, datatype, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype,
            shape,
        };
        TwoClass {
            signature: ModelSignature {
                inputs: vec![spec("input", DataType::Fp32, vec![-1, 2])],
                outputs: vec![
                    spec("label", DataType::Int64, vec![-1]),
                    spec("probabilities", DataType::Fp32, vec![-1, 2]),
                ],
            },
            platform,
            label_always_zero,
        }
    }
}

impl Backend for TwoClass {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn platform(&self) -> &'static str {
        self.platform
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        let TensorData::Fp32(x) = inputs[0].data() else {
            return Err(InferError::new("FP32 expected"));
        };
        let rows = x.len() / 2;
        let mut labels = Vec::with_capacity(rows);
        let mut probs = Vec::with_capacity(rows * 2);
        for r in x.chunks(2) {
            // A numerically safe two-way softmax.
            let d = (r[1] - r[0]).clamp(-50.0, 50.0);
            let p1 = 1.0 / (1.0 + (-d).exp());
            probs.extend([1.0 - p1, p1]);
            labels.push(if self.label_always_zero || p1 <= 0.5 {
                0i64
            } else {
                1
            });
        }
        Ok(vec![
            Tensor::new("label", vec![rows], labels).unwrap(),
            Tensor::new("probabilities", vec![rows, 2], probs).unwrap(),
        ])
    }
}

fn artifact() -> ModelArtifact {
    ModelArtifact {
        default_name: "two".into(),
        origin: "test://two".into(),
        onnx: Vec::new(),
        card: Some(ModelCard {
            example: vec![0.2, 0.9],
            ..Default::default()
        }),
    }
}

#[test]
fn a_label_that_is_always_the_first_class_is_refused_with_the_reason() {
    let err = label_is_most_probable(&TwoClass::new("tract", true), &artifact()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("tract failed to load the model: "), "{msg}");
    assert!(
        msg.contains(
            "label output 'label' disagrees with its probabilities output 'probabilities'"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("label 0 is answered for rows whose most probable column is 0 or 1"),
        "{msg}"
    );
    assert!(msg.contains("try --runtime onnxruntime"), "{msg}");
}

#[test]
fn under_onnx_runtime_the_refusal_points_at_the_model() {
    let msg = label_is_most_probable(&TwoClass::new("onnxruntime", true), &artifact())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("the model or its conversion is wrong"),
        "{msg}"
    );
}

#[test]
fn a_label_that_is_the_most_probable_class_passes() {
    label_is_most_probable(&TwoClass::new("tract", false), &artifact()).unwrap();
}

#[test]
fn the_builtin_iris_passes_under_tract() {
    let iris = crate::builtin::artifact("iris").unwrap();
    let backend = crate::runtime::tract::TractBackend::load(&iris.onnx).unwrap();
    assert_eq!(classifier_outputs(backend.signature()), Some((0, 1)));
    label_is_most_probable(&backend, &iris).unwrap();
}

#[test]
fn the_builtin_iris_names_its_classes_in_the_onnx_file() {
    let iris = crate::builtin::artifact("iris").unwrap();
    let classes = class_labels_of(&iris.onnx, "label").unwrap();
    assert_eq!(classes, vec![Label::Int(0), Label::Int(1), Label::Int(2)]);
}

#[test]
fn with_known_classes_each_row_is_checked_against_them() {
    let classes = [Label::Text("no".into()), Label::Text("yes".into())];
    let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8]];
    let right = [Label::Text("no".into()), Label::Text("yes".into())];
    judge(&right, &probs, Some(&classes)).unwrap();
    let swapped = [Label::Text("yes".into()), Label::Text("no".into())];
    let why = judge(&swapped, &probs, Some(&classes)).unwrap_err();
    assert_eq!(
        why,
        "on 2 of 2 check rows the label is not the most probable class \
         (check row 0 has label \"yes\" but its most probable class is \"no\" (p = 0.9000))"
    );
}

#[test]
fn without_known_classes_one_column_with_two_labels_is_refused() {
    let probs = vec![vec![0.9, 0.1], vec![0.7, 0.3]];
    let why = judge(&[Label::Int(3), Label::Int(4)], &probs, None).unwrap_err();
    assert!(
        why.contains("check rows 0 and 1 both have probability column 0 highest"),
        "{why}"
    );
}

#[test]
fn ties_are_not_checked() {
    // The second row's two probabilities are within TIE: its label may be either.
    let probs = vec![vec![0.9, 0.1], vec![0.50004, 0.49996]];
    let classes = [Label::Int(0), Label::Int(1)];
    judge(&[Label::Int(0), Label::Int(1)], &probs, Some(&classes)).unwrap();
    let untied = vec![vec![0.9, 0.1], vec![0.5002, 0.4998]];
    judge(&[Label::Int(0), Label::Int(1)], &untied, Some(&classes)).unwrap_err();
}

#[test]
fn models_without_a_label_and_probabilities_are_not_classifiers_here() {
    let spec = |name: &str, datatype, shape: Vec<i64>| TensorSpec {
        name: name.into(),
        datatype,
        shape,
    };
    let regressor = ModelSignature {
        inputs: vec![spec("x", DataType::Fp32, vec![-1, 3])],
        outputs: vec![spec("variable", DataType::Fp32, vec![-1, 1])],
    };
    assert_eq!(classifier_outputs(&regressor), None);
}

#[test]
fn the_check_rows_are_fixed_and_start_with_zeros_and_the_example() {
    let a = check_values(2, Some(&[0.2, 0.9]), 0);
    assert_eq!(a, check_values(2, Some(&[0.2, 0.9]), 0));
    assert_eq!(a.len(), CHECK_ROWS * 2);
    assert_eq!(&a[..4], &[0.0, 0.0, 0.2, 0.9]);
    // The rows of one value reach both extremes.
    assert!(a.contains(&-1e6) && a.contains(&1e6));
}

#[test]
fn scores_that_are_not_probabilities_are_not_checked() {
    assert!(is_distribution(&[0.25, 0.75]));
    assert!(is_distribution(&[f64::NAN, 0.5]));
    // An SVM's decision values, a box beside a class id: not a distribution.
    assert!(!is_distribution(&[-1.2, 0.4, 2.0]));
    assert!(!is_distribution(&[0.1, 0.2, 0.3]));
    assert!(!is_distribution(&[10.0, 20.0, 30.0, 40.0]));
}
