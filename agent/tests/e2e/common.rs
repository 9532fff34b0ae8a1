//! Shared helpers: serialisation, the fixture farm, starting the daemon, gRPC requests,
//! what the X2Go tools print.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tonic::transport::Channel;
use x2gobroker_proto::agent::v1::agent_client::AgentClient;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Users of the fixture farm.
pub const ALICE: &str = "x2goalice";
pub const BOB: &str = "x2gobob";
pub const CAROL: &str = "x2gocarol";
pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_x2gobroker-agent");
pub const AGENTD_BIN: &str = env!("CARGO_BIN_EXE_x2gobroker-agentd");

/// Takes the lock every test holds for its whole run.
pub async fn serial() -> MutexGuard<'static, ()> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the agent end-to-end tests must run as root"
    );
    SERIAL.lock().await
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Rebuilds the fixture session DB (x2goalice: R+S, x2gobob: 3×R, x2gocarol: none).
pub fn reset_farm() {
    // the broker's e2e tests use the same session DB: one process at a time
    x2gobroker_e2e::hold_farm_lock();
    let script = repo_root().join("tests/fixtures/x2go-farm.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("FARM_QUIET", "1")
        .output()
        .expect("run the fixture script");
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command, panicking when it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// What `x2golistsessions --all-servers` prints for the user (the reference listing).
pub fn x2golistsessions(user: &str) -> String {
    let output = run(
        "sudo",
        &["-u", user, "--", "x2golistsessions", "--all-servers"],
    );
    assert!(output.status.success(), "x2golistsessions as {user} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// All non-failed sessions as root sees them.
pub fn x2golistsessions_root() -> String {
    let output = run("x2golistsessions_root", &["--all-servers"]);
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.split('|').nth(4) != Some("F"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A session line with the age field (13th, grows every second) blanked.
pub fn mask_age(line: &str) -> String {
    let mut fields: Vec<&str> = line.split('|').collect();
    if fields.len() > 12 {
        fields[12] = "*";
    }
    fields.join("|")
}

/// Sorted, age-masked lines of a listing.
pub fn masked_lines(listing: &str) -> Vec<String> {
    let mut lines: Vec<String> = listing
        .lines()
        .filter(|l| !l.is_empty())
        .map(mask_age)
        .collect();
    lines.sort();
    lines
}

/// The field `index` (0-based) of the first line of `listing` matching `predicate`.
pub fn find_session(listing: &str, predicate: impl Fn(&[&str]) -> bool) -> Option<String> {
    listing
        .lines()
        .map(|line| line.split('|').collect::<Vec<_>>())
        .find(|fields| predicate(fields))
        .map(|fields| fields[1].to_owned())
}

/// Status letter of a session in the root listing (`None` when absent).
pub fn status_of(session_id: &str) -> Option<String> {
    x2golistsessions_root()
        .lines()
        .map(|line| line.split('|').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields[1] == session_id)
        .map(|fields| fields[4].clone())
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub address: String,
    pub token: String,
    pub token_file: PathBuf,
    pub stderr_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `x2gobroker-agentd --listen 127.0.0.1:0 --token-file …` plus `extra` args.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_with_groups(extra, &[])
    }

    /// Like [`Daemon::start`], the daemon (still root) holding the supplementary groups
    /// `groups` (names; through `setpriv --groups`), as a root login shell would give it.
    pub fn start_with_groups(extra: &[&str], groups: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("test-token-{}-0123456789", std::process::id());
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let stderr_log = dir.path().join("agentd.log");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--token-file".into(),
            token_file.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut command = if groups.is_empty() {
            Command::new(AGENTD_BIN)
        } else {
            let gids: Vec<String> = groups
                .iter()
                .map(|name| {
                    let group = nix::unistd::Group::from_name(name).unwrap().unwrap();
                    group.gid.as_raw().to_string()
                })
                .collect();
            let mut wrapped = Command::new("setpriv");
            wrapped
                .arg(format!("--groups={}", gids.join(",")))
                .arg("--")
                .arg(AGENTD_BIN);
            wrapped
        };
        let mut child = command
            .args(&args)
            .env("X2GOBROKER_AGENTD_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .expect("start x2gobroker-agentd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("x2gobroker-agentd listening on ")
            .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"))
            .to_owned();
        Daemon {
            child,
            address,
            token,
            token_file,
            stderr_log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// A plaintext client; the daemon may need a moment before it accepts.
    pub async fn client(&self) -> AgentClient<Channel> {
        let url = format!("http://{}", self.address);
        for _ in 0..50 {
            if let Ok(client) = AgentClient::connect(url.clone()).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot connect to {url}");
    }

    /// A request carrying the bearer token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_token(&self.token, message)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (up to 10 s) until the log has `count` lines containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {count}× {needle:?} in the log: {log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A request carrying `token` as its bearer token.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Replaces `path` by a file holding `text` with `mode`, in one rename (as an admin's
/// editor or config management does).
pub fn replace_file(path: &Path, text: &[u8], mode: u32) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::set_permissions(
        &temporary,
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Runs our legacy agent with `args` and optional SSH_ORIGINAL_COMMAND.
pub fn legacy(args: &[&str], ssh_original_command: Option<&str>) -> Output {
    let mut command = Command::new(AGENT_BIN);
    command
        .args(args)
        .env_remove("SUDO_USER")
        .env_remove("SSH_ORIGINAL_COMMAND");
    if let Some(value) = ssh_original_command {
        command.env("SSH_ORIGINAL_COMMAND", value);
    }
    command.output().expect("run x2gobroker-agent")
}

/// Creates a regular local user if missing.
pub fn ensure_user(name: &str) -> nix::unistd::User {
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let output = run("useradd", &["-m", "-s", "/bin/bash", name]);
        assert!(
            output.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    nix::unistd::User::from_name(name).unwrap().unwrap()
}

/// Makes sure the fixture users exist (runs the fixture when they do not).
pub fn ensure_farm() {
    if nix::unistd::User::from_name(CAROL).unwrap().is_none() || x2golistsessions(ALICE).is_empty()
    {
        reset_farm();
    }
}
