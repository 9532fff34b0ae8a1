//! A real client: Python X2Go's HTTP broker backend lists and selects from our `/json/` endpoint.

use serde_json::Value;
use std::process::Command;
use x2gobroker_e2e::{broker_with_config, workspace_root};

const CONFIG: &str = "[global]\nrequire-password = true\ndefault-auth-mech = testsuite\ndefault-portscan-x2goservers = false\n[broker_inifile]\nenable = true\nuser-db = testsuite\ngroup-db = testsuite\n";

#[test]
fn python_x2go_lists_and_selects() {
    let (_work, daemon) = broker_with_config(CONFIG, None, &[]);
    let url = format!("http://127.0.0.1:{}/json/inifile/", daemon.address.port());
    let script = workspace_root().join("tests/python/x2go_broker_client.py");
    let run = |password: &str| {
        let output = Command::new("/usr/bin/python3")
            .arg(&script)
            .args([url.as_str(), "test", password, "b-multi"])
            .output()
            .expect("python3 with python3-x2go (tests/install-deps.sh installs it)");
        assert!(
            output.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or("").to_string();
        serde_json::from_str::<Value>(&last).unwrap_or_else(|_| panic!("no JSON in {stdout:?}"))
    };
    let result = run("sweet");
    println!("python x2go: {result}");
    assert_eq!(result["authenticated"], true);
    assert_eq!(result["authid_received"], true);
    let ids: Vec<&str> = result["profile_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "a-single",
            "b-multi",
            "c-shadow",
            "d-notset",
            "e-static-user",
            "f-localhost"
        ]
    );
    assert_eq!(
        result["names"]["a-single"],
        "A: single host, lower-case desktop command"
    );
    assert_eq!(result["populated_ids"], result["profile_ids"]);
    let selected = &result["selected"];
    let server_and_port = (
        selected["server"].as_str().unwrap(),
        selected["port"].as_str().unwrap(),
    );
    assert!(
        [("127.0.0.11", "22"), ("127.0.0.12", "2222")].contains(&server_and_port),
        "selected {selected}"
    );
    let refused = run("sour");
    assert_eq!(refused["authenticated"], false);
    assert_eq!(refused["profile_ids"].as_array().unwrap().len(), 0);
}
