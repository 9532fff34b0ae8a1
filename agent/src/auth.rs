//! Authentication of gRPC calls: a bearer token (`authorization: Bearer <token>`, compared in
//! constant time) or a client certificate verified against the admin's CA (mutual TLS),
//! optionally only with one of the allowed names (its subject CN or a subjectAltName DNS name).
//!
//! Applied as a tower layer in front of every service, reflection and the health Watch stream
//! included; only the health service's unary `Check` (`/grpc.health.v1.Health/Check`) is open,
//! so an unauthenticated peer can probe but never hold a stream. A refused call gets
//! UNAUTHENTICATED (no or wrong credentials) or PERMISSION_DENIED (a verified certificate whose
//! names are not allowed, whatever else the call carries) and a warning in the log.
//! The token is a [`SharedToken`]: a reload (SIGHUP) replaces it, and every call after that is
//! checked against the new one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The one call that needs no authentication: the health service's unary check.
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Problems with the token file, found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is owned by uid {owner}; it must be owned by root or by the agent's uid {euid}")]
    Owner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("token file {path} has mode {mode:04o}; it must not be readable or writable by group or others (chmod 600)")]
    Mode { path: PathBuf, mode: u32 },
    #[error("token file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("token in {path} is shorter than {MIN_TOKEN_LEN} characters or contains blanks")]
    Weak { path: PathBuf },
}

/// A shared secret.
#[derive(Clone)]
pub struct Token(Arc<Vec<u8>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Checks a presented token in constant time (for equal lengths).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.len() == presented.len() && bool::from(self.0.as_slice().ct_eq(presented))
    }
}

/// The token in use, replaced by a reload (SIGHUP) while calls are checked against it.
#[derive(Debug, Clone)]
pub struct SharedToken(Arc<std::sync::RwLock<Token>>);

impl SharedToken {
    pub fn new(token: Token) -> SharedToken {
        SharedToken(Arc::new(std::sync::RwLock::new(token)))
    }

    /// The token calls are checked against now.
    pub fn current(&self) -> Token {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `token` the one in use.
    pub fn replace(&self, token: Token) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
    }
}

/// Owner and mode rules for the token file (pure).
pub fn check_token_file_metadata(
    path: &Path,
    owner: u32,
    mode: u32,
    euid: u32,
) -> Result<(), TokenFileError> {
    if owner != 0 && owner != euid {
        return Err(TokenFileError::Owner {
            path: path.to_owned(),
            owner,
            euid,
        });
    }
    if mode & 0o066 != 0 {
        return Err(TokenFileError::Mode {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Reads the token (first line, surrounding blanks removed) after checking the file.
pub fn load_token_file(path: &Path) -> Result<Token, TokenFileError> {
    let read_error = |source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(TokenFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    check_token_file_metadata(
        path,
        meta.uid(),
        meta.mode(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
        return Err(TokenFileError::Weak {
            path: path.to_owned(),
        });
    }
    Ok(Token(Arc::new(token.as_bytes().to_vec())))
}

/// Who made an authenticated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Token,
    ClientCertificate,
    /// Health checks only.
    Anonymous,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or wrong ones (UNAUTHENTICATED); the reason is for the log.
    Unauthenticated(&'static str),
    /// A verified client certificate none of whose names is allowed (PERMISSION_DENIED).
    NameNotAllowed,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Unauthenticated(reason) => reason,
            Refusal::NameNotAllowed => "client certificate name not allowed",
        }
    }

    fn status(self) -> tonic::Status {
        match self {
            Refusal::Unauthenticated(reason) => {
                tonic::Status::unauthenticated(format!("unauthenticated: {reason}"))
            }
            Refusal::NameNotAllowed => tonic::Status::permission_denied(
                "client certificate name not allowed (--allowed-client-name)",
            ),
        }
    }
}

/// Common name, as an attribute type of a certificate's subject.
const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

/// The names a certificate (DER) carries: its subject's common names and its subjectAltName
/// DNS names, in that order. Empty when it cannot be parsed.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_cert::der::{Decode, Tag, Tagged};
    use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
    let Ok(certificate) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for relative_name in &certificate.tbs_certificate.subject.0 {
        for attribute in relative_name.0.iter() {
            let textual = matches!(
                attribute.value.tag(),
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String
            );
            if attribute.oid == COMMON_NAME && textual {
                if let Ok(text) = std::str::from_utf8(attribute.value.value()) {
                    names.push(text.to_owned());
                }
            }
        }
    }
    if let Ok(Some((_, alternative_names))) = certificate.tbs_certificate.get::<SubjectAltName>() {
        for name in alternative_names.0 {
            if let GeneralName::DnsName(dns_name) = name {
                names.push(AsRef::<str>::as_ref(&dns_name).to_owned());
            }
        }
    }
    names
}

/// Whether one of `names` is in `allowed` (ASCII case-insensitive, as DNS names compare).
pub fn name_allowed(names: &[String], allowed: &[String]) -> bool {
    names
        .iter()
        .any(|name| allowed.iter().any(|entry| entry.eq_ignore_ascii_case(name)))
}

/// Decides whether a call is authenticated.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The bearer token (replaced on reload), if a token file is configured.
    pub token: Option<SharedToken>,
    /// Client certificates were verified by rustls against the configured CA.
    pub client_certificates: bool,
    /// When not empty, a client certificate authenticates only with one of these names.
    pub allowed_client_names: Arc<[String]>,
}

impl Authenticator {
    /// `Ok` with the principal, or the refusal.
    pub fn authenticate(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Principal, Refusal> {
        if path == HEALTH_CHECK {
            return Ok(Principal::Anonymous);
        }
        if self.client_certificates {
            let certificates = extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs())
                .filter(|certs| !certs.is_empty());
            if let Some(certificates) = certificates {
                if self.allowed_client_names.is_empty() {
                    return Ok(Principal::ClientCertificate);
                }
                let names = certificate_names(certificates[0].as_ref());
                if name_allowed(&names, &self.allowed_client_names) {
                    return Ok(Principal::ClientCertificate);
                }
                return Err(Refusal::NameNotAllowed);
            }
        }
        self.authenticate_token(headers)
            .map_err(Refusal::Unauthenticated)
    }

    fn authenticate_token(&self, headers: &http::HeaderMap) -> Result<Principal, &'static str> {
        let Some(token) = &self.token else {
            return Err("no client certificate");
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err("no authorization header");
        };
        let presented = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
            .ok_or("authorization is not a bearer token")?;
        if token.current().matches(presented) {
            Ok(Principal::Token)
        } else {
            Err("wrong bearer token")
        }
    }
}

/// Tower layer applying an [`Authenticator`] to every request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Authenticator,
}

fn remote_addr(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let verdict = self.authenticator.authenticate(
            request.uri().path(),
            request.headers(),
            request.extensions(),
        );
        match verdict {
            Ok(principal) => {
                tracing::debug!(
                    path = request.uri().path(),
                    ?principal,
                    "authenticated call"
                );
                // The clone that was polled ready serves this request (tower's rule).
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Box::pin(ready.call(request))
            }
            Err(refusal) => {
                tracing::warn!(
                    path = ?request.uri().path(),
                    peer = ?remote_addr(request.extensions()),
                    reason = refusal.reason(),
                    "unauthenticated call refused"
                );
                let response = refusal.status().into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token(text: &str) -> Token {
        Token(Arc::new(text.as_bytes().to_vec()))
    }

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        if let Some(value) = authorization {
            map.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_token_rules() {
        let shared = SharedToken::new(token("0123456789abcdef"));
        let authenticator = Authenticator {
            token: Some(shared.clone()),
            client_certificates: false,
            allowed_client_names: Arc::from([]),
        };
        let extensions = http::Extensions::new();
        let path = "/x2gobroker.agent.v1.Agent/Ping";
        let table: [(Option<&str>, Result<Principal, &str>); 6] = [
            (Some("Bearer 0123456789abcdef"), Ok(Principal::Token)),
            (Some("bearer 0123456789abcdef"), Ok(Principal::Token)),
            (Some("Bearer 0123456789abcdeX"), Err("wrong bearer token")),
            (Some("Bearer 0123456789abcdef0"), Err("wrong bearer token")),
            (
                Some("Basic 0123456789abcdef"),
                Err("authorization is not a bearer token"),
            ),
            (None, Err("no authorization header")),
        ];
        for (header, expected) in table {
            assert_eq!(
                authenticator.authenticate(path, &headers(header), &extensions),
                expected.map_err(Refusal::Unauthenticated),
                "{header:?}"
            );
        }
        // only the unary health check is open; the health watch stream is not
        let open_and_closed = [
            ("/grpc.health.v1.Health/Check", true),
            ("/grpc.health.v1.Health/Watch", false),
            ("/grpc.health.v1.Health/List", false),
            ("/grpc.health.v1.Health/Check/", false),
            ("/grpc.health.v1.Health/CheckX", false),
            (
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                false,
            ),
        ];
        for (path, open) in open_and_closed {
            assert_eq!(
                authenticator.authenticate(path, &headers(None), &extensions)
                    == Ok(Principal::Anonymous),
                open,
                "{path}"
            );
        }
        assert_eq!(
            authenticator.authenticate(
                "/grpc.health.v1.Health/Watch",
                &headers(Some("Bearer 0123456789abcdef")),
                &extensions
            ),
            Ok(Principal::Token)
        );
        // a reload replaces the token for every later call
        shared.replace(token("fedcba9876543210"));
        assert_eq!(
            authenticator.authenticate(
                path,
                &headers(Some("Bearer 0123456789abcdef")),
                &extensions
            ),
            Err(Refusal::Unauthenticated("wrong bearer token"))
        );
        assert_eq!(
            authenticator.authenticate(
                path,
                &headers(Some("Bearer fedcba9876543210")),
                &extensions
            ),
            Ok(Principal::Token)
        );
    }

    #[test]
    fn allowed_names_compare_without_ascii_case() {
        let allowed: Vec<String> = vec!["broker1.example".into(), "x2gobroker".into()];
        let table: [(&[&str], bool); 5] = [
            (&["broker1.example"], true),
            (&["BROKER1.Example"], true),
            (&["client", "x2gobroker"], true),
            (&["broker1.example.evil"], false),
            (&[], false),
        ];
        for (names, expected) in table {
            let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
            assert_eq!(name_allowed(&names, &allowed), expected, "{names:?}");
        }
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn names_of_real_certificates() {
        use x2gobroker_e2e::certs::{TestCa, Usage};
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let table: [(&str, &[&str], &[&str]); 3] = [
            ("broker-cn", &[], &["broker-cn"]),
            (
                "broker-san",
                &["broker2.example", "127.0.0.1", "alt.example"],
                &["broker-san", "broker2.example", "alt.example"],
            ),
            ("server", &["localhost"], &["server", "localhost"]),
        ];
        for (name, hosts, expected) in table {
            let files = ca.leaf(name, hosts, Usage::Client);
            let der_path = dir.path().join(format!("{name}.der"));
            let converted = std::process::Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&files.certificate)
                .arg("-out")
                .arg(&der_path)
                .status()
                .unwrap();
            assert!(converted.success());
            let der = std::fs::read(&der_path).unwrap();
            assert_eq!(certificate_names(&der), expected, "{name}");
        }
    }

    #[test]
    fn certificates_without_tls_info_are_not_assumed() {
        let authenticator = Authenticator {
            token: None,
            client_certificates: true,
            allowed_client_names: Arc::from([]),
        };
        assert_eq!(
            authenticator.authenticate(
                "/x2gobroker.agent.v1.Agent/Ping",
                &headers(Some("Bearer x")),
                &http::Extensions::new()
            ),
            Err(Refusal::Unauthenticated("no client certificate"))
        );
    }

    #[test]
    fn token_file_metadata_rules() {
        let path = Path::new("/t");
        let table = [
            (0, 0o100600, 0, true),
            (0, 0o100400, 0, true),
            (104, 0o100600, 104, true),
            (0, 0o100700, 0, true),
            (1000, 0o100600, 0, false),
            (0, 0o100640, 0, false),
            (0, 0o100604, 0, false),
            (0, 0o100620, 0, false),
        ];
        for (owner, mode, euid, ok) in table {
            assert_eq!(
                check_token_file_metadata(path, owner, mode, euid).is_ok(),
                ok,
                "{owner} {mode:o} {euid}"
            );
        }
    }

    #[test]
    fn token_file_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123  \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_token_file(&path),
            Err(TokenFileError::Mode { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load_token_file(&path).unwrap();
        assert!(loaded.matches(b"0123456789abcdef0123"));
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            load_token_file(&path),
            Err(TokenFileError::Weak { .. })
        ));
        assert!(matches!(
            load_token_file(&dir.path().join("missing")),
            Err(TokenFileError::Read { .. })
        ));
    }
}
