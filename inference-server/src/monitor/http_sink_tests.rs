//! The HTTP sender against a receiver on loopback run by the test: batches
//! of structured events, binary mode with a batch of one, a quiet server
//! sending at once, close flushing a partial batch, retries and per-event
//! drop counts, and a full queue dropping before the inputs are copied.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use super::BATCH_CONTENT_TYPE;
use crate::metrics::{Metrics, MonitorFamilies};
use crate::monitor::config::MonitorArgs;
use crate::monitor::event::{Body, Context, Event, Kind};
use crate::monitor::sink::{PayloadLog, Target};

type Posts = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A CloudEvents receiver on 127.0.0.1 that keeps every POST and answers `status`.
async fn receiver(status: StatusCode) -> (reqwest::Url, Posts) {
    let posts = Posts::default();
    let kept = posts.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push((h, b));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/events").parse().unwrap(), posts)
}

fn start(url: reqwest::Url, batch: usize, queue: usize) -> (Arc<PayloadLog>, MonitorFamilies) {
    let args = MonitorArgs {
        payload_log_http_batch: batch,
        payload_log_queue: queue,
        ..MonitorArgs::default()
    };
    let m = Metrics::new().monitor;
    (
        PayloadLog::start(Target::Http(url), &args, "pod-0", m.clone()),
        m,
    )
}

fn event(n: usize) -> Event {
    Event {
        kind: Kind::Request,
        ce_id: format!("i{n}.request"),
        inference_id: Some(format!("i{n}")),
        time: SystemTime::now(),
        ctx: Arc::new(Context {
            source: "/modelship/ns/iris/pod-0".into(),
            model: "iris".into(),
            version: None,
            namespace: "ns".into(),
            variant: "primary".into(),
        }),
        body: Body::Json(serde_json::json!({"n": n})),
    }
}

fn count(m: &MonitorFamilies, kind: &'static str, result: &'static str) -> u64 {
    m.payload_events
        .get_or_create(&[("type", kind), ("result", result)])
        .get()
}

fn dropped(m: &MonitorFamilies, reason: &'static str) -> u64 {
    m.payload_dropped.get_or_create(&[("reason", reason)]).get()
}

fn posts(p: &Posts) -> Vec<(HeaderMap, Bytes)> {
    p.lock().unwrap().clone()
}

fn content_type(h: &HeaderMap) -> &str {
    h.get("content-type").unwrap().to_str().unwrap()
}

#[tokio::test]
async fn a_batch_post_carries_the_queued_events_as_structured_cloudevents_and_close_flushes_the_rest()
 {
    let (url, got) = receiver(StatusCode::OK).await;
    let (log, m) = start(url, 4, 100);
    // The sink task has not run yet (one thread): all ten are queued when it starts.
    for n in 0..10 {
        log.send(event(n));
    }
    log.close(Duration::from_secs(10)).await;
    let mut batches: Vec<Vec<serde_json::Value>> = posts(&got)
        .iter()
        .map(|(h, body)| {
            assert_eq!(content_type(h), BATCH_CONTENT_TYPE);
            assert!(
                h.get("ce-id").is_none(),
                "no binary-mode headers on a batch"
            );
            serde_json::from_slice(body).unwrap()
        })
        .collect();
    batches.sort_by_key(|b| b[0]["data"]["n"].as_u64());
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [4, 4, 2],
        "full batches, then the partial one at close"
    );
    for (n, e) in batches.iter().flatten().enumerate() {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], format!("i{n}.request"));
        assert_eq!(e["type"], "org.kubeflow.serving.inference.request");
        assert_eq!(e["source"], "/modelship/ns/iris/pod-0");
        assert_eq!(e["inferenceid"], format!("i{n}"));
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["data"], serde_json::json!({"n": n}));
    }
    assert_eq!(count(&m, "request", "sent"), 10);
    assert_eq!(count(&m, "request", "dropped"), 0);
}

#[tokio::test]
async fn a_batch_of_one_sends_each_event_in_binary_mode() {
    let (url, got) = receiver(StatusCode::OK).await;
    let (log, m) = start(url, 1, 100);
    for n in 0..3 {
        log.send(event(n));
    }
    log.close(Duration::from_secs(10)).await;
    let mut got = posts(&got);
    got.sort_by_key(|(h, _)| h["ce-id"].to_str().unwrap().to_string());
    assert_eq!(got.len(), 3, "one POST per event");
    for (n, (h, body)) in got.iter().enumerate() {
        assert_eq!(content_type(h), "application/json");
        assert_eq!(h["ce-id"], format!("i{n}.request").as_str());
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-inferenceid"], format!("i{n}").as_str());
        let data: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(data, serde_json::json!({"n": n}));
    }
    assert_eq!(count(&m, "request", "sent"), 3);
}

#[tokio::test]
async fn a_quiet_server_sends_an_event_at_once_without_filling_a_batch() {
    let (url, got) = receiver(StatusCode::OK).await;
    let (log, _m) = start(url, 100, 100);
    log.send(event(0));
    let waited = tokio::time::timeout(Duration::from_secs(1), async {
        while posts(&got).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "a lone event is sent within 1 s, not held for 99 more"
    );
    let got = posts(&got);
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(batch.len(), 1);
    log.close(Duration::from_secs(5)).await;
}

async fn refused(status: StatusCode) -> (usize, MonitorFamilies) {
    let (url, got) = receiver(status).await;
    let (log, m) = start(url, 10, 100);
    for n in 0..3 {
        log.send(event(n));
    }
    log.close(Duration::from_secs(10)).await;
    let got = posts(&got);
    for (_, body) in &got {
        let batch: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        assert_eq!(batch.len(), 3, "each try sends the whole batch again");
    }
    (got.len(), m)
}

#[tokio::test]
async fn a_receiver_error_is_retried_then_each_event_is_counted_dropped() {
    let (tries, m) = refused(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(tries, 3, "a 5xx is tried 3 times");
    assert_eq!(count(&m, "request", "dropped"), 3);
    assert_eq!(count(&m, "request", "sent"), 0);
    assert_eq!(dropped(&m, "sink_error"), 3);

    let (tries, m) = refused(StatusCode::BAD_REQUEST).await;
    assert_eq!(tries, 1, "a 4xx is not retried");
    assert_eq!(dropped(&m, "sink_error"), 3);
}

#[tokio::test]
async fn a_full_queue_drops_an_inference_before_its_inputs_are_copied() {
    use crate::monitor::{Identity, Monitor};
    use crate::tensor::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};

    let args = MonitorArgs {
        payload_log: Some("http://127.0.0.1:9/events".into()),
        payload_log_queue: 3,
        ..MonitorArgs::default()
    };
    let metrics = Metrics::new();
    let monitor = Monitor::start(&args, Identity::from_env(0, "primary"), &metrics).unwrap();
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    let sig = ModelSignature {
        inputs: vec![spec("input", DataType::Fp32, &[-1, 2])],
        outputs: vec![spec("label", DataType::Int64, &[-1])],
    };
    let mm = monitor.for_model("m", None, &sig, None);
    let input = Tensor::new("input", vec![1, 2], TensorData::Fp32(vec![1.0, 2.0])).unwrap();
    let output = || Tensor::new("label", vec![1], TensorData::Int64(vec![1])).unwrap();
    // The sink task has not run (one thread): the first inference's two events
    // take two of the three places; the second's do not fit.
    let first = mm.begin(Some("c"), std::slice::from_ref(&input));
    assert!(first.logged && first.inputs.is_some());
    mm.record(first, "a", "c", vec![output()]);
    let second = mm.begin(Some("c"), std::slice::from_ref(&input));
    assert!(!second.logged, "no room for a request and a response");
    assert!(
        second.inputs.is_none() && second.client_id.is_none(),
        "nothing copied"
    );
    mm.record(second, "b", "c", vec![output()]);
    let m = &metrics.monitor;
    assert_eq!(dropped(m, "queue_full"), 2);
    assert_eq!(count(m, "request", "dropped"), 1);
    assert_eq!(count(m, "response", "dropped"), 1);
    assert_eq!(monitor.log.as_ref().unwrap().queued(), 2);
}
