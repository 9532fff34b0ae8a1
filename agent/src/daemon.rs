//! `x2gobroker-agentd`: configuration checks, the tonic server (agent service, reflection v1
//! and v1alpha, health) behind the authentication layer, and graceful shutdown.
//!
//! Shutdown order: health NOT_SERVING, watch streams and the poller end, the server stops
//! accepting and finishes in-flight calls, bounded by the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use x2gobroker_proto::agent::v1::agent_server::AgentServer;

use crate::auth::{load_token_file, AuthLayer, Authenticator, TokenFileError};
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
    ] {
        if value.is_zero() {
            return Err(ConfigError::ZeroDuration(what));
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
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
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
        },
        tls,
    })
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

    let mut builder = Server::builder();
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
    tracing::info!(%listen, server_names = ?config.server_names, "x2gobroker-agentd serving");
    let serve = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop_signal);
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
