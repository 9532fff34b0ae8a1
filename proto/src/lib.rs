//! Generated gRPC contract between the X2Go broker and its agents (`x2gobroker.agent.v1`).
//!
//! No logic and no I/O here: the `.proto` file under `proto/` is the source of truth.

/// Package `x2gobroker.agent.v1`: the `Agent` service, its client and server.
pub mod agent {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("x2gobroker.agent.v1");
    }
}

/// Encoded `FileDescriptorSet` of every file of the contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_agent_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|f| f.package() == "x2gobroker.agent.v1")
            .expect("package present");
        let service = &file.service[0];
        assert_eq!(service.name(), "Agent");
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert!(methods.contains(&"Watch"));
        assert!(methods.contains(&"ListAllSessions"));
    }

    #[test]
    fn session_status_values_are_stable() {
        use super::agent::v1::SessionStatus;
        assert_eq!(SessionStatus::Running as i32, 1);
        assert_eq!(SessionStatus::Suspended as i32, 2);
        assert_eq!(
            SessionStatus::from_str_name("SESSION_STATUS_TERMINATED"),
            Some(SessionStatus::Terminated)
        );
    }
}
