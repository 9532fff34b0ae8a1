//! Several brokers on one PostgreSQL (`[cluster]`, issue 16, acceptance 1): PostgreSQL 15 from Debian started here, two brokers, the five real agents over the real session DB; shared placements, drain, cookies, and a broker killed with its keys on a server.

use crate::farm::{
    authorized_keys_of, database_sessions, plain, rebuild_farm, select, server_of, Agents,
    CALL_TIMEOUT_MS, HEARTBEAT_MS, PROFILES, SESSION_DB,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{binary, free_port, start_broker};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const DB_PASSWORD: &str = "cluster-test-password-7d1f";

/// A PostgreSQL 15 cluster in a temporary directory, run as `postgres` on 127.0.0.1 and a
/// private port; stopped when dropped (also when the test fails).
struct Postgres {
    root: tempfile::TempDir,
    port: u16,
}

/// `command` run as the `postgres` account (runuser), which must succeed.
fn as_postgres(program: &str, arguments: &[&str]) -> String {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--", program])
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("runuser {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {arguments:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Postgres {
    fn start() -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::Builder::new()
            .prefix("x2gobroker-pg")
            .tempdir_in("/tmp")
            .unwrap();
        // postgres must reach its directories inside
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let account = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("the postgres account (postgresql-15)");
        for directory in ["data", "socket"] {
            let path = root.path().join(directory);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(&path, Some(account.uid), Some(account.gid)).unwrap();
        }
        let port = free_port();
        let postgres = Postgres { root, port };
        let data = postgres.path("data");
        as_postgres(
            &format!("{PG_BIN}/initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=100",
            postgres.path("socket")
        );
        as_postgres(
            &format!("{PG_BIN}/pg_ctl"),
            &[
                "-D",
                &data,
                "-l",
                &postgres.path("data/server.log"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        postgres.psql(
            "postgres",
            &format!("CREATE ROLE x2gobroker LOGIN PASSWORD '{DB_PASSWORD}'"),
        );
        postgres.psql("postgres", "CREATE DATABASE x2gobroker OWNER x2gobroker");
        postgres
    }

    /// `pg_ctl start` on the same directory and port (after [`Postgres::stop`]).
    fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.path("socket")
        );
        as_postgres(
            &format!("{PG_BIN}/pg_ctl"),
            &[
                "-D",
                &self.path("data"),
                "-l",
                &self.path("data/server.log"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m fast`: every connection is closed.
    fn stop(&self) {
        as_postgres(
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", &self.path("data"), "-m", "fast", "-w", "stop"],
        );
    }

    fn path(&self, name: &str) -> String {
        self.root.path().join(name).display().to_string()
    }

    /// One statement through the unix socket as the superuser: its rows, `|`-separated.
    fn psql(&self, database: &str, sql: &str) -> String {
        as_postgres(
            "psql",
            &[
                "-h",
                &self.path("socket"),
                "-p",
                &self.port.to_string(),
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        )
    }

    fn query(&self, sql: &str) -> String {
        self.psql("x2gobroker", sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl")])
            .args(["-D", &self.path("data"), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Lifetime of the one-time keys, the cleanup period and the lease of these tests.
const KEY_LIFETIME_S: u64 = 2;
const CLEANUP_MS: u64 = 1000;
const LEASE_TTL_MS: u64 = 1500;

/// The config of broker `name`: the farm tests' logins (auth-mech none, passwords required,
/// so that logins hand out cookies), short keys, its own admin port and state directories,
/// and the one shared `[cluster]`.
fn cluster_config(
    agents: &Agents,
    work: &Path,
    name: &str,
    admin_port: u16,
    postgres: &Postgres,
) -> PathBuf {
    let password_file = work.join("db.password");
    std::fs::write(&password_file, format!("{DB_PASSWORD}\n")).unwrap();
    let text = format!(
        "[global]\nrequire-password = true\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n\
         [farm]\nagent-port = {port}\nagent-token-file = {token}\nheartbeat-ms = {HEARTBEAT_MS}\n\
         call-timeout-ms = {CALL_TIMEOUT_MS}\nautologin-key-lifetime = {KEY_LIFETIME_S}\n\
         pending-placement-ttl = 600\nstate-directory = {work}/farm-{name}\n\n\
         [admin]\nbind = 127.0.0.1:{admin_port}\nstate-directory = {work}/admin-{name}\naudit-log = {work}/audit-{name}.log\n\n\
         [cluster]\ndatabase-url = postgresql://x2gobroker@127.0.0.1:{pg_port}/x2gobroker\n\
         password-file = {password}\nname = broker-{name}\ncleanup-interval-ms = {CLEANUP_MS}\n\
         lease-ttl-ms = {LEASE_TTL_MS}\ndegraded-after-ms = 3000\n",
        port = agents.port,
        token = agents.token_file.display(),
        work = work.display(),
        pg_port = postgres.port,
        password = password_file.display(),
    );
    let path = work.join(format!("x2gobroker-{name}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

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

/// Whether `admin_port`'s broker has `server` drained.
fn drained_at(admin_port: u16, server: &str) -> bool {
    let (code, text) = ctl(admin_port, &["--json", "server", server]);
    assert_eq!(code, 0, "{text}");
    let state: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    state["drained"] == true
}

/// The profile host of a `SERVER:` answer (`127.0.0.1N:22` is x2go-nodeN).
fn node_name(answer: &str) -> String {
    let server = server_of(answer);
    let node = server
        .strip_prefix("127.0.0.1")
        .and_then(|rest| rest.strip_suffix(":22"))
        .unwrap_or_else(|| panic!("a farm server in {answer:?}"));
    format!("x2go-node{node}")
}

/// The profile host a session DB row's server stands for (x2go-nodeN, maybe with a domain).
fn session_node(server: &str) -> String {
    server.split('.').next().unwrap_or(server).to_string()
}

/// A login with a password: the answer's status and its AUTHID.
async fn login(port: u16, user: &str) -> (u16, Option<String>) {
    let body = format!("task=listsessions&user={user}&password=anything");
    authid_answer(port, &body).await
}

/// A request with a cookie only: the answer's status and its next AUTHID.
async fn with_cookie(port: u16, user: &str, cookie: &str) -> (u16, Option<String>) {
    let body = format!("task=listsessions&user={user}&authid={cookie}");
    authid_answer(port, &body).await
}

async fn authid_answer(port: u16, body: &str) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let authid = text
        .lines()
        .find_map(|line| line.strip_prefix("AUTHID:"))
        .map(str::to_string);
    (status, authid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_on_one_postgresql_share_placements_drain_cookies_and_keys() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let started = Instant::now();
    let postgres = Postgres::start();
    println!("cluster: PostgreSQL 15 up in {:?}", started.elapsed());
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles = work.path().join("profiles.ini");
    std::fs::write(
        &profiles,
        format!(
            "{PROFILES}\n[auto5]\nname = Farm of five, autologin\n\
             host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n\
             broker-session-autologin = true\n"
        ),
    )
    .unwrap();
    let (admin_a, admin_b) = (free_port(), free_port());
    let config_a = cluster_config(&agents, work.path(), "a", admin_a, &postgres);
    let config_b = cluster_config(&agents, work.path(), "b", admin_b, &postgres);
    let (directory_a, directory_b) = (work.path().join("a"), work.path().join("b"));
    for directory in [&directory_a, &directory_b] {
        std::fs::create_dir_all(directory).unwrap();
    }
    for name in ["a", "b"] {
        std::fs::create_dir_all(work.path().join(format!("farm-{name}"))).unwrap();
    }
    // both start together: the schema is applied once, under the migration lock
    let (mut broker_a, broker_b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            start_broker(
                &config_a,
                &profiles,
                &directory_a,
                &directory_a.join("cookies"),
                &[],
            )
        });
        let b = scope.spawn(|| {
            start_broker(
                &config_b,
                &profiles,
                &directory_b,
                &directory_b.join("cookies"),
                &[],
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let (port_a, port_b) = (broker_a.address.port(), broker_b.address.port());
    // every server up at both brokers (their admin listeners answer once they are ready:
    // joined the cluster, farm supervised)
    for admin_port in [admin_a, admin_b] {
        let waiting = Instant::now();
        loop {
            assert!(
                waiting.elapsed() < Duration::from_secs(15),
                "broker with admin port {admin_port} not ready"
            );
            let (code, text) = ctl(admin_port, &["--json", "state"]);
            if code != 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let state: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            if crate::admin::farm_nodes_up(&state) == 5 {
                break;
            }
            assert!(waiting.elapsed() < Duration::from_secs(15), "{state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "cluster: two brokers and five agents up in {:?}",
        started.elapsed()
    );
    assert_eq!(
        postgres
            .query("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")
            .trim(),
        "1,2,3"
    );

    // 1. 40 new-session logins split over both brokers; for half of them the listing at one
    //    broker and the selection at the other
    let storm_started = Instant::now();
    let mut storm = Vec::new();
    for index in 0..40 {
        let user = format!("x2gocl{index}");
        let (list_port, select_port) = match index % 4 {
            0 => (Some(port_a), port_b),
            1 => (Some(port_b), port_a),
            2 => (None, port_a),
            _ => (None, port_b),
        };
        storm.push(tokio::spawn(async move {
            if let Some(list_port) = list_port {
                let listing = plain(
                    list_port,
                    &format!("task=listsessions&user={user}&password=x"),
                )
                .await;
                assert!(listing.contains("Access granted"), "{listing}");
            }
            let answer = plain(
                select_port,
                &format!("task=selectsession&sid=farm5&user={user}&password=x"),
            )
            .await;
            (user, node_name(&answer))
        }));
    }
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for handle in storm {
        let (user, node) = handle.await.unwrap();
        chosen.insert(user, node);
    }
    println!(
        "cluster: 40 logins over two brokers in {:?}",
        storm_started.elapsed()
    );
    // 2. ten users select at both brokers at once: one placement each, the same server
    let mut doubles = Vec::new();
    for index in 0..10 {
        let user = format!("x2godup{index}");
        doubles.push(tokio::spawn(async move {
            let body = format!("task=selectsession&sid=farm5&user={user}&password=x");
            let (at_a, at_b) = tokio::join!(plain(port_a, &body), plain(port_b, &body));
            (user, node_name(&at_a), node_name(&at_b))
        }));
    }
    for handle in doubles {
        let (user, node_a, node_b) = handle.await.unwrap();
        assert_eq!(node_a, node_b, "{user}: two brokers, two servers");
        chosen.insert(user, node_a);
    }
    let rows = postgres.query("SELECT username, server FROM placements ORDER BY username");
    let placed: BTreeMap<String, String> = rows
        .lines()
        .filter_map(|line| line.split_once('|'))
        .map(|(user, server)| (user.to_string(), server.to_string()))
        .collect();
    assert_eq!(placed.len(), 50, "one placement per user: {rows}");
    assert_eq!(placed, chosen, "the rows are the answers");
    // every server's sessions plus placements within ±1 of the mean
    let mut load: BTreeMap<String, usize> = (1..=5)
        .map(|node| (format!("x2go-node{node}"), 0))
        .collect();
    for (_, server, _, _) in database_sessions() {
        if let Some(count) = load.get_mut(&session_node(&server)) {
            *count += 1;
        }
    }
    let sessions: usize = load.values().sum();
    for server in placed.values() {
        *load.get_mut(server).unwrap() += 1;
    }
    let total: usize = load.values().sum();
    let mean = total as f64 / 5.0;
    println!("cluster: sessions {sessions} + placements 50 per server: {load:?} (mean {mean})");
    for (server, count) in &load {
        assert!(
            (*count as f64 - mean).abs() <= 1.0,
            "{server}: {count} is not within 1 of {mean}: {load:?}"
        );
    }

    // 3. a server drained through A is never chosen by B
    let (code, text) = ctl(admin_a, &["drain", "x2go-node1"]);
    assert_eq!((code, text.trim()), (0, "x2go-node1: drained"));
    let drained = Instant::now();
    while !drained_at(admin_b, "x2go-node1") {
        assert!(
            drained.elapsed() < Duration::from_secs(2),
            "the drain did not reach B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "cluster: drain at A held at B after {:?}",
        drained.elapsed()
    );
    for index in 0..15 {
        let answer = select(port_b, &format!("x2godrain{index}"), "farm5").await;
        assert_ne!(node_name(&answer), "x2go-node1", "drained: {answer}");
    }

    // 4. every cookie from A is accepted by B, once
    for index in 0..10 {
        let user = format!("x2gocookie{index}");
        let (status, from_a) = login(port_a, &user).await;
        assert_eq!(status, 200);
        let from_a = from_a.expect("a cookie from A");
        let (status, from_b) = with_cookie(port_b, &user, &from_a).await;
        assert_eq!(status, 200, "A's cookie at B");
        let (status, _) = with_cookie(port_a, &user, &from_a).await;
        assert_eq!(status, 401, "a cookie is used once, at whichever broker");
        let (status, _) = with_cookie(port_a, &user, &from_b.expect("a cookie from B")).await;
        assert_eq!(status, 200, "B's cookie at A");
    }
    let stored = postgres.query(
        "SELECT count(*) FROM cookies WHERE username LIKE 'x2gocookie%' AND length(hash) = 32",
    );
    assert_eq!(stored.trim(), "10", "one hashed cookie per user left");

    // 5. kill -9 of A right after it installed a one-time key: B removes it
    let keys_file = authorized_keys_of("x2gocarol");
    let key_lines = || -> Vec<String> {
        std::fs::read_to_string(&keys_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let before = key_lines();
    let auto = select(port_a, "x2gocarol", "auto5").await;
    assert!(auto.contains("-----BEGIN"), "a key pair handed out: {auto}");
    let installed: Vec<String> = key_lines()
        .into_iter()
        .filter(|line| !before.contains(line))
        .collect();
    assert_eq!(
        installed.len(),
        1,
        "one new key on the server: {installed:?}"
    );
    let installed = installed[0].clone();
    let pid = nix::unistd::Pid::from_raw(broker_a.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let _ = broker_a.child.wait();
    drop(broker_a);
    // every later login through B succeeds
    for index in 0..10 {
        let user = format!("x2goafter{index}");
        let (status, _) = login(port_b, &user).await;
        assert_eq!(status, 200);
        let answer = select(port_b, &user, "farm5").await;
        assert!(answer.contains("SERVER:"), "{answer}");
        assert_ne!(node_name(&answer), "x2go-node1");
    }
    // the key's lifetime, then the cleanup period; the lease A may have held lapses meanwhile
    let bound = Duration::from_millis(KEY_LIFETIME_S * 1000 + CLEANUP_MS + LEASE_TTL_MS + 1000);
    while key_lines().contains(&installed) {
        assert!(
            killed.elapsed() < bound,
            "A's key still on the server after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "cluster: the killed broker's key removed by B after {:?} (bound {bound:?})",
        killed.elapsed()
    );
    assert_eq!(
        postgres.query("SELECT count(*) FROM autologin_keys").trim(),
        "0"
    );
    let holder = postgres.query("SELECT holder FROM leases WHERE job = 'cleanup'");
    assert_eq!(holder.trim(), "broker-b");

    // 6. audit events of both brokers in the shared table (each also keeps its own file)
    let audited = postgres.query(
        "SELECT count(DISTINCT broker) || ' ' || count(*) FILTER (WHERE event->>'event' = 'drain') FROM audit_events",
    );
    assert_eq!(audited.trim(), "2 1", "both brokers' events, one drain");

    // 7. PostgreSQL stopped: B degrades (logins and new sessions go on, counted locally;
    //    cookies verify where they were issued; audit events spooled), and recovers by itself
    postgres.stop();
    let stopped = Instant::now();
    for index in 0..10 {
        let user = format!("x2gooutage{index}");
        let (status, cookie) = login(port_b, &user).await;
        assert_eq!(status, 200, "a login while the database is down");
        let (status, _) = with_cookie(port_b, &user, &cookie.unwrap()).await;
        assert_eq!(status, 200, "B's own cookie while the database is down");
        let answer = select(port_b, &user, "farm5").await;
        assert!(answer.contains("SERVER:"), "{answer}");
        assert_ne!(
            node_name(&answer),
            "x2go-node1",
            "the drain holds: {answer}"
        );
    }
    println!(
        "cluster: 10 logins with cookies and selections at B while PostgreSQL was down in {:?}",
        stopped.elapsed()
    );
    let metrics_b = || async move {
        reqwest::get(format!("http://127.0.0.1:{admin_b}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        metrics_b().await.contains("x2gobroker_cluster_degraded 1"),
        "the degraded gauge"
    );
    postgres.start_again();
    let restarted = Instant::now();
    while !metrics_b().await.contains("x2gobroker_cluster_degraded 0") {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "B did not leave degraded mode"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "cluster: B back to shared mode {:?} after PostgreSQL restarted",
        restarted.elapsed()
    );
    // the spooled events are flushed: the outage's logins are in the table
    while postgres
        .query("SELECT count(DISTINCT event->>'user') FROM audit_events WHERE event->>'user' LIKE 'x2gooutage%' AND event->>'event' = 'login'")
        .trim()
        != "10"
    {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "the spooled audit events were not flushed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // shared again: a placement is a row
    let answer = select(port_b, "x2goback0", "farm5").await;
    assert_eq!(
        postgres
            .query("SELECT server FROM placements WHERE username = 'x2goback0'")
            .trim(),
        node_name(&answer)
    );

    drop(broker_b);
    drop(agents);
    drop(postgres);
    rebuild_farm();
    println!("cluster: whole test {:?}", started.elapsed());
}

/// `[cluster]` with a password in the URL, or without a URL, is refused at start-up and by
/// `--check-config`; without `[cluster]` no database is needed (the other tests).
#[test]
fn a_cluster_section_that_cannot_be_used_is_refused() {
    let work = tempfile::tempdir().unwrap();
    for (section, problem) in [
        (
            "[cluster]\ndatabase-url = postgresql://x2gobroker:secret@127.0.0.1:1/x2gobroker\n",
            "holds a password",
        ),
        ("[cluster]\nname = b1\n", "database-url is needed"),
    ] {
        let config = work.path().join("x2gobroker.conf");
        let text = format!(
            "[admin]\nbind =\naudit-log = {}/audit.log\nstate-directory = {}\n\n{section}",
            work.path().display(),
            work.path().display()
        );
        std::fs::write(&config, &text).unwrap();
        let output = Command::new(binary("x2gobroker"))
            .arg("--check-config")
            .arg("-C")
            .arg(&config)
            .env("X2GOBROKER_SESSIONPROFILES", work.path().join("none.ini"))
            .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(64), "{stdout}");
        assert!(stdout.contains(problem), "{stdout}");
        let port = free_port();
        let status = Command::new(binary("x2gobroker-daemon"))
            .arg("-C")
            .arg(&config)
            .arg("-b")
            .arg(format!("127.0.0.1:{port}"))
            .env("X2GOBROKER_SESSIONPROFILES", work.path().join("none.ini"))
            .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
            .env("X2GOBROKER_COOKIE_DIRECTORY", work.path().join("cookies"))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(64), "{text}");
    }
}
