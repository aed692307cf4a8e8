//! Fencing by leases with epochs (SPEC §8): how work that must happen once (a Nightly run, a
//! deploy) is owned across replicas and lost sessions.
//!
//! A session advisory lock says "I lead" only as long as one connection lives, and Postgres drops
//! it the instant that session dies (a failover, a killed backend, a pooler's idle timeout) while
//! the leader's steps keep running: a second replica then starts the same work beside the first.
//! A [`Lease`] is a row of `work_leases` instead (`kind`, `key`, `owner`, `epoch`, `expires_at`):
//!
//! - [`try_acquire`] takes it only when it is free or expired, in one statement (an upsert whose
//!   `WHERE` Postgres re-checks under the row lock), and a take-over adds 1 to the epoch;
//! - [`Lease::keep_alive`] renews it every third of its time to live; when it could not renew
//!   before a third is left it raises [`KeepAlive::stop`], so the owner kills its steps *before*
//!   the lease can expire and anyone else may take over;
//! - every write of the work goes through [`Lease::begin`]: a transaction that first locks the
//!   lease row `FOR SHARE` and checks owner, epoch and expiry. A stale owner's write is refused
//!   ([`FenceError::Lost`]), and a take-over (an `UPDATE` of that row) waits until a write that
//!   passed the check has committed, so no write of an old epoch lands after a new owner began.
//!
//! Expiry is the database's clock only (`now()`); the owner's deadline for giving up is measured on
//! its own monotonic clock from *before* the renewal it sent, so it is never later than the
//! database's `expires_at`. The time to live is per kind, in `work_lease_kinds`: every replica
//! must agree on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::db::short_db_error;

/// Why a fenced write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The lease is no longer ours (expired, or taken over with a newer epoch): the write must
    /// not happen, and the owner must stop.
    #[error("the {kind} lease {key} is no longer ours (epoch {epoch})")]
    Lost { kind: String, key: String, epoch: i64 },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A name for this process's acquisitions: host, pid and a counter, so two owners in one process
/// (tests run two replicas in one) are told apart too.
pub fn owner_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A lease this process holds (or held: it may have been lost since; writes find out).
#[derive(Clone, Debug)]
pub struct Lease {
    pool: PgPool,
    pub kind: String,
    pub key: String,
    pub owner: String,
    pub epoch: i64,
    pub ttl: Duration,
    /// When the acquiring statement was sent, on this process's monotonic clock.
    sent: Instant,
}

/// What [`try_acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    Ours(Lease),
    /// Someone else holds it for `expires_in` more (by the database's clock).
    Held {
        owner: String,
        expires_in: Duration,
    },
}

/// Takes the lease on (`kind`, `key`) for `owner` if it is free or expired. Race-free: one
/// statement; of two replicas trying at once exactly one gets it.
pub async fn try_acquire(pool: &PgPool, kind: &str, key: &str, owner: &str) -> Result<Acquired, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if let Some(lease) = acquire_in(&mut conn, pool, kind, key, owner).await? {
        return Ok(Acquired::Ours(lease));
    }
    let held: Option<(String, f64)> = sqlx::query_as(
        "SELECT owner, greatest(extract(epoch FROM expires_at - now()), 0)::float8 \
         FROM work_leases WHERE kind = $1 AND key = $2",
    )
    .bind(kind)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    match held {
        Some((owner, secs)) => Ok(Acquired::Held {
            owner,
            expires_in: Duration::from_secs_f64(secs),
        }),
        // Freed between the two statements: the caller tries again at once.
        None => Ok(Acquired::Held {
            owner: String::new(),
            expires_in: Duration::ZERO,
        }),
    }
}

/// [`try_acquire`] in the caller's transaction, so that the work's row and its lease come into
/// being together (a deploy). `None` when someone else holds it. `pool` is where the lease's
/// later renewals and fenced writes go.
pub async fn acquire_in(
    conn: &mut PgConnection,
    pool: &PgPool,
    kind: &str,
    key: &str,
    owner: &str,
) -> Result<Option<Lease>, sqlx::Error> {
    let sent = Instant::now();
    let got: Option<(i64, f64)> = sqlx::query_as(
        "INSERT INTO work_leases (kind, key, owner, epoch, acquired_at, expires_at) \
         SELECT k.kind, $2, $3, 1, now(), now() + k.ttl FROM work_lease_kinds k WHERE k.kind = $1 \
         ON CONFLICT (kind, key) DO UPDATE \
         SET owner = EXCLUDED.owner, epoch = work_leases.epoch + 1, \
             acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at \
         WHERE work_leases.expires_at <= now() \
         RETURNING epoch, extract(epoch FROM expires_at - now())::float8",
    )
    .bind(kind)
    .bind(key)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    if got.is_none() {
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM work_lease_kinds WHERE kind = $1)")
            .bind(kind)
            .fetch_one(&mut *conn)
            .await?;
        if !known {
            return Err(sqlx::Error::Protocol(format!(
                "no lease kind `{kind}` in work_lease_kinds"
            )));
        }
    }
    Ok(got.map(|(epoch, ttl)| Lease {
        pool: pool.clone(),
        kind: kind.to_string(),
        key: key.to_string(),
        owner: owner.to_string(),
        epoch,
        ttl: Duration::from_secs_f64(ttl.max(0.0)),
        sent,
    }))
}

/// Waits until this process holds the lease on (`kind`, `key`): tries again when the current
/// owner's lease expires (at most every `retry`). `None` once `shutdown` is raised.
pub async fn acquire(
    pool: &PgPool,
    kind: &str,
    key: &str,
    retry: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Lease> {
    let owner = owner_name();
    loop {
        let wait = match try_acquire(pool, kind, key, &owner).await {
            Ok(Acquired::Ours(lease)) => return Some(lease),
            Ok(Acquired::Held { owner, expires_in }) => {
                tracing::debug!(kind, key, holder = %owner, ?expires_in, "another replica holds the lease; standing by");
                // Just after it expires: a take-over happens only then.
                (expires_in + Duration::from_millis(20)).min(retry)
            }
            Err(e) => {
                tracing::warn!(kind, key, error = %short_db_error(&e), "cannot try for the lease");
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    }
}

impl Lease {
    /// Extends the lease by its time to live. `Ok(false)` when it is no longer ours (expired or
    /// taken over): renewing an expired lease is refused even if nobody took it, since another
    /// replica may be about to.
    pub async fn renew(&self) -> Result<bool, sqlx::Error> {
        Ok(self.renew_for().await?.is_some())
    }

    /// [`Lease::renew`], returning the time to live it was renewed for: an operator may change
    /// it in `work_lease_kinds` while the lease is held, and the owner's schedule must follow
    /// (renewing on the old, longer cadence would let the lease expire under a running step).
    async fn renew_for(&self) -> Result<Option<Duration>, sqlx::Error> {
        let ttl: Option<f64> = sqlx::query_scalar(
            "UPDATE work_leases w SET expires_at = now() + k.ttl FROM work_lease_kinds k \
             WHERE k.kind = w.kind AND w.kind = $1 AND w.key = $2 AND w.owner = $3 AND w.epoch = $4 \
             AND w.expires_at > now() \
             RETURNING extract(epoch FROM k.ttl)::float8",
        )
        .bind(&self.kind)
        .bind(&self.key)
        .bind(&self.owner)
        .bind(self.epoch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(ttl.map(|t| Duration::from_secs_f64(t.max(0.0))))
    }

    /// Gives the lease up (the work is done, or stopped for shutdown and free for another replica
    /// to resume at once). Nothing happens when it is no longer ours.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM work_leases WHERE kind = $1 AND key = $2 AND owner = $3 AND epoch = $4")
            .bind(&self.kind)
            .bind(&self.key)
            .bind(&self.owner)
            .bind(self.epoch)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Checks, in the caller's transaction, that the lease is still ours, and keeps it so until
    /// that transaction ends (the row is locked `FOR SHARE`: a take-over waits for the commit).
    pub async fn check(&self, tx: &mut PgConnection) -> Result<(), FenceError> {
        let ours: Option<i64> = sqlx::query_scalar(
            "SELECT epoch FROM work_leases WHERE kind = $1 AND key = $2 AND owner = $3 AND epoch = $4 \
             AND expires_at > now() FOR SHARE",
        )
        .bind(&self.kind)
        .bind(&self.key)
        .bind(&self.owner)
        .bind(self.epoch)
        .fetch_optional(&mut *tx)
        .await?;
        match ours {
            Some(_) => Ok(()),
            None => Err(self.lost()),
        }
    }

    /// A transaction for a write of the work this lease fences: begun, and [`Lease::check`]ed.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, FenceError> {
        let mut tx = self.pool.begin().await?;
        self.check(&mut tx).await?;
        Ok(tx)
    }

    fn lost(&self) -> FenceError {
        FenceError::Lost {
            kind: self.kind.clone(),
            key: self.key.clone(),
            epoch: self.epoch,
        }
    }

    /// Renews the lease in the background until the returned guard is dropped. Its
    /// [`KeepAlive::stop`] turns `true` when `shutdown` is raised or when the lease could not be
    /// renewed in time (then [`KeepAlive::lost`] says so): the owner's cue to kill its steps.
    /// Renewal goes on after a shutdown, until the owner has stopped its steps and drops the guard.
    pub fn keep_alive(&self, shutdown: watch::Receiver<bool>) -> KeepAlive {
        let (stop_tx, stop) = watch::channel(*shutdown.borrow());
        let (lost_tx, lost) = watch::channel(false);
        let lease = self.clone();
        let task = tokio::spawn(renew_until_lost(lease, shutdown, stop_tx, lost_tx));
        KeepAlive { stop, lost, task }
    }
}

/// The guard of [`Lease::keep_alive`]: dropping it stops the renewals.
pub struct KeepAlive {
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// `true` once the owner must stop its steps: shutdown, or the lease could not be kept.
    pub fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Whether the lease was lost (as opposed to a shutdown).
    pub fn lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// `true` once the lease could not be kept (not at a shutdown): for work that must go on
    /// through a graceful shutdown (a revert) but never past the lease.
    pub fn lost_watch(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The renewal schedule for a time to live: renew every third, give up when a third is left.
fn cadence(ttl: Duration) -> (Duration, Duration) {
    let third = ttl / 3;
    (third, ttl.saturating_sub(third))
}

async fn renew_until_lost(
    lease: Lease,
    mut shutdown: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    lost: watch::Sender<bool>,
) {
    let (mut every, mut keep_for) = cadence(lease.ttl);
    // Counted from before the statement that set `expires_at`: never later than the database's.
    let mut deadline = lease.sent + keep_for;
    let mut next = Instant::now() + every;
    let mut watching_shutdown = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next.min(deadline)) => {}
            changed = shutdown.changed(), if watching_shutdown => {
                if changed.is_err() || *shutdown.borrow() {
                    stop.send_replace(true);
                    watching_shutdown = false;
                }
                continue;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        let sent = Instant::now();
        match tokio::time::timeout(deadline - sent, lease.renew_for()).await {
            Ok(Ok(Some(ttl))) => {
                (every, keep_for) = cadence(ttl);
                deadline = sent + keep_for;
                next = sent + every;
            }
            Ok(Ok(None)) => {
                tracing::warn!(kind = %lease.kind, key = %lease.key, epoch = lease.epoch, "lease expired or taken over");
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(kind = %lease.kind, key = %lease.key, error = %short_db_error(&e), "cannot renew the lease; trying again");
                // Soon, but not in a tight loop.
                next = Instant::now() + (every / 10).max(Duration::from_millis(50));
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    tracing::warn!(kind = %lease.kind, key = %lease.key, epoch = lease.epoch, "lease not renewed in time: stopping its work");
    lost.send_replace(true);
    stop.send_replace(true);
    // Keep the channels open (the senders) until the guard is dropped.
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_every_third_and_gives_up_with_a_third_left() {
        let (every, keep_for) = cadence(Duration::from_secs(30));
        assert_eq!(every, Duration::from_secs(10));
        assert_eq!(keep_for, Duration::from_secs(20));
        // The owner gives up strictly before the database's expiry.
        assert!(keep_for < Duration::from_secs(30));
    }

    #[test]
    fn owners_in_one_process_differ() {
        assert_ne!(owner_name(), owner_name());
    }
}
