//! Every sentence Bobby writes, in one place: replies to commands, DMs and announcements. Handlers
//! decide *what* happened; this module decides how it reads. User-supplied text (reasons) is always
//! escaped, times use Slack's `<!date^…>` so each reader sees their own timezone.

use chrono::{DateTime, Utc};
use shared::duration::{Span, humanize};
use shared::envs::store::{EndReason, Ended, HistoryEvent};
use shared::envs::{EnvState, Environment, Lease};
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use crate::command::{ParseError, VERBS};

pub const ACTION_UNLOCK: &str = "unlock";
pub const ACTION_EXTEND_1H: &str = "extend_1h";
pub const ACTION_WAIT: &str = "wait";

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" — _{}_", escape(reason))
    }
}

fn env(name: &str) -> String {
    format!("*{}*", escape(name))
}

pub fn help() -> Reply {
    let mut text = String::from("*Bobby* hands out the shared development environments. Commands:\n");
    for (_, usage) in VERBS {
        text.push_str(&format!("• `/bobby {usage}`\n"));
    }
    text.push_str("Durations look like `45s`, `30m`, `2h`, `1d` or `1h30m`.");
    Reply::ephemeral(text)
}

pub fn parse_error(e: &ParseError) -> Reply {
    let mut text = format!(":warning: {}", escape(&e.message));
    match e.usage {
        Some(u) => text.push_str(&format!("\nUsage: `/bobby {u}`")),
        None => text.push_str("\nType `/bobby help` for the list of commands."),
    }
    Reply::ephemeral(text)
}

pub fn internal_error() -> Reply {
    Reply::ephemeral(
        ":boom: Something went wrong on my side and nothing was changed. Please try again in a moment; if it keeps happening, the Bobby logs have the details.",
    )
}

pub fn unknown_env(name: &str, suggestion: Option<&str>, valid: &[&str]) -> Reply {
    let mut text = format!(
        ":warning: There is no environment {}.",
        code(&crate::command::clip(name))
    );
    if let Some(s) = suggestion {
        text.push_str(&format!(" Did you mean {}?", code(s)));
    }
    text.push_str(&format!(
        "\nEnvironments: {}",
        valid.iter().map(|v| code(v)).collect::<Vec<_>>().join(", ")
    ));
    Reply::ephemeral(text)
}

pub fn not_yet(feature: &str) -> Reply {
    Reply::ephemeral(format!(
        ":construction: `/bobby {feature}` is not available on this Bobby yet. `/bobby help` lists what is."
    ))
}

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
        user(&lease.holder),
        env(&lease.environment),
        date(lease.expires_at),
        reason_suffix(&lease.reason)
    );
    if state != EnvState::Ready {
        text.push_str(&format!(
            "\n:information_source: {} is {} right now (Nightly); deploys wait until it is ready.",
            env(&lease.environment),
            state.as_str()
        ));
    }
    Reply::in_channel(text)
        .with_button("Unlock", ACTION_UNLOCK, &lease.environment, false)
        .with_button("Extend 1h", ACTION_EXTEND_1H, &lease.environment, false)
}

pub fn already_yours(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        "You already hold {} until {}. To keep it longer: `/bobby extend {} 2h`",
        env(&lease.environment),
        date(lease.expires_at),
        escape(&lease.environment)
    ))
    .with_button("Extend 1h", ACTION_EXTEND_1H, &lease.environment, false)
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
        user(&lease.holder),
        date(lease.since),
        date(lease.expires_at),
        reason_suffix(&lease.reason),
        escape(&lease.environment)
    ))
    .with_button("Join waitlist", ACTION_WAIT, &lease.environment, true)
}

pub fn none_free() -> Reply {
    Reply::ephemeral(
        ":no_entry: No environment is free and ready right now. `/bobby list` shows who holds what; `/bobby wait <env>` puts you in line for one.",
    )
}

pub fn unlocked(ended: &Ended, by: &str) -> Reply {
    let lease = &ended.previous;
    let mut text = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {} (held by {})",
            user(by),
            env(&lease.environment),
            user(&lease.holder)
        ),
        _ => format!(":unlock: {} unlocked {}", user(by), env(&lease.environment)),
    };
    match &ended.next {
        Some(next) => text.push_str(&format!(
            "; it goes to {}, first on the waitlist, until {}.",
            user(&next.holder),
            date(next.expires_at)
        )),
        None => text.push_str("; it is free."),
    }
    Reply::in_channel(text)
}

/// DM to whoever lost a lease they did not give up themselves.
pub fn lease_lost(ended: &Ended, by: &str) -> Option<Reply> {
    let lease = &ended.previous;
    let text = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {}, which you held{}. If you still need it: `/bobby lock {}`",
            user(by),
            env(&lease.environment),
            reason_suffix(&lease.reason),
            escape(&lease.environment)
        ),
        EndReason::Expired => format!(
            ":hourglass: Your lease on {} expired at {} and was released. If you still need it: `/bobby lock {}`",
            env(&lease.environment),
            date(lease.expires_at),
            escape(&lease.environment)
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
pub fn lease_end_announcement(ended: &Ended, by: &str) -> Option<Reply> {
    let lease = &ended.previous;
    let what = match ended.reason {
        EndReason::Forced => format!(
            ":unlock: {} force-unlocked {} (held by {})",
            user(by),
            env(&lease.environment),
            user(&lease.holder)
        ),
        EndReason::Expired => format!(
            ":hourglass: {} was released: the lease of {} expired",
            env(&lease.environment),
            user(&lease.holder)
        ),
        _ => return None,
    };
    let next = match &ended.next {
        Some(n) => format!("; it goes to {}, first on the waitlist.", user(&n.holder)),
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
    .with_button("Unlock", ACTION_UNLOCK, &lease.environment, false)
    .with_button("Extend 1h", ACTION_EXTEND_1H, &lease.environment, false)
}

pub fn reminder(lease: &Lease) -> Reply {
    Reply::in_channel(format!(
        ":hourglass_flowing_sand: Your lease on {} expires {}. To keep it: `/bobby extend {} 1h`; done with it: `/bobby unlock {}`",
        env(&lease.environment),
        date(lease.expires_at),
        escape(&lease.environment),
        escape(&lease.environment)
    ))
    .with_button("Extend 1h", ACTION_EXTEND_1H, &lease.environment, true)
    .with_button("Unlock", ACTION_UNLOCK, &lease.environment, false)
}

pub fn not_locked(name: &str) -> Reply {
    Reply::ephemeral(format!(
        "{} is not locked by anyone. To take it: `/bobby lock {}`",
        env(name),
        escape(name)
    ))
}

pub fn not_yours(lease: &Lease, is_admin: bool, verb: &str) -> Reply {
    let mut text = format!(
        ":no_entry: {} is held by {}, not you, so you cannot {verb} it.",
        env(&lease.environment),
        user(&lease.holder)
    );
    if is_admin && verb == "unlock" {
        text.push_str(&format!(
            " As an admin you can: `/bobby unlock {} --force`",
            escape(&lease.environment)
        ));
    } else {
        text.push_str(&format!(" To be next: `/bobby wait {}`", escape(&lease.environment)));
    }
    Reply::ephemeral(text)
}

pub fn force_needs_admin(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only admins can force-unlock. Ask {} to unlock {}, or get in line: `/bobby wait {}`",
        user(&lease.holder),
        env(&lease.environment),
        escape(&lease.environment)
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
        user(&lease.holder),
        date(lease.expires_at)
    ))
}

pub fn free_no_wait(name: &str) -> Reply {
    Reply::ephemeral(format!(
        "{} is free, no need to wait: `/bobby lock {}`",
        env(name),
        escape(name)
    ))
}

pub fn you_hold_it(lease: &Lease) -> Reply {
    Reply::ephemeral(format!(
        "You hold {} already (until {}).",
        env(&lease.environment),
        date(lease.expires_at)
    ))
}

pub fn left_waitlist(name: &str) -> Reply {
    Reply::ephemeral(format!("You left the waitlist of {}.", env(name)))
}

pub fn not_waiting(name: &str) -> Reply {
    Reply::ephemeral(format!("You were not waiting for {}.", env(name)))
}

pub fn preserved(name: &str, by: &str, until: DateTime<Utc>) -> Reply {
    Reply::in_channel(format!(
        ":snowflake: {} preserved {} until {}: Nightly will leave it alone.",
        user(by),
        env(name),
        date(until)
    ))
}

pub fn preserve_needs_lease(name: &str, lease: Option<&Lease>) -> Reply {
    let text = match lease {
        Some(l) => format!(
            ":no_entry: Only the holder of {} ({}) or an admin can preserve it.",
            env(name),
            user(&l.holder)
        ),
        None => format!(
            ":no_entry: To preserve {} you need to hold it first: `/bobby lock {}`",
            env(name),
            escape(name)
        ),
    };
    Reply::ephemeral(text)
}

pub fn preserve_in_past() -> Reply {
    Reply::ephemeral(":warning: That date has passed; pick today or a later one (YYYY-MM-DD).")
}

pub fn unpreserved(name: &str) -> Reply {
    Reply::ephemeral(format!(
        "{} is no longer preserved; Nightly will treat it like the others.",
        env(name)
    ))
}

pub fn not_preserved(name: &str) -> Reply {
    Reply::ephemeral(format!("{} is not preserved.", env(name)))
}

pub fn unpreserve_not_yours(name: &str) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only the holder of {}, whoever preserved it, or an admin can unpreserve it.",
        env(name)
    ))
}

fn env_line(e: &Environment, now: DateTime<Utc>) -> String {
    let mut line = format!("{} · {}", env(&e.name), e.state.as_str());
    match &e.lease {
        Some(l) => line.push_str(&format!(
            " · :lock: {} until {}{}",
            user(&l.holder),
            date(l.expires_at),
            reason_suffix(&l.reason)
        )),
        None => line.push_str(" · free"),
    }
    if let Some(until) = e.preserved_until.filter(|t| *t > now) {
        line.push_str(&format!(" · :snowflake: preserved until {}", date(until)));
    }
    if !e.waitlist.is_empty() {
        let who: Vec<String> = e.waitlist.iter().map(|w| user(w)).collect();
        line.push_str(&format!(" · waiting: {}", who.join(", ")));
    }
    line
}

pub fn list(envs: &[Environment], now: DateTime<Utc>) -> Reply {
    let free = envs
        .iter()
        .filter(|e| e.lease.is_none() && e.state == EnvState::Ready)
        .count();
    let mut text = format!("*Environments* ({free} of {} free)\n", envs.len());
    for e in envs {
        text.push_str(&env_line(e, now));
        text.push('\n');
    }
    Reply::ephemeral(text.trim_end().to_string())
}

pub fn status(e: &Environment, now: DateTime<Utc>) -> Reply {
    let mut text = env_line(e, now);
    if !e.url.is_empty() {
        text.push_str(&format!("\n{}", escape(&e.url)));
    }
    if let Some(l) = &e.lease {
        text.push_str(&format!(
            "\nHeld since {} ({} ago).",
            date(l.since),
            humanize(now - l.since)
        ));
    }
    if let Some(f) = &e.fault {
        text.push_str(&format!(
            "\n:x: Faulted in {} step {} (exit {}, {} attempts).",
            escape(&f.phase),
            code(&f.step),
            f.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
            f.attempts
        ));
    }
    if let Some(n) = &e.last_nightly {
        text.push_str(&format!(
            "\nLast Nightly: {} {} at {}.",
            escape(&n.phase),
            escape(&n.outcome),
            date(n.finished_at)
        ));
    }
    let reply = Reply::ephemeral(text);
    match &e.lease {
        Some(l) => reply.with_button("Join waitlist", ACTION_WAIT, &l.environment, false),
        None => reply,
    }
}

pub fn history(name: &str, events: &[HistoryEvent]) -> Reply {
    if events.is_empty() {
        return Reply::ephemeral(format!("Nothing has happened to {} yet.", env(name)));
    }
    let mut text = format!("*History of {}* (newest first)\n", escape(name));
    for ev in events {
        let detail = if ev.detail.is_empty() {
            String::new()
        } else {
            format!(" {}", escape(&ev.detail))
        };
        text.push_str(&format!(
            "{} {} {}{}\n",
            date(ev.at),
            user(&ev.actor),
            escape(&ev.action),
            detail
        ));
    }
    Reply::ephemeral(text.trim_end().to_string())
}

pub fn bad_action() -> Reply {
    Reply::ephemeral(
        ":warning: That button is not one I know (it may be from an older version of me). Try the command instead: `/bobby help`",
    )
}

// Deploy-check reasons: plain text, read by deploy scripts and people in CI logs.

pub fn check_busy(name: &str, state: EnvState) -> String {
    format!("{name} is {} by Nightly; deploy once it is ready", state.as_str())
}

pub fn check_locked_by(lease: &Lease) -> String {
    let mut s = format!(
        "{} is locked by {} until {}",
        lease.environment,
        lease.holder,
        lease.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    if !lease.reason.is_empty() {
        s.push_str(&format!(" ({})", lease.reason));
    }
    s
}

pub fn check_unleased(name: &str) -> String {
    format!("{name} is not locked by anyone; lock it first: `/bobby lock {name}`")
}
