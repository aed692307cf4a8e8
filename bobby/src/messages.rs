//! Every sentence Bobby writes, in one place: replies to commands, DMs and announcements. Handlers
//! decide *what* happened; this module decides how it reads. User-supplied text (reasons) is always
//! escaped, times use Slack's `<!date^…>` so each reader sees their own timezone.

use chrono::{DateTime, NaiveDate, Utc};
use shared::control::view::span;
use shared::duration::{Span, humanize};
use shared::envs::store::{EndReason, Ended, HistoryEvent};
use shared::envs::{EnvState, Environment, Lease};
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use crate::command::{ParseError, VERBS};
use crate::nightly::plan::{Decision, Phase, Skip};
use crate::nightly::runs::{Attempt, Run, RunEnv, Step};
use crate::nightly::summary::{Counts, Outcome, RunReport, Savings};
use crate::nightly::{DryRun, Requested, RunBrief, SkipOutcome, StatusReport};

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
    if let Some(d) = &e.deploy {
        let when = match d.finished_at {
            Some(f) => format!("{} at {}", escape(&d.state), date(f)),
            None => format!("running since {}", date(d.started_at)),
        };
        text.push_str(&format!(
            "\nLast deploy: {} by {}, {when}.",
            deploy_name(&d.reference, &d.sha),
            user(&d.by)
        ));
    }
    if e.deployed.is_empty() {
        text.push_str("\nDeployed: the base branch as Nightly built it.");
    } else {
        let parts: Vec<String> = e
            .deployed
            .iter()
            .map(|(resource, d)| format!("{} {}", code(resource), deploy_name(&d.reference, &d.sha)))
            .collect();
        text.push_str(&format!("\nDeployed: {}.", parts.join(", ")));
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

// Nightly (SPEC §4.5): summaries, notes to the people it affects, `/bobby nightly …` replies, the
// command line's report and the run log page.

fn phase_done(phase: Phase) -> &'static str {
    match phase {
        Phase::Delete => "Deleted",
        Phase::Create => "Created",
    }
}

fn phase_icon(phase: Phase) -> &'static str {
    match phase {
        Phase::Delete => ":crescent_moon:",
        Phase::Create => ":sunrise:",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn env_list(names: &[&str]) -> String {
    names.iter().map(|n| env(n)).collect::<Vec<_>>().join(", ")
}

fn skip_reason(skip: &Skip) -> &'static str {
    match skip {
        Skip::Preserved(_) => "preserved",
        Skip::Gandalf => "held by Gandalf for a verification",
        Skip::NotKept => "not kept up on weekends and holidays",
        Skip::AlreadyUp => "already up",
        Skip::AlreadyDown => "already down",
        Skip::Busy => "busy with another Nightly run",
    }
}

fn who_ran(run: &Run) -> String {
    match (run.trigger.as_str(), run.requested_by.as_deref()) {
        ("manual", Some("cli")) => " (run from the command line)".into(),
        ("manual", Some(by)) => format!(" (run by {})", user(by)),
        ("caught-up", _) => match run.scheduled_for {
            Some(at) => format!(" (caught up: Bobby was not running at {})", date(at)),
            None => " (caught up)".into(),
        },
        _ => String::new(),
    }
}

fn exit_text(exit_code: Option<i32>, ended: &str) -> String {
    match exit_code {
        Some(c) => format!("exit {c}"),
        None if ended.is_empty() => "no exit status".into(),
        None => ended.to_string(),
    }
}

fn savings_line(s: &Savings) -> String {
    let mut line = format!(
        ":chart_with_downwards_trend: {:.1} environment-hours saved so far this month",
        s.saved_hours
    );
    if s.all_up_hours > 0.0 {
        line.push_str(&format!(
            ", {:.0}% of the {:.0} it takes to keep {} up all the time",
            100.0 * s.saved_hours / s.all_up_hours,
            s.all_up_hours,
            plural(s.environments, "environment", "environments")
        ));
    }
    if let Some(cost) = s.cost {
        line.push_str(&format!(" (≈ {cost:.2} saved)"));
    }
    line.push('.');
    line
}

/// The summary of a run, for `announce_channel`.
pub fn nightly_summary(r: &RunReport) -> Reply {
    let phase = r.phase();
    let mut text = if r.run.state == "interrupted" {
        format!(
            ":warning: *Nightly {}* was interrupted (run #{}){}: Bobby stopped mid-run and was not back before the {} time.",
            phase.as_str(),
            r.run.id,
            who_ran(&r.run),
            match phase {
                Phase::Delete => "create",
                Phase::Create => "delete",
            }
        )
    } else {
        format!(
            "{} *Nightly {}* finished (run #{}){}.",
            phase_icon(phase),
            phase.as_str(),
            r.run.id,
            who_ran(&r.run)
        )
    };
    let done: Vec<&str> = r
        .with_outcome(|o| *o == Outcome::Done)
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    if !done.is_empty() {
        text.push_str(&format!(
            "\n:white_check_mark: {} ({}): {}",
            phase_done(phase),
            done.len(),
            env_list(&done)
        ));
    }
    let faulted = r.with_outcome(|o| matches!(o, Outcome::Faulted { .. }));
    if !faulted.is_empty() {
        let items: Vec<String> = faulted
            .iter()
            .map(|e| match &e.outcome {
                Outcome::Faulted {
                    step,
                    exit_code,
                    attempts,
                    ended,
                } => format!(
                    "{} at step {} ({}, {}) <{}#{}|log>",
                    env(&e.name),
                    code(step),
                    escape(&exit_text(*exit_code, ended)),
                    plural(*attempts as usize, "attempt", "attempts"),
                    r.log_url,
                    escape(&e.name)
                ),
                _ => String::new(),
            })
            .collect();
        text.push_str(&format!("\n:x: Faulted ({}): {}", faulted.len(), items.join("; ")));
    }
    let interrupted = r.with_outcome(|o| matches!(o, Outcome::Interrupted { .. }));
    if !interrupted.is_empty() {
        let items: Vec<String> = interrupted
            .iter()
            .map(|e| match &e.outcome {
                Outcome::Interrupted { step: Some(step) } => {
                    format!("{} at step {} (faulted)", env(&e.name), code(step))
                }
                _ => format!("{} (not started; left as it was)", env(&e.name)),
            })
            .collect();
        text.push_str(&format!(
            "\n:warning: Interrupted ({}): {}",
            interrupted.len(),
            items.join("; ")
        ));
    }
    let preserved: Vec<String> = r
        .envs
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Skipped(Skip::Preserved(until)) => Some(format!("{} until {}", env(&e.name), date(*until))),
            _ => None,
        })
        .collect();
    if !preserved.is_empty() {
        text.push_str(&format!(
            "\n:snowflake: Preserved ({}): {}",
            preserved.len(),
            preserved.join(", ")
        ));
    }
    let gandalf: Vec<&str> = r
        .with_outcome(|o| *o == Outcome::Skipped(Skip::Gandalf))
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    if !gandalf.is_empty() {
        text.push_str(&format!(
            "\n:mag: Skipped, held by Gandalf for a verification ({}): {}",
            gandalf.len(),
            env_list(&gandalf)
        ));
    }
    for reason in [Skip::NotKept, Skip::AlreadyUp, Skip::AlreadyDown, Skip::Busy] {
        let names: Vec<&str> = r
            .with_outcome(|o| *o == Outcome::Skipped(reason.clone()))
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        if !names.is_empty() {
            text.push_str(&format!(
                "\n:fast_forward: Skipped, {} ({}): {}",
                skip_reason(&reason),
                names.len(),
                env_list(&names)
            ));
        }
    }
    if r.envs.is_empty() {
        text.push_str("\nThere was nothing to do.");
    }
    text.push('\n');
    text.push_str(&savings_line(&r.savings));
    text.push_str(&format!("\nLog: <{}|run #{}>", r.log_url, r.run.id));
    Reply::in_channel(text)
}

/// DM to whoever asked for a manual run.
pub fn nightly_run_done(r: &RunReport, announce: Option<&str>) -> Reply {
    let faults = r.with_outcome(|o| matches!(o, Outcome::Faulted { .. } | Outcome::Interrupted { .. }));
    let done = r.with_outcome(|o| *o == Outcome::Done).len();
    let mut text = format!(
        "{} Your Nightly {} run #{} is done: {} {}",
        phase_icon(r.phase()),
        r.phase().as_str(),
        r.run.id,
        done,
        phase_done(r.phase()).to_lowercase()
    );
    if !faults.is_empty() {
        text.push_str(&format!(", {} faulted", faults.len()));
    }
    match announce {
        Some(channel) => text.push_str(&format!(". The summary is in <#{channel}>.")),
        None => text.push_str(&format!(". Log: <{}|run #{}>", r.log_url, r.run.id)),
    }
    Reply::in_channel(text)
}

/// Announcement of a slot left alone because an admin skipped its night.
pub fn nightly_slot_skipped(phase: Phase, night: NaiveDate, by: &str) -> Reply {
    Reply::in_channel(format!(
        ":zzz: *Nightly {}* skipped: {} asked to leave the night of {} alone.",
        phase.as_str(),
        user(by),
        night.format("%a %Y-%m-%d")
    ))
}

/// DM to each waiter of an environment Nightly tore down.
pub fn nightly_waitlist_cleared(name: &str) -> Reply {
    Reply::in_channel(format!(
        ":crescent_moon: Nightly is tearing down {}, so its waitlist was cleared and you are no longer waiting for it. Once it is back: `/bobby lock {}`",
        env(name),
        escape(name)
    ))
}

/// The log tail of a step a crash cut short and that was not resumed in time.
pub fn nightly_interrupted_tail(phase: Phase) -> String {
    format!(
        "interrupted: Bobby stopped while this ran and was not back before the {} time; the next Nightly will pick it up",
        match phase {
            Phase::Delete => "create",
            Phase::Create => "delete",
        }
    )
}

pub fn nightly_not_configured() -> Reply {
    Reply::ephemeral(":information_source: Nightly is not configured on this Bobby (no `[nightly]` in bobby.toml).")
}

pub fn nightly_needs_admin(verb: &str) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only admins can {verb} Nightly. `/bobby nightly status` shows what it will do; to keep an environment through the night: `/bobby preserve &lt;env&gt;`"
    ))
}

pub fn nightly_requested(r: &Requested, announce: Option<&str>) -> Reply {
    let what = match &r.only {
        Some(name) => format!("Nightly {} of {}", r.phase.as_str(), env(name)),
        None => format!("Nightly {}", r.phase.as_str()),
    };
    let when = match r.ahead {
        0 => "It is next in line".to_string(),
        n => format!("It starts after {} ahead of it", plural(n as usize, "run", "runs")),
    };
    let report = match announce {
        Some(c) => format!("the summary will be posted in <#{c}> and I will DM you when it is done"),
        None => "I will DM you when it is done".into(),
    };
    Reply::ephemeral(format!(":gear: {what} is queued as run #{}. {when}; {report}.", r.id))
}

pub fn nightly_dry_run(d: &DryRun) -> Reply {
    let scope = match &d.only {
        Some(name) => format!(" of {}", env(name)),
        None => String::new(),
    };
    let mut text = format!(
        ":mag: Dry run: *Nightly {}*{scope} would do this now (nothing was run):",
        d.phase.as_str()
    );
    if d.phase == Phase::Create && d.only.is_none() && !d.workday {
        text.push_str(&format!(
            "\n_{} is a weekend day or holiday: only the environments kept up on those days are created._",
            d.day.format("%a %Y-%m-%d")
        ));
    }
    let steps = if d.steps.is_empty() {
        format!(
            "nothing to run (no `nightly.{}` steps), marked {} at once",
            d.phase.as_str(),
            d.phase.done_state().as_str()
        )
    } else {
        format!(
            "run {}",
            d.steps.iter().map(|s| code(s)).collect::<Vec<_>>().join(" → ")
        )
    };
    for p in &d.planned {
        match &p.decision {
            Decision::Run => text.push_str(&format!("\n• {}: {steps}", env(&p.name))),
            Decision::Skip(Skip::Preserved(until)) => {
                text.push_str(&format!("\n• {}: skip, preserved until {}", env(&p.name), date(*until)))
            }
            Decision::Skip(s) => text.push_str(&format!("\n• {}: skip, {}", env(&p.name), skip_reason(s))),
        }
    }
    if d.planned.is_empty() {
        text.push_str("\nNo environment.");
    }
    Reply::ephemeral(text)
}

pub fn nightly_skip(outcome: &SkipOutcome, by: &str) -> Reply {
    match outcome {
        SkipOutcome::Skipped {
            night,
            delete,
            create,
            already,
        } => {
            let lead = if *already {
                format!("The night of {} was already skipped", night.format("%a %Y-%m-%d"))
            } else {
                format!("{} skipped the night of {}", user(by), night.format("%a %Y-%m-%d"))
            };
            Reply::in_channel(format!(
                ":zzz: {lead}: Nightly will not delete at {} nor create at {}; environments stay as they are.",
                date(*delete),
                date(*create)
            ))
        }
        SkipOutcome::Past(night) => Reply::ephemeral(format!(
            ":warning: The Nightly of {} has already started or passed; pick a later date (YYYY-MM-DD).",
            night.format("%Y-%m-%d")
        )),
    }
}

fn counts_text(phase: Phase, c: &Counts) -> String {
    let mut parts = vec![format!("{} {}", c.done, phase_done(phase).to_lowercase())];
    if c.faulted > 0 {
        parts.push(format!("{} faulted", c.faulted));
    }
    if c.interrupted > 0 {
        parts.push(format!("{} interrupted", c.interrupted));
    }
    if c.skipped > 0 {
        parts.push(format!("{} skipped", c.skipped));
    }
    if c.open > 0 {
        parts.push(format!("{} to go", c.open));
    }
    parts.join(", ")
}

fn run_line(b: &RunBrief) -> String {
    let r = &b.run;
    match r.state.as_str() {
        "skipped" => format!(
            "{} run #{} skipped {}: {}",
            r.phase.as_str(),
            r.id,
            r.finished_at.map(date).unwrap_or_default(),
            escape(&r.note)
        ),
        "running" => format!(
            "{} run #{}{} since {}: {}",
            r.phase.as_str(),
            r.id,
            who_ran(r),
            r.started_at.map(date).unwrap_or_default(),
            counts_text(r.phase, &b.counts)
        ),
        state => format!(
            "{} run #{}{} {} {}: {}",
            r.phase.as_str(),
            r.id,
            who_ran(r),
            state,
            r.finished_at.map(date).unwrap_or_default(),
            counts_text(r.phase, &b.counts)
        ),
    }
}

pub fn nightly_status(s: &StatusReport) -> Reply {
    let mut text = format!(
        "*Nightly* deletes at {} and creates at {} ({}).",
        s.delete_at,
        s.create_at,
        escape(&s.timezone)
    );
    if let Some(b) = &s.running {
        text.push_str(&format!("\n:gear: Running now: {}", run_line(b)));
    }
    if s.queued > 0 {
        text.push_str(&format!(
            "\n:hourglass: {} queued.",
            plural(s.queued as usize, "manual run", "manual runs")
        ));
    }
    if s.last.is_empty() {
        text.push_str("\nLast runs: none yet.");
    }
    for b in &s.last {
        text.push_str(&format!("\nLast {}", run_line(b)));
    }
    let next: Vec<String> = s
        .next
        .iter()
        .map(|n| {
            let mut item = format!("{} {}", n.phase.as_str(), date(n.at));
            if let Some(by) = &n.skipped_by {
                item.push_str(&format!(" (skipped by {})", user(by)));
            } else if let Some(keeps) = &n.keeps {
                let names: Vec<&str> = keeps.iter().map(String::as_str).collect();
                if names.is_empty() {
                    item.push_str(" (weekend or holiday: keeps none)");
                } else {
                    item.push_str(&format!(" (weekend or holiday: keeps {})", env_list(&names)));
                }
            }
            item
        })
        .collect();
    text.push_str(&format!("\nNext: {}", next.join(" · ")));
    if !s.skipped_nights.is_empty() {
        let nights: Vec<String> = s
            .skipped_nights
            .iter()
            .map(|(d, by)| format!("{} (by {})", d.format("%Y-%m-%d"), user(by)))
            .collect();
        text.push_str(&format!("\n:zzz: Skipped nights: {}", nights.join(", ")));
    }
    text.push_str("\n*Environments*");
    for e in &s.environments {
        let mut line = format!("\n{} · {}", env(&e.name), e.state.as_str());
        if let Some(f) = &e.fault {
            line.push_str(&format!(
                " in {} at step {} ({}, {})",
                escape(&f.phase),
                code(&f.step),
                escape(&exit_text(f.exit_code, "")),
                plural(f.attempts as usize, "attempt", "attempts")
            ));
        }
        if let Some(n) = &e.last_nightly {
            line.push_str(&format!(
                " · last Nightly: {} {} {}",
                escape(&n.phase),
                escape(&n.outcome),
                date(n.finished_at)
            ));
        }
        text.push_str(&line);
    }
    Reply::ephemeral(text)
}

/// What `bobby nightly run` prints when the run is over: the summary, then each fault's log tail.
pub fn nightly_cli_report(r: &RunReport) -> String {
    // The summary's link reads as its label in plain text; a terminal wants the address.
    let mut out = nightly_summary(r)
        .plain()
        .replace(&format!("Log: run #{}", r.run.id), &format!("Log: {}", r.log_url));
    for e in &r.envs {
        if let (Outcome::Faulted { step, .. }, Some(tail)) = (&e.outcome, &e.log_tail) {
            out.push_str(&format!("\n\n--- {} · {step}: last lines ---\n{tail}", e.name));
        }
    }
    out
}

pub fn nightly_cli_stopped(id: i64) -> String {
    format!("stopped: Nightly run #{id} was cut short here; the next Bobby to lead Nightly resumes it")
}

/// The plain-text log page of one run.
pub fn nightly_log_page(run: &Run, envs: &[RunEnv], steps: &[Step], attempts: &[Attempt]) -> String {
    let t = |d: Option<DateTime<Utc>>| {
        d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "Nightly {} · run #{} · {}\ntrigger: {}{}{}\nstarted: {}  finished: {}\n",
        run.phase.as_str(),
        run.id,
        run.state,
        run.trigger,
        run.scheduled_for
            .map(|s| format!(" (slot {})", t(Some(s))))
            .unwrap_or_default(),
        run.requested_by
            .as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default(),
        t(run.started_at),
        t(run.finished_at),
    );
    if !run.note.is_empty() {
        out.push_str(&format!("note: {}\n", run.note));
    }
    for e in envs {
        let why = match &e.skip {
            Some(Skip::Preserved(until)) => format!(" (preserved until {})", t(Some(*until))),
            Some(s) => format!(" ({})", skip_reason(s)),
            None => String::new(),
        };
        out.push_str(&format!("\n== {}: {}{why}\n", e.environment, e.state));
        for s in steps.iter().filter(|s| s.environment == e.environment) {
            out.push_str(&format!(
                "-- step {} `{}`: {} ({})\n",
                s.name,
                s.command,
                s.state,
                plural(s.attempts.max(0) as usize, "attempt", "attempts")
            ));
            for a in attempts
                .iter()
                .filter(|a| a.environment == e.environment && a.step_position == s.position)
            {
                let backoff = match (a.backoff_ms, a.backoff_cap_ms) {
                    (Some(ms), Some(cap)) => format!(", after waiting {ms} ms (of at most {cap} ms)"),
                    _ => String::new(),
                };
                out.push_str(&format!(
                    "   attempt {} at {}{backoff}: {}\n",
                    a.attempt,
                    t(Some(a.started_at)),
                    a.ended.as_deref().unwrap_or("running")
                ));
                for line in a.output.lines() {
                    out.push_str(&format!("   | {line}\n"));
                }
            }
        }
    }
    out
}

// Deploys (SPEC §4.6): refusals, the plan of a dry run, the progress message that is edited as
// steps finish, and the failing step's output in its thread.

/// Why a deploy does not start. Every variant names what to do instead.
#[derive(Debug)]
pub enum DeployRefusal {
    /// The same sentence as deploy-check's.
    Check(String),
    Deleted {
        env: String,
    },
    Running(Box<crate::deploy::store::DeployRow>),
    NoSuchPull {
        number: u64,
        repo: String,
    },
    NoSuchRef {
        reference: String,
        repo: String,
    },
    NoBase {
        base: String,
        repo: String,
    },
    OnlyWithoutMap {
        map: String,
        sha: String,
    },
    BadMap {
        rendered: String,
    },
    UnknownResource {
        name: String,
        suggestion: Option<String>,
        valid: Vec<String>,
    },
}

/// A failed step, for the progress message and its thread.
#[derive(Clone, Debug)]
pub struct FailedStep {
    pub step: String,
    pub resource: Option<String>,
    pub how: String,
    pub tail: String,
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// A code block that nothing inside can close early.
fn block(s: &str) -> String {
    format!("```{}```", escape(&s.trim_end().replace("```", "'''")))
}

fn deploy_name(reference: &str, sha: &str) -> String {
    let short = short(sha);
    if reference == short || reference == sha {
        code(&short)
    } else {
        format!("{} ({})", code(reference), code(&short))
    }
}

pub fn deploy_refused(r: &DeployRefusal) -> Reply {
    let text = match r {
        DeployRefusal::Check(why) => format!(":no_entry: {}", escape(why)),
        DeployRefusal::Deleted { env: name } => format!(
            ":no_entry: {} is deleted (Nightly); it is created again in the morning, or by `/bobby nightly run create {}` (admins).",
            env(name),
            escape(name)
        ),
        DeployRefusal::Running(d) => format!(
            ":hourglass_flowing_sand: {} is busy: {} is deploying {} there since {}. Wait for it, or `/bobby deploy cancel {}`.",
            env(&d.environment),
            user(&d.by_user),
            deploy_name(&d.reference, &d.sha),
            date(d.started_at),
            escape(&d.environment)
        ),
        DeployRefusal::NoSuchPull { number, repo } => format!(
            ":warning: There is no pull request #{number} in {}. Say a branch, `#123` or a commit SHA.",
            code(repo)
        ),
        DeployRefusal::NoSuchRef { reference, repo } => format!(
            ":warning: {} is neither a branch nor a commit of {}. Say a branch, `#123` (a pull request) or a commit SHA.",
            code(&crate::command::clip(reference)),
            code(repo)
        ),
        DeployRefusal::NoBase { base, repo } => format!(
            ":warning: The base branch {} does not exist in {}, so I cannot tell what changed; fix `deploy.base`, or name what to deploy with `only`.",
            code(base),
            code(repo)
        ),
        DeployRefusal::OnlyWithoutMap { map, sha } => format!(
            ":warning: There is no resource map {} at {}, so `only` has nothing to choose from. Deploy without `only` to build and deploy everything.",
            code(map),
            code(&short(sha))
        ),
        DeployRefusal::BadMap { rendered } => format!(
            ":warning: The resource map does not parse, so I cannot plan the deploy:\n{}",
            block(rendered)
        ),
        DeployRefusal::UnknownResource {
            name,
            suggestion,
            valid,
        } => {
            let mut t = format!(
                ":warning: There is no resource {} in the map.",
                code(&crate::command::clip(name))
            );
            if let Some(s) = suggestion {
                t.push_str(&format!(" Did you mean {}?", code(s)));
            }
            t.push_str(&format!(
                "\nResources: {}",
                valid.iter().map(|v| code(v)).collect::<Vec<_>>().join(", ")
            ));
            t
        }
    };
    Reply::ephemeral(text)
}

pub fn deploy_github_down() -> Reply {
    Reply::ephemeral(
        ":warning: GitHub did not answer, so nothing was started. Try again in a moment; the Bobby logs have the details.",
    )
}

pub fn deploy_unavailable(configured: bool) -> Reply {
    Reply::ephemeral(if configured {
        ":construction: Deploys run in the Bobby server, with GitHub credentials (`GITHUB_TOKEN` or the GitHub App): type `/bobby deploy` in Slack once it has them."
    } else {
        ":construction: Deploying is not set up on this Bobby: add a `[deploy]` section to its config (see the README)."
    })
}

pub fn deploy_plan_everything(map: &str) -> String {
    format!("No resource map {map} at this commit: build and deploy run once for the whole repository.")
}

pub fn deploy_dry_run(name: &str, reference: &str, sha: &str, plan: &str) -> Reply {
    Reply::ephemeral(format!(
        ":clipboard: Dry run: deploying {} to {} would do this (nothing was run):\n{}",
        deploy_name(reference, sha),
        env(name),
        block(plan)
    ))
}

pub fn deploy_started(name: &str, reference: &str, sha: &str, channel: &str) -> Reply {
    let where_ = if channel.parse::<shared::ids::SlackUserId>().is_ok() {
        "in your DMs".to_string()
    } else {
        format!("in <#{}>", escape(channel))
    };
    Reply::ephemeral(format!(
        ":rocket: Deploying {} to {}; progress {where_}. `/bobby deploy cancel {}` stops it.",
        deploy_name(reference, sha),
        env(name),
        escape(name)
    ))
}

pub fn deploy_nothing_to_cancel(name: &str) -> Reply {
    Reply::ephemeral(format!(":information_source: No deploy is running on {}.", env(name)))
}

pub fn deploy_cancel_not_allowed(d: &crate::deploy::store::DeployRow) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only {} (who started it), the holder of {} or an admin can cancel this deploy.",
        user(&d.by_user),
        env(&d.environment)
    ))
}

pub fn deploy_cancelling(d: &crate::deploy::store::DeployRow) -> Reply {
    Reply::in_channel(format!(
        ":octagonal_sign: Cancelling the deploy of {} to {}: its running step is being stopped.",
        deploy_name(&d.reference, &d.sha),
        env(&d.environment)
    ))
}

pub fn deploy_failure_line(f: &FailedStep) -> String {
    match &f.resource {
        Some(r) => format!("{} {r} {}", f.step, f.how),
        None => format!("{} {}", f.step, f.how),
    }
}

pub fn deploy_shutdown_line() -> String {
    "Bobby was shutting down; deploy again to finish".to_string()
}

pub fn deploy_orphaned_line() -> String {
    "Bobby stopped while it was running; deploy again to finish".to_string()
}

pub fn deploy_failed_thread(f: &FailedStep, page: &str) -> Reply {
    let target = match &f.resource {
        Some(r) => format!("{} of {}", code(&f.step), code(r)),
        None => code(&f.step),
    };
    let mut text = format!(":x: {target} {}.", escape(&f.how));
    if f.tail.trim().is_empty() {
        text.push_str(" It printed nothing.");
    } else {
        text.push_str(&format!(" The last lines of its output:\n{}", block(&f.tail)));
    }
    text.push_str(&format!("\nWhole log: {}", escape(page)));
    Reply::in_channel(text)
}

/// Everything the progress message shows.
pub struct DeployProgress<'a> {
    pub row: &'a crate::deploy::store::DeployRow,
    pub steps: &'a [crate::deploy::store::StepRow],
    pub repo: &'a str,
    pub has_test: bool,
    pub page_url: String,
    pub now: DateTime<Utc>,
}

pub fn deploy_progress(p: &DeployProgress<'_>) -> Reply {
    use crate::deploy::store::{DeployState as S, EVERYTHING};
    let d = p.row;
    let what = deploy_name(&d.reference, &d.sha);
    let took = span(d.finished_at.unwrap_or(p.now) - d.started_at);
    let outcome = escape(d.outcome.as_deref().unwrap_or(""));
    let mut text = match d.state {
        S::Running => format!(
            ":rocket: {} is deploying {what} to {}",
            user(&d.by_user),
            env(&d.environment)
        ),
        S::Succeeded => format!(
            ":white_check_mark: {what} is deployed to {} ({} for {}, in {took})",
            env(&d.environment),
            escape(p.repo),
            user(&d.by_user)
        ),
        S::Failed => format!(
            ":x: Deploying {what} to {} failed: {outcome} (after {took}; its output is in the thread)",
            env(&d.environment)
        ),
        // The reason of a cancel is our own text, with a mention in it.
        S::Cancelled => format!(
            ":octagonal_sign: Deploying {what} to {} was cancelled: {}",
            env(&d.environment),
            d.outcome.as_deref().unwrap_or("cancelled")
        ),
        S::Interrupted => format!(
            ":warning: Deploying {what} to {} was interrupted: {outcome}",
            env(&d.environment)
        ),
    };
    let plan = &d.plan.0;
    if !plan.everything && plan.resources.is_empty() {
        text.push_str("\nNothing is affected by this change: nothing to build or deploy.");
    }
    // Each planned step with its latest state.
    let mut lines: Vec<String> = Vec::new();
    let mut line = |step: &str, resource: Option<&str>| {
        let run = p
            .steps
            .iter()
            .rev()
            .find(|s| s.step == step && s.resource.as_deref() == resource);
        let mark = match run.map(|r| r.state) {
            None => ":white_small_square:",
            Some(S::Running) => ":hourglass_flowing_sand:",
            Some(S::Succeeded) => ":white_check_mark:",
            Some(S::Failed) => ":x:",
            Some(S::Cancelled) | Some(S::Interrupted) => ":black_square_for_stop:",
        };
        let time = run
            .and_then(|r| r.finished_at.map(|f| format!(" {}", span(f - r.started_at))))
            .unwrap_or_default();
        let name = match resource {
            Some(r) => format!("{step} {}", code(r)),
            None => step.to_string(),
        };
        lines.push(format!("{mark} {name}{time}"));
    };
    for level in plan.build_levels() {
        for r in &level {
            line("build", (r != EVERYTHING).then_some(r.as_str()));
        }
    }
    for r in plan.deploys() {
        line("deploy", (r != EVERYTHING).then_some(r.as_str()));
    }
    if p.has_test {
        line("test", None);
    }
    if !lines.is_empty() {
        text.push('\n');
        text.push_str(&lines.join("\n"));
    }
    text.push_str(&format!("\nLogs: {}", escape(&p.page_url)));
    Reply::in_channel(text)
}
