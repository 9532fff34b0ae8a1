//! Host names and addresses: `[ADDR:]PORT` splitting, validation, domain normalisation and matching (§3.1, §7.2, §10.4).

use std::net::IpAddr;

/// The reference's address splitter (§3.1), quirks included: `fd00::1` gives (`fd00:`, 1)
/// and an input starting with `[` keeps its brackets.
pub fn split_host_address(
    host: &str,
    default_address: Option<&str>,
    default_port: u16,
) -> (String, u16) {
    let text = host.trim().trim_start_matches('*').trim_start_matches(':');
    let bracketed = text.starts_with('[');
    let fallback_address = || default_address.unwrap_or("0.0.0.0").to_string();
    let (address, port) = match text.rsplit_once(':') {
        Some((left, right)) => match parse_port(right) {
            Some(port) => (left.to_string(), port),
            None => (text.to_string(), default_port),
        },
        None => match parse_port(text) {
            Some(port) => (fallback_address(), port),
            None if text.is_empty() => (fallback_address(), default_port),
            None => (text.to_string(), default_port),
        },
    };
    let bare: String = address.chars().filter(|c| *c != '[' && *c != ']').collect();
    let address = if bracketed { format!("[{bare}]") } else { bare };
    (address, port)
}

fn parse_port(text: &str) -> Option<u16> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    trimmed.parse::<u16>().ok()
}

/// An IPv4 or IPv6 literal (without brackets).
pub fn is_ip_literal(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

/// A single host label: 1–63 letters, digits or `-`, not starting or ending with `-`.
pub fn is_valid_host_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A dotted DNS name: labels of letters, digits and `-` that do not start with a digit or
/// `-`, the last label at least two letters.
pub fn is_valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.contains('.') || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let well_formed = labels.iter().all(|label| {
        is_valid_host_label(label) && !label.starts_with(|c: char| c.is_ascii_digit())
    });
    let last = labels.last().copied().unwrap_or("");
    well_formed && last.len() >= 2 && last.chars().all(|c| c.is_ascii_alphabetic())
}

/// Whether a `name (address)` entry's parts qualify for a `host=` mapping (§7.2 step 4).
pub fn is_valid_hostname_or_address(text: &str) -> bool {
    is_valid_host_label(text) || is_valid_dns_name(text) || is_ip_literal(text)
}

fn split_domain(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or((name, ""))
}

fn domains_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for name in names {
        if is_ip_literal(name) {
            continue;
        }
        let (_, domain) = split_domain(name);
        if !domain.is_empty() && !domains.iter().any(|known| known == domain) {
            domains.push(domain.to_string());
        }
    }
    domains
}

/// §10.4 normalise for a list: IP literals dropped, names shortened to their first label when
/// at most one domain occurs; with several domains the input comes back unchanged.
pub fn normalize_hostnames(names: &[String]) -> (Vec<String>, Vec<String>) {
    let domains = domains_of(names.iter().map(String::as_str));
    if domains.len() > 1 {
        return (names.to_vec(), domains);
    }
    let short = names
        .iter()
        .filter(|name| !is_ip_literal(name))
        .map(|name| split_domain(name).0.to_string())
        .collect();
    (short, domains)
}

/// §10.4 normalise for a host → count map (order preserved).
pub fn normalize_host_counts(map: &[(String, i64)]) -> (Vec<(String, i64)>, Vec<String>) {
    let domains = domains_of(map.iter().map(|(name, _)| name.as_str()));
    if domains.len() > 1 {
        return (map.to_vec(), domains);
    }
    let mut short: Vec<(String, i64)> = Vec::new();
    for (name, count) in map.iter().filter(|(name, _)| !is_ip_literal(name)) {
        let key = split_domain(name).0.to_string();
        match short.iter_mut().find(|(known, _)| *known == key) {
            Some(entry) => entry.1 = *count,
            None => short.push((key, *count)),
        }
    }
    (short, domains)
}

/// §10.4 host matching: short-name intersection when at most one side carries a domain,
/// else (or when that is empty) the exact intersection; sorted, without duplicates.
pub fn matching_hostnames(a: &[String], b: &[String]) -> Vec<String> {
    let mut matches: Vec<String> = Vec::new();
    let (a_short, a_domains) = normalize_hostnames(a);
    if a_domains.len() <= 1 {
        let (b_short, b_domains) = normalize_hostnames(b);
        if b_domains.len() <= 1 && (a_domains.is_empty() || b_domains.is_empty()) {
            matches = a_short
                .into_iter()
                .filter(|name| b_short.contains(name))
                .collect();
        }
    }
    if matches.is_empty() {
        matches = a.iter().filter(|name| b.contains(name)).cloned().collect();
    }
    matches.sort();
    matches.dedup();
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn strings(value: &Value) -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn api_utils_golden_records() {
        let path = format!(
            "{}/tests/golden/api_utils.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let (mut matched, mut total) = (0, 0);
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let args = &record["args"];
            total += 1;
            let got = match record["function"].as_str().unwrap() {
                "split_host_address" => {
                    let default_port = args["default_port"]
                        .as_u64()
                        .map(|port| port as u16)
                        .unwrap_or(22);
                    let (address, port) = split_host_address(
                        args["host"].as_str().unwrap(),
                        args["default_address"].as_str(),
                        default_port,
                    );
                    json!([address, port])
                }
                "normalize_hostnames" => match &args["servers"] {
                    Value::Array(_) => {
                        let (names, domains) = normalize_hostnames(&strings(&args["servers"]));
                        json!([names, domains])
                    }
                    Value::Object(map) => {
                        let pairs: Vec<(String, i64)> = map
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                            .collect();
                        let (names, domains) = normalize_host_counts(&pairs);
                        let object: serde_json::Map<String, Value> =
                            names.into_iter().map(|(k, v)| (k, json!(v))).collect();
                        json!([object, domains])
                    }
                    other => panic!("unexpected {other}"),
                },
                "matching_hostnames" => json!(matching_hostnames(
                    &strings(&args["server_list_a"]),
                    &strings(&args["server_list_b"])
                )),
                other => panic!("unknown function {other}"),
            };
            assert_eq!(got, record["result"], "{record}");
            matched += 1;
        }
        println!("api_utils: {matched} of {total} records match");
        assert_eq!(total, 37);
    }

    #[test]
    fn validity_table() {
        let cases = [
            ("ts01", true, false),
            ("1ts10", true, false),
            ("bad_name", false, false),
            ("-x", false, false),
            ("ts03.internal.example.org", false, true),
            ("10.0.0.6", false, false),
            ("a.b1", false, false),
            ("x.example.com.", false, true),
        ];
        for (name, label, dns) in cases {
            assert_eq!(is_valid_host_label(name), label, "label {name}");
            assert_eq!(is_valid_dns_name(name), dns, "dns {name}");
        }
        assert!(
            is_ip_literal("0.0.0.0")
                && is_ip_literal("fd00::5")
                && !is_ip_literal("[fd00::5]")
                && !is_ip_literal("fd00:")
        );
    }
}
