//! Compiles `proto/grpc_predict_v2.proto` (the v2 protocol's gRPC service)
//! into Rust with protox, a protobuf compiler written in Rust, so building
//! needs no system `protoc`. The encoded descriptor set is written beside
//! the generated code for the reflection service. The generated client has no
//! `connect` (tonic's transport is not a dependency of the server); the load
//! generator (`examples/grpc_load.rs`) gives it a channel.

use std::path::PathBuf;

use prost::Message;
use prost_types::FileDescriptorSet;

const PROTO: &str = "proto/grpc_predict_v2.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors: FileDescriptorSet = protox::compile([PROTO], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("grpc_predict_v2_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // The client (without tonic's transport) serves the load generator and tests.
        .build_client(true)
        .build_transport(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
