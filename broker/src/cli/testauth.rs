//! The command line of `x2gobroker-testauth` (clap), in the library so that the man page generator renders it.

use clap::Parser;
use std::path::PathBuf;

/// Try one login with the broker's configured authentication mechanism.
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-testauth", version)]
pub struct Cli {
    /// Test authentication for the account with this username.
    #[arg(
        short = 'u',
        long = "username",
        visible_alias = "user",
        value_name = "USERNAME"
    )]
    pub user: String,
    /// Test authentication using this password (not recommended: it lands in the shell's history and the process list; without it the password is read from standard input).
    #[arg(short = 'p', long = "password", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// x2gobroker.conf (default: $X2GOBROKER_CONFIG or /etc/x2go/x2gobroker.conf).
    #[arg(
        short = 'C',
        long = "config-file",
        visible_alias = "config",
        value_name = "CONFIG_FILE"
    )]
    pub config_file: Option<PathBuf>,
    /// Backend whose mechanism to use (inifile, zeroconf, base).
    #[arg(
        short = 'b',
        long = "backend",
        value_name = "BACKEND",
        default_value = "inifile"
    )]
    pub backend: String,
    /// Enable debugging output.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// The auth service socket (default: $X2GOBROKER_AUTHSERVICE_SOCKET, the config, or the built-in path).
    #[arg(long = "authservice-socket")]
    pub authservice_socket: Option<PathBuf>,
}
