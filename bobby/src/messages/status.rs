//! What `/bobby list`, `/bobby status` and `/bobby history` show.

use chrono::{DateTime, Utc};
use shared::duration::humanize;
use shared::envs::store::HistoryEvent;
use shared::envs::{EnvState, Environment};
use shared::ids::EnvName;
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use super::deploy::deploy_name;
use super::{ACTION_WAIT, env, holder, person, reason_suffix};

fn env_line(e: &Environment, now: DateTime<Utc>) -> String {
    let mut line = format!("{} · {}", env(&e.name), e.state.as_str());
    match &e.lease {
        Some(l) => line.push_str(&format!(
            " · :lock: {} until {}{}",
            holder(&l.holder),
            date(l.expires_at),
            reason_suffix(&l.reason)
        )),
        None => line.push_str(" · free"),
    }
    if let Some(until) = e.preserved_until.filter(|t| *t > now) {
        line.push_str(&format!(" · :snowflake: preserved until {}", date(until)));
    }
    if !e.waitlist.is_empty() {
        let who: Vec<String> = e.waitlist.iter().map(person).collect();
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
            f.phase.as_str(),
            code(&f.step),
            f.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
            f.attempts
        ));
    }
    if let Some(n) = &e.last_nightly {
        text.push_str(&format!(
            "\nLast Nightly: {} {} at {}.",
            n.phase.as_str(),
            n.outcome.as_str(),
            date(n.finished_at)
        ));
    }
    if let Some(d) = &e.deploy {
        let when = match d.finished_at {
            Some(f) => format!("{} at {}", d.state.as_str(), date(f)),
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
        Some(l) => reply.with_button("Join waitlist", ACTION_WAIT, l.environment.as_str(), false),
        None => reply,
    }
}

pub fn history(name: &EnvName, events: &[HistoryEvent]) -> Reply {
    if events.is_empty() {
        return Reply::ephemeral(format!("Nothing has happened to {} yet.", env(name)));
    }
    let mut text = format!("*History of {}* (newest first)\n", escape(name.as_str()));
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

#[cfg(test)]
mod tests {
    use shared::envs::{DeployState, DeploySummary, Deployed, Fault, LastNightly, NightlyOutcome, NightlyPhase};

    use super::super::fixtures::{at, environment, lease, name, snap_reply, user};
    use super::*;

    /// env-1 free, env-2 held with a waitlist and preserved, env-3 deleted by Nightly.
    fn three() -> Vec<Environment> {
        let mut held = environment("env-2", EnvState::Ready);
        held.lease = Some(lease("env-2", "U0BOB", "payments demo"));
        held.preserved_until = Some(at(7, 0) + chrono::Duration::days(1));
        held.preserved_by = Some(user("U0BOB"));
        held.waitlist = vec![user("U0CAROL"), user("U0DAVE")];
        vec![
            environment("env-1", EnvState::Ready),
            held,
            environment("env-3", EnvState::Deleted),
        ]
    }

    #[test]
    fn list_and_status() {
        let now = at(12, 0);
        snap_reply!("list", list(&three(), now));
        snap_reply!("status_free", status(&environment("env-1", EnvState::Ready), now));
        snap_reply!("status_held", status(&three()[1], now));

        let mut e = environment("env-4", EnvState::Faulted);
        e.lease = Some(lease("env-4", "U0ALICE", ""));
        e.fault = Some(Fault {
            phase: NightlyPhase::Create,
            step: "seed".into(),
            exit_code: Some(2),
            attempts: 3,
            log_tail: "seed: connection refused".into(),
        });
        e.last_nightly = Some(LastNightly {
            phase: NightlyPhase::Create,
            outcome: NightlyOutcome::Faulted,
            finished_at: at(6, 40),
        });
        e.deploy = Some(DeploySummary {
            state: DeployState::Failed,
            reference: "#812".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            by: "U0ALICE".into(),
            started_at: at(10, 0),
            finished_at: Some(at(10, 7)),
            id: 31,
        });
        e.deployed.insert(
            "api".into(),
            Deployed {
                sha: "fedcba9876543210fedcba9876543210fedcba98".into(),
                reference: "fix-login".into(),
                by: "U0ALICE".into(),
                at: at(9, 50),
            },
        );
        snap_reply!("status_faulted_with_deploys", status(&e, now));

        let mut running = environment("env-5", EnvState::Ready);
        running.deploy = Some(DeploySummary {
            state: DeployState::Running,
            reference: "abcdef1".into(),
            sha: "abcdef1234567890abcdef1234567890abcdef12".into(),
            by: "U0BOB".into(),
            started_at: at(11, 55),
            finished_at: None,
            id: 32,
        });
        snap_reply!("status_deploy_running", status(&running, now));
    }

    #[test]
    fn history_replies() {
        snap_reply!("history_empty", history(&name("env-4"), &[]));
        let events = vec![
            HistoryEvent {
                at: at(12, 0),
                actor: "bobby".into(),
                action: "handed-over".into(),
                detail: "to U0CAROL, until 2026-01-05T18:00:00Z".into(),
            },
            HistoryEvent {
                at: at(11, 59),
                actor: "U0BOB".into(),
                action: "unlocked".into(),
                detail: "was held by U0BOB".into(),
            },
            HistoryEvent {
                at: at(9, 30),
                actor: "U0BOB".into(),
                action: "locked".into(),
                detail: "until 2026-01-05T18:00:00Z: <b>demo</b>".into(),
            },
            HistoryEvent {
                at: at(9, 0),
                actor: "gandalf".into(),
                action: "unpreserved".into(),
                detail: String::new(),
            },
        ];
        snap_reply!("history", history(&name("env-4"), &events));
    }
}
