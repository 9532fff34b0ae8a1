//! What the legacy agent protocol accepts as user name, session id, public-key line, key-file
//! path and agent path: one function each, used by the broker (before a command is built) and
//! by the agent (its command line and its gRPC service, before anything runs).
//!
//! Every accepted value is drawn from a character set without quotes, blanks other than
//! single spaces inside a key line, and shell metacharacters, so a command string built from
//! them means the same to the `sh -c` on the server, to the Perl agent's second pass through
//! `/bin/sh` and to our agent's word splitting ([`crate::forced_command`]) (fix of §16 S2).

use thiserror::Error;

/// Why a value was refused. Messages are lower case, without trailing period; values are
/// shown `{:?}`-escaped, so a hostile value cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgumentError {
    #[error("invalid user name {0:?}: must match ^[A-Za-z0-9_][A-Za-z0-9_.@+-]*[$]?$ and have at most 255 characters")]
    UserName(String),
    #[error("invalid session id {0:?}: only A-Z a-z 0-9 _ . - @ are allowed, at most 128 characters, not starting with . or -")]
    SessionId(String),
    #[error("invalid public key: {0}")]
    Key(&'static str),
    #[error("invalid public key: option {0:?} is not one the broker writes (allowed: no-pty, no-X11-forwarding, no-user-rc, no-port-forwarding, no-agent-forwarding)")]
    KeyOption(String),
    #[error("invalid key file path {path:?}: {reason}")]
    KeyFile { path: String, reason: &'static str },
    #[error("invalid agent command {path:?}: {reason}")]
    AgentCommand { path: String, reason: &'static str },
}

/// Longest accepted user name (sssd's fully qualified names are long; issue 11 item 7).
pub const MAX_USER_NAME_LEN: usize = 255;
/// Longest accepted session id (real ids are about 40 characters).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// Longest accepted public-key line (an RSA-16384 key is about 2.8 KiB).
pub const MAX_KEY_LEN: usize = 16 * 1024;
/// Longest accepted key-file path and agent path (PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;

/// The OpenSSH public-key types (`ssh-keygen -t`, `sshkey.c`), as the type field of an
/// authorized_keys line. Certificates and the experimental `ssh-xmss@openssh.com` are not
/// accepted; `ssh-ed448` is not an OpenSSH key type at all.
pub const KEY_TYPES: [&str; 8] = [
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];

/// The authorized_keys options a key line may carry: those the broker itself writes
/// (`farm/autologin.rs` writes `no-X11-forwarding,no-user-rc`, the reference
/// `no-X11-forwarding,no-pty,no-user-rc`) and the other restricting `no-` options. Never
/// `command=`, `environment=`, `from=`, `permitopen=`, `tunnel=` or anything else.
pub const KEY_OPTIONS: [&str; 5] = [
    "no-pty",
    "no-X11-forwarding",
    "no-user-rc",
    "no-port-forwarding",
    "no-agent-forwarding",
];

/// Characters of a key line besides ASCII letters and digits: the base64 alphabet (`+ / =`),
/// option lists (`, -`), comments such as `jdoe@uni.example@fe80::1` (`@ . _ :`) and the
/// single spaces between the fields. No quote, no shell metacharacter.
const KEY_LINE_PUNCTUATION: &str = " +/=@._:,-";

/// Characters of a key-file path besides ASCII letters and digits: `%` for the agent's
/// `%u %U %G %h %%`, and the characters of user names.
const KEY_FILE_PUNCTUATION: &str = "%/._@+-";

/// `^[A-Za-z0-9_][A-Za-z0-9_.@+-]*[$]?$`, at most 255 characters: POSIX names, directory
/// names such as `jdoe@uni.example` or `JDoe`, Samba machine accounts (`host$`). Refused:
/// winbind's `DOM\user` (`\`), blanks, `/`, a leading `.`, `-` or `@`, everything else.
pub fn check_user_name(name: &str) -> Result<(), ArgumentError> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let fine = name.len() <= MAX_USER_NAME_LEN
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.@+-".contains(c));
    if fine {
        Ok(())
    } else {
        Err(ArgumentError::UserName(name.to_owned()))
    }
}

/// X2Go session ids (`maja-51-1700000001_stDKDE_dp24`, `jdoe@uni.example-50-…`): letters,
/// digits, `_ . - @` — exactly what `x2gostartagent` keeps of a session name — at most 128
/// characters, not starting with `.` or `-`.
pub fn check_session_id(session_id: &str) -> Result<(), ArgumentError> {
    let fine = !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID_LEN
        && !session_id.starts_with(['.', '-'])
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
    if fine {
        Ok(())
    } else {
        Err(ArgumentError::SessionId(session_id.to_owned()))
    }
}

/// One authorized_keys line `[options ]<type> <base64>[ comment]`, fields separated by single
/// spaces: options a comma-separated list of [`KEY_OPTIONS`], the type one of [`KEY_TYPES`],
/// the key data base64, the comment words of letters, digits and `+ / = @ . _ : , -`; at most
/// 16 KiB on one line.
pub fn check_key_line(key: &str) -> Result<(), ArgumentError> {
    if key.is_empty() {
        return Err(ArgumentError::Key("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ArgumentError::Key("longer than 16 KiB"));
    }
    if key.contains(['\n', '\r']) {
        return Err(ArgumentError::Key("must be a single line"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || KEY_LINE_PUNCTUATION.contains(c))
    {
        return Err(ArgumentError::Key(
            "characters other than A-Z a-z 0-9 and space + / = @ . _ : , - (no quotes, tabs, control or shell metacharacters)",
        ));
    }
    let words: Vec<&str> = key.split(' ').collect();
    if words.iter().any(|word| word.is_empty()) {
        return Err(ArgumentError::Key(
            "fields must be separated by single spaces",
        ));
    }
    let is_type = |word: Option<&&str>| word.is_some_and(|word| KEY_TYPES.contains(word));
    let typed_fields = if is_type(words.first()) {
        &words[..]
    } else if is_type(words.get(1)) {
        for option in words[0].split(',') {
            if !KEY_OPTIONS.contains(&option) {
                return Err(ArgumentError::KeyOption(option.to_owned()));
            }
        }
        &words[1..]
    } else {
        return Err(ArgumentError::Key("unknown key type"));
    };
    match typed_fields.get(1) {
        None => Err(ArgumentError::Key("missing key data")),
        Some(body) if !is_base64(body) => Err(ArgumentError::Key("key data is not base64")),
        Some(_) => Ok(()),
    }
}

/// The length rule of every path argument: not empty, at most [`MAX_PATH_LEN`] bytes.
fn length(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("empty")
    } else if path.len() > MAX_PATH_LEN {
        Some("too long")
    } else {
        None
    }
}

/// The key-file rules both forms share: no `..` component, not naming a directory.
fn traversal(path: &str) -> Option<&'static str> {
    if path.split('/').any(|part| part == "..") {
        Some("contains a .. component")
    } else if path.ends_with('/') {
        Some("names a directory")
    } else {
        None
    }
}

/// A key-file path as it travels (the template, before the agent's `%` substitution):
/// letters, digits and `% / . _ @ + -`, not starting with `-`, no `..` component, not naming
/// a directory, at most 4096 characters (`%h/.x2go/authorized_keys`).
pub fn check_key_file(path: &str) -> Result<(), ArgumentError> {
    let refuse = |reason| {
        Err(ArgumentError::KeyFile {
            path: path.to_owned(),
            reason,
        })
    };
    if let Some(reason) = length(path) {
        return refuse(reason);
    }
    if path.starts_with('-') {
        return refuse("starts with -");
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || KEY_FILE_PUNCTUATION.contains(c))
    {
        return refuse("characters other than A-Z a-z 0-9 % / . _ @ + -");
    }
    match traversal(path) {
        Some(reason) => refuse(reason),
        None => Ok(()),
    }
}

/// A key-file path after the agent's `%` substitution (the home directory comes from the
/// passwd database and may hold any character but these): not empty, no NUL, line break or
/// other control character, no `..` component, not naming a directory, at most 4096 bytes.
pub fn check_resolved_key_file(path: &str) -> Result<(), ArgumentError> {
    let refuse = |reason| {
        Err(ArgumentError::KeyFile {
            path: path.to_owned(),
            reason,
        })
    };
    if let Some(reason) = length(path) {
        return refuse(reason);
    }
    if path.contains('\0') {
        return refuse("contains NUL");
    }
    if path.contains(['\n', '\r']) {
        return refuse("contains a line break");
    }
    if path.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    match traversal(path) {
        Some(reason) => refuse(reason),
        None => Ok(()),
    }
}

/// The agent program the broker runs (`agent-command`): an absolute path of letters, digits
/// and `/ . _ -`, no `..` component, at most 4096 characters.
pub fn check_agent_command(path: &str) -> Result<(), ArgumentError> {
    let refuse = |reason| {
        Err(ArgumentError::AgentCommand {
            path: path.to_owned(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return refuse("not an absolute path");
    }
    if path.len() > MAX_PATH_LEN {
        return refuse("too long");
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        return refuse("characters other than A-Z a-z 0-9 / . _ -");
    }
    if path.split('/').any(|part| part == "..") {
        return refuse("contains a .. component");
    }
    Ok(())
}

/// Base64 key data: the alphabet, at most two `=` of padding at the end.
fn is_base64(body: &str) -> bool {
    let data = body.trim_end_matches('=');
    body.len() - data.len() <= 2
        && !data.is_empty()
        && data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters that mean something to a POSIX shell (or end the broker's double quotes).
    const SHELL_SIGNIFICANT: &str = "`$;|&<>()\\'\"*?[]~!#{}\n\r\t";

    fn assert_shell_inert(value: &str) {
        assert!(
            !value.chars().any(|c| SHELL_SIGNIFICANT.contains(c)),
            "{value:?} was accepted but has a shell-significant character"
        );
    }

    /// Every case on which the broker (`farm/agentcmd.rs`) and the agent (`validate.rs`)
    /// disagreed before this crate, or on which both refused what issue 11 item 7 accepts,
    /// with the one verdict now. (value, old broker verdict, old agent verdict, verdict now)
    #[test]
    fn cases_that_used_to_differ() {
        enum Kind {
            User,
            SessionId,
            Key,
        }
        use Kind::*;
        let long_name = format!("a{}", "b".repeat(254));
        let too_long_name = format!("a{}", "b".repeat(255));
        let table: Vec<(Kind, &str, bool, bool, bool)> = vec![
            // session ids: `@` (ids embed directory user names), a leading `.`
            (
                SessionId,
                "jdoe@uni.example-50-1700000000_stDKDE_dp24",
                true,
                false,
                true,
            ),
            (SessionId, "a@b", true, false, true),
            (SessionId, ".hidden", true, false, false),
            (SessionId, "..", true, false, false),
            (SessionId, ".a@b", true, false, false),
            // key types: ssh-ed448 is not an OpenSSH type
            (Key, "ssh-ed448 AAAAB3Nza maja@c", true, false, false),
            // key options: only those the broker writes
            (Key, "command=\"id\" ssh-rsa AAAAB3Nza", false, true, false),
            (
                Key,
                "command=\"echo hi there\" ssh-rsa AAAAB3Nza",
                false,
                true,
                false,
            ),
            (
                Key,
                "environment=\"LD_PRELOAD=/tmp/x.so\" ssh-rsa AAAAB3Nza",
                false,
                true,
                false,
            ),
            (
                Key,
                "from=\"10.0.0.1,*.example.com\" ssh-rsa AAAAB3Nza c",
                false,
                true,
                false,
            ),
            (
                Key,
                "no-pty,from=\"10.0.0.1\" ssh-rsa AAAAB3Nza c",
                false,
                true,
                false,
            ),
            (Key, "from=10.0.0.1 ssh-rsa AAAAB3Nza c", true, true, false),
            (
                Key,
                "permitopen=host:22 ssh-rsa AAAAB3Nza c",
                true,
                true,
                false,
            ),
            (Key, "tunnel=0 ssh-rsa AAAAB3Nza c", true, true, false),
            (Key, "cert-authority ssh-rsa AAAAB3Nza c", true, true, false),
            (Key, "restrict ssh-rsa AAAAB3Nza c", true, true, false),
            (Key, "no-pty ssh-rsa AAAAB3Nza c", true, true, true),
            (
                Key,
                "no-X11-forwarding,no-pty,no-user-rc ssh-rsa AAAAB3 maja@10.0.0.5",
                true,
                true,
                true,
            ),
            (
                Key,
                "no-port-forwarding,no-agent-forwarding ssh-ed25519 AAAAC3Nz c",
                true,
                true,
                true,
            ),
            // key data and comments: the broker took any text as base64, the agent any comment
            (Key, "ssh-rsa AAAA!B3Nza", false, false, false),
            (Key, "ssh-rsa AAAA=== c", true, false, false),
            (Key, "ssh-rsa AAAAB3Nza José@laptop", false, true, false),
            (Key, "ssh-rsa AAAAB3Nza a#b", false, true, false),
            (Key, "ssh-rsa AAAAB3Nza a*b", false, true, false),
            (Key, "ssh-rsa  AAAAB3Nza c", false, true, false),
            (
                Key,
                "ssh-rsa AAAAB3Nza jdoe@uni.example@fe80::1",
                true,
                true,
                true,
            ),
            // user names: upper case and `@` (directory users), `\` (winbind) and length
            (User, "JDoe", false, false, true),
            (User, "Maja", false, false, true),
            (User, "jdoe@uni.example", false, false, true),
            (User, "j.doe+x2go@uni.example", false, false, true),
            (User, "1abc", false, false, true),
            (User, "HOST$", false, false, true),
            (User, "DOM\\user", false, false, false),
            (User, "@jdoe", false, false, false),
            (User, long_name.as_str(), false, false, true),
            (User, too_long_name.as_str(), false, false, false),
        ];
        for (kind, value, _broker_before, _agent_before, now) in table {
            let (what, verdict, inert_part) = match kind {
                // `$` only as the last character, where no shell expands it
                User => (
                    "user name",
                    check_user_name(value),
                    value.trim_end_matches('$'),
                ),
                SessionId => ("session id", check_session_id(value), value),
                Key => ("key line", check_key_line(value), value),
            };
            assert_eq!(verdict.is_ok(), now, "{what} {value:?}: {verdict:?}");
            if now {
                assert_shell_inert(inert_part);
            }
        }
    }

    #[test]
    fn user_names() {
        let table = [
            ("maja", true),
            ("x2gotest", true),
            ("no-such-user", true),
            ("nosuchuser-xyz", true),
            ("foo", true),
            ("_svc", true),
            ("host$", true),
            ("a.b-c_d", true),
            ("abcdefghijklmnopqrstuvwxyz0123456", true),
            ("", false),
            ("$", false),
            ("-abc", false),
            (".abc", false),
            ("+abc", false),
            ("../etc", false),
            ("a/b", false),
            ("a b", false),
            ("a\tb", false),
            ("a;id", false),
            ("$(id)", false),
            ("x'$(id)'", false),
            ("a\nb", false),
            ("a$b", false),
            ("a$$", false),
            ("a`id`", false),
            ("a\"b", false),
            ("jdöe", false),
        ];
        for (name, ok) in table {
            assert_eq!(check_user_name(name).is_ok(), ok, "{name:?}");
            if ok {
                // `$` only as the last character, where no shell expands it
                assert_shell_inert(name.trim_end_matches('$'));
            }
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
            ("../x", false),
            ("a/b", false),
            ("a b", false),
            ("a;b", false),
            ("a'b", false),
            ("a\"b", false),
            ("a\nb", false),
            ("$(id)", false),
            ("a+b", false),
        ];
        for (session_id, ok) in table {
            assert_eq!(check_session_id(session_id).is_ok(), ok, "{session_id:?}");
        }
        assert!(check_session_id(&"a".repeat(128)).is_ok());
        assert!(check_session_id(&"a".repeat(129)).is_err());
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
            ("sk-ecdsa-sha2-nistp256@openssh.com AAAAInNr x", true),
            ("ssh-rsa AAAAB3Nza two words", true),
            (
                "no-X11-forwarding,no-user-rc ssh-rsa AAAAB3Nza maja@::1",
                true,
            ),
            ("", false),
            ("ssh-rsa", false),
            ("no-pty ssh-rsa", false),
            ("ssh-foo AAAAB3Nza", false),
            ("no-pty ssh-foo AAAAB3Nza", false),
            ("no-pty,,no-user-rc ssh-rsa AAAAB3Nza", false),
            ("NO-PTY ssh-rsa AAAAB3Nza", false),
            ("no-pty no-user-rc ssh-rsa AAAAB3Nza", false),
            ("ssh-rsa AAAA===", false),
            ("ssh-rsa AAAAB3Nza\nssh-rsa AAAAB3Nza", false),
            ("ssh-rsa AAAAB3Nza c\r", false),
            ("ssh-rsa AAAAB3Nza\tc", false),
            ("ssh-rsa AAAAB3Nza $(id)", false),
            ("ssh-rsa AAAAB3Nza `id`", false),
            ("ssh-rsa AAAAB3Nza a;b", false),
            ("ssh-rsa AAAAB3Nza a|b", false),
            ("ssh-rsa AAAAB3Nza x'y", false),
            ("ssh-rsa AAAAB3Nza x\"y", false),
            ("ssh-rsa AAAAB3Nza machine$@10.0.0.5", false),
            (" ssh-rsa AAAAB3Nza", false),
            ("ssh-rsa AAAAB3Nza ", false),
            ("ssh-rsa AAAAB3Nza c\0", false),
            ("../../etc/passwd", false),
        ];
        for (key, ok) in table {
            let verdict = check_key_line(key);
            assert_eq!(verdict.is_ok(), ok, "{key:?}: {verdict:?}");
            if ok {
                assert_shell_inert(key);
            }
        }
        assert!(check_key_line(&format!("ssh-rsa {}", "A".repeat(MAX_KEY_LEN))).is_err());
        assert_eq!(
            check_key_line("from=10.0.0.1 ssh-rsa AAAAB3Nza c"),
            Err(ArgumentError::KeyOption("from=10.0.0.1".into()))
        );
    }

    #[test]
    fn key_file_templates() {
        let table = [
            ("%h/.x2go/authorized_keys", true),
            ("/home/x2gotest/keys-%u-%U-%G-%%-%u.txt", true),
            ("relative-dir/keys", true),
            ("/home/jdoe@uni.example/.x2go/authorized_keys", true),
            ("", false),
            ("-x", false),
            ("%h/../../etc/passwd", false),
            ("%h/.x2go/../../x2gobob/keys", false),
            ("../x", false),
            ("a/..", false),
            ("/tmp/x;id", false),
            ("/tmp/`id`", false),
            ("/tmp/$(id)", false),
            ("/tmp/a b", false),
            ("/tmp/a\nb", false),
            ("/tmp/a\0b", false),
            ("/tmp/dir/", false),
            ("~/.ssh/authorized_keys", false),
        ];
        for (path, ok) in table {
            assert_eq!(check_key_file(path).is_ok(), ok, "{path:?}");
            if ok {
                assert_shell_inert(path);
            }
        }
        assert!(check_key_file(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn resolved_key_file_paths() {
        let table = [
            ("/home/maja/.x2go/authorized_keys", true),
            ("/home/Dom Users/jdoe/.x2go/authorized_keys", true),
            ("/home/x2gotest/keys-x2gotest-1003-1004-%-%u.txt", true),
            ("", false),
            ("/home/maja/../root/.ssh/authorized_keys", false),
            ("/tmp/a\nb", false),
            ("/tmp/a\0b", false),
            ("/tmp/a\u{1b}b", false),
            ("/tmp/dir/", false),
        ];
        for (path, ok) in table {
            assert_eq!(check_resolved_key_file(path).is_ok(), ok, "{path:?}");
        }
    }

    #[test]
    fn agent_commands() {
        let table = [
            ("/usr/lib/x2go/x2gobroker-agent", true),
            ("/work/target/debug/x2gobroker-agent", true),
            ("x2gobroker-agent", false),
            ("/usr/lib/x2go/agent;id", false),
            ("/usr/lib/x2go agent", false),
            ("/usr/lib/../../tmp/agent", false),
        ];
        for (path, ok) in table {
            assert_eq!(check_agent_command(path).is_ok(), ok, "{path:?}");
        }
    }

    #[test]
    fn messages_name_the_value_escaped() {
        assert_eq!(
            check_user_name("a\nb").unwrap_err().to_string(),
            "invalid user name \"a\\nb\": must match ^[A-Za-z0-9_][A-Za-z0-9_.@+-]*[$]?$ and have at most 255 characters"
        );
        assert!(check_session_id("-rf")
            .unwrap_err()
            .to_string()
            .starts_with("invalid session id \"-rf\""));
        assert!(check_key_line("x")
            .unwrap_err()
            .to_string()
            .starts_with("invalid public key: "));
        assert!(check_key_file("../x")
            .unwrap_err()
            .to_string()
            .starts_with("invalid key file path \"../x\""));
    }
}
