//! The HTTP(S) daemon: routes of §3.2, Tornado-compatible status codes, headers and error pages, the client address behind trusted proxies, graceful shutdown.

pub mod connections;
pub mod proxy;
pub mod request;
pub mod routes;
pub mod server;

pub use proxy::TrustedPeers;
pub use server::{
    bind_listener, raise_open_file_limit, serve, tls_config_from_files, tls_server_config,
    ClientCertificates, ReloadableTls, ServeError,
};
