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

/// One entry of a UCCS server list (§4), its values decided; `frontend/uccs.rs` names the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteDesktop {
    /// A `directrdp` profile: the first host by name, no host mapping.
    Rdp {
        name: String,
        first_host: String,
        /// The authenticated user.
        username: String,
    },
    /// An X2Go profile on one randomly picked host.
    X2go {
        /// The profile's `name`, else its id.
        name: String,
        /// The `host=<host>` mapping, else the picked host's name.
        address: String,
        /// The `sshport=<host>` mapping, else the profile's `sshport`, else 22.
        port: i64,
        /// The profile's `user`.
        username: String,
        /// The profile's `command`, upper-cased when it names a desktop (§7.4).
        command: String,
    },
}

/// A UCCS API answer (§4): the caller's servers, sorted by profile id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UccsReply {
    /// `my-uccs-url-base` as configured.
    pub url_base: String,
    /// The backend as the URL named it (may be empty).
    pub backend_in_url: String,
    /// The API digit of the URL: `4` has v4 fields, any other v5.
    pub api_version: u32,
    pub servers: Vec<RemoteDesktop>,
}
