//! Generated gRPC contracts: between the X2Go broker and its agents (`x2gobroker.agent.v1`), and the broker's admin API (`x2gobroker.admin.v1`).
//!
//! No logic and no I/O here: the `.proto` file under `proto/` is the source of truth.

/// Package `x2gobroker.agent.v1`: the `Agent` service, its client and server.
pub mod agent {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("x2gobroker.agent.v1");
    }
}

/// Package `x2gobroker.admin.v1`: the broker's `Admin` service, its client and server.
pub mod admin {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("x2gobroker.admin.v1");
    }
}

/// Encoded `FileDescriptorSet` of the agent contract, for gRPC reflection on an agent.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent_descriptor.bin"));

/// Encoded `FileDescriptorSet` of the admin contract, for gRPC reflection on the broker's
/// admin port.
pub const ADMIN_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/admin_descriptor.bin"));

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
    fn each_descriptor_set_names_its_own_service_only() {
        let packages = |bytes: &[u8]| -> Vec<String> {
            let set = prost_types::FileDescriptorSet::decode(bytes).unwrap();
            set.file.iter().map(|f| f.package().to_string()).collect()
        };
        assert_eq!(
            packages(super::FILE_DESCRIPTOR_SET),
            ["x2gobroker.agent.v1"]
        );
        assert_eq!(
            packages(super::ADMIN_FILE_DESCRIPTOR_SET),
            ["x2gobroker.admin.v1"]
        );
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
