//! The legacy agent's reading of its invocation (`legacy_arguments`: argv or `SSH_ORIGINAL_COMMAND`, §9.1) and the task grammar, with the broker's command builders read back.
//!
//! Input: `SSH_ORIGINAL_COMMAND` (absent when empty), then the argv words, NUL-separated (any
//! bytes: argv need not be UTF-8).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use x2gobroker_agent::legacy::{legacy_arguments, LegacyRequest};
use x2gobroker_agent_protocol::forced_command::REFUSED_CHARACTERS;
use x2gobroker_agent_protocol::{
    check_user_name, local_argv, names_agent, parse_forced_command, ssh_command, Task, TaskName,
    DEFAULT_AGENT_COMMAND,
};

/// Reads the invocation like the agent, and what the broker would send for its task back.
pub fn legacy_command(data: &[u8]) {
    let mut parts = data.split(|byte| *byte == 0);
    let command = parts.next().unwrap_or_default();
    let request = LegacyRequest {
        args: parts
            .map(|part| OsString::from_vec(part.to_vec()))
            .collect(),
        ssh_original_command: (!command.is_empty()).then(|| OsString::from_vec(command.to_vec())),
        sudo_user: None,
    };
    let command = String::from_utf8_lossy(command);
    let forced = parse_forced_command(&command);
    if let Ok(words) = &forced {
        for word in words {
            assert!(
                !word
                    .chars()
                    .any(|c| REFUSED_CHARACTERS.contains(&c) && c != '$'),
                "refused character passed in {word:?}"
            );
        }
    }
    let Ok(args) = legacy_arguments(&request) else {
        return;
    };
    if names_agent(&command) {
        assert_eq!(Ok(&args), forced.as_ref());
    } else {
        let argv: Vec<String> = request
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, argv);
    }
    let [user, word, rest @ ..] = args.as_slice() else {
        return;
    };
    if check_user_name(user).is_err() {
        return;
    }
    let Some(name) = TaskName::from_word(word) else {
        return;
    };
    assert_eq!(name.word(), word);
    let Ok(task) = Task::from_arguments(name, rest) else {
        return;
    };
    assert_eq!(task.task_name(), name);
    if task.validate().is_err() {
        return;
    }
    // The agent accepted it: the broker can send it, and the agent reads it back unchanged.
    let mut expected = vec![user.clone(), task.word().to_string()];
    expected.extend(task.arguments().into_iter().map(str::to_owned));
    let sent = ssh_command(DEFAULT_AGENT_COMMAND, user, &task).expect("the broker can send it");
    assert!(names_agent(&sent), "{sent:?} does not name the agent");
    assert_eq!(
        parse_forced_command(&sent).as_ref(),
        Ok(&expected),
        "{sent:?}"
    );
    let argv = local_argv(DEFAULT_AGENT_COMMAND, user, &task).expect("the broker can run it");
    assert_eq!(argv[0], DEFAULT_AGENT_COMMAND);
    assert_eq!(argv[1..], expected[..]);
    assert_eq!(Task::from_arguments(name, &expected[2..]), Ok(task));
}
