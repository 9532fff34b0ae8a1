//! Replays `ssh_broker_mode.jsonl` against `x2gobroker` run as the local user `x2gotest` (runuser).

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use x2gobroker_e2e::{binary, ensure_user, golden_dir, normalise};

/// Records where we deliberately differ, and what we print instead (docs/COMPATIBILITY.md).
fn deviation(id: &str) -> Option<(i32, &'static str)> {
    match id {
        // S5 fix: `--user` is honoured for root and the daemon user only, never from LOGNAME.
        "ssh-user-override-allowed-for-magic-logname" => Some((0, "listing-as-x2gotest")),
        // B26 fix: X2Go Client's clientevent extras are accepted; the event itself is ignored.
        "ssh-x2goclient-clientevent-args" => Some((0, "")),
        // B26 fix: setpass is answered like the HTTP plain frontend (authentication lines only).
        "ssh-setpass-unsupported" => Some((0, "AUTHID:{UUID}\nAccess granted\n\n")),
        // Our usage text is clap's, not argparse's; framing and exit code are the reference's.
        "ssh-no-task" => Some((254, "usage")),
        _ => None,
    }
}

fn prepare_directory() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let configs = golden_dir().join("configs");
    for entry in std::fs::read_dir(&configs).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), directory.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(binary("x2gobroker"), directory.path().join("x2gobroker")).unwrap();
    std::fs::set_permissions(directory.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cookies = directory.path().join("cookies");
    std::fs::create_dir(&cookies).unwrap();
    let status = Command::new("chown")
        .arg("x2gotest:")
        .arg(&cookies)
        .status()
        .unwrap();
    assert!(status.success());
    directory
}

#[test]
fn ssh_mode_recordings_replay() {
    ensure_user("x2gotest", None);
    let directory = prepare_directory();
    let text = std::fs::read_to_string(golden_dir().join("ssh_broker_mode.jsonl")).unwrap();
    let (mut matched, mut deviations, mut total) = (0, 0, 0);
    let mut failures = Vec::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let id = record["id"].as_str().unwrap();
        total += 1;
        let argv: Vec<&str> = record["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mut command = Command::new("runuser");
        command
            .args(["-u", "x2gotest", "--"])
            .arg(directory.path().join("x2gobroker"))
            .args(&argv[1..])
            .current_dir(directory.path())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env(
                "X2GOBROKER_COOKIE_DIRECTORY",
                directory.path().join("cookies"),
            )
            .env("RUST_LOG", "error")
            .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG);
        for (name, value) in record["env"].as_object().unwrap() {
            command.env(name, value.as_str().unwrap());
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let code = output.status.code().unwrap_or(-1);
        let normalised = normalise(&stdout);
        let ok = match deviation(id) {
            Some((expected_code, expected)) => {
                let body_ok = match expected {
                    "listing-as-x2gotest" => {
                        normalised.contains("\nuser=x2gotest\n")
                            && !normalised.contains("user=maja")
                    }
                    "usage" => {
                        stdout.starts_with("\nUsage: ")
                            && stdout.ends_with("No task specified, doing nothing...\n\n")
                    }
                    other => normalised == other,
                };
                if body_ok && code == expected_code {
                    deviations += 1;
                    true
                } else {
                    false
                }
            }
            None => {
                let expected_code = record["exit_code"].as_i64().unwrap() as i32;
                let body_ok = match record["observed_distinct_stdout_normalized"].as_array() {
                    Some(observed) => observed
                        .iter()
                        .any(|body| body.as_str() == Some(&normalised)),
                    None => record["stdout_normalized"].as_str() == Some(&normalised),
                };
                if body_ok && code == expected_code {
                    matched += 1;
                    true
                } else {
                    false
                }
            }
        };
        if !ok {
            failures.push(format!(
                "{id}: exit {code}, stdout {normalised:?}, stderr {:?}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    println!("ssh replay: {matched} of {total} match, {deviations} documented deviations");
    for failure in &failures {
        println!("MISMATCH {failure}");
    }
    assert!(failures.is_empty());
}
