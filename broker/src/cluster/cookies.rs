//! Login cookies every broker accepts: kept hashed in the shared database (a cookie issued by one broker is taken by any, once, atomically); while the database is unreachable a broker issues cookies as its own files, which only it accepts.

use super::Cluster;
use crate::auth::cookies::{self, CookieError, CookieKeeper, CookieRecord, CookieStore};
use sha2::Digest;
use std::sync::Arc;
use std::time::SystemTime;

/// The cookies of a cluster: the shared table first, this broker's files as the fallback.
pub struct SharedCookies {
    pub cluster: Arc<Cluster>,
    /// This broker's cookie directory (cookies issued while the database is unreachable).
    pub local: CookieStore,
    /// `[global] auth-timeout`: a row's expiry.
    pub auth_timeout_seconds: i64,
}

/// The key of a cookie row: sha256 of the user, a NUL and the cookie.
fn cookie_hash(user: &str, cookie: &str) -> Vec<u8> {
    let mut hasher = sha2::Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update([0u8]);
    hasher.update(cookie.as_bytes());
    hasher.finalize().to_vec()
}

impl SharedCookies {
    async fn take_shared(
        &self,
        user: &str,
        cookie: &str,
    ) -> Result<Option<CookieRecord>, super::ClusterError> {
        let client = self.cluster.pool.get().await?;
        let row = client
            .query_opt(
                "DELETE FROM cookies WHERE hash = $1 AND expires_at > now() \
                 RETURNING ip, login_time",
                &[&cookie_hash(user, cookie)],
            )
            .await?;
        Ok(row.map(|row| CookieRecord {
            ip: row.get(0),
            time: row.get(1),
        }))
    }

    async fn write_shared(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
    ) -> Result<(), super::ClusterError> {
        let client = self.cluster.pool.get().await?;
        let lifetime = self.auth_timeout_seconds as f64;
        client
            .execute(
                "INSERT INTO cookies (hash, username, ip, login_time, issued_by, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, to_timestamp($4 + $6::float8)) \
                 ON CONFLICT (hash) DO UPDATE SET used_at = now()",
                &[
                    &cookie_hash(user, cookie),
                    &user,
                    &record.ip,
                    &record.time,
                    &self.cluster.name,
                    &lifetime,
                ],
            )
            .await?;
        Ok(())
    }

    async fn prune_shared(&self, user: &str, keep: usize) -> Result<u64, super::ClusterError> {
        let client = self.cluster.pool.get().await?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        Ok(client
            .execute(
                "DELETE FROM cookies WHERE hash IN (SELECT hash FROM cookies WHERE username = $1 \
                 ORDER BY used_at DESC, login_time DESC OFFSET $2)",
                &[&user, &keep],
            )
            .await?)
    }

    /// `operation` within the cluster's wait for the database; `None` when it failed or
    /// did not answer (logged; the broker goes on with its own files).
    async fn within<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T, super::ClusterError>>,
    ) -> Option<T> {
        if !self.cluster.is_reachable() {
            // degraded: this broker's files only, without waiting
            return None;
        }
        match tokio::time::timeout(self.cluster.settings.degraded_after, operation).await {
            Ok(Ok(value)) => {
                self.cluster.mark_reachable(true);
                Some(value)
            }
            Ok(Err(error)) => {
                self.cluster.mark_reachable(false);
                tracing::warn!(%error, "cluster: {what}: this broker's own cookies only");
                None
            }
            Err(_) => {
                self.cluster.mark_reachable(false);
                tracing::warn!(
                    "cluster: {what}: the database did not answer; this broker's own cookies only"
                );
                None
            }
        }
    }
}

impl CookieKeeper for SharedCookies {
    async fn prepare(&self) -> bool {
        self.local.prepare().await
    }

    async fn prune_user(&self, user: &str, keep: usize) -> usize {
        let pruned = self
            .within("cookies not pruned", self.prune_shared(user, keep))
            .await
            .unwrap_or(0);
        let local = self.local.prune_user(user, keep);
        usize::try_from(pruned).unwrap_or(usize::MAX).max(local)
    }

    async fn write(
        &self,
        user: &str,
        cookie: &str,
        record: &CookieRecord,
        used: SystemTime,
    ) -> Result<(), CookieError> {
        let shared = self
            .within("cookie not shared", self.write_shared(user, cookie, record))
            .await;
        match shared {
            Some(()) => Ok(()),
            // degraded: a file of this broker's, which only this broker reads
            None => self.local.write(user, cookie, record, used),
        }
    }

    async fn take(&self, user: &str, cookie: &str) -> Option<CookieRecord> {
        if !cookies::is_issued_cookie_shape(cookie) {
            return None;
        }
        let shared = self
            .within("cookie not checked", self.take_shared(user, cookie))
            .await;
        match shared {
            Some(Some(found)) => Some(found),
            // not in the table (or the table unreachable): a cookie this broker issued while
            // the database was unreachable is one of its files (single use: taken with it)
            _ => self.local.take(user, cookie),
        }
    }
}

impl Cluster {
    /// Removes cookie rows past their expiry (the cleanup job).
    pub(super) async fn expire_cookies(&self, epoch: i64) -> Result<u64, super::ClusterError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM cookies WHERE expires_at <= now() AND EXISTS \
                 (SELECT 1 FROM leases WHERE job = 'cleanup' AND holder = $1 AND epoch = $2)",
                &[&self.name, &epoch],
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_binds_user_and_cookie() {
        let cookie = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(cookie_hash("alice", cookie).len(), 32);
        assert_ne!(cookie_hash("alice", cookie), cookie_hash("bob", cookie));
        // the NUL separates: ("ab", "c") and ("a", "bc") differ
        assert_ne!(cookie_hash("ab", "c"), cookie_hash("a", "bc"));
        assert_eq!(cookie_hash("alice", cookie), cookie_hash("alice", cookie));
    }
}
