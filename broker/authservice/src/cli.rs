//! The command line of `x2gobroker-authservice` (clap, the reference's options and ours), in the library so
//! that the man page generator renders it.

use clap::Parser;
use std::path::PathBuf;

/// PAM authentication service for the X2Go session broker.
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-authservice", version)]
pub struct Cli {
    /// The unix socket [default: $X2GOBROKER_AUTHSERVICE_SOCKET, else /run/x2gobroker/x2gobroker-authservice.socket].
    #[arg(short = 's', long = "socket-file", value_name = "AUTHSOCKET")]
    pub socket: Option<PathBuf>,
    /// Owner of the socket; it may ask, as root may.
    #[arg(short = 'o', long = "owner", default_value = "root")]
    pub owner: String,
    /// Group of the socket (the broker's group): only root, the owner and processes of this
    /// group may ask (checked on each connection, SO_PEERCRED); if the group does not exist,
    /// the owner's group is used.
    #[arg(
        short = 'g',
        long = "group",
        env = "X2GOBROKER_AUTHSERVICE_GROUP",
        default_value = "x2gobroker"
    )]
    pub group: String,
    /// Permissions of the socket, octal (0660, 660 or 0o660).
    #[arg(short = 'p', long = "permissions", default_value = "0660")]
    pub permissions: String,
    /// A PAM service requests may name (repeat for more; replaces the default `x2gobroker`).
    /// Others are answered `fail`.
    #[arg(short = 'a', long = "allow-service", value_name = "SERVICE")]
    pub allowed_services: Vec<String>,
    /// A system account (uid up to SYS_UID_MAX of /etc/login.defs, or 65534) whose password may
    /// be checked nevertheless (repeat for more, or comma separated); root never is.
    #[arg(
        long = "allow-system-user",
        value_name = "USER",
        env = "X2GOBROKER_AUTHSERVICE_ALLOW_SYSTEM_USERS",
        value_delimiter = ','
    )]
    pub allowed_system_users: Vec<String>,
    /// Failed logins of one user within --failure-window-secs that lock it out.
    #[arg(
        long,
        env = "X2GOBROKER_AUTHSERVICE_MAX_FAILURES_PER_USER",
        default_value_t = 10
    )]
    pub max_failures_per_user: u32,
    /// The window in which failures are counted.
    #[arg(
        long,
        env = "X2GOBROKER_AUTHSERVICE_FAILURE_WINDOW_SECS",
        default_value_t = 300
    )]
    pub failure_window_secs: u64,
    /// How long a user is locked out (every request for it answered fail without PAM).
    #[arg(
        long,
        env = "X2GOBROKER_AUTHSERVICE_LOCKOUT_SECS",
        default_value_t = 300
    )]
    pub lockout_secs: u64,
    /// Debug logging.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Accepted for compatibility with the reference (logs always go to stderr).
    #[arg(short = 'i', long = "debug-interactively")]
    pub debug_interactively: bool,
}
