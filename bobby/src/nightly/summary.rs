//! What a run did, read back from its tables for the summary in `announce_channel`, the command
//! line and `nightly status`; and the environment-hours Nightly saved this month compared with
//! keeping every environment up all the time.
//!
//! "Down" is measured, not assumed: an environment counts as down from the moment its delete
//! succeeded until a create starts on it (`environment_downtime`), so a faulted delete or a
//! preserved environment saves nothing.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use sqlx::PgConnection;

use super::Nightly;
use super::plan::{Phase, Skip};
use super::runs::{self, Run};

/// Environments of a run by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: i64,
    pub faulted: i64,
    pub interrupted: i64,
    pub skipped: i64,
    /// Not finished yet (pending or running).
    pub open: i64,
}

pub async fn counts(conn: &mut PgConnection, run: i64) -> sqlx::Result<Counts> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM nightly_run_envs WHERE run_id = $1 GROUP BY state")
            .bind(run)
            .fetch_all(conn)
            .await?;
    let mut c = Counts::default();
    for (state, n) in rows {
        match state.as_str() {
            "ok" => c.done += n,
            "faulted" => c.faulted += n,
            "interrupted" => c.interrupted += n,
            "skipped" => c.skipped += n,
            _ => c.open += n,
        }
    }
    Ok(c)
}

/// How one environment came out of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted or created.
    Done,
    Faulted {
        step: String,
        exit_code: Option<i32>,
        attempts: i32,
        /// How the last attempt ended ("exit status 3", "timed out …").
        ended: String,
    },
    Skipped(Skip),
    /// Bobby stopped mid-run and the other phase was due before it came back: `step` is where it
    /// stopped (faulted), `None` when it had not started on it (left as it was).
    Interrupted {
        step: Option<String>,
    },
    /// Not finished (the run is still going).
    Open,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvReport {
    pub name: shared::ids::EnvName,
    pub outcome: Outcome,
    pub log_tail: Option<String>,
}

/// Environment-hours saved this month.
#[derive(Clone, Debug, PartialEq)]
pub struct Savings {
    pub saved_hours: f64,
    /// What keeping every environment up since the start of the month would have taken.
    pub all_up_hours: f64,
    pub environments: usize,
    pub cost: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    pub run: Run,
    pub envs: Vec<EnvReport>,
    pub savings: Savings,
    pub log_url: String,
}

impl RunReport {
    pub fn with_outcome(&self, pred: impl Fn(&Outcome) -> bool) -> Vec<&EnvReport> {
        self.envs.iter().filter(|e| pred(&e.outcome)).collect()
    }

    /// Something went wrong: an environment faulted or was interrupted.
    pub fn has_faults(&self) -> bool {
        self.envs
            .iter()
            .any(|e| matches!(e.outcome, Outcome::Faulted { .. } | Outcome::Interrupted { .. }))
    }

    pub fn phase(&self) -> Phase {
        self.run.phase
    }
}

pub async fn report(
    conn: &mut PgConnection,
    n: &Nightly,
    run_id: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<RunReport> {
    let run = runs::get(conn, run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Nightly run #{run_id}"))?;
    let envs = runs::envs_of(conn, run_id).await?;
    let steps = runs::steps_of(conn, run_id).await?;
    let mut out = Vec::with_capacity(envs.len());
    for e in envs {
        let mine: Vec<&runs::Step> = steps.iter().filter(|s| s.environment == e.environment).collect();
        let failed = mine.iter().find(|s| s.state == "failed");
        let outcome = match e.state.as_str() {
            "ok" => Outcome::Done,
            "skipped" => Outcome::Skipped(e.skip.clone().unwrap_or(Skip::Busy)),
            "faulted" => Outcome::Faulted {
                step: failed.map(|s| s.name.clone()).unwrap_or_default(),
                exit_code: failed.and_then(|s| s.exit_code),
                attempts: failed.map(|s| s.attempts).unwrap_or(0),
                ended: failed.and_then(|s| s.ended.clone()).unwrap_or_default(),
            },
            "interrupted" => Outcome::Interrupted {
                step: failed.map(|s| s.name.clone()),
            },
            _ => Outcome::Open,
        };
        out.push(EnvReport {
            name: e.environment,
            outcome,
            log_tail: failed.and_then(|s| s.log_tail.clone()),
        });
    }
    Ok(RunReport {
        savings: savings(conn, n, now).await?,
        log_url: n.log_url(run_id),
        run,
        envs: out,
    })
}

/// The environment-hours saved from the start of this local month until `now`.
pub async fn savings(conn: &mut PgConnection, n: &Nightly, now: DateTime<Utc>) -> anyhow::Result<Savings> {
    let tz = n.schedule.tz;
    let local = now.with_timezone(&tz).date_naive();
    let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local);
    let month_start = shared::schedule::local_instant(tz, first, NaiveTime::MIN).min(now);
    let saved_hours = shared::envs::store::downtime_hours(conn, month_start, now).await?;
    let environments = n.config().environments.len();
    let all_up_hours = environments as f64 * (now - month_start).num_seconds() as f64 / 3600.0;
    Ok(Savings {
        saved_hours,
        all_up_hours,
        environments,
        cost: n.settings.cost_per_environment_hour.map(|c| c * saved_hours),
    })
}
