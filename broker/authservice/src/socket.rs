//! Creating the listening unix socket: stale file removed, owner, group and mode set (§6.4).

use nix::sys::stat::Mode;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The socket's path when neither `-s` nor `X2GOBROKER_AUTHSERVICE_SOCKET` names one (fix B20:
/// never the reference's doubled `/var/run/x2gobroker/x2gobroker/…` fallback).
pub const DEFAULT_SOCKET: &str = "/run/x2gobroker/x2gobroker-authservice.socket";

/// Where and with which ownership the socket is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    pub path: PathBuf,
    /// User name owning the socket (`-o`).
    pub owner: String,
    /// Group name of the socket (`-g`); the broker's group, so that it may connect.
    pub group: String,
    /// Permission bits (`-p`), e.g. `0o660`.
    pub mode: u32,
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("permissions {0:?} are not an octal mode")]
    BadMode(String),
    #[error("no such user {0:?}")]
    NoSuchOwner(String),
    #[error("looking up {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("chown {0}: {1}")]
    Chown(PathBuf, nix::Error),
}

/// Parses `-p`: `660`, `0660` or Python's `0o660`.
pub fn parse_mode(text: &str) -> Result<u32, SocketError> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(mode),
        _ => Err(SocketError::BadMode(text.to_string())),
    }
}

/// The socket directory's mode: the socket's mode with `x` added wherever `r` is set (as the
/// reference does for a directory it creates).
pub fn directory_mode(socket_mode: u32) -> u32 {
    (socket_mode & 0o777) | ((socket_mode & 0o444) >> 2)
}

/// The socket's owner and group as ids: `-o`'s uid, and `-g`'s gid or, when that group does
/// not exist, the owner's (with a warning). These are also who may ask ([`crate::peer`]).
fn ownership(options: &SocketOptions) -> Result<(nix::unistd::Uid, nix::unistd::Gid), SocketError> {
    let owner = nix::unistd::User::from_name(&options.owner)
        .map_err(|error| SocketError::Lookup(options.owner.clone(), error))?
        .ok_or_else(|| SocketError::NoSuchOwner(options.owner.clone()))?;
    let group = match nix::unistd::Group::from_name(&options.group)
        .map_err(|error| SocketError::Lookup(options.group.clone(), error))?
    {
        Some(group) => group.gid,
        None => {
            tracing::warn!(group = %options.group, "no such group: the socket keeps the owner's group");
            owner.gid
        }
    };
    Ok((owner.uid, group))
}

/// The listening socket and the ids it was given.
#[derive(Debug)]
pub struct Bound {
    pub listener: tokio::net::UnixListener,
    pub owner_uid: u32,
    pub group_gid: u32,
}

/// Creates the socket directory if needed, removes a stale socket, binds, then sets owner, group
/// and mode. A missing group is not fatal: the socket keeps the owner's group and a warning says so.
/// Must run inside a tokio runtime.
pub fn bind(options: &SocketOptions) -> Result<Bound, SocketError> {
    let path = options.path.as_path();
    let (owner_uid, group) = ownership(options)?;
    if let Some(directory) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_directory(directory, options.mode, owner_uid, group)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(SocketError::Io(path.to_path_buf(), error)),
    }
    // Nobody but root may connect between bind and chmod.
    let previous_umask = nix::sys::stat::umask(Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(previous_umask);
    let listener = bound.map_err(|error| SocketError::Io(path.to_path_buf(), error))?;
    nix::unistd::chown(path, Some(owner_uid), Some(group))
        .map_err(|error| SocketError::Chown(path.to_path_buf(), error))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode))
        .map_err(|error| SocketError::Io(path.to_path_buf(), error))?;
    Ok(Bound {
        listener,
        owner_uid: owner_uid.as_raw(),
        group_gid: group.as_raw(),
    })
}

fn create_directory(
    directory: &Path,
    socket_mode: u32,
    owner: nix::unistd::Uid,
    group: nix::unistd::Gid,
) -> Result<(), SocketError> {
    if directory.exists() {
        // systemd's RuntimeDirectory= (or the administrator) made it: leave it as it is.
        return Ok(());
    }
    std::fs::create_dir_all(directory)
        .map_err(|error| SocketError::Io(directory.to_path_buf(), error))?;
    std::fs::set_permissions(
        directory,
        std::fs::Permissions::from_mode(directory_mode(socket_mode)),
    )
    .map_err(|error| SocketError::Io(directory.to_path_buf(), error))?;
    nix::unistd::chown(directory, Some(owner), Some(group))
        .map_err(|error| SocketError::Chown(directory.to_path_buf(), error))
}

/// Removes the socket file at shutdown (only a socket: never a file someone put in its place).
pub fn remove(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if metadata.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for (text, expected) in [
            ("0660", Some(0o660)),
            ("660", Some(0o660)),
            ("0o660", Some(0o660)),
            (" 0600 ", Some(0o600)),
            ("", None),
            ("0o", None),
            ("rw-rw----", None),
            ("0998", None),
            ("177777", None),
        ] {
            assert_eq!(parse_mode(text).ok(), expected, "{text:?}");
        }
        assert_eq!(directory_mode(0o660), 0o770);
        assert_eq!(directory_mode(0o600), 0o700);
        assert_eq!(directory_mode(0o666), 0o777);
    }
}
