//! `reconcile` of a canary's promotion against the mock API server: while the primary rolls
//! out the canary's model, the canary keeps its share (and the requests naming its version);
//! once the rollout is complete the route moves everything to the primary, and the canary is
//! retired after its grace.

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::retire_tests::{canary_deployment, expect_primary_alone_then_canary_marked};
use super::tests::{
    DEPLOYMENTS, EVENTS, MODEL_DEPLOYMENTS, SERVICES, condition, rolled_out, run_with,
    stored_with_status,
};
use super::traffic::{CANARY_RETIRE_GRACE, PROMOTION_RECHECK, RETIRING_SINCE};
use super::traffic_tests::{
    DISCOVERY, HTTPROUTES, accepted, canary_at_root, canary_pods, gateway_api_installed,
    gateway_mode, previously_exposed_status, weights,
};
use super::*;
use crate::crd::ModelStatus;
use crate::mock_api::{self, echo};

const CANARY_URI: &str = "https://models.example/iris-2.onnx";

/// The canary fixture promoted (`spec.model` made the canary's, `spec.canary` removed), after
/// a status that reported the canary serving 10%.
fn promoted() -> ModelDeployment {
    let mut md = canary_at_root();
    let canary = md.spec.canary.take().unwrap();
    md.spec.model.uri = canary.model.uri;
    md.spec.model.version = canary.model.version;
    let mut status = previously_exposed_status();
    let reported = status.canary.as_mut().unwrap();
    reported.model = ModelStatus {
        name: "iris".into(),
        version: Some("2".into()),
        uri: CANARY_URI.into(),
    };
    reported.ready_replicas = 1;
    reported.traffic_percent = 10;
    md.status = Some(status);
    md
}

/// The backends of the route's rule for `/v2/models/iris/versions/2`, if it has one.
fn version_two_backends(route: &Value) -> Option<Vec<String>> {
    let rules = route["spec"]["rules"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["matches"][0]["path"]["value"] == "/v2/models/iris/versions/2")?;
    Some(
        rule["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect(),
    )
}

type Reply = fn(&mock_api::Received) -> (StatusCode, Value);

#[tokio::test]
async fn while_the_primary_rolls_out_the_promoted_canary_keeps_its_share() {
    let md = promoted();
    let stored = stored_with_status(&md);
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_installed)
            .await;
        // The primary takes the canary's model; its rollout has only begun (no status yet).
        let primary = api
            .expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
            .await;
        let fetch = &primary.body["spec"]["template"]["spec"]["initContainers"][0];
        assert!(
            fetch["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == CANARY_URI),
            "the primary fetches the canary's model: {fetch}"
        );
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        // Not the canary's children (no spec for them any more): they are kept as they are.
        let route = api
            .expect(Method::PATCH, &format!("{HTTPROUTES}/iris"), accepted)
            .await;
        assert_eq!(
            weights(&route.body),
            [("iris".into(), 90), ("iris-canary".into(), 10)]
        );
        // Old primary pods do not serve version 2: requests naming it stay on the canary.
        assert_eq!(
            version_two_backends(&route.body),
            Some(vec!["iris-canary".to_string()])
        );
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(event.body["reason"], "CanaryPromoting");
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        let canary = &patch.body["status"]["canary"];
        assert_eq!(canary["reason"], "CanaryPromoting");
        assert_eq!(canary["trafficPercent"], 10);
        assert_eq!(canary["model"]["uri"], CANARY_URI);
        assert_eq!(
            condition(&patch, "CanaryReady"),
            ("True".into(), "CanaryPromoting".into())
        );
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(PROMOTION_RECHECK));
}

#[tokio::test]
async fn once_the_primary_has_rolled_out_the_route_moves_then_the_canary_retires() {
    let md = promoted();
    let deployment = canary_deployment(&md, json!({}));
    let stored = stored_with_status(&md);
    let result = run_with(md, canary_pods(1), gateway_mode(), |mut api| async move {
        api.expect(Method::GET, DISCOVERY, gateway_api_installed)
            .await;
        let complete: Reply = |r| rolled_out(r, 1);
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), complete)
            .await;
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        // Every primary pod runs the promoted model: the route names the primary alone; then
        // the canary, which had traffic, is marked for its grace, not deleted yet.
        let mark = expect_primary_alone_then_canary_marked(&mut api, deployment).await;
        assert!(mark.body["metadata"]["annotations"][RETIRING_SINCE].is_string());
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(event.body["reason"], "ModelServing");
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        assert!(
            patch.body["status"].get("canary").is_none(),
            "{}",
            patch.body
        );
        assert_eq!(patch.body["status"]["model"]["version"], "2");
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(CANARY_RETIRE_GRACE));
}
