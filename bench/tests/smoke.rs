//! Smoke run of the benchmark harness: a few seconds of every benchmark against our broker, so that the harness does not rot.

use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

#[test]
fn the_harness_runs_every_benchmark_briefly_and_checks_the_answers() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_x2gobroker-bench"))
        .arg("smoke")
        .output()
        .expect("x2gobroker-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "smoke run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "| listsessions | 8 |",
        "| selectsession (live agents) | 8 |",
        "fraction of ceiling",
        "**Login storm**: 50 simultaneous new-session selections over 10 servers",
        "per server 5–5 (even share 5.0, largest deviation 0 %)",
        "The balancer's decisions alone (the same storm as 50 messages sent at once to the actor)",
        "smoke: ok",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke run took {:?}",
        started.elapsed()
    );
}
