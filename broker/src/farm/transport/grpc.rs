//! gRPC calls to `x2gobroker-agentd`: a bearer-token (and optionally TLS) client, a watch client on a connection of its own, proto sessions converted to the farm's views.

use crate::farm::policy::SessionView;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
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
    /// `http://` or `https://` and the address.
    fn origin(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// A lazily connecting client (call it inside a tokio runtime).
    pub fn client(&self) -> Result<AgentClient, AgentError> {
        let mut endpoint = Endpoint::from_shared(self.origin())
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

    /// A client over a connection of its own, opened now: what one long-lived watch stream
    /// needs. No tower buffer, no reconnect layer (the supervisor reconnects): a third of a
    /// [`Channel`]'s memory per server, which counts with a thousand of them.
    pub async fn stream_client(&self) -> Result<StreamClient, AgentError> {
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.address))
            .await
            .map_err(|_| AgentError::Timeout(self.timeout))?
            .map_err(|error| AgentError::Connect(format!("{}: {error}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        let connection = match &self.tls {
            None => http2_handshake(tcp).await?,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(client_tls_config(tls)?);
                let name = rustls_pki_types::ServerName::try_from(self.server.clone())
                    .map_err(|_| AgentError::Endpoint(format!("TLS name {:?}", self.server)))?;
                let stream = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| AgentError::Timeout(self.timeout))?
                    .map_err(|error| AgentError::Connect(format!("{}: {error}", self.address)))?;
                http2_handshake(stream).await?
            }
        };
        let origin: hyper::Uri = self
            .origin()
            .parse()
            .map_err(|_| AgentError::Endpoint(self.address.clone()))?;
        let interceptor = token_interceptor(self.token.as_deref())?;
        Ok(pb::agent_client::AgentClient::with_origin(
            InterceptedService::new(connection, interceptor),
            origin,
        ))
    }
}

/// The rustls client configuration for `tls` (the agents' CA, the broker's identity, ALPN h2).
fn client_tls_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &str, error: &dyn std::fmt::Display| AgentError::Tls(format!("{what}: {error}"));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        let certificate = certificate.map_err(|error| bad("agent CA", &error))?;
        roots
            .add(certificate)
            .map_err(|error| bad("agent CA", &error))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| bad("TLS versions", &error))?
        .with_root_certificates(roots);
    let mut config = match &tls.client_identity {
        Some((certificate_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(certificate_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| bad("client certificate", &error))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|error| bad("client key", &error))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| bad("client identity", &error))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Opens HTTP/2 over `io`; the connection runs on its own task until both ends are done.
async fn http2_handshake<I>(io: I) -> Result<Http2Connection, AgentError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|error| AgentError::Connect(error.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "agent connection closed");
        }
    });
    Ok(Http2Connection(sender))
}

/// One HTTP/2 connection as a tower service (what tonic's generated client drives).
#[derive(Clone)]
pub struct Http2Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<hyper::Request<tonic::body::Body>> for Http2Connection {
    type Response = hyper::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, request: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// A client of one agent over its own connection (see [`GrpcTarget::stream_client`]).
pub type StreamClient =
    pb::agent_client::AgentClient<InterceptedService<Http2Connection, TokenInterceptor>>;

/// A client of one agent, with its token attached to every call.
pub type AgentClient = pb::agent_client::AgentClient<InterceptedService<Channel, TokenInterceptor>>;

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
    #[error("cannot connect to the agent: {0}")]
    Connect(String),
    #[error("agent TLS settings: {0}")]
    Tls(String),
}

fn token_interceptor(token: Option<&str>) -> Result<TokenInterceptor, AgentError> {
    let header = match token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(|_| AgentError::Endpoint("token is not ASCII".to_string()))?,
        ),
        None => None,
    };
    Ok(TokenInterceptor { header })
}

fn token_client(channel: Channel, token: Option<&str>) -> Result<AgentClient, AgentError> {
    Ok(pb::agent_client::AgentClient::with_interceptor(
        channel,
        token_interceptor(token)?,
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
