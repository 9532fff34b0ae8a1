//! User and group name services for ACLs (§8): the system's (libnss) and the reference's `testsuite` one.

/// Where a user's groups come from.
pub trait NameService: Send + Sync {
    /// The groups `user` is a member of; the primary group only when asked for.
    fn groups_of(&self, user: &str, include_primary_group: bool) -> Vec<String>;
}

/// The reference's fixed test name service.
pub struct Testsuite;

const TESTSUITE_USERS: [&str; 5] = ["maja", "willi", "flip", "kassandra", "thekla"];
const TESTSUITE_GROUPS: [(&str, &[&str]); 5] = [
    ("male", &["willi", "flip"]),
    ("female", &["maja", "kassandra", "thekla"]),
    ("bees", &["maja", "willi", "kassandra"]),
    ("grasshoppers", &["flip"]),
    ("spiders", &["thekla"]),
];

impl NameService for Testsuite {
    fn groups_of(&self, user: &str, include_primary_group: bool) -> Vec<String> {
        let mut groups: Vec<String> = TESTSUITE_GROUPS
            .iter()
            .filter(|(_, members)| members.contains(&user))
            .map(|(name, _)| name.to_string())
            .collect();
        // Every testsuite user's primary group is its own name.
        if include_primary_group
            && TESTSUITE_USERS.contains(&user)
            && !groups.iter().any(|g| g == user)
        {
            groups.push(user.to_string());
        }
        groups
    }
}

/// The system's passwd and group databases (NSS), read live.
pub struct Libnss;

impl NameService for Libnss {
    fn groups_of(&self, user: &str, include_primary_group: bool) -> Vec<String> {
        use nix::unistd::{getgrouplist, Group, User};
        let Ok(Some(account)) = User::from_name(user) else {
            return Vec::new();
        };
        let Ok(name) = std::ffi::CString::new(user) else {
            return Vec::new();
        };
        let gids = getgrouplist(&name, account.gid).unwrap_or_default();
        let mut groups = Vec::new();
        for gid in gids {
            let Ok(Some(group)) = Group::from_gid(gid) else {
                continue;
            };
            let is_primary = gid == account.gid;
            let listed_as_member = group.mem.iter().any(|member| member == user);
            if (!is_primary || include_primary_group || listed_as_member)
                && !groups.contains(&group.name)
            {
                groups.push(group.name);
            }
        }
        groups
    }
}

/// The name service called `kind` in the config (`libnss`, `testsuite`).
pub fn name_service(kind: &str) -> Option<Box<dyn NameService>> {
    match kind {
        "libnss" => Some(Box::new(Libnss)),
        "testsuite" => Some(Box::new(Testsuite)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testsuite_groups() {
        let mut groups = Testsuite.groups_of("maja", false);
        groups.sort();
        assert_eq!(groups, ["bees", "female"]);
        assert!(Testsuite
            .groups_of("maja", true)
            .contains(&"maja".to_string()));
        assert!(Testsuite.groups_of("nobody", true).is_empty());
    }

    #[test]
    fn libnss_reads_the_system_databases() {
        let root_groups = Libnss.groups_of("root", true);
        assert!(root_groups.contains(&"root".to_string()), "{root_groups:?}");
        assert!(Libnss.groups_of("no-such-user-x2go", true).is_empty());
        assert!(name_service("libnss").is_some() && name_service("ldap").is_none());
    }
}
