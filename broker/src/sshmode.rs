//! The SSH broker mode (§12): X2Go Client runs `x2gobroker --task …` over SSH; one answer on stdout.
//!
//! This module only turns the command line into a `BrokerRequest`, asks `service.rs` and prints
//! what `frontend/plain.rs` renders; the mode's differences in content live in the service.

use crate::cli::{Cli, EXIT_NO_TASK};
use crate::frontend::plain;
use crate::service::{Broker, BrokerError, BrokerRequest, Frontend};
use std::net::IpAddr;

/// What the SSH mode prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOutcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// The caller's identity: the passwd name of the real uid (fix S5: never `LOGNAME`).
pub fn real_user_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// The client address: first word of `SSH_CLIENT`, else 127.0.0.1.
pub fn client_ip_from(ssh_client: Option<&str>) -> IpAddr {
    ssh_client
        .and_then(|text| text.split_whitespace().next())
        .and_then(|word| word.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Runs one SSH-mode request for `caller` (the real user) and renders the output.
pub async fn run(
    broker: &Broker,
    cli: &Cli,
    caller: &str,
    ssh_client: Option<&str>,
    usage: &str,
) -> SshOutcome {
    if cli.event.is_some() {
        tracing::warn!("client events are not supported in SSH broker mode; ignored");
        return SshOutcome {
            stdout: String::new(),
            exit_code: 0,
        };
    }
    let may_act_for_others = caller == "root" || caller == broker.settings.daemon_user;
    let user = match &cli.user {
        Some(requested) if may_act_for_others => requested.clone(),
        Some(requested) => {
            tracing::warn!(caller, requested = %requested, "--user is only honoured for root and the daemon user; ignored");
            caller.to_string()
        }
        None => caller.to_string(),
    };
    let login = cli.login.clone().unwrap_or_else(|| user.clone());
    let Some(task) = cli.task.clone() else {
        return SshOutcome {
            stdout: format!("\n{usage}\nNo task specified, doing nothing...\n\n"),
            exit_code: EXIT_NO_TASK,
        };
    };
    let backend_name = cli.backend.clone().unwrap_or_default();
    if broker.backend_for(&backend_name).is_none() {
        eprintln!("x2gobroker: unknown backend {backend_name:?} (known: inifile, zeroconf)");
        return SshOutcome {
            stdout: String::new(),
            exit_code: 1,
        };
    }
    let request = BrokerRequest {
        user: user.clone(),
        password: String::new(),
        login,
        authid: cli.auth_cookie.clone().unwrap_or_default(),
        task,
        profile_id: cli.profile_id.clone().unwrap_or_default(),
        pubkey: String::new(),
    };
    let client_ip = client_ip_from(ssh_client);
    let reply = match broker
        .process(&backend_name, Frontend::Ssh, request, client_ip)
        .await
    {
        Ok(reply) => reply,
        Err(BrokerError::NotFound) => {
            tracing::error!(backend = %backend_name, "backend is disabled");
            return SshOutcome {
                stdout: String::new(),
                exit_code: 0,
            };
        }
        Err(BrokerError::Unauthorized) => {
            tracing::warn!(user = %user, "access denied");
            return SshOutcome {
                stdout: String::new(),
                exit_code: 0,
            };
        }
        Err(BrokerError::Internal(message)) => {
            eprintln!("x2gobroker: {message}");
            return SshOutcome {
                stdout: String::new(),
                exit_code: 1,
            };
        }
    };
    SshOutcome {
        stdout: plain::render_ssh(&reply),
        exit_code: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_comes_from_ssh_client() {
        assert_eq!(
            client_ip_from(Some("127.0.0.2 40000 22")).to_string(),
            "127.0.0.2"
        );
        assert_eq!(client_ip_from(None).to_string(), "127.0.0.1");
        assert_eq!(client_ip_from(Some("garbage")).to_string(), "127.0.0.1");
    }
}
