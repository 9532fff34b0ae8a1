//! Servers in use and busy percentages (spec §9.2, B24), computed from session lists or from
//! `x2gogetservers` output. Pure functions.

use std::collections::BTreeMap;

use crate::session::{Session, SessionStatus};

/// Sessions on one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerUsage {
    pub server: String,
    pub sessions: u32,
    pub running: u32,
    pub suspended: u32,
}

/// Share of all sessions on one server, in truncated integer percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyServer {
    pub server: String,
    pub percent: u32,
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
/// backend prints bare host names, which yield `None` (no counts available).
pub fn parse_getservers(text: &str) -> Option<Vec<(String, u32)>> {
    let mut counts = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(host) = words.next() else { continue };
        let count = words.next()?.parse::<u32>().ok()?;
        counts.push((host.to_owned(), count));
    }
    Some(counts)
}

/// `int(n / total * 100)` per server, in the legacy output order: the rendered
/// `<pct>:<host>` lines sorted as strings. No sessions at all ⇒ empty (the reference dies
/// with a division by zero there, B24).
pub fn busy_servers(counts: &[(String, u32)]) -> Vec<BusyServer> {
    let total: u64 = counts.iter().map(|(_, n)| u64::from(*n)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut busy: Vec<BusyServer> = counts
        .iter()
        .map(|(server, n)| BusyServer {
            server: server.clone(),
            percent: (f64::from(*n) / total as f64 * 100.0).trunc() as u32,
        })
        .collect();
    busy.sort_by_key(render_busy_line);
    busy
}

/// One legacy findbusyservers line, without line break.
pub fn render_busy_line(busy: &BusyServer) -> String {
    format!("{}:{}", busy.percent, busy.server)
}

/// The legacy findbusyservers output after the `OK` line: lines joined by `\n` plus a final
/// `\n` (so no servers ⇒ `\n`).
pub fn render_busy_servers(busy: &[BusyServer]) -> String {
    let lines: Vec<String> = busy.iter().map(render_busy_line).collect();
    format!("{}\n", lines.join("\n"))
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

    #[test]
    fn busy_percentages_are_truncated_and_string_sorted() {
        let counts = vec![
            ("ts01".to_owned(), 1),
            ("ts02".to_owned(), 2),
            ("ts10".to_owned(), 7),
        ];
        let busy = busy_servers(&counts);
        assert_eq!(render_busy_servers(&busy), "10:ts01\n20:ts02\n70:ts10\n");
        let thirds = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 1),
            ("c".to_owned(), 1),
        ];
        assert_eq!(
            render_busy_servers(&busy_servers(&thirds)),
            "33:a\n33:b\n33:c\n"
        );
        // "100:x" sorts before "9:y" as strings
        let skewed = vec![("y".to_owned(), 0), ("x".to_owned(), 5)];
        assert_eq!(render_busy_servers(&busy_servers(&skewed)), "0:y\n100:x\n");
        assert_eq!(render_busy_servers(&busy_servers(&[])), "\n");
        assert_eq!(
            render_busy_servers(&busy_servers(&[("z".to_owned(), 0)])),
            "\n"
        );
    }
}
