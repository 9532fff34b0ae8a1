//! authorized_keys editing for the add/remove key tasks (spec §9.4), done in Rust as the
//! target user.
//!
//! Privilege handling: the file operations run on a dedicated, short-lived thread that takes
//! the user's supplementary groups and *filesystem* uid/gid ([`crate::privileges::
//! switch_thread_to_user`]: per-thread system calls; the kernel also clears CAP_DAC_OVERRIDE,
//! CAP_FOWNER, … from the thread's effective set when the fsuid leaves 0). Every open, mkdir,
//! chmod and rename on that thread is thus checked against the user's own permissions — never
//! the caller's or the daemon's groups — and new files are owned by the user. The thread ends
//! right after, so no other work ever runs with the switched ids. Why not a forked or
//! re-executed helper: `fork` in a multi-threaded daemon needs `unsafe` (denied in this
//! workspace), and re-executing the setuid legacy binary as the user is not possible (mode
//! 4750 root:x2gobroker: the user may not execute it).
//!
//! Symbolic links: the key file itself is opened with `O_NOFOLLOW` on both paths, so a key file
//! that is a symbolic link is refused (`ELOOP`) and never written or replaced; directories on
//! the way are followed as the user (the reference's `sudo -u <user> -- tee -a` followed a
//! final symlink as the user, its `sed -i` replaced the link by a regular file).
//!
//! Deliberate differences from the Perl agent (B25, listed in docs/COMPATIBILITY.md):
//! a key already present anywhere in the file is not added again; removal deletes exactly the
//! lines equal to the key and keeps blank lines; relative paths are taken below the home; a
//! symlinked key file is refused.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::privileges::{switch_thread_to_user, SwitchError};
use crate::users::UserAccount;
use x2gobroker_agent_protocol::{
    check_key_file, check_key_line, check_resolved_key_file, ArgumentError,
};

/// The broker's default key file.
pub const DEFAULT_KEY_FILE: &str = "%h/.x2go/authorized_keys";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthKeysError {
    #[error(transparent)]
    Invalid(#[from] ArgumentError),
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error("only root can edit another user's keys (running as uid {euid}, target uid {uid})")]
    NotRoot { euid: u32, uid: u32 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} exists and is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is a symbolic link: key files are not followed")]
    SymbolicLink(PathBuf),
}

/// `open(2)` flags for a key file: a final symbolic link is refused, and a FIFO planted in its
/// place cannot block the open (a regular file reads and appends as without `O_NONBLOCK`).
const NO_FOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits();

/// The error of an open: `ELOOP` (the `O_NOFOLLOW` refusal) says so.
fn open_error(path: &Path) -> impl FnOnce(io::Error) -> AuthKeysError + '_ {
    move |source| {
        if source.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
            AuthKeysError::SymbolicLink(path.to_owned())
        } else {
            AuthKeysError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// Replaces the first `%u`, `%U`, `%G`, `%h` and `%%`, in that order, one after the other
/// (the reference's five `s///` without `g`).
pub fn substitute_key_file(template: &str, account: &UserAccount) -> String {
    let home = account.home.to_string_lossy();
    let replacements = [
        ("%u", account.name.clone()),
        ("%U", account.uid.to_string()),
        ("%G", account.gid.to_string()),
        ("%h", home.into_owned()),
        ("%%", "%".to_owned()),
    ];
    replacements
        .iter()
        .fold(template.to_owned(), |text, (pattern, value)| {
            text.replacen(pattern, value, 1)
        })
}

/// Checks the key-file template as it travelled (the rule the broker applied before sending
/// it), substitutes it and checks the result; a relative result is taken below the home
/// directory. An empty template means [`DEFAULT_KEY_FILE`].
pub fn resolve_key_file(template: &str, account: &UserAccount) -> Result<PathBuf, ArgumentError> {
    let template = if template.is_empty() {
        DEFAULT_KEY_FILE
    } else {
        template
    };
    check_key_file(template)?;
    let substituted = substitute_key_file(template, account);
    check_resolved_key_file(&substituted)?;
    let path = PathBuf::from(&substituted);
    if path.is_absolute() {
        Ok(path)
    } else {
        Ok(account.home.join(path))
    }
}

/// The content with `key` appended, or `None` when a line already equals the key.
pub fn content_with_key(content: &str, key: &str) -> Option<String> {
    if content
        .lines()
        .any(|line| line.trim_end_matches('\r') == key)
    {
        return None;
    }
    let mut new_content = content.to_owned();
    if !new_content.is_empty() && !new_content.ends_with('\n') {
        new_content.push('\n');
    }
    new_content.push_str(key);
    new_content.push('\n');
    Some(new_content)
}

/// The content without the lines equal to `key`, or `None` when there is none.
pub fn content_without_key(content: &str, key: &str) -> Option<String> {
    let mut removed = false;
    let mut new_content = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n').trim_end_matches('\r');
        if bare == key {
            removed = true;
        } else {
            new_content.push_str(line);
        }
    }
    removed.then_some(new_content)
}

/// The content without the lines equal to one of `drop` and with each of `add` that no line
/// equals appended, or `None` when nothing changes.
pub fn content_updated(content: &str, drop: &[String], add: &[String]) -> Option<String> {
    let mut changed = false;
    let mut new_content = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n').trim_end_matches('\r');
        if drop.iter().any(|dropped| dropped == bare) {
            changed = true;
        } else {
            new_content.push_str(line);
        }
    }
    for key in add {
        if let Some(appended) = content_with_key(&new_content, key) {
            new_content = appended;
            changed = true;
        }
    }
    changed.then_some(new_content)
}

/// Drops the lines equal to one of `drop` and appends each of `add` not yet there, in one
/// rewrite as the user (temporary file renamed over the old one; new files 0600, a missing
/// directory 0700). Only the added lines are validated: dropped ones are removed as they
/// are. Returns whether the file changed.
pub fn update_keys(
    account: &UserAccount,
    path: &Path,
    drop: &[String],
    add: &[String],
) -> Result<bool, AuthKeysError> {
    // the added lines are `/pubkeys` lines (`command="…",<restrictions> <key>`) that
    // `pubkeyauth` checked in full; their key part passes the shared key rule here too
    for key in add {
        let key_part = match key.split_once(' ') {
            Some((options, rest)) if options.starts_with("command=") => rest,
            _ => key.as_str(),
        };
        check_key_line(key_part)?;
    }
    check_resolved_key_file(&path.to_string_lossy())?;
    as_user(account, || update_keys_here(path, drop, add))
}

/// Creates the key file's missing directory (0700, as the user: the caller switched).
fn create_missing_directory(path: &Path) -> Result<(), AuthKeysError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
        }
    }
    Ok(())
}

fn update_keys_here(path: &Path, drop: &[String], add: &[String]) -> Result<bool, AuthKeysError> {
    create_missing_directory(path)?;
    let content = match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(AuthKeysError::NotAFile(path.to_owned())),
        Ok(_) => fs::read_to_string(path).map_err(io_error(path))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(io_error(path)(error)),
    };
    let Some(new_content) = content_updated(&content, drop, add) else {
        return Ok(false);
    };
    replace_content(path, &new_content)?;
    Ok(true)
}

/// Writes a sibling temporary file (0600) and renames it over `path`: readers (sshd) see
/// either the old or the new content.
fn replace_content(path: &Path, new_content: &str) -> Result<(), AuthKeysError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.x2gobroker-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(new_content.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&temporary);
        return Err(io_error(path)(error));
    }
    Ok(())
}

/// Adds `key` to the file (creating it 0600, and missing directories 0700) as the user.
/// Returns whether the file changed.
pub fn add_key(account: &UserAccount, path: &Path, key: &str) -> Result<bool, AuthKeysError> {
    check_key_line(key)?;
    check_resolved_key_file(&path.to_string_lossy())?;
    as_user(account, || add_key_here(account, path, key))
}

/// Removes the lines equal to `key` from the file as the user. A missing file is unchanged.
pub fn remove_key(account: &UserAccount, path: &Path, key: &str) -> Result<bool, AuthKeysError> {
    check_key_line(key)?;
    check_resolved_key_file(&path.to_string_lossy())?;
    as_user(account, || remove_key_here(path, key))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AuthKeysError + '_ {
    move |source| AuthKeysError::Io {
        path: path.to_owned(),
        source,
    }
}

fn add_key_here(account: &UserAccount, path: &Path, key: &str) -> Result<bool, AuthKeysError> {
    create_missing_directory(path)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(path)
        .map_err(open_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(AuthKeysError::NotAFile(path.to_owned()));
    }
    if meta.uid() == account.uid && meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_error(path))?;
    }
    let content = io::read_to_string(&mut file).map_err(io_error(path))?;
    let Some(new_content) = content_with_key(&content, key) else {
        return Ok(false);
    };
    // O_APPEND: only the new tail is written, concurrent appends cannot be lost.
    let tail = &new_content[content.len()..];
    file.write_all(tail.as_bytes()).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(true)
}

fn remove_key_here(path: &Path, key: &str) -> Result<bool, AuthKeysError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(open_error(path)(error)),
    };
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(AuthKeysError::NotAFile(path.to_owned()));
    }
    let content = io::read_to_string(&mut file).map_err(io_error(path))?;
    let Some(new_content) = content_without_key(&content, key) else {
        return Ok(false);
    };
    replace_content(path, &new_content)?;
    Ok(true)
}

/// Runs `operation` on a fresh thread with the user's file-system ids and groups (see module
/// docs); when the agent is not root it may only act for its own uid.
fn as_user<T: Send>(
    account: &UserAccount,
    operation: impl FnOnce() -> Result<T, AuthKeysError> + Send,
) -> Result<T, AuthKeysError> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 && euid != account.uid {
        return Err(AuthKeysError::NotRoot {
            euid,
            uid: account.uid,
        });
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if euid == 0 {
                    switch_thread_to_user(account)?;
                }
                operation()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCgolden maja@127.0.0.1";
    const KEY2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCsecond maja@127.0.0.1";

    fn account(home: &Path) -> UserAccount {
        UserAccount {
            name: "x2gotest".into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn substitutions_replace_first_occurrence_in_order() {
        let user = UserAccount {
            name: "x2gotest".into(),
            uid: 1003,
            gid: 1004,
            home: "/home/x2gotest".into(),
        };
        let table = [
            (
                "%h/.x2go/authorized_keys",
                "/home/x2gotest/.x2go/authorized_keys",
            ),
            (
                "/home/x2gotest/keys-%u-%U-%G-%%-%u.txt",
                "/home/x2gotest/keys-x2gotest-1003-1004-%-%u.txt",
            ),
            ("%%u", "%x2gotest"),
            ("plain", "plain"),
        ];
        for (template, expected) in table {
            assert_eq!(
                substitute_key_file(template, &user),
                expected,
                "{template:?}"
            );
        }
        assert_eq!(
            resolve_key_file("relative-dir/keys", &user).unwrap(),
            PathBuf::from("/home/x2gotest/relative-dir/keys")
        );
        assert_eq!(
            resolve_key_file("", &user).unwrap(),
            PathBuf::from("/home/x2gotest/.x2go/authorized_keys")
        );
        assert!(resolve_key_file("%h/../root/.ssh/authorized_keys", &user).is_err());
    }

    #[test]
    fn content_editing_table() {
        let add = [
            ("", Some(format!("{KEY}\n"))),
            (&*format!("{KEY}\n"), None),
            (&*format!("{KEY}\n{KEY2}\n"), None),
            (KEY2, Some(format!("{KEY2}\n{KEY}\n"))),
            (
                &*format!("{KEY} extra\n"),
                Some(format!("{KEY} extra\n{KEY}\n")),
            ),
        ];
        for (content, expected) in add {
            assert_eq!(
                content_with_key(content, KEY),
                expected,
                "add to {content:?}"
            );
        }
        let remove = [
            ("", None),
            (&*format!("{KEY2}\n"), None),
            (&*format!("{KEY}\n{KEY2}\n"), Some(format!("{KEY2}\n"))),
            (
                &*format!("\n{KEY}\n\n{KEY2}\n{KEY}"),
                Some(format!("\n\n{KEY2}\n")),
            ),
            (&*format!("{KEY} extra\n"), None),
        ];
        for (content, expected) in remove {
            assert_eq!(
                content_without_key(content, KEY),
                expected,
                "remove from {content:?}"
            );
        }
    }

    #[test]
    fn add_and_remove_in_a_directory_of_ours() {
        let home = tempfile::tempdir().unwrap();
        let user = account(home.path());
        let path = resolve_key_file(DEFAULT_KEY_FILE, &user).unwrap();
        assert!(add_key(&user, &path, KEY).unwrap());
        assert!(!add_key(&user, &path, KEY).unwrap(), "idempotent");
        assert!(add_key(&user, &path, KEY2).unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{KEY}\n{KEY2}\n")
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        assert!(remove_key(&user, &path, KEY).unwrap());
        assert!(!remove_key(&user, &path, KEY).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{KEY2}\n"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!remove_key(&user, &home.path().join("missing"), KEY).unwrap());
        assert!(matches!(
            add_key(&user, &path, "ssh-rsa AAAA\nssh-rsa BBBB"),
            Err(AuthKeysError::Invalid(_))
        ));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn updating_drops_and_adds_in_one_rewrite() {
        // (content, lines to drop, lines to add, new content)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<&'a str>);
        let table: [Case; 5] = [
            ("", &[], &[KEY], Some("KEY\n")),
            ("KEY\n", &[], &[KEY], None),
            ("old\nKEY2\n", &["old"], &[KEY], Some("KEY2\nKEY\n")),
            ("old\r\nKEY2", &["old"], &[], Some("KEY2")),
            ("KEY2\n", &["missing"], &[KEY2], None),
        ];
        let expand = |text: &str| text.replace("KEY2", KEY2).replace("KEY", KEY);
        for (content, drop, add, expected) in table {
            let drop: Vec<String> = drop.iter().map(|line| expand(line)).collect();
            let add: Vec<String> = add.iter().map(|line| expand(line)).collect();
            assert_eq!(
                content_updated(&expand(content), &drop, &add),
                expected.map(expand),
                "{content:?} - {drop:?} + {add:?}"
            );
        }
        let home = tempfile::tempdir().unwrap();
        let user = account(home.path());
        let path = home.path().join(".ssh/authorized_keys");
        assert!(update_keys(&user, &path, &[], &[KEY.to_string()]).unwrap());
        assert!(!update_keys(&user, &path, &[], &[KEY.to_string()]).unwrap());
        assert!(update_keys(&user, &path, &[KEY.to_string()], &[KEY2.to_string()]).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{KEY2}\n"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // a link in place of the file is not written through
        let elsewhere = home.path().join("elsewhere");
        fs::write(&elsewhere, "").unwrap();
        let linked = home.path().join(".ssh/linked");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        assert!(matches!(
            update_keys(&user, &linked, &[], &[KEY.to_string()]),
            Err(AuthKeysError::NotAFile(_))
        ));
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "");
    }

    #[test]
    fn symbolic_links_and_fifos_as_key_files_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let user = account(home.path());
        let elsewhere = home.path().join("elsewhere");
        fs::write(&elsewhere, format!("{KEY2}\n")).unwrap();
        let link = home.path().join("authorized_keys");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(matches!(
            add_key(&user, &link, KEY),
            Err(AuthKeysError::SymbolicLink(_))
        ));
        assert!(matches!(
            remove_key(&user, &link, KEY2),
            Err(AuthKeysError::SymbolicLink(_))
        ));
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), format!("{KEY2}\n"));
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        let fifo = home.path().join("fifo_keys");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            remove_key(&user, &fifo, KEY),
            Err(AuthKeysError::NotAFile(_))
        ));
        assert!(matches!(
            add_key(&user, &fifo, KEY),
            Err(AuthKeysError::NotAFile(_))
        ));
    }
}
