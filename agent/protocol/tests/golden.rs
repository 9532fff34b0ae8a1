//! The reference's recorded vectors replayed against the crate: the broker side
//! (`broker/tests/golden/api_agent_transport.jsonl`: exec strings, LOCAL argvs, answer parsing)
//! and the agent side (`agent/tests/golden/agent_cli.jsonl`: argv and `SSH_ORIGINAL_COMMAND`
//! reading, task grammar, `availabletasks` and `checkload` output).

use serde_json::{json, Value};
use std::path::Path;
use x2gobroker_agent_protocol::*;

fn records(relative: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap()
}

/// The task a command line names, with its arguments.
fn task_of(words: &[String]) -> Task {
    let name = TaskName::from_word(&words[1]).unwrap_or_else(|| panic!("task {}", words[1]));
    Task::from_arguments(name, &words[2..]).unwrap()
}

/// What the reference broker returns for an answer, as the record writes it.
fn parsed_result(task: &Task, answer: &Answer) -> Value {
    let lines = &answer.lines;
    match task {
        Task::Ping => Value::from(answer.ok),
        Task::CheckLoad => match parse_checkload(lines).and_then(|reading| load_factor(&reading)) {
            Ok(factor) if answer.ok => Value::from(factor),
            _ => Value::from("LOAD-DATA-BOGUS"),
        },
        Task::FindBusyServers => json!([answer.ok, parse_busy_servers(lines)]),
        Task::GetServers => json!([answer.ok, parse_server_counts(lines)]),
        _ => json!([answer.ok, lines]),
    }
}

#[test]
fn api_agent_transport_records() {
    let (mut matched, mut deviations) = (0, 0);
    for record in records("../../broker/tests/golden/api_agent_transport.jsonl") {
        let call = record["call"].as_str().unwrap();
        if call.starts_with("genkeypair") {
            // the key format is the broker's (farm/autologin.rs checks it)
            continue;
        }
        if let Some(popen) = record.get("popen") {
            let argv = strings(&popen["argv"]);
            let task = task_of(&argv[1..]);
            assert_eq!(
                local_argv(&argv[0], &argv[1], &task).unwrap(),
                argv,
                "{call}"
            );
            let answer = Answer::parse(record["fake_stdout"].as_str().unwrap(), "");
            assert_eq!(json!([answer.ok, answer.lines]), record["result"], "{call}");
            matched += 1;
            continue;
        }
        let exec = record["ssh_interaction"][2]["exec_command"]
            .as_str()
            .unwrap();
        if call == "list_sessions with hostile login" {
            // deviation (§16 S2): the broker refuses the login, nothing is sent; had it been
            // sent, our agent would refuse to read it
            assert_eq!(
                ssh_command(DEFAULT_AGENT_COMMAND, "x'$(id)'", &Task::ListSessions),
                Err(ArgumentError::UserName("x'$(id)'".into()))
            );
            assert_eq!(
                parse_forced_command(exec),
                Err(ForcedCommandError::Metacharacter('$'))
            );
            deviations += 1;
            continue;
        }
        // what the agent reads from the recorded string …
        let words = parse_forced_command(exec).unwrap();
        let task = task_of(&words);
        // … the broker builds byte for byte
        assert_eq!(
            ssh_command(DEFAULT_AGENT_COMMAND, &words[0], &task).as_deref(),
            Ok(exec),
            "{call}"
        );
        let answer = Answer::parse(
            record["fake_remote_stdout"].as_str().unwrap(),
            record["fake_remote_stderr"].as_str().unwrap(),
        );
        assert_eq!(parsed_result(&task, &answer), record["result"], "{call}");
        if task == Task::ListSessions && answer.ok {
            for line in &answer.lines {
                let session = ListedSession::parse(line).unwrap();
                assert_eq!(
                    (
                        session.session_id.as_str(),
                        session.server.as_str(),
                        session.user.as_str()
                    ),
                    ("maja-50-1_stDKDE_dp24", "ts01", "maja")
                );
                assert_eq!(session.status, SessionStatus::Suspended);
            }
        }
        matched += 1;
    }
    println!("api_agent_transport: {matched} match, {deviations} documented deviation");
    assert_eq!((matched, deviations), (19, 1));
}

/// The Perl `die` line of a missing key-task argument.
fn die_line(missing: MissingArgument) -> u64 {
    let first = match missing.task {
        TaskName::AddAuthKey => 336,
        TaskName::DelAuthKey => 345,
        other => panic!("{other:?} dies for no argument"),
    };
    first + missing.position as u64 - 1
}

#[test]
fn agent_cli_records() {
    const SHELL_DEVIATIONS: [&str; 2] = [
        "agent-ssh-original-command-shell-expansion",
        "agent-ssh-injection-runs-as-agent-account",
    ];
    let (mut accepted, mut ended_early, mut deviations) = (0, 0, 0);
    for record in records("../tests/golden/agent_cli.jsonl") {
        let id = record["id"].as_str().unwrap();
        let argv = strings(&record["argv"]);
        let stdout = record["stdout"].as_str().unwrap();
        let stderr = record["stderr"].as_str().unwrap();
        let forced = record["env"]["SSH_ORIGINAL_COMMAND"]
            .as_str()
            .filter(|command| names_agent(command));
        let words = match forced {
            Some(command) if SHELL_DEVIATIONS.contains(&id) => {
                // deviation (A1): refused instead of run through /bin/sh
                assert_eq!(
                    parse_forced_command(command),
                    Err(ForcedCommandError::Metacharacter('$')),
                    "{id}"
                );
                deviations += 1;
                continue;
            }
            Some(command) => parse_forced_command(command).unwrap(),
            None => argv[1..].to_vec(),
        };
        let perl_true_word = |index: usize| words.get(index).filter(|word| is_perl_true(word));
        let Some(user) = perl_true_word(0) else {
            assert!(stderr.ends_with("line 37.\n"), "{id}");
            ended_early += 1;
            continue;
        };
        let Some(task_word) = perl_true_word(1) else {
            assert!(stderr.ends_with("line 38.\n"), "{id}");
            ended_early += 1;
            continue;
        };
        check_user_name(user).unwrap_or_else(|error| panic!("{id}: {error}"));
        let Some(name) = TaskName::from_word(task_word) else {
            assert_eq!(
                (stdout, record["exit_code"].as_i64()),
                ("", Some(0)),
                "{id}"
            );
            ended_early += 1;
            continue;
        };
        let task = match Task::from_arguments(name, &words[2..]) {
            Ok(task) => task,
            Err(missing) => {
                assert_eq!(
                    stderr,
                    format!(
                        "Died at /usr/lib/x2go/x2gobroker-agent.pl line {}.\n",
                        die_line(missing)
                    ),
                    "{id}"
                );
                ended_early += 1;
                continue;
            }
        };
        task.validate()
            .unwrap_or_else(|error| panic!("{id}: {error}"));
        // the broker would send exactly this
        let built = local_argv(DEFAULT_AGENT_COMMAND, user, &task).unwrap();
        assert_eq!(built[1..], words[..], "{id}");
        if let Some(command) = forced.filter(|command| command.starts_with("sh -c '")) {
            assert_eq!(
                ssh_command(DEFAULT_AGENT_COMMAND, user, &task).as_deref(),
                Ok(command),
                "{id}"
            );
        }
        if let Some(files) = record["file_after"].as_object() {
            for path in files.keys() {
                check_resolved_key_file(path).unwrap_or_else(|error| panic!("{id}: {error}"));
            }
        }
        match task {
            Task::AvailableTasks => {
                let listed: String = available_tasks(true)
                    .into_iter()
                    .map(|name| format!("{}\n", name.word()))
                    .collect();
                assert_eq!(stdout, format!("OK\n{listed}"), "{id}");
            }
            Task::CheckLoad => {
                let answer = Answer::parse(stdout, stderr);
                let reading = parse_checkload(&answer.lines).unwrap();
                assert!(load_factor(&reading).is_ok(), "{id}");
                let figures = LoadFigures {
                    loadavgxx: reading.loadavgxx as i64,
                    mem_avail_mb: reading.mem_avail as i64,
                    my_mem_avail_mb: reading.my_mem_avail.unwrap() as i64,
                    num_cpu: reading.num_cpu as i64,
                    type_cpu_mhz: reading.type_cpu as i64,
                };
                assert_eq!(
                    format!("OK\n{}", render_checkload(&figures)),
                    stdout,
                    "{id}"
                );
            }
            _ => {}
        }
        accepted += 1;
    }
    println!("agent_cli: {accepted} accepted, {ended_early} ended before the task, {deviations} documented deviations");
    assert_eq!((accepted, ended_early, deviations), (16, 4, 2));
}
