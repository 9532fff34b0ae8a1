//! The command line of `x2gobroker-agentd` (clap; every option also from its environment variable), in
//! the library so that the man page generator renders it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::daemon::DaemonConfig;

/// gRPC agent for the X2Go session broker (x2gobroker.agent.v1).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Address to listen on; without TLS only loopback addresses are accepted.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// File holding the bearer token (owned by root or the agent user, mode 0600).
    #[arg(long, env = "X2GOBROKER_AGENTD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate (chain) of the agent; enables TLS.
    #[arg(long, env = "X2GOBROKER_AGENTD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the agent.
    #[arg(long, env = "X2GOBROKER_AGENTD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s); clients presenting a certificate issued by it are authenticated.
    #[arg(long, env = "X2GOBROKER_AGENTD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Report only sessions on this server (repeatable; default: all servers of the session DB).
    #[arg(
        long = "server-name",
        env = "X2GOBROKER_AGENTD_SERVER_NAMES",
        value_delimiter = ','
    )]
    pub server_names: Vec<String>,
    /// How often the watch poller reads the session DB while clients watch.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_POLL_INTERVAL_MS",
        default_value_t = 500
    )]
    pub poll_interval_ms: u64,
    /// Default heartbeat of watch streams.
    #[arg(long, env = "X2GOBROKER_AGENTD_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Time an X2Go server tool may take before it is killed.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_TOOL_TIMEOUT_SECS",
        default_value_t = 20
    )]
    pub tool_timeout_secs: u64,
    /// Time in-flight calls get after SIGTERM.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,
    /// Connections open at once; further ones are refused (closed at once).
    #[arg(long, env = "X2GOBROKER_AGENTD_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls, watch streams) per connection.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 64
    )]
    pub max_streams_per_connection: u32,
    /// Time a new connection may stay silent, and its TLS handshake may take.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub handshake_timeout_ms: u64,
    /// Idle time after which an HTTP/2 keep-alive PING is sent.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_KEEPALIVE_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub keepalive_interval_ms: u64,
    /// Time the PING's answer may take before the connection is closed.
    #[arg(
        long,
        env = "X2GOBROKER_AGENTD_KEEPALIVE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub keepalive_timeout_ms: u64,
    /// With --client-ca: a client certificate authenticates only with one of these names as
    /// subject CN or subjectAltName DNS name (repeatable or comma separated; default: any
    /// certificate issued by the CA).
    #[arg(
        long = "allowed-client-name",
        env = "X2GOBROKER_AGENTD_ALLOWED_CLIENT_NAMES",
        value_delimiter = ','
    )]
    pub allowed_client_names: Vec<String>,
}
impl Args {
    /// The daemon settings these arguments ask for.
    pub fn into_config(self) -> DaemonConfig {
        DaemonConfig {
            listen: self.listen,
            token_file: self.token_file,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            client_ca: self.client_ca,
            server_names: self.server_names,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            tool_timeout: Duration::from_secs(self.tool_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms),
            allowed_client_names: self.allowed_client_names,
        }
    }
}
