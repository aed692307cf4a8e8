//! The `github_deliveries` table as a work queue: storing a delivery on receipt, claiming the
//! next one (one statement, `FOR UPDATE SKIP LOCKED`, so no transaction outlives it), recording a
//! command's answer, the effect and the reply, and finishing or setting a delivery aside. Every
//! write after the claim is fenced by it (`claimed_by = $me`): a replica whose claim ran out and
//! was taken over changes nothing (its write reports [`Fenced`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use shared::db::DbResult;

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub event: String,
    pub payload: Value,
    /// This attempt's number, the first being 1.
    pub attempt: u32,
    /// Whether the previous attempt's error was GitHub refusing for good.
    pub last_error_permanent: bool,
    /// The answers of the comment's commands already run: `(command, answer)`.
    pub answers: Vec<(String, String)>,
    /// Whether the effect is committed (then only the reply may be left to post).
    pub executed: bool,
    pub reply: Option<String>,
}

/// A write after the claim found the claim no longer ours: another replica took the delivery
/// over after ours ran out. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("the claim on delivery {0} was lost to another replica")]
pub struct Fenced(pub String);

fn fenced(n: u64, id: &str) -> anyhow::Result<()> {
    if n == 1 {
        Ok(())
    } else {
        Err(Fenced(id.to_string()).into())
    }
}

/// Stores a webhook delivery for processing; `false` when it was seen before.
pub async fn store_delivery(
    conn: &mut PgConnection,
    id: &str,
    event: &str,
    payload: &Value,
    now: DateTime<Utc>,
) -> DbResult<bool> {
    let n = sqlx::query(
        "INSERT INTO github_deliveries (delivery_id, event, payload, received_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(event)
    .bind(payload)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Claims the oldest delivery that is due, unclaimed (or whose claim ran out), and not behind an
/// unfinished earlier delivery about the same pull request, for `claimant` until `until`; the
/// attempt is counted. Rows another replica is claiming at this instant are skipped, not waited
/// for.
pub async fn claim(
    conn: &mut PgConnection,
    claimant: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> DbResult<Option<Claimed>> {
    let row = sqlx::query(
        "WITH next AS ( \
           SELECT d.delivery_id FROM github_deliveries d \
           WHERE d.processed_at IS NULL AND d.failed_at IS NULL \
             AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $2) \
             AND (d.claimed_until IS NULL OR d.claimed_until <= $2) \
             AND (d.subject IS NULL OR NOT EXISTS ( \
                   SELECT 1 FROM github_deliveries e \
                   WHERE e.subject = d.subject AND e.seq < d.seq \
                     AND e.processed_at IS NULL AND e.failed_at IS NULL)) \
           ORDER BY d.seq LIMIT 1 \
           FOR UPDATE SKIP LOCKED) \
         UPDATE github_deliveries g SET claimed_by = $1, claimed_until = $3, attempts = g.attempts + 1 \
         FROM next WHERE g.delivery_id = next.delivery_id \
         RETURNING g.delivery_id, g.event, g.payload, g.attempts, g.last_error_permanent, g.answers, \
                   g.executed_at IS NOT NULL AS executed, g.reply",
    )
    .bind(claimant)
    .bind(now)
    .bind(until)
    .fetch_optional(conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Claimed {
        id: r.try_get("delivery_id")?,
        event: r.try_get("event")?,
        payload: r.try_get("payload")?,
        attempt: u32::try_from(r.try_get::<i32, _>("attempts")?).unwrap_or(0),
        last_error_permanent: r.try_get("last_error_permanent")?,
        answers: r.try_get::<Json<Vec<(String, String)>>, _>("answers")?.0,
        executed: r.try_get("executed")?,
        reply: r.try_get("reply")?,
    }))
}

/// Releases the claim of an attempt that the database cut short, and gives the attempt back: a
/// database outage is not the delivery's fault.
pub async fn give_back(conn: &mut PgConnection, id: &str, claimant: &str) -> DbResult<()> {
    sqlx::query(
        "UPDATE github_deliveries SET claimed_by = NULL, claimed_until = NULL, attempts = greatest(attempts - 1, 0) \
         WHERE delivery_id = $1 AND claimed_by = $2",
    )
    .bind(id)
    .bind(claimant)
    .execute(conn)
    .await?;
    Ok(())
}

/// Releases every claim of `claimant`: called when its processor starts over (after a database
/// blip, say), when none of its attempts is under way, so its deliveries need not wait for their
/// claims to run out.
pub async fn release_claims(conn: &mut PgConnection, claimant: &str) -> DbResult<u64> {
    Ok(
        sqlx::query("UPDATE github_deliveries SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1")
            .bind(claimant)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// When a delivery next becomes due after `now` (a retry's time, or a claim running out), if
/// any will: when the processor should look again without being told. Deliveries due already
/// are left out: they are being processed, or wait behind an earlier one whose release is
/// notified.
pub async fn next_due(conn: &mut PgConnection, now: DateTime<Utc>) -> DbResult<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT min(t) FROM ( \
           SELECT greatest(coalesce(next_attempt_at, '-infinity'), coalesce(claimed_until, '-infinity')) AS t \
           FROM github_deliveries WHERE processed_at IS NULL AND failed_at IS NULL) due \
         WHERE t > $1",
    )
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Appends the answer of the comment's command number `position` (from 0), in the caller's
/// transaction: the one of the command's write, when it had one. Fenced by the claim and by the
/// position, so a command's answer is recorded once.
pub async fn record_answer(
    conn: &mut PgConnection,
    id: &str,
    claimant: &str,
    position: usize,
    command: &str,
    answer: &str,
) -> anyhow::Result<()> {
    let n = sqlx::query(
        "UPDATE github_deliveries SET answers = answers || jsonb_build_array(jsonb_build_array($4::text, $5::text)) \
         WHERE delivery_id = $1 AND claimed_by = $2 AND jsonb_array_length(answers) = $3",
    )
    .bind(id)
    .bind(claimant)
    .bind(i32::try_from(position)?)
    .bind(command)
    .bind(answer)
    .execute(conn)
    .await?
    .rows_affected();
    fenced(n, id)
}

/// Records that the delivery's effect is committed, with the reply left to post (`None`:
/// nothing to say), in the caller's transaction (the effect's, when it has one).
pub async fn executed(
    conn: &mut PgConnection,
    id: &str,
    claimant: &str,
    reply: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let n = sqlx::query(
        "UPDATE github_deliveries SET executed_at = $3, reply = $4 \
         WHERE delivery_id = $1 AND claimed_by = $2 AND executed_at IS NULL",
    )
    .bind(id)
    .bind(claimant)
    .bind(now)
    .bind(reply)
    .execute(conn)
    .await?
    .rows_affected();
    fenced(n, id)
}

/// The delivery is done: its reply (if any) is posted; the claim is released.
pub async fn processed(conn: &mut PgConnection, id: &str, claimant: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let n = sqlx::query(
        "UPDATE github_deliveries SET processed_at = $3, \
           reply_posted_at = CASE WHEN reply IS NULL THEN NULL ELSE $3 END, \
           claimed_by = NULL, claimed_until = NULL, next_attempt_at = NULL \
         WHERE delivery_id = $1 AND claimed_by = $2 AND executed_at IS NOT NULL",
    )
    .bind(id)
    .bind(claimant)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    fenced(n, id)
}

/// An attempt failed: the claim is released and the delivery waits until `retry_at`, or, when
/// `retry_at` is `None`, it is set aside as failed. The error is kept either way.
pub async fn attempt_failed(
    conn: &mut PgConnection,
    id: &str,
    claimant: &str,
    error: &str,
    permanent: bool,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let n = sqlx::query(
        "UPDATE github_deliveries SET claimed_by = NULL, claimed_until = NULL, last_error = $3, \
           last_error_permanent = $4, next_attempt_at = $5, \
           failed_at = CASE WHEN $5::timestamptz IS NULL THEN $6 END \
         WHERE delivery_id = $1 AND claimed_by = $2",
    )
    .bind(id)
    .bind(claimant)
    .bind(error)
    .bind(permanent)
    .bind(retry_at)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    fenced(n, id)
}
