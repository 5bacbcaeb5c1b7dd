//! The benchmark's ceiling for gRPC overhead: tonic's own server with the same
//! `inference.GRPCInferenceService`, whose `ModelInfer` does no work at all
//! (an empty response). The gRPC benchmark (`bench/bench_grpc.py`) compares
//! modelship's gRPC call rate against this one on the same machine and load, so
//! a limit of the load generator shows as a limit of the ceiling too.
//!
//! Usage: `empty_tonic PORT` (binds 127.0.0.1).

use modelship_server::protocol::grpc::pb;
use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use tonic::{Request, Response, Status};

struct Empty;

#[tonic::async_trait]
impl GrpcInferenceService for Empty {
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
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        _: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Err(Status::unimplemented("the empty server has no metadata"))
    }

    async fn model_metadata(
        &self,
        _: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        Err(Status::unimplemented("the empty server has no metadata"))
    }

    async fn model_infer(
        &self,
        _: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        Ok(Response::new(pb::ModelInferResponse::default()))
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8091);
    tonic::transport::Server::builder()
        .add_service(GrpcInferenceServiceServer::new(Empty))
        .serve(([127, 0, 0, 1], port).into())
        .await
        .expect("serve");
}
