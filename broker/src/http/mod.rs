//! The HTTP(S) daemon: routes of §3.2, Tornado-compatible status codes, headers and error pages, graceful shutdown.

pub mod connections;
pub mod request;
pub mod routes;
pub mod server;

pub use server::{
    bind_listener, raise_open_file_limit, serve, tls_config_from_files, tls_server_config,
    ClientCertificates, ReloadableTls, ServeError,
};
