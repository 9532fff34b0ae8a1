//! The reference's helper tools end to end: keygen, pubkeyauthorizer (ours and the reference's against our /pubkeys), testagent (LOCAL and over SSH), testauth.

use crate::farm::{rebuild_farm, SESSION_DB};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{binary, broker_with_config, is_root, unlock_for_ssh, Sshd};

/// The reference's Python tools need the system's python3 (a pyenv one breaks their shebang).
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

const REFERENCE_PUBKEYAUTHORIZER: &str = "/usr/sbin/x2gobroker-pubkeyauthorizer";

/// A test account standing for the broker's daemon user or a server's agent account: a
/// system user with its own group and a home under /var/tmp, in `groups` too; its `~/.ssh`
/// is removed so every run starts clean (never used for the real `x2gobroker`).
pub(crate) fn fresh_account(name: &str, groups: &[&str]) -> Account {
    assert!(is_root(), "creating accounts needs root (CI runs as root)");
    assert_ne!(name, "x2gobroker");
    let home = PathBuf::from(format!("/var/tmp/{name}"));
    let exists = Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|output| output.status.success());
    if !exists {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--create-home",
                "--shell",
                "/bin/bash",
            ])
            .arg("--home-dir")
            .arg(&home)
            .arg(name)
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name}");
    }
    for group in groups {
        let status = Command::new("usermod")
            .args(["-a", "-G", group, name])
            .status()
            .expect("usermod");
        assert!(status.success(), "usermod -a -G {group} {name}");
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    assert_eq!(user.dir, home, "{name} has another home");
    let _ = std::fs::remove_dir_all(home.join(".ssh"));
    Account {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home,
    }
}

pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
}

impl Account {
    pub(crate) fn ssh(&self, file: &str) -> PathBuf {
        self.home.join(".ssh").join(file)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn text(output: &Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub(crate) fn keygen(account: &Account, arguments: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(binary("x2gobroker-keygen"))
        .args(arguments)
        .env("X2GOBROKER_DAEMON_USER", &account.name)
        .env("X2GOBROKER_DAEMON_GROUP", &account.name)
        .output()
        .unwrap();
    text(&output)
}

#[test]
fn keygen_writes_the_daemon_users_key_pair_and_keeps_an_existing_one() {
    let account = fresh_account("x2gotoolkeygen", &[]);
    let started = Instant::now();
    let (code, _, stderr) = keygen(&account, &[]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Key file generation has been successful!"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!(
        "  Created {}",
        account.home.join(".ssh").display()
    )));
    let (private, public) = (account.ssh("id_rsa"), account.ssh("id_rsa.pub"));
    assert_eq!(mode(&account.home.join(".ssh")), 0o700);
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o644);
    for path in [account.home.join(".ssh"), private.clone(), public.clone()] {
        assert_eq!(
            owner(&path),
            (account.uid, account.gid),
            "{}",
            path.display()
        );
    }
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert!(
        public_text.starts_with("ssh-rsa AAAAB3NzaC1yc2EA"),
        "{public_text}"
    );
    // OpenSSH reads the private key and finds the same public key, 3072 bits
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(
        derived.status.success(),
        "{}",
        String::from_utf8_lossy(&derived.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        public_text.split_whitespace().take(2).collect::<Vec<_>>()
    );
    let fingerprint = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&public)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&fingerprint.stdout).starts_with("3072 SHA256:"));
    // and so does paramiko, which the reference broker uses (a rollback keeps the key)
    let paramiko = Command::new("/usr/bin/python3")
        .args(["-c", "import paramiko,sys; print(paramiko.RSAKey.from_private_key_file(sys.argv[1]).get_base64())"])
        .arg(&private)
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&paramiko.stdout).trim(),
        public_text.split_whitespace().nth(1).unwrap(),
        "{}",
        String::from_utf8_lossy(&paramiko.stderr)
    );

    // an existing key is kept without -f: the reference's lines and status 253
    let before = std::fs::read(&private).unwrap();
    let (code, _, stderr) = keygen(&account, &["-t", "rsa"]);
    assert_eq!(code, Some(253), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "  Private key {} exists. Use --force to overwrite",
            private.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&private).unwrap(), before);
    // -f replaces it
    let (code, _, stderr) = keygen(&account, &["-f"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("WARNING: you requested to overwrite existing key files!!!"));
    assert_ne!(std::fs::read(&private).unwrap(), before);
    assert_eq!(mode(&private), 0o600);
    assert_eq!(owner(&private), (account.uid, account.gid));

    // DSA, as the reference offers it (with OpenSSH's warning)
    let (code, _, stderr) = keygen(&account, &["--key-type", "DSA"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("OpenSSH refuses DSA keys by default"),
        "{stderr}"
    );
    let dsa_public = std::fs::read_to_string(account.ssh("id_dsa.pub")).unwrap();
    assert!(
        dsa_public.starts_with("ssh-dss AAAAB3NzaC1kc3MA"),
        "{dsa_public}"
    );
    assert_eq!(mode(&account.ssh("id_dsa")), 0o600);

    // the reference's statuses for an unknown type and for a caller that is not root
    let (code, _, stderr) = keygen(&account, &["-t", "ed448"]);
    assert_eq!(code, Some(254), "{stderr}");
    assert!(
        stderr.contains("Unknown key type \u{bb}ED448\u{ab}"),
        "{stderr}"
    );
    use std::os::unix::process::CommandExt;
    let as_nobody = Command::new(binary("x2gobroker-keygen"))
        .env("X2GOBROKER_DAEMON_USER", &account.name)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let (code, _, stderr) = text(&as_nobody);
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.contains("has to run with root privileges"),
        "{stderr}"
    );
    println!(
        "keygen: RSA-3072 pair written in {took:?}; refused without -f (253), replaced with -f"
    );
}

async fn get_pubkeys(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/pubkeys/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) fn our_authorizer(
    agent_account: &Account,
    url: &str,
    flag: &str,
) -> (Option<i32>, String, String) {
    let output = Command::new(binary("x2gobroker-pubkeyauthorizer"))
        .args([flag, url])
        .env("X2GOBROKER_DAEMON_USER", &agent_account.name)
        .env_remove("X2GOBROKER_AGENT_CMD")
        .output()
        .unwrap();
    text(&output)
}

fn reference_authorizer(agent_account: &Account, url: &str) -> (Option<i32>, String, String) {
    let output = Command::new(REFERENCE_PUBKEYAUTHORIZER)
        .args(["-t", url])
        .env("PATH", SYSTEM_PATH)
        .env("X2GOBROKER_DAEMON_USER", &agent_account.name)
        .env("X2GOBROKER_DAEMON_GROUP", &agent_account.name)
        .output()
        .unwrap();
    text(&output)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubkeys_installed_once_by_our_authorizer_and_accepted_by_the_reference() {
    assert!(
        Path::new(REFERENCE_PUBKEYAUTHORIZER).exists(),
        "Debian package x2gobroker-agent"
    );
    let broker_account = fresh_account("x2gotoolpubs", &[]);
    let (code, _, stderr) = keygen(&broker_account, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // a second key of a type the reference's authorizer would abort on
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "x", "-f"])
        .arg(broker_account.ssh("id_ed25519"))
        .status()
        .unwrap();
    assert!(status.success());
    let (work, broker) = broker_with_config(
        "[global]\n",
        None,
        &[("X2GOBROKER_DAEMON_USER", "x2gotoolpubs")],
    );
    let port = broker.address.port();
    let served = get_pubkeys(port).await;
    let served_lines: Vec<&str> = served.lines().collect();
    assert_eq!(served_lines.len(), 1, "ssh-rsa only by default: {served}");
    assert!(served_lines[0].starts_with("command=\"/usr/lib/x2go/x2gobroker-agent\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty ssh-rsa AAAAB3NzaC1yc2EA"));

    // ours: installed once, run twice (once with the man page's -b and the bare broker URL)
    let ours = fresh_account("x2gotoolours", &[]);
    let url = format!("http://127.0.0.1:{port}/pubkeys/");
    let (code, _, stderr) = our_authorizer(&ours, &url, "-t");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Adding new public key (counter=1)"),
        "{stderr}"
    );
    let (code, _, stderr) = our_authorizer(&ours, &format!("http://127.0.0.1:{port}"), "-b");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Skipping new public key (counter=1), already in"),
        "{stderr}"
    );
    let authorized = ours.ssh("authorized_keys");
    assert_eq!(lines_of(&authorized), vec![served_lines[0].to_string()]);
    assert_eq!(owner(&authorized), (ours.uid, ours.gid));
    assert_eq!(mode(&authorized), 0o600);
    assert_eq!(mode(&ours.home.join(".ssh")), 0o700);
    // the reference's tool sees our line as its own
    let (code, _, stderr) = reference_authorizer(&ours, &url);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Skipping new public key (counter=1), already in"),
        "{stderr}"
    );
    assert_eq!(lines_of(&authorized).len(), 1);

    // the reference's tool against our /pubkeys: accepted, installed once
    let reference = fresh_account("x2gotoolref", &[]);
    for _ in 0..2 {
        let (code, _, stderr) = reference_authorizer(&reference, &url);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("Completed successfully"), "{stderr}");
    }
    assert_eq!(
        lines_of(&reference.ssh("authorized_keys")),
        vec![served_lines[0].to_string()]
    );

    // with pubkeys-all-types the ed25519 line is served too: ours installs it, the
    // reference's tool aborts (why it is off by default)
    std::fs::write(
        work.path().join("x2gobroker.conf"),
        "[global]\npubkeys-all-types = true\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = get_pubkeys(port).await;
    while all.lines().count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        all = get_pubkeys(port).await;
    }
    assert_eq!(all.lines().count(), 2, "{all}");
    assert!(
        all.lines()
            .nth(1)
            .unwrap()
            .contains(" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
        "{all}"
    );
    let (code, _, stderr) = our_authorizer(&ours, &url, "-t");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        lines_of(&authorized),
        all.lines().map(str::to_string).collect::<Vec<_>>()
    );
    let (code, _, stderr) = reference_authorizer(&reference, &url);
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.contains("does not look like SSH RSA/DSA keys"),
        "{stderr}"
    );

    // a page that is not key lines is refused whole, nothing installed
    let refused_account = fresh_account("x2gotoolnone", &[]);
    let (code, _, stderr) = our_authorizer(
        &refused_account,
        &format!("http://127.0.0.1:{port}/plain/"),
        "-t",
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(!refused_account.ssh("authorized_keys").exists());
    drop(broker);
    println!("pubkeyauthorizer: ours installs once (2 runs), the reference accepts our /pubkeys and our line");
}

fn testagent(
    arguments: &[&str],
    environment: &[(&str, &str)],
) -> (Option<i32>, String, String, Duration) {
    let mut command = Command::new(binary("x2gobroker-testagent"));
    command
        .args(arguments)
        .env_remove("X2GOBROKER_DAEMON_USER")
        .env_remove("X2GOBROKER_DAEMON_GROUP")
        .env_remove("X2GOBROKER_AGENT_USER")
        .env_remove("X2GOBROKER_AGENT_CMD");
    for (name, value) in environment {
        command.env(name, value);
    }
    let started = Instant::now();
    let output = command.output().unwrap();
    let (code, stdout, stderr) = text(&output);
    (code, stdout, stderr, started.elapsed())
}

fn assert_alices_sessions(stdout: &str) {
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("|x2goalice|"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines.iter().any(|line| line.contains("|x2go-node1|R|")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|line| line.contains("|x2go-node2|S|")),
        "{stdout}"
    );
}

#[test]
fn testagent_asks_the_local_perl_agent_and_refuses_hostile_arguments() {
    let _db = SESSION_DB.blocking_lock();
    rebuild_farm();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, "[global]\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let (code, stdout, stderr, took) = testagent(
        &["-t", "listsessions", "-u", "x2goalice", "-C", config_arg],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("\nX2Go Session Broker (Agent Test Utility)\n----------------------------------------\n"), "{stdout}");
    assert_alices_sessions(&stdout);
    assert!(
        stdout.ends_with(
            "The task 'listsessions' could be executed successfully on the local broker agent.\n\n"
        ),
        "{stdout}"
    );
    println!("testagent LOCAL listsessions: {took:?}\n{stdout}");

    let (code, stdout, _, _) = testagent(&["-C", config_arg], &[]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("returned no printable output (which probably is fine)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The task 'ping' could be executed successfully"),
        "{stdout}"
    );
    let (code, stdout, _, _) = testagent(&["--list-tasks", "-C", config_arg], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("   listsessions: supported\n"), "{stdout}");
    assert!(
        stdout
            .contains("   findbusyservers_by_sessionstats: not supported by this broker version\n"),
        "{stdout}"
    );
    let (code, stdout, _, _) = testagent(
        &["-t", "has-sessions", "-u", "x2goalice", "-C", config_arg],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("running sessions: x2goalice-50-"),
        "{stdout}"
    );
    assert!(
        stdout.contains("suspended sessions: x2goalice-51-"),
        "{stdout}"
    );

    // hostile or missing arguments: refused before any agent runs, nothing printed on stdout
    let hostile: [(&[&str], &str); 5] = [
        (
            &["-t", "listsessions", "-u", "x2goalice;id"],
            "invalid user name \"x2goalice;id\"",
        ),
        (
            &["-t", "listsessions", "-u", "$(touch /tmp/x2gotool-pwned)"],
            "invalid user name",
        ),
        (
            &[
                "-t",
                "suspendsession",
                "-u",
                "x2goalice",
                "--session-id",
                "x'$(id)'",
            ],
            "invalid session id",
        ),
        (
            &[
                "-t",
                "addauthkey",
                "-u",
                "x2goalice",
                "--pubkey",
                "ssh-rsa AAAA\"; id; \"",
            ],
            "invalid public key",
        ),
        (&["-t", "listsessions"], "Cannot continue without username"),
    ];
    for (arguments, message) in hostile {
        let (code, stdout, stderr, _) = testagent(arguments, &[]);
        assert_eq!(code, Some(64), "{arguments:?}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{arguments:?}: {stderr}");
        assert!(stdout.is_empty(), "{arguments:?}: {stdout}");
    }
    assert!(!Path::new("/tmp/x2gotool-pwned").exists());
}

#[test]
fn testagent_over_ssh_with_a_key_made_and_authorized_by_our_tools() {
    let _db = SESSION_DB.blocking_lock();
    rebuild_farm();
    // the broker side: its daemon account and key, served on /pubkeys
    let broker_account = fresh_account("x2gotoolssh", &[]);
    let (code, _, stderr) = keygen(&broker_account, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_work, broker) = broker_with_config(
        "[global]\n",
        None,
        &[("X2GOBROKER_DAEMON_USER", "x2gotoolssh")],
    );
    // the server side: an agent account (in the agent's group, like x2gobroker) authorised
    // by our pubkeyauthorizer; its sshd runs the forced command of that line
    let server_account = fresh_account("x2gotoolsrv", &["x2gobroker"]);
    unlock_for_ssh(&server_account.name);
    let url = format!("http://127.0.0.1:{}/pubkeys/", broker.address.port());
    let (code, _, stderr) = our_authorizer(&server_account, &url, "-t");
    assert_eq!(code, Some(0), "{stderr}");
    let directory = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_on(directory.path(), &["x2gotoolsrv"], &["127.0.0.31"]);
    let port = sshd.port.to_string();
    let config = directory.path().join("x2gobroker.conf");
    std::fs::write(&config, "[global]\n").unwrap();
    let arguments = |extra: &[&'static str]| {
        let mut all = vec![
            "-H",
            "127.0.0.31",
            "-p",
            port.as_str(),
            "-t",
            "listsessions",
            "-u",
            "x2goalice",
            "-C",
            config.to_str().unwrap(),
        ];
        all.extend_from_slice(extra);
        all.into_iter().map(str::to_string).collect::<Vec<String>>()
    };
    let environment = [
        ("X2GOBROKER_DAEMON_USER", "x2gotoolssh"),
        ("X2GOBROKER_DAEMON_GROUP", "x2gotoolssh"),
        ("X2GOBROKER_AGENT_USER", "x2gotoolsrv"),
    ];
    let run = |extra: &[&'static str]| {
        let owned = arguments(extra);
        let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
        testagent(&borrowed, &environment)
    };
    // RejectPolicy (the config's default): the unknown host key refuses the connection
    let (code, stdout, stderr, _) = run(&[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("ssh connection to 127.0.0.31:"), "{stdout}");
    assert!(!broker_account.ssh("known_hosts").exists());
    // -A adds it to the daemon user's known_hosts and the agent answers
    let (code, stdout, stderr, took) = run(&["-A"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", sshd.log_text());
    assert_alices_sessions(&stdout);
    assert!(stdout.ends_with("The task 'listsessions' could be executed successfully on the remote broker agent.\n\n"), "{stdout}");
    // (Debian's ssh_config hashes the names: ask ssh-keygen)
    let found = Command::new("ssh-keygen")
        .args(["-F", &format!("[127.0.0.31]:{port}"), "-f"])
        .arg(broker_account.ssh("known_hosts"))
        .output()
        .unwrap();
    assert!(
        found.status.success() && !found.stdout.is_empty(),
        "host key not added"
    );
    // the host is known now: strict checking passes; the one-shot closes its SSH master
    let (code, stdout, stderr, again) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_alices_sessions(&stdout);
    assert!(
        again < Duration::from_secs(20),
        "the SSH master kept the tool alive: {again:?}"
    );
    let log = sshd.log_text();
    assert!(log.contains("Accepted publickey for x2gotoolsrv"), "{log}");
    println!("testagent over SSH: first ask (host key added) {took:?}, second {again:?}\n{stdout}");
    drop(broker);
}

#[test]
fn testauth_takes_the_password_on_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, "[global]\ndefault-auth-mech = testsuite\n").unwrap();
    let run = |arguments: &[&str]| {
        let output = Command::new(binary("x2gobroker-testauth"))
            .args(arguments)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        text(&output)
    };
    let config_arg = config.to_str().unwrap();
    let (code, stdout, stderr) = run(&["-u", "test", "-p", "sweet", "-C", config_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("OK: test authenticated"), "{stdout}");
    assert!(
        !stderr.contains("read from standard input"),
        "no prompt with -p: {stderr}"
    );
    let (code, stdout, _) = run(&[
        "--username",
        "test",
        "--password",
        "sour",
        "-C",
        config_arg,
        "-b",
        "inifile",
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL: the mechanism refused test"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["--user", "jacques", "-p", "thérèse", "--config", config_arg]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = run(&[
        "-u", "test", "-p", "sweet", "-C", config_arg, "-b", "nosuch",
    ]);
    assert_eq!(code, Some(64), "{stdout}");
    assert!(stdout.contains("unknown backend"), "{stdout}");
}
