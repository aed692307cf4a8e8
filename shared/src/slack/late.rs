//! Slack's three seconds: a slash command must be answered within them, and a busy database or a
//! slow GitHub can take longer. [`answer_in_time`] runs the handler, returns its reply when it is
//! quick, and otherwise acknowledges with "working on it" and delivers the reply later — in-channel
//! replies through the outbox (retried), ephemeral ones through `response_url`.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;

use super::outbox::{self, Sender};
use super::{Reply, SlackApi, Visibility};
use crate::clock::SharedClock;

/// Past this, the command is acknowledged and answered later.
pub const SLACK_DEADLINE: Duration = Duration::from_millis(2500);

/// What a late reply needs to find its way.
pub struct LateDelivery {
    pub pool: PgPool,
    pub slack: SlackApi,
    pub sender: Sender,
    pub clock: SharedClock,
    /// The channel the command was typed in.
    pub channel: String,
    pub response_url: String,
}

/// Runs `work` (the command handler) and returns the reply for the HTTP response: its own when it
/// finishes within [`SLACK_DEADLINE`], else an acknowledgement (and the reply follows). A handler
/// that panics is answered with `on_panic`.
pub async fn answer_in_time<F>(work: F, late: LateDelivery, on_panic: Reply) -> Reply
where
    F: Future<Output = Reply> + Send + 'static,
{
    let mut work = tokio::spawn(work);
    match tokio::time::timeout(SLACK_DEADLINE, &mut work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "command handler panicked");
            on_panic
        }
        Err(_) => {
            tokio::spawn(async move {
                if let Ok(reply) = work.await {
                    late.deliver(&reply).await;
                }
            });
            Reply::ephemeral(":hourglass: Working on it…")
        }
    }
}

impl LateDelivery {
    /// Delivers a reply that could not go back in an HTTP response (a slow command, a button press).
    pub async fn deliver(&self, reply: &Reply) {
        let result = match reply.visibility {
            Visibility::InChannel => self.to_channel(reply).await,
            Visibility::Ephemeral => self
                .slack
                .respond(&self.response_url, reply)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not deliver a late reply");
        }
    }

    /// Through the outbox; under a stampede the pool may stay busy past its acquire timeout, so try
    /// a few times, then post directly (no retries then) rather than lose the reply.
    async fn to_channel(&self, reply: &Reply) -> Result<(), String> {
        let mut queued = Err(String::new());
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            let now = self.clock.now();
            queued = match self.pool.acquire().await {
                Ok(mut conn) => outbox::enqueue_from(&mut conn, self.sender, &self.channel, reply, now)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if queued.is_ok() {
                return Ok(());
            }
        }
        tracing::warn!(error = ?queued.err(), "outbox unavailable for a late reply; posting it directly");
        self.slack
            .post(&self.channel, reply)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
