//! Compiles `x2gobroker/agent/v1/agent.proto` and `x2gobroker/admin/v1/admin.proto` with
//! protox (no protoc needed) into tonic/prost code, and writes one encoded file descriptor set
//! per service for gRPC reflection (an agent lists only the agent service, the broker's admin
//! port only the admin service).

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let contracts = [
        (
            "proto/x2gobroker/agent/v1/agent.proto",
            "agent_descriptor.bin",
        ),
        (
            "proto/x2gobroker/admin/v1/admin.proto",
            "admin_descriptor.bin",
        ),
    ];
    for (proto_file, descriptor_file) in contracts {
        println!("cargo:rerun-if-changed={proto_file}");
        let file_descriptors = protox::compile([proto_file], ["proto"])?;
        std::fs::write(
            out_dir.join(descriptor_file),
            file_descriptors.encode_to_vec(),
        )?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(file_descriptors)?;
    }
    Ok(())
}
