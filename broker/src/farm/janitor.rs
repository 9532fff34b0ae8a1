//! The KeyJanitor actor: removes one-time autologin keys from the servers when their lifetime is over, or at shutdown.

use super::supervisor::{AgentCall, Call, Supervisor};
use actix::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

/// Remove `key` from `user`'s `key_file` on `server` (through its supervisor) after `after`
/// (imperative).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveKeyLater {
    pub server: String,
    pub supervisor: Addr<Supervisor>,
    pub user: String,
    pub key: String,
    pub key_file: String,
    pub after: Duration,
}

/// Remove every key still waiting now, and answer once each removal was attempted (shutdown:
/// a key never outlives the broker that handed it out).
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct RemoveAllNow;

/// `server` has a new supervisor (a reload replaced it): the keys waiting there are removed
/// through it (imperative).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Rebind {
    pub server: String,
    pub supervisor: Addr<Supervisor>,
}

/// Private event: one removal was attempted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RemovalDone;

/// Private timer: the lifetime of key `id` is over.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Due(u64);

/// Report the janitor's state.
#[derive(Debug, Message)]
#[rtype(result = "JanitorState")]
pub struct GetState;

/// A snapshot of the janitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JanitorState {
    /// Keys waiting for their removal.
    pub scheduled: usize,
    /// Removals attempted so far.
    pub removed: u64,
}

/// The KeyJanitor actor (one per farm).
#[derive(Debug, Default)]
pub struct KeyJanitor {
    state: JanitorState,
    next_id: u64,
    /// Keys whose removal timer runs, with the timer.
    waiting: HashMap<u64, (RemoveKeyLater, SpawnHandle)>,
}

/// Removes one key through its server's supervisor.
async fn remove(request: RemoveKeyLater) {
    let call = AgentCall::AuthorizedKey {
        user: request.user.clone(),
        key: request.key.clone(),
        key_file: request.key_file.clone(),
        add: false,
    };
    match request.supervisor.send(Call(call)).await {
        Ok(Ok(_)) => {
            tracing::info!(user = %request.user, server = %request.server, "one-time autologin key removed")
        }
        Ok(Err(error)) => {
            tracing::error!(user = %request.user, server = %request.server, %error, "could not remove a one-time autologin key")
        }
        Err(error) => {
            tracing::error!(user = %request.user, server = %request.server, %error, "could not remove a one-time autologin key: supervisor gone")
        }
    }
}

impl Actor for KeyJanitor {
    type Context = Context<Self>;
}

impl Handler<RemoveKeyLater> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, request: RemoveKeyLater, context: &mut Context<Self>) {
        self.state.scheduled += 1;
        self.next_id += 1;
        let id = self.next_id;
        let timer = context.notify_later(Due(id), request.after);
        self.waiting.insert(id, (request, timer));
    }
}

impl Handler<Due> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, due: Due, context: &mut Context<Self>) {
        let Some((request, _)) = self.waiting.remove(&due.0) else {
            return;
        };
        let janitor = context.address();
        context.spawn(actix::fut::wrap_future(async move {
            remove(request).await;
            janitor.do_send(RemovalDone);
        }));
    }
}

impl Handler<RemoveAllNow> for KeyJanitor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: RemoveAllNow, context: &mut Context<Self>) -> Self::Result {
        let waiting: Vec<RemoveKeyLater> = self
            .waiting
            .drain()
            .map(|(_, (request, timer))| {
                context.cancel_future(timer);
                request
            })
            .collect();
        let count = waiting.len();
        self.state.scheduled = self.state.scheduled.saturating_sub(count);
        self.state.removed += count as u64;
        if count > 0 {
            tracing::info!(
                keys = count,
                "removing the waiting one-time autologin keys now"
            );
        }
        Box::pin(async move {
            futures::future::join_all(waiting.into_iter().map(remove)).await;
            count
        })
    }
}

impl Handler<Rebind> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, rebind: Rebind, _: &mut Context<Self>) {
        for (request, _) in self.waiting.values_mut() {
            if request.server == rebind.server {
                request.supervisor = rebind.supervisor.clone();
            }
        }
    }
}

impl Handler<RemovalDone> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, _: RemovalDone, _: &mut Context<Self>) {
        self.state.scheduled = self.state.scheduled.saturating_sub(1);
        self.state.removed += 1;
    }
}

impl Handler<GetState> for KeyJanitor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state)
    }
}
