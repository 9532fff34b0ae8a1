//! The legacy command-line agent, `x2gobroker-agent <user> <task> [args…]` (spec §9.1):
//! same tasks, same output lines ("OK" first) and the reference's die messages where the
//! golden vectors show them. The whole outcome is computed as data ([`LegacyOutput`]) so the
//! binary only prints it and tests can inspect it.
//!
//! The task grammar, the argument rules and the reading of `SSH_ORIGINAL_COMMAND` are the
//! protocol crate's (`x2gobroker_agent_protocol`), the same the broker builds its commands with.
//!
//! Deliberate differences (docs/COMPATIBILITY.md): `SSH_ORIGINAL_COMMAND` is split into
//! words without a shell and refused when it contains shell metacharacters; user names,
//! session ids, keys and key-file paths are validated before anything runs; key files are
//! edited in Rust (see [`crate::authkeys`]); findbusyservers counts sessions itself when the
//! sqlite `x2gogetservers` prints none, instead of dying on a division by zero; every outcome
//! without the `OK` line exits non-zero (the reference exits 0 with no output for an unknown
//! task or a missing X2Go tool), so a caller may trust the exit status alone.
//!
//! Privileges: the binary's setuid start ([`crate::privileges::secure_start`]) has run before
//! [`run_legacy`] sees the request.

use std::ffi::OsString;

use x2gobroker_agent_protocol::{
    available_tasks, busy_percentages, check_user_name, is_perl_true, names_agent,
    parse_forced_command, render_busy_servers, render_checkload, MissingArgument, Task, TaskName,
};

use crate::authkeys::{add_key, remove_key, resolve_key_file};
use crate::load::read_load;
use crate::servers::{parse_getservers, usage_from_sessions};
use crate::tools::{ToolOutput, X2GoTools};
use crate::users::{lookup_user, UserAccount, MIN_REGULAR_UID};

/// Where the reference script lives; its die messages name it.
pub const REFERENCE_SCRIPT: &str = "/usr/lib/x2go/x2gobroker-agent.pl";
/// Exit status of a Perl `die`, used for every refusal.
pub const EXIT_DIED: i32 = 255;
/// Exit status when a tool could not be run after `OK` was printed.
pub const EXIT_TOOL_FAILED: i32 = 1;
/// Exit status when there is nothing to answer (unknown task, X2Go tool not installed): no
/// `OK` was printed.
pub const EXIT_NO_ANSWER: i32 = 1;

/// What the process was started with.
#[derive(Debug, Clone, Default)]
pub struct LegacyRequest {
    /// argv without the program name.
    pub args: Vec<OsString>,
    /// `SSH_ORIGINAL_COMMAND`, if set.
    pub ssh_original_command: Option<OsString>,
    /// `SUDO_USER`, if set.
    pub sudo_user: Option<OsString>,
}

/// What to print and the exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl LegacyOutput {
    fn ok() -> Self {
        Self {
            stdout: b"OK\n".to_vec(),
            ..Self::default()
        }
    }

    /// No `OK`, a message on stderr and a failed exit status (the reference printed nothing
    /// and exited 0).
    fn no_answer(message: &str) -> Self {
        Self {
            stderr: format!("x2gobroker-agent: {message}\n").into_bytes(),
            exit_code: EXIT_NO_ANSWER,
            ..Self::default()
        }
    }

    /// Perl `die` without message.
    fn died(line: u32) -> Self {
        Self {
            stderr: format!("Died at {REFERENCE_SCRIPT} line {line}.\n").into_bytes(),
            exit_code: EXIT_DIED,
            ..Self::default()
        }
    }

    /// Perl `die "<message>"`.
    fn die_with(message: &str, line: u32) -> Self {
        Self {
            stderr: format!("{message} at {REFERENCE_SCRIPT} line {line}.\n").into_bytes(),
            exit_code: EXIT_DIED,
            ..Self::default()
        }
    }

    /// A refusal of ours (no counterpart in the reference).
    fn refused(message: &str) -> Self {
        Self {
            stderr: format!("x2gobroker-agent: refused: {message}\n").into_bytes(),
            exit_code: EXIT_DIED,
            ..Self::default()
        }
    }

    fn push_stdout(&mut self, text: &[u8]) {
        self.stdout.extend_from_slice(text);
    }

    /// Appends a tool's output and takes its exit status (like Perl's `exec`).
    fn push_tool(&mut self, output: &ToolOutput) {
        self.stdout.extend_from_slice(&output.stdout);
        self.stderr.extend_from_slice(&output.stderr);
        self.exit_code = output.status.code().unwrap_or(EXIT_DIED);
    }

    fn fail_after_ok(&mut self, message: &str) {
        self.stderr
            .extend_from_slice(format!("x2gobroker-agent: {message}\n").as_bytes());
        self.exit_code = EXIT_TOOL_FAILED;
    }
}

/// The X2Go tool a task needs; without it in [`crate::tools::TOOL_PATH`] the task has no answer.
fn helper_program(name: TaskName) -> Option<&'static str> {
    match name {
        TaskName::ListSessions => Some("x2golistsessions"),
        TaskName::FindBusyServers
        | TaskName::FindBusyServersBySessionStats
        | TaskName::GetServers => Some("x2gogetservers"),
        TaskName::SuspendSession => Some("x2gosuspend-session"),
        TaskName::TerminateSession => Some("x2goterminate-session"),
        _ => None,
    }
}

/// The reference's `die` line for a missing argument of a key task.
fn missing_argument_line(missing: &MissingArgument) -> Option<u32> {
    let first_line = match missing.task {
        TaskName::AddAuthKey => 336,
        TaskName::DelAuthKey => 345,
        _ => return None,
    };
    u32::try_from(missing.position)
        .ok()
        .map(|position| first_line + position - 1)
}

/// The arguments an invocation asks with (user, task, …): `SSH_ORIGINAL_COMMAND`'s words
/// when it names the agent, else argv; the refusal when it cannot be read or is not UTF-8.
pub fn legacy_arguments(request: &LegacyRequest) -> Result<Vec<String>, LegacyOutput> {
    let mut raw_args = request.args.clone();
    if let Some(command) = &request.ssh_original_command {
        let command = command.to_string_lossy();
        if names_agent(&command) {
            match parse_forced_command(&command) {
                Ok(words) => raw_args = words.into_iter().map(OsString::from).collect(),
                Err(error) => {
                    return Err(LegacyOutput::refused(&format!(
                        "SSH_ORIGINAL_COMMAND: {error}"
                    )))
                }
            }
        }
    }
    raw_args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|_| LegacyOutput::refused("arguments must be UTF-8"))
        })
        .collect()
}

/// Runs one legacy invocation.
pub async fn run_legacy(request: &LegacyRequest, tools: &X2GoTools) -> LegacyOutput {
    let args = match legacy_arguments(request) {
        Ok(args) => args,
        Err(refusal) => return refusal,
    };

    let Some(user_name) = args.first().filter(|arg| is_perl_true(arg)) else {
        return LegacyOutput::died(37);
    };
    let Some(task_word) = args.get(1).filter(|arg| is_perl_true(arg)) else {
        return LegacyOutput::died(38);
    };
    if let Err(error) = check_user_name(user_name) {
        return LegacyOutput::refused(&error.to_string());
    }
    let task_name = TaskName::from_word(task_word);

    match task_name {
        Some(TaskName::Ping) => return LegacyOutput::ok(),
        Some(TaskName::CheckLoad) => {
            let mut output = LegacyOutput::ok();
            match read_load() {
                Ok(figures) => output.push_stdout(render_checkload(&figures).as_bytes()),
                Err(error) => output.fail_after_ok(&format!("cannot read /proc: {error}")),
            }
            return output;
        }
        Some(TaskName::AvailableTasks) => {
            let mut output = LegacyOutput::ok();
            for task in available_tasks(tools.x2goserver_installed().await) {
                output.push_stdout(format!("{}\n", task.word()).as_bytes());
            }
            return output;
        }
        _ => {}
    }

    let account = match lookup_user(user_name) {
        Ok(Some(account)) => account,
        Ok(None) => {
            return LegacyOutput::die_with(&format!("no such user on system: {user_name}"), 269)
        }
        Err(error) => return LegacyOutput::refused(&error.to_string()),
    };
    if account.uid < MIN_REGULAR_UID {
        return LegacyOutput::die_with(
            &format!(
                "operation on system user: {user_name} (with UID number: {})",
                account.uid
            ),
            273,
        );
    }
    let check_caller = || -> Result<(), LegacyOutput> {
        let sudo_user = request
            .sudo_user
            .as_ref()
            .map(|value| value.to_string_lossy().into_owned())
            .filter(|value| is_perl_true(value));
        match sudo_user {
            Some(caller) if caller != *user_name => Err(LegacyOutput::die_with(
                "You cannot execute x2gobroker-agent for any other user except you!",
                85,
            )),
            _ => Ok(()),
        }
    };

    let Some(name) = task_name else {
        return LegacyOutput::no_answer(&format!("no such task: {task_word:?}"));
    };
    if let Some(program) = helper_program(name).filter(|program| tools.which(program).is_none()) {
        return LegacyOutput::no_answer(&format!("{program} is not installed (X2Go server tools)"));
    }
    let task = match Task::from_arguments(name, &args[2..]) {
        Ok(task) => task,
        Err(missing) => {
            if let Some(line) = missing_argument_line(&missing) {
                return LegacyOutput::died(line);
            }
            if let Err(refusal) = check_caller() {
                return refusal;
            }
            return LegacyOutput::refused("missing session id");
        }
    };
    if let Err(refusal) = check_caller() {
        return refusal;
    }
    if let Err(error) = task.validate() {
        return LegacyOutput::refused(&error.to_string());
    }

    match &task {
        Task::ListSessions => {
            let mut output = LegacyOutput::ok();
            match tools.list_user_sessions_raw(&account).await {
                Ok(tool_output) => {
                    output.push_tool(&tool_output);
                    output.exit_code = 0;
                }
                Err(error) => output.fail_after_ok(&error.to_string()),
            }
            output
        }
        Task::FindBusyServers | Task::FindBusyServersBySessionStats => {
            let mut output = LegacyOutput::ok();
            match busy_server_counts(tools, &account).await {
                Ok(counts) => {
                    output.push_stdout(render_busy_servers(&busy_percentages(&counts)).as_bytes())
                }
                Err(message) => output.fail_after_ok(&message),
            }
            output
        }
        Task::GetServers => {
            let mut output = LegacyOutput::ok();
            match tools.get_servers_raw(&account).await {
                Ok(tool_output) => output.push_tool(&tool_output),
                Err(error) => output.fail_after_ok(&error.to_string()),
            }
            output
        }
        Task::AddAuthKey { key, key_file } => key_task(&account, true, key, key_file).await,
        Task::DelAuthKey { key, key_file } => key_task(&account, false, key, key_file).await,
        Task::SuspendSession { session_id } => {
            change_status_task(tools, &account, "S", session_id).await
        }
        Task::TerminateSession { session_id } => {
            change_status_task(tools, &account, "T", session_id).await
        }
        // answered before the user lookup
        Task::Ping | Task::CheckLoad | Task::AvailableTasks => LegacyOutput::ok(),
    }
}

/// Sessions per server: from `x2gogetservers` when it prints counts (PostgreSQL), else
/// counted from all sessions (`x2golistsessions_root`).
async fn busy_server_counts(
    tools: &X2GoTools,
    account: &UserAccount,
) -> Result<Vec<(String, u32)>, String> {
    let raw = tools
        .get_servers_raw(account)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(counts) = parse_getservers(&raw.stdout_text()) {
        return Ok(counts);
    }
    let sessions = tools.list_all_sessions().await.map_err(|e| e.to_string())?;
    Ok(usage_from_sessions(&sessions)
        .into_iter()
        .map(|usage| (usage.server, usage.sessions))
        .collect())
}

/// `addauthkey` / `delauthkey` with a validated key and key-file template.
async fn key_task(account: &UserAccount, adding: bool, key: &str, key_file: &str) -> LegacyOutput {
    let path = match resolve_key_file(key_file, account) {
        Ok(path) => path,
        Err(error) => return LegacyOutput::refused(&error.to_string()),
    };
    let mut output = LegacyOutput::ok();
    let account = account.clone();
    let key = key.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        if adding {
            add_key(&account, &path, &key)
        } else {
            remove_key(&account, &path, &key)
        }
    })
    .await;
    match result {
        Ok(Ok(_changed)) => {}
        Ok(Err(error)) => output.fail_after_ok(&error.to_string()),
        Err(error) => output.fail_after_ok(&error.to_string()),
    }
    output
}

/// `suspendsession` / `terminatesession` with a validated session id.
async fn change_status_task(
    tools: &X2GoTools,
    account: &UserAccount,
    status_letter: &str,
    session_id: &str,
) -> LegacyOutput {
    let mut output = LegacyOutput::ok();
    match tools
        .change_status(account, status_letter, session_id)
        .await
    {
        Ok(tool_output) => output.push_tool(&tool_output),
        Err(error) => output.fail_after_ok(&error.to_string()),
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &[&str]) -> LegacyRequest {
        LegacyRequest {
            args: args.iter().map(OsString::from).collect(),
            ..LegacyRequest::default()
        }
    }

    async fn run(request: LegacyRequest) -> LegacyOutput {
        run_legacy(&request, &X2GoTools::default()).await
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn argument_errors_mirror_perl_die() {
        let table: [(&[&str], u32); 4] = [
            (&[], 37),
            (&["x2gotest"], 38),
            (&["", "ping"], 37),
            (&["u", "0"], 38),
        ];
        for (args, line) in table {
            let output = run(request(args)).await;
            assert_eq!(output.exit_code, 255, "{args:?}");
            assert_eq!(
                text(&output.stderr),
                format!("Died at /usr/lib/x2go/x2gobroker-agent.pl line {line}.\n")
            );
            assert!(output.stdout.is_empty());
        }
    }

    #[tokio::test]
    async fn ping_and_checkload_need_no_user() {
        let output = run(request(&["no-such-user", "ping"])).await;
        assert_eq!((text(&output.stdout), output.exit_code), ("OK\n", 0));
        let output = run(request(&["no-such-user", "checkload"])).await;
        assert!(text(&output.stdout).starts_with("OK\nloadavgXX:"));
    }

    #[tokio::test]
    async fn system_and_unknown_users_are_refused() {
        let output = run(request(&["root", "listsessions"])).await;
        assert_eq!(
            text(&output.stderr),
            "operation on system user: root (with UID number: 0) at /usr/lib/x2go/x2gobroker-agent.pl line 273.\n"
        );
        assert_eq!(output.exit_code, 255);
        let output = run(request(&["nosuchuser-xyz", "frobnicate"])).await;
        assert_eq!(
            text(&output.stderr),
            "no such user on system: nosuchuser-xyz at /usr/lib/x2go/x2gobroker-agent.pl line 269.\n"
        );
    }

    #[tokio::test]
    async fn no_ok_line_means_a_failed_exit_status() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        // an existing regular user is needed to get past the user checks
        let regular = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(1000))
            .ok()
            .flatten()
            .map(|user| user.name);
        let mut cases: Vec<Vec<String>> = vec![
            vec![],
            vec!["x2gotest".into()],
            vec!["root".into(), "listsessions".into()],
            vec![nobody.name.clone(), "frobnicate".into()],
            vec!["nosuchuser-xyz".into(), "frobnicate".into()],
            vec!["a;b".into(), "ping".into()],
        ];
        if let Some(name) = regular {
            cases.push(vec![name.clone(), "frobnicate".into()]);
            cases.push(vec![name.clone(), "addauthkey".into()]);
            cases.push(vec![name, "suspendsession".into(), "$(id)".into()]);
        }
        for args in cases {
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = run(request(&words)).await;
            if !output.stdout.starts_with(b"OK\n") {
                assert_ne!(output.exit_code, 0, "{args:?}: no OK, yet exit 0");
                assert!(!output.stderr.is_empty(), "{args:?}: says why");
            }
        }
    }

    #[tokio::test]
    async fn hostile_user_names_are_refused_before_anything_runs() {
        for name in ["../etc", "a;id", "$(id)", "a\nb", "a b"] {
            let output = run(request(&[name, "ping"])).await;
            assert_eq!(output.exit_code, 255, "{name:?}");
            assert!(output.stdout.is_empty());
            assert!(
                text(&output.stderr).starts_with("x2gobroker-agent: refused: invalid user name")
            );
        }
    }

    #[tokio::test]
    async fn directory_user_names_are_served_and_winbind_names_refused() {
        for name in [
            "JDoe",
            "jdoe@uni.example",
            "j.doe+x2go@uni.example",
            "host$",
        ] {
            let output = run(request(&[name, "ping"])).await;
            assert_eq!(
                (text(&output.stdout), output.exit_code),
                ("OK\n", 0),
                "{name:?}"
            );
        }
        let output = run(request(&["DOM\\jdoe", "ping"])).await;
        assert_eq!(output.exit_code, 255);
        assert!(text(&output.stderr).starts_with("x2gobroker-agent: refused: invalid user name"));
        let mut forced = request(&[]);
        forced.ssh_original_command =
            Some("sh -c '/usr/lib/x2go/x2gobroker-agent host$ ping'".into());
        assert_eq!(text(&run(forced).await.stdout), "OK\n");
    }

    #[tokio::test]
    async fn forced_commands() {
        let mut forced = request(&["ignored1", "ignored2"]);
        forced.ssh_original_command =
            Some("sh -c '/usr/lib/x2go/x2gobroker-agent nobody-here ping'".into());
        let output = run(forced.clone()).await;
        assert_eq!((text(&output.stdout), output.exit_code), ("OK\n", 0));

        forced.ssh_original_command =
            Some("sh -c '/usr/lib/x2go/x2gobroker-agent $(echo u) ping'".into());
        let output = run(forced.clone()).await;
        assert_eq!(output.exit_code, 255);
        assert!(output.stdout.is_empty());
        assert!(text(&output.stderr).contains("shell metacharacter '$'"));

        let mut not_matching = request(&["someone", "ping"]);
        not_matching.ssh_original_command = Some("ls /".into());
        assert_eq!(text(&run(not_matching).await.stdout), "OK\n");
    }
}
