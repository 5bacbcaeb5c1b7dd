//! What happens to a `ModelInfer` call before its message is decoded: a call
//! without a valid API key is refused on its headers, never admitted, so no
//! forming batch waits for it; a call whose message trickles in for longer
//! than the body timeout is cut off with DEADLINE_EXCEEDED (driven frame by
//! frame with hyper's HTTP/2 client over a real socket), and the server goes
//! on serving.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::SinkExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use modelship_server::auth::ApiKeys;
use modelship_server::engine::{BatchWait, Engine, EngineConfig};
use modelship_server::metrics::{Metrics, ModelMetrics};
use modelship_server::runtime::{Backend, InferError};
use modelship_server::state::{Access, AppState, HttpLimits, ModelState, ServedModel};
use modelship_server::tensor::{DataType, ModelSignature, Tensor, TensorSpec};
use tower::ServiceExt;

mod common;
use common::framed_message;

const PATH: &str = "/inference.GRPCInferenceService/ModelInfer";
const KEY: &str = "s3cret-key";

/// `y = x`; records the rows of each batch it runs.
struct Echo {
    signature: ModelSignature,
    batches: Mutex<Vec<usize>>,
}

impl Backend for Echo {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        self.batches.lock().unwrap().push(inputs[0].shape()[0]);
        let y = Tensor::new("y", inputs[0].shape().to_vec(), inputs[0].data().clone());
        Ok(vec![y.map_err(InferError::new)?])
    }
}

/// One model `m` behind `batch_delay`, asking for `KEY` when `keys` is a directory.
fn state(batch_delay: Duration, keys: Option<&std::path::Path>) -> (Arc<AppState>, Arc<Echo>) {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape: vec![-1, 1],
    };
    let backend = Arc::new(Echo {
        signature: ModelSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        batches: Mutex::new(Vec::new()),
    });
    let config = EngineConfig {
        max_batch_size: 8,
        max_batch_delay: batch_delay,
        wait: BatchWait::Admitted,
        max_queue: 16,
        workers: 1,
    };
    let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
    let metrics = Arc::new(Metrics::new());
    let access = Access {
        keys: keys.map(|dir| ApiKeys::load(dir.to_path_buf(), metrics.clone())),
        ..Access::default()
    };
    let limits = HttpLimits {
        max_body_bytes: 1 << 20,
    };
    let state = AppState::with_access(&["m".to_string()], metrics, limits, access);
    let monitor = modelship_server::monitor::ModelMonitor::detached(engine.signature(), None);
    let served = ServedModel {
        name: "m".into(),
        version: None,
        platform: "test",
        origin: "test".into(),
        engine,
        card: None,
        metrics: ModelMetrics::detached(),
        monitor,
    };
    state.set_model("m", ModelState::Ready(Arc::new(served)));
    (state, backend)
}

fn call(uri: &str, key: Option<&str>) -> http::request::Builder {
    let builder = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    match key {
        Some(k) => builder.header("authorization", format!("Bearer {k}")),
        None => builder,
    }
}

/// The call's grpc-status: in the headers of a trailers-only answer, else in the trailers.
async fn grpc_status<B>(resp: http::Response<B>) -> String
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    if let Some(s) = resp.headers().get("grpc-status") {
        return s.to_str().unwrap().to_string();
    }
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_without_a_key_is_refused_on_its_headers_and_holds_no_batch() {
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("ci"), KEY).unwrap();
    // A batch that waited for the refused call would wait the whole 3 s.
    let (state, backend) = state(Duration::from_secs(3), Some(keys.path()));
    let grpc = modelship_server::grpc::router(state.clone(), Duration::from_secs(30));

    // No key, and a message that never comes: only a check on the headers can answer it.
    let never = futures::stream::pending::<Result<Bytes, Infallible>>();
    let refused = call(PATH, None).body(Body::from_stream(never)).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(2), grpc.clone().oneshot(refused))
        .await
        .expect("refused on its headers, without waiting for the message")
        .unwrap();
    assert_eq!(grpc_status(refused).await, "16", "UNAUTHENTICATED");

    // The same, still unanswered on the client's side while a keyed call runs.
    let never = futures::stream::pending::<Result<Bytes, Infallible>>();
    let stalled = call(PATH, Some("a-wrong-key"))
        .body(Body::from_stream(never))
        .unwrap();
    let stalled = tokio::spawn(grpc.clone().oneshot(stalled));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let good = call(PATH, Some(KEY))
        .body(Body::from(framed_message(2.5)))
        .unwrap();
    let good = grpc.clone().oneshot(good).await.unwrap();
    assert_eq!(grpc_status(good).await, "0");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the keyed call's batch did not wait for the refused one: {took:?}"
    );
    assert_eq!(grpc_status(stalled.await.unwrap().unwrap()).await, "16");
    assert_eq!(
        *backend.batches.lock().unwrap(),
        vec![1],
        "one batch, one row"
    );

    // Each call's key counted once; refused calls are not requests, as a REST 401 is not.
    let text = state.metrics.encode();
    for line in [
        r#"key="",result="missing"} 1"#,
        r#"key="",result="wrong"} 1"#,
        r#"key="ci",result="ok"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains("UNAUTHENTICATED"), "{text}");
    assert!(text.contains(r#"protocol="grpc",code="OK"} 1"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_trickled_past_the_body_timeout_is_cut_off_and_the_server_goes_on() {
    let (state, backend) = state(Duration::from_millis(1), None);
    let body_timeout = Duration::from_millis(600);
    let grpc = modelship_server::grpc::router(state.clone(), body_timeout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}{PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, grpc).await });

    let tcp = tokio::net::TcpStream::connect(uri[7..].split('/').next().unwrap())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);

    // One byte of the message every 100 ms: never a pause as long as the
    // timeout, but the whole message would take seconds.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let message = framed_message(1.0);
    let trickle = tokio::spawn(async move {
        for byte in message {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![byte]))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let slow = call(&uri, None).body(StreamBody::new(rx)).unwrap();
    let slow = tokio::time::timeout(Duration::from_secs(5), sender.send_request(slow))
        .await
        .expect("cut off, not left waiting")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(grpc_status(slow).await, "4", "DEADLINE_EXCEEDED");
    assert!(
        took >= body_timeout - Duration::from_millis(50) && took < Duration::from_secs(3),
        "cut off at the body timeout: {took:?}"
    );
    trickle.abort();

    // The same connection still serves a call sent at once (the whole message, then the end).
    let (mut tx, rx) = futures::channel::mpsc::channel(1);
    tx.try_send(Ok(Frame::data(Bytes::from(framed_message(3.0)))))
        .unwrap();
    drop(tx);
    let quick = call(&uri, None).body(StreamBody::new(rx)).unwrap();
    let quick = sender.send_request(quick).await.unwrap();
    assert_eq!(grpc_status(quick).await, "0");
    assert_eq!(*backend.batches.lock().unwrap(), vec![1]);
    let text = state.metrics.encode();
    assert!(
        text.contains(r#"protocol="grpc",code="DEADLINE_EXCEEDED"} 1"#),
        "{text}"
    );
}
