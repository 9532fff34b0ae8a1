//! The connection pool to the cluster's PostgreSQL: the URL, the password file, TLS with `[cluster] ca-file`.

use super::ClusterError;
use crate::config::ClusterSettings;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long a connection to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections per broker: a placement holds one for a few milliseconds.
const POOL_SIZE: usize = 16;

/// How this broker reaches the database: the parsed connection settings and TLS, for the pool
/// and for the one connection that listens for notifications.
#[derive(Clone)]
pub struct Database {
    pub config: tokio_postgres::Config,
    pub tls: Option<MakeRustlsConnect>,
}

impl Database {
    /// The database of `settings`, as broker `name` (its `application_name`).
    pub fn new(settings: &ClusterSettings, name: &str) -> Result<Database, ClusterError> {
        let url = settings
            .database_url
            .as_deref()
            .ok_or_else(|| ClusterError::Config("no database-url".into()))?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| ClusterError::Config(format!("database-url: {error}")))?;
        config.application_name(format!("x2gobroker {name}"));
        config.connect_timeout(CONNECT_TIMEOUT);
        if let Some(file) = &settings.password_file {
            let text = std::fs::read_to_string(file).map_err(|error| {
                ClusterError::Config(format!("cannot read {}: {error}", file.display()))
            })?;
            let password = text.lines().next().unwrap_or_default().trim_end();
            config.password(password);
        }
        let tls = match &settings.ca_file {
            Some(ca_file) => Some(rustls_connector(ca_file)?),
            None => None,
        };
        Ok(Database { config, tls })
    }

    /// A pool of connections (opened when first needed: a database down at start-up is not
    /// an error here).
    pub fn pool(&self) -> Result<deadpool_postgres::Pool, ClusterError> {
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => deadpool_postgres::Manager::from_config(
                self.config.clone(),
                tls.clone(),
                manager_config,
            ),
            None => deadpool_postgres::Manager::from_config(
                self.config.clone(),
                tokio_postgres::NoTls,
                manager_config,
            ),
        };
        deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| ClusterError::Config(error.to_string()))
    }
}

/// rustls (ring) trusting only the CA in `ca_file`.
fn rustls_connector(ca_file: &std::path::Path) -> Result<MakeRustlsConnect, ClusterError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let unreadable =
        |error: String| ClusterError::Config(format!("ca-file {}: {error}", ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(ca_file).map_err(|error| unreadable(error.to_string()))?
    {
        let certificate = certificate.map_err(|error| unreadable(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| unreadable(error.to_string()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| unreadable(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
