//! One pull request's verification, SPEC §5.3 steps 1–7: lease the environment, build the
//! candidate on GitHub, plan what it affects, build/deploy/test it, and land exactly the tested
//! commit — or revert what was deployed and say why.
//!
//! Every state change is a conditional update of the item's row (`store::advance`), so a PR that
//! was cancelled or dropped meanwhile stops the run at the next change, and a [`StopSignal`]
//! watcher kills the running step's process group at once. A run that cannot go on says why with
//! a [`Halt`] (red, stopped, dropped, or our own error); [`Verifier::run`] turns each into the
//! item's end. Landing never repeats a write blindly: after any
//! doubt it re-reads the base branch and the pull request first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::copies::Copies;
use shared::envs::store::{self as envs, LockOutcome, UnlockOutcome};
use shared::envs::{Actor, DefaultLease, EnvState, LeasePolicy};
use shared::fence::{FenceError, Lease};
use shared::github::{CommitSha, Github, GithubError, MergeOutcome, PrNumber, PullRequest};
use shared::ids::Holder;
use shared::slack::outbox::{self, Sender};
use shared::steps::{self, Registry, StepEnd, StepSpec};
use shared::working_copy::WorkingCopy;
use sqlx::postgres::PgListener;
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;

use crate::config::{MergeMethod, RepoConfig};
use crate::drop_reason::DropReason;
use crate::handler::Gandalf;
use crate::messages::{self, Phase, Red};
use crate::store::{self, Item, ItemState, StepState};
use crate::{batch, landing, reviews};

/// The branch Gandalf builds candidates on: pointed at the base tip, the pinned head merged in.
pub const WORK_BRANCH: &str = "gandalf/work";

/// The branch holding the candidate, moved once per candidate (when it is complete), so CI that
/// runs on pushes to it runs once per candidate (SPEC §5.3 step 2, §5.7).
pub const CANDIDATE_BRANCH: &str = "gandalf/candidate";

/// Why a verification was stopped from outside its steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Cancelled or dropped (the item's row says which and why).
    Withdrawn,
    /// The whole verification ran past the repository's `timeout`.
    TimedOut,
    /// Gandalf is shutting down (or lost its leadership): the item is verified again later.
    Shutdown,
    /// Gandalf no longer holds the verification environment (an admin forced its lease open):
    /// what was deployed is reverted and the PR is verified again once the environment is free.
    LeaseLost,
}

/// A stop signal for one verification: the running step watches the flag; the reason is read
/// once it is raised.
#[derive(Clone)]
pub struct StopSignal {
    flag: watch::Receiver<bool>,
    why: Arc<Mutex<Option<StopReason>>>,
}

impl StopSignal {
    pub fn why(&self) -> Option<StopReason> {
        self.why.lock().expect("stop mutex").clone()
    }

    fn raised(&self) -> bool {
        *self.flag.borrow()
    }
}

pub struct StopHandle {
    tx: watch::Sender<bool>,
    why: Arc<Mutex<Option<StopReason>>>,
}

impl StopHandle {
    pub fn new() -> (StopHandle, StopSignal) {
        let (tx, rx) = watch::channel(false);
        let why = Arc::new(Mutex::new(None));
        (StopHandle { tx, why: why.clone() }, StopSignal { flag: rx, why })
    }

    /// Raises the stop; the first reason wins.
    pub fn raise(&self, why: StopReason) {
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
    /// A batch was red: its members are back in the queue, to be bisected.
    BatchRed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Merged => "merged",
            Outcome::Failed => "failed",
            Outcome::Withdrawn => "withdrawn",
            Outcome::Requeued => "requeued",
            Outcome::BatchRed => "batch_red",
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

/// How a verification stopped before it was green. Not a refusal: nobody typed a command; each
/// ends the item its own way in [`Verifier::run`].
enum Halt {
    /// The PR is at fault: rejected, with what was deployed reverted.
    Red(Red),
    /// Stopped from outside ([`StopReason`]), or the item is no longer active.
    Stopped,
    /// A PR (the item with this id) left the queue for a reason found on GitHub (already merged,
    /// new commits…).
    Drop(i64, DropReason),
    /// Our own trouble: the item goes back to the queue.
    Internal(anyhow::Error),
    /// No working copy could be had (no git, no route, GitHub's git down, a full disk): never the
    /// PR's fault. The item goes back to the queue and the queue pauses, saying why (SPEC §5.8).
    NoCopy(String),
    /// GitHub shows a member merged, and the base holds a commit an earlier attempt recorded: a
    /// landing answered after its replica lost the queues (SPEC §8). What landed is concluded.
    LandedEarlier,
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
    /// Where the steps get their code; `None` without a checkout.
    pub copies: Option<&'a Copies>,
    pub registry: Option<&'a Registry>,
    pub mask: &'a [String],
    /// The queues' lease (SPEC §8): every write of the verification checks it, in its transaction.
    pub lease: &'a Lease,
    /// Raised when the lease could not be kept: even a revert stops then (its step killed), since
    /// another replica is about to own the queues; a graceful shutdown lets a revert finish.
    pub lease_lost: watch::Receiver<bool>,
}

/// The lease Gandalf takes lasts the verification's timeout plus this margin; it is released
/// when the verification ends.
pub(crate) const LEASE_MARGIN: chrono::Duration = chrono::Duration::minutes(15);

impl Verifier<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.gandalf.clock.now()
    }

    /// A transaction for a write of this verification, fenced by the queues' lease: refused
    /// ([`shared::fence::FenceError::Lost`]) once another replica may own the work, and holding the
    /// lease row until it commits, so a take-over waits for it.
    async fn write(&self) -> Result<Transaction<'static, Postgres>, FenceError> {
        self.lease.begin().await
    }

    /// Puts every member back in the queue (each keeps its place), their running steps marked
    /// interrupted, in one fenced transaction.
    async fn requeue_all(&self, members: &[Item], note: &str) -> anyhow::Result<()> {
        let now = self.now();
        let mut tx = self.write().await?;
        for m in members {
            store::interrupt_steps(&mut tx, m.id, now).await?;
            store::requeue(&mut tx, m.id, note).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether this replica is losing the queues' lease: nothing more of the work may start.
    fn losing_lease(&self) -> bool {
        *self.lease_lost.borrow()
    }

    /// Moves every member of the candidate to `state`; one that has left (cancelled, dropped)
    /// stops the run.
    async fn advance_all(&self, members: &[Item], state: ItemState, note: Option<&str>, stop: &StopSignal) -> Flow<()> {
        if stop.raised() {
            return Err(Halt::Stopped);
        }
        let mut tx = self.write().await?;
        for m in members {
            if !store::advance(&mut tx, m.id, state, note).await? {
                return Err(Halt::Stopped);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Verifies a candidate of `members` (one PR, or a batch in queue order, SPEC §5.6) and lands
    /// it or rejects it. The first member leads: the steps are recorded on it, and the others'
    /// rows follow its state. Never leaves an item verifying unless Gandalf is shutting down (then
    /// they are queued again for the next leader).
    pub async fn run(&self, members: Vec<Item>, stop: StopSignal) -> anyhow::Result<Outcome> {
        let started = self.now();
        let mut members = members;
        let mut deployed_for_revert: Vec<String> = vec![];
        let result = self.verify(&mut members, &stop, &mut deployed_for_revert).await;
        let outcome = match result {
            Ok(Some(landed)) => {
                self.landed(&landed).await?;
                self.learn(&members, true).await?;
                Outcome::Merged
            }
            Ok(None) => Outcome::Requeued,
            Err(halt) => match self.halted(&members, halt, &stop, &deployed_for_revert).await? {
                Some(outcome) => {
                    if matches!(outcome, Outcome::Failed | Outcome::BatchRed) {
                        self.learn(&members, false).await?;
                    }
                    outcome
                }
                // Requeued without letting go of the environment: the next leader verifies it.
                None => return Ok(Outcome::Requeued),
            },
        };
        self.release_environment().await?;
        let secs = (self.now() - started).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("gandalf_verification_seconds", "outcome" => outcome.as_str()).record(secs);
        metrics::counter!("gandalf_outcomes_total", "outcome" => outcome.as_str()).increment(1);
        Ok(outcome)
    }

    /// What a completed verification of `members` teaches the bisection (SPEC §5.6): a green
    /// candidate clears what it held from the known-red group, a red batch becomes the known-red
    /// group, a solo red run forgets it. Stored with the queue, so a restart mid-bisection goes on
    /// where it was.
    async fn learn(&self, members: &[Item], green: bool) -> anyhow::Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let known = batch::Knowledge {
            known_red: store::known_red(&mut tx, &self.repo.name).await?,
        };
        let candidate = batch::Candidate {
            members: members.iter().map(|m| m.pr).collect(),
            step: batch::Step::Fresh,
        };
        let verdict = known.outcome(&candidate, green);
        if verdict.knowledge != known {
            store::set_known_red(&mut tx, &self.repo.name, &verdict.knowledge.known_red).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends the members of a candidate whose verification halted, as the [`Halt`] says. `None`
    /// when they went back to the queue because Gandalf is shutting down; an `Err` is our own
    /// trouble (they are queued again, and the error is the worker's to log).
    async fn halted(
        &self,
        members: &[Item],
        halt: Halt,
        stop: &StopSignal,
        deployed: &[String],
    ) -> anyhow::Result<Option<Outcome>> {
        let Some(item) = members.first() else {
            // Every member conflicted or left while the candidate was built: nothing ran.
            return Ok(Some(Outcome::Withdrawn));
        };
        let batch = members.len() > 1;
        let outcome = match halt {
            Halt::Drop(id, reason) => {
                // Found at the re-check before landing, after the deploys: revert them first.
                self.revert(item, deployed).await?;
                let mut tx = self.write().await?;
                let gone = members.iter().find(|m| m.id == id);
                let finished = match gone {
                    Some(gone) => store::finish(&mut tx, gone.id, &reason, self.now()).await?,
                    None => false,
                };
                // The rest of a batch is not at fault: back to the queue, in its order.
                for m in members.iter().filter(|m| m.id != id) {
                    store::interrupt_steps(&mut tx, m.id, self.now()).await?;
                    store::requeue(&mut tx, m.id, messages::batch_member_left()).await?;
                }
                tx.commit().await?;
                if let Some(gone) = gone.filter(|_| finished) {
                    self.comment(gone.pr, &messages::dropped(&reason)).await;
                }
                Outcome::Withdrawn
            }
            Halt::Stopped if stop.why() == Some(StopReason::Shutdown) => {
                // Shutting down, or the lease is being lost: with the lease lost these writes are
                // refused, and the next owner puts the members back in the queue itself.
                self.requeue_all(members, messages::interrupted_by_restart()).await?;
                return Ok(None);
            }
            Halt::Stopped if stop.why() == Some(StopReason::LeaseLost) => {
                tracing::warn!(repo = %self.repo.name, pr = %item.pr, env = %self.repo.environment, "the verification environment was taken away; reverting and queueing the PR again");
                self.revert(item, deployed).await?;
                let env = self.repo.environment.as_str();
                // Back in the queue and announced in one transaction: the outbox reports what
                // committed.
                let mut tx = self.write().await?;
                for m in members {
                    store::interrupt_steps(&mut tx, m.id, self.now()).await?;
                    store::requeue(&mut tx, m.id, &messages::lease_lost(env)).await?;
                }
                if let Some(channel) = &self.gandalf.config.merges_channel {
                    let reply = messages::lease_lost_announcement(&self.repo.name, item.pr, env);
                    outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, self.now()).await?;
                }
                tx.commit().await?;
                for m in members {
                    self.comment(m.pr, &messages::lease_lost_comment(env)).await;
                }
                return Ok(None);
            }
            Halt::Stopped if stop.why() == Some(StopReason::TimedOut) => {
                // SPEC §5.7: a required check that never started is named as the reason.
                let red = match crate::checks::required::timed_out_reason(self.gandalf, self.repo, item).await? {
                    Some(how) => Red::at(Phase::Verification, how),
                    None => Red::timed_out(self.repo.timeout),
                };
                self.red(members, red, deployed).await?
            }
            Halt::Stopped => {
                // A member was cancelled or dropped: the batch stops; the others keep their place.
                self.revert(item, deployed).await?;
                self.requeue_all(members, messages::batch_member_left()).await?;
                Outcome::Withdrawn
            }
            Halt::Red(red) => self.red(members, red, deployed).await?,
            Halt::LandedEarlier => {
                // Handled where it arises (step 5); were it to get here, back to the queue: the
                // next attempt finds the landing before building anything.
                self.requeue_all(members, &messages::base_moved(&self.repo.base))
                    .await?;
                Outcome::Requeued
            }
            Halt::NoCopy(e) => {
                tracing::error!(repo = %self.repo.name, pr = %item.pr, error = %e, "no working copy; pausing the queue");
                self.revert(item, deployed).await?;
                let why = messages::no_working_copy(&e);
                let now = self.now();
                let mut tx = self.write().await?;
                for m in members {
                    store::interrupt_steps(&mut tx, m.id, now).await?;
                    store::requeue(&mut tx, m.id, &why).await?;
                }
                store::set_paused(&mut tx, &self.repo.name, true, &why, &Holder::Gandalf, now).await?;
                if let Some(channel) = &self.gandalf.config.merges_channel {
                    let reply = messages::no_working_copy_pause(&self.repo.name, item.pr, &e);
                    outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, now).await?;
                }
                tx.commit().await?;
                Outcome::Requeued
            }
            Halt::Internal(e) => {
                // Our own trouble (GitHub down past its retries, the database away): the PR is
                // not at fault, so it goes back to the queue rather than being rejected.
                tracing::error!(repo = %self.repo.name, pr = %item.pr, batch, error = format!("{e:#}"), "verification failed on our side");
                if !self.losing_lease() {
                    self.revert(item, deployed).await?;
                }
                self.requeue_all(members, messages::interrupted_by_error()).await?;
                return Err(e);
            }
        };
        Ok(Some(outcome))
    }

    /// A red candidate. Alone, the PR is rejected with the run's log; in a batch nobody is: what
    /// was deployed is reverted and the members go back to the queue in their order, to be
    /// bisected (only a solo red run rejects, SPEC §5.6).
    async fn red(&self, members: &[Item], red: Red, deployed: &[String]) -> anyhow::Result<Outcome> {
        let item = &members[0];
        if members.len() == 1 {
            self.rejected(item, red, deployed).await?;
            return Ok(Outcome::Failed);
        }
        self.revert(item, deployed).await?;
        let note = messages::batch_red(&red.summary(), members.len());
        self.requeue_all(members, &note).await?;
        metrics::counter!("gandalf_batches_red_total").increment(1);
        Ok(Outcome::BatchRed)
    }

    /// Steps 1–5. `Ok(Some(landed))` landed each member as its commit; `Ok(None)` queued again
    /// (the base moved). Members that conflict, or whose changes are in the base already, leave
    /// `members` while the candidate is built.
    async fn verify(
        &self,
        members: &mut Vec<Item>,
        stop: &StopSignal,
        deployed: &mut Vec<String>,
    ) -> Flow<Option<Vec<(Item, CommitSha)>>> {
        // 1. The environment. The members are tied to their lead first: one candidate verifies
        // at a time per repository, and the schema counts leads.
        let first = members[0].clone();
        {
            let mut tx = self.write().await?;
            let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
            store::set_batch(&mut tx, &ids).await?;
            tx.commit().await?;
        }
        self.lease_environment(&first, members, stop).await?;
        {
            let mut tx = self.write().await?;
            for m in members.iter() {
                if !store::start_verification(&mut tx, m.id, self.now()).await? {
                    return Err(Halt::Stopped);
                }
            }
            tx.commit().await?;
        }

        // 2. The candidate: the base tip with each pinned head merged in turn.
        let (base_tip, candidate, steps) = self.build_candidate(members).await?;
        let item = members[0].clone();
        let copy = self
            .working_copy(&candidate, &format!("verify-{}-{}", self.repo.name, item.pr))
            .await?;

        // 3. What the change affects.
        let work = self.plan(&base_tip, &candidate, copy.is_some()).await?;
        {
            let mut tx = self.write().await?;
            for m in members.iter() {
                store::set_affected(&mut tx, m.id, &work.affected).await?;
            }
            tx.commit().await?;
        }

        // 4. Build, deploy, test.
        let ctx = StepContext {
            item: &item,
            members,
            attempt: item.attempts + 1,
            sha: candidate.clone(),
            base_sha: base_tip.clone(),
            resources: work.affected.join(" "),
            prs: members.iter().map(|m| m.pr.to_string()).collect::<Vec<_>>().join(" "),
            dir: self.step_dir(copy.as_ref()),
        };
        // SPEC §5.7 (issue 17): while the repository's `required_checks` run on the candidate.
        self.with_required_checks(members, &candidate, stop, |stop| async move {
            self.build_deploy_test(&ctx, &work, &stop, deployed).await
        })
        .await?;
        drop(copy);

        // 5. Land exactly the candidate, if every member may still land.
        let mut pulls = vec![];
        for m in members.iter() {
            match self.recheck(m).await {
                Ok(pull) => pulls.push(pull),
                Err(Halt::LandedEarlier) => return self.landed_by_earlier_attempt(members).await,
                Err(halt) => return Err(halt),
            }
        }
        self.advance_all(members, ItemState::Landing, None, stop).await?;
        self.land(members, &pulls, &base_tip, &candidate, &steps).await
    }

    /// Runs `pipeline` (step 4) while waiting for the repository's `required_checks` on the
    /// candidate (SPEC §5.7, issue 17). The pipeline gets a stop of its own that follows `stop`,
    /// so a red required check stops a running step the way a cancel does (its process group
    /// killed, its row closed) rather than dropping it mid-flight; a red pipeline ends the wait.
    /// Green pipeline, checks still running: the item shows `waiting_for_checks`.
    async fn with_required_checks<'s, F, Fut>(
        &'s self,
        members: &'s [Item],
        candidate: &'s CommitSha,
        stop: &'s StopSignal,
        pipeline: F,
    ) -> Flow<()>
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: std::future::Future<Output = Flow<()>> + 's,
    {
        if self.repo.required_checks.is_empty() {
            return pipeline(stop.clone()).await;
        }
        let item = &members[0];
        let (inner_handle, inner) = StopHandle::new();
        let inner = &inner;
        let checks_done = std::sync::atomic::AtomicBool::new(false);
        let pipeline_failed = tokio::sync::Notify::new();
        let run_pipeline = async {
            let r = pipeline(inner.clone()).await;
            if r.is_err() {
                pipeline_failed.notify_one();
                return r;
            }
            if !checks_done.load(std::sync::atomic::Ordering::SeqCst) {
                let note = messages::checks::waiting_for_checks_note(&self.repo.required_checks);
                self.advance_all(members, ItemState::WaitingForChecks, Some(&note), inner)
                    .await?;
            }
            Ok(())
        };
        let waiter = crate::checks::required::Waiter {
            gandalf: self.gandalf,
            github: self.github,
            repo: self.repo,
            item,
            candidate,
        };
        let wait_checks = async {
            let stopped = || stop.raised() || inner.raised();
            let verdict = tokio::select! {
                v = waiter.wait(&stopped) => v,
                _ = pipeline_failed.notified() => return Ok(()),
            };
            match verdict {
                Ok(crate::checks::required::Verdict::Passed) => {
                    checks_done.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
                Ok(crate::checks::required::Verdict::Red(red)) => {
                    inner_handle.raise(StopReason::Withdrawn);
                    Err(Halt::Red(red))
                }
                Ok(crate::checks::required::Verdict::Stopped) => Err(Halt::Stopped),
                Err(e) => {
                    inner_handle.raise(StopReason::Withdrawn);
                    Err(Halt::Internal(e))
                }
            }
        };
        // The worker's stop (cancel, timeout, shutdown, lease lost) reaches the pipeline's steps.
        let follow = async {
            let mut flag = stop.flag.clone();
            let _ = flag.wait_for(|raised| *raised).await;
            inner_handle.raise(stop.why().unwrap_or(StopReason::Withdrawn));
            std::future::pending::<()>().await
        };
        let (p, c) = tokio::select! {
            both = async { tokio::join!(run_pipeline, wait_checks) } => both,
            _ = follow => unreachable!("following the stop never ends"),
        };
        // A red check stopped the pipeline: the check is why.
        match (p, c) {
            (_, Err(Halt::Red(red))) => Err(Halt::Red(red)),
            (Err(halt), _) => Err(halt),
            (Ok(()), c) => c,
        }
    }

    /// Step 2: checks each PR is still what was queued, points [`WORK_BRANCH`] at the base's tip
    /// and merges each pinned head into it in turn (a conflicting PR is rejected and the rest go
    /// on without it), then moves [`CANDIDATE_BRANCH`] to the result once. Returns the base tip,
    /// the candidate, and the commit after each remaining member's merge (a squash landing makes
    /// one commit per PR of those trees).
    async fn build_candidate(&self, members: &mut Vec<Item>) -> Flow<(CommitSha, CommitSha, Vec<CommitSha>)> {
        let gh = self.github;
        let name = &self.repo.name;
        let base_tip = gh
            .branch_tip(name, &self.repo.base)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the base branch {} does not exist", self.repo.base))?;
        gh.set_branch(name, WORK_BRANCH, &base_tip, true).await?;
        let mut kept = vec![];
        let mut steps = vec![];
        let alone = members.len() == 1;
        for m in std::mem::take(members) {
            // A landing answered after the replica that made it lost the queues (SPEC §8): the
            // base holds a commit an earlier attempt recorded. Concluded as landed, never
            // verified or landed again.
            if let Some(sha) = self.landed_already(&m).await? {
                tracing::warn!(repo = %name, pr = %m.pr, %sha, "found landed by an earlier attempt");
                self.landed(&[(m, sha)]).await?;
                continue;
            }
            let pull = gh.pull(name, m.pr).await?;
            if let Some(reason) = DropReason::from_pull(&pull, &m.head_sha, &self.repo.base) {
                if alone {
                    members.push(m.clone());
                    return Err(Halt::Drop(m.id, reason));
                }
                self.leave_batch(&m, &reason).await?;
                continue;
            }
            let message = messages::candidate_message(m.pr, &pull.head_ref, &m.title);
            match gh.merge(name, WORK_BRANCH, &m.head_sha, &message).await? {
                MergeOutcome::Merged(sha) => {
                    steps.push(sha);
                    kept.push(m);
                }
                MergeOutcome::Conflict if alone => {
                    members.push(m);
                    return Err(Halt::Red(Red::conflicts(&self.repo.base)));
                }
                MergeOutcome::Conflict => {
                    // Rejected on its own account; the batch goes on without it.
                    self.rejected(&m, Red::conflicts(&self.repo.base), &[]).await?;
                }
                MergeOutcome::NothingToMerge => {
                    let reason = DropReason::AlreadyInBase {
                        base: self.repo.base.clone(),
                    };
                    if alone {
                        members.push(m.clone());
                        return Err(Halt::Drop(m.id, reason));
                    }
                    self.leave_batch(&m, &reason).await?;
                }
            }
        }
        *members = kept;
        let Some(candidate) = steps.last().cloned() else {
            return Err(Halt::Stopped);
        };
        // One move of the candidate branch, to the finished candidate.
        gh.set_branch(name, CANDIDATE_BRANCH, &candidate, true).await?;
        let mut tx = self.write().await?;
        for m in members.iter() {
            store::set_candidate(&mut tx, m.id, &base_tip, &candidate).await?;
        }
        tx.commit().await?;
        Ok((base_tip, candidate, steps))
    }

    /// A member of a batch that left while its candidate was built (closed, new commits, already
    /// in the base): dropped with a comment; the batch goes on without it.
    async fn leave_batch(&self, m: &Item, reason: &DropReason) -> anyhow::Result<()> {
        let mut tx = self.write().await?;
        let finished = store::finish(&mut tx, m.id, reason, self.now()).await?;
        tx.commit().await?;
        if finished {
            self.comment(m.pr, &messages::dropped(reason)).await;
        }
        Ok(())
    }

    /// Step 4: builds the affected resources level by level, deploys them (each recorded before
    /// it starts, so a red run reverts even a half-done deploy), then runs the tests.
    async fn build_deploy_test(
        &self,
        ctx: &StepContext<'_>,
        work: &Work,
        stop: &StopSignal,
        deployed: &mut Vec<String>,
    ) -> Flow<()> {
        let item = ctx.item;
        self.advance_all(ctx.members, ItemState::Deploying, None, stop).await?;
        for level in &work.levels {
            self.build_level(ctx, level, stop).await?;
        }
        if work.everything {
            self.build_level(ctx, &[EVERYTHING.to_string()], stop).await?;
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
                let mut tx = self.write().await?;
                store::add_deployed(&mut tx, item.id, resource).await?;
                tx.commit().await?;
            }
            deployed.push(resource.clone());
            let r = (resource != EVERYTHING).then_some(resource.as_str());
            self.step(ctx, Phase::Deploy, &self.repo.pipeline.deploy, r, stop)
                .await?;
        }
        self.advance_all(ctx.members, ItemState::Testing, None, stop).await?;
        // `test_retries`: a red test runs again on the same deployment; a pass on a retry lands,
        // and the run is marked flaky.
        let mut retries = 0;
        loop {
            match self.step(ctx, Phase::Test, &self.repo.pipeline.test, None, stop).await {
                Ok(()) => break,
                Err(Halt::Red(red)) if retries < self.repo.test_retries && !stop.raised() => {
                    retries += 1;
                    tracing::info!(repo = %self.repo.name, pr = %item.pr, retries, failure = red.summary(), "test failed; running it again");
                }
                Err(halt) => return Err(halt),
            }
        }
        if retries > 0 {
            let mut tx = self.write().await?;
            store::set_flaky(&mut tx, item.id).await?;
            tx.commit().await?;
            metrics::counter!("gandalf_flaky_total").increment(1);
        }
        Ok(())
    }

    /// Takes the environment's lease for Gandalf, waiting (and saying so) while a person holds it
    /// or Nightly is working on it.
    async fn lease_environment(&self, item: &Item, members: &[Item], stop: &StopSignal) -> Flow<()> {
        let env = &self.repo.environment;
        // Listening costs a connection of its own: only when there is something to wait for.
        let mut listener: Option<PgListener> = None;
        loop {
            let now = self.now();
            let until = now + self.repo.timeout.chrono() + LEASE_MARGIN;
            let reason = messages::lease_reason(&self.repo.name, item.pr);
            let mut tx = self.write().await?;
            let waiting = match envs::lock(&mut tx, env, &Holder::Gandalf, &reason.into(), now, until).await? {
                LockOutcome::Locked { state, .. } => (state != EnvState::Ready).then_some(state),
                LockOutcome::AlreadyYours(_) => {
                    let state = envs::get(&mut tx, &self.repo.environment).await?.map(|e| e.state);
                    state.filter(|s| *s != EnvState::Ready)
                }
                LockOutcome::HeldBy { lease, .. } => {
                    tx.rollback().await?;
                    let note = messages::waiting_for_environment(env.as_str(), &lease.holder, lease.expires_at);
                    self.advance_all(members, ItemState::WaitingForEnvironment, Some(&note), stop)
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
                    let note = messages::waiting_for_nightly(env.as_str(), state.as_str());
                    self.advance_all(members, ItemState::WaitingForEnvironment, Some(&note), stop)
                        .await?;
                    self.wait_for_change(&mut listener, stop).await?;
                }
            }
        }
    }

    /// Waits for a lease or an environment to change. The first call only starts listening and
    /// returns at once, so the caller looks again: a change between its look and the LISTEN would
    /// otherwise go unnoticed.
    async fn wait_for_change(&self, listener: &mut Option<PgListener>, stop: &StopSignal) -> Flow<()> {
        let Some(listener) = listener else {
            *listener = Some(shared::db::listen(&self.gandalf.pool, &["leases", "environments"]).await?);
            return Ok(());
        };
        let mut flag = stop.flag.clone();
        tokio::select! {
            n = shared::db::next_change(listener) => { n?; Ok(()) }
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
        let mut tx = self.write().await?;
        if let UnlockOutcome::Released(ended) =
            envs::unlock(&mut tx, &self.repo.environment, &actor, false, now, &handoff_policy()).await?
            && let Some(next) = &ended.next
        {
            let dm = messages::environment_handed_over(env, next.expires_at);
            outbox::enqueue_from(&mut tx, Sender::Gandalf, &next.holder.to_string(), &dm, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Step 3: what the candidate affects, from its resource map (everything without one).
    async fn plan(&self, base: &CommitSha, candidate: &CommitSha, have_copy: bool) -> Flow<Work> {
        let name = &self.repo.name;
        let changed = if have_copy {
            // Both commits are in the mirror: git's list is complete, however long.
            let copies = self.copies.ok_or_else(|| anyhow::anyhow!("checkout vanished"))?;
            let paths = copies.changed_files(base, candidate).await.map_err(Halt::NoCopy)?;
            shared::github::ChangedFiles { paths, complete: true }
        } else {
            self.github.changed_files(name, base, candidate).await?
        };
        let Some(text) = self.github.file_at(name, &self.repo.resource_map, candidate).await? else {
            return Ok(Work {
                everything: true,
                affected: vec![],
                levels: vec![],
                deploy: vec![],
            });
        };
        // A map changes far less often than PRs land: parsed once per blob, for the process.
        match shared::resources::MapCache::global().parse(&text) {
            Ok(map) => {
                let plan = if changed.complete {
                    map.plan(&changed.paths)
                } else {
                    // GitHub stops listing at 300 files: what is past them is unknown, so every
                    // enabled resource counts as affected (never plan from a truncated list).
                    tracing::warn!(repo = %self.repo.name, files = changed.paths.len(), "the change list may be cut short; everything is affected");
                    map.plan_all()
                };
                Ok(Work {
                    everything: false,
                    affected: plan.affected,
                    levels: plan.levels,
                    deploy: plan.deploy,
                })
            }
            Err(e) => Err(Halt::Red(Red::bad_map(e.render(&self.repo.resource_map)))),
        }
    }

    /// Builds one level's resources, `parallelism` at a time; the first failure stops the rest.
    async fn build_level(&self, ctx: &StepContext<'_>, level: &[String], stop: &StopSignal) -> Flow<()> {
        let parallelism = self.repo.parallelism.max(1) as usize;
        let results = steps::run_level(level, parallelism, &stop.flag, |resource, flag| {
            // Siblings stopped by a failure end as `Stopped`; the reason read later is the outer one.
            let level_stop = StopSignal {
                flag,
                why: stop.why.clone(),
            };
            async move {
                let r = (resource != EVERYTHING).then_some(resource.as_str());
                self.step(ctx, Phase::Build, &self.repo.pipeline.build, r, &level_stop)
                    .await
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
        phase: Phase,
        command: &str,
        resource: Option<&str>,
        stop: &StopSignal,
    ) -> Flow<()> {
        if stop.raised() {
            return Err(Halt::Stopped);
        }
        let name = phase.as_str();
        // Recorded under the lease before the process starts: a replica that lost the queues
        // starts no step.
        let step_id = {
            let mut tx = self.write().await?;
            let id = store::step_started(&mut tx, ctx.item.id, ctx.attempt, name, resource, self.now()).await?;
            tx.commit().await?;
            id
        };
        let spec = self.spec(ctx, name, command, resource);
        let what = format!(
            "gandalf:{}#{}:{name}:{}",
            self.repo.name,
            ctx.item.pr,
            resource.unwrap_or("-")
        );
        let result = steps::run(&spec, &what, self.registry, stop.flag.clone()).await;
        let log = steps::mask(&result.output.text(), self.mask);
        let state = match &result.end {
            StepEnd::Exited(0) => StepState::Succeeded,
            StepEnd::Cancelled => StepState::Cancelled,
            _ => StepState::Failed,
        };
        {
            let mut tx = self.write().await?;
            store::step_finished(&mut tx, step_id, state, result.end.exit_code(), &log, self.now()).await?;
            tx.commit().await?;
        }
        metrics::histogram!("gandalf_step_seconds", "step" => name, "state" => state.as_str())
            .record((result.finished_at - result.started_at).num_milliseconds() as f64 / 1000.0);
        match result.end {
            StepEnd::Exited(0) => Ok(()),
            StepEnd::Cancelled => Err(Halt::Stopped),
            end => Err(Halt::Red(Red {
                step: phase,
                resource: resource.map(str::to_string),
                how: end.describe(),
                tail: steps::mask(&result.output.last_lines(50), self.mask),
            })),
        }
    }

    fn spec(&self, ctx: &StepContext<'_>, name: &str, command: &str, resource: Option<&str>) -> StepSpec {
        let mut env = vec![
            ("GANDALF_REPO".to_string(), self.repo.name.to_string()),
            ("GANDALF_PR".to_string(), ctx.item.pr.to_string()),
            ("GANDALF_SHA".to_string(), ctx.sha.to_string()),
            ("GANDALF_BASE_SHA".to_string(), ctx.base_sha.to_string()),
            ("GANDALF_ENV".to_string(), self.repo.environment.to_string()),
            ("GANDALF_STEP".to_string(), name.to_string()),
            ("GANDALF_RESOURCES".to_string(), ctx.resources.clone()),
            ("GANDALF_PRS".to_string(), ctx.prs.clone()),
        ];
        if let Some(r) = resource {
            env.push(("GANDALF_RESOURCE".to_string(), r.to_string()));
        }
        StepSpec {
            command: command.to_string(),
            dir: ctx.dir.clone(),
            env,
            sandbox: self.repo.sandbox.clone(),
            timeout: self.repo.step_timeout.std(),
        }
    }

    /// Step 5, after [`Verifier::recheck`]: moves the base to exactly the tested tree by a
    /// fast-forward (never force), so a push to the base meanwhile makes GitHub refuse the move
    /// instead of landing an untested tree. `merge` lands the candidate itself; `squash` one commit
    /// per PR, chained in candidate order on the tested base tip, each with the tree of the
    /// candidate up to that PR (the last one's is the tested tree), all recorded before the base
    /// moves. `Ok(None)` when the base moved since the candidate was built: the members go back to
    /// the head of the queue.
    async fn land(
        &self,
        members: &[Item],
        pulls: &[PullRequest],
        base_tip: &CommitSha,
        candidate: &CommitSha,
        steps: &[CommitSha],
    ) -> Flow<Option<Vec<(Item, CommitSha)>>> {
        let name = &self.repo.name;
        let gh = self.github;
        let item = &members[0];
        let targets: Vec<CommitSha> = match self.repo.merge_method {
            MergeMethod::Merge => vec![candidate.clone(); members.len()],
            MergeMethod::Squash => {
                let mut chain = vec![];
                let mut parent = base_tip.clone();
                for ((m, pull), step) in members.iter().zip(pulls).zip(steps) {
                    let sha = self.squash_commit(m, pull, &parent, step).await?;
                    parent = sha.clone();
                    chain.push(sha);
                }
                chain
            }
        };
        {
            let mut tx = self.write().await?;
            for (m, target) in members.iter().zip(&targets) {
                if !store::set_landing_commit(&mut tx, m.id, target).await? {
                    return Err(Halt::Stopped);
                }
            }
            tx.commit().await?;
        }
        let tip = targets.last().cloned().expect("a candidate has members");
        let landed = || members.iter().cloned().zip(targets.iter().cloned()).collect::<Vec<_>>();
        // SPEC §5.7: the status `gandalf` = `success` on exactly the commit the base moves to, so a
        // branch rule requiring `gandalf` lets this landing through. Not landing without it: the
        // rule would refuse the move and the PR would read as rejected.
        let url = messages::item_url(&self.gandalf.config.public_url, name, item.pr);
        crate::checks::landing_status(gh, name, &tip, &url).await?;
        for attempt in 1..=5u32 {
            let e = match self.move_base(&tip).await? {
                Ok(()) => return Ok(Some(landed())),
                Err(e) => e,
            };
            // Did it land anyway (a lost answer)? Has the base moved? Read before trying again.
            if let Some(sha) = self.landed_already(&members[members.len() - 1]).await? {
                if sha == tip {
                    return Ok(Some(landed()));
                }
                return self.landed_by_earlier_attempt(members).await;
            }
            if !self.base_still_at(base_tip).await? {
                return self.base_moved(members).await;
            }
            if let GithubError::Refused { status, message } = &e {
                return Err(self.refused_to_land(members, *status, message).await?);
            }
            tracing::warn!(repo = %self.repo.name, pr = %item.pr, attempt, error = %e, "landing did not go through; trying again");
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
        }
        Err(Halt::Internal(anyhow::anyhow!("GitHub kept failing while landing")))
    }

    /// Step 5's re-check, right before landing: the PR is still open, its head still the pinned
    /// one, on the queue's base, and its reviews still let it land (a missed delivery cannot let
    /// a PR through).
    async fn recheck(&self, item: &Item) -> Flow<PullRequest> {
        let (name, gh) = (&self.repo.name, self.github);
        let pull = gh.pull(name, item.pr).await?;
        if let Some(reason) = DropReason::from_pull(&pull, &item.head_sha, &self.repo.base) {
            if pull.merged && self.landed_already(item).await?.is_some() {
                return Err(Halt::LandedEarlier);
            }
            return Err(Halt::Drop(item.id, reason));
        }
        let required = self.repo.required_approvals;
        if let Some(reason) = reviews::standing(gh, name, item.pr, &item.head_sha, &pull.author, required).await? {
            return Err(Halt::Drop(item.id, reason));
        }
        Ok(pull)
    }

    /// One `squash` commit: the tree of `step` (the candidate, or in a batch the candidate up to
    /// this PR) with `parent` (the tested base tip, or the previous PR's squash commit) as its only
    /// parent. A commit recorded by an earlier try of this same landing (same parent, same tree)
    /// is reused.
    async fn squash_commit(
        &self,
        item: &Item,
        pull: &PullRequest,
        parent: &CommitSha,
        step: &CommitSha,
    ) -> Flow<CommitSha> {
        let name = &self.repo.name;
        let gh = self.github;
        let tree = gh
            .git_commit(name, step)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the candidate {step} is gone"))?
            .tree;
        let recorded = {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::landing_commit(&mut conn, item.id).await?
        };
        if let Some(sha) = recorded
            && let Some(c) = gh.git_commit(name, &sha).await?
            && c.tree == tree
            && c.parents == [parent.clone()]
        {
            return Ok(sha);
        }
        // The PR's commits' authors, from the mirror when there is one (no API call lists them).
        let co_authors = match self.copies {
            Some(copies) => copies.authors(parent, &item.head_sha).await,
            None => vec![],
        };
        let message = landing::squash_message(pull, &co_authors);
        Ok(gh.create_commit(name, &message, &tree, &[parent]).await?)
    }

    /// The base holds what an earlier attempt of these members landed, its answer lost with the
    /// replica that made it (SPEC §8): that is what landed. A member it did not hold goes back to
    /// the queue, as when the base moves.
    async fn landed_by_earlier_attempt(&self, members: &[Item]) -> Flow<Option<Vec<(Item, CommitSha)>>> {
        let mut landed = vec![];
        let mut rest = vec![];
        for m in members {
            match self.landed_already(m).await? {
                Some(sha) => landed.push((m.clone(), sha)),
                None => rest.push(m.clone()),
            }
        }
        tracing::warn!(repo = %self.repo.name, prs = ?landed.iter().map(|(m, _)| m.pr).collect::<Vec<_>>(), "the base holds an earlier attempt's landing");
        if !rest.is_empty() {
            self.base_moved::<()>(&rest).await?;
        }
        Ok(Some(landed))
    }

    /// Moves the base to `tip` by a fast-forward, right after checking that this replica still
    /// owns the queues (SPEC §8). The lease row is not held while GitHub answers: that would hold
    /// up the lease's own renewals, and it would not help when the owner's session dies (the lock
    /// goes with it) — a move answered after a take-over is found by the next owner through the
    /// recorded landing commits. The outer `Err` is ours (stop); the inner result is GitHub's.
    async fn move_base(&self, tip: &CommitSha) -> Flow<Result<(), GithubError>> {
        if self.losing_lease() {
            return Err(Halt::Stopped);
        }
        self.write().await?.commit().await?;
        Ok(self
            .github
            .set_branch(&self.repo.name, &self.repo.base, tip, false)
            .await)
    }

    /// Whether the base branch is still at `tip`.
    async fn base_still_at(&self, tip: &CommitSha) -> Flow<bool> {
        Ok(self.github.branch_tip(&self.repo.name, &self.repo.base).await?.as_ref() == Some(tip))
    }

    /// GitHub refused to land: new commits (the PR leaves the queue), or a rule of the repository
    /// (the PR is rejected with GitHub's words).
    async fn refused_to_land(&self, members: &[Item], status: u16, message: &str) -> Flow<Halt> {
        for m in members {
            let pull = self.github.pull(&self.repo.name, m.pr).await?;
            if pull.head_sha != m.head_sha {
                return Ok(Halt::Drop(m.id, DropReason::NewCommits { head: pull.head_sha }));
            }
        }
        Ok(Halt::Red(Red::refused_to_land(status, message)))
    }

    /// Whether the item landed already: a commit recorded before the base moved (by this
    /// attempt or an earlier one) is the base's tip or in its history (the base may have moved on
    /// since). Returns the landed commit. Asks GitHub nothing when none was recorded.
    pub async fn landed_already(&self, item: &Item) -> anyhow::Result<Option<CommitSha>> {
        let name = &self.repo.name;
        let recorded = {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::landing_commits(&mut conn, item.id).await?
        };
        if recorded.is_empty() {
            return Ok(None);
        }
        let Some(tip) = self.github.branch_tip(name, &self.repo.base).await? else {
            anyhow::bail!("the base branch {} is gone", self.repo.base);
        };
        for target in recorded {
            if self.github.contains(name, &tip, &target).await? {
                return Ok(Some(target));
            }
        }
        Ok(None)
    }

    async fn base_moved<T>(&self, members: &[Item]) -> Flow<Option<T>> {
        let mut tx = self.write().await?;
        for m in members {
            store::requeue(&mut tx, m.id, &messages::base_moved(&self.repo.base)).await?;
        }
        tx.commit().await?;
        metrics::counter!("gandalf_reverifications_total").increment(1);
        Ok(None)
    }

    /// A working copy of `sha` for a run's steps (handed to `step_user`, removed when dropped);
    /// `None` when the repository has no checkout.
    async fn working_copy(&self, sha: &CommitSha, name: &str) -> Flow<Option<WorkingCopy>> {
        let Some(copies) = self.copies else {
            return Ok(None);
        };
        Ok(Some(copies.checkout(sha, name).await.map_err(Halt::NoCopy)?))
    }

    /// Where steps run: in the working copy, or (no checkout) in the config file's directory.
    fn step_dir(&self, copy: Option<&WorkingCopy>) -> std::path::PathBuf {
        copy.map(|c| c.path().to_path_buf())
            .unwrap_or_else(|| self.gandalf.config.base_dir.clone())
    }

    /// Step 6: the candidate's PRs are merged. Each is concluded, with one announcement in the same
    /// transaction (naming them all for a batch), then each PR gets its comment.
    pub async fn landed(&self, landed: &[(Item, CommitSha)]) -> anyhow::Result<()> {
        let squashed = self.repo.merge_method == MergeMethod::Squash;
        if squashed {
            // GitHub can only show a squashed PR as Closed. These writes are idempotent and come
            // before the items are concluded, so a crash here repeats them, never skips them.
            for (item, _) in landed {
                self.close_squashed(item).await?;
            }
        }
        let now = self.now();
        let mut tx = self.write().await?;
        let mut concluded = vec![];
        for (item, sha) in landed {
            let current = store::item(&mut tx, item.id).await?.unwrap_or_else(|| item.clone());
            if store::conclude(&mut tx, item.id, ItemState::Merged, "landed", Some(sha), now).await? {
                concluded.push((current, sha.clone()));
            }
        }
        let Some((first, first_sha)) = concluded.first() else {
            return Ok(());
        };
        let verification = now - first.verify_started_at.unwrap_or(now);
        if let Some(channel) = &self.gandalf.config.merges_channel {
            let reply = match concluded.as_slice() {
                [_] => {
                    let in_queue = first.verify_started_at.unwrap_or(now) - first.enqueued_at;
                    messages::merge_announcement(first, first_sha, &first.affected, in_queue, verification)
                }
                all => messages::batch_announcement(all, &first.affected, verification),
            };
            outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, now).await?;
        }
        tx.commit().await?;
        let prs: Vec<PrNumber> = concluded.iter().map(|(i, _)| i.pr).collect();
        for (item, sha) in &concluded {
            let in_queue = item.verify_started_at.unwrap_or(now) - item.enqueued_at;
            metrics::histogram!("gandalf_time_in_queue_seconds").record(in_queue.num_milliseconds() as f64 / 1000.0);
            let mut comment = messages::merged_comment(&self.repo.base, sha, &item.affected, verification, squashed);
            if prs.len() > 1 {
                comment.push_str(&messages::landed_in_batch(&prs));
            }
            if item.flaky {
                comment.push_str(messages::flaky_note());
            }
            self.comment(item.pr, &comment).await;
        }
        Ok(())
    }

    /// Closes a PR landed by `squash`, and the issues its body closes with GitHub's keywords.
    async fn close_squashed(&self, item: &Item) -> anyhow::Result<()> {
        let name = &self.repo.name;
        let pull = self.github.pull(name, item.pr).await?;
        if pull.is_open() {
            self.github.close_pull(name, item.pr).await?;
        }
        for issue in landing::closed_issues(&pull.body, name) {
            if let Err(e) = self.github.close_issue(name, issue).await {
                // An issue that is gone, or a PR number, is not worth failing the landing for.
                tracing::warn!(repo = %name, pr = %item.pr, %issue, error = %e, "could not close an issue the PR closes");
            }
        }
        Ok(())
    }

    /// Step 7 for a red run: revert, record, comment, DM.
    async fn rejected(&self, item: &Item, red: Red, deployed: &[String]) -> anyhow::Result<()> {
        let reverted = self.revert(item, deployed).await?;
        let now = self.now();
        let url = messages::item_url(&self.gandalf.config.public_url, &self.repo.name, item.pr);
        let mut tx = self.write().await?;
        let current = store::item(&mut tx, item.id).await?.unwrap_or_else(|| item.clone());
        let reason = red.reason();
        if !store::conclude(&mut tx, item.id, ItemState::Failed, &reason, None, now).await? {
            return Ok(());
        }
        if let Some(slack) = &item.queued_by_slack {
            let dm = messages::failed_dm(item, &red, &url);
            outbox::enqueue_from(&mut tx, Sender::Gandalf, slack.as_str(), &dm, now).await?;
        }
        tx.commit().await?;
        let comment = match red.step {
            Phase::Candidate => messages::conflict_comment(&self.repo.base),
            Phase::ResourceMap => messages::bad_map_comment(&self.repo.resource_map, &red.tail),
            _ => messages::failed_comment(&red, current.candidate_sha.as_ref(), &url, &reverted),
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
        let mut conn = self.gandalf.pool.acquire().await?;
        let current = store::item(&mut conn, item.id).await?.unwrap_or_else(|| item.clone());
        drop(conn);
        let base = match self.github.branch_tip(&self.repo.name, &self.repo.base).await {
            Ok(Some(tip)) => tip,
            // GitHub is away: the base the candidate was built on is the best guess.
            _ => current
                .base_sha
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no base to revert {} to", item.pr))?,
        };
        let copy = match self
            .working_copy(&base, &format!("revert-{}-{}", self.repo.name, item.pr))
            .await
        {
            Ok(copy) => copy,
            Err(halt) => {
                let resource = deployed.last().map(String::as_str).unwrap_or("-");
                self.revert_failed(item, resource, halt).await?;
                return Ok(vec![]);
            }
        };
        let ctx = StepContext {
            item: &current,
            members: std::slice::from_ref(&current),
            prs: current.pr.to_string(),
            attempt: current.attempts,
            dir: self.step_dir(copy.as_ref()),
            sha: base.clone(),
            base_sha: base,
            resources: deployed
                .iter()
                .filter(|r| *r != EVERYTHING)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        };
        // A revert must run even when the verification was cancelled, and through a graceful
        // shutdown: it gets a stop of its own, raised only when this replica is losing the queues
        // (another will own them: no step of ours may outlive the lease).
        let stop = StopSignal {
            flag: self.lease_lost.clone(),
            why: Arc::new(Mutex::new(Some(StopReason::Shutdown))),
        };
        let mut reverted = vec![];
        for resource in deployed.iter().rev() {
            let r = (resource != EVERYTHING).then_some(resource.as_str());
            match self.step(&ctx, Phase::Revert, &command, r, &stop).await {
                Ok(()) => reverted.push(resource.clone()),
                Err(_) if self.losing_lease() => {
                    // Not a failed revert: the next owner verifies the PR again from the start.
                    anyhow::bail!("the queues' lease was lost during the revert");
                }
                Err(halt) => {
                    self.revert_failed(item, resource, halt).await?;
                    break;
                }
            }
        }
        Ok(reverted)
    }

    /// A revert failed: the environment is in an unknown state, so the queue pauses until someone
    /// repairs it, and `merges_channel` hears why.
    async fn revert_failed(&self, item: &Item, resource: &str, halt: Halt) -> anyhow::Result<()> {
        let what = match halt {
            Halt::Red(red) => red.summary(),
            Halt::Internal(e) => format!("{e:#}"),
            Halt::NoCopy(e) => messages::no_working_copy(&e),
            _ => "stopped".into(),
        };
        let now = self.now();
        let mut tx = self.write().await?;
        let reason = messages::revert_failed_pause(resource, item.pr, &what);
        store::set_paused(&mut tx, &self.repo.name, true, &reason, &Holder::Gandalf, now).await?;
        if let Some(channel) = &self.gandalf.config.merges_channel {
            let reply = messages::revert_failed(&self.repo.name, item.pr, self.repo.environment.as_str(), &what);
            outbox::enqueue_from(&mut tx, Sender::Gandalf, channel.as_str(), &reply, now).await?;
        }
        tx.commit().await?;
        tracing::error!(repo = %self.repo.name, pr = %item.pr, resource, what, "revert failed; queue paused");
        Ok(())
    }

    /// Comments on the PR; a comment that cannot be posted is logged, not retried blindly.
    async fn comment(&self, pr: PrNumber, body: &str) {
        if let Err(e) = self.github.comment(&self.repo.name, pr, body).await {
            tracing::warn!(repo = %self.repo.name, %pr, error = %e, "could not comment on the pull request");
        }
    }
}

struct StepContext<'a> {
    /// The candidate's first member: the steps are recorded on it.
    item: &'a Item,
    /// Every member, the first included (their rows follow the state).
    members: &'a [Item],
    attempt: i32,
    /// `GANDALF_SHA`: the candidate (for `revert`, the commit to restore).
    sha: CommitSha,
    base_sha: CommitSha,
    resources: String,
    /// `GANDALF_PRS`: every PR in the candidate, space-separated.
    prs: String,
    /// Where the steps run: a working copy of `sha`, or the config file's directory.
    dir: std::path::PathBuf,
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
