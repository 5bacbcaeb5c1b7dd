//! `spec.expose` against a real API server: without the Gateway API the model is still
//! deployed and `Exposed` says why there is no route; the real Gateway API CRDs (v1.4.0,
//! standard channel, from the Go module `sigs.k8s.io/gateway-api`) installed later make the
//! HTTPRoute appear without an operator restart, and it passes their validation; `Exposed`
//! waits for a Gateway to accept the HTTPRoute and the GRPCRoute beside it (their status,
//! written here as a controller would); removing `spec.expose` deletes both.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use modelship_operator::crd::ModelDeployment;
use modelship_operator::gateway_api::{GRPCRoute, HTTPRoute};
use serde_json::json;

use crate::harness::{Operator, TestCluster, eventually, model_deployment, skip};

/// The Gateway API release whose CRDs the test installs (the one Traefik v3.6 pins).
const GATEWAY_API: &str = "sigs.k8s.io/gateway-api@v1.4.0";
/// Longer than the operator's discovery cache and requeue (30 s each).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(100);
const TIMEOUT: Duration = Duration::from_secs(30);

/// `config/crd/standard` of the Gateway API module: from the Go module cache, downloaded
/// through the module proxy when it is not there yet. `None` when Go cannot get it.
fn gateway_api_crds() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MODELSHIP_GATEWAY_API_CRDS") {
        return Some(PathBuf::from(dir));
    }
    let scratch = tempfile::tempdir().ok()?;
    let out = Command::new("go")
        .args(["mod", "download", "-json", GATEWAY_API])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(scratch.path())
        .output()
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let dir = PathBuf::from(info["Dir"].as_str()?).join("config/crd/standard");
    dir.is_dir().then_some(dir)
}

/// The Gateway API CRDs in the cluster (the `gateway.networking.k8s.io` group).
async fn gateway_crds(crds: &Api<CustomResourceDefinition>) -> Vec<String> {
    crds.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.spec.group == "gateway.networking.k8s.io")
        .map(|c| c.name_any())
        .collect()
}

async fn delete_gateway_crds(crds: &Api<CustomResourceDefinition>) {
    for name in gateway_crds(crds).await {
        let _ = crds.delete(&name, &DeleteParams::default()).await;
    }
    eventually("the Gateway API CRDs gone", TIMEOUT, || async {
        gateway_crds(crds).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn expose_without_the_gateway_api_then_with_its_crds_installed() {
    let Some(cluster) = TestCluster::get("expose").await else {
        return;
    };
    let crds = Api::<CustomResourceDefinition>::all(cluster.client.clone());
    // A control plane without the Gateway API (a previous run's leftovers removed).
    delete_gateway_crds(&crds).await;

    let _operator = Operator::start(
        &cluster,
        &[
            "--expose-mode=gateway".into(),
            "--gateway-name=public".into(),
            format!("--gateway-namespace={}", cluster.namespace),
        ],
    );
    let mds: Api<ModelDeployment> = cluster.api();
    mds.create(
        &PostParams::default(),
        &model_deployment(
            "iris",
            json!({
                "model": {"uri": "builtin://iris"},
                "expose": {"host": "iris.example.com", "path": "/team/iris"},
            }),
        ),
    )
    .await
    .unwrap();

    let deployments: Api<Deployment> = cluster.api();
    let services: Api<Service> = cluster.api();
    eventually("the Deployment and the Service", TIMEOUT, || async {
        let d = deployments.get_opt("iris").await.ok().flatten();
        let s = services.get_opt("iris").await.ok().flatten();
        (d.is_some() && s.is_some()).then_some(())
    })
    .await;
    let exposed = |reason: &'static str| {
        let mds = mds.clone();
        move || {
            let mds = mds.clone();
            async move {
                let md = mds.get("iris").await.ok()?;
                let status = md.status?;
                let c = status.conditions.iter().find(|c| c.type_ == "Exposed")?;
                let message = (c.reason == reason).then(|| c.message.clone())?;
                Some((message, status))
            }
        }
    };
    let (message, status) = eventually(
        "Exposed=False/ExposeUnavailable",
        TIMEOUT,
        exposed("ExposeUnavailable"),
    )
    .await;
    assert!(message.contains("Gateway API"), "{message}");
    let address = status.address.expect("status.address").url;
    assert_eq!(status.url.as_deref(), Some(address.as_str()));

    let Some(dir) = gateway_api_crds() else {
        skip(
            "expose_without_the_gateway_api_then_with_its_crds_installed (second half)",
            &format!(
                "cannot get {GATEWAY_API} with `go mod download`; set MODELSHIP_GATEWAY_API_CRDS to its config/crd/standard"
            ),
        );
        cluster.cleanup().await;
        return;
    };
    // The operator is not restarted: it must find the CRDs on its own.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("modelship-integration-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let routes: Api<HTTPRoute> = cluster.api();
    let route = eventually("the HTTPRoute", ROUTE_TIMEOUT, || async {
        routes.get_opt("iris").await.ok().flatten()
    })
    .await;
    assert_eq!(route.spec.hostnames, ["iris.example.com"]);
    assert_eq!(route.owner_references()[0].kind, "ModelDeployment");
    // No Gateway controller runs here: the route is applied, and nobody has taken it yet.
    eventually(
        "Exposed=False/RoutePending",
        TIMEOUT,
        exposed("RoutePending"),
    )
    .await;
    // As a Gateway's controller would: accept the route in its status (validated by the real
    // CRD's schema); the operator reads it back within seconds.
    let accepted = |parent: serde_json::Value, generation: Option<i64>| {
        json!({"status": {"parents": [{
            "parentRef": parent,
            "controllerName": "example.com/gateway-controller",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                            "message": "", "observedGeneration": generation.unwrap_or(1),
                            "lastTransitionTime": "2026-12-02T00:00:00Z"}],
        }]}})
    };
    let parent = serde_json::to_value(&route.spec.parent_refs[0]).unwrap();
    routes
        .patch_status(
            "iris",
            &PatchParams::default(),
            &Patch::Merge(&accepted(parent, route.metadata.generation)),
        )
        .await
        .unwrap();
    // The GRPCRoute (v1.4.0 serves grpcroutes) is not taken yet: still pending, and the
    // message names the route that waits.
    let grpc_routes: Api<GRPCRoute> = cluster.api();
    let grpc_route = eventually("the GRPCRoute", TIMEOUT, || async {
        grpc_routes.get_opt("iris").await.ok().flatten()
    })
    .await;
    eventually(
        "Exposed=False/RoutePending for the GRPCRoute",
        TIMEOUT,
        || {
            let pending = exposed("RoutePending");
            async move {
                let (message, _) = pending().await?;
                message.starts_with("GRPCRoute applied").then_some(())
            }
        },
    )
    .await;
    let parent = serde_json::to_value(&grpc_route.spec.parent_refs[0]).unwrap();
    grpc_routes
        .patch_status(
            "iris",
            &PatchParams::default(),
            &Patch::Merge(&accepted(parent, grpc_route.metadata.generation)),
        )
        .await
        .unwrap();
    let (message, status) = eventually("Exposed=True/Routed", TIMEOUT, exposed("Routed")).await;
    assert!(
        message.contains("HTTPRoute and GRPCRoute accepted by Gateway"),
        "{message}"
    );
    assert_eq!(
        status.url.as_deref(),
        Some("http://iris.example.com/team/iris/v2/models/iris")
    );

    // Removing spec.expose removes the route.
    mds.patch(
        "iris",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"expose": null}})),
    )
    .await
    .unwrap();
    eventually(
        "the HTTPRoute and the GRPCRoute deleted",
        TIMEOUT,
        || async {
            let http = routes.get_opt("iris").await.ok()?;
            let grpc = grpc_routes.get_opt("iris").await.ok()?;
            (http.is_none() && grpc.is_none()).then_some(())
        },
    )
    .await;
    delete_gateway_crds(&crds).await;
    cluster.cleanup().await;
}
