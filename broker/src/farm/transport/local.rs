//! The LOCAL agent transport: the agent binary run on the broker host (it sees the farm through a shared session DB).
//!
//! As the reference (§9.5): an argv without a shell, stdout and stderr read together, success
//! iff the first line starts with `OK`, and (unlike the reference) the program exited 0
//! ([`agentcmd::exit_status_agrees`]); a program that cannot be run is a failed call. Every
//! argument is validated first ([`agentcmd::local_argv`]).

use crate::farm::agentcmd::{self, Answer, ArgumentError, Task};
use std::process::Stdio;
use std::time::Duration;
use thiserror::Error;

/// Why a local agent call failed.
#[derive(Debug, Error)]
pub enum LocalError {
    #[error("local agent did not finish within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Refused(#[from] ArgumentError),
    #[error("local agent answered OK to {task} but exited with {status}")]
    ExitStatus {
        task: &'static str,
        status: std::process::ExitStatus,
    },
}

/// The agent on the broker host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAgent {
    pub agent_command: String,
    pub timeout: Duration,
}

impl LocalAgent {
    /// Runs one agent task for `user` within `timeout`.
    pub async fn run_within(
        &self,
        user: &str,
        task: &Task,
        timeout: Duration,
    ) -> Result<Answer, LocalError> {
        let argv = agentcmd::local_argv(&self.agent_command, user, task)?;
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                tracing::warn!(agent = %self.agent_command, %error, "local agent could not be run");
                return Ok(Answer {
                    ok: false,
                    lines: Vec::new(),
                });
            }
            Err(_) => return Err(LocalError::Timeout(timeout)),
        };
        let mut merged = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.stderr.is_empty() {
            if !merged.is_empty() && !merged.ends_with('\n') {
                merged.push('\n');
            }
            merged.push_str(&String::from_utf8_lossy(&output.stderr));
        }
        let answer = Answer::parse(&merged, "");
        if !agentcmd::exit_status_agrees(&answer, output.status.code()) {
            return Err(LocalError::ExitStatus {
                task: task.word(),
                status: output.status,
            });
        }
        Ok(answer)
    }

    /// Runs one agent task within the call timeout.
    pub async fn run(&self, user: &str, task: &Task) -> Result<Answer, LocalError> {
        self.run_within(user, task, self.timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_of_a_local_program() {
        let agent = |command: &str| LocalAgent {
            agent_command: command.to_string(),
            timeout: Duration::from_secs(5),
        };
        // /bin/echo prints its argv: no OK line, a failed call
        let answer = agent("/bin/echo").run("maja", &Task::Ping).await.unwrap();
        assert!(!answer.ok);
        // a missing program is a failed call, not an error
        let answer = agent("/nonexistent/agent")
            .run("maja", &Task::Ping)
            .await
            .unwrap();
        assert!(!answer.ok);
        assert!(matches!(
            agent("/bin/echo").run("x;id", &Task::Ping).await,
            Err(LocalError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn an_ok_then_a_failed_exit_status_is_a_failed_call() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        for (name, exit_code, ok) in [("agent-fails", 1, false), ("agent-works", 0, true)] {
            let script = directory.path().join(name);
            std::fs::write(&script, format!("#!/bin/sh\necho OK\nexit {exit_code}\n")).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let agent = LocalAgent {
                agent_command: script.display().to_string(),
                timeout: Duration::from_secs(5),
            };
            let answer = agent.run("maja", &Task::Ping).await;
            match answer {
                Ok(answer) => assert!(ok && answer.ok, "{name}: {answer:?}"),
                Err(error) => {
                    assert!(!ok, "{name}: {error}");
                    assert_eq!(
                        error.to_string(),
                        "local agent answered OK to ping but exited with exit status: 1"
                    );
                }
            }
        }
    }
}
