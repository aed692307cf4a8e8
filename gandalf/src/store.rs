//! The merge queue in Postgres: items, their steps, pause state and handled deliveries. The
//! database holds the invariants — one active item per PR, one verifying item per repository, a PR
//! landed at most once — as unique indexes, so no code path can break them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ids::{CommitSha, Holder, PrNumber, RepoName, SlackUserId};
// The queue's model (items, states, order) and its read queries live in the shared crate, which
// the control center reads too: the positions it shows are the ones the worker follows.
pub use shared::queue::{Item, ItemState, QUEUE_ORDER};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, PgConnection, Postgres, Row, Type};

pub use shared::db::DbResult;

use crate::drop_reason::DropReason;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct StepRow {
    pub name: String,
    pub resource: Option<String>,
    pub state: StepState,
    pub exit_code: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A step of a verification (`queue_steps.state`, a `text` column with a CHECK of these words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// It was running when Gandalf stopped (a crash or a restart).
    Interrupted,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Interrupted => "interrupted",
        }
    }
}

impl FromStr for StepState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => StepState::Running,
            "succeeded" => StepState::Succeeded,
            "failed" => StepState::Failed,
            "cancelled" => StepState::Cancelled,
            "interrupted" => StepState::Interrupted,
            other => return Err(format!("`{other}` is not a step state")),
        })
    }
}

impl Type<Postgres> for StepState {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for StepState {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for StepState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<&str as Decode<Postgres>>::decode(value)?.parse::<StepState>()?)
    }
}

pub struct NewItem<'a> {
    pub repo: &'a RepoName,
    pub pr: PrNumber,
    pub title: &'a str,
    pub author: &'a str,
    pub head_sha: &'a CommitSha,
    pub priority: i32,
    /// The GitHub login of whoever queues it.
    pub queued_by: &'a str,
    pub queued_by_slack: Option<&'a SlackUserId>,
}

/// The active items of a repository's queue, in the order Gandalf works them.
pub async fn queue(conn: &mut PgConnection, repo: &RepoName) -> DbResult<Vec<Item>> {
    shared::queue::active_items(conn, &repo.to_string()).await
}

/// Median verification time of the last 20 finished verifications: the basis of every ETA.
pub async fn typical_verification(conn: &mut PgConnection, repo: &RepoName) -> DbResult<Option<chrono::Duration>> {
    shared::queue::typical_verification(conn, &repo.to_string()).await
}

pub async fn ensure_repos(conn: &mut PgConnection, repos: &[RepoName]) -> DbResult<()> {
    sqlx::query("INSERT INTO repo_queues (repo) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
        .bind(repos)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues a PR; `Err(existing)` when it is queued already (the unique index decides, not a read).
pub async fn enqueue(conn: &mut PgConnection, new: NewItem<'_>, now: DateTime<Utc>) -> DbResult<Result<Item, Item>> {
    let inserted: Option<Item> = sqlx::query_as(concat!(
        "INSERT INTO queue_items (repo, pr, title, author, head_sha, priority, queued_by, queued_by_slack, enqueued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING ",
        shared::queue_item_columns!()
    ))
    .bind(new.repo)
    .bind(new.pr)
    .bind(new.title)
    .bind(new.author)
    .bind(new.head_sha)
    .bind(new.priority)
    .bind(new.queued_by)
    .bind(new.queued_by_slack)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(item) => Ok(Ok(item)),
        None => match active_item(conn, new.repo, new.pr).await? {
            Some(existing) => Ok(Err(existing)),
            None => Err(sqlx::Error::RowNotFound),
        },
    }
}

pub async fn active_item(conn: &mut PgConnection, repo: &RepoName, pr: PrNumber) -> DbResult<Option<Item>> {
    sqlx::query_as(concat!(
        "SELECT ",
        shared::queue_item_columns!(),
        " FROM queue_items WHERE repo = $1 AND pr = $2 \
          AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')"
    ))
    .bind(repo)
    .bind(pr)
    .fetch_optional(conn)
    .await
}

/// The most recent item of a PR, finished or not.
pub async fn latest_item(conn: &mut PgConnection, repo: &RepoName, pr: PrNumber) -> DbResult<Option<Item>> {
    sqlx::query_as(concat!(
        "SELECT ",
        shared::queue_item_columns!(),
        " FROM queue_items WHERE repo = $1 AND pr = $2 ORDER BY id DESC LIMIT 1"
    ))
    .bind(repo)
    .bind(pr)
    .fetch_optional(conn)
    .await
}

/// Finished items, newest first.
pub async fn history(conn: &mut PgConnection, repo: &RepoName, limit: i64) -> DbResult<Vec<Item>> {
    sqlx::query_as(concat!(
        "SELECT ",
        shared::queue_item_columns!(),
        " FROM queue_items WHERE repo = $1 AND state IN ('merged', 'failed', 'cancelled', 'dropped') \
          ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT $2"
    ))
    .bind(repo)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Ends an active item (cancelled or dropped, as `reason` says); `false` when it had finished
/// already or is landing (a landing is short and decides itself: it either lands or verifies
/// again).
pub async fn finish(conn: &mut PgConnection, id: i64, reason: &DropReason, now: DateTime<Utc>) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE queue_items SET state = $2, outcome_reason = $3, finished_at = $4, note = NULL \
         WHERE id = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped', 'landing')",
    )
    .bind(id)
    .bind(reason.state())
    .bind(reason.to_string())
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn steps(conn: &mut PgConnection, item_id: i64) -> DbResult<Vec<StepRow>> {
    sqlx::query_as(
        "SELECT name, resource, state, exit_code, started_at, finished_at FROM queue_steps WHERE item_id = $1 ORDER BY id",
    )
    .bind(item_id)
    .fetch_all(conn)
    .await
}

#[derive(Clone, Debug, Default)]
pub struct Pause {
    pub paused: bool,
    pub reason: String,
    pub by: Option<Holder>,
}

pub async fn pause_state(conn: &mut PgConnection, repo: &RepoName) -> DbResult<Pause> {
    let row = sqlx::query("SELECT paused, paused_reason, paused_by FROM repo_queues WHERE repo = $1")
        .bind(repo)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Pause {
            paused: r.try_get("paused")?,
            reason: r.try_get("paused_reason")?,
            by: r.try_get("paused_by")?,
        },
        None => Pause::default(),
    })
}

pub async fn set_paused(
    conn: &mut PgConnection,
    repo: &RepoName,
    paused: bool,
    reason: &str,
    by: &Holder,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO repo_queues (repo, paused, paused_reason, paused_by, paused_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (repo) DO UPDATE SET paused = $2, paused_reason = $3, paused_by = $4, paused_at = $5",
    )
    .bind(repo)
    .bind(paused)
    .bind(reason)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

// --- The verification worker's side -------------------------------------------------------------

/// The item to verify next: the one verifying already (after a restart), else the first queued.
pub async fn next_to_verify(conn: &mut PgConnection, repo: &RepoName) -> DbResult<Option<Item>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM queue_items WHERE repo = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped') \
         ORDER BY {QUEUE_ORDER} LIMIT 1",
        shared::queue_item_columns!()
    )))
    .bind(repo)
    .fetch_optional(conn)
    .await
}

pub async fn item(conn: &mut PgConnection, id: i64) -> DbResult<Option<Item>> {
    sqlx::query_as(concat!(
        "SELECT ",
        shared::queue_item_columns!(),
        " FROM queue_items WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Moves an active item to `state` with a note; `false` when it is no longer active (cancelled or
/// dropped meanwhile), which tells the worker to stop.
pub async fn advance(conn: &mut PgConnection, id: i64, state: ItemState, note: Option<&str>) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE queue_items SET state = $2, note = $3 \
         WHERE id = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')",
    )
    .bind(id)
    .bind(state)
    .bind(note)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A verification (re)starts: the candidate is about to be built.
pub async fn start_verification(conn: &mut PgConnection, id: i64, now: DateTime<Utc>) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE queue_items SET state = 'preparing', note = NULL, attempts = attempts + 1, \
         verify_started_at = $2, candidate_sha = NULL, base_sha = NULL, landing_sha = NULL, flaky = false, \
         earlier_landing_shas = CASE WHEN landing_sha IS NULL THEN earlier_landing_shas \
                                     ELSE array_append(earlier_landing_shas, landing_sha) END, \
         affected = '[]', deployed = '[]' \
         WHERE id = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ties the members of one candidate to its first (`batch_lead`); a candidate of one PR has none.
pub async fn set_batch(conn: &mut PgConnection, ids: &[i64]) -> DbResult<()> {
    let lead = (ids.len() > 1).then(|| ids[0]);
    sqlx::query("UPDATE queue_items SET batch_lead = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(lead)
        .execute(conn)
        .await?;
    Ok(())
}

/// The batch an item was verified in: its lead's id and every member's number; `None` alone.
pub async fn batch_of(conn: &mut PgConnection, id: i64) -> DbResult<Option<(i64, Vec<PrNumber>)>> {
    let lead: Option<i64> = sqlx::query_scalar("SELECT batch_lead FROM queue_items WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let Some(lead) = lead else {
        return Ok(None);
    };
    Ok(Some((lead, batch_members(conn, lead).await?)))
}

/// The members of the batch led by `lead`, in candidate order (by id: they were queued in order).
pub async fn batch_members(conn: &mut PgConnection, lead: i64) -> DbResult<Vec<PrNumber>> {
    sqlx::query_scalar("SELECT pr FROM queue_items WHERE batch_lead = $1 ORDER BY id")
        .bind(lead)
        .fetch_all(conn)
        .await
}

/// Of the repository's last 50 PRs verified to an end, how many landed and how many a red run
/// rejected (what `batch_size = "auto"` estimates the red rate from).
pub async fn recent_outcomes(conn: &mut PgConnection, repo: &RepoName) -> DbResult<(u32, u32)> {
    let (landed, rejected): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'merged'), count(*) FILTER (WHERE state = 'failed') FROM ( \
           SELECT state FROM queue_items WHERE repo = $1 AND state IN ('merged', 'failed') \
           ORDER BY finished_at DESC LIMIT 50) recent",
    )
    .bind(repo)
    .fetch_one(conn)
    .await?;
    Ok((landed as u32, rejected as u32))
}

/// What bisection knows about the front of the repository's queue (see [`crate::batch`]).
pub async fn known_red(conn: &mut PgConnection, repo: &RepoName) -> DbResult<Vec<PrNumber>> {
    let v: Option<sqlx::types::Json<Vec<PrNumber>>> =
        sqlx::query_scalar("SELECT known_red FROM repo_queues WHERE repo = $1")
            .bind(repo)
            .fetch_optional(conn)
            .await?;
    Ok(v.map(|j| j.0).unwrap_or_default())
}

pub async fn set_known_red(conn: &mut PgConnection, repo: &RepoName, prs: &[PrNumber]) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO repo_queues (repo, known_red) VALUES ($1, $2) \
         ON CONFLICT (repo) DO UPDATE SET known_red = $2",
    )
    .bind(repo)
    .bind(sqlx::types::Json(prs))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a run flaky: its `test` failed and then passed on a retry.
pub async fn set_flaky(conn: &mut PgConnection, id: i64) -> DbResult<()> {
    sqlx::query("UPDATE queue_items SET flaky = true WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Of the repository's last 50 finished runs (landed or rejected), how many were flaky.
pub async fn flaky_rate(conn: &mut PgConnection, repo: &RepoName) -> DbResult<crate::messages::FlakyRate> {
    let (flaky, runs): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE flaky), count(*) FROM ( \
           SELECT flaky FROM queue_items WHERE repo = $1 AND state IN ('merged', 'failed') \
           ORDER BY finished_at DESC LIMIT 50) recent",
    )
    .bind(repo)
    .fetch_one(conn)
    .await?;
    Ok(crate::messages::FlakyRate { flaky, runs })
}

/// Records the commit the base is about to be moved to, before it moves (SPEC §5.3 step 5), only
/// while the item is landing.
pub async fn set_landing_commit(conn: &mut PgConnection, id: i64, sha: &CommitSha) -> DbResult<bool> {
    let n = sqlx::query("UPDATE queue_items SET landing_sha = $2 WHERE id = $1 AND state = 'landing'")
        .bind(id)
        .bind(sha)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The commit recorded by [`set_landing_commit`] in this attempt, if any.
pub async fn landing_commit(conn: &mut PgConnection, id: i64) -> DbResult<Option<CommitSha>> {
    Ok(sqlx::query_scalar("SELECT landing_sha FROM queue_items WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .flatten())
}

/// Every commit any attempt of the item recorded before moving the base, latest first.
pub async fn landing_commits(conn: &mut PgConnection, id: i64) -> DbResult<Vec<CommitSha>> {
    let row: Option<(Option<CommitSha>, Vec<String>)> =
        sqlx::query_as("SELECT landing_sha, earlier_landing_shas FROM queue_items WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    let Some((current, earlier)) = row else {
        return Ok(vec![]);
    };
    let earlier = earlier.iter().rev().filter_map(|s| s.parse().ok());
    Ok(current.into_iter().chain(earlier).collect())
}

pub async fn set_candidate(
    conn: &mut PgConnection,
    id: i64,
    base_sha: &CommitSha,
    candidate_sha: &CommitSha,
) -> DbResult<()> {
    sqlx::query("UPDATE queue_items SET base_sha = $2, candidate_sha = $3 WHERE id = $1")
        .bind(id)
        .bind(base_sha)
        .bind(candidate_sha)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_affected(conn: &mut PgConnection, id: i64, affected: &[String]) -> DbResult<()> {
    sqlx::query("UPDATE queue_items SET affected = $2 WHERE id = $1")
        .bind(id)
        .bind(sqlx::types::Json(affected))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that `resource` is about to be deployed with the candidate, so a red run reverts it
/// even when its deploy failed half-way.
pub async fn add_deployed(conn: &mut PgConnection, id: i64, resource: &str) -> DbResult<()> {
    sqlx::query("UPDATE queue_items SET deployed = deployed || jsonb_build_array($2::text) WHERE id = $1")
        .bind(id)
        .bind(resource)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the item as the worker decided (merged or failed), whatever its active state.
pub async fn conclude(
    conn: &mut PgConnection,
    id: i64,
    state: ItemState,
    reason: &str,
    landed_sha: Option<&CommitSha>,
    now: DateTime<Utc>,
) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE queue_items SET state = $2, outcome_reason = $3, landed_sha = $4, finished_at = $5, note = NULL \
         WHERE id = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')",
    )
    .bind(id)
    .bind(state)
    .bind(reason)
    .bind(landed_sha)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Puts an item back to `queued` (its place in the queue is unchanged): after a crash, or when
/// the base moved before it could land.
pub async fn requeue(conn: &mut PgConnection, id: i64, note: &str) -> DbResult<()> {
    sqlx::query(
        "UPDATE queue_items SET state = 'queued', note = $2, batch_lead = NULL \
         WHERE id = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')",
    )
    .bind(id)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

/// Steps a crash left `running` are marked interrupted.
pub async fn interrupt_steps(conn: &mut PgConnection, item_id: i64, now: DateTime<Utc>) -> DbResult<()> {
    sqlx::query("UPDATE queue_steps SET state = $3, finished_at = $2 WHERE item_id = $1 AND state = $4")
        .bind(item_id)
        .bind(now)
        .bind(StepState::Interrupted)
        .bind(StepState::Running)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn step_started(
    conn: &mut PgConnection,
    item_id: i64,
    attempt: i32,
    name: &str,
    resource: Option<&str>,
    now: DateTime<Utc>,
) -> DbResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO queue_steps (item_id, attempt, name, resource, state, started_at) \
         VALUES ($1, $2, $3, $4, $6, $5) RETURNING id",
    )
    .bind(item_id)
    .bind(attempt)
    .bind(name)
    .bind(resource)
    .bind(now)
    .bind(StepState::Running)
    .fetch_one(conn)
    .await
}

pub async fn step_finished(
    conn: &mut PgConnection,
    step_id: i64,
    state: StepState,
    exit_code: Option<i32>,
    log: &str,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query("UPDATE queue_steps SET state = $2, exit_code = $3, log = $4, finished_at = $5 WHERE id = $1")
        .bind(step_id)
        .bind(state)
        .bind(exit_code)
        .bind(log)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
