//! Nightly (SPEC §4.5): the run summaries, notes to the people it affects, `/bobby nightly …`
//! replies, the command line's report and the run log page.

use chrono::{DateTime, NaiveDate, Utc};
use shared::ids::EnvName;
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use super::{env, plural};
use crate::nightly::plan::{Decision, Phase, Skip};
use crate::nightly::runs::{Attempt, Run, RunEnv, Step};
use crate::nightly::summary::{Counts, Outcome, RunReport, Savings};
use crate::nightly::{DryRun, Requested, RunBrief, SkipOutcome, StatusReport};

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

fn env_list(names: &[&str]) -> String {
    names.iter().map(env).collect::<Vec<_>>().join(", ")
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

/// The summary of a run, for `announce_channel`: a headline, then one line per kind of outcome
/// (lines with no environment are left out), the month's savings and the log.
pub fn nightly_summary(r: &RunReport) -> Reply {
    let mut text = summary_headline(r);
    let lines = [
        done_line(r),
        faulted_line(r),
        interrupted_line(r),
        preserved_line(r),
        gandalf_line(r),
    ];
    for line in lines.into_iter().flatten() {
        text.push('\n');
        text.push_str(&line);
    }
    for reason in [Skip::NotKept, Skip::AlreadyUp, Skip::AlreadyDown, Skip::Busy] {
        let names = names_with(r, |o| *o == Outcome::Skipped(reason.clone()));
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

fn summary_headline(r: &RunReport) -> String {
    let phase = r.phase();
    if r.run.state == "interrupted" {
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
    }
}

/// The names of the environments whose outcome matches.
fn names_with(r: &RunReport, pred: impl Fn(&Outcome) -> bool) -> Vec<&str> {
    r.with_outcome(pred).iter().map(|e| e.name.as_str()).collect()
}

fn done_line(r: &RunReport) -> Option<String> {
    let done = names_with(r, |o| *o == Outcome::Done);
    (!done.is_empty()).then(|| {
        format!(
            ":white_check_mark: {} ({}): {}",
            phase_done(r.phase()),
            done.len(),
            env_list(&done)
        )
    })
}

fn faulted_line(r: &RunReport) -> Option<String> {
    let items: Vec<String> = r
        .envs
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Faulted {
                step,
                exit_code,
                attempts,
                ended,
            } => Some(format!(
                "{} at step {} ({}, {}) <{}#{}|log>",
                env(&e.name),
                code(step),
                escape(&exit_text(*exit_code, ended)),
                plural(*attempts as usize, "attempt", "attempts"),
                r.log_url,
                escape(e.name.as_str())
            )),
            _ => None,
        })
        .collect();
    (!items.is_empty()).then(|| format!(":x: Faulted ({}): {}", items.len(), items.join("; ")))
}

fn interrupted_line(r: &RunReport) -> Option<String> {
    let items: Vec<String> = r
        .envs
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Interrupted { step: Some(step) } => {
                Some(format!("{} at step {} (faulted)", env(&e.name), code(step)))
            }
            Outcome::Interrupted { step: None } => Some(format!("{} (not started; left as it was)", env(&e.name))),
            _ => None,
        })
        .collect();
    (!items.is_empty()).then(|| format!(":warning: Interrupted ({}): {}", items.len(), items.join("; ")))
}

fn preserved_line(r: &RunReport) -> Option<String> {
    let items: Vec<String> = r
        .envs
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Skipped(Skip::Preserved(until)) => Some(format!("{} until {}", env(&e.name), date(*until))),
            _ => None,
        })
        .collect();
    (!items.is_empty()).then(|| format!(":snowflake: Preserved ({}): {}", items.len(), items.join(", ")))
}

fn gandalf_line(r: &RunReport) -> Option<String> {
    let names = names_with(r, |o| *o == Outcome::Skipped(Skip::Gandalf));
    (!names.is_empty()).then(|| {
        format!(
            ":mag: Skipped, held by Gandalf for a verification ({}): {}",
            names.len(),
            env_list(&names)
        )
    })
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
pub fn nightly_waitlist_cleared(name: &EnvName) -> Reply {
    Reply::in_channel(format!(
        ":crescent_moon: Nightly is tearing down {}, so its waitlist was cleared and you are no longer waiting for it. Once it is back: `/bobby lock {}`",
        env(name),
        escape(name.as_str())
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
                f.phase.as_str(),
                code(&f.step),
                escape(&exit_text(f.exit_code, "")),
                plural(f.attempts as usize, "attempt", "attempts")
            ));
        }
        if let Some(n) = &e.last_nightly {
            line.push_str(&format!(
                " · last Nightly: {} {} {}",
                n.phase.as_str(),
                n.outcome.as_str(),
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

#[cfg(test)]
mod tests {
    use shared::envs::{EnvState, Fault, LastNightly, NightlyOutcome};

    use super::super::fixtures::{at, environment, name, snap_reply};
    use super::*;
    use crate::nightly::NextSlot;
    use crate::nightly::plan::Planned;
    use crate::nightly::summary::EnvReport;

    fn run(phase: Phase, trigger: &str, by: Option<&str>, state: &str) -> Run {
        Run {
            id: 41,
            phase,
            trigger: trigger.into(),
            scheduled_for: (trigger != "manual").then(|| at(19, 0)),
            requested_by: by.map(str::to_string),
            only_env: None,
            state: state.into(),
            created_at: at(19, 0),
            started_at: Some(at(19, 0)),
            finished_at: (state != "running").then(|| at(19, 12)),
            resume_until: None,
            note: String::new(),
        }
    }

    fn env_report(env: &str, outcome: Outcome) -> EnvReport {
        EnvReport {
            name: name(env),
            outcome,
            log_tail: None,
        }
    }

    /// A delete that did a bit of everything.
    fn busy_report() -> RunReport {
        let mut faulted = env_report(
            "env-3",
            Outcome::Faulted {
                step: "drop-db".into(),
                exit_code: Some(3),
                attempts: 3,
                ended: "exit status 3".into(),
            },
        );
        faulted.log_tail = Some("drop-db: database \"env3\" is being accessed by other users".into());
        RunReport {
            run: run(Phase::Delete, "scheduled", None, "finished"),
            envs: vec![
                env_report("env-1", Outcome::Done),
                env_report("env-2", Outcome::Done),
                faulted,
                env_report(
                    "env-4",
                    Outcome::Faulted {
                        step: "teardown".into(),
                        exit_code: None,
                        attempts: 1,
                        ended: "timed out after 10m".into(),
                    },
                ),
                env_report(
                    "env-5",
                    Outcome::Interrupted {
                        step: Some("teardown".into()),
                    },
                ),
                env_report("env-6", Outcome::Interrupted { step: None }),
                env_report(
                    "env-7",
                    Outcome::Skipped(Skip::Preserved(at(7, 0) + chrono::Duration::days(1))),
                ),
                env_report("env-8", Outcome::Skipped(Skip::Gandalf)),
                env_report("env-9", Outcome::Skipped(Skip::AlreadyDown)),
                env_report("env-10", Outcome::Skipped(Skip::Busy)),
            ],
            savings: Savings {
                saved_hours: 412.5,
                all_up_hours: 1200.0,
                environments: 10,
                cost: Some(103.12),
            },
            log_url: "https://bobby.example.com/nightly/runs/41".into(),
        }
    }

    fn quiet_report(phase: Phase, trigger: &str, by: Option<&str>, state: &str) -> RunReport {
        RunReport {
            run: run(phase, trigger, by, state),
            envs: vec![],
            savings: Savings {
                saved_hours: 0.0,
                all_up_hours: 0.0,
                environments: 1,
                cost: None,
            },
            log_url: "https://bobby.example.com/nightly/runs/41".into(),
        }
    }

    #[test]
    fn summaries_and_notes() {
        snap_reply!("summary_delete", nightly_summary(&busy_report()));
        let mut create = quiet_report(Phase::Create, "manual", Some("U0ADMIN1"), "finished");
        create.envs = vec![
            env_report("env-1", Outcome::Done),
            env_report("env-2", Outcome::Skipped(Skip::NotKept)),
            env_report("env-3", Outcome::Skipped(Skip::AlreadyUp)),
        ];
        snap_reply!("summary_create_manual", nightly_summary(&create));
        snap_reply!(
            "summary_nothing_from_cli",
            nightly_summary(&quiet_report(Phase::Delete, "manual", Some("cli"), "finished"))
        );
        snap_reply!(
            "summary_interrupted_caught_up",
            nightly_summary(&quiet_report(Phase::Create, "caught-up", None, "interrupted"))
        );
        snap_reply!("run_done_announced", nightly_run_done(&busy_report(), Some("C0ENVS")));
        snap_reply!(
            "run_done_not_announced",
            nightly_run_done(
                &quiet_report(Phase::Create, "manual", Some("U0ADMIN1"), "finished"),
                None
            )
        );
        snap_reply!(
            "slot_skipped",
            nightly_slot_skipped(Phase::Delete, at(0, 0).date_naive(), "U0ADMIN1")
        );
        snap_reply!("waitlist_cleared", nightly_waitlist_cleared(&name("env-4")));
        insta::assert_snapshot!("interrupted_tail_delete", nightly_interrupted_tail(Phase::Delete));
        insta::assert_snapshot!("interrupted_tail_create", nightly_interrupted_tail(Phase::Create));
    }

    #[test]
    fn command_replies() {
        snap_reply!("not_configured", nightly_not_configured());
        snap_reply!("needs_admin", nightly_needs_admin("run"));
        let requested = Requested {
            id: 42,
            phase: Phase::Create,
            only: Some("env-4".into()),
            ahead: 0,
        };
        snap_reply!("requested_next", nightly_requested(&requested, Some("C0ENVS")));
        let requested = Requested {
            only: None,
            ahead: 2,
            ..requested
        };
        snap_reply!("requested_behind_two", nightly_requested(&requested, None));
        let planned = |env: &str, decision: Decision| Planned {
            name: name(env),
            decision,
        };
        let dry = DryRun {
            phase: Phase::Create,
            only: None,
            day: at(0, 0).date_naive() + chrono::Duration::days(5),
            workday: false,
            planned: vec![
                planned("env-1", Decision::Run),
                planned("env-2", Decision::Skip(Skip::Preserved(at(7, 0)))),
                planned("env-3", Decision::Skip(Skip::NotKept)),
            ],
            steps: vec!["provision".into(), "seed".into()],
        };
        snap_reply!("dry_run_weekend_create", nightly_dry_run(&dry));
        let dry = DryRun {
            phase: Phase::Delete,
            only: Some("env-4".into()),
            day: at(0, 0).date_naive(),
            workday: true,
            planned: vec![],
            steps: vec![],
        };
        snap_reply!("dry_run_nothing", nightly_dry_run(&dry));
        let night = at(0, 0).date_naive();
        let skipped = SkipOutcome::Skipped {
            night,
            delete: at(19, 0),
            create: at(7, 0) + chrono::Duration::days(1),
            already: false,
        };
        snap_reply!("skip", nightly_skip(&skipped, "U0ADMIN1"));
        let again = SkipOutcome::Skipped {
            night,
            delete: at(19, 0),
            create: at(7, 0) + chrono::Duration::days(1),
            already: true,
        };
        snap_reply!("skip_already", nightly_skip(&again, "U0ADMIN1"));
        snap_reply!("skip_past", nightly_skip(&SkipOutcome::Past(night), "U0ADMIN1"));
    }

    #[test]
    fn status_reply() {
        let mut faulted = environment("env-2", EnvState::Faulted);
        faulted.fault = Some(Fault {
            phase: Phase::Create,
            step: "seed".into(),
            exit_code: None,
            attempts: 1,
            log_tail: String::new(),
        });
        faulted.last_nightly = Some(LastNightly {
            phase: Phase::Create,
            outcome: NightlyOutcome::Interrupted,
            finished_at: at(6, 30),
        });
        let mut ready = environment("env-1", EnvState::Ready);
        ready.last_nightly = Some(LastNightly {
            phase: Phase::Create,
            outcome: NightlyOutcome::Ok,
            finished_at: at(7, 10),
        });
        let counts = Counts {
            done: 3,
            faulted: 1,
            interrupted: 0,
            skipped: 2,
            open: 0,
        };
        let mut skipped_run = run(Phase::Delete, "scheduled", None, "skipped");
        skipped_run.note = "skipped by U0ADMIN1".into();
        let report = StatusReport {
            delete_at: "19:00".into(),
            create_at: "07:00".into(),
            timezone: "Europe/Berlin".into(),
            last: vec![
                RunBrief {
                    run: skipped_run,
                    counts: Counts::default(),
                },
                RunBrief {
                    run: run(Phase::Create, "caught-up", None, "finished"),
                    counts: counts.clone(),
                },
            ],
            running: Some(RunBrief {
                run: run(Phase::Delete, "manual", Some("U0ADMIN1"), "running"),
                counts: Counts {
                    done: 1,
                    open: 4,
                    ..Counts::default()
                },
            }),
            queued: 1,
            next: vec![
                NextSlot {
                    phase: Phase::Delete,
                    at: at(19, 0) + chrono::Duration::days(4),
                    night: at(0, 0).date_naive() + chrono::Duration::days(4),
                    skipped_by: Some("U0ADMIN1".into()),
                    keeps: None,
                },
                NextSlot {
                    phase: Phase::Create,
                    at: at(7, 0) + chrono::Duration::days(5),
                    night: at(0, 0).date_naive() + chrono::Duration::days(4),
                    skipped_by: None,
                    keeps: Some(vec!["env-1".into()]),
                },
            ],
            skipped_nights: vec![(at(0, 0).date_naive() + chrono::Duration::days(4), "U0ADMIN1".into())],
            environments: vec![ready, faulted],
        };
        snap_reply!("status", nightly_status(&report));
        let empty = StatusReport {
            last: vec![],
            running: None,
            queued: 0,
            next: vec![NextSlot {
                phase: Phase::Create,
                at: at(7, 0) + chrono::Duration::days(5),
                night: at(0, 0).date_naive() + chrono::Duration::days(4),
                skipped_by: None,
                keeps: Some(vec![]),
            }],
            skipped_nights: vec![],
            environments: vec![],
            ..report
        };
        snap_reply!("status_never_ran", nightly_status(&empty));
    }

    #[test]
    fn command_line_and_log_page() {
        insta::assert_snapshot!("cli_report", nightly_cli_report(&busy_report()));
        insta::assert_snapshot!("cli_stopped", nightly_cli_stopped(41));
        let mut r = run(Phase::Delete, "manual", Some("U0ADMIN1"), "finished");
        r.note = "asked for env-3 only".into();
        let envs = vec![
            RunEnv {
                environment: name("env-3"),
                position: 0,
                state: "faulted".into(),
                skip: None,
                prev_state: Some(EnvState::Ready),
                prev_fault: None,
                started_at: Some(at(19, 0)),
                finished_at: Some(at(19, 4)),
            },
            RunEnv {
                environment: name("env-7"),
                position: 1,
                state: "skipped".into(),
                skip: Some(Skip::Preserved(at(7, 0) + chrono::Duration::days(1))),
                prev_state: None,
                prev_fault: None,
                started_at: None,
                finished_at: Some(at(19, 0)),
            },
            RunEnv {
                environment: name("env-8"),
                position: 2,
                state: "skipped".into(),
                skip: Some(Skip::Gandalf),
                prev_state: None,
                prev_fault: None,
                started_at: None,
                finished_at: Some(at(19, 0)),
            },
        ];
        let steps = vec![Step {
            environment: name("env-3"),
            position: 0,
            name: "drop-db".into(),
            command: "./nightly/drop-db.sh".into(),
            state: "failed".into(),
            attempts: 2,
            exit_code: Some(3),
            ended: Some("exit status 3".into()),
            next_attempt_at: None,
            log_tail: Some("in use".into()),
        }];
        let attempt = |n: i32, backoff: Option<(i64, i64)>, ended: Option<&str>| Attempt {
            environment: name("env-3"),
            step_position: 0,
            attempt: n,
            backoff_ms: backoff.map(|b| b.0),
            backoff_cap_ms: backoff.map(|b| b.1),
            started_at: at(19, n as u32),
            finished_at: ended.map(|_| at(19, n as u32 + 1)),
            exit_code: ended.map(|_| 3),
            ended: ended.map(str::to_string),
            output: "dropping env3\ndatabase is in use".into(),
        };
        let attempts = vec![
            attempt(1, None, Some("exit status 3")),
            attempt(2, Some((812, 1000)), Some("exit status 3")),
        ];
        insta::assert_snapshot!("log_page", nightly_log_page(&r, &envs, &steps, &attempts));
        let running = run(Phase::Create, "scheduled", None, "running");
        let mut open = attempt(1, None, None);
        open.output = String::new();
        insta::assert_snapshot!(
            "log_page_running",
            nightly_log_page(&running, &envs[..1], &steps, &[open])
        );
    }
}
