//! Who may ask: the connecting process's credentials as the kernel recorded them at
//! `connect(2)` (SO_PEERCRED: effective uid and gid), checked against root, the socket's owner
//! and the socket's group (`-g`, the broker's group `x2gobroker`), so that a socket mode set
//! too wide (or a directory someone else can reach) does not open PAM to every local user.
//!
//! A refused peer's connection is closed before a byte of it is read, so its password never
//! enters this process.

/// The peer's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Who may connect, resolved at start-up from `-o` and `-g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The socket's owner (`-o`, root by default).
    pub owner_uid: u32,
    /// The socket's group (`-g`; the owner's group when that group does not exist).
    pub group_gid: u32,
}

impl PeerPolicy {
    /// Root, the owner, or a process whose effective gid is the group: allowed without looking
    /// anything up. Pure.
    pub fn allowed_by_ids(&self, peer: &Peer) -> bool {
        peer.uid == 0 || peer.uid == self.owner_uid || peer.gid == self.group_gid
    }
}

/// The credentials of the peer of a connected unix socket.
pub fn peer_of(stream: &tokio::net::UnixStream) -> nix::Result<Peer> {
    let credentials =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(Peer {
        pid: credentials.pid(),
        uid: credentials.uid(),
        gid: credentials.gid(),
    })
}

/// Whether the user with `uid` is a member of group `gid` in the group database (primary or
/// supplementary; NSS, blocking): the peer may hold the group as a supplementary group, which
/// SO_PEERCRED does not report.
pub fn user_is_member(uid: u32, gid: u32) -> bool {
    let Ok(Some(account)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    if account.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(account.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, account.gid)
        .map(|groups| groups.iter().any(|group| group.as_raw() == gid))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_allowed_by_their_ids() {
        let policy = PeerPolicy {
            owner_uid: 0,
            group_gid: 106,
        };
        let peer = |uid, gid| Peer { pid: 1, uid, gid };
        let table = [
            (peer(0, 0), true),
            (peer(0, 1000), true),
            (peer(120, 106), true),
            (peer(1000, 1000), false),
            (peer(106, 1000), false),
            (peer(65534, 65534), false),
        ];
        for (candidate, allowed) in table {
            assert_eq!(policy.allowed_by_ids(&candidate), allowed, "{candidate:?}");
        }
        let owned_by_a_user = PeerPolicy {
            owner_uid: 1000,
            group_gid: 1000,
        };
        assert!(owned_by_a_user.allowed_by_ids(&peer(1000, 5)));
    }

    #[test]
    fn membership_from_the_group_database() {
        let root = nix::unistd::User::from_uid(0.into()).unwrap().unwrap();
        assert!(user_is_member(0, root.gid.as_raw()));
        assert!(!user_is_member(u32::MAX - 7, 0), "unknown uid");
    }
}
