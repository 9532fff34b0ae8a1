//! The session watcher behind the `Watch` RPC: one poller per daemon runs
//! `x2golistsessions_root --all-servers` every poll interval while at least one client
//! watches, and publishes snapshots on a `tokio::sync::watch` channel. The generation number
//! grows only when the session list really changed (ages ignored).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::session::{filter_by_server, same_sessions, Session};
use crate::tools::X2GoTools;

/// One observation of the server's sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionSnapshot {
    pub sessions: Vec<Session>,
    /// 0 = nothing observed yet; +1 on every change.
    pub generation: u64,
    pub observed_unix_ms: i64,
}

/// Publishes [`SessionSnapshot`]s.
pub type SnapshotSender = watch::Sender<Arc<SessionSnapshot>>;

pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The next snapshot: same generation unless the sessions changed.
pub fn next_snapshot(
    previous: &SessionSnapshot,
    sessions: Vec<Session>,
    observed_unix_ms: i64,
) -> SessionSnapshot {
    let changed = previous.generation == 0 || !same_sessions(&previous.sessions, &sessions);
    SessionSnapshot {
        sessions,
        generation: previous.generation + u64::from(changed),
        observed_unix_ms,
    }
}

/// Starts the poller; it ends when `shutdown` turns true.
pub fn spawn_poller(
    tools: X2GoTools,
    server_names: Vec<String>,
    poll_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> SnapshotSender {
    let (sender, _) = watch::channel(Arc::new(SessionSnapshot::default()));
    let publisher = sender.clone();
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                break;
            }
            if publisher.receiver_count() > 0 {
                match tools.list_all_sessions().await {
                    Ok(sessions) => {
                        let sessions = filter_by_server(sessions, &server_names);
                        let previous = publisher.borrow().clone();
                        let next = next_snapshot(&previous, sessions, unix_ms_now());
                        if next.generation != previous.generation {
                            tracing::debug!(generation = next.generation, "session list changed");
                        }
                        publisher.send_replace(Arc::new(next));
                    }
                    Err(error) => tracing::warn!(%error, "polling the session list failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    });
    sender
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::parse_session_listing;

    const LINE: &str = "1|u-50-1700000000_stDKDE_dp24|50|ts01|R|2026-11-28T12:00:21|00|10.0.0.1|1|2|2026-11-28T12:00:22|u|5|3|-1|-1";

    #[test]
    fn generation_counts_changes_only() {
        let first = next_snapshot(&SessionSnapshot::default(), vec![], 1);
        assert_eq!(first.generation, 1, "the first observation is a change");
        let same = next_snapshot(&first, vec![], 2);
        assert_eq!(same.generation, 1);
        let one = next_snapshot(&same, parse_session_listing(LINE).unwrap(), 3);
        assert_eq!(one.generation, 2);
        let older = next_snapshot(
            &one,
            parse_session_listing(&LINE.replace("|5|", "|6|")).unwrap(),
            4,
        );
        assert_eq!(older.generation, 2, "age is not a change");
        let suspended = next_snapshot(
            &older,
            parse_session_listing(&LINE.replace("|R|", "|S|")).unwrap(),
            5,
        );
        assert_eq!(suspended.generation, 3);
        assert_eq!(suspended.observed_unix_ms, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn poller_stops_on_shutdown_and_idles_without_watchers() {
        let (stop, stopped) = watch::channel(false);
        let sender = spawn_poller(
            X2GoTools {
                runuser: "runuser".into(),
                ..X2GoTools::default()
            },
            vec![],
            Duration::from_millis(500),
            stopped,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(sender.borrow().generation, 0, "no watcher, no polling");
        assert_eq!(
            sender.sender_count(),
            2,
            "the poller holds a sender while it runs"
        );
        stop.send_replace(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sender.sender_count(), 1, "the poller ended");
    }
}
