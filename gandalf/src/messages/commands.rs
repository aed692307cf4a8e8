//! Gandalf's answers to `/gandalf` in Slack and to `@gandalf` on pull requests: help, mistakes,
//! refusals, and what a command changed or shows (the queue, a PR's status, a plan).

use chrono::{DateTime, Utc};
use shared::duration::humanize;
use shared::ids::{CommitSha, PrNumber, RepoName, SlackUserId};
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use super::pr;
use crate::command::{ParseError, VERBS};
use crate::store::{Item, ItemState, Pause};

pub fn help() -> Reply {
    let mut text =
        String::from("*Gandalf* merges pull requests one at a time, after deploying and testing them. Commands:\n");
    for (_, usage) in VERBS {
        // `<pr>` is escaped: raw, Slack reads it as markup, and a PR comment's plain text drops it.
        text.push_str(&format!("• `/gandalf {}`\n", escape(usage)));
    }
    text.push_str("On a pull request, comment `@gandalf merge` (or `cancel`, `retry`, `status`).");
    Reply::ephemeral(text)
}

pub fn parse_error(e: &ParseError) -> Reply {
    let mut text = format!(":warning: {}", escape(&e.message));
    match e.usage {
        Some(u) => text.push_str(&format!("\nUsage: `/gandalf {}`", escape(u))),
        None => text.push_str("\nType `/gandalf help` for the list of commands."),
    }
    Reply::ephemeral(text)
}

pub fn internal_error() -> Reply {
    Reply::ephemeral(
        ":boom: Something went wrong on my side and nothing was changed. Please try again in a moment; the Gandalf logs have the details.",
    )
}

pub fn unmapped_user(who: &SlackUserId) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I don't know your GitHub login, {}. Ask an admin to add you to `[[people]]` in gandalf.toml (slack = \"{}\", github = \"…\").",
        user(who.as_str()),
        escape(who.as_str())
    ))
}

fn repo_list(repos: &[&RepoName]) -> String {
    repos
        .iter()
        .map(|r| code(&r.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn unknown_repo(name: &RepoName, repos: &[&RepoName]) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I don't queue {}. Repositories: {}",
        code(&name.to_string()),
        repo_list(repos)
    ))
}

pub fn which_repo(repos: &[&RepoName]) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I queue several repositories; say which, like `owner/repo#123`. Repositories: {}",
        repo_list(repos)
    ))
}

pub fn no_github() -> Reply {
    Reply::ephemeral(":zzz: Gandalf has no GitHub credentials (GITHUB_TOKEN or a GitHub App), so its queues are idle.")
}

pub fn github_down(detail: &str) -> Reply {
    Reply::ephemeral(format!(
        ":warning: GitHub is not answering right now ({}); nothing was changed. Try again in a minute.",
        escape(detail)
    ))
}

pub fn admins_only(what: &str) -> Reply {
    Reply::ephemeral(format!(":no_entry: Only admins can {what} the queue."))
}

/// Why a pull request cannot be queued (SPEC §5.3), as GitHub showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unqueueable {
    NoWritePermission {
        login: String,
    },
    NoSuchPull,
    Merged,
    Closed,
    Draft,
    /// It targets `targets`, and the queue lands on `base`.
    OtherBase {
        targets: String,
        base: String,
    },
    TooFewApprovals {
        have: usize,
        need: u32,
        head: CommitSha,
    },
    /// Reviewers with write access requested changes on its current head.
    ChangesRequested {
        by: Vec<String>,
    },
    /// The queue's base branch does not exist (`plan` found out).
    NoBaseBranch,
}

/// A PR cannot be queued (or planned): says why.
pub fn refused(repo: &RepoName, number: PrNumber, why: &Unqueueable) -> Reply {
    let why = match why {
        Unqueueable::NoWritePermission { login } => {
            format!("{} has no write permission on {repo}", escape(login))
        }
        Unqueueable::NoSuchPull => "there is no such pull request".to_string(),
        Unqueueable::Merged => "it is merged already".to_string(),
        Unqueueable::Closed => "it is closed".to_string(),
        Unqueueable::Draft => "it is a draft; mark it ready for review first".to_string(),
        Unqueueable::OtherBase { targets, base } => {
            format!("it targets {}, and this queue lands on {}", code(targets), code(base))
        }
        Unqueueable::TooFewApprovals { have, need, head } => format!(
            "it has {have} approval(s) on its current head {}, and needs {need}",
            head.short()
        ),
        Unqueueable::ChangesRequested { by } => format!(
            "changes were requested by {}; it can be queued once they approve",
            by.iter().map(|l| escape(l)).collect::<Vec<_>>().join(", ")
        ),
        Unqueueable::NoBaseBranch => "its base branch does not exist".to_string(),
    };
    Reply::ephemeral(format!(":no_entry: I can't queue {}: {why}", pr(repo, number)))
}

/// Who did something, as a reply names them: mentioned in Slack, by GitHub login on a PR (and
/// for people Gandalf knows only on GitHub).
#[derive(Clone, Copy, Debug)]
pub enum By<'a> {
    Slack(&'a SlackUserId),
    GitHub(&'a str),
}

impl By<'_> {
    fn name(self) -> String {
        match self {
            By::Slack(u) => user(u.as_str()),
            By::GitHub(login) => escape(login),
        }
    }
}

/// A PR was queued by `by`.
pub fn queued(item: &Item, position: usize, eta: Option<chrono::Duration>, by: By) -> Reply {
    let mut text = format!(
        ":inbox_tray: {} queued {} {} at position {position}",
        by.name(),
        pr(&item.repo, item.pr),
        escape(&item.title)
    );
    if item.priority != 0 {
        text.push_str(&format!(" (priority {})", shared::queue::priority_label(item.priority)));
    }
    if let Some(eta) = eta {
        text.push_str(&format!("; expect it to start in about {}", humanize(eta)));
    }
    text.push('.');
    Reply::in_channel(text)
}

pub fn already_queued(item: &Item, position: usize) -> Reply {
    Reply::ephemeral(format!(
        "{} is already in the queue (position {position}, {}).",
        pr(&item.repo, item.pr),
        state(item.state)
    ))
}

/// A state in words: `waiting_for_environment` raw would turn `_for_` italic in Slack.
fn state(s: ItemState) -> String {
    s.as_str().replace('_', " ")
}

pub fn not_queued(repo: &RepoName, number: PrNumber) -> Reply {
    Reply::ephemeral(format!("{} is not in the queue.", pr(repo, number)))
}

pub fn cancel_not_allowed(item: &Item) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only people with write access, or {} who queued it, can cancel {}.",
        escape(&item.queued_by),
        pr(&item.repo, item.pr)
    ))
}

pub fn cancelled(item: &Item, by: By) -> Reply {
    Reply::in_channel(format!(
        ":x: {} took {} out of the queue.",
        by.name(),
        pr(&item.repo, item.pr)
    ))
}

pub fn too_late_to_cancel(item: &Item) -> Reply {
    Reply::ephemeral(format!(
        "{} is landing right now (or has just finished), so it can no longer be cancelled. `/gandalf status {}#{}` says how it ended.",
        pr(&item.repo, item.pr),
        escape(&item.repo.to_string()),
        item.pr
    ))
}

pub fn nothing_to_retry(repo: &RepoName, number: PrNumber) -> Reply {
    Reply::ephemeral(format!(
        "{} has not failed, so there is nothing to retry. To queue it: `/gandalf merge {}#{number}`",
        pr(repo, number),
        escape(&repo.to_string())
    ))
}

fn item_line(item: &Item, position: usize, now: DateTime<Utc>) -> String {
    let priority = if item.priority == 0 {
        String::new()
    } else {
        format!(" · priority {}", shared::queue::priority_label(item.priority))
    };
    format!(
        "{position}. {} {} · {}{priority} · queued by {} {} ago",
        pr(&item.repo, item.pr),
        escape(&item.title),
        state(item.state),
        escape(&item.queued_by),
        humanize(now - item.enqueued_at)
    )
}

/// How many of a repository's recent finished runs passed only on a retry of `test`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlakyRate {
    pub flaky: i64,
    pub runs: i64,
}

/// `/gandalf queue`: the items in order, with when each should start if `typical` is known, and
/// the flaky rate of the last runs.
pub fn queue(
    repo: &RepoName,
    items: &[Item],
    pause: &Pause,
    typical: Option<chrono::Duration>,
    per_candidate: usize,
    flaky: FlakyRate,
    now: DateTime<Utc>,
) -> Reply {
    let mut text = format!("*Queue of {}*", escape(&repo.to_string()));
    if pause.paused {
        text.push_str(&format!(" — :double_vertical_bar: paused: {}", escape(&pause.reason)));
    }
    text.push('\n');
    if items.is_empty() {
        text.push_str("Empty.");
    }
    for (i, item) in items.iter().enumerate() {
        text.push_str(&item_line(item, i + 1, now));
        if let Some(t) = typical
            && i > 0
        {
            // With batches, the PRs ahead go `per_candidate` at a time.
            let ahead = i32::try_from(i / per_candidate.max(1)).unwrap_or(i32::MAX);
            text.push_str(&format!(" · starts in ~{}", humanize(t * ahead)));
        }
        text.push('\n');
    }
    if flaky.runs > 0 {
        text.push_str(&format!(
            "Flaky rate: {}% ({} of the last {} runs passed only on a retry of `test`)",
            flaky.flaky * 100 / flaky.runs,
            flaky.flaky,
            flaky.runs
        ));
    }
    Reply::ephemeral(text.trim_end().to_string())
}

pub fn status(item: &Item, position: Option<usize>, batch: &[PrNumber], public_url: &str) -> Reply {
    let mut text = format!(
        "{} {}: *{}*",
        pr(&item.repo, item.pr),
        escape(&item.title),
        state(item.state)
    );
    if let Some(p) = position {
        text.push_str(&format!(" (position {p})"));
    }
    if batch.len() > 1 {
        let all: Vec<String> = batch.iter().map(|p| format!("#{p}")).collect();
        let verb = if item.state.is_finished() { "was" } else { "is" };
        text.push_str(&format!("\nIt {verb} verified in one batch with {}.", all.join(", ")));
    }
    if let Some(note) = &item.note {
        text.push_str(&format!("\n{}", escape(note)));
    }
    if let Some(reason) = &item.outcome_reason {
        text.push_str(&format!("\n{}", escape(reason)));
    }
    text.push_str(&format!(
        "\nQueued by {} at {}.",
        escape(&item.queued_by),
        date(item.enqueued_at)
    ));
    text.push_str(&format!(
        "\nDetails: {}",
        super::item_url(public_url, &item.repo, item.pr)
    ));
    Reply::ephemeral(text)
}

pub fn never_queued(repo: &RepoName, number: PrNumber) -> Reply {
    Reply::ephemeral(format!(
        "{} has never been queued. To queue it: `/gandalf merge {}#{number}`",
        pr(repo, number),
        escape(&repo.to_string())
    ))
}

pub fn paused(repo: &RepoName, by: &SlackUserId, reason: &str) -> Reply {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {}", escape(reason))
    };
    Reply::in_channel(format!(
        ":double_vertical_bar: {} paused the queue of {}{why}. Queued PRs wait; `/gandalf resume` restarts it.",
        user(by.as_str()),
        code(&repo.to_string())
    ))
}

pub fn resumed(repo: &RepoName, by: &SlackUserId) -> Reply {
    Reply::in_channel(format!(
        ":arrow_forward: {} resumed the queue of {}.",
        user(by.as_str()),
        code(&repo.to_string())
    ))
}

/// `/gandalf plan`: `text` is the planner's own rendering.
pub fn plan(repo: &RepoName, number: PrNumber, text: &str) -> Reply {
    Reply::ephemeral(format!(
        "Plan for {}:\n```\n{}\n```",
        pr(repo, number),
        text.replace("```", "'''")
    ))
}

/// The plan when the PR has no resource map: everything is verified.
pub fn no_resource_map(path: &str, changed: usize) -> String {
    format!("No resource map at {path}: everything is built, deployed and tested ({changed} changed files).")
}

pub fn bad_map(repo: &RepoName, number: PrNumber, error: &str) -> Reply {
    Reply::ephemeral(format!(
        ":warning: The resource map of {} does not parse:\n```\n{}\n```",
        pr(repo, number),
        error.replace("```", "'''")
    ))
}

pub fn unknown_comment_command(what: &str, bot: &str) -> Reply {
    Reply::ephemeral(format!(
        "I don't know `{}`. On a pull request I take `@{bot} merge [p=high|p=low|p=&lt;n&gt;]`, `@{bot} cancel`, `@{bot} retry` and `@{bot} status`.",
        escape(&what.replace('`', "'"))
    ))
}

/// The one reply to a PR comment: the answer to its command, or to each of its commands, in order,
/// under the command as written. `None` for a comment with no command.
pub fn comment_reply(answers: &[(String, String)]) -> Option<String> {
    match answers {
        [] => None,
        [(_, only)] => Some(only.clone()),
        many => Some(
            many.iter()
                .map(|(command, answer)| format!("**`{}`**\n{answer}", command.replace('`', "'")))
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::messages::fixtures::{at, both, item, sha, slack};

    fn repo() -> RepoName {
        "acme/platform".parse().unwrap()
    }

    fn n(n: u64) -> PrNumber {
        PrNumber::new(n).unwrap()
    }

    fn alice() -> SlackUserId {
        "U0ALICE".parse().unwrap()
    }

    #[test]
    fn help_lists_every_verb() {
        assert_snapshot!(slack(&help()));
    }

    #[test]
    fn parse_errors_show_the_usage_or_point_to_help() {
        let with_usage = crate::command::parse("merge").unwrap_err();
        let without = crate::command::parse("mrege #1").unwrap_err();
        assert_snapshot!(format!(
            "{}\n\n{}",
            slack(&parse_error(&with_usage)),
            slack(&parse_error(&without))
        ));
    }

    #[test]
    fn trouble_on_our_side_or_with_the_setup() {
        let names = [repo(), "acme/web".parse().unwrap()];
        let names: Vec<&RepoName> = names.iter().collect();
        let text = [
            both(&internal_error()),
            slack(&unmapped_user(&alice())),
            slack(&unknown_repo(&"acme/plat".parse().unwrap(), &names)),
            slack(&which_repo(&names)),
            both(&no_github()),
            both(&github_down("HTTP 502: <html>")),
            slack(&admins_only("pause")),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn every_reason_a_pull_request_cannot_be_queued() {
        let reasons = [
            Unqueueable::NoWritePermission { login: "carol".into() },
            Unqueueable::NoSuchPull,
            Unqueueable::Merged,
            Unqueueable::Closed,
            Unqueueable::Draft,
            Unqueueable::OtherBase {
                targets: "release".into(),
                base: "main".into(),
            },
            Unqueueable::TooFewApprovals {
                have: 1,
                need: 2,
                head: sha('a'),
            },
            Unqueueable::ChangesRequested {
                by: vec!["dave".into()],
            },
            Unqueueable::NoBaseBranch,
        ];
        let text: Vec<String> = reasons.iter().map(|r| both(&refused(&repo(), n(42), r))).collect();
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn queued_in_slack_and_on_github() {
        let high = Item { priority: 10, ..item() };
        let text = [
            both(&queued(&item(), 1, None, By::Slack(&alice()))),
            both(&queued(
                &high,
                3,
                Some(chrono::Duration::minutes(50)),
                By::GitHub("alice"),
            )),
            both(&already_queued(&item(), 2)),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn cancel_and_retry() {
        let text = [
            both(&not_queued(&repo(), n(42))),
            both(&cancel_not_allowed(&item())),
            both(&cancelled(&item(), By::Slack(&"U0BOB".parse().unwrap()))),
            both(&cancelled(&item(), By::GitHub("bob"))),
            both(&too_late_to_cancel(&item())),
            both(&nothing_to_retry(&repo(), n(42))),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn queue_listing() {
        let waiting = Item {
            id: 2,
            pr: n(43),
            title: "Docs".into(),
            state: ItemState::WaitingForEnvironment,
            queued_by: "bob".into(),
            enqueued_at: at(9, 30),
            ..item()
        };
        let third = Item {
            id: 3,
            pr: n(44),
            priority: shared::queue::URGENT,
            state: ItemState::Queued,
            ..waiting.clone()
        };
        let now = at(10, 0);
        let paused = Pause {
            paused: true,
            reason: "infra <down>".into(),
            by: None,
        };
        let text = [
            slack(&queue(
                &repo(),
                &[],
                &Pause::default(),
                None,
                1,
                FlakyRate::default(),
                now,
            )),
            slack(&queue(
                &repo(),
                &[item(), waiting, third],
                &Pause::default(),
                Some(chrono::Duration::minutes(20)),
                1,
                FlakyRate { flaky: 2, runs: 50 },
                now,
            )),
            slack(&queue(&repo(), &[item()], &paused, None, 1, FlakyRate::default(), now)),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    /// What Slack receives for a reply (Gandalf's have no buttons): the response type, the
    /// notification text and the section blocks.
    #[test]
    fn a_reply_as_slack_receives_it() {
        let reply = queued(&item(), 2, Some(chrono::Duration::minutes(20)), By::Slack(&alice()));
        assert_snapshot!(serde_json::to_string_pretty(&reply.command_response()).unwrap());
    }

    #[test]
    fn status_of_a_verifying_and_of_a_finished_pull_request() {
        let verifying = Item {
            note: Some("waiting for verify-1, held by U0BOB until 2026-12-01 12:00 UTC".into()),
            ..item()
        };
        let dropped = Item {
            state: ItemState::Dropped,
            outcome_reason: Some("it was closed".into()),
            ..item()
        };
        let text = [
            both(&status(
                &verifying,
                Some(1),
                &[n(42), n(43)],
                "https://gandalf.example.com",
            )),
            both(&status(&dropped, None, &[], "https://gandalf.example.com/")),
            both(&never_queued(&repo(), n(42))),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn pause_and_resume() {
        let text = [
            slack(&paused(&repo(), &alice(), "infra <work>")),
            slack(&paused(&repo(), &alice(), "")),
            slack(&resumed(&repo(), &alice())),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn plans() {
        let text = [
            slack(&plan(&repo(), n(42), "2 changed files\n```sneaky```")),
            slack(&plan(&repo(), n(42), &no_resource_map(".gandalf/resources.toml", 3))),
            slack(&bad_map(&repo(), n(42), "line 3: unknown key `deploys`")),
        ];
        assert_snapshot!(text.join("\n\n"));
    }

    #[test]
    fn unknown_comment_commands_get_the_list() {
        assert_snapshot!(both(&unknown_comment_command("deploy `everything`", "gandalf")));
    }

    #[test]
    fn one_comment_gets_one_reply_however_many_commands_it_holds() {
        assert_eq!(comment_reply(&[]), None);
        let one = [("@gandalf status".to_string(), "#42 is queued, position 1.".to_string())];
        assert_eq!(comment_reply(&one).as_deref(), Some("#42 is queued, position 1."));
        let two = [
            (
                "@gandalf merge p=10".to_string(),
                "Queued #42 at position 1.".to_string(),
            ),
            (
                "@gandalf frob`nicate".to_string(),
                "I don't know `frobnicate`.".to_string(),
            ),
        ];
        assert_snapshot!(comment_reply(&two).unwrap());
    }
}
