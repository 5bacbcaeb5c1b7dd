//! Helpers shared by the gRPC integration tests (`grpc_arrival.rs`,
//! `grpc_and_rest_share_a_batch.rs`).

use modelship_server::protocol::grpc::pb;
use prost::Message;

/// The length-prefixed `ModelInferRequest` of one FP32 row `[x]` for model `m`, input `x`, as
/// it goes on the wire.
pub fn framed_message(x: f32) -> Vec<u8> {
    let mut req = pb::ModelInferRequest {
        model_name: "m".into(),
        ..Default::default()
    };
    req.inputs.push(pb::model_infer_request::InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![1, 1],
        contents: Some(pb::InferTensorContents {
            fp32_contents: vec![x],
            ..Default::default()
        }),
        ..Default::default()
    });
    let message = req.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend(message);
    framed
}
