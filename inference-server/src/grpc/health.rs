//! `grpc.health.v1.Health`, so Kubernetes' native `grpc` probes and
//! `grpc_health_probe` work: SERVING exactly when the REST readiness route
//! answers 200 ([`AppState::is_ready`]), for the server (`""`) and for
//! `inference.GRPCInferenceService`; any other service is NOT_FOUND, as the
//! health protocol asks. `Watch` sends the status, then each change
//! (readiness is polled every [`WATCH_INTERVAL`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::protocol::grpc::pb::grpc_inference_service_server::SERVICE_NAME;
use crate::state::AppState;

/// How often `Watch` looks at readiness.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub struct Health {
    state: Arc<AppState>,
}

impl Health {
    pub fn new(state: Arc<AppState>) -> Health {
        Health { state }
    }
}

/// The status of `service`, or NOT_FOUND for a service not served here.
fn serving(state: &AppState, service: &str) -> Result<ServingStatus, Status> {
    if !service.is_empty() && service != SERVICE_NAME {
        return Err(Status::not_found(format!(
            "service: '{service}' is not served here (\"\" or {SERVICE_NAME})"
        )));
    }
    Ok(if state.is_ready() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    })
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = serving(&self.state, &request.get_ref().service)?;
        Ok(Response::new(response(status)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        let first = serving(&self.state, &service)?;
        let state = self.state.clone();
        let changes = futures::stream::unfold(first, move |last| {
            let state = state.clone();
            let service = service.clone();
            async move {
                loop {
                    tokio::time::sleep(WATCH_INTERVAL).await;
                    // The service name was checked above, so only the status can change.
                    let now = serving(&state, &service).unwrap_or(last);
                    if now != last {
                        return Some((Ok(response(now)), now));
                    }
                }
            }
        });
        let stream = futures::stream::once(async move { Ok(response(first)) }).chain(changes);
        Ok(Response::new(Box::pin(stream)))
    }
}
