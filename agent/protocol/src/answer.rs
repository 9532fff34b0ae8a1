//! What the legacy agent prints and how it is read (§9.1, §9.2, §9.5, §13): the `OK` first
//! line, the `x2golistsessions` session lines, the `findbusyservers` lines `<pct>:<host>` and
//! the `getservers` lines `<host> <count>`.

use std::collections::BTreeMap;

/// An agent's answer: `ok` iff the first line starts with `OK` (and, over SSH, nothing came on
/// stderr); `lines` are the non-empty data lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Answer {
    /// Parses what the agent printed (`stderr` is the SSH channel's; LOCAL merges it into
    /// stdout and passes `""`).
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
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The status field of a session line, as the X2Go session DB stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Running,
    Suspended,
    Terminated,
    Failed,
    /// Any other field: its first character (`?` when empty).
    Other(char),
}

impl SessionStatus {
    /// `R`, `S`, `T`, `F` (exactly); anything else is [`SessionStatus::Other`].
    pub fn from_field(field: &str) -> SessionStatus {
        match field {
            "R" => SessionStatus::Running,
            "S" => SessionStatus::Suspended,
            "T" => SessionStatus::Terminated,
            "F" => SessionStatus::Failed,
            other => SessionStatus::Other(other.chars().next().unwrap_or('?')),
        }
    }

    /// The status letter.
    pub fn letter(self) -> char {
        match self {
            SessionStatus::Running => 'R',
            SessionStatus::Suspended => 'S',
            SessionStatus::Terminated => 'T',
            SessionStatus::Failed => 'F',
            SessionStatus::Other(letter) => letter,
        }
    }
}

/// A `x2golistsessions` line with its status field (the fifth) set to `status`: how a
/// taken-over session is announced (the reference rewrites `|R|` to `|S|`; only the status
/// field is touched here). A line without a status field is returned as it is.
pub fn line_with_status(line: &str, status: SessionStatus) -> String {
    let mut fields: Vec<&str> = line.split('|').collect();
    let letter = status.letter().to_string();
    match fields.get_mut(4) {
        Some(field) if !field.is_empty() => *field = &letter,
        _ => return line.to_string(),
    }
    fields.join("|")
}

/// The fields of a session line the broker needs, and the line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    pub session_id: String,
    pub user: String,
    /// The server name the X2Go server recorded for the session.
    pub server: String,
    pub status: SessionStatus,
    /// The line exactly as printed (without the line break).
    pub raw_line: String,
}

/// Field positions of a `|`-separated session line: agent PID · session id · display ·
/// server · status · created · cookie · client IP · graphics port · sound port · last active
/// · user · age · sshfs port [· TeKi control port · TeKi data port].
pub mod field {
    pub const SESSION_ID: usize = 1;
    pub const SERVER: usize = 3;
    pub const STATUS: usize = 4;
    pub const USER: usize = 11;
}

impl ListedSession {
    /// Reads a session line: 16 fields with the SQLite session DB, 14 with PostgreSQL; any
    /// line of at least 12 fields with a session id is taken (the broker relays the raw line,
    /// the agent's own parser is stricter). `None` for anything else.
    pub fn parse(line: &str) -> Option<ListedSession> {
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() <= field::USER || fields[field::SESSION_ID].is_empty() {
            return None;
        }
        Some(ListedSession {
            session_id: fields[field::SESSION_ID].to_owned(),
            user: fields[field::USER].to_owned(),
            server: fields[field::SERVER].to_owned(),
            status: SessionStatus::from_field(fields[field::STATUS]),
            raw_line: line.to_owned(),
        })
    }
}

/// One server's share of all sessions, in truncated integer percent (a `findbusyservers` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyServer {
    pub server: String,
    pub percent: u32,
}

impl BusyServer {
    /// `<pct>:<host>`, without line break.
    pub fn line(&self) -> String {
        format!("{}:{}", self.percent, self.server)
    }
}

/// §9.2: `int(n / total * 100)` per server, in the legacy output order (the rendered lines
/// sorted as strings). No sessions at all ⇒ empty (the reference dies with a division by
/// zero there, B24).
pub fn busy_percentages(counts: &[(String, u32)]) -> Vec<BusyServer> {
    let total: u64 = counts.iter().map(|(_, count)| u64::from(*count)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut busy: Vec<BusyServer> = counts
        .iter()
        .map(|(server, count)| BusyServer {
            server: server.clone(),
            percent: (f64::from(*count) / total as f64 * 100.0).trunc() as u32,
        })
        .collect();
    busy.sort_by_key(BusyServer::line);
    busy
}

/// The `findbusyservers` output after the `OK` line: the lines joined by `\n` plus a final
/// `\n` (so no servers ⇒ `\n`).
pub fn render_busy_servers(busy: &[BusyServer]) -> String {
    let lines: Vec<String> = busy.iter().map(BusyServer::line).collect();
    format!("{}\n", lines.join("\n"))
}

/// Reads `findbusyservers` data lines `<pct>:<host>` into host → percent; other lines are
/// ignored.
pub fn parse_busy_servers(lines: &[String]) -> BTreeMap<String, u32> {
    lines
        .iter()
        .filter_map(|line| {
            let (percent, host) = line.split_once(':')?;
            Some((host.to_owned(), percent.trim().parse().ok()?))
        })
        .collect()
}

/// One `getservers` line `<host> <count>` (split on whitespace, exactly two words); `None`
/// for a host-only line (the SQLite session DB prints no counts) and any other line.
pub fn parse_server_count_line(line: &str) -> Option<(String, u32)> {
    let mut words = line.split_whitespace();
    let host = words.next()?;
    let count = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some((host.to_owned(), count))
}

/// Reads `getservers` data lines into host → count; lines without a count are skipped.
pub fn parse_server_counts(lines: &[String]) -> BTreeMap<String, u32> {
    lines
        .iter()
        .filter_map(|line| parse_server_count_line(line))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn answers() {
        let table = [
            (("OK\na\n\nb\n", ""), (true, vec!["a", "b"])),
            (("OKAY\nx", ""), (true, vec!["x"])),
            (("OK\nx", "warning"), (false, vec![])),
            (("ok\nx", ""), (false, vec![])),
            (("", ""), (false, vec![])),
            (("Died at … line 37.\n", ""), (false, vec![])),
        ];
        for ((stdout, stderr), (ok, lines)) in table {
            assert_eq!(
                Answer::parse(stdout, stderr),
                Answer {
                    ok,
                    lines: strings(&lines)
                },
                "{stdout:?} {stderr:?}"
            );
        }
    }

    #[test]
    fn session_lines() {
        let line = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003|-1|-1";
        let session = ListedSession::parse(line).unwrap();
        assert_eq!(
            session,
            ListedSession {
                session_id: "maja-51-1700000001_stDKDE_dp24".into(),
                user: "maja".into(),
                server: "ts02".into(),
                status: SessionStatus::Suspended,
                raw_line: line.into(),
            }
        );
        // PostgreSQL: 14 fields
        let short = line.rsplitn(3, '|').nth(2).unwrap();
        assert_eq!(ListedSession::parse(short).unwrap().user, "maja");
        assert_eq!(ListedSession::parse("garbage"), None);
        assert_eq!(
            ListedSession::parse("1||50|ts02|R|a|b|c|d|e|f|maja|1|2"),
            None
        );
        assert_eq!(ListedSession::parse("1|x|50|ts02|R|a|b|c|d|e|f"), None);
    }

    #[test]
    fn status_fields() {
        let table = [
            ("R", SessionStatus::Running, 'R'),
            ("S", SessionStatus::Suspended, 'S'),
            ("T", SessionStatus::Terminated, 'T'),
            ("F", SessionStatus::Failed, 'F'),
            ("X", SessionStatus::Other('X'), 'X'),
            ("RS", SessionStatus::Other('R'), 'R'),
            ("", SessionStatus::Other('?'), '?'),
        ];
        for (field, status, letter) in table {
            assert_eq!(SessionStatus::from_field(field), status, "{field:?}");
            assert_eq!(status.letter(), letter);
        }
    }

    #[test]
    fn busy_percentages_are_truncated_and_string_sorted() {
        let counts = |pairs: &[(&str, u32)]| -> Vec<(String, u32)> {
            pairs
                .iter()
                .map(|(host, n)| ((*host).to_owned(), *n))
                .collect()
        };
        let table = [
            (
                counts(&[("ts01", 1), ("ts02", 2), ("ts10", 7)]),
                "10:ts01\n20:ts02\n70:ts10\n",
            ),
            (
                counts(&[("a", 1), ("b", 1), ("c", 1)]),
                "33:a\n33:b\n33:c\n",
            ),
            // "100:x" sorts before "9:y" as strings
            (counts(&[("y", 0), ("x", 5)]), "0:y\n100:x\n"),
            (counts(&[]), "\n"),
            (counts(&[("z", 0)]), "\n"),
        ];
        for (counts, expected) in table {
            let busy = busy_percentages(&counts);
            let rendered = render_busy_servers(&busy);
            assert_eq!(rendered, expected, "{counts:?}");
            // what the agent renders, the broker reads back
            let read = parse_busy_servers(&strings(&rendered.lines().collect::<Vec<_>>()));
            let written: BTreeMap<String, u32> =
                busy.into_iter().map(|b| (b.server, b.percent)).collect();
            assert_eq!(read, written);
        }
        assert_eq!(
            parse_busy_servers(&strings(&[
                "33:ts01", "66:ts02", "garbage", "x:ts03", " 5:ts04"
            ])),
            BTreeMap::from([("ts01".into(), 33), ("ts02".into(), 66), ("ts04".into(), 5)])
        );
    }

    #[test]
    fn getservers_lines() {
        let table = [
            ("ts01 3", Some(("ts01", 3))),
            ("ts01  3", Some(("ts01", 3))),
            ("ts01\t0", Some(("ts01", 0))),
            ("ts01", None),
            ("ts01 x", None),
            ("ts01 -1", None),
            ("ts01 3 extra", None),
            ("", None),
        ];
        for (line, expected) in table {
            assert_eq!(
                parse_server_count_line(line),
                expected.map(|(host, n)| (host.to_owned(), n)),
                "{line:?}"
            );
        }
        assert_eq!(
            parse_server_counts(&strings(&["ts01 3", "ts02 x", "ts03", "ts04 0"])),
            BTreeMap::from([("ts01".into(), 3), ("ts04".into(), 0)])
        );
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
