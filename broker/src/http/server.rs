//! Accepting connections (plain or rustls) under the `[http]` limits (connection cap, header and request deadlines, keep-alive), a PROXY protocol v2 header from trusted peers first, and handing them to the axum router, with graceful shutdown.

use super::connections::{Admission, Slots};
use super::proxy::{Preamble, TrustedPeers};
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
/// How long a connection accepted before shutdown, on which no request has begun yet, may
/// still deliver its first one: it was sent before the client could know of the shutdown
/// (hyper alone would close such a connection at once).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);
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

/// A rustls server configuration from PEM certificate chain and key files (the client port:
/// HTTP/1.1, no client certificates).
pub fn tls_config_from_files(
    certificate_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    tls_server_config(certificate_file, key_file, None, &[b"http/1.1"])
}

/// Whether a TLS listener asks its clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates<'a> {
    /// Every client must present one that `ca` (a PEM file) signed.
    Required { ca: &'a Path },
    /// A client may present one; when it does, `ca` must have signed it.
    Optional { ca: &'a Path },
}

/// A rustls server configuration from PEM files: the certificate chain and key, optionally a
/// CA that client certificates must verify against, and the ALPN protocols offered.
pub fn tls_server_config(
    certificate_file: &Path,
    key_file: &Path,
    client_certificates: Option<ClientCertificates<'_>>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read_certificates = |path: &Path| -> Result<Vec<CertificateDer<'static>>, ServeError> {
        CertificateDer::pem_file_iter(path)
            .and_then(|iterator| iterator.collect())
            .map_err(|error| ServeError::Certificate {
                path: path.display().to_string(),
                message: error.to_string(),
            })
    };
    let certificates = read_certificates(certificate_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| ServeError::Key {
        path: key_file.display().to_string(),
        message: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| ServeError::Tls(error.to_string()))?;
    let builder = match client_certificates {
        None => builder.with_no_client_auth(),
        Some(ClientCertificates::Required { ca } | ClientCertificates::Optional { ca }) => {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certificates(ca)?);
            if added == 0 {
                return Err(ServeError::Certificate {
                    path: ca.display().to_string(),
                    message: "no CA certificate".to_string(),
                });
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = match client_certificates {
                Some(ClientCertificates::Optional { .. }) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|error| ServeError::Tls(format!("{}: {error}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(|error| ServeError::Tls(error.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
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
/// idle time), requests at most `request_timeout`. A connection from a peer in
/// `proxy_peers` may begin with a PROXY protocol v2 header (within `header_timeout`, before
/// TLS): the address it names is the request's peer (`ConnectInfo`); from others such a
/// header closes the connection.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    router: Router,
    limits: &HttpLimits,
    proxy_peers: TrustedPeers,
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
    let refused_preambles = Arc::new(std::sync::Mutex::new(Sparse::default()));
    // every connection holds a receiver; shutdown flips the flag and waits for all of them
    let (stopping, stop_watcher) = tokio::sync::watch::channel(false);
    let first_request_grace = FIRST_REQUEST_GRACE.min(header_timeout);
    tokio::pin!(shutdown);
    // after shutdown: connections still queued in the kernel, at most a backlog's worth
    let mut draining: Option<i32> = None;
    loop {
        let (stream, peer) = match draining.as_mut() {
            Some(left) => match (*left > 0).then(|| accept_queued(&listener)).flatten() {
                Some(connection) => {
                    *left -= 1;
                    connection
                }
                None => break,
            },
            None => tokio::select! {
                // once shutdown is asked for, the queue is drained below, without waiting
                biased;
                () = &mut shutdown => {
                    draining = Some(LISTEN_BACKLOG);
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            },
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
        let begun = Arc::new(tokio::sync::Notify::new());
        let begun_in_service = begun.clone();
        // the request's peer: the TCP peer, or the client a trusted PROXY header names
        let request_peer = Arc::new(std::sync::OnceLock::<std::net::SocketAddr>::new());
        let request_peer_in_service = request_peer.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                let peer = request_peer_in_service.get().copied().unwrap_or(peer);
                request.extensions_mut().insert(ConnectInfo(peer));
                let busy = requests.busy();
                // stores a permit: "a request has begun on this connection"
                begun_in_service.notify_one();
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
        let stop = stop_watcher.clone();
        let trusted_peer = proxy_peers.contains(peer.ip());
        let refused_preambles = refused_preambles.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // the first bytes: a PROXY header (trusted peers), else TLS or HTTP untouched;
            // a shutdown meanwhile leaves the first-request grace, as hyper's wait would
            let mut stop_waiting = stop.clone();
            let stopped = async move {
                let _ = stop_waiting.wait_for(|stopping| *stopping).await;
                tokio::time::sleep(first_request_grace).await;
            };
            let preamble = tokio::select! {
                preamble = super::proxy::read_preamble(&mut stream, trusted_peer, header_timeout) => preamble,
                () = stopped => return,
                () = slot.closed() => return,
            };
            match preamble {
                Ok(Preamble::None) | Ok(Preamble::Proxied(None)) => {}
                Ok(Preamble::Proxied(Some(client))) => {
                    let _ = request_peer.set(client);
                }
                Err(
                    error @ (super::proxy::PreambleError::TimedOut
                    | super::proxy::PreambleError::Io(_)),
                ) => {
                    tracing::debug!(%peer, %error, "connection closed before HTTP");
                    return;
                }
                Err(error) => {
                    let due = refused_preambles
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .due();
                    if let Some(skipped) = due {
                        tracing::warn!(%peer, %error, skipped, "connection closed before HTTP");
                    }
                    return;
                }
            }
            let served = async {
                match acceptor {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        until_shutdown(connection, stop, &begun, first_request_grace, |c| {
                            c.graceful_shutdown()
                        })
                        .await
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
                        until_shutdown(connection, stop, &begun, first_request_grace, |c| {
                            c.graceful_shutdown()
                        })
                        .await
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
    drop(stop_watcher);
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stopping.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
}

/// A connection the kernel has already completed, taken without waiting: clients that
/// connected before shutdown get their first request answered instead of a reset.
fn accept_queued(listener: &TcpListener) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let (socket, address) = socket2::SockRef::from(listener).accept().ok()?;
    let peer = address.as_socket()?;
    let stream = std::net::TcpStream::from(socket);
    stream.set_nonblocking(true).ok()?;
    Some((tokio::net::TcpStream::from_std(stream).ok()?, peer))
}

/// Drives one connection until it ends; once `stop` turns true it is shut down gracefully
/// (the request in progress is answered, then the connection closes; idle keep-alive ends),
/// after giving a connection on which no request has `begun` yet `first_request_grace` to
/// start its first one.
async fn until_shutdown<C, E>(
    connection: C,
    mut stop: tokio::sync::watch::Receiver<bool>,
    begun: &tokio::sync::Notify,
    first_request_grace: Duration,
    begin_shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    tokio::select! {
        outcome = connection.as_mut() => return outcome,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    tokio::select! {
        outcome = connection.as_mut() => return outcome,
        _ = tokio::time::timeout(first_request_grace, begun.notified()) => {}
    }
    begin_shutdown(connection.as_mut());
    connection.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a one-route router on 127.0.0.1; the sender stops it.
    async fn start() -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "served" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let limits = HttpLimits::default();
            serve(
                listener,
                None,
                router,
                &limits,
                TrustedPeers::none(),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
        });
        // the server waits in accept before the test goes on
        tokio::time::sleep(Duration::from_millis(20)).await;
        (address, stop, server)
    }

    #[tokio::test]
    async fn a_request_sent_on_a_connection_opened_before_shutdown_is_answered() {
        let (address, stop, server) = start().await;
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        // accepted, no request yet: then the broker is told to stop
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // answered, then closed (read_to_string saw the end of the stream)
        assert!(answer.ends_with("served"), "{answer}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_still_queued_in_the_kernel_at_shutdown_is_served() {
        let (address, stop, server) = start().await;
        // the accept loop cannot run while this single-threaded test does: the connection
        // completes in the kernel, the request is in its buffer, and shutdown comes first
        let mut client = std::net::TcpStream::connect(address).unwrap();
        std::io::Write::write_all(&mut client, b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n").unwrap();
        stop.send(()).unwrap();
        server.await.unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut client, &mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }

    #[tokio::test]
    async fn a_silent_connection_delays_shutdown_by_the_first_request_grace_only() {
        let (address, stop, server) = start().await;
        let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = tokio::time::Instant::now();
        stop.send(()).unwrap();
        server.await.unwrap();
        let took = asked.elapsed();
        assert!(took >= FIRST_REQUEST_GRACE, "{took:?}");
        assert!(
            took < FIRST_REQUEST_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        // and the silent client is told: end of stream, no answer
        let mut rest = Vec::new();
        silent.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }
}
