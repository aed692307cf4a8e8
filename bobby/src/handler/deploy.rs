//! `/bobby deploy …` (SPEC §4.6): resolves the environment and hands over to the [`Deployer`],
//! which decides and runs the deploy.
//!
//! [`Deployer`]: crate::deploy::Deployer

use shared::envs::Actor;
use shared::refusal::{Handled, OrRefuse};
use shared::slack::Reply;

use super::Bobby;
use crate::command::DeployCommand;
use crate::messages;

impl Bobby {
    pub(super) async fn deploy(&self, actor: &Actor, channel: Option<&str>, cmd: DeployCommand) -> Handled<Reply> {
        let deployer = self
            .deployer
            .as_ref()
            .or_refuse(|| messages::deploy_unavailable(self.config.deploy.is_some()))?;
        match cmd {
            DeployCommand::Start {
                env,
                reference,
                only,
                dry_run,
            } => {
                let env = self.resolve(&env)?;
                deployer
                    .start(actor, channel, &env, &reference, only.as_deref(), dry_run)
                    .await
            }
            DeployCommand::Cancel { env } => deployer.cancel(actor, &self.resolve(&env)?).await,
        }
    }
}
