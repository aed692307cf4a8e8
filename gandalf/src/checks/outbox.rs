//! Delivers Gandalf's check updates to GitHub (SPEC §5.7).
//!
//! The rows of `pr_check_updates` are written by triggers on `queue_items` (state changes) and
//! `queue_steps` (a step started), in the transaction of the change: the check cannot miss a
//! state, whichever code path changed it, and a crash loses nothing. They are signals, not
//! payloads: each delivery renders the item as it is *now* (state, position, current step, the
//! failing step's log) and marks every pending row of that item up to the newest it read as
//! delivered. So updates of one item arrive in order, a burst of steps costs one call, and after
//! an outage the PR shows its current state at once instead of replaying history.
//!
//! Throttling: `in_progress` updates of an item go out at most once per [`PROGRESS_EVERY`]; the
//! others (queued, completed) at once. A GitHub failure postpones that item's updates with a
//! capped backoff and retries for as long as it takes — an outage delays them, loses none, and
//! never holds up the queue (this worker is apart from the verifier). A refusal that asking again
//! cannot change (a 422) is set aside after [`MAX_REFUSALS`] tries, logged and counted.
//!
//! One replica delivers (leadership `Job::GandalfChecks`), so an item's check run is created once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::db::{Job, Leadership};
use shared::github::{CommitSha, GithubError};
use shared::queue::ItemState;
use sqlx::{PgConnection, Row};
use tokio::sync::watch;

use super::{CHECK_NAME, CheckView};
use crate::handler::Gandalf;
use crate::messages::checks::{CheckFacts, FailedStep, check_view};
use crate::store;

/// At most one `in_progress` update per item this often: "a few times a minute".
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Tries of an update GitHub refuses for good (4xx other than a rate limit) before it is set aside.
pub const MAX_REFUSALS: i32 = 3;

/// The longest wait between two tries while GitHub is away.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The wait before try `attempt` (1-based) of an item's update: 0.5 s doubling, capped.
pub fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 16) as u32 - 1;
    Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(BACKOFF_CAP)
}

pub struct CheckUpdates {
    pub gandalf: Gandalf,
    pub database_url: String,
    /// Set once GitHub refused to create a check run for our token (a personal token): from then
    /// on the check is a commit status. Per process: a restart tries a check run again once.
    statuses_only: Arc<AtomicBool>,
}

impl CheckUpdates {
    pub fn new(gandalf: Gandalf, database_url: String) -> Self {
        CheckUpdates {
            gandalf,
            database_url,
            statuses_only: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs until shutdown: competes for leadership, then delivers what is due, waking on new rows
    /// (LISTEN `gandalf_checks`) or when the next retry or throttled update is due.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        if self.gandalf.github.is_none() {
            return;
        }
        loop {
            let Some(mut leader) = Leadership::acquire(
                &self.database_url,
                Job::GandalfChecks,
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            if let Err(e) = self.lead(&mut leader, shutdown.clone()).await {
                tracing::warn!(error = %e, "check updates worker lost its footing; starting over");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn lead(&self, leader: &mut Leadership, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut listener = shared::db::listen(&self.gandalf.pool, &["gandalf_checks"]).await?;
        loop {
            if !leader.still_held().await {
                anyhow::bail!("leadership connection lost");
            }
            let wait = self.deliver_due().await?;
            tokio::select! {
                n = shared::db::next_change(&mut listener) => { n?; }
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// Delivers every item's due updates; returns how long until the next one is due. An item is
    /// due when none of its pending rows waits for a retry: rows written during a backoff wait
    /// with the others, so an outage is not hammered by every state change.
    pub async fn deliver_due(&self) -> anyhow::Result<Duration> {
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT item_id FROM pr_check_updates WHERE delivered_at IS NULL \
             GROUP BY item_id HAVING max(next_attempt_at) <= now() ORDER BY item_id LIMIT 100",
        )
        .fetch_all(&self.gandalf.pool)
        .await?;
        let mut wait = Duration::from_secs(300);
        for item_id in due {
            // One item's trouble never holds up another's.
            match self.deliver(item_id).await {
                Ok(Some(later)) => wait = wait.min(later),
                Ok(None) => {}
                Err(e) => tracing::warn!(item_id, error = format!("{e:#}"), "could not deliver a check update"),
            }
        }
        let retry: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM min(due) - now())::float8 FROM \
             (SELECT max(next_attempt_at) AS due FROM pr_check_updates WHERE delivered_at IS NULL \
              GROUP BY item_id HAVING max(next_attempt_at) > now()) waiting",
        )
        .fetch_one(&self.gandalf.pool)
        .await?;
        if let Some(secs) = retry {
            wait = wait.min(Duration::from_secs_f64(secs.max(0.0)));
        }
        Ok(wait.max(Duration::from_millis(50)))
    }

    /// Renders item `item_id` as it is now and sends it, in one transaction that holds the item's
    /// `pr_checks` row: the check run id and the delivered marks commit together. Returns when to
    /// come back for an `in_progress` update held back by the throttle.
    async fn deliver(&self, item_id: i64) -> anyhow::Result<Option<Duration>> {
        let Some(github) = self.gandalf.github.as_ref() else {
            return Ok(None);
        };
        let mut tx = self.gandalf.pool.begin().await?;
        sqlx::query("INSERT INTO pr_checks (item_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(item_id)
            .execute(&mut *tx)
            .await?;
        let Some(row) = sqlx::query(
            "SELECT check_run_id, EXTRACT(EPOCH FROM last_progress_at + make_interval(secs => $2) - now())::float8 \
             AS throttled_for FROM pr_checks WHERE item_id = $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(item_id)
        .bind(PROGRESS_EVERY.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let check_run_id: Option<i64> = row.try_get("check_run_id")?;
        let throttled_for: Option<f64> = row.try_get("throttled_for")?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM pr_check_updates WHERE item_id = $1 AND delivered_at IS NULL")
                .bind(item_id)
                .fetch_one(&mut *tx)
                .await?;
        let Some(newest) = newest else {
            return Ok(None);
        };
        let Some(item) = store::item(&mut tx, item_id).await? else {
            return Ok(None);
        };
        let view = self.render(&mut tx, &item).await?;
        let in_progress = view.status == super::CheckStatus::InProgress;
        // The throttle holds back only `in_progress`: a verdict or a return to the queue goes out
        // at once, whatever was sent a moment ago.
        if let Some(secs) = throttled_for.filter(|s| in_progress && *s > 0.0) {
            return Ok(Some(Duration::from_secs_f64(secs)));
        }
        let url = crate::messages::item_url(&self.gandalf.config.public_url, &item.repo, item.pr);
        let sent = self
            .send(github, &item.repo, &item.head_sha, check_run_id, item_id, &view, &url)
            .await;
        match sent {
            Ok(id) => {
                sqlx::query(
                    "UPDATE pr_checks SET check_run_id = $2, \
                     last_progress_at = CASE WHEN $3 THEN now() ELSE last_progress_at END WHERE item_id = $1",
                )
                .bind(item_id)
                .bind(id)
                .bind(in_progress)
                .execute(&mut *tx)
                .await?;
                mark_delivered(&mut tx, item_id, newest, None).await?;
                metrics::counter!("gandalf_check_updates_total", "outcome" => "delivered").increment(1);
            }
            Err(e) => {
                let attempts: i32 = sqlx::query_scalar(
                    "SELECT max(attempts) + 1 FROM pr_check_updates WHERE item_id = $1 AND delivered_at IS NULL",
                )
                .bind(item_id)
                .fetch_one(&mut *tx)
                .await?;
                let permanent = matches!(&e, GithubError::Refused { status, .. } if *status != 403 && *status != 429);
                if permanent && attempts >= MAX_REFUSALS {
                    tracing::error!(repo = %item.repo, pr = %item.pr, error = %e, "GitHub keeps refusing a check update; setting it aside");
                    mark_delivered(&mut tx, item_id, newest, Some(&e.to_string())).await?;
                    metrics::counter!("gandalf_check_updates_total", "outcome" => "set_aside").increment(1);
                } else {
                    tracing::warn!(repo = %item.repo, pr = %item.pr, attempts, error = %e, "check update not delivered; will try again");
                    sqlx::query(
                        "UPDATE pr_check_updates SET attempts = $2, last_error = $3, \
                         next_attempt_at = now() + make_interval(secs => $4) \
                         WHERE item_id = $1 AND delivered_at IS NULL",
                    )
                    .bind(item_id)
                    .bind(attempts)
                    .bind(e.to_string())
                    .bind(backoff(attempts).as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
                    metrics::counter!("gandalf_check_updates_total", "outcome" => "retried").increment(1);
                }
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    /// Sends `view` as a check run (created once, then updated), or as the commit status
    /// `gandalf` when the token cannot create check runs. Returns the check run's id, if any.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        github: &shared::github::Github,
        repo: &shared::ids::RepoName,
        head: &CommitSha,
        check_run_id: Option<i64>,
        item_id: i64,
        view: &CheckView,
        url: &str,
    ) -> Result<Option<i64>, GithubError> {
        let external_id = item_id.to_string();
        if !self.statuses_only.load(Ordering::Relaxed) {
            match check_run_id {
                Some(id) => {
                    github
                        .update_check_run(repo, id as u64, view.check_run(None, url, &external_id))
                        .await?;
                    return Ok(Some(id));
                }
                None => match github
                    .create_check_run(repo, view.check_run(Some(head), url, &external_id))
                    .await
                {
                    Ok(id) => return Ok(Some(id as i64)),
                    Err(e) if e.is_checks_forbidden() => {
                        tracing::info!(%repo, error = %e, "this token cannot create check runs; Gandalf's check is a commit status");
                        self.statuses_only.store(true, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        github
            .set_status(
                repo,
                head,
                CHECK_NAME,
                view.status_state(),
                &view.status_description(),
                Some(url),
            )
            .await?;
        Ok(None)
    }

    /// The facts of the item's check, read in the delivering transaction.
    async fn render(&self, conn: &mut PgConnection, item: &store::Item) -> anyhow::Result<CheckView> {
        let position = if item.state == ItemState::Queued {
            store::queue(conn, &item.repo)
                .await?
                .iter()
                .position(|i| i.id == item.id)
                .map(|p| p + 1)
        } else {
            None
        };
        let step: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT name, resource FROM queue_steps WHERE item_id = $1 AND state = 'running' ORDER BY id DESC LIMIT 1",
        )
        .bind(item.id)
        .fetch_optional(&mut *conn)
        .await?;
        let failed: Option<(String, Option<String>, Option<i32>, String)> = if item.state == ItemState::Failed {
            sqlx::query_as(
                "SELECT name, resource, exit_code, log FROM queue_steps \
                 WHERE item_id = $1 AND state = 'failed' AND name <> 'revert' \
                   AND attempt = (SELECT max(attempt) FROM queue_steps WHERE item_id = $1) \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(item.id)
            .fetch_optional(&mut *conn)
            .await?
        } else {
            None
        };
        let base = self
            .gandalf
            .config
            .repos
            .iter()
            .find(|r| r.name == item.repo)
            .map(|r| r.base.as_str())
            .unwrap_or("main");
        Ok(check_view(&CheckFacts {
            state: item.state,
            position,
            note: item.note.as_deref(),
            step: step.as_ref().map(|(n, r)| (n.as_str(), r.as_deref())),
            reason: item.outcome_reason.as_deref(),
            failed: failed.as_ref().map(|(name, resource, exit_code, log)| FailedStep {
                name,
                resource: resource.as_deref(),
                exit_code: *exit_code,
                log,
            }),
            landed: item.landed_sha.as_ref(),
            base,
        }))
    }
}

async fn mark_delivered(conn: &mut PgConnection, item_id: i64, upto: i64, error: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE pr_check_updates SET delivered_at = now(), last_error = COALESCE($3, last_error) \
         WHERE item_id = $1 AND id <= $2 AND delivered_at IS NULL",
    )
    .bind(item_id)
    .bind(upto)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_a_minute() {
        let got: Vec<u128> = [1, 2, 3, 4, 8, 50]
            .into_iter()
            .map(|a| backoff(a).as_millis())
            .collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 60_000, 60_000]);
        assert_eq!(backoff(0), backoff(1));
    }
}
