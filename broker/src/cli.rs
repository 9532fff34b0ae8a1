//! The command line shared by `x2gobroker` (SSH mode by default) and `x2gobroker-daemon` (HTTP mode), §3.1 and §12.

pub mod keygen;
pub mod testagent;
pub mod testauth;

use clap::Parser;
use std::path::PathBuf;

/// Exit code for an unusable command line or configuration.
pub const EXIT_USAGE: i32 = 64;
/// Exit code when the SSH mode is given no task (as the reference).
pub const EXIT_NO_TASK: i32 = 254;

/// X2Go Session Broker (x2gobroker-rs).
#[derive(Debug, Clone, Parser)]
#[command(name = "x2gobroker", version, about, disable_version_flag = true)]
pub struct Cli {
    /// Broker mode: SSH (one-shot, for X2Go Client over SSH) or HTTP (the daemon).
    #[arg(short = 'M', long = "mode", value_name = "BROKER_MODE")]
    pub mode: Option<String>,
    /// x2gobroker.conf to use (default: $X2GOBROKER_CONFIG or /etc/x2go/x2gobroker.conf).
    #[arg(short = 'C', long = "config-file", value_name = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Debug logging (also X2GOBROKER_DEBUG).
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Debug logging to stderr.
    #[arg(short = 'i', long = "debug-interactively")]
    pub debug_interactively: bool,
    /// HTTP mode: [ADDRESS:]PORT to bind (default 127.0.0.1:8080, or $DAEMON_BIND_ADDRESS).
    #[arg(short = 'b', long = "bind", value_name = "BIND_ADDRESS")]
    pub bind: Option<String>,
    /// HTTP mode: fork to the background; exits 0 once the daemon listens (the reference's
    /// Type=forking unit). Our own unit runs the daemon in the foreground instead.
    #[arg(short = 'D', long = "daemonize")]
    pub daemonize: bool,
    /// The daemon's pid file (with -D default /run/x2gobroker/x2gobroker-daemon.pid).
    #[arg(short = 'P', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// With -D: directory of x2gobroker-daemon.stdout and .stderr (default /var/log/x2gobroker).
    #[arg(short = 'L', long = "logdir", value_name = "LOGDIR")]
    pub logdir: Option<PathBuf>,
    /// Started as root: switch to the daemon user/group (X2GOBROKER_DAEMON_USER/_GROUP).
    #[arg(long = "drop-privileges")]
    pub drop_privileges: bool,
    /// Check x2gobroker.conf and the session profiles, report every problem, exit (64 on problems).
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// SSH mode: the task (listsessions, selectsession, testcon, …).
    #[arg(long = "task", value_name = "BROKER_TASK")]
    pub task: Option<String>,
    /// SSH mode: act for this user (only honoured for root and the daemon user).
    #[arg(long = "user", value_name = "USER_NAME")]
    pub user: Option<String>,
    /// SSH mode: the login name on the X2Go server.
    #[arg(long = "login", value_name = "LOGIN_NAME")]
    pub login: Option<String>,
    /// SSH mode: a client event (ignored).
    #[arg(long = "event", value_name = "EVENT_NAME")]
    pub event: Option<String>,
    /// SSH mode: the authentication cookie.
    #[arg(
        long = "auth-cookie",
        alias = "next-authid",
        alias = "authid",
        value_name = "AUTH_ID"
    )]
    pub auth_cookie: Option<String>,
    /// SSH mode: the session profile id.
    #[arg(long = "profile-id", alias = "sid", value_name = "PROFILE_ID")]
    pub profile_id: Option<String>,
    /// SSH mode: the backend (inifile, zeroconf).
    #[arg(long = "backend", value_name = "BACKEND")]
    pub backend: Option<String>,
    /// Sent by X2Go Client with `setpass` (not supported; accepted and ignored).
    #[arg(long = "newpass", hide = true)]
    pub newpass: Option<String>,
    /// Client-event details sent by X2Go Client (accepted and ignored).
    #[arg(long = "server", hide = true)]
    pub event_server: Option<String>,
    #[arg(long = "client", hide = true)]
    pub event_client: Option<String>,
    #[arg(long = "cmd", hide = true)]
    pub event_cmd: Option<String>,
    #[arg(long = "display", hide = true)]
    pub event_display: Option<String>,
    #[arg(long = "start", hide = true)]
    pub event_start: Option<String>,
    #[arg(long = "elapsed", hide = true)]
    pub event_elapsed: Option<String>,
    /// Event information after `--`.
    #[arg(last = true)]
    pub event_info: Vec<String>,
}

/// The broker mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ssh,
    Http,
}

impl Cli {
    /// The mode: HTTP with `-D` (as the reference), else `-M`, else HTTP when invoked as
    /// `x2gobroker-daemon`, else SSH.
    pub fn mode(&self, invoked_as_daemon: bool) -> Result<Mode, String> {
        if self.daemonize {
            return Ok(Mode::Http);
        }
        match self.mode.as_deref().map(str::to_uppercase).as_deref() {
            Some("HTTP") => Ok(Mode::Http),
            Some("SSH") => Ok(Mode::Ssh),
            Some(other) => Err(format!("unknown broker mode {other:?} (SSH or HTTP)")),
            None if invoked_as_daemon => Ok(Mode::Http),
            None => Ok(Mode::Ssh),
        }
    }
}

/// The reference's bind-address parsing (§3.1) with our default address 127.0.0.1.
pub fn bind_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let trimmed = text.trim();
    let (address, port) = if trimmed.is_empty() {
        ("127.0.0.1".to_string(), 8080)
    } else {
        let (address, port) = crate::hosts::split_host_address(trimmed, Some("127.0.0.1"), 8080);
        let address = if address.is_empty() {
            "127.0.0.1".to_string()
        } else {
            address
        };
        (address, port)
    };
    let host = address.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("bind address {text:?}: {host:?} is not an IP address"))?;
    Ok(std::net::SocketAddr::new(ip, port))
}

/// Why a setuid run (real and effective user differ: the SSH broker mode installed as
/// `x2gobroker-ssh`) is refused, if it is: such a process runs only the SSH broker mode with
/// its task options. Daemon options, the daemon's name, `-C`, debug switches and `RUST_LOG`
/// would let the caller write files, bind ports or fill logs as the setuid account.
pub fn setuid_refusal(cli: &Cli, invoked_as_daemon: bool, rust_log_set: bool) -> Option<String> {
    let mut refused: Vec<&str> = Vec::new();
    if invoked_as_daemon {
        refused.push("the daemon's name (x2gobroker-daemon)");
    }
    if cli
        .mode
        .as_deref()
        .is_some_and(|mode| !mode.eq_ignore_ascii_case("SSH"))
    {
        refused.push("-M other than SSH");
    }
    let options = [
        (cli.config_file.is_some(), "-C"),
        (cli.bind.is_some(), "-b"),
        (cli.daemonize, "-D"),
        (cli.pidfile.is_some(), "-P"),
        (cli.logdir.is_some(), "-L"),
        (cli.drop_privileges, "--drop-privileges"),
        (cli.check_config, "--check-config"),
        (cli.debug, "-d"),
        (cli.debug_interactively, "-i"),
        (rust_log_set, "RUST_LOG"),
    ];
    refused.extend(
        options
            .iter()
            .filter(|(given, _)| *given)
            .map(|(_, name)| *name),
    );
    (!refused.is_empty()).then(|| {
        format!(
            "running setuid, only the SSH broker mode with its task options runs; refused: {}",
            refused.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("x2gobroker").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn a_setuid_broker_runs_only_the_ssh_mode_with_task_options() {
        let client = cli(&[
            "--task",
            "selectsession",
            "--profile-id",
            "p",
            "--auth-cookie",
            "c",
            "--backend",
            "inifile",
            "-M",
            "ssh",
        ]);
        assert_eq!(setuid_refusal(&client, false, false), None);
        for (args, named) in [
            (&["-M", "HTTP"][..], "-M other than SSH"),
            (&["-D"][..], "-D"),
            (&["-P", "/home/x/pid"][..], "-P"),
            (&["-b", "0.0.0.0:80"][..], "-b"),
            (&["-L", "/tmp"][..], "-L"),
            (&["-C", "/tmp/mine.conf"][..], "-C"),
            (&["--drop-privileges"][..], "--drop-privileges"),
            (&["--check-config"][..], "--check-config"),
            (&["-d"][..], "-d"),
        ] {
            let refusal = setuid_refusal(&cli(args), false, false).expect("refused");
            assert!(refusal.ends_with(named), "{args:?}: {refusal}");
        }
        let refusal = setuid_refusal(&cli(&["--task", "listsessions"]), true, true).unwrap();
        assert!(refusal.contains("x2gobroker-daemon") && refusal.contains("RUST_LOG"));
    }
}
