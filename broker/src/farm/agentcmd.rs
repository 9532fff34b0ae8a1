//! The legacy agent command line (§9.1, §9.5): validated argument builders and output parsers, pure.
//!
//! What is sent over SSH is the reference's byte-exact string
//! `sh -c '<agent> <user> <task>[ "<arg>"…]'`, but only for arguments that passed validation
//! (fix of §16 S2): user names match `^[a-z_][a-z0-9_.-]*[$]?$` (≤ 32), session ids, keys and
//! key-file paths are drawn from character sets without any shell metacharacter, so the string
//! means the same to the `sh -c` on the server and to the Perl agent's second pass through
//! `/bin/sh` (its `SSH_ORIGINAL_COMMAND` handling). Anything else is refused before a connection
//! is made. LOCAL mode gets an argv (no shell at all).

use super::model::{SessionStatus, SessionView};
use std::collections::BTreeMap;
use thiserror::Error;

/// The reference's agent path.
pub const DEFAULT_AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The user name the reference passes for tasks that check no user (`ping`, `checkload`).
pub const ANY_USER: &str = "foo";

/// One agent task with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Ping,
    AvailableTasks,
    ListSessions,
    FindBusyServers,
    GetServers,
    CheckLoad,
    SuspendSession { session_id: String },
    TerminateSession { session_id: String },
    AddAuthKey { key: String, key_file: String },
    DelAuthKey { key: String, key_file: String },
}

impl Task {
    /// The task word of the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Ping => "ping",
            Task::AvailableTasks => "availabletasks",
            Task::ListSessions => "listsessions",
            Task::FindBusyServers => "findbusyservers",
            Task::GetServers => "getservers",
            Task::CheckLoad => "checkload",
            Task::SuspendSession { .. } => "suspendsession",
            Task::TerminateSession { .. } => "terminatesession",
            Task::AddAuthKey { .. } => "addauthkey",
            Task::DelAuthKey { .. } => "delauthkey",
        }
    }

    fn arguments(&self) -> Vec<&str> {
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

    fn validate(&self) -> Result<(), CommandError> {
        match self {
            Task::SuspendSession { session_id } | Task::TerminateSession { session_id } => {
                check_session_id(session_id)
            }
            Task::AddAuthKey { key, key_file } | Task::DelAuthKey { key, key_file } => {
                check_key(key)?;
                check_key_file(key_file)
            }
            _ => Ok(()),
        }
    }
}

/// Why no command was built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("refused user name {0:?}")]
    User(String),
    #[error("refused session id {0:?}")]
    SessionId(String),
    #[error("refused public key (one line of a known key type, no shell metacharacters)")]
    Key,
    #[error("refused key file path {0:?}")]
    KeyFile(String),
    #[error("refused agent command {0:?}")]
    AgentCommand(String),
}

/// A user name as §16 S2 allows it: `^[a-z_][a-z0-9_.-]*[$]?$`, at most 32 characters.
pub fn valid_user(user: &str) -> bool {
    let body = user.strip_suffix('$').unwrap_or(user);
    let mut chars = body.chars();
    user.len() <= 32
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

fn check_user(user: &str) -> Result<(), CommandError> {
    if valid_user(user) {
        Ok(())
    } else {
        Err(CommandError::User(user.to_string()))
    }
}

/// X2Go session ids (`maja-50-1700000000_stDKDE_dp24`): letters, digits, `_ . - @`, ≤ 128.
fn check_session_id(session_id: &str) -> Result<(), CommandError> {
    let fine = !session_id.is_empty()
        && session_id.len() <= 128
        && !session_id.starts_with('-')
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
    if fine {
        Ok(())
    } else {
        Err(CommandError::SessionId(session_id.to_string()))
    }
}

const KEY_TYPES: [&str; 9] = [
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed448",
];

/// `[options ]<type> <base64>[ comment]` on one line, options and comment from a safe set
/// (`no-pty,no-X11-forwarding…`, `user@client`), no quotes or shell metacharacters.
fn check_key(key: &str) -> Result<(), CommandError> {
    let safe = key.len() <= 16384
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " +/=@._:,-".contains(c));
    let words: Vec<&str> = key.split(' ').collect();
    let typed = words
        .iter()
        .position(|word| KEY_TYPES.contains(word))
        .filter(|index| *index <= 1)
        .and_then(|index| words.get(index + 1))
        .is_some_and(|body| {
            !body.is_empty()
                && body
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        });
    if safe && typed && !words.iter().any(|word| word.is_empty()) {
        Ok(())
    } else {
        Err(CommandError::Key)
    }
}

/// `%h/.x2go/authorized_keys`-style paths: letters, digits, `% / . _ -`, no `..` component.
fn check_key_file(path: &str) -> Result<(), CommandError> {
    let fine = !path.is_empty()
        && path.len() <= 4096
        && !path.starts_with('-')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "%/._-".contains(c))
        && !path.split('/').any(|part| part == "..");
    if fine {
        Ok(())
    } else {
        Err(CommandError::KeyFile(path.to_string()))
    }
}

fn check_agent_command(agent: &str) -> Result<(), CommandError> {
    let fine = agent.starts_with('/')
        && agent
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if fine {
        Ok(())
    } else {
        Err(CommandError::AgentCommand(agent.to_string()))
    }
}

/// The exec string of the SSH transport (§9.5), byte-exact with the reference for valid input.
pub fn ssh_command(agent: &str, user: &str, task: &Task) -> Result<String, CommandError> {
    check_agent_command(agent)?;
    check_user(user)?;
    task.validate()?;
    let mut command = format!("sh -c '{agent} {user} {}", task.name());
    for argument in task.arguments() {
        command.push_str(&format!(" \"{argument}\""));
    }
    command.push('\'');
    Ok(command)
}

/// The argv of the LOCAL transport (§9.5): no shell, arguments as they are (still validated).
pub fn local_argv(agent: &str, user: &str, task: &Task) -> Result<Vec<String>, CommandError> {
    check_agent_command(agent)?;
    check_user(user)?;
    task.validate()?;
    let mut argv = vec![agent.to_string(), user.to_string(), task.name().to_string()];
    argv.extend(task.arguments().into_iter().map(str::to_string));
    Ok(argv)
}

/// An agent's answer: `ok` iff the first line starts with `OK` (and, over SSH, nothing came on
/// stderr); `lines` are the non-empty data lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Answer {
    /// Parses what the agent printed (`stderr` is the SSH channel's; LOCAL merges it into stdout).
    pub fn parse(stdout: &str, stderr: &str) -> Answer {
        let mut lines = stdout.split('\n');
        let ok = stderr.is_empty() && lines.next().is_some_and(|first| first.starts_with("OK"));
        if !ok {
            return Answer {
                ok: false,
                lines: Vec::new(),
            };
        }
        Answer {
            ok,
            lines: lines
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// `findbusyservers`: `<pct>:<host>` lines; other lines are ignored.
pub fn busy_servers(lines: &[String]) -> BTreeMap<String, i64> {
    lines
        .iter()
        .filter_map(|line| {
            let (percent, host) = line.split_once(':')?;
            Some((host.to_string(), percent.trim().parse().ok()?))
        })
        .collect()
}

/// `getservers`: `<host> <count>` lines; host-only (SQLite) and non-integer lines are skipped.
pub fn server_counts(lines: &[String]) -> BTreeMap<String, i64> {
    lines
        .iter()
        .filter_map(|line| {
            let (host, count) = line.split_once(' ')?;
            Some((host.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

/// Why `checkload` gave no load factor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error("LOAD-DATA-BOGUS")]
    Bogus,
}

/// §9.3: `int((memAvail/1000) × numCPU × typeCPU × 100 / loadavgXX)`, `myMemAvail` when
/// `memAvail` is 0.
pub fn load_factor(lines: &[String]) -> Result<i64, LoadError> {
    let values: BTreeMap<&str, f64> = lines
        .iter()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect();
    let get = |key: &str| values.get(key).copied().ok_or(LoadError::Bogus);
    let mut memory = get("memAvail")?;
    if memory == 0.0 {
        memory = get("myMemAvail")?;
    }
    let load = get("loadavgXX")?;
    if load == 0.0 {
        return Err(LoadError::Bogus);
    }
    let factor = (memory / 1000.0) * get("numCPU")? * get("typeCPU")? * 100.0 / load;
    Ok(factor.trunc() as i64)
}

/// A `x2golistsessions` line (16 fields for SQLite, 14 for PostgreSQL) as a session view.
pub fn session_from_line(line: &str) -> Option<SessionView> {
    let fields: Vec<&str> = line.split('|').collect();
    if fields.len() < 12 || fields[1].is_empty() {
        return None;
    }
    Some(SessionView {
        session_id: fields[1].to_string(),
        user: fields[11].to_string(),
        server: fields[3].to_string(),
        status: SessionStatus::from_letter(fields[4].chars().next().unwrap_or('?')),
        raw_line: line.to_string(),
    })
}

/// A `x2golistsessions` line with its status field (the fifth) set to `status`: how a
/// taken-over session is announced (the reference rewrites `|R|` to `|S|`).
pub fn line_with_status(line: &str, status: SessionStatus) -> String {
    let mut fields: Vec<&str> = line.split('|').collect();
    let letter = status.letter().to_string();
    match fields.get_mut(4) {
        Some(field) if !field.is_empty() => *field = &letter,
        _ => return line.to_string(),
    }
    fields.join("|")
}

/// What OpenSSH does with an unknown or changed host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// `StrictHostKeyChecking yes` (paramiko RejectPolicy).
    Strict,
    /// `accept-new` (AutoAddPolicy).
    Add,
    /// `no` (WarningPolicy: accepted, with a warning in the log).
    Accept,
}

/// `agent-hostkey-policy` → OpenSSH; a missing policy is WarningPolicy as in the reference's
/// agent client, an unknown one RejectPolicy.
pub fn host_key_check(policy: Option<&str>) -> HostKeyCheck {
    match policy {
        None | Some("WarningPolicy") => HostKeyCheck::Accept,
        Some("AutoAddPolicy") => HostKeyCheck::Add,
        Some(_) => HostKeyCheck::Strict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn golden() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/api_agent_transport.jsonl"
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The user and task of a recorded exec string (`sh -c '<agent> <user> <task> …'`).
    fn recorded_call(command: &str) -> (String, Task) {
        let inner = command
            .strip_prefix("sh -c '")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap();
        let mut words = inner.splitn(4, ' ');
        let _agent = words.next();
        let user = words.next().unwrap().to_string();
        let task = words.next().unwrap();
        let arguments: Vec<String> = words
            .next()
            .map(|rest| {
                rest.split("\" \"")
                    .map(|argument| argument.trim_matches('"').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let task = match task {
            "ping" => Task::Ping,
            "availabletasks" => Task::AvailableTasks,
            "listsessions" => Task::ListSessions,
            "findbusyservers" => Task::FindBusyServers,
            "getservers" => Task::GetServers,
            "checkload" => Task::CheckLoad,
            "suspendsession" => Task::SuspendSession {
                session_id: arguments[0].clone(),
            },
            "terminatesession" => Task::TerminateSession {
                session_id: arguments[0].clone(),
            },
            "addauthkey" => Task::AddAuthKey {
                key: arguments[0].clone(),
                key_file: arguments[1].clone(),
            },
            "delauthkey" => Task::DelAuthKey {
                key: arguments[0].clone(),
                key_file: arguments[1].clone(),
            },
            other => panic!("unknown task {other}"),
        };
        (user, task)
    }

    fn parsed_result(call: &str, task: &Task, answer: &Answer) -> Value {
        let lines = &answer.lines;
        match task {
            Task::Ping => Value::from(answer.ok),
            Task::CheckLoad => match load_factor(lines) {
                Ok(factor) if answer.ok => Value::from(factor),
                _ => Value::from("LOAD-DATA-BOGUS"),
            },
            Task::FindBusyServers => serde_json::json!([answer.ok, busy_servers(lines)]),
            Task::GetServers => serde_json::json!([answer.ok, server_counts(lines)]),
            _ => {
                let _ = call;
                serde_json::json!([answer.ok, lines])
            }
        }
    }

    #[test]
    fn api_agent_transport_records() {
        let (mut matched, mut deviations) = (0, 0);
        for record in golden() {
            let call = record["call"].as_str().unwrap();
            if call.starts_with("genkeypair") {
                // the key format is checked in autologin.rs
                continue;
            }
            if let Some(popen) = record.get("popen") {
                let argv: Vec<String> = serde_json::from_value(popen["argv"].clone()).unwrap();
                let task = match argv[2].as_str() {
                    "listsessions" => Task::ListSessions,
                    "addauthkey" => Task::AddAuthKey {
                        key: argv[3].clone(),
                        key_file: argv[4].clone(),
                    },
                    other => panic!("{other}"),
                };
                let built = local_argv(&argv[0], &argv[1], &task);
                assert_eq!(built.unwrap(), argv, "{call}");
                let stdout = record["fake_stdout"].as_str().unwrap();
                let answer = Answer::parse(stdout, "");
                assert_eq!(
                    serde_json::json!([answer.ok, answer.lines]),
                    record["result"],
                    "{call}"
                );
                matched += 1;
                continue;
            }
            let interaction = record["ssh_interaction"].as_array().unwrap();
            let recorded_policy = interaction[0]["host_key_policy"].as_str().unwrap();
            let connect = &interaction[1]["connect"];
            assert_eq!(connect[2], "x2gobroker");
            let recorded = interaction[2]["exec_command"].as_str().unwrap();
            let (user, task) = recorded_call(recorded);
            let built = ssh_command(DEFAULT_AGENT_COMMAND, &user, &task);
            if call == "list_sessions with hostile login" {
                // deviation (§16 S2): the hostile login is refused, nothing is sent
                assert_eq!(built, Err(CommandError::User("x'$(id)'".into())));
                deviations += 1;
                continue;
            }
            assert_eq!(built.as_deref(), Ok(recorded), "{call}");
            let configured = if call.contains("host_key_policy missing") {
                None
            } else if call.contains("AutoAddPolicy") {
                Some("AutoAddPolicy")
            } else {
                Some("RejectPolicy")
            };
            let expected_check = match recorded_policy {
                "RejectPolicy" => HostKeyCheck::Strict,
                "AutoAddPolicy" => HostKeyCheck::Add,
                _ => HostKeyCheck::Accept,
            };
            assert_eq!(host_key_check(configured), expected_check, "{call}");
            let answer = Answer::parse(
                record["fake_remote_stdout"].as_str().unwrap(),
                record["fake_remote_stderr"].as_str().unwrap(),
            );
            assert_eq!(
                parsed_result(call, &task, &answer),
                record["result"],
                "{call}"
            );
            matched += 1;
        }
        println!("api_agent_transport: {matched} match, {deviations} documented deviations");
        assert_eq!((matched, deviations), (19, 1));
    }

    #[test]
    fn hostile_arguments_are_refused() {
        let agent = DEFAULT_AGENT_COMMAND;
        for user in [
            "",
            "Maja",
            "maja;id",
            "ma ja",
            "-rf",
            "$(id)",
            "maja\nid",
            "a234567890123456789012345678901234",
        ] {
            assert!(
                ssh_command(agent, user, &Task::ListSessions).is_err(),
                "{user:?}"
            );
        }
        assert!(ssh_command(agent, "machine$", &Task::ListSessions).is_ok());
        for session_id in ["", "a'b", "x$(id)", "a b", "a\"b", "-x", "a;b"] {
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
            let task = Task::AddAuthKey {
                key: key.into(),
                key_file: key_file.into(),
            };
            assert!(
                ssh_command(agent, "maja", &task).is_err(),
                "{key:?} {key_file:?}"
            );
            assert!(local_argv(agent, "maja", &task).is_err());
        }
        assert!(ssh_command("/usr/lib/x2go/agent;id", "maja", &Task::Ping).is_err());
        let generated = super::super::autologin::generate("maja", "::1").unwrap();
        let task = Task::AddAuthKey {
            key: generated.authorized_line,
            key_file: "%h/.x2go/authorized_keys".into(),
        };
        assert!(ssh_command(agent, "maja", &task).is_ok());
    }

    #[test]
    fn session_lines() {
        let line = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003|-1|-1";
        let session = session_from_line(line).unwrap();
        assert_eq!(
            (
                session.session_id.as_str(),
                session.server.as_str(),
                session.status,
                session.user.as_str()
            ),
            (
                "maja-51-1700000001_stDKDE_dp24",
                "ts02",
                SessionStatus::Suspended,
                "maja"
            )
        );
        // PostgreSQL: 14 fields
        let short = line.rsplitn(3, '|').nth(2).unwrap();
        assert_eq!(session_from_line(short).unwrap().user, "maja");
        assert_eq!(session_from_line("garbage"), None);
    }

    #[test]
    fn a_taken_over_line_is_announced_suspended_in_its_status_field_only() {
        let cases = [
            ("1|s-1|50|ts01|R|2026|x|R|", "1|s-1|50|ts01|S|2026|x|R|"),
            ("1|s-1|50|R|R|2026", "1|s-1|50|R|S|2026"),
            ("1|s-1|50|ts01|S|2026", "1|s-1|50|ts01|S|2026"),
            ("garbage", "garbage"),
        ];
        for (line, expected) in cases {
            assert_eq!(line_with_status(line, SessionStatus::Suspended), expected);
        }
    }
}
