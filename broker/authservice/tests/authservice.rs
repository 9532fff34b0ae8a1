//! End-to-end tests of the real `x2gobroker-authservice` binary with real PAM (pam_unix through
//! `etc/pam.d/x2gobroker`) and real local accounts: the golden socket exchanges, passwords with
//! spaces, colons and UTF-8, account checks, concurrency, socket set-up and shutdown, and the
//! broker's client (`x2gobroker::auth::authservice`) against it; peers of another uid or group,
//! root and system accounts, the failed-login throttle. Needs root (CI runs as root):
//! it creates local users and reads nothing but what it created.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

const GOLDEN_USER: &str = "x2gotest";
const GOLDEN_PASSWORD: &str = "Golden-Pw-1";
const SPECIAL_USER: &str = "x2goasspecial";
const SPECIAL_PASSWORD: &str = "p a:s s:wörd ∑ 🎉 :";
const EXPIRED_USER: &str = "x2goasexpired";
const LOCKED_USER: &str = "x2goaslocked";
const OTHER_PASSWORD: &str = "Right-Pw-9";
const N_PARALLEL_FAILURES: usize = 20;

/// One test at a time: PAM failure delays and CPU-bound hashing would blur the measurements.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// Runs an account tool, retrying while another process holds /etc/passwd's lock.
fn account_tool(program: &str, arguments: &[&str], stdin: Option<&str>) {
    for attempt in 0..50 {
        let mut child = Command::new(program)
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{program}: {error}"));
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if program == "useradd" && arguments.last().is_some_and(|name| user_exists(name)) {
            return; // created by another test binary at the same moment
        }
        assert!(
            stderr.contains("lock") && attempt < 49,
            "{program} {arguments:?}: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A local account with `password` (created if missing; the password is set every time).
fn ensure_user(name: &str, password: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create local users and run PAM as root (CI runs as root)"
    );
    if !user_exists(name) {
        account_tool("useradd", &["-m", "-s", "/bin/bash", name], None);
    }
    account_tool("chpasswd", &[], Some(&format!("{name}:{password}\n")));
}

/// `/etc/pam.d/x2gobroker` from `etc/pam.d/x2gobroker` if there is none (the golden bytes name
/// that service), and our file as `/etc/pam.d/x2gobroker-test` in any case.
fn ensure_pam_service() {
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/pam.d/x2gobroker");
    let text = std::fs::read_to_string(&ours).expect("etc/pam.d/x2gobroker");
    let installed = Path::new("/etc/pam.d/x2gobroker");
    if !installed.exists() {
        std::fs::write(installed, &text).unwrap();
    }
    std::fs::write("/etc/pam.d/x2gobroker-test", &text).unwrap();
}

fn setup() {
    ensure_pam_service();
    ensure_user(GOLDEN_USER, GOLDEN_PASSWORD);
    ensure_user(SPECIAL_USER, SPECIAL_PASSWORD);
}

/// The real binary on a socket in a temporary directory; SIGTERM and reaped on drop.
struct Service {
    child: Option<Child>,
    socket: PathBuf,
    _directory: tempfile::TempDir,
}

impl Service {
    fn start() -> Service {
        Service::start_with(
            &[
                "-o",
                "root",
                "-g",
                "root",
                "-p",
                "0660",
                "-a",
                "x2gobroker",
                "--allow-service",
                "x2gobroker-test",
            ],
            None,
        )
    }

    fn start_with(arguments: &[&str], stale_socket: Option<()>) -> Service {
        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("run/x2gobroker-authservice.socket");
        if stale_socket.is_some() {
            std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
            std::fs::set_permissions(
                socket.parent().unwrap(),
                std::fs::Permissions::from_mode(0o751),
            )
            .unwrap();
            drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
            assert!(
                UnixStream::connect(&socket).is_err(),
                "stale: nobody listens"
            );
        }
        let child = Command::new(env!("CARGO_BIN_EXE_x2gobroker-authservice"))
            .arg("-s")
            .arg(&socket)
            .args(arguments)
            .env("RUST_LOG", "info")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start x2gobroker-authservice");
        let service = Service {
            child: Some(child),
            socket,
            _directory: directory,
        };
        service.wait_until_listening();
        service
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "the auth service did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// SIGTERM, then the exit status (within `limit`).
    fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the auth service did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The golden generator's exchange (tools/gen_cli.py `sock_exchange`): each write followed by
/// 50 ms; then read with a 3 s timeout, after the first data with 0.5 s, for at most 1.5 s.
/// Returns the bytes read and whether the server closed the connection.
fn golden_exchange(socket: &Path, writes: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for write in writes {
        stream.write_all(write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut data = Vec::new();
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_millis(1500) {
        match stream.read(&mut chunk) {
            Ok(0) => return (data, true),
            Ok(n_read) => {
                data.extend_from_slice(&chunk[..n_read]);
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (data, false)
            }
            Err(error) => panic!("read: {error}"),
        }
    }
    (data, false)
}

/// One request on its own connection; the reply and how long it took.
fn ask(socket: &Path, request: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64];
    while !reply.contains(&b'\n') {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n_read) => reply.extend_from_slice(&chunk[..n_read]),
        }
    }
    (
        String::from_utf8_lossy(&reply).into_owned(),
        started.elapsed(),
    )
}

fn request(user: &str, password: &str, service: &str) -> Vec<u8> {
    format!("{user}\r{password}\r{service}\n").into_bytes()
}

#[test]
fn golden_socket_exchanges_replay_byte_for_byte() {
    let _serial = serial();
    setup();
    let service = Service::start();
    let golden = include_str!("golden/authservice_socket.jsonl");
    let (mut n_identical, mut n_deviations) = (0, 0);
    for line in golden.lines().filter(|line| !line.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = record["id"].as_str().unwrap();
        let writes: Vec<Vec<u8>> = record["socket_writes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|write| write.as_str().unwrap().as_bytes().to_vec())
            .collect();
        let writes: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
        let recorded_reply = record["reply"].as_str().unwrap();
        let recorded_closed = record["server_closed_connection"].as_bool().unwrap();
        // B17 (docs/COMPATIBILITY.md): the reference crashes without a reply; we say `bad`.
        let (expected_reply, expected_closed) = if id == "authservice-malformed-fields" {
            n_deviations += 1;
            ("bad\n", true)
        } else {
            n_identical += 1;
            (recorded_reply, recorded_closed)
        };
        let (reply, closed) = golden_exchange(&service.socket, &writes);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            expected_reply,
            "{id}: reply"
        );
        assert_eq!(closed, expected_closed, "{id}: connection closed");
        println!(
            "{id}: {:?} closed={closed}",
            String::from_utf8_lossy(&reply)
        );
    }
    println!(
        "authservice_socket.jsonl: {n_identical} exchanges byte-for-byte as recorded, \
         {n_deviations} documented deviation (malformed fields answered bad)"
    );
    assert_eq!((n_identical, n_deviations), (6, 1));

    // The recording cut the second answer of a two-request write off (PAM's failure delay
    // outlasted its read); waiting longer shows both, in request order.
    let mut stream = UnixStream::connect(&service.socket).unwrap();
    stream
        .write_all(b"x2gotest\rGolden-Pw-1\rx2gobroker\nx2gotest\rbad\rx2gobroker\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut both = String::new();
    let _ = stream.read_to_string(&mut both);
    assert_eq!(both, "ok\nfail\n");
}

#[test]
fn passwords_with_spaces_colons_and_utf8_and_refusals() {
    let _serial = serial();
    setup();
    let service = Service::start();
    let table: [(&str, &str, &str, &str); 12] = [
        (SPECIAL_USER, SPECIAL_PASSWORD, "x2gobroker", "ok\n"),
        (SPECIAL_USER, SPECIAL_PASSWORD, "", "ok\n"),
        (SPECIAL_USER, SPECIAL_PASSWORD, "x2gobroker-test", "ok\n"),
        (SPECIAL_USER, "p a:s s:wörd ∑ 🎉", "x2gobroker", "fail\n"),
        (SPECIAL_USER, "", "x2gobroker", "fail\n"),
        (
            GOLDEN_USER,
            GOLDEN_PASSWORD,
            "../pam.d/x2gobroker",
            "fail\n",
        ),
        (
            GOLDEN_USER,
            GOLDEN_PASSWORD,
            "/etc/pam.d/x2gobroker",
            "fail\n",
        ),
        // not allowed: PAM would use /etc/pam.d/other, or another service's weaker stack
        (
            GOLDEN_USER,
            GOLDEN_PASSWORD,
            "no-such-pam-service",
            "fail\n",
        ),
        (GOLDEN_USER, "wrong", "su", "fail\n"),
        (GOLDEN_USER, GOLDEN_PASSWORD, "other", "fail\n"),
        ("", GOLDEN_PASSWORD, "x2gobroker", "fail\n"),
        ("nosuchuser-xyz", GOLDEN_PASSWORD, "x2gobroker", "fail\n"),
    ];
    for (user, password, pam_service, expected) in table {
        let (reply, _) = ask(&service.socket, &request(user, password, pam_service));
        // the table's password is not printed
        assert_eq!(reply, expected, "{user} with service {pam_service:?}");
    }
    let (reply, _) = ask(
        &service.socket,
        format!("{SPECIAL_USER}\r{SPECIAL_PASSWORD}\r\rextra\n").as_bytes(),
    );
    assert_eq!(reply, "bad\n");
}

#[test]
fn expired_and_locked_accounts_fail() {
    let _serial = serial();
    setup();
    ensure_user(EXPIRED_USER, OTHER_PASSWORD);
    account_tool("usermod", &["-e", "1970-01-02", EXPIRED_USER], None);
    ensure_user(LOCKED_USER, OTHER_PASSWORD);
    account_tool("usermod", &["-L", LOCKED_USER], None);
    let service = Service::start();
    for user in [EXPIRED_USER, LOCKED_USER] {
        let (reply, _) = ask(
            &service.socket,
            &request(user, OTHER_PASSWORD, "x2gobroker"),
        );
        assert_eq!(reply, "fail\n", "{user}");
    }
    // the same password on an ordinary account passes (the refusals above are the account's)
    account_tool("usermod", &["-e", "", EXPIRED_USER], None);
    let (reply, _) = ask(
        &service.socket,
        &request(EXPIRED_USER, OTHER_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n");
    account_tool("usermod", &["-e", "1970-01-02", EXPIRED_USER], None);
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn parallel_failures_do_not_delay_a_correct_login() {
    let _serial = serial();
    setup();
    let wrong_users: Vec<String> = (0..N_PARALLEL_FAILURES)
        .map(|index| format!("x2goaswrong{index}"))
        .collect();
    for user in &wrong_users {
        ensure_user(user, OTHER_PASSWORD);
    }
    let service = Service::start();
    let right = request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker");
    let wrong = request(GOLDEN_USER, "wrong", "x2gobroker");

    let alone = median(
        (0..3)
            .map(|_| {
                let (reply, elapsed) = ask(&service.socket, &right);
                assert_eq!(reply, "ok\n");
                elapsed
            })
            .collect(),
    );
    let (reply, failure_delay) = ask(&service.socket, &wrong);
    assert_eq!(reply, "fail\n");

    let socket = service.socket.clone();
    let failures: Vec<_> = wrong_users
        .iter()
        .map(|user| {
            let socket = socket.clone();
            let failing = request(user, "Wrong-Pw", "x2gobroker");
            std::thread::spawn(move || ask(&socket, &failing))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let (reply, during) = ask(&service.socket, &right);
    assert_eq!(reply, "ok\n");
    let mut slowest_failure = Duration::ZERO;
    for failure in failures {
        let (reply, elapsed) = failure.join().unwrap();
        assert_eq!(reply, "fail\n");
        slowest_failure = slowest_failure.max(elapsed);
    }
    println!(
        "PAM failure delay (one wrong password alone): {} ms; correct login alone: {} ms; \
         correct login during {N_PARALLEL_FAILURES} parallel wrong ones: {} ms; \
         slowest of those failures: {} ms",
        failure_delay.as_millis(),
        alone.as_millis(),
        during.as_millis(),
        slowest_failure.as_millis()
    );
    assert!(
        failure_delay > Duration::from_millis(500),
        "pam_unix delays failures (~2 s): {failure_delay:?}"
    );
    assert!(
        during < alone + failure_delay,
        "a correct login waited behind the failures: {during:?} (alone {alone:?}, one failure {failure_delay:?})"
    );
    // the failures ran in parallel: 20 in a row would take 20 failure delays
    assert!(slowest_failure < failure_delay * 4, "{slowest_failure:?}");
}

#[test]
fn the_broker_client_against_the_real_service() {
    use x2gobroker::auth::authservice::{authenticate, AuthServiceError};
    let _serial = serial();
    setup();
    let service = Service::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(10);
    runtime.block_on(async {
        for (user, password, pam_service, expected) in [
            (GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker", true),
            (GOLDEN_USER, "Golden-Pw-2", "x2gobroker", false),
            (SPECIAL_USER, SPECIAL_PASSWORD, "x2gobroker", true),
            (SPECIAL_USER, SPECIAL_PASSWORD, "", true),
            ("nosuchuser-xyz", "whatever", "x2gobroker", false),
        ] {
            let granted = authenticate(&service.socket, user, password, pam_service, timeout)
                .await
                .unwrap_or_else(|error| panic!("{user}: {error}"));
            assert_eq!(granted, expected, "{user}");
        }
        let refused =
            authenticate(&service.socket, GOLDEN_USER, "a\rb", "x2gobroker", timeout).await;
        assert!(matches!(refused, Err(AuthServiceError::InvalidInput)));
        let missing = service.socket.with_file_name("missing.socket");
        let unreachable = authenticate(
            &missing,
            GOLDEN_USER,
            GOLDEN_PASSWORD,
            "x2gobroker",
            timeout,
        )
        .await;
        assert!(matches!(unreachable, Err(AuthServiceError::Unreachable(_))));
    });
}

#[test]
fn socket_set_up_stale_socket_and_graceful_sigterm() {
    let _serial = serial();
    setup();
    let mut service =
        Service::start_with(&["-o", "root", "-g", "x2gobroker", "-p", "0o660"], Some(()));
    let metadata = std::fs::metadata(&service.socket).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o660);
    assert_eq!(metadata.uid(), 0);
    let expected_gid = nix::unistd::Group::from_name("x2gobroker")
        .unwrap()
        .map(|group| group.gid.as_raw())
        .unwrap_or(0); // no such group: the owner's group is kept (with a warning)
    assert_eq!(metadata.gid(), expected_gid);
    let directory = std::fs::metadata(service.socket.parent().unwrap()).unwrap();
    assert_eq!(
        directory.permissions().mode() & 0o777,
        0o751,
        "an existing directory is left alone"
    );

    // without -a only x2gobroker is allowed
    let (reply, _) = ask(
        &service.socket,
        &request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n");
    let (reply, _) = ask(
        &service.socket,
        &request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker-test"),
    );
    assert_eq!(reply, "fail\n");

    // a wrong password in flight when SIGTERM arrives is still answered
    let socket = service.socket.clone();
    let in_flight =
        std::thread::spawn(move || ask(&socket, &request(GOLDEN_USER, "wrong", "x2gobroker")));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = service.terminate(Duration::from_secs(8));
    let (reply, _) = in_flight.join().unwrap();
    println!("SIGTERM to exit: {} ms", started.elapsed().as_millis());
    assert!(status.success(), "{status:?}");
    assert_eq!(reply, "fail\n");
    assert!(!service.socket.exists(), "the socket is removed at exit");
}

#[test]
fn environment_names_the_socket_and_a_fresh_directory_gets_the_mode() {
    let _serial = serial();
    let directory = tempfile::tempdir().unwrap();
    let socket = directory.path().join("fresh/dir/as.socket");
    let mut child = Command::new(env!("CARGO_BIN_EXE_x2gobroker-authservice"))
        .args(["-o", "root", "-g", "root", "-p", "0600"])
        .env("X2GOBROKER_AUTHSERVICE_SOCKET", &socket)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no socket at $X2GOBROKER_AUTHSERVICE_SOCKET"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());

    let bad = Command::new(env!("CARGO_BIN_EXE_x2gobroker-authservice"))
        .args(["-s"])
        .arg(directory.path().join("x.socket"))
        .args(["-p", "rw-rw----"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("octal"));
}

const PEER_GROUP: &str = "x2goaspeers";
const PEER_MEMBER: &str = "x2goaspeermember";
const PEER_OUTSIDER: &str = "x2goaspeeroutsider";
const SYSTEM_USER: &str = "x2goassystem";
const THROTTLED_USER: &str = "x2goasthrottled";

fn group_gid(name: &str) -> u32 {
    if nix::unistd::Group::from_name(name).unwrap().is_none() {
        account_tool("groupadd", &[name], None);
    }
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// [`ask`] from a thread of its own whose effective uid and gid (what SO_PEERCRED reports)
/// and supplementary groups are the given ones; the reply and whether the connection was
/// closed without one.
fn ask_as(socket: &Path, uid: u32, gid: u32, groups: &[u32], request: &[u8]) -> (String, bool) {
    let socket = socket.to_path_buf();
    let request = request.to_vec();
    let groups: Vec<rustix::thread::Gid> = groups
        .iter()
        .map(|gid| rustix::thread::Gid::from_raw(*gid))
        .collect();
    std::thread::spawn(move || {
        // per-thread credentials; the thread ends with them
        rustix::thread::set_thread_groups(&groups).unwrap();
        rustix::thread::set_thread_res_gid(None, Some(rustix::thread::Gid::from_raw(gid)), None)
            .unwrap();
        rustix::thread::set_thread_res_uid(None, Some(rustix::thread::Uid::from_raw(uid)), None)
            .unwrap();
        let mut stream = UnixStream::connect(&socket).expect("the socket is reachable (0666)");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        // the refused side may already have closed: a failed write is part of the answer
        let _ = stream.write_all(&request);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let closed_without_reply = text.is_empty();
        (text, closed_without_reply)
    })
    .join()
    .unwrap()
}

#[test]
fn a_peer_of_another_uid_or_group_is_refused() {
    let _serial = serial();
    setup();
    let peers_gid = group_gid(PEER_GROUP);
    ensure_user(PEER_OUTSIDER, OTHER_PASSWORD);
    ensure_user(PEER_MEMBER, OTHER_PASSWORD);
    account_tool("usermod", &["-aG", PEER_GROUP, PEER_MEMBER], None);
    // a socket mode that lets everybody connect: only the peer check stands in the way
    let service = Service::start_with(&["-o", "root", "-g", PEER_GROUP, "-p", "0666"], None);
    std::fs::set_permissions(
        service._directory.path(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let request = request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker");
    let outsider = nix::unistd::User::from_name(PEER_OUTSIDER)
        .unwrap()
        .unwrap();
    let member = nix::unistd::User::from_name(PEER_MEMBER).unwrap().unwrap();

    let started = Instant::now();
    let (reply, closed) = ask_as(
        &service.socket,
        outsider.uid.as_raw(),
        outsider.gid.as_raw(),
        &[],
        &request,
    );
    let refused_in = started.elapsed();
    assert!(
        closed,
        "an outsider is disconnected without an answer: {reply:?}"
    );
    // nobody else's uid either: the golden user itself asking for its own password
    let (reply, closed) = ask_as(
        &service.socket,
        uid_of(GOLDEN_USER),
        uid_of(GOLDEN_USER),
        &[],
        &request,
    );
    assert!(closed, "{reply:?}");
    // allowed: a member of the group (group database), a process whose gid is the group, root
    let (reply, _) = ask_as(
        &service.socket,
        member.uid.as_raw(),
        member.gid.as_raw(),
        &[peers_gid],
        &request,
    );
    assert_eq!(reply, "ok\n", "a member of the socket's group");
    let (reply, _) = ask_as(
        &service.socket,
        outsider.uid.as_raw(),
        peers_gid,
        &[],
        &request,
    );
    assert_eq!(
        reply, "ok\n",
        "a process whose effective gid is the socket's group"
    );
    let (reply, _) = ask(&service.socket, &request);
    assert_eq!(reply, "ok\n", "root");
    println!(
        "a peer outside root/owner/group refused in {} ms",
        refused_in.as_millis()
    );
    drop(service);
    account_tool("userdel", &["-r", PEER_OUTSIDER], None);
    account_tool("userdel", &["-r", PEER_MEMBER], None);
    account_tool("groupdel", &[PEER_GROUP], None);
}

#[test]
fn root_and_system_accounts_are_refused_without_asking_pam() {
    let _serial = serial();
    setup();
    if !user_exists(SYSTEM_USER) {
        account_tool(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/bash",
                SYSTEM_USER,
            ],
            None,
        );
    }
    account_tool(
        "chpasswd",
        &[],
        Some(&format!("{SYSTEM_USER}:{OTHER_PASSWORD}\n")),
    );
    assert!(
        uid_of(SYSTEM_USER) < 1000,
        "useradd --system gives a system uid"
    );
    let service = Service::start();
    let (reply, failure_delay) = ask(
        &service.socket,
        &request(GOLDEN_USER, "wrong", "x2gobroker"),
    );
    assert_eq!(reply, "fail\n");
    let mut slowest_refusal = Duration::ZERO;
    for (user, password) in [
        ("root", "anything"),
        ("root", GOLDEN_PASSWORD),
        (SYSTEM_USER, OTHER_PASSWORD),
        ("daemon", "daemon"),
    ] {
        let (reply, elapsed) = ask(&service.socket, &request(user, password, "x2gobroker"));
        assert_eq!(reply, "fail\n", "{user}");
        slowest_refusal = slowest_refusal.max(elapsed);
    }
    println!(
        "PAM failure delay {} ms; root and system accounts refused in at most {} ms",
        failure_delay.as_millis(),
        slowest_refusal.as_millis()
    );
    assert!(
        failure_delay > Duration::from_millis(500),
        "{failure_delay:?}"
    );
    assert!(
        slowest_refusal < Duration::from_millis(200),
        "refused without PAM's failure delay: {slowest_refusal:?}"
    );
    drop(service);

    // allowed by name: the system account's right password passes PAM; root stays refused
    let service = Service::start_with(
        &[
            "-o",
            "root",
            "-g",
            "root",
            "--allow-system-user",
            &format!("{SYSTEM_USER},root"),
        ],
        None,
    );
    let (reply, _) = ask(
        &service.socket,
        &request(SYSTEM_USER, OTHER_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n", "PAM accepts it: the refusal above was ours");
    let (reply, elapsed) = ask(&service.socket, &request("root", "anything", "x2gobroker"));
    assert_eq!(reply, "fail\n");
    assert!(elapsed < Duration::from_millis(200), "{elapsed:?}");
    drop(service);
    account_tool("userdel", &[SYSTEM_USER], None);
}

#[test]
fn the_throttle_refuses_a_right_password_after_n_failures() {
    let _serial = serial();
    setup();
    ensure_user(THROTTLED_USER, OTHER_PASSWORD);
    let service = Service::start_with(
        &[
            "-o",
            "root",
            "-g",
            "root",
            "--max-failures-per-user",
            "3",
            "--lockout-secs",
            "4",
        ],
        None,
    );
    let socket = service.socket.clone();
    let failures: Vec<_> = (0..3)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                ask(&socket, &request(THROTTLED_USER, "wrong", "x2gobroker"))
            })
        })
        .collect();
    let mut failure_delay = Duration::ZERO;
    for failure in failures {
        let (reply, elapsed) = failure.join().unwrap();
        assert_eq!(reply, "fail\n");
        failure_delay = failure_delay.max(elapsed);
    }
    let locked_at = Instant::now();
    let (reply, refused_in) = ask(
        &service.socket,
        &request(THROTTLED_USER, OTHER_PASSWORD, "x2gobroker"),
    );
    assert_eq!(
        reply, "fail\n",
        "the right password is refused while throttled"
    );
    assert!(
        refused_in < Duration::from_millis(200),
        "refused without PAM: {refused_in:?}"
    );
    let (reply, _) = ask(
        &service.socket,
        &request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n", "another user is not throttled");
    // after the lockout the right password works again
    let lockout_end = locked_at + Duration::from_secs(4);
    std::thread::sleep(
        lockout_end.saturating_duration_since(Instant::now()) + Duration::from_millis(300),
    );
    let (reply, _) = ask(
        &service.socket,
        &request(THROTTLED_USER, OTHER_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n");
    println!(
        "3 failures ({} ms in parallel) lock the user: the right password refused in {} ms; \
         served again after the 4 s lockout",
        failure_delay.as_millis(),
        refused_in.as_millis()
    );
}

#[test]
fn sighup_keeps_the_service_serving_a_check_in_flight_included() {
    let _serial = serial();
    setup();
    let mut service = Service::start();
    // a wrong password (PAM's failure delay, ~2 s) is in flight while SIGHUP arrives
    let socket = service.socket.clone();
    let in_flight =
        std::thread::spawn(move || ask(&socket, &request(GOLDEN_USER, "wrong", "x2gobroker")));
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        nix::sys::signal::kill(service.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (reply, _) = in_flight.join().unwrap();
    assert_eq!(reply, "fail\n", "the check in flight is answered");
    let still_running = service.child.as_mut().unwrap().try_wait().unwrap();
    assert!(
        still_running.is_none(),
        "SIGHUP killed the auth service: {still_running:?}"
    );
    let (reply, _) = ask(
        &service.socket,
        &request(GOLDEN_USER, GOLDEN_PASSWORD, "x2gobroker"),
    );
    assert_eq!(reply, "ok\n", "new checks after SIGHUP");
    assert!(service.terminate(Duration::from_secs(8)).success());
}
