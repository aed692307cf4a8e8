//! Postgres plumbing shared by both bots: the pool, the migrations, and leadership of background
//! workers through session advisory locks (so that with several replicas exactly one runs each).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// What every database function returns: sqlx's error, for the caller to wrap or `?` away.
pub type DbResult<T> = Result<T, sqlx::Error>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The `classid` half of every advisory lock key the product takes ("BG").
const LOCK_CLASS: i32 = 0x4247;

/// Background jobs that must run on exactly one replica. The discriminant is the lock key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Job {
    LeaseExpiry = 1,
    SlackOutbox = 2,
    /// Retired: Nightly is owned through a lease with an epoch (`shared::fence`). Kept so the key
    /// is never reused while an old replica may still take it during a rolling upgrade.
    Nightly = 3,
    /// Retired like [`Job::Nightly`]: Gandalf's queues are worked under the `gandalf` lease.
    GandalfQueues = 4,
    /// Gandalf's share of the Slack outbox (posted with Gandalf's own Slack app).
    GandalfOutbox = 5,
    /// Gandalf's check updates on pull requests (SPEC §5.7), delivered in order by one replica.
    GandalfChecks = 17,
}

/// How long a request waits for a pool connection before it gives up with an error. Generous on
/// purpose: under a stampede (a thousand `/bobby lock` at once on a busy machine) requests queue for
/// connections for seconds; Slack already got "working on it" at three seconds and takes the real
/// answer later, so waiting beats failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.application_name("bobby-gandalf"))
        .await
}

/// Like [`connect`], but never touches the network: for processes that must start while Postgres
/// is down and report it on `/readyz` instead of refusing to start.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name("bobby-gandalf")))
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A LISTEN connection on `channels`, of its own: listeners hold their connection for as long as
/// they live, and taking it from the request pool would starve requests (five workers listening on
/// a pool of five leave nothing for anyone else).
pub async fn listen(pool: &PgPool, channels: &[&str]) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}

/// Waits for the next notification, or for the listener's connection to come back after it was
/// lost: `Ok(None)` then, and whatever was notified meanwhile is gone, so the caller must re-read
/// what it watches — which every caller does on any wake-up. sqlx's `recv` hides the reconnection
/// (SPEC §10); `try_recv` reports it after it has listened again (eager reconnect), so nothing
/// notified after the re-read is missed either.
pub async fn next_change(
    listener: &mut sqlx::postgres::PgListener,
) -> Result<Option<sqlx::postgres::PgNotification>, sqlx::Error> {
    let n = listener.try_recv().await?;
    if n.is_none() {
        tracing::warn!("the LISTEN connection was lost and is back; re-reading what may have been missed");
        metrics::counter!("db_listen_reconnects_total").increment(1);
    }
    Ok(n)
}

/// Readiness: the database answers and every migration this binary knows is applied.
pub async fn ready(pool: &PgPool) -> Result<(), String> {
    // Probes want an answer within their own timeout, not the pool's patient one.
    let applied: Vec<i64> = tokio::time::timeout(
        Duration::from_secs(3),
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool),
    )
    .await
    .map_err(|_| "database unreachable: no connection within 3s".to_string())?
    .map_err(|e| format!("database unreachable: {}", short_db_error(&e)))?;
    let missing: Vec<i64> = MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("migrations not applied: {missing:?}"))
    }
}

/// A database error for logs and readiness bodies, without connection strings.
pub fn short_db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        other => other.to_string().chars().take(200).collect(),
    }
}

/// Holds leadership of one [`Job`] for as long as the returned guard's connection lives.
///
/// The lock is a session-level advisory lock on a connection taken out of the pool, so it is
/// released by Postgres itself when this process dies, however it dies.
pub struct Leadership {
    conn: PgConnection,
}

impl Leadership {
    /// Waits until this process holds the job's lock. Retries every `retry` while another replica
    /// holds it or the database is unreachable; returns early with `None` on shutdown.
    pub async fn acquire(
        database_url: &str,
        job: Job,
        retry: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<Leadership> {
        loop {
            match Self::try_acquire(database_url, job).await {
                Ok(Some(l)) => return Some(l),
                Ok(None) => tracing::debug!(?job, "another replica leads; standing by"),
                Err(e) => tracing::warn!(?job, error = %short_db_error(&e), "cannot try for leadership"),
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
        }
    }

    async fn try_acquire(database_url: &str, job: Job) -> Result<Option<Leadership>, sqlx::Error> {
        let options: PgConnectOptions = database_url.parse()?;
        let mut conn = PgConnection::connect_with(&options.application_name("bobby-gandalf-leader")).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(job as i32)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(Leadership { conn }))
    }

    /// Confirms the lock is still ours (the connection is alive). A leader checks this before each
    /// round of work; on `false` it stops and competes again.
    pub async fn still_held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}
