//! Leases: `lock`, `unlock`, `extend`, `wait`, `unwait`, and the DMs and announcements a lease's
//! end calls for (also written by the expiry worker and Nightly).

use chrono::{DateTime, Utc};
use shared::duration::Span;
use shared::envs::store::{self, Ended, ExtendOutcome, LockOutcome, UnlockOutcome, UnwaitOutcome, WaitOutcome};
use shared::envs::{Actor, LeaseReason};
use shared::ids::{Holder, SlackUserId};
use shared::refusal::{Handled, refuse};
use shared::schedule;
use shared::slack::{Reply, outbox};
use sqlx::PgConnection;

use super::Bobby;
use crate::command::{LeaseEnd, Target};
use crate::messages;

impl Bobby {
    pub(super) async fn lock(
        &self,
        user: &SlackUserId,
        target: Target,
        end: LeaseEnd,
        reason: &LeaseReason,
        now: DateTime<Utc>,
    ) -> Handled<Reply> {
        let target = match target {
            Target::Any => None,
            Target::Env(name) => Some(self.resolve(&name)?),
        };
        let expires_at = self.lease_end(end, now)?;
        let holder = Holder::Person(user.clone());
        let mut tx = self.pool.begin().await?;
        let outcome = match &target {
            Some(name) => store::lock(&mut tx, name, &holder, reason, now, expires_at).await?,
            None => store::lock_any(&mut tx, &holder, reason, now, expires_at).await?,
        };
        tx.commit().await?;
        match outcome {
            LockOutcome::Locked { lease, state } => {
                metrics::counter!("bobby_lock_total", "outcome" => "locked").increment(1);
                Ok(messages::locked(&lease, state))
            }
            LockOutcome::AlreadyYours(lease) => refuse(messages::already_yours(&lease)),
            LockOutcome::HeldBy { lease, waiting } => {
                metrics::counter!("bobby_lock_total", "outcome" => "refused").increment(1);
                refuse(messages::held_by(&lease, waiting))
            }
            LockOutcome::NoneFree => refuse(messages::none_free()),
            LockOutcome::Unknown => match &target {
                Some(name) => self.vanished(name),
                // `lock_any` only answers `Unknown` for a name it read a moment before.
                None => refuse(messages::none_free()),
            },
        }
    }

    pub(super) async fn unlock(
        &self,
        user: &SlackUserId,
        actor: &Actor,
        env: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::unlock(&mut tx, &name, actor, force, now, &self.policy).await?;
        if let UnlockOutcome::Released(ended) = &outcome {
            self.tell_about_end(&mut tx, ended, Some(user), now).await?;
        }
        tx.commit().await?;
        match outcome {
            UnlockOutcome::Released(ended) => Ok(messages::unlocked(&ended, user)),
            UnlockOutcome::NotLocked => refuse(messages::not_locked(&name)),
            UnlockOutcome::NotYours(lease) => refuse(messages::not_yours(&lease, actor.is_admin, "unlock")),
            UnlockOutcome::ForceNeedsAdmin(lease) => refuse(messages::force_needs_admin(&lease)),
            UnlockOutcome::Unknown => self.vanished(&name),
        }
    }

    pub(super) async fn extend(&self, actor: &Actor, env: &str, by: Span, now: DateTime<Utc>) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::extend(&mut tx, &name, actor, by.chrono(), now, &self.policy).await?;
        tx.commit().await?;
        let max = self.policy.max_lease;
        match outcome {
            ExtendOutcome::Extended { lease, capped } => Ok(messages::extended(&lease, capped, max)),
            ExtendOutcome::AlreadyAtMax(lease) => refuse(messages::already_at_max(&lease, max)),
            ExtendOutcome::NotLocked => refuse(messages::not_locked(&name)),
            ExtendOutcome::NotYours(lease) => refuse(messages::not_yours(&lease, false, "extend")),
            ExtendOutcome::Unknown => self.vanished(&name),
        }
    }

    pub(super) async fn wait(&self, user: &SlackUserId, env: &str, now: DateTime<Utc>) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::wait(&mut tx, &name, user, now).await?;
        tx.commit().await?;
        match outcome {
            WaitOutcome::Waiting {
                position,
                already,
                lease,
            } => Ok(messages::waiting(&lease, position, already)),
            WaitOutcome::Free => refuse(messages::free_no_wait(&name)),
            WaitOutcome::YouHoldIt(lease) => refuse(messages::you_hold_it(&lease)),
            WaitOutcome::Unknown => self.vanished(&name),
        }
    }

    pub(super) async fn unwait(&self, user: &SlackUserId, env: &str, now: DateTime<Utc>) -> Handled<Reply> {
        let name = self.resolve(env)?;
        let mut tx = self.pool.begin().await?;
        let outcome = store::unwait(&mut tx, &name, user, now).await?;
        tx.commit().await?;
        match outcome {
            UnwaitOutcome::Left => Ok(messages::left_waitlist(&name)),
            UnwaitOutcome::NotWaiting => refuse(messages::not_waiting(&name)),
            UnwaitOutcome::Unknown => self.vanished(&name),
        }
    }

    /// When a lease asked for with `end` expires, or the refusal.
    fn lease_end(&self, end: LeaseEnd, now: DateTime<Utc>) -> Handled<DateTime<Utc>> {
        let max = self.policy.max_lease;
        match end {
            LeaseEnd::Default => Ok(self.policy.default_expiry(now)),
            LeaseEnd::For(span) if span > max => refuse(messages::too_long(span, max)),
            LeaseEnd::For(span) => Ok(now + span.chrono()),
            LeaseEnd::Until(t) => {
                let at = schedule::next_local_time(now, self.policy.timezone, t);
                if at > self.policy.latest_expiry(now) {
                    refuse(messages::until_too_far(at, max))
                } else {
                    Ok(at)
                }
            }
        }
    }

    /// Writes the DMs and announcements a lease end calls for into the outbox, in the caller's
    /// transaction. `by` is who ended it; `None` when Bobby did (expiry, Nightly).
    pub async fn tell_about_end(
        &self,
        conn: &mut PgConnection,
        ended: &Ended,
        by: Option<&SlackUserId>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        if let (Some(dm), Some(holder)) = (messages::lease_lost(ended, by), ended.previous.holder.person()) {
            outbox::enqueue(conn, holder.as_str(), &dm, now).await?;
        }
        if let (Some(note), Some(channel)) = (
            messages::lease_end_announcement(ended, by),
            self.config.announce_channel.as_ref(),
        ) {
            outbox::enqueue(conn, channel.as_str(), &note, now).await?;
        }
        if let Some(next) = &ended.next
            && let Some(holder) = next.holder.person()
        {
            outbox::enqueue(conn, holder.as_str(), &messages::handed_over(next), now).await?;
        }
        Ok(())
    }
}
