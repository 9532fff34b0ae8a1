//! The HTTP servers under test as child processes: the reference broker, ours, and the bare "hello" ceiling.
//!
//! Each runs in its own process (so its memory and CPU time can be read from /proc) on
//! 127.0.0.1, and is stopped by its PID (SIGTERM, then SIGKILL) when dropped.

use crate::config::ConfigDir;
use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The Debian package of the reference broker, and its daemon.
pub const REFERENCE_PACKAGE: &str = "x2gobroker-daemon";
pub const REFERENCE_DAEMON: &str = "/usr/bin/x2gobroker-daemon";

/// A free TCP port on 127.0.0.1 (bound, then released: good enough on loopback).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// One server process.
#[derive(Debug)]
pub struct ServerProcess {
    pub label: String,
    pub address: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl ServerProcess {
    /// Starts `command` (its output to `log`, in its own process group) as `label`.
    pub fn spawn(
        label: &str,
        mut command: Command,
        address: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<ServerProcess> {
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {label}: {command:?}"))?;
        Ok(ServerProcess {
            label: label.to_string(),
            address,
            log,
            child,
        })
    }

    /// The process id (for /proc sampling).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /` answers 200, at most `limit`.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let give_up = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited with {status} before answering; its log:\n{}",
                    self.label,
                    self.log_tail()
                );
            }
            let answer = tokio::time::timeout(Duration::from_secs(1), async {
                let mut connection = crate::load::Connection::open(self.address).await?;
                connection.send(&hyper::Method::GET, "/", None).await
            })
            .await;
            if let Ok(Ok((status, _))) = answer {
                if status == hyper::StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() > give_up {
                bail!(
                    "{} did not answer on {} within {limit:?}; its log:\n{}",
                    self.label,
                    self.address,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the process's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stops the process: SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let give_up = Instant::now() + Duration::from_secs(3);
        while Instant::now() < give_up {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How to run our broker.
#[derive(Debug, Clone)]
pub enum OursBinary {
    /// The real `x2gobroker-daemon` binary.
    Daemon(PathBuf),
    /// This benchmark binary's `serve-broker` subcommand (the broker library, same code path
    /// as the daemon minus its command line; used by the smoke test).
    Library(PathBuf),
}

impl OursBinary {
    /// `x2gobroker-daemon` next to this executable (cargo puts both in `target/<profile>/`).
    pub fn next_to_current_exe() -> anyhow::Result<OursBinary> {
        let exe = std::env::current_exe()?;
        let daemon = exe
            .parent()
            .map(|directory| directory.join("x2gobroker-daemon"))
            .filter(|path| path.exists())
            .with_context(|| {
                format!(
                    "no x2gobroker-daemon next to {} (build it: cargo build --release -p x2gobroker)",
                    exe.display()
                )
            })?;
        Ok(OursBinary::Daemon(daemon))
    }
}

/// Starts our broker on a free port with `config`.
pub fn start_ours(
    binary: &OursBinary,
    config: &ConfigDir,
    label: &str,
) -> anyhow::Result<ServerProcess> {
    let port = free_port()?;
    let bind = format!("127.0.0.1:{port}");
    let cookies = config.directory.join("cookies");
    std::fs::create_dir_all(&cookies)?;
    let mut command = match binary {
        OursBinary::Daemon(path) => Command::new(path),
        OursBinary::Library(path) => {
            let mut command = Command::new(path);
            command.arg("serve-broker");
            command
        }
    };
    command
        .arg("-C")
        .arg(&config.broker_conf)
        .arg("-b")
        .arg(&bind)
        .env("X2GOBROKER_SESSIONPROFILES", &config.profiles)
        .env("X2GOBROKER_COOKIE_DIRECTORY", &cookies)
        .env("RUST_LOG", "warn");
    ServerProcess::spawn(
        label,
        command,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        config.directory.join(format!("{label}.log")),
    )
}

/// Starts the reference broker (Debian's, tornado, HTTP mode) on a free port with `config`,
/// as the recipe does: privileges dropped to `x2gobroker`, debug logging silenced.
pub fn start_reference(config: &ConfigDir) -> anyhow::Result<ServerProcess> {
    let port = free_port()?;
    let mut command = Command::new(REFERENCE_DAEMON);
    command
        .args(["-b", &format!("127.0.0.1:{port}"), "-C"])
        .arg(&config.broker_conf)
        .arg("--drop-privileges")
        .env_clear()
        // "#!/usr/bin/env python3": keep pyenv/venv pythons out of PATH
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("X2GOBROKER_SESSIONPROFILES", &config.profiles)
        .env("X2GOBROKER_TESTSUITE", "1");
    ServerProcess::spawn(
        "reference",
        command,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        config.directory.join("reference.log"),
    )
}

/// Starts the bare "hello" server (this binary's `hello` subcommand).
pub fn start_hello(bench_binary: &Path, log_directory: &Path) -> anyhow::Result<ServerProcess> {
    let port = free_port()?;
    let mut command = Command::new(bench_binary);
    command.args(["hello", "--bind", &format!("127.0.0.1:{port}")]);
    ServerProcess::spawn(
        "hello",
        command,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        log_directory.join("hello.log"),
    )
}

/// Installs the reference broker from Debian if it is missing, without starting any service
/// (a `policy-rc.d` answering 101 is put in place for the install if there is none).
pub fn ensure_reference_installed() -> anyhow::Result<()> {
    if Path::new(REFERENCE_DAEMON).exists() {
        return Ok(());
    }
    eprintln!("installing the reference broker: apt-get install {REFERENCE_PACKAGE}");
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let created_policy = if policy.exists() {
        false
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
        true
    };
    let install = || {
        Command::new("apt-get")
            .args([
                "-o",
                "DPkg::Lock::Timeout=900",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                REFERENCE_PACKAGE,
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let mut status = install();
    if !matches!(&status, Ok(done) if done.success()) {
        let _ = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=900", "update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        status = install();
    }
    if created_policy {
        let _ = std::fs::remove_file(policy);
    }
    match status {
        Ok(done) if done.success() && Path::new(REFERENCE_DAEMON).exists() => Ok(()),
        Ok(done) => bail!("apt-get install {REFERENCE_PACKAGE} failed: {done}"),
        Err(error) => bail!("cannot run apt-get: {error}"),
    }
}
