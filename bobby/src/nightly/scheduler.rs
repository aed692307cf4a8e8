//! The Nightly worker: one replica at a time runs the schedule and the manual runs people ask
//! for, one run after the other. It leads by a fenced lease (`work_leases`, kind `nightly`, see
//! [`shared::fence`]): every write of a run checks it, a leader that cannot renew it stops its
//! steps before it can expire, and another replica takes over only once it has, resuming the run
//! from the interrupted step (the recovery below). A leader that stops for shutdown gives the
//! lease up, so another replica resumes at once.
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
use shared::fence;
use tokio::sync::watch;

use super::runner::RunEnd;
use super::runs;
use super::{LEASE_KEY, LEASE_KIND, Nightly};

pub struct NightlyWorker {
    pub nightly: Nightly,
}

impl NightlyWorker {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        loop {
            let Some(lease) = fence::acquire(
                self.nightly.pool(),
                LEASE_KIND,
                LEASE_KEY,
                Duration::from_secs(5),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            tracing::info!(epoch = lease.epoch, owner = %lease.owner, "running Nightly on this replica");
            let keep = lease.keep_alive(shutdown.clone());
            let nightly = self.nightly.with_lease(lease.clone());
            let led = self.lead(&nightly, keep.stop()).await;
            let lost = keep.lost();
            drop(keep);
            if lost {
                tracing::warn!(
                    epoch = lease.epoch,
                    "Nightly's lease was lost: its steps were stopped; standing by"
                );
            } else if let Err(e) = lease.release().await {
                tracing::warn!(error = %shared::db::short_db_error(&e), "could not give Nightly's lease up; it expires");
            }
            if let Err(e) = led {
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

    /// Leads until `shutdown` (raised also when the lease is lost) or an error.
    async fn lead(&self, n: &Nightly, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
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
