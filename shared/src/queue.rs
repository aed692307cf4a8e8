//! Gandalf's merge queue as rows: the item of each time a PR was queued, its states, the order a
//! queue is worked in, and the reads both Gandalf and the control center make. Gandalf's writes
//! stay in `gandalf::store`; this is what the two share, so a queue reads the same everywhere.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

pub use crate::db::DbResult;
use crate::ids::{CommitSha, PrNumber, RepoName, SlackUserId};

/// The order of a merge queue: the verifying item first, then by priority, then by time queued.
pub const QUEUE_ORDER: &str = "(state <> 'queued') DESC, priority DESC, enqueued_at, id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "queue_item_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Queued,
    WaitingForEnvironment,
    Preparing,
    Deploying,
    Testing,
    /// Its pipeline passed; the repository's `required_checks` are still running (SPEC §5.7).
    WaitingForChecks,
    Landing,
    Merged,
    Failed,
    Cancelled,
    Dropped,
}

impl ItemState {
    /// The states of an item still in its queue: waiting, then the verifying ones.
    pub const ACTIVE: [ItemState; 7] = [
        ItemState::Queued,
        ItemState::WaitingForEnvironment,
        ItemState::Preparing,
        ItemState::Deploying,
        ItemState::Testing,
        ItemState::WaitingForChecks,
        ItemState::Landing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Queued => "queued",
            ItemState::WaitingForEnvironment => "waiting_for_environment",
            ItemState::Preparing => "preparing",
            ItemState::Deploying => "deploying",
            ItemState::Testing => "testing",
            ItemState::WaitingForChecks => "waiting_for_checks",
            ItemState::Landing => "landing",
            ItemState::Merged => "merged",
            ItemState::Failed => "failed",
            ItemState::Cancelled => "cancelled",
            ItemState::Dropped => "dropped",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ItemState::Merged | ItemState::Failed | ItemState::Cancelled | ItemState::Dropped
        )
    }

    pub fn is_verifying(self) -> bool {
        !self.is_finished() && self != ItemState::Queued
    }
}

/// One time a pull request was queued. The ids decode through their `parse()`, so a row that holds
/// an impossible PR number or SHA fails to load instead of travelling on as a string.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Item {
    pub id: i64,
    pub repo: RepoName,
    pub pr: PrNumber,
    pub title: String,
    /// The PR author's GitHub login.
    pub author: String,
    /// The head the approvals were given on: the only commit this item may land.
    pub head_sha: CommitSha,
    pub priority: i32,
    /// The GitHub login of whoever queued it.
    pub queued_by: String,
    /// Their Slack user, when known: who is DMed when it fails.
    pub queued_by_slack: Option<SlackUserId>,
    pub enqueued_at: DateTime<Utc>,
    pub state: ItemState,
    pub base_sha: Option<CommitSha>,
    pub candidate_sha: Option<CommitSha>,
    pub affected: sqlx::types::Json<Vec<String>>,
    pub outcome_reason: Option<String>,
    pub verify_started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub landed_sha: Option<CommitSha>,
    /// What a waiting or verifying item is doing right now.
    pub note: Option<String>,
    pub deployed: sqlx::types::Json<Vec<String>>,
    pub attempts: i32,
    /// Its `test` failed and then passed on a retry (`test_retries`).
    pub flaky: bool,
}

/// The priority `p=urgent` stores: above every number a person can give (-1000 to 1000), so it
/// sorts first; an urgent PR is never batched (SPEC §5.2, §5.6).
pub const URGENT: i32 = 1_000_000;

/// A priority as people write it: `urgent`, `high`, `low`, or the number.
pub fn priority_label(p: i32) -> String {
    match p {
        URGENT => "urgent".into(),
        10 => "high".into(),
        -10 => "low".into(),
        p => p.to_string(),
    }
}

/// The columns of [`Item`], for `concat!` into queries (`SELECT … FROM queue_items`).
#[macro_export]
macro_rules! queue_item_columns {
    () => {
        "id, repo, pr, title, author, head_sha, priority, queued_by, queued_by_slack, enqueued_at, state, \
         base_sha, candidate_sha, affected, outcome_reason, verify_started_at, finished_at, landed_sha, note, \
         deployed, attempts, flaky"
    };
}

/// The active items of a repository's queue, in the order Gandalf works them. The reads take the
/// repository as the text the control center has (it reads names from rows); Gandalf's typed
/// wrappers are in `gandalf::store`.
pub async fn active_items(conn: &mut PgConnection, repo: &str) -> DbResult<Vec<Item>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM queue_items WHERE repo = $1 AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped') \
         ORDER BY {QUEUE_ORDER}",
        crate::queue_item_columns!()
    )))
    .bind(repo)
    .fetch_all(conn)
    .await
}

/// Median verification time of the last 20 finished verifications: the basis of every ETA.
pub async fn typical_verification(conn: &mut PgConnection, repo: &str) -> DbResult<Option<chrono::Duration>> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - verify_started_at)) \
         FROM (SELECT finished_at, verify_started_at FROM queue_items \
               WHERE repo = $1 AND state IN ('merged', 'failed') AND verify_started_at IS NOT NULL \
               ORDER BY finished_at DESC LIMIT 20) recent",
    )
    .bind(repo)
    .fetch_one(conn)
    .await?;
    Ok(secs.map(|s| chrono::Duration::milliseconds((s * 1000.0) as i64)))
}
