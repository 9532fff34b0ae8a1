//! The agent's `x2golistsessions` line parser (`parse_session_line`, §13), checked against the broker's laxer reader of the same lines and the status rewrite of a take-over.

use x2gobroker_agent::servers::usage_from_sessions;
use x2gobroker_agent::session::{parse_session_line, parse_session_listing, same_sessions};
use x2gobroker_agent_protocol::{line_with_status, ListedSession, SessionStatus};

/// Parses the text as a listing and each line alone.
pub fn session_lines(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().map(|line| line.trim_end_matches('\r')) {
        let Ok(session) = parse_session_line(line) else {
            continue;
        };
        assert_eq!(session.raw_line, line);
        assert!(!session.session_id.is_empty());
        let listed = ListedSession::parse(line).expect("the broker reads what the agent reads");
        assert_eq!(
            (
                &listed.session_id,
                &listed.user,
                &listed.server,
                listed.status
            ),
            (
                &session.session_id,
                &session.user,
                &session.server,
                session.status
            )
        );
        let rewritten = line_with_status(line, SessionStatus::Suspended);
        let again = parse_session_line(&rewritten).expect("a status rewrite keeps the line valid");
        let status_field = line.split('|').nth(4).unwrap_or_default();
        if status_field.is_empty() {
            assert_eq!(rewritten, line);
        } else {
            assert_eq!(again.status, SessionStatus::Suspended);
        }
        let unchanged = |mut session: x2gobroker_agent::session::Session| {
            session.status = SessionStatus::Suspended;
            session.raw_line.clear();
            session
        };
        assert_eq!(unchanged(again), unchanged(session.clone()));
        assert!(session.same_state(&session));
    }
    if let Ok(sessions) = parse_session_listing(&text) {
        assert!(same_sessions(&sessions, &sessions));
        let usage = usage_from_sessions(&sessions);
        let counted: u32 = usage.iter().map(|server| server.sessions).sum();
        let not_failed = sessions
            .iter()
            .filter(|session| session.status != SessionStatus::Failed)
            .count();
        assert_eq!(counted as usize, not_failed);
        for server in &usage {
            assert!(server.running + server.suspended <= server.sessions);
        }
    }
}
