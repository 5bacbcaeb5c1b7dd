//! Pure builders: `&Validated -> child object`, no client, no clock, no defaults of their own
//! (every default is resolved once, by [`crate::validate`]).
//!
//! Every child has the ModelDeployment's name (the canary's: `{name}-canary`), its namespace,
//! the `app.kubernetes.io/*` labels and a controller owner reference, so the garbage collector
//! removes it with its owner. [`traffic`] plans the way in from outside the cluster (an
//! `HTTPRoute` or an Ingress, [`route`]) and the canary's share of it.

mod deployment;
pub mod grpc;
mod hpa;
mod monitoring;
mod pdb;
pub mod promotion;
pub mod route;
mod service;
mod spread;
pub mod traffic;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::crd::ModelDeployment;
use crate::validate::Validated;

pub use deployment::{
    API_KEYS_DIR, API_KEYS_DIR_ENV, FETCH_CONTAINER, SERVER_CONTAINER, build_canary_deployment,
    build_deployment,
};
/// The pieces a BatchPrediction's pods share with the servers' (`crate::batch`).
pub use deployment::{
    MODELS_DIR, NONROOT_ID, empty_dir, fetch_container, mount, restricted_security_context,
    runtime_default_seccomp,
};
pub use hpa::build_hpa;

/// The pod-level security of every pod the operator makes (model servers and batch shards):
/// non-root as the image's user and group, the runtime's default seccomp profile.
pub fn nonroot_pod_security_context() -> k8s_openapi::api::core::v1::PodSecurityContext {
    k8s_openapi::api::core::v1::PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT_ID),
        run_as_group: Some(NONROOT_ID),
        fs_group: Some(NONROOT_ID),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}
pub use pdb::build_pdb;
pub use service::{build_canary_service, build_service};
pub use traffic::{GatewayApi, Traffic, plan_traffic};

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
/// Label of a canary's children and pods: `canary`. Primary pods do not carry it (adding it
/// would roll every existing pod); their instance label tells them apart.
pub const VARIANT_LABEL: &str = "modelship.io/variant";
/// Label naming the owning ModelDeployment on children whose instance label is not its name
/// (the canary's).
pub const MODEL_DEPLOYMENT_LABEL: &str = "modelship.io/model-deployment";

/// Every child of one ModelDeployment, as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub deployment: Deployment,
    pub service: Service,
    /// `None` when the Deployment has fixed replicas: any HPA the operator made before goes.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// `None` when the model has no budget: any the operator made before goes.
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds every child of `v`.
pub fn build_children(v: &Validated) -> Children {
    Children {
        deployment: build_deployment(v),
        service: build_service(v),
        hpa: build_hpa(v),
        pdb: build_pdb(v),
    }
}

/// Labels that select the pods of ModelDeployment `name`; they never change, as a Deployment's
/// selector can't.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (INSTANCE_LABEL.to_string(), name.to_string()),
    ])
}

/// `status.selector`: the selector labels as a label-selector string.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label selector matching everything the operator makes (children and their pods), in any
/// namespace.
pub fn managed_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/name={APP_NAME}")
}

/// All labels of the children and pods of ModelDeployment `name`.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/component".into(), COMPONENT.into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

/// All labels of the canary's children and pods: those of an instance named `{name}-canary`
/// (so no selector of the primary matches them), the variant and the owner.
pub fn canary_labels(name: &str, canary_name: &str) -> BTreeMap<String, String> {
    let mut labels = labels(canary_name);
    labels.insert(VARIANT_LABEL.into(), "canary".into());
    labels.insert(MODEL_DEPLOYMENT_LABEL.into(), name.into());
    labels
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
fn child_meta(v: &Validated) -> ObjectMeta {
    child_meta_named(v, &v.name, labels(&v.name))
}

/// Metadata of a child with its own name and labels, owned by the ModelDeployment of `v`.
fn child_meta_named(v: &Validated, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(v)]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(v: &Validated) -> OwnerReference {
    OwnerReference {
        api_version: ModelDeployment::api_version(&()).into_owned(),
        kind: ModelDeployment::kind(&()).into_owned(),
        name: v.name.clone(),
        uid: v.uid.clone(),
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

    use crate::config::Config;
    use crate::crd::ModelDeployment;
    use crate::validate::{Validated, validate};

    pub fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    pub fn model_deployment(name: &str) -> ModelDeployment {
        let text = std::fs::read_to_string(path(name)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    /// The fixture `name`, validated with the default [`Config`].
    pub fn validated(name: &str) -> Validated {
        validate(&model_deployment(name), &Config::default()).unwrap()
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
    fn selector_names_the_instance() {
        assert_eq!(
            selector_string("iris"),
            "app.kubernetes.io/instance=iris,app.kubernetes.io/name=modelship"
        );
    }

    #[test]
    fn every_child_carries_the_managed_labels() {
        let v = fixtures::validated("autoscaled.yaml");
        let children = build_children(&v);
        let hpa = children.hpa.expect("autoscaled");
        let managed: Vec<(String, String)> = managed_selector()
            .split(',')
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for labels in [
            children.deployment.metadata.labels,
            children.service.metadata.labels,
            hpa.metadata.labels,
        ] {
            let labels = labels.unwrap();
            for (k, v) in &managed {
                assert_eq!(labels.get(k), Some(v), "{k}");
            }
        }
    }
}
