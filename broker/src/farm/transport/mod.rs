//! How the farm reaches a server's agent: gRPC to `x2gobroker-agentd`, or the legacy command line over SSH or run locally.

pub mod grpc;
pub mod local;
pub mod ssh;

use super::agentcmd::{self, Task};
use super::model::{SessionView, Via};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// One way to reach an agent.
#[derive(Debug, Clone)]
pub enum Transport {
    Grpc(grpc::GrpcTarget),
    Ssh(Arc<ssh::SshAgent>),
    Local(Arc<local::LocalAgent>),
}

/// Why an agent call failed.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error(transparent)]
    Grpc(#[from] grpc::AgentError),
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error("not a legacy agent")]
    NotLegacy,
    #[error("no agent transport configured for this server")]
    NoTransport,
    #[error("the agent refused {0} (no OK line)")]
    NotOk(&'static str),
}

impl TransportError {
    /// Whether the agent answered, only not `OK` (a user it has no account for, a task it
    /// refuses): an answer, unlike a call that got none (connection lost, timeout, an agent
    /// that failed after `OK`).
    pub fn is_refusal(&self) -> bool {
        matches!(self, TransportError::NotOk(_))
    }
}

fn ok(answer: agentcmd::Answer, task: &Task) -> Result<Vec<String>, TransportError> {
    if answer.ok {
        Ok(answer.lines)
    } else {
        Err(TransportError::NotOk(task.word()))
    }
}

impl Transport {
    pub fn via(&self) -> Via {
        match self {
            Transport::Grpc(_) => Via::Grpc,
            Transport::Ssh(_) => Via::Ssh,
            Transport::Local(_) => Via::Local,
        }
    }

    /// Runs a task of the legacy command line (SSH or LOCAL) within `timeout` (default: the
    /// transport's call timeout); the data lines when the answer was `OK`.
    pub async fn legacy(
        &self,
        user: &str,
        task: Task,
        timeout: Option<Duration>,
    ) -> Result<Vec<String>, TransportError> {
        let answer = match self {
            Transport::Ssh(agent) => {
                let limit = timeout.unwrap_or(agent.target.timeout);
                agent.run_within(user, &task, limit).await?
            }
            Transport::Local(agent) => {
                let limit = timeout.unwrap_or(agent.timeout);
                agent.run_within(user, &task, limit).await?
            }
            Transport::Grpc(_) => return Err(TransportError::NotLegacy),
        };
        ok(answer, &task)
    }

    /// The user's sessions (the legacy agent lists them on every server of a shared session DB).
    pub async fn user_sessions(&self, user: &str) -> Result<Vec<SessionView>, TransportError> {
        match self {
            Transport::Grpc(target) => {
                let mut client = target.client()?;
                Ok(grpc::user_sessions(&mut client, user, target.timeout).await?)
            }
            legacy => Ok(legacy
                .legacy(user, Task::ListSessions, None)
                .await?
                .iter()
                .filter_map(|line| agentcmd::session_from_line(line))
                .collect()),
        }
    }

    /// Suspends one of the user's sessions, allowing it `timeout` (X2Go's status change can
    /// take longer than a query).
    pub async fn suspend(
        &self,
        user: &str,
        session_id: &str,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        match self {
            Transport::Grpc(target) => {
                let mut client = target.client()?;
                Ok(grpc::suspend(&mut client, user, session_id, timeout).await?)
            }
            legacy => {
                let task = Task::SuspendSession {
                    session_id: session_id.to_string(),
                };
                legacy.legacy(user, task, Some(timeout)).await.map(|_| ())
            }
        }
    }

    /// Adds (or removes) a public key line in the user's authorized_keys file.
    pub async fn authorized_key(
        &self,
        user: &str,
        key: &str,
        key_file: &str,
        add: bool,
    ) -> Result<(), TransportError> {
        match self {
            Transport::Grpc(target) => {
                let mut client = target.client()?;
                Ok(
                    grpc::authorized_key(&mut client, user, key, key_file, add, target.timeout)
                        .await?,
                )
            }
            legacy => {
                let (key, key_file) = (key.to_string(), key_file.to_string());
                let task = if add {
                    Task::AddAuthKey { key, key_file }
                } else {
                    Task::DelAuthKey { key, key_file }
                };
                legacy.legacy(user, task, None).await.map(|_| ())
            }
        }
    }

    /// The legacy poll: `ping`, then, when `check_load`, `checkload` (its load factor, when
    /// the figures are sane).
    pub async fn legacy_poll(&self, check_load: bool) -> Result<Option<i64>, TransportError> {
        self.legacy(agentcmd::ANY_USER, Task::Ping, None).await?;
        if !check_load {
            return Ok(None);
        }
        let load = self
            .legacy(agentcmd::ANY_USER, Task::CheckLoad, None)
            .await?;
        Ok(agentcmd::checkload_factor(&load).ok())
    }
}
