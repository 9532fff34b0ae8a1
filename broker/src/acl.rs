//! Profile ACL evaluation (§8): client CIDRs, users, groups, and their order rules.

use crate::config::Value;
use crate::nss::NameService;
use ipnet::IpNet;
use std::net::IpAddr;

/// The `acl-*` keys of one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileAcls {
    pub users_allow: Vec<String>,
    pub users_deny: Vec<String>,
    pub users_order: String,
    pub groups_allow: Vec<String>,
    pub groups_deny: Vec<String>,
    pub groups_order: String,
    pub clients_allow: Vec<String>,
    pub clients_deny: Vec<String>,
    pub clients_order: String,
}

impl ProfileAcls {
    /// Collects the ACL keys from a profile's `acl-*` entries; other keys are ignored.
    /// (`acl-any-order` has no effect in the reference, B6.)
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = (&'a str, &'a Value)>) -> ProfileAcls {
        let mut acls = ProfileAcls::default();
        for (key, value) in keys {
            let list = || {
                value
                    .as_list()
                    .into_iter()
                    .filter(|item| !item.is_empty())
                    .collect()
            };
            let text = || value.render_plain();
            match key {
                "acl-users-allow" => acls.users_allow = list(),
                "acl-users-deny" => acls.users_deny = list(),
                "acl-users-order" => acls.users_order = text(),
                "acl-groups-allow" => acls.groups_allow = list(),
                "acl-groups-deny" => acls.groups_deny = list(),
                "acl-groups-order" => acls.groups_order = text(),
                "acl-clients-allow" => acls.clients_allow = list(),
                "acl-clients-deny" => acls.clients_deny = list(),
                "acl-clients-order" => acls.clients_order = text(),
                _ => {}
            }
        }
        acls
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Grant,
    Refuse,
    Undecided,
}

/// The order rule: `allow-deny` lets an allow win, anything else is deny-allow.
fn decide(order: &str, allowed: bool, denied: bool) -> Decision {
    if order == "allow-deny" {
        if allowed {
            Decision::Grant
        } else if denied {
            Decision::Refuse
        } else {
            Decision::Undecided
        }
    } else if denied {
        Decision::Refuse
    } else if allowed {
        Decision::Grant
    } else {
        Decision::Undecided
    }
}

/// A set of networks, as netaddr's IPSet holds them.
#[derive(Debug, Clone, Default)]
struct NetSet {
    networks: Vec<IpNet>,
    ranges: Vec<(IpAddr, IpAddr)>,
}

impl NetSet {
    fn contains(&self, address: &IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
            || self.ranges.iter().any(|(first, last)| {
                first <= address && address <= last && first.is_ipv4() == address.is_ipv4()
            })
    }
}

/// Parses a client list: `ALL`, addresses, CIDRs, `a-b` ranges and `10.0.*.*` globs.
/// `None` when an entry is not an address (a host name, say).
fn parse_clients(entries: &[String]) -> Option<NetSet> {
    let mut set = NetSet::default();
    for entry in entries {
        let entry = entry.trim();
        if entry == "ALL" {
            set.networks.push("0.0.0.0/0".parse().ok()?);
            set.networks.push("::/0".parse().ok()?);
        } else if let Ok(address) = entry.parse::<IpAddr>() {
            set.networks.push(IpNet::from(address));
        } else if let Ok(network) = entry.parse::<IpNet>() {
            set.networks.push(network.trunc());
        } else if let Some((first, last)) = entry.split_once('-') {
            let first: IpAddr = first.trim().parse().ok()?;
            let last: IpAddr = last.trim().parse().ok()?;
            set.ranges.push((first, last));
        } else if entry.contains('*') {
            let octets: Vec<&str> = entry.split('.').collect();
            if octets.len() != 4 {
                return None;
            }
            let low = octets
                .iter()
                .map(|octet| if *octet == "*" { "0" } else { octet })
                .collect::<Vec<_>>()
                .join(".");
            let high = octets
                .iter()
                .map(|octet| if *octet == "*" { "255" } else { octet })
                .collect::<Vec<_>>()
                .join(".");
            set.ranges.push((low.parse().ok()?, high.parse().ok()?));
        } else {
            return None;
        }
    }
    Some(set)
}

/// §8: whether `user` connecting from `client_ip` may use a profile with these ACLs.
pub fn check_profile_acls(
    user: &str,
    client_ip: IpAddr,
    acls: &ProfileAcls,
    name_service: &dyn NameService,
    ignore_primary_group_memberships: bool,
) -> bool {
    if !acls.clients_allow.is_empty() || !acls.clients_deny.is_empty() {
        let (allow_set, deny_set) = match parse_clients(&acls.clients_allow) {
            Some(allow) => (allow, parse_clients(&acls.clients_deny).unwrap_or_default()),
            None => (NetSet::default(), NetSet::default()),
        };
        let decision = decide(
            &acls.clients_order,
            allow_set.contains(&client_ip),
            deny_set.contains(&client_ip),
        );
        if decision != Decision::Grant {
            return false;
        }
    }
    let no_user_rules = acls.users_allow.is_empty() && acls.users_deny.is_empty();
    let no_group_rules = acls.groups_allow.is_empty() && acls.groups_deny.is_empty();
    if no_user_rules && no_group_rules {
        return true;
    }
    let mut by_user = Decision::Undecided;
    if !no_user_rules {
        let listed = |list: &[String]| list.iter().any(|entry| entry == user || entry == "ALL");
        by_user = decide(
            &acls.users_order,
            listed(&acls.users_allow),
            listed(&acls.users_deny),
        );
        if by_user == Decision::Grant {
            return true;
        }
    }
    if !no_group_rules {
        let mut groups = vec!["ALL".to_string()];
        groups.extend(name_service.groups_of(user, !ignore_primary_group_memberships));
        let listed = |list: &[String]| list.iter().any(|entry| groups.contains(entry));
        let by_group = decide(
            &acls.groups_order,
            listed(&acls.groups_allow),
            listed(&acls.groups_deny),
        );
        if by_group == Decision::Grant && by_user != Decision::Refuse {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nss::Testsuite;
    use serde_json::Value as Json;

    fn to_value(json: &Json) -> Value {
        match json {
            Json::Array(items) => Value::List(
                items
                    .iter()
                    .map(|i| i.as_str().unwrap().to_string())
                    .collect(),
            ),
            Json::String(text) => Value::Str(text.clone()),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn api_acl_matrix_golden_records() {
        let path = format!(
            "{}/tests/golden/api_acl_matrix.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let (mut cells, mut records) = (0, 0);
        for line in text.lines() {
            let record: Json = serde_json::from_str(line).unwrap();
            assert_eq!(record["nameservice"], "testsuite");
            let values: Vec<(String, Value)> = record["acls"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(key, value)| (key.clone(), to_value(value)))
                .collect();
            let acls = ProfileAcls::from_keys(values.iter().map(|(k, v)| (k.as_str(), v)));
            let ignore_primary = record["ignore-primary-group-memberships"]
                .as_bool()
                .unwrap();
            for (client, users) in record["result_by_client_then_user"].as_object().unwrap() {
                let ip: IpAddr = client.parse().unwrap();
                for (user, expected) in users.as_object().unwrap() {
                    let got = check_profile_acls(user, ip, &acls, &Testsuite, ignore_primary);
                    assert_eq!(
                        Json::Bool(got),
                        *expected,
                        "{} / {client} / {user}",
                        record["acl_name"]
                    );
                    cells += 1;
                }
            }
            records += 1;
        }
        println!("api_acl_matrix: {records} records, {cells} cells match");
        assert_eq!(records, 38);
    }

    #[test]
    fn ranges_and_globs() {
        let acls = ProfileAcls {
            clients_allow: vec!["10.0.0.1-10.0.0.9".into(), "192.168.*.*".into()],
            ..Default::default()
        };
        for (ip, expected) in [
            ("10.0.0.5", true),
            ("10.0.0.10", false),
            ("192.168.7.1", true),
            ("::1", false),
        ] {
            assert_eq!(
                check_profile_acls("u", ip.parse().unwrap(), &acls, &Testsuite, true),
                expected,
                "{ip}"
            );
        }
    }
}
