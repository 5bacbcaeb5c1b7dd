//! What the status write's precondition rests on, against a real API server: a status
//! written for a ModelDeployment that was deleted and created again under its name. The
//! API server keeps the stored `metadata.uid` in a status write (so a UID in the patch
//! guards nothing), but refuses a stale `metadata.resourceVersion` with 409 Conflict: the
//! operator's status writes carry the version they were computed from
//! (`reconcile/status_patch.rs`).

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use modelship_operator::crd::ModelDeployment;
use serde_json::json;

use crate::TIMEOUT;
use crate::harness::{TestCluster, eventually, model_deployment};

#[tokio::test]
async fn a_status_computed_for_a_deleted_object_never_lands_on_its_successor() {
    let Some(cluster) = TestCluster::get("recreate").await else {
        return;
    };
    let mds: Api<ModelDeployment> = cluster.api();
    let spec = json!({"model": {"uri": "builtin://iris"}, "replicas": 0});
    let first = mds
        .create(
            &PostParams::default(),
            &model_deployment("again", spec.clone()),
        )
        .await
        .unwrap();
    mds.delete("again", &DeleteParams::default()).await.unwrap();
    eventually("the first object gone", TIMEOUT, || async {
        mds.get_opt("again").await.ok()?.is_none().then_some(())
    })
    .await;
    let second = mds
        .create(&PostParams::default(), &model_deployment("again", spec))
        .await
        .unwrap();
    assert_ne!(first.uid(), second.uid());

    let status = |metadata: serde_json::Value| {
        json!({"apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
               "metadata": metadata, "status": {"observedGeneration": 7}})
    };
    let apply = PatchParams::apply("modelship-operator").force();
    // The first object's resource version: refused.
    let stale = status(json!({"resourceVersion": first.resource_version()}));
    let refused = mds
        .patch_status("again", &apply, &Patch::Apply(&stale))
        .await
        .expect_err("a stale resourceVersion must be refused");
    assert!(
        matches!(&refused, kube::Error::Api(e) if e.code == 409),
        "{refused:?}"
    );
    // The first object's UID alone: not refused, the stored UID kept (why the operator
    // does not rely on it).
    let by_uid = status(json!({"uid": first.uid()}));
    let written = mds
        .patch_status("again", &apply, &Patch::Apply(&by_uid))
        .await
        .expect("a status write with another object's UID is taken");
    assert_eq!(written.uid(), second.uid());
    // The successor's own version: written.
    let current = mds.get("again").await.unwrap();
    let own = status(json!({"resourceVersion": current.resource_version()}));
    let written = mds
        .patch_status("again", &apply, &Patch::Apply(&own))
        .await
        .unwrap();
    assert_eq!(written.status.unwrap().observed_generation, Some(7));
    cluster.cleanup().await;
}
