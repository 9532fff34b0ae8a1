//! The SSH-mode bench's fixture: the farm lock, the real X2Go session DB, two bench accounts, the daemon's key and one real sshd on 127.0.0.11–15.
//!
//! The same layout as the drop-in end-to-end test (`tests/tests/e2e/dropin.rs`), reduced to
//! what the bench needs and with errors instead of panics: the broker side is a daemon
//! account whose `~/.ssh/id_rsa` is made by our `x2gobroker-keygen` (both brokers run as it);
//! the server side is an agent account in group `x2gobroker` (so it may run the setuid Perl
//! agent) that sshd lets in with that key. The real `x2gobroker` account is never touched.

use anyhow::{bail, Context as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The lock every process that rebuilds or changes the system's X2Go session DB holds (the
/// end-to-end tests, the agent's tests, this bench).
pub const FARM_LOCK_FILE: &str = "/tmp/x2go-farm.lock";

/// The group of the setuid Perl agent (`/usr/lib/x2go/x2gobroker-agent`, 4750 root:x2gobroker).
pub const AGENT_GROUP: &str = "x2gobroker";

/// The farm lock, held until dropped.
pub struct FarmLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl FarmLock {
    /// Takes [`FARM_LOCK_FILE`], waiting for another holder.
    pub fn take() -> anyhow::Result<FarmLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(FARM_LOCK_FILE)
            .with_context(|| format!("opening {FARM_LOCK_FILE}"))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, error)| error)
            .with_context(|| format!("flock {FARM_LOCK_FILE}"))?;
        Ok(FarmLock { _lock: lock })
    }
}

/// Rebuilds the fixture's session DB (`tests/fixtures/x2go-farm.sh`): x2goalice running on
/// x2go-node1 and suspended on x2go-node2, x2gobob running on x2go-node1–3, x2gocarol none.
pub fn rebuild_session_db(fixture: &Path) -> anyhow::Result<()> {
    let output = Command::new(fixture)
        .env("FARM_QUIET", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", fixture.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            fixture.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// One session of the DB as `x2golistsessions_root --all-servers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSession {
    pub session_id: String,
    pub server: String,
    pub status: String,
    pub user: String,
}

/// The sessions in the DB.
pub fn database_sessions() -> anyhow::Result<Vec<DbSession>> {
    let output = Command::new("x2golistsessions_root")
        .arg("--all-servers")
        .stdin(Stdio::null())
        .output()
        .context("running x2golistsessions_root")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            (fields.len() >= 12).then(|| DbSession {
                session_id: fields[1].to_string(),
                server: fields[3].to_string(),
                status: fields[4].to_string(),
                user: fields[11].to_string(),
            })
        })
        .collect())
}

/// A bench account: a system user with its own group and a home under /var/tmp.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    /// Makes the account if missing, adds it to `groups`, and empties its `~/.ssh`.
    pub fn fresh(name: &str, groups: &[&str]) -> anyhow::Result<Account> {
        if name == "x2gobroker" {
            bail!("the bench never uses the real x2gobroker account");
        }
        let home = PathBuf::from(format!("/var/tmp/{name}"));
        if nix::unistd::User::from_name(name)?.is_none() {
            run(Command::new("useradd")
                .args([
                    "--system",
                    "--user-group",
                    "--create-home",
                    "--shell",
                    "/bin/bash",
                ])
                .arg("--home-dir")
                .arg(&home)
                .arg(name))?;
        }
        for group in groups {
            run(Command::new("usermod").args(["-a", "-G", group, name]))?;
        }
        let user = nix::unistd::User::from_name(name)?
            .with_context(|| format!("no account {name} after useradd"))?;
        if user.dir != home {
            bail!("{name} has another home: {}", user.dir.display());
        }
        match std::fs::remove_dir_all(home.join(".ssh")) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).context("removing the account's ~/.ssh"),
        }
        Ok(Account {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home,
        })
    }

    /// A file in the account's `~/.ssh`.
    pub fn ssh(&self, file: &str) -> PathBuf {
        self.home.join(".ssh").join(file)
    }

    /// Writes `text` to `~/.ssh/<file>` (0600, the account's own; `~/.ssh` made 0700).
    pub fn write_ssh_file(&self, file: &str, text: &str) -> anyhow::Result<()> {
        let directory = self.home.join(".ssh");
        std::fs::create_dir_all(&directory)?;
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700))?;
        let path = directory.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let owner = (
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        );
        nix::unistd::chown(&directory, owner.0, owner.1)?;
        nix::unistd::chown(&path, owner.0, owner.1)?;
        Ok(())
    }

    /// Unlocks the account for public-key SSH logins (sshd refuses locked accounts).
    pub fn unlock_for_ssh(&self) -> anyhow::Result<()> {
        run(Command::new("usermod").args(["-p", "*", &self.name]))
    }

    /// The live (not zombie) processes whose real uid is the account's.
    pub fn processes(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return false;
                };
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_string()
                };
                let real_uid = field("Uid:").split_whitespace().next().map(str::to_string);
                real_uid == Some(self.uid.to_string()) && !field("State:").starts_with('Z')
            })
            .collect()
    }

    /// Waits (at most `limit`) for the account's processes to end (a stopped broker's SSH
    /// masters, a stopped sshd's sessions), then ends those left by their pid: all of them
    /// were started by this bench, the account being its own.
    pub fn end_processes(&self, limit: Duration) {
        let give_up = Instant::now() + limit;
        while !self.processes().is_empty() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(100));
        }
        for signal in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGKILL,
        ] {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            eprintln!("ending processes of {} left behind: {left:?}", self.name);
            for pid in left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Removes the account and its home (a warning if it cannot: a process still runs as it).
    pub fn remove(&self) {
        match Command::new("userdel").args(["-r", &self.name]).output() {
            Ok(output) if output.status.success() || output.status.code() == Some(6) => {}
            other => eprintln!("warning: userdel -r {}: {other:?}", self.name),
        }
    }
}

/// The daemon account's key pair, by our `x2gobroker-keygen`; the public key line.
pub fn make_daemon_key(keygen: &Path, daemon: &Account) -> anyhow::Result<String> {
    run(Command::new(keygen)
        .env("X2GOBROKER_DAEMON_USER", &daemon.name)
        .env("X2GOBROKER_DAEMON_GROUP", &daemon.name))?;
    let public = std::fs::read_to_string(daemon.ssh("id_rsa.pub"))
        .context("the keygen wrote no ~/.ssh/id_rsa.pub")?;
    Ok(public.trim().to_string())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A real OpenSSH server on one port of several loopback addresses, public-key logins only.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// `<type> <base64>` of its host key.
    pub host_key: String,
}

impl Sshd {
    /// Starts `/usr/sbin/sshd` for `user` on a free port of every address in `listen`.
    pub fn start(directory: &Path, user: &str, listen: &[String]) -> anyhow::Result<Sshd> {
        std::fs::create_dir_all("/run/sshd")?;
        let host_key = directory.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key))?;
        }
        let port = crate::servers::free_port()?;
        let log = directory.join("sshd.log");
        let config = directory.join("sshd_config");
        let listen_lines: String = listen
            .iter()
            .map(|address| format!("ListenAddress {address}\n"))
            .collect();
        std::fs::write(
            &config,
            format!(
                "Port {port}\n{listen_lines}HostKey {}\nPidFile {}\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nAllowUsers {user}\nPermitRootLogin no\n\
                 StrictModes yes\nLogLevel VERBOSE\nX11Forwarding no\nMaxStartups 100\n\
                 SetEnv PATH=/usr/local/bin:/usr/bin:/bin\n",
                host_key.display(),
                directory.join("sshd.pid").display(),
            ),
        )?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e", "-E"])
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting /usr/sbin/sshd")?;
        let mut sshd = Sshd {
            child,
            port,
            log,
            host_key: String::new(),
        };
        let first: SocketAddr = format!("{}:{port}", listen[0]).parse()?;
        let give_up = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&first, Duration::from_millis(200)).is_err() {
            if Instant::now() > give_up {
                bail!("sshd did not listen on {first}: {}", sshd.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let public = std::fs::read_to_string(directory.join("ssh_host_ed25519_key.pub"))?;
        sshd.host_key = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(sshd)
    }

    /// What sshd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many commands (agent calls) and how many logins (new SSH connections) it served.
    pub fn counts(&self) -> SshdCounts {
        SshdCounts::of(&self.log_text())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters read from sshd's log (LogLevel VERBOSE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshdCounts {
    /// `Starting session: command …`: one per remote command, i.e. per agent call.
    pub commands: usize,
    /// `Accepted publickey …`: one per new SSH connection.
    pub logins: usize,
}

impl SshdCounts {
    pub fn of(log: &str) -> SshdCounts {
        SshdCounts {
            commands: log
                .lines()
                .filter(|line| line.contains("Starting session: command"))
                .count(),
            logins: log
                .lines()
                .filter(|line| line.contains("Accepted publickey for"))
                .count(),
        }
    }

    /// What happened since `before`.
    pub fn since(self, before: SshdCounts) -> SshdCounts {
        SshdCounts {
            commands: self.commands.saturating_sub(before.commands),
            logins: self.logins.saturating_sub(before.logins),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_counts_commands_and_logins() {
        let log = "Connection from 127.0.0.1 port 1 on 127.0.0.11 port 2 rdomain \"\"\n\
            Accepted publickey for srv from 127.0.0.1 port 1 ssh2: RSA SHA256:x\n\
            Starting session: command for srv from 127.0.0.1 port 1 id 0\n\
            Starting session: command for srv from 127.0.0.1 port 1 id 1\n\
            Close session: user srv from 127.0.0.1 port 1 id 0\n";
        let counts = SshdCounts::of(log);
        assert_eq!(
            counts,
            SshdCounts {
                commands: 2,
                logins: 1
            }
        );
        assert_eq!(
            counts.since(SshdCounts {
                commands: 1,
                logins: 1
            }),
            SshdCounts {
                commands: 1,
                logins: 0
            }
        );
    }
}
