//! Replies about leases (lock, unlock, extend, wait, unwait), the DMs and announcements of a lease
//! that ended or was handed over, and the expiry reminder.

use chrono::{DateTime, Utc};
use shared::duration::Span;
use shared::envs::store::{EndReason, Ended};
use shared::envs::{EnvState, Lease};
use shared::ids::{EnvName, SlackUserId};
use shared::slack::Reply;
use shared::slack::mrkdwn::{date, escape};

use super::{ACTION_EXTEND_1H, ACTION_UNLOCK, ACTION_WAIT, env, holder, person, reason_suffix, state_words};

pub fn too_long(span: Span, max: Span) -> Reply {
    Reply::ephemeral(format!(
        ":warning: {span} is longer than the longest lease ({max}). Lock for at most {max}, and `/bobby extend` later if you still need it."
    ))
}

pub fn until_too_far(until: DateTime<Utc>, max: Span) -> Reply {
    Reply::ephemeral(format!(
        ":warning: {} is further away than the longest lease ({max}).",
        date(until)
    ))
}

pub fn locked(lease: &Lease, state: EnvState) -> Reply {
    let mut text = format!(
        ":lock: {} locked {} until {}{}",
        holder(&lease.holder),
        env(&lease.environment),
        date(lease.expires_at),
        reason_suffix(&lease.reason)
    );
    if state != EnvState::Ready {
        text.push_str(&format!(
            "\n:information_source: {} is {} right now (Nightly); deploys wait until it is ready.",
            env(&lease.environment),
            state_words(state)
        ));
    }
    Reply::in_channel(text)
        .with_button("Unlock", ACTION_UNLOCK, lease.environment.as_str(), false)
        .with_button("Extend 1h", ACTION_EXTEND_1H, lease.environment.as_str(), false)
}

pub fn already_yours(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        "You already hold {} until {}. To keep it longer: `/bobby extend {} 2h`",
        env(&lease.environment),
        date(lease.expires_at),
        escape(lease.environment.as_str())
    ))
    .with_button("Extend 1h", ACTION_EXTEND_1H, lease.environment.as_str(), false)
}

pub fn held_by(lease: &Lease, waiting: usize) -> Reply {
    let line = match waiting {
        0 => "Nobody is waiting for it.".to_string(),
        1 => "1 person is waiting for it.".to_string(),
        n => format!("{n} people are waiting for it."),
    };
    Reply::ephemeral(format!(
        ":no_entry: {} is locked by {} since {}, until {}{}\n{line} Join the waitlist and it is yours as soon as it is free: `/bobby wait {}`",
        env(&lease.environment),
        holder(&lease.holder),
        date(lease.since),
        date(lease.expires_at),
        reason_suffix(&lease.reason),
        escape(lease.environment.as_str())
    ))
    .with_button("Join waitlist", ACTION_WAIT, lease.environment.as_str(), true)
}

pub fn none_free() -> Reply {
    Reply::ephemeral(
        ":no_entry: No environment is free and ready right now. `/bobby list` shows who holds what; `/bobby wait &lt;env&gt;` puts you in line for one.",
    )
}

pub fn unlocked(ended: &Ended, by: &SlackUserId) -> Reply {
    let lease = &ended.previous;
    let mut text = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {} (held by {})",
            person(by),
            env(&lease.environment),
            holder(&lease.holder)
        ),
        _ => format!(":unlock: {} unlocked {}", person(by), env(&lease.environment)),
    };
    match &ended.next {
        Some(next) => text.push_str(&format!(
            "; it goes to {}, first on the waitlist, until {}.",
            holder(&next.holder),
            date(next.expires_at)
        )),
        None => text.push_str("; it is free."),
    }
    Reply::in_channel(text)
}

/// Who ended a lease: a person, or Bobby itself (`None`: expiry, Nightly). Only a forced unlock
/// names them, and only a person forces an unlock.
fn ended_by(by: Option<&SlackUserId>) -> String {
    by.map(person).unwrap_or_else(|| "bobby".to_string())
}

/// DM to whoever lost a lease they did not give up themselves.
pub fn lease_lost(ended: &Ended, by: Option<&SlackUserId>) -> Option<Reply> {
    let lease = &ended.previous;
    let text = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {}, which you held{}. If you still need it: `/bobby lock {}`",
            ended_by(by),
            env(&lease.environment),
            reason_suffix(&lease.reason),
            escape(lease.environment.as_str())
        ),
        EndReason::Expired => format!(
            ":hourglass: Your lease on {} expired at {} and was released. If you still need it: `/bobby lock {}`",
            env(&lease.environment),
            date(lease.expires_at),
            escape(lease.environment.as_str())
        ),
        EndReason::Nightly => format!(
            ":crescent_moon: Nightly is tearing down {}, so your lease on it ended.",
            env(&lease.environment)
        ),
        EndReason::Unlocked => return None,
    };
    Some(Reply::in_channel(text))
}

/// Announcement for `announce_channel` of leases that ended without their holder's say.
pub fn lease_end_announcement(ended: &Ended, by: Option<&SlackUserId>) -> Option<Reply> {
    let lease = &ended.previous;
    let what = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {} (held by {})",
            ended_by(by),
            env(&lease.environment),
            holder(&lease.holder)
        ),
        EndReason::Expired => format!(
            ":hourglass: {} was released: the lease of {} expired",
            env(&lease.environment),
            holder(&lease.holder)
        ),
        _ => return None,
    };
    let next = match &ended.next {
        Some(n) => format!("; it goes to {}, first on the waitlist.", holder(&n.holder)),
        None => "; it is free.".to_string(),
    };
    Some(Reply::in_channel(format!("{what}{next}")))
}

/// DM to the waiter who just got a lease.
pub fn handed_over(lease: &Lease) -> Reply {
    Reply::in_channel(format!(
        ":tada: {} is yours now, until {}: you were first on the waitlist.",
        env(&lease.environment),
        date(lease.expires_at)
    ))
    .with_button("Unlock", ACTION_UNLOCK, lease.environment.as_str(), false)
    .with_button("Extend 1h", ACTION_EXTEND_1H, lease.environment.as_str(), false)
}

pub fn reminder(lease: &Lease) -> Reply {
    Reply::in_channel(format!(
        ":hourglass_flowing_sand: Your lease on {} expires {}. To keep it: `/bobby extend {} 1h`; done with it: `/bobby unlock {}`",
        env(&lease.environment),
        date(lease.expires_at),
        escape(lease.environment.as_str()),
        escape(lease.environment.as_str())
    ))
    .with_button("Extend 1h", ACTION_EXTEND_1H, lease.environment.as_str(), true)
    .with_button("Unlock", ACTION_UNLOCK, lease.environment.as_str(), false)
}

pub fn not_locked(name: &EnvName) -> Reply {
    Reply::ephemeral(format!(
        "{} is not locked by anyone. To take it: `/bobby lock {}`",
        env(name),
        escape(name.as_str())
    ))
}

pub fn not_yours(lease: &Lease, is_admin: bool, verb: &str) -> Reply {
    let mut text = format!(
        ":no_entry: {} is held by {}, not you, so you cannot {verb} it.",
        env(&lease.environment),
        holder(&lease.holder)
    );
    if is_admin && verb == "unlock" {
        text.push_str(&format!(
            " As an admin you can: `/bobby unlock {} --force`",
            escape(lease.environment.as_str())
        ));
    } else {
        text.push_str(&format!(
            " To be next: `/bobby wait {}`",
            escape(lease.environment.as_str())
        ));
    }
    Reply::ephemeral(text)
}

pub fn force_needs_admin(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only admins can force-unlock. Ask {} to unlock {}, or get in line: `/bobby wait {}`",
        holder(&lease.holder),
        env(&lease.environment),
        escape(lease.environment.as_str())
    ))
}

pub fn extended(lease: &Lease, capped: bool, max: Span) -> Reply {
    let mut text = format!(
        ":stopwatch: {} is yours until {}.",
        env(&lease.environment),
        date(lease.expires_at)
    );
    if capped {
        text.push_str(&format!(" That is as far as a lease goes (max {max} from now)."));
    }
    Reply::ephemeral(text)
}

pub fn already_at_max(lease: &Lease, max: Span) -> Reply {
    Reply::ephemeral(format!(
        ":warning: {} is already held until {}, the longest a lease may run (max {max} from now).",
        env(&lease.environment),
        date(lease.expires_at)
    ))
}

pub fn waiting(lease: &Lease, position: usize, already: bool) -> Reply {
    let lead = if already {
        "You were already waiting for"
    } else {
        "You are waiting for"
    };
    Reply::ephemeral(format!(
        ":hourglass: {lead} {} (position {position}). It is held by {} until {}; I will DM you the moment it is yours.",
        env(&lease.environment),
        holder(&lease.holder),
        date(lease.expires_at)
    ))
}

pub fn free_no_wait(name: &EnvName) -> Reply {
    Reply::ephemeral(format!(
        "{} is free, no need to wait: `/bobby lock {}`",
        env(name),
        escape(name.as_str())
    ))
}

pub fn you_hold_it(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        "You hold {} already (until {}).",
        env(&lease.environment),
        date(lease.expires_at)
    ))
}

pub fn left_waitlist(name: &EnvName) -> Reply {
    Reply::ephemeral(format!("You left the waitlist of {}.", env(name)))
}

pub fn not_waiting(name: &EnvName) -> Reply {
    Reply::ephemeral(format!("You were not waiting for {}.", env(name)))
}

#[cfg(test)]
mod tests {
    use shared::envs::store::{EndReason, Ended};

    use super::super::fixtures::{at, lease, name, snap_reply, user};
    use super::*;

    fn ended(reason: EndReason, next: bool) -> Ended {
        Ended {
            previous: lease("env-4", "U0BOB", "payments demo"),
            reason,
            next: next.then(|| lease("env-4", "U0CAROL", "from the waitlist")),
        }
    }

    #[test]
    fn lock_replies() {
        let max = Span::from_secs(3 * 86_400);
        snap_reply!("too_long", too_long(Span::from_secs(5 * 86_400), max));
        snap_reply!(
            "until_too_far",
            until_too_far(at(23, 0) + chrono::Duration::days(4), max)
        );
        snap_reply!(
            "locked",
            locked(&lease("env-4", "U0ALICE", "payments demo"), EnvState::Ready)
        );
        snap_reply!(
            "locked_while_nightly_creates",
            locked(&lease("env-4", "U0ALICE", ""), EnvState::Creating)
        );
        snap_reply!(
            "locked_reason_escaped",
            locked(&lease("env-4", "U0ALICE", "<!here> & co"), EnvState::Ready)
        );
        snap_reply!("already_yours", already_yours(&lease("env-4", "U0ALICE", "")));
        snap_reply!(
            "held_by_nobody_waiting",
            held_by(&lease("env-4", "U0BOB", "payments demo"), 0)
        );
        snap_reply!("held_by_one_waiting", held_by(&lease("env-4", "U0BOB", ""), 1));
        snap_reply!(
            "held_by_gandalf_two_waiting",
            held_by(&lease("env-4", "gandalf", "verifying acme/platform#12"), 2)
        );
        snap_reply!("none_free", none_free());
    }

    #[test]
    fn unlock_replies() {
        let alice = user("U0ALICE");
        let bob = user("U0BOB");
        snap_reply!("unlocked_free", unlocked(&ended(EndReason::Unlocked, false), &bob));
        snap_reply!(
            "unlocked_handed_over",
            unlocked(&ended(EndReason::Unlocked, true), &bob)
        );
        snap_reply!("unlocked_forced", unlocked(&ended(EndReason::Forced, false), &alice));
        snap_reply!("not_locked", not_locked(&name("env-4")));
        snap_reply!(
            "not_yours_unlock",
            not_yours(&lease("env-4", "U0BOB", ""), false, "unlock")
        );
        snap_reply!(
            "not_yours_unlock_admin",
            not_yours(&lease("env-4", "U0BOB", ""), true, "unlock")
        );
        snap_reply!(
            "not_yours_extend",
            not_yours(&lease("env-4", "U0BOB", ""), false, "extend")
        );
        snap_reply!("force_needs_admin", force_needs_admin(&lease("env-4", "U0BOB", "")));
    }

    #[test]
    fn notes_when_a_lease_ends() {
        let alice = user("U0ALICE");
        assert_eq!(lease_lost(&ended(EndReason::Unlocked, false), Some(&alice)), None);
        snap_reply!(
            "lease_lost_forced",
            lease_lost(&ended(EndReason::Forced, false), Some(&alice)).unwrap()
        );
        snap_reply!(
            "lease_lost_expired",
            lease_lost(&ended(EndReason::Expired, true), None).unwrap()
        );
        snap_reply!(
            "lease_lost_nightly",
            lease_lost(&ended(EndReason::Nightly, false), None).unwrap()
        );
        assert_eq!(
            lease_end_announcement(&ended(EndReason::Unlocked, false), Some(&alice)),
            None
        );
        assert_eq!(lease_end_announcement(&ended(EndReason::Nightly, false), None), None);
        snap_reply!(
            "announcement_forced",
            lease_end_announcement(&ended(EndReason::Forced, false), Some(&alice)).unwrap()
        );
        snap_reply!(
            "announcement_expired_handed_over",
            lease_end_announcement(&ended(EndReason::Expired, true), None).unwrap()
        );
        snap_reply!(
            "handed_over",
            handed_over(&lease("env-4", "U0CAROL", "from the waitlist"))
        );
        snap_reply!("reminder", reminder(&lease("env-4", "U0ALICE", "")));
    }

    #[test]
    fn extend_and_wait_replies() {
        let max = Span::from_secs(3 * 86_400);
        snap_reply!("extended", extended(&lease("env-4", "U0ALICE", ""), false, max));
        snap_reply!("extended_capped", extended(&lease("env-4", "U0ALICE", ""), true, max));
        snap_reply!("already_at_max", already_at_max(&lease("env-4", "U0ALICE", ""), max));
        snap_reply!("waiting", waiting(&lease("env-4", "U0BOB", ""), 2, false));
        snap_reply!("waiting_already", waiting(&lease("env-4", "U0BOB", ""), 1, true));
        snap_reply!("free_no_wait", free_no_wait(&name("env-4")));
        snap_reply!("you_hold_it", you_hold_it(&lease("env-4", "U0ALICE", "")));
        snap_reply!("left_waitlist", left_waitlist(&name("env-4")));
        snap_reply!("not_waiting", not_waiting(&name("env-4")));
    }
}
