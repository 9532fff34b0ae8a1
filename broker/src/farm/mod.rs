//! The live farm state: Supervisor actors watch the agents, a Balancer actor holds the state and decides.
//!
//! The actors run on their own actix System thread; the rest of the broker (tokio) only sees
//! [`FarmHandle`], whose methods send messages and await the answers.

pub mod agent;
pub mod agentcmd;
pub mod autologin;
pub mod balancer;
pub mod janitor;
pub mod policy;
pub mod supervisor;

use crate::config::{BrokerConfig, Value};
use crate::profiles::Profile;
use crate::reply::Selection;
use actix::prelude::*;
use policy::Decision;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `[farm]` section of x2gobroker.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmConfig {
    /// TCP port of `x2gobroker-agentd` on every server's address.
    pub agent_port: u16,
    /// File holding the agents' bearer token.
    pub token_file: Option<PathBuf>,
    /// Heartbeat asked of the agents' watch streams.
    pub heartbeat: Duration,
    /// Timeout of one agent call (and lateness allowed beyond the heartbeat).
    pub call_timeout: Duration,
    /// How long a take-over waits for the agent to confirm the suspension.
    pub takeover_wait: Duration,
    /// Lifetime of one-time autologin keys.
    pub key_lifetime: Duration,
    /// How long an unconfirmed placement counts as load.
    pub pending_ttl: Duration,
}

fn farm_number(config: &BrokerConfig, key: &str, default: u64) -> u64 {
    config
        .document()
        .get("farm", key)
        .and_then(|raw| raw.trim().parse::<u64>().ok())
        .unwrap_or(default)
}

impl FarmConfig {
    /// The farm settings, when `[farm] agent-port` is set (else there is no live farm).
    pub fn from_config(config: &BrokerConfig) -> Option<FarmConfig> {
        let agent_port = config
            .document()
            .get("farm", "agent-port")?
            .trim()
            .parse::<u16>()
            .ok()?;
        let token_file = config
            .document()
            .get("farm", "agent-token-file")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Some(FarmConfig {
            agent_port,
            token_file,
            heartbeat: Duration::from_millis(farm_number(config, "heartbeat-ms", 2000)),
            call_timeout: Duration::from_millis(farm_number(config, "call-timeout-ms", 2000)),
            takeover_wait: Duration::from_millis(farm_number(config, "takeover-wait-ms", 3000)),
            key_lifetime: Duration::from_secs(farm_number(config, "autologin-key-lifetime", 20)),
            pending_ttl: Duration::from_secs(farm_number(config, "pending-placement-ttl", 30)),
        })
    }
}

/// The broker's handle on the farm's actors.
pub struct FarmHandle {
    config: FarmConfig,
    token: Option<String>,
    balancer: Addr<balancer::Balancer>,
    janitor: Addr<janitor::KeyJanitor>,
    arbiter: ArbiterHandle,
    supervised: Mutex<HashSet<String>>,
}

/// Why the farm could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    #[error("cannot read the agent token file {0}: {1}")]
    Token(String, std::io::Error),
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

impl FarmHandle {
    /// Starts the actor system on its own thread.
    pub fn start(config: FarmConfig) -> Result<FarmHandle, FarmError> {
        let token = match &config.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| FarmError::Token(path.display().to_string(), error))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let pending_ttl = config.pending_ttl;
        std::thread::Builder::new()
            .name("farm-actors".to_string())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let balancer = balancer::Balancer::new(pending_ttl).start();
                    let janitor = janitor::KeyJanitor.start();
                    let _ = sender.send((balancer, janitor, Arbiter::current()));
                });
                let _ = system.run();
            })
            .map_err(|_| FarmError::System)?;
        let (balancer, janitor, arbiter) = receiver.recv().map_err(|_| FarmError::System)?;
        Ok(FarmHandle {
            config,
            token,
            balancer,
            janitor,
            arbiter,
            supervised: Mutex::new(HashSet::new()),
        })
    }

    /// The agent address of a profile host.
    fn agent_address(&self, profile: &Profile, host: &str) -> String {
        let address = profile
            .host_address(host)
            .unwrap_or_else(|| host.to_string());
        if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]:{}", self.config.agent_port)
        } else {
            format!("{address}:{}", self.config.agent_port)
        }
    }

    /// Starts a Supervisor for every host of `profile` that has none yet; true if it did.
    pub fn supervise(&self, profile: &Profile) -> bool {
        let mut supervised = self
            .supervised
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut started = false;
        for host in profile.hosts() {
            if !supervised.insert(host.clone()) {
                continue;
            }
            started = true;
            let actor = supervisor::Supervisor {
                server: host.clone(),
                address: self.agent_address(profile, &host),
                token: self.token.clone(),
                settings: supervisor::SupervisorSettings {
                    heartbeat: self.config.heartbeat,
                    timeout: self.config.call_timeout,
                    max_backoff: Duration::from_secs(10),
                },
                balancer: self.balancer.clone(),
            };
            tracing::info!(server = %host, agent = %actor.address, "supervising");
            supervisor::Supervisor::start_in_arbiter(&self.arbiter, move |_| actor);
        }
        started
    }

    /// Supervises `profile`'s hosts; for hosts seen for the first time, waits (at most one call
    /// timeout) for their first reports so that a first request is not answered blind.
    async fn supervise_and_settle(&self, profile: &Profile) {
        if !self.supervise(profile) {
            return;
        }
        let hosts = profile.hosts();
        let deadline = Instant::now() + self.config.call_timeout;
        while Instant::now() < deadline {
            let state = self.state().await;
            if hosts.iter().all(|host| {
                state
                    .get(host)
                    .is_some_and(|server| server.health != policy::Health::Down)
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The whole farm's state (for tests and diagnostics).
    pub async fn state(&self) -> BTreeMap<String, policy::ServerView> {
        self.balancer
            .send(balancer::GetState)
            .await
            .unwrap_or_default()
    }

    /// §7.4 step 6 from live state; `None` when nothing is known yet.
    pub async fn listing_status(
        &self,
        profile: &Profile,
        user: &str,
    ) -> Option<(String, Option<char>)> {
        self.supervise_and_settle(profile).await;
        let request = balancer::ListingStatus {
            hosts: profile.hosts(),
            user: user.to_string(),
        };
        self.balancer.send(request).await.ok().flatten()
    }

    fn client(&self, address: &str) -> Option<agent::AgentClient> {
        agent::client(address, self.token.as_deref(), self.config.call_timeout).ok()
    }

    /// §10.2 from live state: resume, take over (suspend, then confirm within a bounded wait),
    /// or the best healthy server; then the autologin key, installed only for `user`.
    pub async fn select(
        &self,
        profile: &Profile,
        user: &str,
        client_ip: &IpAddr,
        autologin: Option<AutologinRequest>,
    ) -> (Selection, Outcome) {
        self.supervise_and_settle(profile).await;
        let hosts = profile.hosts();
        let request = balancer::SelectServer {
            hosts: hosts.clone(),
            user: user.to_string(),
        };
        let decision = self
            .balancer
            .send(request)
            .await
            .unwrap_or(Decision::NoServer);
        let (host, session_info, outcome) = match decision {
            Decision::Resume { host, session } => (host, Some(session.raw_line), Outcome::Resumed),
            Decision::TakeOver { host, session } => {
                let info = self.take_over(profile, &host, user, &session).await;
                (host, Some(info), Outcome::TookOver)
            }
            Decision::New { host } => (host, None, Outcome::New),
            Decision::NoServer => {
                let port = profile.ssh_port();
                let selection = if hosts.len() > 1 {
                    Selection::server("no-X2Go-Server-available", port)
                } else {
                    let first = hosts.first().cloned().unwrap_or_default();
                    let server = profile.host_address(&first).unwrap_or(first.clone());
                    Selection::server(server, profile.host_port(&first).unwrap_or(port))
                };
                return (selection, Outcome::NoServer);
            }
        };
        let server = profile.host_address(&host).unwrap_or_else(|| host.clone());
        let port = profile
            .host_port(&host)
            .unwrap_or_else(|| profile.ssh_port());
        let mut selection = Selection::server(server, port);
        selection.session_info = session_info;
        if let Some(autologin) = autologin {
            self.install_key(profile, &host, user, client_ip, autologin, &mut selection)
                .await;
        }
        (selection, outcome)
    }

    async fn take_over(
        &self,
        profile: &Profile,
        host: &str,
        user: &str,
        session: &policy::SessionView,
    ) -> String {
        let suspended_line = session.raw_line.replacen("|R|", "|S|", 1);
        let address = self.agent_address(profile, host);
        let Some(mut client) = self.client(&address) else {
            return suspended_line;
        };
        let timeout = self.config.call_timeout;
        if let Err(error) = agent::suspend(&mut client, user, &session.session_id, timeout).await {
            tracing::error!(%host, session = %session.session_id, %error, "could not suspend the running session");
            return suspended_line;
        }
        let deadline = Instant::now() + self.config.takeover_wait;
        while Instant::now() < deadline {
            if let Ok(sessions) = agent::user_sessions(&mut client, user, timeout).await {
                if let Some(now) = sessions
                    .iter()
                    .find(|candidate| candidate.session_id == session.session_id)
                {
                    if now.status == 'S' {
                        return now.raw_line.clone();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(%host, session = %session.session_id, "suspension not confirmed within the take-over wait");
        suspended_line
    }

    async fn install_key(
        &self,
        profile: &Profile,
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
        let address = self.agent_address(profile, host);
        let Some(mut client) = self.client(&address) else {
            return;
        };
        let timeout = self.config.call_timeout;
        match agent::authorized_key(&mut client, user, &key, &autologin.key_file, true, timeout)
            .await
        {
            Ok(()) => {
                selection.pubkey_accepted = private_pem.is_none();
                selection.private_key = private_pem;
                self.janitor.do_send(janitor::RemoveKeyLater {
                    address,
                    token: self.token.clone(),
                    user: user.to_string(),
                    key,
                    key_file: autologin.key_file,
                    after: self.config.key_lifetime,
                    timeout,
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

/// The authorized_keys path for a profile: `broker-authorized-keys`, else the global default.
pub fn authorized_keys_path(config: &BrokerConfig, profile: &Profile) -> String {
    match profile.broker_key("broker-authorized-keys") {
        Some(path) => path.to_string(),
        None => match config.global("default-authorized-keys") {
            Ok(Value::Str(path)) => path,
            _ => "%h/.x2go/authorized_keys".to_string(),
        },
    }
}
