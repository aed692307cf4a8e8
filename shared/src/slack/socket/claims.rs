//! Exactly once across connections and replicas: an envelope is handled by whoever inserts its id
//! into `slack_socket_envelopes` first. Slack gives each envelope to one connection, but it
//! re-sends one that was not acknowledged in time, possibly to another connection (another
//! replica's); the table turns that retry into a re-sent acknowledgement instead of a second
//! lock, unlock or deploy.

use serde_json::Value;
use sqlx::PgPool;

use crate::db::DbResult;

/// What taking an envelope found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours to handle.
    Fresh,
    /// Handled already; this is its acknowledgement's payload (re-sent as it was).
    Handled(Option<Value>),
    /// Taken by another connection that has not finished (yet).
    InProgress,
}

/// Takes `envelope_id`, or says who has.
pub async fn take(pool: &PgPool, envelope_id: &str, kind: &str) -> DbResult<Claim> {
    let inserted = sqlx::query(
        "INSERT INTO slack_socket_envelopes (envelope_id, kind) VALUES ($1, $2) ON CONFLICT (envelope_id) DO NOTHING",
    )
    .bind(envelope_id)
    .bind(kind)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let row: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<Value>)> =
        sqlx::query_as("SELECT handled_at, ack_payload FROM slack_socket_envelopes WHERE envelope_id = $1")
            .bind(envelope_id)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((Some(_), payload)) => Claim::Handled(payload),
        Some((None, _)) => Claim::InProgress,
        // Pruned between the two statements: an hour-old envelope; treat it as handled.
        None => Claim::Handled(None),
    })
}

/// For a retry of an envelope another connection is still handling: waits (polling, up to
/// `within`) for that handling to finish and returns its acknowledgement's payload, so the retry
/// carries the reply the person is waiting for. `Claim::InProgress` after `within`: the other
/// handler is stuck or its replica died; the caller acknowledges without a payload.
///
/// Polling, not LISTEN: retries are rare, and a few reads in a second cost less than a connection
/// held for notifications.
pub async fn wait_handled(pool: &PgPool, envelope_id: &str, within: std::time::Duration) -> DbResult<Claim> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let row: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<Value>)> =
            sqlx::query_as("SELECT handled_at, ack_payload FROM slack_socket_envelopes WHERE envelope_id = $1")
                .bind(envelope_id)
                .fetch_optional(pool)
                .await?;
        match row {
            Some((Some(_), payload)) => return Ok(Claim::Handled(payload)),
            None => return Ok(Claim::Handled(None)),
            Some((None, _)) if tokio::time::Instant::now() >= deadline => return Ok(Claim::InProgress),
            Some((None, _)) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Records that `envelope_id` was handled, with the payload its acknowledgement carried.
pub async fn handled(pool: &PgPool, envelope_id: &str, ack_payload: Option<&Value>) -> DbResult<()> {
    sqlx::query("UPDATE slack_socket_envelopes SET handled_at = now(), ack_payload = $2 WHERE envelope_id = $1")
        .bind(envelope_id)
        .bind(ack_payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets envelopes older than an hour: Slack retries within seconds.
pub async fn prune(pool: &PgPool) -> DbResult<u64> {
    Ok(
        sqlx::query("DELETE FROM slack_socket_envelopes WHERE taken_at < now() - interval '1 hour'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
