//! `GET /cctray.xml`: the feed CCMenu, Nevergreen and the office's build monitors poll.
//!
//! The cctray format is one `<Projects>` element holding a `<Project>` per thing that builds, each
//! with `name`, `activity` (`Sleeping` or `Building`), `lastBuildStatus` (`Success`, `Failure`,
//! `Exception` or `Unknown`), `lastBuildLabel`, `lastBuildTime` (ISO 8601) and `webUrl`.
//!
//! - An environment is a project whose builds are Nightly's phases: `Building` while one runs on
//!   it (`deleting`, `creating`), `Failure` while it is faulted, `Success` after any other phase
//!   and `Unknown` before its first.
//! - A repository's merge queue is a project whose builds are verifications: `Building` while a PR
//!   verifies, and the status of the last one that ended in a verdict (merged → `Success`, failed
//!   → `Failure`); cancelled and dropped PRs were never judged, so they do not count.
//!
//! Times carry an explicit `+00:00` offset: some monitors mis-read a bare `Z`, none mis-read an
//! offset. `lastBuildTime` is required, so a project that never built shows when it came to be
//! (an environment's declaration) or, for a queue without verdicts, the time of the request.

use crate::queue::ItemState;
use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgConnection;

use super::read;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub activity: &'static str,
    pub status: &'static str,
    pub label: String,
    pub time: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "control/cctray.xml")]
pub struct Feed {
    pub projects: Vec<Project>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Every environment, then every queue.
pub async fn projects(conn: &mut PgConnection, public_url: &str, now: DateTime<Utc>) -> sqlx::Result<Vec<Project>> {
    let base = public_url.trim_end_matches('/');
    let mut out = Vec::new();
    for (env, extra) in read::environments(&mut *conn).await? {
        let state = env.state.as_str();
        let status = if state == "faulted" {
            "Failure"
        } else if env.last_nightly.is_some() {
            "Success"
        } else {
            "Unknown"
        };
        let label = match (&extra, &env.last_nightly) {
            (
                Some(read::EnvExtra {
                    last_run_id: Some(id),
                    last_run_phase: Some(phase),
                    ..
                }),
                _,
            ) => format!("{phase} #{id}"),
            (_, Some(n)) => n.phase.to_string(),
            _ => "never".to_string(),
        };
        let time = env
            .last_nightly
            .as_ref()
            .map(|n| n.finished_at)
            .or(extra.as_ref().map(|x| x.created_at))
            .unwrap_or(now);
        out.push(Project {
            name: format!("Nightly {}", env.name),
            activity: if env.state.is_busy() { "Building" } else { "Sleeping" },
            status,
            label,
            time: iso(time),
            url: format!("{base}/#env-{}", env.name),
        });
    }
    for q in read::queues(&mut *conn).await? {
        let active = read::active_items(&mut *conn, &q.repo).await?;
        let building = active.iter().any(|i| i.state.is_verifying());
        let last = read::last_outcome(&mut *conn, &q.repo).await?;
        let (status, label, time) = match &last {
            Some(i) => (
                if i.state == ItemState::Merged {
                    "Success"
                } else {
                    "Failure"
                },
                format!("#{}", i.pr),
                i.finished_at.unwrap_or(now),
            ),
            None => ("Unknown", "none".to_string(), now),
        };
        out.push(Project {
            name: format!("Merge queue {}", q.repo),
            activity: if building { "Building" } else { "Sleeping" },
            status,
            label,
            time: iso(time),
            url: format!("{base}/#{}", super::queue_anchor(&q.repo)),
        });
    }
    Ok(out)
}
