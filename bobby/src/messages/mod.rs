//! Every sentence Bobby writes: replies to commands, DMs and announcements. Handlers decide *what*
//! happened; these modules decide how it reads. User-supplied text (reasons) is always escaped, times
//! use Slack's `<!date^…>` so each reader sees their own timezone.
//!
//! One module per family, as the handler is split: [`leases`] (lock, unlock, extend, wait and the
//! DMs and announcements of a lease's end), [`preserve`], [`status`](mod@status) (list, status, history),
//! [`check`] (deploy-check's plain-text reasons), [`nightly`] and [`deploy`]. Everything is
//! re-exported here, so callers write `messages::locked(..)`. Each family's wording is pinned by
//! insta snapshots in its `tests` module (`snapshots/`): a change in wording shows up in review.

use shared::envs::{EnvState, LeaseReason};
use shared::ids::{Holder, SlackUserId};
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, escape, user};

use crate::command::{ParseError, VERBS};

pub mod check;
pub mod deploy;
pub mod leases;
pub mod nightly;
pub mod preserve;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use check::*;
pub use deploy::*;
pub use leases::*;
pub use nightly::*;
pub use preserve::*;
pub use status::*;

pub const ACTION_UNLOCK: &str = "unlock";
pub const ACTION_EXTEND_1H: &str = "extend_1h";
pub const ACTION_WAIT: &str = "wait";

fn reason_suffix(reason: &LeaseReason) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" — _{}_", escape(reason.as_str()))
    }
}

/// An environment's name, in bold. Nightly's run records name environments as plain text.
fn env<S: AsRef<str> + ?Sized>(name: &S) -> String {
    format!("*{}*", escape(name.as_ref()))
}

/// A lease's holder: a mention of the person, or Gandalf by the name people know it by.
fn holder(h: &Holder) -> String {
    match h {
        Holder::Person(u) => person(u),
        Holder::Gandalf => "Gandalf".to_string(),
    }
}

/// A mention of a person.
fn person(u: &SlackUserId) -> String {
    user(u.as_str())
}

/// An environment's state as a sentence says it: "is being deleted", "is faulted".
fn state_words(state: EnvState) -> &'static str {
    match state {
        EnvState::Deleting => "being deleted",
        EnvState::Creating => "being created",
        other => other.as_str(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

pub fn help() -> Reply {
    let mut text = String::from("*Bobby* hands out the shared development environments. Commands:\n");
    for (_, usage) in VERBS {
        // Usages name their arguments `<env>`: escaped, or Slack reads `<env|any>` as a link.
        text.push_str(&format!("• `/bobby {}`\n", escape(usage)));
    }
    text.push_str("Durations look like `45s`, `30m`, `2h`, `1d` or `1h30m`.");
    Reply::ephemeral(text)
}

pub fn parse_error(e: &ParseError) -> Reply {
    let mut text = format!(":warning: {}", escape(&e.message));
    match e.usage {
        Some(u) => text.push_str(&format!("\nUsage: `/bobby {}`", escape(u))),
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

pub fn bad_action() -> Reply {
    Reply::ephemeral(
        ":warning: That button is not one I know (it may be from an older version of me). Try the command instead: `/bobby help`",
    )
}

#[cfg(test)]
mod tests {
    use super::fixtures::snap_reply;
    use super::*;

    #[test]
    fn general_replies() {
        snap_reply!("help", help());
        snap_reply!(
            "parse_error_with_usage",
            parse_error(&ParseError {
                message: "`soon` is not a duration; say `2h`, `30m` or `1d`".into(),
                usage: Some("extend <env> <duration>"),
            })
        );
        snap_reply!(
            "parse_error_unknown_verb",
            parse_error(&ParseError {
                message: "I do not know `lokc`. Did you mean `lock`?".into(),
                usage: None,
            })
        );
        snap_reply!("internal_error", internal_error());
        snap_reply!(
            "unknown_env_with_suggestion",
            unknown_env("env-44", Some("env-4"), &["env-1", "env-4"])
        );
        snap_reply!("unknown_env_hostile", unknown_env("<!channel>`x`", None, &["env-1"]));
        snap_reply!("bad_action", bad_action());
    }
}
