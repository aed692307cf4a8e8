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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{at, lease, name, snap_reply, user};
    use super::*;

    #[test]
    fn preserve_replies() {
        let env4 = name("env-4");
        snap_reply!(
            "preserved",
            preserved(&env4, &user("U0ALICE"), at(7, 0) + chrono::Duration::days(1))
        );
        snap_reply!(
            "preserve_needs_lease_held",
            preserve_needs_lease(&env4, Some(&lease("env-4", "U0BOB", "")))
        );
        snap_reply!("preserve_needs_lease_free", preserve_needs_lease(&env4, None));
        snap_reply!("preserve_in_past", preserve_in_past());
        snap_reply!("unpreserved", unpreserved(&env4));
        snap_reply!("not_preserved", not_preserved(&env4));
        snap_reply!("unpreserve_not_yours", unpreserve_not_yours(&env4));
    }
}
