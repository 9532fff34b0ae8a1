//! Compiles `x2gobroker/agent/v1/agent.proto` with protox (no protoc needed) into tonic/prost
//! code and writes the encoded file descriptor set used by gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_file = "proto/x2gobroker/agent/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto_file}");
    let file_descriptors = protox::compile([proto_file], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("agent_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
