//! Status conditions from pod failures.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use modelship_operator::crd::ModelDeployment;
use serde_json::json;

use crate::harness::{self, Operator, TestCluster, eventually, model_deployment};

const TIMEOUT: Duration = Duration::from_secs(30);

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
    // The image comes with each ModelDeployment (spec.server.image, never pulled).
    let _operator = Operator::start(&cluster, &[]);
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
