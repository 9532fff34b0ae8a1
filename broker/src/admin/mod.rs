//! The admin side of the broker: its listener (HTTP/1.1 and gRPC on one port: `/metrics`, `/status`, `/healthz`, `/readyz`, `x2gobroker.admin.v1.Admin` with reflection and health), the drain state, the metrics and the audit log.
//!
//! Separate from the client port (`[admin] bind`, default 127.0.0.1:8081). Off loopback it
//! needs TLS and a client certificate or a bearer token (`[admin]` keys, the agentd's rules);
//! `/healthz` and `/readyz` answer anyone, as on the client port.

pub mod audit;
pub mod drain;
pub mod grpc;
pub mod metrics;
pub mod status;

use crate::farm::model::{AgentObserver, Via};
use crate::http::ReloadableTls;
use crate::service::Broker;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub use audit::{AuditEvent, AuditLog};
pub use drain::DrainStore;
pub use metrics::Metrics;

/// What the operations side keeps for the whole process: metrics, the audit log, the drain
/// state, and whether the broker is ready.
#[derive(Debug)]
pub struct Operations {
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditLog>,
    pub drain: DrainStore,
    ready: AtomicBool,
}

impl Operations {
    pub fn new(audit: AuditLog, drain: DrainStore) -> Operations {
        Operations {
            metrics: Arc::new(Metrics::default()),
            audit: Arc::new(audit),
            drain,
            ready: AtomicBool::new(false),
        }
    }

    /// No files: nothing drained and nothing kept, audit events on the broker's log (tests,
    /// embedders, the SSH broker mode without a state file).
    pub fn in_memory() -> Operations {
        Operations::new(AuditLog::to_log(), DrainStore::in_memory())
    }

    /// The broker is serving: its config is loaded and its farm started (`/readyz`).
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// What the farm's actors tell: agent calls and failures (metrics), keys (audit).
    pub fn farm_observer(&self) -> Arc<dyn AgentObserver> {
        Arc::new(FarmObserver {
            metrics: self.metrics.clone(),
            audit: self.audit.clone(),
        })
    }
}

/// The farm's observer: metrics for calls and failures, audit lines for keys.
struct FarmObserver {
    metrics: Arc<Metrics>,
    audit: Arc<AuditLog>,
}

impl AgentObserver for FarmObserver {
    fn call_finished(&self, server: &str, via: Via, took: Duration, ok: bool) {
        self.metrics.call_finished(server, via, took, ok);
    }

    fn agent_failed(&self, server: &str, via: Via) {
        self.metrics.agent_failed(server, via);
    }

    fn key_changed(&self, server: &str, user: &str, installed: bool, ok: bool) {
        self.audit.record(&AuditEvent::Key {
            user,
            server,
            action: if installed { "installed" } else { "removed" },
            ok,
        });
    }
}

/// Who is calling the admin API: set per connection by the listener, read by handlers (the
/// audit log's `by`) and the access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClient {
    pub peer: SocketAddr,
    /// The verified client certificate's common name, when one was presented.
    pub certificate_name: Option<String>,
    /// Whether the connection presented a certificate the client CA verified.
    pub certified: bool,
}

impl AdminClient {
    /// The identity the audit log records.
    pub fn identity(&self, token_used: bool) -> String {
        match (&self.certificate_name, self.certified, token_used) {
            (Some(name), true, _) => format!("certificate {name} from {}", self.peer.ip()),
            (None, true, _) => format!("certificate from {}", self.peer.ip()),
            (_, false, true) => format!("token from {}", self.peer.ip()),
            _ => format!("{}", self.peer.ip()),
        }
    }
}

/// Whether a request carried the admin token (set by the access check).
#[derive(Debug, Clone, Copy)]
pub struct TokenUsed(pub bool);

/// What the admin listener needs to check its clients.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// The bearer token, when `[admin] token-file` names one (a SIGHUP reads it again).
    pub token: Arc<std::sync::RwLock<Option<Arc<str>>>>,
    /// Whether a client certificate is accepted instead (`[admin] client-ca`).
    pub client_ca: bool,
}

#[derive(Clone)]
struct AdminEndpoint {
    broker: Arc<Broker>,
    access: AdminAccess,
}

/// The admin router: the HTTP pages and the gRPC services (`x2gobroker.admin.v1.Admin`,
/// reflection v1 and v1alpha, health) behind the access check.
pub fn router(broker: Arc<Broker>, access: AdminAccess) -> Router {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(x2gobroker_proto::ADMIN_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().ok();
    let reflection_v1alpha = reflection().build_v1alpha().ok();
    let admin = x2gobroker_proto::admin::v1::admin_server::AdminServer::new(grpc::AdminService {
        broker: broker.clone(),
    });
    tokio::spawn(async move {
        health_reporter
            .set_serving::<x2gobroker_proto::admin::v1::admin_server::AdminServer<grpc::AdminService>>()
            .await;
    });
    let mut routes = tonic::service::Routes::new(admin).add_service(health_service);
    if let Some(service) = reflection_v1 {
        routes = routes.add_service(service);
    }
    if let Some(service) = reflection_v1alpha {
        routes = routes.add_service(service);
    }
    let endpoint = AdminEndpoint { broker, access };
    let pages = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/status", get(status_page))
        .route("/", get(status_page))
        .with_state(endpoint.clone());
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoint.clone());
    routes
        .into_axum_router()
        .merge(pages)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(endpoint, check_access))
        .merge(open)
}

/// Whether a request is a gRPC call (its errors are answered as gRPC statuses).
fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// An unknown path: gRPC's "unimplemented" for gRPC requests, 404 for the rest.
async fn not_found(request: Request) -> Response {
    if is_grpc(&request) {
        return tonic::Status::unimplemented("no such method").into_http();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The access check: with a token file, a request needs `Authorization: Bearer <token>` or
/// (with a client CA) a verified client certificate; without, the TLS layer has required the
/// certificate already, or the listener is on loopback.
async fn check_access(
    State(endpoint): State<AdminEndpoint>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = request.extensions().get::<AdminClient>().cloned();
    let certified = client.as_ref().is_some_and(|client| client.certified);
    let mut token_used = false;
    let token = endpoint
        .access
        .token
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Some(token) = &token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        token_used = presented.is_some_and(|presented| {
            subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), token.as_bytes()).into()
        });
        let certificate_accepted = endpoint.access.client_ca && certified;
        if !(token_used || certificate_accepted) {
            let peer = client
                .map(|client| client.peer.to_string())
                .unwrap_or_default();
            tracing::warn!(%peer, path = %request.uri().path(), "admin request without a valid token refused");
            return refused(&request);
        }
    }
    request.extensions_mut().insert(TokenUsed(token_used));
    next.run(request).await
}

/// 401, as gRPC's UNAUTHENTICATED for gRPC requests.
fn refused(request: &Request) -> Response {
    if is_grpc(request) {
        return tonic::Status::unauthenticated("an admin token or client certificate is needed")
            .into_http();
    }
    let mut response = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn metrics_page(State(endpoint): State<AdminEndpoint>) -> Response {
    let broker = &endpoint.broker;
    let servers = broker.farm_overview().await;
    let operations = &broker.operations;
    let text = operations
        .metrics
        .render(&servers, &|name| operations.drain.is_drained(name));
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

async fn status_page(State(endpoint): State<AdminEndpoint>) -> Response {
    let broker = &endpoint.broker;
    let servers = broker.farm_overview().await;
    let drain = &broker.operations.drain;
    let page = status::render(
        &servers,
        &|name| drain.is_drained(name),
        &broker.settings.config_file.display().to_string(),
    );
    let mut response = Response::new(Body::from(page));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `/healthz`: the process answers.
pub async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `/readyz` for `broker`: its config loads and its farm has started.
pub fn readiness(broker: &Broker) -> Response {
    let config_ok = broker.snapshot().config.is_ok();
    if config_ok && broker.operations.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if !config_ok {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the configuration cannot be loaded\n",
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn readyz(State(endpoint): State<AdminEndpoint>) -> Response {
    readiness(&endpoint.broker)
}

/// The common name of a DER certificate's subject, if it has one.
fn common_name(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    let certificate = x509_cert::Certificate::from_der(der).ok()?;
    certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|set| set.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| {
            let value = attribute.value.value();
            std::str::from_utf8(value).ok().map(str::to_string)
        })
}

/// How long a connection may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (an admin API has few clients).
const MAX_CONNECTIONS: usize = 256;
/// How long in-flight admin requests may take after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` (HTTP/1.1 and HTTP/2, so gRPC too; TLS when `tls` is given) on `listener`
/// until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin listener: too many connections, refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(tls.get()));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let builder = {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT);
                builder
            };
            let service = |client: AdminClient| {
                hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(client.peer));
                        request.extensions_mut().insert(client.clone());
                        router.clone().oneshot(request)
                    },
                )
            };
            let outcome = match acceptor {
                None => {
                    let client = AdminClient {
                        peer,
                        certificate_name: None,
                        certified: false,
                    };
                    let connection =
                        builder.serve_connection(TokioIo::new(stream), service(client));
                    watcher.watch(connection.into_owned()).await
                }
                Some(acceptor) => {
                    let tls_stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls_stream)) => tls_stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "admin listener: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let certificate = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| leaf.as_ref().to_vec());
                    let client = AdminClient {
                        peer,
                        certified: certificate.is_some(),
                        certificate_name: certificate.as_deref().and_then(common_name),
                    };
                    let connection =
                        builder.serve_connection(TokioIo::new(tls_stream), service(client));
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%error, %peer, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin requests did not finish within the grace period");
    }
}
