//! `x2gobroker-pubkeyauthorizer`, pure part: which lines of a broker's `/pubkeys` may be installed, and what changes in authorized_keys.
//!
//! A served line must have exactly the shape the broker's `/pubkeys` serves:
//! `command="<agent>",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty <type> <base64> <comment>`
//! — the forced command to the agent (`X2GOBROKER_AGENT_CMD` on this server, default
//! `/usr/lib/x2go/x2gobroker-agent`), those four restrictions in any order and nothing else,
//! a known key type whose data decodes to that type, a comment of `[A-Za-z0-9@._-]`. Empty
//! and `#` lines are skipped. One line in another shape refuses the whole answer, as the
//! reference refuses anything but `ssh-rsa`/`ssh-dss` keys: nothing is installed.
//!
//! Installing (the reference's behaviour, idempotent): a line already present is skipped;
//! an existing line for the same key (type and data) with other or no options is dropped,
//! so sshd cannot match an unrestricted copy first.

use base64::Engine;

use x2gobroker_agent_protocol::{check_key_line, KEY_TYPES};

/// The reference's agent path, the forced command `/pubkeys` names.
pub const DEFAULT_AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The restrictions every served line carries.
pub const REQUIRED_OPTIONS: [&str; 4] = [
    "no-port-forwarding",
    "no-X11-forwarding",
    "no-agent-forwarding",
    "no-pty",
];

/// The most a `/pubkeys` answer may hold.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One line to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedKey {
    /// The whole line as served.
    pub line: String,
    pub key_type: String,
    pub data: String,
}

/// Why a served line is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {number}: {reason}")]
pub struct RefusedLine {
    pub number: usize,
    pub reason: &'static str,
}

/// Whether `data` (base64) decodes to a key blob of type `key_type`.
pub fn data_matches_type(key_type: &str, data: &str) -> bool {
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return false;
    };
    let Some(length) = blob
        .get(..4)
        .and_then(|prefix| <[u8; 4]>::try_from(prefix).ok())
        .map(|prefix| u32::from_be_bytes(prefix) as usize)
    else {
        return false;
    };
    blob.get(4..4 + length) == Some(key_type.as_bytes())
}

fn check_line(line: &str, agent_command: &str) -> Result<ServedKey, &'static str> {
    let Some(rest) = line.strip_prefix("command=\"") else {
        return Err("no forced command");
    };
    let Some((command, rest)) = rest.split_once('"') else {
        return Err("unterminated forced command");
    };
    if command != agent_command {
        return Err("the forced command is not this server's agent");
    }
    let Some(rest) = rest.strip_prefix(',') else {
        return Err("restrictions missing");
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let [options, key_type, data, comment] = fields.as_slice() else {
        return Err("not `options type data comment`");
    };
    let mut options: Vec<&str> = options.split(',').collect();
    options.sort_unstable();
    let mut required = REQUIRED_OPTIONS.to_vec();
    required.sort_unstable();
    if options != required {
        return Err("options other than the four restrictions");
    }
    if !KEY_TYPES.contains(key_type) {
        return Err("unknown key type");
    }
    if !data_matches_type(key_type, data) {
        return Err("key data is not a key of its type");
    }
    let comment_fine = !comment.is_empty()
        && comment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c));
    if !comment_fine {
        return Err("comment is not user@host");
    }
    // the key itself under the one rule broker and agent share (the forced command and
    // the restrictions in front of it were checked above, exactly)
    if check_key_line(&format!("{key_type} {data} {comment}")).is_err() {
        return Err("not a valid authorized_keys line");
    }
    Ok(ServedKey {
        line: line.to_string(),
        key_type: key_type.to_string(),
        data: data.to_string(),
    })
}

/// The lines of a `/pubkeys` answer, or the first line that may not be installed.
pub fn served_keys(body: &str, agent_command: &str) -> Result<Vec<ServedKey>, RefusedLine> {
    let mut keys = Vec::new();
    for (index, raw) in body.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match check_line(line, agent_command) {
            Ok(key) => keys.push(key),
            Err(reason) => {
                return Err(RefusedLine {
                    number: index + 1,
                    reason,
                })
            }
        }
    }
    Ok(keys)
}

/// What one served key does to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    Add,
    AlreadyThere,
}

/// The changes for authorized_keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallPlan {
    /// Per served key, in order.
    pub actions: Vec<KeyAction>,
    /// Lines to append.
    pub add: Vec<String>,
    /// Existing lines for a served key with other options (or none).
    pub drop: Vec<String>,
}

/// The type and data of an authorized_keys line (after any options).
fn key_of_line(line: &str) -> Option<(&str, &str)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let position = words.iter().position(|word| KEY_TYPES.contains(word))?;
    Some((words[position], words.get(position + 1)?))
}

/// What installing `served` into a file holding `existing` changes.
pub fn plan(existing: &str, served: &[ServedKey]) -> InstallPlan {
    let lines: Vec<&str> = existing
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .collect();
    let mut plan = InstallPlan::default();
    for key in served {
        if lines.contains(&key.line.as_str()) || plan.add.contains(&key.line) {
            plan.actions.push(KeyAction::AlreadyThere);
        } else {
            plan.actions.push(KeyAction::Add);
            plan.add.push(key.line.clone());
        }
        for line in &lines {
            let same_key = key_of_line(line)
                .is_some_and(|(key_type, data)| key_type == key.key_type && data == key.data);
            if same_key && *line != key.line && !plan.drop.iter().any(|dropped| dropped == line) {
                plan.drop.push(line.to_string());
            }
        }
    }
    plan
}

/// `-t`'s URL, fetched as given; a URL naming only the broker (no path, or `/`) gets
/// `pubkeys/` appended (the reference fetched `/` and refused its page).
pub fn pubkeys_url(given: &str) -> String {
    let after_scheme = given.split_once("://").map_or(given, |(_, rest)| rest);
    match after_scheme.find('/') {
        None => format!("{given}/pubkeys/"),
        Some(slash) if after_scheme[slash..] == *"/" => format!("{given}pubkeys/"),
        Some(_) => given.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDOEeJ+ktulJGd8Won88whNNiKAKCa6RV0u4RnFJ+JVHRvS/Fp1MAxMDNyHgodHNrQTFx23viId+RxqBrkHyy3b42dZ7v9irFAK/7QeJ4cxt7xCNY/zeakYy6FkfUp4Y30W01V8zzkcB2yVqGjJ0oyXAN/JR7dIUGFBm3fd9kA2QQ==";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzUEtaoiDVizV1YsI/aoxgM2NRX0AD3IN0KBAHgNHyi";
    const PREFIX: &str = "command=\"/usr/lib/x2go/x2gobroker-agent\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty";

    fn served(key: &str) -> String {
        format!("{PREFIX} {key} x2gobroker@broker.example")
    }

    #[test]
    fn only_the_shape_pubkeys_serves_is_accepted() {
        let table: Vec<(String, Result<usize, &str>)> = vec![
            (format!("{}\n", served(RSA)), Ok(1)),
            (format!("{}\n{}\n", served(RSA), served(ED25519)), Ok(2)),
            (format!("\n# comment\n{}\r\n", served(RSA)), Ok(1)),
            (String::new(), Ok(0)),
            // restrictions in another order are still the same restrictions
            (
                format!("command=\"/usr/lib/x2go/x2gobroker-agent\",no-pty,no-agent-forwarding,no-X11-forwarding,no-port-forwarding {RSA} a@b\n"),
                Ok(1),
            ),
            (format!("{RSA} x2gobroker@broker\n"), Err("no forced command")),
            (
                format!("command=\"/bin/sh\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {RSA} a@b\n"),
                Err("the forced command is not this server's agent"),
            ),
            (
                format!("{PREFIX},permitopen=\"*:*\" {RSA} a@b\n"),
                Err("options other than the four restrictions"),
            ),
            (
                format!("command=\"/usr/lib/x2go/x2gobroker-agent\",no-pty {RSA} a@b\n"),
                Err("options other than the four restrictions"),
            ),
            (format!("{PREFIX} {RSA}\n"), Err("not `options type data comment`")),
            (
                format!("{PREFIX} ssh-dss {} a@b\n", RSA.split(' ').nth(1).unwrap()),
                Err("key data is not a key of its type"),
            ),
            (format!("{PREFIX} ssh-foo AAAA a@b\n"), Err("unknown key type")),
            (format!("{PREFIX} {RSA} a$(id)\n"), Err("comment is not user@host")),
            // the broker's root page, as the reference's tool would see it at `/`
            (
                "<body><html><h1>X2Go Session Broker</h1><p>It works...</p></body></html>".to_string(),
                Err("no forced command"),
            ),
        ];
        for (body, expected) in table {
            let result = served_keys(&body, DEFAULT_AGENT_COMMAND)
                .map(|keys| keys.len())
                .map_err(|refused| refused.reason);
            assert_eq!(result, expected, "{body:?}");
        }
        let refused = served_keys(&format!("{}\nbad\n", served(RSA)), DEFAULT_AGENT_COMMAND);
        assert_eq!(refused.unwrap_err().number, 2);
        // another agent path on this server
        assert!(served_keys(&served(RSA), "/opt/x2go/x2gobroker-agent").is_err());
    }

    #[test]
    fn installing_is_idempotent_and_drops_unrestricted_copies() {
        let keys = served_keys(
            &format!("{}\n{}\n", served(RSA), served(ED25519)),
            DEFAULT_AGENT_COMMAND,
        )
        .unwrap();
        // empty file: both added
        let first = plan("", &keys);
        assert_eq!(first.actions, vec![KeyAction::Add, KeyAction::Add]);
        assert_eq!(first.add, vec![served(RSA), served(ED25519)]);
        assert!(first.drop.is_empty());
        // after installing: nothing to do
        let installed = format!("other-key-line\n{}\n{}\n", served(RSA), served(ED25519));
        let second = plan(&installed, &keys);
        assert_eq!(
            second.actions,
            vec![KeyAction::AlreadyThere, KeyAction::AlreadyThere]
        );
        assert!(second.add.is_empty() && second.drop.is_empty());
        // an unrestricted copy of the same key is dropped, other keys stay
        let legacy = format!("{RSA} old-comment\nssh-rsa AAAAother someone\n");
        let third = plan(&legacy, &keys[..1]);
        assert_eq!(third.add, vec![served(RSA)]);
        assert_eq!(third.drop, vec![format!("{RSA} old-comment")]);
        // a key served twice is added once
        let twice = plan("", &[keys[0].clone(), keys[0].clone()]);
        assert_eq!(twice.add.len(), 1);
        assert_eq!(twice.actions[1], KeyAction::AlreadyThere);
    }

    #[test]
    fn urls_naming_only_the_broker_get_the_pubkeys_path() {
        let table = [
            ("http://broker:8080", "http://broker:8080/pubkeys/"),
            ("http://broker:8080/", "http://broker:8080/pubkeys/"),
            ("https://broker/pubkeys/", "https://broker/pubkeys/"),
            (
                "https://broker/x2gobroker/pubkeys",
                "https://broker/x2gobroker/pubkeys",
            ),
        ];
        for (given, expected) in table {
            assert_eq!(pubkeys_url(given), expected, "{given}");
        }
    }
}
