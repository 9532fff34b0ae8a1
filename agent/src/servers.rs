//! Servers in use (spec §9.2, B24), counted from session lists or read from `x2gogetservers`
//! output. Pure functions; the busy percentages and their lines are the protocol crate's.

use std::collections::BTreeMap;

use x2gobroker_agent_protocol::parse_server_count_line;

use crate::session::{Session, SessionStatus};

/// Sessions on one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerUsage {
    pub server: String,
    pub sessions: u32,
    pub running: u32,
    pub suspended: u32,
}

/// Counts the non-failed sessions per server, sorted by server name.
pub fn usage_from_sessions(sessions: &[Session]) -> Vec<ServerUsage> {
    let mut by_server: BTreeMap<&str, ServerUsage> = BTreeMap::new();
    for session in sessions {
        if session.status == SessionStatus::Failed {
            continue;
        }
        let usage = by_server
            .entry(session.server.as_str())
            .or_insert_with(|| ServerUsage {
                server: session.server.clone(),
                ..ServerUsage::default()
            });
        usage.sessions += 1;
        match session.status {
            SessionStatus::Running => usage.running += 1,
            SessionStatus::Suspended => usage.suspended += 1,
            _ => {}
        }
    }
    by_server.into_values().collect()
}

/// Parses `x2gogetservers` output. PostgreSQL prints `<host> <count>` lines; the sqlite
/// backend prints bare host names, which yield `None` (no counts available); so does any
/// other line but a blank one.
pub fn parse_getservers(text: &str) -> Option<Vec<(String, u32)>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_server_count_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::parse_session_line;

    fn session(server: &str, status: &str) -> Session {
        parse_session_line(&format!(
            "1|u-50-1700000000_stDKDE_dp24|50|{server}|{status}|2026-11-28T12:00:21|00|10.0.0.1|1|2|2026-11-28T12:00:22|u|1|3|-1|-1"
        ))
        .unwrap()
    }

    #[test]
    fn usage_counts_per_server() {
        let sessions = [
            session("b", "R"),
            session("a", "S"),
            session("b", "S"),
            session("b", "R"),
            session("c", "F"),
        ];
        assert_eq!(
            usage_from_sessions(&sessions),
            vec![
                ServerUsage {
                    server: "a".into(),
                    sessions: 1,
                    running: 0,
                    suspended: 1
                },
                ServerUsage {
                    server: "b".into(),
                    sessions: 3,
                    running: 2,
                    suspended: 1
                },
            ]
        );
        assert!(usage_from_sessions(&[]).is_empty());
    }

    #[test]
    fn getservers_output() {
        type Counts = Option<Vec<(String, u32)>>;
        let table: [(&str, Counts); 4] = [
            (
                "ts01 3\nts02 1",
                Some(vec![("ts01".into(), 3), ("ts02".into(), 1)]),
            ),
            ("", Some(vec![])),
            ("x2go-node1\nx2go-node2", None),
            ("ts01 x", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_getservers(text), expected, "{text:?}");
        }
    }
}
