//! gRPC calls to `x2gobroker-agentd`: a bearer-token (and optionally TLS) client, proto sessions converted to the farm's views.

use crate::farm::policy::SessionView;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use x2gobroker_proto::agent::v1 as pb;

/// TLS towards the agents: the CA that signed their certificates, and the broker's client
/// certificate for mutual TLS.
#[derive(Clone)]
pub struct TlsSettings {
    pub ca_pem: Vec<u8>,
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsSettings")
            .field("client_identity", &self.client_identity.is_some())
            .finish_non_exhaustive()
    }
}

/// Where and how to reach one server's `x2gobroker-agentd`.
#[derive(Debug, Clone)]
pub struct GrpcTarget {
    /// The server name (TLS domain name).
    pub server: String,
    /// `host:port`.
    pub address: String,
    pub token: Option<Arc<str>>,
    pub tls: Option<Arc<TlsSettings>>,
    pub timeout: Duration,
}

impl GrpcTarget {
    /// A lazily connecting client (call it inside a tokio runtime).
    pub fn client(&self) -> Result<AgentClient, AgentError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.address))
            .map_err(|_| AgentError::Endpoint(self.address.clone()))?
            .connect_timeout(self.timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                .domain_name(self.server.clone());
            if let Some((certificate, key)) = &tls.client_identity {
                config = config.identity(Identity::from_pem(certificate, key));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|error| AgentError::Endpoint(format!("{}: {error}", self.address)))?;
        }
        token_client(endpoint.connect_lazy(), self.token.as_deref())
    }
}

/// A client of one agent, with its token attached to every call.
pub type AgentClient = pb::agent_client::AgentClient<
    tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>,
>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Why an agent call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent endpoint {0:?}")]
    Endpoint(String),
    #[error("agent call failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
}

fn token_client(channel: Channel, token: Option<&str>) -> Result<AgentClient, AgentError> {
    let header = match token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(|_| AgentError::Endpoint("token is not ASCII".to_string()))?,
        ),
        None => None,
    };
    Ok(pb::agent_client::AgentClient::with_interceptor(
        channel,
        TokenInterceptor { header },
    ))
}

/// Runs an agent call with a deadline.
pub async fn with_timeout<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(AgentError::Status(status)),
        Err(_) => Err(AgentError::Timeout(timeout)),
    }
}

/// The status letter of a proto session.
pub fn status_letter(status: i32) -> char {
    match pb::SessionStatus::try_from(status) {
        Ok(pb::SessionStatus::Running) => 'R',
        Ok(pb::SessionStatus::Suspended) => 'S',
        Ok(pb::SessionStatus::Terminated) => 'T',
        Ok(pb::SessionStatus::Failed) => 'F',
        _ => '?',
    }
}

/// A proto session as the farm keeps it.
pub fn session_view(session: &pb::Session) -> SessionView {
    SessionView {
        session_id: session.session_id.clone(),
        user: session.user.clone(),
        server: session.server.clone(),
        status: status_letter(session.status),
        raw_line: session.raw_line.clone(),
    }
}

/// The user's sessions as the agent sees them right now.
pub async fn user_sessions(
    client: &mut AgentClient,
    user: &str,
    timeout: Duration,
) -> Result<Vec<SessionView>, AgentError> {
    let request = pb::ListUserSessionsRequest {
        user: user.to_string(),
    };
    let list = with_timeout(timeout, client.list_user_sessions(request)).await?;
    Ok(list.sessions.iter().map(session_view).collect())
}

/// Suspends a session of `user`.
pub async fn suspend(
    client: &mut AgentClient,
    user: &str,
    session_id: &str,
    timeout: Duration,
) -> Result<(), AgentError> {
    let request = pb::SessionActionRequest {
        user: user.to_string(),
        session_id: session_id.to_string(),
    };
    with_timeout(timeout, client.suspend_session(request))
        .await
        .map(|_| ())
}

/// Adds (or removes) a public key line in the user's authorized_keys file.
pub async fn authorized_key(
    client: &mut AgentClient,
    user: &str,
    key: &str,
    key_file: &str,
    add: bool,
    timeout: Duration,
) -> Result<(), AgentError> {
    let request = pb::AuthorizedKeyRequest {
        user: user.to_string(),
        key: key.to_string(),
        key_file: key_file.to_string(),
    };
    if add {
        with_timeout(timeout, client.add_authorized_key(request))
            .await
            .map(|_| ())
    } else {
        with_timeout(timeout, client.remove_authorized_key(request))
            .await
            .map(|_| ())
    }
}
