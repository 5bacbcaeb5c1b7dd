//! `inference.GRPCInferenceService`: the six methods of the protocol over
//! [`AppState`], with the REST routes' lookups, readiness and engine, so
//! both protocols answer alike. The HTTP-side twin is `http/v2.rs`.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::error::status;
use super::{Arrival, count};
use crate::auth::Refusal;
use crate::http::error::ApiError;
use crate::http::shared::{REQUEST_ID, find_model};
use crate::http::v2::SERVER_NAME;
use crate::protocol::grpc::{self, pb};
use crate::protocol::v2::select_outputs;
use crate::state::{AppState, ServedModel};
use pb::grpc_inference_service_server::GrpcInferenceService;

/// The service over the server's state.
pub struct Inference {
    state: Arc<AppState>,
}

impl Inference {
    pub fn new(state: Arc<AppState>) -> Inference {
        Inference { state }
    }

    /// Runs one call: find the model, admit it (unless admitted on arrival),
    /// decode, check, infer, select, encode.
    async fn infer(
        &self,
        early: Option<(Arc<ServedModel>, crate::engine::Admission)>,
        request_id: String,
        req: pb::ModelInferRequest,
    ) -> Result<(pb::ModelInferResponse, Arc<ServedModel>), ApiError> {
        if req.model_name.is_empty() {
            return Err(ApiError::BadRequest("model_name: is required".into()));
        }
        let version = (!req.model_version.is_empty()).then_some(req.model_version.as_str());
        let model = find_model(&self.state, &req.model_name, version)?;
        let admission = match early {
            Some((m, a)) if m.name == model.name => a,
            _ => model.engine.admit(),
        };
        let request = grpc::parse_request(req)?;
        model
            .engine
            .check_outputs(request.outputs.iter().map(|o| o.name.as_str()))?;
        let pending = model.monitor.begin(request.id.as_deref(), &request.inputs);
        let id = request.id.unwrap_or(request_id);
        let outputs = model.engine.infer(admission, request.inputs).await?;
        let selected: Vec<_> = select_outputs(&outputs, &request.outputs, true)
            .into_iter()
            .map(|o| o.tensor)
            .collect();
        let client_id = id.clone();
        let mut response =
            grpc::encode_response(&model.name, model.version.as_deref(), id, &selected);
        drop(selected);
        let inference_id = model.monitor.next_id();
        crate::monitor::grpc_parameter(&mut response, &inference_id);
        model
            .monitor
            .record(pending, &inference_id, &client_id, outputs);
        Ok((response, model))
    }
}

/// The API key check of a call, from its metadata (see [`AppState::authorize`]).
fn authorize<T>(state: &AppState, request: &Request<T>) -> Result<(), ApiError> {
    authorize_headers(state, request.metadata().as_ref())?;
    Ok(())
}

/// The API key check of a call from its HTTP/2 headers (its metadata), for
/// [`super::arrive`], which checks before tonic sees the call. Counts once.
pub(super) fn authorize_headers(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Result<(), Refusal> {
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
    state.authorize(get("authorization"), get("x-api-key"))
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.state.is_ready();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let req = request.into_inner();
        let ready = self
            .state
            .model_ready(&req.name, version(&req.version))
            .map_err(|message| status(&ApiError::NotFound(message)))?;
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        // The REST extensions (binary tensor data) are HTTP's; gRPC has none.
        Ok(Response::new(pb::ServerMetadataResponse {
            name: SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        authorize(&self.state, &request).map_err(|e| status(&e))?;
        let req = request.into_inner();
        let model =
            find_model(&self.state, &req.name, version(&req.version)).map_err(|e| status(&e))?;
        Ok(Response::new(model.metadata().into()))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let started = Instant::now();
        let arrival = request.extensions().get::<Arrival>().cloned();
        let early = match &arrival {
            // `arrive` checked the key already, before the message was read.
            Some(arrival) => arrival.take(),
            // Called without the router's middleware: the key is checked here.
            None => {
                authorize(&self.state, &request).map_err(|e| status(&e))?;
                None
            }
        };
        let request_id = request
            .metadata()
            .get(REQUEST_ID.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let req = request.into_inner();
        let name = req.model_name.clone();
        match self.infer(early, request_id, req).await {
            Ok((response, model)) => {
                let seconds = started.elapsed().as_secs_f64();
                model.metrics.request_seconds.observe(seconds);
                model.monitor.timeline.record(true, seconds);
                count(&self.state, &name, tonic::Code::Ok);
                Ok(crate::monitor::grpc_response(response))
            }
            Err(e) => {
                crate::state::record_error(&self.state, &name);
                let status = status(&e);
                count(&self.state, &name, status.code());
                Err(status)
            }
        }
    }
}
