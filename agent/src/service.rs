//! The `x2gobroker.agent.v1.Agent` gRPC service: validates requests with the protocol crate's
//! argument rules (the functions the legacy command line and the broker call), calls the X2Go
//! tools through [`crate::tools`], and converts results with [`crate::convert`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use x2gobroker_proto::agent::v1 as pb;
use x2gobroker_proto::agent::v1::agent_server::Agent;

use x2gobroker_agent_protocol::{
    available_tasks, busy_percentages, check_key_line, check_session_id, TaskName,
};

use crate::authkeys::{add_key, remove_key, resolve_key_file};
use crate::convert::{self, AgentError};
use crate::load::read_load;
use crate::servers::usage_from_sessions;
use crate::session::{filter_by_server, Session};
use crate::tools::X2GoTools;
use crate::users::{regular_user, UserAccount};
use crate::watch::{unix_ms_now, SessionSnapshot, SnapshotSender};

/// Shortest and longest heartbeat a client may ask for.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// Everything the service needs; shared by all calls.
#[derive(Debug)]
pub struct AgentState {
    pub tools: X2GoTools,
    /// Empty: every server of the session DB.
    pub server_names: Vec<String>,
    pub hostname: String,
    pub default_heartbeat: Duration,
    pub snapshots: SnapshotSender,
    /// Turns true on shutdown; ends watch streams.
    pub shutdown: watch::Receiver<bool>,
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct AgentService {
    state: Arc<AgentState>,
}

impl AgentService {
    pub fn new(state: AgentState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    async fn user_sessions(&self, account: &UserAccount) -> Result<Vec<Session>, AgentError> {
        let sessions = self.state.tools.list_user_sessions(account).await?;
        Ok(filter_by_server(sessions, &self.state.server_names))
    }

    async fn all_sessions(&self) -> Result<Vec<Session>, AgentError> {
        let sessions = self.state.tools.list_all_sessions().await?;
        Ok(filter_by_server(sessions, &self.state.server_names))
    }

    async fn change_status(
        &self,
        request: pb::SessionActionRequest,
        letter: &str,
    ) -> Result<pb::SessionActionResponse, AgentError> {
        check_session_id(&request.session_id)?;
        let account = regular_user(&request.user)?;
        let sessions = self.user_sessions(&account).await?;
        let Some(session) = sessions
            .into_iter()
            .find(|s| s.session_id == request.session_id)
        else {
            return Err(AgentError::SessionNotFound {
                user: request.user,
                session_id: request.session_id,
            });
        };
        let output = self
            .state
            .tools
            .change_status(&account, letter, &session.session_id)
            .await?;
        if !output.status.success() {
            return Err(AgentError::ChangeStatus {
                program: format!("x2gochangestatus {letter}"),
                stderr: output.stderr_text(),
            });
        }
        tracing::info!(user = %account.name, session_id = %session.session_id, status = letter, "session status changed");
        Ok(pb::SessionActionResponse {
            session: Some(convert::session(&session)),
        })
    }

    async fn edit_key(
        &self,
        request: pb::AuthorizedKeyRequest,
        adding: bool,
    ) -> Result<pb::AuthorizedKeyResponse, AgentError> {
        let account = regular_user(&request.user)?;
        check_key_line(&request.key)?;
        let path = resolve_key_file(&request.key_file, &account)?;
        let key = request.key;
        let file = path.clone();
        let changed = tokio::task::spawn_blocking(move || {
            if adding {
                add_key(&account, &file, &key)
            } else {
                remove_key(&account, &file, &key)
            }
        })
        .await
        .map_err(|error| AgentError::Internal(error.to_string()))??;
        tracing::info!(user = %request.user, path = %path.display(), adding, changed, "authorized keys edited");
        Ok(pb::AuthorizedKeyResponse {
            path: path.to_string_lossy().into_owned(),
            changed,
        })
    }
}

fn load_message() -> Result<pb::Load, AgentError> {
    read_load()
        .map(|figures| convert::load(&figures))
        .map_err(AgentError::Load)
}

fn state_message(
    snapshot: &SessionSnapshot,
    heartbeat: bool,
    server_names: &[String],
) -> pb::ServerState {
    pb::ServerState {
        sessions: snapshot.sessions.iter().map(convert::session).collect(),
        load: load_message().ok(),
        generation: snapshot.generation,
        heartbeat,
        observed_unix_ms: snapshot.observed_unix_ms,
        server_names: server_names.to_vec(),
    }
}

/// Server-streaming response type of `Watch`.
pub type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ServerState, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: self.state.hostname.clone(),
            server_names: self.state.server_names.clone(),
        }))
    }

    async fn available_tasks(
        &self,
        _request: Request<pb::AvailableTasksRequest>,
    ) -> Result<Response<pb::AvailableTasksResponse>, Status> {
        let installed = self.state.tools.x2goserver_installed().await;
        Ok(Response::new(pb::AvailableTasksResponse {
            tasks: available_tasks(installed)
                .into_iter()
                .map(|name| TaskName::word(name).to_owned())
                .collect(),
        }))
    }

    async fn list_user_sessions(
        &self,
        request: Request<pb::ListUserSessionsRequest>,
    ) -> Result<Response<pb::SessionList>, Status> {
        let account = regular_user(&request.get_ref().user).map_err(AgentError::from)?;
        let sessions = self.user_sessions(&account).await?;
        Ok(Response::new(convert::session_list(&sessions)))
    }

    async fn list_all_sessions(
        &self,
        _request: Request<pb::ListAllSessionsRequest>,
    ) -> Result<Response<pb::SessionList>, Status> {
        let sessions = self.all_sessions().await?;
        Ok(Response::new(convert::session_list(&sessions)))
    }

    async fn get_servers(
        &self,
        _request: Request<pb::GetServersRequest>,
    ) -> Result<Response<pb::GetServersResponse>, Status> {
        let sessions = self.all_sessions().await?;
        Ok(Response::new(pb::GetServersResponse {
            servers: usage_from_sessions(&sessions)
                .iter()
                .map(convert::server_usage)
                .collect(),
        }))
    }

    async fn find_busy_servers(
        &self,
        _request: Request<pb::FindBusyServersRequest>,
    ) -> Result<Response<pb::FindBusyServersResponse>, Status> {
        let sessions = self.all_sessions().await?;
        let counts: Vec<(String, u32)> = usage_from_sessions(&sessions)
            .into_iter()
            .map(|usage| (usage.server, usage.sessions))
            .collect();
        Ok(Response::new(pb::FindBusyServersResponse {
            servers: busy_percentages(&counts)
                .iter()
                .map(convert::busy_server)
                .collect(),
        }))
    }

    async fn check_load(
        &self,
        _request: Request<pb::CheckLoadRequest>,
    ) -> Result<Response<pb::Load>, Status> {
        Ok(Response::new(load_message()?))
    }

    async fn suspend_session(
        &self,
        request: Request<pb::SessionActionRequest>,
    ) -> Result<Response<pb::SessionActionResponse>, Status> {
        Ok(Response::new(
            self.change_status(request.into_inner(), "S").await?,
        ))
    }

    async fn terminate_session(
        &self,
        request: Request<pb::SessionActionRequest>,
    ) -> Result<Response<pb::SessionActionResponse>, Status> {
        Ok(Response::new(
            self.change_status(request.into_inner(), "T").await?,
        ))
    }

    async fn add_authorized_key(
        &self,
        request: Request<pb::AuthorizedKeyRequest>,
    ) -> Result<Response<pb::AuthorizedKeyResponse>, Status> {
        Ok(Response::new(
            self.edit_key(request.into_inner(), true).await?,
        ))
    }

    async fn remove_authorized_key(
        &self,
        request: Request<pb::AuthorizedKeyRequest>,
    ) -> Result<Response<pb::AuthorizedKeyResponse>, Status> {
        Ok(Response::new(
            self.edit_key(request.into_inner(), false).await?,
        ))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let heartbeat = match request.get_ref().heartbeat_ms {
            0 => self.state.default_heartbeat,
            ms => Duration::from_millis(u64::from(ms)).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT),
        };
        let mut snapshots = self.state.snapshots.subscribe();
        let mut shutdown = self.state.shutdown.clone();
        let server_names = self.state.server_names.clone();
        let subscribed_at = unix_ms_now();
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut last_generation = 0_u64;
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let message = tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = sender.closed() => break,
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let snapshot = snapshots.borrow_and_update().clone();
                        // Only observations made after the subscription, and only changes.
                        if snapshot.observed_unix_ms < subscribed_at || snapshot.generation == last_generation {
                            continue;
                        }
                        ticker.reset();
                        last_generation = snapshot.generation;
                        state_message(&snapshot, false, &server_names)
                    }
                    _ = ticker.tick() => {
                        if last_generation == 0 {
                            continue;
                        }
                        let snapshot = snapshots.borrow().clone();
                        state_message(&snapshot, true, &server_names)
                    }
                };
                if sender.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
