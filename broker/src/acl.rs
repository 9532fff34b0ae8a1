//! Profile ACL evaluation (§8): client networks, users and groups with their order rules, as the reference's `check_profile_acls`.
//!
//! Client lists are read the way netaddr 0.8.0's `IPSet(list)` reads them: every entry goes
//! through `IPNetwork(entry)`, which takes addresses, CIDRs (`10.0.0.0/8`, `10/8`), partial
//! IPv4 networks (`10.1` = `10.1.0.0/32`) and netmask or hostmask prefixes
//! (`10.0.0.0/255.0.0.0`), but **not** ranges (`10.0.0.1-10.0.0.9`) or globs (`10.0.*.*`):
//! those, like host names, make the list invalid.

use crate::config::typing;
use crate::config::Value;
use crate::hosts::parse_python_int;
use crate::nss::NameService;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The order value that lets an allow win; every other value (empty included) is deny-allow.
const ALLOW_DENY: &str = "allow-deny";

/// The list entry (users, groups, clients) that stands for everybody.
const EVERYBODY: &str = "ALL";

/// The `acl-*` keys of one profile. Lists hold no empty entries; orders are the raw strings.
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
    /// Collects the ACL keys from a profile's `acl-*` entries; other keys are ignored, and so
    /// is `acl-any-order`, which has no effect in the reference (B6). A list given as a
    /// `Value::Str` is split as §5.1 types list keys (`[...]` literal, else at `,`).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = (&'a str, &'a Value)>) -> ProfileAcls {
        let mut acls = ProfileAcls::default();
        for (key, value) in keys {
            match key {
                "acl-users-allow" => acls.users_allow = list_items(key, value),
                "acl-users-deny" => acls.users_deny = list_items(key, value),
                "acl-users-order" => acls.users_order = value.render_plain(),
                "acl-groups-allow" => acls.groups_allow = list_items(key, value),
                "acl-groups-deny" => acls.groups_deny = list_items(key, value),
                "acl-groups-order" => acls.groups_order = value.render_plain(),
                "acl-clients-allow" => acls.clients_allow = list_items(key, value),
                "acl-clients-deny" => acls.clients_deny = list_items(key, value),
                "acl-clients-order" => acls.clients_order = value.render_plain(),
                _ => {}
            }
        }
        acls
    }
}

/// The non-empty items of a list-typed ACL value.
fn list_items(key: &str, value: &Value) -> Vec<String> {
    let items = match value {
        Value::List(items) => items.clone(),
        Value::Str(text) => match typing::type_value(key, text, &Value::List(Vec::new())) {
            Ok(Value::List(items)) => items,
            _ => vec![text.clone()],
        },
        other => vec![other.render_plain()],
    };
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

/// What one category (clients, users, groups) says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Grant,
    Refuse,
    Undecided,
}

/// The order rule: with `allow-deny` an allow wins over a deny, with anything else a deny wins.
fn decide(order: &str, allowed: bool, denied: bool) -> Decision {
    let (first, second) = if order == ALLOW_DENY {
        ((allowed, Decision::Grant), (denied, Decision::Refuse))
    } else {
        ((denied, Decision::Refuse), (allowed, Decision::Grant))
    };
    if first.0 {
        return first.1;
    }
    if second.0 {
        return second.1;
    }
    Decision::Undecided
}

/// The networks of one client list (netaddr's `IPSet`).
#[derive(Debug, Clone, Default)]
struct ClientNetworks {
    networks: Vec<IpNet>,
}

impl ClientNetworks {
    /// Reads a client list, `ALL` standing for `0.0.0.0/0` and `::/0`. `None` when an entry
    /// is not a network in netaddr's sense (a host name, a range, a glob).
    fn parse(entries: &[String]) -> Option<ClientNetworks> {
        let mut networks = Vec::new();
        for entry in entries {
            if entry == EVERYBODY {
                networks.push(IpNet::V4(Ipv4Net::default()));
                networks.push(IpNet::V6(Ipv6Net::default()));
                continue;
            }
            networks.push(parse_netaddr_network(entry)?);
        }
        Some(ClientNetworks { networks })
    }

    /// Whether the address lies in one of the networks (IPv4 only in IPv4 networks, IPv6
    /// only in IPv6 ones).
    fn contains(&self, address: &IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }
}

/// netaddr 0.8.0 `IPNetwork(text)`: try IPv4 (an `inet_pton` address or a partial one like
/// `10.1`), then IPv6; the part after the first `/` is a prefix length read by Python's
/// `int()`, or a netmask or hostmask address. Host bits are dropped.
fn parse_netaddr_network(text: &str) -> Option<IpNet> {
    let (address_text, prefix_text) = match text.split_once('/') {
        Some((address_text, prefix_text)) => (address_text, Some(prefix_text)),
        None => (text, None),
    };
    parse_ipv4_network(address_text, prefix_text)
        .or_else(|| parse_ipv6_network(address_text, prefix_text))
}

fn parse_ipv4_network(address_text: &str, prefix_text: Option<&str>) -> Option<IpNet> {
    let address = address_text
        .parse::<Ipv4Addr>()
        .ok()
        .or_else(|| expand_partial_ipv4(address_text))?;
    let prefix = match prefix_text {
        None => 32,
        Some(text) => prefix_length(text, 32, |mask_text| {
            mask_text
                .parse::<Ipv4Addr>()
                .ok()
                .map(|mask| u128::from(u32::from(mask)))
        })?,
    };
    let network = Ipv4Net::new(address, prefix).ok()?;
    Some(IpNet::V4(network.trunc()))
}

fn parse_ipv6_network(address_text: &str, prefix_text: Option<&str>) -> Option<IpNet> {
    let address = address_text.parse::<Ipv6Addr>().ok()?;
    let prefix = match prefix_text {
        None => 128,
        Some(text) => prefix_length(text, 128, |mask_text| {
            mask_text.parse::<Ipv6Addr>().ok().map(u128::from)
        })?,
    };
    let network = Ipv6Net::new(address, prefix).ok()?;
    Some(IpNet::V6(network.trunc()))
}

/// netaddr's `expand_partial_address`: one to four `.`-separated Python integers, missing
/// parts zero, each 0–255 (`10` = 10.0.0.0, `010.1` = 10.1.0.0, `10. 1.2.3` = 10.1.2.3).
fn expand_partial_ipv4(text: &str) -> Option<Ipv4Addr> {
    if text.contains(':') {
        return None;
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        *octet = u8::try_from(parse_python_int(part)?).ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// A prefix length of a network `width` bits wide: an integer 0..=width, or a netmask
/// (`255.0.0.0`) or hostmask (`0.255.255.255`) that `parse_mask` reads.
fn prefix_length(text: &str, width: u32, parse_mask: impl Fn(&str) -> Option<u128>) -> Option<u8> {
    if let Some(number) = parse_python_int(text) {
        return u8::try_from(number)
            .ok()
            .filter(|prefix| u32::from(*prefix) <= width);
    }
    let all_ones = u128::MAX >> (128 - width);
    let mask = parse_mask(text)?;
    let inverted = !mask & all_ones;
    if inverted & inverted.wrapping_add(1) == 0 {
        // a netmask: ones, then zeros
        return u8::try_from(width - inverted.count_ones()).ok();
    }
    if mask & mask.wrapping_add(1) == 0 {
        // a hostmask: zeros, then ones
        return u8::try_from(width - mask.count_ones()).ok();
    }
    None
}

/// Why the ACLs show or hide a profile (the debug log and the explain API name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclVerdict {
    /// No user or group rules (client rules, if any, granted).
    Open,
    /// The user rules list the user (or `ALL`) as allowed.
    UserAllowed,
    /// The group rules allow one of the user's groups.
    GroupAllowed,
    /// The client rules did not grant the client's address.
    ClientRefused,
    /// The user rules refuse the user.
    UserRefused,
    /// The group rules did not grant any of the user's groups.
    GroupRefused,
    /// User rules exist, did not grant, and there are no group rules.
    NotListed,
}

impl AclVerdict {
    /// Whether the profile is shown.
    pub fn granted(self) -> bool {
        matches!(
            self,
            AclVerdict::Open | AclVerdict::UserAllowed | AclVerdict::GroupAllowed
        )
    }

    /// In words, for logs and explanations.
    pub fn reason(self) -> &'static str {
        match self {
            AclVerdict::Open => "no user or group rules",
            AclVerdict::UserAllowed => "acl-users-allow lists the user",
            AclVerdict::GroupAllowed => "acl-groups-allow lists one of the user's groups",
            AclVerdict::ClientRefused => "the client address is not allowed (acl-clients-*)",
            AclVerdict::UserRefused => "the user is refused (acl-users-*)",
            AclVerdict::GroupRefused => "none of the user's groups is allowed (acl-groups-*)",
            AclVerdict::NotListed => {
                "acl-users-* does not allow the user and there are no group rules"
            }
        }
    }
}

/// §8: whether `user` connecting from `client_ip` may see a profile with these ACLs.
///
/// 1. Client rules, once present, must grant: undecided counts as refused. An invalid allow
///    list leaves both sets empty; an invalid deny list only empties the deny set.
/// 2. Without user and group rules: granted.
/// 3. A user grant (the user or `ALL` listed) is final.
/// 4. A group grant counts unless the users refused; `ALL` is one of every user's groups,
///    the primary group counts only when `ignore_primary_group_memberships` is false.
///
/// The reference's server (Tornado) never sees IPv4-mapped IPv6 addresses; should our
/// listener hand us one, it is judged as the IPv4 address it stands for.
pub fn check_profile_acls(
    user: &str,
    client_ip: IpAddr,
    acls: &ProfileAcls,
    name_service: &dyn NameService,
    ignore_primary_group_memberships: bool,
) -> bool {
    acl_verdict(
        user,
        client_ip,
        acls,
        name_service,
        ignore_primary_group_memberships,
    )
    .granted()
}

/// [`check_profile_acls`] with the rule that decided.
pub fn acl_verdict(
    user: &str,
    client_ip: IpAddr,
    acls: &ProfileAcls,
    name_service: &dyn NameService,
    ignore_primary_group_memberships: bool,
) -> AclVerdict {
    let has_client_rules = !acls.clients_allow.is_empty() || !acls.clients_deny.is_empty();
    if has_client_rules {
        let client_address = client_ip.to_canonical();
        let (allow_networks, deny_networks) = match ClientNetworks::parse(&acls.clients_allow) {
            Some(parsed_allow) => (
                parsed_allow,
                ClientNetworks::parse(&acls.clients_deny).unwrap_or_default(),
            ),
            None => (ClientNetworks::default(), ClientNetworks::default()),
        };
        let by_client = decide(
            &acls.clients_order,
            allow_networks.contains(&client_address),
            deny_networks.contains(&client_address),
        );
        if by_client != Decision::Grant {
            return AclVerdict::ClientRefused;
        }
    }
    let has_user_rules = !acls.users_allow.is_empty() || !acls.users_deny.is_empty();
    let has_group_rules = !acls.groups_allow.is_empty() || !acls.groups_deny.is_empty();
    if !has_user_rules && !has_group_rules {
        return AclVerdict::Open;
    }
    let mut by_user = Decision::Undecided;
    if has_user_rules {
        let lists_user =
            |list: &[String]| list.iter().any(|entry| entry == user || entry == EVERYBODY);
        by_user = decide(
            &acls.users_order,
            lists_user(&acls.users_allow),
            lists_user(&acls.users_deny),
        );
        if by_user == Decision::Grant {
            return AclVerdict::UserAllowed;
        }
    }
    if !has_group_rules {
        return if by_user == Decision::Refuse {
            AclVerdict::UserRefused
        } else {
            AclVerdict::NotListed
        };
    }
    let mut user_groups = vec![EVERYBODY.to_string()];
    user_groups.extend(name_service.groups_of(user, !ignore_primary_group_memberships));
    let lists_a_group = |list: &[String]| list.iter().any(|entry| user_groups.contains(entry));
    let by_group = decide(
        &acls.groups_order,
        lists_a_group(&acls.groups_allow),
        lists_a_group(&acls.groups_deny),
    );
    match (by_group == Decision::Grant, by_user == Decision::Refuse) {
        (true, false) => AclVerdict::GroupAllowed,
        (_, true) => AclVerdict::UserRefused,
        (false, false) => AclVerdict::GroupRefused,
    }
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
                    .map(|item| item.as_str().expect("a string").to_string())
                    .collect(),
            ),
            Json::String(text) => Value::Str(text.clone()),
            other => panic!("unexpected ACL value {other}"),
        }
    }

    #[test]
    fn api_acl_matrix_golden_records() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/api_acl_matrix.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("golden file");
        let (mut n_records, mut n_cells) = (0, 0);
        let mut mismatches: Vec<String> = Vec::new();
        for line in text.lines() {
            let record: Json = serde_json::from_str(line).expect("a JSON record");
            // Every record of this file used the testsuite name service.
            assert_eq!(record["nameservice"], "testsuite", "{}", record["acl_name"]);
            let values: Vec<(String, Value)> = record["acls"]
                .as_object()
                .expect("acls")
                .iter()
                .map(|(key, value)| (key.clone(), to_value(value)))
                .collect();
            let acls =
                ProfileAcls::from_keys(values.iter().map(|(key, value)| (key.as_str(), value)));
            let ignore_primary = record["ignore-primary-group-memberships"]
                .as_bool()
                .expect("ignore-primary-group-memberships");
            let by_client = record["result_by_client_then_user"]
                .as_object()
                .expect("results");
            for (client, by_user) in by_client {
                let client_ip: IpAddr = client.parse().expect("a client address");
                for (user, expected) in by_user.as_object().expect("results by user") {
                    let granted =
                        check_profile_acls(user, client_ip, &acls, &Testsuite, ignore_primary);
                    if Json::Bool(granted) != *expected {
                        mismatches.push(format!(
                            "{} (ignore primary {ignore_primary}) / {client} / {user}: got {granted}",
                            record["acl_name"]
                        ));
                    }
                    n_cells += 1;
                }
            }
            n_records += 1;
        }
        println!(
            "api_acl_matrix: {n_records} records, {} of {n_cells} cells match",
            n_cells - mismatches.len()
        );
        assert_eq!((n_records, n_cells), (38, 38 * 6 * 5));
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    /// Every row was confirmed against netaddr 0.8.0's `IPSet([text])`.
    #[test]
    fn netaddr_network_table() {
        let cases = [
            (" 10.0.0.1", Some("10.0.0.1/32")),
            ("10. 1.2.3", Some("10.1.2.3/32")),
            ("1_0.0.0.1", Some("10.0.0.1/32")),
            ("-0.1", Some("0.1.0.0/32")),
            ("0/0", Some("0.0.0.0/0")),
            ("10.0.0.0/0_8", Some("10.0.0.0/8")),
            ("fd00::/::ffff", Some("fd00::/112")),
            ("fd00::/0.0.0.0", None),
            ("10.0.0.0/ffff::", None),
            ("0x10.1.1.1", None),
            ("10.0.0.0/8/8", None),
            ("fe80::1%eth0", None),
            ("10.0.0.1", Some("10.0.0.1/32")),
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("10/8", Some("10.0.0.0/8")),
            ("10.1", Some("10.1.0.0/32")),
            ("010.1.2.3", Some("10.1.2.3/32")),
            ("10.0.0.0/ 8", Some("10.0.0.0/8")),
            ("10.0.0.0/+8", Some("10.0.0.0/8")),
            ("10.0.0.0/255.0.0.0", Some("10.0.0.0/8")),
            ("10.0.0.0/0.255.255.255", Some("10.0.0.0/8")),
            ("10.0.0.0/0.0.0.0", Some("0.0.0.0/0")),
            ("10.0.0.0/255.0.255.0", None),
            ("10.0.0.0/33", None),
            ("10.0.0.0/-1", None),
            ("10.0.0.0/", None),
            ("1.2.3.4.5", None),
            ("256.0.0.0", None),
            ("fd00::/8", Some("fd00::/8")),
            ("fd00::1", Some("fd00::1/128")),
            ("fd00::/ffff::", Some("fd00::/16")),
            ("fd00::/129", None),
            ("::/0", Some("::/0")),
            ("[fd00::1]", None),
            ("10.0.0.1-10.0.0.9", None),
            ("10.0.*.*", None),
            ("admin-1.intern", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let expected_network =
                expected.map(|network| network.parse::<IpNet>().expect("a network"));
            assert_eq!(parse_netaddr_network(text), expected_network, "{text:?}");
        }
    }

    fn clients(allow: &[&str], deny: &[&str], order: &str) -> ProfileAcls {
        ProfileAcls {
            clients_allow: allow.iter().map(|entry| entry.to_string()).collect(),
            clients_deny: deny.iter().map(|entry| entry.to_string()).collect(),
            clients_order: order.to_string(),
            ..ProfileAcls::default()
        }
    }

    /// One row of a client-rule table: the lists, the order, the client, the outcome.
    struct ClientCase {
        allow: &'static [&'static str],
        deny: &'static [&'static str],
        order: &'static str,
        client: &'static str,
        granted: bool,
    }

    const fn case(
        allow: &'static [&'static str],
        deny: &'static [&'static str],
        order: &'static str,
        client: &'static str,
        granted: bool,
    ) -> ClientCase {
        ClientCase {
            allow,
            deny,
            order,
            client,
            granted,
        }
    }

    #[test]
    fn client_rules_beyond_the_vectors() {
        let cases = [
            case(&["10.0.0.1-10.0.0.9"], &[], "", "10.0.0.5", false),
            case(&["10.0.*.*"], &[], "", "10.0.0.5", false),
            case(&["10.0.0.0/8", "ts01"], &[], "", "10.0.0.5", false),
            case(&["10.0.0.0/8"], &["ts01"], "", "10.0.0.5", true),
            case(&["10.0.0.0/8"], &["10.0.0.5"], "", "10.0.0.5", false),
            case(
                &["10.0.0.0/8"],
                &["10.0.0.5"],
                "allow-deny",
                "10.0.0.5",
                true,
            ),
            case(&["10.1.2.3/24"], &[], "", "10.1.2.200", true),
            case(&["10.1.2.3/24"], &[], "", "10.1.3.1", false),
            case(&["10.0.0.0/8"], &[], "", "::ffff:10.0.0.5", true),
            case(&["::ffff:10.0.0.0/104"], &[], "", "10.0.0.5", false),
            case(&["10"], &[], "", "10.0.0.0", true),
            case(&[], &["192.168.0.0/16"], "allow-deny", "10.0.0.5", false),
        ];
        for row in cases {
            let acls = clients(row.allow, row.deny, row.order);
            let client_ip: IpAddr = row.client.parse().expect("a client address");
            assert_eq!(
                check_profile_acls("maja", client_ip, &acls, &Testsuite, true),
                row.granted,
                "allow {:?} deny {:?} order {:?} client {}",
                row.allow,
                row.deny,
                row.order,
                row.client
            );
        }
    }

    #[test]
    fn user_refusal_by_all_vetoes_group_grants() {
        let acls = ProfileAcls {
            users_deny: vec!["ALL".to_string()],
            groups_allow: vec!["bees".to_string()],
            groups_order: "allow-deny".to_string(),
            ..ProfileAcls::default()
        };
        let loopback = IpAddr::from(Ipv4Addr::LOCALHOST);
        assert!(!check_profile_acls(
            "maja", loopback, &acls, &Testsuite, true
        ));
        let without_user_rules = ProfileAcls {
            users_deny: Vec::new(),
            ..acls
        };
        assert!(check_profile_acls(
            "maja",
            loopback,
            &without_user_rules,
            &Testsuite,
            true
        ));
        assert!(!check_profile_acls(
            "flip",
            loopback,
            &without_user_rules,
            &Testsuite,
            true
        ));
    }

    #[test]
    fn from_keys_reads_lists_given_as_strings() {
        let allow = Value::Str("maja, willi,".to_string());
        let deny = Value::Str("['flip']".to_string());
        let clients_allow = Value::Str("10.0.0.0/8".to_string());
        let order = Value::Str("allow-deny".to_string());
        let other = Value::Bool(true);
        let acls = ProfileAcls::from_keys([
            ("acl-users-allow", &allow),
            ("acl-users-deny", &deny),
            ("acl-clients-allow", &clients_allow),
            ("acl-users-order", &order),
            ("acl-any-order", &order),
            ("fullscreen", &other),
        ]);
        assert_eq!(
            acls,
            ProfileAcls {
                users_allow: vec!["maja".to_string(), "willi".to_string()],
                users_deny: vec!["flip".to_string()],
                users_order: "allow-deny".to_string(),
                clients_allow: vec!["10.0.0.0/8".to_string()],
                ..ProfileAcls::default()
            }
        );
    }
}
