//! User and group name services for ACLs (§8): the system's (`libnss`) and the reference's fixed `testsuite` one.

use nix::unistd::{getgrouplist, Gid, Group, User};
use std::ffi::CString;

/// Where a user's groups come from (the `group-db` setting).
pub trait NameService: Send + Sync {
    /// The groups that list `user` as a member, plus the user's primary group when
    /// `include_primary_group` is set. An unknown user has no primary group.
    fn groups_of(&self, user: &str, include_primary_group: bool) -> Vec<String>;
}

/// The reference's test name service: five users, five groups, every user's primary group
/// named like the user.
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
            .map(|(group_name, _)| group_name.to_string())
            .collect();
        if include_primary_group && TESTSUITE_USERS.contains(&user) {
            groups.push(user.to_string());
        }
        groups
    }
}

/// The system's passwd and group databases through NSS, read live on every call (the
/// reference snapshots the user and group lists once per process; reading live only makes
/// later changes visible sooner).
pub struct Libnss;

impl NameService for Libnss {
    fn groups_of(&self, user: &str, include_primary_group: bool) -> Vec<String> {
        let Ok(user_name) = CString::new(user) else {
            return Vec::new();
        };
        let primary_gid = User::from_name(user)
            .ok()
            .flatten()
            .map(|account| account.gid);
        // getgrouplist() reports every group listing the user plus the gid it is given; for
        // a user without a passwd entry (whose memberships still count, as in the reference)
        // any gid does, and it is only kept when its group lists the user.
        let base_gid = primary_gid.unwrap_or_else(|| Gid::from_raw(0));
        let gids = getgrouplist(&user_name, base_gid).unwrap_or_default();
        let mut groups: Vec<String> = Vec::new();
        for gid in gids {
            let Ok(Some(group)) = Group::from_gid(gid) else {
                continue;
            };
            let is_primary = Some(gid) == primary_gid;
            let lists_user = group.mem.iter().any(|member| member == user);
            let counts = lists_user || (is_primary && include_primary_group);
            if counts && !groups.contains(&group.name) {
                groups.push(group.name);
            }
        }
        groups
    }
}

/// The name service a `user-db` / `group-db` value names; `None` for anything but `libnss`
/// and `testsuite`.
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
    fn testsuite_groups_table() {
        // (user, groups without the primary group)
        let cases: [(&str, &[&str]); 6] = [
            ("maja", &["female", "bees"]),
            ("willi", &["male", "bees"]),
            ("flip", &["male", "grasshoppers"]),
            ("kassandra", &["female", "bees"]),
            ("thekla", &["female", "spiders"]),
            ("nobody", &[]),
        ];
        for (user, groups) in cases {
            assert_eq!(Testsuite.groups_of(user, false), groups, "{user}");
            let mut with_primary: Vec<&str> = groups.to_vec();
            if user != "nobody" {
                with_primary.push(user);
            }
            assert_eq!(
                Testsuite.groups_of(user, true),
                with_primary,
                "{user} with primary"
            );
        }
    }

    /// `/etc/group` as an oracle for the memberships it lists: (group, gid, members).
    fn etc_group() -> Vec<(String, u32, Vec<String>)> {
        let text = std::fs::read_to_string("/etc/group").expect("/etc/group");
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let [group_name, _, gid, members] = fields.as_slice() else {
                    return None;
                };
                let member_names = members
                    .split(',')
                    .filter(|member| !member.is_empty())
                    .map(str::to_string)
                    .collect();
                Some((group_name.to_string(), gid.parse().ok()?, member_names))
            })
            .collect()
    }

    #[test]
    fn libnss_reports_memberships_and_the_primary_group_only_when_asked() {
        let root = User::from_name("root")
            .expect("passwd")
            .expect("a root account");
        let root_primary = Group::from_gid(root.gid)
            .expect("group database")
            .expect("root's primary group")
            .name;
        let groups_file = etc_group();
        let root_memberships: Vec<String> = groups_file
            .iter()
            .filter(|(_, _, members)| members.iter().any(|member| member == "root"))
            .map(|(group_name, _, _)| group_name.clone())
            .collect();

        let with_primary = Libnss.groups_of("root", true);
        let without_primary = Libnss.groups_of("root", false);
        assert!(with_primary.contains(&root_primary), "{with_primary:?}");
        assert_eq!(
            without_primary.contains(&root_primary),
            root_memberships.contains(&root_primary),
            "{without_primary:?}"
        );
        for group_name in &root_memberships {
            assert!(
                without_primary.contains(group_name),
                "{group_name} in {without_primary:?}"
            );
        }
    }

    #[test]
    fn libnss_counts_memberships_of_users_without_an_account() {
        // A member listed in /etc/group that has no passwd entry, if this system has one.
        let groups_file = etc_group();
        let orphan = groups_file
            .iter()
            .flat_map(|(group_name, _, members)| {
                members.iter().map(move |member| (group_name, member))
            })
            .find(|(_, member)| matches!(User::from_name(member), Ok(None)));
        if let Some((group_name, member)) = orphan {
            assert!(
                Libnss.groups_of(member, false).contains(group_name),
                "{member}"
            );
        }
        assert!(Libnss.groups_of("no-such-user-x2go", true).is_empty());
        assert!(Libnss.groups_of("nul\0byte", true).is_empty());
    }

    #[test]
    fn name_services_by_kind() {
        assert!(name_service("libnss").is_some());
        let testsuite = name_service("testsuite").expect("testsuite");
        assert_eq!(testsuite.groups_of("flip", false), ["male", "grasshoppers"]);
        assert!(name_service("ldap").is_none());
        assert!(name_service("").is_none());
    }
}
