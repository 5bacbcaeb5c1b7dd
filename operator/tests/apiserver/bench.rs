//! The measurement behind the operator's numbers in docs/benchmarks.md.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, PostParams};
use modelship_operator::crd::ModelDeployment;
use serde_json::json;

use crate::harness::{Operator, TestCluster, eventually, model_deployment};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A measurement, not a pass/fail test: how long the operator takes to apply the children of
/// many ModelDeployments created at once, and its peak RSS. Run by hand:
///
/// ```sh
/// MODELSHIP_TEST_KUBECONFIG=... MODELSHIP_BENCH_COUNT=1000 \
///   cargo test --release -p modelship-operator --test apiserver -- --ignored --nocapture bench_
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
    let seconds = operator
        .metric("modelship_operator_reconcile_duration_seconds_sum")
        .await;
    let mean_ms = seconds
        .zip(reconciles)
        .map(|(s, n)| (s / n * 1000.0).round());
    println!(
        "bench: {count} ModelDeployments: created in {created:.1?}; all Deployments and Services applied after {children:.1?}; \
         all statuses after {statuses:.1?}; {reconciles:?} reconciliations, mean {mean_ms:?} ms each; operator peak RSS {} MiB",
        operator.peak_rss_kib().unwrap_or(0) / 1024
    );
    cluster.cleanup().await;
}
