//! The live farm's life cycle end to end: one supervisor and one watch stream per server under a burst of first requests, and an ordered shutdown during a take-over.

use super::farm::{
    authorized_keys_of, database_sessions, farm_config, plain, rebuild_farm, select, server_of,
    Agents, PROFILES, SESSION_DB,
};
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{
    binary, broker_with_config, connections_to_port, free_port, replace_file, Daemon,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_first_requests_start_one_supervisor_and_one_watch_stream_per_server() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    // the servers of the profiles are supervised from start-up: the race is for servers a
    // changed profiles file adds while the broker runs, so it starts with none of them
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, "[DEFAULT]\nuser = BROKER_USER\n").unwrap();
    let (_broker_directory, broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles), &[]);
    let port = broker.address.port();
    let pid = broker.child.id();
    assert!(
        !plain(port, "task=listsessions&user=x2gocarol")
            .await
            .contains('['),
        "no profile yet"
    );
    assert!(
        connections_to_port(pid, agents.port).is_empty(),
        "no server is supervised before a profile names it"
    );
    let staged = work.path().join("profiles.ini.new");
    std::fs::write(&staged, PROFILES).unwrap();
    std::fs::rename(&staged, &profiles).unwrap();

    // 50 first requests at once: half listings, half new-session selections
    let started = Instant::now();
    let requests: Vec<_> = (0..50)
        .map(|index| {
            tokio::spawn(async move {
                if index % 2 == 0 {
                    (true, plain(port, "task=listsessions&user=x2gocarol").await)
                } else {
                    let user = format!("x2goburst{index}");
                    (false, select(port, &user, "farm5").await)
                }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    println!(
        "farm: 50 concurrent first requests answered in {:?}",
        started.elapsed()
    );
    for (is_listing, answer) in &answers {
        if *is_listing {
            // answered from live state, not blind: carol has no session, so farm5 is
            // narrowed to its first host
            assert!(answer.contains("[farm5]"), "{answer}");
            assert!(answer.contains("\nhost=x2go-node1\n"), "{answer}");
        } else {
            assert!(
                server_of(answer).starts_with("127.0.0.1"),
                "a server for every new session: {answer}"
            );
        }
    }
    // a few heartbeats later: one watch stream (its own HTTP/2 connection) per agent
    tokio::time::sleep(Duration::from_millis(3 * super::farm::HEARTBEAT_MS)).await;
    let connections = connections_to_port(pid, agents.port);
    let expected: std::collections::BTreeMap<std::net::Ipv4Addr, usize> = (11..=15)
        .map(|last| (std::net::Ipv4Addr::new(127, 0, 0, last), 1))
        .collect();
    assert_eq!(connections, expected, "exactly one watch stream per server");
}

/// Three servers whose profile hands out one-time autologin keys.
const AUTOLOGIN_PROFILES: &str =
    "[DEFAULT]\nuser = BROKER_USER\n\n[threenodes]\nname = Three servers\n\
    host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13)\n\
    broker-session-autologin = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_take_over_answers_it_removes_its_key_and_stops() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, AUTOLOGIN_PROFILES).unwrap();
    let (_broker_directory, mut broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles), &[]);
    let port = broker.address.port();
    // the farm is settled (every server heard of) before the take-over starts
    let listing = plain(port, "task=listsessions&user=x2gobob").await;
    assert!(listing.contains("status=R"), "{listing}");
    let keys_file = authorized_keys_of("x2gobob");
    let keys_before = std::fs::read_to_string(&keys_file).unwrap_or_default();

    // bob has only running sessions: the selection suspends one and waits for the agent's
    // confirmation; SIGTERM arrives while it does. The request is on the wire before the
    // signal (connected and written here, not by a client still starting up), so whether the
    // broker had read it yet or not, it must be answered.
    let body = "task=selectsession&sid=threenodes&user=x2gobob&login=x2gobob";
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "POST /plain/inifile/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut connection, request.as_bytes())
        .await
        .unwrap();
    let sent = Instant::now();
    let selection = tokio::spawn(async move {
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut connection, &mut response)
            .await
            .unwrap();
        let answer = match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => body.to_string(),
            _ => panic!("a 200 answer to the take-over: {response:?}"),
        };
        (answer, sent.elapsed())
    });
    let signal_after = Duration::from_millis(30);
    tokio::time::sleep(signal_after).await;
    let pid = nix::unistd::Pid::from_raw(broker.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let (answer, answered_after) = selection.await.unwrap();
    println!("farm: take-over answered {answered_after:?} after it was sent, SIGTERM at {signal_after:?}");
    assert!(
        answered_after > signal_after,
        "the take-over was still running when SIGTERM came"
    );
    // the in-flight take-over is answered in full: server, suspended session, key
    let info = answer
        .lines()
        .find_map(|line| line.strip_prefix("SESSION_INFO:"))
        .unwrap_or_else(|| panic!("SESSION_INFO in {answer}"));
    assert_eq!(info.split('|').nth(4), Some("S"), "{answer}");
    assert!(
        answer.contains("-----BEGIN RSA PRIVATE KEY-----"),
        "{answer}"
    );
    let session_id = info.split('|').nth(1).unwrap().to_string();
    let in_db = database_sessions()
        .into_iter()
        .find(|(id, ..)| *id == session_id)
        .expect("bob's session");
    assert_eq!(
        in_db.2, "S",
        "the DB shows the taken-over session suspended"
    );
    // then the broker stops by itself: HTTP drained, the waiting key removed, actors stopped
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
    .expect("the broker exits after SIGTERM");
    let stop_time = signalled.elapsed();
    println!("farm: broker stopped {stop_time:?} after SIGTERM");
    assert!(status.success(), "{status:?}");
    // the one-time key (lifetime 20 s) is gone although its timer had not fired yet
    assert!(stop_time < Duration::from_secs(15), "{stop_time:?}");
    let keys_after = std::fs::read_to_string(&keys_file).unwrap_or_default();
    assert_eq!(
        keys_after, keys_before,
        "the autologin key was removed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_left_by_a_killed_broker_is_removed_by_the_next_start() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, AUTOLOGIN_PROFILES).unwrap();
    let lifetime = Duration::from_secs(3);
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(
        &config,
        format!(
            "{}autologin-key-lifetime = {}\nstate-directory = {}\n",
            farm_config(&agents),
            lifetime.as_secs(),
            work.path().display()
        ),
    )
    .unwrap();
    let log = work.path().join("broker.log");
    let mut broker = logged_broker(&config, &profiles, &log);
    let keys_file = authorized_keys_of("x2goalice");
    let keys_before = std::fs::read_to_string(&keys_file).unwrap_or_default();
    // alice resumes her suspended session with a one-time key
    let answer = select(broker.address.port(), "x2goalice", "threenodes").await;
    assert!(
        answer.contains("-----BEGIN RSA PRIVATE KEY-----"),
        "{answer}"
    );
    let with_key = std::fs::read_to_string(&keys_file).unwrap_or_default();
    assert_ne!(with_key, keys_before, "the key was installed");
    // the janitor persists the key as it schedules its removal (right after the answer)
    let pending_files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(work.path())
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name().is_some_and(|name| {
                    let name = name.to_string_lossy();
                    name.starts_with("pending-keys.") && name.ends_with(".json")
                })
            })
            .collect()
    };
    let answered = Instant::now();
    let mut pending = pending_files();
    while pending.is_empty() && answered.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = pending_files();
    }
    assert_eq!(pending.len(), 1, "one pending-keys file: {pending:?}");
    let persisted = std::fs::read_to_string(&pending[0]).unwrap();
    assert!(persisted.contains("x2goalice"), "{persisted}");

    // the broker dies before the key's lifetime is over: nothing removes it
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    tokio::time::sleep(lifetime + Duration::from_secs(1)).await;
    assert_eq!(
        std::fs::read_to_string(&keys_file).unwrap_or_default(),
        with_key,
        "a killed broker removes nothing"
    );

    assert!(
        pending[0].exists(),
        "the pending key survived the kill: {:?}",
        pending_files()
    );
    // the next start removes the overdue key at once, and forgets it
    let restarted = Instant::now();
    let log = work.path().join("broker-again.log");
    let _again = logged_broker(&config, &profiles, &log);
    let bound = Duration::from_millis(3 * super::farm::HEARTBEAT_MS) + Duration::from_secs(3);
    while std::fs::read_to_string(&keys_file).unwrap_or_default() != keys_before
        && restarted.elapsed() < bound
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let removed_after = restarted.elapsed();
    println!("farm: a key left by a killed broker removed {removed_after:?} after the restart");
    assert_eq!(
        std::fs::read_to_string(&keys_file).unwrap_or_default(),
        keys_before,
        "the key left behind was removed within {bound:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let started = Instant::now();
    while pending[0].exists() && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pending[0].exists(), "nothing is pending any more");
}

/// The broker daemon on `config` and `profiles` with its log in `log`.
fn logged_broker(
    config: &std::path::Path,
    profiles: &std::path::Path,
    log: &std::path::Path,
) -> Daemon {
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = std::process::Command::new(binary("x2gobroker-daemon"));
    command
        .arg("-C")
        .arg(config)
        .arg("-b")
        .arg(address.to_string())
        .env("X2GOBROKER_SESSIONPROFILES", profiles)
        .env(
            "X2GOBROKER_COOKIE_DIRECTORY",
            config.parent().unwrap().join("cookies"),
        )
        .env("RUST_LOG", "info")
        // the log on stderr, not in the reference's log files if they are configured here
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .env_remove("X2GOBROKER_DEFAULT_BACKEND")
        .env_remove("X2GOBROKER_CONFIG");
    Daemon::start_logged(command, address, log)
}

/// The broker's log once it contains `text` (at most 5 s).
async fn wait_for_log(log: &std::path::Path, text: &str) -> String {
    let started = Instant::now();
    loop {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        if content.contains(text) || started.elapsed() > Duration::from_secs(5) {
            return content;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `condition` holds for the body of `request`, at most `limit`.
async fn wait_for_answer(
    port: u16,
    request: &str,
    limit: Duration,
    condition: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let answer = plain(port, request).await;
        if condition(&answer) || started.elapsed() > limit {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_applies_a_new_farm_token_and_servers_and_keeps_serving() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let mut agents = Agents::start(work.path());
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, farm_config(&agents)).unwrap();
    let profiles = work.path().join("profiles.ini");
    let four = "[DEFAULT]\nuser = BROKER_USER\n\n[farm4]\nname = Four\n\
        host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14)\n";
    std::fs::write(&profiles, four).unwrap();
    let log = work.path().join("broker.log");
    let mut broker = logged_broker(&config, &profiles, &log);
    let port = broker.address.port();
    let pid = broker.child.id();
    let hangup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    let alice_suspended = |answer: &str| answer.contains("\nstatus=S\n");
    let first = wait_for_answer(
        port,
        "task=listsessions&user=x2goalice",
        Duration::from_secs(5),
        alice_suspended,
    )
    .await;
    assert!(alice_suspended(&first), "{first}");

    // a client keeps listing throughout: every answer must be a full listing
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = stop.clone();
    let client = tokio::spawn(async move {
        let (mut answered, mut failed) = (0u32, Vec::new());
        while !looping.load(std::sync::atomic::Ordering::Relaxed) {
            let response = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
                .body("task=listsessions&user=x2gobob")
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 200 => {
                    let body = response.text().await.unwrap_or_default();
                    if body.contains("[farm4]") {
                        answered += 1;
                    } else {
                        failed.push(body);
                    }
                }
                other => failed.push(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (answered, failed)
    });

    // 1. the agents get a new token, the broker's config a new token file and a new server
    let new_token = work.path().join("agent.token.new");
    std::fs::write(&new_token, "farm-test-token-new-fedcba9876543210\n").unwrap();
    // agentd refuses a token file others may read
    std::fs::set_permissions(
        &new_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    agents.token_file = new_token.clone();
    for node in 1..=5 {
        agents.kill_node(node);
        agents.start_node(node);
    }
    let old_config = farm_config(&agents);
    assert!(old_config.contains("agent.token.new"));
    replace_file(&config, &old_config);
    let five = format!("{four}\n[new5]\nname = The new server\nhost = x2go-node5 (127.0.0.15)\n");
    replace_file(&profiles, five);
    let reloaded_at = Instant::now();
    hangup();
    // the new server is supervised from the reload on, before any request names it
    let mut streams = connections_to_port(pid, agents.port);
    while !streams.contains_key(&std::net::Ipv4Addr::new(127, 0, 0, 15))
        && reloaded_at.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        streams = connections_to_port(pid, agents.port);
    }
    assert_eq!(
        streams.get(&std::net::Ipv4Addr::new(127, 0, 0, 15)),
        Some(&1),
        "node5 supervised after SIGHUP: {streams:?}"
    );
    println!(
        "farm: SIGHUP -> new server streamed after {:?}",
        reloaded_at.elapsed()
    );
    // the new token is sent (the agents accept nothing else): the farm reports again
    let listing = wait_for_answer(
        port,
        "task=listsessions&user=x2goalice",
        Duration::from_secs(5),
        alice_suspended,
    )
    .await;
    assert!(alice_suspended(&listing), "{listing}");
    assert!(listing.contains("[new5]"), "{listing}");
    let carol = wait_for_answer(
        port,
        "task=listsessions&user=x2gocarol",
        Duration::from_secs(5),
        |answer| answer.contains("[new5]") && answer.contains("\nhost=x2go-node5\n"),
    )
    .await;
    assert!(
        carol.contains("\nhost=x2go-node5\n"),
        "the new server reported: {carol}"
    );
    let selected = select(port, "x2gocarol", "new5").await;
    assert!(server_of(&selected).starts_with("127.0.0.15"), "{selected}");

    // 2. a broken [farm] and SIGHUP: the running farm is kept, and the log says why
    let bad_value = old_config.replace(
        &format!("heartbeat-ms = {}", super::farm::HEARTBEAT_MS),
        "heartbeat-ms = banana",
    );
    assert_ne!(bad_value, old_config);
    replace_file(&config, bad_value);
    hangup();
    let text = wait_for_log(&log, "the running farm is kept").await;
    assert!(text.contains("heartbeat-ms = \"banana\""), "{text}");
    assert!(text.contains("the running farm is kept"), "{text}");
    // and a file that cannot be parsed at all (a duplicate key): the last good one serves
    replace_file(&config, format!("{old_config}call-timeout-ms = 1\n"));
    hangup();
    let text = wait_for_log(&log, "last good version keeps serving").await;
    assert!(text.contains("last good version keeps serving"), "{text}");
    tokio::time::sleep(Duration::from_millis(3 * super::farm::HEARTBEAT_MS)).await;
    let still = plain(port, "task=listsessions&user=x2goalice").await;
    assert!(
        alice_suspended(&still),
        "the old farm still reports: {still}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failed) = client.await.unwrap();
    println!(
        "farm: client loop through two reloads: {answered} listings, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        answered > 10,
        "the client loop ran through both reloads: {answered}"
    );
    assert!(broker.is_running(), "SIGHUP never kills the broker");
}

/// Runs the SSH broker mode (`x2gobroker`, as X2Go Client runs it over SSH) as root with
/// `args`; its stdout and how long it took.
fn ssh_broker_mode(work: &std::path::Path, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = std::process::Command::new(binary("x2gobroker"))
        .arg("-C")
        .arg(work.join("x2gobroker.conf"))
        .args(args)
        .current_dir(work)
        .env("X2GOBROKER_SESSIONPROFILES", work.join("profiles.ini"))
        .env("X2GOBROKER_COOKIE_DIRECTORY", work.join("cookies"))
        .env("RUST_LOG", "warn")
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .output()
        .expect("x2gobroker");
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ssh_broker_mode_resumes_and_takes_over_through_the_local_agent() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    // the reference's LOCAL mode as it is configured there: no [farm] section
    std::fs::write(
        work.path().join("x2gobroker.conf"),
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\ndefault-agent-query-mode = LOCAL\n",
    )
    .unwrap();
    std::fs::write(work.path().join("profiles.ini"), PROFILES).unwrap();
    let (listing, listing_time) = ssh_broker_mode(
        work.path(),
        &["--task", "listsessions", "--user", "x2goalice"],
    );
    assert!(
        listing.contains("[farm5]")
            && listing.contains("\nhost=x2go-node2\n")
            && listing.contains("\nstatus=S\n"),
        "{listing}"
    );
    let (resume, resume_time) = ssh_broker_mode(
        work.path(),
        &[
            "--task",
            "selectsession",
            "--sid",
            "farm5",
            "--user",
            "x2goalice",
        ],
    );
    assert!(resume.contains("SERVER:127.0.0.12:22"), "{resume}");
    let fields = super::farm::session_info_fields(&resume);
    assert_eq!(
        (fields[3].as_str(), fields[4].as_str()),
        ("x2go-node2", "S")
    );
    let (takeover, takeover_time) = ssh_broker_mode(
        work.path(),
        &[
            "--task",
            "selectsession",
            "--sid",
            "farm5",
            "--user",
            "x2gobob",
        ],
    );
    let bob = super::farm::session_info_fields(&takeover);
    assert_eq!(bob[4], "S", "{takeover}");
    let in_db = database_sessions()
        .into_iter()
        .find(|(id, ..)| *id == bob[1])
        .expect("bob's session");
    assert_eq!(
        in_db.2, "S",
        "the DB shows the taken-over session suspended"
    );
    let (new, new_time) = ssh_broker_mode(
        work.path(),
        &[
            "--task",
            "selectsession",
            "--sid",
            "farm5",
            "--user",
            "x2gocarol",
        ],
    );
    assert!(server_of(&new).starts_with("127.0.0.1"), "{new}");
    assert!(!new.contains("SESSION_INFO"), "{new}");
    println!(
        "ssh broker mode, LOCAL agent: listing {listing_time:?}, resume {resume_time:?}, take-over {takeover_time:?}, new {new_time:?}"
    );
    rebuild_farm();
}
