//! The Slack outbox: messages are rows written in the same transaction as the change they report,
//! and one worker (on one replica, by advisory lock) delivers them in order per channel, retrying
//! with exponential backoff and jitter. A Slack outage delays announcements; it loses none.
//!
//! And it sends none twice (SPEC §8): before a post, the row's `sending_since` is committed, and the
//! post carries the row's id in its metadata. A row found with `sending_since` but no delivery —
//! the bot died between Slack's answer and recording it, or the call timed out — may already be in
//! Slack, so the channel (or thread) is searched for that id first (`conversations.history`) and
//! the message is posted again only when it is not there. Edits (`chat.update`) are idempotent and
//! need no search.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;

use super::{Button, Reply, SendError, SlackApi, Visibility};
use crate::clock::SharedClock;
use crate::db::{Job, Leadership};

#[derive(Serialize, Deserialize)]
struct StoredButton {
    label: String,
    action_id: String,
    value: String,
    primary: bool,
}

/// Which bot's Slack app posts a message: each bot delivers only its own rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Bobby,
    Gandalf,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Bobby => "bobby",
            Sender::Gandalf => "gandalf",
        }
    }

    fn job(self) -> Job {
        match self {
            Sender::Bobby => Job::SlackOutbox,
            Sender::Gandalf => Job::GandalfOutbox,
        }
    }
}

/// Queues `reply` from Bobby for `channel` (a channel id, or a user id for a DM) inside the
/// caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, channel: &str, reply: &Reply, now: DateTime<Utc>) -> sqlx::Result<()> {
    enqueue_from(conn, Sender::Bobby, channel, reply, now).await.map(|_| ())
}

/// Queues `reply` from `sender` for `channel` inside the caller's transaction. Returns the row's
/// id, which later rows can edit or answer in its thread ([`enqueue_related`]).
pub async fn enqueue_from(
    conn: &mut PgConnection,
    sender: Sender,
    channel: &str,
    reply: &Reply,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    enqueue_related(conn, sender, channel, reply, now, Relation::None).await
}

/// How a queued message relates to an earlier one of the same sender and channel, which is
/// delivered before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// A message of its own.
    None,
    /// A `chat.update` of that row's message: Slack shows this text in its place. An edit that a
    /// newer edit of the same message supersedes before it went out is skipped.
    Edits(i64),
    /// An answer in the thread of that row's message.
    ThreadOf(i64),
}

/// Queues `reply` from `sender` for `channel`, related to an earlier row, inside the caller's
/// transaction. Returns the row's id.
pub async fn enqueue_related(
    conn: &mut PgConnection,
    sender: Sender,
    channel: &str,
    reply: &Reply,
    now: DateTime<Utc>,
    relation: Relation,
) -> sqlx::Result<i64> {
    let buttons: Vec<StoredButton> = reply
        .buttons
        .iter()
        .map(|b| StoredButton {
            label: b.label.clone(),
            action_id: b.action_id.clone(),
            value: b.value.clone(),
            primary: b.primary,
        })
        .collect();
    let (edits, thread_of) = match relation {
        Relation::None => (None, None),
        Relation::Edits(id) => (Some(id), None),
        Relation::ThreadOf(id) => (None, Some(id)),
    };
    sqlx::query_scalar(
        "INSERT INTO slack_outbox (channel, text, buttons, created_at, sender, edits, thread_of) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(channel)
    .bind(&reply.text)
    .bind(sqlx::types::Json(buttons))
    .bind(now)
    .bind(sender.as_str())
    .bind(edits)
    .bind(thread_of)
    .fetch_one(conn)
    .await
}

/// Messages not yet delivered (nor given up on).
pub async fn backlog(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NULL AND failed_at IS NULL")
        .fetch_one(pool)
        .await
}

/// Retry policy: the n-th retry waits a random time up to `min(cap, base × 2^(n-1))`, or what
/// Slack's `Retry-After` asked for when that is longer.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5 * 60),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let jittered = Duration::from_millis(rand::rng().random_range(0..=exp.as_millis().max(1) as u64));
        jittered.max(retry_after.unwrap_or_default())
    }
}

pub struct Deliverer {
    pub pool: PgPool,
    pub database_url: String,
    pub slack: SlackApi,
    /// Whose messages this deliverer posts.
    pub sender: Sender,
    /// Paces retries. Its own clock, apart from the domain's: retrying is about Slack's wall-clock
    /// availability, and a test that freezes domain time still wants retries to happen.
    pub clock: SharedClock,
    pub backoff: Backoff,
}

struct Pending {
    id: i64,
    channel: String,
    text: String,
    buttons: Vec<StoredButton>,
    attempts: i32,
    /// `None`: never tried, due now.
    next_attempt_at: Option<DateTime<Utc>>,
    relation: Relation,
    /// Set when a post was attempted whose outcome we never learnt.
    sending_since: Option<DateTime<Utc>>,
}

/// A Slack call that hangs must not stall the outbox forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// A Slack call bounded by [`SEND_TIMEOUT`]; running out of time is a transient failure whose
/// outcome is unknown (the post may have gone through).
async fn timed<T>(call: impl std::future::Future<Output = Result<T, SendError>>) -> Result<T, SendError> {
    match tokio::time::timeout(SEND_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Transient {
            message: "Slack did not answer in time".into(),
            after: None,
        }),
    }
}

impl Deliverer {
    /// Runs until shutdown: competes for leadership, then delivers whatever is due, waking on new
    /// rows (LISTEN) or at the next retry time.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        loop {
            let Some(mut leader) = Leadership::acquire(
                &self.database_url,
                self.sender.job(),
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            tracing::info!(
                sender = self.sender.as_str(),
                "delivering the Slack outbox on this replica"
            );
            if let Err(e) = self.lead(&mut leader, shutdown.clone()).await {
                tracing::warn!(error = %e, "outbox worker lost its footing; starting over");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn lead(&self, leader: &mut Leadership, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut listener = crate::db::listen(&self.pool, &["slack_outbox"]).await?;
        loop {
            if !leader.still_held().await {
                anyhow::bail!("leadership connection lost");
            }
            let next = self.deliver_due().await?;
            metrics::gauge!("slack_outbox_backlog").set(backlog(&self.pool).await.unwrap_or(0) as f64);
            let wake = next.unwrap_or_else(|| self.clock.now() + chrono::Duration::minutes(5));
            tokio::select! {
                n = crate::db::next_change(&mut listener) => { n?; }
                _ = self.clock.sleep_until(wake) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// Delivers every message that is due, oldest first within each channel; a channel whose head
    /// message is waiting for a retry holds the rest of that channel back, so order is kept.
    /// Returns when the next retry is due, if any message is pending.
    pub async fn deliver_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        loop {
            let heads = self.heads().await?;
            let now = self.clock.now();
            let (due, later): (Vec<Pending>, Vec<Pending>) = heads
                .into_iter()
                .partition(|p| p.next_attempt_at.is_none_or(|t| t <= now));
            let next_due = later.iter().filter_map(|p| p.next_attempt_at).min();
            if due.is_empty() {
                return Ok(next_due);
            }
            for msg in due {
                self.deliver(msg).await?;
            }
        }
    }

    async fn heads(&self) -> sqlx::Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (channel) id, channel, text, buttons, attempts, next_attempt_at, edits, thread_of, sending_since \
             FROM slack_outbox WHERE sender = $1 AND delivered_at IS NULL AND failed_at IS NULL ORDER BY channel, id",
        )
        .bind(self.sender.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Pending {
                    id: r.try_get("id")?,
                    channel: r.try_get("channel")?,
                    text: r.try_get("text")?,
                    buttons: r.try_get::<sqlx::types::Json<Vec<StoredButton>>, _>("buttons")?.0,
                    attempts: r.try_get("attempts")?,
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    relation: match (r.try_get("edits")?, r.try_get("thread_of")?) {
                        (Some(id), _) => Relation::Edits(id),
                        (None, Some(id)) => Relation::ThreadOf(id),
                        (None, None) => Relation::None,
                    },
                    sending_since: r.try_get("sending_since")?,
                })
            })
            .collect()
    }

    /// The Slack `ts` of an earlier row, when it was posted.
    async fn ts_of(&self, id: i64) -> sqlx::Result<Option<String>> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT slack_ts FROM slack_outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Whether a newer edit of `original` than `id` is waiting.
    async fn superseded(&self, id: i64, original: i64) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM slack_outbox WHERE edits = $2 AND id > $1 \
             AND delivered_at IS NULL AND failed_at IS NULL)",
        )
        .bind(id)
        .bind(original)
        .fetch_one(&self.pool)
        .await
    }

    /// Whether a post of `msg` whose outcome we never learnt did reach Slack: its `ts` if so.
    /// Slack refusing the search for good (a missing `*:history` scope, say) cannot be told from
    /// "not there": the message is then sent again, with a warning, rather than never.
    async fn already_posted(&self, msg: &Pending, thread: Option<&str>) -> Result<Option<String>, SendError> {
        let Some(since) = msg.sending_since else {
            return Ok(None);
        };
        match timed(self.slack.find_tagged(&msg.channel, thread, msg.id, since)).await {
            Err(SendError::Permanent(e)) => {
                tracing::warn!(id = msg.id, channel = %msg.channel, error = %e, "cannot search Slack for a message that may have been posted; sending it again");
                Ok(None)
            }
            other => other,
        }
    }

    async fn deliver(&self, msg: Pending) -> sqlx::Result<()> {
        let reply = Reply {
            visibility: Visibility::InChannel,
            text: msg.text.clone(),
            buttons: msg
                .buttons
                .iter()
                .map(|b| Button {
                    label: b.label.clone(),
                    action_id: b.action_id.clone(),
                    value: b.value.clone(),
                    primary: b.primary,
                })
                .collect(),
        };
        let target = match msg.relation {
            Relation::None => None,
            Relation::Edits(of) | Relation::ThreadOf(of) => self.ts_of(of).await?,
        };
        if let Relation::Edits(of) = msg.relation
            && self.superseded(msg.id, of).await?
        {
            // A newer edit of the same message is queued behind this one: only the last counts.
            sqlx::query("UPDATE slack_outbox SET delivered_at = $2, last_error = 'superseded' WHERE id = $1")
                .bind(msg.id)
                .bind(self.clock.now())
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let is_edit = matches!((msg.relation, target.as_deref()), (Relation::Edits(_), Some(_)));
        // The original never reached Slack (refused for good, or Slack not configured): an edit or
        // a thread answer is said as a message of its own rather than lost.
        let thread = match msg.relation {
            Relation::ThreadOf(_) => target.as_deref(),
            _ => None,
        };
        // Set when the message was found in Slack already (posted before a crash or a timeout).
        let mut recovered = false;
        let sent = if is_edit {
            let ts = target.as_deref().unwrap_or_default();
            timed(self.slack.update(&msg.channel, ts, &reply)).await.map(|_| None)
        } else {
            match self.already_posted(&msg, thread).await {
                Ok(Some(ts)) => {
                    tracing::info!(id = msg.id, channel = %msg.channel, "message found in Slack already; not sending it again");
                    metrics::counter!("slack_messages_total", "outcome" => "found_posted").increment(1);
                    recovered = true;
                    Ok(Some(ts))
                }
                Ok(None) => {
                    // Committed before the post: if we die after Slack took it, the next attempt
                    // knows to look for it first.
                    sqlx::query("UPDATE slack_outbox SET sending_since = coalesce(sending_since, $2) WHERE id = $1")
                        .bind(msg.id)
                        .bind(self.clock.now())
                        .execute(&self.pool)
                        .await?;
                    timed(self.slack.post_tagged(&msg.channel, thread, &reply, msg.id)).await
                }
                Err(e) => Err(e),
            }
        };
        let now = self.clock.now();
        match sent {
            Ok(ts) => {
                sqlx::query(
                    "UPDATE slack_outbox SET delivered_at = $2, slack_ts = $3, attempts = attempts + 1, recovered = $4 \
                     WHERE id = $1",
                )
                .bind(msg.id)
                .bind(now)
                .bind(ts)
                .bind(recovered)
                .execute(&self.pool)
                .await?;
                metrics::counter!("slack_messages_total", "outcome" => "delivered").increment(1);
            }
            Err(SendError::Transient { message, after }) => {
                let attempts = msg.attempts + 1;
                let delay = self.backoff.delay(attempts as u32, after);
                tracing::warn!(id = msg.id, channel = %msg.channel, attempts, error = %message, retry_in = ?delay, "Slack message not delivered yet");
                sqlx::query(
                    "UPDATE slack_outbox SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1",
                )
                .bind(msg.id)
                .bind(attempts)
                .bind(&message)
                .bind(now + chrono::Duration::from_std(delay).unwrap_or_default())
                .execute(&self.pool)
                .await?;
                metrics::counter!("slack_messages_total", "outcome" => "retried").increment(1);
            }
            Err(SendError::Permanent(message)) => {
                tracing::error!(id = msg.id, channel = %msg.channel, error = %message, "Slack refused a message for good; giving up on it");
                sqlx::query(
                    "UPDATE slack_outbox SET failed_at = $2, last_error = $3, attempts = attempts + 1 WHERE id = $1",
                )
                .bind(msg.id)
                .bind(now)
                .bind(&message)
                .execute(&self.pool)
                .await?;
                metrics::counter!("slack_messages_total", "outcome" => "failed").increment(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(8),
        };
        for _ in 0..200 {
            assert!(b.delay(1, None) <= Duration::from_secs(1));
            assert!(b.delay(3, None) <= Duration::from_secs(4));
            assert!(b.delay(30, None) <= Duration::from_secs(8));
            assert!(b.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        }
    }
}
