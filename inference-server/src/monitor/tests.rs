//! The model monitor without a server: what it infers about a model, what
//! `record` keeps, how feedback is scored for classifiers and regressors.

use super::feedback::{Answer, parse_items};
use super::*;
use crate::model::{Baseline, FeatureBaseline};
use crate::tensor::TensorSpec;
use crate::tensor::{DataType, TensorData};

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

fn classifier() -> (ModelSignature, ModelCard) {
    let sig = ModelSignature {
        inputs: vec![spec("input", DataType::Fp32, &[-1, 2])],
        outputs: vec![
            spec("label", DataType::Int64, &[-1]),
            spec("probabilities", DataType::Fp32, &[-1, 2]),
        ],
    };
    let card = ModelCard {
        class_labels: vec!["no".into(), "yes".into()],
        baseline: Some(Baseline {
            features: ["a", "b"]
                .iter()
                .map(|n| FeatureBaseline {
                    name: n.to_string(),
                    edges: vec![0.0],
                    proportions: vec![0.5, 0.5],
                })
                .collect(),
            classes: vec![0.5, 0.5],
            rows: Some(10),
        }),
        ..Default::default()
    };
    (sig, card)
}

fn answer(m: &ModelMonitor, body: &str) -> Answer {
    m.feedback(&parse_items(body.as_bytes()).unwrap())
}

#[test]
fn a_classifier_is_recorded_and_scored_by_its_card_labels() {
    let (sig, card) = classifier();
    let m = ModelMonitor::detached(&sig, Some(&card));
    assert_eq!(m.task.name(), "classifier");
    assert!(m.drift.is_ok());
    let input = Tensor::new(
        "input",
        vec![2, 2],
        TensorData::Fp32(vec![-1.0, 1.0, 2.0, -3.0]),
    )
    .unwrap();
    let pending = m.begin(None, std::slice::from_ref(&input));
    let id = m.next_id();
    let outputs = vec![
        Tensor::new("label", vec![2], TensorData::Int64(vec![1, 0])).unwrap(),
        Tensor::new(
            "probabilities",
            vec![2, 2],
            TensorData::Fp32(vec![0.2, 0.8, 0.9, 0.1]),
        )
        .unwrap(),
    ];
    m.record(pending, &id, "", outputs);
    let a = answer(
        &m,
        &format!(r#"{{"items": [{{"id": "{id}", "truth": ["yes", 1]}}]}}"#),
    );
    assert_eq!((a.counted, a.invalid), (1, 0));
    let stats = m.stats();
    assert_eq!((stats.rows, stats.correct), (2, 1));
    let summary = summary::pod(&m);
    let predicted: Vec<f64> = summary.classes.iter().map(|c| c.predicted).collect();
    assert_eq!(predicted, [1.0, 1.0]);
    assert_eq!(summary.classes[1].prior, Some(0.5));
    assert_eq!(summary.drift.window_rows, 2);
}

#[test]
fn a_regressor_gets_absolute_errors_and_labels_are_refused() {
    let sig = ModelSignature {
        inputs: vec![spec("input", DataType::Fp32, &[-1, 3])],
        outputs: vec![spec("predictions", DataType::Fp32, &[-1, 1])],
    };
    let m = ModelMonitor::detached(&sig, None);
    assert_eq!(m.task.name(), "regressor");
    assert_eq!(
        m.drift.as_ref().err().map(String::as_str),
        Some("the model card has no training baseline")
    );
    let input = Tensor::new("input", vec![2, 3], TensorData::Fp32(vec![0.0; 6])).unwrap();
    let pending = m.begin(Some("c"), &[input]);
    let id = m.next_id();
    let out = Tensor::new(
        "predictions",
        vec![2, 1],
        TensorData::Fp32(vec![10.0, 20.0]),
    )
    .unwrap();
    m.record(pending, &id, "c", vec![out]);
    let a = answer(
        &m,
        &format!(r#"{{"items": [{{"id": "{id}", "truth": [12, 15.5]}}]}}"#),
    );
    assert_eq!(a.counted, 1);
    let s = m.stats();
    assert_eq!(s.abs_error_rows, 2);
    assert!((s.abs_error_sum - 6.5).abs() < 1e-9);
    let a = answer(&m, r#"{"items": [{"truth": ["high"], "predicted": [3]}]}"#);
    assert_eq!(a.invalid, 1);
    assert_eq!(a.errors[0]["field"], "items[0].truth");
}

#[test]
fn a_baseline_that_does_not_fit_the_model_is_explained() {
    let (sig, mut card) = classifier();
    card.baseline.as_mut().unwrap().features.pop();
    let m = ModelMonitor::detached(&sig, Some(&card));
    assert_eq!(
        m.drift.as_ref().err().map(String::as_str),
        Some("the card's baseline has 1 features, the model's input 2")
    );
    let (_, mut card) = classifier();
    card.baseline.as_mut().unwrap().features[1].proportions = vec![0.9, 0.9];
    let m = ModelMonitor::detached(&sig, Some(&card));
    assert!(
        m.drift
            .as_ref()
            .err()
            .unwrap()
            .contains("baseline.features[1] (b): proportions")
    );
}

#[test]
fn a_model_without_a_label_or_single_float_output_scores_nothing() {
    let sig = ModelSignature {
        inputs: vec![spec("input", DataType::Fp32, &[-1, 2])],
        outputs: vec![
            spec("x", DataType::Fp32, &[-1, 1]),
            spec("y", DataType::Fp32, &[-1, 1]),
        ],
    };
    let m = ModelMonitor::detached(&sig, None);
    assert_eq!(m.task.name(), "unknown");
    let a = answer(&m, r#"{"items": [{"truth": [1], "predicted": [1]}]}"#);
    assert_eq!(a.invalid, 1);
}
