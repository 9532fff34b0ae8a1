//! Leases: a job that must run on one broker at a time is claimed with a row (holder, epoch, expiry on the database's clock), renewed by its holder, taken over (epoch + 1) once it expires.

use super::{Cluster, ClusterError};

impl Cluster {
    /// Claims or renews the lease of `job` for this broker; answers its epoch while this
    /// broker holds it, `None` while another holder's lease is still valid.
    pub async fn claim_lease(&self, job: &str) -> Result<Option<i64>, ClusterError> {
        let client = self.pool.get().await?;
        let ttl_ms = self.settings.lease_ttl.as_secs_f64() * 1000.0;
        let row = client
            .query_opt(
                "INSERT INTO leases AS held (job, holder, epoch, expires_at) \
                 VALUES ($1, $2, 1, now() + $3::float8 * interval '1 millisecond') \
                 ON CONFLICT (job) DO UPDATE SET holder = EXCLUDED.holder, \
                 epoch = CASE WHEN held.holder = EXCLUDED.holder THEN held.epoch ELSE held.epoch + 1 END, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE held.holder = EXCLUDED.holder OR held.expires_at < now() \
                 RETURNING epoch",
                &[&job, &self.name, &ttl_ms],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// The cleanup job, under the `cleanup` lease: expired placements and cookies removed,
    /// expired one-time keys removed from their servers (whichever broker installed them);
    /// every delete carries the holder's epoch (a holder that lost its lease writes nothing).
    /// Answers the rows removed, `None` when another broker holds the lease.
    pub(super) async fn cleanup_once(&self) -> Result<Option<u64>, ClusterError> {
        let Some(epoch) = self.claim_lease("cleanup").await? else {
            return Ok(None);
        };
        let client = self.pool.get().await?;
        let removed = client
            .execute(
                "DELETE FROM placements WHERE expires_at <= now() AND EXISTS \
                 (SELECT 1 FROM leases WHERE job = 'cleanup' AND holder = $1 AND epoch = $2)",
                &[&self.name, &epoch],
            )
            .await?;
        let cookies = self.expire_cookies(epoch).await?;
        let keys = match self.remove_key.get() {
            Some(remove) => self.remove_expired_keys(epoch, remove).await?,
            None => 0,
        };
        Ok(Some(removed + cookies + keys))
    }
}
