//! The cluster's schema, embedded in the binary and applied at start-up under one advisory lock (two brokers starting together do not race).

use super::ClusterError;

/// The lock every starting broker takes while it migrates (an arbitrary constant of ours).
const MIGRATION_LOCK: i64 = 0x7832_676f_6d69_6772; // "x2gomigr"

/// The schema, one step per version, in order. A released step is never edited: a change
/// is a new step.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    -- a new session's placement not yet confirmed by an agent report: one per user and profile
    CREATE TABLE placements (
        profile    text        NOT NULL,
        username   text        NOT NULL,
        server     text        NOT NULL,
        broker     text        NOT NULL,
        placed_at  timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (profile, username)
    );
    CREATE INDEX placements_by_server ON placements (server, expires_at);
    -- what an admin set on a server for every broker (drain)
    CREATE TABLE server_flags (
        server     text        PRIMARY KEY,
        drained    boolean     NOT NULL DEFAULT false,
        changed_by text        NOT NULL DEFAULT '',
        changed_at timestamptz NOT NULL DEFAULT now()
    );
    -- a job that must run on one broker at a time: its holder, the holder's epoch (bumped at
    -- every take-over), and the expiry on the database's clock
    CREATE TABLE leases (
        job        text        PRIMARY KEY,
        holder     text        NOT NULL,
        epoch      bigint      NOT NULL,
        expires_at timestamptz NOT NULL
    );
    ",
    ),
    (
        2,
        "
    -- issued login cookies, by hash (sha256 of user, NUL, cookie; never the cookie itself):
    -- one-shot use is one DELETE ... RETURNING, atomic across brokers
    CREATE TABLE cookies (
        hash       bytea            PRIMARY KEY,
        username   text             NOT NULL,
        ip         text             NOT NULL,
        login_time double precision NOT NULL,
        used_at    timestamptz      NOT NULL DEFAULT now(),
        issued_by  text             NOT NULL,
        expires_at timestamptz      NOT NULL
    );
    CREATE INDEX cookies_by_user ON cookies (username, used_at);
    CREATE INDEX cookies_by_expiry ON cookies (expires_at);
    -- one-time autologin keys on the servers, removed by the cleanup job's holder once
    -- expired (whichever broker installed them, dead or alive)
    CREATE TABLE autologin_keys (
        id         bigserial   PRIMARY KEY,
        server     text        NOT NULL,
        username   text        NOT NULL,
        key_line   text        NOT NULL,
        key_file   text        NOT NULL,
        broker     text        NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX autologin_keys_by_expiry ON autologin_keys (expires_at);
    ",
    ),
    (
        3,
        "
    -- every broker's audit events (each also keeps its own [admin] audit-log)
    CREATE TABLE audit_events (
        id          bigserial   PRIMARY KEY,
        broker      text        NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        event       jsonb       NOT NULL
    );
    CREATE INDEX audit_events_by_time ON audit_events (recorded_at);
    ",
    ),
];

/// Applies the steps `client`'s database lacks, each in its own transaction, under the
/// migration lock. Answers the versions applied now.
pub async fn migrate(client: &tokio_postgres::Client) -> Result<Vec<i32>, ClusterError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply_missing(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

async fn apply_missing(client: &tokio_postgres::Client) -> Result<Vec<i32>, ClusterError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let rows = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?;
    let present: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if present.contains(version) {
            continue;
        }
        client.batch_execute("BEGIN").await?;
        let step = async {
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            client.batch_execute("COMMIT").await
        };
        if let Err(error) = step.await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error.into());
        }
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_from_one() {
        for (index, (version, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, index as i32 + 1);
            assert!(!sql.trim().is_empty());
        }
    }
}
