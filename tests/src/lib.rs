//! Shared helpers of the end-to-end tests: finding the built binaries, free ports, child daemons, local users.

pub mod certs;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The lock every test process that rebuilds or changes the system's X2Go session DB holds
/// until it exits (the broker's e2e tests, the agent's tests), so that two runs never mix.
pub const FARM_LOCK_FILE: &str = "/tmp/x2go-farm.lock";

static FARM_FILE_LOCK: std::sync::OnceLock<nix::fcntl::Flock<std::fs::File>> =
    std::sync::OnceLock::new();

/// Takes [`FARM_LOCK_FILE`] (waiting for another holder) and keeps it until this process exits.
pub fn hold_farm_lock() {
    FARM_FILE_LOCK.get_or_init(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(FARM_LOCK_FILE)
            .expect(FARM_LOCK_FILE);
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, error)| error)
            .expect("flock /tmp/x2go-farm.lock")
    });
}

/// The golden vectors shipped with the broker (copied from the reference recordings).
pub fn golden_dir() -> PathBuf {
    workspace_root().join("broker/tests/golden")
}

/// A binary built by cargo into the same profile directory as this test.
pub fn binary(name: &str) -> PathBuf {
    let executable = std::env::current_exe().expect("current_exe");
    let profile_directory = executable
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_directory.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Replaces the file at `path` with `text` the way editors and config managers do (a sibling
/// written, then renamed over it), so a running broker never reads it half-written.
pub fn replace_file(path: &std::path::Path, text: impl AsRef<[u8]>) {
    let mut sibling = path.as_os_str().to_owned();
    sibling.push(".new");
    let sibling = PathBuf::from(sibling);
    std::fs::write(&sibling, text).unwrap();
    std::fs::rename(&sibling, path).unwrap();
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Waits until something accepts TCP connections on `address`.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process that is killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub address: SocketAddr,
}

impl Daemon {
    /// Starts `command` and waits until it listens on `address`.
    pub fn start(mut command: Command, address: SocketAddr) -> Daemon {
        command.stdin(Stdio::null());
        if std::env::var_os("E2E_VERBOSE").is_none() {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = command.spawn().expect("spawn daemon");
        let mut daemon = Daemon { child, address };
        if !wait_for_port(address, Duration::from_secs(20)) {
            let status = daemon.child.try_wait();
            panic!("daemon did not listen on {address} (status {status:?})");
        }
        daemon
    }

    /// Starts `command` with its stderr (the broker's log) in `log`, and waits until it
    /// listens on `address`.
    pub fn start_logged(mut command: Command, address: SocketAddr, log: &Path) -> Daemon {
        let file = std::fs::File::create(log).expect("log file");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let child = command.spawn().expect("spawn daemon");
        let mut daemon = Daemon { child, address };
        if !wait_for_port(address, Duration::from_secs(20)) {
            let status = daemon.child.try_wait();
            panic!(
                "daemon did not listen on {address} (status {status:?}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        daemon
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `X2GOBROKER_LOGCONFIG` for brokers under test: no such file, so that a broker started as
/// root logs to stderr even where the reference's `x2gobroker-loggers.conf` is installed
/// (it would write `/var/log/x2gobroker/*.log`).
pub const NO_LOGCONFIG: &str = "/nonexistent/x2gobroker-loggers.conf";

/// The broker daemon started from `target/` with a config and a profiles file.
pub fn start_broker(
    config: &Path,
    profiles: &Path,
    working_directory: &Path,
    cookie_directory: &Path,
    extra_env: &[(&str, &str)],
) -> Daemon {
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut command = Command::new(binary("x2gobroker-daemon"));
    command
        .arg("-C")
        .arg(config)
        .arg("-b")
        .arg(address.to_string())
        .current_dir(working_directory)
        .env("X2GOBROKER_SESSIONPROFILES", profiles)
        .env("X2GOBROKER_COOKIE_DIRECTORY", cookie_directory)
        .env("X2GOBROKER_LOGCONFIG", NO_LOGCONFIG)
        .env_remove("X2GOBROKER_DEFAULT_BACKEND")
        .env_remove("X2GOBROKER_CONFIG");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    Daemon::start(command, address)
}

/// A broker started on `config_text` (written to a fresh directory that also holds its
/// cookies) and the golden `profiles_basic.ini`, or `profiles` when given.
pub fn broker_with_config(
    config_text: &str,
    profiles: Option<&Path>,
    extra_env: &[(&str, &str)],
) -> (tempfile::TempDir, Daemon) {
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, config_text).expect("write config");
    let default_profiles = golden_dir().join("configs/profiles_basic.ini");
    let profiles = profiles.unwrap_or(&default_profiles);
    let daemon = start_broker(
        &config,
        profiles,
        work.path(),
        &work.path().join("cookies"),
        extra_env,
    );
    (work, daemon)
}

/// Whether the tests run as root (CI does; user and PAM tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Creates local user `name` (home under /home) if missing and sets its password.
pub fn ensure_user(name: &str, password: Option<&str>) {
    assert!(
        is_root(),
        "creating local users needs root (CI runs as root)"
    );
    if !user_exists(name) {
        let status = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", name])
            .stderr(Stdio::null())
            .status()
            .expect("useradd");
        // another test may have created it at the same moment
        assert!(status.success() || user_exists(name), "useradd {name}");
    }
    if let Some(password) = password {
        use std::io::Write;
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{name}:{password}\n").as_bytes())
            .expect("write chpasswd");
        assert!(child.wait().expect("chpasswd").success(), "chpasswd {name}");
    }
}

/// Creates the system account `name` (no home, no login) if missing.
pub fn ensure_system_user(name: &str) {
    assert!(is_root(), "creating accounts needs root (CI runs as root)");
    if !user_exists(name) {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .stderr(Stdio::null())
            .status()
            .expect("useradd");
        assert!(status.success() || user_exists(name), "useradd {name}");
    }
}

/// The auth service started from `target/` on a socket in `directory`, with our PAM service
/// file installed as `/etc/pam.d/x2gobroker` when the system has none.
pub struct AuthService {
    pub child: Child,
    pub socket: PathBuf,
}

impl AuthService {
    /// Starts `x2gobroker-authservice` and waits for its socket.
    pub fn start(directory: &Path) -> AuthService {
        assert!(
            is_root(),
            "PAM checks of other users need root (CI runs as root)"
        );
        let pam_file = Path::new("/etc/pam.d/x2gobroker");
        if !pam_file.exists() {
            std::fs::copy(workspace_root().join("etc/pam.d/x2gobroker"), pam_file)
                .expect("install etc/pam.d/x2gobroker");
        }
        let socket = directory.join("authservice.socket");
        let mut command = Command::new(binary("x2gobroker-authservice"));
        command
            .arg("-s")
            .arg(&socket)
            .args(["-o", "root", "-g", "root", "-p", "0666"])
            .stdin(Stdio::null());
        if std::env::var_os("E2E_VERBOSE").is_none() {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = command.spawn().expect("spawn x2gobroker-authservice");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the auth service did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        AuthService { child, socket }
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces every UUID by `{UUID}` and every RSA private key PEM by `{RSA_PRIVATE_KEY}`, as the
/// golden `body_normalized` fields do.
pub fn normalise(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("-----BEGIN RSA PRIVATE KEY-----") {
        out.push_str(&rest[..start]);
        let end_marker = "-----END RSA PRIVATE KEY-----\n";
        match rest[start..].find(end_marker) {
            Some(end) => {
                out.push_str("{RSA_PRIVATE_KEY}");
                rest = &rest[start + end + end_marker.len()..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    replace_uuids(&out)
}

fn is_uuid_at(bytes: &[u8], at: usize) -> bool {
    if at + 36 > bytes.len() {
        return false;
    }
    bytes[at..at + 36]
        .iter()
        .enumerate()
        .all(|(position, byte)| match position {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

fn replace_uuids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    while position < bytes.len() {
        if is_uuid_at(bytes, position) {
            out.push_str("{UUID}");
            position += 36;
        } else {
            let character = text[position..].chars().next().expect("char");
            out.push(character);
            position += character.len_utf8();
        }
    }
    out
}

/// A real OpenSSH server on 127.0.0.1 for tests: its own host key and config, public-key
/// logins only, `AuthorizedKeysFile .ssh/authorized_keys .x2go/authorized_keys`.
pub struct Sshd {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub host_public_key: String,
}

impl Sshd {
    /// Starts `/usr/sbin/sshd` for `allow_users` on a free port of 127.0.0.1, files in `directory`.
    pub fn start(directory: &Path, allow_users: &[&str]) -> Sshd {
        Sshd::start_on(directory, allow_users, &["127.0.0.1"])
    }

    /// Starts `/usr/sbin/sshd` on one free port of every loopback address in `listen`.
    pub fn start_on(directory: &Path, allow_users: &[&str], listen: &[&str]) -> Sshd {
        assert!(is_root(), "sshd needs root (CI runs as root)");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let host_key = directory.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key)
                .status()
                .expect("ssh-keygen");
            assert!(status.success());
        }
        let port = free_port();
        let log = directory.join("sshd.log");
        let config = directory.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n{}HostKey {}\nPidFile {}\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AuthorizedKeysFile .ssh/authorized_keys .x2go/authorized_keys\nAllowUsers {}\n\
                 PermitRootLogin no\nStrictModes yes\nLogLevel VERBOSE\nX11Forwarding no\n\
                 AllowTcpForwarding yes\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin\n",
                listen.iter().map(|address| format!("ListenAddress {address}\n")).collect::<String>(),
                host_key.display(),
                directory.join("sshd.pid").display(),
                allow_users.join(" ")
            ),
        )
        .expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e", "-E"])
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sshd");
        let address: SocketAddr = format!("{}:{port}", listen[0]).parse().expect("address");
        assert!(
            wait_for_port(address, Duration::from_secs(10)),
            "sshd did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let host_public_key =
            std::fs::read_to_string(directory.join("ssh_host_ed25519_key.pub")).expect("host key");
        Sshd {
            child,
            port,
            log,
            host_public_key,
        }
    }

    /// What sshd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unlocks a local account for public-key SSH logins (sshd refuses locked accounts).
pub fn unlock_for_ssh(user: &str) {
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = shadow
        .lines()
        .find(|line| line.starts_with(&format!("{user}:")))
        .map(|line| line.split(':').nth(1).unwrap_or("").starts_with('!'))
        .unwrap_or(true);
    if locked {
        let status = Command::new("usermod")
            .args(["-p", "*", user])
            .status()
            .expect("usermod");
        assert!(status.success(), "usermod -p '*' {user}");
    }
}

/// The established TCP connections of process `pid` to `remote_port`, counted per remote
/// IPv4 address (from `/proc/PID/fd` and `/proc/PID/net/tcp`).
pub fn connections_to_port(
    pid: u32,
    remote_port: u16,
) -> std::collections::BTreeMap<std::net::Ipv4Addr, usize> {
    let mut inodes = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let mut counts = std::collections::BTreeMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(remote), Some(state), Some(inode)) =
            (fields.get(2), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != "01" || !inodes.contains(*inode) {
            continue;
        }
        let Some((address, port)) = remote.split_once(':') else {
            continue;
        };
        let (Ok(address), Ok(port)) = (
            u32::from_str_radix(address, 16),
            u16::from_str_radix(port, 16),
        ) else {
            continue;
        };
        if port == remote_port {
            // the kernel prints the address in host byte order of the little-endian word
            let address = std::net::Ipv4Addr::from(address.swap_bytes());
            *counts.entry(address).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_golden_files() {
        assert_eq!(
            normalise("AUTHID:f3e053dd-2ddb-4c0f-9ec6-89b8862504a7\nAccess granted\n"),
            "AUTHID:{UUID}\nAccess granted\n"
        );
        assert_eq!(
            normalise("SERVER:a:22\n-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\nX"),
            "SERVER:a:22\n{RSA_PRIVATE_KEY}X"
        );
    }
}
