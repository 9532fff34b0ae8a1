//! The KeyJanitor actor: removes one-time autologin keys from the servers when their lifetime is over, or at shutdown; the keys waiting are persisted, so a restarted broker removes what a dead one left.

use super::pending_keys::{due_unix, PendingKey, PendingKeyFile};
use super::supervisor::{AgentCall, Call, Supervisor};
use actix::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How soon a removal that failed (server down, agent error) is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

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

/// The keys a previous run of this broker left waiting (read from the file at start-up),
/// each with its server's supervisor when a profile still names the server: those are
/// removed when due (at once when overdue); the others stay in the file for a later start.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resume(pub Vec<(PendingKey, Option<Addr<Supervisor>>)>);

/// Private event: removal `id` was attempted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RemovalDone {
    id: u64,
    removed: bool,
}

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
    /// Keys waiting for their removal (timers running, removals in flight, keys of servers
    /// no profile names).
    pub scheduled: usize,
    /// Removals attempted so far.
    pub removed: u64,
}

/// A key and the supervisor of its server.
#[derive(Debug, Clone)]
struct Waiting {
    key: PendingKey,
    supervisor: Addr<Supervisor>,
}

/// The KeyJanitor actor (one per farm).
#[derive(Debug)]
pub struct KeyJanitor {
    removed: u64,
    next_id: u64,
    /// Keys whose removal timer runs, with the timer.
    waiting: HashMap<u64, (Waiting, SpawnHandle)>,
    /// Removals under way (still persisted until they succeed).
    in_flight: HashMap<u64, Waiting>,
    /// Keys of servers no profile names (from a previous run): kept for a later start.
    parked: Vec<PendingKey>,
    /// Where the keys not yet removed are persisted (none: memory only).
    file: Option<PendingKeyFile>,
}

impl KeyJanitor {
    /// A janitor persisting to `file`, holding `left` (what the file held at start-up) until
    /// [`Resume`] hands them their supervisors.
    pub fn new(file: Option<PendingKeyFile>, left: Vec<PendingKey>) -> KeyJanitor {
        KeyJanitor {
            removed: 0,
            next_id: 0,
            waiting: HashMap::new(),
            in_flight: HashMap::new(),
            parked: left,
            file,
        }
    }

    fn state(&self) -> JanitorState {
        JanitorState {
            scheduled: self.waiting.len() + self.in_flight.len() + self.parked.len(),
            removed: self.removed,
        }
    }

    /// Writes every key not yet removed to the file.
    fn persist(&mut self) {
        let Some(file) = &mut self.file else {
            return;
        };
        let keys: Vec<PendingKey> = self
            .waiting
            .values()
            .map(|(waiting, _)| waiting.key.clone())
            .chain(self.in_flight.values().map(|waiting| waiting.key.clone()))
            .chain(self.parked.iter().cloned())
            .collect();
        file.save(&keys);
    }

    fn schedule(&mut self, waiting: Waiting, after: Duration, context: &mut Context<Self>) {
        self.next_id += 1;
        let id = self.next_id;
        let timer = context.notify_later(Due(id), after);
        self.waiting.insert(id, (waiting, timer));
    }

    /// Starts removal `id` of `waiting` now.
    fn start_removal(&mut self, id: u64, waiting: Waiting, context: &mut Context<Self>) {
        self.in_flight.insert(id, waiting.clone());
        let janitor = context.address();
        context.spawn(actix::fut::wrap_future(async move {
            let removed = remove(&waiting).await;
            janitor.do_send(RemovalDone { id, removed });
        }));
    }
}

/// Removes one key through its server's supervisor; whether it is gone.
async fn remove(waiting: &Waiting) -> bool {
    let key = &waiting.key;
    let call = AgentCall::AuthorizedKey {
        user: key.user.clone(),
        key: key.key.clone(),
        key_file: key.key_file.clone(),
        add: false,
    };
    match waiting.supervisor.send(Call(call)).await {
        Ok(Ok(_)) => {
            tracing::info!(user = %key.user, server = %key.server, "one-time autologin key removed");
            true
        }
        Ok(Err(error)) => {
            tracing::error!(user = %key.user, server = %key.server, %error, "could not remove a one-time autologin key");
            false
        }
        Err(error) => {
            tracing::error!(user = %key.user, server = %key.server, %error, "could not remove a one-time autologin key: supervisor gone");
            false
        }
    }
}

impl Actor for KeyJanitor {
    type Context = Context<Self>;
}

impl Handler<RemoveKeyLater> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, request: RemoveKeyLater, context: &mut Context<Self>) {
        let waiting = Waiting {
            key: PendingKey {
                server: request.server,
                user: request.user,
                key: request.key,
                key_file: request.key_file,
                due_unix: due_unix(SystemTime::now(), request.after),
            },
            supervisor: request.supervisor,
        };
        self.schedule(waiting, request.after, context);
        self.persist();
    }
}

impl Handler<Resume> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, resume: Resume, context: &mut Context<Self>) {
        self.parked.clear();
        let now = SystemTime::now();
        for (key, supervisor) in resume.0 {
            match supervisor {
                Some(supervisor) => {
                    let after = key.due_in(now);
                    tracing::info!(user = %key.user, server = %key.server, due_in = ?after, "a one-time autologin key left by the previous run is removed when due");
                    self.schedule(Waiting { key, supervisor }, after, context);
                }
                None => {
                    tracing::warn!(user = %key.user, server = %key.server, "a one-time autologin key left by the previous run is on a server no profile names: kept for a later start");
                    self.parked.push(key);
                }
            }
        }
        self.persist();
    }
}

impl Handler<Due> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, due: Due, context: &mut Context<Self>) {
        let Some((waiting, _)) = self.waiting.remove(&due.0) else {
            return;
        };
        self.start_removal(due.0, waiting, context);
    }
}

impl Handler<RemovalDone> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, done: RemovalDone, context: &mut Context<Self>) {
        self.removed += 1;
        let Some(waiting) = self.in_flight.remove(&done.id) else {
            return;
        };
        if !done.removed {
            self.schedule(waiting, RETRY_AFTER, context);
        }
        self.persist();
    }
}

impl Handler<RemoveAllNow> for KeyJanitor {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: RemoveAllNow, context: &mut Context<Self>) -> Self::Result {
        let waiting: Vec<Waiting> = self
            .waiting
            .drain()
            .map(|(_, (waiting, timer))| {
                context.cancel_future(timer);
                waiting
            })
            .chain(self.in_flight.drain().map(|(_, waiting)| waiting))
            .collect();
        let count = waiting.len();
        if count > 0 {
            tracing::info!(
                keys = count,
                "removing the waiting one-time autologin keys now"
            );
        }
        // kept in the file until each removal succeeded: a key whose server is down now is
        // removed by the next start
        for key in waiting.iter().map(|waiting| waiting.key.clone()) {
            self.parked.push(key);
        }
        self.persist();
        let removals = async move {
            let outcomes = futures::future::join_all(waiting.iter().map(remove)).await;
            waiting
                .into_iter()
                .zip(outcomes)
                .filter(|(_, removed)| *removed)
                .map(|(waiting, _)| waiting.key)
                .collect::<Vec<PendingKey>>()
        };
        Box::pin(
            actix::fut::wrap_future::<_, Self>(removals).map(move |gone, janitor, _| {
                janitor.removed += count as u64;
                janitor.parked.retain(|key| !gone.contains(key));
                janitor.persist();
                count
            }),
        )
    }
}

impl Handler<Rebind> for KeyJanitor {
    type Result = ();

    fn handle(&mut self, rebind: Rebind, _: &mut Context<Self>) {
        let waiting = self
            .waiting
            .values_mut()
            .map(|(waiting, _)| waiting)
            .chain(self.in_flight.values_mut());
        for waiting in waiting {
            if waiting.key.server == rebind.server {
                waiting.supervisor = rebind.supervisor.clone();
            }
        }
    }
}

impl Handler<GetState> for KeyJanitor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state())
    }
}
