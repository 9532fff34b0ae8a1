//! Shared placements: the one short transaction per new-session selection (serialised per profile, every broker's pending rows counted, the row written), confirmation by (server, user), expiry.

use super::Cluster;
use crate::farm::model::{OneTimeKey, OpenPlacement, PlacementLedger, SharedPlacements};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// The advisory-lock class of placements (the profile's hash is the other half of the key).
const PLACEMENT_LOCK_CLASS: i32 = 0x7832_706c; // "x2pl"

/// A placement in progress: a pooled connection inside a transaction holding the profile's
/// advisory transaction lock.
struct Open {
    /// This broker's turn for the profile (dropped after the connection's rollback or commit
    /// was sent).
    _turn: tokio::sync::OwnedMutexGuard<()>,
    client: Option<deadpool_postgres::Object>,
    shared: SharedPlacements,
    profile_id: String,
    user: String,
    cluster: Arc<Cluster>,
}

impl PlacementLedger for Arc<Cluster> {
    fn open<'a>(
        &'a self,
        profile_id: &'a str,
        user: &'a str,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Option<Box<dyn OpenPlacement>>> {
        async move {
            if !self.is_reachable() {
                // degraded: no wait for a database known to be away (the probe notes its
                // return)
                return None;
            }
            let began = tokio::time::timeout(
                self.settings.degraded_after,
                self.begin_placement(profile_id, user, hosts),
            )
            .await;
            match began {
                Ok(Ok(open)) => {
                    self.mark_reachable(true);
                    Some(Box::new(open) as Box<dyn OpenPlacement>)
                }
                Ok(Err(error)) => {
                    self.mark_reachable(false);
                    tracing::warn!(%error, profile = profile_id, "cluster: the shared placements cannot be read: this placement counts locally");
                    None
                }
                Err(_) => {
                    self.mark_reachable(false);
                    tracing::warn!(profile = profile_id, "cluster: the database did not answer within degraded-after-ms: this placement counts locally");
                    None
                }
            }
        }
        .boxed()
    }

    fn confirm(&self, server: &str, users: Vec<String>) {
        let _ = self.confirmations.send((server.to_string(), users));
    }

    fn record_key(&self, key: OneTimeKey, lifetime: std::time::Duration) -> BoxFuture<'_, ()> {
        async move {
            if !self.is_reachable() {
                tracing::warn!(server = %key.server, user = %key.user, "cluster: degraded: one-time key not recorded: only this broker removes it");
                return;
            }
            let recorded =
                tokio::time::timeout(self.settings.degraded_after, self.record_key_row(&key, lifetime))
                    .await;
            if !matches!(recorded, Ok(Ok(()))) {
                tracing::warn!(server = %key.server, user = %key.user, "cluster: one-time key not recorded: only this broker removes it");
            }
        }
        .boxed()
    }
}

impl Cluster {
    /// The local queue of placements for `profile_id`.
    fn profile_turn(&self, profile_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self
            .placement_turns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if turns.len() > 10_000 {
            // profiles that went away; a turn in use is kept by its holders
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        }
        turns.entry(profile_id.to_string()).or_default().clone()
    }

    async fn begin_placement(
        self: &Arc<Cluster>,
        profile_id: &str,
        user: &str,
        hosts: &[String],
    ) -> Result<Open, super::ClusterError> {
        // one placement per profile at a time in this broker first: the others wait here,
        // not on the advisory lock holding a pooled connection each
        let turn = self.profile_turn(profile_id).lock_owned().await;
        let client = self.pool.get().await?;
        client.batch_execute("BEGIN").await?;
        let mut open = Open {
            _turn: turn,
            client: Some(client),
            shared: SharedPlacements::default(),
            profile_id: profile_id.to_string(),
            user: user.to_string(),
            cluster: self.clone(),
        };
        // from here a failure drops `open`, which rolls back
        let Some(client) = open.client.as_ref() else {
            return Err(super::ClusterError::Config("no connection".into()));
        };
        client
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&PLACEMENT_LOCK_CLASS, &profile_id],
            )
            .await?;
        let rows = client
            .query(
                "SELECT server, count(*)::integer FROM placements \
                 WHERE server = ANY($1) AND expires_at > now() GROUP BY server",
                &[&hosts],
            )
            .await?;
        for row in rows {
            let server: String = row.get(0);
            let count: i32 = row.get(1);
            open.shared
                .pending
                .insert(server, u32::try_from(count).unwrap_or(0));
        }
        open.shared.users_server = client
            .query_opt(
                "SELECT server FROM placements \
                 WHERE profile = $1 AND username = $2 AND expires_at > now()",
                &[&profile_id, &user],
            )
            .await?
            .map(|row| row.get(0));
        Ok(open)
    }

    /// Forgets the pending placements of `users` on `server` (a report showed their new
    /// sessions there). Every broker sees the report and does this; it is idempotent.
    pub(super) async fn confirm_placements(
        &self,
        server: &str,
        users: &[String],
    ) -> Result<u64, super::ClusterError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM placements WHERE server = $1 AND username = ANY($2)",
                &[&server, &users],
            )
            .await?)
    }
}

impl Open {
    async fn record_and_commit(
        &mut self,
        placed_on: Option<String>,
    ) -> Result<(), super::ClusterError> {
        let Some(client) = self.client.as_ref() else {
            return Ok(());
        };
        if let Some(server) = placed_on {
            let ttl_ms = self.cluster.pending_ttl.as_secs_f64() * 1000.0;
            client
                .execute(
                    "INSERT INTO placements (profile, username, server, broker, expires_at) \
                     VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 millisecond') \
                     ON CONFLICT (profile, username) DO UPDATE SET server = EXCLUDED.server, \
                     broker = EXCLUDED.broker, placed_at = now(), expires_at = EXCLUDED.expires_at",
                    &[
                        &self.profile_id,
                        &self.user,
                        &server,
                        &self.cluster.name,
                        &ttl_ms,
                    ],
                )
                .await?;
        }
        client.batch_execute("COMMIT").await?;
        self.client = None;
        Ok(())
    }
}

impl OpenPlacement for Open {
    fn shared(&self) -> &SharedPlacements {
        &self.shared
    }

    fn close(mut self: Box<Self>, placed_on: Option<String>) -> BoxFuture<'static, ()> {
        async move {
            if let Err(error) = self.record_and_commit(placed_on).await {
                tracing::warn!(%error, profile = %self.profile_id, "cluster: the placement could not be recorded");
            }
        }
        .boxed()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // not committed (an error, a request given up): roll back before the connection goes
        // back to the pool; a connection that cannot is closed by the pool's recycling
        if let Some(client) = self.client.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        let _ = deadpool_postgres::Object::take(client);
                    }
                });
            } else {
                let _ = deadpool_postgres::Object::take(client);
            }
        }
    }
}
