//! `x2gobroker-testagent`: one legacy-agent task asked the way the broker asks it (LOCAL argv or SSH), its answer printed as the reference's tool does.
//!
//! The task goes through the farm's own transports ([`Transport::Local`],
//! [`Transport::Ssh`] with the broker key of the effective user's `~/.ssh`, §5.3) and the
//! agent-command validation of [`agentcmd`]: a hostile user name, session id or key is
//! refused before anything runs. Started as root, the tool becomes the daemon user first
//! (`X2GOBROKER_DAEMON_USER`/`_GROUP`), as the reference does, so the daemon's key and
//! `known_hosts` are used. Unlike the reference it prints the agent's data lines (the
//! reference prints only "could be executed successfully" for `listsessions`), and a failed
//! task exits 1.

use crate::config::farm::broker_key_file;
use crate::farm::agentcmd::{self, HostKeyCheck, Task};
use crate::farm::transport::local::LocalAgent;
use crate::farm::transport::ssh::{SshAgent, SshSettings, SshTarget};
use crate::farm::transport::{Transport, TransportError};
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Exit status of an unusable command line.
pub const EXIT_USAGE: i32 = 64;

/// How long one agent call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The reference's default key file for `addauthkey`/`delauthkey`.
pub const DEFAULT_KEY_FILE: &str = "%h/.x2go/authorized_keys";

/// The tasks this tool can test (the reference's `x2gobroker.agent.tasks`).
pub const TOOL_TASKS: [&str; 11] = [
    "ping",
    "listsessions",
    "suspendsession",
    "terminatesession",
    "has-sessions",
    "findbusyservers",
    "checkload",
    "addauthkey",
    "delauthkey",
    "getservers",
    "availabletasks",
];

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentPlace {
    /// The agent binary on this host (`-H LOCAL`, the default).
    Local,
    /// Over SSH (`-H host -p port`).
    Remote { host: String, port: u16 },
}

impl AgentPlace {
    /// `-H`'s value: `LOCAL` (the reference's default) or a host.
    pub fn from_host(host: Option<&str>, port: u16) -> AgentPlace {
        match host {
            None | Some("LOCAL") => AgentPlace::Local,
            Some(host) => AgentPlace::Remote {
                host: host.to_string(),
                port,
            },
        }
    }

    fn word(&self) -> &'static str {
        match self {
            AgentPlace::Local => "local",
            AgentPlace::Remote { .. } => "remote",
        }
    }
}

/// What the tool does with the agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolTask {
    /// One agent task, answer printed.
    Agent(Task),
    /// `has-sessions`: `listsessions`, split into running and suspended session ids.
    HasSessions,
}

impl ToolTask {
    fn agent_task(&self) -> Task {
        match self {
            ToolTask::Agent(task) => task.clone(),
            ToolTask::HasSessions => Task::ListSessions,
        }
    }
}

/// Why the command line cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    #[error("*** Cannot continue without username... ***")]
    NoUser,
    #[error("*** Cannot continue on this task without a given session ID... ***")]
    NoSessionId,
    #[error("No such task: '{0}'. Use --list-tasks to view information about\navailable tasks.")]
    UnknownTask(String),
    #[error("x2gobroker-testagent: {0}")]
    Refused(#[from] agentcmd::ArgumentError),
}

/// The command line, parsed.
#[derive(Debug, Clone)]
pub struct TestAgentRequest {
    pub task_name: String,
    pub user: Option<String>,
    pub place: AgentPlace,
    pub add_to_known_hosts: bool,
    pub session_id: Option<String>,
    pub pubkey: Option<String>,
    pub list_tasks: bool,
    /// `default-agent-hostkey-policy` of x2gobroker.conf (used without `-A`).
    pub host_key_policy: String,
    /// `X2GOBROKER_AGENT_CMD`.
    pub agent_command: String,
    /// `X2GOBROKER_AGENT_USER`.
    pub agent_user: String,
}

/// The task and the user it runs for, validated as the broker validates its commands; `key`
/// is the key for `addauthkey`/`delauthkey` when `--pubkey` gave none (a fresh one).
pub fn plan(
    request: &TestAgentRequest,
    fresh_key: impl FnOnce() -> Option<String>,
) -> Result<(ToolTask, String), UsageError> {
    let needs_user =
        !request.list_tasks && !matches!(request.task_name.as_str(), "ping" | "checkload");
    let user = match (&request.user, needs_user) {
        (Some(user), _) => user.clone(),
        (None, false) => agentcmd::ANY_USER.to_string(),
        (None, true) => return Err(UsageError::NoUser),
    };
    let session_id = || request.session_id.clone().ok_or(UsageError::NoSessionId);
    let task = if request.list_tasks {
        ToolTask::Agent(Task::AvailableTasks)
    } else {
        match request.task_name.as_str() {
            "ping" => ToolTask::Agent(Task::Ping),
            "listsessions" => ToolTask::Agent(Task::ListSessions),
            "suspendsession" => ToolTask::Agent(Task::SuspendSession {
                session_id: session_id()?,
            }),
            "terminatesession" => ToolTask::Agent(Task::TerminateSession {
                session_id: session_id()?,
            }),
            "has-sessions" => ToolTask::HasSessions,
            "findbusyservers" => ToolTask::Agent(Task::FindBusyServers),
            "checkload" => ToolTask::Agent(Task::CheckLoad),
            "getservers" => ToolTask::Agent(Task::GetServers),
            "availabletasks" => ToolTask::Agent(Task::AvailableTasks),
            name @ ("addauthkey" | "delauthkey") => {
                let key = request
                    .pubkey
                    .clone()
                    .or_else(fresh_key)
                    .unwrap_or_default();
                let key_file = DEFAULT_KEY_FILE.to_string();
                ToolTask::Agent(if name == "addauthkey" {
                    Task::AddAuthKey { key, key_file }
                } else {
                    Task::DelAuthKey { key, key_file }
                })
            }
            other => return Err(UsageError::UnknownTask(other.to_string())),
        }
    };
    // the same checks the transports make, before anything runs
    agentcmd::local_argv(&request.agent_command, &user, &task.agent_task())?;
    Ok((task, user))
}

/// How a task ended.
#[derive(Debug)]
pub enum Outcome {
    /// `OK`, with the data lines.
    Answered(Vec<String>),
    /// The agent answered without `OK` (or could not be run locally).
    Refused,
    /// The agent could not be reached.
    Unreachable(String),
}

/// The output of one task after the header: the agent's data, the reference's notes and its
/// closing line.
pub fn render(
    task_name: &str,
    task: &ToolTask,
    outcome: &Outcome,
    place: &AgentPlace,
    user: &str,
) -> String {
    let mut text = String::new();
    let succeeded = match outcome {
        Outcome::Answered(lines) => {
            text.push_str(&render_answer(task, lines));
            true
        }
        Outcome::Refused => false,
        Outcome::Unreachable(reason) => {
            let _ = writeln!(text, "{reason}.\n");
            false
        }
    };
    if succeeded {
        text.push_str(&key_note(task, place, user));
    }
    let verdict = if succeeded {
        "could be executed successfully on"
    } else {
        "failed to execute on"
    };
    let _ = writeln!(
        text,
        "The task '{task_name}' {verdict} the {} broker agent.\n",
        place.word()
    );
    text
}

fn render_answer(task: &ToolTask, lines: &[String]) -> String {
    let mut text = String::new();
    match task {
        ToolTask::HasSessions => {
            let sessions: Vec<_> = lines
                .iter()
                .filter_map(|line| agentcmd::session_from_line(line))
                .collect();
            for (label, letter) in [("running", 'R'), ("suspended", 'S')] {
                let ids: Vec<&str> = sessions
                    .iter()
                    .filter(|session| session.status.letter() == letter)
                    .map(|session| session.session_id.as_str())
                    .collect();
                let _ = writeln!(text, "{label} sessions: {}", ids.join(", "));
            }
            text.push('\n');
        }
        ToolTask::Agent(Task::FindBusyServers) => {
            let busy = x2gobroker_agent_protocol::parse_busy_servers(lines);
            if busy.is_empty() {
                text.push_str("X2Go Server busy state: All servers are idle.\n");
            }
            for (host, usage) in busy {
                let _ = writeln!(text, "{host} -- {usage}%");
            }
            text.push('\n');
        }
        ToolTask::Agent(Task::CheckLoad) => {
            for line in lines {
                let _ = writeln!(text, "{line}");
            }
            match agentcmd::checkload_factor(lines) {
                Ok(factor) => {
                    let _ = writeln!(text, "load factor: {factor}");
                }
                Err(error) => {
                    let _ = writeln!(text, "load factor: {error}");
                }
            }
            text.push('\n');
        }
        _ if lines.is_empty() => text.push_str(
            "The broker agent could be reached but the task returned no printable output (which probably is fine).\n\n",
        ),
        _ => {
            for line in lines {
                let _ = writeln!(text, "{line}");
            }
            text.push('\n');
        }
    }
    text
}

fn key_note(task: &ToolTask, place: &AgentPlace, user: &str) -> String {
    let on_host = match place {
        AgentPlace::Local => String::new(),
        AgentPlace::Remote { host, .. } => format!(" on {host}"),
    };
    match task {
        ToolTask::Agent(Task::AddAuthKey { key, .. }) => format!(
            "NOTE: This test-run added the below SSH public key to X2Go's authorized_keys file\n      \
             for user '{user}{on_host}'.\n\n      \
             The file location for this normally is $HOME/.x2go/authorized_keys.\n      \
             MAKE SURE TO REMOVE THIS KEY MANUALLY (or use test the 'delauthkey' task)!!!\n\n{key}\n\n"
        ),
        ToolTask::Agent(Task::DelAuthKey { key, .. }) => format!(
            "NOTE: This test-run attempted to remove all occurences of the below SSH public key from\n      \
             X2Go's authorized_keys file for user '{user}{on_host}'.\n\n      \
             The file location for this normally is $HOME/.x2go/authorized_keys.\n      \
             PLEASE DOUBLE-CHECK THE USER'S authorized_keys file MANUALLY!!!\n\n{key}\n\n"
        ),
        _ => String::new(),
    }
}

/// `--list-tasks`: the agent's tasks, each marked by whether this tool tests it.
pub fn render_task_list(agent_tasks: &[String]) -> String {
    let mut text = String::from("The queried broker agent supports these tasks / features:\n\n");
    for task in agent_tasks {
        if TOOL_TASKS.contains(&task.as_str()) {
            let _ = writeln!(text, "   {task}: supported");
        } else {
            let _ = writeln!(text, "   {task}: not supported by this broker version");
        }
    }
    text.push('\n');
    text
}

/// The header every run prints first.
pub const HEADER: &str =
    "\nX2Go Session Broker (Agent Test Utility)\n----------------------------------------\n";

/// What the reference prints when the broker has no key for SSH.
pub const NO_SSH_SETUP: &str =
    "This instance of X2Go Session Broker is not able to contact any remote\n\
    X2Go Session Broker Agent instances. Check this broker's SSH setup!!!\n\n\
    Aborting any futher tests...\n";

/// The transport to the agent; `None` for SSH when `~/.ssh` holds no broker key.
pub fn transport(request: &TestAgentRequest, home: &std::path::Path) -> Option<Transport> {
    match &request.place {
        AgentPlace::Local => Some(Transport::Local(Arc::new(LocalAgent {
            agent_command: request.agent_command.clone(),
            timeout: CALL_TIMEOUT,
        }))),
        AgentPlace::Remote { host, port } => {
            let key_file = broker_key_file(home)?;
            let host_key_check = if request.add_to_known_hosts {
                HostKeyCheck::Add
            } else {
                agentcmd::host_key_check(Some(&request.host_key_policy))
            };
            let settings = SshSettings {
                user: request.agent_user.clone(),
                key_file,
                // ssh reads the system's and the effective user's known_hosts itself
                known_hosts: None,
                config_file: None,
                control_directory: std::env::temp_dir(),
                agent_command: request.agent_command.clone(),
            };
            let target = SshTarget {
                address: host.clone(),
                port: *port,
                host_key_check,
                timeout: CALL_TIMEOUT,
            };
            Some(Transport::Ssh(Arc::new(SshAgent::new(
                Arc::new(settings),
                target,
            ))))
        }
    }
}

/// Runs one task; `Refused` for an answer without `OK`.
pub async fn ask(transport: &Transport, user: &str, task: Task) -> Outcome {
    match transport.legacy(user, task, None).await {
        Ok(lines) => Outcome::Answered(lines),
        Err(TransportError::NotOk(_)) => Outcome::Refused,
        Err(error) => Outcome::Unreachable(error.to_string()),
    }
}

/// The whole run after the command line was checked and privileges dropped; the text to print
/// and the exit status.
pub async fn run(request: &TestAgentRequest, task: &ToolTask, user: &str) -> (String, i32) {
    let mut text = String::from(HEADER);
    let home = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|account| account.dir)
        .unwrap_or_else(|| PathBuf::from("/"));
    let Some(transport) = transport(request, &home) else {
        text.push_str(NO_SSH_SETUP);
        return (text, 1);
    };
    // as the reference: the agent's task list first (it also shows whether it can be reached)
    let available = ask(&transport, user, Task::AvailableTasks).await;
    if let Outcome::Unreachable(reason) = &available {
        let _ = writeln!(text, "{reason}.\n");
        return (text, 1);
    }
    if request.list_tasks {
        return match available {
            Outcome::Answered(tasks) => {
                text.push_str(&render_task_list(&tasks));
                (text, 0)
            }
            _ => {
                text.push_str("The broker agent did not list its tasks.\n\n");
                (text, 1)
            }
        };
    }
    let outcome = ask(&transport, user, task.agent_task()).await;
    let status = match outcome {
        Outcome::Answered(_) => 0,
        _ => 1,
    };
    text.push_str(&render(
        &request.task_name,
        task,
        &outcome,
        &request.place,
        user,
    ));
    (text, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(task: &str, user: Option<&str>) -> TestAgentRequest {
        TestAgentRequest {
            task_name: task.to_string(),
            user: user.map(str::to_string),
            place: AgentPlace::Local,
            add_to_known_hosts: false,
            session_id: None,
            pubkey: None,
            list_tasks: false,
            host_key_policy: "RejectPolicy".to_string(),
            agent_command: agentcmd::DEFAULT_AGENT_COMMAND.to_string(),
            agent_user: "x2gobroker".to_string(),
        }
    }

    #[test]
    fn command_lines_planned_or_refused() {
        let no_key = || None;
        type Expected = Result<(ToolTask, &'static str), UsageError>;
        let table: Vec<(TestAgentRequest, Expected)> = vec![
            (
                request("ping", None),
                Ok((ToolTask::Agent(Task::Ping), agentcmd::ANY_USER)),
            ),
            (
                request("listsessions", Some("x2goalice")),
                Ok((ToolTask::Agent(Task::ListSessions), "x2goalice")),
            ),
            (request("listsessions", None), Err(UsageError::NoUser)),
            (
                request("suspendsession", Some("x2goalice")),
                Err(UsageError::NoSessionId),
            ),
            (
                request("bogus", Some("x2goalice")),
                Err(UsageError::UnknownTask("bogus".into())),
            ),
            (
                request("listsessions", Some("x2goalice;id")),
                Err(UsageError::Refused(agentcmd::ArgumentError::UserName(
                    "x2goalice;id".into(),
                ))),
            ),
            (
                TestAgentRequest {
                    session_id: Some("x'$(id)'".into()),
                    ..request("suspendsession", Some("x2goalice"))
                },
                Err(UsageError::Refused(agentcmd::ArgumentError::SessionId(
                    "x'$(id)'".into(),
                ))),
            ),
            (
                TestAgentRequest {
                    pubkey: Some("ssh-rsa AAAA\"; id".into()),
                    ..request("addauthkey", Some("x2goalice"))
                },
                Err(UsageError::Refused(
                    x2gobroker_agent_protocol::check_key_line("ssh-rsa AAAA\"; id").unwrap_err(),
                )),
            ),
            (
                TestAgentRequest {
                    list_tasks: true,
                    ..request("ping", None)
                },
                Ok((ToolTask::Agent(Task::AvailableTasks), agentcmd::ANY_USER)),
            ),
            (
                request("has-sessions", Some("x2goalice")),
                Ok((ToolTask::HasSessions, "x2goalice")),
            ),
        ];
        for (request, expected) in table {
            let planned = plan(&request, no_key);
            let expected = expected.map(|(task, user)| (task, user.to_string()));
            assert_eq!(planned, expected, "{request:?}");
        }
        // without --pubkey, addauthkey gets a fresh key
        let (task, _) = plan(&request("addauthkey", Some("x2goalice")), || {
            Some("no-X11-forwarding ssh-rsa AAAAB3Nza x2goalice@localhost".into())
        })
        .unwrap();
        assert_eq!(
            task,
            ToolTask::Agent(Task::AddAuthKey {
                key: "no-X11-forwarding ssh-rsa AAAAB3Nza x2goalice@localhost".into(),
                key_file: DEFAULT_KEY_FILE.into()
            })
        );
    }

    #[test]
    fn answers_rendered_as_the_reference() {
        let line = "1|x2goalice-50-1700000000_stDXFCE_dp24|50|x2go-node2|S|2023-11-14T22:13:20|cookie|127.0.0.1|30001|30002|2023-11-14T22:13:20|x2goalice|0|30003|-1|-1";
        let table: Vec<(&str, ToolTask, Outcome, &str)> = vec![
            (
                "ping",
                ToolTask::Agent(Task::Ping),
                Outcome::Answered(vec![]),
                "The broker agent could be reached but the task returned no printable output (which probably is fine).\n\n\
                 The task 'ping' could be executed successfully on the local broker agent.\n\n",
            ),
            (
                "listsessions",
                ToolTask::Agent(Task::ListSessions),
                Outcome::Answered(vec![line.to_string()]),
                "LINE\n\nThe task 'listsessions' could be executed successfully on the local broker agent.\n\n",
            ),
            (
                "has-sessions",
                ToolTask::HasSessions,
                Outcome::Answered(vec![line.to_string()]),
                "running sessions: \nsuspended sessions: x2goalice-50-1700000000_stDXFCE_dp24\n\n\
                 The task 'has-sessions' could be executed successfully on the local broker agent.\n\n",
            ),
            (
                "findbusyservers",
                ToolTask::Agent(Task::FindBusyServers),
                Outcome::Answered(vec!["50:x2go-node1".into(), "50:x2go-node2".into()]),
                "x2go-node1 -- 50%\nx2go-node2 -- 50%\n\n\
                 The task 'findbusyservers' could be executed successfully on the local broker agent.\n\n",
            ),
            (
                "checkload",
                ToolTask::Agent(Task::CheckLoad),
                Outcome::Answered(vec!["loadavgXX:51".into(), "memAvail:7800".into(), "myMemAvail:7000".into(), "numCPU:4".into(), "typeCPU:2400".into()]),
                "loadavgXX:51\nmemAvail:7800\nmyMemAvail:7000\nnumCPU:4\ntypeCPU:2400\nload factor: 146823\n\n\
                 The task 'checkload' could be executed successfully on the local broker agent.\n\n",
            ),
            (
                "listsessions",
                ToolTask::Agent(Task::ListSessions),
                Outcome::Refused,
                "The task 'listsessions' failed to execute on the local broker agent.\n\n",
            ),
            (
                "listsessions",
                ToolTask::Agent(Task::ListSessions),
                Outcome::Unreachable("ssh connection to h:22 failed: refused".into()),
                "ssh connection to h:22 failed: refused.\n\n\
                 The task 'listsessions' failed to execute on the local broker agent.\n\n",
            ),
        ];
        for (name, task, outcome, expected) in table {
            let expected = expected.replace("LINE", line);
            assert_eq!(
                render(name, &task, &outcome, &AgentPlace::Local, "x2goalice"),
                expected
            );
        }
        let added = render(
            "addauthkey",
            &ToolTask::Agent(Task::AddAuthKey {
                key: "ssh-rsa AAAA x@y".into(),
                key_file: DEFAULT_KEY_FILE.into(),
            }),
            &Outcome::Answered(vec![]),
            &AgentPlace::Remote {
                host: "ts01".into(),
                port: 22,
            },
            "x2goalice",
        );
        assert!(added.contains("for user 'x2goalice on ts01'.\n"), "{added}");
        assert!(added.contains("\n\nssh-rsa AAAA x@y\n\n"), "{added}");
        assert!(
            added.ends_with("on the remote broker agent.\n\n"),
            "{added}"
        );
        assert_eq!(
            render_task_list(&["listsessions".into(), "findbusyservers_by_sessionstats".into()]),
            "The queried broker agent supports these tasks / features:\n\n   listsessions: supported\n   \
             findbusyservers_by_sessionstats: not supported by this broker version\n\n"
        );
    }
}
