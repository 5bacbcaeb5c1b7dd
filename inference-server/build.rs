//! Compiles `proto/grpc_predict_v2.proto` (the v2 protocol's gRPC service)
//! into Rust with protox, a protobuf compiler written in Rust, so building
//! needs no system `protoc`. The encoded descriptor set is written beside
//! the generated code for the reflection service.

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
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
