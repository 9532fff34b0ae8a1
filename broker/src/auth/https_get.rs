//! The `https_get` mechanism (§6.1, fix B4): GET an HTTPS URL with Basic credentials; 200 means yes.

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

/// Why the endpoint could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HttpsGetError {
    #[error("[authmech_https_get] host is not set")]
    NoHost,
    #[error("cannot read the CA file {0}: {1}")]
    CaFile(String, String),
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
}

/// Asks the endpoint; `Ok(true)` iff it answers 200 (certificate verification on).
pub async fn authenticate(
    config: &HttpsGetConfig,
    user: &str,
    password: &str,
) -> Result<bool, HttpsGetError> {
    if config.host.is_empty() {
        return Err(HttpsGetError::NoHost);
    }
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.extra_ca_pem {
        let pem = std::fs::read(path).map_err(|error| {
            HttpsGetError::CaFile(path.display().to_string(), error.to_string())
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            HttpsGetError::CaFile(path.display().to_string(), error.to_string())
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let client = builder.build()?;
    let path = if config.path.starts_with('/') {
        config.path.clone()
    } else {
        format!("/{}", config.path)
    };
    let url = format!("https://{}:{}{}", config.host, config.port, path);
    let response = client
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await?;
    Ok(response.status() == reqwest::StatusCode::OK)
}
