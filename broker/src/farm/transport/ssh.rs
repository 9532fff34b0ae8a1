//! The SSH agent transport: one multiplexed OpenSSH master per server, running the legacy agent command line.
//!
//! The master connection is made on first use and kept; when a command fails at the transport
//! level (master gone, timeout) the master is dropped and the next call makes a new one. The
//! command string comes from [`agentcmd::ssh_command`] (validated arguments only) and is sent
//! as it is (`raw_command`), so it reaches the Perl agent's forced-command handling byte-exact.
//! An answer counts as the reference reads it (the first line `OK`, nothing on stderr), and
//! only when the remote command exited 0 ([`agentcmd::exit_status_agrees`]).

use crate::farm::agentcmd::{self, Answer, ArgumentError, HostKeyCheck, Task};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

pub use crate::farm::model::SshSettings;

/// One server reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The address to connect to (the profile's `host=name (address)` mapping, else the name).
    pub address: String,
    pub port: u16,
    pub host_key_check: HostKeyCheck,
    pub timeout: Duration,
}

/// Why an SSH agent call failed.
#[derive(Debug, Error)]
pub enum SshError {
    #[error("ssh connection to {0} failed: {1}")]
    Connect(String, String),
    #[error("ssh command on {0} failed: {1}")]
    Command(String, String),
    #[error("ssh to {0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error(transparent)]
    Refused(#[from] ArgumentError),
    #[error("the agent on {server} answered OK to {task} but exited with {status}")]
    ExitStatus {
        server: String,
        task: &'static str,
        status: std::process::ExitStatus,
    },
}

/// A master connection nobody used for that long exits.
const MASTER_IDLE_SECONDS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(60) {
    Some(seconds) => seconds,
    None => unreachable!(),
};

/// Commands in flight on one master at most (sshd's `MaxSessions` defaults to 10).
const MAX_SESSIONS: usize = 8;

/// The SSH agent of one server, with its cached master connection.
#[derive(Debug)]
pub struct SshAgent {
    pub settings: Arc<SshSettings>,
    pub target: SshTarget,
    master: Mutex<Option<Arc<Session>>>,
    sessions: tokio::sync::Semaphore,
}

impl SshAgent {
    pub fn new(settings: Arc<SshSettings>, target: SshTarget) -> SshAgent {
        SshAgent {
            settings,
            target,
            master: Mutex::new(None),
            sessions: tokio::sync::Semaphore::new(MAX_SESSIONS),
        }
    }

    /// The `host:port` of the server's sshd (what a port probe connects to).
    pub fn probe_address(&self) -> String {
        if self.target.address.contains(':') {
            format!("[{}]:{}", self.target.address, self.target.port)
        } else {
            self.destination()
        }
    }

    fn destination(&self) -> String {
        format!("{}:{}", self.target.address, self.target.port)
    }

    fn cached(&self) -> Option<Arc<Session>> {
        self.master
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Drops the cached master if it is that one and it no longer works; whether it was
    /// broken.
    async fn forget_if_broken(&self, session: &Arc<Session>) -> bool {
        let check = tokio::time::timeout(Duration::from_secs(1), session.check()).await;
        if matches!(check, Ok(Ok(()))) {
            return false;
        }
        let mut slot = self
            .master
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot
            .as_ref()
            .is_some_and(|cached| Arc::ptr_eq(cached, session))
        {
            tracing::info!(server = %self.destination(), "ssh master connection lost");
            *slot = None;
        }
        true
    }

    async fn master(&self) -> Result<Arc<Session>, SshError> {
        if let Some(session) = self.cached() {
            return Ok(session);
        }
        let settings = &self.settings;
        let mut builder = SessionBuilder::default();
        builder
            .user(settings.user.clone())
            .port(self.target.port)
            .keyfile(&settings.key_file)
            .known_hosts_check(match self.target.host_key_check {
                HostKeyCheck::Strict => KnownHosts::Strict,
                HostKeyCheck::Add => KnownHosts::Add,
                HostKeyCheck::Accept => KnownHosts::Accept,
            })
            .connect_timeout(self.target.timeout.max(Duration::from_secs(1)))
            .server_alive_interval(Duration::from_secs(15))
            // the supervisor's polls keep it busy; a master left behind by a killed broker
            // goes away by itself
            .control_persist(ControlPersist::IdleFor(MASTER_IDLE_SECONDS))
            .control_directory(&settings.control_directory);
        if let Some(known_hosts) = &settings.known_hosts {
            builder.user_known_hosts_file(known_hosts);
        }
        if let Some(config_file) = &settings.config_file {
            builder.config_file(config_file);
        }
        let address = self.target.address.clone();
        let connect = builder.connect(&address);
        let session = match tokio::time::timeout(self.target.timeout, connect).await {
            Ok(Ok(session)) => Arc::new(session),
            Ok(Err(error)) => return Err(SshError::Connect(self.destination(), error.to_string())),
            Err(_) => return Err(SshError::Timeout(self.destination(), self.target.timeout)),
        };
        if self.target.host_key_check == HostKeyCheck::Accept {
            tracing::warn!(server = %self.destination(), "ssh host key not verified (WarningPolicy)");
        }
        let mut slot = self
            .master
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(slot.get_or_insert(session).clone())
    }

    /// Runs one agent task for `user`; a master that stopped working is dropped (and made
    /// again by the next call).
    pub async fn run(&self, user: &str, task: &Task) -> Result<Answer, SshError> {
        self.run_within(user, task, self.target.timeout).await
    }

    /// [`run`](Self::run) with its own time limit (for slow actions such as a suspension).
    pub async fn run_within(
        &self,
        user: &str,
        task: &Task,
        timeout: Duration,
    ) -> Result<Answer, SshError> {
        let command = agentcmd::ssh_command(&self.settings.agent_command, user, task)?;
        let run = async {
            let _permit = self.sessions.acquire().await;
            let session = self.master().await?;
            let mut remote = Session::to_raw_command(session.clone(), &command);
            match remote.output().await {
                Ok(output) => {
                    if output.status.code() == Some(255)
                        && output.stdout.is_empty()
                        && self.forget_if_broken(&session).await
                    {
                        // ssh's own failure (the connection was lost), not the agent's
                        // answer (a Perl `die` exits 255 too, with the master still fine)
                        return Err(SshError::Command(
                            self.destination(),
                            "the connection was lost during the call".to_string(),
                        ));
                    }
                    let answer = Answer::parse(
                        &String::from_utf8_lossy(&output.stdout),
                        &String::from_utf8_lossy(&output.stderr),
                    );
                    if !agentcmd::exit_status_agrees(&answer, output.status.code()) {
                        return Err(SshError::ExitStatus {
                            server: self.destination(),
                            task: task.word(),
                            status: output.status,
                        });
                    }
                    Ok(answer)
                }
                Err(error) => {
                    let _ = self.forget_if_broken(&session).await;
                    Err(SshError::Command(self.destination(), error.to_string()))
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(session) = self.cached() {
                    let _ = self.forget_if_broken(&session).await;
                }
                Err(SshError::Timeout(self.destination(), timeout))
            }
        }
    }
}
