//! A fake `x2gobroker-agentd`: the real `Agent` gRPC service over N simulated servers on 127.0.0.0/8.
//!
//! Every simulated server listens on its own loopback address (all on one port, as the broker's
//! `[farm] agent-port` expects) and holds a session list in memory. Answers can be delayed
//! (`latency`) and fail at random (`failure_rate`, gRPC UNAVAILABLE); the watch stream pushes
//! the state at once, on every change, and as a heartbeat. [`FakeFarm::set_status`] changes a
//! session as an X2Go server would and returns when the change was handed to the streams.
//!
//! The farm runs on its own tokio runtime (one worker thread) so that it neither steals the load
//! generator's threads nor counts towards the broker's CPU time.

use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};
use x2gobroker_proto::agent::v1 as pb;
use x2gobroker_proto::agent::v1::agent_server::{Agent, AgentServer};

/// How the simulated servers behave.
#[derive(Debug, Clone)]
pub struct FakeFarmConfig {
    /// Number of simulated servers.
    pub servers: usize,
    /// Sessions per server at start (even ones suspended, odd ones running).
    pub sessions_per_server: usize,
    /// Delay before every answer (and before a stream's first message).
    pub latency: Duration,
    /// Share of calls (and stream openings) that fail with UNAVAILABLE, 0.0..=1.0.
    pub failure_rate: f64,
    /// Heartbeat used when the broker asks for 0.
    pub default_heartbeat: Duration,
    /// The TCP port every server listens on (0: pick a free one).
    pub port: u16,
    /// Server `index` is named `name_prefix` + (`first_number` + index), zero-padded to `pad` digits.
    pub name_prefix: String,
    pub first_number: usize,
    pub pad: usize,
    /// Addresses: `first_address + index` within 127.0.0.0/8.
    pub first_address: Ipv4Addr,
}

impl Default for FakeFarmConfig {
    fn default() -> FakeFarmConfig {
        FakeFarmConfig {
            servers: 10,
            sessions_per_server: 20,
            latency: Duration::ZERO,
            failure_rate: 0.0,
            default_heartbeat: Duration::from_secs(2),
            port: 0,
            name_prefix: "s".to_string(),
            first_number: 0,
            pad: 4,
            first_address: Ipv4Addr::new(127, 10, 0, 1),
        }
    }
}

impl FakeFarmConfig {
    /// The comparison's five servers `x2go-node1..5` on 127.0.0.11..15, 20 sessions each.
    pub fn five_nodes() -> FakeFarmConfig {
        FakeFarmConfig {
            servers: 5,
            sessions_per_server: 20,
            name_prefix: "x2go-node".into(),
            first_number: 1,
            pad: 0,
            first_address: Ipv4Addr::new(127, 0, 0, 11),
            ..FakeFarmConfig::default()
        }
    }
}

/// One simulated server, as the broker's session profiles name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedServer {
    pub name: String,
    pub address: Ipv4Addr,
}

impl SimulatedServer {
    /// The profile host entry, `name (address)`.
    pub fn profile_host(&self) -> String {
        format!("{} ({})", self.name, self.address)
    }
}

/// The user owning session `session` of server `server` (distinct for every session).
pub fn session_user(server: usize, sessions_per_server: usize, session: usize) -> String {
    format!("u{}", server * sessions_per_server + session)
}

/// The address of server `index`, counting up from `first` and skipping `.0`/`.255` host bytes.
pub fn server_address(first: Ipv4Addr, index: usize) -> anyhow::Result<Ipv4Addr> {
    let base = u32::from(first);
    let address = Ipv4Addr::from(base.checked_add(index as u32).context("address overflow")?);
    if address.octets()[0] != 127 {
        bail!("{address} is outside 127.0.0.0/8");
    }
    Ok(address)
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn status_letter(status: pb::SessionStatus) -> char {
    match status {
        pb::SessionStatus::Running => 'R',
        pb::SessionStatus::Suspended => 'S',
        pb::SessionStatus::Terminated => 'T',
        pb::SessionStatus::Failed => 'F',
        _ => 'X',
    }
}

/// A session as `x2golistsessions` would print it, field by field.
fn make_session(server: &str, user: &str, number: usize, status: pb::SessionStatus) -> pb::Session {
    let display = 50 + number as i32;
    let session_id = format!("{user}-{display}-1700000000_stDXFCE_dp24");
    let mut session = pb::Session {
        agent_pid: 10_000 + number as i64,
        session_id,
        display,
        server: server.to_string(),
        status: status as i32,
        created: "2026-11-28T10:00:00".to_string(),
        cookie: format!("{:032x}", number as u128 * 7919 + 1),
        client_ip: "10.1.2.3".to_string(),
        graphics_port: 30_000 + number as i32,
        sound_port: 31_000 + number as i32,
        last_active: "2026-11-28T11:00:00".to_string(),
        user: user.to_string(),
        age_seconds: 3600,
        sshfs_port: 32_000 + number as i32,
        tekictrl_port: None,
        tekidata_port: None,
        raw_line: String::new(),
    };
    session.raw_line = raw_line(&session);
    session
}

fn raw_line(session: &pb::Session) -> String {
    let status = pb::SessionStatus::try_from(session.status).unwrap_or(pb::SessionStatus::Other);
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|-1|-1",
        session.agent_pid,
        session.session_id,
        session.display,
        session.server,
        status_letter(status),
        session.created,
        session.cookie,
        session.client_ip,
        session.graphics_port,
        session.sound_port,
        session.last_active,
        session.user,
        session.age_seconds,
        session.sshfs_port
    )
}

/// The mutable state of one simulated server.
#[derive(Debug)]
struct ServerSim {
    sessions: Vec<pb::Session>,
    generation: u64,
    observed_unix_ms: i64,
}

/// One simulated server: its state, and a channel that announces every change.
struct SimServer {
    name: String,
    state: Mutex<ServerSim>,
    changes: watch::Sender<u64>,
    latency: Duration,
    failure_rate: f64,
    default_heartbeat: Duration,
    calls: std::sync::atomic::AtomicU64,
    /// Switched off by [`FakeFarm::set_down`]: every call fails, watch streams end.
    down: std::sync::atomic::AtomicBool,
}

impl SimServer {
    fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerSim> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn message(&self, heartbeat: bool) -> pb::ServerState {
        let state = self.lock();
        let sessions_here = state.sessions.len() as i64;
        pb::ServerState {
            sessions: state.sessions.clone(),
            load: Some(pb::Load {
                loadavgxx: 25 + sessions_here,
                mem_avail_mb: 16_000,
                my_mem_avail_mb: 16_000,
                num_cpu: 8,
                type_cpu_mhz: 2_400,
                load_factor: Some(16 * 8 * 2_400 * 100 / (25 + sessions_here)),
            }),
            generation: state.generation,
            heartbeat,
            observed_unix_ms: state.observed_unix_ms,
            server_names: vec![self.name.clone()],
        }
    }

    /// The simulated answer delay and failure of one call.
    async fn answer(&self) -> Result<(), Status> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.is_down() {
            return Err(Status::unavailable("simulated outage"));
        }
        if self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate {
            return Err(Status::unavailable("simulated failure"));
        }
        Ok(())
    }

    /// Changes the status of `user`'s first session (or adds one); returns true if anything changed.
    fn set_status(&self, user: &str, status: pb::SessionStatus) -> bool {
        let mut state = self.lock();
        let number = state.sessions.len();
        match state
            .sessions
            .iter_mut()
            .find(|session| session.user == user)
        {
            Some(session) if session.status == status as i32 => return false,
            Some(session) => {
                session.status = status as i32;
                session.raw_line = raw_line(session);
            }
            None => {
                let session = make_session(&self.name, user, number, status);
                state.sessions.push(session);
            }
        }
        if status == pb::SessionStatus::Terminated {
            state.sessions.retain(|session| session.user != user);
        }
        state.generation += 1;
        state.observed_unix_ms = unix_ms_now();
        let generation = state.generation;
        drop(state);
        self.changes.send_replace(generation);
        true
    }
}

#[derive(Clone)]
struct FakeAgent {
    server: Arc<SimServer>,
}

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ServerState, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for FakeAgent {
    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        self.server.answer().await?;
        Ok(Response::new(pb::PingResponse {
            agent_version: "fake".to_string(),
            hostname: self.server.name.clone(),
            server_names: vec![self.server.name.clone()],
        }))
    }

    async fn available_tasks(
        &self,
        _request: Request<pb::AvailableTasksRequest>,
    ) -> Result<Response<pb::AvailableTasksResponse>, Status> {
        self.server.answer().await?;
        let tasks = [
            "listsessions",
            "findbusyservers",
            "checkload",
            "suspendsession",
            "terminatesession",
            "addauthkey",
            "delauthkey",
            "getservers",
            "ping",
        ];
        Ok(Response::new(pb::AvailableTasksResponse {
            tasks: tasks.iter().map(|task| task.to_string()).collect(),
        }))
    }

    async fn list_user_sessions(
        &self,
        request: Request<pb::ListUserSessionsRequest>,
    ) -> Result<Response<pb::SessionList>, Status> {
        self.server.answer().await?;
        let user = &request.get_ref().user;
        let sessions = self
            .server
            .lock()
            .sessions
            .iter()
            .filter(|session| &session.user == user)
            .cloned()
            .collect();
        Ok(Response::new(pb::SessionList { sessions }))
    }

    async fn list_all_sessions(
        &self,
        _request: Request<pb::ListAllSessionsRequest>,
    ) -> Result<Response<pb::SessionList>, Status> {
        self.server.answer().await?;
        let sessions = self.server.lock().sessions.clone();
        Ok(Response::new(pb::SessionList { sessions }))
    }

    async fn get_servers(
        &self,
        _request: Request<pb::GetServersRequest>,
    ) -> Result<Response<pb::GetServersResponse>, Status> {
        self.server.answer().await?;
        let state = self.server.lock();
        let count = |status: pb::SessionStatus| {
            state
                .sessions
                .iter()
                .filter(|session| session.status == status as i32)
                .count() as u32
        };
        let usage = pb::ServerUsage {
            server: self.server.name.clone(),
            sessions: state.sessions.len() as u32,
            running: count(pb::SessionStatus::Running),
            suspended: count(pb::SessionStatus::Suspended),
        };
        let servers = if usage.sessions > 0 {
            vec![usage]
        } else {
            vec![]
        };
        Ok(Response::new(pb::GetServersResponse { servers }))
    }

    async fn find_busy_servers(
        &self,
        _request: Request<pb::FindBusyServersRequest>,
    ) -> Result<Response<pb::FindBusyServersResponse>, Status> {
        self.server.answer().await?;
        let any = !self.server.lock().sessions.is_empty();
        let servers = if any {
            vec![pb::BusyServer {
                server: self.server.name.clone(),
                percent: 100,
            }]
        } else {
            vec![]
        };
        Ok(Response::new(pb::FindBusyServersResponse { servers }))
    }

    async fn check_load(
        &self,
        _request: Request<pb::CheckLoadRequest>,
    ) -> Result<Response<pb::Load>, Status> {
        self.server.answer().await?;
        Ok(Response::new(
            self.server.message(false).load.unwrap_or_default(),
        ))
    }

    async fn suspend_session(
        &self,
        request: Request<pb::SessionActionRequest>,
    ) -> Result<Response<pb::SessionActionResponse>, Status> {
        self.session_action(request.into_inner(), pb::SessionStatus::Suspended)
            .await
    }

    async fn terminate_session(
        &self,
        request: Request<pb::SessionActionRequest>,
    ) -> Result<Response<pb::SessionActionResponse>, Status> {
        self.session_action(request.into_inner(), pb::SessionStatus::Terminated)
            .await
    }

    async fn add_authorized_key(
        &self,
        request: Request<pb::AuthorizedKeyRequest>,
    ) -> Result<Response<pb::AuthorizedKeyResponse>, Status> {
        self.server.answer().await?;
        Ok(Response::new(pb::AuthorizedKeyResponse {
            path: format!("/home/{}/.x2go/authorized_keys", request.get_ref().user),
            changed: true,
        }))
    }

    async fn remove_authorized_key(
        &self,
        request: Request<pb::AuthorizedKeyRequest>,
    ) -> Result<Response<pb::AuthorizedKeyResponse>, Status> {
        self.server.answer().await?;
        Ok(Response::new(pb::AuthorizedKeyResponse {
            path: format!("/home/{}/.x2go/authorized_keys", request.get_ref().user),
            changed: true,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.server.answer().await?;
        let heartbeat = match request.get_ref().heartbeat_ms {
            0 => self.server.default_heartbeat,
            ms => Duration::from_millis(u64::from(ms)).max(Duration::from_millis(50)),
        };
        let server = self.server.clone();
        let mut changes = server.changes.subscribe();
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            changes.mark_unchanged();
            if sender.send(Ok(server.message(false))).await.is_err() {
                return;
            }
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let message = tokio::select! {
                    _ = sender.closed() => return,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        changes.mark_unchanged();
                        ticker.reset();
                        server.message(false)
                    }
                    _ = ticker.tick() => server.message(true),
                };
                if server.is_down() {
                    let _ = sender
                        .send(Err(Status::unavailable("simulated outage")))
                        .await;
                    return;
                }
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

impl FakeAgent {
    async fn session_action(
        &self,
        request: pb::SessionActionRequest,
        status: pb::SessionStatus,
    ) -> Result<Response<pb::SessionActionResponse>, Status> {
        self.server.answer().await?;
        let before = self
            .server
            .lock()
            .sessions
            .iter()
            .find(|session| {
                session.session_id == request.session_id && session.user == request.user
            })
            .cloned()
            .ok_or_else(|| Status::not_found("no such session of this user"))?;
        self.server.set_status(&request.user, status);
        Ok(Response::new(pb::SessionActionResponse {
            session: Some(before),
        }))
    }
}

/// A running fake farm; dropping it stops every simulated server.
pub struct FakeFarm {
    servers: Vec<SimulatedServer>,
    by_name: BTreeMap<String, Arc<SimServer>>,
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
    config: FakeFarmConfig,
}

impl FakeFarm {
    /// Binds every simulated server (retrying other ports if one is taken) and starts serving.
    pub fn start(config: FakeFarmConfig) -> anyhow::Result<FakeFarm> {
        if !(0.0..=1.0).contains(&config.failure_rate) {
            bail!("failure rate {} is not within 0..=1", config.failure_rate);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-agent")
            .enable_all()
            .build()?;
        let mut servers = Vec::with_capacity(config.servers);
        for index in 0..config.servers {
            servers.push(SimulatedServer {
                name: format!(
                    "{}{:0width$}",
                    config.name_prefix,
                    config.first_number + index,
                    width = config.pad
                ),
                address: server_address(config.first_address, index)?,
            });
        }
        let (port, listeners) = bind_all(&servers, config.port)?;
        let mut by_name = BTreeMap::new();
        for (index, (server, listener)) in servers.iter().zip(listeners).enumerate() {
            let sessions = (0..config.sessions_per_server)
                .map(|number| {
                    let status = if number % 2 == 0 {
                        pb::SessionStatus::Suspended
                    } else {
                        pb::SessionStatus::Running
                    };
                    let user = session_user(index, config.sessions_per_server, number);
                    make_session(&server.name, &user, number, status)
                })
                .collect();
            let (changes, _) = watch::channel(0);
            let sim = Arc::new(SimServer {
                name: server.name.clone(),
                state: Mutex::new(ServerSim {
                    sessions,
                    generation: 1,
                    observed_unix_ms: unix_ms_now(),
                }),
                changes,
                latency: config.latency,
                failure_rate: config.failure_rate,
                default_heartbeat: config.default_heartbeat,
                calls: std::sync::atomic::AtomicU64::new(0),
                down: std::sync::atomic::AtomicBool::new(false),
            });
            by_name.insert(server.name.clone(), sim.clone());
            let service = AgentServer::new(FakeAgent { server: sim });
            runtime.spawn(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let incoming = TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await;
            });
        }
        Ok(FakeFarm {
            servers,
            by_name,
            port,
            runtime: Some(runtime),
            config,
        })
    }

    /// The simulated servers, in index order.
    pub fn servers(&self) -> &[SimulatedServer] {
        &self.servers
    }

    /// The port every simulated server listens on (the broker's `agent-port`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configuration the farm was started with.
    pub fn config(&self) -> &FakeFarmConfig {
        &self.config
    }

    /// Sets the status of `user`'s session on `server` (adding one if the user has none there);
    /// returns the instant the change was published to the watch streams.
    pub fn set_status(
        &self,
        server: &str,
        user: &str,
        status: pb::SessionStatus,
    ) -> anyhow::Result<Instant> {
        let sim = self
            .by_name
            .get(server)
            .with_context(|| format!("no simulated server {server}"))?;
        sim.set_status(user, status);
        Ok(Instant::now())
    }

    /// Takes `server` down (every call fails with UNAVAILABLE, its watch streams end with it)
    /// or brings it back.
    pub fn set_down(&self, server: &str, down: bool) -> anyhow::Result<()> {
        let sim = self
            .by_name
            .get(server)
            .with_context(|| format!("no simulated server {server}"))?;
        sim.down.store(down, std::sync::atomic::Ordering::Relaxed);
        // wakes the watch streams so that they end now, not at the next heartbeat
        let generation = sim.lock().generation;
        sim.changes.send_replace(generation);
        Ok(())
    }

    /// Total calls (including stream openings) answered so far.
    pub fn calls(&self) -> u64 {
        self.by_name
            .values()
            .map(|sim| sim.calls.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Number of sessions over all servers.
    pub fn total_sessions(&self) -> usize {
        self.by_name
            .values()
            .map(|sim| sim.lock().sessions.len())
            .sum()
    }
}

impl Drop for FakeFarm {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds every server's address on one common port (non-blocking std listeners).
fn bind_all(
    servers: &[SimulatedServer],
    wanted_port: u16,
) -> anyhow::Result<(u16, Vec<std::net::TcpListener>)> {
    let attempts = if wanted_port == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let Some(first) = servers.first() else {
            return Ok((wanted_port, Vec::new()));
        };
        let first_listener = match std::net::TcpListener::bind(SocketAddr::new(
            IpAddr::V4(first.address),
            wanted_port,
        )) {
            Ok(listener) => listener,
            Err(error) => {
                last_error = Some(anyhow::Error::from(error));
                continue;
            }
        };
        let port = first_listener.local_addr()?.port();
        let mut listeners = vec![first_listener];
        let mut failed = None;
        for server in &servers[1..] {
            match std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(server.address), port)) {
                Ok(listener) => listeners.push(listener),
                Err(error) => {
                    failed = Some(anyhow::anyhow!("{}:{port}: {error}", server.address));
                    break;
                }
            }
        }
        match failed {
            None => {
                for listener in &listeners {
                    listener.set_nonblocking(true)?;
                }
                return Ok((port, listeners));
            }
            Some(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no port found")))
        .context("binding the simulated servers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_up_inside_loopback() {
        let first = Ipv4Addr::new(127, 10, 0, 1);
        assert_eq!(server_address(first, 0).unwrap(), first);
        assert_eq!(
            server_address(first, 999).unwrap(),
            Ipv4Addr::new(127, 10, 3, 232)
        );
        assert!(server_address(Ipv4Addr::new(127, 255, 255, 255), 1).is_err());
    }

    #[test]
    fn raw_lines_have_the_x2golistsessions_fields() {
        let session = make_session("s0001", "u7", 3, pb::SessionStatus::Suspended);
        let fields: Vec<&str> = session.raw_line.split('|').collect();
        assert_eq!(fields.len(), 16);
        assert_eq!((fields[3], fields[4], fields[11]), ("s0001", "S", "u7"));
    }

    #[test]
    fn a_watch_stream_pushes_a_change_at_once() {
        let farm = FakeFarm::start(FakeFarmConfig {
            servers: 3,
            sessions_per_server: 2,
            ..FakeFarmConfig::default()
        })
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = &farm.servers()[2];
            let url = format!("http://{}:{}", server.address, farm.port());
            let mut client = pb::agent_client::AgentClient::connect(url).await.unwrap();
            let mut stream = client
                .watch(pb::WatchRequest {
                    heartbeat_ms: 60_000,
                })
                .await
                .unwrap()
                .into_inner();
            let first = stream.message().await.unwrap().unwrap();
            assert_eq!(first.sessions.len(), 2);
            assert_eq!(first.sessions[0].user, "u4");
            farm.set_status(&server.name, "u4", pb::SessionStatus::Running)
                .unwrap();
            let pushed = tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(!pushed.heartbeat);
            assert_eq!(pushed.sessions[0].status, pb::SessionStatus::Running as i32);
            assert!(pushed.generation > first.generation);
        });
    }
}
