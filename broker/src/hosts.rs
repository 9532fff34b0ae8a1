//! Host names and addresses as the reference reads them: `[ADDR:]PORT` splitting (§3.1), the `name (addr)` validity rules (§7.2), domain normalisation and matching (§10.4).
//!
//! Every function reproduces the reference (x2gobroker 0.0.4.3 on Python 3.11, netaddr 0.8.0,
//! glibc) including its quirks, because profile output and host selection depend on them:
//!
//! * numbers are read like Python's `int()`: surrounding blanks, a sign, `_` between digits;
//! * an IPv4 address is whatever glibc's `inet_aton` accepts (`10.1`, `0x7f.1`, `127.1`,
//!   even `1.2.3.4<TAB>junk`), because netaddr 0.8 validates IPv4 that way; IPv6 is `inet_pton`;
//! * a "DNS name" is the reference's FQDN regular expression, which needs no dot at all
//!   (`localhost` passes, `ab` and `host.example.` do not).

use std::net::Ipv6Addr;

/// The address the reference binds to when it has none (an empty text, or a bare port without a default address).
const REFERENCE_FALLBACK_ADDRESS: &str = "0.0.0.0";

/// Python's `str.isspace()`: Unicode white space plus the ASCII separators `\x1c`–`\x1f`.
fn is_python_space(character: char) -> bool {
    character.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&character)
}

/// Python's `str.strip()` without arguments.
fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Python's `int(text)` for base 10 (ASCII digits only): surrounding blanks, an optional sign,
/// single `_` between digits, leading zeros allowed. `None` where Python raises `ValueError`
/// (and for values beyond `i64`, which no caller can use).
pub(crate) fn parse_python_int(text: &str) -> Option<i64> {
    let stripped = python_strip(text);
    let (negative, unsigned) = match stripped.as_bytes().first() {
        Some(b'-') => (true, &stripped[1..]),
        Some(b'+') => (false, &stripped[1..]),
        _ => (false, stripped),
    };
    if unsigned.is_empty() || unsigned.starts_with('_') || unsigned.ends_with('_') {
        return None;
    }
    if unsigned.contains("__") || !unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let digits: String = unsigned.chars().filter(|c| *c != '_').collect();
    let magnitude = digits.parse::<i64>().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A port as the reference reads it (`int()`), limited to what a port can be.
fn parse_port(text: &str) -> Option<u16> {
    parse_python_int(text).and_then(|number| u16::try_from(number).ok())
}

/// The reference's `split_host_address(host, default_address, default_port)` (§3.1), quirks
/// included: `fd00::1` gives (`fd00:`, 1), `127.0.0.1:` gives (`127.0.0.1:`, default), and an
/// input starting with `[` gets its brackets back.
///
/// Steps: strip blanks, then leading `*` and `:`. With a `:` left, split at the last one; an
/// integer right part is the port, otherwise the whole text is the address with the default
/// port. Without `:`, an integer is a port (address = `default_address` or `0.0.0.0`), an empty
/// text means `0.0.0.0` (the default address is *not* used there), anything else is the address.
/// Leading `[` and trailing `]` are stripped from the address and re-added if the input began
/// with `[`.
///
/// One deliberate difference: a number outside 0–65535 is not taken as a port (the reference
/// would return it and fail later when connecting); it is then treated like any non-number.
pub fn split_host_address(
    host: &str,
    default_address: Option<&str>,
    default_port: u16,
) -> (String, u16) {
    let text = python_strip(host)
        .trim_start_matches('*')
        .trim_start_matches(':');
    let bracketed = text.starts_with('[');
    let (address, port) = match text.rsplit_once(':') {
        Some((left, right)) => match parse_port(right) {
            Some(port) => (left.to_string(), port),
            None => (text.to_string(), default_port),
        },
        None => match parse_port(text) {
            Some(port) => {
                let address = default_address
                    .filter(|address| !address.is_empty())
                    .unwrap_or(REFERENCE_FALLBACK_ADDRESS);
                (address.to_string(), port)
            }
            None if text.is_empty() => (REFERENCE_FALLBACK_ADDRESS.to_string(), default_port),
            None => (text.to_string(), default_port),
        },
    };
    let bare_address = address.trim_start_matches('[').trim_end_matches(']');
    if bracketed {
        return (format!("[{bare_address}]"), port);
    }
    (bare_address.to_string(), port)
}

/// glibc's `inet_aton` as Python's `socket.inet_aton` calls it: one to four parts separated by
/// `.`, each a C number (`0x` hex, leading `0` octal, else decimal) starting with a digit,
/// every part but the last at most 255, the last filling the remaining bytes; the text may
/// go on after an ASCII blank. Python refuses texts with a NUL character.
fn is_inet_aton_address(text: &str) -> bool {
    if text.contains('\0') {
        return false;
    }
    let bytes = text.as_bytes();
    let mut position = 0;
    let mut n_leading_parts = 0;
    let last_value = loop {
        if !bytes.get(position).is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let (value, end) = read_c_number(bytes, position);
        let Some(part_value) = value else {
            return false;
        };
        position = end;
        if bytes.get(position) != Some(&b'.') {
            break part_value;
        }
        if n_leading_parts == 3 || part_value > 0xff {
            return false;
        }
        n_leading_parts += 1;
        position += 1;
    };
    let trailing_ok = match bytes.get(position) {
        None => true,
        Some(byte) => byte.is_ascii_whitespace() || *byte == 0x0b,
    };
    let last_part_limit: u64 = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff][n_leading_parts];
    trailing_ok && last_value <= last_part_limit
}

/// `strtoul(text + start, &end, 0)` for a text known to start with a digit there: the value
/// (`None` beyond 32 bits, where glibc's `inet_aton` gives up) and the end position.
fn read_c_number(bytes: &[u8], start: usize) -> (Option<u64>, usize) {
    let is_hex_prefix = bytes[start] == b'0'
        && matches!(bytes.get(start + 1), Some(b'x' | b'X'))
        && bytes.get(start + 2).is_some_and(u8::is_ascii_hexdigit);
    let (radix, digits_start) = if is_hex_prefix {
        (16, start + 2)
    } else if bytes[start] == b'0' {
        (8, start)
    } else {
        (10, start)
    };
    let mut value: Option<u64> = Some(0);
    let mut position = digits_start;
    while let Some(digit) = bytes
        .get(position)
        .and_then(|byte| char::from(*byte).to_digit(radix))
    {
        value = value
            .and_then(|sum| sum.checked_mul(u64::from(radix)))
            .and_then(|sum| sum.checked_add(u64::from(digit)))
            .filter(|sum| *sum <= 0xffff_ffff);
        position += 1;
    }
    (value, position)
}

/// An IP address in the reference's sense (`netaddr.valid_ipv4(text) or
/// netaddr.valid_ipv6(text)` with netaddr 0.8.0): IPv4 as `inet_aton` reads it, IPv6 as
/// `inet_pton` does, no brackets. The reference raises on an empty text; here it is `false`.
pub fn is_ip_literal(text: &str) -> bool {
    is_inet_aton_address(text) || text.parse::<Ipv6Addr>().is_ok()
}

/// Python's `$`: the end of the text or just before a final newline.
fn without_final_newline(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// A single host label, the reference's `(?!-)[A-Z\d-]{1,63}(?<!-)$` (case-insensitive):
/// 1–63 letters, digits or `-`, not starting or ending with `-` (so `1ts10` is valid,
/// `bad_name` is not).
pub fn is_valid_host_label(name: &str) -> bool {
    let label = without_final_newline(name);
    (1..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The reference's FQDN regular expression
/// `(?=^.{1,254}$)(^(?:(?!\d|-)[a-zA-Z0-9\-]{1,63}(?<!-)\.?)+(?:[a-zA-Z]{2,})$)`:
/// one or more chunks (a letter, then up to 62 letters, digits or `-`, not ending with `-`,
/// optionally followed by one `.`), then at least two letters up to the end. The dots are
/// optional, so `localhost` and `ts03.example.org` pass while `ts01`, `ab`, `1ts.example.org`
/// and `host.example.org.` do not.
pub fn is_valid_dns_name(name: &str) -> bool {
    let body = without_final_newline(name).as_bytes();
    if body.is_empty() || body.len() > 254 || body.contains(&b'\n') {
        return false;
    }
    let is_chunk_byte = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-';
    // after_chunk[i]: some sequence of one or more chunks ends exactly at position i.
    let mut after_chunk = vec![false; body.len() + 1];
    for start in 0..body.len() {
        if (start > 0 && !after_chunk[start]) || !body[start].is_ascii_alphabetic() {
            continue;
        }
        for end in start + 1..=(start + 63).min(body.len()) {
            if !is_chunk_byte(body[end - 1]) {
                break;
            }
            if body[end - 1] == b'-' {
                continue;
            }
            after_chunk[end] = true;
            if body.get(end) == Some(&b'.') {
                after_chunk[end + 1] = true;
            }
        }
    }
    (0..body.len()).any(|tail_start| {
        let tail = &body[tail_start..];
        after_chunk[tail_start] && tail.len() >= 2 && tail.iter().all(u8::is_ascii_alphabetic)
    })
}

/// §7.2 step 4: whether a `name (address)` host entry is recorded as a `host=<name>` mapping:
/// the name is a host label or a DNS name, and the address (after [`split_host_address`]) is
/// a DNS name or an IP address. IPv6 addresses never get here intact (B9).
pub fn is_valid_host_mapping(name: &str, address: &str) -> bool {
    let name_valid = is_valid_host_label(name) || is_valid_dns_name(name);
    let address_valid = is_valid_dns_name(address) || is_ip_literal(address);
    name_valid && address_valid
}

/// A host name split at its first `.` into short name and domain (empty without a dot).
fn split_domain(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or((name, ""))
}

/// The distinct non-empty domains of the names that are not IP addresses, in order.
fn domains_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for name in names.filter(|name| !is_ip_literal(name)) {
        let (_, domain) = split_domain(name);
        if !domain.is_empty() && !domains.iter().any(|known| known == domain) {
            domains.push(domain.to_string());
        }
    }
    domains
}

/// §10.4 `normalize_hostnames` for a list: with more than one distinct domain the input comes
/// back unchanged (IP addresses included); otherwise IP addresses are dropped and every name
/// is cut to its first label. The second element is the list of distinct domains.
pub fn normalize_hostnames(names: &[String]) -> (Vec<String>, Vec<String>) {
    let domains = domains_of(names.iter().map(String::as_str));
    if domains.len() > 1 {
        return (names.to_vec(), domains);
    }
    let short_names = names
        .iter()
        .filter(|name| !is_ip_literal(name))
        .map(|name| split_domain(name).0.to_string())
        .collect();
    (short_names, domains)
}

/// §10.4 `normalize_hostnames` for a host → count map (a Python dict, so the order is kept
/// and a short name seen twice keeps its first position and its last count).
pub fn normalize_host_counts(map: &[(String, i64)]) -> (Vec<(String, i64)>, Vec<String>) {
    let domains = domains_of(map.iter().map(|(name, _)| name.as_str()));
    if domains.len() > 1 {
        return (map.to_vec(), domains);
    }
    let mut short_counts: Vec<(String, i64)> = Vec::new();
    for (name, count) in map.iter().filter(|(name, _)| !is_ip_literal(name)) {
        let short_name = split_domain(name).0;
        match short_counts
            .iter_mut()
            .find(|(known, _)| known == short_name)
        {
            Some(entry) => entry.1 = *count,
            None => short_counts.push((short_name.to_string(), *count)),
        }
    }
    (short_counts, domains)
}

/// §10.4 `matching_hostnames`: the short-name intersection when neither list has several
/// domains and at most one of them has any; if that is empty (or not tried), the exact,
/// case-sensitive intersection. Sorted, without duplicates.
pub fn matching_hostnames(list_a: &[String], list_b: &[String]) -> Vec<String> {
    let mut matches: Vec<String> = Vec::new();
    let (short_a, domains_a) = normalize_hostnames(list_a);
    if domains_a.len() <= 1 {
        let (short_b, domains_b) = normalize_hostnames(list_b);
        if domains_b.len() <= 1 && (domains_a.is_empty() || domains_b.is_empty()) {
            matches = short_a
                .into_iter()
                .filter(|name| short_b.contains(name))
                .collect();
        }
    }
    if matches.is_empty() {
        matches = list_a
            .iter()
            .filter(|name| list_b.contains(name))
            .cloned()
            .collect();
    }
    matches.sort();
    matches.dedup();
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn strings(value: &Json) -> Vec<String> {
        value
            .as_array()
            .expect("a JSON list")
            .iter()
            .map(|item| item.as_str().expect("a string").to_string())
            .collect()
    }

    /// Runs one `api_utils.jsonl` record through our function and renders the result as the
    /// generator rendered the Python value (tuples as lists).
    fn replay(record: &Json) -> Json {
        let args = &record["args"];
        match record["function"].as_str().expect("function name") {
            "split_host_address" => {
                // One record passes the non-integer default port "x": the reference then
                // uses 22, which is what a u16 caller passes.
                let default_port = args["default_port"]
                    .as_u64()
                    .and_then(|port| u16::try_from(port).ok())
                    .unwrap_or(22);
                let (address, port) = split_host_address(
                    args["host"].as_str().expect("host"),
                    args["default_address"].as_str(),
                    default_port,
                );
                json!([address, port])
            }
            "normalize_hostnames" => match &args["servers"] {
                Json::Object(map) => {
                    let pairs: Vec<(String, i64)> = map
                        .iter()
                        .map(|(name, count)| (name.clone(), count.as_i64().expect("a count")))
                        .collect();
                    let (short_counts, domains) = normalize_host_counts(&pairs);
                    let object: serde_json::Map<String, Json> = short_counts
                        .into_iter()
                        .map(|(name, count)| (name, json!(count)))
                        .collect();
                    json!([object, domains])
                }
                servers => {
                    let (names, domains) = normalize_hostnames(&strings(servers));
                    json!([names, domains])
                }
            },
            "matching_hostnames" => json!(matching_hostnames(
                &strings(&args["server_list_a"]),
                &strings(&args["server_list_b"])
            )),
            other => panic!("unknown function {other}"),
        }
    }

    #[test]
    fn api_utils_golden_records() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/api_utils.jsonl");
        let text = std::fs::read_to_string(path).expect("golden file");
        let records: Vec<Json> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON record"))
            .collect();
        let mismatches: Vec<String> = records
            .iter()
            .filter_map(|record| {
                let got = replay(record);
                (got != record["result"]).then(|| format!("{record} gave {got}"))
            })
            .collect();
        println!(
            "api_utils: {} of {} records match",
            records.len() - mismatches.len(),
            records.len()
        );
        assert_eq!(records.len(), 37, "the file holds 37 records");
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    #[test]
    fn split_host_address_beyond_the_vectors() {
        let cases = [
            ("ts01:+23", None, 22, "ts01", 23),
            ("ts01: 2_3", None, 22, "ts01", 23),
            ("ts01:2__3", None, 22, "ts01:2__3", 22),
            ("ts01:0022", None, 22, "ts01", 22),
            ("ts01:99999", None, 22, "ts01:99999", 22),
            ("*", Some("127.0.0.1"), 8080, "0.0.0.0", 8080),
            ("::", Some("127.0.0.1"), 8080, "0.0.0.0", 8080),
            ("\u{1f}ts01\u{1c}", None, 22, "ts01", 22),
            ("[[fd00::1]]:22", None, 2, "[fd00::1]", 22),
            ("a]b", None, 22, "a]b", 22),
            ("x]", None, 22, "x", 22),
            ("[", None, 22, "[]", 22),
        ];
        for (host, default_address, default_port, address, port) in cases {
            assert_eq!(
                split_host_address(host, default_address, default_port),
                (address.to_string(), port),
                "{host:?}"
            );
        }
    }

    #[test]
    fn python_int_table() {
        let cases = [
            ("22", Some(22)),
            (" 22\n", Some(22)),
            ("+22", Some(22)),
            ("-1", Some(-1)),
            ("1_000", Some(1000)),
            ("007", Some(7)),
            ("", None),
            ("+", None),
            ("_1", None),
            ("1_", None),
            ("1__0", None),
            ("+_1", None),
            ("0x10", None),
            ("2 2", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_python_int(text), expected, "{text:?}");
        }
    }

    /// Confirmed against Python 3.11's `re` with the reference's two expressions (and 40,000
    /// random texts over `ab1-.`).
    #[test]
    fn host_label_and_dns_name_table() {
        // (text, host label, DNS name)
        let cases = [
            ("ts01", true, false),
            ("1ts10", true, false),
            ("TS-01", true, false),
            ("bad_name", false, false),
            ("-x", false, false),
            ("x-", false, false),
            ("", false, false),
            ("ts03.internal.example.org", false, true),
            ("ts03.example.org\n", false, true),
            ("localhost", true, true),
            ("abc", true, true),
            ("ab", true, false),
            ("a.bc", false, true),
            ("a-b.cd", false, true),
            ("a-.cd", false, false),
            ("1ts.example.org", false, false),
            ("ts.1example.org", false, false),
            ("ts01.example.org.", false, false),
            ("ts01..org", false, false),
            ("ts01.example.o1", false, false),
            ("10.0.0.6", false, false),
            ("fd00:", false, false),
            ("no", true, false),
            ("ümlaut.org", false, false),
            (&"a".repeat(63), true, true),
            (&"a".repeat(64), false, true),
        ];
        for (text, label, dns) in cases {
            assert_eq!(is_valid_host_label(text), label, "label {text:?}");
            assert_eq!(is_valid_dns_name(text), dns, "dns {text:?}");
        }
        let long_name = format!("{}orgs", "a.".repeat(125));
        assert_eq!(long_name.len(), 254);
        assert!(is_valid_dns_name(&long_name));
        assert!(!is_valid_dns_name(&format!("a{long_name}")));
    }

    /// The IPv4 rows were confirmed against Python's `socket.inet_aton` on glibc (and 40,000
    /// random texts).
    #[test]
    fn ip_literal_table() {
        let cases = [
            ("10.0.0.1", true),
            ("0.0.0.0", true),
            ("10.1", true),
            ("127.1", true),
            ("10", true),
            ("4294967295", true),
            ("4294967296", false),
            ("0x7f.1", true),
            ("0X7F.0.0.1", true),
            ("010.0.0.1", true),
            ("08.0.0.1", false),
            ("0x.1", false),
            ("1.16777215", true),
            ("1.16777216", false),
            ("1.2.65535", true),
            ("1.2.65536", false),
            ("1.2.3.255", true),
            ("1.2.3.256", false),
            ("256.1", false),
            ("1.2.3.4.5", false),
            ("1.2.3.", false),
            (".1.2.3", false),
            ("1.2.3.4 junk", true),
            ("1.2.3.4\tx", true),
            ("1.2.3.4x", false),
            (" 1.2.3.4", false),
            ("1.2.3.4\0", false),
            ("", false),
            ("ts01", false),
            ("fd00::1", true),
            ("::ffff:10.0.0.1", true),
            ("fd00::1:2200", true),
            ("[fd00::1]", false),
            ("fd00:", false),
            ("fd00::1%eth0", false),
        ];
        for (text, expected) in cases {
            assert_eq!(is_ip_literal(text), expected, "{text:?}");
        }
    }

    #[test]
    fn host_mapping_decisions_of_the_profile_vectors() {
        // `api_profiles.jsonl` profile `hosts`: which entries became `host=` keys.
        let cases = [
            ("ts01", "10.0.2.4", true),
            ("ts03.example.org", "ts03.internal.example.org", true),
            ("ts04", "fd00:", false),
            ("ts05", "[fd00::5]", false),
            ("bad_name", "10.0.0.6", false),
            ("ts07", "no", false),
            ("1ts10", "10.0.0.10", true),
            ("ts09", "0.0.0.0", true),
            ("ts13", "localhost", true),
        ];
        for (name, address, expected) in cases {
            assert_eq!(
                is_valid_host_mapping(name, address),
                expected,
                "{name} ({address})"
            );
        }
    }

    #[test]
    fn normalisation_drops_what_inet_aton_calls_an_address() {
        let names = ["10.1".to_string(), "ts01.intern".to_string()];
        assert_eq!(
            normalize_hostnames(&names),
            (vec!["ts01".to_string()], vec!["intern".to_string()])
        );
        let counts = [
            ("ts01.intern".to_string(), 1),
            ("ts02.intern".to_string(), 2),
            ("ts01".to_string(), 3),
        ];
        assert_eq!(
            normalize_host_counts(&counts).0,
            [("ts01".to_string(), 3), ("ts02".to_string(), 2)]
        );
    }
}
