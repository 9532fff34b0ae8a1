//! `x2gobroker.admin.v1.Admin` on the admin listener: the farm's state, drain and undrain, explanations; the one place admin messages convert from the broker's types.

use super::{AdminClient, TokenUsed};
use crate::farm::balancer::ServerOverview;
use crate::farm::model::{Health, SessionStatus, Via};
use crate::farm::policy::{Decision, HostReason};
use crate::service::{Broker, DrainFailure, ExplainPath, Explained};
use std::net::IpAddr;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use x2gobroker_proto::admin::v1 as pb;

/// The admin service over one broker.
#[derive(Clone)]
pub struct AdminService {
    pub broker: Arc<Broker>,
}

fn health(health: Option<Health>) -> pb::Health {
    match health {
        Some(Health::Up) => pb::Health::Up,
        Some(Health::Degraded) => pb::Health::Degraded,
        Some(Health::Down) => pb::Health::Down,
        None => pb::Health::Unspecified,
    }
}

fn transport(via: Option<Via>) -> String {
    match via {
        Some(Via::Grpc) => "grpc",
        Some(Via::Ssh) => "ssh",
        Some(Via::Local) => "local",
        None => "",
    }
    .to_string()
}

fn count(sessions: &[crate::farm::model::SessionView], status: SessionStatus) -> u32 {
    sessions
        .iter()
        .filter(|session| session.status == status)
        .count() as u32
}

/// A server as the admin API shows it.
pub fn server_info(server: &ServerOverview, drained: bool) -> pb::ServerInfo {
    let view = server.view.as_ref();
    let sessions = view
        .map(|view| view.sessions.as_slice())
        .unwrap_or_default();
    pb::ServerInfo {
        name: server.name.clone(),
        health: health(view.map(|view| view.health)) as i32,
        transport: transport(view.and_then(|view| view.via)),
        running_sessions: count(sessions, SessionStatus::Running),
        suspended_sessions: count(sessions, SessionStatus::Suspended),
        load_factor: view.and_then(|view| view.load_factor),
        pending_placements: view.map_or(0, |view| view.pending),
        drained,
        last_report_age_ms: server
            .last_heard
            .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        sessions_known: view
            .and_then(|view| view.via)
            .is_some_and(|via| !via.is_legacy()),
    }
}

fn reason(host: &HostReason) -> pb::ServerReason {
    let view = host.view.as_ref();
    let sessions = view
        .map(|view| view.sessions.as_slice())
        .unwrap_or_default();
    pb::ServerReason {
        name: host.host.clone(),
        chosen: host.chosen,
        reason: host.reason.clone(),
        health: health(view.map(|view| view.health)) as i32,
        running_sessions: count(sessions, SessionStatus::Running),
        suspended_sessions: count(sessions, SessionStatus::Suspended),
        pending_placements: view.map_or(0, |view| view.pending),
        load_factor: view.and_then(|view| view.load_factor),
        drained: view.is_some_and(|view| view.drained) || host.reason.starts_with("drained"),
        rank: host.rank,
    }
}

/// An explanation as the admin API shows it.
pub fn explain_reply(explained: &Explained) -> pb::ExplainReply {
    let (outcome, server, session_id) = match &explained.decision {
        Some(Decision::Resume { host, session }) => (
            pb::Outcome::Resume,
            host.clone(),
            session.session_id.clone(),
        ),
        Some(Decision::TakeOver { host, session }) => (
            pb::Outcome::TakeOver,
            host.clone(),
            session.session_id.clone(),
        ),
        Some(Decision::New { host }) => (pb::Outcome::New, host.clone(), String::new()),
        Some(Decision::NoServer) => (pb::Outcome::None, String::new(), String::new()),
        None if explained.path == ExplainPath::NoAgent
            && !explained.selection.server.is_empty()
            && !explained.selection.server.starts_with("no-") =>
        {
            (
                pb::Outcome::New,
                explained.selection.server.clone(),
                String::new(),
            )
        }
        None if explained.path == ExplainPath::NoAgent && explained.selection.server.is_empty() => {
            (pb::Outcome::New, String::new(), String::new())
        }
        None => (pb::Outcome::None, String::new(), String::new()),
    };
    let (path, summary) = match explained.path {
        ExplainPath::LiveFarm => (
            "live farm",
            match &explained.decision {
                Some(Decision::Resume { host, .. }) => {
                    format!("resume the user's suspended session on {host}")
                }
                Some(Decision::TakeOver { host, .. }) => {
                    format!("take over the user's running session on {host}")
                }
                Some(Decision::New { host }) => format!("a new session on {host}"),
                _ => format!(
                    "no server can take a new session: answered {}",
                    explained.selection.server
                ),
            },
        ),
        ExplainPath::NoAgent => (
            "no agent (random)",
            "the profile has no agent: a new session on a random server that is not drained"
                .to_string(),
        ),
        ExplainPath::Acl(verdict) => (
            "acl",
            format!(
                "the profile is hidden from the user: {}; answered as an unknown profile",
                verdict.reason()
            ),
        ),
        ExplainPath::UnknownProfile => ("unknown profile", "no such profile".to_string()),
        ExplainPath::Zeroconf => (
            "zeroconf",
            "the zeroconf backend answers localhost".to_string(),
        ),
    };
    pb::ExplainReply {
        outcome: outcome as i32,
        server,
        address: explained.selection.server.clone(),
        port: u32::try_from(explained.selection.port).unwrap_or(0),
        session_id,
        summary,
        servers: explained.hosts.iter().map(reason).collect(),
        path: path.to_string(),
    }
}

impl AdminService {
    fn caller<T>(request: &Request<T>) -> String {
        let token_used = request
            .extensions()
            .get::<TokenUsed>()
            .is_some_and(|used| used.0);
        request
            .extensions()
            .get::<AdminClient>()
            .map(|client| client.identity(token_used))
            .unwrap_or_else(|| "admin".to_string())
    }

    async fn set_drained(
        &self,
        request: Request<pb::DrainRequest>,
        drain: bool,
    ) -> Result<Response<pb::DrainReply>, Status> {
        let by = Self::caller(&request);
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("a server name is needed"));
        }
        let broker = self.broker.clone();
        let server = name.clone();
        // the state file is written and synced: off the async workers
        let outcome = tokio::task::spawn_blocking(move || broker.set_drained(&server, drain, &by))
            .await
            .map_err(|error| Status::internal(error.to_string()))?;
        match outcome {
            Ok(changed) => Ok(Response::new(pb::DrainReply {
                name,
                drained: drain,
                changed,
            })),
            Err(DrainFailure::UnknownServer) => Err(Status::not_found(format!(
                "no profile names the server {name:?}"
            ))),
            Err(error @ DrainFailure::NotKept(_)) => Err(Status::unavailable(error.to_string())),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn farm_state(
        &self,
        _: Request<pb::FarmStateRequest>,
    ) -> Result<Response<pb::FarmStateReply>, Status> {
        let drain = &self.broker.operations.drain;
        let servers = self.broker.farm_overview().await;
        let (known, unknown): (Vec<_>, Vec<_>) = servers
            .iter()
            .partition(|server| server.view.is_some() || self.broker.names_server(&server.name));
        Ok(Response::new(pb::FarmStateReply {
            servers: known
                .iter()
                .map(|server| server_info(server, drain.is_drained(&server.name)))
                .collect(),
            drained_unknown: unknown.iter().map(|server| server.name.clone()).collect(),
        }))
    }

    async fn server_state(
        &self,
        request: Request<pb::ServerStateRequest>,
    ) -> Result<Response<pb::ServerInfo>, Status> {
        let name = request.into_inner().name;
        let servers = self.broker.farm_overview().await;
        let drained = self.broker.operations.drain.is_drained(&name);
        match servers.iter().find(|server| server.name == name) {
            Some(server) => Ok(Response::new(server_info(server, drained))),
            None if self.broker.names_server(&name) => {
                let server = ServerOverview {
                    name: name.clone(),
                    view: None,
                    last_heard: None,
                };
                Ok(Response::new(server_info(&server, drained)))
            }
            None => Err(Status::not_found(format!(
                "no profile names the server {name:?}"
            ))),
        }
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainReply>, Status> {
        self.set_drained(request, true).await
    }

    async fn undrain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainReply>, Status> {
        self.set_drained(request, false).await
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainReply>, Status> {
        let request = request.into_inner();
        if request.user.is_empty() || request.profile.is_empty() {
            return Err(Status::invalid_argument("a user and a profile are needed"));
        }
        let client: IpAddr = if request.client_address.is_empty() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            request
                .client_address
                .parse()
                .map_err(|_| Status::invalid_argument("client_address is not an IP address"))?
        };
        let explained = self
            .broker
            .explain(&request.user, &request.profile, &client)
            .await
            .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Response::new(explain_reply(&explained)))
    }
}
