//! The KeyJanitor actor: removes one-time autologin keys from the servers when their lifetime is over.

use super::agent;
use actix::prelude::*;
use std::time::Duration;

/// Remove `key` from `user`'s `key_file` on the agent at `address` after `after` (imperative).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveKeyLater {
    pub address: String,
    pub token: Option<String>,
    pub user: String,
    pub key: String,
    pub key_file: String,
    pub after: Duration,
    pub timeout: Duration,
}

/// The KeyJanitor actor (one per farm).
#[derive(Debug, Default)]
pub struct KeyJanitor;

impl Actor for KeyJanitor {
    type Context = Context<Self>;
}

impl Handler<RemoveKeyLater> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, request: RemoveKeyLater, context: &mut Context<Self>) {
        context.run_later(request.after, move |_, context| {
            let removal = async move {
                let result = match agent::client(&request.address, request.token.as_deref(), request.timeout) {
                    Ok(mut client) => {
                        agent::authorized_key(&mut client, &request.user, &request.key, &request.key_file, false, request.timeout).await
                    }
                    Err(error) => Err(error),
                };
                match result {
                    Ok(()) => tracing::info!(user = %request.user, agent = %request.address, "one-time autologin key removed"),
                    Err(error) => tracing::error!(user = %request.user, agent = %request.address, %error, "could not remove a one-time autologin key"),
                }
            };
            context.spawn(actix::fut::wrap_future(removal));
        });
    }
}
