//! The Supervisor actor: one per X2Go server, keeps its sessions and load fresh through the agent's watch stream.

use super::agent::{self, AgentClient};
use super::balancer::{AgentReported, AgentUnreachable, Balancer};
use super::policy::Health;
use actix::prelude::*;
use rand::Rng;
use std::time::Duration;
use x2gobroker_proto::agent::v1 as pb;

/// How a supervisor talks to its agent.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// The heartbeat asked of the agent's watch stream.
    pub heartbeat: Duration,
    /// How late a message may be (beyond the heartbeat) before the agent counts as hung.
    pub timeout: Duration,
    /// Longest back-off between reconnection attempts.
    pub max_backoff: Duration,
}

/// The Supervisor actor of one server.
pub struct Supervisor {
    pub server: String,
    pub address: String,
    pub token: Option<String>,
    pub settings: SupervisorSettings,
    pub balancer: Addr<Balancer>,
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Context<Self>) {
        let watcher = watch_forever(
            self.server.clone(),
            self.address.clone(),
            self.token.clone(),
            self.settings.clone(),
            self.balancer.clone(),
        );
        context.spawn(actix::fut::wrap_future(watcher));
    }
}

/// Why one watch stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// It delivered at least one message before ending.
    AfterReports(String),
    /// It never delivered anything.
    Failed(String),
}

/// Subscribes to the agent's watch stream, feeds the balancer, and reconnects with
/// exponential back-off and jitter; a down server is trusted again only after a first
/// report (half-open: Degraded) followed by a second one (Up).
async fn watch_forever(
    server: String,
    address: String,
    token: Option<String>,
    settings: SupervisorSettings,
    balancer: Addr<Balancer>,
) {
    let mut failures: u32 = 0;
    let mut ever_reported = false;
    loop {
        let recovering = failures > 0 && ever_reported;
        match watch_once(
            &server,
            &address,
            token.as_deref(),
            &settings,
            &balancer,
            recovering,
        )
        .await
        {
            StreamEnd::AfterReports(reason) => {
                ever_reported = true;
                failures = 1;
                tracing::warn!(%server, %reason, "agent watch stream ended");
            }
            StreamEnd::Failed(reason) => {
                failures = failures.saturating_add(1);
                tracing::debug!(%server, %reason, failures, "agent not reachable");
            }
        }
        balancer.do_send(AgentUnreachable {
            server: server.clone(),
        });
        let exponent = failures.saturating_sub(1).min(6);
        let base = Duration::from_millis(200)
            .saturating_mul(1 << exponent)
            .min(settings.max_backoff);
        let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
        tokio::time::sleep(base + Duration::from_millis(jitter)).await;
    }
}

async fn watch_once(
    server: &str,
    address: &str,
    token: Option<&str>,
    settings: &SupervisorSettings,
    balancer: &Addr<Balancer>,
    recovering: bool,
) -> StreamEnd {
    let mut client: AgentClient = match agent::client(address, token, settings.timeout) {
        Ok(client) => client,
        Err(error) => return StreamEnd::Failed(error.to_string()),
    };
    let request = pb::WatchRequest {
        heartbeat_ms: settings.heartbeat.as_millis() as u32,
    };
    let mut stream = match agent::with_timeout(settings.timeout, client.watch(request)).await {
        Ok(stream) => stream,
        Err(error) => return StreamEnd::Failed(error.to_string()),
    };
    let deadline = settings.heartbeat + settings.timeout;
    let mut reports = 0u64;
    loop {
        let message = match tokio::time::timeout(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return end(reports, "stream closed".to_string()),
            Ok(Err(status)) => return end(reports, status.to_string()),
            Err(_) => return end(reports, format!("no message within {deadline:?}")),
        };
        let health = if recovering && reports == 0 {
            Health::Degraded
        } else {
            Health::Up
        };
        reports += 1;
        let sessions = message.sessions.iter().map(agent::session_view).collect();
        let load_factor = message.load.as_ref().and_then(|load| load.load_factor);
        balancer.do_send(AgentReported {
            server: server.to_string(),
            sessions,
            load_factor,
            health,
        });
    }
}

fn end(reports: u64, reason: String) -> StreamEnd {
    if reports > 0 {
        StreamEnd::AfterReports(reason)
    } else {
        StreamEnd::Failed(reason)
    }
}
