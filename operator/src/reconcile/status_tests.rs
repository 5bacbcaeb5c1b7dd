//! The status write against the mock API server: conditional on the `resourceVersion` the
//! status was computed from, and what happens after a 409 Conflict (the object recreated,
//! moved on to a newer generation, or only touched).

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::tests::{DEPLOYMENTS, EVENTS, MODEL_DEPLOYMENTS, SERVICES, rolled_out, run_with};
use super::*;
use crate::build::fixtures;
use crate::mock_api::{self, echo};

/// The Iris fixture as the watch delivered it: resource version 10.
fn watched() -> ModelDeployment {
    let mut md = fixtures::model_deployment("iris.yaml");
    md.metadata.resource_version = Some("10".into());
    md
}

fn conflict(_: &mock_api::Received) -> (StatusCode, Value) {
    (
        StatusCode::CONFLICT,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
               "code": 409, "message": "the object has been modified"}),
    )
}

/// Runs one reconcile of [`watched`] whose first status write gets 409 and whose re-read
/// answers `now` (`None`: 404); `again` says whether a second write is expected, answered
/// 200. Returns the resource versions the writes carried.
async fn after_a_conflict(now: Option<Value>, again: bool) -> Vec<Value> {
    let md = watched();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    let answer = now.clone().unwrap_or(Value::Null);
    let result = run_with(
        md,
        Caches::default(),
        Config::default(),
        |mut api| async move {
            let rolled: fn(&mock_api::Received) -> (StatusCode, Value) = |r| rolled_out(r, 1);
            api.expect(Method::PATCH, &format!("{DEPLOYMENTS}/iris"), rolled)
                .await;
            api.expect(Method::PATCH, &format!("{SERVICES}/iris"), echo)
                .await;
            api.expect(Method::POST, EVENTS, echo).await;
            let status = format!("{MODEL_DEPLOYMENTS}/iris/status");
            let first = api.expect(Method::PATCH, &status, conflict).await;
            out.lock()
                .unwrap()
                .push(first.body["metadata"]["resourceVersion"].clone());
            api.expect(
                Method::GET,
                &format!("{MODEL_DEPLOYMENTS}/iris"),
                |_| match now {
                    Some(object) => (StatusCode::OK, object),
                    None => (
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                },
            )
            .await;
            if again {
                let second = api
                    .expect(Method::PATCH, &status, |_| (StatusCode::OK, answer))
                    .await;
                out.lock()
                    .unwrap()
                    .push(second.body["metadata"]["resourceVersion"].clone());
            }
            api
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    seen.lock().unwrap().clone()
}

/// The fixture as stored now: `uid`, `generation`, resource version 11.
fn stored(uid: &str, generation: i64) -> Value {
    let mut object = serde_json::to_value(watched()).unwrap();
    object["metadata"]["uid"] = json!(uid);
    object["metadata"]["generation"] = json!(generation);
    object["metadata"]["resourceVersion"] = json!("11");
    object
}

#[tokio::test]
async fn a_status_is_written_only_on_the_version_it_was_computed_from() {
    let uid = watched().metadata.uid.unwrap();
    // Only touched meanwhile (same object, same generation): written once more, on the
    // version just read.
    assert_eq!(
        after_a_conflict(Some(stored(&uid, 1)), true).await,
        [json!("10"), json!("11")]
    );
    // Deleted and created again under the same name: the new object's status is not this.
    assert_eq!(
        after_a_conflict(Some(stored("a-new-object", 1)), false).await,
        [json!("10")]
    );
    // A newer generation: its own reconcile writes its status.
    assert_eq!(
        after_a_conflict(Some(stored(&uid, 2)), false).await,
        [json!("10")]
    );
    // Gone: nothing to report on.
    assert_eq!(after_a_conflict(None, false).await, [json!("10")]);
}
