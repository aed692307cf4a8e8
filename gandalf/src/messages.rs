//! Every sentence Gandalf writes in Slack, in one place. Handlers decide what happened; this
//! module decides how it reads. PR titles are user input and always escaped.

use chrono::{DateTime, Utc};
use shared::duration::humanize;
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use crate::command::{ParseError, VERBS};
use crate::store::{Item, Pause};

fn pr(repo: &str, number: i64) -> String {
    format!("*{}#{number}*", escape(repo))
}

pub fn help() -> Reply {
    let mut text =
        String::from("*Gandalf* merges pull requests one at a time, after deploying and testing them. Commands:\n");
    for (_, usage) in VERBS {
        text.push_str(&format!("• `/gandalf {usage}`\n"));
    }
    text.push_str("On a pull request, comment `@gandalf merge` (or `cancel`, `retry`, `status`).");
    Reply::ephemeral(text)
}

pub fn parse_error(e: &ParseError) -> Reply {
    let mut text = format!(":warning: {}", escape(&e.message));
    match e.usage {
        Some(u) => text.push_str(&format!("\nUsage: `/gandalf {u}`")),
        None => text.push_str("\nType `/gandalf help` for the list of commands."),
    }
    Reply::ephemeral(text)
}

pub fn internal_error() -> Reply {
    Reply::ephemeral(
        ":boom: Something went wrong on my side and nothing was changed. Please try again in a moment; the Gandalf logs have the details.",
    )
}

pub fn unmapped_user(who: &str) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I don't know your GitHub login, {}. Ask an admin to add you to `[[people]]` in gandalf.toml (slack = \"{}\", github = \"…\").",
        user(who),
        escape(who)
    ))
}

pub fn unknown_repo(name: &str, repos: &[&str]) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I don't queue {}. Repositories: {}",
        code(name),
        repos.iter().map(|r| code(r)).collect::<Vec<_>>().join(", ")
    ))
}

pub fn which_repo(repos: &[&str]) -> Reply {
    Reply::ephemeral(format!(
        ":warning: I queue several repositories; say which, like `owner/repo#123`. Repositories: {}",
        repos.iter().map(|r| code(r)).collect::<Vec<_>>().join(", ")
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

pub fn refused(repo: &str, number: i64, why: &str) -> Reply {
    Reply::ephemeral(format!(":no_entry: I can't queue {}: {}", pr(repo, number), why))
}

pub fn queued(item: &Item, position: usize, eta: Option<chrono::Duration>, by_slack: Option<&str>) -> Reply {
    let who = by_slack.map(user).unwrap_or_else(|| escape(&item.queued_by));
    let mut text = format!(
        ":inbox_tray: {who} queued {} {} at position {position}",
        pr(&item.repo, item.pr.into()),
        escape(&item.title)
    );
    if item.priority != 0 {
        text.push_str(&format!(" (priority {})", item.priority));
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
        pr(&item.repo, item.pr.into()),
        item.state.as_str()
    ))
}

pub fn not_queued(repo: &str, number: i64) -> Reply {
    Reply::ephemeral(format!("{} is not in the queue.", pr(repo, number)))
}

pub fn cancel_not_allowed(item: &Item) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only people with write access, or {} who queued it, can cancel {}.",
        escape(&item.queued_by),
        pr(&item.repo, item.pr.into())
    ))
}

pub fn cancelled(item: &Item, by: &str) -> Reply {
    Reply::in_channel(format!(
        ":x: {} took {} out of the queue.",
        user(by),
        pr(&item.repo, item.pr.into())
    ))
}

pub fn too_late_to_cancel(item: &Item) -> Reply {
    Reply::ephemeral(format!(
        "{} is landing right now (or has just finished), so it can no longer be cancelled. `/gandalf status {}#{}` says how it ended.",
        pr(&item.repo, item.pr.into()),
        escape(&item.repo),
        item.pr
    ))
}

pub fn nothing_to_retry(repo: &str, number: i64) -> Reply {
    Reply::ephemeral(format!(
        "{} has not failed, so there is nothing to retry. To queue it: `/gandalf merge {}#{number}`",
        pr(repo, number),
        escape(repo)
    ))
}

fn item_line(item: &Item, position: usize, now: DateTime<Utc>) -> String {
    format!(
        "{position}. {} {} · {} · queued by {} {} ago",
        pr(&item.repo, item.pr.into()),
        escape(&item.title),
        item.state.as_str(),
        escape(&item.queued_by),
        humanize(now - item.enqueued_at)
    )
}

pub fn queue(
    repo: &str,
    items: &[Item],
    pause: &Pause,
    typical: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> Reply {
    let mut text = format!("*Queue of {}*", escape(repo));
    if pause.paused {
        text.push_str(&format!(" — :double_vertical_bar: paused: {}", escape(&pause.reason)));
    }
    text.push('\n');
    if items.is_empty() {
        text.push_str("Empty.");
    }
    for (i, item) in items.iter().enumerate() {
        text.push_str(&item_line(item, i + 1, now));
        if let Some(t) = typical {
            let waits = t * (i as i32);
            if i > 0 {
                text.push_str(&format!(" · starts in ~{}", humanize(waits)));
            }
        }
        text.push('\n');
    }
    Reply::ephemeral(text.trim_end().to_string())
}

pub fn status(item: &Item, position: Option<usize>, public_url: &str) -> Reply {
    let mut text = format!(
        "{} {}: *{}*",
        pr(&item.repo, item.pr.into()),
        escape(&item.title),
        item.state.as_str()
    );
    if let Some(p) = position {
        text.push_str(&format!(" (position {p})"));
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
    text.push_str(&format!("\nDetails: {}", item_url(public_url, &item.repo, item.pr)));
    Reply::ephemeral(text)
}

pub fn never_queued(repo: &str, number: i64) -> Reply {
    Reply::ephemeral(format!(
        "{} has never been queued. To queue it: `/gandalf merge {}#{number}`",
        pr(repo, number),
        escape(repo)
    ))
}

pub fn paused(repo: &str, by: &str, reason: &str) -> Reply {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {}", escape(reason))
    };
    Reply::in_channel(format!(
        ":double_vertical_bar: {} paused the queue of {}{why}. Queued PRs wait; `/gandalf resume` restarts it.",
        user(by),
        code(repo)
    ))
}

pub fn resumed(repo: &str, by: &str) -> Reply {
    Reply::in_channel(format!(
        ":arrow_forward: {} resumed the queue of {}.",
        user(by),
        code(repo)
    ))
}

pub fn plan(repo: &str, number: i64, text: &str) -> Reply {
    Reply::ephemeral(format!(
        "Plan for {}:\n```\n{}\n```",
        pr(repo, number),
        text.replace("```", "'''")
    ))
}

pub fn bad_map(repo: &str, number: i64, error: &str) -> Reply {
    Reply::ephemeral(format!(
        ":warning: The resource map of {} does not parse:\n```\n{}\n```",
        pr(repo, number),
        error.replace("```", "'''")
    ))
}

pub fn unknown_comment_command(what: &str, bot: &str) -> Reply {
    Reply::ephemeral(format!(
        "I don't know `{}`. On a pull request I take `@{bot} merge [p=high|p=low|p=<n>]`, `@{bot} cancel`, `@{bot} retry` and `@{bot} status`.",
        what.replace('`', "'")
    ))
}

/// PR comment when a queued PR leaves the queue because of what happened to it on GitHub.
pub fn dropped(reason: &str) -> String {
    format!("Removed from the merge queue: {reason}.")
}

// --- What the verification worker says -----------------------------------------------------------

/// The control center's page of a PR's latest verification: steps, durations and logs.
pub fn item_url(public_url: &str, repo: &str, pr: i32) -> String {
    format!("{}/queue/{repo}/pulls/{pr}", public_url.trim_end_matches('/'))
}

/// The note on an item waiting for its environment (`status` shows it).
pub fn waiting_for_environment(env: &str, holder: &str, until: DateTime<Utc>) -> String {
    format!(
        "waiting for {env}, held by {holder} until {}",
        until.format("%Y-%m-%d %H:%M UTC")
    )
}

pub fn waiting_for_nightly(env: &str, state: &str) -> String {
    format!("waiting for {env}: Nightly is {state} it")
}

/// How a verification was told apart from a green one, for comments and DMs.
#[derive(Debug, Clone)]
pub struct Red {
    /// `build`, `deploy`, `test`, or a phase before the steps (`candidate`, `resource map`).
    pub step: String,
    pub resource: Option<String>,
    /// "exit status 3", "timed out…", "cancelled by alice"…
    pub how: String,
    /// The last lines of the step's output, secrets masked.
    pub tail: String,
}

impl Red {
    pub fn what(&self) -> String {
        match &self.resource {
            Some(r) => format!("`{}` of `{r}`", self.step),
            None => format!("`{}`", self.step),
        }
    }
}

/// GitHub comment on a PR whose verification was red.
pub fn failed_comment(red: &Red, candidate: Option<&str>, url: &str, reverted: &[String]) -> String {
    let mut text = format!(":x: Verification failed at {}: {}.", red.what(), red.how);
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

pub fn bad_map_comment(path: &str, error: &str) -> String {
    format!(
        ":x: The resource map `{path}` at the candidate does not parse, so I can't tell what to deploy:\n\n```\n{}\n```",
        error.replace("```", "'''")
    )
}

/// GitHub comment when a PR landed.
pub fn merged_comment(base: &str, landed: &str, affected: &[String], verification: chrono::Duration) -> String {
    let what = if affected.is_empty() {
        "no resources were affected; the environment's tests passed".to_string()
    } else {
        format!("verified with {}", affected.join(", "))
    };
    format!(
        ":white_check_mark: Landed on `{base}` as {landed} ({what}; verification took {}).",
        humanize(verification)
    )
}

/// The announcement in `merges_channel`.
pub fn merge_announcement(
    item: &Item,
    landed: &str,
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
        .as_deref()
        .map(user)
        .unwrap_or_else(|| escape(&item.queued_by));
    Reply::in_channel(format!(
        ":rocket: Merged {} {} by {} as `{}`.\nQueued by {who}; affected: {affected}; {} in the queue, {} verifying.",
        pr(&item.repo, item.pr.into()),
        escape(&item.title),
        escape(&item.author),
        &landed[..landed.len().min(12)],
        humanize(in_queue),
        humanize(verification),
    ))
}

/// DM to whoever queued a PR that failed.
pub fn failed_dm(item: &Item, red: &Red, url: &str) -> Reply {
    Reply::in_channel(format!(
        ":x: {} {} failed verification at {}: {}.\nLog: {url}\nWhen it is fixed: `/gandalf retry {}#{}`",
        pr(&item.repo, item.pr.into()),
        escape(&item.title),
        escape(&red.what()),
        escape(&red.how),
        escape(&item.repo),
        item.pr
    ))
}

/// `merges_channel`, when a revert failed and the queue stopped.
pub fn revert_failed(repo: &str, number: i32, env: &str, what: &str) -> Reply {
    Reply::in_channel(format!(
        ":rotating_light: Reverting {} after a red run of {} failed ({}). The queue of {} is *paused* until someone \
         repairs {} and runs `/gandalf resume {}`.",
        code(env),
        pr(repo, number.into()),
        escape(what),
        code(repo),
        code(env),
        escape(repo)
    ))
}
