//! The control center's read-only queries over both bots' tables: environments and leases,
//! Nightly runs with their steps and attempts, Gandalf's queues with their items and steps.
//!
//! The control center lives in the shared crate so that both bots serve the same page, and a bot's
//! configuration knows only its own things; so everything here reads the one database, and nothing
//! here writes. Gandalf's queue items are `crate::queue`'s, shared with Gandalf.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::envs::Environment;

pub use crate::db::DbResult;

/// What the index shows of an environment beyond [`Environment`]: when it was declared (the time
/// a build monitor shows for one Nightly never touched) and the last Nightly run that did.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EnvExtra {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_run_id: Option<i64>,
    pub last_run_phase: Option<String>,
}

/// Environments in service, as the API shows them, with their [`EnvExtra`].
pub async fn environments(conn: &mut PgConnection) -> DbResult<Vec<(Environment, Option<EnvExtra>)>> {
    let envs = crate::envs::store::list(&mut *conn).await?;
    let extras: Vec<EnvExtra> = sqlx::query_as(
        "SELECT e.name, e.created_at, lr.run_id AS last_run_id, lr.phase AS last_run_phase \
         FROM environments e LEFT JOIN LATERAL ( \
             SELECT re.run_id, r.phase FROM nightly_run_envs re JOIN nightly_runs r ON r.id = re.run_id \
             WHERE re.environment = e.name ORDER BY re.run_id DESC LIMIT 1) lr ON true \
         WHERE e.retired_at IS NULL",
    )
    .fetch_all(conn)
    .await?;
    Ok(envs
        .into_iter()
        .map(|e| {
            let extra = extras.iter().find(|x| x.name == e.name.as_str()).cloned();
            (e, extra)
        })
        .collect())
}

/// What the Nightly leader sleeps until, when a Bobby with Nightly runs.
pub async fn next_nightly(conn: &mut PgConnection) -> DbResult<Option<(String, DateTime<Utc>)>> {
    let row: Option<(Option<String>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT next_phase, next_due_at FROM nightly_scheduler")
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(p, t)| Some((p?, t?))))
}

// --- Gandalf's queues ----------------------------------------------------------------------------

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Queue {
    pub repo: String,
    pub paused: bool,
    pub paused_reason: String,
    pub paused_by: Option<String>,
}

/// Every repository Gandalf has a queue for.
pub async fn queues(conn: &mut PgConnection) -> DbResult<Vec<Queue>> {
    sqlx::query_as("SELECT repo, paused, paused_reason, paused_by FROM repo_queues ORDER BY repo")
        .fetch_all(conn)
        .await
}

pub async fn queue(conn: &mut PgConnection, repo: &str) -> DbResult<Option<Queue>> {
    sqlx::query_as("SELECT repo, paused, paused_reason, paused_by FROM repo_queues WHERE repo = $1")
        .bind(repo)
        .fetch_optional(conn)
        .await
}

pub use crate::queue::{Item, active_items, typical_verification};

/// The last finished verifications (merged or failed) across all queues, newest first.
pub async fn recent_outcomes(conn: &mut PgConnection, limit: i64) -> DbResult<Vec<Item>> {
    sqlx::query_as(concat!(
        concat!("SELECT ", crate::queue_item_columns!(), " FROM queue_items "),
        "WHERE state IN ('merged', 'failed') ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The last finished verification of one queue: what a build monitor shows for it.
pub async fn last_outcome(conn: &mut PgConnection, repo: &str) -> DbResult<Option<Item>> {
    sqlx::query_as(concat!(
        concat!("SELECT ", crate::queue_item_columns!(), " FROM queue_items "),
        "WHERE repo = $1 AND state IN ('merged', 'failed') ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1"
    ))
    .bind(repo)
    .fetch_optional(conn)
    .await
}

/// Every time a PR was queued, newest first.
pub async fn items_of_pull(conn: &mut PgConnection, repo: &str, pr: i32) -> DbResult<Vec<Item>> {
    sqlx::query_as(concat!(
        concat!("SELECT ", crate::queue_item_columns!(), " FROM queue_items "),
        "WHERE repo = $1 AND pr = $2 ORDER BY id DESC"
    ))
    .bind(repo)
    .bind(pr)
    .fetch_all(conn)
    .await
}

/// A required check (SPEC §5.7) as last reported on a candidate.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CandidateCheck {
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub url: Option<String>,
}

/// The repository's own CI checks reported on `sha`, by name.
pub async fn candidate_checks(conn: &mut PgConnection, repo: &str, sha: &str) -> DbResult<Vec<CandidateCheck>> {
    sqlx::query_as(
        "SELECT name, status, conclusion, url FROM candidate_checks WHERE repo = $1 AND sha = $2 ORDER BY name",
    )
    .bind(repo)
    .bind(sha)
    .fetch_all(conn)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueueStep {
    pub id: i64,
    pub item_id: i64,
    pub attempt: i32,
    pub name: String,
    pub resource: Option<String>,
    pub state: String,
    pub exit_code: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub log: String,
}

const QUEUE_STEP_COLUMNS: &str = "id, item_id, attempt, name, resource, state, exit_code, started_at, finished_at, log";

/// An item's steps; a member of a batch shows the batch's, which are recorded on its first
/// member (one run for all of them).
pub async fn queue_steps(conn: &mut PgConnection, item_id: i64) -> DbResult<Vec<QueueStep>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {QUEUE_STEP_COLUMNS} FROM queue_steps WHERE item_id = \
         (SELECT COALESCE(batch_lead, id) FROM queue_items WHERE id = $1) ORDER BY id"
    )))
    .bind(item_id)
    .fetch_all(conn)
    .await
}

/// One verification step with the item it belongs to, for its log page.
pub async fn queue_step(conn: &mut PgConnection, id: i64) -> DbResult<Option<(QueueStep, Item)>> {
    let step: Option<QueueStep> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {QUEUE_STEP_COLUMNS} FROM queue_steps WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(step) = step else { return Ok(None) };
    let item: Option<Item> = sqlx::query_as(concat!(
        concat!("SELECT ", crate::queue_item_columns!(), " FROM queue_items "),
        "WHERE id = $1"
    ))
    .bind(step.item_id)
    .fetch_optional(conn)
    .await?;
    Ok(item.map(|i| (step, i)))
}

// --- Nightly -------------------------------------------------------------------------------------

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NightlyRun {
    pub id: i64,
    pub phase: String,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub only_env: Option<String>,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub note: String,
    /// Environments of the run by how they ended.
    pub ok: i64,
    pub faulted: i64,
    pub skipped: i64,
}

macro_rules! run_select {
    () => {
        "SELECT r.id, r.phase, r.trigger, r.requested_by, r.only_env, r.state, r.created_at, r.started_at, \
                r.finished_at, r.note, \
                (SELECT count(*) FROM nightly_run_envs e WHERE e.run_id = r.id AND e.state = 'ok') AS ok, \
                (SELECT count(*) FROM nightly_run_envs e WHERE e.run_id = r.id \
                   AND e.state IN ('faulted', 'interrupted')) AS faulted, \
                (SELECT count(*) FROM nightly_run_envs e WHERE e.run_id = r.id AND e.state = 'skipped') AS skipped \
         FROM nightly_runs r "
    };
}

pub async fn nightly_runs(conn: &mut PgConnection, limit: i64) -> DbResult<Vec<NightlyRun>> {
    sqlx::query_as(concat!(run_select!(), "ORDER BY r.id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(conn)
        .await
}

pub async fn nightly_run(conn: &mut PgConnection, id: i64) -> DbResult<Option<NightlyRun>> {
    sqlx::query_as(concat!(run_select!(), "WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunEnv {
    pub environment: String,
    pub state: String,
    pub skip_reason: Option<String>,
    pub skip_until: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn run_envs(conn: &mut PgConnection, run: i64) -> DbResult<Vec<RunEnv>> {
    sqlx::query_as(
        "SELECT environment, state, skip_reason, skip_until, started_at, finished_at \
         FROM nightly_run_envs WHERE run_id = $1 ORDER BY position",
    )
    .bind(run)
    .fetch_all(conn)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunStep {
    pub environment: String,
    pub position: i32,
    pub name: String,
    pub command: String,
    pub state: String,
    pub attempts: i32,
    pub exit_code: Option<i32>,
    pub ended: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn run_steps(conn: &mut PgConnection, run: i64) -> DbResult<Vec<RunStep>> {
    sqlx::query_as(
        "SELECT environment, position, name, command, state, attempts, exit_code, ended, next_attempt_at, \
         started_at, finished_at FROM nightly_steps WHERE run_id = $1 ORDER BY environment, position",
    )
    .bind(run)
    .fetch_all(conn)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunAttempt {
    pub id: i64,
    pub run_id: i64,
    pub environment: String,
    pub step_position: i32,
    pub attempt: i32,
    pub backoff_ms: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub ended: Option<String>,
    pub output: String,
}

const ATTEMPT_COLUMNS: &str =
    "id, run_id, environment, step_position, attempt, backoff_ms, started_at, finished_at, exit_code, ended, output";

pub async fn run_attempts(conn: &mut PgConnection, run: i64) -> DbResult<Vec<RunAttempt>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM nightly_attempts WHERE run_id = $1 ORDER BY environment, step_position, id"
    )))
    .bind(run)
    .fetch_all(conn)
    .await
}

/// One attempt of a Nightly step with the step's name, for its log page.
pub async fn run_attempt(conn: &mut PgConnection, id: i64) -> DbResult<Option<(RunAttempt, String)>> {
    let attempt: Option<RunAttempt> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM nightly_attempts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(a) = attempt else { return Ok(None) };
    let step: String =
        sqlx::query_scalar("SELECT name FROM nightly_steps WHERE run_id = $1 AND environment = $2 AND position = $3")
            .bind(a.run_id)
            .bind(&a.environment)
            .bind(a.step_position)
            .fetch_one(conn)
            .await?;
    Ok(Some((a, step)))
}

// --- /metrics ----------------------------------------------------------------------------------

/// Active items per queue and state, for the scrape-time gauges; an empty queue has one row with
/// no state and a count of 0. Sorted by repository.
pub async fn queue_census(conn: &mut PgConnection) -> DbResult<Vec<(String, Option<String>, i64)>> {
    sqlx::query_as(
        "SELECT q.repo, i.state::text, count(i.id) FROM repo_queues q \
         LEFT JOIN queue_items i ON i.repo = q.repo AND i.state NOT IN ('merged', 'failed', 'cancelled', 'dropped') \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(conn)
    .await
}

/// GitHub deliveries waiting (to be processed, or for a retry) and set aside as failed after their
/// last attempt (SPEC §5.4): `(pending, failed)`.
pub async fn delivery_census(conn: &mut PgConnection) -> DbResult<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE processed_at IS NULL AND failed_at IS NULL), \
                count(*) FILTER (WHERE failed_at IS NOT NULL) \
         FROM github_deliveries",
    )
    .fetch_one(conn)
    .await
}

// --- GitHub deliveries ---------------------------------------------------------------------------

/// A GitHub delivery Gandalf set aside after its last attempt (SPEC §5.4), with its error.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FailedDelivery {
    pub delivery_id: String,
    pub event: String,
    /// `owner/repo#n`, when it was about a pull request.
    pub subject: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub failed_at: DateTime<Utc>,
    /// Whether its command had run (then only its reply was not posted).
    pub executed: bool,
}

/// The deliveries set aside most recently.
pub async fn failed_deliveries(conn: &mut PgConnection, limit: i64) -> DbResult<Vec<FailedDelivery>> {
    sqlx::query_as(
        "SELECT delivery_id, event, subject, attempts, last_error, failed_at, executed_at IS NOT NULL AS executed \
         FROM github_deliveries WHERE failed_at IS NOT NULL ORDER BY failed_at DESC, seq DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A `/bobby deploy` as its page shows it (SPEC §4.6).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Deploy {
    pub id: i64,
    pub environment: String,
    pub state: String,
    #[sqlx(rename = "ref")]
    pub reference: String,
    pub sha: String,
    pub by_user: String,
    pub resources: Vec<String>,
    pub everything: bool,
    pub outcome: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const DEPLOY_COLUMNS: &str = "id, environment, state, ref, sha, by_user, resources, \
     COALESCE((plan->>'everything')::boolean, false) AS everything, outcome, started_at, finished_at";

pub async fn deploy(conn: &mut PgConnection, id: i64) -> DbResult<Option<Deploy>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One step of a deploy, with the deploy it belongs to.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeployStep {
    pub id: i64,
    pub deploy_id: i64,
    pub step: String,
    pub resource: Option<String>,
    pub state: String,
    pub exit_code: Option<i32>,
    pub log: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const DEPLOY_STEP_COLUMNS: &str = "id, deploy_id, step, resource, state, exit_code, log, started_at, finished_at";

pub async fn deploy_steps(conn: &mut PgConnection, deploy: i64) -> DbResult<Vec<DeployStep>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEPLOY_STEP_COLUMNS} FROM deploy_steps WHERE deploy_id = $1 ORDER BY id"
    )))
    .bind(deploy)
    .fetch_all(conn)
    .await
}

pub async fn deploy_step(conn: &mut PgConnection, id: i64) -> DbResult<Option<DeployStep>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEPLOY_STEP_COLUMNS} FROM deploy_steps WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}
