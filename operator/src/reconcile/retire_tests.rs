//! `reconcile` of the GRPCRoute beside the HTTPRoute, and of a canary removed from the spec
//! (retired after the route, with its grace), against the mock API server.

use http::{Method, StatusCode};
use kube::Resource;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::tests::{
    DEPLOYMENTS, EVENTS, MODEL_DEPLOYMENTS, SERVICES, rolled_out, run_with, stored_with_status,
};
use super::traffic::{CANARY_RETIRE_GRACE, RETIRING_SINCE};
use super::traffic_tests::{
    DISCOVERY, HTTPROUTES, accepted, canary_at_root, canary_pods, gateway_api_installed,
    gateway_mode, previously_exposed_status, weights,
};
use super::*;
use crate::build::fixtures;
use crate::mock_api::{self, echo};

/// The discovery document of a cluster that serves HTTPRoutes and GRPCRoutes.
fn gateway_api_with_grpcroutes(r: &mock_api::Received) -> (StatusCode, Value) {
    let (status, mut list) = gateway_api_installed(r);
    list["resources"].as_array_mut().unwrap().push(json!({
        "name": "grpcroutes", "singularName": "grpcroute", "namespaced": true,
        "kind": "GRPCRoute", "verbs": ["get", "list", "watch", "patch", "delete"]}));
    (status, list)
}

const GRPCROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/grpcroutes";

type Reply = fn(&mock_api::Received) -> (StatusCode, Value);

#[tokio::test]
async fn where_grpcroutes_are_served_the_grpcroute_follows_the_httproute_weights() {
    // Both routes accepted by their Gateway: Exposed names both.
    let (action, exposed) = grpcroute_with(accepted).await;
    assert_eq!(action, Action::requeue(RESYNC));
    assert_eq!(exposed["reason"], "Routed");
    let message = exposed["message"].as_str().unwrap();
    assert!(
        message.starts_with("HTTPRoute and GRPCRoute accepted by Gateway gateways/public"),
        "{message}"
    );
    // The GRPCRoute not taken yet: not exposed yet, looked at again soon.
    let (action, exposed) = grpcroute_with(echo).await;
    assert_eq!(action, Action::requeue(ROUTE_PENDING_RECHECK));
    assert_eq!(exposed["reason"], "RoutePending");
    let message = exposed["message"].as_str().unwrap();
    assert!(
        message.starts_with("GRPCRoute applied; no Gateway"),
        "{message}"
    );
}

/// One reconcile of the canary at 90/10 where GRPCRoutes are served, the GRPCRoute's apply
/// answered by `grpc_reply`: the action and the `Exposed` condition written.
async fn grpcroute_with(grpc_reply: Reply) -> (Action, Value) {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let exposed = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let seen = exposed.clone();
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_with_grpcroutes)
            .await;
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), |r| {
            rolled_out(r, 1)
        })
        .await;
        let service = api
            .expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        assert_eq!(
            service.body["spec"]["ports"][1],
            json!({"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP",
                   "appProtocol": "kubernetes.io/h2c"})
        );
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris-canary"), echo)
            .await;
        let canary_service = api
            .expect(Method::PATCH, &format!("{SERVICES}/iris-canary"), echo)
            .await;
        assert_eq!(canary_service.body["spec"]["ports"][1]["name"], "grpc");
        let route = api
            .expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
            .await;
        assert_eq!(
            weights(&route.body),
            [("iris".into(), 90), ("iris-canary".into(), 10)]
        );
        // After the HTTPRoute: the GRPCRoute, on its own host, with the same split.
        let grpc = api
            .expect(Method::PATCH, &format!("{GRPCROUTES}/iris"), grpc_reply)
            .await;
        grpc.assert_server_side_apply();
        assert_eq!(grpc.body["kind"], "GRPCRoute");
        assert_eq!(
            grpc.body["spec"]["hostnames"],
            json!(["iris-grpc.example.com"])
        );
        assert_eq!(
            grpc.body["spec"]["parentRefs"],
            route.body["spec"]["parentRefs"]
        );
        assert_eq!(
            grpc.body["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "iris", "port": 8081, "weight": 90},
                   {"name": "iris-canary", "port": 8081, "weight": 10}])
        );
        api.expect(Method::POST, EVENTS, echo).await;
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        let conditions = patch.body["status"]["conditions"].as_array().unwrap();
        *seen.lock().unwrap() = conditions
            .iter()
            .find(|c| c["type"] == "Exposed")
            .cloned()
            .expect("an Exposed condition");
        api
    })
    .await;
    let exposed = exposed.lock().unwrap().clone();
    (result.unwrap(), exposed)
}

#[tokio::test]
async fn removing_expose_deletes_the_grpcroute_it_owns_with_the_httproute() {
    let mut md = fixtures::model_deployment("iris.yaml");
    let mut status = previously_exposed_status();
    status.canary = None;
    status.conditions.retain(|c| c.type_ == "Exposed");
    md.status = Some(status);
    let uid = md.meta().uid.clone().unwrap();
    let owned = move |kind: &str, name: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind, "spec": {},
               "metadata": {"name": name, "namespace": "ml", "ownerReferences": [{
                   "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                   "uid": uid, "controller": true}]}})
    };
    let stored = stored_with_status(&md);
    let result = run_with(
        md,
        Caches::default(),
        gateway_mode(),
        |mut api| async move {
            api.expect(Method::GET, DISCOVERY, gateway_api_with_grpcroutes)
                .await;
            api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
                .await;
            api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
                .await;
            for (path, kind) in [(HTTPROUTES, "HTTPRoute"), (GRPCROUTES, "GRPCRoute")] {
                let object = owned(kind, "iris");
                let answer = object.clone();
                api.expect(Method::GET, &format!("{path}/iris"), |_| {
                    (StatusCode::OK, answer)
                })
                .await;
                api.expect(Method::DELETE, &format!("{path}/iris"), |_| {
                    (StatusCode::OK, object)
                })
                .await;
            }
            // One Event for both.
            let event = api.expect(Method::POST, EVENTS, echo).await;
            assert_eq!(event.body["reason"], "RouteRemoved");
            let note = event.body["note"].as_str().unwrap();
            assert!(
                note.starts_with("deleted HTTPRoute and GRPCRoute iris:"),
                "{note}"
            );
            api.expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
            api
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

/// The primary `iris` exposed at the root, its canary removed from the spec after it had
/// `traffic_percent` of the traffic.
fn canary_removed_after(traffic_percent: i32) -> ModelDeployment {
    let mut md = canary_at_root();
    md.spec.canary = None;
    let mut status = previously_exposed_status();
    status.canary.as_mut().unwrap().traffic_percent = traffic_percent;
    md.status = Some(status);
    md
}

/// The route applied with the primary alone, then the canary's Deployment (answered as
/// `deployment`) read and marked retiring, not deleted: the mark's request.
pub(super) async fn expect_primary_alone_then_canary_marked(
    api: &mut mock_api::ApiServer,
    deployment: Value,
) -> mock_api::Received {
    let route = api
        .expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
        .await;
    let rules = route.body["spec"]["rules"].as_array().unwrap();
    assert!(rules.iter().all(|r| {
        let backends = r["backendRefs"].as_array().unwrap();
        backends.len() == 1 && backends[0]["name"] == "iris"
    }));
    api.expect(Method::GET, &format!("{DEPLOYMENTS}/iris-canary"), |_| {
        (StatusCode::OK, deployment)
    })
    .await;
    api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris-canary"), echo)
        .await
}

/// The canary's Deployment as the API server has it: owned by `md`, with `annotations`.
pub(super) fn canary_deployment(md: &ModelDeployment, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {},
           "metadata": {"name": "iris-canary", "namespace": "ml", "annotations": annotations,
                        "ownerReferences": [{"apiVersion": "modelship.io/v1alpha1",
                            "kind": "ModelDeployment", "name": "iris",
                            "uid": md.meta().uid.clone().unwrap(), "controller": true}]}})
}

#[tokio::test]
async fn a_canary_that_had_traffic_is_kept_while_the_gateway_moves_off_it() {
    let md = canary_removed_after(10);
    let deployment = canary_deployment(&md, json!({}));
    let stored = stored_with_status(&md);
    let result = run_with(
        md,
        Caches::default(),
        gateway_mode(),
        |mut api| async move {
            api.expect(Method::GET, DISCOVERY, gateway_api_installed)
                .await;
            api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
                .await;
            api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
                .await;
            let mark = expect_primary_alone_then_canary_marked(&mut api, deployment).await;
            let since = mark.body["metadata"]["annotations"][RETIRING_SINCE]
                .as_str()
                .unwrap();
            assert!(
                since.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
                "{since}"
            );
            api.expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
            api
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(CANARY_RETIRE_GRACE));
}

#[tokio::test]
async fn a_retiring_canary_is_deleted_once_its_grace_is_over() {
    let md = canary_removed_after(0);
    let long_ago = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(CANARY_RETIRE_GRACE.as_secs() as i64 + 1);
    let deployment = canary_deployment(&md, json!({RETIRING_SINCE: long_ago.to_string()}));
    let uid = md.meta().uid.clone().unwrap();
    let stored = stored_with_status(&md);
    let result = run_with(
        md,
        Caches::default(),
        gateway_mode(),
        |mut api| async move {
            api.expect(Method::GET, DISCOVERY, gateway_api_installed)
                .await;
            for path in [format!("{DEPLOYMENTS}/iris"), format!("{SERVICES}/iris")] {
                api.expect(Method::PATCH, &path, echo).await;
            }
            api.expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
                .await;
            let answer = deployment.clone();
            api.expect(Method::GET, &format!("{DEPLOYMENTS}/iris-canary"), |_| {
                (StatusCode::OK, answer)
            })
            .await;
            api.expect(
                Method::DELETE,
                &format!("{DEPLOYMENTS}/iris-canary"),
                |_| (StatusCode::OK, deployment),
            )
            .await;
            let service = json!({"apiVersion": "v1", "kind": "Service", "spec": {},
            "metadata": {"name": "iris-canary", "namespace": "ml", "ownerReferences": [{
                "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                "uid": uid, "controller": true}]}});
            let answer = service.clone();
            api.expect(Method::GET, &format!("{SERVICES}/iris-canary"), |_| {
                (StatusCode::OK, answer)
            })
            .await;
            api.expect(Method::DELETE, &format!("{SERVICES}/iris-canary"), |_| {
                (StatusCode::OK, service)
            })
            .await;
            let event = api.expect(Method::POST, EVENTS, echo).await;
            assert_eq!(event.body["reason"], "CanaryRemoved");
            api.expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
            api
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}
