//! The inference id on the gRPC wire: a string parameter of the response
//! and its metadata (`x-modelship-inference-id`), as REST has it in
//! `parameters` and a header.

use crate::protocol::grpc::pb;

use super::{INFERENCE_ID_HEADER, INFERENCE_ID_PARAMETER};

/// Puts `inference_id` into the response's `parameters`.
pub fn grpc_parameter(response: &mut pb::ModelInferResponse, inference_id: &str) {
    response.parameters.insert(
        INFERENCE_ID_PARAMETER.to_string(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(
                inference_id.to_string(),
            )),
        },
    );
}

/// The call's answer, with the id of its `parameters` in the metadata too.
pub fn grpc_response(response: pb::ModelInferResponse) -> tonic::Response<pb::ModelInferResponse> {
    let id = match response.parameters.get(INFERENCE_ID_PARAMETER) {
        Some(pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(id)),
        }) => id.parse().ok(),
        _ => None,
    };
    let mut r = tonic::Response::new(response);
    if let Some(id) = id {
        r.metadata_mut().insert(INFERENCE_ID_HEADER, id);
    }
    r
}
