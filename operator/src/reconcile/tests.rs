//! `reconcile` against a mock API server: each test's scenario asserts every request the
//! reconciler sends (method, path, query, body) and answers it as an API server would.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::*;
use crate::build::{MANAGER, fixtures};
use crate::mock_api::{self, ApiServer, Received, echo};

pub(super) const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ml/deployments";
pub(super) const SERVICES: &str = "/api/v1/namespaces/ml/services";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers";
const PDBS: &str = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets";
pub(super) const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
pub(super) const MODEL_DEPLOYMENTS: &str =
    "/apis/modelship.io/v1alpha1/namespaces/ml/modeldeployments";

fn context(client: Client, caches: Caches) -> Arc<Context> {
    context_with(client, caches, Config::default())
}

pub(super) fn context_with(client: Client, caches: Caches, config: Config) -> Arc<Context> {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: None,
    };
    Arc::new(Context::new(
        client.clone(),
        config,
        Recorder::new(client, reporter),
        Arc::new(Metrics::default()),
        caches,
    ))
}

/// The children `md` should get.
fn children_of(md: &ModelDeployment) -> crate::build::Children {
    build_children(&validate(md, &Config::default()).unwrap())
}

/// The applied Deployment with a status in which `ready` of its replicas are ready.
pub(super) fn rolled_out(received: &Received, ready: i32) -> (StatusCode, Value) {
    let mut d = received.body.clone();
    d["metadata"]["generation"] = json!(1);
    d["status"] = json!({
        "observedGeneration": 1, "replicas": ready, "readyReplicas": ready,
        "updatedReplicas": ready, "availableReplicas": ready,
    });
    (StatusCode::OK, d)
}

/// Answers a status patch with `md` carrying the patched status.
pub(super) fn stored_with_status(
    md: &ModelDeployment,
) -> impl FnOnce(&Received) -> (StatusCode, Value) + use<> {
    let mut stored = serde_json::to_value(md).unwrap();
    move |received| {
        stored["status"] = received.body["status"].clone();
        (StatusCode::OK, stored)
    }
}

/// `(status, reason)` of condition `type_` in a status patch's body.
pub(super) fn condition(patch: &Received, type_: &str) -> (String, String) {
    let c = patch.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {}", patch.body));
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

/// Runs `scenario` against the mock while `reconcile` runs, then checks nothing else was sent.
async fn run<F>(
    md: ModelDeployment,
    caches: Caches,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Result<Action, Error>
where
    F: Future<Output = ApiServer> + Send + 'static,
{
    run_with(md, caches, Config::default(), scenario).await
}

/// [`run`] with the operator configured by `config`.
pub(super) async fn run_with<F>(
    md: ModelDeployment,
    caches: Caches,
    config: Config,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Result<Action, Error>
where
    F: Future<Output = ApiServer> + Send + 'static,
{
    let (client, api) = mock_api::client();
    let ctx = context_with(client, caches, config);
    let scenario = tokio::spawn(scenario(api));
    let result = reconcile(Arc::new(md), ctx.clone()).await;
    let api = scenario.await.expect("the scenario's assertions hold");
    drop(ctx);
    api.done().await;
    result
}

/// A context for [`error_policy`], which uses no client.
fn offline_context() -> Arc<Context> {
    context(mock_api::client().0, Caches::default())
}

#[tokio::test]
async fn a_valid_model_deployment_applies_its_children_then_patches_status() {
    let md = fixtures::model_deployment("iris.yaml");
    let expected = children_of(&md);
    let stored = stored_with_status(&md);
    let result = run(md, Caches::default(), |mut api| async move {
        let deployment = api
            .expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), |r| {
                rolled_out(r, 1)
            })
            .await;
        deployment.assert_server_side_apply();
        assert_eq!(
            deployment.body,
            serde_json::to_value(&expected.deployment).unwrap()
        );
        let service = api
            .expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        service.assert_server_side_apply();
        assert_eq!(
            service.body,
            serde_json::to_value(&expected.service).unwrap()
        );
        // No HPA is applied, and none is deleted: the cache holds none.
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(
            (&event.body["type"], &event.body["reason"]),
            (&json!("Normal"), &json!("ModelServing"))
        );
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        patch.assert_server_side_apply();
        assert_eq!(patch.body["kind"], "ModelDeployment");
        assert_eq!(patch.body["status"]["observedGeneration"], 1);
        assert_eq!(patch.body["status"]["ready"], "1/1");
        assert_eq!(
            patch.body["status"]["url"],
            "http://iris.ml.svc.cluster.local/v2/models/iris"
        );
        assert_eq!(
            condition(&patch, "Ready"),
            ("True".into(), "ModelServing".into())
        );
        assert_eq!(
            condition(&patch, "Progressing"),
            ("False".into(), "RolloutComplete".into())
        );
        assert_eq!(
            condition(&patch, "Degraded"),
            ("False".into(), "AsExpected".into())
        );
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_autoscaled_model_deployment_applies_its_hpa_and_leaves_replicas_out() {
    let md = fixtures::model_deployment("autoscaled.yaml");
    let expected = children_of(&md);
    let stored = stored_with_status(&md);
    let result = run(md, Caches::default(), |mut api| async move {
        let deployment = api
            .expect(Method::PATCH, &format!("{DEPLOYMENTS}/diabetes"), echo)
            .await;
        deployment.assert_server_side_apply();
        assert_eq!(deployment.body["spec"].get("replicas"), None);
        api.expect(Method::PATCH, &format!("{SERVICES}/diabetes"), echo)
            .await
            .assert_server_side_apply();
        let hpa = api
            .expect(Method::PATCH, &format!("{HPAS}/diabetes"), echo)
            .await;
        hpa.assert_server_side_apply();
        assert_eq!(
            hpa.body,
            serde_json::to_value(expected.hpa.unwrap()).unwrap()
        );
        // maxReplicas 10: a PodDisruptionBudget, applied like every child.
        let pdb = api
            .expect(Method::PATCH, &format!("{PDBS}/diabetes"), echo)
            .await;
        pdb.assert_server_side_apply();
        assert_eq!(
            pdb.body,
            serde_json::to_value(expected.pdb.unwrap()).unwrap()
        );
        // Nothing serves yet and nothing is wrong: no Event, only the status.
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/diabetes/status"),
                stored,
            )
            .await;
        assert_eq!(
            condition(&patch, "Ready"),
            ("False".into(), "ModelLoading".into())
        );
        assert_eq!(patch.body["status"]["observedGeneration"], 2);
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

fn hpa_owned_by(owner_uid: &str) -> HorizontalPodAutoscaler {
    let mut hpa = HorizontalPodAutoscaler::default();
    hpa.metadata.name = Some("iris".into());
    hpa.metadata.namespace = Some("ml".into());
    hpa.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "modelship.io/v1alpha1".into(),
        kind: "ModelDeployment".into(),
        name: "iris".into(),
        uid: owner_uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    hpa
}

fn caches_with(hpa: HorizontalPodAutoscaler) -> Caches {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Apply(hpa));
    Caches {
        pods: Vec::new(),
        hpas: vec![reader],
        ingresses: Vec::new(),
        pdbs: Vec::new(),
    }
}

#[tokio::test]
async fn removing_autoscaling_deletes_the_hpa_this_model_deployment_owns() {
    let md = fixtures::model_deployment("iris.yaml");
    let uid = md.meta().uid.clone().unwrap();
    let stored = stored_with_status(&md);
    let result = run(md, caches_with(hpa_owned_by(&uid)), |mut api| async move {
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
            .await;
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        let hpa = serde_json::to_value(hpa_owned_by(&uid)).unwrap();
        api.expect(Method::DELETE, &format!("{HPAS}/iris"), |_| {
            (StatusCode::OK, hpa)
        })
        .await;
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(event.body["reason"], "AutoscalingRemoved");
        api.expect(
            Method::PATCH,
            &format!("{MODEL_DEPLOYMENTS}/iris/status"),
            stored,
        )
        .await;
        api
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_hpa_of_someone_else_is_left_alone() {
    let md = fixtures::model_deployment("iris.yaml");
    let stored = stored_with_status(&md);
    let foreign = hpa_owned_by("6a1d3c1e-0000-4000-8000-00000000ffff");
    let result = run(md, caches_with(foreign), |mut api| async move {
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), echo)
            .await;
        api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
            .await;
        api.expect(
            Method::PATCH,
            &format!("{MODEL_DEPLOYMENTS}/iris/status"),
            stored,
        )
        .await;
        api
    })
    .await;
    assert!(result.is_ok());
}

#[tokio::test]
async fn an_invalid_spec_reports_status_and_waits_for_a_change() {
    let mut md = fixtures::model_deployment("iris.yaml");
    md.spec.model.uri = "ftp://models/iris.onnx".into();
    let stored = stored_with_status(&md);
    let object = Arc::new(md.clone());
    let result = run(md, Caches::default(), |mut api| async move {
        // Nothing is applied: the first request is the Event, then the status.
        let event = api.expect(Method::POST, EVENTS, echo).await;
        assert_eq!(
            (&event.body["type"], &event.body["reason"]),
            (&json!("Warning"), &json!("InvalidSpec"))
        );
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{MODEL_DEPLOYMENTS}/iris/status"),
                stored,
            )
            .await;
        patch.assert_server_side_apply();
        assert_eq!(
            condition(&patch, "Degraded"),
            ("True".into(), "InvalidSpec".into())
        );
        assert_eq!(
            condition(&patch, "Ready"),
            ("False".into(), "InvalidSpec".into())
        );
        let degraded = patch.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .unwrap()["message"]
            .clone();
        assert!(
            degraded
                .as_str()
                .unwrap()
                .starts_with("spec is invalid: spec.model.uri: must start with"),
            "{degraded}"
        );
        api
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.label(), "invalid_spec");
    let ctx = offline_context();
    // Not retried in a hot loop, however often it fails.
    for _ in 0..3 {
        assert_eq!(
            error_policy(object.clone(), &error, ctx.clone()),
            Action::await_change()
        );
    }
    assert!(
        ctx.metrics
            .encode()
            .contains(r#"modelship_operator_reconcile_failures_total{error="invalid_spec"} 3"#)
    );
}

#[tokio::test]
async fn a_failed_apply_backs_off_and_sends_nothing_after_it() {
    let md = fixtures::model_deployment("iris.yaml");
    let object = Arc::new(md.clone());
    let result = run(md, Caches::default(), |mut api| async move {
        api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), |_| {
            mock_api::status(StatusCode::INTERNAL_SERVER_ERROR)
        })
        .await;
        api
    })
    .await;
    let error = result.unwrap_err();
    let ctx = offline_context();
    assert!(
        matches!(error, Error::Apply { ref kind, .. } if kind == "Deployment"),
        "{error}"
    );
    let delays: Vec<Action> = (0..3)
        .map(|_| error_policy(object.clone(), &error, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4].map(|s| Action::requeue(Duration::from_secs(s)))
    );
}

#[tokio::test]
async fn a_model_deployment_being_deleted_is_left_to_the_garbage_collector() {
    let mut md = fixtures::model_deployment("iris.yaml");
    md.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let result = run(md, Caches::default(), |api| async move { api }).await;
    assert_eq!(result.unwrap(), Action::await_change());
}

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_of_a_reconcile_carry_the_object() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    // The test runs on one thread, the scenario task included.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut md = fixtures::model_deployment("iris.yaml");
    md.spec.model.uri = "ftp://models/iris.onnx".into();
    let stored = stored_with_status(&md);
    let result = run(md, Caches::default(), |mut api| async move {
        api.expect(Method::POST, EVENTS, |_| {
            mock_api::status(StatusCode::INTERNAL_SERVER_ERROR)
        })
        .await;
        api.expect(
            Method::PATCH,
            &format!("{MODEL_DEPLOYMENTS}/iris/status"),
            stored,
        )
        .await;
        api
    })
    .await;
    assert!(matches!(result, Err(Error::InvalidSpec(_))));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("could not publish event"))
        .unwrap_or_else(|| panic!("no warning logged:\n{text}"));
    assert!(
        line.contains("namespace=ml") && line.contains("name=iris"),
        "{line}"
    );
}
