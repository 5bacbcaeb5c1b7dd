//! Integration tests (`--test apiserver`, named for what they need): the operator runs as a
//! process against a real API server.
//!
//! They need a cluster with at least etcd, kube-apiserver and kube-controller-manager (the
//! control-plane mode of `hack/cluster`), given by `MODELSHIP_TEST_KUBECONFIG`:
//!
//! ```sh
//! make -f hack/cluster/cluster.mk cluster-up MODE=control-plane
//! MODELSHIP_TEST_KUBECONFIG=$PWD/.cluster/kubeconfig cargo test -p modelship-operator --test apiserver
//! ```
//!
//! Without it every test prints why it was skipped and returns. Each test works in a namespace
//! of its own with an operator process watching only that namespace, so they run in parallel.

mod bench;
mod expose;
mod harness;
mod monitoring;
mod recreate;
mod status;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use modelship_operator::crd::ModelDeployment;
use serde_json::json;

use harness::{Operator, TestCluster, eventually, model_deployment, spec_hash};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn create_builds_deployment_service_and_hpa_with_expected_fields() {
    let Some(cluster) = TestCluster::get("create").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "fraud",
            json!({
                "model": {"uri": "https://models.example/fraud.onnx", "credentialsSecretRef": {"name": "creds"}},
                "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
                "service": {"port": 8000},
            }),
        ),
    )
    .await
    .unwrap();

    let deployments: Api<Deployment> = cluster.api();
    let d = eventually("the Deployment", TIMEOUT, || async {
        deployments.get_opt("fraud").await.ok().flatten()
    })
    .await;
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ModelDeployment", Some(true))
    );
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(harness::SERVER_IMAGE)
    );
    let fetch = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        fetch.args.as_ref().unwrap()[..2],
        [
            "fetch".to_string(),
            "https://models.example/fraud.onnx".into()
        ]
    );
    assert!(spec_hash(&d).is_some());
    let managers: Vec<_> = d
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"modelship-operator".to_string()),
        "{managers:?}"
    );

    let services: Api<Service> = cluster.api();
    let svc = eventually("the Service", TIMEOUT, || async {
        services.get_opt("fraud").await.ok().flatten()
    })
    .await;
    let port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8000));

    let hpas: Api<HorizontalPodAutoscaler> = cluster.api();
    let hpa = eventually("the HPA", TIMEOUT, || async {
        hpas.get_opt("fraud").await.ok().flatten()
    })
    .await;
    let spec = hpa.spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 5));

    let md = eventually("a status", TIMEOUT, || async {
        mds.get("fraud").await.ok().filter(|md| {
            md.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == md.metadata.generation)
        })
    })
    .await;
    let status = md.status.unwrap();
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=fraud,app.kubernetes.io/name=modelship")
    );
    assert_eq!(
        status.url.as_deref(),
        Some(
            format!(
                "http://fraud.{}.svc.cluster.local:8000/v2/models/fraud",
                cluster.namespace
            )
            .as_str()
        )
    );
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
    cluster.cleanup().await;
}

#[tokio::test]
async fn update_rolls_the_pods_and_removing_autoscaling_deletes_the_hpa() {
    let Some(cluster) = TestCluster::get("update").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "iris",
            json!({"model": {"uri": "builtin://iris"}, "autoscaling": {"maxReplicas": 3}}),
        ),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = cluster.api();
    let hpas: Api<HorizontalPodAutoscaler> = cluster.api();
    let first = eventually("the Deployment", TIMEOUT, || async {
        deployments.get_opt("iris").await.ok().flatten()
    })
    .await;
    let first_hash = spec_hash(&first).unwrap();
    eventually("the HPA", TIMEOUT, || async {
        hpas.get_opt("iris").await.ok().flatten()
    })
    .await;

    let patch = json!({"spec": {"model": {"version": "2"}, "batching": {"maxBatchSize": 8}}});
    mds.patch("iris", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let updated = eventually("a new pod template", TIMEOUT, || async {
        let d = deployments.get("iris").await.ok()?;
        (spec_hash(&d)? != first_hash).then_some(d)
    })
    .await;
    let env = updated.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "MODELSHIP_MODEL_VERSION" && e.value.as_deref() == Some("2"))
    );
    assert!(
        env.iter()
            .any(|e| e.name == "MODELSHIP_MAX_BATCH_SIZE" && e.value.as_deref() == Some("8"))
    );

    let patch = json!({"spec": {"autoscaling": null}});
    mds.patch("iris", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the HPA to be deleted", TIMEOUT, || async {
        hpas.get_opt("iris").await.ok()?.is_none().then_some(())
    })
    .await;
    // Without autoscaling the operator owns spec.replicas again (the schema default, 1).
    eventually("spec.replicas back to 1", TIMEOUT, || async {
        let d = deployments.get("iris").await.ok()?;
        (d.spec?.replicas == Some(1)).then_some(())
    })
    .await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn hand_edits_and_deletions_of_children_are_repaired() {
    let Some(cluster) = TestCluster::get("drift").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment("iris", json!({"model": {"uri": "builtin://iris"}})),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = cluster.api();
    let services: Api<Service> = cluster.api();
    eventually("the Deployment", TIMEOUT, || async {
        deployments.get_opt("iris").await.ok().flatten()
    })
    .await;
    let svc = eventually("the Service", TIMEOUT, || async {
        services.get_opt("iris").await.ok().flatten()
    })
    .await;

    // A hand edit, as `kubectl edit` would make it.
    let edit = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "evil/image:1"}]}}}});
    deployments
        .patch("iris", &PatchParams::default(), &Patch::Strategic(&edit))
        .await
        .unwrap();
    eventually("the image to be restored", TIMEOUT, || async {
        let d = deployments.get("iris").await.ok()?;
        let image = d.spec?.template.spec?.containers[0].image.clone()?;
        (image == harness::SERVER_IMAGE).then_some(())
    })
    .await;

    services
        .delete("iris", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Service to come back", TIMEOUT, || async {
        let new = services.get_opt("iris").await.ok()??;
        (new.uid() != svc.uid()).then_some(())
    })
    .await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn deleting_the_model_deployment_garbage_collects_its_children() {
    let Some(cluster) = TestCluster::get("gc").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "iris",
            json!({"model": {"uri": "builtin://iris"}, "autoscaling": {"maxReplicas": 2}}),
        ),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = cluster.api();
    let services: Api<Service> = cluster.api();
    let hpas: Api<HorizontalPodAutoscaler> = cluster.api();
    eventually("the HPA", TIMEOUT, || async {
        hpas.get_opt("iris").await.ok().flatten()
    })
    .await;
    mds.delete("iris", &DeleteParams::default()).await.unwrap();
    // The garbage collector of kube-controller-manager does this, not the operator.
    eventually("all children gone", Duration::from_secs(90), || async {
        let gone = deployments.get_opt("iris").await.ok()?.is_none()
            && services.get_opt("iris").await.ok()?.is_none()
            && hpas.get_opt("iris").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn invalid_objects_are_rejected_by_the_api_server_naming_the_field() {
    let Some(cluster) = TestCluster::get("cel").await else {
        return;
    };
    let mds: Api<ModelDeployment> = cluster.api();
    let cases = [
        (
            json!({"model": {"uri": "ftp://h/m.onnx"}}),
            "spec.model.uri must start with builtin://",
        ),
        (
            json!({"model": {"uri": "pvc://models"}}),
            "spec.model.uri must be pvc://CLAIM/PATH",
        ),
        (
            json!({"model": {"uri": "builtin://iris"}, "autoscaling": {"minReplicas": 3, "maxReplicas": 2}}),
            "spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas",
        ),
        (
            json!({"model": {"uri": "builtin://iris"}, "replicas": -1}),
            "spec.replicas must be >= 0",
        ),
        (
            json!({"model": {"uri": "builtin://iris"}, "batching": {"maxBatchSize": 0}}),
            "spec.batching.maxBatchSize must be between 1 and 4096",
        ),
        (
            json!({"model": {"uri": "builtin://iris"}, "batching": {"maxBatchDelay": "2s"}}),
            "spec.batching.maxBatchDelay must be at most 1s",
        ),
    ];
    for (spec, message) in cases {
        let err = mds
            .create(
                &PostParams::default(),
                &model_deployment("bad", spec.clone()),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(message),
            "{spec}: expected {message:?} in {err}"
        );
    }
    let ok = model_deployment(
        "ok",
        json!({"model": {"uri": "builtin://iris"}, "batching": {"maxBatchDelay": "500us"}}),
    );
    mds.create(&PostParams::default(), &ok).await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn scale_subresource_and_printer_columns_work() {
    let Some(cluster) = TestCluster::get("scale").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment("iris", json!({"model": {"uri": "builtin://iris"}})),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = cluster.api();
    eventually("the Deployment", TIMEOUT, || async {
        deployments.get_opt("iris").await.ok().flatten()
    })
    .await;

    // What `kubectl scale mdep iris --replicas 3` does.
    let scale = json!({"spec": {"replicas": 3}});
    mds.patch_scale("iris", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    eventually("the Deployment scaled to 3", TIMEOUT, || async {
        (deployments.get("iris").await.ok()?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    let scale = eventually("a selector on the scale subresource", TIMEOUT, || async {
        mds.get_scale("iris")
            .await
            .ok()
            .filter(|s| s.status.as_ref().is_some_and(|s| s.selector.is_some()))
    })
    .await;
    assert_eq!(scale.spec.unwrap().replicas, Some(3));

    // What `kubectl get mdep` shows.
    let table = cluster.table("modeldeployments").await;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns[..5], ["Name", "Ready", "Model", "URL", "Age"]);
    let row = &table["rows"][0]["cells"];
    assert_eq!(row[2], "iris");
    cluster.cleanup().await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let Some(cluster) = TestCluster::get("leader").await else {
        return;
    };
    let election = |id: &str| {
        vec![
            "--leader-election".to_string(),
            "--lease-name=modelship-operator-test".into(),
            format!("--lease-namespace={}", cluster.namespace),
            "--lease-duration-seconds=4".into(),
            format!("--identity={id}"),
        ]
    };
    let leases: Api<Lease> = cluster.api();
    let holder = || async {
        leases
            .get_opt("modelship-operator-test")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    let mut first = Operator::start(&cluster, &election("first"));
    eventually("first to lead", TIMEOUT, || async {
        (holder().await? == "first").then_some(())
    })
    .await;
    let second = Operator::start(&cluster, &election("second"));
    second.wait_for_log("standing by", TIMEOUT).await;

    let mds: Api<ModelDeployment> = cluster.api();
    let deployments: Api<Deployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment("one", json!({"model": {"uri": "builtin://iris"}})),
    )
    .await
    .unwrap();
    eventually("the leader to build one", TIMEOUT, || async {
        deployments.get_opt("one").await.ok().flatten()
    })
    .await;
    assert_eq!(
        second
            .metric("modelship_operator_reconciliations_total")
            .await,
        Some(0.0)
    );
    assert_eq!(second.metric("modelship_operator_leader").await, Some(0.0));

    // Killed without a chance to release the Lease: the standby waits out the lease duration.
    first.kill();
    eventually("second to lead", Duration::from_secs(20), || async {
        (holder().await? == "second").then_some(())
    })
    .await;
    mds.create(
        &PostParams::default(),
        &model_deployment("two", json!({"model": {"uri": "builtin://iris"}})),
    )
    .await
    .unwrap();
    eventually("the new leader to build two", TIMEOUT, || async {
        deployments.get_opt("two").await.ok().flatten()
    })
    .await;
    assert_eq!(second.metric("modelship_operator_leader").await, Some(1.0));
    cluster.cleanup().await;
}
