//! The two ways the broker runs a legacy agent task (§9.5): the SSH exec string and the LOCAL
//! argv, each built only after the agent path, the user name and every argument passed their
//! rule in [`crate::arguments`] (fix of §16 S2).
//!
//! The SSH string is byte-exact with the reference for valid input:
//! `sh -c '<agent> <user> <task>[ "<arg>"…]'` — user and task unquoted, each argument in
//! double quotes, no escaping. That is safe only because no accepted value holds a quote, a
//! blank (but the single spaces inside a key line, which the double quotes keep together) or
//! a shell metacharacter; `$` only ends a machine-account name, where no shell expands it.

use crate::arguments::{check_agent_command, check_user_name, ArgumentError};
use crate::task::Task;

/// The exec string of the SSH transport.
pub fn ssh_command(agent: &str, user: &str, task: &Task) -> Result<String, ArgumentError> {
    check_agent_command(agent)?;
    check_user_name(user)?;
    task.validate()?;
    let mut command = format!("sh -c '{agent} {user} {}", task.word());
    for argument in task.arguments() {
        command.push_str(" \"");
        command.push_str(argument);
        command.push('"');
    }
    command.push('\'');
    Ok(command)
}

/// The argv of the LOCAL transport: no shell, the arguments as they are (still validated, so
/// the agent accepts what the broker sends).
pub fn local_argv(agent: &str, user: &str, task: &Task) -> Result<Vec<String>, ArgumentError> {
    check_agent_command(agent)?;
    check_user_name(user)?;
    task.validate()?;
    let mut argv = vec![agent.to_owned(), user.to_owned(), task.word().to_owned()];
    argv.extend(task.arguments().into_iter().map(str::to_owned));
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forced_command::parse_forced_command;
    use crate::DEFAULT_AGENT_COMMAND;

    fn add(key: &str, key_file: &str) -> Task {
        Task::AddAuthKey {
            key: key.into(),
            key_file: key_file.into(),
        }
    }

    #[test]
    fn builds_the_reference_strings() {
        let agent = DEFAULT_AGENT_COMMAND;
        let table = [
            ("foo", Task::Ping, "sh -c '/usr/lib/x2go/x2gobroker-agent foo ping'"),
            (
                "jdoe@uni.example",
                Task::SuspendSession {
                    session_id: "jdoe@uni.example-50-1_stDKDE_dp24".into(),
                },
                "sh -c '/usr/lib/x2go/x2gobroker-agent jdoe@uni.example suspendsession \"jdoe@uni.example-50-1_stDKDE_dp24\"'",
            ),
            (
                "maja",
                add("no-X11-forwarding,no-user-rc ssh-rsa AAAAB3 maja@::1", "%h/.x2go/authorized_keys"),
                "sh -c '/usr/lib/x2go/x2gobroker-agent maja addauthkey \"no-X11-forwarding,no-user-rc ssh-rsa AAAAB3 maja@::1\" \"%h/.x2go/authorized_keys\"'",
            ),
        ];
        for (user, task, expected) in table {
            assert_eq!(ssh_command(agent, user, &task).as_deref(), Ok(expected));
        }
        assert_eq!(
            local_argv(agent, "JDoe", &add("ssh-rsa AAAA c", "%h/k")).unwrap(),
            [agent, "JDoe", "addauthkey", "ssh-rsa AAAA c", "%h/k"]
        );
    }

    /// What the broker builds, our agent reads back word for word from
    /// `SSH_ORIGINAL_COMMAND`, without a shell.
    #[test]
    fn the_agent_reads_back_what_the_broker_builds() {
        let tasks = [
            ("maja", Task::ListSessions),
            ("JDoe", Task::CheckLoad),
            (
                "j.doe+x@uni.example",
                Task::TerminateSession {
                    session_id: "j.doe@uni.example-51-1700000001_stDKDE_dp24".into(),
                },
            ),
            (
                "maja",
                add(
                    "no-X11-forwarding,no-pty,no-user-rc ssh-rsa AAAAB3NzaC1yc2E= maja@10.0.0.5",
                    "/home/x2gotest/keys-%u-%U-%G-%%-%u.txt",
                ),
            ),
        ];
        for (user, task) in tasks {
            let command = ssh_command(DEFAULT_AGENT_COMMAND, user, &task).unwrap();
            let words = parse_forced_command(&command).unwrap();
            let argv = local_argv(DEFAULT_AGENT_COMMAND, user, &task).unwrap();
            assert_eq!(words, argv[1..], "{command}");
        }
    }

    #[test]
    fn hostile_arguments_are_refused() {
        let agent = DEFAULT_AGENT_COMMAND;
        for user in [
            "",
            "maja;id",
            "ma ja",
            "-rf",
            "$(id)",
            "maja\nid",
            "x'$(id)'",
            "DOM\\maja",
        ] {
            assert!(
                matches!(
                    ssh_command(agent, user, &Task::ListSessions),
                    Err(ArgumentError::UserName(_))
                ),
                "{user:?}"
            );
            assert!(
                local_argv(agent, user, &Task::ListSessions).is_err(),
                "{user:?}"
            );
        }
        for session_id in ["", "a'b", "x$(id)", "a b", "a\"b", "-x", "a;b", ".x"] {
            let task = Task::SuspendSession {
                session_id: session_id.into(),
            };
            assert!(ssh_command(agent, "maja", &task).is_err(), "{session_id:?}");
        }
        for (key, key_file) in [
            (
                "ssh-rsa AAAA maja@c\nssh-rsa BBBB",
                "%h/.x2go/authorized_keys",
            ),
            ("ssh-rsa AAAA$(id)", "%h/.x2go/authorized_keys"),
            ("command=\"id\" ssh-rsa AAAA", "%h/.x2go/authorized_keys"),
            ("ssh-rsa AAAA'x", "%h/.x2go/authorized_keys"),
            ("not-a-key AAAA", "%h/.x2go/authorized_keys"),
            ("ssh-rsa AAAA maja@c", "%h/../../etc/passwd"),
            ("ssh-rsa AAAA maja@c", "/tmp/x;id"),
            ("ssh-rsa AAAA maja@c", "/tmp/`id`"),
        ] {
            let task = add(key, key_file);
            assert!(
                ssh_command(agent, "maja", &task).is_err(),
                "{key:?} {key_file:?}"
            );
            assert!(
                local_argv(agent, "maja", &task).is_err(),
                "{key:?} {key_file:?}"
            );
        }
        assert!(matches!(
            ssh_command("/usr/lib/x2go/agent;id", "maja", &Task::Ping),
            Err(ArgumentError::AgentCommand { .. })
        ));
    }
}
