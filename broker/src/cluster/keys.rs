//! One-time autologin keys in the shared database: recorded when installed, removed once expired by the cleanup job's holder through its own farm (whichever broker installed them: a broker killed with its keys on the servers loses none).

use super::Cluster;
use crate::farm::model::OneTimeKey;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// How a broker removes a key from a server (its farm's supervisor of that server).
pub type RemoveKey =
    Arc<dyn Fn(OneTimeKey) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Most expired keys removed per cleanup round.
const KEYS_PER_ROUND: i64 = 200;

impl Cluster {
    /// Records an installed key, due for removal after `lifetime`.
    pub(super) async fn record_key_row(
        &self,
        key: &OneTimeKey,
        lifetime: Duration,
    ) -> Result<(), super::ClusterError> {
        let client = self.pool.get().await?;
        let lifetime_ms = lifetime.as_secs_f64() * 1000.0;
        client
            .execute(
                "INSERT INTO autologin_keys (server, username, key_line, key_file, broker, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, now() + $6::float8 * interval '1 millisecond')",
                &[
                    &key.server,
                    &key.user,
                    &key.key,
                    &key.key_file,
                    &self.name,
                    &lifetime_ms,
                ],
            )
            .await?;
        Ok(())
    }

    /// Removes the expired keys through `remove` (the cleanup job's holder, at `epoch`): a
    /// key whose removal failed stays for the next round. Answers how many were removed.
    pub(super) async fn remove_expired_keys(
        &self,
        epoch: i64,
        remove: &RemoveKey,
    ) -> Result<u64, super::ClusterError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, server, username, key_line, key_file, broker FROM autologin_keys \
                 WHERE expires_at <= now() ORDER BY expires_at LIMIT $1",
                &[&KEYS_PER_ROUND],
            )
            .await?;
        let mut removed = 0;
        for row in rows {
            let id: i64 = row.get(0);
            let key = OneTimeKey {
                server: row.get(1),
                user: row.get(2),
                key: row.get(3),
                key_file: row.get(4),
            };
            let installed_by: String = row.get(5);
            match remove(key.clone()).await {
                Ok(()) => {
                    removed += client
                        .execute(
                            "DELETE FROM autologin_keys WHERE id = $1 AND EXISTS \
                             (SELECT 1 FROM leases WHERE job = 'cleanup' AND holder = $2 AND epoch = $3)",
                            &[&id, &self.name, &epoch],
                        )
                        .await?;
                    tracing::info!(server = %key.server, user = %key.user, installed_by = %installed_by, "cluster: expired one-time key removed");
                }
                Err(error) => {
                    tracing::warn!(server = %key.server, user = %key.user, %error, "cluster: expired one-time key not removed yet")
                }
            }
        }
        Ok(removed)
    }
}
