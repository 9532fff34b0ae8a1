//! The SSH broker mode installed setuid `x2gobroker` (deploy/SSH-BROKER.md), attacked by an ordinary user: a COPY of `target/…/x2gobroker` made 4555 x2gobroker in a directory without `nosuid`; daemon options, the daemon's name, `RUST_LOG` and the caller's environment change nothing, and `SSH_CLIENT` is not trusted.

use super::farm::SESSION_DB;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x2gobroker_e2e::{binary, ensure_user, free_port};

/// The caller: a fixture user with no rights on the broker's files.
const ATTACKER: &str = "x2goalice";
/// The account the copy runs as (the reference's package creates it).
const SETUID_ACCOUNT: &str = "x2gobroker";
/// The setuid broker reads only the built-in paths: this file is swapped for the test.
const SYSTEM_PROFILES: &str = "/etc/x2go/broker/x2gobroker-sessionprofiles.conf";

/// Two profiles that only a client address tells apart.
const PROFILES: &str = "[DEFAULT]\nuser = \ncommand = TERMINAL\n\n\
    [loopback-only]\nname = Loopback clients\nhost = localhost\n\
    acl-clients-deny = ALL\nacl-clients-allow = 127.0.0.1\nacl-clients-order = allow-deny\n\n\
    [lan-only]\nname = LAN clients\nhost = localhost\n\
    acl-clients-deny = ALL\nacl-clients-allow = 10.0.0.0/8\nacl-clients-order = allow-deny\n";

/// Puts [`PROFILES`] at the system path and the original back when dropped (also on panic).
struct SystemProfiles {
    original: Option<Vec<u8>>,
}

impl SystemProfiles {
    fn install() -> SystemProfiles {
        let original = std::fs::read(SYSTEM_PROFILES).ok();
        x2gobroker_e2e::replace_file(Path::new(SYSTEM_PROFILES), PROFILES);
        SystemProfiles { original }
    }
}

impl Drop for SystemProfiles {
    fn drop(&mut self) {
        match &self.original {
            Some(text) => x2gobroker_e2e::replace_file(Path::new(SYSTEM_PROFILES), text),
            None => {
                let _ = std::fs::remove_file(SYSTEM_PROFILES);
            }
        }
    }
}

/// A directory on a filesystem that honours setuid bits (`/tmp` often has `nosuid`).
fn setuid_capable_directory() -> PathBuf {
    for candidate in ["/var/tmp", env!("CARGO_TARGET_TMPDIR")] {
        let _ = std::fs::create_dir_all(candidate);
        let options = Command::new("findmnt")
            .args(["-n", "-o", "OPTIONS", "-T", candidate])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&options.stdout);
        if options.status.success() && !text.split(',').any(|option| option.trim() == "nosuid") {
            return PathBuf::from(candidate);
        }
    }
    panic!("no filesystem without nosuid for the setuid copy");
}

fn chown(path: &Path, user: &str) {
    let account = nix::unistd::User::from_name(user).unwrap().unwrap();
    nix::unistd::chown(path, Some(account.uid), Some(account.gid)).unwrap();
}

/// Runs `program` as [`ATTACKER`] (its own uid, gid and groups) with only `environment`.
fn as_attacker(program: &Path, arguments: &[&str], environment: &[(&str, &str)]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={ATTACKER}"),
            &format!("--regid={ATTACKER}"),
            "--init-groups",
            "--",
        ])
        .arg(program)
        .args(arguments)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(environment.iter().copied())
        .current_dir("/")
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Exit 64, the refusal named on stderr, nothing on stdout.
fn assert_refused(output: &Output, what: &str) {
    let (stdout, stderr) = text(output);
    assert_eq!(output.status.code(), Some(64), "{what}: {stdout} {stderr}");
    assert!(
        stderr.contains("running setuid, only the SSH broker mode with its task options runs"),
        "{what}: {stderr}"
    );
    assert!(stdout.is_empty(), "{what}: {stdout}");
}

#[tokio::test]
async fn a_setuid_broker_runs_only_the_ssh_mode_and_trusts_nothing_of_its_caller() {
    assert!(x2gobroker_e2e::is_root(), "the setuid install needs root");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status.contains("NoNewPrivs:\t0"),
        "this test process may not gain privileges (NoNewPrivs): setuid cannot be tested here"
    );
    // the system profiles file is shared with every broker started without -C
    let _db = SESSION_DB.lock().await;
    ensure_user(ATTACKER, None);
    let install = tempfile::Builder::new()
        .prefix("x2gobroker-setuid-")
        .tempdir_in(setuid_capable_directory())
        .unwrap();
    std::fs::set_permissions(install.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let setuid = install.path().join("x2gobroker-ssh");
    std::fs::copy(binary("x2gobroker"), &setuid).unwrap();
    chown(&setuid, SETUID_ACCOUNT);
    // 4555: any local user may run it, the worst case of the documented 4550 install
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4555)).unwrap();
    let daemon_name = install.path().join("x2gobroker-daemon");
    std::os::unix::fs::symlink(&setuid, &daemon_name).unwrap();
    // files of the setuid account that the caller must not be able to touch through it
    let victim = install.path().join("victim.pid");
    std::fs::write(&victim, "keep\n").unwrap();
    chown(&victim, SETUID_ACCOUNT);
    let log_directory = install.path().join("logs");
    std::fs::create_dir(&log_directory).unwrap();
    chown(&log_directory, SETUID_ACCOUNT);
    // and files of the caller's that it would like the broker to use
    let caller_files = install.path().join("caller");
    std::fs::create_dir(&caller_files).unwrap();
    std::fs::set_permissions(&caller_files, std::fs::Permissions::from_mode(0o777)).unwrap();
    let caller_profiles = caller_files.join("profiles.conf");
    std::fs::write(
        &caller_profiles,
        "[planted]\nname = Planted by the caller\nhost = localhost\n",
    )
    .unwrap();
    let caller_config = caller_files.join("x2gobroker.conf");
    std::fs::write(
        &caller_config,
        "[global]\nrequire-password = false\ndefault-auth-mech = none\n",
    )
    .unwrap();
    let _profiles = SystemProfiles::install();

    // it works as the SSH broker mode: the caller is its real uid, from loopback
    let listing = as_attacker(&setuid, &["--task", "listsessions"], &[]);
    let (stdout, stderr) = text(&listing);
    assert!(listing.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("[loopback-only]"), "{stdout}");
    assert!(stdout.contains(&format!("user={ATTACKER}")), "{stdout}");
    assert!(!stdout.contains("[lan-only]"), "{stdout}");

    // SSH_CLIENT is the caller's to choose: not trusted, the client is 127.0.0.1
    let spoofed = as_attacker(
        &setuid,
        &["--task", "listsessions"],
        &[("SSH_CLIENT", "10.1.2.3 40000 22")],
    );
    let (stdout, stderr) = text(&spoofed);
    assert!(spoofed.status.success(), "{stdout} {stderr}");
    assert!(
        stdout.contains("[loopback-only]") && !stdout.contains("[lan-only]"),
        "a chosen SSH_CLIENT changed the ACL decision: {stdout}"
    );

    // the caller's environment picks no files: the planted profiles are not read
    let planted = as_attacker(
        &setuid,
        &["--task", "listsessions"],
        &[
            (
                "X2GOBROKER_SESSIONPROFILES",
                caller_profiles.to_str().unwrap(),
            ),
            ("X2GOBROKER_CONFIG", caller_config.to_str().unwrap()),
            (
                "X2GOBROKER_COOKIE_DIRECTORY",
                caller_files.to_str().unwrap(),
            ),
        ],
    );
    let (stdout, stderr) = text(&planted);
    assert!(planted.status.success(), "{stdout} {stderr}");
    assert!(!stdout.contains("[planted]"), "{stdout}");
    assert!(stdout.contains("[loopback-only]"), "{stdout}");
    assert!(
        stderr.contains("running setuid"),
        "the caller is told: {stderr}"
    );
    let in_caller_directory: Vec<_> = std::fs::read_dir(&caller_files)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        in_caller_directory.len(),
        2,
        "no cookie written where the caller asked: {in_caller_directory:?}"
    );

    // daemon options: refused before anything is opened, bound or written
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let victim_path = victim.to_str().unwrap();
    let logs = log_directory.to_str().unwrap();
    let config = caller_config.to_str().unwrap();
    let attempts: [(&str, Vec<&str>); 9] = [
        ("HTTP mode on a port", vec!["-M", "HTTP", "-b", &bind]),
        (
            "a pidfile of the setuid account",
            vec!["--task", "listsessions", "-P", victim_path],
        ),
        (
            "a log directory",
            vec!["--task", "listsessions", "-L", logs],
        ),
        ("daemonize", vec!["-M", "SSH", "-D"]),
        ("drop privileges", vec!["--drop-privileges"]),
        (
            "check a chosen config",
            vec!["--check-config", "-C", config],
        ),
        (
            "a chosen config",
            vec!["--task", "listsessions", "-C", config],
        ),
        ("debug", vec!["--task", "listsessions", "-d"]),
        ("interactive debug", vec!["-i"]),
    ];
    for (what, arguments) in &attempts {
        assert_refused(&as_attacker(&setuid, arguments, &[]), what);
    }
    assert_refused(
        &as_attacker(
            &setuid,
            &["--task", "listsessions"],
            &[("RUST_LOG", "trace")],
        ),
        "RUST_LOG",
    );
    assert_refused(
        &as_attacker(&daemon_name, &["-b", &bind], &[]),
        "the daemon's name",
    );
    // nothing happened: no listener, the account's file intact, no log written
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {bind}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    assert_eq!(std::fs::read_dir(&log_directory).unwrap().count(), 0);
}
