//! Authentication: the mechanisms (`none`, `testsuite`, `pam` via the auth service, `https_get`) and the cookie flow.

pub mod authservice;
pub mod cookies;
pub mod https_get;
pub mod throttle;

use crate::config::{ConfigError, HttpsGetSettings};
use std::path::PathBuf;
use std::time::Duration;

/// The default PAM service name the auth service is asked to use.
pub const PAM_SERVICE: &str = "x2gobroker";

/// Where the mechanisms find what they need outside the config file.
#[derive(Debug, Clone)]
pub struct AuthEnvironment {
    /// The auth service's unix socket (§6.4).
    pub authservice_socket: PathBuf,
    /// How long to wait for the auth service or the https_get endpoint.
    pub timeout: Duration,
}

/// An authentication mechanism, from a fixed list (fix §16 S1: never derived from input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    None,
    Testsuite,
    Pam,
    HttpsGet(https_get::HttpsGetConfig),
    /// An unknown name: authentication always fails.
    Unknown(String),
}

impl Mechanism {
    /// The mechanism for a (lower-cased) config name; `https_get` takes its settings from
    /// `[authmech_https_get]` (a bad port there fails the logins that use it).
    pub fn from_settings(
        name: &str,
        https_get: &HttpsGetSettings,
        timeout: Duration,
    ) -> Result<Mechanism, ConfigError> {
        Ok(match name {
            "none" => Mechanism::None,
            "testsuite" => Mechanism::Testsuite,
            "pam" => Mechanism::Pam,
            "https_get" => Mechanism::HttpsGet(https_get::HttpsGetConfig {
                host: https_get.host.clone(),
                port: https_get.port.get()?,
                path: https_get.path.clone(),
                extra_ca_pem: https_get.ca_file.clone(),
                timeout,
            }),
            other => Mechanism::Unknown(other.to_string()),
        })
    }
}

/// Checks `user`/`password` with `mechanism`. Failures of the machinery are logged and count
/// as a failed login (there is no silent fallback to in-process PAM).
pub async fn authenticate(
    mechanism: &Mechanism,
    environment: &AuthEnvironment,
    user: &str,
    password: &str,
) -> bool {
    match mechanism {
        Mechanism::None => true,
        Mechanism::Testsuite => {
            matches!((user, password), ("test", "sweet") | ("jacques", "thérèse"))
        }
        Mechanism::Pam => {
            if user.is_empty() || password.is_empty() {
                return false;
            }
            match authservice::authenticate(
                &environment.authservice_socket,
                user,
                password,
                PAM_SERVICE,
                environment.timeout,
            )
            .await
            {
                Ok(granted) => granted,
                Err(error) => {
                    tracing::error!(user, %error, socket = %environment.authservice_socket.display(),
                        "PAM login failed: the auth service could not be asked");
                    false
                }
            }
        }
        Mechanism::HttpsGet(config) => {
            match https_get::authenticate(config, user, password).await {
                Ok(granted) => granted,
                Err(error) => {
                    tracing::error!(user, %error, "https_get login failed");
                    false
                }
            }
        }
        Mechanism::Unknown(name) => {
            tracing::error!(mechanism = %name, "unknown authentication mechanism: login refused");
            false
        }
    }
}
