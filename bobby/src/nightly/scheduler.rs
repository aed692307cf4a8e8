//! The Nightly worker: one replica at a time (the `Job::Nightly` advisory lock) runs the schedule
//! and the manual runs people ask for, one run after the other.
//!
//! On taking leadership it first recovers (kills a dead predecessor's leftover step processes,
//! resumes or closes the run it left). Then, in a loop: start any requested manual run; run the
//! latest slot that is due and not yet handled (the scheduled one it woke for, or one missed while
//! no Bobby ran — see `plan::Schedule::due`); otherwise publish the next slot and sleep until it
//! through the injected clock, waking early only when someone requests a manual run (LISTEN
//! `nightly`). No polling tick.
//!
//! "Handled" is the latest slot recorded in `nightly_runs`. With none recorded (a fresh database)
//! the leader's start time stands in: nothing before it was missed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::db::{Job, Leadership};
use tokio::sync::watch;

use super::Nightly;
use super::runner::RunEnd;
use super::runs;

pub struct NightlyWorker {
    pub nightly: Nightly,
    pub database_url: String,
}

impl NightlyWorker {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        loop {
            let Some(mut leader) = Leadership::acquire(
                &self.database_url,
                Job::Nightly,
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            tracing::info!("running Nightly on this replica");
            if let Err(e) = self.lead(&mut leader, shutdown.clone()).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "Nightly worker lost its footing; starting over"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn lead(&self, leader: &mut Leadership, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let n = &self.nightly;
        let mut listener = shared::db::listen(n.pool(), &["nightly"]).await?;
        let since = n.now();
        if n.recover(shutdown.clone()).await? == RunEnd::Stopped {
            return Ok(());
        }
        // The slot the last sleep ended at: a run for it is `scheduled`, any other `caught-up`.
        let mut woke_for: Option<DateTime<Utc>> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if !leader.still_held().await {
                anyhow::bail!("leadership connection lost");
            }
            let requested = runs::next_requested(&mut *n.pool().acquire().await?).await?;
            if let Some(run) = requested {
                if n.run_requested(&run, shutdown.clone()).await? == RunEnd::Stopped {
                    return Ok(());
                }
                continue;
            }
            let now = n.now();
            let watermark = runs::watermark(&mut *n.pool().acquire().await?).await?.unwrap_or(since);
            if let Some(slot) = n.schedule.due(now, watermark) {
                let trigger = if woke_for == Some(slot.at) {
                    "scheduled"
                } else {
                    "caught-up"
                };
                if n.run_slot(slot, trigger, shutdown.clone()).await? == RunEnd::Stopped {
                    return Ok(());
                }
                continue;
            }
            let next = n.schedule.next_slot(now);
            runs::publish_next(&mut *n.pool().acquire().await?, next.phase, next.at, since, now).await?;
            tracing::debug!(phase = next.phase.as_str(), at = %next.at, "Nightly sleeps until its next slot");
            let clock = n.bobby.clock.clone();
            tokio::select! {
                notification = shared::db::next_change(&mut listener) => { notification?; }
                _ = clock.sleep_until(next.at) => { woke_for = Some(next.at); }
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}
