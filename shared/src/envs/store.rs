//! Environments and leases in Postgres: every rule of who may hold, release, extend, wait for and
//! preserve an environment, as one transaction each.
//!
//! Each function takes the caller's open transaction. Writers lock the environment's row first
//! (`SELECT … FOR UPDATE`), so all changes to one environment are serialised by Postgres and the
//! lease table's primary key backs the one-holder rule up. Every change appends to `history`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use super::{
    Actor, Declared, DeploySummary, EnvState, Environment, Fault, LastNightly, Lease, LeasePolicy, LeaseReason,
    NightlyOutcome,
};
use crate::ids::{EnvName, Holder, SlackUserId};

pub use crate::db::DbResult;

/// The one query that reads environments as the API shows them; callers add a filter.
macro_rules! env_view {
    () => {
        "SELECT e.name, e.url, e.state, e.preserved_until, e.preserved_by, e.fault, e.last_nightly, \
                l.holder, l.reason, l.since, l.expires_at, \
                COALESCE((SELECT array_agg(w.user_id ORDER BY w.id) FROM waitlist w \
                          WHERE w.environment = e.name), '{}') AS waitlist, \
                COALESCE((SELECT jsonb_object_agg(d.resource, jsonb_build_object( \
                              'sha', d.sha, 'ref', d.ref, 'by', d.by_user, 'at', d.at)) \
                          FROM deployed d WHERE d.environment = e.name), '{}') AS deployed, \
                (SELECT jsonb_build_object('id', x.id, 'state', x.state, 'ref', x.ref, 'sha', x.sha, \
                              'by', x.by_user, 'started_at', x.started_at, 'finished_at', x.finished_at) \
                 FROM deploys x WHERE x.environment = e.name ORDER BY x.id DESC LIMIT 1) AS deploy \
         FROM environments e LEFT JOIN leases l ON l.environment = e.name \
         WHERE e.retired_at IS NULL"
    };
}

macro_rules! lease_columns {
    () => {
        "environment, holder, reason, since, expires_at"
    };
}

fn env_from_row(row: &sqlx::postgres::PgRow) -> DbResult<Environment> {
    let name: EnvName = row.try_get("name")?;
    let holder: Option<Holder> = row.try_get("holder")?;
    let lease = match holder {
        Some(holder) => Some(Lease {
            environment: name.clone(),
            holder,
            reason: row.try_get("reason")?,
            since: row.try_get("since")?,
            expires_at: row.try_get("expires_at")?,
        }),
        None => None,
    };
    let fault: Option<sqlx::types::Json<Fault>> = row.try_get("fault")?;
    let last_nightly: Option<sqlx::types::Json<LastNightly>> = row.try_get("last_nightly")?;
    Ok(Environment {
        name,
        url: row.try_get("url")?,
        state: row.try_get("state")?,
        lease,
        preserved_until: row.try_get("preserved_until")?,
        preserved_by: row.try_get("preserved_by")?,
        waitlist: row.try_get("waitlist")?,
        last_nightly: last_nightly.map(|j| j.0),
        fault: fault.map(|j| j.0),
        deployed: row.try_get::<sqlx::types::Json<_>, _>("deployed")?.0,
        deploy: row
            .try_get::<Option<sqlx::types::Json<DeploySummary>>, _>("deploy")?
            .map(|j| j.0),
    })
}

/// Brings the environments table in line with a bot's configuration: declares new ones, updates
/// URLs, retires those no longer configured (their history stays). Gandalf calls it with
/// `only_add`, so it never retires or overrides what Bobby declared.
pub async fn sync_declared(pool: &PgPool, by: &str, declared: &[Declared], only_add: bool) -> DbResult<()> {
    let mut tx = pool.begin().await?;
    for d in declared {
        if only_add {
            sqlx::query(
                "INSERT INTO environments (name, url, keep_on_weekends, declared_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET retired_at = NULL \
                 WHERE environments.retired_at IS NOT NULL AND environments.declared_by = $4",
            )
        } else {
            sqlx::query(
                "INSERT INTO environments (name, url, keep_on_weekends, declared_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET url = $2, keep_on_weekends = $3, declared_by = $4, retired_at = NULL",
            )
        }
        .bind(&d.name)
        .bind(&d.url)
        .bind(d.keep_on_weekends)
        .bind(by)
        .execute(&mut *tx)
        .await?;
    }
    if !only_add {
        let names: Vec<&EnvName> = declared.iter().map(|d| &d.name).collect();
        sqlx::query(
            "UPDATE environments SET retired_at = now() \
             WHERE declared_by = $1 AND retired_at IS NULL AND NOT (name = ANY($2))",
        )
        .bind(by)
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn list(conn: &mut PgConnection) -> DbResult<Vec<Environment>> {
    let rows = sqlx::query(concat!(env_view!(), " ORDER BY e.name"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(env_from_row).collect()
}

pub async fn get(conn: &mut PgConnection, name: &EnvName) -> DbResult<Option<Environment>> {
    let row = sqlx::query(concat!(env_view!(), " AND e.name = $1"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(env_from_row).transpose()
}

/// The names of the environments in service, sorted.
pub async fn names(conn: &mut PgConnection) -> DbResult<Vec<EnvName>> {
    sqlx::query_scalar("SELECT name FROM environments WHERE retired_at IS NULL ORDER BY name")
        .fetch_all(conn)
        .await
}

/// Locks the environment's row for the rest of the transaction and returns its state, or `None`
/// when no such environment is in service.
async fn lock_row(conn: &mut PgConnection, name: &EnvName) -> DbResult<Option<EnvState>> {
    sqlx::query_scalar("SELECT state FROM environments WHERE name = $1 AND retired_at IS NULL FOR UPDATE")
        .bind(name)
        .fetch_optional(conn)
        .await
}

async fn lease_of(conn: &mut PgConnection, name: &EnvName) -> DbResult<Option<Lease>> {
    sqlx::query_as(concat!(
        "SELECT ",
        lease_columns!(),
        " FROM leases WHERE environment = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
}

pub async fn record(
    conn: &mut PgConnection,
    env: &EnvName,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    detail: &str,
) -> DbResult<()> {
    sqlx::query("INSERT INTO history (environment, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(env)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HistoryEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// The last `limit` events of an environment, newest first.
pub async fn history(conn: &mut PgConnection, env: &EnvName, limit: i64) -> DbResult<Vec<HistoryEvent>> {
    sqlx::query_as("SELECT at, actor, action, detail FROM history WHERE environment = $1 ORDER BY id DESC LIMIT $2")
        .bind(env)
        .bind(limit)
        .fetch_all(conn)
        .await
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    Locked {
        lease: Lease,
        state: EnvState,
    },
    AlreadyYours(Lease),
    HeldBy {
        lease: Lease,
        waiting: usize,
    },
    Unknown,
    /// `lock any` found nothing ready and free.
    NoneFree,
}

/// Takes the lease of `name` for `holder` until `expires_at`.
pub async fn lock(
    conn: &mut PgConnection,
    name: &EnvName,
    holder: &Holder,
    reason: &LeaseReason,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> DbResult<LockOutcome> {
    // Fast path without the row lock: an environment someone else visibly holds is refused at
    // once, so a stampede of lockers does not queue on the row lock behind each other.
    if let Some(lease) = lease_of(conn, name).await?
        && &lease.holder != holder
    {
        return held_by(conn, lease).await;
    }
    let Some(state) = lock_row(conn, name).await? else {
        return Ok(LockOutcome::Unknown);
    };
    if let Some(lease) = lease_of(conn, name).await? {
        if &lease.holder == holder {
            return Ok(LockOutcome::AlreadyYours(lease));
        }
        return held_by(conn, lease).await;
    }
    let lease = insert_lease(conn, name, holder, reason, now, expires_at).await?;
    record(conn, name, now, &holder.to_string(), "locked", &lock_detail(&lease)).await?;
    Ok(LockOutcome::Locked { lease, state })
}

async fn held_by(conn: &mut PgConnection, lease: Lease) -> DbResult<LockOutcome> {
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM waitlist WHERE environment = $1")
        .bind(&lease.environment)
        .fetch_one(&mut *conn)
        .await?;
    Ok(LockOutcome::HeldBy {
        lease,
        waiting: waiting as usize,
    })
}

fn lock_detail(lease: &Lease) -> String {
    let mut d = format!(
        "until {}",
        lease.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    if !lease.reason.is_empty() {
        d.push_str(": ");
        d.push_str(lease.reason.as_str());
    }
    d
}

async fn insert_lease(
    conn: &mut PgConnection,
    name: &EnvName,
    holder: &Holder,
    reason: &LeaseReason,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> DbResult<Lease> {
    let lease: Lease = sqlx::query_as(concat!(
        "INSERT INTO leases (environment, holder, reason, since, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING ",
        lease_columns!()
    ))
    .bind(name)
    .bind(holder)
    .bind(reason)
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *conn)
    .await?;
    // Whoever holds it no longer waits for it.
    sqlx::query("DELETE FROM waitlist WHERE environment = $1 AND user_id = $2")
        .bind(name)
        .bind(holder)
        .execute(&mut *conn)
        .await?;
    Ok(lease)
}

/// `lock any`: the first ready environment (by name) that nobody holds or waits for.
pub async fn lock_any(
    conn: &mut PgConnection,
    holder: &Holder,
    reason: &LeaseReason,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> DbResult<LockOutcome> {
    let candidates: Vec<EnvName> = sqlx::query_scalar(
        "SELECT e.name FROM environments e \
         WHERE e.retired_at IS NULL AND e.state = 'ready' \
           AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.environment = e.name) \
           AND NOT EXISTS (SELECT 1 FROM waitlist w WHERE w.environment = e.name) \
         ORDER BY e.name",
    )
    .fetch_all(&mut *conn)
    .await?;
    for name in candidates {
        // Someone may have taken it since the read; re-check under the row lock.
        match lock(conn, &name, holder, reason, now, expires_at).await? {
            outcome @ LockOutcome::Locked { .. } => return Ok(outcome),
            _ => continue,
        }
    }
    Ok(LockOutcome::NoneFree)
}

/// How a lease came to end; recorded in history and used for the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Unlocked,
    Forced,
    Expired,
    Nightly,
}

impl EndReason {
    fn action(self) -> &'static str {
        match self {
            EndReason::Unlocked => "unlocked",
            EndReason::Forced => "force-unlocked",
            EndReason::Expired => "expired",
            EndReason::Nightly => "released-by-nightly",
        }
    }
}

/// A lease that ended and, when someone was waiting, the lease the first waiter got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub previous: Lease,
    pub reason: EndReason,
    pub next: Option<Lease>,
}

/// Ends the lease of an environment whose row the caller has locked, and hands it to the first
/// waiter, if any.
async fn end_lease(
    conn: &mut PgConnection,
    lease: Lease,
    actor: &str,
    reason: EndReason,
    now: DateTime<Utc>,
    policy: &LeasePolicy,
) -> DbResult<Ended> {
    sqlx::query("DELETE FROM leases WHERE environment = $1")
        .bind(&lease.environment)
        .execute(&mut *conn)
        .await?;
    record(
        conn,
        &lease.environment,
        now,
        actor,
        reason.action(),
        &format!("was held by {}", lease.holder),
    )
    .await?;
    let next = if reason == EndReason::Nightly {
        None
    } else {
        hand_over(conn, &lease.environment, now, policy).await?
    };
    Ok(Ended {
        previous: lease,
        reason,
        next,
    })
}

async fn hand_over(
    conn: &mut PgConnection,
    env: &EnvName,
    now: DateTime<Utc>,
    policy: &LeasePolicy,
) -> DbResult<Option<Lease>> {
    let first: Option<SlackUserId> = sqlx::query_scalar(
        "DELETE FROM waitlist WHERE id = (SELECT id FROM waitlist WHERE environment = $1 ORDER BY id LIMIT 1) \
         RETURNING user_id",
    )
    .bind(env)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(waiter) = first else { return Ok(None) };
    let lease = insert_lease(
        conn,
        env,
        &Holder::Person(waiter.clone()),
        &LeaseReason::new("from the waitlist"),
        now,
        policy.default_expiry(now),
    )
    .await?;
    record(
        conn,
        env,
        now,
        "bobby",
        "handed-over",
        &format!("to {waiter}, {}", lock_detail(&lease)),
    )
    .await?;
    Ok(Some(lease))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnlockOutcome {
    Released(Ended),
    NotLocked,
    /// Someone else holds it; an admin may use `--force`.
    NotYours(Lease),
    /// `--force` from someone who is not an admin.
    ForceNeedsAdmin(Lease),
    Unknown,
}

pub async fn unlock(
    conn: &mut PgConnection,
    name: &EnvName,
    actor: &Actor,
    force: bool,
    now: DateTime<Utc>,
    policy: &LeasePolicy,
) -> DbResult<UnlockOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(UnlockOutcome::Unknown);
    }
    let Some(lease) = lease_of(conn, name).await? else {
        return Ok(UnlockOutcome::NotLocked);
    };
    let reason = if lease.holder == actor.id {
        EndReason::Unlocked
    } else if !force {
        return Ok(UnlockOutcome::NotYours(lease));
    } else if !actor.is_admin {
        return Ok(UnlockOutcome::ForceNeedsAdmin(lease));
    } else {
        EndReason::Forced
    };
    Ok(UnlockOutcome::Released(
        end_lease(conn, lease, &actor.id.to_string(), reason, now, policy).await?,
    ))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// `capped` when the requested expiry was beyond `max_lease` and the lease got the maximum.
    Extended {
        lease: Lease,
        capped: bool,
    },
    AlreadyAtMax(Lease),
    NotLocked,
    NotYours(Lease),
    Unknown,
}

pub async fn extend(
    conn: &mut PgConnection,
    name: &EnvName,
    actor: &Actor,
    by: chrono::Duration,
    now: DateTime<Utc>,
    policy: &LeasePolicy,
) -> DbResult<ExtendOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(ExtendOutcome::Unknown);
    }
    let Some(lease) = lease_of(conn, name).await? else {
        return Ok(ExtendOutcome::NotLocked);
    };
    if lease.holder != actor.id && !actor.is_admin {
        return Ok(ExtendOutcome::NotYours(lease));
    }
    let latest = policy.latest_expiry(now);
    if lease.expires_at >= latest {
        return Ok(ExtendOutcome::AlreadyAtMax(lease));
    }
    let wanted = lease.expires_at + by;
    let capped = wanted > latest;
    let lease = set_expiry(conn, name, wanted.min(latest)).await?;
    record(
        conn,
        name,
        now,
        &actor.id.to_string(),
        "extended",
        &format!(
            "until {}",
            lease.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
    .await?;
    Ok(ExtendOutcome::Extended { lease, capped })
}

/// Moves a lease's expiry; the reminder is due again for the new one.
async fn set_expiry(conn: &mut PgConnection, name: &EnvName, expires_at: DateTime<Utc>) -> DbResult<Lease> {
    sqlx::query_as(concat!(
        "UPDATE leases SET expires_at = $2, reminded_at = NULL WHERE environment = $1 RETURNING ",
        lease_columns!()
    ))
    .bind(name)
    .bind(expires_at)
    .fetch_one(conn)
    .await
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Joined (or already was) at this 1-based position, behind the holder.
    Waiting {
        position: usize,
        already: bool,
        lease: Lease,
    },
    /// Nobody holds it: no need to wait.
    Free,
    YouHoldIt(Lease),
    Unknown,
}

pub async fn wait(
    conn: &mut PgConnection,
    name: &EnvName,
    user: &SlackUserId,
    now: DateTime<Utc>,
) -> DbResult<WaitOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(WaitOutcome::Unknown);
    }
    let Some(lease) = lease_of(conn, name).await? else {
        return Ok(WaitOutcome::Free);
    };
    if lease.holder == *user {
        return Ok(WaitOutcome::YouHoldIt(lease));
    }
    let inserted = sqlx::query(
        "INSERT INTO waitlist (environment, user_id, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT (environment, user_id) DO NOTHING",
    )
    .bind(name)
    .bind(user)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        record(conn, name, now, user.as_str(), "joined-waitlist", "").await?;
    }
    let position: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM waitlist WHERE environment = $1 \
         AND id <= (SELECT id FROM waitlist WHERE environment = $1 AND user_id = $2)",
    )
    .bind(name)
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    Ok(WaitOutcome::Waiting {
        position: position as usize,
        already: !inserted,
        lease,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnwaitOutcome {
    Left,
    NotWaiting,
    Unknown,
}

pub async fn unwait(
    conn: &mut PgConnection,
    name: &EnvName,
    user: &SlackUserId,
    now: DateTime<Utc>,
) -> DbResult<UnwaitOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(UnwaitOutcome::Unknown);
    }
    let left = sqlx::query("DELETE FROM waitlist WHERE environment = $1 AND user_id = $2")
        .bind(name)
        .bind(user)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if !left {
        return Ok(UnwaitOutcome::NotWaiting);
    }
    record(conn, name, now, user.as_str(), "left-waitlist", "").await?;
    Ok(UnwaitOutcome::Left)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreserveOutcome {
    /// Preserved until `until`; `lease` is the (possibly extended) lease, if any.
    Preserved {
        until: DateTime<Utc>,
        lease: Option<Lease>,
    },
    /// Only the holder (or an admin) may preserve; `None` when nobody holds it.
    NotYours(Option<Lease>),
    Unknown,
}

pub async fn preserve(
    conn: &mut PgConnection,
    name: &EnvName,
    actor: &Actor,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DbResult<PreserveOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(PreserveOutcome::Unknown);
    }
    let lease = lease_of(conn, name).await?;
    let holds = lease.as_ref().is_some_and(|l| l.holder == actor.id);
    // Preserving is for people: Gandalf lets Nightly have its environments back.
    let Some(by) = actor.id.person().filter(|_| holds || actor.is_admin) else {
        return Ok(PreserveOutcome::NotYours(lease));
    };
    sqlx::query("UPDATE environments SET preserved_until = $2, preserved_by = $3 WHERE name = $1")
        .bind(name)
        .bind(until)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    // A preserved environment keeps its holder at least as long as it is preserved.
    let lease = match lease {
        Some(l) if l.expires_at < until => Some(set_expiry(conn, name, until).await?),
        other => other,
    };
    record(
        conn,
        name,
        now,
        by.as_str(),
        "preserved",
        &format!("until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    )
    .await?;
    Ok(PreserveOutcome::Preserved { until, lease })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnpreserveOutcome {
    Unpreserved,
    NotPreserved,
    NotYours(Option<Lease>),
    Unknown,
}

pub async fn unpreserve(
    conn: &mut PgConnection,
    name: &EnvName,
    actor: &Actor,
    now: DateTime<Utc>,
) -> DbResult<UnpreserveOutcome> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(UnpreserveOutcome::Unknown);
    }
    let lease = lease_of(conn, name).await?;
    let preserved_by: Option<SlackUserId> =
        sqlx::query_scalar("SELECT preserved_by FROM environments WHERE name = $1 AND preserved_until > $2")
            .bind(name)
            .bind(now)
            .fetch_one(&mut *conn)
            .await
            .or_else(|e| {
                if matches!(e, sqlx::Error::RowNotFound) {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?;
    let Some(preserved_by) = preserved_by else {
        return Ok(UnpreserveOutcome::NotPreserved);
    };
    let holds = lease.as_ref().is_some_and(|l| l.holder == actor.id);
    if !holds && actor.id != Holder::Person(preserved_by) && !actor.is_admin {
        return Ok(UnpreserveOutcome::NotYours(lease));
    }
    sqlx::query("UPDATE environments SET preserved_until = NULL, preserved_by = NULL WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    record(conn, name, now, &actor.id.to_string(), "unpreserved", "").await?;
    Ok(UnpreserveOutcome::Unpreserved)
}

/// Keeps `holder`'s lease of `name` alive while its work runs: when it ends before `renew_before`,
/// it is moved to `until`. Returns the lease's end, or `None` when `holder` no longer holds it (an
/// admin's forced unlock, say) — the caller must stop using the environment. Writes only when a
/// renewal is due, so watching with it does not wake every listener of `leases` each time.
pub async fn keep_alive(
    conn: &mut PgConnection,
    name: &EnvName,
    holder: &Holder,
    renew_before: DateTime<Utc>,
    until: DateTime<Utc>,
) -> DbResult<Option<DateTime<Utc>>> {
    let renewed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE leases SET expires_at = $4, reminded_at = NULL \
         WHERE environment = $1 AND holder = $2 AND expires_at < $3 AND $4 > expires_at RETURNING expires_at",
    )
    .bind(name)
    .bind(holder)
    .bind(renew_before)
    .bind(until)
    .fetch_optional(&mut *conn)
    .await?;
    if renewed.is_some() {
        return Ok(renewed);
    }
    sqlx::query_scalar("SELECT expires_at FROM leases WHERE environment = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .fetch_optional(&mut *conn)
        .await
}

/// The next instant the expiry worker has something to do: a reminder or an expiry.
pub async fn next_lease_deadline(
    conn: &mut PgConnection,
    remind_before: chrono::Duration,
) -> DbResult<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT min(LEAST(CASE WHEN reminded_at IS NULL AND expires_at - since > $1 THEN expires_at - $1 END, expires_at)) \
         FROM leases",
    )
    .bind(remind_before)
    .fetch_one(conn)
    .await
}

/// Marks the leases due for a reminder as reminded (leases shorter than the reminder lead get none:
/// their holder just chose that expiry) and returns them (the caller tells the holders).
pub async fn take_due_reminders(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    remind_before: chrono::Duration,
) -> DbResult<Vec<Lease>> {
    sqlx::query_as(concat!(
        "UPDATE leases SET reminded_at = $1 \
         WHERE reminded_at IS NULL AND expires_at - $2 <= $1 AND expires_at > $1 \
           AND expires_at - since > $2 RETURNING ",
        lease_columns!()
    ))
    .bind(now)
    .bind(remind_before)
    .fetch_all(conn)
    .await
}

/// Ends every lease whose expiry has passed (handing each to its first waiter).
pub async fn expire_due(conn: &mut PgConnection, now: DateTime<Utc>, policy: &LeasePolicy) -> DbResult<Vec<Ended>> {
    // Read without row locks, then take each environment's row lock first like every other writer
    // (environment row, then lease row), so the worker can never deadlock with a user's unlock.
    let due: Vec<EnvName> =
        sqlx::query_scalar("SELECT environment FROM leases WHERE expires_at <= $1 ORDER BY expires_at")
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
    let mut ended = Vec::with_capacity(due.len());
    for env in due {
        if lock_row(conn, &env).await?.is_none() {
            continue;
        }
        if let Some(lease) = lease_of(conn, &env).await?
            && lease.expires_at <= now
        {
            ended.push(end_lease(conn, lease, "bobby", EndReason::Expired, now, policy).await?);
        }
    }
    Ok(ended)
}

/// Lease counts for `/metrics`: (state, leased?) → count.
pub async fn census(conn: &mut PgConnection) -> DbResult<Vec<(EnvState, bool, i64)>> {
    let rows = sqlx::query(
        "SELECT e.state, (l.environment IS NOT NULL) AS leased, count(*) AS n \
         FROM environments e LEFT JOIN leases l ON l.environment = e.name \
         WHERE e.retired_at IS NULL GROUP BY 1, 2",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("leased")?, r.try_get("n")?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Nightly (SPEC §4.5): the state transitions of an environment's lifecycle. Bobby's Nightly decides
// what to run and runs it; these functions are the only writers of `state`, `fault` and
// `last_nightly`, each under the environment's row lock and recorded in history like every other
// change.

/// The two phases of Nightly; stored (in faults, `last_nightly` and runs) as `delete`/`create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NightlyPhase {
    Delete,
    Create,
}

impl NightlyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NightlyPhase::Delete => "delete",
            NightlyPhase::Create => "create",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delete" => Some(NightlyPhase::Delete),
            "create" => Some(NightlyPhase::Create),
            _ => None,
        }
    }

    /// The state an environment has while this phase works on it.
    pub fn busy_state(self) -> EnvState {
        match self {
            NightlyPhase::Delete => EnvState::Deleting,
            NightlyPhase::Create => EnvState::Creating,
        }
    }

    /// The state it reaches when this phase succeeds.
    pub fn done_state(self) -> EnvState {
        match self {
            NightlyPhase::Delete => EnvState::Deleted,
            NightlyPhase::Create => EnvState::Ready,
        }
    }
}

impl std::fmt::Display for NightlyPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`claim_for_nightly`] found under the row lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NightlyClaim {
    /// Now `deleting`/`creating`. A delete also ended the lease (`ended`, never handed over) and
    /// cleared the waitlist (`cleared_waiters`, in their order); the caller tells them.
    Claimed {
        previous: EnvState,
        previous_fault: Option<Fault>,
        ended: Option<Box<Ended>>,
        cleared_waiters: Vec<SlackUserId>,
    },
    /// Preserved until then: Nightly leaves it and its lease alone.
    Preserved(DateTime<Utc>),
    /// Gandalf is verifying a pull request on it.
    HeldByGandalf,
    Unknown,
}

/// Takes an environment for a Nightly phase. The plan was made from a snapshot; preservation and
/// Gandalf's lease are checked again here, under the row lock, so a `preserve` typed a second
/// before the delete still counts.
pub async fn claim_for_nightly(
    conn: &mut PgConnection,
    name: &EnvName,
    phase: NightlyPhase,
    now: DateTime<Utc>,
    policy: &LeasePolicy,
) -> DbResult<NightlyClaim> {
    let Some(previous) = lock_row(conn, name).await? else {
        return Ok(NightlyClaim::Unknown);
    };
    let (preserved_until, previous_fault): (Option<DateTime<Utc>>, Option<sqlx::types::Json<Fault>>) =
        sqlx::query_as("SELECT preserved_until, fault FROM environments WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    if let Some(until) = preserved_until.filter(|t| *t > now) {
        return Ok(NightlyClaim::Preserved(until));
    }
    let lease = lease_of(conn, name).await?;
    if lease.as_ref().is_some_and(|l| l.holder.is_gandalf()) {
        return Ok(NightlyClaim::HeldByGandalf);
    }
    let mut ended = None;
    let mut cleared_waiters = Vec::new();
    if phase == NightlyPhase::Delete {
        if let Some(lease) = lease {
            ended = Some(Box::new(
                end_lease(conn, lease, "bobby", EndReason::Nightly, now, policy).await?,
            ));
        }
        cleared_waiters = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM waitlist WHERE environment = $1 RETURNING id, user_id) \
             SELECT user_id FROM gone ORDER BY id",
        )
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
        if !cleared_waiters.is_empty() {
            record(
                conn,
                name,
                now,
                "bobby",
                "waitlist-cleared-by-nightly",
                &cleared_waiters
                    .iter()
                    .map(SlackUserId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .await?;
        }
    } else {
        close_downtime(conn, name, now).await?;
    }
    sqlx::query("UPDATE environments SET state = $2, fault = NULL WHERE name = $1")
        .bind(name)
        .bind(phase.busy_state())
        .execute(&mut *conn)
        .await?;
    record(
        conn,
        name,
        now,
        "bobby",
        &format!("nightly-{}-started", phase.as_str()),
        &format!("was {}", previous.as_str()),
    )
    .await?;
    Ok(NightlyClaim::Claimed {
        previous,
        previous_fault: previous_fault.map(|j| j.0),
        ended,
        cleared_waiters,
    })
}

async fn set_nightly_state(
    conn: &mut PgConnection,
    name: &EnvName,
    state: EnvState,
    fault: Option<&Fault>,
    last: &LastNightly,
) -> DbResult<bool> {
    let updated = sqlx::query("UPDATE environments SET state = $2, fault = $3, last_nightly = $4 WHERE name = $1")
        .bind(name)
        .bind(state)
        .bind(fault.map(sqlx::types::Json))
        .bind(sqlx::types::Json(last))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(updated == 1)
}

fn last_nightly(phase: NightlyPhase, outcome: NightlyOutcome, now: DateTime<Utc>) -> LastNightly {
    LastNightly {
        phase,
        outcome,
        finished_at: now,
    }
}

/// A phase went through: the environment is `deleted` (and counts as down from now) or `ready`.
pub async fn nightly_succeeded(
    conn: &mut PgConnection,
    name: &EnvName,
    phase: NightlyPhase,
    now: DateTime<Utc>,
) -> DbResult<()> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(());
    }
    set_nightly_state(
        conn,
        name,
        phase.done_state(),
        None,
        &last_nightly(phase, NightlyOutcome::Ok, now),
    )
    .await?;
    if phase == NightlyPhase::Delete {
        sqlx::query(
            "INSERT INTO environment_downtime (environment, down_from) VALUES ($1, $2) \
             ON CONFLICT (environment) WHERE down_until IS NULL DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    record(
        conn,
        name,
        now,
        "bobby",
        match phase {
            NightlyPhase::Delete => "nightly-deleted",
            NightlyPhase::Create => "nightly-created",
        },
        "",
    )
    .await
}

/// A phase failed on the environment (`outcome` `faulted`), or was cut short by a crash and not
/// resumed in time (`interrupted`): it is `faulted` with why, until a later phase succeeds.
pub async fn nightly_faulted(
    conn: &mut PgConnection,
    name: &EnvName,
    fault: &Fault,
    outcome: NightlyOutcome,
    now: DateTime<Utc>,
) -> DbResult<()> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(());
    }
    let last = last_nightly(fault.phase, outcome, now);
    set_nightly_state(conn, name, EnvState::Faulted, Some(fault), &last).await?;
    let exit = fault
        .exit_code
        .map(|c| format!("exit {c}"))
        .unwrap_or_else(|| "no exit status".into());
    record(
        conn,
        name,
        now,
        "bobby",
        &format!("nightly-{outcome}"),
        &format!(
            "{} step {} ({exit}, {} attempts)",
            fault.phase.as_str(),
            fault.step,
            fault.attempts
        ),
    )
    .await
}

/// The phase looked at the environment and left it alone (preserved, held by Gandalf, not kept
/// today, already up or down): only `last_nightly` says so.
pub async fn nightly_skipped(
    conn: &mut PgConnection,
    name: &EnvName,
    phase: NightlyPhase,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query("UPDATE environments SET last_nightly = $2 WHERE name = $1")
        .bind(name)
        .bind(sqlx::types::Json(last_nightly(phase, NightlyOutcome::Skipped, now)))
        .execute(conn)
        .await?;
    Ok(())
}

/// An interrupted run claimed the environment but never ran a step on it: it gets back the state
/// (and fault) it had, and `last_nightly` says the phase was interrupted.
pub async fn nightly_restored(
    conn: &mut PgConnection,
    name: &EnvName,
    phase: NightlyPhase,
    state: EnvState,
    fault: Option<&Fault>,
    now: DateTime<Utc>,
) -> DbResult<()> {
    if lock_row(conn, name).await?.is_none() {
        return Ok(());
    }
    // The fault_iff_faulted constraint: a faulted state needs its fault, nothing else has one.
    let (state, fault) = match (state, fault) {
        (EnvState::Faulted, Some(f)) => (EnvState::Faulted, Some(f)),
        (EnvState::Faulted, None) | (EnvState::Deleting | EnvState::Creating, _) => (EnvState::Ready, None),
        (s, _) => (s, None),
    };
    set_nightly_state(
        conn,
        name,
        state,
        fault,
        &last_nightly(phase, NightlyOutcome::Interrupted, now),
    )
    .await?;
    if state == EnvState::Deleted {
        // It was down before the run claimed it, and still is.
        sqlx::query(
            "INSERT INTO environment_downtime (environment, down_from) VALUES ($1, $2) \
             ON CONFLICT (environment) WHERE down_until IS NULL DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    record(
        conn,
        name,
        now,
        "bobby",
        "nightly-interrupted",
        &format!("{} never started on it; back to {}", phase.as_str(), state.as_str()),
    )
    .await
}

/// Environments left `deleting` or `creating` that are not in `except` (the environments of the
/// run being resumed): a crash's leftovers with no run to finish them.
pub async fn stuck_in_nightly(conn: &mut PgConnection, except: &[EnvName]) -> DbResult<Vec<(EnvName, EnvState)>> {
    sqlx::query_as(
        "SELECT name, state FROM environments \
         WHERE retired_at IS NULL AND state IN ('deleting', 'creating') AND NOT (name = ANY($1)) ORDER BY name",
    )
    .bind(except)
    .fetch_all(conn)
    .await
}

async fn close_downtime(conn: &mut PgConnection, name: &EnvName, now: DateTime<Utc>) -> DbResult<()> {
    sqlx::query(
        "UPDATE environment_downtime SET down_until = GREATEST(down_from, $2) \
         WHERE environment = $1 AND down_until IS NULL",
    )
    .bind(name)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Environment-hours spent down (deleted by Nightly) between `from` and `to`.
pub async fn downtime_hours(conn: &mut PgConnection, from: DateTime<Utc>, to: DateTime<Utc>) -> DbResult<f64> {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(EXTRACT(EPOCH FROM (LEAST(COALESCE(d.down_until, $2), $2) - GREATEST(d.down_from, $1)))), 0)::float8 / 3600.0 \
         FROM environment_downtime d JOIN environments e ON e.name = d.environment \
         WHERE e.retired_at IS NULL AND d.down_from < $2 AND COALESCE(d.down_until, $2) > $1",
    )
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}
