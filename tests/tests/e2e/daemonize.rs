//! The reference's `Type=forking` unit starts and stops ours: `x2gobroker-daemon --drop-privileges -D --pidfile P` as root exits 0 once the port listens, P names the daemon (user x2gobroker), SIGTERM stops it and removes P; the reference's `x2gobroker-loggers.conf` decides the log files (owner, mode, format, one line per event, reopened on SIGHUP).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use x2gobroker_e2e::{binary, ensure_system_user, free_port, is_root, Daemon};

/// The loggers file Debian's x2gobroker-common installs (tests/install-deps.sh installs the
/// reference's x2gobroker-daemon).
const REFERENCE_LOGCONFIG: &str = "/etc/x2go/broker/x2gobroker-loggers.conf";
const REFERENCE_LOG_DIRECTORY: &str = "/var/log/x2gobroker/";

const CONFIG: &str = "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\ndefault-portscan-x2goservers = false\n";
const PROFILES: &str = "[open]\nhost = ts01\n\n[hidden]\nhost = ts02\nacl-users-deny = ALL\nacl-users-order = deny-allow\n";
/// A user name whose line break would start a forged log line.
const FORGING_USER: &str = "jdoe%0A2026-01-01 00:00:00,000 - broker - WARNING - forged";

fn chown(path: &Path, owner: &str) {
    let status = Command::new("chown").arg(owner).arg(path).status().unwrap();
    assert!(status.success(), "chown {owner} {}", path.display());
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A work directory laid out as the reference's packages lay out the system: config files
/// readable by the daemon user, `logs/` as `/var/log/x2gobroker` (x2gobroker:adm 2755),
/// `run/` as `/run/x2gobroker` should be (root:x2gobroker 0770), the cookie directory the
/// daemon's, and a copy of the installed loggers file with its handlers in `logs/`.
/// Sends SIGKILL to a daemon the test did not spawn itself (a `-D` fork) when dropped, so a
/// failed assertion never leaves it running.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

struct Layout {
    directory: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        assert!(
            is_root(),
            "the reference's unit starts the daemon as root (CI runs as root)"
        );
        ensure_system_user("x2gobroker");
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path();
        set_mode(path, 0o755);
        std::fs::write(path.join("x2gobroker.conf"), CONFIG).unwrap();
        std::fs::write(path.join("profiles.ini"), PROFILES).unwrap();
        for name in ["logs", "run", "cookies"] {
            std::fs::create_dir(path.join(name)).unwrap();
        }
        chown(&path.join("logs"), "x2gobroker:adm");
        set_mode(&path.join("logs"), 0o2755);
        chown(&path.join("run"), "root:x2gobroker");
        set_mode(&path.join("run"), 0o770);
        chown(&path.join("cookies"), "x2gobroker:x2gobroker");
        set_mode(&path.join("cookies"), 0o700);
        let reference = std::fs::read_to_string(REFERENCE_LOGCONFIG).unwrap_or_else(|error| {
            panic!("{REFERENCE_LOGCONFIG}: {error} (tests/install-deps.sh installs the reference)")
        });
        assert_eq!(
            reference.matches(REFERENCE_LOG_DIRECTORY).count(),
            3,
            "the shipped file names access, broker and error logs"
        );
        let logs = format!("{}/", path.join("logs").display());
        std::fs::write(
            path.join("x2gobroker-loggers.conf"),
            reference.replace(REFERENCE_LOG_DIRECTORY, &logs),
        )
        .unwrap();
        Layout { directory }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// The daemon as the reference's unit runs it (plus a bind address and our test paths).
    fn command(&self, address: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(binary("x2gobroker-daemon"));
        command
            .args(["-C"])
            .arg(self.path("x2gobroker.conf"))
            .args(["-b", address])
            .args(extra)
            .current_dir(self.directory.path())
            .env_remove("RUST_LOG")
            .env("X2GOBROKER_LOGCONFIG", self.path("x2gobroker-loggers.conf"))
            .env("X2GOBROKER_SESSIONPROFILES", self.path("profiles.ini"))
            .env("X2GOBROKER_COOKIE_DIRECTORY", self.path("cookies"))
            .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
            .stdin(Stdio::null());
        command
    }
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_string())
}

/// Gone, or a zombie nobody reaped yet (the daemon's parent is init).
fn has_exited(pid: i32) -> bool {
    status_field(pid, "State").is_none_or(|state| state.starts_with('Z'))
}

async fn post(port: u16, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/plain/inifile/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn get(port: u16, path: &str) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `path` holds a line containing `needle` (log lines are written as the
/// request is answered; give the writer a moment).
async fn wait_for_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|line| line.contains(needle)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no line with {needle:?}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `2026-12-02 05:57:09,783 - <name> - <LEVEL> - `: the reference's format.
fn is_reference_line(line: &str, name: &str) -> bool {
    let bytes = line.as_bytes();
    let stamp_shape = bytes.len() > 23
        && bytes[..23]
            .iter()
            .enumerate()
            .all(|(index, byte)| match index {
                4 | 7 => *byte == b'-',
                10 => *byte == b' ',
                13 | 16 => *byte == b':',
                19 => *byte == b',',
                _ => byte.is_ascii_digit(),
            });
    stamp_shape && line[23..].starts_with(&format!(" - {name} - "))
}

fn assert_reference_file(path: &Path, name: &str, adm: u32, daemon_uid: u32) {
    let metadata = std::fs::metadata(path).unwrap();
    assert_eq!(
        (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777),
        (daemon_uid, adm, 0o640),
        "{}: logrotate's create 640 x2gobroker adm",
        path.display()
    );
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines() {
        assert!(
            is_reference_line(line, name),
            "{}: not one line in the reference's format: {line:?}\n{text}",
            path.display()
        );
    }
}

#[tokio::test]
async fn the_references_forking_unit_starts_and_stops_ours() {
    let layout = Layout::new();
    let daemon_user = nix::unistd::User::from_name("x2gobroker").unwrap().unwrap();
    let adm = nix::unistd::Group::from_name("adm")
        .unwrap()
        .expect("Debian's adm group")
        .gid
        .as_raw();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let pidfile = layout.path("run/x2gobroker-daemon.pid");
    let logs = layout.path("logs");
    // ExecStart=/usr/bin/x2gobroker-daemon --drop-privileges -D --pidfile /run/x2gobroker/x2gobroker-daemon.pid
    let started = Instant::now();
    let output = layout
        .command(
            &address,
            &[
                "--drop-privileges",
                "-D",
                "--pidfile",
                pidfile.to_str().unwrap(),
                "-L",
                logs.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    let start_time = started.elapsed();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // systemd reads the pid file and expects the service up when the parent exits
    assert!(
        std::net::TcpStream::connect(&address).is_ok(),
        "the port listens when -D returns"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the pid file exists when -D returns")
        .trim()
        .parse()
        .unwrap();
    println!("-D returned 0 after {start_time:?}; daemon pid {pid}");
    // the forked daemon is no child of the test: stop it by its pid whatever happens below
    let _stop = KillOnDrop(pid);
    let uid = daemon_user.uid.as_raw().to_string();
    assert_eq!(
        status_field(pid, "Uid"),
        Some(format!("{uid}\t{uid}\t{uid}\t{uid}")),
        "the daemon runs as x2gobroker"
    );
    let gid = daemon_user.gid.as_raw().to_string();
    assert_eq!(
        status_field(pid, "Gid"),
        Some(format!("{gid}\t{gid}\t{gid}\t{gid}"))
    );
    assert_eq!(status_field(pid, "Groups").as_deref(), Some(""));
    let our_session = nix::unistd::getsid(None).unwrap();
    let its_session = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).unwrap();
    assert_ne!(its_session, our_session, "detached into its own session");
    assert_ne!(
        its_session.as_raw(),
        pid,
        "not a session leader (forked twice)"
    );
    for name in ["x2gobroker-daemon.stdout", "x2gobroker-daemon.stderr"] {
        assert!(logs.join(name).exists(), "-D writes {name} under -L");
    }

    // requests: a 404 is a WARNING (the access logger's level), a 200 an INFO (dropped)
    assert_eq!(get(port, "/no/such/route").await, 404);
    assert_eq!(get(port, "/").await, 200);
    let (status, answer) = post(
        port,
        &format!("task=selectsession&sid=hidden&user={FORGING_USER}"),
    )
    .await;
    assert_eq!(
        (status, answer.as_str()),
        (200, "Access granted\nSERVER:no-server-available:22\n")
    );
    let access_log = logs.join("access.log");
    let access = wait_for_line(&access_log, "404 GET /no/such/route (127.0.0.1)").await;
    assert!(
        access.lines().any(|line| line
            .contains(" - access - WARNING - 404 GET /no/such/route (127.0.0.1) ")
            && line.ends_with("ms")),
        "{access}"
    );
    assert!(
        !access.contains("200 GET / "),
        "INFO is below WARNING: {access}"
    );
    let broker_log = logs.join("broker.log");
    let broker = wait_for_line(&broker_log, "selection of a profile the ACLs hide refused").await;
    assert!(
        broker.contains("jdoe\\n2026-01-01 00:00:00,000 - broker - WARNING - forged"),
        "the user name is in the line, its line break escaped: {broker}"
    );
    assert_reference_file(&access_log, "access", adm, daemon_user.uid.as_raw());
    assert_reference_file(&broker_log, "broker", adm, daemon_user.uid.as_raw());
    assert_reference_file(
        &logs.join("error.log"),
        "error",
        adm,
        daemon_user.uid.as_raw(),
    );

    // logrotate moves the files; SIGHUP makes the daemon write new ones
    std::fs::rename(&access_log, logs.join("access.log.1")).unwrap();
    let daemon_pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!has_exited(pid), "SIGHUP must not stop the daemon");
    assert_eq!(get(port, "/after/rotation").await, 404);
    wait_for_line(&access_log, "404 GET /after/rotation").await;
    assert_reference_file(&access_log, "access", adm, daemon_user.uid.as_raw());
    let rotated = std::fs::read_to_string(logs.join("access.log.1")).unwrap();
    assert!(!rotated.contains("/after/rotation"), "{rotated}");

    // systemctl stop: SIGTERM to the pid in the pid file
    let stopping = Instant::now();
    nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    while !has_exited(pid) {
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "SIGTERM did not stop the daemon"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("SIGTERM to exit: {:?}", stopping.elapsed());
    assert!(
        !pidfile.exists(),
        "the pid file is removed at exit, as the reference"
    );
    assert!(std::net::TcpStream::connect(&address).is_err());
}

#[tokio::test]
async fn daemonizing_fails_with_the_daemons_reason_and_a_non_zero_status() {
    let layout = Layout::new();
    // the port is taken: the bind fails before forking
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let pidfile = layout.path("run/taken.pid");
    let output = layout
        .command(
            &address,
            &["-D", "--pidfile", pidfile.to_str().unwrap(), "-L"],
        )
        .arg(layout.path("logs"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("cannot bind {address}")),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!pidfile.exists());
    // the daemon itself fails after forking (its stdout/stderr directory is not writable
    // for the daemon user): the starting process tells why and exits 1
    let closed = layout.path("closed");
    std::fs::create_dir(&closed).unwrap();
    set_mode(&closed, 0o755);
    let port = free_port();
    let output = layout
        .command(
            &format!("127.0.0.1:{port}"),
            &[
                "--drop-privileges",
                "-D",
                "--pidfile",
                pidfile.to_str().unwrap(),
                "-L",
            ],
        )
        .arg(&closed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot redirect stdout/stderr")
            && stderr.contains("x2gobroker-daemon.stdout"),
        "{stderr}"
    );
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[tokio::test]
async fn a_broken_loggers_file_is_one_error_and_stderr_logging() {
    let layout = Layout::new();
    std::fs::write(
        layout.path("x2gobroker-loggers.conf"),
        "[loggers]\nkeys=root\n[handlers]\nkeys=syslog\n[handler_syslog]\nclass=handlers.SysLogHandler\nargs=('/dev/log',)\n[logger_root]\nhandlers=syslog\n",
    )
    .unwrap();
    let stderr_path = layout.path("stderr.log");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut command = layout.command(&address, &[]);
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let child = command.spawn().unwrap();
    let mut daemon = Daemon {
        child,
        address: address.parse().unwrap(),
    };
    assert!(x2gobroker_e2e::wait_for_port(
        daemon.address,
        Duration::from_secs(20)
    ));
    assert_eq!(get(port, "/missing").await, 404);
    let stderr = wait_for_line(&stderr_path, "404 GET /missing").await;
    daemon.terminate();
    let expected = "x2gobroker-loggers.conf: [handler_syslog] args = \"('/dev/log',)\": handler class SysLogHandler is not supported; logging to stderr";
    assert_eq!(stderr.matches(expected).count(), 1, "{stderr}");
    assert!(std::fs::read_dir(layout.path("logs"))
        .unwrap()
        .next()
        .is_none());
}
