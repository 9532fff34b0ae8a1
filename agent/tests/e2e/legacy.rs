//! The legacy `x2gobroker-agent` against the golden vectors (agent/tests/golden/
//! agent_cli.jsonl, recorded from the Perl agent) and against the X2Go tools' own output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::*;

/// Records whose reference behaviour is a documented defect we fix
/// (docs/COMPATIBILITY.md); the test asserts our replacement instead.
const SHELL_DEVIATIONS: &[&str] = &[
    "agent-ssh-original-command-shell-expansion",
    "agent-ssh-injection-runs-as-agent-account",
];
/// Relative key paths are taken below the home (the reference wrote below its cwd).
const RELATIVE_PATH_RECORD: &str = "agent-addauthkey-relative-path";
/// An unknown task has no `OK` line and so a failed exit status (the reference exits 0).
const UNKNOWN_TASK_RECORD: &str = "agent-unknown-task";

fn records() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/agent_cli.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `^OK\nloadavgXX:\d+\nmemAvail:\d+\nmyMemAvail:\d+\nnumCPU:\d+\ntypeCPU:\d+\n$`
fn is_checkload_output(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("OK\n") else {
        return false;
    };
    let keys = ["loadavgXX", "memAvail", "myMemAvail", "numCPU", "typeCPU"];
    let lines: Vec<&str> = rest.split_terminator('\n').collect();
    rest.ends_with('\n')
        && lines.len() == keys.len()
        && lines.iter().zip(keys).all(|(line, key)| {
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .is_some_and(|digits| {
                    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
                })
        })
}

#[tokio::test]
async fn golden_vectors() {
    let _serial = serial().await;
    let user = ensure_user("x2gotest");
    let home = user.dir.to_string_lossy().into_owned();
    let (uid, gid) = (user.uid.as_raw().to_string(), user.gid.as_raw().to_string());
    // the key-file records build on each other from an empty state
    let _ = std::fs::remove_dir_all(user.dir.join(".x2go"));
    let _ = std::fs::remove_dir_all(user.dir.join("relative-dir"));
    for entry in std::fs::read_dir(&user.dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("keys-") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let injected = PathBuf::from("/srv/golden-work/inj/injected-id");
    let _ = std::fs::remove_file(&injected);

    let substitute = |text: &str| {
        text.replace("/home/x2gotest", &home)
            .replace("x2gotest-1003-1004", &format!("x2gotest-{uid}-{gid}"))
    };
    let mut checked = 0;
    for record in records() {
        let id = record["id"].as_str().unwrap();
        let argv: Vec<String> = record["argv"].as_array().unwrap()[1..]
            .iter()
            .map(|a| substitute(a.as_str().unwrap()))
            .collect();
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ssh_command = record["env"]["SSH_ORIGINAL_COMMAND"].as_str();
        let output = legacy(&args, ssh_command);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();

        if SHELL_DEVIATIONS.contains(&id) {
            assert_ne!(output.status.code(), Some(0), "{id}: must be refused");
            assert_eq!(stdout, "", "{id}");
            assert!(
                stderr.contains("refused: SSH_ORIGINAL_COMMAND: shell metacharacter"),
                "{id}: {stderr}"
            );
            assert!(
                !injected.exists(),
                "{id}: the injected command must not run"
            );
            checked += 1;
            continue;
        }

        if id == UNKNOWN_TASK_RECORD {
            assert_eq!(output.status.code(), Some(1), "{id}: {stderr}");
            assert_eq!(stdout, "", "{id}");
            assert_eq!(
                stderr, "x2gobroker-agent: no such task: \"frobnicate\"\n",
                "{id}"
            );
            checked += 1;
            continue;
        }
        assert_eq!(
            output.status.code(),
            record["exit_code"].as_i64().map(|c| c as i32),
            "{id}: {stderr}"
        );
        match record["stdout_regex"].as_str() {
            Some(_) => assert!(is_checkload_output(&stdout), "{id}: {stdout:?}"),
            None => assert_eq!(stdout, record["stdout"].as_str().unwrap(), "{id}"),
        }
        assert_eq!(stderr, record["stderr"].as_str().unwrap(), "{id}");

        if let Some(files) = record["file_after"].as_object() {
            let files: BTreeMap<&String, &Value> = files.iter().collect();
            for (path, content) in files {
                let path = if id == RELATIVE_PATH_RECORD {
                    user.dir.join("relative-dir/keys")
                } else {
                    PathBuf::from(substitute(path))
                };
                assert_eq!(
                    std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("{id}: {}: {e}", path.display())),
                    content.as_str().unwrap(),
                    "{id}: {}",
                    path.display()
                );
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!(
                    std::os::unix::fs::MetadataExt::uid(&meta),
                    user.uid.as_raw(),
                    "{id}: owner"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 22, "every record was checked");
    assert!(
        !PathBuf::from("relative-dir/keys").exists(),
        "relative key paths are not written below the agent's cwd"
    );
}

#[tokio::test]
async fn legacy_tasks_match_the_x2go_tools() {
    let _serial = serial().await;
    reset_farm();
    for user in [ALICE, BOB, CAROL] {
        let output = legacy(&[user, "listsessions"], None);
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        let data = stdout.strip_prefix("OK\n").expect("OK first");
        assert_eq!(
            masked_lines(data),
            masked_lines(&x2golistsessions(user)),
            "{user}"
        );
    }
    let getservers = legacy(&[ALICE, "getservers"], None);
    let reference = run("sudo", &["-u", ALICE, "--", "x2gogetservers"]);
    assert_eq!(
        String::from_utf8_lossy(&getservers.stdout),
        format!("OK\n{}", String::from_utf8_lossy(&reference.stdout))
    );
    let busy = legacy(&[ALICE, "findbusyservers"], None);
    assert_eq!(
        String::from_utf8_lossy(&busy.stdout),
        "OK\n20:x2go-node3\n40:x2go-node1\n40:x2go-node2\n"
    );
    assert!(busy.status.success());

    // what the broker sends over SSH
    let forced = legacy(
        &["ignored"],
        Some(&format!(
            "sh -c '/usr/lib/x2go/x2gobroker-agent {BOB} listsessions'"
        )),
    );
    let stdout = String::from_utf8(forced.stdout).unwrap();
    assert_eq!(
        masked_lines(stdout.strip_prefix("OK\n").unwrap()),
        masked_lines(&x2golistsessions(BOB))
    );

    let running = find_session(&x2golistsessions(ALICE), |f| f[4] == "R").unwrap();
    let suspend = legacy(&[ALICE, "suspendsession", &running], None);
    assert_eq!(String::from_utf8_lossy(&suspend.stdout), "OK\n");
    assert!(suspend.status.success());
    assert_eq!(status_of(&running).as_deref(), Some("S"));
    let victim = find_session(&x2golistsessions(BOB), |f| f[3] == "x2go-node3").unwrap();
    let terminate = legacy(
        &["x"],
        Some(&format!(
            "sh -c '/usr/lib/x2go/x2gobroker-agent {BOB} terminatesession \"{victim}\"'"
        )),
    );
    assert_eq!(String::from_utf8_lossy(&terminate.stdout), "OK\n");
    assert_eq!(status_of(&victim).as_deref(), Some("T"));
    reset_farm();
}
