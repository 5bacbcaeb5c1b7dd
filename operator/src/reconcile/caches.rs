//! What the reconciler reads without asking the API server: the watched pods, HPAs, budgets and
//! Ingresses (one store per watched namespace, or one for all), and the mapping from a pod's
//! event to the ModelDeployment it belongs to.

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::build::{INSTANCE_LABEL, MODEL_DEPLOYMENT_LABEL, selector_labels};
use crate::crd::ModelDeployment;

/// Caches of the watched pods and HPAs, so that a reconcile does not list pods or get the HPA
/// from the API server.
#[derive(Default, Clone)]
pub struct Caches {
    pub pods: Vec<Store<Pod>>,
    pub hpas: Vec<Store<HorizontalPodAutoscaler>>,
    pub ingresses: Vec<Store<Ingress>>,
    pub pdbs: Vec<Store<PodDisruptionBudget>>,
}

impl Caches {
    /// Every pod of ModelDeployment `namespace/name`, old ReplicaSets included.
    pub fn pods_of(&self, namespace: &str, name: &str) -> Vec<Pod> {
        let selector = selector_labels(name);
        self.pods
            .iter()
            .flat_map(|store| store.state())
            .filter(|pod| {
                pod.namespace().as_deref() == Some(namespace)
                    && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
            })
            .map(|pod| (*pod).clone())
            .collect()
    }

    /// The HPA named like ModelDeployment `namespace/name`, whoever made it.
    pub fn hpa_of(&self, namespace: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        let key = ObjectRef::new(name).within(namespace);
        self.hpas.iter().find_map(|store| store.get(&key))
    }

    /// The PodDisruptionBudget named like ModelDeployment `namespace/name`, whoever made it.
    pub fn pdb_of(&self, namespace: &str, name: &str) -> Option<Arc<PodDisruptionBudget>> {
        let key = ObjectRef::new(name).within(namespace);
        self.pdbs.iter().find_map(|store| store.get(&key))
    }

    /// The Ingress named like ModelDeployment `namespace/name`, whoever made it.
    pub fn ingress_of(&self, namespace: &str, name: &str) -> Option<Arc<Ingress>> {
        let key = ObjectRef::new(name).within(namespace);
        self.ingresses.iter().find_map(|store| store.get(&key))
    }
}

/// Pods that pass their readiness probe and are not going away.
pub fn ready_pods(pods: &[Pod]) -> i32 {
    let ready = pods.iter().filter(|pod| {
        pod.metadata.deletion_timestamp.is_none()
            && pod
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    i32::try_from(ready.count()).unwrap_or(i32::MAX)
}

/// The ModelDeployment a pod belongs to, by its owner label (a canary's pod) or else its
/// instance label: a pod's event triggers a reconcile of its owner.
pub fn model_deployment_of(pod: &Pod) -> Option<ObjectRef<ModelDeployment>> {
    let labels = pod.labels();
    let name = labels
        .get(MODEL_DEPLOYMENT_LABEL)
        .or_else(|| labels.get(INSTANCE_LABEL))?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some(namespace.into());
        pod.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pod
    }

    fn hpa(namespace: &str, name: &str) -> HorizontalPodAutoscaler {
        let mut hpa = HorizontalPodAutoscaler::default();
        hpa.metadata.name = Some(name.into());
        hpa.metadata.namespace = Some(namespace.into());
        hpa
    }

    fn store<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (reader, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        reader
    }

    const IRIS: [(&str, &str); 2] = [
        ("app.kubernetes.io/name", "modelship"),
        ("app.kubernetes.io/instance", "iris"),
    ];

    #[test]
    fn pods_of_selects_by_namespace_and_both_selector_labels_across_stores() {
        let caches = Caches {
            pods: vec![
                store(vec![
                    pod("ml", "iris-a", &IRIS),
                    pod("other", "iris-elsewhere", &IRIS),
                    pod("ml", "wine-a", &[("app.kubernetes.io/instance", "wine")]),
                ]),
                store(vec![
                    pod("ml", "iris-b", &IRIS),
                    // The instance label alone is not enough: it must be one of ours.
                    pod(
                        "ml",
                        "iris-foreign",
                        &[("app.kubernetes.io/instance", "iris")],
                    ),
                ]),
            ],
            hpas: Vec::new(),
            ingresses: Vec::new(),
            pdbs: Vec::new(),
        };
        let mut names: Vec<String> = caches
            .pods_of("ml", "iris")
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["iris-a", "iris-b"]);
        assert!(caches.pods_of("ml", "absent").is_empty());
    }

    #[test]
    fn hpa_of_finds_the_hpa_by_namespace_and_name_in_any_store() {
        let caches = Caches {
            pods: Vec::new(),
            hpas: vec![
                store(vec![hpa("ml", "wine")]),
                store(vec![hpa("ml", "iris"), hpa("other", "resnet")]),
            ],
            ingresses: Vec::new(),
            pdbs: Vec::new(),
        };
        assert_eq!(caches.hpa_of("ml", "iris").unwrap().name_any(), "iris");
        assert!(caches.hpa_of("ml", "resnet").is_none());
        assert!(caches.hpa_of("other", "iris").is_none());
        assert!(Caches::default().hpa_of("ml", "iris").is_none());
    }

    #[test]
    fn only_ready_pods_that_stay_count_as_ready() {
        let with_ready = |status: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "status": {"conditions": [{"type": "Ready", "status": status}]}
            }))
            .unwrap()
        };
        let mut leaving = with_ready("True");
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let pods = [
            with_ready("True"),
            with_ready("False"),
            leaving,
            Pod::default(),
        ];
        assert_eq!(ready_pods(&pods), 1);
    }

    #[test]
    fn a_pod_maps_to_the_model_deployment_of_its_instance_label() {
        assert_eq!(
            model_deployment_of(&pod("ml", "iris-7d9f-x2", &IRIS)),
            Some(ObjectRef::new("iris").within("ml"))
        );
        assert_eq!(
            model_deployment_of(&pod("ml", "stray", &[("app", "iris")])),
            None
        );
        let canary = pod(
            "ml",
            "iris-canary-5c-x",
            &[
                ("app.kubernetes.io/instance", "iris-canary"),
                ("modelship.io/model-deployment", "iris"),
            ],
        );
        assert_eq!(
            model_deployment_of(&canary),
            Some(ObjectRef::new("iris").within("ml"))
        );
        let mut no_namespace = pod("ml", "iris-x", &IRIS);
        no_namespace.metadata.namespace = None;
        assert_eq!(model_deployment_of(&no_namespace), None);
    }
}
