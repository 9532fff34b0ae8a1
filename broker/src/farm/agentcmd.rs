//! The broker's side of the legacy agent command line (§9.1, §9.5): the protocol crate's
//! builders and parsers as the farm uses them, listed sessions as [`SessionView`]s, and the
//! host-key policy mapping of the SSH transport.
//!
//! Every rule — which user names, session ids, keys, key-file paths and agent paths are
//! accepted, the byte-exact `sh -c '<agent> <user> <task>[ "<arg>"…]'` string, the LOCAL argv,
//! the `OK` framing, the `checkload` load factor — is `x2gobroker_agent_protocol`'s, the same
//! functions the agent checks its input with, so the broker never builds a command its agent
//! refuses. Anything refused is refused before a connection is made (§16 S2).

use super::model::SessionView;
pub use x2gobroker_agent_protocol::{
    line_with_status, local_argv, ssh_command, Answer, ArgumentError, ListedSession, Task,
    ANY_USER, DEFAULT_AGENT_COMMAND,
};
use x2gobroker_agent_protocol::{load_factor, parse_checkload, LoadError};

/// The load factor of a `checkload` answer's data lines (§9.3).
pub fn checkload_factor(lines: &[String]) -> Result<i64, LoadError> {
    parse_checkload(lines).and_then(|reading| load_factor(&reading))
}

/// Whether an agent's exit status agrees with its answer: an `OK` counts only from an agent
/// that exited 0 (`exit_code` is `None` when it was killed by a signal). The reference reads
/// the first line alone, so an agent that printed `OK` and then failed (a key file it could
/// not write) looked successful and its key was handed out (docs/COMPATIBILITY.md). An answer
/// without `OK` is a failure whatever the status.
pub fn exit_status_agrees(answer: &Answer, exit_code: Option<i32>) -> bool {
    !answer.ok || exit_code == Some(0)
}

/// A listed session as the farm keeps it.
pub fn session_view(listed: ListedSession) -> SessionView {
    SessionView {
        session_id: listed.session_id,
        user: listed.user,
        server: listed.server,
        status: listed.status,
        raw_line: listed.raw_line,
    }
}

/// A `x2golistsessions` line (16 fields for SQLite, 14 for PostgreSQL) as a session view.
pub fn session_from_line(line: &str) -> Option<SessionView> {
    ListedSession::parse(line).map(session_view)
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

    /// The commands and answers of these records are replayed against the protocol crate
    /// (agent/protocol/tests/golden.rs); here: the host-key policy each SSH record used.
    #[test]
    fn api_agent_transport_host_key_policies() {
        let mut checked = 0;
        for record in golden() {
            let call = record["call"].as_str().unwrap();
            let Some(interaction) = record["ssh_interaction"].as_array() else {
                continue;
            };
            let recorded_policy = interaction[0]["host_key_policy"].as_str().unwrap();
            assert_eq!(interaction[1]["connect"][2], "x2gobroker", "{call}");
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
            checked += 1;
        }
        assert_eq!(checked, 18);
        assert_eq!(host_key_check(Some("NoSuchPolicy")), HostKeyCheck::Strict);
    }

    /// The broker's own key lines and the directory user names of issue 11 pass the shared
    /// rules, so autologin works for them.
    #[test]
    fn autologin_keys_and_directory_users_are_sent() {
        let agent = DEFAULT_AGENT_COMMAND;
        for (user, client) in [
            ("maja", "::1"),
            ("jdoe@uni.example", "10.0.0.5"),
            ("JDoe", "fe80::1"),
        ] {
            let generated = super::super::autologin::generate(user, client).unwrap();
            let task = Task::AddAuthKey {
                key: generated.authorized_line,
                key_file: "%h/.x2go/authorized_keys".into(),
            };
            assert!(ssh_command(agent, user, &task).is_ok(), "{user} {client}");
            assert!(local_argv(agent, user, &task).is_ok(), "{user} {client}");
        }
        assert_eq!(
            ssh_command(agent, "DOM\\maja", &Task::ListSessions),
            Err(ArgumentError::UserName("DOM\\maja".into()))
        );
    }

    #[test]
    fn an_ok_counts_only_with_exit_status_zero() {
        let ok = Answer::parse("OK\n", "");
        let refused = Answer::parse("no such user\n", "");
        // answer, exit code (None: killed by a signal), agrees
        let cases = [
            (&ok, Some(0), true),
            (&ok, Some(1), false),
            (&ok, Some(255), false),
            (&ok, None, false),
            (&refused, Some(0), true),
            (&refused, Some(1), true),
            (&refused, None, true),
        ];
        for (answer, exit_code, agrees) in cases {
            assert_eq!(
                exit_status_agrees(answer, exit_code),
                agrees,
                "{answer:?} {exit_code:?}"
            );
        }
    }

    #[test]
    fn session_lines_become_views() {
        let line = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003|-1|-1";
        assert_eq!(
            session_from_line(line),
            Some(SessionView {
                session_id: "maja-51-1700000001_stDKDE_dp24".into(),
                user: "maja".into(),
                server: "ts02".into(),
                status: x2gobroker_agent_protocol::SessionStatus::Suspended,
                raw_line: line.into(),
            })
        );
        assert_eq!(session_from_line("garbage"), None);
    }

    #[test]
    fn checkload_factors() {
        let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
        assert_eq!(
            checkload_factor(&lines(
                "loadavgXX:51\nmemAvail:7800\nmyMemAvail:7900\nnumCPU:4\ntypeCPU:2400"
            )),
            Ok(146823)
        );
        assert!(checkload_factor(&lines("loadavgXX:201\nnumCPU:2")).is_err());
    }
}
