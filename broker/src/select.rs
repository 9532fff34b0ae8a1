//! Server selection without agents (§10.2 for agent-query-mode NONE): random host, shadow, port probe, fallbacks.
//!
//! The agent-driven parts (resume, take-over, load) come from the live farm state; this module
//! owns the rules that need no agent, as pure functions plus one async port probe.

use crate::profiles::Profile;
use crate::reply::Selection;
use std::time::Duration;

/// How long one port probe may take (the reference's 2 s).
pub const PORT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What selection needs from the outside world; tests substitute their own.
pub trait SelectionWorld {
    /// This machine's host name (replaces `localhost` in multi-host profiles, B11).
    fn hostname(&self) -> String;
    /// Picks one of `hosts` (the reference's `random.choice`).
    fn choose(&mut self, hosts: &[String]) -> String;
}

/// The real world: `gethostname()` and a random choice.
pub struct RealWorld;

impl SelectionWorld for RealWorld {
    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    }

    fn choose(&mut self, hosts: &[String]) -> String {
        use rand::seq::IndexedRandom;
        hosts.choose(&mut rand::rng()).cloned().unwrap_or_default()
    }
}

/// Whether a TCP connection to `host:port` succeeds within `timeout` (IPv6 addresses are
/// tried first when the name has them, as the reference does).
pub async fn port_is_open(host: &str, port: i64, timeout: Duration) -> bool {
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    let attempt = async {
        let mut addresses: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((host, port)).await.ok()?.collect();
        addresses.sort_by_key(|address| !address.is_ipv6());
        for address in addresses {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Some(());
            }
        }
        None
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(())))
}

/// The port probe of §10.2 step 6e, for the agent-less selection and the live farm alike:
/// `name:port`, then (when it differs) `address:port`, each within [`PORT_PROBE_TIMEOUT`].
pub async fn x2go_port_open(name: &str, address: &str, port: i64) -> bool {
    port_is_open(name, port, PORT_PROBE_TIMEOUT).await
        || (address != name && port_is_open(address, port, PORT_PROBE_TIMEOUT).await)
}

/// §10.2 steps 2 and 7, for the agent-less selection and the live farm alike: the answer
/// when nothing can be selected — `no-server-available` for a profile without hosts,
/// `no-X2Go-Server-available` for several, and a single-host profile's own host back.
pub fn nothing_selected(profile: &Profile, port: i64) -> Selection {
    match profile.host_names() {
        [] => Selection::server("no-server-available", port),
        [only] => Selection::server(
            profile.host_address(only).unwrap_or_else(|| only.clone()),
            profile.host_port(only).unwrap_or(port),
        ),
        _ => Selection::server("no-X2Go-Server-available", port),
    }
}

/// The answer when every host of a profile is drained: as if none were available, also for
/// a single-host profile (a deviation from §10.2, which hands that host back regardless).
pub fn all_drained(profile: &Profile) -> Selection {
    Selection::server("no-server-available", profile.ssh_port())
}

/// Whether every host of `profile` is drained (a profile without hosts is not).
pub fn every_host_drained(profile: &Profile, drained: &dyn Fn(&str) -> bool) -> bool {
    let hosts = profile.host_names();
    !hosts.is_empty() && hosts.iter().all(|host| drained(host))
}

/// Selects a server for `profile` without agent information (§10.2 steps 2–7), never a
/// drained one. `portscan` turns on the TCP probe of each candidate.
pub async fn select_without_agent(
    profile: &Profile,
    portscan: bool,
    drained: &(dyn Fn(&str) -> bool + Sync),
    world: &mut (dyn SelectionWorld + Send),
) -> Selection {
    let original_hosts = profile.hosts();
    let mut port = profile.ssh_port();
    if original_hosts.is_empty() {
        return nothing_selected(profile, port);
    }
    if every_host_drained(profile, drained) {
        return all_drained(profile);
    }
    let mut hosts = original_hosts.clone();
    hosts.retain(|host| !drained(host));
    let mut name = hosts[0].clone();
    loop {
        if hosts.iter().any(|host| host == "localhost") {
            hosts.retain(|host| host != "localhost");
            hosts.push(world.hostname());
        }
        if hosts.len() >= 2 {
            if profile.is_shadow() {
                hosts.truncate(1);
                name = hosts[0].clone();
            } else {
                name = world.choose(&hosts);
            }
        }
        let address = profile.host_address(&name).unwrap_or_else(|| name.clone());
        if let Some(mapped_port) = profile.host_port(&name) {
            port = mapped_port;
        }
        if !portscan || x2go_port_open(&name, &address, port).await {
            return Selection::server(address, port);
        }
        hosts.retain(|host| *host != name);
        match hosts.first() {
            Some(first) => name = first.clone(),
            None => break,
        }
    }
    nothing_selected(profile, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IniDocument;
    use crate::profiles::build_profile;

    struct FirstWorld;
    impl SelectionWorld for FirstWorld {
        fn hostname(&self) -> String {
            "vm".to_string()
        }
        fn choose(&mut self, hosts: &[String]) -> String {
            hosts[0].clone()
        }
    }

    fn profile(text: &str, id: &str) -> Profile {
        build_profile(&IniDocument::parse(text).unwrap(), id)
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn agentless_selection_table() {
        let cases = [
            ("[p]\nhost = ts01\n", "ts01:22"),
            (
                "[p]\nhost = ts01.example.com (127.0.0.11), ts02 (127.0.0.12:2222)\n",
                "127.0.0.11:22",
            ),
            (
                "[p]\nhost = shadow01, shadow02\ncommand = SHADOW\n",
                "shadow01:22",
            ),
            ("[p]\nhost = localhost\nsshport = 2022\n", "localhost:2022"),
            ("[p]\nhost = localhost, other\n", "other:22"),
            ("[p]\nhost =\nsshport = 2200\n", "no-server-available:2200"),
        ];
        for (text, expected) in cases {
            let selection =
                select_without_agent(&profile(text, "p"), false, &|_| false, &mut FirstWorld).await;
            assert_eq!(
                format!("{}:{}", selection.server, selection.port),
                expected,
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn port_probe_skips_closed_hosts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = listener.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let text = format!(
            "[multi]\nhost = a (127.0.0.1:{closed_port}), b (127.0.0.1:{open_port})\n[down]\nhost = a (127.0.0.1:{closed_port}), c (127.0.0.1:{closed_port})\n[single]\nhost = a (127.0.0.1:{closed_port})\n"
        );
        let multi =
            select_without_agent(&profile(&text, "multi"), true, &|_| false, &mut FirstWorld).await;
        assert_eq!(
            (multi.server.as_str(), multi.port),
            ("127.0.0.1", i64::from(open_port))
        );
        let down =
            select_without_agent(&profile(&text, "down"), true, &|_| false, &mut FirstWorld).await;
        assert_eq!(down.server, "no-X2Go-Server-available");
        let single =
            select_without_agent(&profile(&text, "single"), true, &|_| false, &mut FirstWorld)
                .await;
        assert_eq!(
            single.server, "127.0.0.1",
            "single-host profiles hand back their own address"
        );
    }

    #[tokio::test]
    async fn drained_hosts_are_never_chosen() {
        let text = "[multi]\nhost = ts01, ts02, ts03\n[single]\nhost = ts09\nsshport = 2022\n";
        let ts01_and_ts02 = |host: &str| host == "ts01" || host == "ts02";
        let multi = select_without_agent(
            &profile(text, "multi"),
            false,
            &ts01_and_ts02,
            &mut FirstWorld,
        )
        .await;
        assert_eq!(multi.server, "ts03");
        let all = |_: &str| true;
        let multi =
            select_without_agent(&profile(text, "multi"), false, &all, &mut FirstWorld).await;
        assert_eq!(
            (multi.server.as_str(), multi.port),
            ("no-server-available", 22)
        );
        // a single-host profile whose host is drained: none available (not its host back)
        let single =
            select_without_agent(&profile(text, "single"), false, &all, &mut FirstWorld).await;
        assert_eq!(
            (single.server.as_str(), single.port),
            ("no-server-available", 2022)
        );
    }
}
