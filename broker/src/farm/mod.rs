//! The live farm state: Supervisor actors watch the agents, a Balancer actor holds the state and decides.
//!
//! The actors run on their own actix System thread; the rest of the broker (tokio) only sees
//! [`FarmHandle`], whose methods send messages and await the answers.

pub mod agentcmd;
pub mod autologin;
pub mod balancer;
pub mod janitor;
pub mod policy;
pub mod supervisor;
pub mod transport;

#[cfg(test)]
mod golden_select;

pub use crate::config::farm::FarmConfig;
use crate::profiles::{BuiltProfile, Profile};
use crate::reply::Selection;
use actix::prelude::*;
use policy::{Decision, SessionView};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use transport::grpc::{GrpcTarget, TlsSettings};
use transport::local::LocalAgent;
use transport::ssh::{SshAgent, SshSettings, SshTarget};
use transport::{Transport, Via};

/// How the farm reaches a profile's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// `x2gobroker-agentd` (SSH fallback where a server has none, when configured).
    Grpc,
    /// The legacy agent over SSH only.
    Ssh,
    /// The legacy agent run on the broker host (a shared session DB shows the whole farm).
    Local,
}

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

/// What the farm keeps per server name.
struct ServerAgents {
    grpc: Option<GrpcTarget>,
    /// The legacy agent: over SSH, or LOCAL.
    legacy: Option<Transport>,
    supervisor: Addr<supervisor::Supervisor>,
}

/// The broker's handle on the farm's actors.
pub struct FarmHandle {
    config: FarmConfig,
    token: Option<Arc<str>>,
    tls: Option<Arc<TlsSettings>>,
    ssh: Option<Arc<SshSettings>>,
    balancer: Addr<balancer::Balancer>,
    /// How many servers report through the legacy agent (kept by the balancer).
    legacy_servers: Arc<AtomicUsize>,
    janitor: Addr<janitor::KeyJanitor>,
    arbiter: ArbiterHandle,
    servers: Mutex<HashMap<String, ServerAgents>>,
    /// Host lists (of built profiles) whose every host is supervised: a request for such a
    /// profile skips the per-host check. Weak, so a dead list's address is never reused here.
    supervised: Mutex<Vec<Weak<[String]>>>,
}

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

impl FarmHandle {
    /// Starts the actor system on its own thread.
    pub fn start(config: FarmConfig) -> Result<FarmHandle, FarmError> {
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
        let (sender, receiver) = std::sync::mpsc::channel();
        let pending_ttl = config.pending_ttl;
        std::thread::Builder::new()
            .name("farm-actors".to_string())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let balancer = balancer::Balancer::new(pending_ttl);
                    let legacy_servers = balancer.legacy_count();
                    let balancer = balancer.start();
                    let janitor = janitor::KeyJanitor::default().start();
                    let _ = sender.send((balancer, legacy_servers, janitor, Arbiter::current()));
                });
                let _ = system.run();
            })
            .map_err(|_| FarmError::System)?;
        let (balancer, legacy_servers, janitor, arbiter) =
            receiver.recv().map_err(|_| FarmError::System)?;
        Ok(FarmHandle {
            ssh: config.ssh.clone().map(Arc::new),
            config,
            token,
            tls,
            balancer,
            legacy_servers,
            janitor,
            arbiter,
            servers: Mutex::new(HashMap::new()),
            supervised: Mutex::new(Vec::new()),
        })
    }

    /// The configuration the farm runs with (which profiles it drives:
    /// [`crate::config::effective_agent_mode`]).
    pub fn config(&self) -> &FarmConfig {
        &self.config
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServerAgents>> {
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether every host of this host list is known to be supervised.
    fn all_supervised(&self, hosts: &Arc<[String]>) -> bool {
        let supervised = self
            .supervised
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted = Arc::as_ptr(hosts);
        supervised
            .iter()
            .any(|known| std::ptr::addr_eq(known.as_ptr(), wanted))
    }

    /// Starts a Supervisor for every host of `built` that has none yet; true if it did.
    pub fn supervise(&self, built: &BuiltProfile, plan: &AgentPlan) -> bool {
        if self.all_supervised(&built.hosts) {
            return false;
        }
        let started = self.start_supervisors(&built.profile, plan);
        let mut supervised = self
            .supervised
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        supervised.retain(|known| known.strong_count() > 0);
        supervised.push(Arc::downgrade(&built.hosts));
        started
    }

    fn start_supervisors(&self, profile: &Profile, plan: &AgentPlan) -> bool {
        let mut started = false;
        for host in profile.hosts() {
            if self.registry().contains_key(&host) {
                continue;
            }
            started = true;
            let address = profile.host_address(&host).unwrap_or_else(|| host.clone());
            let grpc = match (plan.mode, self.config.agent_port) {
                (AgentMode::Grpc, Some(port)) => Some(GrpcTarget {
                    server: host.clone(),
                    address: if address.contains(':') && !address.starts_with('[') {
                        format!("[{address}]:{port}")
                    } else {
                        format!("{address}:{port}")
                    },
                    token: self.token.clone(),
                    tls: self.tls.clone(),
                    timeout: self.config.call_timeout,
                }),
                _ => None,
            };
            let wants_ssh = plan.mode == AgentMode::Ssh
                || (plan.mode == AgentMode::Grpc && self.config.ssh_fallback);
            let legacy = match (&self.ssh, wants_ssh) {
                _ if plan.mode == AgentMode::Local => {
                    Some(Transport::Local(Arc::new(LocalAgent {
                        agent_command: self.config.agent_command.clone(),
                        timeout: self.config.call_timeout,
                    })))
                }
                (Some(settings), true) => {
                    let port = profile
                        .host_port(&host)
                        .unwrap_or_else(|| profile.ssh_port());
                    Some(Transport::Ssh(Arc::new(SshAgent::new(
                        settings.clone(),
                        SshTarget {
                            address: address.trim_matches(['[', ']']).to_string(),
                            port: u16::try_from(port).unwrap_or(22),
                            host_key_check: agentcmd::host_key_check(Some(&plan.host_key_policy)),
                            timeout: self.config.call_timeout,
                        },
                    ))))
                }
                _ => None,
            };
            tracing::info!(server = %host, grpc = ?grpc.as_ref().map(|target| &target.address), legacy = ?legacy.as_ref().map(Transport::via), "supervising");
            let actor = supervisor::Supervisor::new(
                host.clone(),
                grpc.clone(),
                legacy.clone(),
                supervisor::SupervisorSettings {
                    heartbeat: self.config.heartbeat,
                    timeout: self.config.call_timeout,
                    max_backoff: Duration::from_secs(10),
                    grpc_retry: self.config.grpc_retry,
                    legacy_poll: self.config.legacy_poll,
                    load_interval: self.config.load_interval,
                },
                self.balancer.clone(),
            );
            let supervisor =
                supervisor::Supervisor::start_in_arbiter(&self.arbiter, move |_| actor);
            self.registry().insert(
                host,
                ServerAgents {
                    grpc,
                    legacy,
                    supervisor,
                },
            );
        }
        started
    }

    /// Supervises `profile`'s hosts; for hosts seen for the first time, waits until each has
    /// reported or failed, so that a first request is not answered blind: at most heartbeat +
    /// call timeout, the silence after which a watch stream counts as dead anyway.
    async fn supervise_and_settle(&self, built: &BuiltProfile, plan: &AgentPlan) {
        if !self.supervise(built, plan) {
            return;
        }
        let supervisors: Vec<_> = {
            let registry = self.registry();
            built
                .hosts
                .iter()
                .filter_map(|host| registry.get(host).map(|agents| agents.supervisor.clone()))
                .collect()
        };
        let deadline = Instant::now() + self.config.heartbeat + self.config.call_timeout;
        while Instant::now() < deadline {
            let mut settled = true;
            for supervisor in &supervisors {
                match supervisor.send(supervisor::GetState).await {
                    Ok(state) if state.reports > 0 || state.failures > 0 => {}
                    _ => settled = false,
                }
            }
            if settled {
                // the reports the supervisors sent are applied before this request reads
                let _ = self.balancer.send(balancer::Barrier).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(profile = %built.profile.id, "answering before every new server's first report");
    }

    /// The whole farm's state as the balancer holds it (for tests and diagnostics).
    pub async fn state(&self) -> BTreeMap<String, policy::ServerView> {
        self.balancer
            .send(balancer::GetState)
            .await
            .unwrap_or_default()
    }

    /// Every supervisor's own state.
    pub async fn supervisors(&self) -> Vec<supervisor::SupervisorState> {
        let addresses: Vec<_> = self
            .registry()
            .values()
            .map(|agents| agents.supervisor.clone())
            .collect();
        let mut states = Vec::new();
        for address in addresses {
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

    /// The transport that last reached `host` (gRPC when nothing reported yet).
    fn transport(&self, host: &str, via: Option<Via>) -> Option<Transport> {
        let registry = self.registry();
        let agents = registry.get(host)?;
        let grpc = agents.grpc.clone().map(Transport::Grpc);
        let legacy = agents.legacy.clone();
        match via {
            Some(Via::Ssh | Via::Local) => legacy.or(grpc),
            _ => grpc.or(legacy),
        }
    }

    /// The user's sessions from the profile's servers reached through the legacy agent (it
    /// reports no session lists, so they are asked per request: every SSH server at once,
    /// the LOCAL agent once; each bounded by the call timeout; failures count as "no
    /// sessions").
    async fn ask_legacy_agents(&self, hosts: &Arc<[String]>, user: &str) -> Vec<SessionView> {
        if user.is_empty() || self.legacy_servers.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let legacy = self
            .balancer
            .send(balancer::LegacyHosts {
                hosts: hosts.clone(),
            })
            .await
            .unwrap_or_default();
        let mut transports: Vec<Transport> = Vec::new();
        for (host, via) in legacy {
            let asked_locally = transports.iter().any(|known| known.via() == Via::Local);
            if via == Via::Local && asked_locally {
                continue;
            }
            transports.extend(self.transport(&host, Some(via)));
        }
        let asks = transports
            .iter()
            .map(|transport| async move { transport.user_sessions(user).await });
        let mut sessions: Vec<SessionView> = Vec::new();
        for answer in futures::future::join_all(asks).await {
            match answer {
                Ok(found) => {
                    for session in found {
                        if !sessions
                            .iter()
                            .any(|known| known.session_id == session.session_id)
                        {
                            sessions.push(session);
                        }
                    }
                }
                Err(error) => tracing::warn!(user, %error, "legacy agent did not list sessions"),
            }
        }
        sessions
    }

    /// §7.4 step 6 from live state; `None` when nothing is known yet.
    pub async fn listing_status(
        &self,
        built: &BuiltProfile,
        plan: &AgentPlan,
        user: &str,
    ) -> Option<(String, Option<char>)> {
        self.supervise_and_settle(built, plan).await;
        let asked = self.ask_legacy_agents(&built.hosts, user).await;
        let request = balancer::ListingStatus {
            hosts: built.hosts.clone(),
            user: user.to_string(),
            asked,
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
        self.supervise_and_settle(built, plan).await;
        let profile = &built.profile;
        let asked = self.ask_legacy_agents(&built.hosts, user).await;
        let mut excluded: Vec<String> = Vec::new();
        let (decision, via, mut selection) = loop {
            let request = balancer::SelectServer {
                hosts: built.hosts.clone(),
                user: user.to_string(),
                asked: asked.clone(),
                excluded: excluded.clone(),
                ranking: choice.ranking,
            };
            let balancer::Selected { decision, via } =
                self.balancer
                    .send(request)
                    .await
                    .unwrap_or(balancer::Selected {
                        decision: Decision::NoServer,
                        via: None,
                    });
            let selection = policy::selection_for(profile, &decision);
            let host = match &decision {
                Decision::Resume { host, .. }
                | Decision::TakeOver { host, .. }
                | Decision::New { host } => host.clone(),
                Decision::NoServer => break (decision, via, selection),
            };
            // §10.2 step 6e: with port scanning on, a server whose X2Go SSH port is closed is
            // skipped (a session there is a zombie) and the choice is made again
            if !choice.portscan || self.ssh_port_open(&host, &selection).await {
                break (decision, via, selection);
            }
            tracing::warn!(%host, port = selection.port, "X2Go server port closed: skipped");
            if let Decision::New { .. } = decision {
                self.balancer.do_send(balancer::PlacementAbandoned {
                    server: host.clone(),
                });
            }
            excluded.push(host);
        };
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
            self.install_key(&host, via, user, client_ip, autologin, &mut selection)
                .await;
        }
        (selection, outcome)
    }

    /// The port probe of §10.2 step 6e: the host's address, then its name (2 s each).
    async fn ssh_port_open(&self, host: &str, selection: &Selection) -> bool {
        let timeout = Duration::from_secs(2);
        if crate::select::port_is_open(&selection.server, selection.port, timeout).await {
            return true;
        }
        selection.server != host && crate::select::port_is_open(host, selection.port, timeout).await
    }

    async fn take_over(
        &self,
        host: &str,
        via: Option<Via>,
        user: &str,
        session: &SessionView,
    ) -> Option<String> {
        let transport = self.transport(host, via)?;
        let started = Instant::now();
        let wait = self.config.takeover_wait;
        if let Err(error) = transport.suspend(user, &session.session_id, wait).await {
            tracing::error!(%host, session = %session.session_id, %error, "could not suspend the running session");
            return None;
        }
        let deadline = started + wait;
        while Instant::now() < deadline {
            if let Ok(sessions) = transport.user_sessions(user).await {
                if let Some(now) = sessions
                    .iter()
                    .find(|candidate| candidate.session_id == session.session_id)
                {
                    if now.status == 'S' {
                        return Some(now.raw_line.clone());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(%host, session = %session.session_id, "suspension not confirmed within the take-over wait");
        None
    }

    async fn install_key(
        &self,
        host: &str,
        via: Option<Via>,
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
        let Some(transport) = self.transport(host, via) else {
            return;
        };
        match transport
            .authorized_key(user, &key, &autologin.key_file, true)
            .await
        {
            Ok(()) => {
                selection.pubkey_accepted = private_pem.is_none();
                selection.private_key = private_pem;
                self.janitor.do_send(janitor::RemoveKeyLater {
                    server: host.to_string(),
                    transport,
                    user: user.to_string(),
                    key,
                    key_file: autologin.key_file,
                    after: self.config.key_lifetime,
                });
            }
            Err(error) => {
                tracing::error!(%host, user, %error, "could not install the autologin key")
            }
        }
    }
}

/// An autologin key to install with the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutologinRequest {
    /// The client's own public key (Python X2Go sends one), or empty to generate a pair.
    pub pubkey: String,
    /// The authorized_keys path (`%h/.x2go/authorized_keys` by default).
    pub key_file: String,
}
