//! The lease-expiry worker: reminds holders `remind_before` ahead, releases leases when they expire
//! and hands them to the first waiter.
//!
//! It sleeps until the next deadline stored in Postgres (no polling tick), and wakes early when any
//! replica changes a lease (LISTEN `leases`). It runs on one replica at a time (advisory lock);
//! everything it does is one transaction per round, so a crash mid-round repeats nothing twice.

use std::time::Duration;

use shared::db::{Job, Leadership};
use shared::envs::store;
use shared::slack::outbox;
use tokio::sync::watch;

use crate::handler::Bobby;
use crate::messages;

pub struct ExpiryWorker {
    pub bobby: Bobby,
    pub database_url: String,
}

impl ExpiryWorker {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        loop {
            let Some(mut leader) = Leadership::acquire(
                &self.database_url,
                Job::LeaseExpiry,
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            tracing::info!("watching lease expiries on this replica");
            if let Err(e) = self.lead(&mut leader, shutdown.clone()).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "expiry worker lost its footing; starting over"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn lead(&self, leader: &mut Leadership, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut listener = shared::db::listen(&self.bobby.pool, &["leases"]).await?;
        let clock = self.bobby.clock.clone();
        loop {
            if !leader.still_held().await {
                anyhow::bail!("leadership connection lost");
            }
            self.round().await?;
            let remind = self.bobby.policy().remind_before.chrono();
            let next = {
                let mut conn = self.bobby.pool.acquire().await?;
                store::next_lease_deadline(&mut conn, remind).await?
            };
            // With nothing scheduled, still look again now and then: a cheap guard against a
            // notification lost while the listener reconnected.
            let wake = next.unwrap_or_else(|| clock.now() + chrono::Duration::minutes(10));
            tokio::select! {
                n = shared::db::next_change(&mut listener) => { n?; }
                _ = clock.sleep_until(wake) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// Sends due reminders and ends due leases, in one transaction with their messages.
    pub async fn round(&self) -> anyhow::Result<()> {
        let now = self.bobby.clock.now();
        let policy = self.bobby.policy().clone();
        let mut tx = self.bobby.pool.begin().await?;
        for lease in store::take_due_reminders(&mut tx, now, policy.remind_before.chrono()).await? {
            if let Some(holder) = lease.holder.person() {
                outbox::enqueue(&mut tx, holder.as_str(), &messages::reminder(&lease), now).await?;
            }
        }
        for ended in store::expire_due(&mut tx, now, &policy).await? {
            tracing::info!(environment = %ended.previous.environment, holder = %ended.previous.holder, "lease expired");
            self.bobby.tell_about_end(&mut tx, &ended, None, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
