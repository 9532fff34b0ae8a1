//! Which login users PAM is asked about: never root (uid 0), no system account (uid up to
//! `SYS_UID_MAX` of `/etc/login.defs`, and the kernel's overflow uid 65534, `nobody`) unless
//! the administrator allows it by name (`--allow-system-user`; root stays refused). A user the
//! passwd database does not know is left to PAM, so an unknown name costs the same failure
//! delay as a wrong password.

use std::path::Path;

/// `/etc/login.defs`, where `SYS_UID_MAX` is read.
pub const LOGIN_DEFS: &str = "/etc/login.defs";
/// The highest system uid when login.defs says nothing (shadow's default: `UID_MIN` − 1).
pub const DEFAULT_SYS_UID_MAX: u32 = 999;
/// The kernel's overflow uid, the usual uid of `nobody`.
pub const OVERFLOW_UID: u32 = 65534;

/// What the service does with a login user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountVerdict {
    /// Ask PAM.
    Check,
    /// uid 0: refused without asking PAM, whatever the configuration.
    Root,
    /// A system account not allowed by name: refused without asking PAM.
    SystemAccount { uid: u32 },
}

/// The rule, resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPolicy {
    /// uids up to this one are system accounts.
    pub system_uid_max: u32,
    /// System accounts that may log in nevertheless (never root).
    pub allowed_system_users: Vec<String>,
}

impl Default for AccountPolicy {
    fn default() -> AccountPolicy {
        AccountPolicy {
            system_uid_max: DEFAULT_SYS_UID_MAX,
            allowed_system_users: Vec::new(),
        }
    }
}

impl AccountPolicy {
    /// The verdict for `user`, whose uid the passwd database gave (`None`: unknown). Pure.
    pub fn verdict(&self, user: &str, uid: Option<u32>) -> AccountVerdict {
        match uid {
            None => AccountVerdict::Check,
            Some(0) => AccountVerdict::Root,
            Some(uid)
                if (uid <= self.system_uid_max || uid == OVERFLOW_UID)
                    && !self.allowed_system_users.iter().any(|name| name == user) =>
            {
                AccountVerdict::SystemAccount { uid }
            }
            Some(_) => AccountVerdict::Check,
        }
    }
}

/// `SYS_UID_MAX` from login.defs text, else `UID_MIN` − 1, else [`DEFAULT_SYS_UID_MAX`]. Pure.
pub fn system_uid_max(login_defs: &str) -> u32 {
    let value = |key: &str| {
        login_defs.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key))
                .then(|| words.next())
                .flatten()
                .and_then(parse_number)
        })
    };
    value("SYS_UID_MAX")
        .or_else(|| value("UID_MIN").and_then(|uid_min| uid_min.checked_sub(1)))
        .unwrap_or(DEFAULT_SYS_UID_MAX)
}

/// login.defs numbers: decimal, `0x` hexadecimal or `0` octal (as shadow's getdef reads them).
fn parse_number(text: &str) -> Option<u32> {
    if let Some(hexadecimal) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hexadecimal, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

/// [`system_uid_max`] of the file at `path` (a missing or unreadable file gives the default).
pub fn read_system_uid_max(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .map(|text| system_uid_max(&text))
        .unwrap_or(DEFAULT_SYS_UID_MAX)
}

/// The uid of `user` in the passwd database (NSS; blocking).
pub fn uid_of(user: &str) -> Option<u32> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|account| account.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let policy = AccountPolicy {
            system_uid_max: 999,
            allowed_system_users: vec!["kiosk".into(), "root".into()],
        };
        let table = [
            ("root", Some(0), AccountVerdict::Root),
            ("toor", Some(0), AccountVerdict::Root),
            ("daemon", Some(1), AccountVerdict::SystemAccount { uid: 1 }),
            (
                "x2gobroker",
                Some(106),
                AccountVerdict::SystemAccount { uid: 106 },
            ),
            (
                "edge",
                Some(999),
                AccountVerdict::SystemAccount { uid: 999 },
            ),
            ("maja", Some(1000), AccountVerdict::Check),
            (
                "nobody",
                Some(65534),
                AccountVerdict::SystemAccount { uid: 65534 },
            ),
            ("kiosk", Some(120), AccountVerdict::Check),
            ("nosuchuser", None, AccountVerdict::Check),
        ];
        for (user, uid, expected) in table {
            assert_eq!(policy.verdict(user, uid), expected, "{user} {uid:?}");
        }
    }

    #[test]
    fn login_defs() {
        let table = [
            ("SYS_UID_MAX 499\nUID_MIN 500\n", 499),
            ("# SYS_UID_MAX 1\nUID_MIN\t\t 1000\n", 999),
            ("#SYS_UID_MAX 100\n", DEFAULT_SYS_UID_MAX),
            ("", DEFAULT_SYS_UID_MAX),
            ("SYS_UID_MAX 0x1f3\n", 499),
            ("SYS_UID_MAX 0777\n", 511),
            ("SYS_UID_MAX many\nUID_MIN 2000\n", 1999),
            ("SYS_UID_MAX_X 5\n", DEFAULT_SYS_UID_MAX),
        ];
        for (text, expected) in table {
            assert_eq!(system_uid_max(text), expected, "{text:?}");
        }
        // this machine's file reads as something sensible
        let here = read_system_uid_max(Path::new(LOGIN_DEFS));
        assert!((99..60000).contains(&here), "{here}");
    }
}
