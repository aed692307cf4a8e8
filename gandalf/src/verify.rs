//! One pull request's verification, SPEC §5.3 steps 1–7: lease the environment, build the
//! candidate on GitHub, plan what it affects, build/deploy/test it, and land exactly the tested
//! commit — or revert what was deployed and say why.
//!
//! Every state change is a conditional update of the item's row (`store::advance`), so a PR that
//! was cancelled or dropped meanwhile stops the run at the next change, and a [`Stop`] watcher
//! kills the running step's process group at once. Landing never repeats a write blindly: after any
//! doubt it re-reads the base branch and the pull request first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::envs::store::{self as envs, LockOutcome, UnlockOutcome};
use shared::envs::{Actor, DefaultLease, EnvState, LeasePolicy};
use shared::github::{CommitSha, Github, GithubError, MergeOutcome, RepoName};
use shared::ids::Holder;
use shared::slack::outbox::{self, Sender};
use shared::steps::{self, Registry, StepEnd, StepSpec};
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::config::{MergeMethod, RepoConfig};
use crate::handler::Gandalf;
use crate::messages::{self, Red};
use crate::store::{self, Item, ItemState};

/// The branch Gandalf builds candidates on.
pub const CANDIDATE_BRANCH: &str = "gandalf/candidate";

/// Why a verification was stopped from outside its steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Cancelled or dropped (the item's row says which and why).
    Withdrawn,
    /// The whole verification ran past the repository's `timeout`.
    TimedOut,
    /// Gandalf is shutting down (or lost its leadership): the item is verified again later.
    Shutdown,
}

/// A stop signal for one verification: the running step watches the flag; the reason is read
/// once it is raised.
#[derive(Clone)]
pub struct Stop {
    flag: watch::Receiver<bool>,
    why: Arc<Mutex<Option<Why>>>,
}

impl Stop {
    pub fn why(&self) -> Option<Why> {
        self.why.lock().expect("stop mutex").clone()
    }

    fn raised(&self) -> bool {
        *self.flag.borrow()
    }
}

pub struct StopHandle {
    tx: watch::Sender<bool>,
    why: Arc<Mutex<Option<Why>>>,
}

impl StopHandle {
    pub fn new() -> (StopHandle, Stop) {
        let (tx, rx) = watch::channel(false);
        let why = Arc::new(Mutex::new(None));
        (StopHandle { tx, why: why.clone() }, Stop { flag: rx, why })
    }

    /// Raises the stop; the first reason wins.
    pub fn raise(&self, why: Why) {
        let mut w = self.why.lock().expect("stop mutex");
        if w.is_none() {
            *w = Some(why);
        }
        drop(w);
        let _ = self.tx.send(true);
    }
}

/// How one verification ended, for the worker's bookkeeping and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Merged,
    Failed,
    /// Cancelled or dropped from outside.
    Withdrawn,
    /// Back in the queue: the base moved before landing, or Gandalf is shutting down.
    Requeued,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Merged => "merged",
            Outcome::Failed => "failed",
            Outcome::Withdrawn => "withdrawn",
            Outcome::Requeued => "requeued",
        }
    }
}

/// What the verification does: the affected set in build levels, what to deploy.
struct Work {
    /// No resource map at the candidate: build and deploy run once for the whole repository.
    everything: bool,
    affected: Vec<String>,
    levels: Vec<Vec<String>>,
    deploy: Vec<String>,
}

/// Marks the whole repository in `deployed` when there is no resource map.
const EVERYTHING: &str = "*";

/// How a verification stopped before it was green.
enum Halt {
    Red(Red),
    /// Stopped from outside ([`Why`]), or the item is no longer active.
    Stopped,
    /// The PR left the queue for a reason found on GitHub (already merged, new commits…).
    Drop(String),
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Halt {
    fn from(e: E) -> Self {
        Halt::Internal(e.into())
    }
}

type Flow<T> = Result<T, Halt>;

pub struct Verifier<'a> {
    pub gandalf: &'a Gandalf,
    pub github: &'a Github,
    pub repo: &'a RepoConfig,
    pub registry: Option<&'a Registry>,
    pub mask: &'a [String],
}

/// The lease Gandalf takes lasts the verification's timeout plus this margin; it is released
/// when the verification ends.
const LEASE_MARGIN: chrono::Duration = chrono::Duration::minutes(15);

impl Verifier<'_> {
    fn name(&self) -> RepoName {
        RepoName::parse(&self.repo.name).expect("repository names are validated at start")
    }

    fn now(&self) -> DateTime<Utc> {
        self.gandalf.clock.now()
    }

    async fn advance(&self, item: &Item, state: ItemState, note: Option<&str>, stop: &Stop) -> Flow<()> {
        if stop.raised() {
            return Err(Halt::Stopped);
        }
        let mut conn = self.gandalf.pool.acquire().await?;
        if store::advance(&mut conn, item.id, state, note).await? {
            Ok(())
        } else {
            Err(Halt::Stopped)
        }
    }

    /// Verifies `item` and lands it or rejects it. Never leaves the item verifying unless Gandalf
    /// is shutting down (then it is queued again for the next leader).
    pub async fn run(&self, item: Item, stop: Stop) -> anyhow::Result<Outcome> {
        let started = self.now();
        let mut deployed_for_revert: Vec<String> = vec![];
        let result = self.verify(&item, &stop, &mut deployed_for_revert).await;
        let outcome = match result {
            Ok(Some(landed)) => {
                self.landed(&item, &landed).await?;
                Outcome::Merged
            }
            Ok(None) => Outcome::Requeued,
            Err(Halt::Drop(reason)) => {
                let mut conn = self.gandalf.pool.acquire().await?;
                if store::finish(&mut conn, item.id, ItemState::Dropped, &reason, self.now()).await? {
                    self.comment(item.pr, &messages::dropped(&reason)).await;
                }
                Outcome::Withdrawn
            }
            Err(Halt::Stopped) if stop.why() == Some(Why::Shutdown) => {
                let mut conn = self.gandalf.pool.acquire().await?;
                store::interrupt_steps(&mut conn, item.id, self.now()).await?;
                store::requeue(&mut conn, item.id, "interrupted by a restart; it is verified again").await?;
                return Ok(Outcome::Requeued);
            }
            Err(Halt::Stopped) if stop.why() == Some(Why::TimedOut) => {
                let red = Red {
                    step: "verification".into(),
                    resource: None,
                    how: format!("timed out after {}", self.repo.timeout),
                    tail: String::new(),
                };
                self.rejected(&item, red, &deployed_for_revert).await?;
                Outcome::Failed
            }
            Err(Halt::Stopped) => {
                self.revert(&item, &deployed_for_revert).await?;
                Outcome::Withdrawn
            }
            Err(Halt::Red(red)) => {
                self.rejected(&item, red, &deployed_for_revert).await?;
                Outcome::Failed
            }
            Err(Halt::Internal(e)) => {
                // Our own trouble (GitHub down past its retries, the database away): the PR is
                // not at fault, so it goes back to the queue rather than being rejected.
                tracing::error!(repo = %self.repo.name, pr = item.pr, error = format!("{e:#}"), "verification failed on our side");
                self.revert(&item, &deployed_for_revert).await?;
                let mut conn = self.gandalf.pool.acquire().await?;
                store::interrupt_steps(&mut conn, item.id, self.now()).await?;
                store::requeue(
                    &mut conn,
                    item.id,
                    "interrupted by an error on Gandalf's side (GitHub or the database); it is verified again",
                )
                .await?;
                return Err(e);
            }
        };
        self.release_environment().await?;
        let secs = (self.now() - started).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("gandalf_verification_seconds", "outcome" => outcome.as_str()).record(secs);
        metrics::counter!("gandalf_outcomes_total", "outcome" => outcome.as_str()).increment(1);
        Ok(outcome)
    }

    /// Steps 1–5. `Ok(Some(sha))` landed as `sha`; `Ok(None)` queued again (the base moved).
    async fn verify(&self, item: &Item, stop: &Stop, deployed: &mut Vec<String>) -> Flow<Option<String>> {
        // 1. The environment.
        self.lease_environment(item, stop).await?;
        {
            let mut conn = self.gandalf.pool.acquire().await?;
            if !store::start_verification(&mut conn, item.id, self.now()).await? {
                return Err(Halt::Stopped);
            }
        }
        let attempt = item.attempts + 1;

        // 2. The candidate: the base tip with the pinned head merged in.
        let gh = self.github;
        let name = self.name();
        let pull = gh.pull(&name, item.pr as u64).await?;
        if pull.merged {
            return Err(Halt::Drop("it was merged outside the queue".into()));
        }
        if !pull.is_open() {
            return Err(Halt::Drop("it was closed".into()));
        }
        if pull.head_sha.as_str() != item.head_sha {
            return Err(Halt::Drop(format!(
                "new commits were pushed ({}); queue it again once they are reviewed",
                pull.head_sha.short()
            )));
        }
        if pull.base_ref != self.repo.base {
            return Err(Halt::Drop("its base branch changed".into()));
        }
        let base_tip = gh
            .branch_tip(&name, &self.repo.base)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the base branch {} does not exist", self.repo.base))?;
        gh.set_branch(&name, CANDIDATE_BRANCH, &base_tip, true).await?;
        let message = format!(
            "Merge #{} ({}) into {}\n\nVerified by Gandalf before landing.",
            item.pr, item.title, self.repo.base
        );
        let candidate = match gh
            .merge(&name, CANDIDATE_BRANCH, &item.head_sha.parse::<CommitSha>()?, &message)
            .await?
        {
            MergeOutcome::Merged(sha) => sha,
            MergeOutcome::Conflict => {
                return Err(Halt::Red(Red {
                    step: "candidate".into(),
                    resource: None,
                    how: format!("it conflicts with `{}`", self.repo.base),
                    tail: String::new(),
                }));
            }
            MergeOutcome::NothingToMerge => {
                return Err(Halt::Drop(format!("its changes are already in `{}`", self.repo.base)));
            }
        };
        {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::set_candidate(&mut conn, item.id, &base_tip.to_string(), &candidate.to_string()).await?;
        }

        // 3. What the change affects.
        let work = self.plan(&name, &base_tip, &candidate).await?;
        {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::set_affected(&mut conn, item.id, &work.affected).await?;
        }

        // 4. Build, deploy, test.
        let ctx = StepContext {
            item,
            attempt,
            sha: candidate.to_string(),
            base_sha: base_tip.to_string(),
            resources: work.affected.join(" "),
        };
        self.advance(item, ItemState::Deploying, None, stop).await?;
        for level in &work.levels {
            self.build_level(&ctx, level, stop).await?;
        }
        if work.everything {
            self.build_level(&ctx, &[EVERYTHING.to_string()], stop).await?;
        }
        let to_deploy: Vec<String> = if work.everything {
            vec![EVERYTHING.into()]
        } else {
            work.deploy.clone()
        };
        for resource in &to_deploy {
            if stop.raised() {
                return Err(Halt::Stopped);
            }
            {
                let mut conn = self.gandalf.pool.acquire().await?;
                store::add_deployed(&mut conn, item.id, resource).await?;
            }
            deployed.push(resource.clone());
            let r = (resource != EVERYTHING).then_some(resource.as_str());
            self.step(&ctx, "deploy", &self.repo.pipeline.deploy, r, stop).await?;
        }
        self.advance(item, ItemState::Testing, None, stop).await?;
        self.step(&ctx, "test", &self.repo.pipeline.test, None, stop).await?;

        // 5. Land exactly the candidate.
        self.advance(item, ItemState::Landing, None, stop).await?;
        self.land(item, &base_tip, &candidate).await
    }

    /// Takes the environment's lease for Gandalf, waiting (and saying so) while a person holds it
    /// or Nightly is working on it.
    async fn lease_environment(&self, item: &Item, stop: &Stop) -> Flow<()> {
        let env = self.repo.environment.as_str();
        // Listening costs a connection of its own: only when there is something to wait for.
        let mut listener: Option<PgListener> = None;
        loop {
            let now = self.now();
            let until = now + self.repo.timeout.chrono() + LEASE_MARGIN;
            let reason = format!("verifying {}#{}", self.repo.name, item.pr);
            let mut tx = self.gandalf.pool.begin().await?;
            let waiting = match envs::lock(
                &mut tx,
                &self.repo.environment,
                &Holder::Gandalf,
                &reason.into(),
                now,
                until,
            )
            .await?
            {
                LockOutcome::Locked { state, .. } => (state != EnvState::Ready).then_some(state),
                LockOutcome::AlreadyYours(_) => {
                    let state = envs::get(&mut tx, &self.repo.environment).await?.map(|e| e.state);
                    state.filter(|s| *s != EnvState::Ready)
                }
                LockOutcome::HeldBy { lease, .. } => {
                    tx.rollback().await?;
                    let note = messages::waiting_for_environment(env, &lease.holder.to_string(), lease.expires_at);
                    self.advance(item, ItemState::WaitingForEnvironment, Some(&note), stop)
                        .await?;
                    self.wait_for_change(&mut listener, stop).await?;
                    continue;
                }
                LockOutcome::Unknown | LockOutcome::NoneFree => {
                    return Err(Halt::Internal(anyhow::anyhow!(
                        "the verification environment {env} is not in service"
                    )));
                }
            };
            match waiting {
                None => {
                    tx.commit().await?;
                    return Ok(());
                }
                Some(state) => {
                    // Deleted, being deleted or created, or faulted: not ours to verify on. Let
                    // go so that Nightly can bring it back, and wait for it.
                    tx.rollback().await?;
                    self.release_environment().await?;
                    let note = messages::waiting_for_nightly(env, state.as_str());
                    self.advance(item, ItemState::WaitingForEnvironment, Some(&note), stop)
                        .await?;
                    self.wait_for_change(&mut listener, stop).await?;
                }
            }
        }
    }

    /// Waits for a lease or an environment to change. The first call only starts listening and
    /// returns at once, so the caller looks again: a change between its look and the LISTEN would
    /// otherwise go unnoticed.
    async fn wait_for_change(&self, listener: &mut Option<PgListener>, stop: &Stop) -> Flow<()> {
        let Some(listener) = listener else {
            *listener = Some(shared::db::listen(&self.gandalf.pool, &["leases", "environments"]).await?);
            return Ok(());
        };
        let mut flag = stop.flag.clone();
        tokio::select! {
            n = listener.recv() => { n?; Ok(()) }
            // A lease that simply expires changes no row until Bobby's expiry worker runs; look again
            // now and then in case no Bobby runs against this database.
            _ = tokio::time::sleep(Duration::from_secs(30)) => Ok(()),
            _ = flag.wait_for(|s| *s) => Err(Halt::Stopped),
        }
    }

    /// Lets go of the environment if Gandalf holds it. The first waiter, if any, gets it.
    pub async fn release_environment(&self) -> anyhow::Result<()> {
        let env = self.repo.environment.as_str();
        let actor = Actor::gandalf();
        let now = self.now();
        let mut tx = self.gandalf.pool.begin().await?;
        if let UnlockOutcome::Released(ended) =
            envs::unlock(&mut tx, &self.repo.environment, &actor, false, now, &handoff_policy()).await?
            && let Some(next) = &ended.next
        {
            let text = format!(
                ":key: {} is yours now: Gandalf finished verifying on it. Your lease ends at {}.",
                shared::slack::mrkdwn::code(env),
                shared::slack::mrkdwn::date(next.expires_at)
            );
            outbox::enqueue_from(
                &mut tx,
                Sender::Gandalf,
                &next.holder.to_string(),
                &shared::slack::Reply::in_channel(text),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn plan(&self, name: &RepoName, base: &CommitSha, candidate: &CommitSha) -> Flow<Work> {
        let changed = self.github.changed_files(name, base, candidate).await?;
        let Some(text) = self.github.file_at(name, &self.repo.resource_map, candidate).await? else {
            return Ok(Work {
                everything: true,
                affected: vec![],
                levels: vec![],
                deploy: vec![],
            });
        };
        match shared::resources::ResourceMap::parse(&text) {
            Ok(map) => {
                let plan = map.plan(&changed);
                Ok(Work {
                    everything: false,
                    affected: plan.affected,
                    levels: plan.levels,
                    deploy: plan.deploy,
                })
            }
            Err(e) => Err(Halt::Red(Red {
                step: "resource map".into(),
                resource: None,
                how: "it does not parse".into(),
                tail: e.render(&self.repo.resource_map),
            })),
        }
    }

    /// Builds one level's resources, `parallelism` at a time; the first failure stops the rest.
    async fn build_level(&self, ctx: &StepContext<'_>, level: &[String], stop: &Stop) -> Flow<()> {
        let parallelism = self.repo.parallelism.max(1) as usize;
        let results = steps::run_level(level, parallelism, &stop.flag, |resource, flag| {
            // Siblings stopped by a failure end as `Stopped`; the reason read later is the outer one.
            let level_stop = Stop {
                flag,
                why: stop.why.clone(),
            };
            async move {
                let r = (resource != EVERYTHING).then_some(resource.as_str());
                self.step(ctx, "build", &self.repo.pipeline.build, r, &level_stop).await
            }
        })
        .await;
        if stop.raised() {
            return Err(Halt::Stopped);
        }
        // The first real failure; the builds it stopped are not the reason.
        let mut stopped = false;
        for r in results {
            match r {
                None | Some(Err(Halt::Stopped)) => stopped = true,
                Some(Err(other)) => return Err(other),
                Some(Ok(())) => {}
            }
        }
        if stopped { Err(Halt::Stopped) } else { Ok(()) }
    }

    /// Runs one step, recorded in `queue_steps`; a failure is a [`Red`].
    async fn step(
        &self,
        ctx: &StepContext<'_>,
        name: &str,
        command: &str,
        resource: Option<&str>,
        stop: &Stop,
    ) -> Flow<()> {
        if stop.raised() {
            return Err(Halt::Stopped);
        }
        let step_id = {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::step_started(&mut conn, ctx.item.id, ctx.attempt, name, resource, self.now()).await?
        };
        let spec = self.spec(ctx, name, command, resource, &ctx.sha);
        let what = format!(
            "gandalf:{}#{}:{name}:{}",
            self.repo.name,
            ctx.item.pr,
            resource.unwrap_or("-")
        );
        let result = steps::run(&spec, &what, self.registry, stop.flag.clone()).await;
        let log = steps::mask(&result.output.text(), self.mask);
        let state = match &result.end {
            StepEnd::Exited(0) => "succeeded",
            StepEnd::Cancelled => "cancelled",
            _ => "failed",
        };
        {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::step_finished(&mut conn, step_id, state, result.end.exit_code(), &log, self.now()).await?;
        }
        metrics::histogram!("gandalf_step_seconds", "step" => name.to_string(), "state" => state)
            .record((result.finished_at - result.started_at).num_milliseconds() as f64 / 1000.0);
        match result.end {
            StepEnd::Exited(0) => Ok(()),
            StepEnd::Cancelled => Err(Halt::Stopped),
            end => Err(Halt::Red(Red {
                step: name.to_string(),
                resource: resource.map(str::to_string),
                how: end.describe(),
                tail: steps::mask(&result.output.last_lines(50), self.mask),
            })),
        }
    }

    fn spec(&self, ctx: &StepContext<'_>, name: &str, command: &str, resource: Option<&str>, sha: &str) -> StepSpec {
        let mut env = vec![
            ("GANDALF_REPO".to_string(), self.repo.name.clone()),
            ("GANDALF_PR".to_string(), ctx.item.pr.to_string()),
            ("GANDALF_SHA".to_string(), sha.to_string()),
            ("GANDALF_BASE_SHA".to_string(), ctx.base_sha.clone()),
            ("GANDALF_ENV".to_string(), self.repo.environment.to_string()),
            ("GANDALF_STEP".to_string(), name.to_string()),
            ("GANDALF_RESOURCES".to_string(), ctx.resources.clone()),
        ];
        if let Some(r) = resource {
            env.push(("GANDALF_RESOURCE".to_string(), r.to_string()));
        }
        StepSpec {
            command: command.to_string(),
            dir: self.gandalf.config.base_dir.clone(),
            env,
            timeout: self.repo.step_timeout.std(),
        }
    }

    /// Step 5: moves the base to exactly the candidate (or merges the PR with the pinned head, for
    /// `merge`/`squash`). `Ok(None)` when the base moved since the candidate was built: the item
    /// goes back to the head of the queue to be verified on the new tip.
    async fn land(&self, item: &Item, base_tip: &CommitSha, candidate: &CommitSha) -> Flow<Option<String>> {
        let name = self.name();
        let gh = self.github;
        for attempt in 1..=5u32 {
            let tried = match self.repo.merge_method {
                MergeMethod::FastForward => gh
                    .set_branch(&name, &self.repo.base, candidate, false)
                    .await
                    .map(|_| candidate.to_string()),
                MergeMethod::Merge | MergeMethod::Squash => {
                    // GitHub merges onto whatever the base is now: only when it is still the tip
                    // the candidate was built on is the result the tree that was tested.
                    match gh.branch_tip(&name, &self.repo.base).await? {
                        Some(tip) if tip == *base_tip => {}
                        _ => return self.base_moved(item).await,
                    }
                    let method = if self.repo.merge_method == MergeMethod::Squash {
                        "squash"
                    } else {
                        "merge"
                    };
                    gh.merge_pull(&name, item.pr as u64, &item.head_sha.parse::<CommitSha>()?, method)
                        .await
                        .map(|sha| sha.to_string())
                }
            };
            match tried {
                Ok(sha) => return Ok(Some(sha)),
                Err(e) => {
                    // Did it land anyway (a lost answer)? Has the base moved? Read before trying again.
                    if let Some(sha) = self.landed_already(item, candidate).await? {
                        return Ok(Some(sha));
                    }
                    match gh.branch_tip(&name, &self.repo.base).await? {
                        Some(tip) if tip == *base_tip => {}
                        _ => return self.base_moved(item).await,
                    }
                    if let GithubError::Refused { status, message } = &e {
                        let pull = gh.pull(&name, item.pr as u64).await?;
                        if pull.head_sha.as_str() != item.head_sha {
                            return Err(Halt::Drop(format!(
                                "new commits were pushed ({}); queue it again once they are reviewed",
                                pull.head_sha.short()
                            )));
                        }
                        return Err(Halt::Red(Red {
                            step: "land".into(),
                            resource: None,
                            how: format!("GitHub refused to land it ({status}: {message})"),
                            tail: String::new(),
                        }));
                    }
                    tracing::warn!(repo = %self.repo.name, pr = item.pr, attempt, error = %e, "landing did not go through; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                }
            }
        }
        Err(Halt::Internal(anyhow::anyhow!("GitHub kept failing while landing")))
    }

    /// Whether the PR landed already: the base is at the candidate (fast-forward) or GitHub says
    /// the PR is merged. Returns the landed commit.
    pub async fn landed_already(&self, item: &Item, candidate: &CommitSha) -> anyhow::Result<Option<String>> {
        let name = self.name();
        if let Some(tip) = self.github.branch_tip(&name, &self.repo.base).await?
            && tip == *candidate
        {
            return Ok(Some(tip.to_string()));
        }
        let pull = self.github.pull(&name, item.pr as u64).await?;
        if pull.merged {
            return Ok(Some(
                self.github
                    .branch_tip(&name, &self.repo.base)
                    .await?
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ));
        }
        Ok(None)
    }

    async fn base_moved(&self, item: &Item) -> Flow<Option<String>> {
        let mut conn = self.gandalf.pool.acquire().await?;
        store::requeue(
            &mut conn,
            item.id,
            &format!(
                "`{}` moved before it could land; verifying again on the new tip",
                self.repo.base
            ),
        )
        .await?;
        metrics::counter!("gandalf_reverifications_total").increment(1);
        Ok(None)
    }

    /// Step 6: the item is merged; announce it (in the same transaction) and comment on the PR.
    pub async fn landed(&self, item: &Item, landed: &str) -> anyhow::Result<()> {
        let now = self.now();
        let mut tx = self.gandalf.pool.begin().await?;
        let current = store::item(&mut tx, item.id).await?.unwrap_or_else(|| item.clone());
        if !store::conclude(&mut tx, item.id, ItemState::Merged, "landed", Some(landed), now).await? {
            return Ok(());
        }
        let verification = now - current.verify_started_at.unwrap_or(now);
        let in_queue = current.verify_started_at.unwrap_or(now) - current.enqueued_at;
        if let Some(channel) = &self.gandalf.config.merges_channel {
            let reply = messages::merge_announcement(&current, landed, &current.affected, in_queue, verification);
            outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, now).await?;
        }
        tx.commit().await?;
        metrics::histogram!("gandalf_time_in_queue_seconds").record(in_queue.num_milliseconds() as f64 / 1000.0);
        let comment = messages::merged_comment(&self.repo.base, landed, &current.affected, verification);
        self.comment(item.pr, &comment).await;
        Ok(())
    }

    /// Step 7 for a red run: revert, record, comment, DM.
    async fn rejected(&self, item: &Item, red: Red, deployed: &[String]) -> anyhow::Result<()> {
        let reverted = self.revert(item, deployed).await?;
        let now = self.now();
        let url = messages::item_url(&self.gandalf.config.public_url, &self.repo.name, item.pr);
        let mut tx = self.gandalf.pool.begin().await?;
        let current = store::item(&mut tx, item.id).await?.unwrap_or_else(|| item.clone());
        let reason = format!("failed at {}: {}", red.what(), red.how);
        if !store::conclude(&mut tx, item.id, ItemState::Failed, &reason, None, now).await? {
            return Ok(());
        }
        if let Some(slack) = &item.queued_by_slack {
            outbox::enqueue_from(
                &mut tx,
                Sender::Gandalf,
                slack,
                &messages::failed_dm(item, &red, &url),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        let comment = match red.step.as_str() {
            "candidate" => messages::conflict_comment(&self.repo.base),
            "resource map" => messages::bad_map_comment(&self.repo.resource_map, &red.tail),
            _ => messages::failed_comment(&red, current.candidate_sha.as_deref(), &url, &reverted),
        };
        self.comment(item.pr, &comment).await;
        Ok(())
    }

    /// Runs `revert` for each resource deployed with the candidate, with the base's tip. A failed
    /// revert pauses the queue and says so in `merges_channel`. Returns what was reverted.
    async fn revert(&self, item: &Item, deployed: &[String]) -> anyhow::Result<Vec<String>> {
        let Some(command) = self.repo.pipeline.revert.clone() else {
            return Ok(vec![]);
        };
        if deployed.is_empty() {
            return Ok(vec![]);
        }
        let name = self.name();
        let mut conn = self.gandalf.pool.acquire().await?;
        let current = store::item(&mut conn, item.id).await?.unwrap_or_else(|| item.clone());
        drop(conn);
        let base = match self.github.branch_tip(&name, &self.repo.base).await {
            Ok(Some(tip)) => tip.to_string(),
            _ => current.base_sha.clone().unwrap_or_default(),
        };
        let ctx = StepContext {
            item: &current,
            attempt: current.attempts,
            sha: base.clone(),
            base_sha: base,
            resources: deployed
                .iter()
                .filter(|r| *r != EVERYTHING)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        };
        // A revert must run even when the verification was cancelled: it gets a stop of its own.
        let (_never, stop) = StopHandle::new();
        let mut reverted = vec![];
        for resource in deployed.iter().rev() {
            let r = (resource != EVERYTHING).then_some(resource.as_str());
            match self.step(&ctx, "revert", &command, r, &stop).await {
                Ok(()) => reverted.push(resource.clone()),
                Err(halt) => {
                    let what = match halt {
                        Halt::Red(red) => format!("{} {}", red.what(), red.how),
                        Halt::Internal(e) => format!("{e:#}"),
                        _ => "stopped".into(),
                    };
                    let now = self.now();
                    let mut tx = self.gandalf.pool.begin().await?;
                    store::set_paused(
                        &mut tx,
                        &self.repo.name,
                        true,
                        &format!("revert of {resource} after #{} failed: {what}", item.pr),
                        Holder::GANDALF,
                        now,
                    )
                    .await?;
                    if let Some(channel) = &self.gandalf.config.merges_channel {
                        let reply =
                            messages::revert_failed(&self.repo.name, item.pr, self.repo.environment.as_str(), &what);
                        outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, now).await?;
                    }
                    tx.commit().await?;
                    tracing::error!(repo = %self.repo.name, pr = item.pr, resource, what, "revert failed; queue paused");
                    break;
                }
            }
        }
        Ok(reverted)
    }

    /// Comments on the PR; a comment that cannot be posted is logged, not retried blindly.
    async fn comment(&self, pr: i32, body: &str) {
        if let Err(e) = self.github.comment(&self.name(), pr as u64, body).await {
            tracing::warn!(repo = %self.repo.name, pr, error = %e, "could not comment on the pull request");
        }
    }
}

struct StepContext<'a> {
    item: &'a Item,
    attempt: i32,
    /// `GANDALF_SHA`: the candidate (for `revert`, the commit to restore).
    sha: String,
    base_sha: String,
    resources: String,
}

/// When Gandalf lets go of an environment someone waits for, the waiter gets an 8-hour lease
/// (Gandalf does not know Bobby's policy; Bobby's reminders and expiry apply as usual).
fn handoff_policy() -> LeasePolicy {
    LeasePolicy {
        default_lease: DefaultLease::For(shared::duration::Span::from_secs(8 * 3600)),
        max_lease: shared::duration::Span::from_secs(3 * 86_400),
        remind_before: shared::duration::Span::from_secs(15 * 60),
        timezone: chrono_tz::UTC,
    }
}
