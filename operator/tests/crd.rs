//! The committed CRD must be the one the Rust types generate.

use std::path::PathBuf;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/modelship.io_modeldeployments.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = modelship_operator::crd::crd_yaml();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types in operator/src/crd.rs; regenerate it with\n\n    \
         cargo run -p modelship-operator -- crd > crds/modelship.io_modeldeployments.yaml\n",
        path.display()
    );
}

#[test]
fn examples_are_valid_model_deployments() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) != Some("ModelDeployment") {
                continue;
            }
            let mut md: modelship_operator::crd::ModelDeployment =
                serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            md.metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            if let Err(e) = modelship_operator::validate::validate(&md, &Default::default()) {
                panic!("{}: {e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "expected the four examples in {}, found {seen}",
        dir.display()
    );
}

use serde::Deserialize;
