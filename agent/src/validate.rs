//! Validation of everything a caller hands the agent: user names, session ids, public-key
//! lines and authorized_keys paths. Pure functions; nothing here touches the system.
//!
//! The rules are deliberately strict: these values end up as arguments of X2Go server tools
//! (never through a shell) and as paths opened as the target user.

use std::path::{Component, Path};

/// Why a value was refused. Messages are lower case, without trailing period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid user name {0:?}: must match ^[a-z_][a-z0-9_.-]*[$]?$ and have at most 32 characters")]
    UserName(String),
    #[error(
        "invalid session id {0:?}: only A-Z a-z 0-9 _ . - are allowed, not starting with . or -"
    )]
    SessionId(String),
    #[error("invalid public key: {0}")]
    Key(&'static str),
    #[error("invalid key file path {path:?}: {reason}")]
    KeyFile { path: String, reason: &'static str },
}

/// Longest accepted user name (useradd's limit).
pub const MAX_USER_NAME_LEN: usize = 32;
/// Longest accepted session id (real ids are about 40 characters).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// Longest accepted public-key line.
pub const MAX_KEY_LEN: usize = 16 * 1024;
/// Longest accepted key-file path.
pub const MAX_PATH_LEN: usize = 4096;

/// Key types accepted as the type field of an authorized_keys line.
pub const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];

/// Characters that have a meaning to a POSIX shell and never occur in the values the broker
/// sends: refusing them keeps hostile input from ever looking like a command.
pub const SHELL_METACHARACTERS: &[char] =
    &['`', '$', ';', '|', '&', '<', '>', '(', ')', '\\', '\''];

/// `^[a-z_][a-z0-9_.-]*[$]?$`, at most 32 characters.
pub fn validate_user_name(name: &str) -> Result<(), ValidationError> {
    let refuse = || ValidationError::UserName(name.to_owned());
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(refuse());
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return Err(refuse()),
    }
    if chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// `[A-Za-z0-9_.-]+`, not starting with `-` or `.`, at most 128 characters.
pub fn validate_session_id(session_id: &str) -> Result<(), ValidationError> {
    let refuse = || ValidationError::SessionId(session_id.to_owned());
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_LEN {
        return Err(refuse());
    }
    if session_id.starts_with(['-', '.']) {
        return Err(refuse());
    }
    if session_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// One authorized_keys line: `[options ]<type> <base64>[ comment]`.
///
/// The type must be one of [`KEY_TYPES`], the body only base64 characters, the options (if
/// any) a run of non-blank characters in which double quotes may enclose blanks, and nothing
/// may contain control characters or [`SHELL_METACHARACTERS`].
pub fn validate_key_line(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::Key("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ValidationError::Key("longer than 16 KiB"));
    }
    if key.contains(['\n', '\r']) {
        return Err(ValidationError::Key("must be a single line"));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(ValidationError::Key("contains control characters"));
    }
    if key.contains(SHELL_METACHARACTERS) {
        return Err(ValidationError::Key("contains shell metacharacters"));
    }
    if key.starts_with([' ', '\t']) || key.ends_with([' ', '\t']) {
        return Err(ValidationError::Key("leading or trailing blanks"));
    }
    let rest = match first_token(key) {
        (token, rest) if is_key_type(token) => rest,
        _ => {
            let rest = skip_options(key)?;
            let (token, after) = first_token(rest);
            if !is_key_type(token) {
                return Err(ValidationError::Key("unknown key type"));
            }
            after
        }
    };
    let (body, comment) = first_token(rest);
    if body.is_empty() {
        return Err(ValidationError::Key("missing key data"));
    }
    if !is_base64(body) {
        return Err(ValidationError::Key("key data is not base64"));
    }
    if comment.contains('"') {
        return Err(ValidationError::Key("quote in comment"));
    }
    Ok(())
}

/// Validates the key-file path *after* `%` substitution: not empty, no NUL, no line breaks
/// or other control characters, no `..` component.
pub fn validate_key_file_path(path: &str) -> Result<(), ValidationError> {
    let refuse = |reason| ValidationError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(refuse("empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(refuse("too long"));
    }
    if path.contains('\0') {
        return Err(refuse("contains NUL"));
    }
    if path.contains(['\n', '\r']) {
        return Err(refuse("contains a line break"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(refuse("contains control characters"));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(refuse("contains a .. component"));
    }
    if path.ends_with('/') {
        return Err(refuse("names a directory"));
    }
    Ok(())
}

fn is_key_type(token: &str) -> bool {
    KEY_TYPES.contains(&token)
}

fn is_base64(body: &str) -> bool {
    let data = body.trim_end_matches('=');
    body.len() - data.len() <= 2
        && !data.is_empty()
        && data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

/// Splits off the first blank-separated token; the rest starts after the blanks.
fn first_token(text: &str) -> (&str, &str) {
    match text.find([' ', '\t']) {
        Some(end) => (&text[..end], text[end..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    }
}

/// Skips an options field (`opt,opt="a b",...`) and the blanks after it.
fn skip_options(text: &str) -> Result<&str, ValidationError> {
    let mut in_quotes = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                return Ok(text[index..].trim_start_matches([' ', '\t']));
            }
            _ => {}
        }
    }
    if in_quotes {
        Err(ValidationError::Key("unbalanced quotes in options"))
    } else {
        Err(ValidationError::Key("unknown key type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        let table = [
            ("maja", true),
            ("x2gotest", true),
            ("no-such-user", true),
            ("_svc", true),
            ("host$", true),
            ("a.b-c_d", true),
            ("abcdefghijklmnopqrstuvwxyz012345", true),
            ("abcdefghijklmnopqrstuvwxyz0123456", false),
            ("", false),
            ("Maja", false),
            ("1abc", false),
            ("-abc", false),
            ("../etc", false),
            ("a/b", false),
            ("a b", false),
            ("a;id", false),
            ("$(id)", false),
            ("a\nb", false),
            ("a$b", false),
            ("a`id`", false),
        ];
        for (name, ok) in table {
            assert_eq!(validate_user_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn session_ids() {
        let table = [
            ("maja-51-1700000001_stDKDE_dp24", true),
            ("x2gobob-52-1795879591_stRxterm_dp24", true),
            ("a.b", true),
            ("", false),
            ("-rf", false),
            ("..", false),
            ("../x", false),
            ("a/b", false),
            ("a b", false),
            ("a;b", false),
            ("a\nb", false),
            ("$(id)", false),
        ];
        for (sid, ok) in table {
            assert_eq!(validate_session_id(sid).is_ok(), ok, "{sid:?}");
        }
        assert!(validate_session_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn key_lines() {
        let table = [
            (
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCgolden maja@127.0.0.1",
                true,
            ),
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOabc+/= user@host",
                true,
            ),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOabc", true),
            ("ecdsa-sha2-nistp521 AAAAE2VjZHNh", true),
            ("sk-ssh-ed25519@openssh.com AAAAGnNr", true),
            (
                "no-pty,from=\"10.0.0.1,*.example.com\" ssh-rsa AAAAB3Nza c",
                true,
            ),
            ("command=\"echo hi there\" ssh-rsa AAAAB3Nza", true),
            ("", false),
            ("ssh-rsa", false),
            ("ssh-foo AAAAB3Nza", false),
            ("ssh-rsa AAAA!B3Nza", false),
            ("ssh-rsa AAAA===", false),
            ("ssh-rsa AAAAB3Nza\nssh-rsa AAAAB3Nza", false),
            ("ssh-rsa AAAAB3Nza c\r", false),
            ("ssh-rsa AAAAB3Nza $(id)", false),
            ("ssh-rsa AAAAB3Nza `id`", false),
            ("ssh-rsa AAAAB3Nza a;b", false),
            ("ssh-rsa AAAAB3Nza a|b", false),
            ("ssh-rsa AAAAB3Nza x'y", false),
            ("ssh-rsa AAAAB3Nza x\"y", false),
            (" ssh-rsa AAAAB3Nza", false),
            ("command=\"unbalanced ssh-rsa AAAAB3Nza", false),
            ("ssh-rsa AAAAB3Nza c\0", false),
        ];
        for (key, ok) in table {
            assert_eq!(validate_key_line(key).is_ok(), ok, "{key:?}");
        }
    }

    #[test]
    fn key_file_paths() {
        let table = [
            ("/home/maja/.x2go/authorized_keys", true),
            ("relative-dir/keys", true),
            ("/home/x2gotest/keys-x2gotest-1003-1004-%-%u.txt", true),
            ("", false),
            ("/home/maja/../root/.ssh/authorized_keys", false),
            ("../x", false),
            ("a/..", false),
            ("/tmp/a\nb", false),
            ("/tmp/a\0b", false),
            ("/tmp/dir/", false),
        ];
        for (path, ok) in table {
            assert_eq!(validate_key_file_path(path).is_ok(), ok, "{path:?}");
        }
    }
}
