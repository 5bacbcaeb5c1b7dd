//! The committed BatchPrediction CRD must be the one the Rust types generate, and the example
//! must be a valid BatchPrediction.

use std::path::PathBuf;

use modelship_operator::batch::{BatchPrediction, crd_yaml, plan::plan};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn committed_batch_crd_matches_the_rust_types() {
    let path = repo("crds/modelship.io_batchpredictions.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crd_yaml(),
        "{} is out of date with the Rust types in operator/src/batch/crd.rs; regenerate it with\n\n    \
         cargo run -p modelship-operator -- crd batchprediction > crds/modelship.io_batchpredictions.yaml\n",
        path.display()
    );
}

#[test]
fn the_batch_example_is_a_valid_batch_prediction() {
    let path = repo("examples/batch-prediction.yaml");
    let mut bp: BatchPrediction = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bp.metadata.namespace = Some("default".into());
    let model = bp.spec.model.clone().expect("the example names its model");
    let plan = plan(&bp, &model, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!((plan.parallelism, plan.shards), (4, 16));
}

#[test]
fn crd_has_the_short_name_printer_columns_and_cel_rules() {
    let yaml = crd_yaml();
    for needle in [
        "- bpred",
        "spec is immutable",
        "rule: self == oldSelf",
        "spec.parallelism must be >= 1",
        "spec must set exactly one of spec.model and spec.modelDeploymentRef",
        "jsonPath: .status.shards.done",
        "jsonPath: .status.rows.scored",
        "jsonPath: .status.phase",
        "x-kubernetes-list-type: map",
    ] {
        assert!(yaml.contains(needle), "CRD lacks {needle:?}");
    }
}
