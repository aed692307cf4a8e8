//! Running one deploy: build level by level (bounded parallelism within a level), deploy each
//! deployable resource, test once; every step through [`shared::steps`], recorded in
//! `deploy_steps`, its success recorded in `deployed` and the progress message edited in the same
//! transaction. Stops at the first failure, at a cancel (NOTIFY `bobby_deploys`) or at shutdown,
//! killing the running step's process group.
//!
//! The deploy is owned through its lease ([`shared::fence`]): every write checks it; when it
//! cannot be renewed in time the running step is killed and nothing more is written, and whoever
//! takes the expired lease over ([`take_over`], any replica) resumes the deploy from the
//! interrupted step, in a fresh working copy, skipping the steps that succeeded.
//!
//! With a `checkout`, the steps share one working copy of the deployed commit (SPEC §5.8), made
//! before the first step and removed when the pipeline ends; a copy that cannot be had ends the
//! deploy `failed` at a `checkout` step carrying git's reason, before anything runs.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::fence::Lease;
use shared::ids::CommitSha;
use shared::slack::Reply;
use shared::slack::outbox::{self, Relation, Sender};
use shared::steps::{self, StepEnd, StepSpec};
use shared::working_copy::WorkingCopy;
use sqlx::PgConnection;
use tokio::sync::watch;

use super::Inner;
use super::store::{self, DeployRow, DeployState, EVERYTHING, StepRow};
use crate::messages::{self, DeployProgress, FailedStep};

/// How the pipeline ended.
enum End {
    Succeeded,
    Failed(FailedStep),
    /// Cancelled, or stopped by shutdown.
    Stopped,
}

/// Why the pipeline stopped short of its end: a red step, a cancel or shutdown, or our own error.
/// Not a refusal (the deploy has started and is recorded whatever happens); it becomes an [`End`].
/// Gandalf's verification has the same three ways to stop, in its own type.
enum PipelineStop {
    Red(FailedStep),
    Stopped,
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for PipelineStop {
    fn from(e: E) -> Self {
        PipelineStop::Internal(e.into())
    }
}

/// Runs the deploy to its end, holding its `lease` (renewed until then). `no_copy`: planning
/// already found that git could not give the commits (the reason); the deploy ends `failed` with
/// it without running anything. A lost lease stops the steps and leaves the deploy `running` for
/// the replica that takes it over.
pub(super) async fn run(inner: Arc<Inner>, row: DeployRow, lease: Lease, no_copy: Option<String>) {
    let wall = std::time::Instant::now();
    let keep = lease.keep_alive(inner.shutdown.clone());
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let work = async {
        let end = match no_copy {
            Some(reason) => End::Failed(copy_failed(reason)),
            None => pipeline(&inner, &row, &lease, cancel_rx).await,
        };
        done_tx.send_replace(true);
        end
    };
    let (end, ()) = tokio::join!(work, watch_for_cancel(&inner, row.id, cancel_tx, done_rx, keep.stop()));
    if keep.lost() {
        tracing::warn!(
            deploy = row.id,
            epoch = lease.epoch,
            "the deploy's lease was lost: its step was stopped; the replica that takes it over resumes it"
        );
        return;
    }
    let took = chrono::Duration::from_std(wall.elapsed()).unwrap_or_default();
    match conclude(&inner, &row, &lease, end, took).await {
        Ok(()) => {
            drop(keep);
            let _ = lease.release().await;
        }
        Err(e) => {
            // The row stays `running`; once the lease expires it is taken over and resumed.
            tracing::error!(
                deploy = row.id,
                error = format!("{e:#}"),
                "could not record the end of a deploy"
            );
        }
    }
}

/// Raises `cancel` when the deploy's row asks for it, or `stop` (Bobby shuts down, or the lease
/// could not be kept); returns once `done`.
async fn watch_for_cancel(
    inner: &Inner,
    id: i64,
    cancel: watch::Sender<bool>,
    mut done: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = match shared::db::listen(&inner.pool, &["bobby_deploys"]).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(deploy = id, error = %shared::db::short_db_error(&e), "cannot listen for cancels; checking every few seconds instead");
            None
        }
    };
    let payload = id.to_string();
    // The first look also catches a cancel requested before we listened.
    let mut look = true;
    loop {
        if look && cancel_requested(inner, id).await {
            cancel.send_replace(true);
        }
        // Every deploy's cancel is announced on one channel: look again only for ours, or when
        // notifications may have been missed (the listener reconnected, or there is none).
        let heard = async {
            match listener.as_mut() {
                // A lost and re-established connection (`None`) may have missed ours: look.
                Some(l) => shared::db::next_change(l)
                    .await
                    .map_or(true, |n| n.is_none_or(|n| n.payload() == payload)),
                None => {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    true
                }
            }
        };
        let shutting_down = tokio::select! {
            ours = heard => { look = ours; false }
            _ = shutdown.wait_for(|s| *s) => true,
            _ = done.wait_for(|d| *d) => return,
        };
        if shutting_down {
            cancel.send_replace(true);
            let _ = done.wait_for(|d| *d).await;
            return;
        }
    }
}

async fn cancel_requested(inner: &Inner, id: i64) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT cancel_reason IS NOT NULL FROM deploys WHERE id = $1")
        .bind(id)
        .fetch_one(&inner.pool)
        .await
        .unwrap_or(false)
}

/// The failure of a deploy whose working copy could not be had (SPEC §5.8), with git's reason.
fn copy_failed(reason: String) -> FailedStep {
    FailedStep {
        step: "checkout".into(),
        resource: None,
        how: "failed, so nothing was run".into(),
        tail: reason,
    }
}

/// The working copy the deploy's steps share (SPEC §5.8), at the deployed commit; `Ok(None)`
/// without a checkout (steps in the config file's directory). A cancel or shutdown while it is
/// being made stops the deploy.
async fn working_copy(
    inner: &Inner,
    row: &DeployRow,
    cancel: &watch::Receiver<bool>,
) -> Result<Option<WorkingCopy>, End> {
    let Some(copies) = &inner.copies else {
        return Ok(None);
    };
    let sha: CommitSha = row
        .sha
        .parse()
        .map_err(|_| End::Failed(copy_failed(format!("`{}` is not a commit id", row.sha))))?;
    let mut cancel = cancel.clone();
    let name = format!("deploy-{}", row.id);
    tokio::select! {
        copy = copies.checkout(&sha, &name) => match copy {
            Ok(copy) => Ok(Some(copy)),
            Err(why) => {
                tracing::warn!(deploy = row.id, reason = %why, "no working copy for a deploy");
                Err(End::Failed(copy_failed(why)))
            }
        },
        _ = cancel.wait_for(|c| *c) => Err(End::Stopped),
    }
}

async fn pipeline(inner: &Inner, row: &DeployRow, lease: &Lease, cancel: watch::Receiver<bool>) -> End {
    let copy = match working_copy(inner, row, &cancel).await {
        Ok(copy) => copy,
        Err(end) => return end,
    };
    let dir = copy
        .as_ref()
        .map_or_else(|| inner.config.base_dir.clone(), |c| c.path().to_path_buf());
    // `copy` lives until the pipeline ends; dropping it removes the copy.
    match stages(inner, row, lease, &cancel, &dir).await {
        Ok(()) => End::Succeeded,
        Err(PipelineStop::Red(f)) => End::Failed(f),
        Err(PipelineStop::Stopped) => End::Stopped,
        Err(PipelineStop::Internal(e)) => {
            tracing::error!(deploy = row.id, error = format!("{e:#}"), "deploy failed on our side");
            End::Failed(FailedStep {
                step: "bobby".into(),
                resource: None,
                how: "failed on Bobby's side (see its logs)".into(),
                tail: String::new(),
            })
        }
    }
}

async fn stages(
    inner: &Inner,
    row: &DeployRow,
    lease: &Lease,
    cancel: &watch::Receiver<bool>,
    dir: &Path,
) -> Result<(), PipelineStop> {
    let pipeline = &inner.settings.pipeline;
    let parallelism = inner.settings.parallelism.max(1) as usize;
    for level in row.plan.build_levels() {
        let results = steps::run_level(&level, parallelism, cancel, |resource, c| {
            step(inner, row, lease, dir, "build", &pipeline.build, resource, c)
        })
        .await;
        let mut stopped = false;
        for r in results {
            match r {
                Some(Ok(())) => {}
                Some(Err(PipelineStop::Stopped)) | None => stopped = true,
                Some(Err(other)) => return Err(other),
            }
        }
        if stopped {
            return Err(PipelineStop::Stopped);
        }
    }
    for resource in row.plan.deploys() {
        step(
            inner,
            row,
            lease,
            dir,
            "deploy",
            &pipeline.deploy,
            &resource,
            cancel.clone(),
        )
        .await?;
    }
    if let Some(test) = &pipeline.test {
        step(inner, row, lease, dir, "test", test, "", cancel.clone()).await?;
    }
    Ok(())
}

/// Runs one step; `resource` is empty for `test` and `*` for the whole repository. A step that
/// succeeded before (a resumed deploy) is not run again.
#[allow(clippy::too_many_arguments)]
async fn step(
    inner: &Inner,
    row: &DeployRow,
    lease: &Lease,
    dir: &Path,
    name: &str,
    command: &str,
    resource: &str,
    cancel: watch::Receiver<bool>,
) -> Result<(), PipelineStop> {
    if *cancel.borrow() {
        return Err(PipelineStop::Stopped);
    }
    let per_resource = (!resource.is_empty() && resource != EVERYTHING).then_some(resource);
    let started = inner.clock.now();
    let step_id = {
        let mut tx = lease.begin().await?;
        if store::succeeded(&mut tx, row.id, name, per_resource).await? {
            return Ok(());
        }
        let id = store::step_started(&mut tx, row.id, name, per_resource, started).await?;
        tx.commit().await?;
        id
    };
    let spec = spec(inner, row, dir, name, command, per_resource);
    let what = format!("deploy:{}:{name}:{}", row.id, per_resource.unwrap_or("-"));
    let result = steps::run(&spec, &what, inner.registry.as_ref(), cancel).await;
    let log = steps::mask(&result.output.text(), &inner.mask);
    let state = match &result.end {
        StepEnd::Exited(0) => DeployState::Succeeded,
        StepEnd::Cancelled => DeployState::Cancelled,
        _ => DeployState::Failed,
    };
    // The step's own duration counts, also on a clock that does not move by itself (tests).
    let now = inner
        .clock
        .now()
        .max(started + (result.finished_at - result.started_at));
    // A lost lease refuses this write: the step is the next owner's to run again.
    let mut tx = lease.begin().await?;
    store::step_finished(&mut tx, step_id, state, result.end.exit_code(), &log, now).await?;
    if name == "deploy" && state == DeployState::Succeeded {
        store::record_deployed(&mut tx, row, per_resource.unwrap_or(EVERYTHING), now).await?;
    }
    edit_progress(inner, &mut tx, row, now).await?;
    tx.commit().await?;
    metrics::histogram!("bobby_deploy_step_seconds", "step" => name.to_string(), "state" => state.as_str())
        .record((result.finished_at - result.started_at).num_milliseconds() as f64 / 1000.0);
    match result.end {
        StepEnd::Exited(0) => Ok(()),
        StepEnd::Cancelled => Err(PipelineStop::Stopped),
        end => Err(PipelineStop::Red(FailedStep {
            step: name.to_string(),
            resource: per_resource.map(str::to_string),
            how: end.describe(),
            tail: steps::mask(&result.output.last_lines(50), &inner.mask),
        })),
    }
}

/// The step's command and environment (SPEC §4.6); nothing is interpolated into the command.
fn spec(inner: &Inner, row: &DeployRow, dir: &Path, name: &str, command: &str, resource: Option<&str>) -> StepSpec {
    let url = inner
        .config
        .environments
        .iter()
        .find(|e| e.name == row.environment)
        .map(|e| e.url.clone())
        .unwrap_or_default();
    let mut env = vec![
        ("BOBBY_ENV".to_string(), row.environment.to_string()),
        ("BOBBY_ENV_URL".to_string(), url),
        ("BOBBY_REF".to_string(), row.reference.clone()),
        ("BOBBY_SHA".to_string(), row.sha.clone()),
        ("BOBBY_USER".to_string(), row.by_user.clone()),
        ("BOBBY_STEP".to_string(), name.to_string()),
        ("BOBBY_RESOURCES".to_string(), row.plan.resources.join(" ")),
    ];
    if let Some(r) = resource {
        env.push(("BOBBY_RESOURCE".to_string(), r.to_string()));
    }
    StepSpec {
        command: command.to_string(),
        dir: dir.to_path_buf(),
        env,
        sandbox: inner.settings.sandbox.clone(),
        timeout: inner.settings.step_timeout.std(),
    }
}

/// Records the end of the deploy and says so: the progress message edited one last time, and the
/// failing step's output in its thread.
async fn conclude(
    inner: &Inner,
    row: &DeployRow,
    lease: &Lease,
    end: End,
    took: chrono::Duration,
) -> anyhow::Result<()> {
    // How long it ran counts, also on a clock that does not move by itself (tests).
    let now = inner.clock.now().max(row.started_at + took);
    let mut tx = lease.begin().await?;
    let (state, outcome, failed) = match end {
        End::Succeeded => (DeployState::Succeeded, None, None),
        End::Failed(f) => (DeployState::Failed, Some(messages::deploy_failure_line(&f)), Some(f)),
        End::Stopped => {
            let why: Option<String> = sqlx::query_scalar("SELECT cancel_reason FROM deploys WHERE id = $1")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?;
            match why {
                Some(why) => (DeployState::Cancelled, Some(why), None),
                None => (DeployState::Interrupted, Some(messages::deploy_shutdown_line()), None),
            }
        }
    };
    if !store::finish(&mut tx, row.id, state, outcome.as_deref(), now).await? {
        return Ok(());
    }
    let message = edit_progress(inner, &mut tx, row, now).await?;
    if let (Some(f), Some(message)) = (failed, message) {
        outbox::enqueue_related(
            &mut tx,
            Sender::Bobby,
            &row.channel,
            &messages::deploy_failed_thread(&f, &page_url(inner, row.id)),
            now,
            Relation::ThreadOf(message),
        )
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("bobby_deploys_total", "outcome" => state.as_str()).increment(1);
    metrics::histogram!("bobby_deploy_seconds", "outcome" => state.as_str())
        .record((now - row.started_at).num_milliseconds() as f64 / 1000.0);
    tracing::info!(deploy = row.id, env = %row.environment, outcome = state.as_str(), "deploy ended");
    Ok(())
}

/// What [`take_over`] did with a running deploy.
pub(super) enum TakeOver {
    /// Its lease is live: someone runs it.
    Owned,
    /// It had ended, or was cancelled while nobody ran it (concluded now).
    Concluded,
    /// Taken over: the lease and the row to resume it from.
    Resume(Box<(Lease, DeployRow)>),
}

/// Takes deploy `id` over when its lease has expired (or it has none): its runner is gone.
/// Leftover step processes on this host are killed, the steps it was running are marked
/// interrupted, and the deploy is handed back to be resumed, or concluded `cancelled` when a
/// cancel was asked for meanwhile.
pub(super) async fn take_over(inner: &Inner, id: i64) -> anyhow::Result<TakeOver> {
    let owner = shared::fence::owner_name();
    let lease = match shared::fence::try_acquire(&inner.pool, store::LEASE_KIND, &id.to_string(), &owner).await? {
        shared::fence::Acquired::Ours(lease) => lease,
        shared::fence::Acquired::Held { .. } => return Ok(TakeOver::Owned),
    };
    if let Some(registry) = &inner.registry {
        registry.reap_leftovers(&format!("deploy:{id}:")).await?;
    }
    let now = inner.clock.now();
    let mut tx = lease.begin().await?;
    let row = match store::get(&mut tx, id).await? {
        Some(row) if row.state == DeployState::Running => row,
        _ => {
            drop(tx);
            lease.release().await?;
            return Ok(TakeOver::Concluded);
        }
    };
    if let Some(why) = &row.cancel_reason {
        store::finish(&mut tx, id, DeployState::Cancelled, Some(why), now).await?;
        edit_progress(inner, &mut tx, &row, now).await?;
        tx.commit().await?;
        lease.release().await?;
        tracing::warn!(deploy = id, env = %row.environment, "concluded a cancelled deploy whose runner was gone");
        metrics::counter!("bobby_deploys_total", "outcome" => DeployState::Cancelled.as_str()).increment(1);
        return Ok(TakeOver::Concluded);
    }
    let interrupted = store::interrupt_running_steps(&mut tx, id, now).await?;
    edit_progress(inner, &mut tx, &row, now).await?;
    tx.commit().await?;
    tracing::warn!(deploy = id, env = %row.environment, epoch = lease.epoch, interrupted, "took over a deploy whose runner was gone; resuming it");
    Ok(TakeOver::Resume(Box::new((lease, row))))
}

/// Queues an edit of the progress message with the deploy as it is in `tx`. Returns the message.
async fn edit_progress(
    inner: &Inner,
    tx: &mut PgConnection,
    row: &DeployRow,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<i64>> {
    let current = store::get(&mut *tx, row.id).await?.unwrap_or_else(|| row.clone());
    let Some(message) = current.message_id else {
        return Ok(None);
    };
    let steps = store::steps(&mut *tx, row.id).await?;
    let reply = progress(inner, &current, &steps, now);
    outbox::enqueue_related(
        &mut *tx,
        Sender::Bobby,
        &row.channel,
        &reply,
        now,
        Relation::Edits(message),
    )
    .await?;
    Ok(Some(message))
}

fn page_url(inner: &Inner, id: i64) -> String {
    format!("{}/deploys/{id}", inner.config.public_url.trim_end_matches('/'))
}

/// The progress message: the deploy, then each planned step with how it went.
pub(super) fn progress(inner: &Inner, row: &DeployRow, steps: &[StepRow], now: DateTime<Utc>) -> Reply {
    messages::deploy_progress(&DeployProgress {
        row,
        steps,
        repo: &inner.repo.to_string(),
        has_test: inner.settings.pipeline.test.is_some(),
        page_url: page_url(inner, row.id),
        now,
    })
}
