//! `spec.monitoring`'s CEL rules, enforced by a real API server: each bad value is refused
//! with a message naming its field, and the good ones are stored as given. (A `mode` outside
//! the enum cannot be built with the typed client; the schema's enum refuses it.)

use kube::Api;
use kube::api::PostParams;
use modelship_operator::crd::ModelDeployment;
use serde_json::json;

use crate::harness::{TestCluster, model_deployment};

#[tokio::test]
async fn monitoring_rules_are_enforced_by_the_api_server() {
    let Some(cluster) = TestCluster::get("monitoring-cel").await else {
        return;
    };
    let mds: Api<ModelDeployment> = cluster.api();
    let with = |monitoring: serde_json::Value| json!({"model": {"uri": "builtin://iris"}, "monitoring": monitoring});
    let cases = [
        (
            with(json!({"payloadLog": {"url": "http://r/", "sampleRate": 1.5}})),
            "spec.monitoring.payloadLog.sampleRate must be between 0 and 1",
        ),
        (
            with(json!({"payloadLog": {"url": "http://r/", "sampleRate": -1}})),
            "spec.monitoring.payloadLog.sampleRate must be between 0 and 1",
        ),
        (
            with(json!({"payloadLog": {"url": "http://r/", "httpBatch": 0}})),
            "spec.monitoring.payloadLog.httpBatch must be between 1 and 10000",
        ),
        (
            with(json!({"payloadLog": {"url": "ftp://r/events"}})),
            "spec.monitoring.payloadLog.url must be http://HOST/...",
        ),
        (
            with(json!({"payloadLog": {"url": "file:///tmp/events"}})),
            "spec.monitoring.payloadLog.url must be http://HOST/...",
        ),
        (
            with(json!({"payloadLog": {"url": "https://user:secret@r/events"}})),
            "without credentials (use credentialsSecretRef)",
        ),
        (
            with(json!({"feedback": {"window": "15 minutes"}})),
            "spec.monitoring.feedback.window must be a duration like 90s, 15m or 2h",
        ),
        (
            with(json!({"feedback": {"window": "25h"}})),
            "spec.monitoring.feedback.window must be at most 24h",
        ),
        (
            with(json!({"prometheusURL": "prometheus:9090"})),
            "spec.monitoring.prometheusURL must be an http:// or https:// URL",
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
    let full = json!({
        "payloadLog": {"url": "s3://logs.example/iris", "mode": "response", "sampleRate": 0.25,
                       "httpBatch": 1, "credentialsSecretRef": {"name": "s3-creds"}},
        "feedback": {"window": "24h"},
        "prometheusURL": "http://prometheus.monitoring.svc:9090"
    });
    // A whole number is a valid rate too; it reads back as the number it is.
    let whole =
        json!({"payloadLog": {"url": "https://hooks.example/ingest?token=t", "sampleRate": 1}});
    let whole_read =
        json!({"payloadLog": {"url": "https://hooks.example/ingest?token=t", "sampleRate": 1.0}});
    for (name, given, read) in [("s3", full.clone(), full), ("http", whole, whole_read)] {
        let created = mds
            .create(
                &PostParams::default(),
                &model_deployment(name, with(given.clone())),
            )
            .await
            .unwrap_or_else(|e| panic!("{given}: {e}"));
        let stored = serde_json::to_value(created.spec.monitoring).unwrap();
        assert_eq!(stored, read, "{name} stored as given");
    }
    cluster.cleanup().await;
}
