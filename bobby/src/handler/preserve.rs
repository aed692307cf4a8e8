//! Preservation (SPEC §4.5): `preserve` keeps an environment through Nightly, `unpreserve` lets
//! Nightly have it again.

use chrono::{DateTime, Utc};
use shared::envs::Actor;
use shared::envs::store::{self, PreserveOutcome, UnpreserveOutcome};
use shared::ids::SlackUserId;
use shared::refusal::{Handled, refuse};
use shared::schedule;
use shared::slack::Reply;

use super::Bobby;
use crate::command::PreserveEnd;
use crate::messages;

impl Bobby {
    pub(super) async fn preserve(
        &self,
        user: &SlackUserId,
        actor: &Actor,
        env: &str,
        end: PreserveEnd,
        now: DateTime<Utc>,
    ) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let until = self.preserve_end(end, now, actor.is_admin)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::preserve(&mut tx, &name, actor, until, now).await?;
        tx.commit().await?;
        match outcome {
            PreserveOutcome::Preserved { until, .. } => Ok(messages::preserved(&name, user, until)),
            PreserveOutcome::NotYours(lease) => refuse(messages::preserve_needs_lease(&name, lease.as_ref())),
            PreserveOutcome::Unknown => self.vanished(&name),
        }
    }

    pub(super) async fn unpreserve(&self, actor: &Actor, env: &str, now: DateTime<Utc>) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::unpreserve(&mut tx, &name, actor, now).await?;
        tx.commit().await?;
        match outcome {
            UnpreserveOutcome::Unpreserved => Ok(messages::unpreserved(&name)),
            UnpreserveOutcome::NotPreserved => refuse(messages::not_preserved(&name)),
            UnpreserveOutcome::NotYours(_) => refuse(messages::unpreserve_not_yours(&name)),
            UnpreserveOutcome::Unknown => self.vanished(&name),
        }
    }

    /// Until when a preservation asked for with `end` lasts, or the refusal. Admins may preserve
    /// beyond `max_lease`; everyone else is bounded by it like a lease.
    fn preserve_end(&self, end: PreserveEnd, now: DateTime<Utc>, is_admin: bool) -> Handled<DateTime<Utc>> {
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
                    return refuse(messages::preserve_in_past());
                }
                t
            }
        };
        if !is_admin && until > self.policy.latest_expiry(now) {
            return refuse(messages::until_too_far(until, self.policy.max_lease));
        }
        Ok(until)
    }
}
