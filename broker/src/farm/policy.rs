//! The farm's decision logic, pure: which server for a user (resume > take over > least loaded), listing status, health.

pub use super::model::{Health, SessionStatus, SessionView, SharedSessionDb, Via};
use crate::hosts;
use crate::profiles::Profile;
use crate::reply::Selection;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

/// One server of the farm (keyed by its profile host name).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerView {
    pub health: Health,
    pub sessions: Vec<SessionView>,
    /// The load factor of §9.3 (higher is better), when the agent reported one.
    pub load_factor: Option<i64>,
    /// Selections placed here that no report has confirmed yet.
    pub pending: u32,
    /// The transport of the last report (SSH reports carry no session list).
    pub via: Option<Via>,
    /// Taken out of rotation by an admin: no new sessions; its sessions are still resumed and
    /// taken over.
    pub drained: bool,
}

impl ServerView {
    /// A server nothing is known about yet.
    pub fn unknown() -> ServerView {
        ServerView {
            health: Health::Down,
            sessions: Vec::new(),
            load_factor: None,
            pending: 0,
            via: None,
            drained: false,
        }
    }
}

/// What the decisions read of the farm's state (the balancer's live state, or a plain map).
pub trait FarmState {
    /// The server a profile host name stands for.
    fn server(&self, host: &str) -> Option<&ServerView>;
    /// The hosts whose reports hold sessions of `user`; `None` when not indexed (any may).
    fn hosts_with_sessions_of(&self, user: &str) -> Option<&[Arc<str>]>;
}

impl FarmState for BTreeMap<String, ServerView> {
    fn server(&self, host: &str) -> Option<&ServerView> {
        self.get(host)
    }

    fn hosts_with_sessions_of(&self, _: &str) -> Option<&[Arc<str>]> {
        None
    }
}

/// The answer to "which server for this user on this profile?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Resume the user's suspended session on `host`.
    Resume { host: String, session: SessionView },
    /// Suspend the user's running session on `host`, then resume it there.
    TakeOver { host: String, session: SessionView },
    /// Start a new session on `host` (the best healthy server).
    New { host: String },
    /// No healthy server among the profile's hosts.
    NoServer,
}

/// The profile host a session's reported server name stands for (§10.2 c2): the same name,
/// else the first host whose short name matches (§10.4).
pub fn profile_host_for(session_server: &str, profile_hosts: &[String]) -> Option<String> {
    if profile_hosts.iter().any(|host| host == session_server) {
        return Some(session_server.to_string());
    }
    let matches = hosts::matching_hostnames(profile_hosts, &[session_server.to_string()]);
    let short = matches.first()?;
    profile_hosts
        .iter()
        .find(|host| host.as_str() == short || host.starts_with(&format!("{short}.")))
        .cloned()
}

/// The user's sessions on the profile's servers, with the profile host each runs on: those
/// the servers reported, then `asked` (fetched from a legacy agent for this request), each
/// session once. Sessions on servers that are down are left out (they cannot be reached).
fn user_sessions<'a, F: FarmState + ?Sized>(
    profile_hosts: &[String],
    user: &str,
    servers: &'a F,
    asked: &'a [SessionView],
) -> Vec<(String, &'a SessionView)> {
    let mut found: Vec<(String, &SessionView)> = Vec::new();
    let indexed = servers.hosts_with_sessions_of(user);
    let reported = profile_hosts
        .iter()
        .filter(|host| indexed.is_none_or(|hosts| hosts.iter().any(|known| **known == ***host)))
        .filter_map(|host| servers.server(host))
        .flat_map(|server| server.sessions.iter());
    for session in reported.chain(asked.iter()) {
        if session.user != user
            || found
                .iter()
                .any(|(_, known)| known.session_id == session.session_id)
        {
            continue;
        }
        let Some(host) = profile_host_for(&session.server, profile_hosts) else {
            continue;
        };
        let up = servers
            .server(&host)
            .is_some_and(|server| server.health != Health::Down);
        if up {
            found.push((host, session));
        }
    }
    found
}

/// How new sessions are spread over a profile's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// Fewest sessions (placements not yet confirmed included): the reference's
    /// `findbusyservers` ranking.
    Sessions,
    /// Sessions weighted by the servers' load factors (§10.6), for profiles that use the load
    /// checker (§11.3); session counts when a candidate reported no load factor.
    LoadFactors,
}

impl Ranking {
    /// The ranking of a profile that does or does not use the load checker.
    pub fn with_load_checker(uses_load_checker: bool) -> Ranking {
        if uses_load_checker {
            Ranking::LoadFactors
        } else {
            Ranking::Sessions
        }
    }
}

/// The ranking value of a server (lower is better): the reference's session count, or its
/// load-factor score `1 / (lf / (sessions + 1))` when every candidate has a load factor.
fn rank(server: &ServerView, use_load_factors: bool) -> f64 {
    let sessions = server.sessions.len() as f64 + f64::from(server.pending);
    match (use_load_factors, server.load_factor) {
        (true, Some(factor)) if factor > 0 => (sessions + 1.0) / factor as f64,
        (true, Some(_)) => f64::INFINITY,
        _ => sessions,
    }
}

/// Whether the load factors rank `candidates` (the profile uses the load checker and every
/// candidate reported one), else their session counts.
fn uses_load_factors<'a>(
    ranking: Ranking,
    mut candidates: impl Iterator<Item = &'a ServerView>,
) -> bool {
    ranking == Ranking::LoadFactors && candidates.all(|server| server.load_factor.is_some())
}

/// §10.2 with live state: resume a suspended session, else take over a running one, else the
/// best healthy server (ties by host name), never one that is down.
pub fn decide<F: FarmState + ?Sized>(
    profile_hosts: &[String],
    user: &str,
    servers: &F,
    asked: &[SessionView],
    ranking: Ranking,
) -> Decision {
    if !user.is_empty() {
        let sessions = user_sessions(profile_hosts, user, servers, asked);
        if let Some((host, session)) = sessions
            .iter()
            .find(|(_, session)| session.status == SessionStatus::Suspended)
        {
            return Decision::Resume {
                host: host.clone(),
                session: (*session).clone(),
            };
        }
        if let Some((host, session)) = sessions
            .iter()
            .find(|(_, session)| session.status == SessionStatus::Running)
        {
            return Decision::TakeOver {
                host: host.clone(),
                session: (*session).clone(),
            };
        }
    }
    best_server(profile_hosts, servers, ranking)
        .map_or(Decision::NoServer, |host| Decision::New { host })
}

/// [`decide`] in a cluster: a user whose pending placement for the profile names a server
/// that can still take a new session (not down, not drained) gets that server again, from any
/// broker (a double click on two brokers makes one session); else [`decide`].
pub fn decide_placed<F: FarmState + ?Sized>(
    profile_hosts: &[String],
    user: &str,
    servers: &F,
    asked: &[SessionView],
    ranking: Ranking,
    placed_before: Option<&str>,
) -> Decision {
    let decision = decide(profile_hosts, user, servers, asked, ranking);
    let Decision::New { .. } = decision else {
        return decision;
    };
    let still_usable = placed_before.filter(|host| {
        profile_hosts.iter().any(|known| known == host)
            && servers
                .server(host)
                .is_some_and(|server| server.health != Health::Down && !server.drained)
    });
    match still_usable {
        Some(host) => Decision::New {
            host: host.to_string(),
        },
        None => decision,
    }
}

/// The users with a session in `now` that `before` did not hold (by session id): the pending
/// placements a report confirms in a cluster, by (server, user) rather than by count.
pub fn users_with_new_sessions(before: &[SessionView], now: &[SessionView]) -> Vec<String> {
    let mut users: Vec<String> = now
        .iter()
        .filter(|session| {
            !before
                .iter()
                .any(|known| known.session_id == session.session_id)
        })
        .map(|session| session.user.clone())
        .collect();
    users.sort();
    users.dedup();
    users
}

/// The best server for a new session among the profile's hosts: up before degraded, never
/// down or drained, lowest rank, ties by host name.
pub fn best_server<F: FarmState + ?Sized>(
    profile_hosts: &[String],
    servers: &F,
    ranking: Ranking,
) -> Option<String> {
    for wanted in [Health::Up, Health::Degraded] {
        let candidates: Vec<(&String, &ServerView)> = profile_hosts
            .iter()
            .filter_map(|host| servers.server(host).map(|server| (host, server)))
            .filter(|(_, server)| server.health == wanted && !server.drained)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let use_load_factors = uses_load_factors(ranking, candidates.iter().map(|(_, s)| *s));
        let best = candidates.iter().min_by(|(host_a, a), (host_b, b)| {
            rank(a, use_load_factors)
                .partial_cmp(&rank(b, use_load_factors))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| host_a.cmp(host_b))
        });
        return best.map(|(host, _)| (*host).clone());
    }
    None
}

/// The answer for a decision (§10.2 steps 2, 6d, 7, 8): the host's `host=` address and
/// `sshport=` port (else the profile's), the session line to resume (a taken-over session is
/// announced as suspended; the caller replaces it with the line the agent confirmed), and the
/// reference's answers when nothing can be selected.
pub fn selection_for(profile: &Profile, decision: &Decision) -> Selection {
    let port = profile.ssh_port();
    let (host, session_info) = match decision {
        _ if profile.host_names().is_empty() => {
            return crate::select::nothing_selected(profile, port)
        }
        Decision::Resume { host, session } => (host, Some(session.raw_line.clone())),
        Decision::TakeOver { host, session } => (
            host,
            Some(super::agentcmd::line_with_status(
                &session.raw_line,
                SessionStatus::Suspended,
            )),
        ),
        Decision::New { host } => (host, None),
        Decision::NoServer => return crate::select::nothing_selected(profile, port),
    };
    let mut selection = Selection::server(
        profile.host_address(host).unwrap_or_else(|| host.clone()),
        profile.host_port(host).unwrap_or(port),
    );
    selection.session_info = session_info;
    selection
}

/// §7.4 step 6 from live state: narrow a listed profile to the host of the user's suspended
/// (`S`) or running (`R`) session, else to the first configured host. `None` when no agent
/// of the profile has ever reported (the listing is then left as it is).
pub fn listing_status<F: FarmState + ?Sized>(
    profile_hosts: &[String],
    user: &str,
    servers: &F,
    asked: &[SessionView],
) -> Option<(String, Option<SessionStatus>)> {
    let any_reported = profile_hosts.iter().any(|host| {
        servers
            .server(host)
            .is_some_and(|server| server.health != Health::Down)
    });
    if !any_reported {
        return None;
    }
    let sessions = user_sessions(profile_hosts, user, servers, asked);
    for status in [SessionStatus::Suspended, SessionStatus::Running] {
        let mut matching: Vec<String> = sessions
            .iter()
            .filter(|(_, session)| session.status == status)
            .map(|(host, _)| host.clone())
            .collect();
        matching.sort();
        if let Some(host) = matching.into_iter().next() {
            return Some((host, Some(status)));
        }
    }
    profile_hosts.first().map(|host| (host.clone(), None))
}

/// How many of a server's unconfirmed placements a report confirms: the sessions it shows
/// beyond the previous report's, at most the placements pending.
pub fn confirmed_placements(before: &[SessionView], now: &[SessionView], pending: usize) -> usize {
    now.len().saturating_sub(before.len()).min(pending)
}

/// The taken-over session once a report shows it suspended (take-over confirmation).
pub fn takeover_confirmed<'a>(
    sessions: &'a [SessionView],
    user: &str,
    session_id: &str,
) -> Option<&'a SessionView> {
    sessions.iter().find(|session| {
        session.session_id == session_id
            && session.user == user
            && session.status == SessionStatus::Suspended
    })
}

/// What a closed X2Go port (§10.2 step 6e) means for a decision: the host is excluded from
/// this request's choice, and a new-session placement made there is given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub host: String,
    pub abandon_placement: bool,
}

/// The port-scan step: `None` when the decision stands (no scan, the port is open, or
/// nothing was chosen), else which host to exclude before deciding again.
pub fn after_port_probe(decision: &Decision, portscan: bool, port_open: bool) -> Option<Exclusion> {
    let (host, abandon_placement) = match decision {
        Decision::Resume { host, .. } | Decision::TakeOver { host, .. } => (host, false),
        Decision::New { host } => (host, true),
        Decision::NoServer => return None,
    };
    (portscan && !port_open).then(|| Exclusion {
        host: host.clone(),
        abandon_placement,
    })
}

/// The servers known to share one session DB, numbered by group: `view_of(host)` are the
/// other servers whose sessions `host` has been seen listing. A server reads and writes one
/// session DB, so another server's sessions are in its DB only when the two share it: both
/// are in one group whichever of them listed the other's, and so on transitively (a server
/// with no sessions of its own is grouped by its own answers showing the others'). `hosts`
/// and the servers in their views are grouped; every other server is in a group of its own.
pub fn shared_session_db_groups<'a>(
    hosts: &[&String],
    view_of: impl Fn(&str) -> Option<&'a BTreeSet<String>>,
) -> HashMap<String, usize> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let add = |name: &str, index: &mut HashMap<String, usize>| -> usize {
        if let Some(&known) = index.get(name) {
            return known;
        }
        let next = index.len();
        index.insert(name.to_string(), next);
        next
    };
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for host in hosts {
        let from = add(host, &mut index);
        for seen in view_of(host).into_iter().flatten() {
            let to = add(seen, &mut index);
            edges.push((from, to));
        }
    }
    // union-find with path halving
    let mut parent: Vec<usize> = (0..index.len()).collect();
    fn root(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    for (from, to) in edges {
        let (from_root, to_root) = (root(&mut parent, from), root(&mut parent, to));
        if from_root != to_root {
            parent[from_root.max(to_root)] = from_root.min(to_root);
        }
    }
    index
        .into_iter()
        .map(|(name, node)| (name, root(&mut parent, node)))
        .collect()
}

/// Which legacy agents (`candidates`: the profile's servers on the legacy agent that are not
/// down, with their transport) a request asks for a user's sessions. Every LOCAL server is the
/// same agent: asked once. Over SSH: each server (`No`), one (`Yes`, the first), or (`Auto`)
/// one per group of servers known to share a session DB ([`shared_session_db_groups`]), the
/// servers seeing most first; a server nothing is known of is its own group.
pub fn legacy_hosts_to_ask<'a>(
    candidates: &[(String, Via)],
    view_of: impl Fn(&str) -> Option<&'a BTreeSet<String>>,
    shared: SharedSessionDb,
) -> Vec<String> {
    let mut asked: Vec<String> = Vec::new();
    if let Some((host, _)) = candidates.iter().find(|(_, via)| *via == Via::Local) {
        asked.push(host.clone());
    }
    let remote: Vec<&String> = candidates
        .iter()
        .filter(|(_, via)| *via != Via::Local)
        .map(|(host, _)| host)
        .collect();
    match shared {
        SharedSessionDb::No => asked.extend(remote.into_iter().cloned()),
        SharedSessionDb::Yes => asked.extend(remote.first().map(|host| (*host).clone())),
        SharedSessionDb::Auto => {
            let seen = |host: &str| {
                view_of(host).map_or(0, |view| {
                    remote
                        .iter()
                        .filter(|other| view.contains(other.as_str()))
                        .count()
                })
            };
            // stable: equal views keep the profile's order
            let mut ranked = remote.clone();
            ranked.sort_by_key(|host| std::cmp::Reverse(seen(host)));
            let groups = shared_session_db_groups(&remote, &view_of);
            let mut covered: BTreeSet<usize> = BTreeSet::new();
            for host in ranked {
                if covered.insert(groups[host.as_str()]) {
                    asked.push(host.clone());
                }
            }
        }
    }
    asked
}

/// The legacy servers among `candidates` that no answered ask vouches for, when some of a
/// request's asks ([`legacy_hosts_to_ask`]) failed (`answered`: the asked servers that
/// answered). A server's sessions are known from its own answer, from the LOCAL agent's (one
/// agent for every LOCAL server), or from one that answers for it (`Yes`: the first asked
/// answers for all; `Auto`: a server known to share its session DB,
/// [`shared_session_db_groups`]). The user's
/// sessions on the others are unknown: a new session there could duplicate a suspended one,
/// and an agent that failed mid-call is probably down; that request does not select them.
/// Empty when every ask answered.
pub fn unvouched_legacy_hosts<'a>(
    candidates: &[(String, Via)],
    answered: &[String],
    any_failed: bool,
    view_of: impl Fn(&str) -> Option<&'a BTreeSet<String>>,
    shared: SharedSessionDb,
) -> Vec<String> {
    if !any_failed {
        return Vec::new();
    }
    let via_of = |host: &str| {
        candidates
            .iter()
            .find(|(candidate, _)| candidate == host)
            .map(|(_, via)| *via)
    };
    let remote: Vec<&String> = candidates
        .iter()
        .filter(|(_, via)| *via != Via::Local)
        .map(|(host, _)| host)
        .chain(answered)
        .collect();
    let groups = shared_session_db_groups(&remote, &view_of);
    let vouched = |host: &str, via: Via| {
        answered.iter().any(|asked| {
            if asked == host {
                return true;
            }
            let asked_via = via_of(asked);
            match (via, asked_via) {
                (Via::Local, Some(Via::Local)) => true,
                (Via::Local, _) | (_, Some(Via::Local)) => false,
                _ => match shared {
                    SharedSessionDb::No => false,
                    SharedSessionDb::Yes => true,
                    SharedSessionDb::Auto => matches!(
                        (groups.get(asked), groups.get(host)),
                        (Some(asked_group), Some(host_group)) if asked_group == host_group
                    ),
                },
            }
        })
    };
    candidates
        .iter()
        .filter(|(host, via)| !vouched(host, *via))
        .map(|(host, _)| host.clone())
        .collect()
}

/// What one legacy agent's session list shows of its session DB: the other profile hosts
/// whose sessions `answered_by` listed.
pub fn hosts_seen_by(
    answered_by: &str,
    sessions: &[SessionView],
    profile_hosts: &[String],
) -> BTreeSet<String> {
    sessions
        .iter()
        .filter_map(|session| profile_host_for(&session.server, profile_hosts))
        .filter(|host| host != answered_by)
        .collect()
}

/// The selection of §10.2 with its port scan (step 6e), the one loop the live farm and the
/// golden replay both run: `decide` answers a decision for a list of excluded hosts (with
/// whatever the caller needs alongside, e.g. the selection it implies), `probe` says whether
/// the chosen host's X2Go port is open. A host found closed is excluded and the choice made
/// again. Answers the final decision, its companion and every exclusion made on the way
/// (their new-session placements are to be given back).
pub async fn decide_with_port_scan<T, D, DF, P, PF>(
    portscan: bool,
    mut decide: D,
    mut probe: P,
) -> (Decision, T, Vec<Exclusion>)
where
    D: FnMut(Vec<String>) -> DF,
    DF: std::future::Future<Output = (Decision, T)>,
    P: FnMut(&Decision, &T) -> PF,
    PF: std::future::Future<Output = bool>,
{
    let mut exclusions: Vec<Exclusion> = Vec::new();
    loop {
        let excluded = exclusions.iter().map(|exclusion| exclusion.host.clone());
        let (decision, companion) = decide(excluded.collect()).await;
        let port_open = if portscan && decision != Decision::NoServer {
            probe(&decision, &companion).await
        } else {
            true
        };
        match after_port_probe(&decision, portscan, port_open) {
            None => return (decision, companion, exclusions),
            Some(exclusion) => exclusions.push(exclusion),
        }
    }
}

/// Why a host was left out of a request's decision before the policy ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// The request's port scan found its X2Go SSH port closed (§10.2 step 6e).
    PortClosed,
    /// Its legacy agent could not be asked, so the user's sessions there are unknown.
    Unvouched,
}

/// One host of a profile in an explanation: what the decision saw of it and why it was or
/// was not chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReason {
    pub host: String,
    pub chosen: bool,
    /// In words, with a stable first word: `chosen:`, `left out:`, `not heard of`, `down`,
    /// `drained`, `degraded`, `ranked`, `not needed`.
    pub reason: String,
    /// The ranking value (lower is better) when it was a candidate for a new session.
    pub rank: Option<f64>,
    /// The server as the decision saw it (`None`: never heard of).
    pub view: Option<ServerView>,
}

/// The reasons behind `decision` for every host of the profile (pure: the same farm state,
/// `asked` sessions and ranking the decision was made from; `left_out` are the hosts the
/// request kept away from it). The explain API and the debug log show them.
pub fn explain_hosts<F: FarmState + ?Sized>(
    profile_hosts: &[String],
    servers: &F,
    ranking: Ranking,
    decision: &Decision,
    left_out: &[(String, LeftOut)],
) -> Vec<HostReason> {
    let candidates = |wanted: Health| {
        profile_hosts
            .iter()
            .filter(|host| !left_out.iter().any(|(out, _)| out == *host))
            .filter_map(|host| servers.server(host))
            .filter(move |server| server.health == wanted && !server.drained)
    };
    let tier = if candidates(Health::Up).next().is_some() {
        Some(Health::Up)
    } else if candidates(Health::Degraded).next().is_some() {
        Some(Health::Degraded)
    } else {
        None
    };
    let use_load_factors = tier.is_some_and(|tier| uses_load_factors(ranking, candidates(tier)));
    let chosen_host = decision.host();
    let chosen_rank = chosen_host
        .and_then(|host| servers.server(host))
        .map(|server| rank(server, use_load_factors));
    profile_hosts
        .iter()
        .map(|host| {
            let view = servers.server(host);
            let chosen = chosen_host == Some(host.as_str());
            let inputs = |server: &ServerView| {
                let mut text = format!(
                    "{} sessions + {} pending",
                    server.sessions.len(),
                    server.pending
                );
                if use_load_factors {
                    if let Some(factor) = server.load_factor {
                        text.push_str(&format!(", load factor {factor}"));
                    }
                }
                text
            };
            let mut rank_value = None;
            let reason = match (view, left_out.iter().find(|(out, _)| out == host)) {
                (_, Some((_, LeftOut::PortClosed))) => {
                    "left out: its X2Go SSH port did not answer the port scan".to_string()
                }
                (_, Some((_, LeftOut::Unvouched))) => {
                    "left out: its legacy agent could not be asked for the user's sessions"
                        .to_string()
                }
                (None, None) => "not heard of: no report from its agent yet".to_string(),
                (Some(server), None) => {
                    let candidate = tier == Some(server.health) && !server.drained;
                    if candidate {
                        rank_value = Some(rank(server, use_load_factors));
                    }
                    match decision {
                        Decision::Resume { session, .. } if chosen => format!(
                            "chosen: resume of the user's suspended session {}",
                            session.session_id
                        ),
                        Decision::TakeOver { session, .. } if chosen => format!(
                            "chosen: take-over of the user's running session {}",
                            session.session_id
                        ),
                        Decision::New { .. } if chosen => format!(
                            "chosen: lowest rank {:.3} ({})",
                            rank_value.unwrap_or_default(),
                            inputs(server)
                        ),
                        _ if server.health == Health::Down => {
                            "down: its agent does not answer".to_string()
                        }
                        _ if server.drained => {
                            "drained: no new sessions (its sessions are still resumed)".to_string()
                        }
                        _ if server.health == Health::Degraded && tier == Some(Health::Up) => {
                            "degraded: back after an outage, chosen only when no server is up"
                                .to_string()
                        }
                        Decision::Resume { host, .. } | Decision::TakeOver { host, .. } => {
                            format!("not needed: the user's session is on {host}")
                        }
                        _ => format!(
                            "ranked {:.3} ({}), behind {}",
                            rank_value.unwrap_or_default(),
                            inputs(server),
                            match (chosen_host, chosen_rank) {
                                (Some(best), Some(best_rank)) =>
                                    format!("{best} at {best_rank:.3}"),
                                _ => "nothing".to_string(),
                            }
                        ),
                    }
                }
            };
            HostReason {
                host: host.clone(),
                chosen,
                reason,
                rank: rank_value,
                view: view.cloned(),
            }
        })
        .collect()
}

impl Decision {
    /// The chosen host, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Decision::Resume { host, .. }
            | Decision::TakeOver { host, .. }
            | Decision::New { host } => Some(host),
            Decision::NoServer => None,
        }
    }
}

/// A session for tests: `user`'s session `id` on `server` with `status`.
#[cfg(test)]
pub(crate) fn test_session(id: &str, user: &str, server: &str, status: char) -> SessionView {
    SessionView {
        session_id: id.into(),
        user: user.into(),
        server: server.into(),
        status: SessionStatus::from_field(&status.to_string()),
        raw_line: format!("1|{id}|50|{server}|{status}|x|{user}"),
    }
}

#[cfg(test)]
mod tests {
    use super::test_session as session;
    use super::*;

    /// name, health, sessions, load factor, pending placements
    type FarmEntry<'a> = (&'a str, Health, Vec<SessionView>, Option<i64>, u32);

    fn farm(entries: &[FarmEntry<'_>]) -> BTreeMap<String, ServerView> {
        entries
            .iter()
            .map(|(name, health, sessions, load_factor, pending)| {
                (
                    name.to_string(),
                    ServerView {
                        health: *health,
                        sessions: sessions.clone(),
                        load_factor: *load_factor,
                        pending: *pending,
                        via: Some(Via::Grpc),
                        drained: false,
                    },
                )
            })
            .collect()
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    /// `ssh-load-factors`: load factor / sessions 1000 / 3, 200 / 1, 150 / 0, and `pending`
    /// placements on n3.
    fn ssh_load_factors_farm(pending: u32) -> BTreeMap<String, ServerView> {
        use Health::*;
        farm(&[
            (
                "n1",
                Up,
                vec![
                    session("1", "x", "n1", 'R'),
                    session("2", "x", "n1", 'R'),
                    session("3", "x", "n1", 'R'),
                ],
                Some(1000),
                0,
            ),
            ("n2", Up, vec![session("4", "x", "n2", 'R')], Some(200), 0),
            ("n3", Up, vec![], Some(150), pending),
        ])
    }

    #[test]
    fn decision_table() {
        use Health::*;
        let five = hosts(&["n1", "n2", "n3", "n4", "n5"]);
        let cases: Vec<(&str, BTreeMap<String, ServerView>, &str, &str)> = vec![
            (
                "suspended beats running",
                farm(&[
                    ("n1", Up, vec![session("a-1", "alice", "n1", 'R')], None, 0),
                    ("n2", Up, vec![session("a-2", "alice", "n2", 'S')], None, 0),
                    ("n3", Up, vec![], None, 0),
                ]),
                "alice",
                "resume n2 a-2",
            ),
            (
                "running only: take over",
                farm(&[
                    ("n1", Up, vec![], None, 0),
                    ("n2", Up, vec![session("b-1", "bob", "n2", 'R')], None, 0),
                ]),
                "bob",
                "takeover n2 b-1",
            ),
            (
                "no session: fewest sessions, then name",
                farm(&[
                    ("n1", Up, vec![session("x", "x", "n1", 'R')], None, 0),
                    ("n2", Up, vec![], None, 0),
                    ("n3", Up, vec![], None, 0),
                ]),
                "carol",
                "new n2",
            ),
            (
                "pending placements count",
                farm(&[
                    ("n1", Up, vec![], None, 2),
                    ("n2", Up, vec![session("x", "x", "n2", 'R')], None, 0),
                ]),
                "carol",
                "new n2",
            ),
            (
                "down servers are never chosen, not even for resuming",
                farm(&[
                    ("n1", Down, vec![session("a", "alice", "n1", 'S')], None, 0),
                    (
                        "n2",
                        Up,
                        vec![session("x", "x", "n2", 'R'), session("y", "y", "n2", 'R')],
                        None,
                        0,
                    ),
                ]),
                "alice",
                "new n2",
            ),
            (
                "all down",
                farm(&[("n1", Down, vec![], None, 0), ("n2", Down, vec![], None, 0)]),
                "carol",
                "none",
            ),
            (
                "degraded only when nothing is up",
                farm(&[
                    ("n1", Degraded, vec![], None, 0),
                    ("n2", Down, vec![], None, 0),
                ]),
                "carol",
                "new n1",
            ),
            (
                "load factors weigh sessions (ssh-load-factors: 1000/3, 200/1, 150/0 -> n1)",
                ssh_load_factors_farm(0),
                "carol",
                "new n1",
            ),
            (
                "sessions of other users and on foreign servers are ignored",
                farm(&[
                    (
                        "n1",
                        Up,
                        vec![session("a", "alice", "elsewhere", 'S')],
                        None,
                        0,
                    ),
                    ("n2", Up, vec![], None, 0),
                ]),
                "alice",
                "new n2",
            ),
            (
                "domain-qualified session servers map to short profile hosts",
                farm(&[
                    ("n1", Up, vec![], None, 0),
                    (
                        "n3",
                        Up,
                        vec![session("a", "alice", "n3.example.org", 'S')],
                        None,
                        0,
                    ),
                ]),
                "alice",
                "resume n3 a",
            ),
        ];
        for (name, servers, user, expected) in cases {
            let got = match decide(&five, user, &servers, &[], Ranking::LoadFactors) {
                Decision::Resume { host, session } => {
                    format!("resume {host} {}", session.session_id)
                }
                Decision::TakeOver { host, session } => {
                    format!("takeover {host} {}", session.session_id)
                }
                Decision::New { host } => format!("new {host}"),
                Decision::NoServer => "none".to_string(),
            };
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn load_factors_weigh_only_profiles_that_use_the_load_checker() {
        let three = hosts(&["n1", "n2", "n3"]);
        // n3 has one placement pending
        let servers = ssh_load_factors_farm(1);
        let pick = |ranking| best_server(&three, &servers, ranking);
        assert_eq!(pick(Ranking::LoadFactors).as_deref(), Some("n1"));
        // without the load checker: fewest sessions plus placements, ties by name
        assert_eq!(pick(Ranking::Sessions).as_deref(), Some("n2"));
    }

    #[test]
    fn listing_status_table() {
        use Health::*;
        let profile = hosts(&["n1", "n2", "n3"]);
        let servers = farm(&[
            ("n1", Up, vec![session("a", "alice", "n1", 'R')], None, 0),
            (
                "n2",
                Up,
                vec![
                    session("b", "alice", "n2", 'S'),
                    session("c", "bob", "n2", 'R'),
                ],
                None,
                0,
            ),
            ("n3", Up, vec![], None, 0),
        ]);
        assert_eq!(
            listing_status(&profile, "alice", &servers, &[]),
            Some(("n2".into(), Some(SessionStatus::Suspended)))
        );
        assert_eq!(
            listing_status(&profile, "bob", &servers, &[]),
            Some(("n2".into(), Some(SessionStatus::Running)))
        );
        assert_eq!(
            listing_status(&profile, "carol", &servers, &[]),
            Some(("n1".into(), None))
        );
        assert_eq!(
            listing_status(
                &profile,
                "carol",
                &farm(&[("n1", Down, vec![], None, 0)]),
                &[]
            ),
            None
        );
    }

    #[test]
    fn placement_confirmation_and_takeover_confirmation_tables() {
        let sessions = |count: usize| -> Vec<SessionView> {
            (0..count)
                .map(|i| session(&format!("s{i}"), "u", "n1", 'R'))
                .collect()
        };
        // sessions before, sessions now, pending, confirmed
        for (before, now, pending, expected) in [
            (0, 0, 3, 0),
            (0, 2, 3, 2),
            (1, 5, 3, 3),
            (4, 2, 3, 0),
            (2, 3, 0, 0),
        ] {
            assert_eq!(
                confirmed_placements(&sessions(before), &sessions(now), pending),
                expected,
                "{before} {now} {pending}"
            );
        }
        let reported = vec![
            session("a-1", "alice", "n1", 'R'),
            session("a-2", "alice", "n1", 'S'),
            session("b-1", "bob", "n1", 'S'),
        ];
        assert_eq!(takeover_confirmed(&reported, "alice", "a-1"), None);
        assert_eq!(
            takeover_confirmed(&reported, "alice", "a-2").map(|s| s.session_id.as_str()),
            Some("a-2")
        );
        // another user's session of that id never confirms (S3)
        assert_eq!(takeover_confirmed(&reported, "alice", "b-1"), None);
    }

    #[test]
    fn port_probe_step_table() {
        let new = Decision::New { host: "n1".into() };
        let resume = Decision::Resume {
            host: "n2".into(),
            session: session("a", "alice", "n2", 'S'),
        };
        let exclude = |host: &str, abandon_placement| {
            Some(Exclusion {
                host: host.into(),
                abandon_placement,
            })
        };
        // decision, port scanning on, port open, expected
        let cases = [
            (&new, false, false, None),
            (&new, true, true, None),
            (&new, true, false, exclude("n1", true)),
            (&resume, true, false, exclude("n2", false)),
            (&Decision::NoServer, true, false, None),
        ];
        for (decision, portscan, open, expected) in cases {
            assert_eq!(
                after_port_probe(decision, portscan, open),
                expected,
                "{decision:?} {portscan} {open}"
            );
        }
    }

    #[test]
    fn shared_session_db_groups_are_symmetric_and_transitive() {
        let views: BTreeMap<String, BTreeSet<String>> = [
            // a showed b's sessions, c showed b's: a, b, c share one DB
            ("a", vec!["b"]),
            ("c", vec!["b"]),
            // e (idle) showed d's sessions: one DB
            ("e", vec!["d"]),
        ]
        .into_iter()
        .map(|(host, seen)| {
            (
                host.to_string(),
                seen.into_iter().map(String::from).collect(),
            )
        })
        .collect();
        let hosts: Vec<String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|host| host.to_string())
            .collect();
        let host_refs: Vec<&String> = hosts.iter().collect();
        let groups = shared_session_db_groups(&host_refs, |host| views.get(host));
        let same = |left: &str, right: &str| groups[left] == groups[right];
        let cases = [
            ("a", "b", true),
            ("b", "a", true),
            ("a", "c", true),
            ("d", "e", true),
            ("a", "d", false),
            ("f", "a", false),
            ("f", "e", false),
        ];
        for (left, right, expected) in cases {
            assert_eq!(same(left, right), expected, "{left} {right}");
        }
        assert_eq!(groups.len(), 6);
    }

    #[test]
    fn legacy_hosts_to_ask_table() {
        let ssh = |hosts: &[&str]| -> Vec<(String, Via)> {
            hosts
                .iter()
                .map(|host| (host.to_string(), Via::Ssh))
                .collect()
        };
        let views: BTreeMap<String, BTreeSet<String>> = [
            ("n1", vec!["n2"]),
            ("n3", vec!["n1", "n2"]),
            ("n9", vec!["n8"]),
            // n5 has no sessions of its own; its answers showed n2's
            ("n5", vec!["n2"]),
        ]
        .into_iter()
        .map(|(host, seen)| {
            (
                host.to_string(),
                seen.into_iter().map(String::from).collect(),
            )
        })
        .collect();
        let view_of = |host: &str| views.get(host);
        let cases: [(&[&str], SharedSessionDb, &[&str]); 9] = [
            (
                &["n1", "n2", "n3"],
                SharedSessionDb::No,
                &["n1", "n2", "n3"],
            ),
            (&["n1", "n2", "n3"], SharedSessionDb::Yes, &["n1"]),
            // n3's answers showed n1's and n2's sessions: it alone covers all three
            (&["n1", "n2", "n3"], SharedSessionDb::Auto, &["n3"]),
            // nothing learnt about n4 yet: asked too
            (
                &["n1", "n2", "n3", "n4"],
                SharedSessionDb::Auto,
                &["n3", "n4"],
            ),
            (&["n1", "n2"], SharedSessionDb::Auto, &["n1"]),
            // n5 showed n2's sessions: one DB with n2, so with n1 and n3 (no one showed n5's)
            (&["n1", "n2", "n3", "n5"], SharedSessionDb::Auto, &["n3"]),
            (&["n5", "n1"], SharedSessionDb::Auto, &["n5"]),
            // two session DBs: one server of each
            (&["n2", "n8"], SharedSessionDb::Auto, &["n2", "n8"]),
            (&[], SharedSessionDb::Auto, &[]),
        ];
        for (candidates, shared, expected) in cases {
            assert_eq!(
                legacy_hosts_to_ask(&ssh(candidates), view_of, shared),
                expected
                    .iter()
                    .map(|host| host.to_string())
                    .collect::<Vec<_>>(),
                "{candidates:?} {shared:?}"
            );
        }
        // every LOCAL server is the one local agent: asked once, whatever the mode
        let local: Vec<(String, Via)> = ["n1", "n2"]
            .iter()
            .map(|host| (host.to_string(), Via::Local))
            .collect();
        assert_eq!(
            legacy_hosts_to_ask(&local, view_of, SharedSessionDb::No),
            ["n1"]
        );
        let hosts: Vec<String> = ["n1", "n2", "n3"]
            .iter()
            .map(|host| host.to_string())
            .collect();
        // a failed ask: the servers no answer vouches for (candidates n1 n2 n3, answered,
        // mode, expected)
        let names = |list: &[&str]| -> Vec<String> { list.iter().map(|h| h.to_string()).collect() };
        let unvouched_cases: [(&[&str], SharedSessionDb, &[&str]); 7] = [
            // n3 answers for n1 and n2 (its view): all vouched for
            (&["n3"], SharedSessionDb::Auto, &[]),
            // n1 answers for n2 (its view) and n3 (whose view showed n1's sessions)
            (&["n1"], SharedSessionDb::Auto, &[]),
            // nothing answered
            (&[], SharedSessionDb::Auto, &["n1", "n2", "n3"]),
            (&["n2"], SharedSessionDb::No, &["n1", "n3"]),
            (&["n2"], SharedSessionDb::Yes, &[]),
            (&[], SharedSessionDb::Yes, &["n1", "n2", "n3"]),
            (&["n1", "n2", "n3"], SharedSessionDb::No, &[]),
        ];
        for (answered, shared, expected) in unvouched_cases {
            assert_eq!(
                unvouched_legacy_hosts(
                    &ssh(&["n1", "n2", "n3"]),
                    &names(answered),
                    true,
                    view_of,
                    shared
                ),
                names(expected),
                "answered {answered:?} {shared:?}"
            );
        }
        // nothing is known of n4's session DB: only its own answer vouches for it
        assert_eq!(
            unvouched_legacy_hosts(
                &ssh(&["n1", "n2", "n3", "n4"]),
                &names(&["n1"]),
                true,
                view_of,
                SharedSessionDb::Auto
            ),
            ["n4"]
        );
        assert!(
            unvouched_legacy_hosts(
                &ssh(&["n1", "n2"]),
                &[],
                false,
                view_of,
                SharedSessionDb::No
            )
            .is_empty(),
            "no ask failed"
        );
        // the LOCAL agent answers for every LOCAL server, and only for them
        let mixed = vec![
            ("n1".to_string(), Via::Local),
            ("n2".to_string(), Via::Local),
            ("n3".to_string(), Via::Ssh),
        ];
        assert_eq!(
            unvouched_legacy_hosts(&mixed, &names(&["n1"]), true, view_of, SharedSessionDb::Yes),
            ["n3"]
        );
        assert_eq!(
            unvouched_legacy_hosts(&mixed, &names(&["n3"]), true, view_of, SharedSessionDb::Yes),
            ["n1", "n2"]
        );
        let listed = vec![
            session("a", "alice", "n1", 'R'),
            session("b", "alice", "n2.example.org", 'S'),
            session("c", "alice", "elsewhere", 'S'),
        ];
        assert_eq!(
            hosts_seen_by("n1", &listed, &hosts)
                .into_iter()
                .collect::<Vec<_>>(),
            ["n2"]
        );
    }

    fn drain_farm() -> BTreeMap<String, ServerView> {
        let server = |sessions: Vec<SessionView>, drained: bool| ServerView {
            health: Health::Up,
            sessions,
            load_factor: None,
            pending: 0,
            via: Some(Via::Grpc),
            drained,
        };
        BTreeMap::from([
            ("ts01".to_string(), server(vec![], true)),
            (
                "ts02".to_string(),
                server(vec![session("s2", "bob", "ts02", 'R')], false),
            ),
            (
                "ts03".to_string(),
                server(vec![session("s3", "alice", "ts03", 'S')], true),
            ),
        ])
    }

    #[test]
    fn a_drained_server_gets_no_new_session_but_its_sessions_are_resumed() {
        let farm = drain_farm();
        let hosts: Vec<String> = ["ts01", "ts02", "ts03"].map(String::from).to_vec();
        // ts01 is empty but drained: the new session goes to ts02
        assert_eq!(
            decide(&hosts, "carol", &farm, &[], Ranking::Sessions),
            Decision::New {
                host: "ts02".into()
            }
        );
        // alice's suspended session on the drained ts03 is still resumed
        assert!(matches!(
            decide(&hosts, "alice", &farm, &[], Ranking::Sessions),
            Decision::Resume { host, .. } if host == "ts03"
        ));
        // every server drained: nothing for a new session, also for a single host
        let only_drained = vec!["ts01".to_string()];
        assert_eq!(
            decide(&only_drained, "carol", &farm, &[], Ranking::Sessions),
            Decision::NoServer
        );
    }

    #[test]
    fn explanations_name_each_hosts_reason() {
        let mut farm = drain_farm();
        farm.insert(
            "ts04".into(),
            ServerView {
                health: Health::Down,
                ..ServerView::unknown()
            },
        );
        farm.insert(
            "ts05".into(),
            ServerView {
                health: Health::Up,
                pending: 2,
                ..ServerView::unknown()
            },
        );
        let hosts: Vec<String> = ["ts01", "ts02", "ts03", "ts04", "ts05", "ts06", "ts07"]
            .map(String::from)
            .to_vec();
        let left_out = [("ts07".to_string(), LeftOut::PortClosed)];
        let decision = decide(&hosts, "carol", &farm, &[], Ranking::Sessions);
        assert_eq!(
            decision,
            Decision::New {
                host: "ts02".into()
            }
        );
        let reasons = explain_hosts(&hosts, &farm, Ranking::Sessions, &decision, &left_out);
        let table: Vec<(&str, bool, &str)> = reasons
            .iter()
            .map(|reason| {
                let first_words = reason.reason.split(':').next().unwrap_or_default();
                (reason.host.as_str(), reason.chosen, first_words)
            })
            .collect();
        assert_eq!(
            table,
            [
                ("ts01", false, "drained"),
                ("ts02", true, "chosen"),
                ("ts03", false, "drained"),
                ("ts04", false, "down"),
                (
                    "ts05",
                    false,
                    "ranked 2.000 (0 sessions + 2 pending), behind ts02 at 1.000"
                ),
                ("ts06", false, "not heard of"),
                ("ts07", false, "left out"),
            ]
        );
        assert_eq!(
            reasons[1].reason,
            "chosen: lowest rank 1.000 (1 sessions + 0 pending)"
        );
        assert_eq!(reasons[1].rank, Some(1.0));
        assert_eq!(reasons[0].rank, None);
        // a resume: the other hosts are not needed
        let decision = decide(&hosts, "alice", &farm, &[], Ranking::Sessions);
        let reasons = explain_hosts(&hosts, &farm, Ranking::Sessions, &decision, &[]);
        assert_eq!(
            reasons[2].reason,
            "chosen: resume of the user's suspended session s3"
        );
        assert_eq!(
            reasons[4].reason,
            "not needed: the user's session is on ts03"
        );
    }

    #[test]
    fn a_users_pending_placement_is_kept_across_brokers() {
        use Health::*;
        let three = hosts(&["n1", "n2", "n3"]);
        let mut state = farm(&[
            ("n1", Up, vec![session("a-1", "alice", "n1", 'S')], None, 0),
            ("n2", Up, vec![], None, 5),
            ("n3", Up, vec![], None, 0),
            ("n4", Up, vec![], None, 0),
        ]);
        state.get_mut("n3").unwrap().drained = false;
        // (user, placed before, expected host)
        let cases: &[(&str, Option<&str>, Decision)] = &[
            // no earlier placement: the least loaded server
            ("carol", None, Decision::New { host: "n3".into() }),
            // an earlier placement on a usable server wins over the ranking
            ("carol", Some("n2"), Decision::New { host: "n2".into() }),
            // a server outside the profile is not kept
            ("carol", Some("n4"), Decision::New { host: "n3".into() }),
            // a resume beats any placement
            (
                "alice",
                Some("n2"),
                Decision::Resume {
                    host: "n1".into(),
                    session: session("a-1", "alice", "n1", 'S'),
                },
            ),
        ];
        for (user, placed, expected) in cases {
            assert_eq!(
                &decide_placed(&three, user, &state, &[], Ranking::Sessions, *placed),
                expected,
                "{user} {placed:?}"
            );
        }
        // a placement on a server that went down or was drained since: the ranking again
        state.get_mut("n2").unwrap().health = Down;
        assert_eq!(
            decide_placed(&three, "carol", &state, &[], Ranking::Sessions, Some("n2")),
            Decision::New { host: "n3".into() }
        );
        state.get_mut("n2").unwrap().health = Up;
        state.get_mut("n2").unwrap().drained = true;
        assert_eq!(
            decide_placed(&three, "carol", &state, &[], Ranking::Sessions, Some("n2")),
            Decision::New { host: "n3".into() }
        );
    }

    #[test]
    fn new_sessions_confirm_by_user() {
        let before = vec![
            session("1", "alice", "n1", 'R'),
            session("2", "bob", "n1", 'S'),
        ];
        let cases: &[(Vec<SessionView>, &[&str])] = &[
            (before.clone(), &[]),
            (vec![], &[]),
            (
                vec![
                    session("1", "alice", "n1", 'R'),
                    session("3", "carol", "n1", 'R'),
                    session("4", "carol", "n1", 'R'),
                    session("5", "alice", "n1", 'R'),
                ],
                &["alice", "carol"],
            ),
            // one session ended and another began: still a new one of dave
            (vec![session("6", "dave", "n1", 'R')], &["dave"]),
        ];
        for (now, expected) in cases {
            assert_eq!(users_with_new_sessions(&before, now), *expected, "{now:?}");
        }
    }
}
