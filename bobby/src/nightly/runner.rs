//! One Nightly run, from the claim to the summary, and the recovery of a run a crash cut short.
//!
//! A run starts in one transaction: it plans from a snapshot of the environments, claims each one it
//! will work on (`deleting`/`creating`; a delete ends the lease and clears the waitlist, whose people
//! are told through the outbox), records every step it will run, and records why it leaves the
//! others alone. Then the environments go through their steps, `concurrency` at a time, each all its
//! steps in order before its slot frees. Every step start, throttle, attempt and end is written as
//! it happens, so the database always says which step was running where.
//!
//! A step is `sh -c <run>` through [`shared::steps::run`]: its own process group (recorded in the
//! registry), `step_timeout` for the whole group, `BOBBY_*` variables and nothing interpolated.
//! Exit 0 moves on; exit 75 is retried after a full-jitter backoff slept through the injected clock
//! (so tests move time instead of waiting); anything else, a timeout or the last allowed attempt
//! faults the environment with the step, exit status, attempts and the last 50 output lines
//! (secrets masked), and its remaining steps are skipped. Other environments carry on.
//!
//! With `[nightly] repo` and a `checkout`, create steps run in a working copy of `base`'s tip,
//! resolved once when the run starts (again when a stopped run resumes): one copy per environment,
//! shared by its create steps and removed when the environment is done. A copy that cannot be had
//! faults the environment at its first step with the reason; delete steps never get a copy.
//!
//! Shutdown (SIGTERM) stops the steps where they are and leaves the run `running`; so does a crash,
//! minus the clean-up. Either way the next Nightly leader kills what is left of the step processes
//! and [`Nightly::recover`]s: it resumes the run from the step that was running (steps are
//! idempotent) until the other phase is due, or marks it interrupted after that.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use futures::StreamExt;
use shared::envs::store::{self, NightlyClaim};
use shared::envs::{EnvState, Fault, NightlyOutcome};
use shared::ids::{CommitSha, EnvName, SlackUserId};
use shared::slack::outbox;
use shared::steps::{self, StepEnd, StepSpec};
use shared::working_copy::WorkingCopy;
use sqlx::PgConnection;
use tokio::sync::watch;

use super::Nightly;
use super::plan::{self, Decision, Phase, Skip, Slot};
use super::runs::{self, Run, Step, Waited};
use super::summary;
use crate::messages;

/// How a run (or the wait for one) ended on this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Finished, interrupted or skipped: its summary is in the outbox.
    Done,
    /// Shutdown asked for mid-run: the run stays `running` and the next leader resumes it.
    Stopped,
}

/// How many output lines of each attempt are kept for the log page.
const LOG_LINES: usize = 400;
/// How many lines a fault carries (SPEC §4.5).
const TAIL_LINES: usize = 50;

enum EnvEnd {
    Done,
    Faulted,
    Stopped,
}

enum StepOutcome {
    Ok,
    Fault(Fault),
    Stopped,
}

impl Nightly {
    /// Runs a schedule slot: skipped when an admin skipped its night, nothing when another process
    /// already took it.
    pub async fn run_slot(&self, slot: Slot, trigger: &str, shutdown: watch::Receiver<bool>) -> anyhow::Result<RunEnd> {
        let now = self.now();
        let night = self.schedule.night_of(slot);
        let mut tx = self.write().await?;
        if let Some(by) = runs::night_skipped_by(&mut tx, night).await? {
            let note = format!("the night of {night} was skipped by {by}");
            if runs::record_skipped_slot(&mut tx, slot.phase, trigger, slot.at, now, &note)
                .await?
                .is_some()
            {
                tracing::info!(phase = slot.phase.as_str(), %night, by, "Nightly skipped as asked");
                if let Some(channel) = &self.config().announce_channel {
                    let reply = messages::nightly_slot_skipped(slot.phase, night, &by);
                    outbox::enqueue(&mut tx, channel.as_str(), &reply, now).await?;
                }
            }
            tx.commit().await?;
            return Ok(RunEnd::Done);
        }
        let resume_until = self.schedule.resume_until(slot.phase, slot.at.max(now));
        let Some(id) = runs::start_scheduled(&mut tx, slot.phase, trigger, slot.at, now, resume_until).await? else {
            tracing::info!(phase = slot.phase.as_str(), at = %slot.at, "slot already taken");
            return Ok(RunEnd::Done);
        };
        tracing::info!(run = id, phase = slot.phase.as_str(), trigger, at = %slot.at, "Nightly run starts");
        self.begin(&mut tx, id, slot.phase, None, self.schedule.day_of(slot.at), now)
            .await?;
        tx.commit().await?;
        self.execute(id, shutdown).await
    }

    /// Starts and runs a manual run someone asked for.
    pub async fn run_requested(&self, run: &Run, shutdown: watch::Receiver<bool>) -> anyhow::Result<RunEnd> {
        let now = self.now();
        let mut tx = self.write().await?;
        let resume_until = self.schedule.resume_until(run.phase, now);
        if !runs::start_requested(&mut tx, run.id, now, resume_until).await? {
            return Ok(RunEnd::Done);
        }
        tracing::info!(run = run.id, phase = run.phase.as_str(), by = ?run.requested_by, only = ?run.only_env, "manual Nightly run starts");
        let day = self.schedule.local_date(now);
        self.begin(&mut tx, run.id, run.phase, run.only_env.as_deref(), day, now)
            .await?;
        tx.commit().await?;
        self.execute(run.id, shutdown).await
    }

    /// Plans the run and claims its environments, in the caller's transaction.
    async fn begin(
        &self,
        tx: &mut PgConnection,
        id: i64,
        phase: Phase,
        only: Option<&str>,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if phase == Phase::Delete {
            // Leases due by now end by expiry first, exactly as the expiry worker ends them (and in
            // this transaction): "until-nightly" leases expire at the very instant of the delete,
            // both workers wake then, and what people are told must not depend on which wins.
            for ended in store::expire_due(tx, now, self.policy()).await? {
                self.bobby.tell_about_end(tx, &ended, None, now).await?;
            }
        }
        let envs = store::list(tx).await?;
        let views = self.views(&envs);
        let kept = self.schedule.kept_on(day, &views);
        let planned = plan::plan(phase, &views, &kept, only, now);
        for (position, p) in planned.iter().enumerate() {
            let position = position as i32;
            let skip = match &p.decision {
                Decision::Skip(skip) => Some(skip.clone()),
                Decision::Run => match store::claim_for_nightly(tx, &p.name, phase, now, self.policy()).await? {
                    NightlyClaim::Claimed {
                        previous,
                        previous_fault,
                        ended,
                        cleared_waiters,
                    } => {
                        runs::add_env(tx, id, &p.name, position, previous, previous_fault.as_ref()).await?;
                        for (i, step) in self.steps(phase).iter().enumerate() {
                            runs::add_step(tx, id, &p.name, i as i32, &step.name, &step.run).await?;
                        }
                        if let Some(ended) = &ended {
                            self.bobby.tell_about_end(tx, ended, None, now).await?;
                        }
                        for waiter in &cleared_waiters {
                            let note = messages::nightly_waitlist_cleared(&p.name);
                            outbox::enqueue(tx, waiter.as_str(), &note, now).await?;
                        }
                        None
                    }
                    NightlyClaim::Preserved(until) => Some(Skip::Preserved(until)),
                    NightlyClaim::HeldByGandalf => Some(Skip::Gandalf),
                    NightlyClaim::Unknown => None,
                },
            };
            if let Some(skip) = skip {
                runs::add_skipped_env(tx, id, &p.name, position, &skip, now).await?;
                // `last_nightly` says `skipped` when the phase would have worked on it but left it
                // alone; an environment that was simply not its business (already down, not kept
                // up today) keeps the outcome of the phase that last did something to it.
                if matches!(skip, Skip::Preserved(_) | Skip::Gandalf | Skip::Busy) {
                    store::nightly_skipped(tx, &p.name, phase, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs what is left of run `id`: every environment not finished, from its first step not done.
    pub async fn execute(&self, id: i64, shutdown: watch::Receiver<bool>) -> anyhow::Result<RunEnd> {
        let (run, envs, steps) = {
            let mut conn = self.pool().acquire().await?;
            let run = runs::get(&mut conn, id).await?.context("the run vanished")?;
            (
                run,
                runs::envs_of(&mut conn, id).await?,
                runs::steps_of(&mut conn, id).await?,
            )
        };
        let mut by_env: BTreeMap<EnvName, Vec<Step>> = BTreeMap::new();
        for s in steps {
            by_env.entry(s.environment.clone()).or_default().push(s);
        }
        let work: Vec<(EnvName, Vec<Step>)> = envs
            .into_iter()
            .filter(|e| e.state == "pending" || e.state == "running")
            .map(|e| {
                let steps = by_env.remove(&e.environment).unwrap_or_default();
                (e.environment, steps)
            })
            .collect();
        // Create steps see `base`'s tip as it is now, when the run starts (or resumes).
        let tip = match (&self.code, run.phase) {
            (Some(code), Phase::Create) if !work.is_empty() => Some(code.base_tip().await),
            _ => None,
        };
        if let Some(Err(why)) = &tip {
            tracing::warn!(run = id, reason = %why, "no base tip for Nightly's create steps");
        }
        let concurrency = self.settings.concurrency.max(1) as usize;
        let ends: Vec<anyhow::Result<EnvEnd>> = futures::stream::iter(work)
            .map(|(env, steps)| self.run_env(id, run.phase, env, steps, tip.as_ref(), shutdown.clone()))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut stopped = false;
        for end in ends {
            // A database error leaves that environment `running`; the worker starts over and the
            // recovery resumes it.
            match end? {
                EnvEnd::Stopped => stopped = true,
                EnvEnd::Done | EnvEnd::Faulted => {}
            }
        }
        if stopped {
            tracing::info!(run = id, "Nightly run stopped for shutdown; the next start resumes it");
            return Ok(RunEnd::Stopped);
        }
        self.finish(id, "finished").await?;
        Ok(RunEnd::Done)
    }

    async fn run_env(
        &self,
        run: i64,
        phase: Phase,
        env: EnvName,
        steps: Vec<Step>,
        tip: Option<&Result<CommitSha, String>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<EnvEnd> {
        if *shutdown.borrow() {
            return Ok(EnvEnd::Stopped);
        }
        let url = {
            let mut tx = self.write().await?;
            runs::env_started(&mut tx, run, &env, self.now()).await?;
            let url = store::get(&mut tx, &env).await?.map(|e| e.url).unwrap_or_default();
            tx.commit().await?;
            url
        };
        // With `[nightly] repo`, create steps share one working copy of the base tip (SPEC §4.5);
        // one that cannot be had faults the environment at its first step, with the reason.
        let mut code: Option<(WorkingCopy, CommitSha)> = None;
        if let (Some(tip), Some(nightly_code), Some(first)) = (tip, &self.code, steps.iter().find(|s| s.state != "ok"))
        {
            let name = format!("nightly-{run}-{env}");
            let copy = match tip {
                Ok(sha) => tokio::select! {
                    copy = nightly_code.copies.checkout(sha, &name) => copy.map(|c| (c, sha.clone())),
                    _ = shutdown.wait_for(|s| *s) => return Ok(EnvEnd::Stopped),
                },
                Err(why) => Err(why.clone()),
            };
            match copy {
                Ok(copy) => code = Some(copy),
                Err(why) => {
                    tracing::warn!(run, environment = %env, reason = %why, "no working copy for Nightly's create steps");
                    let now = self.now();
                    let mut tx = self.write().await?;
                    runs::step_finished(
                        &mut tx,
                        run,
                        &env,
                        first.position,
                        "failed",
                        None,
                        "no working copy: nothing was run",
                        &why,
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                    let fault = Fault {
                        phase,
                        step: first.name.clone(),
                        exit_code: None,
                        attempts: 0,
                        log_tail: why,
                    };
                    return self.fault_env(run, phase, &env, first, fault).await;
                }
            }
        }
        let place = code.as_ref().map(|(copy, sha)| (copy.path(), sha));
        for step in steps.iter().filter(|s| s.state != "ok") {
            match self
                .run_step(run, phase, &env, &url, place, step, shutdown.clone())
                .await?
            {
                StepOutcome::Ok => {}
                StepOutcome::Stopped => return Ok(EnvEnd::Stopped),
                StepOutcome::Fault(fault) => return self.fault_env(run, phase, &env, step, fault).await,
            }
        }
        drop(code);
        let now = self.now();
        let mut tx = self.write().await?;
        runs::env_finished(&mut tx, run, &env, "ok", now).await?;
        store::nightly_succeeded(&mut tx, &env, phase, now).await?;
        tx.commit().await?;
        metrics::counter!("nightly_environments_total", "phase" => phase.as_str(), "outcome" => "ok").increment(1);
        Ok(EnvEnd::Done)
    }

    /// Faults `env` at `step` (already recorded as failed): its remaining steps are skipped.
    async fn fault_env(
        &self,
        run: i64,
        phase: Phase,
        env: &EnvName,
        step: &Step,
        fault: Fault,
    ) -> anyhow::Result<EnvEnd> {
        let now = self.now();
        let mut tx = self.write().await?;
        runs::skip_steps_after(&mut tx, run, env, step.position).await?;
        runs::env_finished(&mut tx, run, env, "faulted", now).await?;
        store::nightly_faulted(&mut tx, env, &fault, NightlyOutcome::Faulted, now).await?;
        tx.commit().await?;
        tracing::warn!(run, environment = %env, step = %fault.step, exit_code = ?fault.exit_code, attempts = fault.attempts, "Nightly faulted an environment");
        metrics::counter!("nightly_environments_total", "phase" => phase.as_str(), "outcome" => "faulted").increment(1);
        Ok(EnvEnd::Faulted)
    }

    /// One step to its end: attempts until success, a failure, or the last allowed attempt.
    /// `code`: the working copy it runs in and the commit it holds (create steps with
    /// `[nightly] repo`); the config file's directory otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        run: i64,
        phase: Phase,
        env: &EnvName,
        url: &str,
        code: Option<(&Path, &CommitSha)>,
        step: &Step,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<StepOutcome> {
        let max_attempts = self.settings.retry.attempts.max(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let waited = if attempt > 1 {
                match self.back_off(run, env, step, attempt, &mut shutdown).await? {
                    Some(waited) => Some(waited),
                    None => return Ok(StepOutcome::Stopped),
                }
            } else {
                None
            };
            let attempt_id = {
                let mut tx = self.write().await?;
                let id =
                    runs::attempt_started(&mut tx, run, env, step.position, attempt as i32, waited, self.now()).await?;
                tx.commit().await?;
                id
            };
            let spec = self.step_spec(phase, env, url, code, step, attempt);
            let what = format!("nightly:{env}:{}:{}", phase.as_str(), step.name);
            let started = Instant::now();
            let result = steps::run(&spec, &what, self.registry.as_ref(), shutdown.clone()).await;
            let elapsed = started.elapsed().as_secs_f64();
            let output = steps::mask(&result.output.last_lines(LOG_LINES), &self.secrets);
            let tail = steps::mask(&result.output.last_lines(TAIL_LINES), &self.secrets);
            // A lost lease refuses this write: the step's end is the new owner's to record.
            let mut conn = self.write().await?;
            let now = self.now();
            if result.end == StepEnd::Cancelled {
                runs::attempt_finished(
                    &mut conn,
                    attempt_id,
                    None,
                    "interrupted (Bobby is stopping)",
                    &output,
                    now,
                )
                .await?;
                conn.commit().await?;
                return Ok(StepOutcome::Stopped);
            }
            let exit_code = result.end.exit_code();
            let throttled = result.end == StepEnd::Exited(75);
            attempt_metrics(phase, step, &result.end, elapsed);
            let mut ended = result.end.describe();
            if throttled {
                ended = if attempt < max_attempts {
                    format!("{ended} (throttled; retrying)")
                } else {
                    format!("{ended} (throttled; gave up after {attempt} attempts)")
                };
            }
            runs::attempt_finished(&mut conn, attempt_id, exit_code, &ended, &output, now).await?;
            if result.end.succeeded() {
                runs::step_finished(&mut conn, run, env, step.position, "ok", exit_code, &ended, &tail, now).await?;
                conn.commit().await?;
                return Ok(StepOutcome::Ok);
            }
            if throttled && attempt < max_attempts {
                conn.commit().await?;
                tracing::info!(run, environment = %env, step = %step.name, attempt, "step throttled (exit 75); retrying");
                continue;
            }
            runs::step_finished(
                &mut conn,
                run,
                env,
                step.position,
                "failed",
                exit_code,
                &ended,
                &tail,
                now,
            )
            .await?;
            conn.commit().await?;
            return Ok(StepOutcome::Fault(Fault {
                phase,
                step: step.name.clone(),
                exit_code,
                attempts: attempt,
                log_tail: tail,
            }));
        }
    }

    /// Waits before attempt number `attempt` (the second or later), saying so in the step's row.
    /// `None` when Bobby is shutting down meanwhile.
    async fn back_off(
        &self,
        run: i64,
        env: &EnvName,
        step: &Step,
        attempt: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Waited>> {
        let retry = &self.settings.retry;
        let cap = plan::backoff_cap(attempt - 1, retry.initial_backoff.std(), retry.max_backoff.std());
        let wait = cap.mul_f64((self.jitter)().clamp(0.0, 1.0));
        // Whole microseconds, as Postgres stores it: whoever reads `next_attempt_at` and
        // waits for it (a test's manual clock) must not come up a few nanoseconds short.
        let until = (self.now() + chrono::Duration::from_std(wait).unwrap_or_default()).trunc_subsecs(6);
        {
            let mut tx = self.write().await?;
            runs::step_backing_off(&mut tx, run, env, step.position, until).await?;
            tx.commit().await?;
        }
        tokio::select! {
            _ = self.bobby.clock.sleep_until(until) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(None),
        }
        Ok(Some(Waited {
            ms: wait.as_millis() as i64,
            cap_ms: cap.as_millis() as i64,
        }))
    }

    /// What a step's attempt runs, with the variables it is told (SPEC §4.5).
    fn step_spec(
        &self,
        phase: Phase,
        env: &EnvName,
        url: &str,
        code: Option<(&Path, &CommitSha)>,
        step: &Step,
        attempt: u32,
    ) -> StepSpec {
        let mut vars = vec![
            ("BOBBY_ENV".into(), env.to_string()),
            ("BOBBY_ENV_URL".into(), url.to_string()),
            ("BOBBY_PHASE".into(), phase.as_str().to_string()),
            ("BOBBY_STEP".into(), step.name.clone()),
            ("BOBBY_ATTEMPT".into(), attempt.to_string()),
        ];
        if let Some((_, sha)) = code {
            vars.push(("BOBBY_SHA".into(), sha.to_string()));
        }
        StepSpec {
            command: step.command.clone(),
            dir: code.map_or_else(|| self.config().base_dir.clone(), |(dir, _)| dir.to_path_buf()),
            env: vars,
            sandbox: self.settings.sandbox.clone(),
            timeout: self.settings.step_timeout.std(),
        }
    }

    /// Ends run `id` (`finished` or `interrupted`) and queues its summary, in one transaction.
    async fn finish(&self, id: i64, state: &str) -> anyhow::Result<()> {
        let now = self.now();
        let mut tx = self.write().await?;
        runs::finish(&mut tx, id, state, now).await?;
        let report = summary::report(&mut tx, self, id, now).await?;
        if let Some(channel) = &self.config().announce_channel {
            outbox::enqueue(&mut tx, channel.as_str(), &messages::nightly_summary(&report), now).await?;
        }
        // Whoever asked for a manual run hears that it is done (the summary itself is in the channel).
        if let Some(by) = report
            .run
            .requested_by
            .as_deref()
            .and_then(|b| b.parse::<SlackUserId>().ok())
        {
            let announce = self.config().announce_channel.as_ref().map(|c| c.as_str());
            outbox::enqueue(
                &mut tx,
                by.as_str(),
                &messages::nightly_run_done(&report, announce),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        let c = summary::counts(&mut *self.pool().acquire().await?, id).await?;
        tracing::info!(
            run = id,
            state,
            done = c.done,
            faulted = c.faulted,
            skipped = c.skipped,
            "Nightly run ended"
        );
        Ok(())
    }

    /// What a new Nightly leader does before anything else: kill the step process groups a dead
    /// predecessor left on this host, then resume or close the run it left, and put back any
    /// environment still `deleting`/`creating` with no run to finish it.
    pub async fn recover(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<RunEnd> {
        if let Some(registry) = &self.registry {
            let killed = registry.reap_leftovers("nightly:").await?;
            if !killed.is_empty() {
                tracing::warn!(steps = ?killed, "killed Nightly steps left running by a previous Bobby");
            }
        }
        let now = self.now();
        let running = runs::running(&mut *self.pool().acquire().await?).await?;
        if let Some(run) = running {
            let deadline = run.resume_until.unwrap_or(now);
            if now < deadline {
                tracing::warn!(
                    run = run.id,
                    phase = run.phase.as_str(),
                    "resuming a Nightly run a stop or crash cut short"
                );
                {
                    let mut tx = self.write().await?;
                    runs::close_open_attempts(&mut tx, run.id, now).await?;
                    runs::restart_interrupted_steps(&mut tx, run.id).await?;
                    tx.commit().await?;
                }
                if self.execute(run.id, shutdown).await? == RunEnd::Stopped {
                    return Ok(RunEnd::Stopped);
                }
            } else {
                tracing::warn!(
                    run = run.id,
                    phase = run.phase.as_str(),
                    "a Nightly run was cut short and its time has passed: marking it interrupted"
                );
                self.interrupt(&run).await?;
            }
        }
        let now = self.now();
        let mut tx = self.write().await?;
        for (env, state) in store::stuck_in_nightly(&mut tx, &[]).await? {
            let phase = if state == EnvState::Deleting {
                Phase::Delete
            } else {
                Phase::Create
            };
            tracing::warn!(environment = %env, state = state.as_str(), "environment stuck in Nightly with no run: faulting it");
            let fault = Fault {
                phase,
                step: String::new(),
                exit_code: None,
                attempts: 0,
                log_tail: messages::nightly_interrupted_tail(phase),
            };
            store::nightly_faulted(&mut tx, &env, &fault, NightlyOutcome::Interrupted, now).await?;
        }
        tx.commit().await?;
        Ok(RunEnd::Done)
    }

    /// Closes a run that cannot be resumed: environments it was working on are faulted with the
    /// reason "interrupted" at the step that was running; those it never started on get back the
    /// state they had.
    async fn interrupt(&self, run: &Run) -> anyhow::Result<()> {
        let now = self.now();
        let mut tx = self.write().await?;
        let envs = runs::envs_of(&mut tx, run.id).await?;
        let steps = runs::steps_of(&mut tx, run.id).await?;
        runs::close_open_attempts(&mut tx, run.id, now).await?;
        for e in envs.iter().filter(|e| e.state == "pending" || e.state == "running") {
            let mine: Vec<&Step> = steps.iter().filter(|s| s.environment == e.environment).collect();
            let started = e.started_at.is_some() || mine.iter().any(|s| s.state != "pending" || s.attempts > 0);
            let current = mine.iter().find(|s| s.state != "ok");
            match (started, current) {
                (true, Some(step)) => {
                    let tail = messages::nightly_interrupted_tail(run.phase);
                    runs::step_finished(
                        &mut tx,
                        run.id,
                        &e.environment,
                        step.position,
                        "failed",
                        None,
                        "interrupted (Bobby stopped)",
                        &tail,
                        now,
                    )
                    .await?;
                    runs::skip_steps_after(&mut tx, run.id, &e.environment, step.position).await?;
                    let fault = Fault {
                        phase: run.phase,
                        step: step.name.clone(),
                        exit_code: None,
                        attempts: step.attempts.max(0) as u32,
                        log_tail: tail,
                    };
                    store::nightly_faulted(&mut tx, &e.environment, &fault, NightlyOutcome::Interrupted, now).await?;
                }
                (true, None) => {
                    // Every step had succeeded; only the bookkeeping after the last one was lost.
                    store::nightly_succeeded(&mut tx, &e.environment, run.phase, now).await?;
                    runs::env_finished(&mut tx, run.id, &e.environment, "ok", now).await?;
                    continue;
                }
                (false, _) => {
                    let state = e.prev_state.unwrap_or(EnvState::Ready);
                    store::nightly_restored(&mut tx, &e.environment, run.phase, state, e.prev_fault.as_ref(), now)
                        .await?;
                }
            }
            runs::env_finished(&mut tx, run.id, &e.environment, "interrupted", now).await?;
        }
        tx.commit().await?;
        self.finish(run.id, "interrupted").await
    }
}

/// Counts an attempt by how it ended, and times it.
fn attempt_metrics(phase: Phase, step: &Step, end: &StepEnd, seconds: f64) {
    let outcome = match end {
        StepEnd::Exited(0) => "ok",
        StepEnd::Exited(75) => "throttled",
        StepEnd::Exited(_) => "failed",
        StepEnd::TimedOut => "timed_out",
        StepEnd::Signalled(_) => "killed",
        StepEnd::SpawnFailed(_) => "spawn_failed",
        StepEnd::Cancelled => "cancelled",
    };
    metrics::counter!("nightly_step_attempts_total", "phase" => phase.as_str(), "step" => step.name.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("nightly_step_duration_seconds", "phase" => phase.as_str(), "step" => step.name.clone())
        .record(seconds);
}
