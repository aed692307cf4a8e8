//! `required_checks` (SPEC §5.7): the repository's own CI must pass on the candidate before it
//! lands. The verifier calls [`Waiter::wait`] once the candidate branch has moved, and runs it
//! alongside its own pipeline; whichever is slower bounds the verification.
//!
//! What CI reported lives in `candidate_checks`, one row per check name (a check run's name or a
//! status's context) and candidate: written by `check_run` and `status` deliveries
//! ([`record`], then NOTIFY `gandalf_ci`), and by a poll of GitHub when waiting starts, when a
//! `check_suite` delivery asks for it ([`poke`]), and every [`POLL_EVERY`] as a fallback for a
//! missed delivery. Deciding from those rows is pure ([`evaluate`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::github::{CiReport, CommitSha, Github, RepoName};
use shared::slack::outbox::{self, Sender};
use sqlx::PgConnection;

use crate::config::RepoConfig;
use crate::handler::Gandalf;
use crate::messages::checks as words;
use crate::messages::{Phase, Red};
use crate::store::Item;

/// A required check not started this long after the candidate was pushed is reported.
pub const NEVER_STARTED_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// The fallback poll of GitHub while waiting: slow, as deliveries do the work.
pub const POLL_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// How often the waiter looks at its clock and its stop without a notification.
const TICK: Duration = Duration::from_millis(250);

const PASSING: [&str; 3] = ["success", "neutral", "skipped"];

/// What the required checks say, from what CI reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// Every required check concluded with `success`, `neutral` or `skipped`.
    Passed,
    /// The first required check (in config order) that concluded otherwise.
    Red {
        name: String,
        conclusion: String,
        url: Option<String>,
    },
    /// Some still run (`running`) or have not been reported at all (`never_started`).
    Pending {
        never_started: Vec<String>,
        running: Vec<String>,
    },
}

/// Decides from the reports of one candidate. A report of a name not required is ignored.
pub fn evaluate(required: &[String], reports: &[CiReport]) -> Evaluation {
    let (mut never_started, mut running) = (vec![], vec![]);
    for name in required {
        match reports.iter().find(|r| &r.name == name) {
            None => never_started.push(name.clone()),
            Some(r) => match r.conclusion.as_deref() {
                Some(c) if PASSING.contains(&c) => {}
                Some(c) => {
                    return Evaluation::Red {
                        name: name.clone(),
                        conclusion: c.to_string(),
                        url: r.url.clone(),
                    };
                }
                None if r.status == "queued" => never_started.push(name.clone()),
                None => running.push(name.clone()),
            },
        }
    }
    if never_started.is_empty() && running.is_empty() {
        Evaluation::Passed
    } else {
        Evaluation::Pending { never_started, running }
    }
}

/// How waiting ended.
#[derive(Debug)]
pub enum Verdict {
    Passed,
    /// Red like a failing step: the check's name, conclusion and link.
    Red(Red),
    /// The verification was stopped meanwhile.
    Stopped,
}

/// Records what CI reported on `sha`, if `sha` is the candidate of an active item of `repo`
/// (reports on other commits are not Gandalf's business), and wakes the waiter. A completed
/// report is never replaced by an older, still-running one arriving late.
pub async fn record(conn: &mut PgConnection, repo: &RepoName, sha: &CommitSha, r: &CiReport) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO candidate_checks (repo, sha, name, status, conclusion, url, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, now() WHERE EXISTS ( \
             SELECT 1 FROM queue_items WHERE repo = $1 AND candidate_sha = $2 \
             AND state NOT IN ('merged', 'failed', 'cancelled', 'dropped')) \
         ON CONFLICT (repo, sha, name) DO UPDATE SET status = EXCLUDED.status, conclusion = EXCLUDED.conclusion, \
             url = COALESCE(EXCLUDED.url, candidate_checks.url), updated_at = now() \
         WHERE candidate_checks.status <> 'completed' OR EXCLUDED.status = 'completed'",
    )
    .bind(repo)
    .bind(sha)
    .bind(&r.name)
    .bind(&r.status)
    .bind(&r.conclusion)
    .bind(&r.url)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n > 0 {
        notify(conn, &format!("{repo} {sha}")).await?;
    }
    Ok(n > 0)
}

/// A `check_suite` delivery: which runs changed it does not say, so the waiter polls GitHub.
pub async fn poke(conn: &mut PgConnection, repo: &RepoName, sha: &CommitSha) -> sqlx::Result<()> {
    notify(conn, &format!("poll {repo} {sha}")).await
}

async fn notify(conn: &mut PgConnection, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify('gandalf_ci', $1)")
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// What CI reported on `sha` so far.
pub async fn reports(conn: &mut PgConnection, repo: &RepoName, sha: &CommitSha) -> sqlx::Result<Vec<CiReport>> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT name, status, conclusion, url FROM candidate_checks WHERE repo = $1 AND sha = $2 ORDER BY name",
    )
    .bind(repo)
    .bind(sha)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, status, conclusion, url)| CiReport {
            name,
            status,
            conclusion,
            url,
        })
        .collect())
}

/// The red reason when the verification timed out while required checks had not concluded
/// (`None` when they had, or there are none): names those that never started.
pub async fn timed_out_reason(gandalf: &Gandalf, repo: &RepoConfig, item: &Item) -> anyhow::Result<Option<String>> {
    if repo.required_checks.is_empty() {
        return Ok(None);
    }
    let mut conn = gandalf.pool.acquire().await?;
    let Some(current) = crate::store::item(&mut conn, item.id).await? else {
        return Ok(None);
    };
    let Some(candidate) = current.candidate_sha else {
        return Ok(None);
    };
    let got = reports(&mut conn, &repo.name, &candidate).await?;
    Ok(match evaluate(&repo.required_checks, &got) {
        // A check that never started is worth saying whatever else was slow; one still running
        // only when the pipeline had finished and the checks were what the time went to.
        Evaluation::Pending { never_started, running }
            if !never_started.is_empty() || current.state == shared::queue::ItemState::WaitingForChecks =>
        {
            Some(words::required_checks_timed_out(repo.timeout, &never_started, &running))
        }
        _ => None,
    })
}

/// Waits for `repo.required_checks` on `candidate` (SPEC §5.7).
pub struct Waiter<'a> {
    pub gandalf: &'a Gandalf,
    pub github: &'a Github,
    pub repo: &'a RepoConfig,
    pub item: &'a Item,
    pub candidate: &'a CommitSha,
}

impl Waiter<'_> {
    /// Resolves when every required check has concluded (or one is red), or when `stopped()`
    /// says the verification stopped. A GitHub outage while polling is logged, never red: the
    /// deliveries, the next poll, or the repository's `timeout` decide.
    pub async fn wait(&self, stopped: &(dyn Fn() -> bool + Sync)) -> anyhow::Result<Verdict> {
        let required = &self.repo.required_checks;
        if required.is_empty() {
            return Ok(Verdict::Passed);
        }
        let name = &self.repo.name;
        let mut listener = shared::db::listen(&self.gandalf.pool, &["gandalf_ci"]).await?;
        let started = self.gandalf.clock.now();
        let mut last_poll: Option<DateTime<Utc>> = None;
        let mut poll_asked = false;
        let mut reported = false;
        loop {
            if stopped() {
                return Ok(Verdict::Stopped);
            }
            let now = self.gandalf.clock.now();
            if poll_asked || last_poll.is_none_or(|t| now - t >= POLL_EVERY) {
                self.poll().await;
                last_poll = Some(now);
                poll_asked = false;
            }
            let got = {
                let mut conn = self.gandalf.pool.acquire().await?;
                reports(&mut conn, name, self.candidate).await?
            };
            match evaluate(required, &got) {
                Evaluation::Passed => return Ok(Verdict::Passed),
                Evaluation::Red { name, conclusion, url } => {
                    let how = words::required_check_red(&name, &conclusion, url.as_deref());
                    return Ok(Verdict::Red(Red::at(Phase::Verification, how)));
                }
                Evaluation::Pending { never_started, .. } => {
                    if !reported && !never_started.is_empty() && now - started >= NEVER_STARTED_AFTER {
                        self.report_never_started(&never_started).await?;
                        reported = true;
                    }
                }
            }
            tokio::select! {
                n = shared::db::next_change(&mut listener) => {
                    match n? {
                        Some(n) => poll_asked |= n.payload() == format!("poll {name} {}", self.candidate),
                        // Reconnected: a notification may be lost; ask GitHub.
                        None => poll_asked = true,
                    }
                }
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Asks GitHub what CI reported on the candidate, and records it.
    async fn poll(&self) {
        metrics::counter!("gandalf_required_checks_polls_total").increment(1);
        match self.github.ci_reports(&self.repo.name, self.candidate).await {
            Ok(found) => {
                let Ok(mut conn) = self.gandalf.pool.acquire().await else {
                    return;
                };
                for r in found.iter().filter(|r| r.name != super::CHECK_NAME) {
                    if let Err(e) = record(&mut conn, &self.repo.name, self.candidate, r).await {
                        tracing::warn!(repo = %self.repo.name, error = %e, "could not record a CI report");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(repo = %self.repo.name, pr = %self.item.pr, error = %e, "could not read the candidate's checks; waiting for deliveries")
            }
        }
    }

    /// A required check has not started 10 minutes after the candidate was pushed: said on the PR
    /// and in `merges_channel`, once per candidate.
    async fn report_never_started(&self, names: &[String]) -> anyhow::Result<()> {
        let text = words::never_started(names, self.candidate);
        if let Some(channel) = &self.gandalf.config.merges_channel {
            let mut tx = self.gandalf.pool.begin().await?;
            let slack = words::never_started_announcement(&self.repo.name, self.item.pr, names, self.candidate);
            outbox::enqueue_from(
                &mut tx,
                Sender::Gandalf,
                channel.as_str(),
                &slack,
                self.gandalf.clock.now(),
            )
            .await?;
            tx.commit().await?;
        }
        if let Err(e) = self.github.comment(&self.repo.name, self.item.pr, &text).await {
            tracing::warn!(repo = %self.repo.name, pr = %self.item.pr, error = %e, "could not say a required check never started");
        }
        metrics::counter!("gandalf_required_checks_never_started_total").increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, status: &str, conclusion: Option<&str>) -> CiReport {
        CiReport {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_string),
            url: Some(format!("https://ci/{name}")),
        }
    }

    fn req(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn success_neutral_and_skipped_pass() {
        for c in ["success", "neutral", "skipped"] {
            assert_eq!(
                evaluate(&req(&["build"]), &[report("build", "completed", Some(c))]),
                Evaluation::Passed,
                "{c}"
            );
        }
        assert_eq!(evaluate(&[], &[]), Evaluation::Passed);
    }

    #[test]
    fn any_other_conclusion_is_red_with_its_name_and_link() {
        for c in ["failure", "timed_out", "cancelled", "action_required", "error", "stale"] {
            assert_eq!(
                evaluate(
                    &req(&["build", "unit"]),
                    &[
                        report("build", "completed", Some("success")),
                        report("unit", "completed", Some(c))
                    ]
                ),
                Evaluation::Red {
                    name: "unit".into(),
                    conclusion: c.into(),
                    url: Some("https://ci/unit".into())
                },
                "{c}"
            );
        }
    }

    #[test]
    fn red_wins_over_pending_and_unrequired_reports_are_ignored() {
        let got = evaluate(
            &req(&["build", "unit"]),
            &[
                report("unit", "completed", Some("failure")),
                report("lint", "completed", Some("failure")),
            ],
        );
        assert!(
            matches!(got, Evaluation::Red { ref name, .. } if name == "unit"),
            "{got:?}"
        );
        let got = evaluate(
            &req(&["build", "unit", "e2e"]),
            &[
                report("unit", "in_progress", None),
                report("e2e", "queued", None),
                report("lint", "completed", Some("failure")),
            ],
        );
        assert_eq!(
            got,
            Evaluation::Pending {
                never_started: req(&["build", "e2e"]),
                running: req(&["unit"])
            }
        );
    }
}
