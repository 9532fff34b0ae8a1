//! The Supervisor actor: one per X2Go server; owns its transports, keeps its sessions, load and health fresh (gRPC watch stream, else legacy polling) and runs the per-request agent calls.
//!
//! Transport order: the agent's gRPC watch stream (`x2gobroker-agentd`, heartbeat = poll
//! interval); when the server has no gRPC agent (the first attempt delivers nothing) and a
//! legacy transport is configured (SSH, or the LOCAL agent binary), the legacy agent is polled
//! (`ping` every legacy poll, `checkload` every load-checker interval), and gRPC is tried
//! again after a while. Health, back-off, the port probes during a back-off and the next step
//! are decided by [`health`](super::health); this actor only applies them.

use super::balancer::{AgentReported, AgentUnreachable, Balancer};
use super::health::{self, AfterProbe, HealthMachine, ProbeSchedule, Step};
use super::model::{AgentObserver, Health, SessionView, Via};
use super::transport::grpc::{self, GrpcTarget};
use super::transport::{Transport, TransportError};
use actix::prelude::*;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a supervisor talks to its agent.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// The heartbeat asked of the agent's watch stream.
    pub heartbeat: Duration,
    /// How late a message may be (beyond the heartbeat) before the agent counts as hung.
    pub timeout: Duration,
    /// Longest back-off between reconnection attempts.
    pub max_backoff: Duration,
    /// How long the legacy fallback is used before gRPC is tried again.
    pub grpc_retry: Duration,
    /// The legacy agent's `ping` interval (each poll runs the Perl agent on the server).
    pub legacy_poll: Duration,
    /// How often the legacy agent's `checkload` runs (the reference's load-checker interval).
    pub load_interval: Duration,
}

/// A snapshot of one supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorState {
    pub server: String,
    pub health: Health,
    pub via: Option<Via>,
    pub failures: u32,
    pub reports: u64,
    /// Port probes made during back-offs.
    pub probes: u64,
    pub last_error: Option<String>,
}

/// Report this supervisor's state.
#[derive(Debug, Message)]
#[rtype(result = "SupervisorState")]
pub struct GetState;

/// One agent call on behalf of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCall {
    /// The user's sessions.
    UserSessions { user: String },
    /// Suspend one of the user's sessions, allowing the agent `timeout`.
    Suspend {
        user: String,
        session_id: String,
        timeout: Duration,
    },
    /// Add (or remove) a line of the user's authorized_keys file.
    AuthorizedKey {
        user: String,
        key: String,
        key_file: String,
        add: bool,
    },
}

/// What an agent call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAnswer {
    Sessions(Vec<SessionView>),
    Done,
}

/// Run one agent call through the transport that last reached the server (imperative).
#[derive(Debug, Message)]
#[rtype(result = "Result<CallAnswer, TransportError>")]
pub struct Call(pub AgentCall);

/// Stop supervising: the watch stream or poll ends with the actor (imperative).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Private: open the gRPC watch stream (or start polling the legacy agent).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Connect;

/// Private timer: poll the legacy agent (SSH or LOCAL).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct PollTick;

/// Private event: the agent reported.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Observed {
    via: Via,
    /// The server's sessions (all users), when the transport can list them.
    sessions: Option<Vec<SessionView>>,
    load_factor: Option<i64>,
    /// Whether the load was measured (a legacy poll without `checkload` keeps the last one).
    load_checked: bool,
}

/// Private event: a watch stream ended or a poll failed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Failed {
    via: Via,
    /// Reports the ended stream had delivered.
    reports: u64,
    reason: String,
}

/// Private event: a probe of the port of the transport to retry.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Probed {
    /// The back-off it was made in (see `Supervisor::waiting`).
    wait: u64,
    accepted: bool,
}

/// A retry scheduled after a failure, which a probe may bring forward.
struct Waiting {
    /// Counts back-offs: a probe answering for an earlier one is ignored.
    number: u64,
    step: Step,
    retry_at: Instant,
    timer: SpawnHandle,
    /// The `host:port` probed (the transport the step retries).
    probe_address: Option<String>,
    probes: ProbeSchedule,
}

/// The Supervisor actor of one server.
pub struct Supervisor {
    server: String,
    grpc: Option<GrpcTarget>,
    /// The legacy agent (SSH or LOCAL), polled when there is no gRPC agent.
    legacy: Option<Transport>,
    settings: SupervisorSettings,
    balancer: Addr<Balancer>,
    machine: HealthMachine,
    via: Option<Via>,
    reports: u64,
    last_error: Option<String>,
    /// Since when the legacy fallback is in use.
    legacy_since: Option<Instant>,
    /// The last load factor reported, and when the legacy agent last measured it.
    load_factor: Option<i64>,
    load_checked_at: Option<Instant>,
    /// The back-off in progress after a failure, if any.
    waiting: Option<Waiting>,
    n_waits: u64,
    probes: u64,
    /// Told of calls and failures (metrics).
    observer: Option<Arc<dyn AgentObserver>>,
}

impl Supervisor {
    /// Tells `observer` of every call and failure from now on.
    pub fn observed_by(mut self, observer: Option<Arc<dyn AgentObserver>>) -> Supervisor {
        self.observer = observer;
        self
    }

    pub fn new(
        server: String,
        grpc: Option<GrpcTarget>,
        legacy: Option<Transport>,
        settings: SupervisorSettings,
        balancer: Addr<Balancer>,
    ) -> Supervisor {
        Supervisor {
            server,
            grpc,
            legacy,
            settings,
            balancer,
            machine: HealthMachine::default(),
            via: None,
            reports: 0,
            last_error: None,
            legacy_since: None,
            load_factor: None,
            load_checked_at: None,
            waiting: None,
            n_waits: 0,
            probes: 0,
            observer: None,
        }
    }

    fn timing(&self) -> health::Timing {
        health::Timing {
            max_backoff: self.settings.max_backoff,
            grpc_retry: self.settings.grpc_retry,
        }
    }

    fn apply(&mut self, step: Step, context: &mut Context<Self>) -> SpawnHandle {
        match step {
            Step::Connect(after) => {
                self.legacy_since = None;
                context.notify_later(Connect, after)
            }
            Step::Poll(after) => context.notify_later(PollTick, after),
        }
    }

    /// The `host:port` a step's transport listens on (none for the LOCAL agent).
    fn probe_address(&self, step: Step) -> Option<String> {
        let legacy_address = || match &self.legacy {
            Some(Transport::Ssh(agent)) => Some(agent.probe_address()),
            _ => None,
        };
        match step {
            Step::Connect(_) => match &self.grpc {
                Some(target) => Some(target.address.clone()),
                None => legacy_address(),
            },
            Step::Poll(_) => legacy_address(),
        }
    }

    /// Schedules the retry of a failure and, when [`health::probe_after_failure`] says so,
    /// probes the port at once.
    fn wait_for_retry(&mut self, step: Step, context: &mut Context<Self>) {
        let after = match step {
            Step::Connect(after) | Step::Poll(after) => after,
        };
        let timer = self.apply(step, context);
        self.n_waits += 1;
        let address = self.probe_address(step);
        let probe_address = if health::probe_after_failure(address.is_some(), after) {
            address
        } else {
            None
        };
        let waiting = Waiting {
            number: self.n_waits,
            step,
            retry_at: Instant::now() + after,
            timer,
            probe_address,
            probes: ProbeSchedule::default(),
        };
        if let Some(address) = waiting.probe_address.clone() {
            probe(address, waiting.number, context);
        }
        self.waiting = Some(waiting);
    }

    /// The transport for a per-request call: the one that last reported, else gRPC first.
    fn transport_for_calls(&self) -> Option<Transport> {
        let grpc = self.grpc.clone().map(Transport::Grpc);
        match self.via {
            Some(via) if via.is_legacy() => self.legacy.clone().or(grpc),
            _ => grpc.or_else(|| self.legacy.clone()),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Context<Self>) {
        context.notify(Connect);
    }
}

impl Handler<Connect> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Connect, context: &mut Context<Self>) {
        self.waiting = None;
        match (&self.grpc, &self.legacy) {
            (Some(target), _) => {
                let watcher =
                    watch_stream(target.clone(), self.settings.heartbeat, context.address());
                context.spawn(actix::fut::wrap_future(watcher));
            }
            (None, Some(_)) => {
                self.legacy_since.get_or_insert_with(Instant::now);
                context.notify(PollTick);
            }
            (None, None) => tracing::error!(server = %self.server, "no agent transport configured"),
        }
    }
}

impl Handler<PollTick> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: PollTick, context: &mut Context<Self>) {
        self.waiting = None;
        let Some(agent) = self.legacy.clone() else {
            return;
        };
        let address = context.address();
        let check_load = self
            .load_checked_at
            .is_none_or(|checked| checked.elapsed() >= self.settings.load_interval);
        let poll = async move {
            let via = agent.via();
            match agent.legacy_poll(check_load).await {
                Ok(load_factor) => address.do_send(Observed {
                    via,
                    sessions: None,
                    load_factor,
                    load_checked: check_load,
                }),
                Err(error) => address.do_send(Failed {
                    via,
                    reports: 0,
                    reason: error.to_string(),
                }),
            }
        };
        context.spawn(actix::fut::wrap_future(poll));
    }
}

impl Handler<Observed> for Supervisor {
    type Result = ();

    fn handle(&mut self, report: Observed, context: &mut Context<Self>) {
        let before = self.machine.health();
        let health = self.machine.on_report();
        if health != before || self.via != Some(report.via) {
            tracing::info!(server = %self.server, ?health, via = ?report.via, "agent reported");
        }
        self.via = Some(report.via);
        self.reports += 1;
        if report.load_checked {
            self.load_factor = report.load_factor;
            self.load_checked_at = Some(Instant::now());
        }
        self.balancer.do_send(AgentReported {
            server: self.server.clone(),
            sessions: report.sessions,
            load_factor: self.load_factor,
            health,
            via: report.via,
        });
        if report.via.is_legacy() {
            let step = health::after_legacy_poll(
                self.grpc.is_some(),
                self.legacy_since.map(|since| since.elapsed()),
                self.timing(),
                self.settings.legacy_poll,
            );
            self.apply(step, context);
        }
    }
}

impl Handler<Probed> for Supervisor {
    type Result = ();

    fn handle(&mut self, probed: Probed, context: &mut Context<Self>) {
        let Some(waiting) = self
            .waiting
            .as_mut()
            .filter(|waiting| waiting.number == probed.wait)
        else {
            return;
        };
        self.probes += 1;
        let until_retry = waiting.retry_at.saturating_duration_since(Instant::now());
        match waiting.probes.on_probe(probed.accepted, until_retry) {
            AfterProbe::RetryNow => {
                let Some(waiting) = self.waiting.take() else {
                    return;
                };
                context.cancel_future(waiting.timer);
                self.machine.on_agent_back();
                tracing::info!(server = %self.server, address = ?waiting.probe_address, "agent port open again: retrying now");
                match waiting.step {
                    Step::Connect(_) => self.apply(Step::Connect(Duration::ZERO), context),
                    Step::Poll(_) => self.apply(Step::Poll(Duration::ZERO), context),
                };
            }
            AfterProbe::ProbeAgain(after) => {
                if let Some(address) = waiting.probe_address.clone() {
                    let number = waiting.number;
                    context.run_later(after, move |_, context| {
                        probe(address, number, context);
                    });
                }
            }
            AfterProbe::Wait => {}
        }
    }
}

/// Probes `address` with a plain TCP connect (closed at once), answering `Probed`.
fn probe(address: String, wait: u64, context: &mut Context<Supervisor>) {
    let supervisor = context.address();
    let probing = async move {
        let connect = tokio::net::TcpStream::connect(address);
        let accepted = matches!(
            tokio::time::timeout(health::PROBE_TIMEOUT, connect).await,
            Ok(Ok(_))
        );
        supervisor.do_send(Probed { wait, accepted });
    };
    context.spawn(actix::fut::wrap_future(probing));
}

impl Handler<Failed> for Supervisor {
    type Result = ();

    fn handle(&mut self, failure: Failed, context: &mut Context<Self>) {
        self.last_error = Some(failure.reason.clone());
        let legacy_for = self.legacy_since.map(|since| since.elapsed());
        let jitter = rand::rng().random_range(0.0..=1.0);
        let was = self.machine.health();
        let mut next = self.machine;
        next.on_failure(failure.reports);
        let step = health::after_failure(
            failure.via,
            failure.reports,
            self.legacy.is_some(),
            self.grpc.is_some(),
            legacy_for,
            self.timing(),
            next.backoff(self.settings.max_backoff, jitter),
        );
        let Some(step) = step else {
            tracing::debug!(server = %self.server, reason = %failure.reason, "no gRPC agent: polling the legacy agent");
            self.legacy_since = Some(Instant::now());
            context.notify(PollTick);
            return;
        };
        self.machine = next;
        if was != Health::Down {
            tracing::warn!(server = %self.server, via = ?failure.via, reason = %failure.reason, "agent lost: server marked down");
        }
        if let Some(observer) = &self.observer {
            observer.agent_failed(&self.server, failure.via);
        }
        self.balancer.do_send(AgentUnreachable {
            server: self.server.clone(),
        });
        self.wait_for_retry(step, context);
    }
}

impl Handler<Call> for Supervisor {
    type Result = ResponseFuture<Result<CallAnswer, TransportError>>;

    fn handle(&mut self, call: Call, _: &mut Context<Self>) -> Self::Result {
        let transport = self.transport_for_calls();
        let observer = self.observer.clone();
        let server = self.server.clone();
        Box::pin(async move {
            let transport = transport.ok_or(TransportError::NoTransport)?;
            let started = Instant::now();
            let via = transport.via();
            let key_change = match &call.0 {
                AgentCall::AuthorizedKey { user, add, .. } => Some((user.clone(), *add)),
                _ => None,
            };
            let answer = match call.0 {
                AgentCall::UserSessions { user } => transport
                    .user_sessions(&user)
                    .await
                    .map(CallAnswer::Sessions),
                AgentCall::Suspend {
                    user,
                    session_id,
                    timeout,
                } => transport
                    .suspend(&user, &session_id, timeout)
                    .await
                    .map(|()| CallAnswer::Done),
                AgentCall::AuthorizedKey {
                    user,
                    key,
                    key_file,
                    add,
                } => transport
                    .authorized_key(&user, &key, &key_file, add)
                    .await
                    .map(|()| CallAnswer::Done),
            };
            if let Some(observer) = observer {
                // an agent that answered "no" (a refusal) was reached: that is no agent error
                let reached = match &answer {
                    Ok(_) => true,
                    Err(error) => error.is_refusal(),
                };
                observer.call_finished(&server, via, started.elapsed(), reached);
                if let Some((user, installed)) = key_change {
                    observer.key_changed(&server, &user, installed, answer.is_ok());
                }
            }
            answer
        })
    }
}

impl Handler<Stop> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Stop, context: &mut Context<Self>) {
        tracing::debug!(server = %self.server, "supervisor stopped");
        context.stop();
    }
}

impl Handler<GetState> for Supervisor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SupervisorState {
            server: self.server.clone(),
            health: self.machine.health(),
            via: self.via,
            failures: self.machine.failures(),
            reports: self.reports,
            probes: self.probes,
            last_error: self.last_error.clone(),
        })
    }
}

/// Follows the agent's watch stream, sending every message to the supervisor as `Observed`,
/// and `Failed` when it ends (closed, error, or silent for heartbeat + timeout).
async fn watch_stream(target: GrpcTarget, heartbeat: Duration, supervisor: Addr<Supervisor>) {
    let mut reports = 0u64;
    let reason = follow(&target, heartbeat, &supervisor, &mut reports).await;
    supervisor.do_send(Failed {
        via: Via::Grpc,
        reports,
        reason,
    });
}

async fn follow(
    target: &GrpcTarget,
    heartbeat: Duration,
    supervisor: &Addr<Supervisor>,
    reports: &mut u64,
) -> String {
    // boxed: the connect (TLS handshake) state is large and only needed until the stream is
    // open; inline it would stay in every server's task for the stream's whole life
    let mut stream = match Box::pin(target.watch(heartbeat)).await {
        Ok(stream) => stream,
        Err(error) => return error.to_string(),
    };
    let deadline = heartbeat + target.timeout;
    loop {
        let message = match tokio::time::timeout(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return "stream closed".to_string(),
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return format!("no message within {deadline:?}"),
        };
        *reports += 1;
        supervisor.do_send(Observed {
            via: Via::Grpc,
            sessions: Some(message.sessions.iter().map(grpc::session_view).collect()),
            load_factor: message.load.as_ref().and_then(|load| load.load_factor),
            load_checked: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::transport::local::LocalAgent;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    /// A local "agent" script answering `OK` + load figures, or failing when `broken` exists.
    fn fake_agent(directory: &std::path::Path) -> String {
        let script = directory.join("agent");
        let broken = directory.join("broken");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$2\" >> {}\n[ -e {} ] && exit 1\necho OK\n\
                 [ \"$2\" = checkload ] && printf 'loadavgXX:100\\nmemAvail:2000\\nmyMemAvail:2000\\nnumCPU:2\\ntypeCPU:1000\\n'\nexit 0\n",
                directory.join("calls").display(),
                broken.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.display().to_string()
    }

    async fn health_of(balancer: &Addr<Balancer>) -> Option<(Health, Option<i64>)> {
        let state = balancer
            .send(super::super::balancer::GetState)
            .await
            .unwrap();
        state.get("n1").map(|view| (view.health, view.load_factor))
    }

    async fn wait_for(
        balancer: &Addr<Balancer>,
        wanted: Health,
        limit: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if health_of(balancer).await.map(|(health, _)| health) == Some(wanted) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    #[actix::test]
    async fn legacy_agent_up_down_half_open_up() {
        let directory = tempfile::tempdir().unwrap();
        let command = fake_agent(directory.path());
        // the script lives in a temporary directory whose path must pass validation
        assert!(
            crate::farm::agentcmd::local_argv(&command, "foo", &crate::farm::agentcmd::Task::Ping)
                .is_ok(),
            "{command}"
        );
        let balancer = Balancer::new(Duration::from_secs(30)).start();
        let settings = SupervisorSettings {
            heartbeat: Duration::from_millis(300),
            timeout: Duration::from_millis(500),
            max_backoff: Duration::from_millis(200),
            grpc_retry: Duration::from_secs(30),
            legacy_poll: Duration::from_millis(300),
            load_interval: Duration::from_secs(300),
        };
        let legacy = Transport::Local(Arc::new(LocalAgent {
            agent_command: command,
            timeout: settings.timeout,
        }));
        let supervisor =
            Supervisor::new("n1".into(), None, Some(legacy), settings, balancer.clone()).start();
        assert!(wait_for(&balancer, Health::Up, Duration::from_secs(5))
            .await
            .is_some());
        // checkload: (2000/1000) * 2 * 1000 * 100 / 100
        assert_eq!(health_of(&balancer).await, Some((Health::Up, Some(4000))));
        std::fs::write(directory.path().join("broken"), "").unwrap();
        let down = wait_for(&balancer, Health::Down, Duration::from_secs(5))
            .await
            .expect("marked down");
        // heartbeat + timeout, plus a margin
        assert!(down < Duration::from_millis(300 + 500 + 500), "{down:?}");
        std::fs::remove_file(directory.path().join("broken")).unwrap();
        // half-open: the first report after the outage is Degraded, the next one Up
        assert!(
            wait_for(&balancer, Health::Degraded, Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(wait_for(&balancer, Health::Up, Duration::from_secs(5))
            .await
            .is_some());
        let state = supervisor.send(GetState).await.unwrap();
        assert_eq!(
            (state.health, state.via, state.failures),
            (Health::Up, Some(Via::Local), 0)
        );
        assert!(
            state.reports >= 3 && state.last_error.is_some(),
            "{state:?}"
        );
        // every poll pings; checkload ran once (load_interval 300 s) and its factor stays
        let calls = std::fs::read_to_string(directory.path().join("calls")).unwrap();
        let count = |task| calls.lines().filter(|line| *line == task).count();
        assert!(count("ping") >= 3, "{calls}");
        assert_eq!(count("checkload"), 1, "{calls}");
        assert_eq!(health_of(&balancer).await, Some((Health::Up, Some(4000))));
    }

    #[test]
    fn a_server_that_stays_down_is_retried_with_capped_backoff_on_a_paused_clock() {
        crate::farm::balancer::tests::paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let settings = backoff_settings();
            // an agent that cannot be run: every poll fails at once, without I/O to wait for
            let legacy = Transport::Local(Arc::new(LocalAgent {
                agent_command: "/nonexistent/x2gobroker-agent".to_string(),
                timeout: settings.timeout,
            }));
            let supervisor =
                Supervisor::new("n1".into(), None, Some(legacy), settings, balancer.clone())
                    .start();
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(60)).await;
            let state = supervisor.send(GetState).await.unwrap();
            assert_eq!(state.health, Health::Down);
            // retries after 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 s, then every 10 s (each + ≤ 50 %
            // jitter): 12.6–18.9 s for the first six, then 10–15 s each
            assert!(
                (9..=12).contains(&state.failures),
                "{} attempts in {:?}",
                state.failures,
                started.elapsed()
            );
            assert_eq!(
                health_of(&balancer).await.map(|(health, _)| health),
                Some(Health::Down)
            );
        });
    }

    /// Heartbeat and timeout 2 s, back-off capped at 10 s: the back-off tests' settings.
    fn backoff_settings() -> SupervisorSettings {
        SupervisorSettings {
            heartbeat: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
            grpc_retry: Duration::from_secs(30),
            legacy_poll: Duration::from_secs(10),
            load_interval: Duration::from_secs(300),
        }
    }

    /// A port of 127.0.0.1 nothing listens on (bound a moment ago, then closed).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn grpc_supervisor(port: u16, balancer: &Addr<Balancer>) -> Addr<Supervisor> {
        let settings = backoff_settings();
        let target = GrpcTarget {
            server: "n1".into(),
            address: format!("127.0.0.1:{port}"),
            token: None,
            tls: None,
            timeout: settings.timeout,
        };
        Supervisor::new("n1".into(), Some(target), None, settings, balancer.clone()).start()
    }

    #[test]
    fn a_closed_agent_port_is_probed_about_once_a_second_on_a_paused_clock() {
        crate::farm::balancer::tests::paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let supervisor = grpc_supervisor(closed_port(), &balancer);
            tokio::time::sleep(Duration::from_secs(60)).await;
            let state = supervisor.send(GetState).await.unwrap();
            assert_eq!(state.health, Health::Down);
            // the back-off's attempts as without probes (a closed port never brings one
            // forward), and about one probe a second in between
            assert!(
                (9..=12).contains(&state.failures) && (40..=66).contains(&state.probes),
                "{} attempts and {} probes in a minute",
                state.failures,
                state.probes
            );
        });
    }

    #[test]
    fn an_agent_port_that_opens_again_is_retried_within_a_probe_interval_on_a_paused_clock() {
        crate::farm::balancer::tests::paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            let port = closed_port();
            let supervisor = grpc_supervisor(port, &balancer);
            // long enough for the back-off to reach its cap (10–15 s)
            tokio::time::sleep(Duration::from_secs(25)).await;
            let before = supervisor.send(GetState).await.unwrap();
            assert!(before.failures >= 6, "{before:?}");
            // the "agent" comes back: a listener that tells probes (closed at once) from the
            // watch attempt (which sends the HTTP/2 preface)
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let opened = Instant::now();
            let attempt = || async {
                loop {
                    let (mut connection, _) = listener.accept().await.unwrap();
                    let mut preface = [0u8; 3];
                    if tokio::io::AsyncReadExt::read_exact(&mut connection, &mut preface)
                        .await
                        .is_ok()
                    {
                        assert_eq!(&preface, b"PRI");
                        return opened.elapsed();
                    }
                }
            };
            let retried_after = tokio::time::timeout(Duration::from_secs(20), attempt())
                .await
                .expect("the supervisor connects again");
            assert!(
                retried_after <= health::PROBE_INTERVAL + health::PROBE_TIMEOUT,
                "retried {retried_after:?} after the port opened"
            );
            // that attempt failed (no HTTP/2 answer): a new agent's failures start over, so
            // the next attempt follows after the first back-off step, not the capped one
            let again = tokio::time::timeout(Duration::from_secs(20), attempt())
                .await
                .expect("the supervisor connects once more");
            assert!(
                again - retried_after <= health::BASE_BACKOFF * 2,
                "then {:?} later",
                again - retried_after
            );
            let after = supervisor.send(GetState).await.unwrap();
            assert!(after.probes > before.probes, "{after:?}");
        });
    }

    #[test]
    fn a_port_that_accepts_and_never_answers_is_paced_by_the_backoff_alone_on_a_paused_clock() {
        crate::farm::balancer::tests::paused_system().block_on(async {
            let balancer = Balancer::new(Duration::from_secs(30)).start();
            // a hung agent: the kernel accepts, nothing ever answers
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let counts = Arc::new(std::sync::Mutex::new((0u32, 0u32)));
            let counting = counts.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    let (connection, _) = listener.accept().await.unwrap();
                    let counting = counting.clone();
                    held.push(tokio::spawn(async move {
                        let mut connection = connection;
                        let mut preface = [0u8; 3];
                        let attempt =
                            tokio::io::AsyncReadExt::read_exact(&mut connection, &mut preface)
                                .await
                                .is_ok();
                        {
                            let mut counts = counting.lock().unwrap();
                            if attempt {
                                counts.0 += 1;
                            } else {
                                counts.1 += 1;
                            }
                        }
                        // held open, never answered
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }));
                }
            });
            let supervisor = grpc_supervisor(port, &balancer);
            tokio::time::sleep(Duration::from_secs(60)).await;
            let state = supervisor.send(GetState).await.unwrap();
            let (attempts, probes) = *counts.lock().unwrap();
            assert_eq!(state.health, Health::Down);
            // each attempt waits the call timeout (2 s), then the back-off (0.2 s doubling,
            // ≤ 10 s, + ≤ 50 %): 8–10 attempts a minute, none brought forward by the probes (about
            // one a second while the back-off is longer than that)
            assert!(
                (8..=10).contains(&attempts) && (20..=60).contains(&probes),
                "{attempts} attempts, {probes} probes seen; {state:?}"
            );
        });
    }
}
