//! The live farm end to end: five real agents on the real session DB, the broker's actors, resume/take-over/balance.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{
    binary, broker_with_config, free_port, hold_farm_lock, workspace_root, Daemon,
};

/// Tests that rebuild or change the X2Go session database run one at a time.
pub static SESSION_DB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Rebuilds the fixture session DB (x2goalice: R on node1, S on node2; x2gobob: R on nodes 1–3;
/// x2gocarol: none).
pub fn rebuild_farm() {
    // other processes using the session DB (another run, the agent's tests) wait for us
    hold_farm_lock();
    let status = Command::new(workspace_root().join("tests/fixtures/x2go-farm.sh"))
        .env("FARM_QUIET", "1")
        .status()
        .expect("tests/fixtures/x2go-farm.sh");
    assert!(status.success(), "fixture failed");
}

/// Sessions in the DB as `(session id, server, status, user)`.
pub fn database_sessions() -> Vec<(String, String, String, String)> {
    let output = Command::new("x2golistsessions_root")
        .arg("--all-servers")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            (fields.len() >= 12).then(|| {
                (
                    fields[1].into(),
                    fields[3].into(),
                    fields[4].into(),
                    fields[11].into(),
                )
            })
        })
        .collect()
}

/// Five `x2gobroker-agentd`, one per server name, on 127.0.0.11–15 at one port.
pub struct Agents {
    pub port: u16,
    pub token_file: std::path::PathBuf,
    pub daemons: BTreeMap<u8, Daemon>,
}

impl Agents {
    pub fn start(directory: &std::path::Path) -> Agents {
        let every_200_ms: Vec<(u8, u32)> = (1..=5).map(|node| (node, 200)).collect();
        Agents::start_polling(directory, &every_200_ms)
    }

    /// The agents of `nodes` only, each polling its session list every `poll_interval_ms`
    /// (each poll runs `x2golistsessions_root`, about 0.3 s of CPU).
    pub fn start_polling(directory: &std::path::Path, nodes: &[(u8, u32)]) -> Agents {
        let token_file = directory.join("agent.token");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap();
        std::io::Write::write_all(&mut file, b"farm-test-token-0123456789abcdef\n").unwrap();
        let port = free_port();
        let mut agents = Agents {
            port,
            token_file,
            daemons: BTreeMap::new(),
        };
        for (node, poll_interval_ms) in nodes {
            agents.start_node_polling(*node, *poll_interval_ms);
        }
        agents
    }

    pub fn start_node(&mut self, node: u8) {
        self.start_node_polling(node, 200);
    }

    pub fn start_node_polling(&mut self, node: u8, poll_interval_ms: u32) {
        let address = format!("127.0.0.{}:{}", 10 + node, self.port);
        let mut command = Command::new(binary("x2gobroker-agentd"));
        command
            .args([
                "--listen",
                &address,
                "--server-name",
                &format!("x2go-node{node}"),
                "--poll-interval-ms",
                &poll_interval_ms.to_string(),
            ])
            .arg("--token-file")
            .arg(&self.token_file);
        self.daemons
            .insert(node, Daemon::start(command, address.parse().unwrap()));
    }

    pub fn kill_node(&mut self, node: u8) {
        self.daemons.remove(&node);
    }

    /// Sends `signal` to a node's agent (SIGSTOP: it hangs, keeping its sockets open).
    pub fn signal_node(&self, node: u8, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.daemons[&node].child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

/// The live farm's timing in these tests (the machine may be loaded: other builds).
pub const HEARTBEAT_MS: u64 = 500;
pub const CALL_TIMEOUT_MS: u64 = 1500;

pub fn farm_config(agents: &Agents) -> String {
    format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[farm]\nagent-port = {}\nagent-token-file = {}\n\
         heartbeat-ms = {HEARTBEAT_MS}\ncall-timeout-ms = {CALL_TIMEOUT_MS}\n",
        agents.port,
        agents.token_file.display()
    )
}

pub const PROFILES: &str = "[DEFAULT]\nuser = BROKER_USER\n\n[farm5]\nname = Farm of five\n\
    host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n\
    command = XFCE\n\n[pair4]\nname = node4 and a server without agent\nhost = x2go-node4 (127.0.0.14), x2go-void (127.0.0.17)\n\n\
    [pair5]\nname = node5 and a server without agent\nhost = x2go-node5 (127.0.0.15), x2go-void (127.0.0.17)\n\n[with-hung]\nname = One good, one hung agent\nhost = x2go-node1 (127.0.0.11), x2go-hung (127.0.0.16)\n";

pub async fn plain(port: u16, body: &str) -> String {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn select(port: u16, user: &str, profile: &str) -> String {
    plain(
        port,
        &format!("task=selectsession&sid={profile}&user={user}&login={user}"),
    )
    .await
}

/// How long until `profile` answers no-X2Go-Server-available (its agent-backed host is down).
pub async fn time_until_down(port: u16, profile: &str) -> Duration {
    let started = Instant::now();
    loop {
        if server_of(&select(port, "x2gocarol", profile).await)
            .starts_with("no-X2Go-Server-available:")
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{profile} still selected after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `user`'s authorized_keys file (the agents write the autologin keys there).
pub fn authorized_keys_of(user: &str) -> std::path::PathBuf {
    let account = nix::unistd::User::from_name(user)
        .unwrap()
        .expect("the fixture's users exist");
    account.dir.join(".x2go/authorized_keys")
}

pub fn server_of(answer: &str) -> String {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("SERVER:"))
        .unwrap_or("")
        .to_string()
}

/// The session line a selection hands out (`SESSION_INFO:`), split into its fields.
pub fn session_info_fields(answer: &str) -> Vec<String> {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("SESSION_INFO:"))
        .unwrap_or_else(|| panic!("SESSION_INFO in {answer}"))
        .split('|')
        .map(str::to_string)
        .collect()
}

/// How long the scenario's steps took.
#[derive(Debug)]
pub struct ScenarioTimes {
    pub resume: Duration,
    pub listing: Duration,
    pub takeover: Duration,
    pub new_session: Duration,
}

/// What every agent transport (gRPC, the Perl agent over SSH, LOCAL) must give on the
/// fixture's session DB, through profile `profile` whose hosts `x2go-nodeN` are `127.0.0.1N`
/// with X2Go's SSH on `ssh_port`: alice's suspended session on node2 is resumed with its
/// line and listed as `status=S` there; bob's running sessions are taken over (the one
/// handed out is suspended in the DB, on the server it names); carol, who has none, gets a
/// server of the farm without a session line. Call it on a farm that has answered once.
pub async fn transport_scenario(
    port: u16,
    profile: &str,
    ssh_port: u16,
    label: &str,
) -> ScenarioTimes {
    let started = Instant::now();
    let alice = select(port, "x2goalice", profile).await;
    let resume = started.elapsed();
    assert_eq!(
        server_of(&alice),
        format!("127.0.0.12:{ssh_port}"),
        "{label}: {alice}"
    );
    let fields = session_info_fields(&alice);
    assert_eq!(
        (fields[3].as_str(), fields[4].as_str(), fields[11].as_str()),
        ("x2go-node2", "S", "x2goalice"),
        "{label}: {alice}"
    );
    let started = Instant::now();
    let listing = plain(port, "task=listsessions&user=x2goalice").await;
    let listing_time = started.elapsed();
    assert!(
        listing.contains("\nhost=x2go-node2\n") && listing.contains("\nstatus=S\n"),
        "{label}: {listing}"
    );
    let started = Instant::now();
    let bob = select(port, "x2gobob", profile).await;
    let takeover = started.elapsed();
    let bob_fields = session_info_fields(&bob);
    assert_eq!(bob_fields[4], "S", "{label}: {bob}");
    let node: u8 = bob_fields[3]
        .strip_prefix("x2go-node")
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("{label}: a node of the farm in {bob}"));
    assert_eq!(
        server_of(&bob),
        format!("127.0.0.{}:{ssh_port}", 10 + node),
        "{label}: {bob}"
    );
    let in_db = database_sessions()
        .into_iter()
        .find(|(id, ..)| *id == bob_fields[1])
        .expect("bob's session");
    assert_eq!(
        (in_db.1.as_str(), in_db.2.as_str()),
        (bob_fields[3].as_str(), "S"),
        "{label}: the DB shows the taken-over session suspended"
    );
    let started = Instant::now();
    let carol = select(port, "x2gocarol", profile).await;
    let new_session = started.elapsed();
    let carol_server = server_of(&carol);
    assert!(
        (11..=15).any(|last| carol_server == format!("127.0.0.{last}:{ssh_port}")),
        "{label}: {carol}"
    );
    assert!(!carol.contains("SESSION_INFO"), "{label}: {carol}");
    let times = ScenarioTimes {
        resume,
        listing: listing_time,
        takeover,
        new_session,
    };
    println!("{label}: {times:?}");
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_farm_resumes_takes_over_balances_and_survives_dead_agents() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let mut agents = Agents::start(work.path());
    // an agent that accepts connections and never answers
    let hung = std::net::TcpListener::bind(format!("127.0.0.16:{}", agents.port)).unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, PROFILES).unwrap();
    let (_broker_directory, broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles), &[]);
    let port = broker.address.port();

    // 1. the first request starts the supervisors and waits for every first report (the
    //    hung agent's at most heartbeat + call timeout)
    let started = Instant::now();
    let first = plain(port, "task=listsessions&user=x2goalice").await;
    let first_time = started.elapsed();
    println!("farm: first listing (supervisors starting) {first_time:?}");
    assert!(first_time < Duration::from_millis(HEARTBEAT_MS + CALL_TIMEOUT_MS + 1000));
    assert!(first.contains("\nstatus=S\n"), "{first}");
    // 2. resume, listing, take-over, new session: what every transport gives
    let times = transport_scenario(port, "farm5", 22, "farm over gRPC").await;
    // answered from live state; the take-over within its wait (3 s) plus a margin
    assert!(
        times.resume < Duration::from_secs(1)
            && times.listing < Duration::from_secs(1)
            && times.new_session < Duration::from_secs(1)
            && times.takeover < Duration::from_secs(5),
        "{times:?}"
    );
    // 3. no session: the least loaded healthy server (node4 and node5 are idle; ties by name,
    //    node5 when node4 is degraded after a late heartbeat on a loaded machine; the scenario
    //    placed carol once already)
    let carol = select(port, "x2gocarol", "farm5").await;
    assert!(
        ["127.0.0.14:22", "127.0.0.15:22"].contains(&server_of(&carol).as_str()),
        "{carol}"
    );

    // 4. a login storm of 20 sessionless users spreads over the servers
    let mut storm = Vec::new();
    for index in 0..20 {
        let user = format!("x2gonew{index}");
        storm.push(tokio::spawn(
            async move { select(port, &user, "farm5").await },
        ));
    }
    let mut per_server: BTreeMap<String, usize> = BTreeMap::new();
    for handle in storm {
        *per_server
            .entry(server_of(&handle.await.unwrap()))
            .or_default() += 1;
    }
    println!("farm: 20 concurrent new sessions: {per_server:?}");
    let idle_servers = 2;
    let bound = 20usize.div_ceil(idle_servers) + 1;
    assert!(
        per_server.values().all(|count| *count <= bound),
        "{per_server:?} exceeds {bound}"
    );
    assert_eq!(per_server.values().sum::<usize>(), 20);

    // 5. an agent that hangs (SIGSTOP: its stream falls silent) and one that is killed are
    //    marked down within heartbeat + timeout (1 s margin) and never selected;
    //    `pairN` = nodeN + a server without agent, so it answers no-X2Go-Server-available
    //    exactly when nodeN is down
    assert_eq!(
        server_of(&select(port, "x2gocarol", "pair4").await),
        "127.0.0.14:22"
    );
    assert_eq!(
        server_of(&select(port, "x2gocarol", "pair5").await),
        "127.0.0.15:22"
    );
    let bound = Duration::from_millis(HEARTBEAT_MS + CALL_TIMEOUT_MS + 1000);
    agents.signal_node(4, nix::sys::signal::Signal::SIGSTOP);
    let hung_down = time_until_down(port, "pair4").await;
    agents.kill_node(5);
    let killed_down = time_until_down(port, "pair5").await;
    println!(
        "farm: down after SIGSTOP {hung_down:?}, after kill {killed_down:?} (bound {bound:?})"
    );
    assert!(
        hung_down < bound && killed_down < bound,
        "{hung_down:?} {killed_down:?}"
    );
    for index in 0..10 {
        let server = server_of(&select(port, &format!("x2godown{index}"), "farm5").await);
        assert!(
            !server.starts_with("127.0.0.14") && !server.starts_with("127.0.0.15"),
            "a down server was selected: {server}"
        );
    }
    // the hung agent resumes: back after two reports (half-open)
    agents.signal_node(4, nix::sys::signal::Signal::SIGCONT);
    let resumed = Instant::now();
    while server_of(&select(port, "x2gocarol", "pair4").await) != "127.0.0.14:22" {
        assert!(
            resumed.elapsed() < Duration::from_secs(20),
            "node4 did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "farm: SIGCONT agent selected again after {:?}",
        resumed.elapsed()
    );

    // 6. restarting it brings it back (after the half-open probe)
    agents.start_node(5);
    let restarted = Instant::now();
    let mut back = false;
    while restarted.elapsed() < Duration::from_secs(20) {
        if server_of(&select(port, "x2goback", "farm5").await).starts_with("127.0.0.15") {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        back,
        "node5 was not selected again after its agent restarted"
    );
    println!(
        "farm: restarted agent selected again after {:?}",
        restarted.elapsed()
    );

    // 7. a hung agent (accepts, never answers) does not slow a selection beyond its timeout
    let started = Instant::now();
    let answer = select(port, "x2gocarol", "with-hung").await;
    let hung_time = started.elapsed();
    assert_eq!(server_of(&answer), "127.0.0.11:22", "{answer}");
    assert!(
        hung_time < Duration::from_millis(CALL_TIMEOUT_MS + 1000),
        "selection took {hung_time:?} with a hung agent"
    );
    let started = Instant::now();
    let _ = select(port, "x2gocarol", "with-hung").await;
    println!(
        "farm: selection with a hung agent {hung_time:?} (first), {:?} (then)",
        started.elapsed()
    );
    drop(hung);
    drop(broker);
    drop(agents);
    rebuild_farm();
}

#[test]
fn python_x2go_receives_the_resumed_session() {
    let _db = SESSION_DB.blocking_lock();
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles = work.path().join("profiles.ini");
    std::fs::write(&profiles, PROFILES).unwrap();
    let (_broker_directory, broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles), &[]);
    let url = format!("http://127.0.0.1:{}/json/inifile/", broker.address.port());
    let output = Command::new("/usr/bin/python3")
        .arg(workspace_root().join("tests/python/x2go_broker_client.py"))
        .args([url.as_str(), "x2goalice", "", "farm5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("{stdout} {}", String::from_utf8_lossy(&output.stderr)));
    let selected = &result["selected"];
    assert_eq!(selected["server"], "127.0.0.12", "{result}");
    let info = selected["session_info"].as_str().expect("session_info");
    assert!(
        info.contains("|x2go-node2|S|") && info.contains("|x2goalice|"),
        "{info}"
    );
    println!(
        "python x2go: resumed session {}",
        info.split('|').nth(1).unwrap_or("")
    );
}

/// An sshd on 127.0.0.11–15 (one port) that lets the broker's key in as `x2gobroker`, with a
/// forced command to the reference Perl agent from Debian (or another program).
pub struct AgentSshd {
    pub child: std::process::Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl Drop for AgentSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const PERL_AGENT: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The `x2gobroker` account with a login shell (sshd runs forced commands through it).
fn ensure_agent_account() {
    let entry = || {
        let output = Command::new("getent")
            .args(["passwd", "x2gobroker"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    if entry().is_empty() {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/x2gobroker",
                "--shell",
                "/bin/bash",
                "x2gobroker",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "useradd x2gobroker");
    }
    if !entry().ends_with("/bin/bash") && !entry().ends_with("/bin/sh") {
        let status = Command::new("usermod")
            .args(["-s", "/bin/bash", "x2gobroker"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    x2gobroker_e2e::unlock_for_ssh("x2gobroker");
}

pub fn ssh_keygen(path: &std::path::Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "x2gobroker-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
}

impl AgentSshd {
    fn start(directory: &std::path::Path, broker_public_key: &str) -> AgentSshd {
        AgentSshd::start_with(directory, broker_public_key, free_port(), PERL_AGENT)
    }

    /// An sshd on `port` whose forced command is `forced_command`; the host key in
    /// `directory` is made once and kept, so a restarted sshd is the same known host.
    pub fn start_with(
        directory: &std::path::Path,
        broker_public_key: &str,
        port: u16,
        forced_command: &str,
    ) -> AgentSshd {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            x2gobroker_e2e::is_root(),
            "sshd needs root (CI runs as root)"
        );
        assert!(
            std::path::Path::new(PERL_AGENT).exists(),
            "{PERL_AGENT} (Debian package x2gobroker-agent)"
        );
        ensure_agent_account();
        std::fs::create_dir_all("/run/sshd").unwrap();
        // sshd reads the authorized keys as x2gobroker
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host_key = directory.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            ssh_keygen(&host_key);
        }
        let authorized = directory.join("authorized_keys");
        std::fs::write(
            &authorized,
            format!(
                "command=\"{forced_command}\",no-pty,no-port-forwarding,no-X11-forwarding,no-agent-forwarding {broker_public_key}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        let listen: String = (11..=15)
            .map(|last| format!("ListenAddress 127.0.0.{last}\n"))
            .collect();
        let config = directory.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n{listen}HostKey {}\nPidFile {}\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAuthorizedKeysFile {}\n\
                 AllowUsers x2gobroker\nPermitRootLogin no\nStrictModes no\nMaxSessions 32\n\
                 MaxStartups 64\nLogLevel VERBOSE\nX11Forwarding no\n",
                host_key.display(),
                directory.join("sshd.pid").display(),
                authorized.display()
            ),
        )
        .unwrap();
        let log = directory.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e", "-E"])
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sshd");
        // owned before the wait, so that a failed wait still stops it (Drop)
        let sshd = AgentSshd { child, port, log };
        for last in 11..=15 {
            let address = format!("127.0.0.{last}:{port}").parse().unwrap();
            assert!(
                x2gobroker_e2e::wait_for_port(address, Duration::from_secs(10)),
                "sshd did not listen on {address}: {}",
                std::fs::read_to_string(&sshd.log).unwrap_or_default()
            );
        }
        sshd
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssh_fallback_to_the_perl_agent_gives_the_same_answers() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::Builder::new()
        .prefix("x2gofarm")
        .tempdir_in("/tmp")
        .unwrap();
    let broker_key = work.path().join("broker_key");
    ssh_keygen(&broker_key);
    let public_key = std::fs::read_to_string(work.path().join("broker_key.pub")).unwrap();
    let sshd = AgentSshd::start(work.path(), public_key.trim());
    // RejectPolicy (the default): the servers' host keys must be known
    let host_public_key =
        std::fs::read_to_string(work.path().join("ssh_host_ed25519_key.pub")).unwrap();
    let host_public_key = host_public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts: String = (11..=15)
        .map(|last| format!("[127.0.0.{last}]:{} {host_public_key}\n", sshd.port))
        .collect();
    std::fs::write(work.path().join("known_hosts"), known_hosts).unwrap();
    let control = work.path().join("c");
    std::fs::create_dir_all(&control).unwrap();
    // gRPC: nothing listens on that port. The five servers are one machine, which the storm
    // below loads with ~60 Perl agent runs: a call timeout that a loaded CI machine cannot
    // miss keeps the servers up, so the storm shows the spreading and not the health checks.
    let config = format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[farm]\nagent-port = {}\nheartbeat-ms = 1000\n\
         call-timeout-ms = 10000\nssh-key-file = {}\nssh-known-hosts-file = {}\n\
         ssh-config-file = /dev/null\nssh-control-directory = {}\n",
        free_port(),
        broker_key.display(),
        work.path().join("known_hosts").display(),
        control.display()
    );
    let profiles = work.path().join("profiles.ini");
    std::fs::write(
        &profiles,
        format!(
            "[DEFAULT]\nuser = BROKER_USER\n\n[farm5]\nname = Farm of five over SSH\nsshport = {}\n\
             host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n\
             command = XFCE\n",
            sshd.port
        ),
    )
    .unwrap();
    let (_broker_directory, broker) = broker_with_config(&config, Some(&profiles), &[]);
    let port = broker.address.port();
    let ssh_port = sshd.port;

    // the supervisors fall back to SSH: wait for the first answers
    let started = Instant::now();
    let mut alice = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        alice = select(port, "x2goalice", "farm5").await;
        if server_of(&alice).starts_with("127.0.0.12") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "farm over ssh: first resume after {:?} (gRPC refused, SSH masters made)",
        started.elapsed()
    );
    assert_eq!(
        server_of(&alice),
        format!("127.0.0.12:{ssh_port}"),
        "{alice}\n{}",
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    // resume, listing, take-over through the Perl agent, new session
    transport_scenario(port, "farm5", ssh_port, "farm over ssh").await;

    // 4. a small login storm spreads evenly: the Perl agent reports no session counts, the
    //    placements count (the profile does not use the load checker, so the servers' load
    //    factors, sampled at different moments of the storm, do not weigh in)
    let mut storm = Vec::new();
    for index in 0..10 {
        let user = format!("x2gonew{index}");
        storm.push(tokio::spawn(
            async move { select(port, &user, "farm5").await },
        ));
    }
    let mut per_server: BTreeMap<String, usize> = BTreeMap::new();
    for handle in storm {
        *per_server
            .entry(server_of(&handle.await.unwrap()))
            .or_default() += 1;
    }
    println!("farm over ssh: 10 concurrent new sessions: {per_server:?}");
    assert!(
        per_server
            .values()
            .all(|count| *count <= 10usize.div_ceil(5) + 1),
        "{per_server:?}"
    );
    assert!(
        !per_server.contains_key("no-X2Go-Server-available"),
        "{per_server:?}"
    );
    let log = std::fs::read_to_string(&sshd.log).unwrap_or_default();
    assert!(
        log.contains("Accepted publickey for x2gobroker"),
        "sshd log: {log}"
    );
    drop(broker);
    close_ssh_masters(&control);
    drop(sshd);
    rebuild_farm();
}

/// Ends the SSH master connections the killed broker left in `control` (they would keep the
/// test's output pipes open until their idle timeout).
pub fn close_ssh_masters(control: &std::path::Path) {
    for entry in std::fs::read_dir(control).into_iter().flatten().flatten() {
        let socket = entry.path().join("master");
        if socket.exists() {
            let _ = Command::new("ssh")
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", "x2go-farm"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_agent_mode_through_the_farm() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let profiles = work.path().join("profiles.ini");
    std::fs::write(
        &profiles,
        "[DEFAULT]\nuser = BROKER_USER\n\n[farm5]\nname = Farm of five, local agent\n\
         broker-agent-query-mode = LOCAL\n\
         host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n",
    )
    .unwrap();
    let config = format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[farm]\nheartbeat-ms = 1000\ncall-timeout-ms = 3000\n\
         agent-command = {PERL_AGENT}\n"
    );
    let (_broker_directory, broker) = broker_with_config(&config, Some(&profiles), &[]);
    let port = broker.address.port();
    let started = Instant::now();
    let first = plain(port, "task=listsessions&user=x2goalice").await;
    println!(
        "farm, LOCAL agent: first listing in {:?}",
        started.elapsed()
    );
    assert!(first.contains("\nstatus=S\n"), "{first}");
    transport_scenario(port, "farm5", 22, "farm, LOCAL agent").await;
    drop(broker);
    rebuild_farm();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_over_mutual_tls() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let directory = work.path();
    use x2gobroker_e2e::certs::{TestCa, Usage};
    let ca = TestCa::new(directory, "ca");
    ca.leaf("agent", &["x2go-node2"], Usage::Server);
    ca.leaf("broker", &[], Usage::Client);
    let port = free_port();
    let address = format!("127.0.0.12:{port}");
    let mut command = Command::new(binary("x2gobroker-agentd"));
    command
        .args(["--listen", &address, "--server-name", "x2go-node2"])
        .arg("--tls-cert")
        .arg(directory.join("agent.pem"))
        .arg("--tls-key")
        .arg(directory.join("agent.key"))
        .arg("--client-ca")
        .arg(directory.join("ca.pem"));
    let _agent = Daemon::start(command, address.parse().unwrap());
    let profiles = directory.join("profiles.ini");
    std::fs::write(
        &profiles,
        "[DEFAULT]\nuser = BROKER_USER\n\n[tls]\nname = one agent over mTLS\n\
         host = x2go-node2 (127.0.0.12), x2go-void (127.0.0.17)\n",
    )
    .unwrap();
    let base = format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\n\n[farm]\nagent-port = {port}\nheartbeat-ms = 500\n\
         call-timeout-ms = 1500\nagent-ca-file = {}\n",
        directory.join("ca.pem").display()
    );
    // with the broker's client certificate: the agent answers, the session is resumed
    let with_identity = format!(
        "{base}agent-client-cert = {}\nagent-client-key = {}\n",
        directory.join("broker.pem").display(),
        directory.join("broker.key").display()
    );
    let (_first, broker) = broker_with_config(&with_identity, Some(&profiles), &[]);
    let alice = select(broker.address.port(), "x2goalice", "tls").await;
    assert_eq!(server_of(&alice), "127.0.0.12:22", "{alice}");
    assert!(alice.contains("|x2go-node2|S|"), "{alice}");
    drop(broker);
    // without it (and without a token) the agent refuses the broker: no server
    let (_second, broker) = broker_with_config(&base, Some(&profiles), &[]);
    let refused = select(broker.address.port(), "x2goalice", "tls").await;
    assert_eq!(
        server_of(&refused),
        "no-X2Go-Server-available:22",
        "{refused}"
    );
    println!("farm over mTLS: resumed with the client certificate, refused without");
}
