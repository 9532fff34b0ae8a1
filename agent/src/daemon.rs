//! `x2gobroker-agentd`: configuration checks, the tonic server (agent service, reflection v1
//! and v1alpha, health) behind the authentication layer, its resource caps, reloads, and
//! graceful shutdown.
//!
//! Caps (defaults in [`DaemonConfig::default`]): open connections ([`crate::incoming`]: over
//! the cap refused at once), a deadline for a new connection's first bytes and for the TLS
//! handshake, HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS: a client queues
//! further calls on that connection), HTTP/2 keep-alive pings (a peer that does not answer one
//! within the timeout is disconnected).
//!
//! TLS is our own rustls acceptor in front of tonic (so that a reload can swap the server
//! configuration: each new connection takes the configuration current when it is accepted,
//! connections in progress keep theirs). A reload ([`Reloader::reload`], on SIGHUP) reads
//! the token file and the certificate, key and client CA files again; a file that cannot be
//! used keeps the previous one in service and is one error line.
//!
//! Shutdown order: health NOT_SERVING, watch streams and the poller end, the server stops
//! accepting and finishes in-flight calls, bounded by the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use x2gobroker_proto::agent::v1::agent_server::AgentServer;

use crate::auth::{load_token_file, AuthLayer, Authenticator, SharedToken, TokenFileError};
use crate::incoming::{admitted_connections, AdmittedStream, ConnectionLimits};
use crate::service::{AgentService, AgentState};
use crate::tools::X2GoTools;

/// Resolved daemon settings (command line / environment).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub server_names: Vec<String>,
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    pub tool_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Connections open at once; more are refused.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls, watch streams) per connection.
    pub max_streams_per_connection: u32,
    /// How long a new connection may stay silent, and how long its TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Idle time after which an HTTP/2 PING is sent.
    pub keepalive_interval: Duration,
    /// How long the PING's answer may take before the connection is closed.
    pub keepalive_timeout: Duration,
    /// With mutual TLS: when not empty, a client certificate authenticates only when its
    /// subject CN or one of its subjectAltName DNS names is in this list.
    pub allowed_client_names: Vec<String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            token_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            server_names: Vec::new(),
            poll_interval: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
            tool_timeout: crate::tools::DEFAULT_TOOL_TIMEOUT,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 256,
            max_streams_per_connection: 64,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            allowed_client_names: Vec::new(),
        }
    }
}

/// A configuration the daemon cannot start with (exit status 64).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no authentication configured: give --token-file and/or --client-ca")]
    NoAuthentication,
    #[error("--client-ca needs TLS (--tls-cert and --tls-key)")]
    ClientCaWithoutTls,
    #[error("--tls-cert and --tls-key go together")]
    IncompleteTls,
    #[error("refusing to listen on {0} without TLS: only loopback addresses are allowed in token-only mode")]
    NonLoopbackWithoutTls(SocketAddr),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error(transparent)]
    Token(#[from] TokenFileError),
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
    #[error("--allowed-client-name needs mutual TLS (--client-ca)")]
    AllowedNamesWithoutClientCa,
    #[error("invalid client certificate name {0:?}")]
    ClientName(String),
}

/// Failure while serving (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// What [`prepare`] resolved from the files the config names.
pub struct Prepared {
    pub authenticator: Authenticator,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The rustls server configuration from the certificate chain, key and (optional) client CA
/// files: a client certificate is optional (token clients and health probes connect
/// without one) but must verify against the CA when presented; ALPN h2.
pub fn server_tls_config(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read_error = |path: &Path, error: rustls_pki_types::pem::Error| {
        ConfigError::Tls(format!("{}: {error}", path.display()))
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|iterator| iterator.collect())
        .map_err(|error| read_error(certificate, error))?;
    if certificates.is_empty() {
        return Err(ConfigError::Tls(format!(
            "{}: no certificate",
            certificate.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| read_error(key, error))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError::Tls(error.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca_certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|iterator| iterator.collect())
                .map_err(|error| read_error(ca, error))?;
            let (added, _) = roots.add_parsable_certificates(ca_certificates);
            if added == 0 {
                return Err(ConfigError::Tls(format!(
                    "{}: no CA certificate",
                    ca.display()
                )));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|error| ConfigError::Tls(format!("{}: {error}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates, private_key)
        .map_err(|error| {
            ConfigError::Tls(format!(
                "{} and {}: {error}",
                certificate.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A server name as the X2Go session DB records it (a host name): letters, digits, `. _ -`,
/// not starting with `.` or `-`, at most 253 characters. Not a protocol argument, so not the
/// protocol crate's session-id rule (which also takes `@`).
fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks the settings for the address the daemon will actually listen on and reads the
/// token, certificate and key files.
pub fn prepare(config: &DaemonConfig, listen: SocketAddr) -> Result<Prepared, ConfigError> {
    let tls_wanted = match (&config.tls_cert, &config.tls_key) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        _ => return Err(ConfigError::IncompleteTls),
    };
    if config.client_ca.is_some() && !tls_wanted {
        return Err(ConfigError::ClientCaWithoutTls);
    }
    if config.token_file.is_none() && config.client_ca.is_none() {
        return Err(ConfigError::NoAuthentication);
    }
    if !tls_wanted && !listen.ip().is_loopback() {
        return Err(ConfigError::NonLoopbackWithoutTls(listen));
    }
    for name in &config.server_names {
        if !is_server_name(name) {
            return Err(ConfigError::ServerName(name.clone()));
        }
    }
    for (value, what) in [
        (config.poll_interval, "--poll-interval-ms"),
        (config.heartbeat, "--heartbeat-ms"),
        (config.tool_timeout, "--tool-timeout-secs"),
        (config.handshake_timeout, "--handshake-timeout-ms"),
        (config.keepalive_interval, "--keepalive-interval-ms"),
        (config.keepalive_timeout, "--keepalive-timeout-ms"),
    ] {
        if value.is_zero() {
            return Err(ConfigError::ZeroDuration(what));
        }
    }
    if config.max_connections == 0 {
        return Err(ConfigError::ZeroLimit("--max-connections"));
    }
    if config.max_streams_per_connection == 0 {
        return Err(ConfigError::ZeroLimit("--max-streams-per-connection"));
    }
    if !config.allowed_client_names.is_empty() && config.client_ca.is_none() {
        return Err(ConfigError::AllowedNamesWithoutClientCa);
    }
    for name in &config.allowed_client_names {
        if !is_client_name(name) {
            return Err(ConfigError::ClientName(name.clone()));
        }
    }
    let token = config
        .token_file
        .as_deref()
        .map(load_token_file)
        .transpose()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(certificate), Some(key)) => Some(server_tls_config(
            certificate,
            key,
            config.client_ca.as_deref(),
        )?),
        _ => None,
    };
    Ok(Prepared {
        authenticator: Authenticator {
            token: token.map(SharedToken::new),
            client_certificates: config.client_ca.is_some(),
            allowed_client_names: config.allowed_client_names.clone().into(),
        },
        tls,
    })
}

/// A name a client certificate may carry in its CN or as a DNS name: printable ASCII without
/// blanks or commas (the list separator), at most 253 characters.
fn is_client_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_graphic() && c != ',')
}

/// The TLS configuration new connections get (replaced on reload).
pub type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Re-reads the token file and the TLS files into what the running server uses.
#[derive(Clone)]
pub struct Reloader {
    config: DaemonConfig,
    token: Option<SharedToken>,
    tls: Option<SharedTls>,
}

impl Reloader {
    /// Reads every file again; a file that cannot be used leaves the previous value in
    /// service. Returns one line per file set: `Ok` what was reloaded, `Err` why not.
    pub fn reload(&self) -> Vec<Result<String, String>> {
        let mut outcomes = Vec::new();
        if let (Some(shared), Some(path)) = (&self.token, &self.config.token_file) {
            outcomes.push(match load_token_file(path) {
                Ok(token) => {
                    shared.replace(token);
                    Ok(format!("token file {} reloaded", path.display()))
                }
                Err(error) => Err(format!("{error}; the previous token stays in use")),
            });
        }
        if let (Some(shared), Some(certificate), Some(key)) =
            (&self.tls, &self.config.tls_cert, &self.config.tls_key)
        {
            outcomes.push(
                match server_tls_config(certificate, key, self.config.client_ca.as_deref()) {
                    Ok(tls) => {
                        *shared
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tls;
                        Ok(format!(
                            "TLS certificate {} and key {} reloaded (new connections)",
                            certificate.display(),
                            key.display()
                        ))
                    }
                    Err(error) => Err(format!(
                        "{error}; the previous certificate and key stay in use"
                    )),
                },
            );
        }
        outcomes
    }
}

/// Reloads on every item of `reloads` (SIGHUP), logging each outcome.
async fn reload_on(reloader: Reloader, reloads: impl Stream<Item = ()> + Send + 'static) {
    futures::pin_mut!(reloads);
    while reloads.next().await.is_some() {
        let outcomes = reloader.reload();
        if outcomes.is_empty() {
            tracing::info!("reload: nothing to read again");
        }
        for outcome in outcomes {
            match outcome {
                Ok(done) => tracing::info!("reload: {done}"),
                Err(error) => tracing::error!("reload: {error}"),
            }
        }
    }
}

/// TLS connections over the admitted ones (the connection cap and first-bytes deadline of
/// [`crate::incoming`]): each handshake in its own task, bounded by `handshake_timeout`, with
/// the configuration current when the connection was admitted; failed handshakes are
/// dropped (and give their slot back). Ends when the receiver is dropped.
fn tls_incoming(
    admitted: ReceiverStream<std::io::Result<AdmittedStream>>,
    tls: SharedTls,
    handshake_timeout: Duration,
) -> ReceiverStream<Result<tokio_rustls::server::TlsStream<AdmittedStream>, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut admitted = admitted;
        loop {
            let next = tokio::select! {
                () = sender.closed() => break,
                next = admitted.next() => next,
            };
            let stream = match next {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
                None => break,
            };
            let config = tls
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let _ = sender.send(Ok(tls_stream)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Serves on `listener` until `shutdown` completes; every item of `reloads` (SIGHUP) reads
/// the token and TLS files again.
pub async fn run(
    config: DaemonConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: impl Stream<Item = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let listen = listener.local_addr().map_err(DaemonError::Listener)?;
    let prepared = prepare(&config, listen)?;
    let shared_tls: Option<SharedTls> = prepared.tls.map(|tls| Arc::new(RwLock::new(tls)));
    let reloader = Reloader {
        config: config.clone(),
        token: prepared.authenticator.token.clone(),
        tls: shared_tls.clone(),
    };
    tokio::spawn(reload_on(reloader, reloads));

    let (stop_sender, stop_receiver) = watch::channel(false);
    let tools = X2GoTools::with_timeout(config.tool_timeout);
    let snapshots = crate::watch::spawn_poller(
        tools.clone(),
        config.server_names.clone(),
        config.poll_interval,
        stop_receiver.clone(),
    );
    let service = AgentService::new(AgentState {
        tools,
        server_names: config.server_names.clone(),
        hostname: hostname(),
        default_heartbeat: config.heartbeat,
        snapshots,
        shutdown: stop_receiver.clone(),
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AgentServer<AgentService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(x2gobroker_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(x2gobroker_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let router = Server::builder()
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .layer(AuthLayer::new(prepared.authenticator))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServer::new(service));

    let grace = config.shutdown_grace;
    let mut grace_receiver = stop_receiver.clone();
    let stop_for_signal = stop_sender.clone();
    let stop_signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, ending watch streams");
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        health_reporter
            .set_not_serving::<AgentServer<AgentService>>()
            .await;
        stop_for_signal.send_replace(true);
    };
    tracing::info!(%listen, server_names = ?config.server_names,
        max_connections = config.max_connections,
        max_streams_per_connection = config.max_streams_per_connection,
        "x2gobroker-agentd serving");
    let admitted = admitted_connections(
        listener,
        ConnectionLimits {
            max_connections: config.max_connections,
            handshake_timeout: config.handshake_timeout,
        },
    );
    let serve: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match shared_tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                tls_incoming(admitted, tls, config.handshake_timeout),
                stop_signal,
            )),
            None => Box::pin(router.serve_with_incoming_shutdown(admitted, stop_signal)),
        };
    tokio::select! {
        result = serve => result?,
        _ = async {
            let _ = grace_receiver.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(?grace, "grace period over, abandoning in-flight calls"),
    }
    drop(stop_sender);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_rules() {
        let loopback: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let no_auth = DaemonConfig::default();
        assert!(matches!(
            prepare(&no_auth, loopback),
            Err(ConfigError::NoAuthentication)
        ));
        let token_only = DaemonConfig {
            token_file: Some("/nonexistent/token".into()),
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&token_only, public),
            Err(ConfigError::NonLoopbackWithoutTls(_))
        ));
        assert!(matches!(
            prepare(&token_only, loopback),
            Err(ConfigError::Token(_))
        ));
        let ca_without_tls = DaemonConfig {
            client_ca: Some("/ca.pem".into()),
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&ca_without_tls, loopback),
            Err(ConfigError::ClientCaWithoutTls)
        ));
        let half_tls = DaemonConfig {
            tls_cert: Some("/c.pem".into()),
            token_file: Some("/t".into()),
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&half_tls, loopback),
            Err(ConfigError::IncompleteTls)
        ));
        let bad_name = DaemonConfig {
            token_file: Some("/t".into()),
            server_names: vec!["node 1".into()],
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&bad_name, loopback),
            Err(ConfigError::ServerName(_))
        ));
        let names_without_ca = DaemonConfig {
            token_file: Some("/t".into()),
            allowed_client_names: vec!["broker1".into()],
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&names_without_ca, loopback),
            Err(ConfigError::AllowedNamesWithoutClientCa)
        ));
        let no_connections = DaemonConfig {
            token_file: Some("/t".into()),
            max_connections: 0,
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&no_connections, loopback),
            Err(ConfigError::ZeroLimit("--max-connections"))
        ));
        let no_streams = DaemonConfig {
            token_file: Some("/t".into()),
            max_streams_per_connection: 0,
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&no_streams, loopback),
            Err(ConfigError::ZeroLimit("--max-streams-per-connection"))
        ));
        let no_keepalive_timeout = DaemonConfig {
            token_file: Some("/t".into()),
            keepalive_timeout: Duration::ZERO,
            ..DaemonConfig::default()
        };
        assert!(matches!(
            prepare(&no_keepalive_timeout, loopback),
            Err(ConfigError::ZeroDuration("--keepalive-timeout-ms"))
        ));
    }

    #[test]
    fn client_names() {
        for (name, ok) in [
            ("broker1.example", true),
            ("x2gobroker", true),
            ("*.example", true),
            ("", false),
            ("a b", false),
            ("a,b", false),
            ("é", false),
        ] {
            assert_eq!(is_client_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn server_names() {
        let table = [
            ("x2go-node1", true),
            ("ts01.intern", true),
            ("a_b", true),
            ("", false),
            (".x", false),
            ("-x", false),
            ("node 1", false),
            ("a@b", false),
            ("a/b", false),
        ];
        for (name, ok) in table {
            assert_eq!(is_server_name(name), ok, "{name:?}");
        }
        assert!(!is_server_name(&"a".repeat(254)));
    }
}
