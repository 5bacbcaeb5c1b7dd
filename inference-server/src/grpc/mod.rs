//! The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`
//! (`service.rs`) on its own listener (`--grpc-port`), with
//! `grpc.health.v1.Health` (`health.rs`, readiness from `state`) and server
//! reflection, over the same [`AppState`] and engines as the REST routes.
//!
//! The listener is an axum router of tonic services, served like the REST
//! one (request id, `request` span, graceful drain on the same signal).
//! A separate port, as KServe uses (8081), rather than one port for both
//! HTTP/1.1 and HTTP/2: Kubernetes Services, probes and meshes name a port's
//! protocol (`appProtocol: kubernetes.io/h2c`), and each listener keeps its
//! own limits.
//!
//! `ModelInfer` and `ModelMetadata` ask for the API key (metadata
//! `authorization: Bearer KEY` or `x-api-key: KEY`; UNAUTHENTICATED without
//! a valid one) when the server has keys; health, reflection, `ServerLive`,
//! `ServerReady`, `ModelReady` and `ServerMetadata` stay open, as their REST
//! twins do. Every answer carries the `x-modelship-variant` metadata.
//!
//! One request: [`arrive`] checks a `ModelInfer` call's API key as soon as its
//! headers are in and refuses it there (UNAUTHENTICATED, the message never
//! read), so a refused call is never admitted and no forming batch waits for
//! it. It then admits the call with the engine, before tonic reads and
//! decodes the message (the model's name is inside it, so this works when the
//! server serves one model; otherwise the handler admits after decoding), so a
//! forming batch waits for it exactly as for a REST request. Every call of
//! the inference service must send its whole message within
//! `--body-timeout`, counted from its headers (DEADLINE_EXCEEDED after that;
//! health and reflection, whose streams may stay open, are not limited).
//! The handler decodes the message with
//! [`crate::protocol::grpc`], checks and queues it through [`Engine::infer`]
//! (the same validation and batches as REST), and answers in
//! `raw_output_contents`. Failures are mapped in `error.rs`; a message tonic
//! refuses before the handler runs (too large, not protobuf) gets its code
//! here, in the protocol's terms.
//!
//! [`Engine::infer`]: crate::engine::Engine::infer

pub mod error;
pub mod health;
pub mod service;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use http_body_util::BodyExt;
use tonic::{Code, Status};
use tower_http::timeout::DeadlineBody;

use crate::engine::Admission;
use crate::metrics::{Code as CodeLabel, RequestLabels};
use crate::protocol::grpc::{FILE_DESCRIPTOR_SET, pb};
use crate::state::{AppState, ServedModel};
use pb::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The HTTP/2 path of `ModelInfer`.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The path prefix of the inference service's methods (all unary).
const INFERENCE_SERVICE: &str = "/inference.GRPCInferenceService/";

/// The metric label `protocol` of gRPC requests.
pub const PROTOCOL: &str = "grpc";

/// The gRPC listener's routes over `state`: the inference service (messages
/// up to the REST body limit, each received within `body_timeout`), health,
/// reflection (v1 and v1alpha).
pub fn router(state: Arc<AppState>, body_timeout: Duration) -> Router {
    let limit = state.limits.max_body_bytes;
    let variant = state.access.variant.clone();
    let inference = GrpcInferenceServiceServer::new(service::Inference::new(state.clone()))
        .max_decoding_message_size(limit);
    let health =
        tonic_health::pb::health_server::HealthServer::new(health::Health::new(state.clone()));
    let routes = tonic::service::Routes::new(inference)
        .add_service(health)
        .add_service(
            reflection()
                .build_v1()
                .expect("the embedded descriptor sets are valid"),
        )
        .add_service(
            reflection()
                .build_v1alpha()
                .expect("the embedded descriptor sets are valid"),
        )
        .into_axum_router()
        .layer(from_fn_with_state(
            Arrive {
                state,
                body_timeout,
            },
            arrive,
        ));
    crate::http::with_variant(crate::http::with_request_id(routes), &variant)
}

/// The reflection service's descriptors: the inference and health protocols.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// What [`arrive`] hands the `ModelInfer` handler (as a request extension):
/// the admission made on arrival, and whether the handler ran. Only
/// [`arrive`] makes one, after the call's API key passed, so a handler that
/// finds one knows the key was checked (and counted) already.
#[derive(Clone)]
pub struct Arrival(Arc<ArrivalInner>);

#[derive(Default)]
struct ArrivalInner {
    admitted: Mutex<Option<(Arc<ServedModel>, Admission)>>,
    handled: AtomicBool,
}

impl Arrival {
    /// The admission made on arrival, if any, with its model; the handler
    /// calls this first, which also marks the call as handled.
    pub fn take(&self) -> Option<(Arc<ServedModel>, Admission)> {
        self.0.handled.store(true, Ordering::SeqCst);
        self.0.admitted.lock().expect("arrival lock").take()
    }

    fn handled(&self) -> bool {
        self.0.handled.load(Ordering::SeqCst)
    }
}

/// What [`arrive`] needs: the state and the time limit on a message.
#[derive(Clone)]
struct Arrive {
    state: Arc<AppState>,
    body_timeout: Duration,
}

/// Puts the inference service's calls under the body time limit; checks a
/// `ModelInfer` call's API key, then admits it, before its message is read
/// (see the module documentation), and gives the calls tonic refuses before
/// the handler runs their code and their count in the metrics.
async fn arrive(State(arrive): State<Arrive>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with(INFERENCE_SERVICE) {
        return next.run(req).await;
    }
    let is_infer = path == MODEL_INFER_PATH;
    let state = arrive.state;
    // The call's one key check (counted in modelship_auth_total), before
    // anything is admitted or read; not counted in modelship_requests_total,
    // as a REST 401 is not.
    if is_infer && let Err(refusal) = service::authorize_headers(&state, req.headers()) {
        return error::status(&refusal.into()).into_http();
    }
    let mut req = with_deadline(req, arrive.body_timeout);
    if !is_infer {
        return next.run(req).await;
    }
    let model = state.only_loaded_model();
    let arrival = Arrival(Arc::default());
    if let Some(m) = &model {
        *arrival.0.admitted.lock().expect("arrival lock") = Some((m.clone(), m.engine.admit()));
    }
    req.extensions_mut().insert(arrival.clone());
    let mut resp = next.run(req).await;
    if !arrival.handled() {
        let name = model.map(|m| m.name.clone()).unwrap_or_default();
        let code = refused_before_handler(&state, &mut resp);
        count(&state, &name, code);
        tracing::debug!(
            code = error::code_name(code),
            "request refused before decoding"
        );
    }
    resp
}

/// The request with a body that fails with DEADLINE_EXCEEDED once `limit`
/// has passed since now (its headers' arrival), however the bytes trickle
/// in; tonic answers a call with the status its body failed with.
fn with_deadline(req: Request, limit: Duration) -> Request {
    req.map(|body| {
        Body::new(DeadlineBody::new(limit, body).map_err(move |_| {
            Status::deadline_exceeded(format!(
                "the message was not received within the body timeout of {}",
                humantime::format_duration(limit)
            ))
        }))
    })
}

/// The code of a call tonic answered without running the handler, restated
/// in the protocol's terms: a message over the limit is RESOURCE_EXHAUSTED
/// (tonic says OUT_OF_RANGE), one that is not the protocol's message is
/// INVALID_ARGUMENT (tonic says INTERNAL).
fn refused_before_handler(state: &AppState, resp: &mut Response) -> Code {
    let Some(status) = Status::from_header_map(resp.headers()) else {
        return Code::Ok;
    };
    let restated = match status.code() {
        Code::OutOfRange => Status::resource_exhausted(format!(
            "the message is larger than the limit of {} bytes",
            state.limits.max_body_bytes
        )),
        Code::Internal => Status::invalid_argument(format!(
            "the message is not a ModelInferRequest: {}",
            status.message()
        )),
        _ => return status.code(),
    };
    let headers = resp.headers_mut();
    headers.remove(Status::GRPC_STATUS);
    headers.remove(Status::GRPC_MESSAGE);
    let _ = restated.add_header(headers);
    restated.code()
}

/// Counts one `ModelInfer` call with its status code's name.
pub fn count(state: &AppState, model: &str, code: Code) {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            model: model.to_string(),
            protocol: PROTOCOL,
            code: CodeLabel::Grpc(error::code_name(code)),
        })
        .inc();
}
