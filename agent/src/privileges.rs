//! Privileges: the legacy agent's setuid start (caller's credentials read, supplementary groups
//! dropped, environment cleared, caller checked against the agent's group, ids made root) and
//! the per-thread switch to a target user's file-system ids and groups for file operations.
//!
//! The legacy binary is installed like the Perl agent's wrapper: setuid root, mode 4750
//! root:[`AGENT_GROUP`]. The file mode keeps others out; [`secure_start`] checks the same again
//! in the binary, so that a wrong mode (4755, a copy, a bind mount) does not open it to anyone.
//! Its order, all before any argument is looked at:
//! 1. the caller's credentials are read (`getresuid`, `getresgid`, `getgroups`) and, when the
//!    real uid differs from the effective one (setuid), the supplementary groups are dropped;
//! 2. `SSH_ORIGINAL_COMMAND` and `SUDO_USER` are read, then the whole environment is cleared
//!    and `PATH` set to [`crate::tools::TOOL_PATH`] (the X2Go tools get their own clean
//!    environment from [`crate::tools`]: `PATH`, `LANG=C`, and the user's `HOME`, `USER`,
//!    `LOGNAME`);
//! 3. (setuid) the caller must be root or a member of [`AGENT_GROUP`] ([`check_caller`]), else
//!    the reference's kind of die message and exit 255;
//! 4. (setuid) real, effective and saved gids and uids become 0 (the reference's `$< = $>`, and
//!    the gids too, so nothing of the caller's identity is left), the umask 022 and the working
//!    directory `/`; `RLIMIT_FSIZE` is lifted, and when it cannot be (no `CAP_SYS_RESOURCE`, as
//!    in some containers) a finite limit set by the caller is refused: it would cut a key file
//!    or the session database in the middle of a write.
//!
//! glibc already ignores `LD_PRELOAD`, `LD_LIBRARY_PATH` and friends in a setuid process
//! (`AT_SECURE`); clearing the environment keeps them from the tools we start as root. Rust's
//! runtime opens `/dev/null` on a closed stdin, stdout or stderr before `main`, so a caller
//! cannot make a key file become our stdout.

use std::ffi::OsString;

use nix::unistd::{Gid, Uid};

use crate::tools::TOOL_PATH;
use crate::users::UserAccount;

/// The group whose members may run the setuid agent (the reference's package installs the
/// wrapper 4750 root:x2gobroker). Set `X2GOBROKER_AGENT_GROUP` when building to change it.
pub const AGENT_GROUP: &str = match option_env!("X2GOBROKER_AGENT_GROUP") {
    Some(name) => name,
    None => "x2gobroker",
};

/// The environment variables the legacy agent keeps (read before the environment is cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptEnvironment {
    pub ssh_original_command: Option<OsString>,
    pub sudo_user: Option<OsString>,
}

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub real_uid: u32,
    pub effective_uid: u32,
    pub real_gid: u32,
    pub effective_gid: u32,
    pub supplementary_gids: Vec<u32>,
}

impl Credentials {
    /// This process's ids.
    pub fn current() -> Result<Credentials, PrivilegeError> {
        let uids = nix::unistd::getresuid().map_err(PrivilegeError::ReadCredentials)?;
        let gids = nix::unistd::getresgid().map_err(PrivilegeError::ReadCredentials)?;
        let groups = nix::unistd::getgroups().map_err(PrivilegeError::ReadCredentials)?;
        Ok(Credentials {
            real_uid: uids.real.as_raw(),
            effective_uid: uids.effective.as_raw(),
            real_gid: gids.real.as_raw(),
            effective_gid: gids.effective.as_raw(),
            supplementary_gids: groups.into_iter().map(Gid::as_raw).collect(),
        })
    }

    /// Started through a setuid bit: the real uid (the caller) is not the effective one.
    pub fn is_setuid(&self) -> bool {
        self.real_uid != self.effective_uid
    }

    /// Whether the caller belongs to group `gid` (primary or supplementary).
    pub fn is_member_of(&self, gid: u32) -> bool {
        self.real_gid == gid || self.effective_gid == gid || self.supplementary_gids.contains(&gid)
    }
}

/// Why the setuid start did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read the process credentials: {0}")]
    ReadCredentials(nix::Error),
    #[error("cannot drop the caller's supplementary groups: {0}")]
    DropGroups(nix::Error),
    /// The reference's kind of die message (`You cannot execute x2gobroker-agent for any other
    /// user except you!`).
    #[error("You cannot execute x2gobroker-agent unless you are root or a member of group {group} (uid {uid})!")]
    CallerRefused { group: &'static str, uid: u32 },
    #[error("x2gobroker-agent must be setuid root, not setuid to uid {0}")]
    NotSetuidRoot(u32),
    #[error("cannot become root: {0}")]
    BecomeRoot(nix::Error),
    #[error("refused: the caller's file size limit (RLIMIT_FSIZE {0} bytes) cannot be lifted and would cut files; run it with ulimit -f unlimited")]
    FileSizeLimit(u64),
}

/// The caller of a setuid agent must be root or a member of the agent's group (`agent_gid`,
/// `None` when the group does not exist: then only root). Pure.
pub fn check_caller(caller: &Credentials, agent_gid: Option<u32>) -> Result<(), PrivilegeError> {
    if caller.real_uid == 0 || agent_gid.is_some_and(|gid| caller.is_member_of(gid)) {
        return Ok(());
    }
    Err(PrivilegeError::CallerRefused {
        group: AGENT_GROUP,
        uid: caller.real_uid,
    })
}

/// The legacy binary's start, first thing in `main` while the process has one thread (see the
/// module docs for the order). Returns the two variables the agent reads.
pub fn secure_start() -> Result<KeptEnvironment, PrivilegeError> {
    let caller = Credentials::current()?;
    let setuid = caller.is_setuid();
    if setuid {
        nix::unistd::setgroups(&[]).map_err(PrivilegeError::DropGroups)?;
    }
    let kept = KeptEnvironment {
        ssh_original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
        sudo_user: std::env::var_os("SUDO_USER"),
    };
    clear_environment();
    if !setuid {
        return Ok(kept);
    }
    let agent_gid = nix::unistd::Group::from_name(AGENT_GROUP)
        .ok()
        .flatten()
        .map(|group| group.gid.as_raw());
    check_caller(&caller, agent_gid)?;
    if caller.effective_uid != 0 {
        return Err(PrivilegeError::NotSetuidRoot(caller.effective_uid));
    }
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(PrivilegeError::BecomeRoot)?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(PrivilegeError::BecomeRoot)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // Cannot fail for root, and a failure changes no permission.
    let _ = nix::unistd::chdir("/");
    lift_file_size_limit()?;
    Ok(kept)
}

/// `RLIMIT_FSIZE` unlimited, or an error when it stays finite (see the module docs).
fn lift_file_size_limit() -> Result<(), PrivilegeError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    if setrlimit(Resource::RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY).is_ok() {
        return Ok(());
    }
    // Without CAP_SYS_RESOURCE only the soft limit can rise, up to the hard one.
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_FSIZE) {
        let _ = setrlimit(Resource::RLIMIT_FSIZE, hard, hard);
    }
    match getrlimit(Resource::RLIMIT_FSIZE) {
        Ok((soft, _)) if soft == RLIM_INFINITY => Ok(()),
        Ok((soft, _)) => Err(PrivilegeError::FileSizeLimit(soft)),
        Err(_) => Err(PrivilegeError::FileSizeLimit(0)),
    }
}

/// Removes every environment variable and sets `PATH` to [`TOOL_PATH`]. Only sound while the
/// process has a single thread (no other thread reads the environment meanwhile).
fn clear_environment() {
    let names: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
    for name in names {
        std::env::remove_var(name);
    }
    std::env::set_var("PATH", TOOL_PATH);
}

/// Why the calling thread could not take a user's file-system identity.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("cannot set the supplementary groups of user {user}: {source}")]
    Groups {
        user: String,
        source: std::io::Error,
    },
    #[error("cannot switch file system ids to uid {uid} gid {gid}")]
    Ids { uid: u32, gid: u32 },
}

/// The user's groups from the group database (primary included), or only the primary group
/// when the database cannot say: never the caller's.
pub fn user_groups(account: &UserAccount) -> Vec<u32> {
    let primary = Gid::from_raw(account.gid);
    std::ffi::CString::new(account.name.as_bytes())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, primary).ok())
        .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|| vec![account.gid])
}

/// Gives the calling thread — only it: Linux credentials are per thread and these are the raw
/// system calls, not glibc's process-wide ones — the user's supplementary groups, then its
/// file-system gid and uid. Every later open, mkdir, chmod and rename on this thread is checked
/// as that user (the kernel drops CAP_DAC_OVERRIDE and the other file capabilities from the
/// thread's effective set when the fsuid leaves 0); real, effective and saved ids stay root, so
/// the user cannot signal or trace the process. The caller must let the thread end afterwards.
pub fn switch_thread_to_user(account: &UserAccount) -> Result<(), SwitchError> {
    use nix::unistd::{setfsgid, setfsuid};
    let groups: Vec<rustix::thread::Gid> = user_groups(account)
        .into_iter()
        .map(rustix::thread::Gid::from_raw)
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(|errno| SwitchError::Groups {
        user: account.name.clone(),
        source: errno.into(),
    })?;
    // setfsgid/setfsuid report the previous id; asking for an invalid id returns the current one.
    setfsgid(Gid::from_raw(account.gid));
    setfsuid(Uid::from_raw(account.uid));
    let current_gid = setfsgid(Gid::from_raw(u32::MAX)).as_raw();
    let current_uid = setfsuid(Uid::from_raw(u32::MAX)).as_raw();
    if current_uid != account.uid || current_gid != account.gid {
        return Err(SwitchError::Ids {
            uid: account.uid,
            gid: account.gid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's supplementary groups as the kernel holds them.
    fn thread_groups() -> std::io::Result<Vec<u32>> {
        let status = std::fs::read_to_string("/proc/thread-self/status")?;
        Ok(status
            .lines()
            .find_map(|line| line.strip_prefix("Groups:"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|gid| gid.parse().ok())
            .collect())
    }

    fn credentials(real_uid: u32, real_gid: u32, groups: &[u32]) -> Credentials {
        Credentials {
            real_uid,
            effective_uid: 0,
            real_gid,
            effective_gid: real_gid,
            supplementary_gids: groups.to_vec(),
        }
    }

    #[test]
    fn callers_of_the_setuid_agent() {
        const AGENT: u32 = 106;
        let table: [(Credentials, Option<u32>, bool); 7] = [
            (credentials(0, 0, &[]), Some(AGENT), true),
            (credentials(0, 0, &[]), None, true),
            (credentials(1001, AGENT, &[]), Some(AGENT), true),
            (credentials(1001, 1001, &[27, AGENT]), Some(AGENT), true),
            (credentials(1001, 1001, &[27]), Some(AGENT), false),
            (credentials(1001, 1001, &[AGENT]), None, false),
            (credentials(65534, 65534, &[]), Some(AGENT), false),
        ];
        for (caller, agent_gid, allowed) in table {
            assert_eq!(
                check_caller(&caller, agent_gid).is_ok(),
                allowed,
                "{caller:?} {agent_gid:?}"
            );
        }
        let refusal = check_caller(&credentials(1001, 1001, &[]), Some(AGENT)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "You cannot execute x2gobroker-agent unless you are root or a member of group x2gobroker (uid 1001)!"
        );
    }

    #[test]
    fn setuid_is_real_versus_effective_uid() {
        let mut caller = credentials(1001, 1001, &[]);
        assert!(caller.is_setuid());
        caller.effective_uid = 1001;
        assert!(!caller.is_setuid());
    }

    #[test]
    fn a_switched_thread_has_the_users_groups_and_the_others_keep_theirs() {
        if !nix::unistd::geteuid().is_root() {
            return; // switching needs root; the agent's tests run as root
        }
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let account = UserAccount {
            name: nobody.name.clone(),
            uid: nobody.uid.as_raw(),
            gid: nobody.gid.as_raw(),
            home: nobody.dir.clone(),
        };
        let before = thread_groups().unwrap();
        let inside = std::thread::spawn(move || {
            switch_thread_to_user(&account).unwrap();
            thread_groups().unwrap()
        })
        .join()
        .unwrap();
        let mut expected = user_groups(&UserAccount {
            name: nobody.name,
            uid: nobody.uid.as_raw(),
            gid: nobody.gid.as_raw(),
            home: nobody.dir,
        });
        expected.sort_unstable();
        expected.dedup();
        let mut inside_sorted = inside.clone();
        inside_sorted.sort_unstable();
        inside_sorted.dedup();
        assert_eq!(inside_sorted, expected);
        assert_eq!(
            thread_groups().unwrap(),
            before,
            "other threads keep theirs"
        );
    }
}
