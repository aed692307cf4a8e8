//! The fake GitHub's checks and commit statuses (docs.github.com, "REST API endpoints for check
//! runs" and "… for commit statuses"), as strict as GitHub where Gandalf could go wrong:
//!
//! - `POST …/check-runs` and `PATCH …/check-runs/{id}` need an App: a personal token gets 403
//!   "Resource not accessible by personal access token" ([`FakeGithub::act_as_app`] switches
//!   the test token to an installation token). `name` and `head_sha` (a commit of the repository:
//!   422 "No commit found for SHA: …" otherwise) are required; `status` is `queued`,
//!   `in_progress` or `completed`; a `conclusion` (one of GitHub's eight) completes the run, and
//!   a `completed` run without one is a 422; `output` needs `title` and `summary`, each at most
//!   65535 characters; `details_url` must be an http(s) URL.
//! - `POST …/statuses/{sha}`: `state` is `error`, `failure`, `pending` or `success`; the
//!   `description` at most 140 characters; `context` defaults to `default`; GitHub keeps every
//!   status and reports the latest per context.
//! - `GET …/commits/{ref}/check-runs` (the latest run of each name, paginated) and
//!   `GET …/commits/{ref}/status` (the combined status: the latest per context).
//!
//! The repository's CI is played by tests: [`FakeGithub::ci_check_run`] and
//! [`FakeGithub::ci_status`] report on a commit as a CI App would and return the webhook delivery
//! GitHub would send (`check_run`, `status`), for the test to deliver — or to lose.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{Fail, NamePath, Paging, RepoPath, paginate_json, repo_of, validation_failed};
use super::{FakeGithub, RepoState, error};

/// GitHub's conclusions of a check run.
const CONCLUSIONS: [&str; 8] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

const OUTPUT_LIMIT: usize = 65_535;
const DESCRIPTION_LIMIT: usize = 140;

/// One check run as GitHub keeps it, with every status it went through (for assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    /// `status` or `status/conclusion`, after each write, in order.
    pub history: Vec<String>,
    /// Created through the API by the bot (false: by the test's CI).
    pub by_api: bool,
}

/// One commit status, in the order they were set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

#[derive(Default)]
pub(super) struct Checks {
    pub runs: Vec<CheckRun>,
    pub statuses: Vec<CommitStatus>,
}

fn forbidden_for_personal_tokens() -> Fail {
    Fail::new(error(
        StatusCode::FORBIDDEN,
        "Resource not accessible by personal access token",
    ))
}

fn run_json(base: &str, r: &CheckRun) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "head_sha": r.head_sha,
        "status": r.status,
        "conclusion": r.conclusion,
        "details_url": r.details_url,
        "external_id": r.external_id,
        "html_url": format!("{base}/runs/{}", r.id),
        "url": format!("{base}/check-runs/{}", r.id),
        "output": { "title": r.title, "summary": r.summary },
    })
}

/// Applies a check run body to `run`, validating it as GitHub does.
fn apply(run: &mut CheckRun, body: &Value) -> Result<(), Fail> {
    if let Some(name) = body.get("name") {
        match name.as_str() {
            Some(n) if !n.is_empty() => run.name = n.to_string(),
            _ => return Err(validation_failed("CheckRun", "name", "invalid")),
        }
    }
    if let Some(url) = body.get("details_url") {
        match url.as_str() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => run.details_url = Some(u.into()),
            _ => return Err(validation_failed("CheckRun", "details_url", "invalid")),
        }
    }
    if let Some(id) = body.get("external_id") {
        run.external_id = Some(
            id.as_str()
                .ok_or_else(|| validation_failed("CheckRun", "external_id", "invalid"))?
                .to_string(),
        );
    }
    if let Some(output) = body.get("output") {
        let field = |f: &str| output.get(f).and_then(Value::as_str);
        let (Some(title), Some(summary)) = (field("title"), field("summary")) else {
            return Err(validation_failed("CheckRun", "output", "missing_field"));
        };
        if title.chars().count() > OUTPUT_LIMIT || summary.chars().count() > OUTPUT_LIMIT {
            return Err(Fail::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied.",
            )));
        }
        run.title = Some(title.into());
        run.summary = Some(summary.into());
    }
    let status = body.get("status").map(|s| s.as_str().unwrap_or_default().to_string());
    let conclusion = body.get("conclusion").and_then(Value::as_str).map(str::to_string);
    if let Some(s) = &status
        && !["queued", "in_progress", "completed"].contains(&s.as_str())
    {
        return Err(validation_failed("CheckRun", "status", "invalid"));
    }
    if let Some(c) = &conclusion
        && !CONCLUSIONS.contains(&c.as_str())
    {
        return Err(validation_failed("CheckRun", "conclusion", "invalid"));
    }
    match (status.as_deref(), conclusion) {
        // A conclusion completes the run, whatever the status said.
        (_, Some(c)) => {
            run.status = "completed".into();
            run.conclusion = Some(c);
        }
        (Some("completed"), None) => {
            return Err(Fail::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\nNo conclusion given for completed check run.",
            )));
        }
        (Some(s), None) => {
            run.status = s.to_string();
            run.conclusion = None;
        }
        (None, None) => {}
    }
    run.history.push(match &run.conclusion {
        Some(c) => format!("{}/{c}", run.status),
        None => run.status.clone(),
    });
    Ok(())
}

fn base_url(fake: &FakeGithub, o: &str, r: &str) -> String {
    format!("{}/repos/{o}/{r}", fake.api_url())
}

/// `POST …/check-runs`.
pub async fn create_check_run(
    State(fake): State<FakeGithub>,
    Path((o, r)): Path<RepoPath>,
    Json(body): Json<Value>,
) -> Response {
    let base = base_url(&fake, &o, &r);
    fake.serve(move |i| {
        if !i.token_is_app {
            return Err(forbidden_for_personal_tokens());
        }
        i.next_check_run_id += 1;
        let id = i.next_check_run_id;
        let repo = repo_of(i, &o, &r)?;
        let Some(head) = body.get("head_sha").and_then(Value::as_str) else {
            return Err(validation_failed("CheckRun", "head_sha", "missing_field"));
        };
        let head = full_sha(repo, head)?;
        if body.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(validation_failed("CheckRun", "name", "missing_field"));
        }
        let mut run = CheckRun {
            id,
            name: String::new(),
            head_sha: head,
            status: "queued".into(),
            conclusion: None,
            details_url: None,
            external_id: None,
            title: None,
            summary: None,
            history: vec![],
            by_api: true,
        };
        apply(&mut run, &body)?;
        let v = run_json(&base, &run);
        repo.checks.runs.push(run);
        Ok((StatusCode::CREATED, Json(v)).into_response())
    })
    .await
}

/// `PATCH …/check-runs/{id}`.
pub async fn update_check_run(
    State(fake): State<FakeGithub>,
    Path((o, r, id)): Path<NamePath>,
    Json(body): Json<Value>,
) -> Response {
    let base = base_url(&fake, &o, &r);
    fake.serve(move |i| {
        if !i.token_is_app {
            return Err(forbidden_for_personal_tokens());
        }
        let repo = repo_of(i, &o, &r)?;
        let id: u64 = id
            .parse()
            .map_err(|_| Fail::new(error(StatusCode::NOT_FOUND, "Not Found")))?;
        let Some(run) = repo.checks.runs.iter_mut().find(|c| c.id == id) else {
            return Err(Fail::new(error(StatusCode::NOT_FOUND, "Not Found")));
        };
        // `head_sha` is not a field of the update: a run never moves to another commit.
        apply(run, &body)?;
        Ok(Json(run_json(&base, run)).into_response())
    })
    .await
}

/// `POST …/statuses/{sha}`.
pub async fn create_status(
    State(fake): State<FakeGithub>,
    Path((o, r, sha)): Path<NamePath>,
    Json(body): Json<Value>,
) -> Response {
    fake.serve(move |i| {
        let repo = repo_of(i, &o, &r)?;
        let sha = full_sha(repo, &sha)?;
        let state = body.get("state").and_then(Value::as_str).unwrap_or_default();
        if !["error", "failure", "pending", "success"].contains(&state) {
            return Err(validation_failed("Status", "state", "custom"));
        }
        let description = body.get("description").and_then(Value::as_str).map(str::to_string);
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > DESCRIPTION_LIMIT)
        {
            return Err(validation_failed("Status", "description", "custom"));
        }
        let status = CommitStatus {
            sha,
            context: body
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
            state: state.into(),
            description,
            target_url: body.get("target_url").and_then(Value::as_str).map(str::to_string),
        };
        let v = status_json(&status);
        repo.checks.statuses.push(status);
        Ok((StatusCode::CREATED, Json(v)).into_response())
    })
    .await
}

fn status_json(s: &CommitStatus) -> Value {
    json!({
        "state": s.state,
        "context": s.context,
        "description": s.description,
        "target_url": s.target_url,
    })
}

/// A commit the repository has, named by a branch or SHA; 422 otherwise, as GitHub answers.
fn full_sha(repo: &RepoState, reference: &str) -> Result<String, Fail> {
    match repo.resolve(reference) {
        Ok(Some(sha)) => Ok(sha),
        _ => Err(Fail::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("No commit found for SHA: {reference}"),
        ))),
    }
}

/// The last-created item of each `key` (a check run's name, a status's context), newest first:
/// what GitHub reports for a commit.
fn latest_of_each<'a, T, K: PartialEq + ?Sized>(
    items: impl DoubleEndedIterator<Item = &'a T>,
    key: impl Fn(&T) -> &K,
) -> Vec<&'a T> {
    let mut latest: Vec<&T> = vec![];
    for item in items.rev() {
        if !latest.iter().any(|l| key(l) == key(item)) {
            latest.push(item);
        }
    }
    latest
}

/// `GET …/commits/{ref}/check-runs`: the latest run of each name (`filter=latest`).
pub async fn list_check_runs(
    State(fake): State<FakeGithub>,
    Path((o, r, reference)): Path<NamePath>,
    Query(paging): Query<Paging>,
) -> Response {
    let base = base_url(&fake, &o, &r);
    let url = format!("{base}/commits/{reference}/check-runs");
    fake.serve(move |i| {
        let repo = repo_of(i, &o, &r)?;
        let sha = full_sha(repo, &reference)?;
        let latest = latest_of_each(repo.checks.runs.iter().filter(|c| c.head_sha == sha), |c| &c.name);
        let all: Vec<Value> = latest.iter().map(|c| run_json(&base, c)).collect();
        let (page, link) = paginate_json(&all, &paging, 30, &url);
        Ok(super::api::with_link(
            Json(json!({ "total_count": all.len(), "check_runs": page })).into_response(),
            link,
        ))
    })
    .await
}

/// `GET …/commits/{ref}/status`: the combined status, the latest of each context.
pub async fn combined_status(
    State(fake): State<FakeGithub>,
    Path((o, r, reference)): Path<NamePath>,
    Query(paging): Query<Paging>,
) -> Response {
    let url = format!("{}/commits/{reference}/status", base_url(&fake, &o, &r));
    fake.serve(move |i| {
        let repo = repo_of(i, &o, &r)?;
        let sha = full_sha(repo, &reference)?;
        let latest = latest_of_each(repo.checks.statuses.iter().filter(|s| s.sha == sha), |s| &s.context);
        let state = if latest.iter().any(|s| s.state == "failure" || s.state == "error") {
            "failure"
        } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
            "pending"
        } else {
            "success"
        };
        let all: Vec<Value> = latest.iter().map(|s| status_json(s)).collect();
        let (page, link) = paginate_json(&all, &paging, 30, &url);
        Ok(super::api::with_link(
            Json(json!({ "state": state, "sha": sha, "total_count": all.len(), "statuses": page })).into_response(),
            link,
        ))
    })
    .await
}

impl FakeGithub {
    /// From now on the test token is an App's installation token: it may create check runs.
    pub fn act_as_app(&self) {
        self.with(|i| i.token_is_app = true);
    }

    /// The repository's CI reports check run `name` on `sha` (created on first report): returns
    /// the `check_run` delivery GitHub sends (`action` `created` or `completed`).
    pub fn ci_check_run(&self, repo: &str, sha: &str, name: &str, status: &str, conclusion: Option<&str>) -> Value {
        let base = format!("{}/repos/{repo}", self.api_url());
        self.with(|i| {
            i.next_check_run_id += 1;
            let id = i.next_check_run_id;
            let state = i.repo_mut(repo);
            let existing = state
                .checks
                .runs
                .iter()
                .position(|c| c.head_sha == sha && c.name == name && !c.by_api);
            let at = match existing {
                Some(at) => at,
                None => {
                    state.checks.runs.push(CheckRun {
                        id,
                        name: name.into(),
                        head_sha: sha.into(),
                        status: "queued".into(),
                        conclusion: None,
                        details_url: Some(format!("https://ci.example/{name}/{id}")),
                        external_id: None,
                        title: None,
                        summary: None,
                        history: vec![],
                        by_api: false,
                    });
                    state.checks.runs.len() - 1
                }
            };
            let run = &mut state.checks.runs[at];
            let mut body = json!({ "status": status });
            if let Some(c) = conclusion {
                body["conclusion"] = json!(c);
            }
            if apply(run, &body).is_err() {
                panic!("a test reported an impossible check run: {status} {conclusion:?}");
            }
            let action = if run.status == "completed" {
                "completed"
            } else if existing.is_none() {
                "created"
            } else {
                "rerequested"
            };
            json!({
                "action": action,
                "check_run": run_json(&base, run),
                "repository": { "full_name": repo },
            })
        })
    }

    /// The repository's CI sets a commit status on `sha`: returns the `status` delivery.
    pub fn ci_status(&self, repo: &str, sha: &str, context: &str, state: &str, target_url: Option<&str>) -> Value {
        self.with(|i| {
            let status = CommitStatus {
                sha: sha.into(),
                context: context.into(),
                state: state.into(),
                description: None,
                target_url: target_url.map(str::to_string),
            };
            let mut v = status_json(&status);
            i.repo_mut(repo).checks.statuses.push(status);
            v["sha"] = json!(sha);
            v["repository"] = json!({ "full_name": repo });
            v
        })
    }

    /// The `check_suite` delivery GitHub sends when the suites on `sha` complete.
    pub fn check_suite_completed(&self, repo: &str, sha: &str) -> Value {
        json!({
            "action": "completed",
            "check_suite": { "head_sha": sha, "status": "completed" },
            "repository": { "full_name": repo },
        })
    }

    /// Every check run named `name` on `sha`, oldest first.
    pub fn check_runs(&self, repo: &str, sha: &str, name: &str) -> Vec<CheckRun> {
        self.with(|i| {
            i.repo(repo)
                .checks
                .runs
                .iter()
                .filter(|c| c.head_sha == sha && c.name == name)
                .cloned()
                .collect()
        })
    }

    /// Every commit status with `context` on `sha`, in the order they were set.
    pub fn statuses(&self, repo: &str, sha: &str, context: &str) -> Vec<CommitStatus> {
        self.with(|i| {
            i.repo(repo)
                .checks
                .statuses
                .iter()
                .filter(|s| s.sha == sha && s.context == context)
                .cloned()
                .collect()
        })
    }
}
