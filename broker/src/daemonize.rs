//! `-D`: detaching as python-daemon does for the reference (fork, setsid, fork, `/` as working directory), with a pipe from the daemon to the process that started it, which exits 0 only once the daemon serves, or non-zero with the daemon's error; the pid file; stdout and stderr into the log directory.
//!
//! **Invariant:** `fork` (the only `unsafe` call of the broker, in [`fork_single_threaded`])
//! runs only while the process has exactly one thread: before the tokio runtime, the farm's
//! actor thread or anything else that spawns one. [`detach`] checks `/proc/self/task` and
//! refuses otherwise.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Why the process could not detach.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("cannot daemonize: the process already runs {0} threads (fork needs exactly one)")]
    Threads(usize),
    #[error("cannot daemonize: {0}")]
    System(#[from] nix::Error),
    #[error("cannot daemonize: {0}")]
    Io(#[from] std::io::Error),
}

/// How many threads this process runs (`/proc/self/task`).
pub fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The one `unsafe` of the broker: `fork(2)`.
///
/// SAFETY: fork is unsound when other threads exist (the child would inherit locks they
/// hold, e.g. the allocator's). The caller checked that this process has exactly one thread,
/// so the child is a complete copy in which any code may run.
#[allow(unsafe_code)]
fn fork_single_threaded() -> Result<nix::unistd::ForkResult, DetachError> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(DetachError::Threads(threads));
    }
    Ok(unsafe { nix::unistd::fork() }?)
}

/// The daemon's end of the pipe to the process that started it. Dropping it unsent tells
/// that process the daemon failed.
#[derive(Debug)]
pub struct Readiness {
    pipe: std::fs::File,
}

impl Readiness {
    /// The daemon serves: the starting process exits 0.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(b"ok\n");
    }

    /// The daemon cannot start: the starting process prints `message` and exits 1.
    pub fn failed(mut self, message: &str) {
        let _ = writeln!(self.pipe, "error: {}", message.replace('\n', " "));
    }
}

/// What the starting process does with the daemon's answer: exit 0 after `ok`, else print
/// the error (or that the daemon ended without saying why) and exit 1.
pub fn exit_code_for(answer: &str) -> (i32, Option<String>) {
    let first_line = answer.lines().next().unwrap_or("");
    if first_line == "ok" {
        return (0, None);
    }
    let message = first_line
        .strip_prefix("error: ")
        .map(str::to_string)
        .unwrap_or_else(|| "the daemon ended before it served (see its stderr file)".to_string());
    (1, Some(message))
}

/// Detaches from the terminal: returns only in the daemon (the grandchild, in a new
/// session, working directory `/`). The starting process waits until the daemon calls
/// [`Readiness::ready`] or [`Readiness::failed`] (or exits) and exits with the matching
/// status; the intermediate process exits at once.
pub fn detach() -> Result<Readiness, DetachError> {
    use nix::unistd::ForkResult;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match fork_single_threaded()? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let code = wait_for_daemon(read_end, child);
            std::process::exit(code);
        }
        ForkResult::Child => {
            drop(read_end);
            let mut pipe = std::fs::File::from(write_end);
            let second = nix::unistd::setsid()
                .map_err(DetachError::from)
                .and_then(|_| fork_single_threaded());
            match second {
                Ok(ForkResult::Parent { .. }) => std::process::exit(0),
                Ok(ForkResult::Child) => {
                    std::env::set_current_dir("/")?;
                    Ok(Readiness { pipe })
                }
                Err(error) => {
                    let _ = writeln!(pipe, "error: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// The starting process: reaps the intermediate process, then reads the daemon's answer.
fn wait_for_daemon(read_end: OwnedFd, intermediate: nix::unistd::Pid) -> i32 {
    let _ = nix::sys::wait::waitpid(intermediate, None);
    let mut answer = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut answer);
    let (code, message) = exit_code_for(&answer);
    if let Some(message) = message {
        eprintln!("x2gobroker: {message}");
    }
    code
}

/// Creates a missing directory for the pid file as the reference does (`root:<daemon
/// group>`, 0770, when running as root); an existing one is left alone.
pub fn prepare_pidfile_directory(pidfile: &Path, daemon_group: &str) -> std::io::Result<()> {
    let Some(directory) = pidfile
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    else {
        return Ok(());
    };
    if directory.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(directory)?;
    if nix::unistd::geteuid().is_root() {
        let group = nix::unistd::Group::from_name(daemon_group)
            .ok()
            .flatten()
            .map(|group| group.gid);
        nix::unistd::chown(directory, Some(nix::unistd::Uid::from_raw(0)), group)?;
        std::fs::set_permissions(
            directory,
            std::os::unix::fs::PermissionsExt::from_mode(0o770),
        )?;
    }
    Ok(())
}

/// Creates a missing log directory as the reference's packages do (`<daemon user>:adm`,
/// 2755, when running as root); an existing one is left alone.
pub fn prepare_log_directory(
    directory: &Path,
    daemon_user: &str,
    daemon_group: &str,
) -> std::io::Result<()> {
    if directory.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(directory)?;
    if nix::unistd::geteuid().is_root() {
        // the owner the log files get, as the reference's postinst leaves the directory
        let owner = crate::logging::FileOwner::of(daemon_user, daemon_group);
        nix::unistd::chown(directory, owner.user, owner.group)?;
        std::fs::set_permissions(
            directory,
            std::os::unix::fs::PermissionsExt::from_mode(0o2755),
        )?;
    }
    Ok(())
}

/// stdin from `/dev/null`, stdout and stderr into `<logdir>/x2gobroker-daemon.stdout` and
/// `.stderr` (truncated, 0640, never through a symbolic link), as the reference.
pub fn redirect_stdio(logdir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |name: &str| -> std::io::Result<std::fs::File> {
        let path = logdir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|error| {
                std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
            })
    };
    let stdout = open("x2gobroker-daemon.stdout")?;
    let stderr = open("x2gobroker-daemon.stderr")?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&stdout)?;
    nix::unistd::dup2_stderr(&stderr)?;
    Ok(())
}

/// A pid file naming this process, removed when dropped (if it still names this process).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes `<pid>\n` into a new file at `path` (a stale file is replaced; never written
    /// through a symbolic link).
    pub fn write(path: &Path) -> std::io::Result<PidFile> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let names_us = std::fs::read_to_string(&self.path)
            .map(|text| text.trim() == std::process::id().to_string())
            .unwrap_or(false);
        if names_us {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::debug!(%error, path = %self.path.display(), "pid file not removed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_the_daemon() {
        assert_eq!(exit_code_for("ok\n"), (0, None));
        assert_eq!(
            exit_code_for("error: cannot bind 127.0.0.1:80: denied\n"),
            (1, Some("cannot bind 127.0.0.1:80: denied".to_string()))
        );
        let (code, message) = exit_code_for("");
        assert_eq!(code, 1);
        assert!(message.unwrap().contains("ended before it served"));
        assert_eq!(exit_code_for("okay\n").0, 1);
    }

    #[test]
    fn pid_files() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("run/x.pid");
        prepare_pidfile_directory(&path, "no-such-group-here").unwrap();
        std::fs::write(&path, "1\n").unwrap();
        let pidfile = PidFile::write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(pidfile);
        assert!(!path.exists(), "removed on drop");
        let target = directory.path().join("target");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let replaced = PidFile::write(&path).unwrap();
        assert!(!target.exists(), "the symlink was replaced, not followed");
        drop(replaced);
        let other = PidFile::write(&path).unwrap();
        std::fs::write(&path, "999999\n").unwrap();
        drop(other);
        assert!(path.exists(), "a pid file naming another process stays");
    }
}
