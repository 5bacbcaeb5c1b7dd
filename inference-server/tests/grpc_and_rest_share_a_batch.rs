//! A gRPC call and a REST request to the same model land in one batch: both
//! front ends (the REST router and the gRPC router, each with its layers) hand
//! their tensors to the same engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use modelship_server::engine::{BatchWait, Engine, EngineConfig};
use modelship_server::metrics::{Metrics, ModelMetrics};
use modelship_server::protocol::grpc::pb;
use modelship_server::runtime::{Backend, InferError};
use modelship_server::state::{AppState, HttpLimits, ModelState, ServedModel};
use modelship_server::tensor::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};
use prost::Message;
use tower::ServiceExt;

mod common;
use common::framed_message;

/// `y = 2x`, slow enough that requests queue behind a running batch; records batch sizes.
struct Doubler {
    signature: ModelSignature,
    batches: Mutex<Vec<usize>>,
}

impl Backend for Doubler {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        std::thread::sleep(Duration::from_millis(200));
        self.batches.lock().unwrap().push(inputs[0].shape()[0]);
        let TensorData::Fp32(v) = inputs[0].data() else {
            return Err(InferError::new("expected FP32"));
        };
        let doubled = TensorData::Fp32(v.iter().map(|x| x * 2.0).collect());
        Ok(vec![
            Tensor::new("y", inputs[0].shape().to_vec(), doubled).map_err(InferError::new)?,
        ])
    }
}

fn state_with(backend: Arc<Doubler>) -> Arc<AppState> {
    let config = EngineConfig {
        max_batch_size: 8,
        max_batch_delay: Duration::from_millis(1),
        wait: BatchWait::Admitted,
        max_queue: 16,
        workers: 1,
    };
    let engine = Engine::start("m", backend, config, ModelMetrics::detached());
    let state = AppState::new(
        &["m".to_string()],
        Arc::new(Metrics::new()),
        HttpLimits {
            max_body_bytes: 1 << 20,
        },
    );
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
    state
}

/// A unary gRPC call as it arrives over HTTP/2: the length-prefixed message.
fn grpc_call(x: f32) -> http::Request<Body> {
    let framed = framed_message(x);
    http::Request::post("/inference.GRPCInferenceService/ModelInfer")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(framed))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grpc_call_and_a_rest_request_share_a_batch() {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape: vec![-1, 1],
    };
    let backend = Arc::new(Doubler {
        signature: ModelSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        batches: Mutex::new(Vec::new()),
    });
    let state = state_with(backend.clone());
    let rest = modelship_server::http::router(state.clone(), Duration::from_secs(5));
    let grpc = modelship_server::grpc::router(state.clone(), Duration::from_secs(5));

    // Keep the only worker busy, so the next two requests queue together.
    let model = state.only_loaded_model().unwrap();
    let blocker = tokio::spawn(async move {
        let x = Tensor::new("x", vec![1, 1], TensorData::Fp32(vec![0.0])).unwrap();
        model.engine.infer(model.engine.admit(), vec![x]).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let body = r#"{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1.5]}]}"#;
    let rest_req = http::Request::post("/v2/models/m/infer")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (rest_resp, grpc_resp) = tokio::join!(rest.oneshot(rest_req), grpc.oneshot(grpc_call(4.0)));
    blocker.await.unwrap().unwrap();

    let rest_resp = rest_resp.unwrap();
    assert_eq!(rest_resp.status(), 200);
    let json: serde_json::Value =
        serde_json::from_slice(&rest_resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(json["outputs"][0]["data"], serde_json::json!([3.0]));

    let collected = grpc_resp.unwrap().into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    let bytes = collected.to_bytes();
    let answer = pb::ModelInferResponse::decode(&bytes[5..]).unwrap();
    assert_eq!(answer.raw_output_contents[0], 8.0f32.to_le_bytes());

    assert_eq!(
        *backend.batches.lock().unwrap(),
        vec![1, 2],
        "the blocker, then both together"
    );
}
