//! Local accounts the agent acts for: lookup in the passwd database and the rule that only
//! regular users (uid ≥ 1000) are served.

use std::path::PathBuf;

use x2gobroker_agent_protocol::{check_user_name, ArgumentError};

/// Lowest uid the agent acts for; below are system accounts.
pub const MIN_REGULAR_UID: u32 = 1000;

/// The passwd entry of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Why the agent will not act for a user.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] ArgumentError),
    #[error("no such user on system: {0}")]
    NoSuchUser(String),
    #[error("operation on system user: {name} (with UID number: {uid})")]
    SystemUser { name: String, uid: u32 },
    #[error("user lookup failed for {name}: {source}")]
    Lookup { name: String, source: nix::Error },
}

/// Looks a name up in the passwd database (NSS).
pub fn lookup_user(name: &str) -> Result<Option<UserAccount>, UserError> {
    let user = nix::unistd::User::from_name(name).map_err(|source| UserError::Lookup {
        name: name.to_owned(),
        source,
    })?;
    Ok(user.map(|user| UserAccount {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    }))
}

/// A valid name of an existing user with uid ≥ 1000.
pub fn regular_user(name: &str) -> Result<UserAccount, UserError> {
    check_user_name(name)?;
    let account = lookup_user(name)?.ok_or_else(|| UserError::NoSuchUser(name.to_owned()))?;
    check_regular(&account)?;
    Ok(account)
}

/// Refuses system accounts.
pub fn check_regular(account: &UserAccount) -> Result<(), UserError> {
    if account.uid < MIN_REGULAR_UID {
        return Err(UserError::SystemUser {
            name: account.name.clone(),
            uid: account.uid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_system_user() {
        let error = regular_user("root").unwrap_err();
        assert_eq!(
            error.to_string(),
            "operation on system user: root (with UID number: 0)"
        );
    }

    #[test]
    fn unknown_and_invalid_names() {
        assert!(matches!(
            regular_user("nosuchuser-xyz"),
            Err(UserError::NoSuchUser(name)) if name == "nosuchuser-xyz"
        ));
        assert!(matches!(
            regular_user("../root"),
            Err(UserError::Invalid(_))
        ));
    }

    #[test]
    fn check_regular_boundary() {
        let mut account = UserAccount {
            name: "u".into(),
            uid: 999,
            gid: 999,
            home: "/home/u".into(),
        };
        assert!(check_regular(&account).is_err());
        account.uid = 1000;
        assert!(check_regular(&account).is_ok());
    }
}
