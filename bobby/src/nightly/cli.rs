//! `bobby nightly run <delete|create> [env] [--dry-run]` on the command line: the same manual run
//! as `/bobby nightly run`, waited for, with the outcome printed.
//!
//! The run is requested like any other and executed by whoever leads Nightly: a running Bobby picks
//! it up at once; with no Bobby running, this process takes the leadership itself and runs it (after
//! the same crash recovery a starting Bobby does). Either way one run at a time, on one process.

use std::time::Duration;

use shared::fence;
use sqlx::PgPool;
use tokio::sync::watch;

use super::runner::RunEnd;
use super::{LEASE_KEY, LEASE_KIND, Nightly, Phase, runs, summary};
use crate::command::closest;
use crate::messages;

/// What to print and the exit status: 0 all went well, 1 something faulted (or the run was
/// stopped), 2 bad input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutcome {
    pub text: String,
    pub code: u8,
}

pub async fn run(
    nightly: &Nightly,
    // The lease lives in the pool's database; the URL is no longer needed for a session lock.
    _database_url: &str,
    phase: Phase,
    env: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<CliOutcome> {
    let env = match env {
        None => None,
        Some(name) => {
            let valid: Vec<&str> = nightly.config().environments.iter().map(|e| e.name.as_str()).collect();
            match valid.iter().find(|v| **v == name.to_lowercase()) {
                Some(found) => Some(found.to_string()),
                None => {
                    return Ok(CliOutcome {
                        text: messages::unknown_env(name, closest(name, &valid), &valid).plain(),
                        code: 2,
                    });
                }
            }
        }
    };
    let now = nightly.now();
    if dry_run {
        let plan = super::dry_run(nightly, phase, env.as_deref(), now).await?;
        return Ok(CliOutcome {
            text: messages::nightly_dry_run(&plan).plain(),
            code: 0,
        });
    }
    let requested = super::request(nightly, phase, env.as_deref(), "cli", now).await?;
    let id = requested.id;
    let (stop, stopped) = watch::channel(false);
    // Ctrl-C stops the steps the way SIGTERM stops Bobby: the run stays to be resumed.
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop.send(true);
        }
    });
    tokio::select! {
        ended = wait_until_ended(nightly.pool(), id) => ended?,
        lease = fence::acquire(nightly.pool(), LEASE_KIND, LEASE_KEY, Duration::from_secs(2), stopped.clone()) => {
            let Some(lease) = lease else {
                return Ok(interrupted(id));
            };
            // Led like a Bobby leads: fenced writes, steps stopped if the lease cannot be kept.
            let keep = lease.keep_alive(stopped.clone());
            let led = lead(&nightly.with_lease(lease.clone()), keep.stop()).await;
            if !keep.lost() {
                let _ = lease.release().await;
            }
            if led? == RunEnd::Stopped {
                return Ok(interrupted(id));
            }
        }
    }
    let mut conn = nightly.pool().acquire().await?;
    let report = summary::report(&mut conn, nightly, id, nightly.now()).await?;
    Ok(CliOutcome {
        text: messages::nightly_cli_report(&report),
        code: if report.has_faults() { 1 } else { 0 },
    })
}

/// Recovers what a previous leader left, then runs every requested run.
async fn lead(nightly: &Nightly, stop: watch::Receiver<bool>) -> anyhow::Result<RunEnd> {
    if nightly.recover(stop.clone()).await? == RunEnd::Stopped {
        return Ok(RunEnd::Stopped);
    }
    while let Some(run) = runs::next_requested(&mut *nightly.pool().acquire().await?).await? {
        if nightly.run_requested(&run, stop.clone()).await? == RunEnd::Stopped {
            return Ok(RunEnd::Stopped);
        }
    }
    Ok(RunEnd::Done)
}

fn interrupted(id: i64) -> CliOutcome {
    CliOutcome {
        text: messages::nightly_cli_stopped(id),
        code: 1,
    }
}

/// Until run `id` has finished (or was interrupted or skipped), whoever runs it.
async fn wait_until_ended(pool: &PgPool, id: i64) -> anyhow::Result<()> {
    let mut listener = shared::db::listen(pool, &["nightly_done"]).await?;
    loop {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM nightly_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        match state.as_deref() {
            Some("finished" | "interrupted" | "skipped") => return Ok(()),
            None => anyhow::bail!("Nightly run #{id} vanished"),
            _ => {}
        }
        // The notification is the wake-up; the timeout only covers one lost while reconnecting.
        tokio::select! {
            n = shared::db::next_change(&mut listener) => { n?; }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
