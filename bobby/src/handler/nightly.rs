//! `/bobby nightly …`: status for everyone; running and skipping for admins. A run is queued for
//! the Nightly leader and reported through the outbox when it is done.

use chrono::{DateTime, Utc};
use shared::envs::Actor;
use shared::ids::{EnvName, SlackUserId};
use shared::refusal::{Handled, OrRefuse, refuse};
use shared::slack::Reply;

use super::Bobby;
use crate::command::NightlyCommand;
use crate::messages;
use crate::nightly::{self, Nightly, SkipOutcome};

impl Bobby {
    pub(super) async fn nightly(
        &self,
        user: &SlackUserId,
        actor: &Actor,
        cmd: NightlyCommand,
        now: DateTime<Utc>,
    ) -> Handled<Reply> {
        let n = Nightly::new(self.clone(), None, Vec::new()).or_refuse(messages::nightly_not_configured)?;
        match cmd {
            NightlyCommand::Status => Ok(messages::nightly_status(&nightly::status(&n, now).await?)),
            NightlyCommand::Run { .. } if !actor.is_admin => refuse(messages::nightly_needs_admin("run")),
            NightlyCommand::Run { phase, env, dry_run } => {
                let env = env.map(|e| self.resolve(&e)).transpose()?;
                if dry_run {
                    let plan = nightly::dry_run(&n, phase, env.as_ref().map(EnvName::as_str), now).await?;
                    Ok(messages::nightly_dry_run(&plan))
                } else {
                    let only = env.as_ref().map(EnvName::as_str);
                    let requested = nightly::request(&n, phase, only, user.as_str(), now).await?;
                    let announce = self.config.announce_channel.as_ref().map(|c| c.as_str());
                    Ok(messages::nightly_requested(&requested, announce))
                }
            }
            NightlyCommand::Skip { .. } if !actor.is_admin => refuse(messages::nightly_needs_admin("skip")),
            NightlyCommand::Skip { night } => match nightly::skip(&n, night, user.as_str(), now).await? {
                outcome @ SkipOutcome::Past(_) => refuse(messages::nightly_skip(&outcome, user.as_str())),
                outcome => Ok(messages::nightly_skip(&outcome, user.as_str())),
            },
        }
    }
}
