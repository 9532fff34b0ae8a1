//! Audit events in the shared database: every line of this broker's audit log also goes to `audit_events`, spooled in memory while the database is unreachable and flushed in order when it is back.

use super::Cluster;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Most events kept while the database is unreachable (then the oldest are dropped: each is
/// in this broker's own audit log anyway).
const MAX_SPOOLED: usize = 100_000;
/// Most events written in one statement.
const BATCH: usize = 500;
/// The pause before a failed write is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

impl Cluster {
    /// Starts the writer of audit lines; answers where to send them.
    pub fn audit_writer(self: &Arc<Cluster>) -> tokio::sync::mpsc::UnboundedSender<String> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_audit(self.clone(), receiver));
        sender
    }

    async fn insert_audit(&self, lines: &[String]) -> Result<u64, super::ClusterError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "INSERT INTO audit_events (broker, event) \
                 SELECT $1, line::jsonb FROM unnest($2::text[]) WITH ORDINALITY AS t(line, n) ORDER BY n",
                &[&self.name, &lines],
            )
            .await?)
    }
}

async fn write_audit(
    cluster: Arc<Cluster>,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut spool: VecDeque<String> = VecDeque::new();
    let mut dropped: u64 = 0;
    loop {
        if spool.is_empty() {
            match receiver.recv().await {
                Some(line) => spool.push_back(line),
                None => return,
            }
        }
        while let Ok(line) = receiver.try_recv() {
            if spool.len() >= MAX_SPOOLED {
                spool.pop_front();
                dropped += 1;
            }
            spool.push_back(line);
        }
        let batch: Vec<String> = spool.iter().take(BATCH).cloned().collect();
        let written = tokio::time::timeout(
            cluster.settings.degraded_after,
            cluster.insert_audit(&batch),
        )
        .await;
        match written {
            Ok(Ok(_)) => {
                spool.drain(..batch.len());
                if dropped > 0 {
                    tracing::warn!(dropped, "cluster: audit events dropped from the spool while the database was unreachable (they are in this broker's audit log)");
                    dropped = 0;
                }
            }
            _ => {
                tracing::debug!(spooled = spool.len(), "cluster: audit events spooled");
                // wait, taking new lines meanwhile
                let pause = tokio::time::sleep(RETRY_PAUSE);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = &mut pause => break,
                        line = receiver.recv() => match line {
                            Some(line) => {
                                if spool.len() >= MAX_SPOOLED {
                                    spool.pop_front();
                                    dropped += 1;
                                }
                                spool.push_back(line);
                            }
                            None => return,
                        },
                    }
                }
            }
        }
    }
}
