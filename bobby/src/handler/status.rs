//! What people look at: `list`/`status` (all environments or one) and `history`.

use chrono::{DateTime, Utc};
use shared::envs::store;
use shared::refusal::Handled;
use shared::slack::Reply;

use super::Bobby;
use crate::messages;

impl Bobby {
    pub(super) async fn status(&self, env: Option<&str>, now: DateTime<Utc>) -> Handled<Reply> {
        let Some(env) = env else {
            let envs = store::list(&mut *self.pool.acquire().await?).await?;
            return Ok(messages::list(&envs, now));
        };
        let name = self.resolve(env)?;
        match store::get(&mut *self.pool.acquire().await?, &name).await? {
            Some(e) => Ok(messages::status(&e, now)),
            None => self.vanished(&name),
        }
    }

    pub(super) async fn history(&self, env: &str) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let events = store::history(&mut *self.pool.acquire().await?, &name, 20).await?;
        Ok(messages::history(&name, &events))
    }
}
