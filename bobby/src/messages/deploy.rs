//! Deploys (SPEC §4.6): refusals, the plan of a dry run, the progress message that is edited as
//! steps finish, and the failing step's output in its thread.

use chrono::{DateTime, Utc};
use shared::control::view::span;
use shared::slack::Reply;
use shared::slack::mrkdwn::{code, date, escape, user};

use shared::ids::{EnvName, PrNumber};

use super::env;

/// Why a deploy does not start. Every variant names what to do instead.
#[derive(Debug)]
pub enum DeployRefusal {
    /// The same sentence as deploy-check's.
    Check(String),
    Deleted {
        env: EnvName,
    },
    Running(Box<crate::deploy::store::DeployRow>),
    NoSuchPull {
        number: PrNumber,
        repo: String,
    },
    NoSuchRef {
        reference: String,
        repo: String,
    },
    NoBase {
        base: String,
        repo: String,
    },
    OnlyWithoutMap {
        map: String,
        sha: String,
    },
    BadMap {
        rendered: String,
    },
    UnknownResource {
        name: String,
        suggestion: Option<String>,
        valid: Vec<String>,
    },
    /// A dry run whose change list could not be read from git (a real deploy ends `failed` instead).
    NoCopy {
        reason: String,
    },
}

/// A failed step, for the progress message and its thread.
#[derive(Clone, Debug)]
pub struct FailedStep {
    pub step: String,
    pub resource: Option<String>,
    pub how: String,
    pub tail: String,
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// A code block that nothing inside can close early.
fn block(s: &str) -> String {
    format!("```{}```", escape(&s.trim_end().replace("```", "'''")))
}

pub(super) fn deploy_name(reference: &str, sha: &str) -> String {
    let short = short(sha);
    if reference == short || reference == sha {
        code(&short)
    } else {
        format!("{} ({})", code(reference), code(&short))
    }
}

pub fn deploy_refused(r: &DeployRefusal) -> Reply {
    let text = match r {
        DeployRefusal::Check(why) => format!(":no_entry: {}", escape(why)),
        DeployRefusal::Deleted { env: name } => format!(
            ":no_entry: {} is deleted (Nightly); it is created again in the morning, or by `/bobby nightly run create {}` (admins).",
            env(name),
            escape(name.as_str())
        ),
        DeployRefusal::Running(d) => format!(
            ":hourglass_flowing_sand: {} is busy: {} is deploying {} there since {}. Wait for it, or `/bobby deploy cancel {}`.",
            env(&d.environment),
            user(&d.by_user),
            deploy_name(&d.reference, &d.sha),
            date(d.started_at),
            escape(d.environment.as_str())
        ),
        DeployRefusal::NoSuchPull { number, repo } => format!(
            ":warning: There is no pull request #{number} in {}. Say a branch, `#123` or a commit SHA.",
            code(repo)
        ),
        DeployRefusal::NoSuchRef { reference, repo } => format!(
            ":warning: {} is neither a branch nor a commit of {}. Say a branch, `#123` (a pull request) or a commit SHA.",
            code(&crate::command::clip(reference)),
            code(repo)
        ),
        DeployRefusal::NoBase { base, repo } => format!(
            ":warning: The base branch {} does not exist in {}, so I cannot tell what changed; fix `deploy.base`, or name what to deploy with `only`.",
            code(base),
            code(repo)
        ),
        DeployRefusal::OnlyWithoutMap { map, sha } => format!(
            ":warning: There is no resource map {} at {}, so `only` has nothing to choose from. Deploy without `only` to build and deploy everything.",
            code(map),
            code(&short(sha))
        ),
        DeployRefusal::BadMap { rendered } => format!(
            ":warning: The resource map does not parse, so I cannot plan the deploy:\n{}",
            block(rendered)
        ),
        DeployRefusal::UnknownResource {
            name,
            suggestion,
            valid,
        } => {
            let mut t = format!(
                ":warning: There is no resource {} in the map.",
                code(&crate::command::clip(name))
            );
            if let Some(s) = suggestion {
                t.push_str(&format!(" Did you mean {}?", code(s)));
            }
            t.push_str(&format!(
                "\nResources: {}",
                valid.iter().map(|v| code(v)).collect::<Vec<_>>().join(", ")
            ));
            t
        }
        DeployRefusal::NoCopy { reason } => format!(
            ":warning: I could not read what this ref changed from git, so I cannot plan the deploy (nothing was run): {}. Try again in a moment; if it persists, the Bobby logs have the details.",
            escape(reason)
        ),
    };
    Reply::ephemeral(text)
}

pub fn deploy_github_down() -> Reply {
    Reply::ephemeral(
        ":warning: GitHub did not answer, so nothing was started. Try again in a moment; the Bobby logs have the details.",
    )
}

pub fn deploy_unavailable(configured: bool) -> Reply {
    Reply::ephemeral(if configured {
        ":construction: Deploys run in the Bobby server, with GitHub credentials (`GITHUB_TOKEN` or the GitHub App): type `/bobby deploy` in Slack once it has them."
    } else {
        ":construction: Deploying is not set up on this Bobby: add a `[deploy]` section to its config (see the README)."
    })
}

pub fn deploy_plan_everything(map: &str) -> String {
    format!("No resource map {map} at this commit: build and deploy run once for the whole repository.")
}

pub fn deploy_dry_run(name: &EnvName, reference: &str, sha: &str, plan: &str) -> Reply {
    Reply::ephemeral(format!(
        ":clipboard: Dry run: deploying {} to {} would do this (nothing was run):\n{}",
        deploy_name(reference, sha),
        env(name),
        block(plan)
    ))
}

pub fn deploy_started(name: &EnvName, reference: &str, sha: &str, channel: &str) -> Reply {
    let where_ = if channel.parse::<shared::ids::SlackUserId>().is_ok() {
        "in your DMs".to_string()
    } else {
        format!("in <#{}>", escape(channel))
    };
    Reply::ephemeral(format!(
        ":rocket: Deploying {} to {}; progress {where_}. `/bobby deploy cancel {}` stops it.",
        deploy_name(reference, sha),
        env(name),
        escape(name.as_str())
    ))
}

pub fn deploy_nothing_to_cancel(name: &EnvName) -> Reply {
    Reply::ephemeral(format!(":information_source: No deploy is running on {}.", env(name)))
}

pub fn deploy_cancel_not_allowed(d: &crate::deploy::store::DeployRow) -> Reply {
    Reply::ephemeral(format!(
        ":no_entry: Only {} (who started it), the holder of {} or an admin can cancel this deploy.",
        user(&d.by_user),
        env(&d.environment)
    ))
}

pub fn deploy_cancelling(d: &crate::deploy::store::DeployRow) -> Reply {
    Reply::in_channel(format!(
        ":octagonal_sign: Cancelling the deploy of {} to {}: its running step is being stopped.",
        deploy_name(&d.reference, &d.sha),
        env(&d.environment)
    ))
}

pub fn deploy_failure_line(f: &FailedStep) -> String {
    match &f.resource {
        Some(r) => format!("{} {r} {}", f.step, f.how),
        None => format!("{} {}", f.step, f.how),
    }
}

pub fn deploy_shutdown_line() -> String {
    "Bobby was shutting down; deploy again to finish".to_string()
}

pub fn deploy_orphaned_line() -> String {
    "Bobby stopped while it was running; deploy again to finish".to_string()
}

pub fn deploy_failed_thread(f: &FailedStep, page: &str) -> Reply {
    let target = match &f.resource {
        Some(r) => format!("{} of {}", code(&f.step), code(r)),
        None => code(&f.step),
    };
    let mut text = format!(":x: {target} {}.", escape(&f.how));
    if f.tail.trim().is_empty() {
        text.push_str(" It printed nothing.");
    } else {
        text.push_str(&format!(" The last lines of its output:\n{}", block(&f.tail)));
    }
    text.push_str(&format!("\nWhole log: {}", escape(page)));
    Reply::in_channel(text)
}

/// Everything the progress message shows.
pub struct DeployProgress<'a> {
    pub row: &'a crate::deploy::store::DeployRow,
    pub steps: &'a [crate::deploy::store::StepRow],
    pub repo: &'a str,
    pub has_test: bool,
    pub page_url: String,
    pub now: DateTime<Utc>,
}

pub fn deploy_progress(p: &DeployProgress<'_>) -> Reply {
    use crate::deploy::store::{DeployState as S, EVERYTHING};
    let d = p.row;
    let what = deploy_name(&d.reference, &d.sha);
    let took = span(d.finished_at.unwrap_or(p.now) - d.started_at);
    let outcome = escape(d.outcome.as_deref().unwrap_or(""));
    let mut text = match d.state {
        S::Running => format!(
            ":rocket: {} is deploying {what} to {}",
            user(&d.by_user),
            env(&d.environment)
        ),
        S::Succeeded => format!(
            ":white_check_mark: {what} is deployed to {} ({} for {}, in {took})",
            env(&d.environment),
            escape(p.repo),
            user(&d.by_user)
        ),
        S::Failed => format!(
            ":x: Deploying {what} to {} failed: {outcome} (after {took}; its output is in the thread)",
            env(&d.environment)
        ),
        // The reason of a cancel is our own text, with a mention in it.
        S::Cancelled => format!(
            ":octagonal_sign: Deploying {what} to {} was cancelled: {}",
            env(&d.environment),
            d.outcome.as_deref().unwrap_or("cancelled")
        ),
        S::Interrupted => format!(
            ":warning: Deploying {what} to {} was interrupted: {outcome}",
            env(&d.environment)
        ),
    };
    let plan = &d.plan.0;
    if !plan.everything && plan.resources.is_empty() {
        text.push_str("\nNothing is affected by this change: nothing to build or deploy.");
    }
    // Each planned step with its latest state.
    let mut lines: Vec<String> = Vec::new();
    let mut line = |step: &str, resource: Option<&str>| {
        let run = p
            .steps
            .iter()
            .rev()
            .find(|s| s.step == step && s.resource.as_deref() == resource);
        let mark = match run.map(|r| r.state) {
            None => ":white_small_square:",
            Some(S::Running) => ":hourglass_flowing_sand:",
            Some(S::Succeeded) => ":white_check_mark:",
            Some(S::Failed) => ":x:",
            Some(S::Cancelled) | Some(S::Interrupted) => ":black_square_for_stop:",
        };
        let time = run
            .and_then(|r| r.finished_at.map(|f| format!(" {}", span(f - r.started_at))))
            .unwrap_or_default();
        let name = match resource {
            Some(r) => format!("{step} {}", code(r)),
            None => step.to_string(),
        };
        lines.push(format!("{mark} {name}{time}"));
    };
    for level in plan.build_levels() {
        for r in &level {
            line("build", (r != EVERYTHING).then_some(r.as_str()));
        }
    }
    for r in plan.deploys() {
        line("deploy", (r != EVERYTHING).then_some(r.as_str()));
    }
    if p.has_test {
        line("test", None);
    }
    if !lines.is_empty() {
        text.push('\n');
        text.push_str(&lines.join("\n"));
    }
    text.push_str(&format!("\nLogs: {}", escape(&p.page_url)));
    Reply::in_channel(text)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{at, name, snap_reply};
    use super::*;
    use crate::deploy::store::{DeployPlan, DeployRow, DeployState, EVERYTHING, StepRow};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn row(state: DeployState, outcome: Option<&str>) -> DeployRow {
        DeployRow {
            id: 31,
            environment: name("env-4"),
            state,
            reference: "fix-login".into(),
            sha: SHA.into(),
            by_user: "U0ALICE".into(),
            plan: sqlx::types::Json(DeployPlan {
                everything: false,
                resources: vec!["api".into(), "web".into()],
                levels: vec![vec!["api".into()], vec!["web".into()]],
                deploy: vec!["api".into(), "web".into()],
            }),
            channel: "C0DEV".into(),
            message_id: Some(7),
            cancel_reason: None,
            outcome: outcome.map(str::to_string),
            started_at: at(10, 0),
            finished_at: (state != DeployState::Running).then(|| at(10, 7)),
        }
    }

    fn step(id: i64, step: &str, resource: Option<&str>, state: DeployState, minutes: u32) -> StepRow {
        StepRow {
            id,
            step: step.into(),
            resource: resource.map(str::to_string),
            state,
            exit_code: None,
            log: String::new(),
            started_at: at(10, 0),
            finished_at: (state != DeployState::Running).then(|| at(10, minutes)),
        }
    }

    fn failed(resource: Option<&str>, tail: &str) -> FailedStep {
        FailedStep {
            step: "deploy".into(),
            resource: resource.map(str::to_string),
            how: "failed with exit status 1".into(),
            tail: tail.into(),
        }
    }

    #[test]
    fn refusals() {
        let repo = || "acme/platform".to_string();
        let cases: Vec<(&str, DeployRefusal)> = vec![
            (
                "refused_check",
                DeployRefusal::Check("env-4 is locked by U0BOB until 2026-01-05T18:00:00Z".into()),
            ),
            ("refused_deleted", DeployRefusal::Deleted { env: name("env-4") }),
            (
                "refused_running",
                DeployRefusal::Running(Box::new(row(DeployState::Running, None))),
            ),
            (
                "refused_no_such_pull",
                DeployRefusal::NoSuchPull {
                    number: PrNumber::new(812).unwrap(),
                    repo: repo(),
                },
            ),
            (
                "refused_no_such_ref",
                DeployRefusal::NoSuchRef {
                    reference: "fix-logn".into(),
                    repo: repo(),
                },
            ),
            (
                "refused_no_base",
                DeployRefusal::NoBase {
                    base: "mainn".into(),
                    repo: repo(),
                },
            ),
            (
                "refused_only_without_map",
                DeployRefusal::OnlyWithoutMap {
                    map: "resources.toml".into(),
                    sha: SHA.into(),
                },
            ),
            (
                "refused_bad_map",
                DeployRefusal::BadMap {
                    rendered: "resources.toml:3: `needs` names `wbe`, which is not a resource".into(),
                },
            ),
            (
                "refused_unknown_resource",
                DeployRefusal::UnknownResource {
                    name: "wbe".into(),
                    suggestion: Some("web".into()),
                    valid: vec!["api".into(), "web".into()],
                },
            ),
            (
                "refused_no_copy",
                DeployRefusal::NoCopy {
                    reason: "could not list the files abcdef1 changed in acme/platform: git fetch failed: fatal: unable to access 'https://github.com/acme/platform.git/': Could not resolve host: github.com".into(),
                },
            ),
        ];
        // One snapshot per variant; insta needs literal names, so they are checked by name here.
        let mut all = String::new();
        for (case, refusal) in &cases {
            all.push_str(&format!(
                "--- {case}\n{}\n",
                super::super::fixtures::show(&deploy_refused(refusal))
            ));
        }
        insta::assert_snapshot!("deploy_refused", all);
        snap_reply!("github_down", deploy_github_down());
        snap_reply!("unavailable_configured", deploy_unavailable(true));
        snap_reply!("unavailable_not_configured", deploy_unavailable(false));
        snap_reply!("nothing_to_cancel", deploy_nothing_to_cancel(&name("env-4")));
        snap_reply!(
            "cancel_not_allowed",
            deploy_cancel_not_allowed(&row(DeployState::Running, None))
        );
    }

    #[test]
    fn starting_and_cancelling() {
        insta::assert_snapshot!("plan_everything", deploy_plan_everything("resources.toml"));
        snap_reply!(
            "dry_run",
            deploy_dry_run(&name("env-4"), "#812", SHA, "build: api\nthen: web\ndeploy: api, web")
        );
        snap_reply!(
            "dry_run_by_sha",
            deploy_dry_run(&name("env-4"), "0123456", SHA, "everything")
        );
        snap_reply!(
            "started_in_channel",
            deploy_started(&name("env-4"), "fix-login", SHA, "C0DEV")
        );
        snap_reply!(
            "started_in_dm",
            deploy_started(&name("env-4"), "fix-login", SHA, "U0ALICE")
        );
        snap_reply!("cancelling", deploy_cancelling(&row(DeployState::Running, None)));
    }

    #[test]
    fn failures() {
        insta::assert_snapshot!("failure_line_resource", deploy_failure_line(&failed(Some("web"), "")));
        insta::assert_snapshot!("failure_line_everything", deploy_failure_line(&failed(None, "")));
        insta::assert_snapshot!("shutdown_line", deploy_shutdown_line());
        insta::assert_snapshot!("orphaned_line", deploy_orphaned_line());
        let page = "https://bobby.example.com/deploys/31";
        snap_reply!(
            "failed_thread",
            deploy_failed_thread(
                &failed(Some("web"), "npm ERR! missing script: deploy\n```oops```\n"),
                page
            )
        );
        snap_reply!(
            "failed_thread_silent",
            deploy_failed_thread(&failed(None, "  \n"), page)
        );
    }

    #[test]
    fn progress() {
        let progress = |row: &DeployRow, steps: &[StepRow], has_test: bool| {
            deploy_progress(&DeployProgress {
                row,
                steps,
                repo: "acme/platform",
                has_test,
                page_url: "https://bobby.example.com/deploys/31".into(),
                now: at(10, 3),
            })
        };
        let running = row(DeployState::Running, None);
        let steps = vec![
            step(1, "build", Some("api"), DeployState::Succeeded, 2),
            step(2, "build", Some("web"), DeployState::Running, 0),
        ];
        snap_reply!("progress_running", progress(&running, &steps, true));
        let done = row(DeployState::Succeeded, Some("deployed"));
        let steps = vec![
            step(1, "build", Some("api"), DeployState::Succeeded, 2),
            step(2, "build", Some("web"), DeployState::Succeeded, 3),
            step(3, "deploy", Some("api"), DeployState::Succeeded, 5),
            step(4, "deploy", Some("web"), DeployState::Succeeded, 6),
            step(5, "test", None, DeployState::Succeeded, 7),
        ];
        snap_reply!("progress_succeeded", progress(&done, &steps, true));
        let failed_row = row(DeployState::Failed, Some("deploy web failed with exit status 1"));
        let steps = vec![
            step(1, "build", Some("api"), DeployState::Succeeded, 2),
            step(2, "build", Some("web"), DeployState::Succeeded, 3),
            step(3, "deploy", Some("api"), DeployState::Succeeded, 5),
            step(4, "deploy", Some("web"), DeployState::Failed, 6),
        ];
        snap_reply!("progress_failed", progress(&failed_row, &steps, false));
        let cancelled = row(DeployState::Cancelled, Some("cancelled by <@U0BOB>"));
        let steps = vec![step(1, "build", Some("api"), DeployState::Cancelled, 1)];
        snap_reply!("progress_cancelled", progress(&cancelled, &steps, false));
        let mut interrupted = row(DeployState::Interrupted, Some("Bobby stopped while it was running"));
        interrupted.plan = sqlx::types::Json(DeployPlan {
            everything: true,
            ..DeployPlan::default()
        });
        let steps = vec![step(1, "build", Some(EVERYTHING), DeployState::Interrupted, 1)];
        snap_reply!("progress_interrupted_everything", progress(&interrupted, &steps, false));
        let mut nothing = row(DeployState::Succeeded, Some("deployed"));
        nothing.plan = sqlx::types::Json(DeployPlan::default());
        snap_reply!("progress_nothing_affected", progress(&nothing, &[], false));
    }
}
