//! The one command handler behind `/bobby`, the buttons and `bobby exec`: parse, decide in one
//! database transaction, write any DMs and announcements to the outbox in that same transaction,
//! and answer with a [`Reply`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::clock::SharedClock;
use shared::envs::store::{
    self, Ended, ExtendOutcome, LockOutcome, PreserveOutcome, UnlockOutcome, UnpreserveOutcome, UnwaitOutcome,
    WaitOutcome,
};
use shared::envs::{Actor, LeasePolicy};
use shared::ids::SlackUserId;
use shared::schedule;
use shared::slack::{Reply, outbox};
use sqlx::{PgConnection, PgPool};

use crate::command::{self, Command, DeployCommand, LeaseEnd, NightlyCommand, PreserveEnd, Target, closest};
use crate::config::BobbyConfig;
use crate::deploy::Deployer;
use crate::messages;
use crate::nightly::{self, Nightly};

/// What a command produced: the reply, and whether it was refused (for `exec`'s exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply: Reply,
    pub refused: bool,
}

impl Answer {
    pub(crate) fn ok(reply: Reply) -> Self {
        Answer { reply, refused: false }
    }

    pub(crate) fn refused(reply: Reply) -> Self {
        Answer { reply, refused: true }
    }
}

#[derive(Clone)]
pub struct Bobby {
    pub pool: PgPool,
    pub config: Arc<BobbyConfig>,
    pub clock: SharedClock,
    policy: LeasePolicy,
    /// Runs `/bobby deploy`: only in the server, with `[deploy]` configured and GitHub credentials.
    deployer: Option<Deployer>,
}

impl Bobby {
    pub fn new(pool: PgPool, config: Arc<BobbyConfig>, clock: SharedClock) -> Self {
        let policy = config.lease_policy();
        Bobby {
            pool,
            config,
            clock,
            policy,
            deployer: None,
        }
    }

    pub fn with_deployer(mut self, deployer: Deployer) -> Self {
        self.deployer = Some(deployer);
        self
    }

    pub fn policy(&self) -> &LeasePolicy {
        &self.policy
    }

    /// Runs a command typed by `user`. Never fails: our own errors are logged with their whole
    /// chain and answered with a generic apology that changed nothing.
    pub async fn handle(&self, user: &SlackUserId, text: &str) -> Answer {
        self.handle_in(user, text, None).await
    }

    /// Runs a command typed by `user` in `channel` (where a deploy's progress is shown).
    pub async fn handle_in(&self, user: &SlackUserId, text: &str, channel: Option<&str>) -> Answer {
        match command::parse(text) {
            Err(e) => Answer::refused(messages::parse_error(&e)),
            Ok(Command::Deploy(cmd)) => match self.deploy(user, channel, cmd).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::error!(user = %user, error = format!("{e:#}"), "deploy command failed");
                    Answer::refused(messages::internal_error())
                }
            },
            Ok(cmd) => self.run(user, cmd).await,
        }
    }

    /// `/bobby deploy …` (SPEC §4.6).
    async fn deploy(&self, user: &SlackUserId, channel: Option<&str>, cmd: DeployCommand) -> anyhow::Result<Answer> {
        let Some(deployer) = &self.deployer else {
            return Ok(Answer::refused(messages::deploy_unavailable(
                self.config.deploy.is_some(),
            )));
        };
        let actor = self.actor(user);
        match cmd {
            DeployCommand::Start {
                env,
                reference,
                only,
                dry_run,
            } => {
                let env = match self.resolve(&env) {
                    Ok(n) => n,
                    Err(answer) => return Ok(answer),
                };
                deployer
                    .start(&actor, channel, &env, &reference, only.as_deref(), dry_run)
                    .await
            }
            DeployCommand::Cancel { env } => {
                let env = match self.resolve(&env) {
                    Ok(n) => n,
                    Err(answer) => return Ok(answer),
                };
                deployer.cancel(&actor, &env).await
            }
        }
    }

    /// Runs a button press: `action_id` names the action, `value` the environment.
    pub async fn handle_action(&self, user: &SlackUserId, action_id: &str, value: &str) -> Answer {
        let env = value.to_string();
        let cmd = match action_id {
            messages::ACTION_UNLOCK => Command::Unlock { env, force: false },
            messages::ACTION_EXTEND_1H => Command::Extend {
                env,
                by: shared::duration::Span::from_secs(3600),
            },
            messages::ACTION_WAIT => Command::Wait { env },
            _ => return Answer::refused(messages::bad_action()),
        };
        self.run(user, cmd).await
    }

    async fn run(&self, user: &SlackUserId, cmd: Command) -> Answer {
        match self.execute(user, cmd).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(user = %user, error = format!("{e:#}"), "command failed");
                Answer::refused(messages::internal_error())
            }
        }
    }

    fn actor(&self, user: &SlackUserId) -> Actor {
        Actor {
            id: user.to_string(),
            is_admin: self.config.is_admin(user.as_str()),
        }
    }

    /// The configured environment `name` refers to, or the reply explaining there is none.
    fn resolve(&self, name: &str) -> Result<String, Answer> {
        let valid: Vec<&str> = self.config.environments.iter().map(|e| e.name.as_str()).collect();
        let lowered = name.to_lowercase();
        if let Some(found) = valid.iter().find(|v| **v == lowered) {
            return Ok(found.to_string());
        }
        Err(Answer::refused(messages::unknown_env(
            name,
            closest(name, &valid),
            &valid,
        )))
    }

    /// A configured environment the database does not know (yet): only between a config change and
    /// the restart that syncs it.
    fn vanished(&self, name: &str) -> Answer {
        let valid: Vec<&str> = self.config.environments.iter().map(|e| e.name.as_str()).collect();
        tracing::warn!(environment = name, "configured environment missing from the database");
        Answer::refused(messages::unknown_env(name, None, &valid))
    }

    async fn execute(&self, user: &SlackUserId, cmd: Command) -> anyhow::Result<Answer> {
        let now = self.clock.now();
        let actor = self.actor(user);
        macro_rules! env_or_answer {
            ($name:expr) => {
                match self.resolve(&$name) {
                    Ok(n) => n,
                    Err(answer) => return Ok(answer),
                }
            };
        }
        let answer = match cmd {
            Command::Help => Answer::ok(messages::help()),
            // Routed by `handle_in`; a button never starts a deploy.
            Command::Deploy(_) => Answer::refused(messages::bad_action()),
            Command::Lock { target, end, reason } => {
                let target = match target {
                    Target::Any => None,
                    Target::Env(name) => Some(env_or_answer!(name)),
                };
                let expires_at = match self.lease_end(end, now) {
                    Ok(t) => t,
                    Err(answer) => return Ok(answer),
                };
                let mut tx = self.pool.begin().await?;
                let outcome = match &target {
                    Some(name) => store::lock(&mut tx, name, user.as_str(), &reason, now, expires_at).await?,
                    None => store::lock_any(&mut tx, user.as_str(), &reason, now, expires_at).await?,
                };
                tx.commit().await?;
                match outcome {
                    LockOutcome::Locked { lease, state } => {
                        metrics::counter!("bobby_lock_total", "outcome" => "locked").increment(1);
                        Answer::ok(messages::locked(&lease, state))
                    }
                    LockOutcome::AlreadyYours(lease) => Answer::refused(messages::already_yours(&lease)),
                    LockOutcome::HeldBy { lease, waiting } => {
                        metrics::counter!("bobby_lock_total", "outcome" => "refused").increment(1);
                        Answer::refused(messages::held_by(&lease, waiting))
                    }
                    LockOutcome::NoneFree => Answer::refused(messages::none_free()),
                    LockOutcome::Unknown => self.vanished(target.as_deref().unwrap_or("any")),
                }
            }
            Command::Unlock { env, force } => {
                let name = env_or_answer!(env);
                let mut tx = self.pool.begin().await?;
                let outcome = store::unlock(&mut tx, &name, &actor, force, now, &self.policy).await?;
                if let UnlockOutcome::Released(ended) = &outcome {
                    self.tell_about_end(&mut tx, ended, user.as_str(), now).await?;
                }
                tx.commit().await?;
                match outcome {
                    UnlockOutcome::Released(ended) => Answer::ok(messages::unlocked(&ended, user.as_str())),
                    UnlockOutcome::NotLocked => Answer::refused(messages::not_locked(&name)),
                    UnlockOutcome::NotYours(lease) => {
                        Answer::refused(messages::not_yours(&lease, actor.is_admin, "unlock"))
                    }
                    UnlockOutcome::ForceNeedsAdmin(lease) => Answer::refused(messages::force_needs_admin(&lease)),
                    UnlockOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Extend { env, by } => {
                let name = env_or_answer!(env);
                let mut tx = self.pool.begin().await?;
                let outcome = store::extend(&mut tx, &name, &actor, by.chrono(), now, &self.policy).await?;
                tx.commit().await?;
                let max = self.policy.max_lease;
                match outcome {
                    ExtendOutcome::Extended { lease, capped } => Answer::ok(messages::extended(&lease, capped, max)),
                    ExtendOutcome::AlreadyAtMax(lease) => Answer::refused(messages::already_at_max(&lease, max)),
                    ExtendOutcome::NotLocked => Answer::refused(messages::not_locked(&name)),
                    ExtendOutcome::NotYours(lease) => Answer::refused(messages::not_yours(&lease, false, "extend")),
                    ExtendOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Wait { env } => {
                let name = env_or_answer!(env);
                let mut tx = self.pool.begin().await?;
                let outcome = store::wait(&mut tx, &name, user.as_str(), now).await?;
                tx.commit().await?;
                match outcome {
                    WaitOutcome::Waiting {
                        position,
                        already,
                        lease,
                    } => Answer::ok(messages::waiting(&lease, position, already)),
                    WaitOutcome::Free => Answer::refused(messages::free_no_wait(&name)),
                    WaitOutcome::YouHoldIt(lease) => Answer::refused(messages::you_hold_it(&lease)),
                    WaitOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Unwait { env } => {
                let name = env_or_answer!(env);
                let mut tx = self.pool.begin().await?;
                let outcome = store::unwait(&mut tx, &name, user.as_str(), now).await?;
                tx.commit().await?;
                match outcome {
                    UnwaitOutcome::Left => Answer::ok(messages::left_waitlist(&name)),
                    UnwaitOutcome::NotWaiting => Answer::refused(messages::not_waiting(&name)),
                    UnwaitOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Preserve { env, end } => {
                let name = env_or_answer!(env);
                let until = match self.preserve_end(end, now, actor.is_admin) {
                    Ok(t) => t,
                    Err(answer) => return Ok(answer),
                };
                let mut tx = self.pool.begin().await?;
                let outcome = store::preserve(&mut tx, &name, &actor, until, now).await?;
                tx.commit().await?;
                match outcome {
                    PreserveOutcome::Preserved { until, .. } => {
                        Answer::ok(messages::preserved(&name, user.as_str(), until))
                    }
                    PreserveOutcome::NotYours(lease) => {
                        Answer::refused(messages::preserve_needs_lease(&name, lease.as_ref()))
                    }
                    PreserveOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Unpreserve { env } => {
                let name = env_or_answer!(env);
                let mut tx = self.pool.begin().await?;
                let outcome = store::unpreserve(&mut tx, &name, &actor, now).await?;
                tx.commit().await?;
                match outcome {
                    UnpreserveOutcome::Unpreserved => Answer::ok(messages::unpreserved(&name)),
                    UnpreserveOutcome::NotPreserved => Answer::refused(messages::not_preserved(&name)),
                    UnpreserveOutcome::NotYours(_) => Answer::refused(messages::unpreserve_not_yours(&name)),
                    UnpreserveOutcome::Unknown => self.vanished(&name),
                }
            }
            Command::Status { env: None } => {
                let mut conn = self.pool.acquire().await?;
                let envs = store::list(&mut conn).await?;
                Answer::ok(messages::list(&envs, now))
            }
            Command::Status { env: Some(env) } => {
                let name = env_or_answer!(env);
                let mut conn = self.pool.acquire().await?;
                match store::get(&mut conn, &name).await? {
                    Some(e) => Answer::ok(messages::status(&e, now)),
                    None => self.vanished(&name),
                }
            }
            Command::Nightly(cmd) => self.nightly(user, &actor, cmd, now).await?,
            Command::History { env } => {
                let name = env_or_answer!(env);
                let mut conn = self.pool.acquire().await?;
                let events = store::history(&mut conn, &name, 20).await?;
                Answer::ok(messages::history(&name, &events))
            }
        };
        Ok(answer)
    }

    /// `/bobby nightly …`: status for everyone; running and skipping for admins. A run is queued
    /// for the Nightly leader and reported through the outbox when it is done.
    async fn nightly(
        &self,
        user: &SlackUserId,
        actor: &Actor,
        cmd: NightlyCommand,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Answer> {
        let Some(n) = Nightly::new(self.clone(), None, Vec::new()) else {
            return Ok(Answer::refused(messages::nightly_not_configured()));
        };
        Ok(match cmd {
            NightlyCommand::Status => Answer::ok(messages::nightly_status(&nightly::status(&n, now).await?)),
            NightlyCommand::Run { .. } if !actor.is_admin => Answer::refused(messages::nightly_needs_admin("run")),
            NightlyCommand::Run { phase, env, dry_run } => {
                let env = match env.map(|e| self.resolve(&e)).transpose() {
                    Ok(env) => env,
                    Err(answer) => return Ok(answer),
                };
                if dry_run {
                    Answer::ok(messages::nightly_dry_run(
                        &nightly::dry_run(&n, phase, env.as_deref(), now).await?,
                    ))
                } else {
                    let requested = nightly::request(&n, phase, env.as_deref(), user.as_str(), now).await?;
                    let announce = self.config.announce_channel.as_ref().map(|c| c.as_str());
                    Answer::ok(messages::nightly_requested(&requested, announce))
                }
            }
            NightlyCommand::Skip { .. } if !actor.is_admin => Answer::refused(messages::nightly_needs_admin("skip")),
            NightlyCommand::Skip { night } => {
                let outcome = nightly::skip(&n, night, user.as_str(), now).await?;
                let refused = matches!(outcome, nightly::SkipOutcome::Past(_));
                Answer {
                    reply: messages::nightly_skip(&outcome, user.as_str()),
                    refused,
                }
            }
        })
    }

    /// When a lease asked for with `end` expires, or the reply refusing it.
    fn lease_end(&self, end: LeaseEnd, now: DateTime<Utc>) -> Result<DateTime<Utc>, Answer> {
        let max = self.policy.max_lease;
        match end {
            LeaseEnd::Default => Ok(self.policy.default_expiry(now)),
            LeaseEnd::For(span) if span > max => Err(Answer::refused(messages::too_long(span, max))),
            LeaseEnd::For(span) => Ok(now + span.chrono()),
            LeaseEnd::Until(t) => {
                let at = schedule::next_local_time(now, self.policy.timezone, t);
                if at > self.policy.latest_expiry(now) {
                    Err(Answer::refused(messages::until_too_far(at, max)))
                } else {
                    Ok(at)
                }
            }
        }
    }

    /// Until when a preservation asked for with `end` lasts, or the reply refusing it. Admins may
    /// preserve beyond `max_lease`; everyone else is bounded by it like a lease.
    fn preserve_end(&self, end: PreserveEnd, now: DateTime<Utc>, is_admin: bool) -> Result<DateTime<Utc>, Answer> {
        let tz = self.policy.timezone;
        let until = match end {
            PreserveEnd::Default => match &self.config.nightly {
                // Through the coming night: until the morning's create time after the next delete.
                Some(n) => {
                    let delete = schedule::next_local_time(now, tz, n.delete_at.0);
                    schedule::next_local_time(delete, tz, n.create_at.0)
                }
                None => now + chrono::Duration::days(1),
            },
            PreserveEnd::For(span) => now + span.chrono(),
            PreserveEnd::Until(date) => {
                let t = schedule::end_of_local_day(tz, date);
                if t <= now {
                    return Err(Answer::refused(messages::preserve_in_past()));
                }
                t
            }
        };
        if !is_admin && until > self.policy.latest_expiry(now) {
            return Err(Answer::refused(messages::until_too_far(until, self.policy.max_lease)));
        }
        Ok(until)
    }

    /// Writes the DMs and announcements a lease end calls for into the outbox, in the caller's
    /// transaction.
    pub async fn tell_about_end(
        &self,
        conn: &mut PgConnection,
        ended: &Ended,
        by: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        if let (Some(dm), Some(holder)) = (messages::lease_lost(ended, by), ended.previous.holder_slack()) {
            outbox::enqueue(conn, holder.as_str(), &dm, now).await?;
        }
        if let (Some(note), Some(channel)) = (
            messages::lease_end_announcement(ended, by),
            self.config.announce_channel.as_ref(),
        ) {
            outbox::enqueue(conn, channel.as_str(), &note, now).await?;
        }
        if let Some(next) = &ended.next
            && let Some(holder) = next.holder_slack()
        {
            outbox::enqueue(conn, holder.as_str(), &messages::handed_over(next), now).await?;
        }
        Ok(())
    }
}
