//! X2Go session lines (`x2golistsessions`, spec §13): the domain type and its parser.
//!
//! One session per line, `|`-separated: 16 fields with the sqlite session DB, 14 with the
//! PostgreSQL one (no TeKi ports). Fields: agent PID · session id · display · server ·
//! status · created · cookie · client IP · graphics port · sound port · last active · user ·
//! age in seconds · sshfs port [· TeKi control port · TeKi data port] (`-1` = unused).

use x2gobroker_agent_protocol::answer::field;
/// Session state as the X2Go session DB stores it: the protocol crate's, which the broker
/// reads from the same field.
pub use x2gobroker_agent_protocol::SessionStatus;

/// One parsed session line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub agent_pid: i64,
    pub session_id: String,
    pub display: i32,
    pub server: String,
    pub status: SessionStatus,
    pub created: String,
    pub cookie: String,
    pub client_ip: String,
    pub graphics_port: i32,
    pub sound_port: i32,
    pub last_active: String,
    pub user: String,
    pub age_seconds: i64,
    pub sshfs_port: i32,
    pub tekictrl_port: Option<i32>,
    pub tekidata_port: Option<i32>,
    /// The line exactly as printed (without the line break).
    pub raw_line: String,
}

impl Session {
    /// Same session in the same state: every field but the ever-growing age (and the raw
    /// line that contains it).
    pub fn same_state(&self, other: &Session) -> bool {
        Session {
            age_seconds: 0,
            raw_line: String::new(),
            ..self.clone()
        } == Session {
            age_seconds: 0,
            raw_line: String::new(),
            ..other.clone()
        }
    }
}

/// Why a session line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionLineError {
    #[error("session line has {found} fields, expected 14 or 16: {line:?}")]
    FieldCount { found: usize, line: String },
    #[error("session line field {field} is not a number ({value:?}): {line:?}")]
    NotANumber {
        field: &'static str,
        value: String,
        line: String,
    },
    #[error("session line has an empty session id: {line:?}")]
    EmptySessionId { line: String },
}

/// Parses one line (14 or 16 fields).
pub fn parse_session_line(line: &str) -> Result<Session, SessionLineError> {
    let fields: Vec<&str> = line.split('|').collect();
    if fields.len() != 14 && fields.len() != 16 {
        return Err(SessionLineError::FieldCount {
            found: fields.len(),
            line: line.to_owned(),
        });
    }
    let number = |index: usize, field: &'static str| -> Result<i64, SessionLineError> {
        fields[index]
            .trim()
            .parse::<i64>()
            .map_err(|_| SessionLineError::NotANumber {
                field,
                value: fields[index].to_owned(),
                line: line.to_owned(),
            })
    };
    let port = |index: usize, field: &'static str| -> Result<i32, SessionLineError> {
        let value = number(index, field)?;
        i32::try_from(value).map_err(|_| SessionLineError::NotANumber {
            field,
            value: fields[index].to_owned(),
            line: line.to_owned(),
        })
    };
    let optional_port =
        |index: usize, field: &'static str| -> Result<Option<i32>, SessionLineError> {
            if index >= fields.len() {
                return Ok(None);
            }
            let value = port(index, field)?;
            Ok((value >= 0).then_some(value))
        };
    if fields[field::SESSION_ID].is_empty() {
        return Err(SessionLineError::EmptySessionId {
            line: line.to_owned(),
        });
    }
    Ok(Session {
        agent_pid: number(0, "agent_pid")?,
        session_id: fields[field::SESSION_ID].to_owned(),
        display: port(2, "display")?,
        server: fields[field::SERVER].to_owned(),
        status: SessionStatus::from_field(fields[field::STATUS]),
        created: fields[5].to_owned(),
        cookie: fields[6].to_owned(),
        client_ip: fields[7].to_owned(),
        graphics_port: port(8, "graphics_port")?,
        sound_port: port(9, "sound_port")?,
        last_active: fields[10].to_owned(),
        user: fields[field::USER].to_owned(),
        age_seconds: number(12, "age_seconds")?,
        sshfs_port: port(13, "sshfs_port")?,
        tekictrl_port: optional_port(14, "tekictrl_port")?,
        tekidata_port: optional_port(15, "tekidata_port")?,
        raw_line: line.to_owned(),
    })
}

/// Parses a whole listing; blank lines are skipped, the first bad line fails the listing.
pub fn parse_session_listing(text: &str) -> Result<Vec<Session>, SessionLineError> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty())
        .map(parse_session_line)
        .collect()
}

/// Keeps the sessions on the given servers (all of them when `server_names` is empty).
pub fn filter_by_server(sessions: Vec<Session>, server_names: &[String]) -> Vec<Session> {
    if server_names.is_empty() {
        return sessions;
    }
    sessions
        .into_iter()
        .filter(|session| server_names.contains(&session.server))
        .collect()
}

/// Two listings describe the same state (order and ages ignored).
pub fn same_sessions(left: &[Session], right: &[Session]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .all(|session| right.iter().any(|other| other.same_state(session)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG_LINE: &str = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003";
    const SQLITE_LINE: &str = "4002|maja-51-1700000001_stDKDE_dp24|50|ts02|S|2026-11-28T12:00:21|0000000000000000000000006b0ac255|10.99.0.1|30001|30002|2026-11-28T12:00:22|maja|292|30003|-1|-1";

    #[test]
    fn parses_recorded_postgresql_line_with_14_fields() {
        let session = parse_session_line(PG_LINE).unwrap();
        assert_eq!(
            session,
            Session {
                agent_pid: 4002,
                session_id: "maja-51-1700000001_stDKDE_dp24".into(),
                display: 50,
                server: "ts02".into(),
                status: SessionStatus::Suspended,
                created: "2026-11-28T12:00:21".into(),
                cookie: "0000000000000000000000006b0ac255".into(),
                client_ip: "10.99.0.1".into(),
                graphics_port: 30001,
                sound_port: 30002,
                last_active: "2026-11-28T12:00:22".into(),
                user: "maja".into(),
                age_seconds: 292,
                sshfs_port: 30003,
                tekictrl_port: None,
                tekidata_port: None,
                raw_line: PG_LINE.into(),
            }
        );
    }

    #[test]
    fn parses_sqlite_line_with_16_fields_and_teki_ports() {
        let session = parse_session_line(SQLITE_LINE).unwrap();
        assert_eq!(session.tekictrl_port, None);
        assert_eq!(session.tekidata_port, None);
        assert_eq!(session.raw_line, SQLITE_LINE);
        let with_teki = SQLITE_LINE.replace("|-1|-1", "|30004|30005");
        let session = parse_session_line(&with_teki).unwrap();
        assert_eq!(session.tekictrl_port, Some(30004));
        assert_eq!(session.tekidata_port, Some(30005));
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(matches!(
            parse_session_line("a|b|c"),
            Err(SessionLineError::FieldCount { found: 3, .. })
        ));
        let bad_pid = PG_LINE.replacen("4002", "x", 1);
        assert!(matches!(
            parse_session_line(&bad_pid),
            Err(SessionLineError::NotANumber {
                field: "agent_pid",
                ..
            })
        ));
        let fifteen = format!("{PG_LINE}|-1");
        assert!(parse_session_line(&fifteen).is_err());
    }

    #[test]
    fn listing_skips_blank_lines_and_filters_servers() {
        let text = format!(
            "{SQLITE_LINE}\n\n{}\n",
            SQLITE_LINE.replace("|ts02|", "|ts01|")
        );
        let sessions = parse_session_listing(&text).unwrap();
        assert_eq!(sessions.len(), 2);
        let only_ts01 = filter_by_server(sessions.clone(), &["ts01".to_owned()]);
        assert_eq!(only_ts01.len(), 1);
        assert_eq!(only_ts01[0].server, "ts01");
        assert_eq!(filter_by_server(sessions, &[]).len(), 2);
        assert!(parse_session_listing("").unwrap().is_empty());
    }

    #[test]
    fn age_changes_are_not_state_changes() {
        let first = parse_session_listing(SQLITE_LINE).unwrap();
        let older = parse_session_listing(&SQLITE_LINE.replace("|292|", "|293|")).unwrap();
        assert!(same_sessions(&first, &older));
        let running = parse_session_listing(&SQLITE_LINE.replace("|S|", "|R|")).unwrap();
        assert!(!same_sessions(&first, &running));
        assert!(!same_sessions(&first, &[]));
    }
}
