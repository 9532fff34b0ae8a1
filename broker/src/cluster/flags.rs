//! Server flags every broker shares (drain): written with a NOTIFY in one transaction, applied at every broker from LISTEN, the table re-read on every (re)connect and periodically because notifications sent while a listener is disconnected are lost.

use super::{Cluster, ClusterError};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The notification channel of flag changes.
const CHANNEL: &str = "x2gobroker_flags";
/// The pause before a lost listener connects again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// What a broker does with the drained set it read (its drain store and its farm).
pub type ApplyDrained = Arc<dyn Fn(BTreeSet<String>) + Send + Sync>;

impl Cluster {
    /// Drains (`drained`) or undrains `server` for every broker, as `by`; the other brokers
    /// are notified when the change commits. Answers whether anything changed.
    pub async fn set_drained(
        &self,
        server: &str,
        drained: bool,
        by: &str,
    ) -> Result<bool, ClusterError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let before: bool = transaction
            .query_opt(
                "SELECT drained FROM server_flags WHERE server = $1 FOR UPDATE",
                &[&server],
            )
            .await?
            .is_some_and(|row| row.get(0));
        if before == drained {
            return Ok(false);
        }
        transaction
            .execute(
                "INSERT INTO server_flags (server, drained, changed_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (server) DO UPDATE SET drained = EXCLUDED.drained, \
                 changed_by = EXCLUDED.changed_by, changed_at = now()",
                &[&server, &drained, &by],
            )
            .await?;
        transaction
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &server])
            .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// The drained servers in the shared table.
    async fn read_drained(
        client: &tokio_postgres::Client,
    ) -> Result<BTreeSet<String>, ClusterError> {
        let rows = client
            .query("SELECT server FROM server_flags WHERE drained", &[])
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Keeps this broker's drained set equal to the shared table until the process ends:
    /// applied at start, on every notification, every cleanup interval, and after every
    /// reconnect.
    pub fn watch_flags(self: &Arc<Cluster>, apply: ApplyDrained) {
        let cluster = self.clone();
        tokio::spawn(async move {
            loop {
                let error = cluster.listen_once(&apply).await;
                tracing::warn!(%error, "cluster: the flag listener lost the database; reconnecting");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        });
    }

    async fn listen_once(&self, apply: &ApplyDrained) -> ClusterError {
        let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel();
        let connected = match &self.database.tls {
            Some(tls) => match self.database.config.connect(tls.clone()).await {
                Ok((client, connection)) => {
                    tokio::spawn(forward_notifications(connection, notified));
                    Ok(client)
                }
                Err(error) => Err(error),
            },
            None => match self.database.config.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(forward_notifications(connection, notified));
                    Ok(client)
                }
                Err(error) => Err(error),
            },
        };
        let client = match connected {
            Ok(client) => client,
            Err(error) => return error.into(),
        };
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return error.into();
        }
        let mut reread = tokio::time::interval(self.settings.cleanup_interval);
        loop {
            let reading =
                tokio::time::timeout(self.settings.degraded_after, Cluster::read_drained(&client))
                    .await;
            match reading {
                Ok(Ok(drained)) => apply(drained),
                Ok(Err(error)) => return error,
                Err(_) => return ClusterError::Config("the flags were not read in time".into()),
            }
            tokio::select! {
                notification = notifications.recv() => {
                    if notification.is_none() {
                        return ClusterError::Config("the listening connection ended".into());
                    }
                }
                _ = reread.tick() => {}
            }
        }
    }
}

/// Drives a listening connection, passing each notification on; ends with the connection.
async fn forward_notifications<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notified: tokio::sync::mpsc::UnboundedSender<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures::stream::poll_fn(move |context| connection.poll_message(context));
    while let Some(message) = messages.next().await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                if notified.send(()).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cluster: the listening connection failed");
                return;
            }
        }
    }
}
