//! `/bobby deploy` (SPEC §4.6): put a branch, a pull request's head or a commit on an environment,
//! building only what it changed.
//!
//! A deploy is decided here (who may, which commit, what to build and deploy), recorded as a
//! `running` row with its progress message in one transaction, and then run in the background by
//! [`run`] through the same step runner and affected-set planner Gandalf uses. The database keeps
//! one running deploy per environment; a lease that ends or Nightly taking the environment cancels
//! it (triggers). A deploy is owned through a fenced lease (SPEC §8, [`shared::fence`]): when its
//! runner is gone (killed, or cut off from the database long enough for the lease to expire), the
//! [`Supervisor`] of any replica takes it over and resumes it from the interrupted step.

mod run;
pub mod store;

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Future;
use shared::clock::SharedClock;
use shared::envs::{Actor, EnvState, Environment};
use shared::github::{CommitSha, Github, GithubError, RepoName};
use shared::ids::EnvName;
use shared::refusal::{Handled, OrRefuse, Refusal, refuse};
use shared::slack::Reply;
use shared::slack::outbox::{self, Sender};
use shared::steps::Registry;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use crate::command::{DeployRef, closest};
use crate::config::{BobbyConfig, DeployConfig};
use crate::messages;
use shared::copies::Copies;
use store::{DeployPlan, DeployRow, NewDeploy};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts, cancels and recovers deploys. Cheap to clone.
#[derive(Clone)]
pub struct Deployer {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: PgPool,
    pub config: Arc<BobbyConfig>,
    pub settings: DeployConfig,
    pub repo: RepoName,
    pub github: Github,
    pub clock: SharedClock,
    pub registry: Option<Registry>,
    pub mask: Vec<String>,
    /// Working copies at the deployed commit (`checkout`); `None`: steps run in the config
    /// file's directory and the change list comes from GitHub's compare.
    pub copies: Option<Copies>,
    pub shutdown: watch::Receiver<bool>,
    tasks: mpsc::UnboundedSender<Task>,
}

/// Runs the deploys' tasks: until shutdown, then until every running deploy reached its safe point
/// (its step stopped, the deploy recorded `interrupted`). Aborting this task aborts them all, the
/// way `kill -9` would.
///
/// It also takes over the deploys whose runner is gone: it wakes when the earliest lease of a
/// running deploy expires (at most every [`TAKE_OVER_EVERY`], for deploys started elsewhere) and
/// resumes those it wins.
pub struct Supervisor {
    tasks: mpsc::UnboundedReceiver<Task>,
    shutdown: watch::Receiver<bool>,
    inner: Arc<Inner>,
}

/// The longest the supervisor sleeps between looks for deploys to take over.
pub const TAKE_OVER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Supervisor {
    pub async fn run(mut self) {
        let mut running = tokio::task::JoinSet::new();
        loop {
            let wait = match store::next_take_over(&self.inner.pool).await {
                // Just after the earliest expiry (a take-over is possible only then), and never in
                // a tight loop when one keeps failing.
                Ok(Some(secs)) => std::time::Duration::from_secs_f64(secs + 0.02)
                    .clamp(std::time::Duration::from_millis(200), TAKE_OVER_EVERY),
                Ok(None) => TAKE_OVER_EVERY,
                Err(e) => {
                    tracing::warn!(error = %shared::db::short_db_error(&e), "cannot look for deploys to take over");
                    TAKE_OVER_EVERY
                }
            };
            let look = tokio::select! {
                Some(task) = self.tasks.recv() => { running.spawn(task); false }
                Some(_) = running.join_next(), if !running.is_empty() => false,
                _ = tokio::time::sleep(wait) => true,
                _ = self.shutdown.wait_for(|s| *s) => break,
            };
            if look {
                match take_over_orphans(&self.inner).await {
                    Ok(resumed) => {
                        for task in resumed {
                            running.spawn(task);
                        }
                    }
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "could not take deploys over"),
                }
            }
        }
        while running.join_next().await.is_some() {}
    }
}

/// Takes over every running deploy whose lease has expired: concluded when it was cancelled,
/// otherwise returned as a task that resumes it.
async fn take_over_orphans(inner: &Arc<Inner>) -> anyhow::Result<Vec<Task>> {
    let mut resumed = Vec::new();
    for id in store::running_ids(&inner.pool).await? {
        if let run::TakeOver::Resume(taken) = run::take_over(inner, id).await? {
            let (lease, row) = *taken;
            resumed.push(Box::pin(run::run(inner.clone(), row, lease, None)) as Task);
        }
    }
    Ok(resumed)
}

impl Deployer {
    /// A deployer for `config.deploy`, or `None` when the config has no `[deploy]`.
    pub fn new(
        pool: PgPool,
        config: Arc<BobbyConfig>,
        github: Github,
        clock: SharedClock,
        mask: Vec<String>,
        copies: Option<Copies>,
        shutdown: watch::Receiver<bool>,
    ) -> Option<(Deployer, Supervisor)> {
        let settings = config.deploy.clone()?;
        let repo = RepoName::parse(&settings.repo)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            registry: Some(Registry::new(pool.clone())),
            pool,
            config,
            settings,
            repo,
            github,
            clock,
            mask,
            copies,
            shutdown: shutdown.clone(),
            tasks: tx,
        });
        Some((
            Deployer { inner: inner.clone() },
            Supervisor {
                tasks: rx,
                shutdown,
                inner,
            },
        ))
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// `/bobby deploy <env> <ref> [only …] [--dry-run]` by `actor`, typed in `channel` (progress
    /// goes there; to the deployer's DMs when there is none).
    pub async fn start(
        &self,
        actor: &Actor,
        channel: Option<&str>,
        env: &EnvName,
        reference: &DeployRef,
        only: Option<&[String]>,
        dry_run: bool,
    ) -> Handled<Reply> {
        if !dry_run {
            self.authorized(actor, env).await?;
        }
        let (sha, plan, plan_text, no_copy) = match self.decide(reference, only).await {
            Ok(decided) => decided,
            Err(Refusal::User(r)) => return refuse(messages::deploy_refused(&r)),
            // Everything `decide` does besides refusing is asking GitHub.
            Err(Refusal::Internal(e)) => {
                let status = e.downcast_ref::<GithubError>().and_then(GithubError::status);
                tracing::warn!(
                    error = format!("{e:#}"),
                    ?status,
                    "GitHub failed while planning a deploy"
                );
                return refuse(messages::deploy_github_down());
            }
        };
        let typed = reference.as_typed();
        if dry_run {
            if let Some(reason) = no_copy {
                return refuse(messages::deploy_refused(&messages::DeployRefusal::NoCopy { reason }));
            }
            return Ok(messages::deploy_dry_run(env, &typed, sha.as_ref(), &plan_text));
        }

        // Decided: record it with its progress message, checking the rules again under the
        // environment's row lock (the GitHub calls took time; the lease may have changed). The
        // deploy's own lease (who runs it) comes into being in the same transaction.
        let id = store::reserve_id(&self.inner.pool).await?;
        let by = actor.id.to_string();
        let channel = channel.unwrap_or(&by).to_string();
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        self.check(&mut tx, actor, env, true).await?;
        let owner = shared::fence::owner_name();
        let lease = shared::fence::acquire_in(&mut tx, &self.inner.pool, store::LEASE_KIND, &id.to_string(), &owner)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the lease of the new deploy {id} is taken"))?;
        let new = NewDeploy {
            id,
            environment: env,
            reference: &typed,
            sha: sha.as_ref(),
            by: &by,
            plan: &plan,
            channel: &channel,
            now,
        };
        if !store::insert(&mut tx, &new).await? {
            drop(tx);
            // Another deploy won the race for this environment.
            self.authorized(actor, env).await?;
            return Err(anyhow::anyhow!("a deploy to {env} was running, and then it was not").into());
        }
        let row = store::get(&mut tx, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("deploy {id} vanished"))?;
        let progress = run::progress(&self.inner, &row, &[], now);
        let message = outbox::enqueue_from(&mut tx, Sender::Bobby, &channel, &progress, now).await?;
        store::set_message(&mut tx, row.id, message).await?;
        tx.commit().await?;
        tracing::info!(deploy = row.id, %env, reference = %typed, sha = %sha.to_string(), by = %actor.id, "deploy started");
        metrics::counter!("bobby_deploys_total", "outcome" => "started").increment(1);

        let inner = self.inner.clone();
        let task: Task = Box::pin(run::run(inner, row, lease, no_copy));
        if self.inner.tasks.send(task).is_err() {
            // Shutting down: the row stays `running` and its lease expires unrenewed; the replica
            // (or the next Bobby) that takes it over runs it, like after a crash.
            tracing::warn!("deploy recorded while shutting down; it will be taken over once its lease expires");
        }
        Ok(messages::deploy_started(env, &typed, sha.as_ref(), &channel))
    }

    /// Whether `actor` may deploy to `env` now (reading only, before anything slow happens).
    async fn authorized(&self, actor: &Actor, env: &EnvName) -> Handled<()> {
        let mut tx = self.inner.pool.begin().await?;
        self.check(&mut tx, actor, env, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The rules of who may deploy, against the environment as it is in `tx` (row-locked when
    /// `lock`).
    async fn check(&self, tx: &mut sqlx::PgConnection, actor: &Actor, env: &EnvName, lock: bool) -> Handled<()> {
        if lock {
            sqlx::query("SELECT 1 FROM environments WHERE name = $1 FOR UPDATE")
                .bind(env)
                .execute(&mut *tx)
                .await?;
        }
        let environment = shared::envs::store::get(&mut *tx, env)
            .await?
            .or_refuse(|| messages::unknown_env(env.as_str(), None, &[]))?;
        // A running deploy whose runner is gone is not over: it is taken over and resumed.
        let running = store::running_on(&mut *tx, env).await?;
        may_deploy(&environment, actor, running.as_ref()).or_else(|r| refuse(messages::deploy_refused(&r)))
    }

    /// The commit `reference` names: a pull request's head, else a branch's tip, else a commit.
    async fn resolve(&self, reference: &DeployRef) -> Handled<CommitSha, messages::DeployRefusal> {
        let gh = &self.inner.github;
        let repo = &self.inner.repo;
        Ok(match reference {
            DeployRef::Pull(n) => match gh.pull(repo, *n).await {
                Ok(p) => p.head_sha,
                Err(GithubError::Refused { status: 404, .. }) => {
                    return refuse(messages::DeployRefusal::NoSuchPull {
                        number: *n,
                        repo: repo.to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            },
            DeployRef::Name(name) => match gh.branch_tip(repo, name).await? {
                Some(sha) => sha,
                None => match gh.commit_sha(repo, name).await? {
                    Some(sha) => sha,
                    None => {
                        return refuse(messages::DeployRefusal::NoSuchRef {
                            reference: name.clone(),
                            repo: repo.to_string(),
                        });
                    }
                },
            },
        })
    }

    /// Resolves the ref and plans the deploy. Returns the commit, the plan, the plan for people,
    /// and, with a checkout, why the change list could not be read from git (the deploy then ends
    /// `failed` with that reason as soon as it is recorded; a dry run answers with it).
    async fn decide(
        &self,
        reference: &DeployRef,
        only: Option<&[String]>,
    ) -> Handled<(CommitSha, DeployPlan, String, Option<String>), messages::DeployRefusal> {
        let gh = &self.inner.github;
        let repo = &self.inner.repo;
        let settings = &self.inner.settings;
        let sha = self.resolve(reference).await?;
        let map_text = gh.file_at(repo, &settings.resource_map, &sha).await?;
        let Some(map_text) = map_text else {
            if only.is_some() {
                return refuse(messages::DeployRefusal::OnlyWithoutMap {
                    map: settings.resource_map.clone(),
                    sha: sha.to_string(),
                });
            }
            let plan = DeployPlan {
                everything: true,
                ..DeployPlan::default()
            };
            let text = messages::deploy_plan_everything(&settings.resource_map);
            return Ok((sha, plan, text, None));
        };
        let map = shared::resources::MapCache::global().parse(&map_text).map_err(|e| {
            Refusal::User(messages::DeployRefusal::BadMap {
                rendered: e.render(&settings.resource_map),
            })
        })?;
        // GitHub lists at most 300 changed files: past that, everything counts as affected. With a
        // checkout the list comes from git in the mirror, complete.
        let mut cut_short = None;
        let mut no_copy = None;
        let plan = match only {
            Some(names) => map.plan_only(names).map_err(|unknown| {
                let valid: Vec<&str> = map
                    .resources()
                    .iter()
                    .filter(|r| r.enabled)
                    .map(|r| r.name.as_str())
                    .collect();
                Refusal::User(messages::DeployRefusal::UnknownResource {
                    suggestion: closest(&unknown, &valid).map(str::to_string),
                    valid: valid.iter().map(|v| v.to_string()).collect(),
                    name: unknown,
                })
            })?,
            None => {
                let base = gh.branch_tip(repo, &settings.base).await?.ok_or_else(|| {
                    Refusal::User(messages::DeployRefusal::NoBase {
                        base: settings.base.clone(),
                        repo: repo.to_string(),
                    })
                })?;
                match &self.inner.copies {
                    Some(copies) => match copies.changed_files(&base, &sha).await {
                        Ok(paths) => map.plan(&paths),
                        Err(why) => {
                            tracing::warn!(%sha, reason = %why, "no change list from git for a deploy");
                            no_copy = Some(why);
                            map.plan(std::iter::empty::<&str>())
                        }
                    },
                    None => {
                        let changed = gh.changed_files(repo, &base, &sha).await?;
                        if changed.complete {
                            map.plan(&changed.paths)
                        } else {
                            cut_short = Some(changed.paths.len());
                            map.plan_all()
                        }
                    }
                }
            }
        };
        let text = match cut_short {
            Some(n) => plan.to_text_cut_short(n),
            None => plan.to_text(),
        };
        Ok((
            sha,
            DeployPlan {
                everything: false,
                resources: plan.affected,
                levels: plan.levels,
                deploy: plan.deploy,
            },
            text,
            no_copy,
        ))
    }

    /// `/bobby deploy cancel <env>`: the holder, the deployer or an admin.
    pub async fn cancel(&self, actor: &Actor, env: &EnvName) -> Handled<Reply> {
        let mut tx = self.inner.pool.begin().await?;
        let running = store::running_on(&mut tx, env)
            .await?
            .or_refuse(|| messages::deploy_nothing_to_cancel(env))?;
        let holder = shared::envs::store::get(&mut tx, env)
            .await?
            .and_then(|e| e.lease)
            .map(|l| l.holder);
        let allowed = actor.is_admin || running.by_user == actor.id.to_string() || holder.as_ref() == Some(&actor.id);
        if !allowed {
            return refuse(messages::deploy_cancel_not_allowed(&running));
        }
        let why = format!("cancelled by {}", shared::slack::mrkdwn::user(&actor.id.to_string()));
        store::request_cancel(&mut tx, env, &why).await?;
        tx.commit().await?;
        // A deploy nobody runs any more (its lease expired) is concluded now rather than waiting
        // for a runner; a live one hears the cancel through NOTIFY.
        if let run::TakeOver::Resume(taken) = run::take_over(&self.inner, running.id).await? {
            let (lease, row) = *taken;
            // Taken over between the cancel and here: run it, and it stops at once for the cancel.
            let task: Task = Box::pin(run::run(self.inner.clone(), row, lease, None));
            let _ = self.inner.tasks.send(task);
        }
        Ok(messages::deploy_cancelling(&running))
    }

    /// Takes over every `running` deploy whose lease has expired (at start, after a crash) and
    /// resumes it; those whose lease is still live are taken over by the [`Supervisor`] when it
    /// expires. Returns how many were taken over now.
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let resumed = take_over_orphans(&self.inner).await?;
        let n = resumed.len();
        for task in resumed {
            let _ = self.inner.tasks.send(task);
        }
        if n > 0 {
            tracing::warn!(resumed = n, "deploys left running by a previous Bobby are resumed");
        }
        Ok(n)
    }
}

/// Who may deploy (SPEC §4.6): nobody while Nightly deletes, creates or has deleted the
/// environment, nobody while another deploy runs there; an admin anywhere else; otherwise only
/// the holder of its lease (a `faulted` environment included: that is how it gets fixed).
pub fn may_deploy(
    env: &Environment,
    actor: &Actor,
    running: Option<&DeployRow>,
) -> Result<(), messages::DeployRefusal> {
    use messages::DeployRefusal as R;
    match env.state {
        EnvState::Deleting | EnvState::Creating => {
            return Err(R::Check(messages::check_busy(&env.name, env.state)));
        }
        EnvState::Deleted => return Err(R::Deleted { env: env.name.clone() }),
        EnvState::Ready | EnvState::Faulted => {}
    }
    if let Some(r) = running {
        return Err(R::Running(Box::new(r.clone())));
    }
    if actor.is_admin {
        return Ok(());
    }
    match &env.lease {
        Some(lease) if lease.holder == actor.id => Ok(()),
        Some(lease) => Err(R::Check(messages::check_locked_by(lease))),
        None => Err(R::Check(messages::check_unleased(&env.name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy_check::tests::env;

    fn actor(id: &str, is_admin: bool) -> Actor {
        Actor::person(&id.parse().unwrap(), is_admin)
    }

    fn running() -> DeployRow {
        DeployRow {
            id: 7,
            environment: "env-4".parse().unwrap(),
            state: store::DeployState::Running,
            reference: "main".into(),
            sha: "abcdef1".into(),
            by_user: "U0ALICE".into(),
            plan: sqlx::types::Json(DeployPlan::default()),
            channel: "C1".into(),
            message_id: None,
            cancel_reason: None,
            outcome: None,
            started_at: Utc::now(),
            finished_at: None,
        }
    }

    #[test]
    fn the_holder_may_deploy_and_others_are_told_who_holds_it() {
        let alice = actor("U0ALICE", false);
        assert!(may_deploy(&env(EnvState::Ready, Some("U0ALICE")), &alice, None).is_ok());
        assert!(may_deploy(&env(EnvState::Faulted, Some("U0ALICE")), &alice, None).is_ok());
        match may_deploy(&env(EnvState::Ready, Some("U0BOB")), &alice, None) {
            Err(messages::DeployRefusal::Check(text)) => {
                assert!(text.starts_with("env-4 is locked by U0BOB"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        match may_deploy(&env(EnvState::Ready, None), &alice, None) {
            Err(messages::DeployRefusal::Check(text)) => assert!(text.contains("lock it first"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admins_deploy_anywhere_but_not_over_nightly_or_another_deploy() {
        let admin = actor("U0ADMIN1", true);
        assert!(may_deploy(&env(EnvState::Ready, Some("U0BOB")), &admin, None).is_ok());
        assert!(may_deploy(&env(EnvState::Ready, None), &admin, None).is_ok());
        for state in [EnvState::Deleting, EnvState::Creating, EnvState::Deleted] {
            assert!(
                may_deploy(&env(state, Some("U0ADMIN1")), &admin, None).is_err(),
                "{state:?}"
            );
        }
        assert!(matches!(
            may_deploy(&env(EnvState::Ready, Some("U0ADMIN1")), &admin, Some(&running())),
            Err(messages::DeployRefusal::Running(_))
        ));
    }
}
