//! Integration tests: the operator runs as a process against a real API server.
//!
//! They need a cluster with at least etcd, kube-apiserver and kube-controller-manager (the
//! control-plane mode of `tests/cluster`), given by `MODELSHIP_TEST_KUBECONFIG`:
//!
//! ```sh
//! make -f tests/cluster/cluster.mk cluster-up MODE=control-plane
//! MODELSHIP_TEST_KUBECONFIG=$PWD/.cluster/kubeconfig cargo test -p modelship-operator --test cluster
//! ```
//!
//! Without it every test prints why it was skipped and returns. Each test works in a namespace
//! of its own with an operator process watching only that namespace, so they run in parallel.

mod harness;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
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

/// Control-plane mode has no scheduler and no kubelet, so the test writes the pod statuses a
/// kubelet and a scheduler would write; the operator must notice (it watches pods) and report
/// across all pods.
#[tokio::test]
async fn pod_failures_from_all_pods_show_in_the_status() {
    let Some(cluster) = TestCluster::get("podstatus").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[]);
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "fraud",
            json!({"model": {"uri": "https://models.example/fraud.onnx"}, "replicas": 2}),
        ),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = cluster.api();
    let list = ListParams::default().labels("app.kubernetes.io/instance=fraud");
    let names = eventually(
        "two pods from the ReplicaSet",
        Duration::from_secs(60),
        || async {
            let items = pods.list(&list).await.ok()?.items;
            (items.len() == 2).then(|| items.iter().map(|p| p.name_any()).collect::<Vec<_>>())
        },
    )
    .await;

    let fetch_failed = json!({"status": {"phase": "Pending", "initContainerStatuses": [{
        "name": "fetch", "image": harness::SERVER_IMAGE, "imageID": "", "ready": false, "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "GET https://models.example/fraud.onnx: 404 Not Found"}}
    }]}});
    let unschedulable = json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    }]}});
    pods.patch_status(
        &names[0],
        &PatchParams::default(),
        &Patch::Merge(&fetch_failed),
    )
    .await
    .unwrap();
    pods.patch_status(
        &names[1],
        &PatchParams::default(),
        &Patch::Merge(&unschedulable),
    )
    .await
    .unwrap();

    let degraded = eventually("Degraded with ModelFetchFailed", TIMEOUT, || async {
        let md = mds.get("fraud").await.ok()?;
        let c = md
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded")?;
        (c.reason == "ModelFetchFailed").then_some(c)
    })
    .await;
    assert_eq!(degraded.status, "True");
    assert_eq!(
        degraded.message,
        "1 of 2 pods: GET https://models.example/fraud.onnx: 404 Not Found (also Unschedulable on 1)"
    );
    let events = eventually("a Warning event", TIMEOUT, || async {
        let events: Api<k8s_openapi::api::events::v1::Event> = cluster.api();
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ModelFetchFailed")
                    && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;
    assert!(events.note.unwrap().contains("404 Not Found"));
    cluster.cleanup().await;
}

/// Full mode (scheduler, kubelet, the server image imported): a model that cannot be fetched
/// and a pod that cannot be scheduled, for real. Needs `MODELSHIP_TEST_FULL_CLUSTER=1` and the
/// server image in the cluster as `MODELSHIP_TEST_SERVER_IMAGE` (`make cluster-image`).
#[tokio::test]
async fn full_cluster_reports_fetch_failures_and_unschedulable_pods() {
    let Some(image) = std::env::var("MODELSHIP_TEST_SERVER_IMAGE")
        .ok()
        .filter(|_| std::env::var_os("MODELSHIP_TEST_FULL_CLUSTER").is_some())
    else {
        harness::skip(
            "full",
            "needs a full-mode cluster: set MODELSHIP_TEST_FULL_CLUSTER=1 and MODELSHIP_TEST_SERVER_IMAGE to the server image imported with `make cluster-image`",
        );
        return;
    };
    let Some(cluster) = TestCluster::get("full").await else {
        return;
    };
    let _operator = Operator::start(&cluster, &[format!("--server-image={image}")]);
    let mds: Api<ModelDeployment> = cluster.api();
    let never = json!({"image": image, "imagePullPolicy": "Never"});
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "nofetch",
            json!({"model": {"uri": "http://127.0.0.1:9/missing.onnx"}, "server": never}),
        ),
    )
    .await
    .unwrap();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "nogpu",
            json!({"model": {"uri": "builtin://iris"}, "server": never, "resources": {"limits": {"nvidia.com/gpu": "1"}}}),
        ),
    )
    .await
    .unwrap();
    for (name, reason) in [("nofetch", "ModelFetchFailed"), ("nogpu", "Unschedulable")] {
        let c = eventually(
            &format!("{name}: Degraded with {reason}"),
            Duration::from_secs(120),
            || async {
                let md = mds.get(name).await.ok()?;
                let c = md
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Degraded")?;
                (c.reason == reason).then_some(c)
            },
        )
        .await;
        eprintln!("{name}: {}", c.message);
        assert!(!c.message.is_empty());
    }
    cluster.cleanup().await;
}

/// A measurement, not a pass/fail test: how long the operator takes to apply the children of
/// many ModelDeployments created at once, and its peak RSS. Run by hand:
///
/// ```sh
/// MODELSHIP_TEST_KUBECONFIG=... MODELSHIP_BENCH_COUNT=1000 \
///   cargo test --release -p modelship-operator --test cluster -- --ignored --nocapture bench_
/// ```
#[tokio::test]
#[ignore = "a measurement, run by hand (see the doc comment)"]
async fn bench_apply_children_of_many_model_deployments() {
    use futures::StreamExt;
    let Some(cluster) = TestCluster::get("bench").await else {
        return;
    };
    let count: usize = std::env::var("MODELSHIP_BENCH_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let operator = Operator::start(&cluster, &[]);
    eventually("the operator to be ready", TIMEOUT, || async {
        operator.ready().await.then_some(())
    })
    .await;

    let mds: Api<ModelDeployment> = cluster.api();
    let deployments: Api<Deployment> = cluster.api();
    let services: Api<Service> = cluster.api();
    let started = std::time::Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let mds = mds.clone();
            async move {
                let md = model_deployment(
                    &format!("m{i:04}"),
                    json!({"model": {"uri": "builtin://iris"}}),
                );
                mds.create(&PostParams::default(), &md).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=modelship-operator");
    // Polled once a second so that the measurement does not load the API server much.
    eventually("all children", Duration::from_secs(600), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let d = deployments.list_metadata(&managed).await.ok()?.items.len();
        let s = services.list_metadata(&managed).await.ok()?.items.len();
        (d == count && s == count).then_some(())
    })
    .await;
    let children = started.elapsed();
    eventually("every status written", Duration::from_secs(600), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all = mds.list(&ListParams::default()).await.ok()?.items;
        all.iter()
            .all(|md| {
                md.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation.is_some())
            })
            .then_some(())
    })
    .await;
    let statuses = started.elapsed();
    let reconciles = operator
        .metric("modelship_operator_reconciliations_total")
        .await;
    println!(
        "bench: {count} ModelDeployments: created in {created:.1?}; all Deployments and Services applied after {children:.1?}; \
         all statuses after {statuses:.1?}; reconciliations {reconciles:?}; operator peak RSS {} MiB",
        operator.peak_rss_kib().unwrap_or(0) / 1024
    );
    cluster.cleanup().await;
}
