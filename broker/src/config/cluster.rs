//! `[cluster]`, several active brokers on one PostgreSQL (x2gobroker-rs, issue 16): where the shared database is and the cluster's periods; typed through the key table.

use super::keys::{self, cluster as key};
use super::settings::{Reader, StrictReader};
use super::IniDocument;
use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]` of one loaded x2gobroker.conf, typed. Read at start-up. `None` in
/// [`super::BrokerConfig::cluster`] when the file has no `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `postgresql://user@host:port/x2gobroker` (several `host:port` for HA PostgreSQL);
    /// `None` when not set (a problem: the section needs it).
    pub database_url: Option<String>,
    /// The file whose first line is the database password (never in the config itself).
    pub password_file: Option<PathBuf>,
    /// This broker's name in the shared tables; `None`: the host name and the client port.
    pub name: Option<String>,
    /// The CA that signs the PostgreSQL server's certificate: TLS to the database when set.
    pub ca_file: Option<PathBuf>,
    /// How long an operation waits for the database before the broker degrades (placements
    /// counted locally, cookies as its files, audit events spooled).
    pub degraded_after: Duration,
    /// How often expired rows (placements, leases) are removed.
    pub cleanup_interval: Duration,
    /// How long a job's lease holds without renewal.
    pub lease_ttl: Duration,
    /// Values that do not fit, and keys that do not fit together.
    pub problems: Vec<String>,
}

impl ClusterSettings {
    /// Types `[cluster]` of `document`; `None` when the file has no such section.
    pub fn resolve(document: &IniDocument) -> Option<ClusterSettings> {
        document.section(key::SECTION)?;
        let read = Reader::new(document, &keys::CLUSTER);
        Some(ClusterSettings::read(&read))
    }

    pub(super) fn read(read: &Reader<'_>) -> ClusterSettings {
        let mut cluster = StrictReader::new(read);
        let mut settings = ClusterSettings {
            database_url: cluster
                .text(key::DATABASE_URL)
                .filter(|url| !url.is_empty()),
            password_file: cluster.path(key::PASSWORD_FILE),
            name: cluster.text(key::NAME).filter(|name| !name.is_empty()),
            ca_file: cluster.path(key::CA_FILE),
            degraded_after: cluster.duration(key::DEGRADED_AFTER_MS),
            cleanup_interval: cluster.duration(key::CLEANUP_INTERVAL_MS),
            lease_ttl: cluster.duration(key::LEASE_TTL_MS),
            problems: Vec::new(),
        };
        settings.problems = cluster.problems;
        settings.problems.extend(settings.combination_problems());
        settings
    }

    /// The rules the keys must keep together: a database URL, with no password in it (it
    /// would be readable by everyone who can read the config: `password-file` holds it).
    pub fn combination_problems(&self) -> Vec<String> {
        let section = key::SECTION;
        let mut problems = Vec::new();
        match &self.database_url {
            None => problems.push(format!(
                "[{section}] {} is needed when [{section}] is present",
                key::DATABASE_URL
            )),
            Some(url) => {
                if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                    problems.push(format!(
                        "[{section}] {} = {url:?}: not a postgresql:// URL",
                        key::DATABASE_URL
                    ));
                } else if url_has_password(url) {
                    problems.push(format!(
                        "[{section}] {} holds a password: put it in {} instead",
                        key::DATABASE_URL,
                        key::PASSWORD_FILE
                    ));
                }
            }
        }
        problems
    }
}

/// Whether a `postgresql://user:password@host` URL carries a password (in its user part or as
/// a `password=` parameter).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let in_user_part = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    let in_parameters = rest
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("password=")));
    in_user_part || in_parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(text: &str) -> Option<ClusterSettings> {
        ClusterSettings::resolve(&IniDocument::parse(text).unwrap())
    }

    #[test]
    fn absent_section_means_no_cluster() {
        assert_eq!(cluster("[global]\n"), None);
        assert_eq!(cluster(""), None);
    }

    #[test]
    fn defaults_and_problems() {
        let defaults =
            cluster("[cluster]\ndatabase-url = postgresql://x2gobroker@db:5432/x2gobroker\n")
                .unwrap();
        assert!(defaults.problems.is_empty(), "{:?}", defaults.problems);
        assert_eq!(defaults.degraded_after, Duration::from_millis(5000));
        assert_eq!(defaults.cleanup_interval, Duration::from_millis(10000));
        assert_eq!(defaults.lease_ttl, Duration::from_millis(10000));
        assert_eq!(defaults.name, None);
        let cases: &[(&str, &[&str])] = &[
            ("[cluster]\n", &["database-url is needed"]),
            ("[cluster]\ndatabase-url =\n", &["database-url is needed"]),
            (
                "[cluster]\ndatabase-url = mysql://db/x\n",
                &["not a postgresql:// URL"],
            ),
            (
                "[cluster]\ndatabase-url = postgresql://u:secret@db/x\n",
                &["holds a password"],
            ),
            (
                "[cluster]\ndatabase-url = postgresql://u@db/x?password=secret\n",
                &["holds a password"],
            ),
            (
                "[cluster]\ndatabase-url = postgresql://u@db1:5432,db2:5432/x?target_session_attrs=read-write\nname = b1\nlease-ttl-ms = 50\n",
                &["lease-ttl-ms"],
            ),
        ];
        for (text, expected) in cases {
            let settings = cluster(text).unwrap();
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
        let named = cluster("[cluster]\ndatabase-url = postgresql://u@h/x\nname = broker-a\npassword-file = /etc/x2go/db.pw\n").unwrap();
        assert_eq!(named.name.as_deref(), Some("broker-a"));
        assert_eq!(named.password_file, Some(PathBuf::from("/etc/x2go/db.pw")));
    }
}
