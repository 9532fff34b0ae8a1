//! The Balancer actor: owns the farm's live state (sessions, load, health, pending placements) and answers selections.

use super::policy::{self, Decision, Health, ServerView, SessionView};
use super::transport::Via;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
#[rtype(result = "Decision")]
pub struct SelectServer {
    pub hosts: Vec<String>,
    pub user: String,
    /// The user's sessions as a legacy agent listed them for this request.
    pub asked: Vec<SessionView>,
    /// Hosts this request found unusable (X2Go's SSH port closed): treated as down.
    pub excluded: Vec<String>,
}

/// The listing narrowing of a profile for `user` (§7.4 step 6).
#[derive(Debug, Message)]
#[rtype(result = "Option<(String, Option<char>)>")]
pub struct ListingStatus {
    pub hosts: Vec<String>,
    pub user: String,
    /// The user's sessions as a legacy agent listed them for this request.
    pub asked: Vec<SessionView>,
}

/// A placement that was not used after all (its server turned out unusable) (event).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PlacementAbandoned {
    pub server: String,
}

/// A snapshot of the whole farm.
#[derive(Debug, Message)]
#[rtype(result = "BTreeMap<String, ServerView>")]
pub struct GetState;

#[derive(Debug, Default)]
struct ServerEntry {
    health: Option<Health>,
    sessions: Vec<SessionView>,
    load_factor: Option<i64>,
    /// When each unconfirmed placement was made.
    pending: Vec<Instant>,
    via: Option<Via>,
}

/// The Balancer actor.
#[derive(Debug)]
pub struct Balancer {
    servers: BTreeMap<String, ServerEntry>,
    pending_ttl: Duration,
}

impl Balancer {
    /// A balancer whose pending placements expire after `pending_ttl` without confirmation.
    pub fn new(pending_ttl: Duration) -> Balancer {
        Balancer {
            servers: BTreeMap::new(),
            pending_ttl,
        }
    }

    fn views(&mut self, now: Instant) -> BTreeMap<String, ServerView> {
        let ttl = self.pending_ttl;
        self.servers
            .iter_mut()
            .map(|(name, entry)| {
                entry
                    .pending
                    .retain(|placed| now.duration_since(*placed) < ttl);
                let view = ServerView {
                    health: entry.health.unwrap_or(Health::Down),
                    sessions: entry.sessions.clone(),
                    load_factor: entry.load_factor,
                    pending: entry.pending.len() as u32,
                    via: entry.via,
                };
                (name.clone(), view)
            })
            .collect()
    }
}

impl Actor for Balancer {
    type Context = Context<Self>;
}

impl Handler<AgentReported> for Balancer {
    type Result = ();

    fn handle(&mut self, report: AgentReported, _: &mut Context<Self>) {
        let entry = self.servers.entry(report.server.clone()).or_default();
        match report.sessions {
            Some(sessions) => {
                let confirmed = sessions.len().saturating_sub(entry.sessions.len());
                let drop = confirmed.min(entry.pending.len());
                entry.pending.drain(..drop);
                entry.sessions = sessions;
            }
            // a legacy agent: placements are only forgotten after their time to live
            None => entry.sessions.clear(),
        }
        entry.health = Some(report.health);
        entry.load_factor = report.load_factor;
        entry.via = Some(report.via);
    }
}

impl Handler<AgentUnreachable> for Balancer {
    type Result = ();

    fn handle(&mut self, event: AgentUnreachable, _: &mut Context<Self>) {
        let entry = self.servers.entry(event.server.clone()).or_default();
        if entry.health != Some(Health::Down) {
            tracing::warn!(server = %event.server, "agent unreachable: server marked down");
        }
        entry.health = Some(Health::Down);
        entry.pending.clear();
    }
}

impl Handler<SelectServer> for Balancer {
    type Result = MessageResult<SelectServer>;

    fn handle(&mut self, request: SelectServer, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut views = self.views(now);
        for host in &request.excluded {
            if let Some(view) = views.get_mut(host) {
                view.health = Health::Down;
            }
        }
        let decision = policy::decide(&request.hosts, &request.user, &views, &request.asked);
        if let Decision::New { host } = &decision {
            self.servers
                .entry(host.clone())
                .or_default()
                .pending
                .push(now);
        }
        MessageResult(decision)
    }
}

impl Handler<PlacementAbandoned> for Balancer {
    type Result = ();

    fn handle(&mut self, event: PlacementAbandoned, _: &mut Context<Self>) {
        if let Some(entry) = self.servers.get_mut(&event.server) {
            entry.pending.pop();
        }
    }
}

impl Handler<ListingStatus> for Balancer {
    type Result = MessageResult<ListingStatus>;

    fn handle(&mut self, request: ListingStatus, _: &mut Context<Self>) -> Self::Result {
        let views = self.views(Instant::now());
        MessageResult(policy::listing_status(
            &request.hosts,
            &request.user,
            &views,
            &request.asked,
        ))
    }
}

impl Handler<GetState> for Balancer {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.views(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, server: &str) -> SessionView {
        SessionView {
            session_id: id.into(),
            user: "u".into(),
            server: server.into(),
            status: 'R',
            raw_line: String::new(),
        }
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
                    hosts: hosts.clone(),
                    user: format!("user{index}"),
                    asked: Vec::new(),
                    excluded: Vec::new(),
                })
                .await
                .unwrap();
            let Decision::New { host } = decision else {
                panic!("{decision:?}")
            };
            *counts.entry(host).or_insert(0) += 1;
        }
        assert!(counts.values().all(|count| *count == 5), "{counts:?}");
        // n1 reports its five new sessions: its pending placements are confirmed, not doubled
        let sessions: Vec<SessionView> = (0..5).map(|i| session(&format!("s{i}"), "n1")).collect();
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
                hosts: vec!["n2".into()],
                user: "x".into(),
                asked: Vec::new(),
                excluded: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(decision, Decision::NoServer);
    }
}
