//! What Gandalf says while it verifies and lands: PR comments (landed, failed, conflicts, a bad
//! resource map, dropped), the `merges_channel` announcement and alarm, the DM to whoever queued a
//! PR that failed or waits for an environment, the notes `status` shows, and the commit message
//! of the candidate.

use std::fmt;

use chrono::{DateTime, Utc};
use shared::duration::humanize;
use shared::ids::{CommitSha, PrNumber, RepoName};
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use super::pr;
use crate::drop_reason::DropReason;
use crate::store::Item;

/// PR comment when a queued PR leaves the queue because of what happened to it on GitHub.
pub fn dropped(reason: &DropReason) -> String {
    format!("Removed from the merge queue: {reason}.")
}

/// The control center's page of a PR's latest verification: steps, durations and logs.
pub fn item_url(public_url: &str, repo: &RepoName, pr: PrNumber) -> String {
    format!("{}/queue/{repo}/pulls/{pr}", public_url.trim_end_matches('/'))
}

/// The note on an item waiting for its environment (`status` shows it). `holder` is whoever
/// holds the lease, as the environments store names them.
pub fn waiting_for_environment(env: &str, holder: impl fmt::Display, until: DateTime<Utc>) -> String {
    format!(
        "waiting for {env}, held by {holder} until {}",
        until.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The note on an item whose environment Nightly is recreating (`state` is its word for it).
pub fn waiting_for_nightly(env: &str, state: &str) -> String {
    format!("waiting for {env}: Nightly is {state} it")
}

/// The note on an item a restart interrupted.
pub fn interrupted_by_restart() -> &'static str {
    "interrupted by a restart; it is verified again"
}

/// The note on an item our own error interrupted (the PR is not at fault).
pub fn interrupted_by_error() -> &'static str {
    "interrupted by an error on Gandalf's side (GitHub or the database); it is verified again"
}

/// The note on an item whose base moved between building the candidate and landing it.
pub fn base_moved(base: &str) -> String {
    format!("`{base}` moved before it could land; verifying again on the new tip")
}

/// The commit message of the candidate: the base with the PR's pinned head merged in.
pub fn candidate_message(number: PrNumber, head_branch: &str, title: &str) -> String {
    format!("Merge pull request #{number} from {head_branch}\n\n{title}")
}

/// Why a verification could not get a working copy: the item's note, and the pause reason.
pub fn no_working_copy(error: &str) -> String {
    format!("could not get a working copy for the steps ({error}); not the PR's fault, it stays queued")
}

/// `merges_channel` hears that the queue paused because no working copy could be had.
pub fn no_working_copy_pause(repo: &RepoName, number: PrNumber, error: &str) -> Reply {
    Reply::in_channel(format!(
        ":warning: The queue of {} is *paused*: I could not get a working copy to verify {} ({}). The PR keeps its \
         place. Check git, the route to GitHub and the disk under `state_dir`, then run `/gandalf resume {}`.",
        code(&repo.to_string()),
        pr(repo, number),
        escape(error),
        escape(&repo.to_string())
    ))
}

/// The reason on Gandalf's lease of the verification environment (Bobby's lists show it).
pub fn lease_reason(repo: &RepoName, number: PrNumber) -> String {
    format!("verifying {repo}#{number}")
}

/// DM to the first person waiting for an environment Gandalf has finished with.
pub fn environment_handed_over(env: &str, until: DateTime<Utc>) -> Reply {
    Reply::in_channel(format!(
        ":key: {} is yours now: Gandalf finished verifying on it. Your lease ends at {}.",
        code(env),
        date(until)
    ))
}

/// Where a verification went red: a step, or a phase around the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The whole verification (it timed out).
    Verification,
    /// Merging the PR's head into the base (a conflict).
    Candidate,
    /// Reading the candidate's resource map.
    ResourceMap,
    Build,
    Deploy,
    Test,
    /// Moving the base to the candidate, or merging the PR on GitHub.
    Land,
    /// Putting back what a red run deployed.
    Revert,
}

impl Phase {
    /// The name people read, and the step's `name` in `queue_steps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Verification => "verification",
            Phase::Candidate => "candidate",
            Phase::ResourceMap => "resource map",
            Phase::Build => "build",
            Phase::Deploy => "deploy",
            Phase::Test => "test",
            Phase::Land => "land",
            Phase::Revert => "revert",
        }
    }
}

/// How a verification was told apart from a green one, for comments and DMs.
#[derive(Debug, Clone)]
pub struct Red {
    pub step: Phase,
    pub resource: Option<String>,
    /// "exit status 3", "timed out…", "cancelled by alice"…
    pub how: String,
    /// The last lines of the step's output, secrets masked.
    pub tail: String,
}

impl Red {
    /// A failure outside the steps, with nothing to show of their output.
    pub fn at(step: Phase, how: impl Into<String>) -> Red {
        Red {
            step,
            resource: None,
            how: how.into(),
            tail: String::new(),
        }
    }

    /// The whole verification ran past the repository's `timeout`.
    pub fn timed_out(timeout: impl fmt::Display) -> Red {
        Red::at(Phase::Verification, format!("timed out after {timeout}"))
    }

    /// The PR's head does not merge into the base.
    pub fn conflicts(base: &str) -> Red {
        Red::at(Phase::Candidate, format!("it conflicts with `{base}`"))
    }

    /// The candidate's resource map does not parse; `error` is the parser's rendering.
    pub fn bad_map(error: String) -> Red {
        Red {
            tail: error,
            ..Red::at(Phase::ResourceMap, "it does not parse")
        }
    }

    /// GitHub refused to land a PR whose head had not changed (a rule of the repository).
    pub fn refused_to_land(status: u16, message: &str) -> Red {
        // GitHub's messages end with a period; the sentence this goes in has its own.
        let message = message.trim_end_matches('.');
        Red::at(Phase::Land, format!("GitHub refused to land it ({status}: {message})"))
    }

    pub fn what(&self) -> String {
        match &self.resource {
            Some(r) => format!("`{}` of `{r}`", self.step.as_str()),
            None => format!("`{}`", self.step.as_str()),
        }
    }

    /// " at `deploy` of `billing`", or nothing when the whole verification failed (it timed
    /// out): "failed at `verification`" said nothing.
    pub fn at_what(&self) -> String {
        match self.step {
            Phase::Verification => String::new(),
            _ => format!(" at {}", self.what()),
        }
    }

    /// The item's `outcome_reason`, which `status` and the control center show.
    pub fn reason(&self) -> String {
        format!("failed{}: {}", self.at_what(), self.how)
    }

    /// What a failed revert did, for the pause reason and `merges_channel`.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.what(), self.how)
    }
}

/// GitHub comment on a PR whose verification was red. Conflicts and a bad resource map have
/// comments of their own ([`conflict_comment`], [`bad_map_comment`]).
pub fn failed_comment(red: &Red, candidate: Option<&CommitSha>, url: &str, reverted: &[String]) -> String {
    let mut text = format!(":x: Verification failed{}: {}.", red.at_what(), red.how);
    if let Some(c) = candidate {
        text.push_str(&format!(" Candidate: {c}."));
    }
    if !red.tail.trim().is_empty() {
        text.push_str(&format!(
            "\n\nLast lines of its output:\n\n```\n{}\n```",
            red.tail.trim_end().replace("```", "'''")
        ));
    }
    if !reverted.is_empty() {
        text.push_str(&format!(
            "\n\nThe environment was reverted to the base for: {}.",
            reverted.join(", ")
        ));
    }
    text.push_str(&format!(
        "\n\nFix it and `@gandalf retry`, or push new commits and queue it again. Log: {url}"
    ));
    text
}

/// GitHub comment when the candidate cannot be built.
pub fn conflict_comment(base: &str) -> String {
    format!(
        ":x: This pull request does not merge cleanly into `{base}`: resolve the conflicts, push, and queue it again."
    )
}

/// GitHub comment when the candidate's resource map does not parse.
pub fn bad_map_comment(path: &str, error: &str) -> String {
    format!(
        ":x: The resource map `{path}` at the candidate does not parse, so I can't tell what to deploy:\n\n```\n{}\n```",
        error.replace("```", "'''")
    )
}

/// GitHub comment when a PR landed.
pub fn merged_comment(
    base: &str,
    landed: &CommitSha,
    affected: &[String],
    verification: chrono::Duration,
    squashed: bool,
) -> String {
    let what = if affected.is_empty() {
        "no resources were affected; the environment's tests passed".to_string()
    } else {
        format!("verified with {}", affected.join(", "))
    };
    let closed = if squashed {
        " GitHub shows this pull request as closed: its changes landed as that one squashed commit."
    } else {
        ""
    };
    format!(
        ":white_check_mark: Landed on `{base}` as {landed} ({what}; verification took {}).{closed}",
        humanize(verification)
    )
}

/// Appended to the landed comment of a run whose `test` passed only on a retry.
pub fn flaky_note() -> &'static str {
    "\n\n:warning: Its `test` failed and then passed on a retry (`test_retries`): this run is marked *flaky*. \
     The failed attempts' logs are on the control center."
}

/// The announcement in `merges_channel`.
pub fn merge_announcement(
    item: &Item,
    landed: &CommitSha,
    affected: &[String],
    in_queue: chrono::Duration,
    verification: chrono::Duration,
) -> Reply {
    let affected = if affected.is_empty() {
        "nothing (tests only)".to_string()
    } else {
        affected.iter().map(|a| code(a)).collect::<Vec<_>>().join(", ")
    };
    let who = item
        .queued_by_slack
        .as_ref()
        .map(|u| user(u.as_str()))
        .unwrap_or_else(|| escape(&item.queued_by));
    let landed = landed.as_str();
    Reply::in_channel(format!(
        ":rocket: Merged {} {} by {} as `{}`.\nQueued by {who}; affected: {affected}; {} in the queue, {} verifying.",
        pr(&item.repo, item.pr),
        escape(&item.title),
        escape(&item.author),
        &landed[..landed.len().min(12)],
        humanize(in_queue),
        humanize(verification),
    ))
}

/// The announcement in `merges_channel` of a batch that landed: every PR, in landing order.
pub fn batch_announcement(landed: &[(Item, CommitSha)], affected: &[String], verification: chrono::Duration) -> Reply {
    let affected = if affected.is_empty() {
        "nothing (tests only)".to_string()
    } else {
        affected.iter().map(|a| code(a)).collect::<Vec<_>>().join(", ")
    };
    let mut text = format!(":rocket: Merged a batch of {} pull requests:", landed.len());
    for (item, sha) in landed {
        let who = item
            .queued_by_slack
            .as_ref()
            .map(|u| user(u.as_str()))
            .unwrap_or_else(|| escape(&item.queued_by));
        let sha = sha.as_str();
        text.push_str(&format!(
            "\n• {} {} by {} as `{}` (queued by {who})",
            pr(&item.repo, item.pr),
            escape(&item.title),
            escape(&item.author),
            &sha[..sha.len().min(12)],
        ));
    }
    text.push_str(&format!(
        "\nAffected: {affected}; verified together in {}.",
        humanize(verification)
    ));
    Reply::in_channel(text)
}

/// Appended to the landed comment of a PR that landed in a batch.
pub fn landed_in_batch(prs: &[PrNumber]) -> String {
    let all: Vec<String> = prs.iter().map(|p| format!("#{p}")).collect();
    format!("\n\nVerified and landed together in one batch: {}.", all.join(", "))
}

/// The note on the members of a red batch, back in the queue to be bisected.
pub fn batch_red(what: &str, members: usize) -> String {
    format!("the batch of {members} it was in failed ({what}); nobody is rejected for that: it is being bisected")
}

/// The note on batch members queued again because another member left (cancelled, dropped, new
/// commits).
pub fn batch_member_left() -> &'static str {
    "a PR verified with it left the queue; it keeps its place and is verified again"
}

/// DM to whoever queued a PR that failed.
pub fn failed_dm(item: &Item, red: &Red, url: &str) -> Reply {
    Reply::in_channel(format!(
        ":x: {} {} failed verification{}: {}.\nLog: {url}\nWhen it is fixed: `/gandalf retry {}#{}`",
        pr(&item.repo, item.pr),
        escape(&item.title),
        escape(&red.at_what()),
        escape(&red.how),
        escape(&item.repo.to_string()),
        item.pr
    ))
}

/// The note on an item whose verification environment was taken away mid-run.
pub fn lease_lost(env: &str) -> String {
    format!("{env} was taken away (its lease was forced open); verified again once it is free")
}

/// The PR comment when an admin forced the verification environment's lease open mid-run.
pub fn lease_lost_comment(env: &str) -> String {
    format!(
        "Verification stopped: `{env}` was taken away from Gandalf (an admin forced its lease open). \
         What was deployed has been reverted; this PR keeps its place and is verified again once `{env}` is free."
    )
}

/// `merges_channel`, when an admin forced the verification environment's lease open mid-run.
pub fn lease_lost_announcement(repo: &RepoName, number: PrNumber, env: &str) -> Reply {
    Reply::in_channel(format!(
        ":warning: {} was taken away from Gandalf while it verified {}: the verification stopped and what it \
         deployed was reverted. The PR keeps its place and is verified again once {} is free.",
        code(env),
        pr(repo, number),
        code(env)
    ))
}

/// Why the queue was paused when a revert failed (stored, and shown by `/gandalf queue`).
pub fn revert_failed_pause(resource: &str, number: PrNumber, what: &str) -> String {
    format!("revert of {resource} after #{number} failed: {what}")
}

/// `merges_channel`, when a revert failed and the queue stopped.
pub fn revert_failed(repo: &RepoName, number: PrNumber, env: &str, what: &str) -> Reply {
    Reply::in_channel(format!(
        ":rotating_light: Reverting {} after a red run of {} failed ({}). The queue of {} is *paused* until someone \
         repairs {} and runs `/gandalf resume {}`.",
        code(env),
        pr(repo, number),
        escape(what),
        code(&repo.to_string()),
        code(env),
        escape(&repo.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::messages::fixtures::{at, item, sha, slack};

    fn repo() -> RepoName {
        "acme/platform".parse().unwrap()
    }

    fn n(n: u64) -> PrNumber {
        PrNumber::new(n).unwrap()
    }

    fn red() -> Red {
        Red {
            step: Phase::Deploy,
            resource: Some("billing".into()),
            how: "exit status 3".into(),
            tail: "deploying billing\nerror: connection refused\n```\n".into(),
        }
    }

    fn revert_red() -> Red {
        Red {
            resource: Some("billing".into()),
            ..Red::at(Phase::Revert, "exit status 1")
        }
    }

    #[test]
    fn dropped_comments_for_every_reason() {
        let reasons = [
            DropReason::NewCommits { head: sha('d') },
            DropReason::MergedElsewhere,
            DropReason::Closed,
            DropReason::BaseChanged,
            DropReason::AlreadyInBase { base: "main".into() },
            DropReason::Cancelled { by: "bob".into() },
        ];
        let text: Vec<String> = reasons.iter().map(dropped).collect();
        assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn notes_status_shows_and_the_candidate_commit() {
        let text = [
            item_url("https://gandalf.example.com/", &repo(), n(42)),
            waiting_for_environment("verify-1", "U0BOB", at(12, 0)),
            waiting_for_nightly("verify-1", "recreating"),
            interrupted_by_restart().to_string(),
            interrupted_by_error().to_string(),
            base_moved("main"),
            revert_failed_pause("billing", n(42), &revert_red().summary()),
            lease_reason(&repo(), n(42)),
            red().reason(),
            Red::timed_out("1h").reason(),
            Red::conflicts("main").reason(),
            Red::bad_map("line 3: unknown key `deploys`".into()).reason(),
            candidate_message(item().pr, "pay-faster", &item().title),
            no_working_copy("git fetch failed: could not resolve host: github.com"),
            slack(&no_working_copy_pause(
                &item().repo,
                item().pr,
                "git fetch failed: could not resolve host: github.com",
            )),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn red_comments() {
        let url = item_url("https://gandalf.example.com", &repo(), n(42));
        let timed_out = Red::timed_out("1h");
        let refused = Red::refused_to_land(405, "Required status check \"ci\" is expected.");
        let text = [
            failed_comment(&red(), Some(&sha('c')), &url, &["billing".to_string()]),
            failed_comment(&timed_out, None, &url, &[]),
            failed_comment(&refused, Some(&sha('c')), &url, &[]),
            conflict_comment("main"),
            bad_map_comment(".gandalf/resources.toml", "line 3: unknown key `deploys`\n```"),
        ];
        assert_snapshot!(text.join("\n\n---\n\n"));
    }

    #[test]
    fn landed() {
        let affected = vec!["billing".to_string(), "web".to_string()];
        let text = [
            merged_comment("main", &sha('c'), &affected, chrono::Duration::minutes(12), false),
            merged_comment("main", &sha('c'), &[], chrono::Duration::seconds(40), false),
            merged_comment("main", &sha('c'), &affected, chrono::Duration::minutes(3), true),
            flaky_note().to_string(),
            slack(&merge_announcement(
                &item(),
                &sha('c'),
                &affected,
                chrono::Duration::minutes(10),
                chrono::Duration::minutes(12),
            )),
            slack(&merge_announcement(
                &Item {
                    queued_by_slack: None,
                    ..item()
                },
                &sha('c'),
                &[],
                chrono::Duration::hours(2),
                chrono::Duration::minutes(75),
            )),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn direct_messages_and_alarms() {
        let url = item_url("https://gandalf.example.com", &repo(), n(42));
        let text = [
            slack(&failed_dm(&item(), &red(), &url)),
            slack(&failed_dm(
                &item(),
                &Red::at(Phase::Verification, "timed out after 1h"),
                &url,
            )),
            slack(&environment_handed_over("verify-1", at(18, 0))),
            slack(&revert_failed(&repo(), n(42), "verify-1", &revert_red().summary())),
        ];
        assert_snapshot!(text.join("\n\n"));
    }
}
