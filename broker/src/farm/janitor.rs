//! The KeyJanitor actor: removes one-time autologin keys from the servers when their lifetime is over.

use super::transport::Transport;
use actix::prelude::*;
use std::time::Duration;

/// Remove `key` from `user`'s `key_file` through `transport` after `after` (imperative).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveKeyLater {
    pub server: String,
    pub transport: Transport,
    pub user: String,
    pub key: String,
    pub key_file: String,
    pub after: Duration,
}

/// Private event: one removal was attempted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RemovalDone;

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
}

impl Actor for KeyJanitor {
    type Context = Context<Self>;
}

impl Handler<RemoveKeyLater> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, request: RemoveKeyLater, context: &mut Context<Self>) {
        self.state.scheduled += 1;
        context.run_later(request.after, move |_, context| {
            let janitor = context.address();
            let removal = async move {
                let result = request
                    .transport
                    .authorized_key(&request.user, &request.key, &request.key_file, false)
                    .await;
                match result {
                    Ok(()) => {
                        tracing::info!(user = %request.user, server = %request.server, "one-time autologin key removed")
                    }
                    Err(error) => {
                        tracing::error!(user = %request.user, server = %request.server, %error, "could not remove a one-time autologin key")
                    }
                }
                janitor.do_send(RemovalDone);
            };
            context.spawn(actix::fut::wrap_future(removal));
        });
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
