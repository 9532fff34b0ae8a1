//! `x2gobroker-agentd`: configuration checks, the tonic server (agent service, reflection v1
//! and v1alpha, health) behind the authentication layer, its resource caps, and graceful
//! shutdown.
//!
//! Caps (defaults in [`DaemonConfig::default`]): open connections ([`crate::incoming`]: over
//! the cap refused at once), a deadline for a new connection's first bytes and for the TLS
//! handshake, HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS: a client queues
//! further calls on that connection), HTTP/2 keep-alive pings (a peer that does not answer one
//! within the timeout is disconnected).
//!
//! Shutdown order: health NOT_SERVING, watch streams and the poller end, the server stops
//! accepting and finishes in-flight calls, bounded by the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use x2gobroker_proto::agent::v1::agent_server::AgentServer;

use crate::auth::{load_token_file, AuthLayer, Authenticator, TokenFileError};
use crate::incoming::{admitted_connections, ConnectionLimits};
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
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
    pub tls: Option<ServerTlsConfig>,
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
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        })
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let mut tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(read(cert)?, read(key)?))
                .timeout(config.handshake_timeout);
            if let Some(ca) = &config.client_ca {
                // Optional so that token clients (and health probes) can still connect; a
                // certificate that is presented must verify against this CA.
                tls = tls
                    .client_ca_root(Certificate::from_pem(read(ca)?))
                    .client_auth_optional(true);
            }
            Some(tls)
        }
        _ => None,
    };
    Ok(Prepared {
        authenticator: Authenticator {
            token,
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

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Serves on `listener` until `shutdown` completes.
pub async fn run(
    config: DaemonConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let listen = listener.local_addr().map_err(DaemonError::Listener)?;
    let prepared = prepare(&config, listen)?;

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

    let mut builder = Server::builder()
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout));
    if let Some(tls) = prepared.tls {
        builder = builder
            .tls_config(tls)
            .map_err(|error| ConfigError::Tls(error.to_string()))?;
    }
    let router = builder
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
    let incoming = admitted_connections(
        listener,
        ConnectionLimits {
            max_connections: config.max_connections,
            handshake_timeout: config.handshake_timeout,
        },
    );
    let serve = router.serve_with_incoming_shutdown(incoming, stop_signal);
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
