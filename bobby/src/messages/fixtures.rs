//! Fixed inputs for the message snapshots (tests only): one Monday in January 2026, the same
//! people and environments, so a snapshot changes only when the wording does.

use chrono::{DateTime, TimeZone, Utc};
use shared::envs::{EnvState, Environment, Lease};
use shared::ids::{EnvName, SlackUserId};
use shared::slack::{Reply, Visibility};

/// 2026-01-05 (a Monday) at `h:m` UTC.
pub fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, h, m, 0).unwrap()
}

pub fn user(id: &str) -> SlackUserId {
    id.parse().unwrap()
}

pub fn name(env: &str) -> EnvName {
    env.parse().unwrap()
}

/// `holder` (a Slack id or `gandalf`) holds `env` since 09:30 until 18:00.
pub fn lease(env: &str, holder: &str, reason: &str) -> Lease {
    Lease {
        environment: name(env),
        holder: holder.parse().unwrap(),
        reason: reason.into(),
        since: at(9, 30),
        expires_at: at(18, 0),
    }
}

/// `env` in `state`, free, never touched by Nightly or a deploy.
pub fn environment(env: &str, state: EnvState) -> Environment {
    Environment {
        name: name(env),
        url: format!("https://{env}.dev.example.com"),
        state,
        lease: None,
        preserved_until: None,
        preserved_by: None,
        waitlist: vec![],
        last_nightly: None,
        fault: None,
        deployed: Default::default(),
        deploy: None,
    }
}

/// A reply as its snapshot shows it: who sees it, its mrkdwn text as Slack gets it, its buttons.
pub fn show(r: &Reply) -> String {
    let who = match r.visibility {
        Visibility::Ephemeral => "ephemeral (only the one who typed it)",
        Visibility::InChannel => "in channel",
    };
    let mut out = format!("[{who}]\n{}", r.text);
    for b in &r.buttons {
        let style = if b.primary { ", primary" } else { "" };
        out.push_str(&format!(
            "\n[button {:?}: action {}, value {}{style}]",
            b.label, b.action_id, b.value
        ));
    }
    out
}

/// The Block Kit JSON Slack receives for a reply with buttons.
pub fn blocks(r: &Reply) -> String {
    serde_json::to_string_pretty(&r.command_response()).unwrap()
}

/// Pins a reply: its text and buttons, and its Block Kit JSON when it has buttons.
macro_rules! snap_reply {
    ($name:literal, $reply:expr) => {{
        let reply: shared::slack::Reply = $reply;
        insta::assert_snapshot!($name, $crate::messages::fixtures::show(&reply));
        if !reply.buttons.is_empty() {
            insta::assert_snapshot!(concat!($name, "_blocks"), $crate::messages::fixtures::blocks(&reply));
        }
    }};
}
pub(crate) use snap_reply;
