//! The audit log: one JSON object per line (stable field names, RFC 3339 UTC time) for logins, selections, take-overs, autologin keys and drains, to a file (reopened on SIGHUP) or the broker's own log.
//!
//! Never a password, cookie or private key: the events below have no field for one. A user
//! name is a JSON string (control characters escaped), so it cannot start a line of its own.

use crate::config::AuditTarget;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

/// One audit event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    /// A password login (cookies are the continuation of one and are not logged).
    Login {
        user: &'a str,
        client: IpAddr,
        mechanism: &'a str,
        /// `ok`, `failed`, `throttled` or `unavailable` (the mechanism could not be asked).
        result: &'a str,
    },
    /// A `selectsession` answer.
    Selection {
        user: &'a str,
        profile: &'a str,
        client: IpAddr,
        /// The server the client is sent to (the answer's host, or the reference's
        /// `no-server-available` words).
        server: &'a str,
        /// `resumed`, `taken_over`, `new`, `none`, or `no_agent` (chosen without agents).
        outcome: &'a str,
        /// Why, in words.
        reason: &'a str,
    },
    /// A running session suspended for a take-over.
    Takeover {
        user: &'a str,
        server: &'a str,
        profile: &'a str,
    },
    /// A one-time autologin key installed or removed on a server.
    Key {
        user: &'a str,
        server: &'a str,
        /// `installed` or `removed`.
        action: &'a str,
        ok: bool,
    },
    /// A server drained or undrained through the admin API.
    Drain {
        server: &'a str,
        drained: bool,
        /// The admin client: its certificate's name, `token`, or its address.
        by: &'a str,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    target: AuditTarget,
    file: Mutex<Option<File>>,
    /// In a cluster: every line also goes here (to the shared database).
    mirror: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl AuditLog {
    /// The audit log for `target`; a file that cannot be opened is logged once and its events
    /// go to the broker's log until a reopen succeeds.
    pub fn open(target: AuditTarget) -> AuditLog {
        let log = AuditLog {
            target,
            file: Mutex::new(None),
            mirror: std::sync::OnceLock::new(),
        };
        log.reopen();
        log
    }

    /// No audit file: events go to the broker's log (tests, the SSH broker mode).
    pub fn to_log() -> AuditLog {
        AuditLog {
            target: AuditTarget::Journald,
            file: Mutex::new(None),
            mirror: std::sync::OnceLock::new(),
        }
    }

    /// The file, if the target is one.
    pub fn path(&self) -> Option<&PathBuf> {
        match &self.target {
            AuditTarget::File(path) => Some(path),
            AuditTarget::Journald => None,
        }
    }

    /// Opens the file again (SIGHUP, after logrotate moved it). Answers whether it is open.
    pub fn reopen(&self) -> bool {
        let Some(path) = self.path() else {
            return false;
        };
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode_for_logs()
            .open(path);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match opened {
            Ok(opened) => {
                *file = Some(opened);
                true
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "audit log cannot be opened: audit events go to the broker's log");
                *file = None;
                false
            }
        }
    }

    /// Sends every line from now on to `mirror` as well (a cluster's shared audit table).
    pub fn mirror_to(&self, mirror: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.mirror.set(mirror);
    }

    /// Writes one event as one line.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        if let Some(mirror) = self.mirror.get() {
            let _ = mirror.send(text.clone());
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = file.as_mut() {
            text.push('\n');
            if open.write_all(text.as_bytes()).is_ok() {
                return;
            }
        }
        tracing::info!(target: "x2gobroker::audit", "{text}");
    }
}

/// Audit files are created `0640` (the reference's logrotate creates its logs `640`).
trait LogFileMode {
    fn mode_for_logs(&mut self) -> &mut Self;
}

impl LogFileMode for std::fs::OpenOptions {
    fn mode_for_logs(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o640)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_object_per_line_whatever_the_user_name() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let log = AuditLog::open(AuditTarget::File(path.clone()));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        log.record(&AuditEvent::Login {
            user: "alice\n{\"event\":\"login\",\"user\":\"root\",\"result\":\"ok\"}",
            client,
            mechanism: "pam",
            result: "failed",
        });
        log.record(&AuditEvent::Drain {
            server: "ts03",
            drained: true,
            by: "token",
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["event"], "login");
        assert_eq!(first["result"], "failed");
        assert!(first["user"].as_str().unwrap().contains('\n'));
        let time = first["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert!(time.ends_with('Z'));
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["event"], "drain");
        assert_eq!(second["drained"], true);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "not world-readable: {mode:o}");
        // after logrotate moved the file, a reopen starts a new one
        std::fs::rename(&path, directory.path().join("audit.log.1")).unwrap();
        assert!(log.reopen());
        log.record(&AuditEvent::Key {
            user: "bob",
            server: "ts01",
            action: "installed",
            ok: true,
        });
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
