//! The plain-text protocol of X2Go Client (§3.6): `AUTHID:` and `Access granted` lines, profile blocks, `SERVER:`.
//!
//! Exact format: `AUTHID:<cookie>\n` (when a cookie is issued), `Access granted\n`, then per task:
//! listing `START_USER_SESSIONS\n\n` + per profile `[<id>]\n` + `key=value\n`… + `\n`, then
//! `END_USER_SESSIONS\n` (nothing when the user has no profile); selection
//! `SERVER:<server>:<port>\n` + the PEM private key + `SESSION_INFO:<line>\n`; `testcon` is just `OK`.
//! Lines end in LF only (X2Go Client lists nothing with CRLF). The SSH broker mode (§12) prints
//! the same body with Python's `print`, which adds one `\n` (so `testcon` is `OK\n`).

use super::super::reply::{BrokerReply, TaskOutcome};

/// Renders a reply for the HTTP plain frontend.
pub fn render(reply: &BrokerReply) -> String {
    if matches!(reply.outcome, TaskOutcome::Testcon) {
        return "OK".to_string();
    }
    let mut body = String::new();
    if let Some(cookie) = &reply.next_cookie {
        body.push_str("AUTHID:");
        body.push_str(cookie);
        body.push('\n');
    }
    body.push_str("Access granted\n");
    render_task(reply, &mut body);
    body
}

/// The SSH broker mode's stdout (§12): the plain body and the newline `print` adds.
pub fn render_ssh(reply: &BrokerReply) -> String {
    let mut output = render(reply);
    output.push('\n');
    output
}

/// Appends the task's part of the plain body.
fn render_task(reply: &BrokerReply, body: &mut String) {
    match &reply.outcome {
        TaskOutcome::Listing(profiles) if !profiles.is_empty() => {
            body.push_str("START_USER_SESSIONS\n\n");
            for profile in profiles {
                body.push('[');
                body.push_str(profile.id());
                body.push_str("]\n");
                for (key, value) in profile.keys() {
                    body.push_str(key);
                    body.push('=');
                    value.write_plain(body);
                    body.push('\n');
                }
                body.push('\n');
            }
            body.push_str("END_USER_SESSIONS\n");
        }
        TaskOutcome::Selection(Some(selection)) => {
            body.push_str(&format!("SERVER:{}:{}\n", selection.server, selection.port));
            if let Some(key) = &selection.private_key {
                body.push_str(key);
            }
            if let Some(info) = &selection.session_info {
                body.push_str("SESSION_INFO:");
                body.push_str(info);
                body.push('\n');
            }
        }
        _ => {}
    }
}
