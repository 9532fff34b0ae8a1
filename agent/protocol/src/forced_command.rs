//! The agent's reading of `SSH_ORIGINAL_COMMAND` (the broker's exec string), without a shell.
//!
//! The reference runs the forced command's original text through `/bin/sh` (spec §9.1,
//! §16 S2). We only *split* it into words: blanks separate words, single and double quotes
//! group (no escapes, no expansions), and any character a shell would interpret is refused.
//! Like the reference, everything from the first `;` on is dropped (it is never run), and
//! `sh -c '<agent> …'` — what the broker sends — is unwrapped.

/// Characters refused anywhere in the command (after the `;` cut), but a `$` that ends a word.
pub const REFUSED_CHARACTERS: &[char] = &[
    '$', '`', '\\', '|', '&', '<', '>', '(', ')', '{', '}', '*', '?', '[', ']', '~', '!', '#',
    '\n', '\r', '\0',
];

/// Why a forced command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForcedCommandError {
    #[error("shell metacharacter {0:?} is not allowed")]
    Metacharacter(char),
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("the command does not run /usr/…/x2go/x2gobroker-agent")]
    NotTheAgent,
}

/// Whether the reference would treat the variable as an agent call:
/// `m/.*\/usr\/.*\/x2go\/x2gobroker-agent\ .*/`.
pub fn names_agent(command: &str) -> bool {
    let Some(usr) = command.find("/usr/") else {
        return false;
    };
    command[usr + "/usr/".len()..].contains("/x2go/x2gobroker-agent ")
}

/// Parses the forced command into the agent's arguments (user, task, …), the agent path
/// itself removed.
pub fn parse_forced_command(command: &str) -> Result<Vec<String>, ForcedCommandError> {
    let before_semicolon = command.split(';').next().unwrap_or_default();
    if let Some(bad) = first_refused_character(before_semicolon) {
        return Err(ForcedCommandError::Metacharacter(bad));
    }
    let mut words = split_words(before_semicolon)?;
    if words.len() == 3 && matches!(words[0].as_str(), "sh" | "/bin/sh") && words[1] == "-c" {
        words = split_words(&words[2])?;
    }
    match words.first() {
        Some(program) if is_agent_path(program) => Ok(words[1..].to_vec()),
        _ => Err(ForcedCommandError::NotTheAgent),
    }
}

/// The first of [`REFUSED_CHARACTERS`] in the text, but a `$` that ends a word (followed by a
/// blank or the end): that is how a machine-account name (`host$`, allowed by
/// [`crate::arguments::check_user_name`]) arrives, and no shell expands it.
fn first_refused_character(text: &str) -> Option<char> {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let ends_word = matches!(chars.peek(), None | Some(' ' | '\t'));
        if REFUSED_CHARACTERS.contains(&c) && !(c == '$' && ends_word) {
            return Some(c);
        }
    }
    None
}

/// `/usr/<something>/x2go/x2gobroker-agent`.
fn is_agent_path(program: &str) -> bool {
    program
        .strip_prefix("/usr/")
        .and_then(|rest| rest.strip_suffix("/x2go/x2gobroker-agent"))
        .is_some_and(|middle| {
            !middle.is_empty() && !middle.split('/').any(|part| part == ".." || part == ".")
        })
}

/// Splits on blanks; `'…'` and `"…"` group literally and may be adjacent to other text.
pub fn split_words(text: &str) -> Result<Vec<String>, ForcedCommandError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                let mut closed = false;
                for inner in chars.by_ref() {
                    if inner == c {
                        closed = true;
                        break;
                    }
                    current.push(inner);
                }
                if !closed {
                    return Err(ForcedCommandError::UnterminatedQuote(if c == '\'' {
                        "single"
                    } else {
                        "double"
                    }));
                }
            }
            _ => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn recognises_agent_commands_like_the_reference() {
        let table = [
            ("sh -c '/usr/lib/x2go/x2gobroker-agent x2gotest ping'", true),
            (
                "/usr/lib/x2go/x2gobroker-agent x2gotest ping; echo INJECTED",
                true,
            ),
            ("/usr/local/lib/x2go/x2gobroker-agent u t", true),
            ("/usr/lib/x2go/x2gobroker-agent", false),
            ("/usr/x2go/x2gobroker-agent u t", false),
            ("ls /", false),
            ("", false),
        ];
        for (command, expected) in table {
            assert_eq!(names_agent(command), expected, "{command:?}");
        }
    }

    #[test]
    fn parses_broker_commands() {
        let table: [(&str, Result<Vec<String>, ForcedCommandError>); 9] = [
            ("sh -c '/usr/lib/x2go/x2gobroker-agent x2gotest ping'", Ok(strings(&["x2gotest", "ping"]))),
            ("/usr/lib/x2go/x2gobroker-agent x2gotest ping; echo INJECTED", Ok(strings(&["x2gotest", "ping"]))),
            (
                "sh -c '/usr/lib/x2go/x2gobroker-agent maja addauthkey \"ssh-rsa AAAA maja@h\" \"%h/.x2go/authorized_keys\"'",
                Ok(strings(&["maja", "addauthkey", "ssh-rsa AAAA maja@h", "%h/.x2go/authorized_keys"])),
            ),
            (
                "sh -c '/usr/lib/x2go/x2gobroker-agent $(echo x2gotest) availabletasks'",
                Err(ForcedCommandError::Metacharacter('$')),
            ),
            ("/usr/lib/x2go/x2gobroker-agent `id` ping", Err(ForcedCommandError::Metacharacter('`'))),
            ("/usr/lib/x2go/x2gobroker-agent u ping | tee /tmp/x", Err(ForcedCommandError::Metacharacter('|'))),
            ("/usr/lib/x2go/x2gobroker-agent u ping > /tmp/x", Err(ForcedCommandError::Metacharacter('>'))),
            ("sh -c '/usr/lib/x2go/x2gobroker-agent u ping", Err(ForcedCommandError::UnterminatedQuote("single"))),
            ("/tmp/usr/x2go/x2gobroker-agent u ping", Err(ForcedCommandError::NotTheAgent)),
        ];
        for (command, expected) in table {
            assert_eq!(parse_forced_command(command), expected, "{command:?}");
        }
        assert_eq!(
            parse_forced_command("sh -c '/usr/lib/x2go/x2gobroker-agent host$ listsessions'"),
            Ok(strings(&["host$", "listsessions"]))
        );
        let dollars: [(&str, Result<Vec<String>, ForcedCommandError>); 4] = [
            (
                "/usr/lib/x2go/x2gobroker-agent host$x ping",
                Err(ForcedCommandError::Metacharacter('$')),
            ),
            (
                "/usr/lib/x2go/x2gobroker-agent $HOME ping",
                Err(ForcedCommandError::Metacharacter('$')),
            ),
            (
                "sh -c '/usr/lib/x2go/x2gobroker-agent u ping $'",
                Err(ForcedCommandError::Metacharacter('$')),
            ),
            (
                "/usr/lib/x2go/x2gobroker-agent u ping $",
                Ok(strings(&["u", "ping", "$"])),
            ),
        ];
        for (command, expected) in dollars {
            assert_eq!(parse_forced_command(command), expected, "{command:?}");
        }
        assert_eq!(
            parse_forced_command("/usr/../tmp/x2go/x2gobroker-agent u ping"),
            Err(ForcedCommandError::NotTheAgent)
        );
        assert_eq!(
            parse_forced_command("bash -c '/usr/lib/x2go/x2gobroker-agent u ping'"),
            Err(ForcedCommandError::NotTheAgent)
        );
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            split_words("a  'b c'\"d\" e").unwrap(),
            strings(&["a", "b cd", "e"])
        );
        assert_eq!(split_words("''").unwrap(), strings(&[""]));
        assert_eq!(split_words("   ").unwrap(), Vec::<String>::new());
        assert!(split_words("\"open").is_err());
    }
}
