//! Several active brokers on one PostgreSQL (`[cluster]`, issue 16): the shared database holds only what brokers must agree on; each broker keeps its live farm in memory.
//!
//! `pool.rs` connects (URL, password file, TLS), `migrations.rs` owns the schema,
//! `placements.rs` the shared placement transaction, `flags.rs` drain with LISTEN/NOTIFY,
//! `leases.rs` jobs that run on one broker at a time. Without `[cluster]` none of this runs
//! and nothing changes.

mod audit;
mod cookies;
mod flags;
mod keys;
mod leases;
pub mod migrations;
mod placements;
pub mod pool;

pub use cookies::SharedCookies;
pub use flags::ApplyDrained;
pub use keys::RemoveKey;

use crate::config::ClusterSettings;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the cluster could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("[cluster] {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Placements a report confirmed: (server, users).
type Confirmation = (String, Vec<String>);

/// This broker's side of the cluster.
pub struct Cluster {
    /// This broker's name in the shared tables.
    pub name: String,
    settings: ClusterSettings,
    database: pool::Database,
    pool: deadpool_postgres::Pool,
    /// How long a placement waits for its confirmation (`[farm] pending-placement-ttl`).
    pending_ttl: Duration,
    confirmations: tokio::sync::mpsc::UnboundedSender<Confirmation>,
    /// Whether the last use of the database succeeded (logged when it changes).
    reachable: AtomicBool,
    /// How the cleanup job removes an expired one-time key (set once the farm is there).
    remove_key: std::sync::OnceLock<RemoveKey>,
    /// Set to 1 while the database is unreachable (`x2gobroker_cluster_degraded`).
    degraded: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge>,
    /// Per profile, this broker's queue of placements (one at a time holds a connection).
    placement_turns:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The default name of a broker: its host name and client port.
pub fn default_name(client_port: u16) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{client_port}")
}

impl Cluster {
    /// Connects (lazily) to the database of `settings` as broker `name`, applies the schema,
    /// and starts the background jobs: confirmations and the cleanup under its lease. A
    /// database that is down at start-up is no error: the schema is applied when it is back,
    /// and placements count locally meanwhile.
    pub async fn start(
        settings: &ClusterSettings,
        name: String,
        pending_ttl: Duration,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let database = pool::Database::new(settings, &name)?;
        let pool = database.pool()?;
        let (confirmations, confirmed) = tokio::sync::mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            name,
            settings: settings.clone(),
            database,
            pool,
            pending_ttl,
            confirmations,
            reachable: AtomicBool::new(true),
            remove_key: std::sync::OnceLock::new(),
            degraded: std::sync::OnceLock::new(),
            placement_turns: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        if let Err(error) = cluster.migrate().await {
            cluster.mark_reachable(false);
            tracing::error!(%error, "cluster: the schema could not be applied now; trying again in the background");
            let retrying = cluster.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(retrying.settings.cleanup_interval).await;
                    match retrying.migrate().await {
                        Ok(()) => break,
                        Err(error) => tracing::warn!(%error, "cluster: schema not applied yet"),
                    }
                }
            });
        }
        tokio::spawn(confirm_placements(cluster.clone(), confirmed));
        tokio::spawn(probe(cluster.clone()));
        tokio::spawn(cleanup(cluster.clone()));
        tracing::info!(broker = %cluster.name, "cluster: shared state in PostgreSQL");
        Ok(cluster)
    }

    async fn migrate(&self) -> Result<(), ClusterError> {
        let client = self.pool.get().await?;
        let applied = migrations::migrate(&client).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "cluster: schema migrations applied");
        }
        Ok(())
    }

    /// Lets the cleanup job remove expired one-time keys through `remove` (this broker's farm).
    pub fn remove_keys_with(&self, remove: RemoveKey) {
        let _ = self.remove_key.set(remove);
    }

    /// Sets `gauge` to 1 while the database is unreachable.
    pub fn report_degraded_to(&self, gauge: prometheus_client::metrics::gauge::Gauge) {
        gauge.set(i64::from(!self.is_reachable()));
        let _ = self.degraded.set(gauge);
    }

    /// Notes whether the database answered, logging each change. While it is unreachable
    /// (degraded) placements, cookies and keys do not wait for it; the probe notes its return.
    fn mark_reachable(&self, reachable: bool) {
        let before = self.reachable.swap(reachable, Ordering::AcqRel);
        if let Some(gauge) = self.degraded.get() {
            gauge.set(i64::from(!reachable));
        }
        match (before, reachable) {
            (true, false) => tracing::error!(
                "cluster: database unreachable: degraded (new placements count only this broker's, cookies verify where they were issued, audit events are spooled)"
            ),
            (false, true) => {
                tracing::info!("cluster: database reachable again: placements and cookies shared")
            }
            _ => {}
        }
    }

    /// Whether the last use of the database succeeded.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }
}

/// How often an unreachable database is tried again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// While the database is unreachable: one query a second, until one succeeds.
async fn probe(cluster: Arc<Cluster>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    loop {
        ticks.tick().await;
        if cluster.is_reachable() {
            continue;
        }
        let answered = tokio::time::timeout(cluster.settings.degraded_after, async {
            let client = cluster.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<(), ClusterError>(())
        })
        .await;
        if matches!(answered, Ok(Ok(()))) {
            cluster.mark_reachable(true);
        }
    }
}

/// Deletes the placements reports confirmed, in the order they came.
async fn confirm_placements(
    cluster: Arc<Cluster>,
    mut confirmed: tokio::sync::mpsc::UnboundedReceiver<Confirmation>,
) {
    while let Some((server, users)) = confirmed.recv().await {
        match cluster.confirm_placements(&server, &users).await {
            Ok(removed) if removed > 0 => {
                tracing::debug!(%server, ?users, removed, "cluster: placements confirmed")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, %server, "cluster: confirmation not recorded (the placement expires)")
            }
        }
    }
}

/// Every cleanup interval: the cleanup job, if this broker holds (or takes over) its lease.
async fn cleanup(cluster: Arc<Cluster>) {
    let mut ticks = tokio::time::interval(cluster.settings.cleanup_interval);
    loop {
        ticks.tick().await;
        match cluster.cleanup_once().await {
            Ok(Some(removed)) if removed > 0 => {
                tracing::debug!(removed, "cluster: expired rows removed")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cluster: cleanup not done"),
        }
    }
}
