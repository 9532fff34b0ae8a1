//! The `https_get` mechanism (§6.1, fix B4): `GET https://<host>:<port><path>` with HTTP Basic
//! credentials; the login succeeds iff the answer is `200`. The server certificate is verified
//! against the system's roots plus an optional extra CA file; no proxy, no redirects.
//!
//! Config (`x2gobroker.conf`): `[authmech_https_get] host`, `port` (default 443), `path`, and our
//! `ca-file` (a PEM bundle trusted in addition to the system roots).

use std::path::PathBuf;
use std::time::Duration;

/// `[authmech_https_get]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsGetConfig {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// A PEM CA file trusted in addition to the system's roots (`ca-file`).
    pub extra_ca_pem: Option<PathBuf>,
    pub timeout: Duration,
}

/// Why the endpoint could not give an answer. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum HttpsGetError {
    #[error("[authmech_https_get] host is not set")]
    NoHost,
    #[error("cannot use the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Client(String),
    #[error("GET {url} failed: {reason}")]
    Request { url: String, reason: String },
}

/// The URL asked: `https://host:port/path` (IPv6 literals bracketed, a missing leading `/` added).
pub fn url(config: &HttpsGetConfig) -> String {
    let host = if config.host.contains(':') && !config.host.starts_with('[') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let slash = if config.path.starts_with('/') {
        ""
    } else {
        "/"
    };
    format!("https://{host}:{}{slash}{}", config.port, config.path)
}

/// An error and its causes on one line (reqwest's own message hides the TLS reason).
fn reason_chain(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

fn client(config: &HttpsGetConfig) -> Result<reqwest::Client, HttpsGetError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.timeout)
        .timeout(config.timeout);
    if let Some(path) = &config.extra_ca_pem {
        let ca_error = |reason: String| HttpsGetError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| ca_error(reason_chain(&error)))?;
        if certificates.is_empty() {
            return Err(ca_error("no PEM certificate in it".to_string()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|error| HttpsGetError::Client(reason_chain(&error)))
}

/// Asks the endpoint; `Ok(true)` iff it answers 200, `Ok(false)` for any other status, `Err`
/// when no answer could be had (unreachable, timeout, certificate not trusted).
pub async fn authenticate(
    config: &HttpsGetConfig,
    user: &str,
    password: &str,
) -> Result<bool, HttpsGetError> {
    if config.host.is_empty() {
        return Err(HttpsGetError::NoHost);
    }
    let client = client(config)?;
    let url = url(config);
    let response = client
        .get(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|error| HttpsGetError::Request {
            url: url.clone(),
            reason: reason_chain(&error),
        })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        tracing::info!(user, %url, %status, "https_get: login refused by the endpoint");
    }
    Ok(status == reqwest::StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use x2gobroker_e2e::certs::{TestCa, Usage};

    const USER: &str = "jane";
    const PASSWORD: &str = "p a:s s wörd";

    /// A one-route HTTPS endpoint on 127.0.0.1: `GET /auth` with our Basic credentials ⇒ 200,
    /// else 401. Returns its port; it serves until the test's runtime ends.
    async fn endpoint(certificate: &Path, key: &Path) -> u16 {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n_read) => head.extend_from_slice(&chunk[..n_read]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let authorization = head.lines().find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim())
                    });
                    let granted = head.starts_with("GET /auth HTTP/1.1\r\n")
                        && authorization == Some(expected.as_str());
                    let status = if granted {
                        "200 OK"
                    } else {
                        "401 Unauthorized"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        port
    }

    fn config(port: u16, path: &str, ca: Option<PathBuf>) -> HttpsGetConfig {
        HttpsGetConfig {
            host: "127.0.0.1".to_string(),
            port,
            path: path.to_string(),
            extra_ca_pem: ca,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn verified_endpoint_decides_and_untrusted_certificates_fail() {
        let directory = tempfile::tempdir().unwrap();
        let dir = directory.path();
        let good_ca = TestCa::new(dir, "good-ca");
        let other_ca = TestCa::new(dir, "other-ca");
        let leaf = good_ca.leaf("good-leaf", &["127.0.0.1"], Usage::Server);
        let port = endpoint(&leaf.certificate, &leaf.key).await;
        let trusted = Some(good_ca.certificate().to_path_buf());

        let granted = authenticate(&config(port, "/auth", trusted.clone()), USER, PASSWORD).await;
        assert!(matches!(granted, Ok(true)), "{granted:?}");
        let no_slash = authenticate(&config(port, "auth", trusted.clone()), USER, PASSWORD).await;
        assert!(matches!(no_slash, Ok(true)), "{no_slash:?}");

        for (path, user, password) in [
            ("/auth", USER, "wrong"),
            ("/auth", "someone", PASSWORD),
            ("/elsewhere", USER, PASSWORD),
        ] {
            let refused = authenticate(&config(port, path, trusted.clone()), user, password).await;
            assert!(matches!(refused, Ok(false)), "{path} {user}: {refused:?}");
        }

        for ca in [None, Some(other_ca.certificate().to_path_buf())] {
            let untrusted = authenticate(&config(port, "/auth", ca.clone()), USER, PASSWORD).await;
            let Err(HttpsGetError::Request { reason, .. }) = &untrusted else {
                panic!("{ca:?}: {untrusted:?}");
            };
            println!("untrusted ({ca:?}): {reason}");
            assert!(reason.contains("certificate"), "{reason}");
            assert!(!reason.contains(PASSWORD));
        }

        // The system's trust store is in use: a root the system trusts (here through
        // SSL_CERT_FILE, which the native-roots loader honours) needs no ca-file.
        std::env::set_var("SSL_CERT_FILE", good_ca.certificate());
        let system_trusted = authenticate(&config(port, "/auth", None), USER, PASSWORD).await;
        std::env::remove_var("SSL_CERT_FILE");
        assert!(matches!(system_trusted, Ok(true)), "{system_trusted:?}");
    }

    #[tokio::test]
    async fn configuration_problems_are_errors() {
        let mut missing_host = config(443, "/auth", None);
        missing_host.host.clear();
        assert!(matches!(
            authenticate(&missing_host, USER, PASSWORD).await,
            Err(HttpsGetError::NoHost)
        ));
        let directory = tempfile::tempdir().unwrap();
        let not_pem = directory.path().join("not.pem");
        std::fs::write(&not_pem, "no certificate here\n").unwrap();
        for ca in [directory.path().join("missing.pem"), not_pem] {
            let result = authenticate(&config(443, "/auth", Some(ca)), USER, PASSWORD).await;
            assert!(
                matches!(result, Err(HttpsGetError::CaFile { .. })),
                "{result:?}"
            );
        }
        // nothing listens on 127.0.0.1:1
        let result = authenticate(&config(1, "/auth", None), USER, PASSWORD).await;
        assert!(
            matches!(result, Err(HttpsGetError::Request { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn urls() {
        let mut settings = config(8443, "check", None);
        assert_eq!(url(&settings), "https://127.0.0.1:8443/check");
        settings.host = "::1".to_string();
        settings.path = "/a?b=c".to_string();
        assert_eq!(url(&settings), "https://[::1]:8443/a?b=c");
        settings.host = "auth.example.org".to_string();
        settings.path = String::new();
        assert_eq!(url(&settings), "https://auth.example.org:8443/");
    }
}
