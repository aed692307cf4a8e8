//! The one command handler behind `/bobby`, the buttons and `bobby exec`: parse, decide in one
//! database transaction, write any DMs and announcements to the outbox in that same transaction,
//! and answer with a [`Reply`].
//!
//! `Bobby::execute` only dispatches; each family of commands has its module: `leases` (lock,
//! unlock, extend, wait, unwait, and the notes a lease's end calls for), `preserve`, `status`
//! (list, status, history), `nightly` and `deploy`. Every step returns
//! [`Handled`]: `refuse(..)` for what the user must change, `?` for our own errors, which
//! `Bobby::run` logs and answers with an apology. A refusal never follows a change:
//! handlers refuse before they write, or report an outcome in which the store changed nothing.

mod deploy;
mod leases;
mod nightly;
mod preserve;
mod status;

use std::sync::Arc;

use shared::clock::SharedClock;
use shared::envs::{Actor, LeasePolicy};
use shared::ids::{EnvName, SlackUserId};
use shared::refusal::{Handled, Refusal, refuse};
use shared::slack::Reply;
use sqlx::PgPool;

pub use shared::refusal::Answer;

use crate::command::{self, Command, closest};
use crate::config::BobbyConfig;
use crate::deploy::Deployer;
use crate::messages;

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
            Ok(cmd) => self.run(user, cmd, channel).await,
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
        self.run(user, cmd, None).await
    }

    /// Runs a parsed command and turns its outcome into the answer: a refusal is the user's
    /// message; an error of ours is logged here, once, and apologised for.
    async fn run(&self, user: &SlackUserId, cmd: Command, channel: Option<&str>) -> Answer {
        match self.execute(user, cmd, channel).await {
            Ok(reply) => Answer::ok(reply),
            Err(Refusal::User(reply)) => Answer::refused(reply),
            Err(Refusal::Internal(e)) => {
                tracing::error!(user = %user, error = format!("{e:#}"), "command failed");
                Answer::refused(messages::internal_error())
            }
        }
    }

    /// Hands the command to its family's handler.
    async fn execute(&self, user: &SlackUserId, cmd: Command, channel: Option<&str>) -> Handled<Reply> {
        let now = self.clock.now();
        let actor = self.actor(user);
        match cmd {
            Command::Help => Ok(messages::help()),
            Command::Lock { target, end, reason } => self.lock(user, target, end, &reason, now).await,
            Command::Unlock { env, force } => self.unlock(user, &actor, &env, force, now).await,
            Command::Extend { env, by } => self.extend(&actor, &env, by, now).await,
            Command::Wait { env } => self.wait(user, &env, now).await,
            Command::Unwait { env } => self.unwait(user, &env, now).await,
            Command::Preserve { env, end } => self.preserve(user, &actor, &env, end, now).await,
            Command::Unpreserve { env } => self.unpreserve(&actor, &env, now).await,
            Command::Status { env } => self.status(env.as_deref(), now).await,
            Command::History { env } => self.history(&env).await,
            Command::Nightly(cmd) => self.nightly(user, &actor, cmd, now).await,
            Command::Deploy(cmd) => self.deploy(&actor, channel, cmd).await,
        }
    }

    fn actor(&self, user: &SlackUserId) -> Actor {
        Actor::person(user, self.config.is_admin(user.as_str()))
    }

    /// The configured environment `name` refers to (typed in any case), or the refusal naming the
    /// ones there are. This is where a typed name becomes an [`EnvName`].
    fn resolve(&self, name: &str) -> Handled<EnvName> {
        let lowered = name.to_lowercase();
        if let Some(found) = self.config.environments.iter().find(|e| e.name.as_str() == lowered) {
            return Ok(found.name.clone());
        }
        let valid = self.env_names();
        refuse(messages::unknown_env(name, closest(name, &valid), &valid))
    }

    fn env_names(&self) -> Vec<&str> {
        self.config.environments.iter().map(|e| e.name.as_str()).collect()
    }

    /// A configured environment the database does not know (yet): only between a config change and
    /// the restart that syncs it.
    fn vanished<T>(&self, name: &EnvName) -> Handled<T> {
        tracing::warn!(environment = %name, "configured environment missing from the database");
        refuse(messages::unknown_env(name.as_str(), None, &self.env_names()))
    }
}
