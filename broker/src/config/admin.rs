//! `[admin]`, the admin listener (x2gobroker-rs): where it binds and how it is secured, where drain state lives, where audit events go; typed through the key table.

use super::keys::{self, admin as key};
use super::settings::{Reader, StrictReader};
use super::IniDocument;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// JSON lines appended to this file (reopened on SIGHUP).
    File(PathBuf),
    /// JSON lines on the broker's own log (stderr, which journald takes under systemd).
    Journald,
}

/// `[admin]` of one loaded x2gobroker.conf, typed. Read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin listener binds; `None`: no admin listener (`bind =` empty).
    pub bind: Option<SocketAddr>,
    /// Whether `bind` was written in the file (a default port that is taken is only logged).
    pub bind_configured: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// Clients must send `Authorization: Bearer <the file's first line>`.
    pub token_file: Option<PathBuf>,
    /// Drain state (one file per config file) lives here.
    pub state_directory: PathBuf,
    pub audit: AuditTarget,
    /// Values that do not fit, and keys that do not fit together.
    pub problems: Vec<String>,
}

impl Default for AdminSettings {
    fn default() -> AdminSettings {
        AdminSettings::resolve(&IniDocument::default())
    }
}

impl AdminSettings {
    /// Types `[admin]` of `document`.
    pub fn resolve(document: &IniDocument) -> AdminSettings {
        let read = Reader::new(document, &keys::ADMIN);
        AdminSettings::read(&read)
    }

    pub(super) fn read(read: &Reader<'_>) -> AdminSettings {
        let mut admin = StrictReader::new(read);
        let bind_raw = read.raw(key::BIND).map(str::trim);
        let bind = match bind_raw {
            // written but empty: off
            Some("") => None,
            _ => admin
                .path_or_default(key::BIND)
                .to_str()
                .and_then(|text| text.parse().ok()),
        };
        let audit = admin.path_or_default(key::AUDIT_LOG);
        let mut settings = AdminSettings {
            bind,
            bind_configured: bind_raw.is_some_and(|raw| !raw.is_empty()),
            tls_cert: admin.path(key::TLS_CERT),
            tls_key: admin.path(key::TLS_KEY),
            client_ca: admin.path(key::CLIENT_CA),
            token_file: admin.path(key::TOKEN_FILE),
            state_directory: admin.path_or_default(key::STATE_DIRECTORY),
            audit: if audit.as_os_str().eq_ignore_ascii_case("journald") {
                AuditTarget::Journald
            } else {
                AuditTarget::File(audit)
            },
            problems: admin.problems,
        };
        settings.problems.extend(settings.combination_problems());
        settings
    }

    /// The rules the keys must keep together (the agentd's rules): a certificate needs its key
    /// and the other way round; a client CA needs TLS; off loopback the listener needs TLS and
    /// a client certificate or a bearer token.
    pub fn combination_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let section = key::SECTION;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(format!(
                "[{section}] {} and {} must be set together",
                key::TLS_CERT,
                key::TLS_KEY
            ));
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            problems.push(format!(
                "[{section}] {} needs {} and {}",
                key::CLIENT_CA,
                key::TLS_CERT,
                key::TLS_KEY
            ));
        }
        if let Some(bind) = self.bind {
            let secured = self.tls_cert.is_some()
                && self.tls_key.is_some()
                && (self.client_ca.is_some() || self.token_file.is_some());
            if !bind.ip().is_loopback() && !secured {
                problems.push(format!(
                    "[{section}] {} = {bind} is not a loopback address: it needs {}, {} and {} or {}",
                    key::BIND,
                    key::TLS_CERT,
                    key::TLS_KEY,
                    key::CLIENT_CA,
                    key::TOKEN_FILE
                ));
            }
        }
        problems
    }

    /// The file holding the drained servers of the broker running on `config_file` (several
    /// brokers on one host, one config each, never share one).
    pub fn drain_file(&self, config_file: &std::path::Path) -> PathBuf {
        self.state_directory.join(format!(
            "drained.{}.json",
            super::farm::file_stem_of(config_file)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(text: &str) -> AdminSettings {
        AdminSettings::resolve(&IniDocument::parse(text).unwrap())
    }

    #[test]
    fn defaults_bind_loopback_and_write_under_var() {
        let defaults = admin("");
        assert_eq!(defaults.bind, Some("127.0.0.1:8081".parse().unwrap()));
        assert!(!defaults.bind_configured);
        assert_eq!(
            defaults.state_directory,
            PathBuf::from("/var/lib/x2gobroker")
        );
        assert_eq!(
            defaults.audit,
            AuditTarget::File(PathBuf::from("/var/log/x2gobroker/audit.log"))
        );
        assert!(defaults.problems.is_empty());
        assert_eq!(
            defaults.drain_file(std::path::Path::new("/etc/x2go/x2gobroker.conf")),
            PathBuf::from("/var/lib/x2gobroker/drained.etc_x2go_x2gobroker.conf.json")
        );
    }

    #[test]
    fn values_and_their_rules() {
        let cases: &[(&str, Option<&str>, &[&str])] = &[
            ("[admin]\nbind =\n", None, &[]),
            ("[admin]\nbind = [::1]:9000\n", Some("[::1]:9000"), &[]),
            (
                "[admin]\nbind = localhost:9\n",
                Some("127.0.0.1:8081"),
                &["bind = \"localhost:9\": not an IP address and port"],
            ),
            (
                "[admin]\nbind = 0.0.0.0:8081\n",
                Some("0.0.0.0:8081"),
                &["is not a loopback address"],
            ),
            (
                "[admin]\nbind = 0.0.0.0:8081\ntls-cert = /c\ntls-key = /k\n",
                Some("0.0.0.0:8081"),
                &["is not a loopback address"],
            ),
            (
                "[admin]\nbind = 0.0.0.0:8081\ntls-cert = /c\ntls-key = /k\ntoken-file = /t\n",
                Some("0.0.0.0:8081"),
                &[],
            ),
            (
                "[admin]\nbind = 0.0.0.0:8081\ntls-cert = /c\ntls-key = /k\nclient-ca = /ca\n",
                Some("0.0.0.0:8081"),
                &[],
            ),
            (
                "[admin]\ntls-cert = /c\n",
                Some("127.0.0.1:8081"),
                &["tls-cert and tls-key must be set together"],
            ),
            (
                "[admin]\nclient-ca = /ca\n",
                Some("127.0.0.1:8081"),
                &["client-ca needs tls-cert and tls-key"],
            ),
        ];
        for (text, bind, expected) in cases {
            let settings = admin(text);
            assert_eq!(
                settings.bind,
                bind.map(|bind| bind.parse().unwrap()),
                "{text}"
            );
            assert_eq!(
                settings.problems.len(),
                expected.len(),
                "{text}: {:?}",
                settings.problems
            );
            for (problem, wanted) in settings.problems.iter().zip(expected.iter()) {
                assert!(problem.contains(wanted), "{text}: {problem}");
            }
        }
        assert_eq!(
            admin("[admin]\naudit-log = JournalD\n").audit,
            AuditTarget::Journald
        );
    }
}
