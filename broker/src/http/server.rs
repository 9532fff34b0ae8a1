//! Accepting connections (plain or rustls) under the `[http]` limits (connection cap, header and request deadlines, keep-alive) and handing them to the axum router, with graceful shutdown.

use super::connections::{Admission, Slots};
use crate::config::HttpLimits;
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
/// Open files kept free of connections for everything else the broker opens.
pub const RESERVED_FILES: u64 = 256;

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

/// Pending connections the kernel queues before the broker accepts them (a login storm of a
/// whole lab at 8:00 must not wait for SYN retries; the kernel caps it at `somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1024;

/// The client port's listening socket, with address reuse and [`LISTEN_BACKLOG`].
pub fn bind_listener(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Raises the soft open-file limit to the hard one (the connection cap needs the room; the
/// usual soft limit is 1024) and returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Logs at most one line a second for a repeated event (a flood must not flood the log).
#[derive(Debug, Default)]
struct Sparse {
    last: Option<tokio::time::Instant>,
    skipped: u64,
}

impl Sparse {
    /// Whether to log now, and how many were skipped since the last line.
    fn due(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// The error page of a request that ran out of time (`request-timeout-ms`).
fn request_timed_out() -> axum::response::Response {
    super::routes::error_page(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        &axum::http::Method::GET,
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight requests `SHUTDOWN_GRACE` to finish. `limits` bound what one client may cost:
/// connections beyond `max_connections` (lowered to fit the open-file limit) close the oldest
/// idle connection or are refused, heads take at most `header_timeout` (also the keep-alive
/// idle time), requests at most `request_timeout`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    router: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let cap = super::connections::effective_cap(limits.max_connections, nofile, RESERVED_FILES);
    if cap < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            cap,
            open_file_limit = nofile,
            "[http] max-connections lowered to fit the open-file limit (LimitNOFILE=)"
        );
    }
    let slots = Slots::new(cap);
    let (header_timeout, request_timeout) = (limits.header_timeout, limits.request_timeout);
    let keep_alive = limits.keep_alive;
    let (mut evictions, mut refusals) = (Sparse::default(), Sparse::default());
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
        let slot = match slots.admit() {
            Admission::Admitted { slot, evicted } => {
                if evicted {
                    if let Some(skipped) = evictions.due() {
                        tracing::warn!(
                            cap,
                            skipped,
                            "connection cap reached: the oldest idle connection was closed"
                        );
                    }
                }
                slot
            }
            Admission::Full => {
                if let Some(skipped) = refusals.due() {
                    tracing::warn!(cap, skipped, %peer, "connection cap reached and every connection busy: refused");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let requests = slot.busy_counter();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let busy = requests.busy();
                let answer = router.clone().oneshot(request);
                async move {
                    let response = match tokio::time::timeout(request_timeout, answer).await {
                        Ok(response) => response,
                        Err(_) => {
                            tracing::warn!(%peer, "request took longer than [http] request-timeout-ms: answered 503");
                            Ok(request_timed_out())
                        }
                    };
                    drop(busy);
                    response
                }
            },
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(keep_alive);
        let acceptor = tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.get()));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let served = async {
                match acceptor {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                    Some(acceptor) => {
                        let tls_stream =
                            match tokio::time::timeout(header_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(tls_stream)) => tls_stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %peer, "TLS handshake failed");
                                    return Ok(());
                                }
                                Err(_) => return Ok(()),
                            };
                        let connection =
                            builder.serve_connection(TokioIo::new(tls_stream), service);
                        watcher.watch(connection).await
                    }
                }
            };
            tokio::select! {
                outcome = served => {
                    if let Err(error) = outcome {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = slot.closed() => tracing::debug!(%peer, "closed for the connection cap"),
            }
        });
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
