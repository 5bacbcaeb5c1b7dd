//! Both runtimes on the demo models of `models/`: they must reproduce the
//! predictions scikit-learn made (`models/reference/<stem>.json`, written by
//! `models/generate.py`), serve any batch size from one plan, and say which
//! operator is missing when they cannot run a model.
//!
//! The ONNX Runtime tests load the library from the `onnxruntime` wheel in the
//! repository's `.venv` (created by `scripts/setup-python.sh`); without it they
//! print `skipped: <reason>` and return.

use std::path::PathBuf;
use std::sync::Arc;

use modelship_server::builtin;
use modelship_server::runtime::Backend;
use modelship_server::runtime::{self, LoadError, RuntimeChoice, RuntimeOptions};
use modelship_server::tensor::{DataType, Tensor, TensorData, TensorSpec};
use serde_json::Value;

/// One model's reference sample: the input rows and scikit-learn's outputs.
struct Reference {
    input: Tensor,
    outputs: Vec<ExpectedOutput>,
}

struct ExpectedOutput {
    name: String,
    shape: Vec<usize>,
    values: Vec<f64>,
    check: Check,
}

enum Check {
    Exact,
    Absolute(f64),
    Relative(f64),
}

fn reference(stem: &str) -> Reference {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/reference")
        .join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    let shape = |v: &Value| -> Vec<usize> {
        v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    let numbers = |v: &Value| -> Vec<f64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let input = &json["input"];
    assert_eq!(input["datatype"], "FP32");
    let input = Tensor::new(
        input["name"].as_str().unwrap(),
        shape(input),
        TensorData::Fp32(numbers(input).into_iter().map(|x| x as f32).collect()),
    )
    .unwrap();
    let outputs = json["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, out)| ExpectedOutput {
            name: name.clone(),
            shape: shape(out),
            values: numbers(out),
            check: if let Some(tol) = out["tolerance"].as_f64() {
                Check::Absolute(tol)
            } else if let Some(tol) = out["relative_tolerance"].as_f64() {
                Check::Relative(tol)
            } else {
                Check::Exact
            },
        })
        .collect();
    Reference { input, outputs }
}

fn as_f64(data: &TensorData) -> Vec<f64> {
    match data {
        TensorData::Fp32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Fp64(v) => v.clone(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        other => panic!("unexpected output datatype {}", other.datatype()),
    }
}

/// Runs the whole reference sample as one batch and compares with scikit-learn.
fn assert_reproduces_sklearn(backend: &dyn Backend, stem: &str) {
    let reference = reference(stem);
    let outputs = backend
        .infer(std::slice::from_ref(&reference.input))
        .unwrap();
    assert_eq!(outputs.len(), backend.signature().outputs.len());
    for want in &reference.outputs {
        let got = outputs
            .iter()
            .find(|t| t.name() == want.name)
            .unwrap_or_else(|| panic!("{stem}: no output {}", want.name));
        assert_eq!(got.shape(), want.shape, "{stem}: shape of {}", want.name);
        let got_values = as_f64(got.data());
        for (i, (&g, &w)) in got_values.iter().zip(&want.values).enumerate() {
            let ok = match want.check {
                Check::Exact => g == w,
                Check::Absolute(tol) => (g - w).abs() <= tol,
                Check::Relative(tol) => (g - w).abs() <= tol * w.abs().max(1.0),
            };
            assert!(
                ok,
                "{stem} on {}: {}[{i}] = {g}, scikit-learn says {w}",
                backend.platform(),
                want.name
            );
        }
    }
}

/// One batch of all rows gives what one run per row gives.
fn assert_batch_equals_single_rows(backend: &dyn Backend, stem: &str) {
    let input = reference(stem).input;
    let rows = input.shape()[0];
    let batched = backend.infer(std::slice::from_ref(&input)).unwrap();
    let singles: Vec<Vec<Tensor>> = input
        .split_rows(&vec![1; rows])
        .unwrap()
        .into_iter()
        .map(|row| backend.infer(&[row]).unwrap())
        .collect();
    for (ix, out) in batched.iter().enumerate() {
        let parts: Vec<&Tensor> = singles.iter().map(|s| &s[ix]).collect();
        let joined = Tensor::concat_rows(out.name(), &parts).unwrap();
        assert_eq!(joined.shape(), out.shape(), "{stem}: {}", out.name());
        // The same kernels may group rows differently: allow float rounding.
        match (joined.data(), out.data()) {
            (TensorData::Fp32(a), TensorData::Fp32(b)) => {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                        "{stem}: {x} vs {y}"
                    );
                }
            }
            (a, b) => assert_eq!(a, b, "{stem}: {}", out.name()),
        }
    }
}

fn tract(stem: &str) -> Arc<dyn Backend> {
    let artifact = builtin::artifact(stem).unwrap();
    let opts = RuntimeOptions {
        runtime: RuntimeChoice::Tract,
        ..Default::default()
    };
    runtime::load(&artifact, &opts).unwrap()
}

fn iris_signature_is_declared(backend: &dyn Backend) {
    let sig = backend.signature();
    assert_eq!(
        sig.inputs,
        vec![TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4]
        }]
    );
    assert_eq!(
        sig.outputs,
        vec![
            TensorSpec {
                name: "label".into(),
                datatype: DataType::Int64,
                shape: vec![-1]
            },
            TensorSpec {
                name: "probabilities".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 3]
            },
        ]
    );
    assert!(sig.supports_batching());
}

/// The acceptance rows: setosa, versicolor, virginica.
fn assert_classifies_the_three_species(backend: &dyn Backend) {
    let input = Tensor::new(
        "input",
        vec![3, 4],
        TensorData::Fp32(vec![
            5.1, 3.5, 1.4, 0.2, 6.0, 2.9, 4.5, 1.5, 6.9, 3.1, 5.4, 2.1,
        ]),
    )
    .unwrap();
    let out = backend.infer(&[input]).unwrap();
    assert_eq!(out[0].name(), "label");
    assert_eq!(out[0].data(), &TensorData::Int64(vec![0, 1, 2]));
}

#[test]
fn tract_iris_signature_comes_from_the_model_file() {
    let backend = tract("iris");
    assert_eq!(backend.platform(), "tract");
    iris_signature_is_declared(&*backend);
}

#[test]
fn tract_iris_reproduces_sklearn() {
    let backend = tract("iris");
    assert_reproduces_sklearn(&*backend, "iris");
    assert_classifies_the_three_species(&*backend);
}

#[test]
fn tract_iris_random_forest_reproduces_sklearn() {
    let backend = tract("iris-rf");
    iris_signature_is_declared(&*backend);
    assert_reproduces_sklearn(&*backend, "iris-rf");
    assert_classifies_the_three_species(&*backend);
}

#[test]
fn tract_one_plan_serves_any_batch_size() {
    for stem in ["iris", "iris-rf"] {
        let backend = tract(stem);
        assert_batch_equals_single_rows(&*backend, stem);
    }
}

#[test]
fn tract_names_the_operator_it_lacks() {
    let artifact = builtin::artifact("diabetes").unwrap();
    let opts = RuntimeOptions {
        runtime: RuntimeChoice::Tract,
        ..Default::default()
    };
    let err = runtime::load(&artifact, &opts).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, LoadError::UnsupportedOperator { op } if op.starts_with("TreeEnsembleRegressor")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("TreeEnsembleRegressor"), "{message}");
    assert!(message.contains("onnxruntime"), "{message}");
}

#[test]
fn tract_rejects_bytes_that_are_not_onnx() {
    let artifact = modelship_server::model::ModelArtifact {
        default_name: "junk".into(),
        origin: "test".into(),
        onnx: b"not a model".to_vec(),
        card: None,
    };
    let opts = RuntimeOptions {
        runtime: RuntimeChoice::Tract,
        ..Default::default()
    };
    assert!(runtime::load(&artifact, &opts).is_err());
}

#[test]
fn forcing_onnxruntime_with_a_missing_library_says_so() {
    let artifact = builtin::artifact("iris").unwrap();
    let opts = RuntimeOptions {
        runtime: RuntimeChoice::Onnxruntime,
        ort_library: Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
        intra_op_threads: None,
    };
    let err = runtime::load(&artifact, &opts).map(|_| ()).unwrap_err();
    assert!(matches!(err, LoadError::OrtUnavailable(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/"), "{err}");
}

/// The library of the `onnxruntime` wheel in the repository's `.venv`.
fn venv_ort_library() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv");
    runtime::onnxruntime::wheel_dirs(&venv)
        .iter()
        .find_map(|dir| runtime::onnxruntime::library_in(dir))
        .ok_or_else(|| {
            format!(
                "no onnxruntime wheel in {} (run scripts/setup-python.sh)",
                venv.display()
            )
        })
}

/// Loads `stem` with ONNX Runtime, or prints why it cannot and returns `None`.
fn onnxruntime(stem: &str, runtime: RuntimeChoice) -> Option<Arc<dyn Backend>> {
    let library = match venv_ort_library() {
        Ok(library) => library,
        Err(reason) => {
            println!("skipped: {reason}");
            return None;
        }
    };
    let opts = RuntimeOptions {
        runtime,
        ort_library: Some(library),
        intra_op_threads: Some(1),
    };
    let artifact = builtin::artifact(stem).unwrap();
    Some(runtime::load(&artifact, &opts).unwrap())
}

#[test]
fn onnxruntime_reproduces_sklearn_on_every_demo_model() {
    for stem in builtin::names() {
        let Some(backend) = onnxruntime(stem, RuntimeChoice::Onnxruntime) else {
            return;
        };
        assert_eq!(backend.platform(), "onnxruntime");
        assert_reproduces_sklearn(&*backend, stem);
        assert_batch_equals_single_rows(&*backend, stem);
    }
}

#[test]
fn onnxruntime_iris_signature_comes_from_the_model_file() {
    let Some(backend) = onnxruntime("iris", RuntimeChoice::Onnxruntime) else {
        return;
    };
    iris_signature_is_declared(&*backend);
    assert_classifies_the_three_species(&*backend);
}

#[test]
fn onnxruntime_diabetes_signature_comes_from_the_model_file() {
    let Some(backend) = onnxruntime("diabetes", RuntimeChoice::Onnxruntime) else {
        return;
    };
    let sig = backend.signature();
    assert_eq!(sig.inputs[0].name, "input");
    assert_eq!(sig.inputs[0].shape, vec![-1, 10]);
    assert_eq!(
        sig.outputs,
        vec![TensorSpec {
            name: "predictions".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 1]
        }]
    );
}

#[test]
fn auto_prefers_onnxruntime_when_its_library_is_found() {
    let Some(backend) = onnxruntime("diabetes", RuntimeChoice::Auto) else {
        return;
    };
    assert_eq!(backend.platform(), "onnxruntime");
}

#[test]
fn onnxruntime_serves_concurrent_requests() {
    let Some(backend) = onnxruntime("iris", RuntimeChoice::Onnxruntime) else {
        return;
    };
    let input = reference("iris").input;
    let want = backend.infer(std::slice::from_ref(&input)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let got = backend.infer(std::slice::from_ref(&input)).unwrap();
                    assert_eq!(got, want);
                }
            });
        }
    });
}

/// Each backend on each model it can load, for checks that hold everywhere.
fn every_backend() -> Vec<(String, Arc<dyn Backend>)> {
    let mut all: Vec<(String, Arc<dyn Backend>)> = ["iris", "iris-rf"]
        .into_iter()
        .map(|stem| (stem.to_string(), tract(stem)))
        .collect();
    for stem in builtin::names() {
        if let Some(backend) = onnxruntime(stem, RuntimeChoice::Onnxruntime) {
            all.push((stem.to_string(), backend));
        }
    }
    all
}

fn rows_of(stem: &str, rows: usize, value: f32) -> Tensor {
    let features = reference(stem).input.shape()[1];
    Tensor::new(
        "input",
        vec![rows, features],
        TensorData::Fp32(vec![value; rows * features]),
    )
    .unwrap()
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    for (stem, backend) in every_backend() {
        let outputs = backend.infer(&[rows_of(&stem, 0, 0.0)]).unwrap();
        for out in outputs {
            assert_eq!(out.shape()[0], 0, "{stem} on {}", backend.platform());
            assert!(out.data().is_empty());
        }
    }
}

#[test]
fn nan_and_infinite_inputs_do_not_break_the_backend() {
    for (stem, backend) in every_backend() {
        for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX] {
            // Whatever the model makes of it, it answers (or errs) without panicking...
            let _ = backend.infer(&[rows_of(&stem, 2, value)]);
        }
        // ...and still answers normal input afterwards.
        assert_reproduces_sklearn(&*backend, &stem);
    }
}
