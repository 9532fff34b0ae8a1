//! The command line of `x2gobroker-testagent` (clap), in the library so that the man page generator renders it.

use clap::Parser;
use std::path::PathBuf;

/// X2Go Session Broker (Agent Test Utility)
#[derive(Debug, Parser)]
#[command(name = "x2gobroker-testagent", version)]
pub struct Cli {
    /// List available broker agent tasks
    #[arg(long = "list-tasks", help_heading = "agent parameters")]
    pub list_tasks: bool,
    /// When testing the broker agent, test on behalf of this user (default: none)
    #[arg(
        short = 'u',
        long = "username",
        visible_alias = "user",
        value_name = "USERNAME",
        help_heading = "agent parameters"
    )]
    pub username: Option<String>,
    /// Perform this task on the (remote) broker agent
    #[arg(
        short = 't',
        long = "task",
        value_name = "AGENT_TASK",
        default_value = "ping",
        help_heading = "agent parameters"
    )]
    pub task: String,
    /// Test X2Go Session Broker Agent on this (remote) host [default: LOCAL]
    #[arg(
        short = 'H',
        long = "host",
        value_name = "HOSTNAME",
        help_heading = "agent parameters"
    )]
    pub host: Option<String>,
    /// For remote agent calls (via SSH) use this port as SSH port
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 22,
        help_heading = "agent parameters"
    )]
    pub port: u16,
    /// For SSH connections to a remote broker agent: permanently add the remote system's host key to the list of known hosts
    #[arg(
        short = 'A',
        long = "add-to-known-hosts",
        help_heading = "supplementary parameters"
    )]
    pub add_to_known_hosts: bool,
    /// When testing the 'suspendsession' or the 'terminatesession' task, you have to additionally give a session ID to test those tasks on
    #[arg(
        long = "session-id",
        value_name = "SESSION_ID",
        help_heading = "supplementary parameters"
    )]
    pub session_id: Option<String>,
    /// Use this public key when testing the 'addauthkey' and the 'delauthkey' tasks
    #[arg(
        long = "pubkey",
        value_name = "PUBKEY_AS_STRING",
        help_heading = "supplementary parameters"
    )]
    pub pubkey: Option<String>,
    /// Specify a special configuration file name, default is: /etc/x2go/x2gobroker.conf (its default-agent-hostkey-policy applies without -A)
    #[arg(
        short = 'C',
        long = "config-file",
        visible_alias = "config",
        value_name = "CONFIG_FILE",
        help_heading = "miscellaneous parameters"
    )]
    pub config_file: Option<PathBuf>,
    /// Enable debugging code
    #[arg(short = 'd', long = "debug", help_heading = "miscellaneous parameters")]
    pub debug: bool,
}
