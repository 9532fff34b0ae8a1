//! Routing and handlers (§3.2–§3.8, §4): `/plain/`, `/json/`, `/uccs/`, `/pubkeys`, `/`, with Tornado's pages.
//!
//! Only routing, parameter extraction and status mapping: each request's logic is in
//! `service.rs`, its body rendered by `frontend/`.

use super::request::{InvalidParameter, ParamLimits, Params};
use crate::admin::metrics::{FrontendLabel, TaskLabel};
use crate::config::{GlobalSettings, HttpLimits};
use crate::frontend;
use crate::service::{BasicCredentials, Broker, BrokerError, BrokerRequest, Frontend};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Bodies above this size have their parameters parsed on the blocking pool.
const LARGE_BODY_BYTES: usize = 64 * 1024;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const TEXT_JSON: &str = "text/json; charset=utf-8";
const TEXT_HTML: &str = "text/html; charset=UTF-8";
const ROOT_PAGE: &str = "<body><html><h1>X2Go Session Broker</h1><p>It works...</p></body></html>";

/// What every request is served with: the broker and the client port's limits.
#[derive(Clone)]
struct Endpoint {
    broker: Arc<Broker>,
    limits: Arc<HttpLimits>,
    /// Big bodies are parsed one at a time (a flood of them takes one core, never all).
    large_bodies: Arc<tokio::sync::Semaphore>,
}

/// The broker's router: every path goes through one dispatcher that applies §3.2; bodies and
/// parameters are read within `limits`.
pub fn router(broker: Arc<Broker>, limits: HttpLimits) -> Router {
    Router::new().fallback(dispatch).with_state(Endpoint {
        broker,
        limits: Arc::new(limits),
        large_bodies: Arc::new(tokio::sync::Semaphore::new(1)),
    })
}

fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        _ => status.canonical_reason().unwrap_or("Unknown"),
    }
}

/// Tornado's default error page, headers reset (no `Expires`).
pub(super) fn error_page(status: StatusCode, method: &Method) -> Response {
    let code = status.as_u16();
    let text = reason(status);
    let body = if *method == Method::HEAD {
        String::new()
    } else {
        format!("<html><title>{code}: {text}</title><body>{code}: {text}</body></html>")
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_HTML));
    response
}

fn ok_response(
    method: &Method,
    content_type: &'static str,
    expires: bool,
    body: String,
) -> Response {
    let body = if *method == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if expires {
        headers.insert(header::EXPIRES, HeaderValue::from_static("+1h"));
    }
    response
}

fn broker_error(error: BrokerError, method: &Method) -> Response {
    match error {
        BrokerError::NotFound => error_page(StatusCode::NOT_FOUND, method),
        BrokerError::Unauthorized => error_page(StatusCode::UNAUTHORIZED, method),
        BrokerError::Internal(message) => {
            tracing::error!(%message, "request failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, method)
        }
    }
}

fn decode_capture(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The request's client address as ACLs, `verify-ip`, the throttle and the access log see it
/// (IPv4-mapped IPv6 as IPv4, as the reference): the peer, or behind a trusted proxy the
/// client it names (`http/proxy.rs`). A `trusted-proxies` value that cannot be read trusts
/// nobody (`--check-config` reports it).
fn client_ip(global: Option<&GlobalSettings>, peer: &SocketAddr, headers: &HeaderMap) -> IpAddr {
    let Some(global) = global else {
        return super::proxy::canonical(peer.ip());
    };
    let trusted = global.trusted_proxies.as_ref().ok();
    match trusted {
        Some(trusted) => {
            super::proxy::client_address(peer.ip(), headers, trusted, global.client_address_header)
        }
        None => super::proxy::canonical(peer.ip()),
    }
}

/// The path to route: `path` with `[global] url-prefix` taken off (the prefix alone is `/`);
/// `None` for a path outside the prefix.
fn routed_path<'a>(path: &'a str, prefix: Option<&str>) -> Option<&'a str> {
    let Some(prefix) = prefix else {
        return Some(path);
    };
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some("/");
    }
    rest.starts_with('/').then_some(rest)
}

/// `^/uccs/(.*)/api/([0-9])(/*)$`: the backend capture and the API digit.
fn match_uccs_api(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix("/uccs/")?;
    let trimmed = rest.trim_end_matches('/');
    let (before, digit) = trimmed.rsplit_once("/api/")?;
    let mut characters = digit.chars();
    let version = characters.next()?.to_digit(10)?;
    if characters.next().is_some() {
        return None;
    }
    Some((before, version))
}

/// `^/uccs/[a-zA-Z]*(/*)$`
fn is_uccs_ping(path: &str) -> bool {
    path.strip_prefix("/uccs/")
        .map(|rest| {
            rest.trim_end_matches('/')
                .chars()
                .all(|c| c.is_ascii_alphabetic())
        })
        .unwrap_or(false)
}

async fn dispatch(
    State(endpoint): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = tokio::time::Instant::now();
    let (client, prefix) = {
        let snapshot = endpoint.broker.snapshot();
        let global = snapshot.config.as_ref().ok().map(|config| &config.global);
        let client = client_ip(global, &peer, request.headers());
        (client, global.and_then(|global| global.url_prefix.clone()))
    };
    // the health probes answer on the bare paths too (they come from the host, not the proxy)
    let routed = routed_path(&path, prefix.as_deref())
        .or_else(|| (path == "/healthz" || path == "/readyz").then_some(path.as_str()));
    let response = match routed {
        Some(routed) => route(&endpoint, routed, client, request).await,
        None => error_page(StatusCode::NOT_FOUND, &method),
    };
    let status = response.status().as_u16();
    crate::logging::log_request(status, method.as_str(), &path, client, started.elapsed());
    let task = response
        .extensions()
        .get::<TaskLabel>()
        .copied()
        .unwrap_or(TaskLabel::None);
    endpoint
        .broker
        .operations
        .metrics
        .request(frontend_label(routed.unwrap_or("")), task, status);
    response
}

/// The metrics label of a request path (never the path itself).
fn frontend_label(path: &str) -> FrontendLabel {
    if path.starts_with("/plain/") {
        FrontendLabel::Plain
    } else if path.starts_with("/json/") {
        FrontendLabel::Json
    } else if path.starts_with("/uccs/") {
        FrontendLabel::Uccs
    } else if path.starts_with("/pubkeys") {
        FrontendLabel::Pubkeys
    } else if path == "/" {
        FrontendLabel::Root
    } else if path == "/healthz" || path == "/readyz" {
        FrontendLabel::Health
    } else {
        FrontendLabel::Other
    }
}

async fn route(endpoint: &Endpoint, path: &str, client: IpAddr, request: Request) -> Response {
    let broker = &endpoint.broker;
    let method = request.method().clone();
    let path = path.to_string();
    let read_only = method == Method::GET || method == Method::HEAD;
    if path == "/healthz" && read_only {
        return crate::admin::healthz().await;
    }
    if path == "/readyz" && read_only {
        return crate::admin::readiness(broker);
    }
    if path == "/" {
        if !read_only {
            return error_page(StatusCode::METHOD_NOT_ALLOWED, &method);
        }
        return ok_response(&method, TEXT_HTML, false, ROOT_PAGE.to_string());
    }
    if path
        .strip_prefix("/pubkeys")
        .is_some_and(|rest| rest.chars().all(|c| c == '/'))
    {
        if !read_only {
            return error_page(StatusCode::METHOD_NOT_ALLOWED, &method);
        }
        // a broken config serves the reference's types only
        let all_types = match &broker.snapshot().config {
            Ok(config) => config.global.pubkeys_all_types.get().unwrap_or(false),
            Err(_) => false,
        };
        return ok_response(
            &method,
            TEXT_HTML,
            false,
            crate::pubkeys::render(&broker.settings.daemon_user, all_types),
        );
    }
    if is_uccs_ping(&path) {
        if !read_only {
            return error_page(StatusCode::METHOD_NOT_ALLOWED, &method);
        }
        return ok_response(
            &method,
            TEXT_HTML,
            false,
            frontend::uccs::render_ping(chrono::Utc::now()),
        );
    }
    if let Some((backend_capture, version)) = match_uccs_api(&path) {
        let backend_name = decode_capture(backend_capture.trim_end_matches('/'));
        let headers = request.headers().clone();
        return uccs_api(broker, &method, &headers, &backend_name, version, client).await;
    }
    let frontend = if let Some(rest) = path.strip_prefix("/plain/") {
        Some((Frontend::Plain, rest.to_string()))
    } else {
        path.strip_prefix("/json/")
            .map(|rest| (Frontend::Json, rest.to_string()))
    };
    let Some((frontend, capture)) = frontend else {
        return error_page(StatusCode::NOT_FOUND, &method);
    };
    broker_endpoint(endpoint, frontend, &capture, client, request).await
}

fn backend_from_capture(capture: &str) -> String {
    let decoded = decode_capture(capture);
    let trimmed = decoded.trim_end_matches('/');
    trimmed.split('/').next().unwrap_or("").to_string()
}

fn read_request(params: &Params, frontend: Frontend) -> Result<BrokerRequest, InvalidParameter> {
    let mut profile_id = params.get_or_empty("sid", true)?;
    if frontend == Frontend::Json && params.get("sid", true)?.is_none() {
        profile_id = params.get_or_empty("profile-id", true)?;
    }
    Ok(BrokerRequest {
        user: params.get_or_empty("user", true)?,
        password: params.get_or_empty("password", false)?,
        login: params.get_or_empty("login", true)?,
        authid: params.get_or_empty("authid", true)?,
        task: params.get_or_empty("task", true)?,
        profile_id,
        pubkey: params.get_or_empty("pubkey", true)?,
    })
}

/// A 408 that also closes the connection (its body is left unread).
fn body_timed_out(method: &Method) -> Response {
    let mut response = error_page(StatusCode::REQUEST_TIMEOUT, method);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn broker_endpoint(
    endpoint: &Endpoint,
    frontend: Frontend,
    capture: &str,
    client: IpAddr,
    request: Request,
) -> Response {
    let (broker, limits) = (&endpoint.broker, &endpoint.limits);
    let method = request.method().clone();
    let allowed = method == Method::POST || (method == Method::GET && broker.allows_get_requests());
    if !allowed {
        return error_page(StatusCode::METHOD_NOT_ALLOWED, &method);
    }
    let (parts, body) = request.into_parts();
    let too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
        .is_some_and(|length| length > limits.max_body_bytes);
    if too_large {
        return error_page(StatusCode::PAYLOAD_TOO_LARGE, &method);
    }
    let reading = axum::body::to_bytes(body, limits.max_body_bytes);
    let body: Bytes = match tokio::time::timeout(limits.body_timeout, reading).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return error_page(StatusCode::PAYLOAD_TOO_LARGE, &method),
        Err(_) => {
            tracing::warn!(peer = %client, "request body not complete within [http] body-timeout-ms: answered 408");
            return body_timed_out(&method);
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let param_limits = ParamLimits::broker(limits.max_parameters);
    // a big body is scanned off the async workers, one at a time: others keep being
    // answered meanwhile
    let parsed = if body.len() > LARGE_BODY_BYTES {
        let Ok(_turn) = endpoint.large_bodies.acquire().await else {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, &method);
        };
        let query = parts.uri.query().map(str::to_string);
        let content_type = content_type.map(str::to_string);
        let parse = move || {
            Params::from_request(
                query.as_deref(),
                content_type.as_deref(),
                &body,
                &param_limits,
            )
        };
        match tokio::task::spawn_blocking(parse).await {
            Ok(parsed) => parsed,
            Err(error) => return broker_error(BrokerError::Internal(error.to_string()), &method),
        }
    } else {
        Params::from_request(parts.uri.query(), content_type, &body, &param_limits)
    };
    let params = match parsed {
        Ok(params) => params,
        Err(error) => {
            tracing::warn!(%error, "bad request");
            return error_page(StatusCode::BAD_REQUEST, &method);
        }
    };
    let broker_request = match read_request(&params, frontend) {
        Ok(broker_request) => broker_request,
        Err(error) => {
            tracing::warn!(%error, "bad request");
            return error_page(StatusCode::BAD_REQUEST, &method);
        }
    };
    let backend = backend_from_capture(capture);
    let task = TaskLabel::of(&broker_request.task);
    let mut response = match broker
        .process(&backend, frontend, broker_request, client)
        .await
    {
        Ok(reply) => match frontend {
            Frontend::Json => ok_response(&method, TEXT_JSON, true, frontend::json::render(&reply)),
            _ => ok_response(&method, TEXT_PLAIN, true, frontend::plain::render(&reply)),
        },
        Err(error) => broker_error(error, &method),
    };
    // the request's task for the metrics (a label from a fixed list, never the raw value)
    response.extensions_mut().insert(task);
    response
}

fn unauthorized_basic() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_HTML));
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Authentication required\""),
    );
    response
}

/// HTTP Basic credentials, split at the first `:` (so passwords may contain `:`).
fn basic_credentials(headers: &HeaderMap) -> Option<BasicCredentials> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The UCCS API (§4): authentication comes before the method check (401, then 405).
async fn uccs_api(
    broker: &Arc<Broker>,
    method: &Method,
    headers: &HeaderMap,
    backend_name: &str,
    version: u32,
    client_ip: IpAddr,
) -> Response {
    let caller = match broker
        .uccs_authenticate(basic_credentials(headers), &client_ip)
        .await
    {
        Ok(caller) => caller,
        Err(BrokerError::Unauthorized) => return unauthorized_basic(),
        Err(error) => return broker_error(error, method),
    };
    if *method != Method::GET {
        return error_page(StatusCode::METHOD_NOT_ALLOWED, method);
    }
    match broker
        .uccs_servers(&caller, backend_name, version, &client_ip)
        .await
    {
        Ok(reply) => ok_response(method, TEXT_PLAIN, true, frontend::uccs::render(&reply)),
        Err(error) => broker_error(error, method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uccs_route_patterns() {
        assert_eq!(match_uccs_api("/uccs/inifile/api/5"), Some(("inifile", 5)));
        assert_eq!(
            match_uccs_api("/uccs/inifile/api/5//"),
            Some(("inifile", 5))
        );
        assert_eq!(match_uccs_api("/uccs//api/4"), Some(("", 4)));
        assert_eq!(match_uccs_api("/uccs/inifile/api/45"), None);
        assert!(is_uccs_ping("/uccs/"));
        assert!(is_uccs_ping("/uccs/abc//"));
        assert!(!is_uccs_ping("/uccs"));
        assert!(!is_uccs_ping("/uccs/inifile/api/5"));
    }

    #[test]
    fn the_url_prefix_is_taken_off_and_other_paths_are_outside() {
        let prefix = Some("/x2gobroker");
        let table = [
            ("/x2gobroker/plain/", prefix, Some("/plain/")),
            ("/x2gobroker", prefix, Some("/")),
            ("/x2gobroker/", prefix, Some("/")),
            ("/x2gobrokers/plain/", prefix, None),
            ("/plain/", prefix, None),
            ("/plain/", None, Some("/plain/")),
        ];
        for (path, prefix, expected) in table {
            assert_eq!(routed_path(path, prefix), expected, "{path} {prefix:?}");
        }
        assert_eq!(
            crate::config::settings::url_prefix(" /x2gobroker/ "),
            Some("/x2gobroker".to_string())
        );
        assert_eq!(
            crate::config::settings::url_prefix("x2go/broker"),
            Some("/x2go/broker".to_string())
        );
        assert_eq!(crate::config::settings::url_prefix("/"), None);
    }

    #[test]
    fn backend_capture_takes_the_first_segment() {
        assert_eq!(backend_from_capture("inifile/some/extra/path"), "inifile");
        assert_eq!(backend_from_capture(""), "");
        assert_eq!(backend_from_capture("zeroconf/"), "zeroconf");
    }
}
