//! Accepting connections (plain or rustls) and handing them to the axum router, with graceful shutdown.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long in-flight requests may take to finish after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors setting up the listener's TLS.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("cannot read TLS key {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS configuration rejected: {0}")]
    Tls(String),
}

/// A rustls server configuration from PEM certificate chain and key files.
pub fn tls_config_from_files(
    certificate_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certificate_file)
            .and_then(|iterator| iterator.collect())
            .map_err(|error| ServeError::Certificate {
                path: certificate_file.display().to_string(),
                message: error.to_string(),
            })?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| ServeError::Key {
        path: key_file.display().to_string(),
        message: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ServeError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| ServeError::Tls(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The listener's TLS configuration, replaceable while serving (a reload swaps in a new
/// certificate and key; connections already made keep theirs).
#[derive(Debug)]
pub struct ReloadableTls {
    current: std::sync::RwLock<Arc<rustls::ServerConfig>>,
}

impl ReloadableTls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Arc<ReloadableTls> {
        Arc::new(ReloadableTls {
            current: std::sync::RwLock::new(config),
        })
    }

    /// The configuration new connections get.
    pub fn get(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// New connections get `config` from now on.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight requests `SHUTDOWN_GRACE` to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            },
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        match tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.get()))
        {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await;
                    let tls_stream = match handshake {
                        Ok(Ok(tls_stream)) => tls_stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let connection = builder.serve_connection(TokioIo::new(tls_stream), service);
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
}
