//! Replies about preserving an environment through the night (SPEC §4.5).

use chrono::{DateTime, Utc};
use shared::envs::Lease;
use shared::ids::{EnvName, SlackUserId};
use shared::slack::Reply;
use shared::slack::mrkdwn::{date, escape};

use super::{env, holder, person};

pub fn preserved(name: &EnvName, by: &SlackUserId, until: DateTime<Utc>) -> Reply {
    Reply::in_channel(format!(
        ":snowflake: {} preserved {} until {}: Nightly will leave it alone.",
        person(by),
        env(name),
        date(until)
    ))
}

pub fn preserve_needs_lease(name: &EnvName, lease: Option<&Lease>) -> Reply {
    let text = match lease {
        Some(l) => format!(
            ":no_entry: Only the holder of {} ({}) or an admin can preserve it.",
            env(name),
            holder(&l.holder)
        ),
        None => format!(
            ":no_entry: To preserve {} you need to hold it first: `/bobby lock {}`",
            env(name),
            escape(name.as_str())
        ),
    };
    Reply::ephemeral(text)
}

pub fn preserve_in_past() -> Reply {
    Reply::ephemeral(":warning: That date has passed; pick today or a later one (YYYY-MM-DD).")
}

pub fn unpreserved(name: &EnvName) -> Reply {
    Reply::ephemeral(format!(
        "{} is no longer preserved; Nightly will treat it like the others.",
        env(name)
    ))
}

pub fn not_preserved(name: &EnvName) -> Reply {
    Reply::ephemeral(format!("{} is not preserved.", env(name)))
}

pub fn unpreserve_not_yours(name: &EnvName) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only the holder of {}, whoever preserved it, or an admin can unpreserve it.",
        env(name)
    ))
}
