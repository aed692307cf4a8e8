//! What Gandalf's check on a pull request says (SPEC §5.7): its title (next to the check, and a
//! commit status's description) and its Markdown summary, for each state of the item. Pure: the
//! check-updates worker (`crate::checks::outbox`) gathers the facts and sends the view.

use shared::ids::{CommitSha, PrNumber, RepoName};
use shared::queue::ItemState;
use shared::slack::Reply;
use shared::slack::mrkdwn::escape;

use crate::checks::{CheckStatus, CheckView, Conclusion};

/// The step a red verification failed at, from its `queue_steps` row (the log is masked).
#[derive(Debug, Clone, Copy)]
pub struct FailedStep<'a> {
    pub name: &'a str,
    pub resource: Option<&'a str>,
    pub exit_code: Option<i32>,
    pub log: &'a str,
}

/// What the check is built from, read from the item's row when the update is delivered.
#[derive(Debug, Clone, Copy)]
pub struct CheckFacts<'a> {
    pub state: ItemState,
    /// 1-based place in the queue, when queued.
    pub position: Option<usize>,
    pub note: Option<&'a str>,
    /// The step running now: its name and resource.
    pub step: Option<(&'a str, Option<&'a str>)>,
    /// Why it ended (`outcome_reason`).
    pub reason: Option<&'a str>,
    pub failed: Option<FailedStep<'a>>,
    pub landed: Option<&'a CommitSha>,
    pub base: &'a str,
}

/// How many of a failed step's last lines the check shows, like the PR comment.
pub const TAIL_LINES: usize = 50;

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn step_name(name: &str, resource: Option<&str>) -> String {
    match resource {
        Some(r) => format!("`{name}` of `{r}`"),
        None => format!("`{name}`"),
    }
}

/// The view of Gandalf's check for these facts.
pub fn check_view(f: &CheckFacts<'_>) -> CheckView {
    let reason = f.reason.unwrap_or_default();
    let (status, title, summary) = match f.state {
        ItemState::Queued => {
            let title = match f.position {
                Some(p) => format!("Queued: {} in line", ordinal(p)),
                None => "Queued".to_string(),
            };
            let summary = match f.note {
                Some(n) => format!("{title}.\n\n{n}"),
                None => format!("{title}. Gandalf verifies one candidate at a time."),
            };
            (CheckStatus::Queued, title, summary)
        }
        ItemState::Merged => {
            let title = format!("Landed on {}", f.base);
            let summary = match f.landed {
                Some(sha) => format!("Verified and landed on `{}` as {sha}.", f.base),
                None => format!("Verified and landed on `{}`.", f.base),
            };
            (CheckStatus::Completed(Conclusion::Success), title, summary)
        }
        ItemState::Failed => {
            let mut summary = format!("Verification {reason}.");
            let title = match f.failed {
                Some(s) => {
                    let exit = s
                        .exit_code
                        .map(|c| format!("exit status {c}"))
                        .unwrap_or_else(|| "no exit status".into());
                    let lines: Vec<&str> = s.log.lines().collect();
                    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
                    summary = format!(
                        "Verification {reason}.\n\nFailing step: {} ({exit}).\n\nLast lines of its output:\n\n```\n{}\n```",
                        step_name(s.name, s.resource),
                        tail.replace("```", "'''")
                    );
                    format!("Failed at {} ({exit})", s.name)
                }
                None => format!("Verification {reason}"),
            };
            (CheckStatus::Completed(Conclusion::Failure), title, summary)
        }
        ItemState::Cancelled => (
            CheckStatus::Completed(Conclusion::Cancelled),
            "Cancelled".to_string(),
            format!("Taken out of the queue: {reason}."),
        ),
        ItemState::Dropped => (
            CheckStatus::Completed(Conclusion::Neutral),
            format!("Dropped: {reason}"),
            format!("Dropped from the queue: {reason}. Queue it again when it is ready."),
        ),
        verifying => {
            let doing = match (verifying, f.step) {
                (ItemState::WaitingForEnvironment, _) => "Waiting for the verification environment".to_string(),
                (ItemState::WaitingForChecks, _) => "Pipeline green; waiting for the required checks".to_string(),
                (ItemState::Landing, _) => "Landing".to_string(),
                (_, Some((name, resource))) => format!("Running {}", step_name(name, resource)),
                (ItemState::Preparing, None) => "Preparing the candidate".to_string(),
                _ => "Verifying".to_string(),
            };
            let summary = match f.note {
                Some(n) => format!("{doing}.\n\n{n}"),
                None => format!("{doing}."),
            };
            (CheckStatus::InProgress, doing.replace('`', ""), summary)
        }
    };
    CheckView { status, title, summary }
}

/// The description of the status `gandalf` = `success` on the commit about to land.
pub fn landing_description() -> String {
    "Verified by Gandalf: this exact commit lands".to_string()
}

/// A required check that has not started 10 minutes after the candidate was pushed: on the PR
/// and in `merges_channel`.
pub fn never_started(names: &[String], candidate: &CommitSha) -> String {
    let names = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    format!(
        ":hourglass: Required check {names} never started on the candidate {candidate} after 10 minutes: \
         is the workflow filtered by paths? The candidate turns red at the repository's `timeout`."
    )
}

/// [`never_started`] in `merges_channel`.
pub fn never_started_announcement(repo: &RepoName, number: PrNumber, names: &[String], candidate: &CommitSha) -> Reply {
    let names = names
        .iter()
        .map(|n| format!("`{}`", escape(n)))
        .collect::<Vec<_>>()
        .join(", ");
    Reply::in_channel(format!(
        ":hourglass: {}: required check {names} never started on the candidate `{candidate}` after 10 minutes: \
         is the workflow filtered by paths? The candidate turns red at the repository's `timeout`.",
        super::pr(repo, number)
    ))
}

/// The note of an item whose pipeline passed while its required checks still run.
pub fn waiting_for_checks_note(required: &[String]) -> String {
    let names = required.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    format!("pipeline green; waiting for the required checks {names} on the candidate")
}

/// A required check concluded red: the item's red reason (`how`).
pub fn required_check_red(name: &str, conclusion: &str, url: Option<&str>) -> String {
    match url {
        Some(u) => format!("the required check `{name}` concluded `{conclusion}` ({u})"),
        None => format!("the required check `{name}` concluded `{conclusion}`"),
    }
}

/// The verification timed out while required checks had not concluded.
pub fn required_checks_timed_out(timeout: impl std::fmt::Display, never: &[String], running: &[String]) -> String {
    let list = |v: &[String]| v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let mut s = format!("timed out after {timeout}");
    if !never.is_empty() {
        s.push_str(&format!(
            ": the required check {} never started (is the workflow filtered by paths?)",
            list(never)
        ));
    } else if !running.is_empty() {
        s.push_str(&format!(": the required check {} did not finish", list(running)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: ItemState) -> CheckFacts<'static> {
        CheckFacts {
            state,
            position: None,
            note: None,
            step: None,
            reason: None,
            failed: None,
            landed: None,
            base: "main",
        }
    }

    #[test]
    fn each_state_reads_and_maps_to_githubs_status() {
        let queued = check_view(&CheckFacts {
            position: Some(2),
            ..facts(ItemState::Queued)
        });
        assert_eq!(
            (queued.status, queued.title.as_str()),
            (CheckStatus::Queued, "Queued: 2nd in line")
        );
        let running = check_view(&CheckFacts {
            step: Some(("build", Some("api"))),
            ..facts(ItemState::Deploying)
        });
        assert_eq!(running.status, CheckStatus::InProgress);
        assert_eq!(running.summary, "Running `build` of `api`.");
        let waiting = check_view(&facts(ItemState::WaitingForChecks));
        assert!(waiting.title.contains("required checks"), "{waiting:?}");
        let landed: CommitSha = "c".repeat(40).parse().unwrap();
        let merged = check_view(&CheckFacts {
            landed: Some(&landed),
            ..facts(ItemState::Merged)
        });
        assert_eq!(merged.status, CheckStatus::Completed(Conclusion::Success));
        assert!(merged.summary.contains(&"c".repeat(40)));
        let dropped = check_view(&CheckFacts {
            reason: Some("new commits were pushed"),
            ..facts(ItemState::Dropped)
        });
        assert_eq!(dropped.status, CheckStatus::Completed(Conclusion::Neutral));
        assert_eq!(dropped.title, "Dropped: new commits were pushed");
        let cancelled = check_view(&facts(ItemState::Cancelled));
        assert_eq!(cancelled.status, CheckStatus::Completed(Conclusion::Cancelled));
    }

    #[test]
    fn a_red_check_names_the_step_its_exit_status_and_its_last_lines() {
        let log: String = (1..=80).map(|i| format!("line {i}\n")).collect();
        let red = check_view(&CheckFacts {
            reason: Some("failed at test: exit status 3"),
            failed: Some(FailedStep {
                name: "test",
                resource: None,
                exit_code: Some(3),
                log: &log,
            }),
            ..facts(ItemState::Failed)
        });
        assert_eq!(red.status, CheckStatus::Completed(Conclusion::Failure));
        assert_eq!(red.title, "Failed at test (exit status 3)");
        assert!(
            red.summary.contains("line 80") && red.summary.contains("line 31"),
            "{}",
            red.summary
        );
        assert!(
            !red.summary.contains("line 30\n"),
            "only the last 50 lines: {}",
            red.summary
        );
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
            ]
        );
    }

    #[test]
    fn timed_out_says_which_checks_never_started() {
        let s = required_checks_timed_out("60m", &["build".into()], &[]);
        assert_eq!(
            s,
            "timed out after 60m: the required check `build` never started (is the workflow filtered by paths?)"
        );
        assert_eq!(required_checks_timed_out("60m", &[], &[]), "timed out after 60m");
    }
}
