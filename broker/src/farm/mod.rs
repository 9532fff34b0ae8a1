//! The live farm state: Supervisor actors watch the agents, a Balancer actor holds the state and decides.
//!
//! The actors run on their own actix System thread; the rest of the broker (tokio) only sees
//! [`FarmHandle`], whose methods send messages and await the answers.

pub mod agentcmd;
pub mod autologin;
pub mod balancer;
pub mod health;
pub mod janitor;
pub mod model;
pub mod pending_keys;
pub mod policy;
pub mod supervisor;
pub mod transport;

#[cfg(test)]
mod golden_select;

pub use crate::config::farm::FarmConfig;
use crate::profiles::{BuiltProfile, Profile};
use crate::reply::Selection;
use actix::prelude::*;
use model::{SessionStatus, SessionView, Via};
use policy::Decision;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use transport::grpc::{GrpcTarget, TlsSettings};
use transport::local::LocalAgent;
use transport::ssh::{SshAgent, SshSettings, SshTarget};
use transport::Transport;

pub use model::AgentMode;

/// A profile's agent settings, resolved from the config by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    pub mode: AgentMode,
    /// `agent-hostkey-policy` (RejectPolicy, AutoAddPolicy, WarningPolicy).
    pub host_key_policy: String,
}

/// How a profile's server is chosen, beyond the live state.
#[derive(Debug, Clone, Copy)]
pub struct ServerChoice {
    /// §10.2 step 6e: skip servers whose X2Go SSH port is closed.
    pub portscan: bool,
    /// Load factors weigh the ranking only for profiles that use the load checker (§11.3).
    pub ranking: policy::Ranking,
}

/// How one server is reached, as the profile that first named it configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerPlan {
    mode: AgentMode,
    host_key_policy: String,
    address: String,
    ssh_port: u16,
}

/// What the farm keeps per server name: how it is reached and its supervisor, which owns
/// the server's transports.
struct ServerEntry {
    plan: ServerPlan,
    /// The profile that named the server first.
    profile_id: String,
    supervisor: Addr<supervisor::Supervisor>,
}

/// The broker's handle on the farm's actors.
pub struct FarmHandle {
    /// What the farm runs with, swapped whole by a reload.
    runtime: std::sync::RwLock<Arc<FarmRuntime>>,
    balancer: Addr<balancer::Balancer>,
    /// How many servers report through the legacy agent (kept by the balancer).
    legacy_servers: Arc<AtomicUsize>,
    janitor: Addr<janitor::KeyJanitor>,
    arbiter: ArbiterHandle,
    system: actix::System,
    /// The one registry of servers: checked and filled under one lock.
    servers: Mutex<HashMap<String, ServerEntry>>,
    /// Host lists (of built profiles) whose every host is supervised and has been heard of:
    /// a request for such a profile goes straight to the balancer. Weak, so a dead list's
    /// address is never reused here.
    settled: Mutex<Vec<Weak<[String]>>>,
    /// Per legacy server, the other servers whose sessions its answers listed (its DB's view).
    legacy_views: Mutex<HashMap<String, BTreeSet<String>>>,
    /// A listing's legacy answers per (user, host list), for that user's next selection.
    recent_answers: Mutex<HashMap<AnswerKey, (Instant, Vec<SessionView>)>>,
    /// Told of every agent call and failure (the broker's metrics).
    observer: Option<Arc<dyn model::AgentObserver>>,
    /// In a cluster (`[cluster]`), the placements every broker shares.
    ledger: std::sync::OnceLock<Arc<dyn model::PlacementLedger>>,
}

/// The farm's configuration and what its files hold (the agents' token, TLS material).
#[derive(Debug, PartialEq)]
pub struct FarmRuntime {
    pub config: FarmConfig,
    token: Option<Arc<str>>,
    tls: Option<Arc<TlsSettings>>,
    ssh: Option<Arc<SshSettings>>,
}

impl FarmRuntime {
    /// Reads the files `config` names.
    fn load(config: FarmConfig) -> Result<FarmRuntime, FarmError> {
        let token = match &config.token_file {
            Some(path) => Some(Arc::from(
                String::from_utf8_lossy(&read(path)?).trim().to_string(),
            )),
            None => None,
        };
        let tls = match &config.tls_files {
            Some((ca, identity)) => Some(Arc::new(TlsSettings {
                ca_pem: read(ca)?,
                client_identity: match identity {
                    Some((certificate, key)) => Some((read(certificate)?, read(key)?)),
                    None => None,
                },
            })),
            None => None,
        };
        Ok(FarmRuntime {
            ssh: config.ssh.clone().map(Arc::new),
            config,
            token,
            tls,
        })
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reloaded {
    /// Supervisors restarted with the new settings.
    pub restarted: usize,
}

/// A user and a profile's host list: what a kept legacy answer is for.
type AnswerKey = (String, Arc<[String]>);

/// Whether a request may use a listing's legacy answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// A listing: ask, and keep the answer for the user's next selection.
    Keep,
    /// A selection: use (and consume) a recent listing's answer, else ask.
    Take,
    /// An explanation: use a recent listing's answer without consuming it, else ask.
    Peek,
    /// A take-over must see the current state: always ask.
    Fresh,
}

/// Most answers kept for reuse (each is one user's sessions on one profile).
const MAX_RECENT_ANSWERS: usize = 10_000;

/// Why the farm could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
    #[error("the actor system did not start")]
    System,
}

/// Where a selection came from, for the request log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resumed,
    TookOver,
    New,
    NoServer,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, FarmError> {
    std::fs::read(path).map_err(|error| FarmError::File(path.display().to_string(), error))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FarmHandle {
    /// Starts the actor system on its own thread.
    pub fn start(config: FarmConfig) -> Result<FarmHandle, FarmError> {
        let runtime = FarmRuntime::load(config)?;
        let pending_ttl = runtime.config.pending_ttl;
        let key_file = runtime
            .config
            .pending_keys_file
            .clone()
            .map(pending_keys::PendingKeyFile::new);
        let left = key_file
            .as_ref()
            .map(pending_keys::PendingKeyFile::load)
            .unwrap_or_default();
        if !left.is_empty() {
            tracing::info!(
                keys = left.len(),
                "farm: one-time autologin keys left waiting by the previous run"
            );
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("farm-actors".to_string())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let balancer = balancer::Balancer::new(pending_ttl);
                    let legacy_servers = balancer.legacy_count();
                    let balancer = balancer.start();
                    let janitor = janitor::KeyJanitor::new(key_file, left).start();
                    let _ = sender.send((
                        balancer,
                        legacy_servers,
                        janitor,
                        Arbiter::current(),
                        actix::System::current(),
                    ));
                });
                let _ = system.run();
            })
            .map_err(|_| FarmError::System)?;
        let (balancer, legacy_servers, janitor, arbiter, system) =
            receiver.recv().map_err(|_| FarmError::System)?;
        Ok(FarmHandle {
            runtime: std::sync::RwLock::new(Arc::new(runtime)),
            balancer,
            legacy_servers,
            janitor,
            arbiter,
            system,
            servers: Mutex::new(HashMap::new()),
            settled: Mutex::new(Vec::new()),
            legacy_views: Mutex::new(HashMap::new()),
            recent_answers: Mutex::new(HashMap::new()),
            observer: None,
            ledger: std::sync::OnceLock::new(),
        })
    }

    /// Tells `observer` of every agent call and failure of the supervisors started from now
    /// on (set it before the first server is supervised).
    pub fn observed_by(mut self, observer: Arc<dyn model::AgentObserver>) -> FarmHandle {
        self.observer = Some(observer);
        self
    }

    /// Removes a one-time autologin key now through `key.server`'s supervisor (in a
    /// cluster: an expired key, whichever broker installed it). Answers whether the agent did.
    pub async fn remove_key_now(&self, key: &model::OneTimeKey) -> Result<(), String> {
        let remove = supervisor::AgentCall::AuthorizedKey {
            user: key.user.clone(),
            key: key.key.clone(),
            key_file: key.key_file.clone(),
            add: false,
        };
        self.call(&key.server, remove).await.map(|_| ())
    }

    /// Shares placements with the other brokers of a cluster through `ledger` from now on
    /// (set once, at start-up; without it the farm counts its own placements only).
    pub fn share_placements(&self, ledger: Arc<dyn model::PlacementLedger>) {
        if self.ledger.set(ledger.clone()).is_ok() {
            self.balancer.do_send(balancer::SetLedger { ledger });
        }
    }

    /// The configuration the farm runs with (which profiles it drives:
    /// [`crate::config::effective_agent_mode`]).
    pub fn runtime(&self) -> Arc<FarmRuntime> {
        self.runtime
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether this host list is known to be supervised and heard of.
    fn is_settled(&self, hosts: &Arc<[String]>) -> bool {
        let wanted = Arc::as_ptr(hosts);
        lock(&self.settled)
            .iter()
            .any(|known| std::ptr::addr_eq(known.as_ptr(), wanted))
    }

    /// Starts a Supervisor for every host of `built` that has none yet; true if it did.
    pub fn supervise(&self, built: &BuiltProfile, plan: &AgentPlan) -> bool {
        self.start_supervisors(&built.profile, plan)
    }

    /// How `profile` reaches `host`.
    fn server_plan(profile: &Profile, host: &str, plan: &AgentPlan) -> ServerPlan {
        let port = profile
            .host_port(host)
            .unwrap_or_else(|| profile.ssh_port());
        ServerPlan {
            mode: plan.mode,
            host_key_policy: plan.host_key_policy.clone(),
            address: profile
                .host_address(host)
                .unwrap_or_else(|| host.to_string()),
            ssh_port: u16::try_from(port).unwrap_or(22),
        }
    }

    /// The supervisor of one server, with the transports its plan gives it.
    fn new_supervisor(
        &self,
        runtime: &FarmRuntime,
        host: &str,
        plan: &ServerPlan,
    ) -> Addr<supervisor::Supervisor> {
        let address = &plan.address;
        let grpc = match (plan.mode, runtime.config.agent_port) {
            (AgentMode::Grpc, Some(port)) => Some(GrpcTarget {
                server: host.to_string(),
                address: if address.contains(':') && !address.starts_with('[') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                },
                token: runtime.token.clone(),
                tls: runtime.tls.clone(),
                timeout: runtime.config.call_timeout,
            }),
            _ => None,
        };
        let wants_ssh = plan.mode == AgentMode::Ssh
            || (plan.mode == AgentMode::Grpc && runtime.config.ssh_fallback);
        let legacy = match (&runtime.ssh, wants_ssh) {
            _ if plan.mode == AgentMode::Local => Some(Transport::Local(Arc::new(LocalAgent {
                agent_command: runtime.config.agent_command.clone(),
                timeout: runtime.config.call_timeout,
            }))),
            (Some(settings), true) => Some(Transport::Ssh(Arc::new(SshAgent::new(
                settings.clone(),
                SshTarget {
                    address: address.trim_matches(['[', ']']).to_string(),
                    port: plan.ssh_port,
                    host_key_check: agentcmd::host_key_check(Some(&plan.host_key_policy)),
                    timeout: runtime.config.call_timeout,
                },
            )))),
            _ => None,
        };
        tracing::info!(server = %host, grpc = ?grpc.as_ref().map(|target| &target.address), legacy = ?legacy.as_ref().map(Transport::via), "supervising");
        let actor = supervisor::Supervisor::new(
            host.to_string(),
            grpc,
            legacy,
            supervisor::SupervisorSettings {
                heartbeat: runtime.config.heartbeat,
                timeout: runtime.config.call_timeout,
                max_backoff: Duration::from_secs(10),
                grpc_retry: runtime.config.grpc_retry,
                legacy_poll: runtime.config.legacy_poll,
                load_interval: runtime.config.load_interval,
            },
            self.balancer.clone(),
        )
        .observed_by(self.observer.clone());
        supervisor::Supervisor::start_in_arbiter(&self.arbiter, move |_| actor)
    }

    /// Checks for and starts each host's supervisor in one step under the registry lock (two
    /// concurrent first requests never start two); a profile that configures a known server
    /// differently is logged (the first profile's plan stays).
    fn start_supervisors(&self, profile: &Profile, plan: &AgentPlan) -> bool {
        let runtime = self.runtime();
        let mut started = false;
        let mut registry = lock(&self.servers);
        for host in profile.host_names() {
            let wanted = Self::server_plan(profile, host, plan);
            if let Some(known) = registry.get(host.as_str()) {
                if known.plan != wanted && known.profile_id != profile.id {
                    tracing::warn!(server = %host, profile = %profile.id, first_profile = %known.profile_id,
                        wanted = ?wanted, kept = ?known.plan,
                        "profiles disagree about how to reach a server: the first profile's settings are kept");
                }
                continue;
            }
            started = true;
            let supervisor = self.new_supervisor(&runtime, host, &wanted);
            registry.insert(
                host.clone(),
                ServerEntry {
                    plan: wanted,
                    profile_id: profile.id.clone(),
                    supervisor,
                },
            );
        }
        started
    }

    /// Supervises `profile`'s hosts and, until the balancer has heard of each (a report or a
    /// failure), waits for that, so that no request is answered blind: at most heartbeat +
    /// call timeout, the silence after which a watch stream counts as dead anyway. Once
    /// heard, the host list is settled and costs no message.
    async fn supervise_and_settle(&self, built: &BuiltProfile, plan: &AgentPlan) {
        if self.is_settled(&built.hosts) {
            return;
        }
        self.supervise(built, plan);
        let limit = self.runtime().config.heartbeat + self.runtime().config.call_timeout;
        let wait = self.balancer.send(balancer::WaitHeard {
            hosts: built.hosts.clone(),
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(())) => {
                let mut settled = lock(&self.settled);
                settled.retain(|known| known.strong_count() > 0);
                settled.push(Arc::downgrade(&built.hosts));
            }
            _ => {
                tracing::warn!(profile = %built.profile.id, "answering before every new server's first report")
            }
        }
    }

    /// Every server the balancer knows, by name, with its last report's age (admin API,
    /// metrics, status page).
    pub async fn overview(&self) -> Vec<balancer::ServerOverview> {
        self.balancer
            .send(balancer::Overview { hosts: None })
            .await
            .unwrap_or_default()
    }

    /// Applies the drained servers (the whole set) to the balancer's decisions.
    pub fn set_drained(&self, servers: BTreeSet<String>) {
        self.balancer.do_send(balancer::SetDrained { servers });
    }

    /// Whether `host` is a server the farm supervises.
    pub fn supervises(&self, host: &str) -> bool {
        lock(&self.servers).contains_key(host)
    }

    /// The whole farm's state as the balancer holds it (for tests and diagnostics).
    pub async fn state(&self) -> BTreeMap<String, policy::ServerView> {
        self.balancer
            .send(balancer::GetState)
            .await
            .unwrap_or_default()
    }

    fn supervisor_addresses(&self) -> Vec<Addr<supervisor::Supervisor>> {
        lock(&self.servers)
            .values()
            .map(|entry| entry.supervisor.clone())
            .collect()
    }

    /// Every supervisor's own state.
    pub async fn supervisors(&self) -> Vec<supervisor::SupervisorState> {
        let mut states = Vec::new();
        for address in self.supervisor_addresses() {
            if let Ok(state) = address.send(supervisor::GetState).await {
                states.push(state);
            }
        }
        states.sort_by(|a, b| a.server.cmp(&b.server));
        states
    }

    /// The key janitor's state.
    pub async fn janitor(&self) -> janitor::JanitorState {
        self.janitor
            .send(janitor::GetState)
            .await
            .unwrap_or_default()
    }

    /// The supervisor of `host`, which owns its transports.
    /// Hands the keys a previous run left waiting to the janitor, each with its server's
    /// supervisor (call once the servers of the profiles are supervised).
    pub async fn resume_pending_keys(&self) {
        let Some(file) = &self.runtime().config.pending_keys_file else {
            return;
        };
        let left = pending_keys::PendingKeyFile::new(file.clone()).load();
        if left.is_empty() {
            return;
        }
        let keys = left
            .into_iter()
            .map(|key| {
                let supervisor = self.supervisor(&key.server);
                (key, supervisor)
            })
            .collect();
        let _ = self.janitor.send(janitor::Resume(keys)).await;
    }

    fn supervisor(&self, host: &str) -> Option<Addr<supervisor::Supervisor>> {
        lock(&self.servers)
            .get(host)
            .map(|entry| entry.supervisor.clone())
    }

    /// One agent call through `host`'s supervisor.
    async fn call(
        &self,
        host: &str,
        call: supervisor::AgentCall,
    ) -> Result<supervisor::CallAnswer, String> {
        let Some(supervisor) = self.supervisor(host) else {
            return Err(format!("{host} is not supervised"));
        };
        match supervisor.send(supervisor::Call(call)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The user's sessions on `host` as its agent lists them; an agent that answers without
    /// `OK` (e.g. for a user it has no account for) lists none (`Asked::Refused`).
    async fn user_sessions(&self, host: &str, user: &str) -> Asked {
        let Some(supervisor) = self.supervisor(host) else {
            return Asked::Failed(format!("{host} is not supervised"));
        };
        let call = supervisor::Call(supervisor::AgentCall::UserSessions {
            user: user.to_string(),
        });
        match supervisor.send(call).await {
            Ok(Ok(supervisor::CallAnswer::Sessions(sessions))) => Asked::Sessions(sessions),
            Ok(Ok(supervisor::CallAnswer::Done)) => Asked::Sessions(Vec::new()),
            Ok(Err(error)) if error.is_refusal() => Asked::Refused(error.to_string()),
            Ok(Err(error)) => Asked::Failed(error.to_string()),
            Err(error) => Asked::Failed(error.to_string()),
        }
    }

    /// The user's sessions from the profile's servers reached through the legacy agent (it
    /// reports no session lists, so they are asked per request, each bounded by the call
    /// timeout): as few servers as `legacy-shared-session-db` allows
    /// (`policy::legacy_hosts_to_ask`), the LOCAL agent once; a listing's answer serves the
    /// user's next selection for `legacy-answer-reuse-ms` (X2Go Client lists, then selects),
    /// unless an ask failed. Answers whether the sessions came from such a reuse, and the
    /// servers a failed ask leaves unvouched for (`policy::unvouched_legacy_hosts`).
    async fn ask_legacy_agents(
        &self,
        hosts: &Arc<[String]>,
        user: &str,
        reuse: Reuse,
    ) -> LegacyAnswers {
        let nothing = |reused| LegacyAnswers {
            sessions: Vec::new(),
            reused,
            unvouched: Vec::new(),
        };
        if user.is_empty() || self.legacy_servers.load(Ordering::Relaxed) == 0 {
            return nothing(false);
        }
        let key = (user.to_string(), hosts.clone());
        if matches!(reuse, Reuse::Take | Reuse::Peek) {
            let recent = if reuse == Reuse::Take {
                lock(&self.recent_answers).remove(&key)
            } else {
                lock(&self.recent_answers).get(&key).cloned()
            };
            if let Some((asked_at, sessions)) = recent {
                if asked_at.elapsed() <= self.runtime().config.legacy_reuse {
                    return LegacyAnswers {
                        sessions,
                        ..nothing(true)
                    };
                }
            }
        }
        let legacy = self
            .balancer
            .send(balancer::LegacyHosts {
                hosts: hosts.clone(),
            })
            .await
            .unwrap_or_default();
        let asked_hosts = {
            let views = lock(&self.legacy_views);
            policy::legacy_hosts_to_ask(
                &legacy,
                |host| views.get(host),
                self.runtime().config.shared_session_db,
            )
        };
        let asks = asked_hosts.iter().map(|host| async move {
            let answer = self.user_sessions(host, user).await;
            (host, answer)
        });
        let mut sessions: Vec<SessionView> = Vec::new();
        let (mut answered, mut any_failed) = (Vec::new(), false);
        for (host, answer) in futures::future::join_all(asks).await {
            match answer {
                Asked::Refused(error) => {
                    // the agent answered: no sessions of this user there
                    answered.push(host.clone());
                    tracing::debug!(user, %host, %error, "legacy agent listed no sessions");
                }
                Asked::Sessions(found) => {
                    answered.push(host.clone());
                    let seen = policy::hosts_seen_by(host, &found, hosts);
                    if !seen.is_empty() {
                        lock(&self.legacy_views)
                            .entry(host.clone())
                            .or_default()
                            .extend(seen);
                    }
                    for session in found {
                        if !sessions
                            .iter()
                            .any(|known| known.session_id == session.session_id)
                        {
                            sessions.push(session);
                        }
                    }
                }
                Asked::Failed(error) => {
                    any_failed = true;
                    tracing::warn!(user, %host, %error, "legacy agent did not list sessions")
                }
            }
        }
        let unvouched = {
            let views = lock(&self.legacy_views);
            policy::unvouched_legacy_hosts(
                &legacy,
                &answered,
                any_failed,
                |host| views.get(host),
                self.runtime().config.shared_session_db,
            )
        };
        if !unvouched.is_empty() {
            tracing::warn!(user, servers = ?unvouched, "the user's sessions there are unknown (an agent did not answer): not selected for this request");
        }
        tracing::debug!(user, asked = ?asked_hosts, sessions = sessions.len(), "legacy agents asked");
        if reuse == Reuse::Keep && !any_failed {
            let mut recent = lock(&self.recent_answers);
            let reuse_for = self.runtime().config.legacy_reuse;
            if recent.len() >= MAX_RECENT_ANSWERS {
                recent.retain(|_, (asked_at, _)| asked_at.elapsed() <= reuse_for);
            }
            if recent.len() < MAX_RECENT_ANSWERS {
                recent.insert(key, (Instant::now(), sessions.clone()));
            }
        }
        LegacyAnswers {
            sessions,
            reused: false,
            unvouched,
        }
    }

    /// §7.4 step 6 from live state; `None` when nothing is known yet.
    pub async fn listing_status(
        &self,
        built: &BuiltProfile,
        plan: &AgentPlan,
        user: &str,
    ) -> Option<(String, Option<SessionStatus>)> {
        self.supervise_and_settle(built, plan).await;
        let answers = self
            .ask_legacy_agents(&built.hosts, user, Reuse::Keep)
            .await;
        let request = balancer::ListingStatus {
            hosts: built.hosts.clone(),
            user: user.to_string(),
            asked: answers.sessions,
        };
        self.balancer.send(request).await.ok().flatten()
    }

    /// §10.2 from live state: resume, take over (suspend, then confirm within a bounded wait),
    /// or the best healthy server; then the autologin key, installed only for `user`.
    pub async fn select(
        &self,
        built: &BuiltProfile,
        plan: &AgentPlan,
        user: &str,
        client_ip: &IpAddr,
        choice: ServerChoice,
        autologin: Option<AutologinRequest>,
    ) -> (Selection, Outcome) {
        let Chosen {
            decision,
            via,
            mut selection,
            ..
        } = self
            .choose(built, plan, user, choice, Choosing::Select)
            .await;
        let (host, outcome) = match decision {
            Decision::Resume { host, .. } => (host, Outcome::Resumed),
            Decision::TakeOver { host, session } => {
                if let Some(line) = self.take_over(&host, via, user, &session).await {
                    selection.session_info = Some(line);
                }
                (host, Outcome::TookOver)
            }
            Decision::New { host } => (host, Outcome::New),
            Decision::NoServer => return (selection, Outcome::NoServer),
        };
        if let Some(autologin) = autologin {
            self.install_key(&host, user, client_ip, autologin, &mut selection)
                .await;
        }
        (selection, outcome)
    }

    /// What [`FarmHandle::select`] would decide now, through the same steps (legacy asks,
    /// port scan, the balancer's decision), with no side effect: no placement recorded, no
    /// listing answer consumed, no suspend, no key. Every host's reason comes with it.
    pub async fn explain(
        &self,
        built: &BuiltProfile,
        plan: &AgentPlan,
        user: &str,
        choice: ServerChoice,
    ) -> Explanation {
        let chosen = self
            .choose(built, plan, user, choice, Choosing::Explain)
            .await;
        let overview = self
            .balancer
            .send(balancer::Overview {
                hosts: Some(built.hosts.clone()),
            })
            .await
            .unwrap_or_default();
        let views: BTreeMap<String, policy::ServerView> = overview
            .into_iter()
            .filter_map(|server| Some((server.name, server.view?)))
            .collect();
        let left_out: Vec<(String, policy::LeftOut)> = chosen
            .exclusions
            .iter()
            .map(|exclusion| (exclusion.host.clone(), policy::LeftOut::PortClosed))
            .chain(
                chosen
                    .unvouched
                    .iter()
                    .map(|host| (host.clone(), policy::LeftOut::Unvouched)),
            )
            .collect();
        let hosts = policy::explain_hosts(
            &built.hosts,
            &views,
            choice.ranking,
            &chosen.decision,
            &left_out,
        );
        Explanation {
            decision: chosen.decision,
            selection: chosen.selection,
            hosts,
        }
    }

    /// The decision for a selection or an explanation: the legacy agents asked (a take-over
    /// always sees fresh answers), the balancer's decision, repeated past servers whose X2Go
    /// port the scan finds closed.
    async fn choose(
        &self,
        built: &BuiltProfile,
        plan: &AgentPlan,
        user: &str,
        choice: ServerChoice,
        choosing: Choosing,
    ) -> Chosen {
        self.supervise_and_settle(built, plan).await;
        let profile = &built.profile;
        let reuse = match choosing {
            Choosing::Select => Reuse::Take,
            Choosing::Explain => Reuse::Peek,
        };
        let mut answers = self.ask_legacy_agents(&built.hosts, user, reuse).await;
        let would_take_over = !answers
            .sessions
            .iter()
            .any(|session| session.status == SessionStatus::Suspended)
            && answers
                .sessions
                .iter()
                .any(|session| session.status == SessionStatus::Running);
        if answers.reused && would_take_over {
            // a take-over must see the current state, not the listing's
            answers = self
                .ask_legacy_agents(&built.hosts, user, Reuse::Fresh)
                .await;
        }
        let asked = answers.sessions;
        let unvouched = answers.unvouched;
        let record = choosing == Choosing::Select;
        // in a cluster: the profile's placements serialised across brokers, every broker's
        // pending placements counted (no ledger reachable: this broker's own only)
        let open_placement = match self.ledger.get() {
            Some(ledger) => ledger.open(&profile.id, user, &built.hosts).await,
            None => None,
        };
        let shared = open_placement
            .as_ref()
            .map(|placement| placement.shared().clone());
        let decide = |excluded: Vec<String>| {
            let request = balancer::SelectServer {
                hosts: built.hosts.clone(),
                user: user.to_string(),
                asked: asked.clone(),
                // servers a failed ask leaves unvouched for are never chosen, nor those
                // whose port the scan found closed
                excluded: unvouched.iter().cloned().chain(excluded).collect(),
                ranking: choice.ranking,
                record,
                shared: shared.clone(),
            };
            async move {
                let balancer::Selected { decision, via } = self
                    .balancer
                    .send(request)
                    .await
                    .unwrap_or(balancer::Selected {
                        decision: Decision::NoServer,
                        via: None,
                    });
                let selection = policy::selection_for(profile, &decision);
                (decision, (via, selection))
            }
        };
        let probe = |decision: &Decision, (_, selection): &(Option<Via>, Selection)| {
            let host = decision.host().unwrap_or_default().to_string();
            let (address, port) = (selection.server.clone(), selection.port);
            async move { crate::select::x2go_port_open(&host, &address, port).await }
        };
        let (decision, (via, selection), exclusions) =
            policy::decide_with_port_scan(choice.portscan, decide, probe).await;
        for exclusion in &exclusions {
            // §10.2 step 6e: a server whose X2Go SSH port is closed was skipped (a session
            // there is a zombie)
            tracing::warn!(host = %exclusion.host, "X2Go server port closed: skipped");
            if exclusion.abandon_placement && record {
                self.balancer.do_send(balancer::PlacementAbandoned {
                    server: exclusion.host.clone(),
                });
            }
        }
        if let Some(placement) = open_placement {
            let placed_on = match (&decision, record) {
                (Decision::New { host }, true) => Some(host.clone()),
                _ => None,
            };
            placement.close(placed_on).await;
        }
        Chosen {
            decision,
            via,
            selection,
            exclusions,
            unvouched,
        }
    }

    /// Suspends the user's running session and waits, within the take-over wait, for the
    /// agent to confirm it: from the watch stream's reports (gRPC: the balancer answers when
    /// a report shows the session suspended), else by asking the legacy agent again.
    async fn take_over(
        &self,
        host: &str,
        via: Option<Via>,
        user: &str,
        session: &SessionView,
    ) -> Option<String> {
        let wait = self.runtime().config.takeover_wait;
        let deadline = Instant::now() + wait;
        let suspend = supervisor::AgentCall::Suspend {
            user: user.to_string(),
            session_id: session.session_id.clone(),
            timeout: wait,
        };
        if let Err(error) = self.call(host, suspend).await {
            tracing::error!(%host, session = %session.session_id, %error, "could not suspend the running session");
            return None;
        }
        let confirmed = if via == Some(Via::Grpc) {
            let confirmation = self.balancer.send(balancer::WaitSuspended {
                server: host.to_string(),
                user: user.to_string(),
                session_id: session.session_id.clone(),
            });
            tokio::time::timeout_at(deadline, confirmation)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        } else {
            self.ask_until_suspended(host, user, &session.session_id, deadline)
                .await
        };
        match confirmed {
            Some(now) => Some(now.raw_line),
            None => {
                tracing::warn!(%host, session = %session.session_id, "suspension not confirmed within the take-over wait");
                None
            }
        }
    }

    /// Asks a legacy agent (whose reports carry no sessions) until the session shows up
    /// suspended or `deadline` passes.
    async fn ask_until_suspended(
        &self,
        host: &str,
        user: &str,
        session_id: &str,
        deadline: Instant,
    ) -> Option<SessionView> {
        while Instant::now() < deadline {
            let asked = tokio::time::timeout_at(deadline, self.user_sessions(host, user)).await;
            if let Ok(Asked::Sessions(sessions)) = asked {
                if let Some(now) = policy::takeover_confirmed(&sessions, user, session_id) {
                    return Some(now.clone());
                }
            }
            tokio::time::sleep(LEGACY_CONFIRM_INTERVAL).await;
        }
        None
    }

    async fn install_key(
        &self,
        host: &str,
        user: &str,
        client_ip: &IpAddr,
        autologin: AutologinRequest,
        selection: &mut Selection,
    ) {
        let (key, private_pem) = if autologin.pubkey.is_empty() {
            let (key_user, client) = (user.to_string(), client_ip.to_string());
            match tokio::task::spawn_blocking(move || autologin::generate(&key_user, &client)).await
            {
                Ok(Ok(pair)) => (pair.authorized_line, Some(pair.private_pem)),
                Ok(Err(error)) => {
                    tracing::error!(%error, "autologin key generation failed");
                    return;
                }
                Err(_) => return,
            }
        } else {
            (autologin.pubkey.clone(), None)
        };
        let Some(supervisor) = self.supervisor(host) else {
            return;
        };
        if let Some(ledger) = self.ledger.get() {
            // in a cluster: recorded before it is installed, so that no broker's death leaves
            // it behind
            let shared_key = model::OneTimeKey {
                server: host.to_string(),
                user: user.to_string(),
                key: key.clone(),
                key_file: autologin.key_file.clone(),
            };
            ledger
                .record_key(shared_key, self.runtime().config.key_lifetime)
                .await;
        }
        let add = supervisor::AgentCall::AuthorizedKey {
            user: user.to_string(),
            key: key.clone(),
            key_file: autologin.key_file.clone(),
            add: true,
        };
        match self.call(host, add).await {
            Ok(_) => {
                selection.pubkey_accepted = private_pem.is_none();
                selection.private_key = private_pem;

                self.janitor.do_send(janitor::RemoveKeyLater {
                    server: host.to_string(),
                    supervisor,
                    user: user.to_string(),
                    key,
                    key_file: autologin.key_file,
                    after: self.runtime().config.key_lifetime,
                });
            }
            Err(error) => {
                tracing::error!(%host, user, %error, "could not install the autologin key")
            }
        }
    }

    /// Applies a new configuration (SIGHUP): the token and TLS files are read again (a file
    /// that cannot be read leaves the running farm as it is), and when anything changed every
    /// supervisor is replaced by one with the new settings. The balancer keeps each server's
    /// state meanwhile (a replaced supervisor's first report refreshes it), so no request
    /// sees a server vanish; waiting key removals follow their server's new supervisor.
    pub fn reload(&self, config: FarmConfig) -> Result<Reloaded, FarmError> {
        let runtime = Arc::new(FarmRuntime::load(config)?);
        if *self.runtime() == *runtime {
            return Ok(Reloaded::default());
        }
        *self
            .runtime
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = runtime.clone();
        let mut restarted = 0;
        let mut registry = lock(&self.servers);
        for (host, entry) in registry.iter_mut() {
            let replacement = self.new_supervisor(&runtime, host, &entry.plan);
            let old = std::mem::replace(&mut entry.supervisor, replacement.clone());
            old.do_send(supervisor::Stop);
            self.janitor.do_send(janitor::Rebind {
                server: host.clone(),
                supervisor: replacement,
            });
            restarted += 1;
        }
        drop(registry);
        lock(&self.settled).clear();
        Ok(Reloaded { restarted })
    }

    /// Stops supervising every server not in `wanted` (no profile names it any more) and
    /// forgets its state. Answers how many were stopped.
    pub fn retain_servers(&self, wanted: &std::collections::HashSet<String>) -> usize {
        let removed: Vec<(String, ServerEntry)> = {
            let mut registry = lock(&self.servers);
            let gone: Vec<String> = registry
                .keys()
                .filter(|host| !wanted.contains(*host))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|host| registry.remove(&host).map(|entry| (host, entry)))
                .collect()
        };
        for (host, entry) in &removed {
            tracing::info!(server = %host, "no profile names this server any more: not supervised");
            entry.supervisor.do_send(supervisor::Stop);
            self.balancer.do_send(balancer::Forget {
                server: host.clone(),
            });
        }
        if !removed.is_empty() {
            lock(&self.settled).clear();
        }
        removed.len()
    }

    /// Stops the farm in order, after the HTTP side has drained: the waiting one-time keys
    /// are removed now (each bounded by the call timeout), then the supervisors stop (their
    /// watch streams and polls end), then the actor system.
    pub async fn shutdown(&self) {
        let limit = self.runtime().config.call_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.janitor.send(janitor::RemoveAllNow)).await {
            Ok(Ok(removed)) => tracing::info!(removed, "farm: waiting autologin keys removed"),
            _ => tracing::warn!("farm: not every waiting autologin key could be removed"),
        }
        let supervisors: Vec<_> = lock(&self.servers)
            .drain()
            .map(|(_, entry)| entry.supervisor)
            .collect();
        for supervisor in &supervisors {
            let _ = supervisor.send(supervisor::Stop).await;
        }
        tracing::info!(supervisors = supervisors.len(), "farm: supervisors stopped");
        self.system.stop();
    }
}

/// How often a legacy agent is asked whether a take-over's suspension happened.
const LEGACY_CONFIRM_INTERVAL: Duration = Duration::from_millis(100);

/// Whether a decision is for a selection (with its side effects) or an explanation (none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choosing {
    Select,
    Explain,
}

/// A decision and how it was reached.
struct Chosen {
    decision: Decision,
    /// The transport of the chosen server's last report.
    via: Option<Via>,
    selection: Selection,
    /// Servers the port scan found closed.
    exclusions: Vec<policy::Exclusion>,
    /// Servers whose legacy agent could not be asked.
    unvouched: Vec<String>,
}

/// What [`FarmHandle::explain`] answers.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    /// The answer `selectsession` would give (before a take-over's confirmed line and a key).
    pub selection: Selection,
    /// Every host of the profile with its reason.
    pub hosts: Vec<policy::HostReason>,
}

/// What one legacy agent answered about a user's sessions.
enum Asked {
    Sessions(Vec<SessionView>),
    /// It answered without `OK`: no sessions of the user there.
    Refused(String),
    /// No answer (connection lost, timeout, a failure after `OK`).
    Failed(String),
}

/// What a request's asks of the legacy agents gave.
struct LegacyAnswers {
    /// The user's sessions they listed.
    sessions: Vec<SessionView>,
    /// Whether they are a recent listing's answer, reused.
    reused: bool,
    /// The servers whose sessions are unknown because an ask failed: not selected.
    unvouched: Vec<String>,
}

/// An autologin key to install with the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutologinRequest {
    /// The client's own public key (Python X2Go sends one), or empty to generate a pair.
    pub pubkey: String,
    /// The authorized_keys path (`%h/.x2go/authorized_keys` by default).
    pub key_file: String,
}
