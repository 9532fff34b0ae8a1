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

/// What a mechanism answered about a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right.
    Granted,
    /// The mechanism said no: a failed login (the throttle counts it).
    Refused,
    /// The mechanism could not be asked (the auth service or the https_get endpoint down, an
    /// unknown mechanism): the login is refused, but it is no failed login (the throttle does
    /// not count it, so the right password works as soon as the service is back).
    Unavailable,
}

impl Verdict {
    /// Whether the login is granted.
    pub fn granted(self) -> bool {
        self == Verdict::Granted
    }

    fn of(granted: bool) -> Verdict {
        if granted {
            Verdict::Granted
        } else {
            Verdict::Refused
        }
    }
}

/// Checks `user`/`password` with `mechanism`. Failures of the machinery are logged (naming
/// the socket or endpoint) and refuse the login as [`Verdict::Unavailable`]; there is no
/// silent fallback to in-process PAM.
pub async fn authenticate(
    mechanism: &Mechanism,
    environment: &AuthEnvironment,
    user: &str,
    password: &str,
) -> Verdict {
    match mechanism {
        Mechanism::None => Verdict::Granted,
        Mechanism::Testsuite => Verdict::of(matches!(
            (user, password),
            ("test", "sweet") | ("jacques", "thérèse")
        )),
        Mechanism::Pam => {
            if user.is_empty() || password.is_empty() {
                return Verdict::Refused;
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
                Ok(granted) => Verdict::of(granted),
                Err(authservice::AuthServiceError::InvalidInput) => Verdict::Refused,
                Err(error) => {
                    tracing::error!(user, %error, socket = %environment.authservice_socket.display(),
                        "PAM login refused: the auth service could not be asked (not counted as a failed login)");
                    Verdict::Unavailable
                }
            }
        }
        Mechanism::HttpsGet(config) => {
            match https_get::authenticate(config, user, password).await {
                Ok(granted) => Verdict::of(granted),
                Err(error) => {
                    tracing::error!(user, %error, host = %config.host, port = config.port,
                        "https_get login refused: the endpoint could not be asked (not counted as a failed login)");
                    Verdict::Unavailable
                }
            }
        }
        Mechanism::Unknown(name) => {
            tracing::error!(mechanism = %name, "unknown authentication mechanism: login refused");
            Verdict::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_auth_service_is_no_refusal() {
        let directory = tempfile::tempdir().unwrap();
        let environment = AuthEnvironment {
            authservice_socket: directory.path().join("no-such.socket"),
            timeout: Duration::from_secs(2),
        };
        let cases = [
            (Mechanism::Pam, "maja", "secret", Verdict::Unavailable),
            (Mechanism::Pam, "maja", "", Verdict::Refused),
            (Mechanism::Pam, "maja", "line\nbreak", Verdict::Refused),
            (Mechanism::Testsuite, "test", "sweet", Verdict::Granted),
            (Mechanism::Testsuite, "test", "sour", Verdict::Refused),
            (Mechanism::None, "", "", Verdict::Granted),
            (
                Mechanism::Unknown("kerberos".into()),
                "maja",
                "secret",
                Verdict::Unavailable,
            ),
        ];
        for (mechanism, user, password, expected) in cases {
            assert_eq!(
                authenticate(&mechanism, &environment, user, password).await,
                expected,
                "{mechanism:?} {user:?}"
            );
        }
    }
}
