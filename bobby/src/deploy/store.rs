//! Deploys in Postgres: the row of each deploy and its steps, what is deployed where, and the
//! lease that says who runs a deploy.
//!
//! A running deploy is owned through a lease in `work_leases` (kind `deploy`, its id as key; see
//! [`shared::fence`]), created in the transaction that inserts its row and renewed while it runs.
//! Every write of the deploy checks it. Whoever finds a `running` row whose lease has expired knows
//! its runner is gone (Bobby was killed, the machine or the database went away) and takes it over:
//! the deploy resumes from the interrupted step, and succeeded steps are never run again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::ids::EnvName;
use sqlx::{PgConnection, PgPool};

/// The kind of a deploy's lease in `work_leases`; the key is the deploy's id.
pub const LEASE_KIND: &str = "deploy";

/// The state of a deploy, or of one of its steps: shared, because the environments API shows
/// the latest deploy of each environment.
pub use shared::envs::DeployState;

/// What a deploy does, decided before it starts and stored with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployPlan {
    /// No resource map at the ref: `build` and `deploy` run once for the whole repository.
    pub everything: bool,
    /// The affected (or `only`) set.
    pub resources: Vec<String>,
    pub levels: Vec<Vec<String>>,
    pub deploy: Vec<String>,
}

/// The name `deployed` uses for "the whole repository" when there is no resource map.
pub const EVERYTHING: &str = "*";

impl DeployPlan {
    /// The build levels as they run: one pseudo-resource for the whole repository without a map.
    pub fn build_levels(&self) -> Vec<Vec<String>> {
        if self.everything {
            vec![vec![EVERYTHING.to_string()]]
        } else {
            self.levels.clone()
        }
    }

    pub fn deploys(&self) -> Vec<String> {
        if self.everything {
            vec![EVERYTHING.to_string()]
        } else {
            self.deploy.clone()
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeployRow {
    pub id: i64,
    pub environment: EnvName,
    pub state: DeployState,
    #[sqlx(rename = "ref")]
    pub reference: String,
    pub sha: String,
    pub by_user: String,
    pub plan: sqlx::types::Json<DeployPlan>,
    pub channel: String,
    pub message_id: Option<i64>,
    pub cancel_reason: Option<String>,
    pub outcome: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

macro_rules! deploy_columns {
    () => {
        "id, environment, state, ref, sha, by_user, plan, channel, message_id, cancel_reason, outcome, \
         started_at, finished_at"
    };
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StepRow {
    pub id: i64,
    pub step: String,
    pub resource: Option<String>,
    pub state: DeployState,
    pub exit_code: Option<i32>,
    pub log: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The next deploy id, before its row exists (its lease is keyed by it).
pub async fn reserve_id(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('deploys', 'id'))")
        .fetch_one(pool)
        .await
}

/// Whether step `step` of deploy `deploy` (for `resource`) has succeeded already: a resumed deploy
/// never runs it again.
pub async fn succeeded(conn: &mut PgConnection, deploy: i64, step: &str, resource: Option<&str>) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deploy_steps WHERE deploy_id = $1 AND step = $2 \
         AND resource IS NOT DISTINCT FROM $3 AND state = 'succeeded')",
    )
    .bind(deploy)
    .bind(step)
    .bind(resource)
    .fetch_one(conn)
    .await
}

/// A take-over: the steps the previous owner was running ended with its lease.
pub async fn interrupt_running_steps(conn: &mut PgConnection, deploy: i64, now: DateTime<Utc>) -> sqlx::Result<u64> {
    sqlx::query(
        "UPDATE deploy_steps SET state = 'interrupted', finished_at = $2 WHERE deploy_id = $1 AND state = 'running'",
    )
    .bind(deploy)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// How long until the lease of some running deploy expires (zero when one has none or an expired
/// one): when to look for deploys to take over. `None` when no deploy is running.
pub async fn next_take_over(pool: &PgPool) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT min(greatest(coalesce(extract(epoch FROM w.expires_at - now()), 0), 0))::float8 \
         FROM deploys d LEFT JOIN work_leases w ON w.kind = 'deploy' AND w.key = d.id::text \
         WHERE d.state = 'running'",
    )
    .fetch_one(pool)
    .await
}

pub struct NewDeploy<'a> {
    pub id: i64,
    pub environment: &'a EnvName,
    pub reference: &'a str,
    pub sha: &'a str,
    pub by: &'a str,
    pub plan: &'a DeployPlan,
    pub channel: &'a str,
    pub now: DateTime<Utc>,
}

/// Inserts a running deploy. `Ok(false)` when the environment has one running already (the unique
/// index decides, whatever the replicas do).
pub async fn insert(conn: &mut PgConnection, d: &NewDeploy<'_>) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "INSERT INTO deploys (id, environment, state, ref, sha, by_user, resources, plan, channel, started_at) \
         VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(d.id)
    .bind(d.environment)
    .bind(d.reference)
    .bind(d.sha)
    .bind(d.by)
    .bind(&d.plan.resources)
    .bind(sqlx::types::Json(d.plan))
    .bind(d.channel)
    .bind(d.now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_message(conn: &mut PgConnection, id: i64, message_id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE deploys SET message_id = $2 WHERE id = $1")
        .bind(id)
        .bind(message_id)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<DeployRow>> {
    sqlx::query_as(concat!("SELECT ", deploy_columns!(), " FROM deploys WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The running deploy of an environment, if any.
pub async fn running_on(conn: &mut PgConnection, env: &EnvName) -> sqlx::Result<Option<DeployRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        deploy_columns!(),
        " FROM deploys WHERE environment = $1 AND state = 'running'"
    ))
    .bind(env)
    .fetch_optional(conn)
    .await
}

pub async fn running_ids(pool: &PgPool) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT id FROM deploys WHERE state = 'running' ORDER BY id")
        .fetch_all(pool)
        .await
}

/// Asks the running deploy of `env` to stop; returns it when there was one.
pub async fn request_cancel(conn: &mut PgConnection, env: &EnvName, why: &str) -> sqlx::Result<Option<DeployRow>> {
    sqlx::query_as(concat!(
        "UPDATE deploys SET cancel_reason = COALESCE(cancel_reason, $2) \
         WHERE environment = $1 AND state = 'running' RETURNING ",
        deploy_columns!()
    ))
    .bind(env)
    .bind(why)
    .fetch_optional(conn)
    .await
}

pub async fn steps(conn: &mut PgConnection, deploy: i64) -> sqlx::Result<Vec<StepRow>> {
    sqlx::query_as(
        "SELECT id, step, resource, state, exit_code, log, started_at, finished_at \
         FROM deploy_steps WHERE deploy_id = $1 ORDER BY id",
    )
    .bind(deploy)
    .fetch_all(conn)
    .await
}

pub async fn step_started(
    conn: &mut PgConnection,
    deploy: i64,
    step: &str,
    resource: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO deploy_steps (deploy_id, step, resource, state, started_at) \
         VALUES ($1, $2, $3, 'running', $4) RETURNING id",
    )
    .bind(deploy)
    .bind(step)
    .bind(resource)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn step_finished(
    conn: &mut PgConnection,
    step: i64,
    state: DeployState,
    exit_code: Option<i32>,
    log: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE deploy_steps SET state = $2, exit_code = $3, log = $4, finished_at = $5 WHERE id = $1")
        .bind(step)
        .bind(state)
        .bind(exit_code)
        .bind(log)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Records that `resource` now runs `sha` on the environment.
pub async fn record_deployed(
    conn: &mut PgConnection,
    d: &DeployRow,
    resource: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO deployed (environment, resource, sha, ref, by_user, at, deploy_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (environment, resource) DO UPDATE \
         SET sha = $3, ref = $4, by_user = $5, at = $6, deploy_id = $7",
    )
    .bind(&d.environment)
    .bind(resource)
    .bind(&d.sha)
    .bind(&d.reference)
    .bind(&d.by_user)
    .bind(now)
    .bind(d.id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Ends a running deploy; steps still marked running end with it. `false` when it had ended
/// already (another replica concluded it).
pub async fn finish(
    conn: &mut PgConnection,
    id: i64,
    state: DeployState,
    outcome: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let step_state = match state {
        DeployState::Interrupted => DeployState::Interrupted,
        _ => DeployState::Cancelled,
    };
    sqlx::query("UPDATE deploy_steps SET state = $2, finished_at = $3 WHERE deploy_id = $1 AND state = 'running'")
        .bind(id)
        .bind(step_state)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query(
        "UPDATE deploys SET state = $2, outcome = $3, finished_at = $4 WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(state)
    .bind(outcome)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
