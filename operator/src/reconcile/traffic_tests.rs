//! `reconcile` of exposed ModelDeployments and canaries against the mock API server: the
//! discovery request, the route and canary children applied or deleted, the conditions.

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

use super::tests::{
    DEPLOYMENTS, EVENTS, MODEL_DEPLOYMENTS, SERVICES, condition, rolled_out, run_with,
    stored_with_status,
};
use super::*;
use crate::build::fixtures;
use crate::config::{ExposeConfig, ExposeMode, GatewayRef};
use crate::crd::ModelDeploymentStatus;
use crate::mock_api::{self, echo};

pub(super) const DISCOVERY: &str = "/apis/gateway.networking.k8s.io/v1";
pub(super) const HTTPROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/ml/ingresses";

pub(super) fn gateway_mode() -> Config {
    Config {
        expose: ExposeConfig {
            mode: ExposeMode::Gateway,
            gateway: Some(GatewayRef {
                name: "public".into(),
                namespace: Some("gateways".into()),
                section_name: None,
            }),
            ..ExposeConfig::default()
        },
        ..Config::default()
    }
}

/// The discovery document of a cluster that serves HTTPRoutes.
pub(super) fn gateway_api_installed(_: &mock_api::Received) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "gateway.networking.k8s.io/v1",
            "resources": [{"name": "httproutes", "singularName": "httproute", "namespaced": true,
                           "kind": "HTTPRoute", "verbs": ["get", "list", "watch", "patch", "delete"]}],
        }),
    )
}

/// The applied HTTPRoute as a Gateway that took it reports it: the request's body with a
/// `status` whose parent accepted it and resolved its backends.
pub(super) fn accepted(r: &mock_api::Received) -> (StatusCode, Value) {
    let mut route = r.body.clone();
    route["metadata"]["generation"] = json!(1);
    let condition = |type_: &str| {
        json!({"type": type_, "status": "True", "reason": type_,
        "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-12-02T00:00:00Z"})
    };
    route["status"] = json!({"parents": [{
        "parentRef": {"name": "public", "namespace": "gateways"},
        "controllerName": "traefik.io/gateway-controller",
        "conditions": [condition("Accepted"), condition("ResolvedRefs")],
    }]});
    (StatusCode::OK, route)
}

/// The applies of the primary's and the canary's Deployment and Service, answered as sent.
async fn apply_primary_and_canary(api: &mut mock_api::ApiServer) {
    for path in [
        format!("{DEPLOYMENTS}/iris"),
        format!("{SERVICES}/iris"),
        format!("{DEPLOYMENTS}/iris-canary"),
        format!("{SERVICES}/iris-canary"),
    ] {
        api.expect(Method::PATCH, &path, echo).await;
    }
}

/// Caches holding `ready` Ready pods of the canary of `iris`.
pub(super) fn canary_pods(ready: usize) -> Caches {
    let (reader, mut writer) = reflector::store();
    for i in 0..ready {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("iris-canary-{i}"), "namespace": "ml", "labels": {
                "app.kubernetes.io/name": "modelship", "app.kubernetes.io/instance": "iris-canary",
                "modelship.io/variant": "canary", "modelship.io/model-deployment": "iris"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    Caches {
        pods: vec![reader],
        ..Caches::default()
    }
}

/// The canary fixture at the root path (an Ingress has no rewrite).
pub(super) fn canary_at_root() -> ModelDeployment {
    let mut md = fixtures::model_deployment("canary.yaml");
    md.spec.expose.as_mut().unwrap().path = None;
    md
}

pub(super) fn weights(route: &Value) -> Vec<(String, i64)> {
    let rules = route["spec"]["rules"].as_array().unwrap();
    rules.last().unwrap()["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_exposed_canary_with_ready_pods_gets_its_weight_in_the_httproute() {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_installed)
            .await;
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), |r| {
            rolled_out(r, 1)
        })
        .await;
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        let canary = api
            .expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris-canary"), echo)
            .await;
        canary.assert_server_side_apply();
        assert_eq!(
            canary.body["metadata"]["labels"]["modelship.io/variant"],
            "canary"
        );
        api.expect(Method::PATCH, &format!("{SERVICES}/iris-canary"), echo)
            .await
            .assert_server_side_apply();
        let route = api
            .expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
            .await;
        route.assert_server_side_apply();
        assert_eq!(route.body["spec"]["hostnames"], json!(["iris.example.com"]));
        assert_eq!(
            weights(&route.body),
            [("iris".into(), 90), ("iris-canary".into(), 10)]
        );
        api.expect(Method::POST, EVENTS, echo).await;
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        let status = &patch.body["status"];
        assert_eq!(status["url"], "http://iris.example.com/v2/models/iris");
        assert_eq!(
            status["address"]["url"],
            "http://iris.ml.svc.cluster.local/v2/models/iris"
        );
        assert_eq!(status["canary"]["trafficPercent"], 10);
        assert_eq!(status["canary"]["readyReplicas"], 1);
        assert_eq!(status["canary"]["model"]["version"], "2");
        assert_eq!(status["canary"].get("reason"), None);
        assert_eq!(
            condition(&patch, "Exposed"),
            ("True".into(), "Routed".into())
        );
        assert_eq!(
            condition(&patch, "CanaryReady"),
            ("True".into(), "CanaryServing".into())
        );
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_canary_without_ready_pods_gets_no_traffic_and_the_status_says_why() {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let result = run_with(md, canary_pods(0), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_installed)
            .await;
        apply_primary_and_canary(&mut api).await;
        let route = api
            .expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
            .await;
        assert_eq!(
            weights(&route.body),
            [("iris".into(), 100), ("iris-canary".into(), 0)]
        );
        // Loading is no news: no Event for CanaryNotReady, nothing serves yet either.
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        let canary = &patch.body["status"]["canary"];
        assert_eq!(canary["trafficPercent"], 0);
        assert_eq!(canary["reason"], "CanaryNotReady");
        assert_eq!(
            condition(&patch, "CanaryReady"),
            ("False".into(), "CanaryNotReady".into())
        );
        api
    })
    .await;
    assert!(result.is_ok());
}

/// A status that reported a route and a canary, as the operator wrote it before.
pub(super) fn previously_exposed_status() -> ModelDeploymentStatus {
    let condition = |type_: &str, reason: &str| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ),
    };
    ModelDeploymentStatus {
        canary: Some(Default::default()),
        conditions: vec![
            condition("Exposed", "Routed"),
            condition("CanaryReady", "CanaryServing"),
        ],
        ..ModelDeploymentStatus::default()
    }
}

#[tokio::test]
async fn removing_expose_and_canary_deletes_the_route_and_canary_it_owns() {
    let mut md = fixtures::model_deployment("iris.yaml");
    md.status = Some(previously_exposed_status());
    let uid = md.meta().uid.clone().unwrap();
    let owned = move |kind: &str, api_version: &str, name: &str| {
        json!({"apiVersion": api_version, "kind": kind, "spec": {},
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
            api.expect(Method::GET, DISCOVERY, gateway_api_installed)
                .await;
            api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
                .await;
            api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
                .await;
            // The route first, the canary last.
            let route = owned("HTTPRoute", "gateway.networking.k8s.io/v1", "iris");
            let answer = route.clone();
            api.expect(Method::GET, &format!("{HTTPROUTES}/iris"), |_| {
                (StatusCode::OK, answer)
            })
            .await;
            api.expect(Method::DELETE, &format!("{HTTPROUTES}/iris"), |_| {
                (StatusCode::OK, route)
            })
            .await;
            let event = api.expect(Method::POST, EVENTS, echo).await;
            assert_eq!(event.body["reason"], "RouteRemoved");
            for (path, kind, api_version) in [
                (DEPLOYMENTS, "Deployment", "apps/v1"),
                (SERVICES, "Service", "v1"),
            ] {
                let object = owned(kind, api_version, "iris-canary");
                let answer = object.clone();
                api.expect(Method::GET, &format!("{path}/iris-canary"), |_| {
                    (StatusCode::OK, answer)
                })
                .await;
                api.expect(Method::DELETE, &format!("{path}/iris-canary"), |_| {
                    (StatusCode::OK, object)
                })
                .await;
            }
            let event = api.expect(Method::POST, EVENTS, echo).await;
            assert_eq!(event.body["reason"], "CanaryRemoved");
            let patch = api
                .expect(
                    Method::PATCH,
                    &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                    stored,
                )
                .await;
            let status = &patch.body["status"];
            assert_eq!(status["url"], status["address"]["url"]);
            assert_eq!(status.get("canary"), None);
            let types: Vec<&str> = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["type"].as_str().unwrap())
                .collect();
            assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
            api
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn without_the_gateway_api_the_rest_is_applied_and_expose_is_unavailable() {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        // What the API server answers for a group it does not serve.
        api.expect(Method::GET, DISCOVERY, |_| {
            mock_api::status(StatusCode::NOT_FOUND)
        })
        .await;
        apply_primary_and_canary(&mut api).await;
        // No route is applied; one Event says why (the canary's condition repeats it).
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(
            (&event.body["type"], &event.body["reason"]),
            (&json!("Warning"), &json!("ExposeUnavailable"))
        );
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        assert_eq!(
            condition(&patch, "Exposed"),
            ("False".into(), "ExposeUnavailable".into())
        );
        let status = &patch.body["status"];
        assert_eq!(
            status["url"],
            "http://iris.ml.svc.cluster.local/v2/models/iris"
        );
        assert_eq!(status["canary"]["trafficPercent"], 0);
        assert_eq!(status["canary"]["reason"], "ExposeUnavailable");
        let message = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Exposed")
            .unwrap()["message"]
            .clone();
        assert!(
            message.as_str().unwrap().contains("Gateway API"),
            "{message}"
        );
        api
    })
    .await;
    // Looked at again soon, so that CRDs installed later are picked up.
    assert_eq!(result.unwrap(), Action::requeue(DISCOVERY_TTL));
}

#[tokio::test]
async fn ingress_mode_applies_an_ingress_and_refuses_the_canary_with_a_condition() {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let config = Config {
        expose: ExposeConfig {
            mode: ExposeMode::Ingress,
            ingress_class: Some("traefik".into()),
            ..ExposeConfig::default()
        },
        ..Config::default()
    };
    let result = run_with(md, canary_pods(0), config, |mut api| async move {
        // No discovery, and no canary children.
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
            .await;
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        let ingress = api
            .expect(Method::PATCH, &format!("{INGRESSES}/iris"), echo)
            .await;
        ingress.assert_server_side_apply();
        assert_eq!(ingress.body["spec"]["ingressClassName"], "traefik");
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(
            (&event.body["type"], &event.body["reason"]),
            (&json!("Warning"), &json!("CanaryUnsupported"))
        );
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        assert_eq!(
            condition(&patch, "Exposed"),
            ("True".into(), "Routed".into())
        );
        assert_eq!(
            condition(&patch, "CanaryReady"),
            ("False".into(), "CanaryUnsupported".into())
        );
        assert_eq!(patch.body["status"]["canary"]["trafficPercent"], 0);
        assert_eq!(
            patch.body["status"]["url"],
            "http://iris.example.com/v2/models/iris"
        );
        api
    })
    .await;
    assert!(result.is_ok());
}

/// The route as applied, its Gateway's word on it, and the `Exposed` condition and requeue.
async fn exposed_with(
    reply: fn(&mock_api::Received) -> (StatusCode, Value),
    warning: Option<&'static str>,
) -> ((String, String), String, Action) {
    let md = canary_at_root();
    let stored = stored_with_status(&md);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = seen.clone();
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_installed)
            .await;
        apply_primary_and_canary(&mut api).await;
        api.expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), reply)
            .await;
        if let Some(reason) = warning {
            let event = api.expect(Method::POST, EVENTS, echo).await;
            assert_eq!(event.body["reason"], reason);
        }
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        let message = patch.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Exposed")
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        *out.lock().unwrap() = Some((condition(&patch, "Exposed"), message));
        api
    })
    .await;
    let (condition, message) = seen.lock().unwrap().take().expect("no status patch");
    (condition, message, result.unwrap())
}

#[tokio::test]
async fn exposed_waits_for_the_gateway_to_accept_the_route() {
    let (condition, message, action) = exposed_with(accepted, None).await;
    assert_eq!(condition, ("True".into(), "Routed".into()));
    assert!(message.contains("Gateway gateways/public"), "{message}");
    assert_eq!(action, Action::requeue(RESYNC));

    // Applied, no parent status yet: not exposed yet (no Warning: it is no news), read again
    // soon.
    let (condition, message, action) = exposed_with(echo, None).await;
    assert_eq!(condition, ("False".into(), "RoutePending".into()));
    assert!(message.contains("no Gateway has accepted it"), "{message}");
    assert_eq!(action, Action::requeue(ROUTE_PENDING_RECHECK));

    // Refused by its Gateway: the reason and the Gateway's message.
    fn refused(r: &mock_api::Received) -> (StatusCode, Value) {
        let (code, mut route) = accepted(r);
        route["status"]["parents"][0]["conditions"][0]["status"] = json!("False");
        route["status"]["parents"][0]["conditions"][0]["reason"] = json!("NotAllowedByListeners");
        route["status"]["parents"][0]["conditions"][0]["message"] =
            json!("the listener admits routes of its own namespace only");
        (code, route)
    }
    let (condition, message, action) = exposed_with(refused, Some("RouteNotAccepted")).await;
    assert_eq!(condition, ("False".into(), "RouteNotAccepted".into()));
    assert!(
        message.contains("NotAllowedByListeners") && message.contains("own namespace only"),
        "{message}"
    );
    assert_eq!(action, Action::requeue(DISCOVERY_TTL));
}
