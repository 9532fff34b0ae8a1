//! What the broker answers, before any wire format: the auth outcome and the task's result.

use crate::profiles::ListedProfile;

/// A selected server (§10.2 result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The server address (or `no-server-available` / `no-X2Go-Server-available`).
    pub server: String,
    pub port: i64,
    /// The `x2golistsessions` line of a session to resume.
    pub session_info: Option<String>,
    /// A generated private key (PEM) for autologin.
    pub private_key: Option<String>,
    /// Whether the client's own public key was installed.
    pub pubkey_accepted: bool,
}

impl Selection {
    /// A plain server/port answer.
    pub fn server(server: impl Into<String>, port: i64) -> Selection {
        Selection {
            server: server.into(),
            port,
            session_info: None,
            private_key: None,
            pubkey_accepted: false,
        }
    }
}

/// The result of the requested task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Authentication only (no task, unknown task, `setpass`, `clientevent`).
    None,
    /// `testcon`.
    Testcon,
    /// `listsessions` / `listprofiles`: the user's transformed profiles, sorted by id.
    Listing(Vec<ListedProfile>),
    /// `selectsession`: `None` when no profile id was given.
    Selection(Option<Selection>),
}

/// A successful (authenticated) broker reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerReply {
    /// The task as received (after json's `listsessions` → `listprofiles` renaming).
    pub task: String,
    /// The cookie to hand out (`AUTHID:` / `next-authid`).
    pub next_cookie: Option<String>,
    pub outcome: TaskOutcome,
}
