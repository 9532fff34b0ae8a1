//! The admin side on the live gRPC farm: `/metrics` against the agents' reports, drain through `x2gobroker-ctl` (kept across a restart), explanations that match the next selection, grpcurl through reflection, the status page in headless Chromium, the audit log.

use crate::farm::{
    authorized_keys_of, database_sessions, plain, rebuild_farm, select, server_of, Agents,
    CALL_TIMEOUT_MS, HEARTBEAT_MS, PROFILES, SESSION_DB,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{binary, free_port, start_broker, workspace_root, Daemon};

/// The farm tests' config with logins (auth-mech none for inifile, the testsuite's accounts
/// for zeroconf, so that failed logins can be audited), short autologin keys, and the admin
/// listener with its files in `work`.
fn admin_config(agents: &Agents, work: &Path, admin_port: u16) -> String {
    format!(
        "[global]\nrequire-password = true\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[broker_zeroconf]\nenable = true\nauth-mech = testsuite\n\n\
         [farm]\nagent-port = {port}\nagent-token-file = {token}\nheartbeat-ms = {HEARTBEAT_MS}\n\
         call-timeout-ms = {CALL_TIMEOUT_MS}\nautologin-key-lifetime = 2\nstate-directory = {work}/farm-state\n\n\
         [admin]\nbind = 127.0.0.1:{admin_port}\nstate-directory = {work}/admin-state\naudit-log = {work}/audit.log\n",
        port = agents.port,
        token = agents.token_file.display(),
        work = work.display(),
    )
}

/// `farm5` and the same five hosts with one-time autologin keys.
fn profiles() -> String {
    format!(
        "{PROFILES}\n[auto5]\nname = Farm of five, autologin\n\
         host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n\
         broker-session-autologin = true\n"
    )
}

/// `x2gobroker-ctl --admin http://127.0.0.1:PORT ARGS…`: exit code and stdout.
fn ctl(admin_port: u16, arguments: &[&str]) -> (i32, String) {
    let output = Command::new(binary("x2gobroker-ctl"))
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{admin_port}"))
        .args(arguments)
        .output()
        .expect("x2gobroker-ctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

fn ctl_json(admin_port: u16, arguments: &[&str]) -> serde_json::Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(arguments);
    let (code, text) = ctl(admin_port, &with_json);
    assert_eq!(code, 0, "{arguments:?}: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{arguments:?}: {text}"))
}

async fn metrics(admin_port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// How many of the farm's `x2go-nodeN` servers `x2gobroker-ctl --json state` shows up.
pub fn farm_nodes_up(state: &serde_json::Value) -> usize {
    state["servers"]
        .as_array()
        .map(|servers| {
            servers
                .iter()
                .filter(|server| {
                    server["name"]
                        .as_str()
                        .is_some_and(|name| name.starts_with("x2go-node"))
                        && server["health"] == "up"
                })
                .count()
        })
        .unwrap_or(0)
}

/// The node number of an answer's `SERVER:127.0.0.1N:22`.
fn node_of(answer: &str) -> u8 {
    server_of(answer)
        .strip_prefix("127.0.0.1")
        .and_then(|rest| rest.split(':').next())
        .and_then(|digit| digit.parse().ok())
        .unwrap_or_else(|| panic!("a farm node in {answer}"))
}

/// What the next selection of `user` on `profile` gets, as `x2gobroker-ctl explain` says
/// (outcome, server), then the selection itself.
async fn explain_then_select(
    admin_port: u16,
    broker_port: u16,
    user: &str,
    profile: &str,
) -> (String, String, serde_json::Value, String) {
    let explained = ctl_json(admin_port, &["explain", user, profile]);
    let answer = select(broker_port, user, profile).await;
    (
        explained["outcome"].as_str().unwrap().to_string(),
        explained["server"].as_str().unwrap().to_string(),
        explained,
        answer,
    )
}

/// The broker on `config` and `profiles` in `work`, logging to `work/broker.log`.
fn start(work: &Path, config: &Path, profiles: &Path) -> Daemon {
    start_broker(config, profiles, work, &work.join("cookies"), &[])
}

/// Headless Chromium (Debian's, as root): the page's DOM, and a screenshot at `png`.
fn chromium(url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = |command: &mut Command| {
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,720",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut shot = Command::new("chromium");
    common(&mut shot);
    let status = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chromium (tests/install-deps.sh installs it)");
    assert!(status.success(), "chromium --screenshot failed");
    let mut dump = Command::new("chromium");
    common(&mut dump);
    let output = dump
        .arg("--dump-dom")
        .arg(url)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("chromium --dump-dom");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_metrics_drain_explain_status_page_and_audit_on_the_live_farm() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let mut agents = Agents::start(work.path());
    let profiles_file = work.path().join("profiles.ini");
    std::fs::write(&profiles_file, profiles()).unwrap();
    let admin_port = free_port();
    let config_file = work.path().join("x2gobroker.conf");
    std::fs::write(&config_file, admin_config(&agents, work.path(), admin_port)).unwrap();
    let mut broker = start(work.path(), &config_file, &profiles_file);
    let port = broker.address.port();

    // every server up, from start-up (the farm is live before the first request)
    let started = Instant::now();
    loop {
        let state = ctl_json(admin_port, &["state"]);
        if farm_nodes_up(&state) == 5 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // explain names the server the next selection returns: resume, take-over, new session
    let (outcome, server, explained, alice) =
        explain_then_select(admin_port, port, "x2goalice", "farm5").await;
    assert_eq!(
        (outcome.as_str(), server.as_str()),
        ("resume", "x2go-node2"),
        "{explained}"
    );
    assert_eq!(node_of(&alice), 2, "{alice}");
    let (outcome, server, explained, bob) =
        explain_then_select(admin_port, port, "x2gobob", "farm5").await;
    assert_eq!(outcome, "take-over", "{explained}");
    assert_eq!(
        server,
        format!("x2go-node{}", node_of(&bob)),
        "{explained} {bob}"
    );
    assert!(bob.contains("SESSION_INFO"), "{bob}");
    let (outcome, server, explained, carol) =
        explain_then_select(admin_port, port, "x2gocarol", "farm5").await;
    assert_eq!(outcome, "new", "{explained}");
    assert_eq!(
        server,
        format!("x2go-node{}", node_of(&carol)),
        "{explained} {carol}"
    );
    let chosen: Vec<&serde_json::Value> = explained["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|server| server["chosen"] == true)
        .collect();
    assert_eq!(chosen.len(), 1, "{explained}");
    assert!(chosen[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("chosen: lowest rank"));
    // explaining placed nothing: the pending count is the one selection's
    let state = ctl_json(admin_port, &["server", &server]);
    assert_eq!(state["pending_placements"], 1, "{state}");

    // metrics: the outcomes so far, every server up, the session gauges as the agents
    // reported them (the DB's sessions per server, once the take-over's report is in)
    let started = Instant::now();
    loop {
        let text = metrics(admin_port).await;
        for outcome in ["resumed", "taken_over", "new"] {
            let series = format!("x2gobroker_selections_total{{outcome=\"{outcome}\"}}");
            assert_eq!(sample(&text, &series), Some(1.0), "{series}\n{text}");
        }
        assert_eq!(
            sample(&text, "x2gobroker_selection_duration_seconds_count"),
            Some(3.0)
        );
        for node in 1..=5 {
            let series = format!("x2gobroker_server_up{{server=\"x2go-node{node}\"}}");
            assert_eq!(sample(&text, &series), Some(1.0), "{series}\n{text}");
        }
        let sessions = database_sessions();
        let expected = |node: u8, status: &str| {
            sessions
                .iter()
                .filter(|(_, server, state, _)| {
                    *server == format!("x2go-node{node}") && state == status
                })
                .count() as f64
        };
        let matches = (1..=5).all(|node| {
            [("running", "R"), ("suspended", "S")]
                .iter()
                .all(|(state, status)| {
                    let series = format!(
                        "x2gobroker_server_sessions{{server=\"x2go-node{node}\",state=\"{state}\"}}"
                    );
                    sample(&text, &series) == Some(expected(node, status))
                })
        });
        if matches {
            assert!(
                expected(1, "S") + expected(2, "S") >= 2.0,
                "bob's and alice's S"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "session gauges never matched the DB {sessions:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // grpcurl (1.8.6: reflection v1alpha) lists the admin service and calls FarmState
    let admin_address = format!("127.0.0.1:{admin_port}");
    let listed = Command::new("grpcurl")
        .args(["-plaintext", &admin_address, "list"])
        .output()
        .expect("grpcurl");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("x2gobroker.admin.v1.Admin"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
    let farm_state = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            "{}",
            &admin_address,
            "x2gobroker.admin.v1.Admin/FarmState",
        ])
        .output()
        .expect("grpcurl");
    let farm_state = String::from_utf8_lossy(&farm_state.stdout);
    for node in 1..=5 {
        assert!(
            farm_state.contains(&format!("\"x2go-node{node}\"")),
            "{farm_state}"
        );
    }
    assert!(farm_state.contains("HEALTH_UP"), "{farm_state}");

    // drain node2: no new session there, alice's suspended session there is still resumed
    let (code, text) = ctl(admin_port, &["drain", "x2go-node2"]);
    assert_eq!((code, text.trim()), (0, "x2go-node2: drained"));
    let (code, text) = ctl(admin_port, &["drain", "x2go-node2"]);
    assert_eq!((code, text.trim()), (0, "x2go-node2: drained (already)"));
    let (code, text) = ctl(admin_port, &["drain", "no-such-server"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not found"), "{text}");
    let mut placed = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let answer = select(port, "x2gocarol", "farm5").await;
        *placed.entry(node_of(&answer)).or_insert(0) += 1;
    }
    assert!(
        !placed.contains_key(&2),
        "a new session on the drained node2: {placed:?}"
    );
    assert_eq!(placed.values().sum::<i32>(), 20);
    let explained = ctl_json(admin_port, &["explain", "x2gocarol", "farm5"]);
    let node2 = explained["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|server| server["name"] == "x2go-node2")
        .unwrap()
        .clone();
    assert!(
        node2["reason"].as_str().unwrap().starts_with("drained"),
        "{explained}"
    );
    assert_eq!(node2["drained"], true);
    let alice = select(port, "x2goalice", "farm5").await;
    assert_eq!(
        node_of(&alice),
        2,
        "the drained server still resumes: {alice}"
    );
    assert!(alice.contains("SESSION_INFO"), "{alice}");
    let text = metrics(admin_port).await;
    assert_eq!(
        sample(&text, "x2gobroker_server_drained{server=\"x2go-node2\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "x2gobroker_server_drained{server=\"x2go-node1\"}"),
        Some(0.0)
    );

    // the status page in a real browser: every server's name, health and drain state
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("admin-status.png");
    let _ = std::fs::remove_file(&screenshot);
    let dom = chromium(&format!("http://{admin_address}/status"), &screenshot);
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|meta| meta.len() > 1000),
        "screenshot saved at {}",
        screenshot.display()
    );
    for node in 1..=5 {
        let drained = node == 2;
        let row = format!(
            "data-server=\"x2go-node{node}\" data-health=\"up\" data-drained=\"{drained}\""
        );
        assert!(dom.contains(&row), "{row} in the DOM:\n{dom}");
    }
    assert!(dom.contains("class=\"server drained\""), "{dom}");
    assert_eq!(dom.matches(">DRAINED<").count(), 1, "{dom}");

    // a killed agent's server_up drops to 0 within the farm's down bound
    agents.kill_node(5);
    let killed = Instant::now();
    let bound = Duration::from_millis(HEARTBEAT_MS + CALL_TIMEOUT_MS) + Duration::from_millis(2500);
    loop {
        let text = metrics(admin_port).await;
        if sample(&text, "x2gobroker_server_up{server=\"x2go-node5\"}") == Some(0.0) {
            println!("admin: node5's server_up 0 after {:?}", killed.elapsed());
            break;
        }
        assert!(
            killed.elapsed() < bound,
            "server_up still 1 after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let explained = ctl_json(admin_port, &["explain", "x2gocarol", "farm5"]);
    let node5 = explained["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|server| server["name"] == "x2go-node5")
        .unwrap()
        .clone();
    assert!(
        node5["reason"].as_str().unwrap().starts_with("down"),
        "{explained}"
    );

    // an autologin key installed and, after its lifetime, removed: both audited
    let keys_file = authorized_keys_of("x2gocarol");
    let keys_before = std::fs::read_to_string(&keys_file).unwrap_or_default();
    let auto = select(port, "x2gocarol", "auto5").await;
    let keys_with_it = std::fs::read_to_string(&keys_file).unwrap_or_default();
    assert!(
        keys_with_it.lines().count() > keys_before.lines().count(),
        "the one-time key is installed: {keys_with_it}"
    );
    assert!(auto.contains("-----BEGIN"), "a key pair handed out: {auto}");
    // logins: a hostile user name and a wrong password (zeroconf: the testsuite accounts)
    let hostile = "evil%0A%7B%22event%22%3A%22login%22%2C%22user%22%3A%22root%22%2C%22result%22%3A%22ok%22%7D";
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/zeroconf/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "task=listsessions&user={hostile}&password=not-sweet"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let granted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/zeroconf/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("task=listsessions&user=test&password=sweet")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status().as_u16(), 200);
    let audit_file = work.path().join("audit.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&audit_file)
        .unwrap_or_default()
        .contains("\"action\":\"removed\"")
    {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the key's removal audited within its lifetime + a margin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys_left = std::fs::read_to_string(&keys_file).unwrap_or_default();
    assert_eq!(keys_left, keys_before, "the one-time key is removed again");

    // the drain survives a restart; undrain brings node2 back
    broker.terminate();
    drop(broker);
    let broker = start(work.path(), &config_file, &profiles_file);
    let port = broker.address.port();
    let state = ctl_json(admin_port, &["server", "x2go-node2"]);
    assert_eq!(state["drained"], true, "{state}");
    let (code, table) = ctl(admin_port, &["state"]);
    assert_eq!(code, 0);
    let node2_line = table
        .lines()
        .find(|line| line.starts_with("x2go-node2 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(node2_line.contains("DRAINED"), "{table}");
    // the first request waits for the first reports
    plain(port, "task=listsessions&user=x2gocarol").await;
    for _ in 0..5 {
        let answer = select(port, "x2gocarol", "farm5").await;
        assert_ne!(node_of(&answer), 2, "drained after the restart: {answer}");
    }
    let (code, text) = ctl(admin_port, &["undrain", "x2go-node2"]);
    assert_eq!((code, text.trim()), (0, "x2go-node2: in rotation"));
    let mut back = false;
    for _ in 0..8 {
        if node_of(&select(port, "x2gocarol", "farm5").await) == 2 {
            back = true;
            break;
        }
    }
    assert!(back, "undrained node2 gets new sessions again");

    // ctl's exit codes: unreachable 3, usage 2
    let unreachable = Command::new(binary("x2gobroker-ctl"))
        .args([
            "--admin",
            &format!("http://127.0.0.1:{}", free_port()),
            "state",
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    let usage = Command::new(binary("x2gobroker-ctl"))
        .args(["drain"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));

    // the audit log: one JSON object per line, every event, no password, cookie or key
    let audit = std::fs::read_to_string(&audit_file).unwrap();
    let mut events = std::collections::BTreeMap::new();
    for line in audit.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        let name = event["event"].as_str().unwrap().to_string();
        assert!(
            chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).is_ok(),
            "{line}"
        );
        events
            .entry(name)
            .or_insert_with(Vec::new)
            .push(event.clone());
    }
    let of = |name: &str| events.get(name).cloned().unwrap_or_default();
    assert!(
        of("login")
            .iter()
            .any(|event| event["result"] == "failed"
                && event["user"].as_str().unwrap().contains('\n'))
    );
    assert!(of("login")
        .iter()
        .any(|event| event["result"] == "ok" && event["user"] == "test"));
    assert!(
        !of("login").iter().any(|event| event["user"] == "root"),
        "no forged login line"
    );
    let selections = of("selection");
    for outcome in ["resumed", "taken_over", "new"] {
        assert!(
            selections.iter().any(|event| event["outcome"] == outcome),
            "{outcome}"
        );
    }
    assert_eq!(of("takeover").len(), 1);
    assert!(of("key").iter().any(|event| event["action"] == "installed"));
    assert!(of("key").iter().any(|event| event["action"] == "removed"));
    let drains: Vec<bool> = of("drain")
        .iter()
        .map(|event| event["drained"].as_bool().unwrap())
        .collect();
    assert_eq!(drains, [true, false]);
    assert!(of("drain")
        .iter()
        .all(|event| event["by"].as_str().unwrap().contains("127.0.0.1")));
    for secret in ["sweet", "BEGIN", "PRIVATE", "not-sweet"] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
    }
    drop(broker);
}

/// Profiles without agents (the admin API still lists and drains their servers).
const AGENTLESS_PROFILES: &str =
    "[office]\nname = Office\nhost = ts01 (127.0.0.1), ts02 (127.0.0.1)\n";

#[test]
fn admin_listener_with_tls_a_token_and_client_certificates() {
    use x2gobroker_e2e::certs::{TestCa, Usage};
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path(), "admin-ca");
    let server = ca.leaf("broker-admin", &["localhost", "127.0.0.1"], Usage::Server);
    let client = ca.leaf("alice-admin", &[], Usage::Client);
    let token_file = work.path().join("admin.token");
    std::fs::write(&token_file, "admin-token-0123456789\n").unwrap();
    let wrong_token = work.path().join("wrong.token");
    std::fs::write(&wrong_token, "not-the-token\n").unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, AGENTLESS_PROFILES).unwrap();
    let admin_port = free_port();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\n\
             [admin]\nbind = 127.0.0.1:{admin_port}\ntls-cert = {}\ntls-key = {}\nclient-ca = {}\n\
             token-file = {}\nstate-directory = {}\naudit-log = {}\n",
            server.certificate.display(),
            server.key.display(),
            ca.certificate().display(),
            token_file.display(),
            work.path().join("state").display(),
            work.path().join("audit.log").display(),
        ),
    )
    .unwrap();
    let _broker = start(work.path(), &config, &profiles);
    let url = format!("https://127.0.0.1:{admin_port}");
    let ctl_tls = |extra: &[&str], command: &[&str]| {
        let output = Command::new(binary("x2gobroker-ctl"))
            .args(["--admin", &url, "--ca-file"])
            .arg(ca.certificate())
            .args(extra)
            .args(command)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    // no token, no certificate: refused (exit 1)
    let (code, text) = ctl_tls(&[], &["state"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("refused"), "{text}");
    let wrong = wrong_token.to_str().unwrap();
    assert_eq!(ctl_tls(&["--token-file", wrong], &["state"]).0, 1);
    // the token: allowed, and the drain is audited as done by the token
    let token = token_file.to_str().unwrap();
    let (code, text) = ctl_tls(&["--token-file", token], &["drain", "ts01"]);
    assert_eq!((code, text.trim()), (0, "ts01: drained"), "{text}");
    // a client certificate the CA signed: allowed, audited with its name
    let (code, text) = ctl_tls(
        &[
            "--cert",
            client.certificate.to_str().unwrap(),
            "--key",
            client.key.to_str().unwrap(),
        ],
        &["undrain", "ts01"],
    );
    assert_eq!((code, text.trim()), (0, "ts01: in rotation"), "{text}");
    let (code, text) = ctl_tls(&["--token-file", token], &["state"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ts01") && text.contains("ts02"), "{text}");
    let audit = std::fs::read_to_string(work.path().join("audit.log")).unwrap();
    let drains: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|event: &serde_json::Value| event["event"] == "drain")
        .collect();
    assert_eq!(drains.len(), 2, "{audit}");
    assert_eq!(drains[0]["by"], "token from 127.0.0.1");
    assert_eq!(drains[1]["by"], "certificate alice-admin from 127.0.0.1");
    // /metrics needs the token too; /healthz and /readyz answer anyone
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.certificate()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = |path: &str, bearer: Option<&str>| {
        let mut request = client.get(format!("{url}{path}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        runtime.block_on(async { request.send().await.unwrap().status().as_u16() })
    };
    assert_eq!(status("/metrics", None), 401);
    assert_eq!(status("/metrics", Some("admin-token-0123456789")), 200);
    assert_eq!(status("/status", Some("nope")), 401);
    assert_eq!(status("/healthz", None), 200);
    assert_eq!(status("/readyz", None), 200);
}

#[test]
fn an_admin_listener_off_loopback_without_tls_is_refused_at_start() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(
        &config,
        "[global]\nrequire-password = false\n\n[admin]\nbind = 0.0.0.0:18999\n",
    )
    .unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, AGENTLESS_PROFILES).unwrap();
    let output = Command::new(binary("x2gobroker-daemon"))
        .arg("-C")
        .arg(&config)
        .args(["-b", &format!("127.0.0.1:{}", free_port())])
        .env("X2GOBROKER_SESSIONPROFILES", &profiles)
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a loopback address"), "{stderr}");
    let check = Command::new(binary("x2gobroker"))
        .arg("--check-config")
        .arg("-C")
        .arg(&config)
        .env("X2GOBROKER_SESSIONPROFILES", &profiles)
        .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&check.stdout).contains("[admin] bind = 0.0.0.0:18999"));
}
