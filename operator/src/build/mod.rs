//! Pure builders: `(&ModelDeployment, &Config) -> child object`, no client, no clock.
//!
//! Every child has the ModelDeployment's name, its namespace, the `app.kubernetes.io/*` labels
//! and a controller owner reference, so the garbage collector removes it with its owner.

mod deployment;
mod hpa;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::crd::ModelDeployment;

pub use deployment::{FETCH_CONTAINER, SERVER_CONTAINER, build_deployment};
pub use hpa::build_hpa;
pub use service::build_service;

/// `app.kubernetes.io/name` of everything the operator makes.
pub const APP_NAME: &str = "modelship";
/// `app.kubernetes.io/component` of the model servers.
pub const COMPONENT: &str = "inference-server";
/// `app.kubernetes.io/managed-by`, also the field manager of server-side apply.
pub const MANAGER: &str = "modelship-operator";
/// Label holding the owning ModelDeployment's name (`app.kubernetes.io/instance`).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Pod-template annotation whose change rolls the pods.
pub const SPEC_HASH_ANNOTATION: &str = "modelship.io/spec-hash";
/// Container port of the server.
pub const SERVER_PORT: i32 = 8080;
/// Default Service port.
pub const DEFAULT_SERVICE_PORT: i32 = 80;

/// Labels that select the pods of `md`; they never change, as a Deployment's selector can't.
pub fn selector_labels(md: &ModelDeployment) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (INSTANCE_LABEL.to_string(), md.name_any()),
    ])
}

/// `status.selector`: the selector labels as a label-selector string.
pub fn selector_string(md: &ModelDeployment) -> String {
    selector_labels(md)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label selector matching every pod the operator manages, in any namespace.
pub fn managed_pods_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/name={APP_NAME}")
}

/// All labels of the children and pods of `md`.
pub fn labels(md: &ModelDeployment) -> BTreeMap<String, String> {
    let mut labels = selector_labels(md);
    labels.insert("app.kubernetes.io/component".into(), COMPONENT.into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

/// The served model name: `spec.model.name` or the ModelDeployment's name.
pub fn model_name(md: &ModelDeployment) -> String {
    md.spec.model.name.clone().unwrap_or_else(|| md.name_any())
}

/// The Service port: `spec.service.port` or 80.
pub fn service_port(md: &ModelDeployment) -> i32 {
    md.spec
        .service
        .as_ref()
        .and_then(|s| s.port)
        .unwrap_or(DEFAULT_SERVICE_PORT)
}

/// The cluster-local v2 endpoint of the model, for `status.url`.
pub fn model_url(md: &ModelDeployment, config: &Config) -> String {
    let port = match service_port(md) {
        80 => String::new(),
        p => format!(":{p}"),
    };
    format!(
        "http://{}.{}.svc.{}{port}/v2/models/{}",
        md.name_any(),
        md.namespace().unwrap_or_default(),
        config.cluster_domain,
        model_name(md)
    )
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
fn child_meta(md: &ModelDeployment) -> ObjectMeta {
    ObjectMeta {
        name: Some(md.name_any()),
        namespace: md.namespace(),
        labels: Some(labels(md)),
        owner_references: Some(vec![owner_reference(md)]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(md: &ModelDeployment) -> OwnerReference {
    OwnerReference {
        api_version: ModelDeployment::api_version(&()).into_owned(),
        kind: ModelDeployment::kind(&()).into_owned(),
        name: md.name_any(),
        uid: md.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Short hex SHA-256 of a value's JSON form.
fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("k8s objects serialize");
    hex::encode(&Sha256::digest(&json)[..8])
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builder tests compare against YAML files in `operator/tests/fixtures/`.
    //! `UPDATE_FIXTURES=1 cargo test -p modelship-operator` rewrites them; review the diff.

    use std::path::PathBuf;

    use crate::crd::ModelDeployment;

    pub fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    pub fn model_deployment(name: &str) -> ModelDeployment {
        let text = std::fs::read_to_string(path(name)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    /// Asserts that `value` serializes to the YAML in fixture `name`.
    pub fn assert_matches<T: serde::Serialize>(value: &T, name: &str) {
        let actual = serde_yaml::to_string(value).unwrap();
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(path(name), &actual).unwrap();
            return;
        }
        let expected_text = std::fs::read_to_string(path(name))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}; run with UPDATE_FIXTURES=1"));
        let expected: serde_yaml::Value = serde_yaml::from_str(&expected_text).unwrap();
        let expected = serde_yaml::to_string(&expected).unwrap();
        pretty_assertions::assert_eq!(expected, actual, "fixture {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_service_namespace_and_model() {
        let md = fixtures::model_deployment("iris.yaml");
        assert_eq!(
            model_url(&md, &Config::default()),
            "http://iris.ml.svc.cluster.local/v2/models/iris"
        );
        assert_eq!(
            selector_string(&md),
            "app.kubernetes.io/instance=iris,app.kubernetes.io/name=modelship"
        );
    }
}
