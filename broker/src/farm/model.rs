//! The farm's vocabulary, a leaf module: sessions with their status, server health, the agent transports' kinds.
//!
//! Everything else in the farm (policy, balancer, supervisor, transports, the agent command
//! line) depends on this module; it depends on nothing of the broker (the session status is
//! the agent protocol crate's).

/// Told of every agent call a supervisor makes for a request and of every agent failure it
/// sees (the broker's metrics); called from the farm's actors, so it must not block.
pub trait AgentObserver: Send + Sync {
    /// A call through `via` to `server`'s agent took `took`; `ok`: it was answered.
    fn call_finished(&self, server: &str, via: Via, took: std::time::Duration, ok: bool);
    /// `server`'s agent was lost through `via` (a watch stream ended, a poll failed).
    fn agent_failed(&self, server: &str, via: Via);
    /// A one-time key of `user` was installed on (or removed from) `server`; `ok`: the agent
    /// did it.
    fn key_changed(&self, _server: &str, _user: &str, _installed: bool, _ok: bool) {}
}

/// What the other brokers of a cluster placed, read inside the placement's transaction: the
/// pending placements per server (every broker's, this one's included) and the server this
/// user's pending placement for the profile names, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedPlacements {
    pub pending: std::collections::BTreeMap<String, u32>,
    pub users_server: Option<String>,
}

/// The shared placement ledger of a cluster (`[cluster]`: PostgreSQL), as the farm sees it.
/// Without a cluster the farm has none and counts its own placements only.
pub trait PlacementLedger: Send + Sync {
    /// Opens the placement of `user` on profile `profile_id` over `hosts`: serialised per
    /// profile across brokers until the placement is closed. `None`: the ledger cannot be
    /// reached (the caller decides with local accounting).
    fn open<'a>(
        &'a self,
        profile_id: &'a str,
        user: &'a str,
        hosts: &'a [String],
    ) -> futures::future::BoxFuture<'a, Option<Box<dyn OpenPlacement>>>;
    /// A report shows new sessions of `users` on `server`: their pending placements there are
    /// confirmed (must not block: called from the balancer).
    fn confirm(&self, server: &str, users: Vec<String>);
    /// A one-time autologin key is about to be installed: recorded with its expiry first, so
    /// that any broker removes it should this one die right after installing it.
    fn record_key(
        &self,
        key: OneTimeKey,
        lifetime: std::time::Duration,
    ) -> futures::future::BoxFuture<'_, ()>;
}

/// A one-time autologin key on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeKey {
    pub server: String,
    pub user: String,
    /// The authorized_keys line.
    pub key: String,
    /// The authorized_keys path (`%h/.x2go/authorized_keys` by default).
    pub key_file: String,
}

impl std::fmt::Debug for dyn PlacementLedger {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PlacementLedger")
    }
}

/// A placement in progress (a database transaction holding the profile's lock).
pub trait OpenPlacement: Send {
    /// What the other brokers placed.
    fn shared(&self) -> &SharedPlacements;
    /// Records the new session's placement on `placed_on` (none: nothing placed) and ends the
    /// placement.
    fn close(self: Box<Self>, placed_on: Option<String>)
        -> futures::future::BoxFuture<'static, ()>;
}

/// What the broker knows of a server's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// The last report came in time.
    Up,
    /// Back after an outage: a probe succeeded, the next report makes it Up. Used only
    /// when no server is Up.
    Degraded,
    /// The agent did not answer (or never has): never selected.
    Down,
}

/// Which kind of agent transport answered: the one agent-kind enum of the farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// `x2gobroker-agentd` over gRPC.
    Grpc,
    /// The legacy agent command line over SSH.
    Ssh,
    /// The legacy agent command line run on the broker host.
    Local,
}

impl Via {
    /// Whether this is the legacy command line (which lists no sessions in its reports).
    pub fn is_legacy(self) -> bool {
        matches!(self, Via::Ssh | Via::Local)
    }
}

/// An X2Go session's state (`R`, `S`, `T`, `F`, …): the agent protocol's, one enum for the
/// broker and the agent.
pub use x2gobroker_agent_protocol::SessionStatus;

/// One session as the farm state keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub session_id: String,
    pub user: String,
    /// The server name the X2Go server reported for the session.
    pub server: String,
    pub status: SessionStatus,
    /// The `x2golistsessions` line as the agent sent it (relayed as SESSION_INFO).
    pub raw_line: String,
}

/// Whether the servers reached through the legacy agent share one X2Go session DB
/// (`[farm] legacy-shared-session-db`), which decides how many of them a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedSessionDb {
    /// Learn it from the answers: a server whose session list showed another server's
    /// sessions sees that server's sessions too; ask as few servers as cover them all.
    #[default]
    Auto,
    /// One DB for all (the reference's assumption): ask one server.
    Yes,
    /// Every server has its own DB: ask each.
    No,
}

/// How the farm reaches a profile's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// `x2gobroker-agentd` (SSH fallback where a server has none, when configured).
    Grpc,
    /// The legacy agent over SSH only.
    Ssh,
    /// The legacy agent run on the broker host (a shared session DB shows the whole farm).
    Local,
}

/// Settings shared by every SSH target of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// The account the agent runs as (`X2GOBROKER_AGENT_USER`, default `x2gobroker`).
    pub user: String,
    /// The broker's private key.
    pub key_file: std::path::PathBuf,
    /// A known_hosts file used in addition to the system one.
    pub known_hosts: Option<std::path::PathBuf>,
    /// An ssh_config file instead of the default ones.
    pub config_file: Option<std::path::PathBuf>,
    /// Where the master sockets live (keep it short: socket paths are limited to 108 bytes).
    pub control_directory: std::path::PathBuf,
    /// The agent's path on the servers.
    pub agent_command: String,
}
