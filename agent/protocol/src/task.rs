//! The task grammar of the legacy agent (§9.1): the task words, each task's arguments, how
//! the agent reads them from its argv (Perl's `shift or die`) and the `availabletasks` list.

use crate::arguments::{check_key_file, check_key_line, check_session_id, ArgumentError};

/// A task word of `x2gobroker-agent <user> <task> [args…]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskName {
    Ping,
    AvailableTasks,
    AddAuthKey,
    DelAuthKey,
    ListSessions,
    FindBusyServers,
    /// A second word for `findbusyservers`; the agent answers both alike.
    FindBusyServersBySessionStats,
    CheckLoad,
    GetServers,
    SuspendSession,
    TerminateSession,
}

impl TaskName {
    /// Every task word the agent knows.
    pub const ALL: [TaskName; 11] = [
        TaskName::Ping,
        TaskName::AvailableTasks,
        TaskName::AddAuthKey,
        TaskName::DelAuthKey,
        TaskName::ListSessions,
        TaskName::FindBusyServers,
        TaskName::FindBusyServersBySessionStats,
        TaskName::CheckLoad,
        TaskName::GetServers,
        TaskName::SuspendSession,
        TaskName::TerminateSession,
    ];

    /// The word on the command line.
    pub fn word(self) -> &'static str {
        match self {
            TaskName::Ping => "ping",
            TaskName::AvailableTasks => "availabletasks",
            TaskName::AddAuthKey => "addauthkey",
            TaskName::DelAuthKey => "delauthkey",
            TaskName::ListSessions => "listsessions",
            TaskName::FindBusyServers => "findbusyservers",
            TaskName::FindBusyServersBySessionStats => "findbusyservers_by_sessionstats",
            TaskName::CheckLoad => "checkload",
            TaskName::GetServers => "getservers",
            TaskName::SuspendSession => "suspendsession",
            TaskName::TerminateSession => "terminatesession",
        }
    }

    /// The task a word names; `None` for anything else (the agent then prints nothing).
    pub fn from_word(word: &str) -> Option<TaskName> {
        TaskName::ALL.into_iter().find(|name| name.word() == word)
    }

    /// Whether the agent checks the user (exists, uid ≥ 1000) before the task: all but
    /// `ping`, `availabletasks` and `checkload`, which take any (valid) name.
    pub fn checks_user(self) -> bool {
        !matches!(
            self,
            TaskName::Ping | TaskName::AvailableTasks | TaskName::CheckLoad
        )
    }
}

/// The tasks `availabletasks` lists, in the reference's order: always `availabletasks`,
/// `addauthkey`, `delauthkey`; the others only when the X2Go server is installed. `ping` is
/// never listed.
pub fn available_tasks(x2goserver_installed: bool) -> Vec<TaskName> {
    let mut tasks = vec![
        TaskName::AvailableTasks,
        TaskName::AddAuthKey,
        TaskName::DelAuthKey,
    ];
    if x2goserver_installed {
        tasks.extend([
            TaskName::ListSessions,
            TaskName::FindBusyServers,
            TaskName::FindBusyServersBySessionStats,
            TaskName::CheckLoad,
            TaskName::GetServers,
            TaskName::SuspendSession,
            TaskName::TerminateSession,
        ]);
    }
    tasks
}

/// Perl's truth of a `shift`ed argument: present, not empty and not `"0"`.
pub fn is_perl_true(value: &str) -> bool {
    !value.is_empty() && value != "0"
}

/// One agent task with its arguments (not yet validated: [`Task::validate`] does that, and
/// the command builders call it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Ping,
    AvailableTasks,
    ListSessions,
    FindBusyServers,
    FindBusyServersBySessionStats,
    GetServers,
    CheckLoad,
    SuspendSession { session_id: String },
    TerminateSession { session_id: String },
    AddAuthKey { key: String, key_file: String },
    DelAuthKey { key: String, key_file: String },
}

/// A task argument the agent's argv lacks (1 = the first after the task word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("missing argument {position} of task {}", .task.word())]
pub struct MissingArgument {
    pub task: TaskName,
    pub position: usize,
}

impl Task {
    /// The task's name.
    pub fn task_name(&self) -> TaskName {
        match self {
            Task::Ping => TaskName::Ping,
            Task::AvailableTasks => TaskName::AvailableTasks,
            Task::ListSessions => TaskName::ListSessions,
            Task::FindBusyServers => TaskName::FindBusyServers,
            Task::FindBusyServersBySessionStats => TaskName::FindBusyServersBySessionStats,
            Task::GetServers => TaskName::GetServers,
            Task::CheckLoad => TaskName::CheckLoad,
            Task::SuspendSession { .. } => TaskName::SuspendSession,
            Task::TerminateSession { .. } => TaskName::TerminateSession,
            Task::AddAuthKey { .. } => TaskName::AddAuthKey,
            Task::DelAuthKey { .. } => TaskName::DelAuthKey,
        }
    }

    /// The task word of the command line.
    pub fn word(&self) -> &'static str {
        self.task_name().word()
    }

    /// The arguments after the task word, in command-line order.
    pub fn arguments(&self) -> Vec<&str> {
        match self {
            Task::SuspendSession { session_id } | Task::TerminateSession { session_id } => {
                vec![session_id]
            }
            Task::AddAuthKey { key, key_file } | Task::DelAuthKey { key, key_file } => {
                vec![key, key_file]
            }
            _ => Vec::new(),
        }
    }

    /// Reads the task's arguments as the reference agent does: the key tasks take two with
    /// `shift or die` (a missing, empty or `"0"` one is missing), the session tasks one with a
    /// plain `shift` (only an absent one is missing), the others none (extra words ignored).
    pub fn from_arguments(name: TaskName, arguments: &[String]) -> Result<Task, MissingArgument> {
        let missing = |position| MissingArgument {
            task: name,
            position,
        };
        let perl_shift = |position: usize| {
            arguments
                .get(position - 1)
                .filter(|value| is_perl_true(value))
                .cloned()
                .ok_or(missing(position))
        };
        let plain_shift = |position: usize| {
            arguments
                .get(position - 1)
                .cloned()
                .ok_or(missing(position))
        };
        Ok(match name {
            TaskName::Ping => Task::Ping,
            TaskName::AvailableTasks => Task::AvailableTasks,
            TaskName::ListSessions => Task::ListSessions,
            TaskName::FindBusyServers => Task::FindBusyServers,
            TaskName::FindBusyServersBySessionStats => Task::FindBusyServersBySessionStats,
            TaskName::GetServers => Task::GetServers,
            TaskName::CheckLoad => Task::CheckLoad,
            TaskName::SuspendSession => Task::SuspendSession {
                session_id: plain_shift(1)?,
            },
            TaskName::TerminateSession => Task::TerminateSession {
                session_id: plain_shift(1)?,
            },
            TaskName::AddAuthKey => Task::AddAuthKey {
                key: perl_shift(1)?,
                key_file: perl_shift(2)?,
            },
            TaskName::DelAuthKey => Task::DelAuthKey {
                key: perl_shift(1)?,
                key_file: perl_shift(2)?,
            },
        })
    }

    /// Checks every argument with its rule ([`crate::arguments`]); the key file is checked
    /// as it travels, before the agent's `%` substitution.
    pub fn validate(&self) -> Result<(), ArgumentError> {
        match self {
            Task::SuspendSession { session_id } | Task::TerminateSession { session_id } => {
                check_session_id(session_id)
            }
            Task::AddAuthKey { key, key_file } | Task::DelAuthKey { key, key_file } => {
                check_key_line(key)?;
                check_key_file(key_file)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn words_round_trip() {
        for name in TaskName::ALL {
            assert_eq!(TaskName::from_word(name.word()), Some(name));
        }
        assert_eq!(TaskName::from_word("frobnicate"), None);
        assert_eq!(TaskName::from_word("PING"), None);
        assert_eq!(TaskName::from_word(""), None);
    }

    #[test]
    fn available_task_lists() {
        let words = |installed| -> Vec<&str> {
            available_tasks(installed)
                .into_iter()
                .map(TaskName::word)
                .collect()
        };
        assert_eq!(words(false), ["availabletasks", "addauthkey", "delauthkey"]);
        assert_eq!(
            words(true).join(","),
            "availabletasks,addauthkey,delauthkey,listsessions,findbusyservers,findbusyservers_by_sessionstats,checkload,getservers,suspendsession,terminatesession"
        );
    }

    #[test]
    fn arguments_from_the_argv() {
        type Expected = Result<Task, MissingArgument>;
        let missing = |task, position| Err(MissingArgument { task, position });
        let add = |key: &str, key_file: &str| Task::AddAuthKey {
            key: key.into(),
            key_file: key_file.into(),
        };
        let table: Vec<(TaskName, Vec<String>, Expected)> = vec![
            (TaskName::Ping, strings(&["extra"]), Ok(Task::Ping)),
            (TaskName::ListSessions, strings(&[]), Ok(Task::ListSessions)),
            (
                TaskName::AddAuthKey,
                strings(&["ssh-rsa AAAA", "%h/k"]),
                Ok(add("ssh-rsa AAAA", "%h/k")),
            ),
            (
                TaskName::AddAuthKey,
                strings(&["ssh-rsa AAAA"]),
                missing(TaskName::AddAuthKey, 2),
            ),
            (
                TaskName::AddAuthKey,
                strings(&["ssh-rsa AAAA", "0"]),
                missing(TaskName::AddAuthKey, 2),
            ),
            (
                TaskName::DelAuthKey,
                strings(&["", "%h/k"]),
                missing(TaskName::DelAuthKey, 1),
            ),
            (
                TaskName::DelAuthKey,
                strings(&[]),
                missing(TaskName::DelAuthKey, 1),
            ),
            (
                TaskName::SuspendSession,
                strings(&["maja-50-1_stDKDE_dp24"]),
                Ok(Task::SuspendSession {
                    session_id: "maja-50-1_stDKDE_dp24".into(),
                }),
            ),
            (
                TaskName::TerminateSession,
                strings(&[""]),
                Ok(Task::TerminateSession {
                    session_id: String::new(),
                }),
            ),
            (
                TaskName::TerminateSession,
                strings(&[]),
                missing(TaskName::TerminateSession, 1),
            ),
        ];
        for (name, arguments, expected) in table {
            assert_eq!(
                Task::from_arguments(name, &arguments),
                expected,
                "{name:?} {arguments:?}"
            );
        }
        for name in TaskName::ALL {
            let full = strings(&["maja-50-1_stDKDE_dp24", "%h/.x2go/authorized_keys"]);
            let task = Task::from_arguments(name, &full).unwrap();
            assert_eq!(task.task_name(), name);
        }
    }

    #[test]
    fn validation_applies_the_argument_rules() {
        let suspend = |session_id: &str| Task::SuspendSession {
            session_id: session_id.into(),
        };
        assert!(suspend("maja-50-1_stDKDE_dp24").validate().is_ok());
        assert!(matches!(
            suspend("").validate(),
            Err(ArgumentError::SessionId(_))
        ));
        let add = |key: &str, key_file: &str| Task::AddAuthKey {
            key: key.into(),
            key_file: key_file.into(),
        };
        assert!(add("ssh-rsa AAAA c", "%h/.x2go/authorized_keys")
            .validate()
            .is_ok());
        assert!(matches!(
            add("command=x ssh-rsa AAAA", "%h/k").validate(),
            Err(ArgumentError::KeyOption(_))
        ));
        assert!(matches!(
            add("ssh-rsa AAAA", "%h/../k").validate(),
            Err(ArgumentError::KeyFile { .. })
        ));
        assert!(Task::Ping.validate().is_ok());
    }
}
