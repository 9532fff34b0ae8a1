//! The Balancer actor: owns the farm's live state (sessions, load, health, pending placements) and answers selections.

use super::model::{Health, PlacementLedger, SessionStatus, SessionView, SharedPlacements, Via};
use super::policy::{self, Decision, FarmState, Ranking, ServerView};
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A server's agent reported its sessions and load (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AgentReported {
    pub server: String,
    /// All sessions on the server; `None` when the transport cannot list them (legacy agent).
    pub sessions: Option<Vec<SessionView>>,
    pub load_factor: Option<i64>,
    /// `Degraded` right after an outage (half-open), else `Up`.
    pub health: Health,
    pub via: Via,
}

/// A server's agent did not answer (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AgentUnreachable {
    pub server: String,
}

/// Which server for `user` on a profile with `hosts`? Records a pending placement for new sessions.
#[derive(Debug, Message)]
#[rtype(result = "Selected")]
pub struct SelectServer {
    pub hosts: Arc<[String]>,
    pub user: String,
    /// The user's sessions as a legacy agent listed them for this request.
    pub asked: Vec<SessionView>,
    /// Hosts this request found unusable (X2Go's SSH port closed): treated as down.
    pub excluded: Vec<String>,
    /// How the profile spreads new sessions.
    pub ranking: Ranking,
    /// Whether a new session's placement is recorded (false: an explanation, no side effect).
    pub record: bool,
    /// In a cluster: every broker's pending placements (they replace the local counts in the
    /// ranking) and this user's earlier placement for the profile.
    pub shared: Option<SharedPlacements>,
}

/// In a cluster: the shared ledger, told when reports confirm placements (by server and user).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLedger {
    pub ledger: Arc<dyn PlacementLedger>,
}

/// The balancer's answer to [`SelectServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub decision: Decision,
    /// The transport of the chosen server's last report.
    pub via: Option<Via>,
}

/// The listing narrowing of a profile for `user` (§7.4 step 6).
#[derive(Debug, Message)]
#[rtype(result = "Option<(String, Option<SessionStatus>)>")]
pub struct ListingStatus {
    pub hosts: Arc<[String]>,
    pub user: String,
    /// The user's sessions as a legacy agent listed them for this request.
    pub asked: Vec<SessionView>,
}

/// Which of `hosts` report through the legacy agent (SSH, LOCAL) and are not down: their
/// sessions must be asked per request.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(String, Via)>")]
pub struct LegacyHosts {
    pub hosts: Arc<[String]>,
}

/// A placement that was not used after all (its server turned out unusable) (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PlacementAbandoned {
    pub server: String,
}

/// A server no profile names any more: its state is dropped (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Forget {
    pub server: String,
}

/// Answered once every one of `hosts` has been heard of (a report or a failure): a request
/// for servers seen for the first time waits for it (the caller bounds the wait).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WaitHeard {
    pub hosts: Arc<[String]>,
}

/// Answered with the session once a report of `server` shows `user`'s session `session_id`
/// suspended (a take-over's confirmation; the caller bounds the wait). Only servers whose
/// reports carry session lists (gRPC) can answer.
#[derive(Debug, Message)]
#[rtype(result = "Option<SessionView>")]
pub struct WaitSuspended {
    pub server: String,
    pub user: String,
    pub session_id: String,
}

/// Answered once every event sent to the balancer before it has been applied.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Barrier;

/// The servers an admin drained (the whole set, replacing the last one) (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetDrained {
    pub servers: BTreeSet<String>,
}

/// What the balancer knows of `hosts` (every host when `None`), with each one's last report
/// age: the admin API's and the metrics' view. Answered from state in place.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ServerOverview>")]
pub struct Overview {
    pub hosts: Option<Arc<[String]>>,
}

/// One server in an [`Overview`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOverview {
    pub name: String,
    /// `None`: a host of the request the balancer has never heard of.
    pub view: Option<ServerView>,
    /// Time since its last report or failure; `None`: never heard of.
    pub last_heard: Option<Duration>,
}

/// A snapshot of the whole farm (diagnostics, tests: it copies every session).
#[derive(Debug, Message)]
#[rtype(result = "BTreeMap<String, ServerView>")]
pub struct GetState;

#[derive(Debug)]
struct ServerEntry {
    /// What the decisions read; `pending` counts `placed`.
    view: ServerView,
    /// When each unconfirmed placement was made, oldest first.
    placed: VecDeque<Instant>,
    /// Whether the supervisor has said anything about this server yet.
    heard: bool,
    /// When it last did.
    last_heard: Option<Instant>,
}

impl Default for ServerEntry {
    fn default() -> ServerEntry {
        ServerEntry {
            view: ServerView::unknown(),
            placed: VecDeque::new(),
            heard: false,
            last_heard: None,
        }
    }
}

impl ServerEntry {
    fn forget_placements_before(&mut self, oldest: Instant) {
        while self.placed.front().is_some_and(|placed| *placed < oldest) {
            self.placed.pop_front();
        }
        self.view.pending = self.placed.len() as u32;
    }
}

/// Maps keyed by server and user names: a fast hash (names are short; seeds are random).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The Balancer actor. Requests read its state in place: nothing is copied per request but
/// the answer.
#[derive(Debug)]
pub struct Balancer {
    /// Keyed by the server name, shared (`Arc<str>`) with the index and the queue below.
    servers: Map<Arc<str>, ServerEntry>,
    /// user → the servers whose last report holds sessions of that user.
    by_user: Map<String, Vec<Arc<str>>>,
    /// Every placement (time, server) in the order made, to expire them without a sweep.
    placements: VecDeque<(Instant, Arc<str>)>,
    /// Servers whose last report came through the legacy agent.
    legacy: BTreeSet<Arc<str>>,
    /// Servers an admin drained (also those not known yet: applied when they appear).
    drained: BTreeSet<String>,
    /// How many they are, readable without a message (most farms have none).
    legacy_count: Arc<AtomicUsize>,
    pending_ttl: Duration,
    /// Requests waiting until their hosts have been heard of.
    heard_waiters: Vec<(Arc<[String]>, tokio::sync::oneshot::Sender<()>)>,
    /// Take-overs waiting for their session to show up suspended.
    suspend_waiters: Vec<(
        WaitSuspended,
        tokio::sync::oneshot::Sender<Option<SessionView>>,
    )>,
    /// In a cluster, the shared placement ledger.
    ledger: Option<Arc<dyn PlacementLedger>>,
}

impl Balancer {
    /// A balancer whose pending placements expire after `pending_ttl` without confirmation.
    pub fn new(pending_ttl: Duration) -> Balancer {
        Balancer {
            servers: Map::default(),
            by_user: Map::default(),
            placements: VecDeque::new(),
            legacy: BTreeSet::new(),
            drained: BTreeSet::new(),
            legacy_count: Arc::new(AtomicUsize::new(0)),
            pending_ttl,
            heard_waiters: Vec::new(),
            suspend_waiters: Vec::new(),
            ledger: None,
        }
    }

    fn all_heard(&self, hosts: &[String]) -> bool {
        hosts.iter().all(|host| {
            self.servers
                .get(host.as_str())
                .is_some_and(|entry| entry.heard)
        })
    }

    /// Answers the waiters whose condition the last event fulfilled (and forgets those
    /// whose requester gave up).
    fn answer_waiters(&mut self, server: &str) {
        let waiters = std::mem::take(&mut self.heard_waiters);
        for (hosts, sender) in waiters {
            if sender.is_closed() {
                continue;
            }
            if self.all_heard(&hosts) {
                let _ = sender.send(());
            } else {
                self.heard_waiters.push((hosts, sender));
            }
        }
        let waiters = std::mem::take(&mut self.suspend_waiters);
        for (wait, sender) in waiters {
            if sender.is_closed() {
                continue;
            }
            let confirmed = (wait.server == server)
                .then(|| self.suspended_session(&wait))
                .flatten();
            match confirmed {
                Some(session) => {
                    let _ = sender.send(Some(session));
                }
                None => self.suspend_waiters.push((wait, sender)),
            }
        }
    }

    fn suspended_session(&self, wait: &WaitSuspended) -> Option<SessionView> {
        let entry = self.servers.get(wait.server.as_str())?;
        policy::takeover_confirmed(&entry.view.sessions, &wait.user, &wait.session_id).cloned()
    }

    /// The number of servers reached through the legacy agent, kept current.
    pub fn legacy_count(&self) -> Arc<AtomicUsize> {
        self.legacy_count.clone()
    }

    /// Expires the unconfirmed placements older than the time to live (amortised: each
    /// placement is looked at once here).
    fn expire(&mut self, now: Instant) {
        let Some(oldest) = now.checked_sub(self.pending_ttl) else {
            return;
        };
        while self
            .placements
            .front()
            .is_some_and(|(placed, _)| *placed < oldest)
        {
            let Some((_, server)) = self.placements.pop_front() else {
                break;
            };
            if let Some(entry) = self.servers.get_mut(&*server) {
                entry.forget_placements_before(oldest);
            }
        }
    }

    /// The entry of `server` and its shared name, created when new.
    fn entry(&mut self, server: &str) -> (Arc<str>, &mut ServerEntry) {
        let name = match self.servers.get_key_value(server) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(server);
                let mut entry = ServerEntry::default();
                entry.view.drained = self.drained.contains(server);
                self.servers.insert(name.clone(), entry);
                name
            }
        };
        let entry = self.servers.entry(name.clone()).or_default();
        (name, entry)
    }

    /// Replaces `server`'s sessions, keeping the per-user index in step.
    fn replace_sessions(&mut self, server: &str, sessions: Vec<SessionView>) {
        let (name, entry) = self.entry(server);
        if entry.view.sessions == sessions {
            return;
        }
        let old = std::mem::replace(&mut entry.view.sessions, sessions);
        for session in &old {
            if let Some(hosts) = self.by_user.get_mut(&session.user) {
                hosts.retain(|host| **host != *server);
                if hosts.is_empty() {
                    self.by_user.remove(&session.user);
                }
            }
        }
        let Some(entry) = self.servers.get(server) else {
            return;
        };
        for session in &entry.view.sessions {
            let hosts = self.by_user.entry(session.user.clone()).or_default();
            if !hosts.iter().any(|host| **host == *server) {
                hosts.push(name.clone());
            }
        }
    }
}

impl FarmState for Balancer {
    fn server(&self, host: &str) -> Option<&ServerView> {
        self.servers.get(host).map(|entry| &entry.view)
    }

    fn hosts_with_sessions_of(&self, user: &str) -> Option<&[Arc<str>]> {
        Some(self.by_user.get(user).map_or(&[], Vec::as_slice))
    }
}

/// The farm state with some hosts taken as down and, in a cluster, every broker's pending
/// placements in place of the local counts.
struct Overlay<'a> {
    state: &'a Balancer,
    changed: Map<&'a str, ServerView>,
}

impl<'a> Overlay<'a> {
    fn new(
        state: &'a Balancer,
        hosts: &'a [String],
        excluded: &'a [String],
        shared: Option<&SharedPlacements>,
    ) -> Overlay<'a> {
        let mut changed: Map<&'a str, ServerView> = Map::default();
        if let Some(shared) = shared {
            for host in hosts {
                if let Some(view) = state.server(host) {
                    let mut view = view.clone();
                    view.pending = shared.pending.get(host).copied().unwrap_or(0);
                    changed.insert(host.as_str(), view);
                }
            }
        }
        for host in excluded {
            let view = match changed.remove(host.as_str()) {
                Some(view) => Some(view),
                None => state.server(host).cloned(),
            };
            if let Some(mut view) = view {
                view.health = Health::Down;
                changed.insert(host.as_str(), view);
            }
        }
        Overlay { state, changed }
    }
}

impl FarmState for Overlay<'_> {
    fn server(&self, host: &str) -> Option<&ServerView> {
        self.changed.get(host).or_else(|| self.state.server(host))
    }

    fn hosts_with_sessions_of(&self, user: &str) -> Option<&[Arc<str>]> {
        self.state.hosts_with_sessions_of(user)
    }
}

impl Actor for Balancer {
    type Context = Context<Self>;
}

impl Handler<AgentReported> for Balancer {
    type Result = ();

    fn handle(&mut self, report: AgentReported, _: &mut Context<Self>) {
        // a legacy agent lists no sessions: placements are only forgotten after their time to live
        tracing::debug!(server = %report.server, health = ?report.health, load_factor = ?report.load_factor, via = ?report.via, sessions = ?report.sessions.as_ref().map(Vec::len), "agent report");
        let sessions = report.sessions.unwrap_or_default();
        let ledger = self.ledger.clone();
        let (name, entry) = self.entry(&report.server);
        if let Some(ledger) = ledger.filter(|_| entry.heard) {
            let users = policy::users_with_new_sessions(&entry.view.sessions, &sessions);
            if !users.is_empty() {
                ledger.confirm(&report.server, users);
            }
        }
        let confirmed =
            policy::confirmed_placements(&entry.view.sessions, &sessions, entry.placed.len());
        entry.placed.drain(..confirmed);
        entry.view.pending = entry.placed.len() as u32;
        entry.view.health = report.health;
        entry.view.load_factor = report.load_factor;
        entry.view.via = Some(report.via);
        entry.heard = true;
        entry.last_heard = Some(Instant::now());
        match report.via {
            Via::Grpc => self.legacy.remove(&*name),
            Via::Ssh | Via::Local => self.legacy.insert(name),
        };
        self.legacy_count
            .store(self.legacy.len(), Ordering::Relaxed);
        self.replace_sessions(&report.server, sessions);
        self.answer_waiters(&report.server);
    }
}

impl Handler<AgentUnreachable> for Balancer {
    type Result = ();

    fn handle(&mut self, event: AgentUnreachable, _: &mut Context<Self>) {
        let (_, entry) = self.entry(&event.server);
        if !entry.heard || entry.view.health != Health::Down {
            tracing::warn!(server = %event.server, "agent unreachable: server marked down");
        }
        entry.heard = true;
        entry.last_heard = Some(Instant::now());
        // placements stay until confirmed or expired: a server back from a short outage
        // (a slow poll) still carries the sessions just sent to it
        entry.view.health = Health::Down;
        self.answer_waiters(&event.server);
    }
}

impl Handler<Forget> for Balancer {
    type Result = ();

    fn handle(&mut self, event: Forget, _: &mut Context<Self>) {
        self.replace_sessions(&event.server, Vec::new());
        self.servers.remove(event.server.as_str());
        self.legacy.remove(event.server.as_str());
        self.legacy_count
            .store(self.legacy.len(), Ordering::Relaxed);
        // its placements in the time-ordered queue expire on their own; `expire` skips
        // servers it no longer knows
    }
}

impl Handler<WaitHeard> for Balancer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, request: WaitHeard, _: &mut Context<Self>) -> Self::Result {
        if self.all_heard(&request.hosts) {
            return Box::pin(async {});
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.heard_waiters.push((request.hosts, sender));
        Box::pin(async move {
            let _ = receiver.await;
        })
    }
}

impl Handler<WaitSuspended> for Balancer {
    type Result = ResponseFuture<Option<SessionView>>;

    fn handle(&mut self, request: WaitSuspended, _: &mut Context<Self>) -> Self::Result {
        if let Some(session) = self.suspended_session(&request) {
            return Box::pin(async move { Some(session) });
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.suspend_waiters.push((request, sender));
        Box::pin(async move { receiver.await.ok().flatten() })
    }
}

impl Handler<SelectServer> for Balancer {
    type Result = MessageResult<SelectServer>;

    fn handle(&mut self, request: SelectServer, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        self.expire(now);
        let decision = if request.excluded.is_empty() && request.shared.is_none() {
            policy::decide(
                &request.hosts,
                &request.user,
                self,
                &request.asked,
                request.ranking,
            )
        } else {
            let state = Overlay::new(
                self,
                &request.hosts,
                &request.excluded,
                request.shared.as_ref(),
            );
            policy::decide_placed(
                &request.hosts,
                &request.user,
                &state,
                &request.asked,
                request.ranking,
                request
                    .shared
                    .as_ref()
                    .and_then(|shared| shared.users_server.as_deref()),
            )
        };
        let via = match &decision {
            Decision::Resume { host, .. }
            | Decision::TakeOver { host, .. }
            | Decision::New { host } => self.server(host).and_then(|view| view.via),
            Decision::NoServer => None,
        };
        if let (Decision::New { host }, true) = (&decision, request.record) {
            let (name, entry) = self.entry(host);
            entry.placed.push_back(now);
            entry.view.pending = entry.placed.len() as u32;
            tracing::debug!(server = %host, user = %request.user, pending = entry.view.pending, load_factor = ?entry.view.load_factor, "new session placed");
            self.placements.push_back((now, name));
        }
        MessageResult(Selected { decision, via })
    }
}

impl Handler<SetLedger> for Balancer {
    type Result = ();

    fn handle(&mut self, event: SetLedger, _: &mut Context<Self>) {
        self.ledger = Some(event.ledger);
    }
}

impl Handler<PlacementAbandoned> for Balancer {
    type Result = ();

    fn handle(&mut self, event: PlacementAbandoned, _: &mut Context<Self>) {
        if let Some(entry) = self.servers.get_mut(event.server.as_str()) {
            entry.placed.pop_back();
            entry.view.pending = entry.placed.len() as u32;
        }
    }
}

impl Handler<ListingStatus> for Balancer {
    type Result = MessageResult<ListingStatus>;

    fn handle(&mut self, request: ListingStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(policy::listing_status(
            &request.hosts,
            &request.user,
            self,
            &request.asked,
        ))
    }
}

impl Handler<LegacyHosts> for Balancer {
    type Result = MessageResult<LegacyHosts>;

    fn handle(&mut self, request: LegacyHosts, _: &mut Context<Self>) -> Self::Result {
        if self.legacy.is_empty() {
            return MessageResult(Vec::new());
        }
        let legacy = request
            .hosts
            .iter()
            .filter(|host| self.legacy.contains(host.as_str()))
            .filter_map(|host| {
                let view = self.server(host)?;
                let via = view.via?;
                (view.health != Health::Down).then(|| (host.clone(), via))
            })
            .collect();
        MessageResult(legacy)
    }
}

impl Handler<SetDrained> for Balancer {
    type Result = ();

    fn handle(&mut self, event: SetDrained, _: &mut Context<Self>) {
        for (name, entry) in self.servers.iter_mut() {
            entry.view.drained = event.servers.contains(&**name);
        }
        self.drained = event.servers;
    }
}

impl Handler<Overview> for Balancer {
    type Result = MessageResult<Overview>;

    fn handle(&mut self, request: Overview, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        self.expire(now);
        let overview = |name: &str, entry: Option<&ServerEntry>| ServerOverview {
            name: name.to_string(),
            view: entry.map(|entry| entry.view.clone()),
            last_heard: entry
                .and_then(|entry| entry.last_heard)
                .map(|heard| now.saturating_duration_since(heard)),
        };
        let mut servers: Vec<ServerOverview> = match &request.hosts {
            Some(hosts) => hosts
                .iter()
                .map(|host| overview(host, self.servers.get(host.as_str())))
                .collect(),
            None => self
                .servers
                .iter()
                .map(|(name, entry)| overview(name, Some(entry)))
                .collect(),
        };
        if request.hosts.is_none() {
            servers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        MessageResult(servers)
    }
}

impl Handler<Barrier> for Balancer {
    type Result = ();

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

impl Handler<GetState> for Balancer {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        self.expire(Instant::now());
        MessageResult(
            self.servers
                .iter()
                .map(|(name, entry)| (name.to_string(), entry.view.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::farm::policy::test_session as user_session;

    /// A ledger that only notes the confirmations it is told of.
    #[derive(Default)]
    struct NotingLedger {
        confirmed: std::sync::Mutex<Vec<(String, Vec<String>)>>,
    }

    impl PlacementLedger for NotingLedger {
        fn open<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a [String],
        ) -> futures::future::BoxFuture<'a, Option<Box<dyn super::super::model::OpenPlacement>>>
        {
            Box::pin(async { None })
        }

        fn confirm(&self, server: &str, users: Vec<String>) {
            self.confirmed
                .lock()
                .unwrap()
                .push((server.to_string(), users));
        }

        fn record_key(
            &self,
            _: super::super::model::OneTimeKey,
            _: Duration,
        ) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    #[actix::test]
    async fn shared_counts_replace_the_local_ones_and_reports_confirm_by_user() {
        let balancer = Balancer::new(Duration::from_secs(60)).start();
        let ledger = Arc::new(NotingLedger::default());
        balancer.do_send(SetLedger {
            ledger: ledger.clone(),
        });
        let hosts: Vec<String> = (1..=3).map(|n| format!("n{n}")).collect();
        for host in &hosts {
            balancer.do_send(AgentReported {
                server: host.clone(),
                sessions: Some(vec![]),
                load_factor: None,
                health: Health::Up,
                via: Via::Grpc,
            });
        }
        let shared = |pending: [u32; 3], users_server: Option<&str>| SharedPlacements {
            pending: hosts.iter().cloned().zip(pending).collect(),
            users_server: users_server.map(str::to_string),
        };
        // (shared counts, the user's earlier server, excluded hosts, expected host)
        let cases: Vec<(SharedPlacements, Vec<String>, &str)> = vec![
            // the other brokers' placements count: n1 and n3 are busier than n2
            (shared([3, 0, 1], None), vec![], "n2"),
            // the user's earlier placement wins over the ranking
            (shared([0, 0, 5], Some("n3")), vec![], "n3"),
            // unless its server is unusable now
            (shared([0, 0, 5], Some("n3")), vec!["n3".into()], "n1"),
        ];
        for (shared, excluded, expected) in cases {
            let selected = balancer
                .send(SelectServer {
                    hosts: hosts.clone().into(),
                    user: "carol".into(),
                    asked: Vec::new(),
                    excluded: excluded.clone(),
                    ranking: Ranking::Sessions,
                    record: false,
                    shared: Some(shared.clone()),
                })
                .await
                .unwrap();
            assert_eq!(
                selected.decision,
                Decision::New {
                    host: expected.into()
                },
                "{shared:?} {excluded:?}"
            );
        }
        // a report with carol's new session on n2 confirms carol's placement there; the
        // first report of a server confirms nothing (it is no news)
        balancer.do_send(AgentReported {
            server: "n2".into(),
            sessions: Some(vec![user_session("c-1", "carol", "n2", 'R')]),
            load_factor: None,
            health: Health::Up,
            via: Via::Grpc,
        });
        balancer.do_send(AgentReported {
            server: "n4".into(),
            sessions: Some(vec![user_session("d-1", "dave", "n4", 'R')]),
            load_factor: None,
            health: Health::Up,
            via: Via::Grpc,
        });
        balancer.send(Barrier).await.unwrap();
        assert_eq!(
            *ledger.confirmed.lock().unwrap(),
            vec![("n2".to_string(), vec!["carol".to_string()])]
        );
    }

    #[actix::test]
    async fn a_login_storm_spreads_and_reports_confirm_placements() {
        let balancer = Balancer::new(Duration::from_secs(60)).start();
        let hosts: Vec<String> = (1..=4).map(|n| format!("n{n}")).collect();
        for host in &hosts {
            balancer.do_send(AgentReported {
                server: host.clone(),
                sessions: Some(vec![]),
                load_factor: None,
                health: Health::Up,
                via: Via::Grpc,
            });
        }
        let mut counts = BTreeMap::new();
        for index in 0..20 {
            let decision = balancer
                .send(SelectServer {
                    hosts: hosts.clone().into(),
                    user: format!("user{index}"),
                    asked: Vec::new(),
                    excluded: Vec::new(),
                    ranking: Ranking::Sessions,
                    record: true,
                    shared: None,
                })
                .await
                .unwrap()
                .decision;
            let Decision::New { host } = decision else {
                panic!("{decision:?}")
            };
            *counts.entry(host).or_insert(0) += 1;
        }
        assert!(counts.values().all(|count| *count == 5), "{counts:?}");
        // n1 reports its five new sessions: its pending placements are confirmed, not doubled
        let sessions: Vec<SessionView> = (0..5)
            .map(|i| user_session(&format!("s{i}"), "u", "n1", 'R'))
            .collect();
        balancer.do_send(AgentReported {
            server: "n1".into(),
            sessions: Some(sessions),
            load_factor: None,
            health: Health::Up,
            via: Via::Grpc,
        });
        let state = balancer.send(GetState).await.unwrap();
        assert_eq!((state["n1"].sessions.len(), state["n1"].pending), (5, 0));
        assert_eq!(state["n2"].pending, 5);
        balancer.do_send(AgentUnreachable {
            server: "n2".into(),
        });
        let decision = balancer
            .send(SelectServer {
                hosts: vec!["n2".to_string()].into(),
                user: "x".into(),
                asked: Vec::new(),
                excluded: Vec::new(),
                ranking: Ranking::Sessions,
                record: true,
                shared: None,
            })
            .await
            .unwrap()
            .decision;
        assert_eq!(decision, Decision::NoServer);
    }

    fn report(server: &str, sessions: Vec<SessionView>) -> AgentReported {
        AgentReported {
            server: server.into(),
            sessions: Some(sessions),
            load_factor: None,
            health: Health::Up,
            via: Via::Grpc,
        }
    }

    async fn select(balancer: &Addr<Balancer>, hosts: &Arc<[String]>, user: &str) -> Decision {
        balancer
            .send(SelectServer {
                hosts: hosts.clone(),
                user: user.into(),
                asked: Vec::new(),
                excluded: Vec::new(),
                ranking: Ranking::Sessions,
                record: true,
                shared: None,
            })
            .await
            .unwrap()
            .decision
    }

    #[actix::test]
    async fn the_user_index_follows_sessions_between_servers() {
        let balancer = Balancer::new(Duration::from_secs(60)).start();
        let hosts: Arc<[String]> = vec!["n1".to_string(), "n2".to_string()].into();
        balancer.do_send(report("n1", vec![user_session("a-1", "alice", "n1", 'S')]));
        balancer.do_send(report("n2", vec![]));
        let Decision::Resume { host, .. } = select(&balancer, &hosts, "alice").await else {
            panic!("alice's suspended session on n1 is resumed")
        };
        assert_eq!(host, "n1");
        // the session ends on n1 and alice has a running one on n2
        balancer.do_send(report("n1", vec![]));
        balancer.do_send(report("n2", vec![user_session("a-2", "alice", "n2", 'R')]));
        let Decision::TakeOver { host, session } = select(&balancer, &hosts, "alice").await else {
            panic!("alice's running session on n2 is taken over")
        };
        assert_eq!((host.as_str(), session.session_id.as_str()), ("n2", "a-2"));
        // gone everywhere: a new session, on the server without one
        balancer.do_send(report("n2", vec![user_session("b-1", "bob", "n2", 'R')]));
        assert_eq!(
            select(&balancer, &hosts, "alice").await,
            Decision::New { host: "n1".into() }
        );
    }

    /// An actix system on a paused tokio clock: sleeps and timeouts advance it at once.
    pub(crate) fn paused_system() -> actix::SystemRunner {
        actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a paused tokio runtime")
        })
    }

    #[test]
    fn unconfirmed_placements_expire_after_their_time_to_live() {
        paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let hosts: Arc<[String]> = vec!["n1".to_string(), "n2".to_string()].into();
            balancer.do_send(report("n1", vec![]));
            balancer.do_send(report("n2", vec![]));
            for index in 0..4 {
                select(&balancer, &hosts, &format!("user{index}")).await;
            }
            let state = balancer.send(GetState).await.unwrap();
            assert_eq!((state["n1"].pending, state["n2"].pending), (2, 2));
            tokio::time::sleep(Duration::from_secs(29)).await;
            select(&balancer, &hosts, "user4").await;
            let state = balancer.send(GetState).await.unwrap();
            assert_eq!((state["n1"].pending, state["n2"].pending), (3, 2));
            // the first four expire at 30 s, the fifth (placed at 29 s) at 59 s
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let state = balancer.send(GetState).await.unwrap();
            assert_eq!((state["n1"].pending, state["n2"].pending), (1, 0));
            tokio::time::sleep(Duration::from_secs(29)).await;
            let state = balancer.send(GetState).await.unwrap();
            assert_eq!((state["n1"].pending, state["n2"].pending), (0, 0));
        });
    }

    #[test]
    fn waiters_are_answered_by_the_events_they_wait_for() {
        paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let hosts: Arc<[String]> = vec!["n1".to_string(), "n2".to_string()].into();
            let heard = balancer.send(WaitHeard {
                hosts: hosts.clone(),
            });
            let suspended = balancer.send(WaitSuspended {
                server: "n1".into(),
                user: "alice".into(),
                session_id: "a-1".into(),
            });
            let balancer_for_events = balancer.clone();
            let events = async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                balancer_for_events
                    .do_send(report("n1", vec![user_session("a-1", "alice", "n1", 'R')]));
                tokio::time::sleep(Duration::from_secs(1)).await;
                balancer_for_events.do_send(AgentUnreachable {
                    server: "n2".into(),
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
                // bob's session of the same id on n1 does not confirm alice's take-over
                balancer_for_events.do_send(report(
                    "n1",
                    vec![
                        user_session("a-1", "alice", "n1", 'R'),
                        user_session("a-1", "bob", "n1", 'S'),
                    ],
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
                balancer_for_events
                    .do_send(report("n1", vec![user_session("a-1", "alice", "n1", 'S')]));
            };
            let started = Instant::now();
            let (heard, suspended, ()) = tokio::join!(
                async {
                    heard.await.unwrap();
                    started.elapsed()
                },
                async {
                    let session = suspended.await.unwrap();
                    (session, started.elapsed())
                },
                events
            );
            // n2's failure is the second event (at 2 s): both hosts are heard of then
            assert_eq!(heard, Duration::from_secs(2));
            let (session, when) = suspended;
            assert_eq!(
                session.map(|s| (s.user, s.status)),
                Some(("alice".to_string(), SessionStatus::Suspended))
            );
            assert_eq!(when, Duration::from_secs(4));
            // once heard, a wait is answered at once
            let again = Instant::now();
            balancer.send(WaitHeard { hosts }).await.unwrap();
            assert_eq!(again.elapsed(), Duration::ZERO);
            // a waiter whose requester gave up is forgotten at the next event
            let abandoned = balancer.send(WaitSuspended {
                server: "n1".into(),
                user: "carol".into(),
                session_id: "c-1".into(),
            });
            assert!(tokio::time::timeout(Duration::from_secs(3), abandoned)
                .await
                .is_err());
            balancer.do_send(report("n1", vec![]));
            balancer.send(Barrier).await.unwrap();
        });
    }

    #[actix::test]
    async fn placements_survive_a_short_outage_of_a_legacy_server() {
        let balancer = Balancer::new(Duration::from_secs(60)).start();
        let hosts: Arc<[String]> = vec!["n1".to_string(), "n2".to_string()].into();
        let legacy = |server: &str| AgentReported {
            server: server.into(),
            sessions: None,
            load_factor: None,
            health: Health::Up,
            via: Via::Ssh,
        };
        balancer.do_send(legacy("n1"));
        balancer.do_send(legacy("n2"));
        for index in 0..4 {
            select(&balancer, &hosts, &format!("user{index}")).await;
        }
        // n1 misses a poll, then answers again: the two sessions sent there still count
        balancer.do_send(AgentUnreachable {
            server: "n1".into(),
        });
        assert_eq!(
            select(&balancer, &hosts, "user4").await,
            Decision::New { host: "n2".into() }
        );
        balancer.do_send(legacy("n1"));
        let state = balancer.send(GetState).await.unwrap();
        assert_eq!((state["n1"].pending, state["n2"].pending), (2, 3));
        assert_eq!(
            select(&balancer, &hosts, "user5").await,
            Decision::New { host: "n1".into() }
        );
    }
}
