//! Runs the X2Go server tools (`x2golistsessions`, `x2golistsessions_root`,
//! `x2gogetservers`, `x2gochangestatus`, `x2gopath`, `x2goversion`) with a timeout.
//!
//! Never through a shell: every call is an argv, and every program — `runuser` and the tool it
//! runs included — is started by its absolute path, found in the fixed [`TOOL_PATH`] of
//! root-owned system directories (never the caller's `PATH`). Tools that act for a user run as
//! that user via `runuser -u <user> --` (root only; when the agent already runs as that uid the
//! tool is started directly). Children get a clean environment (`PATH`, `LANG=C`, and for a
//! user's tool `HOME`, `USER`, `LOGNAME`), `/` as working directory and their own process
//! group, which is killed as a whole on timeout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::session::{parse_session_listing, Session, SessionLineError, SessionStatus};
use crate::users::UserAccount;

/// Where programs are looked up, and the PATH every tool gets: the system's root-owned
/// directories only (the reference's `/bin:/usr/bin`, plus the sbin directories, where
/// `runuser` and `x2golistsessions_root` live); no `/usr/local`.
pub const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// Default time a tool may take.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// What a tool printed and how it ended.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ToolOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_owned()
    }
}

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(transparent)]
    Parse(#[from] SessionLineError),
}

/// Handle on the X2Go server tools of this machine.
#[derive(Debug, Clone)]
pub struct X2GoTools {
    pub timeout: Duration,
    /// `runuser`, looked up in [`TOOL_PATH`] unless absolute.
    pub runuser: PathBuf,
}

impl Default for X2GoTools {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TOOL_TIMEOUT,
            runuser: PathBuf::from("runuser"),
        }
    }
}

impl X2GoTools {
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }

    /// Runs `argv` (as `user` when given) and returns its output whatever the exit status.
    pub async fn run(
        &self,
        user: Option<&UserAccount>,
        argv: &[OsString],
    ) -> Result<ToolOutput, ToolError> {
        let program = argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(first) = argv.first() else {
            return Err(ToolError::Spawn {
                program,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"),
            });
        };
        let tool = resolve_program(Path::new(first))?;
        let full_argv: Vec<OsString> = match user {
            Some(account) if nix::unistd::geteuid().as_raw() != account.uid => {
                let mut wrapped: Vec<OsString> = vec![
                    resolve_program(&self.runuser)?.into_os_string(),
                    "-u".into(),
                    account.name.clone().into(),
                    "--".into(),
                    tool.into_os_string(),
                ];
                wrapped.extend(argv[1..].iter().cloned());
                wrapped
            }
            _ => {
                let mut direct: Vec<OsString> = vec![tool.into_os_string()];
                direct.extend(argv[1..].iter().cloned());
                direct
            }
        };
        let mut command = Command::new(&full_argv[0]);
        command
            .args(&full_argv[1..])
            .env_clear()
            .env("PATH", TOOL_PATH)
            .env("LANG", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(account) = user {
            command
                .env("HOME", &account.home)
                .env("USER", &account.name)
                .env("LOGNAME", &account.name);
        }
        let child = command.spawn().map_err(|source| ToolError::Spawn {
            program: program.clone(),
            source,
        })?;
        let process_group = child.id();
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => Ok(ToolOutput {
                status: output.status,
                stdout: output.stdout,
                stderr: output.stderr,
            }),
            Ok(Err(source)) => Err(ToolError::Spawn { program, source }),
            Err(_) => {
                if let Some(pgid) = process_group.and_then(|pid| i32::try_from(pid).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pgid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(ToolError::Timeout {
                    program,
                    timeout: self.timeout,
                })
            }
        }
    }

    /// Like [`run`](Self::run) but a non-zero exit status is an error.
    pub async fn run_ok(
        &self,
        user: Option<&UserAccount>,
        argv: &[OsString],
    ) -> Result<ToolOutput, ToolError> {
        let output = self.run(user, argv).await?;
        if !output.status.success() {
            return Err(ToolError::Failed {
                program: argv
                    .first()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                status: output.status,
                stderr: output.stderr_text(),
            });
        }
        Ok(output)
    }

    /// `x2golistsessions --all-servers` as the user (raw output).
    pub async fn list_user_sessions_raw(
        &self,
        user: &UserAccount,
    ) -> Result<ToolOutput, ToolError> {
        self.run(Some(user), &argv(&["x2golistsessions", "--all-servers"]))
            .await
    }

    /// The user's sessions on all servers of the session DB.
    pub async fn list_user_sessions(&self, user: &UserAccount) -> Result<Vec<Session>, ToolError> {
        let output = self
            .run_ok(Some(user), &argv(&["x2golistsessions", "--all-servers"]))
            .await?;
        Ok(parse_session_listing(&output.stdout_text())?)
    }

    /// All users' sessions (`x2golistsessions_root --all-servers`, as root), without the
    /// failed (`F`) ones that this tool, unlike `x2golistsessions`, also prints.
    pub async fn list_all_sessions(&self) -> Result<Vec<Session>, ToolError> {
        let output = self
            .run_ok(None, &argv(&["x2golistsessions_root", "--all-servers"]))
            .await?;
        let mut sessions = parse_session_listing(&output.stdout_text())?;
        sessions.retain(|session| session.status != SessionStatus::Failed);
        Ok(sessions)
    }

    /// `x2gogetservers` as the user (raw output).
    pub async fn get_servers_raw(&self, user: &UserAccount) -> Result<ToolOutput, ToolError> {
        self.run(Some(user), &argv(&["x2gogetservers"])).await
    }

    /// `x2gopath lib`, the directory of x2gochangestatus.
    pub async fn lib_path(&self) -> Result<PathBuf, ToolError> {
        let output = self.run_ok(None, &argv(&["x2gopath", "lib"])).await?;
        Ok(PathBuf::from(
            output.stdout_text().trim_end_matches(['\n', '\r']),
        ))
    }

    /// `<x2gopath lib>/x2gochangestatus <S|T> <session id>` as the user.
    pub async fn change_status(
        &self,
        user: &UserAccount,
        status_letter: &str,
        session_id: &str,
    ) -> Result<ToolOutput, ToolError> {
        let tool = self.lib_path().await?.join("x2gochangestatus");
        let command = vec![
            tool.into_os_string(),
            status_letter.into(),
            session_id.into(),
        ];
        self.run(Some(user), &command).await
    }

    /// Whether `x2goversion x2goserver` succeeds (the reference's test for the server tasks).
    pub async fn x2goserver_installed(&self) -> bool {
        matches!(
            self.run(None, &argv(&["x2goversion", "x2goserver"])).await,
            Ok(output) if output.status.success()
        )
    }

    /// Whether a program is found in [`TOOL_PATH`] (Perl's `which`).
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        which_in(program, TOOL_PATH)
    }
}

/// The absolute path a program runs from: itself when absolute, else its first executable in
/// [`TOOL_PATH`].
pub fn resolve_program(program: &Path) -> Result<PathBuf, ToolError> {
    if program.is_absolute() {
        return Ok(program.to_owned());
    }
    program
        .to_str()
        .filter(|name| !name.contains('/'))
        .and_then(|name| which_in(name, TOOL_PATH))
        .ok_or_else(|| ToolError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("not found in {TOOL_PATH}"),
            ),
        })
}

fn argv(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

/// Finds an executable regular file named `program` in the `:`-separated `path`.
pub fn which_in(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_argv_without_shell() {
        let tools = X2GoTools::default();
        let output = tools
            .run(None, &argv(&["printf", "%s|", "a b", "$(id)"]))
            .await
            .unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout_text(), "a b|$(id)|");
    }

    #[tokio::test]
    async fn environment_is_clean() {
        let tools = X2GoTools::default();
        let output = tools.run(None, &argv(&["env"])).await.unwrap();
        let text = output.stdout_text();
        let mut names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort();
        assert_eq!(names, vec!["LANG", "PATH"]);
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let tools = X2GoTools::with_timeout(Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        let result = tools.run(None, &argv(&["sleep", "30"])).await;
        assert!(
            matches!(result, Err(ToolError::Timeout { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn failures_are_reported() {
        let tools = X2GoTools::default();
        let failed = tools.run_ok(None, &argv(&["false"])).await;
        assert!(matches!(failed, Err(ToolError::Failed { .. })));
        let missing = tools.run(None, &argv(&["/nonexistent/tool"])).await;
        assert!(matches!(missing, Err(ToolError::Spawn { .. })));
    }

    #[test]
    fn which_finds_programs_in_the_tool_path() {
        assert!(which_in("sh", TOOL_PATH).is_some());
        assert!(which_in("no-such-tool-xyz", TOOL_PATH).is_none());
    }

    #[test]
    fn programs_run_by_absolute_path_from_the_tool_path_only() {
        let resolved = resolve_program(Path::new("env")).unwrap();
        assert!(resolved.is_absolute(), "{resolved:?}");
        assert!(TOOL_PATH
            .split(':')
            .any(|dir| resolved.parent() == Some(Path::new(dir))));
        assert_eq!(
            resolve_program(Path::new("/opt/x/tool")).unwrap(),
            PathBuf::from("/opt/x/tool")
        );
        for relative in ["./env", "bin/env", "no-such-tool-xyz"] {
            assert!(
                matches!(
                    resolve_program(Path::new(relative)),
                    Err(ToolError::Spawn { .. })
                ),
                "{relative}"
            );
        }
    }
}
