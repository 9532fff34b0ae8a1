//! The drop-in switch end to end: the reference's SSH and LOCAL agent modes with no `[farm]` section, a broker that drops privileges to its daemon account, and the directory user `jdoe@uni.example` over gRPC, SSH and LOCAL.

use crate::farm::{
    database_sessions, farm_config, plain, rebuild_farm, server_of, session_info_fields,
    transport_scenario, Agents, SESSION_DB,
};
use crate::tools::{fresh_account, keygen, our_authorizer, Account};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{
    binary, broker_with_config, free_port, hold_farm_lock, unlock_for_ssh, workspace_root, Daemon,
    Sshd,
};

/// A user name as university directories (sssd, AD) produce them.
const DIRECTORY_USER: &str = "jdoe@uni.example";
/// The same, as X2Go Client sends it in a form (`@` percent-encoded).
const DIRECTORY_USER_IN_FORM: &str = "jdoe%40uni.example";

/// The test's broker daemon account (the real `x2gobroker` is never touched).
const DAEMON_ACCOUNT: &str = "x2godropin";
/// The servers' agent account (`X2GOBROKER_AGENT_USER`), in group x2gobroker like the real one.
const AGENT_ACCOUNT: &str = "x2godropinsrv";
/// The group of the setuid Perl agent (`/usr/lib/x2go/x2gobroker-agent`, 4750 root:x2gobroker),
/// the daemon's group as in the Debian packages.
const AGENT_GROUP: &str = "x2gobroker";

/// `[global]` as the farm tests have it, with the reference's agent mode and no `[farm]`.
fn reference_config(agent_query_mode: &str) -> String {
    format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\ndefault-agent-query-mode = {agent_query_mode}\n"
    )
}

/// Five servers `x2go-nodeN (127.0.0.1N)` with X2Go's SSH on `ssh_port` (none: 22), twice:
/// `farm5`, and `farm5-autologin` with `broker-session-autologin = true`.
fn profiles(ssh_port: Option<u16>) -> String {
    let port_line = ssh_port
        .map(|port| format!("sshport = {port}\n"))
        .unwrap_or_default();
    let hosts =
        "host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), \
                 x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n";
    format!(
        "[DEFAULT]\nuser = BROKER_USER\n\n[farm5]\nname = Farm of five\n{port_line}{hosts}command = XFCE\n\n\
         [farm5-autologin]\nname = Farm of five, autologin\n{port_line}{hosts}command = XFCE\n\
         broker-session-autologin = true\n"
    )
}

/// The account `jdoe@uni.example` (uid ≥ 1000, as the agents require), made with `useradd
/// --badname` and removed with its home when dropped.
struct DirectoryUser {
    home: PathBuf,
}

impl DirectoryUser {
    fn create() -> DirectoryUser {
        assert!(
            x2gobroker_e2e::is_root(),
            "creating accounts needs root (CI runs as root)"
        );
        if nix::unistd::User::from_name(DIRECTORY_USER)
            .unwrap()
            .is_none()
        {
            let output = Command::new("useradd")
                .args(["--badname", "--create-home", "--shell", "/bin/bash"])
                .arg(DIRECTORY_USER)
                .output()
                .expect("useradd");
            assert!(
                output.status.success(),
                "useradd --badname {DIRECTORY_USER}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let account = nix::unistd::User::from_name(DIRECTORY_USER)
            .unwrap()
            .expect("the account exists");
        assert!(account.uid.as_raw() >= 1000, "{account:?}");
        let _ = std::fs::remove_dir_all(account.dir.join(".x2go"));
        DirectoryUser { home: account.dir }
    }

    fn autologin_keys(&self) -> PathBuf {
        self.home.join(".x2go/authorized_keys")
    }
}

impl Drop for DirectoryUser {
    fn drop(&mut self) {
        remove_account(DIRECTORY_USER);
    }
}

/// Removes a test account and its home (a warning if it cannot: a process still runs as it).
fn remove_account(name: &str) {
    let output = Command::new("userdel").args(["-r", name]).output();
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) if output.status.code() == Some(6) => {} // no such account (any more)
        other => eprintln!("warning: userdel -r {name}: {other:?}"),
    }
}

/// Removes the test accounts made with [`fresh_account`] when dropped.
struct AccountsCleanup(&'static [&'static str]);

impl Drop for AccountsCleanup {
    fn drop(&mut self) {
        for name in self.0 {
            remove_account(name);
        }
    }
}

/// The fixture's session DB plus a suspended session of [`DIRECTORY_USER`] on x2go-node3
/// (`FARM_DIRECTORY_USER`, which the other tests do not set); its session id.
fn rebuild_farm_with_directory_user() -> String {
    hold_farm_lock();
    let status = Command::new(workspace_root().join("tests/fixtures/x2go-farm.sh"))
        .env("FARM_QUIET", "1")
        .env("FARM_DIRECTORY_USER", DIRECTORY_USER)
        .status()
        .expect("tests/fixtures/x2go-farm.sh");
    assert!(status.success(), "fixture failed");
    let sessions = database_sessions();
    let (session_id, ..) = sessions
        .iter()
        .find(|(_, _, _, user)| user == DIRECTORY_USER)
        .unwrap_or_else(|| panic!("no session of {DIRECTORY_USER} in {sessions:?}"))
        .clone();
    session_id
}

/// The `[profile]` section of a listing (up to the next section or the end marker).
fn listing_section(listing: &str, profile: &str) -> String {
    let header = format!("[{profile}]\n");
    let start = listing
        .find(&header)
        .unwrap_or_else(|| panic!("no {header} in {listing}"));
    let rest = &listing[start + header.len()..];
    let end = rest
        .find("\n[")
        .or_else(|| rest.find("END_USER_SESSIONS"))
        .unwrap_or(rest.len());
    format!("\n{}", &rest[..end])
}

/// The PEM private key an autologin selection hands out.
fn private_key_of(answer: &str) -> String {
    let begin = answer
        .find("-----BEGIN RSA PRIVATE KEY-----")
        .unwrap_or_else(|| panic!("no autologin key in {answer}"));
    let end_marker = "-----END RSA PRIVATE KEY-----";
    let end = answer[begin..].find(end_marker).expect("the key's end") + begin;
    format!("{}\n", &answer[begin..end + end_marker.len()])
}

/// The public key (`ssh-rsa <base64>`) of a PEM private key, as OpenSSH derives it.
fn public_key_of(private_pem: &str, directory: &Path) -> String {
    let path = directory.join("autologin_key");
    std::fs::write(&path, private_pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ssh-keygen -y: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What every transport must give `jdoe@uni.example`: its listing shows its suspended session
/// on x2go-node3, its selection resumes it (`SESSION_INFO`), and with autologin the one-time
/// key is in its `~/.x2go/authorized_keys` when the answer arrives. Prints the steps' times.
async fn directory_user_checks(
    port: u16,
    ssh_port: u16,
    user: &DirectoryUser,
    session_id: &str,
    directory: &Path,
    label: &str,
) {
    let started = Instant::now();
    let listing = plain(
        port,
        &format!("task=listsessions&user={DIRECTORY_USER_IN_FORM}"),
    )
    .await;
    let listing_time = started.elapsed();
    let section = listing_section(&listing, "farm5");
    assert!(
        section.contains("\nhost=x2go-node3\n") && section.contains("\nstatus=S\n"),
        "{label}: {listing}"
    );
    let select_form = |profile: &str| {
        format!(
            "task=selectsession&sid={profile}&user={DIRECTORY_USER_IN_FORM}&login={DIRECTORY_USER_IN_FORM}"
        )
    };
    let expected_server = format!("127.0.0.13:{ssh_port}");
    let check_resume = |answer: &str| {
        assert_eq!(server_of(answer), expected_server, "{label}: {answer}");
        let fields = session_info_fields(answer);
        assert_eq!(
            (
                fields[1].as_str(),
                fields[3].as_str(),
                fields[4].as_str(),
                fields[11].as_str()
            ),
            (session_id, "x2go-node3", "S", DIRECTORY_USER),
            "{label}: {answer}"
        );
    };
    let started = Instant::now();
    let answer = plain(port, &select_form("farm5")).await;
    let resume = started.elapsed();
    check_resume(&answer);
    assert!(
        !answer.contains("PRIVATE KEY"),
        "{label}: no key without autologin: {answer}"
    );

    let keys_file = user.autologin_keys();
    let started = Instant::now();
    let answer = plain(port, &select_form("farm5-autologin")).await;
    let autologin_resume = started.elapsed();
    check_resume(&answer);
    let public_key = public_key_of(&private_key_of(&answer), directory);
    let installed = std::fs::read_to_string(&keys_file).unwrap_or_default();
    assert!(
        installed.lines().any(|line| line.contains(&public_key)),
        "{label}: the autologin key {public_key} in {}: {installed:?}",
        keys_file.display()
    );
    let account = nix::unistd::User::from_name(DIRECTORY_USER)
        .unwrap()
        .unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&keys_file).unwrap());
    assert_eq!(
        owner,
        account.uid.as_raw(),
        "{label}: the key file is the user's"
    );
    println!(
        "{label}, {DIRECTORY_USER}: listing {listing_time:?}, resume {resume:?}, \
         autologin resume {autologin_resume:?}"
    );
}

/// A work directory under /tmp that the daemon account can read (its config and profiles).
fn readable_work_directory() -> tempfile::TempDir {
    let work = tempfile::Builder::new()
        .prefix("x2godropin")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    work
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// `x2gobroker-daemon --drop-privileges` started as root, running as `account` and group
/// [`AGENT_GROUP`], with the reference's environment; its log in `work/broker.log`.
fn start_dropped_broker(
    work: &Path,
    config: &str,
    profiles: &str,
    account: &Account,
    agent_user: Option<&str>,
) -> Daemon {
    let config_file = work.join("x2gobroker.conf");
    let profiles_file = work.join("x2gobroker-sessionprofiles.conf");
    write_readable(&config_file, config);
    write_readable(&profiles_file, profiles);
    let cookies = work.join("cookies");
    std::fs::create_dir_all(&cookies).unwrap();
    nix::unistd::chown(
        &cookies,
        Some(nix::unistd::Uid::from_raw(account.uid)),
        None,
    )
    .unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(binary("x2gobroker-daemon"));
    command
        .arg("--drop-privileges")
        .arg("-C")
        .arg(&config_file)
        .arg("-b")
        .arg(address.to_string())
        .current_dir(work)
        .env("X2GOBROKER_SESSIONPROFILES", &profiles_file)
        .env("X2GOBROKER_COOKIE_DIRECTORY", &cookies)
        .env("X2GOBROKER_DAEMON_USER", &account.name)
        .env("X2GOBROKER_DAEMON_GROUP", AGENT_GROUP)
        .env("RUST_LOG", "info")
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .env_remove("X2GOBROKER_DEFAULT_BACKEND")
        .env_remove("X2GOBROKER_CONFIG")
        .env_remove("X2GOBROKER_AGENT_CMD");
    match agent_user {
        Some(user) => command.env("X2GOBROKER_AGENT_USER", user),
        None => command.env_remove("X2GOBROKER_AGENT_USER"),
    };
    let broker = Daemon::start_logged(command, address, &work.join("broker.log"));
    // it really runs as the daemon account
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id())).unwrap();
    let uid_line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap_or_default();
    assert_eq!(
        uid_line.split_whitespace().nth(2),
        Some(account.uid.to_string().as_str()),
        "effective uid: {uid_line}"
    );
    broker
}

fn broker_log(work: &Path) -> String {
    std::fs::read_to_string(work.join("broker.log")).unwrap_or_default()
}

/// Waits (at most `bound`) for the first listing of alice that carries her suspended session.
async fn first_good_listing(port: u16, bound: Duration, work: &Path, label: &str) -> Duration {
    let started = Instant::now();
    loop {
        let listing = plain(port, "task=listsessions&user=x2goalice").await;
        if listing.contains("\nstatus=S\n") && listing.contains("\nhost=x2go-node2\n") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "{label}: no listing with alice's session within {bound:?}: {listing}\n{}",
            broker_log(work)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, then: the broker exits and no process of its account is left (its SSH master
/// connections are closed), so that the account can be removed.
fn stop_broker(mut broker: Daemon, account: &Account) {
    let status = broker.terminate().expect("the broker stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_of(account.uid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of {} left after the broker stopped: {left:?}",
            account.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The command lines of the processes running as `uid`.
fn processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        let real_uid = status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|uid| uid.parse::<u32>().ok());
        if real_uid == Some(uid) {
            let command_line = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&command_line).replace('\0', " "));
        }
    }
    found
}

/// Acceptance 1 of issue 11 for the HTTP daemon: a farm set up as the reference documents it
/// — `agent-query-mode = SSH`, the broker key only in the daemon account's `~/.ssh/id_rsa`
/// (made by our keygen, authorised by our pubkeyauthorizer from the running broker's
/// `/pubkeys`), its `known_hosts`, no `[farm]` section — resumes, lists, takes over and
/// places through the Perl agent behind a real sshd; and so for `jdoe@uni.example`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssh_agents_without_a_farm_section_as_the_reference_documents_it() {
    let _db = SESSION_DB.lock().await;
    let cleanup = AccountsCleanup(&[DAEMON_ACCOUNT, AGENT_ACCOUNT]);
    let directory_user = DirectoryUser::create();
    let directory_session = rebuild_farm_with_directory_user();
    // the broker side: the daemon account and its key, by our keygen
    let daemon_account = fresh_account(DAEMON_ACCOUNT, &[AGENT_GROUP]);
    let (code, _, stderr) = keygen(&daemon_account, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(daemon_account.ssh("id_rsa").is_file());
    // the servers: one sshd on 127.0.0.11–15 letting the agent account in
    let server_account = fresh_account(AGENT_ACCOUNT, &[AGENT_GROUP]);
    unlock_for_ssh(&server_account.name);
    let sshd_directory = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (11..=15).map(|last| format!("127.0.0.{last}")).collect();
    let address_refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let sshd = Sshd::start_on(sshd_directory.path(), &[AGENT_ACCOUNT], &address_refs);
    let ssh_port = sshd.port;
    // the daemon account's known_hosts: the servers' host key (RejectPolicy, the default)
    let host_key = sshd
        .host_public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts = daemon_account.ssh("known_hosts");
    std::fs::write(
        &known_hosts,
        addresses
            .iter()
            .map(|address| format!("[{address}]:{ssh_port} {host_key}\n"))
            .collect::<String>(),
    )
    .unwrap();
    nix::unistd::chown(
        &known_hosts,
        Some(nix::unistd::Uid::from_raw(daemon_account.uid)),
        Some(nix::unistd::Gid::from_raw(daemon_account.gid)),
    )
    .unwrap();

    let work = readable_work_directory();
    let broker = start_dropped_broker(
        work.path(),
        &reference_config("SSH"),
        &profiles(Some(ssh_port)),
        &daemon_account,
        Some(AGENT_ACCOUNT),
    );
    let port = broker.address.port();
    // the servers authorise the running broker's key: our pubkeyauthorizer on /pubkeys
    let (code, _, stderr) = our_authorizer(
        &server_account,
        &format!("http://127.0.0.1:{port}/pubkeys/"),
        "-t",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Adding new public key (counter=1)"),
        "{stderr}"
    );
    // the supervisors retry the servers they could not log in to (back-off ≤ 10 s)
    let first = first_good_listing(port, Duration::from_secs(25), work.path(), "ssh").await;
    println!("ssh, no [farm]: first good listing {first:?} after the key was authorised");

    transport_scenario(port, "farm5", ssh_port, "ssh, no [farm]").await;
    directory_user_checks(
        port,
        ssh_port,
        &directory_user,
        &directory_session,
        work.path(),
        "ssh, no [farm]",
    )
    .await;
    // (acceptance 6) our testagent asks a server of this farm over SSH, as the daemon account
    let started = Instant::now();
    let output = Command::new(binary("x2gobroker-testagent"))
        .args(["-H", "127.0.0.13", "-p", &ssh_port.to_string()])
        .args(["-t", "listsessions", "-u", DIRECTORY_USER, "-C"])
        .arg(work.path().join("x2gobroker.conf"))
        .env("X2GOBROKER_DAEMON_USER", DAEMON_ACCOUNT)
        .env("X2GOBROKER_DAEMON_GROUP", AGENT_GROUP)
        .env("X2GOBROKER_AGENT_USER", AGENT_ACCOUNT)
        .env_remove("X2GOBROKER_AGENT_CMD")
        .output()
        .unwrap();
    let testagent_time = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.contains(&format!("|{directory_session}|"))
                && line.contains("|x2go-node3|S|")),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("The task 'listsessions' could be executed successfully on the remote broker agent.\n\n"),
        "{stdout}"
    );
    println!("ssh, no [farm]: testagent -H 127.0.0.13 -t listsessions -u {DIRECTORY_USER} in {testagent_time:?}");
    let log = sshd.log_text();
    assert!(
        log.contains(&format!("Accepted publickey for {AGENT_ACCOUNT}")),
        "sshd log: {log}"
    );
    stop_broker(broker, &daemon_account);
    drop(sshd);
    rebuild_farm();
    drop(directory_user);
    drop(cleanup);
}

/// The same for `agent-query-mode = LOCAL` and no `[farm]`: the local Perl agent, run by the
/// broker as its daemon account in group x2gobroker; and so for `jdoe@uni.example`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_agent_without_a_farm_section() {
    let _db = SESSION_DB.lock().await;
    let cleanup = AccountsCleanup(&[DAEMON_ACCOUNT]);
    let directory_user = DirectoryUser::create();
    let directory_session = rebuild_farm_with_directory_user();
    let daemon_account = fresh_account(DAEMON_ACCOUNT, &[AGENT_GROUP]);
    let work = readable_work_directory();
    let broker = start_dropped_broker(
        work.path(),
        &reference_config("LOCAL"),
        &profiles(None),
        &daemon_account,
        None,
    );
    let port = broker.address.port();
    let first = first_good_listing(port, Duration::from_secs(10), work.path(), "local").await;
    println!("LOCAL, no [farm]: first good listing after {first:?}");
    transport_scenario(port, "farm5", 22, "LOCAL, no [farm]").await;
    directory_user_checks(
        port,
        22,
        &directory_user,
        &directory_session,
        work.path(),
        "LOCAL, no [farm]",
    )
    .await;
    stop_broker(broker, &daemon_account);
    rebuild_farm();
    drop(directory_user);
    drop(cleanup);
}

/// `jdoe@uni.example` through the gRPC farm (five `x2gobroker-agentd`): listing status and
/// host, resume, autologin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn directory_user_through_the_grpc_farm() {
    let _db = SESSION_DB.lock().await;
    let directory_user = DirectoryUser::create();
    let directory_session = rebuild_farm_with_directory_user();
    let work = tempfile::tempdir().unwrap();
    let agents = Agents::start(work.path());
    let profiles_file = work.path().join("profiles.ini");
    std::fs::write(&profiles_file, profiles(None)).unwrap();
    let (_broker_directory, broker) =
        broker_with_config(&farm_config(&agents), Some(&profiles_file), &[]);
    let port = broker.address.port();
    let first = first_good_listing(port, Duration::from_secs(10), work.path(), "grpc").await;
    println!("gRPC: first good listing after {first:?}");
    directory_user_checks(
        port,
        22,
        &directory_user,
        &directory_session,
        work.path(),
        "gRPC",
    )
    .await;
    drop(broker);
    drop(agents);
    rebuild_farm();
    drop(directory_user);
}
