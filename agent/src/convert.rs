//! The one place where domain types become protobuf messages and agent errors become gRPC
//! status codes.

use tonic::Status;
use x2gobroker_proto::agent::v1 as pb;

use crate::authkeys::AuthKeysError;
use x2gobroker_agent_protocol::{load_factor, ArgumentError, BusyServer, LoadReading};

use crate::load::LoadFigures;
use crate::servers::ServerUsage;
use crate::session::{Session, SessionStatus};
use crate::tools::ToolError;
use crate::users::UserError;

/// Everything a gRPC call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Invalid(#[from] ArgumentError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    AuthKeys(#[from] AuthKeysError),
    #[error("no session {session_id} of user {user} on the server(s) of this agent")]
    SessionNotFound { user: String, session_id: String },
    #[error("{program} failed: {stderr}")]
    ChangeStatus { program: String, stderr: String },
    #[error("cannot read the server load: {0}")]
    Load(std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AgentError> for Status {
    fn from(error: AgentError) -> Self {
        let message = error.to_string();
        match error {
            AgentError::Invalid(_) | AgentError::AuthKeys(AuthKeysError::Invalid(_)) => {
                Status::invalid_argument(message)
            }
            AgentError::User(UserError::Invalid(_)) => Status::invalid_argument(message),
            AgentError::User(UserError::NoSuchUser(_)) | AgentError::SessionNotFound { .. } => {
                Status::not_found(message)
            }
            AgentError::User(UserError::SystemUser { .. }) => Status::permission_denied(message),
            AgentError::Tool(ToolError::Timeout { .. }) => Status::deadline_exceeded(message),
            AgentError::Tool(_) | AgentError::ChangeStatus { .. } | AgentError::Load(_) => {
                Status::unavailable(message)
            }
            AgentError::AuthKeys(AuthKeysError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Status::permission_denied(message)
            }
            AgentError::AuthKeys(AuthKeysError::SymbolicLink(_)) => {
                Status::permission_denied(message)
            }
            AgentError::AuthKeys(AuthKeysError::NotAFile(_)) => {
                Status::failed_precondition(message)
            }
            AgentError::User(UserError::Lookup { .. })
            | AgentError::AuthKeys(_)
            | AgentError::Internal(_) => Status::internal(message),
        }
    }
}

pub fn session_status(status: SessionStatus) -> pb::SessionStatus {
    match status {
        SessionStatus::Running => pb::SessionStatus::Running,
        SessionStatus::Suspended => pb::SessionStatus::Suspended,
        SessionStatus::Terminated => pb::SessionStatus::Terminated,
        SessionStatus::Failed => pb::SessionStatus::Failed,
        SessionStatus::Other(_) => pb::SessionStatus::Other,
    }
}

pub fn session(session: &Session) -> pb::Session {
    pb::Session {
        agent_pid: session.agent_pid,
        session_id: session.session_id.clone(),
        display: session.display,
        server: session.server.clone(),
        status: session_status(session.status) as i32,
        created: session.created.clone(),
        cookie: session.cookie.clone(),
        client_ip: session.client_ip.clone(),
        graphics_port: session.graphics_port,
        sound_port: session.sound_port,
        last_active: session.last_active.clone(),
        user: session.user.clone(),
        age_seconds: session.age_seconds,
        sshfs_port: session.sshfs_port,
        tekictrl_port: session.tekictrl_port,
        tekidata_port: session.tekidata_port,
        raw_line: session.raw_line.clone(),
    }
}

pub fn session_list(sessions: &[Session]) -> pb::SessionList {
    pb::SessionList {
        sessions: sessions.iter().map(session).collect(),
    }
}

pub fn load(figures: &LoadFigures) -> pb::Load {
    pb::Load {
        loadavgxx: figures.loadavgxx,
        mem_avail_mb: figures.mem_avail_mb,
        my_mem_avail_mb: figures.my_mem_avail_mb,
        num_cpu: figures.num_cpu,
        type_cpu_mhz: figures.type_cpu_mhz,
        load_factor: load_factor(&LoadReading::from(figures)).ok(),
    }
}

pub fn server_usage(usage: &ServerUsage) -> pb::ServerUsage {
    pb::ServerUsage {
        server: usage.server.clone(),
        sessions: usage.sessions,
        running: usage.running,
        suspended: usage.suspended,
    }
}

pub fn busy_server(busy: &BusyServer) -> pb::BusyServer {
    pb::BusyServer {
        server: busy.server.clone(),
        percent: busy.percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::parse_session_line;

    #[test]
    fn session_fields_are_carried_over() {
        let line = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003|30004|-1";
        let message = session(&parse_session_line(line).unwrap());
        assert_eq!(message.status(), pb::SessionStatus::Suspended);
        assert_eq!(message.raw_line, line);
        assert_eq!(message.tekictrl_port, Some(30004));
        assert_eq!(message.tekidata_port, None);
        assert_eq!(
            (message.display, message.sshfs_port, message.age_seconds),
            (50, 30003, 292)
        );
    }

    #[test]
    fn error_codes() {
        let table: Vec<(AgentError, tonic::Code)> = vec![
            (
                ArgumentError::SessionId("x/y".into()).into(),
                tonic::Code::InvalidArgument,
            ),
            (
                UserError::NoSuchUser("u".into()).into(),
                tonic::Code::NotFound,
            ),
            (
                UserError::SystemUser {
                    name: "root".into(),
                    uid: 0,
                }
                .into(),
                tonic::Code::PermissionDenied,
            ),
            (
                ToolError::Timeout {
                    program: "x".into(),
                    timeout: std::time::Duration::from_secs(1),
                }
                .into(),
                tonic::Code::DeadlineExceeded,
            ),
            (
                AgentError::SessionNotFound {
                    user: "u".into(),
                    session_id: "s".into(),
                },
                tonic::Code::NotFound,
            ),
            (AgentError::Internal("x".into()), tonic::Code::Internal),
        ];
        for (error, code) in table {
            let text = error.to_string();
            assert_eq!(Status::from(error).code(), code, "{text}");
        }
    }

    #[test]
    fn load_message_has_factor() {
        let figures = LoadFigures {
            loadavgxx: 51,
            mem_avail_mb: 7800,
            my_mem_avail_mb: 0,
            num_cpu: 4,
            type_cpu_mhz: 2400,
        };
        assert_eq!(load(&figures).load_factor, Some(146823));
    }
}
