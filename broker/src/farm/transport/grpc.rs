//! gRPC calls to `x2gobroker-agentd`: a bearer-token (and optionally TLS) client, the watch stream on a connection of its own (deframed without a kept buffer), proto sessions converted to the farm's views.

use crate::farm::model::{SessionStatus, SessionView};
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use x2gobroker_proto::agent::v1 as pb;

/// TLS towards the agents: the CA that signed their certificates, and the broker's client
/// certificate for mutual TLS.
#[derive(Clone, PartialEq, Eq)]
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

    /// Opens the agent's watch stream on a connection of its own: what one long-lived stream
    /// needs. No tower buffer, no reconnect layer (the supervisor reconnects), and no decode
    /// buffer kept between messages ([`WatchStream`]), which counts with a thousand servers.
    pub async fn watch(&self, heartbeat: Duration) -> Result<WatchStream, AgentError> {
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.address))
            .await
            .map_err(|_| AgentError::Timeout(self.timeout))?
            .map_err(|error| AgentError::Connect(format!("{}: {error}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        let mut connection = match &self.tls {
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
        let request = watch_request(
            &format!("{}{WATCH_PATH}", self.origin()),
            self.token.as_deref(),
            heartbeat,
        )?;
        let call = async {
            connection.ready().await?;
            connection.send_request(request).await
        };
        let response = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| AgentError::Timeout(self.timeout))?
            .map_err(|error| AgentError::Stream(error.to_string()))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(AgentError::Stream(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        // a call refused at once is a response with its gRPC status in the headers
        if let Some(status) = tonic::Status::from_header_map(response.headers()) {
            if status.code() != tonic::Code::Ok {
                return Err(AgentError::Status(status));
            }
        }
        Ok(WatchStream {
            body: response.into_body(),
            deframer: Deframer::default(),
        })
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
async fn http2_handshake<I>(
    io: I,
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, AgentError>
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
    Ok(sender)
}

/// The gRPC method of the watch stream.
const WATCH_PATH: &str = "/x2gobroker.agent.v1.Agent/Watch";

/// The largest message the watch stream accepts (tonic's default limit).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The HTTP/2 request of a `Watch` call: gRPC framing of one uncompressed `WatchRequest`.
fn watch_request(
    uri: &str,
    token: Option<&str>,
    heartbeat: Duration,
) -> Result<hyper::Request<Full<Bytes>>, AgentError> {
    use prost::Message as _;
    let message = pb::WatchRequest {
        heartbeat_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
    };
    let length = message.encoded_len();
    let mut body = Vec::with_capacity(5 + length);
    body.push(0);
    body.extend_from_slice(&(length as u32).to_be_bytes());
    message
        .encode(&mut body)
        .map_err(|error| AgentError::Stream(error.to_string()))?;
    let mut request = hyper::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| AgentError::Endpoint(format!("{uri} (is the token printable ASCII?)")))
}

/// The agent's watch stream, read off the HTTP/2 body (see [`Deframer`]). tonic's
/// `Streaming` keeps a decode buffer the size of the largest message per stream (16 KB for
/// 20 sessions): a quarter of the broker's memory with a thousand servers.
pub struct WatchStream {
    body: hyper::body::Incoming,
    deframer: Deframer,
}

impl WatchStream {
    /// The next message; `None` when the agent ended the stream without an error.
    pub async fn message(&mut self) -> Result<Option<pb::ServerState>, AgentError> {
        use http_body_util::BodyExt as _;
        loop {
            if let Some(message) = self.deframer.next_message()? {
                return Ok(Some(message));
            }
            let Some(frame) = self.body.frame().await else {
                return match self.deframer.inside_message() {
                    false => Ok(None),
                    true => Err(AgentError::Stream("stream ended inside a message".into())),
                };
            };
            let frame = frame.map_err(|error| AgentError::Stream(error.to_string()))?;
            match frame.into_data() {
                Ok(data) => self.deframer.push(data),
                Err(frame) => {
                    let Ok(trailers) = frame.into_trailers() else {
                        continue;
                    };
                    return match tonic::Status::from_header_map(&trailers) {
                        Some(status) if status.code() != tonic::Code::Ok => {
                            Err(AgentError::Status(status))
                        }
                        _ => Ok(None),
                    };
                }
            }
        }
    }
}

/// gRPC message framing (a zero byte, a big-endian length, the message) over the DATA
/// frames of a stream: a message that arrived in one frame (the usual case) is decoded where
/// it lies; one split over frames is collected in a buffer released as soon as it is whole.
#[derive(Debug, Default)]
struct Deframer {
    /// The rest of the last DATA frame.
    buffered: Bytes,
    /// The start of a message split over DATA frames (unallocated between messages).
    partial: Vec<u8>,
}

impl Deframer {
    /// Adds a DATA frame (call when [`Deframer::next_message`] gave `None`).
    fn push(&mut self, data: Bytes) {
        if self.partial.is_empty() && self.buffered.is_empty() {
            self.buffered = data;
        } else {
            self.partial.extend_from_slice(&self.buffered);
            self.partial.extend_from_slice(&data);
            self.buffered = Bytes::new();
        }
    }

    /// Whether part of a message has arrived.
    fn inside_message(&self) -> bool {
        !self.partial.is_empty() || !self.buffered.is_empty()
    }

    /// The next whole message, if one has arrived.
    fn next_message(&mut self) -> Result<Option<pb::ServerState>, AgentError> {
        if self.partial.is_empty() {
            let Some(end) = message_end(&self.buffered)? else {
                return Ok(None);
            };
            let message = decode_state(&self.buffered[5..end])?;
            bytes::Buf::advance(&mut self.buffered, end);
            return Ok(Some(message));
        }
        let Some(end) = message_end(&self.partial)? else {
            return Ok(None);
        };
        let message = decode_state(&self.partial[5..end])?;
        self.buffered = Bytes::copy_from_slice(&self.partial[end..]);
        self.partial = Vec::new();
        Ok(Some(message))
    }
}

/// Where the gRPC message at the start of `data` ends, once its whole length has arrived.
fn message_end(data: &[u8]) -> Result<Option<usize>, AgentError> {
    let Some(header) = data.get(..5) else {
        return Ok(None);
    };
    if header[0] != 0 {
        return Err(AgentError::Stream(
            "compressed message (no compression was offered)".into(),
        ));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > MAX_MESSAGE_BYTES {
        return Err(AgentError::Stream(format!(
            "message of {length} bytes (limit {MAX_MESSAGE_BYTES})"
        )));
    }
    Ok((data.len() >= 5 + length).then_some(5 + length))
}

fn decode_state(data: &[u8]) -> Result<pb::ServerState, AgentError> {
    use prost::Message as _;
    pb::ServerState::decode(data).map_err(|error| AgentError::Stream(error.to_string()))
}

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
    #[error("agent watch stream: {0}")]
    Stream(String),
}

/// The `authorization` value for the agents' bearer token.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn token_interceptor(token: Option<&str>) -> Result<TokenInterceptor, AgentError> {
    let header = match token {
        Some(token) => Some(
            bearer(token)
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

/// The status of a proto session.
pub fn session_status(status: i32) -> SessionStatus {
    match pb::SessionStatus::try_from(status) {
        Ok(pb::SessionStatus::Running) => SessionStatus::Running,
        Ok(pb::SessionStatus::Suspended) => SessionStatus::Suspended,
        Ok(pb::SessionStatus::Terminated) => SessionStatus::Terminated,
        Ok(pb::SessionStatus::Failed) => SessionStatus::Failed,
        _ => SessionStatus::Other('?'),
    }
}

/// A proto session as the farm keeps it.
pub fn session_view(session: &pb::Session) -> SessionView {
    SessionView {
        session_id: session.session_id.clone(),
        user: session.user.clone(),
        server: session.server.clone(),
        status: session_status(session.status),
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn state(generation: u64, sessions: usize) -> pb::ServerState {
        pb::ServerState {
            sessions: (0..sessions)
                .map(|index| pb::Session {
                    session_id: format!("s-{index}"),
                    raw_line: "x".repeat(100),
                    ..Default::default()
                })
                .collect(),
            generation,
            ..Default::default()
        }
    }

    fn framed(message: &pb::ServerState) -> Vec<u8> {
        let mut data = vec![0];
        data.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
        message.encode(&mut data).unwrap();
        data
    }

    #[test]
    fn messages_in_one_frame_and_split_over_frames() {
        let (first, second, third) = (state(1, 2), state(2, 20), state(3, 0));
        let mut deframer = Deframer::default();
        // two whole messages in one frame, then the start of a third's header
        let mut data = framed(&first);
        data.extend(framed(&second));
        let third_bytes = framed(&third);
        data.extend_from_slice(&third_bytes[..2]);
        deframer.push(Bytes::from(data));
        assert_eq!(deframer.next_message().unwrap(), Some(first));
        assert_eq!(deframer.next_message().unwrap(), Some(second.clone()));
        assert_eq!(deframer.next_message().unwrap(), None);
        assert!(deframer.inside_message());
        deframer.push(Bytes::copy_from_slice(&third_bytes[2..]));
        assert_eq!(deframer.next_message().unwrap(), Some(third));
        assert!(!deframer.inside_message());
        // a message over three frames, followed in the last one by the next message
        let whole = framed(&second);
        let (a, rest) = whole.split_at(3);
        let (b, c) = rest.split_at(rest.len() / 2);
        deframer.push(Bytes::copy_from_slice(a));
        assert_eq!(deframer.next_message().unwrap(), None);
        deframer.push(Bytes::copy_from_slice(b));
        assert_eq!(deframer.next_message().unwrap(), None);
        let mut last = c.to_vec();
        last.extend(framed(&state(4, 1)));
        deframer.push(Bytes::from(last));
        assert_eq!(deframer.next_message().unwrap(), Some(second));
        assert_eq!(
            deframer.partial.capacity(),
            0,
            "the collecting buffer is released"
        );
        assert_eq!(deframer.next_message().unwrap(), Some(state(4, 1)));
        assert_eq!(deframer.next_message().unwrap(), None);
        assert!(!deframer.inside_message());
    }

    #[test]
    fn compressed_and_oversized_messages_are_refused() {
        let mut compressed = framed(&state(1, 1));
        compressed[0] = 1;
        let mut deframer = Deframer::default();
        deframer.push(Bytes::from(compressed));
        assert!(matches!(
            deframer.next_message(),
            Err(AgentError::Stream(_))
        ));
        let mut deframer = Deframer::default();
        let mut huge = vec![0];
        huge.extend_from_slice(&(MAX_MESSAGE_BYTES as u32 + 1).to_be_bytes());
        deframer.push(Bytes::from(huge));
        assert!(matches!(
            deframer.next_message(),
            Err(AgentError::Stream(_))
        ));
    }

    #[test]
    fn the_watch_request_is_one_grpc_frame_with_the_token() {
        let request = watch_request(
            "http://127.0.0.1:1/x2gobroker.agent.v1.Agent/Watch",
            Some("s3cret"),
            Duration::from_millis(2000),
        )
        .unwrap();
        assert_eq!(request.headers()["content-type"], "application/grpc");
        assert_eq!(request.headers()["te"], "trailers");
        assert_eq!(request.headers()["authorization"], "Bearer s3cret");
        assert_eq!(request.uri().path(), WATCH_PATH);
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(request.into_body()))
                .unwrap()
                .to_bytes();
        assert_eq!(message_end(&body).unwrap(), Some(body.len()));
        assert_eq!(
            pb::WatchRequest::decode(&body[5..]).unwrap().heartbeat_ms,
            2000
        );
    }
}
