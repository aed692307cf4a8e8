//! Nightly's own tables (`migrations/…_nightly.sql`): runs, what each run does to each environment
//! and each step, every attempt, skipped nights and what the scheduler waits for. One function per
//! thing that happens, each taking the caller's connection or transaction; the environments'
//! lifecycle itself changes only through `shared::envs::store`.

use chrono::{DateTime, NaiveDate, Utc};
use shared::envs::{EnvState, Fault};
use shared::ids::EnvName;
use sqlx::PgConnection;

use super::plan::{Phase, Skip};

pub use shared::db::DbResult;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub phase: Phase,
    pub trigger: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
    pub only_env: Option<String>,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub resume_until: Option<DateTime<Utc>>,
    pub note: String,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    phase: String,
    trigger: String,
    scheduled_for: Option<DateTime<Utc>>,
    requested_by: Option<String>,
    only_env: Option<String>,
    state: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    resume_until: Option<DateTime<Utc>>,
    note: String,
}

impl From<RunRow> for Run {
    fn from(r: RunRow) -> Self {
        Run {
            id: r.id,
            phase: Phase::parse(&r.phase).unwrap_or(Phase::Delete),
            trigger: r.trigger,
            scheduled_for: r.scheduled_for,
            requested_by: r.requested_by,
            only_env: r.only_env,
            state: r.state,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            resume_until: r.resume_until,
            note: r.note,
        }
    }
}

macro_rules! run_columns {
    () => {
        "id, phase, trigger, scheduled_for, requested_by, only_env, state, created_at, started_at, finished_at, \
         resume_until, note"
    };
}

pub async fn get(conn: &mut PgConnection, id: i64) -> DbResult<Option<Run>> {
    let row: Option<RunRow> = sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM nightly_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Run::from))
}

/// The run in progress (or left in progress by a crash), if any.
pub async fn running(conn: &mut PgConnection) -> DbResult<Option<Run>> {
    let row: Option<RunRow> = sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM nightly_runs WHERE state = 'running'"
    ))
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Run::from))
}

/// The oldest manual run waiting to be started.
pub async fn next_requested(conn: &mut PgConnection) -> DbResult<Option<Run>> {
    let row: Option<RunRow> = sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM nightly_runs WHERE state = 'requested' ORDER BY id LIMIT 1"
    ))
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Run::from))
}

/// The last finished, interrupted or skipped run of a phase.
pub async fn last_of(conn: &mut PgConnection, phase: Phase) -> DbResult<Option<Run>> {
    let row: Option<RunRow> = sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM nightly_runs WHERE phase = $1 AND state IN ('finished', 'interrupted', 'skipped') \
         ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1"
    ))
    .bind(phase.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Run::from))
}

/// A manual run, asked for by `requested_by`; the Nightly leader starts it.
pub async fn request(
    conn: &mut PgConnection,
    phase: Phase,
    only_env: Option<&str>,
    requested_by: &str,
    now: DateTime<Utc>,
) -> DbResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO nightly_runs (phase, trigger, requested_by, only_env, state, created_at) \
         VALUES ($1, 'manual', $2, $3, 'requested', $4) RETURNING id",
    )
    .bind(phase.as_str())
    .bind(requested_by)
    .bind(only_env)
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Runs requested before this one and not finished yet (to tell the requester it waits).
pub async fn ahead_of(conn: &mut PgConnection, id: i64) -> DbResult<i64> {
    sqlx::query_scalar("SELECT count(*) FROM nightly_runs WHERE id < $1 AND state IN ('requested', 'running')")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Claims a schedule slot and starts its run. `None` when the slot was already taken (another
/// replica, or before a restart).
pub async fn start_scheduled(
    conn: &mut PgConnection,
    phase: Phase,
    trigger: &str,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    resume_until: DateTime<Utc>,
) -> DbResult<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO nightly_runs (phase, trigger, scheduled_for, state, created_at, started_at, resume_until) \
         VALUES ($1, $2, $3, 'running', $4, $4, $5) ON CONFLICT (phase, scheduled_for) DO NOTHING RETURNING id",
    )
    .bind(phase.as_str())
    .bind(trigger)
    .bind(slot)
    .bind(now)
    .bind(resume_until)
    .fetch_optional(conn)
    .await
}

/// Starts a requested run. `false` when it is no longer requested.
pub async fn start_requested(
    conn: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
    resume_until: DateTime<Utc>,
) -> DbResult<bool> {
    let n = sqlx::query(
        "UPDATE nightly_runs SET state = 'running', started_at = $2, resume_until = $3 \
         WHERE id = $1 AND state = 'requested'",
    )
    .bind(id)
    .bind(now)
    .bind(resume_until)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A slot of a skipped night: recorded so it counts as handled, and nothing runs.
pub async fn record_skipped_slot(
    conn: &mut PgConnection,
    phase: Phase,
    trigger: &str,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    note: &str,
) -> DbResult<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO nightly_runs (phase, trigger, scheduled_for, state, created_at, started_at, finished_at, note) \
         VALUES ($1, $2, $3, 'skipped', $4, $4, $4, $5) ON CONFLICT (phase, scheduled_for) DO NOTHING RETURNING id",
    )
    .bind(phase.as_str())
    .bind(trigger)
    .bind(slot)
    .bind(now)
    .bind(note)
    .fetch_optional(conn)
    .await
}

pub async fn finish(conn: &mut PgConnection, id: i64, state: &str, now: DateTime<Utc>) -> DbResult<()> {
    sqlx::query("UPDATE nightly_runs SET state = $2, finished_at = $3 WHERE id = $1")
        .bind(id)
        .bind(state)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest slot run or skipped: slots up to it are handled.
pub async fn watermark(conn: &mut PgConnection) -> DbResult<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT max(scheduled_for) FROM nightly_runs")
        .fetch_one(conn)
        .await
}

// --- environments of a run ------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct RunEnv {
    pub environment: EnvName,
    pub position: i32,
    pub state: String,
    pub skip: Option<Skip>,
    pub prev_state: Option<EnvState>,
    pub prev_fault: Option<Fault>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RunEnvRow {
    environment: EnvName,
    position: i32,
    state: String,
    skip_reason: Option<String>,
    skip_until: Option<DateTime<Utc>>,
    prev_state: Option<EnvState>,
    prev_fault: Option<sqlx::types::Json<Fault>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

/// An environment the run works on, from the state (and fault) it had.
pub async fn add_env(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    prev_state: EnvState,
    prev_fault: Option<&Fault>,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO nightly_run_envs (run_id, environment, position, state, prev_state, prev_fault) \
         VALUES ($1, $2, $3, 'pending', $4, $5)",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(prev_state)
    .bind(prev_fault.map(sqlx::types::Json))
    .execute(conn)
    .await?;
    Ok(())
}

/// An environment the run leaves alone, and why.
pub async fn add_skipped_env(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    skip: &Skip,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO nightly_run_envs (run_id, environment, position, state, skip_reason, skip_until, finished_at) \
         VALUES ($1, $2, $3, 'skipped', $4, $5, $6)",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(skip.code())
    .bind(skip.until())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn envs_of(conn: &mut PgConnection, run: i64) -> DbResult<Vec<RunEnv>> {
    let rows: Vec<RunEnvRow> = sqlx::query_as(
        "SELECT environment, position, state, skip_reason, skip_until, prev_state, prev_fault, started_at, finished_at \
         FROM nightly_run_envs WHERE run_id = $1 ORDER BY position",
    )
    .bind(run)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RunEnv {
            skip: r.skip_reason.as_deref().map(|c| Skip::from_code(c, r.skip_until)),
            environment: r.environment,
            position: r.position,
            state: r.state,
            prev_state: r.prev_state,
            prev_fault: r.prev_fault.map(|j| j.0),
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
        .collect())
}

pub async fn env_started(conn: &mut PgConnection, run: i64, env: &EnvName, now: DateTime<Utc>) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_run_envs SET state = 'running', started_at = COALESCE(started_at, $3) \
         WHERE run_id = $1 AND environment = $2",
    )
    .bind(run)
    .bind(env)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn env_finished(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    state: &str,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query("UPDATE nightly_run_envs SET state = $3, finished_at = $4 WHERE run_id = $1 AND environment = $2")
        .bind(run)
        .bind(env)
        .bind(state)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

// --- steps and attempts -----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Step {
    pub environment: EnvName,
    pub position: i32,
    pub name: String,
    pub command: String,
    pub state: String,
    pub attempts: i32,
    pub exit_code: Option<i32>,
    pub ended: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub log_tail: Option<String>,
}

pub async fn add_step(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    name: &str,
    command: &str,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO nightly_steps (run_id, environment, position, name, command, state) \
         VALUES ($1, $2, $3, $4, $5, 'pending')",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(name)
    .bind(command)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn steps_of(conn: &mut PgConnection, run: i64) -> DbResult<Vec<Step>> {
    sqlx::query_as(
        "SELECT environment, position, name, command, state, attempts, exit_code, ended, next_attempt_at, log_tail \
         FROM nightly_steps WHERE run_id = $1 ORDER BY environment, position",
    )
    .bind(run)
    .fetch_all(conn)
    .await
}

/// A step is throttled and waits until `next_attempt_at`.
pub async fn step_backing_off(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    next_attempt_at: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_steps SET state = 'backoff', next_attempt_at = $4 \
         WHERE run_id = $1 AND environment = $2 AND position = $3",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(next_attempt_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The backoff before an attempt: what was waited and the ceiling it was drawn from.
#[derive(Clone, Copy, Debug)]
pub struct Waited {
    pub ms: i64,
    pub cap_ms: i64,
}

/// Attempt `attempt` of a step starts; returns the attempt's id.
pub async fn attempt_started(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    attempt: i32,
    waited: Option<Waited>,
    now: DateTime<Utc>,
) -> DbResult<i64> {
    sqlx::query(
        "UPDATE nightly_steps SET state = 'running', attempts = $4, next_attempt_at = NULL, \
         started_at = COALESCE(started_at, $5) WHERE run_id = $1 AND environment = $2 AND position = $3",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(attempt)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "INSERT INTO nightly_attempts (run_id, environment, step_position, attempt, backoff_ms, backoff_cap_ms, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(attempt)
    .bind(waited.map(|w| w.ms))
    .bind(waited.map(|w| w.cap_ms))
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn attempt_finished(
    conn: &mut PgConnection,
    attempt_id: i64,
    exit_code: Option<i32>,
    ended: &str,
    output: &str,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query("UPDATE nightly_attempts SET finished_at = $2, exit_code = $3, ended = $4, output = $5 WHERE id = $1")
        .bind(attempt_id)
        .bind(now)
        .bind(exit_code)
        .bind(ended)
        .bind(output)
        .execute(conn)
        .await?;
    Ok(())
}

/// A step reached its end: `ok` or `failed`, with its last attempt's exit and output tail.
#[allow(clippy::too_many_arguments)]
pub async fn step_finished(
    conn: &mut PgConnection,
    run: i64,
    env: &EnvName,
    position: i32,
    state: &str,
    exit_code: Option<i32>,
    ended: &str,
    log_tail: &str,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_steps SET state = $4, exit_code = $5, ended = $6, log_tail = $7, finished_at = $8, \
         next_attempt_at = NULL WHERE run_id = $1 AND environment = $2 AND position = $3",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .bind(state)
    .bind(exit_code)
    .bind(ended)
    .bind(log_tail)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The steps after a failed one do not run.
pub async fn skip_steps_after(conn: &mut PgConnection, run: i64, env: &EnvName, position: i32) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_steps SET state = 'skipped' WHERE run_id = $1 AND environment = $2 AND position > $3 \
         AND state NOT IN ('ok', 'failed')",
    )
    .bind(run)
    .bind(env)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// After a crash: the attempts that were running when it happened ended with it.
pub async fn close_open_attempts(conn: &mut PgConnection, run: i64, now: DateTime<Utc>) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_attempts SET finished_at = $2, ended = 'interrupted (Bobby stopped)' \
         WHERE run_id = $1 AND finished_at IS NULL",
    )
    .bind(run)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// When a run resumes, the steps that were running (or waiting to retry) start a new try from
/// attempt 1: steps are idempotent, and the interrupted attempt says nothing about the next.
pub async fn restart_interrupted_steps(conn: &mut PgConnection, run: i64) -> DbResult<()> {
    sqlx::query(
        "UPDATE nightly_steps SET state = 'pending', attempts = 0, next_attempt_at = NULL \
         WHERE run_id = $1 AND state IN ('running', 'backoff')",
    )
    .bind(run)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Attempt {
    pub environment: EnvName,
    pub step_position: i32,
    pub attempt: i32,
    pub backoff_ms: Option<i64>,
    pub backoff_cap_ms: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub ended: Option<String>,
    pub output: String,
}

pub async fn attempts_of(conn: &mut PgConnection, run: i64) -> DbResult<Vec<Attempt>> {
    sqlx::query_as(
        "SELECT environment, step_position, attempt, backoff_ms, backoff_cap_ms, started_at, finished_at, exit_code, \
         ended, output FROM nightly_attempts WHERE run_id = $1 ORDER BY environment, step_position, id",
    )
    .bind(run)
    .fetch_all(conn)
    .await
}

// --- skipped nights and the scheduler's next slot ---------------------------------------------

/// Skips a night; `false` when it was skipped already.
pub async fn skip_night(conn: &mut PgConnection, night: NaiveDate, by: &str, now: DateTime<Utc>) -> DbResult<bool> {
    let n = sqlx::query(
        "INSERT INTO nightly_skips (night, requested_by, requested_at) VALUES ($1, $2, $3) ON CONFLICT (night) DO NOTHING",
    )
    .bind(night)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Who skipped `night`, if anyone did.
pub async fn night_skipped_by(conn: &mut PgConnection, night: NaiveDate) -> DbResult<Option<String>> {
    sqlx::query_scalar("SELECT requested_by FROM nightly_skips WHERE night = $1")
        .bind(night)
        .fetch_optional(conn)
        .await
}

/// Skipped nights from `from` on, with who asked.
pub async fn skipped_nights_from(conn: &mut PgConnection, from: NaiveDate) -> DbResult<Vec<(NaiveDate, String)>> {
    sqlx::query_as("SELECT night, requested_by FROM nightly_skips WHERE night >= $1 ORDER BY night")
        .bind(from)
        .fetch_all(conn)
        .await
}

/// What the leader sleeps until now.
pub async fn publish_next(
    conn: &mut PgConnection,
    phase: Phase,
    at: DateTime<Utc>,
    leader_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO nightly_scheduler (singleton, next_phase, next_due_at, leader_since, updated_at) \
         VALUES (true, $1, $2, $3, $4) ON CONFLICT (singleton) DO UPDATE \
         SET next_phase = $1, next_due_at = $2, leader_since = $3, updated_at = $4",
    )
    .bind(phase.as_str())
    .bind(at)
    .bind(leader_since)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
