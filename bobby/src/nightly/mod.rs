//! Bobby's Nightly (SPEC §4.5): every evening it tears down the environments nobody preserved,
//! every morning it recreates the ones that should be up that day, and it never leaves one stuck
//! half-way.
//!
//! Where things live:
//! - [`plan`]: pure rules: the slots in the configured timezone, catch-up, which night a slot
//!   belongs to, what a phase does with each environment, the retry backoff;
//! - [`runs`]: Nightly's tables (runs, per-environment and per-step state, attempts, skipped nights);
//! - [`runner`]: one run: claiming environments (leases end, waitlists clear), steps in order per
//!   environment with `concurrency` environments at once, exit-75 retries, faults, the summary, and
//!   recovery after a crash;
//! - [`scheduler`]: the leader-elected worker that sleeps until the next slot;
//! - [`summary`]: what a run did and the environment-hours saved, for the messages;
//! - [`cli`]: `bobby nightly run …` on the command line;
//! - [`log`]: the run log page the summaries link to.
//!
//! This file holds what they share ([`Nightly`]) and what `/bobby nightly …` asks of them.

pub mod cli;
pub mod log;
pub mod plan;
pub mod runner;
pub mod runs;
pub mod scheduler;
pub mod summary;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use shared::envs::store;
use shared::envs::{Environment, LeasePolicy};
use shared::steps::Registry;
use sqlx::PgPool;

use crate::config::{BobbyConfig, NightlyConfig, StepConfig};
use crate::handler::Bobby;

pub use plan::{Phase, Schedule};

/// Everything a Nightly run needs, shared by the scheduler, manual runs, the command line and the
/// `/bobby nightly` commands.
#[derive(Clone)]
pub struct Nightly {
    pub bobby: Bobby,
    pub settings: Arc<NightlyConfig>,
    pub schedule: Schedule,
    /// Where step process groups are recorded for crash clean-up; `None` runs without.
    pub registry: Option<Registry>,
    /// Values masked in step output shown to people.
    pub secrets: Arc<Vec<String>>,
    /// The random draw of full jitter, in `[0, 1)`.
    pub jitter: fn() -> f64,
    /// With `[nightly] repo` and a checkout: where create steps get the code (SPEC §4.5).
    pub code: Option<NightlyCode>,
    /// The lease this process leads Nightly by (SPEC §8): every write of a run checks it, so a
    /// replica that lost it cannot record anything after another took over. `None` (tests that
    /// drive a run directly) writes unfenced.
    pub lease: Option<shared::fence::Lease>,
}

/// The kind and key of Nightly's lease in `work_leases`: one leader runs every run.
pub const LEASE_KIND: &str = "nightly";
pub const LEASE_KEY: &str = "leader";

/// What create steps run in when `[nightly] repo` is set with a `checkout` (SPEC §4.5, §5.8):
/// a working copy of `base`'s tip as it was when the run started, one per environment.
#[derive(Clone)]
pub struct NightlyCode {
    pub repo: shared::ids::RepoName,
    pub base: String,
    pub copies: shared::copies::Copies,
    /// Resolves `base`'s tip; without GitHub credentials the copy cannot be had.
    pub github: Option<shared::github::Github>,
}

impl NightlyCode {
    /// The commit `base` points at now, or why it cannot be known.
    pub async fn base_tip(&self) -> Result<shared::ids::CommitSha, String> {
        let github = self.github.as_ref().ok_or_else(|| {
            format!(
                "[nightly] repo needs GitHub credentials (GITHUB_TOKEN or the GitHub App) to find the tip of {}",
                self.base
            )
        })?;
        match github.branch_tip(&self.repo, &self.base).await {
            Ok(Some(sha)) => Ok(sha),
            Ok(None) => Err(format!("the branch {} does not exist in {}", self.base, self.repo)),
            Err(e) => Err(format!(
                "could not ask GitHub for the tip of {} in {}: {e}",
                self.base, self.repo
            )),
        }
    }
}

impl Nightly {
    /// Nightly for this Bobby, or `None` when the config has no `[nightly]`.
    pub fn new(bobby: Bobby, registry: Option<Registry>, secrets: Vec<String>) -> Option<Nightly> {
        let settings = Arc::new(bobby.config.nightly.clone()?);
        let schedule = Schedule::new(&settings, bobby.config.timezone);
        Some(Nightly {
            bobby,
            settings,
            schedule,
            registry,
            secrets: Arc::new(secrets),
            jitter: random_unit,
            code: None,
            lease: None,
        })
    }

    /// Create steps run in a working copy of `base`'s tip (`[nightly] repo` with a checkout).
    pub fn with_code(mut self, code: Option<NightlyCode>) -> Self {
        self.code = code;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.bobby.pool
    }

    /// This Nightly, leading by `lease`: its runs' writes are fenced by it.
    pub fn with_lease(&self, lease: shared::fence::Lease) -> Nightly {
        Nightly {
            lease: Some(lease),
            ..self.clone()
        }
    }

    /// A transaction for a write of a run: when leading by a lease, checked to be still ours
    /// (and kept so until the commit); refused with [`shared::fence::FenceError::Lost`] otherwise.
    pub async fn write(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(match &self.lease {
            Some(lease) => lease.begin().await?,
            None => self.pool().begin().await?,
        })
    }

    pub fn config(&self) -> &BobbyConfig {
        &self.bobby.config
    }

    pub fn policy(&self) -> &LeasePolicy {
        self.bobby.policy()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.bobby.clock.now()
    }

    pub fn steps(&self, phase: Phase) -> &[StepConfig] {
        match phase {
            Phase::Delete => &self.settings.delete,
            Phase::Create => &self.settings.create,
        }
    }

    /// The link to a run's log.
    pub fn log_url(&self, run: i64) -> String {
        format!("{}/nightly/runs/{run}", self.config().public_url)
    }

    /// The environments Nightly looks after, as planning sees them, in config order: the ones
    /// Bobby's config declares. An environment only Gandalf registered (a verification environment
    /// Bobby does not know) is not Bobby's to tear down.
    pub fn views(&self, envs: &[Environment]) -> Vec<plan::EnvView> {
        self.config()
            .environments
            .iter()
            .filter_map(|c| {
                let e = envs.iter().find(|e| e.name == c.name)?;
                Some(plan::EnvView {
                    name: e.name.clone(),
                    state: e.state,
                    preserved_until: e.preserved_until,
                    holder: e.lease.as_ref().map(|l| l.holder.clone()),
                    keep_on_weekends: c.keep_on_weekends,
                })
            })
            .collect()
    }
}

/// A uniform draw in `[0, 1)` for backoff jitter. SipHash keyed by the standard library's
/// per-process random keys over a counter: plenty for spreading retries, and no extra dependency.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

// --- what `/bobby nightly …` asks ----------------------------------------------------------

/// A run in one line: what it was and how far it got.
#[derive(Clone, Debug)]
pub struct RunBrief {
    pub run: runs::Run,
    pub counts: summary::Counts,
}

/// The next slot of a phase and what it will do.
#[derive(Clone, Debug)]
pub struct NextSlot {
    pub phase: Phase,
    pub at: DateTime<Utc>,
    pub night: NaiveDate,
    /// Who skipped this night, if someone did.
    pub skipped_by: Option<String>,
    /// For a create on a weekend or holiday: the environments it keeps up.
    pub keeps: Option<Vec<String>>,
}

/// `/bobby nightly status`.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub delete_at: String,
    pub create_at: String,
    pub timezone: String,
    pub last: Vec<RunBrief>,
    pub running: Option<RunBrief>,
    pub queued: i64,
    pub next: Vec<NextSlot>,
    pub skipped_nights: Vec<(NaiveDate, String)>,
    pub environments: Vec<Environment>,
}

pub async fn status(n: &Nightly, now: DateTime<Utc>) -> anyhow::Result<StatusReport> {
    let mut conn = n.pool().acquire().await?;
    let mut last = Vec::new();
    for phase in [Phase::Delete, Phase::Create] {
        if let Some(run) = runs::last_of(&mut conn, phase).await? {
            let counts = summary::counts(&mut conn, run.id).await?;
            last.push(RunBrief { run, counts });
        }
    }
    last.sort_by_key(|b| b.run.finished_at);
    let running = match runs::running(&mut conn).await? {
        Some(run) => {
            let counts = summary::counts(&mut conn, run.id).await?;
            Some(RunBrief { run, counts })
        }
        None => None,
    };
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM nightly_runs WHERE state = 'requested'")
        .fetch_one(&mut *conn)
        .await?;
    // The environments Nightly looks after, in config order.
    let all = store::list(&mut conn).await?;
    let environments: Vec<Environment> = n
        .config()
        .environments
        .iter()
        .filter_map(|c| all.iter().find(|e| e.name == c.name).cloned())
        .collect();
    let views = n.views(&environments);
    let mut next = Vec::new();
    let mut t = now;
    for _ in 0..2 {
        let slot = n.schedule.next_slot(t);
        let night = n.schedule.night_of(slot);
        let day = n.schedule.day_of(slot.at);
        let keeps = (slot.phase == Phase::Create && !n.schedule.is_workday(day))
            .then(|| n.schedule.kept_on(day, &views).into_iter().map(str::to_owned).collect());
        next.push(NextSlot {
            phase: slot.phase,
            at: slot.at,
            night,
            skipped_by: runs::night_skipped_by(&mut conn, night).await?,
            keeps,
        });
        t = slot.at;
    }
    let today = n.schedule.local_date(now);
    Ok(StatusReport {
        delete_at: n.settings.delete_at.to_string(),
        create_at: n.settings.create_at.to_string(),
        timezone: n.schedule.tz.name().to_string(),
        last,
        running,
        queued,
        next,
        skipped_nights: runs::skipped_nights_from(&mut conn, today).await?,
        environments,
    })
}

/// What `nightly run … --dry-run` shows: the plan, and the steps each environment would run.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub phase: Phase,
    pub only: Option<String>,
    pub day: NaiveDate,
    pub workday: bool,
    pub planned: Vec<plan::Planned>,
    pub steps: Vec<String>,
}

/// Plans a manual run as it would start now, and runs nothing. Manual runs follow the rules of the
/// current local day (a create on a Saturday keeps `weekend_keep` environments).
pub async fn dry_run(n: &Nightly, phase: Phase, only: Option<&str>, now: DateTime<Utc>) -> anyhow::Result<DryRun> {
    let mut conn = n.pool().acquire().await?;
    let envs = store::list(&mut conn).await?;
    let views = n.views(&envs);
    let day = n.schedule.local_date(now);
    let kept = n.schedule.kept_on(day, &views);
    Ok(DryRun {
        phase,
        only: only.map(str::to_owned),
        day,
        workday: n.schedule.is_workday(day),
        planned: plan::plan(phase, &views, &kept, only, now),
        steps: n.steps(phase).iter().map(|s| s.name.clone()).collect(),
    })
}

/// A manual run was queued for the Nightly leader.
#[derive(Clone, Debug)]
pub struct Requested {
    pub id: i64,
    pub phase: Phase,
    pub only: Option<String>,
    /// Runs that go first (one running, others queued).
    pub ahead: i64,
}

pub async fn request(
    n: &Nightly,
    phase: Phase,
    only: Option<&str>,
    by: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Requested> {
    let mut conn = n.pool().acquire().await?;
    let id = runs::request(&mut conn, phase, only, by, now).await?;
    let ahead = runs::ahead_of(&mut conn, id).await?;
    Ok(Requested {
        id,
        phase,
        only: only.map(str::to_owned),
        ahead,
    })
}

/// What `nightly skip <date>` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipOutcome {
    /// Skipped (`already` when it was before): no delete at `delete`, no create at `create`.
    Skipped {
        night: NaiveDate,
        delete: DateTime<Utc>,
        create: DateTime<Utc>,
        already: bool,
    },
    /// That night's delete has already happened.
    Past(NaiveDate),
}

pub async fn skip(n: &Nightly, night: NaiveDate, by: &str, now: DateTime<Utc>) -> anyhow::Result<SkipOutcome> {
    let delete = shared::schedule::local_instant(n.schedule.tz, night, n.settings.delete_at.0);
    if delete <= now {
        return Ok(SkipOutcome::Past(night));
    }
    let create = n.schedule.next_of(Phase::Create, delete);
    let mut conn = n.pool().acquire().await?;
    let inserted = runs::skip_night(&mut conn, night, by, now).await?;
    Ok(SkipOutcome::Skipped {
        night,
        delete,
        create,
        already: !inserted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_draws_are_uniform_enough() {
        let draws: Vec<f64> = (0..10_000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
        let low = draws.iter().filter(|d| **d < 0.1).count();
        assert!((700..1300).contains(&low), "{low} draws below 0.1");
    }
}
