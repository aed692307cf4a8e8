//! GitHub's REST API as the bots use it (SPEC §5.4), through octocrab, with domain-named methods
//! and our own retry policy.
//!
//! Every call is one of the table in §5.4. Requests use paths relative to `GITHUB_API_URL`, so
//! octocrab attaches credentials (it only does so for relative URIs or api.github.com, which would
//! otherwise strip them on GitHub Enterprise). Responses are read into structs of our own: octocrab's
//! typed models reject some of GitHub's real answers (the collaborator permission, for one).
//!
//! Retries (the decision lives in [`retry`], as pure functions): reads are retried with short,
//! jittered backoff on 5xx and network errors, and wait out rate limits as GitHub asks
//! (`Retry-After`, or `X-RateLimit-Reset` when `X-RateLimit-Remaining` is 0 — never on a 502,
//! which carries a Reset too). Writes are never repeated blindly: a failed write returns
//! [`GithubError::Unavailable`] and the caller re-reads state before deciding to try again.
//! A rate-limit answer also closes a gate shared by every clone of the client, so the calls that
//! follow wait (or fail fast) instead of hammering GitHub until the window ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::settings::GithubApp;

pub mod retry;

pub use retry::RetryPolicy;
use retry::{Decision, Kind, Trouble};

pub use crate::ids::{CommitSha, PrNumber, RepoName};

/// The most files GitHub lists for one comparison (`GET …/compare/{base}...{head}`).
pub const COMPARE_FILE_LIMIT: usize = 300;

/// The files a comparison lists, and whether the list is known to be whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFiles {
    pub paths: Vec<String>,
    /// `false` when GitHub listed as many files as it ever does: there may be more.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub said no for a reason that will not change by asking again (404, 422, 409…).
    #[error("GitHub answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// GitHub is down, slow or rate-limiting us; retried reads ran out, or a write failed and
    /// must be re-checked before it is repeated.
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected answer from GitHub: {0}")]
    Protocol(String),
    #[error("GitHub client setup failed: {0}")]
    Setup(String),
}

impl GithubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// GitHub's answer to a token that may not create check runs (a personal token: 403
    /// "Resource not accessible by personal access token"; an App without `checks: write`: 403
    /// "Resource not accessible by integration"). Commit statuses then carry the check (§5.7).
    pub fn is_checks_forbidden(&self) -> bool {
        matches!(self, GithubError::Refused { status: 403, message } if message.contains("Resource not accessible"))
    }
}

/// GitHub's limit on a commit status's `description`.
pub const STATUS_DESCRIPTION_LIMIT: usize = 140;

/// GitHub's limit on a check run's `output.summary` and `output.text`.
pub const CHECK_OUTPUT_LIMIT: usize = 65_535;

/// `s` cut to at most `max` characters, ending with `…` when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One check run or commit status on a commit, as the repository's CI reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiReport {
    /// The check run's name or the status's context.
    pub name: String,
    /// `queued`, `in_progress` or `completed` (a `pending` status is `in_progress`; check runs'
    /// `waiting`, `requested` and `pending` are `queued`).
    pub status: String,
    /// When completed: the check run's conclusion, or the status's `success`/`failure`/`error`.
    pub conclusion: Option<String>,
    pub url: Option<String>,
}

impl CiReport {
    /// From a check run as GitHub sends it (API answers and `check_run` deliveries).
    pub fn from_check_run(v: &Value) -> Option<CiReport> {
        let name = v.get("name")?.as_str()?.to_string();
        let status = match v.get("status")?.as_str()? {
            "completed" => "completed",
            "in_progress" => "in_progress",
            _ => "queued",
        };
        let conclusion = v.get("conclusion").and_then(Value::as_str).map(str::to_string);
        if status == "completed" && conclusion.is_none() {
            return None;
        }
        let url = ["html_url", "details_url"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        Some(CiReport {
            name,
            status: status.into(),
            conclusion: (status == "completed").then_some(conclusion).flatten(),
            url,
        })
    }

    /// From a commit status (API answers and `status` deliveries, whose context is `context`).
    pub fn from_status(v: &Value) -> Option<CiReport> {
        let name = v.get("context")?.as_str()?.to_string();
        let state = v.get("state")?.as_str()?;
        let (status, conclusion) = match state {
            "pending" => ("in_progress", None),
            "success" | "failure" | "error" => ("completed", Some(state.to_string())),
            _ => return None,
        };
        Some(CiReport {
            name,
            status: status.into(),
            conclusion,
            url: v.get("target_url").and_then(Value::as_str).map(str::to_string),
        })
    }
}

pub type GhResult<T> = Result<T, GithubError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: PrNumber,
    pub title: String,
    /// The author's GitHub login.
    pub author: String,
    pub state: PullState,
    pub draft: bool,
    pub merged: bool,
    pub head_sha: CommitSha,
    /// The head branch's name (for the candidate's merge message).
    pub head_ref: String,
    pub base_ref: String,
    /// The description, empty when there is none.
    pub body: String,
}

/// A commit as git keeps it: its tree (an object id, written like a commit's) and parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCommit {
    pub sha: CommitSha,
    pub tree: CommitSha,
    pub parents: Vec<CommitSha>,
}

impl PullRequest {
    pub fn is_open(&self) -> bool {
        self.state == PullState::Open
    }
}

/// A pull request's `state` as GitHub says it (a merged one is `closed` with `merged` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub login: String,
    pub state: ReviewState,
    pub commit_id: Option<CommitSha>,
}

/// A review's `state`. Only the last approving, rejecting or dismissed review of each reviewer
/// counts; comments and pending reviews do not change an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Dismissed,
    Commented,
    Pending,
    /// A state GitHub may add later: it counts as a comment.
    #[serde(other)]
    Other,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Approved => "APPROVED",
            ReviewState::ChangesRequested => "CHANGES_REQUESTED",
            ReviewState::Dismissed => "DISMISSED",
            ReviewState::Commented => "COMMENTED",
            ReviewState::Pending => "PENDING",
            ReviewState::Other => "OTHER",
        }
    }

    /// Whether this review replaces the reviewer's earlier verdict (approve, reject, dismiss).
    pub fn is_verdict(self) -> bool {
        matches!(
            self,
            ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Dismissed
        )
    }
}

/// A collaborator's permission on a repository, as GitHub's `permission` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    fn parse(s: &str) -> Permission {
        match s {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" => Permission::Write,
            "triage" => Permission::Triage,
            "read" => Permission::Read,
            _ => Permission::None,
        }
    }

    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }
}

/// The outcome of `POST /repos/{o}/{r}/merges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    Merged(CommitSha),
    Conflict,
    /// The head is already contained in the base.
    NothingToMerge,
}

/// How the bots authenticate.
#[derive(Clone)]
pub enum Auth {
    Token(SecretString),
    App(GithubApp),
}

#[derive(Clone)]
pub struct Github {
    octo: Octocrab,
    /// The personal token, when that is how we authenticate (git needs it too); an App's
    /// installation token is asked of `octo`, which caches and renews it.
    token: Option<SecretString>,
    retry: RetryPolicy,
    /// Until when GitHub asked us (a rate limit) not to send anything; shared by the clones.
    hold: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Github {
    /// Connects with whatever credentials the environment has (`GITHUB_TOKEN`, else the GitHub
    /// App); `None` without any.
    pub async fn from_secrets(secrets: &crate::settings::Secrets) -> GhResult<Option<Github>> {
        let auth = match (&secrets.github_token, &secrets.github_app) {
            (Some(token), _) => Auth::Token(token.clone()),
            (None, Some(app)) => Auth::App(app.clone()),
            (None, None) => return Ok(None),
        };
        Github::new(&secrets.github_api_url, auth, RetryPolicy::default())
            .await
            .map(Some)
    }

    pub async fn new(api_url: &str, auth: Auth, retry: RetryPolicy) -> GhResult<Github> {
        let builder = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| GithubError::Setup(format!("GITHUB_API_URL: {e}")))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            // GitHub ends its own requests after 10 s; a read that hangs longer is a network fault
            // to retry, not something to wait a minute for.
            .set_read_timeout(Some(Duration::from_secs(30)));
        let personal = match &auth {
            Auth::Token(token) => Some(token.clone()),
            Auth::App(_) => None,
        };
        let octo = match auth {
            Auth::Token(token) => builder
                .personal_token(token.expose_secret().to_string())
                .build()
                .map_err(|e| GithubError::Setup(e.to_string()))?,
            Auth::App(app) => {
                let key = octocrab::EncodingKey::from_rsa_pem(app.private_key.expose_secret().as_bytes())
                    .map_err(|e| GithubError::Setup(format!("GITHUB_APP_PRIVATE_KEY_FILE: {e}")))?;
                let octo = builder
                    .app(app.app_id.into(), key)
                    .build()
                    .map_err(|e| GithubError::Setup(e.to_string()))?;
                octo.installation(app.installation_id.into())
                    .map_err(|e| GithubError::Setup(e.to_string()))?
            }
        };
        Ok(Github {
            octo,
            token: personal,
            retry,
            hold: Arc::new(Mutex::new(None)),
        })
    }

    /// Sends one request: the answer, or what went wrong sorted for the retry decision. A
    /// rate-limit answer (or a success with nothing left of the window) closes the gate.
    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value), Trouble> {
        let response = match method {
            "GET" => self.octo._get(path).await,
            "POST" => self.octo._post(path, body).await,
            "PATCH" => self.octo._patch(path, body).await,
            "PUT" => self.octo._put(path, body).await,
            _ => unreachable!("only the methods above are used"),
        };
        let response = response.map_err(|e| Trouble::Transient(describe_octocrab(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = self
            .octo
            .body_to_string(response)
            .await
            .map_err(|e| Trouble::Transient(describe_octocrab(&e)))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let now = unix_now();
        if status.is_success() {
            if let Some(wait) = retry::exhausted_until(&headers, now) {
                tracing::warn!(
                    path,
                    wait_secs = wait.as_secs(),
                    "GitHub rate limit used up (X-RateLimit-Remaining: 0): holding requests until X-RateLimit-Reset"
                );
                self.hold_for(wait);
            }
            return Ok((status, value));
        }
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        let trouble = retry::classify(status.as_u16(), &headers, message, now);
        if let Trouble::RateLimited { wait, basis, why } = &trouble {
            tracing::warn!(
                method,
                path,
                error = %why,
                wait_secs = wait.as_secs(),
                basis = basis.as_str(),
                "GitHub rate limit: holding requests"
            );
            self.hold_for(*wait);
        }
        Err(trouble)
    }

    /// Keeps every request of this client (and its clones) from GitHub for `wait`.
    fn hold_for(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    /// Waits out a rate limit GitHub announced earlier, or fails at once when it lasts longer than
    /// a call may wait ([`retry::MAX_RATE_LIMIT_WAIT`]): sending anyway would only earn another 403
    /// (and GitHub may ban integrations that keep trying).
    async fn pass_gate(&self, method: &str, path: &str) -> GhResult<()> {
        let until = *self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let Some(until) = until else { return Ok(()) };
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if left > retry::MAX_RATE_LIMIT_WAIT {
            return Err(GithubError::Unavailable(format!(
                "GitHub rate limit: no requests for another {}s",
                left.as_secs()
            )));
        }
        tracing::info!(method, path, wait = ?left, "GitHub request held until the rate limit passes");
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    /// A read, retried as [`retry::decide`] says.
    async fn read(&self, path: &str) -> GhResult<(StatusCode, Value)> {
        self.call(Kind::Read, "GET", path, None).await
    }

    /// A write, sent once. A transient failure is reported as `Unavailable`: the caller re-reads
    /// state before deciding whether to send it again.
    async fn write(&self, method: &str, path: &str, body: Value) -> GhResult<(StatusCode, Value)> {
        self.call(Kind::Write, method, path, Some(&body)).await
    }

    async fn call(&self, kind: Kind, method: &str, path: &str, body: Option<&Value>) -> GhResult<(StatusCode, Value)> {
        // Transient failures and rate-limit waits are counted apart: waiting out a limit GitHub
        // announced does not use up the tries a 502 gets.
        let (mut transient, mut waited) = (0u32, 0u32);
        loop {
            self.pass_gate(method, path).await?;
            let trouble = match self.send(method, path, body).await {
                Ok(ok) => return Ok(ok),
                Err(t) => t,
            };
            let rate_limited = matches!(trouble, Trouble::RateLimited { .. });
            if !rate_limited {
                transient += 1;
            }
            match retry::decide(&self.retry, kind, transient, waited, &trouble, rand::random::<f64>()) {
                Decision::Retry(wait) => {
                    if rate_limited {
                        waited += 1;
                    }
                    tracing::warn!(
                        method,
                        path,
                        try_number = transient + waited,
                        error = %trouble.describe(),
                        retry_in = ?wait,
                        "GitHub call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp(why) => {
                    tracing::warn!(method, path, error = %why, "GitHub call failed; giving up");
                    return Err(GithubError::Unavailable(why));
                }
                Decision::Refuse => {
                    return Err(match trouble {
                        Trouble::Refused { status, message } => GithubError::Refused { status, message },
                        other => GithubError::Unavailable(other.describe()),
                    });
                }
            }
        }
    }

    fn parse<T: DeserializeOwned>(value: Value, what: &str) -> GhResult<T> {
        serde_json::from_value(value).map_err(|e| GithubError::Protocol(format!("{what}: {e}")))
    }

    pub async fn pull(&self, repo: &RepoName, number: PrNumber) -> GhResult<PullRequest> {
        let (_, v) = self.read(&format!("/repos/{repo}/pulls/{number}")).await?;
        pull_from(Self::parse::<RawPull>(v, "pull request")?)
    }

    pub async fn open_pulls(&self, repo: &RepoName) -> GhResult<Vec<PullRequest>> {
        let mut out = vec![];
        for page in 1..=50 {
            let (_, v) = self
                .read(&format!("/repos/{repo}/pulls?state=open&per_page=100&page={page}"))
                .await?;
            let pulls: Vec<RawPull> = Self::parse(v, "open pull requests")?;
            let n = pulls.len();
            for p in pulls {
                out.push(pull_from(p)?);
            }
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn reviews(&self, repo: &RepoName, number: PrNumber) -> GhResult<Vec<Review>> {
        let mut out = vec![];
        for page in 1..=20 {
            let (_, v) = self
                .read(&format!(
                    "/repos/{repo}/pulls/{number}/reviews?per_page=100&page={page}"
                ))
                .await?;
            let reviews: Vec<RawReview> = Self::parse(v, "reviews")?;
            let n = reviews.len();
            out.extend(reviews.into_iter().map(|r| Review {
                login: r.user.map(|u| u.login).unwrap_or_default(),
                state: r.state,
                commit_id: r.commit_id,
            }));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// The requester's permission; GitHub answers 404 for people who are not collaborators.
    pub async fn permission(&self, repo: &RepoName, login: &str) -> GhResult<Permission> {
        match self
            .read(&format!("/repos/{repo}/collaborators/{}/permission", path_part(login)))
            .await
        {
            Ok((_, v)) => Ok(Permission::parse(
                v.get("permission").and_then(Value::as_str).unwrap_or(""),
            )),
            Err(GithubError::Refused { status: 404, .. }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    /// The tip of a branch, or `None` when it does not exist.
    pub async fn branch_tip(&self, repo: &RepoName, branch: &str) -> GhResult<Option<CommitSha>> {
        match self
            .read(&format!("/repos/{repo}/git/ref/heads/{}", path_part(branch)))
            .await
        {
            Ok((_, v)) => Ok(Some(sha_at(&v, "/object/sha", "ref without sha")?)),
            Err(GithubError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The full SHA of a commit named by a SHA (full or abbreviated) or any ref GitHub resolves,
    /// or `None` when there is no such commit.
    pub async fn commit_sha(&self, repo: &RepoName, reference: &str) -> GhResult<Option<CommitSha>> {
        match self
            .read(&format!("/repos/{repo}/commits/{}", path_part(reference)))
            .await
        {
            Ok((_, v)) => Ok(Some(sha_at(&v, "/sha", "commit without sha")?)),
            // GitHub answers 422 for a string that cannot name a commit at all.
            Err(GithubError::Refused { status: 404 | 422, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Points `branch` at `sha`: creates it, or moves it (`force` allows non-fast-forward moves).
    pub async fn set_branch(&self, repo: &RepoName, branch: &str, sha: &CommitSha, force: bool) -> GhResult<()> {
        let update = self
            .write(
                "PATCH",
                &format!("/repos/{repo}/git/refs/heads/{}", path_part(branch)),
                json!({ "sha": sha.as_str(), "force": force }),
            )
            .await;
        match update {
            Err(GithubError::Refused { status: 422, message }) if message.contains("does not exist") => self
                .write(
                    "POST",
                    &format!("/repos/{repo}/git/refs"),
                    json!({ "ref": format!("refs/heads/{branch}"), "sha": sha.as_str() }),
                )
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        }
    }

    /// Merges `head` into `base` (a branch) on GitHub.
    pub async fn merge(&self, repo: &RepoName, base: &str, head: &CommitSha, message: &str) -> GhResult<MergeOutcome> {
        let body = json!({ "base": base, "head": head.as_str(), "commit_message": message });
        match self.write("POST", &format!("/repos/{repo}/merges"), body).await {
            Ok((StatusCode::NO_CONTENT, _)) => Ok(MergeOutcome::NothingToMerge),
            Ok((_, v)) => Ok(MergeOutcome::Merged(sha_at(&v, "/sha", "merge without sha")?)),
            Err(GithubError::Refused { status: 409, .. }) => Ok(MergeOutcome::Conflict),
            Err(e) => Err(e),
        }
    }

    /// The paths changed between `base` and `head` (three-dot: since their merge base). A rename
    /// counts as both paths. GitHub lists the files of a comparison on its first page only, and
    /// at most [`COMPARE_FILE_LIMIT`] of them: a list that long may be cut short, which
    /// [`ChangedFiles::complete`] says, so that nobody plans from a truncated list (SPEC §5.3).
    pub async fn changed_files(&self, repo: &RepoName, base: &CommitSha, head: &CommitSha) -> GhResult<ChangedFiles> {
        let (_, v) = self
            // `per_page` pages the commits, which we do not read: one is enough.
            .read(&format!("/repos/{repo}/compare/{base}...{head}?per_page=1"))
            .await?;
        let files = v.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut paths = vec![];
        for f in &files {
            if let Some(p) = f.get("filename").and_then(Value::as_str) {
                paths.push(p.to_string());
            }
            if let Some(p) = f.get("previous_filename").and_then(Value::as_str) {
                paths.push(p.to_string());
            }
        }
        Ok(ChangedFiles {
            paths,
            complete: files.len() < COMPARE_FILE_LIMIT,
        })
    }

    /// A file's text at a commit, or `None` when it does not exist there.
    pub async fn file_at(&self, repo: &RepoName, path: &str, sha: &CommitSha) -> GhResult<Option<String>> {
        match self
            .read(&format!("/repos/{repo}/contents/{}?ref={sha}", path_part(path)))
            .await
        {
            Ok((_, v)) => {
                let encoded = v
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .replace(['\n', '\r'], "");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| GithubError::Protocol(format!("contents of {path}: {e}")))?;
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Err(GithubError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A commit's tree, parents and message (`GET …/git/commits/{sha}`); `None` when there is
    /// no such commit.
    pub async fn git_commit(&self, repo: &RepoName, sha: &CommitSha) -> GhResult<Option<GitCommit>> {
        match self.read(&format!("/repos/{repo}/git/commits/{sha}")).await {
            Ok((_, v)) => Ok(Some(GitCommit {
                sha: sha_at(&v, "/sha", "commit without sha")?,
                tree: sha_at(&v, "/tree/sha", "commit without tree")?,
                parents: v
                    .get("parents")
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().filter_map(|p| sha_at(p, "/sha", "parent").ok()).collect())
                    .unwrap_or_default(),
            })),
            Err(GithubError::Refused { status: 404 | 422, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a commit of `tree` with `parents` (`POST …/git/commits`); no ref moves.
    pub async fn create_commit(
        &self,
        repo: &RepoName,
        message: &str,
        tree: &CommitSha,
        parents: &[&CommitSha],
    ) -> GhResult<CommitSha> {
        let parents: Vec<&str> = parents.iter().map(|p| p.as_str()).collect();
        let (_, v) = self
            .write(
                "POST",
                &format!("/repos/{repo}/git/commits"),
                json!({ "message": message, "tree": tree.as_str(), "parents": parents }),
            )
            .await?;
        sha_at(&v, "/sha", "created commit without sha")
    }

    /// Whether `commit` is `tip` or one of its ancestors (the three-dot compare from `commit` to
    /// `tip` is `identical` or `ahead`).
    pub async fn contains(&self, repo: &RepoName, tip: &CommitSha, commit: &CommitSha) -> GhResult<bool> {
        if tip == commit {
            return Ok(true);
        }
        match self
            .read(&format!("/repos/{repo}/compare/{commit}...{tip}?per_page=1"))
            .await
        {
            Ok((_, v)) => Ok(matches!(
                v.get("status").and_then(Value::as_str),
                Some("identical" | "ahead")
            )),
            Err(GithubError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Closes a pull request (`PATCH …/pulls/{n}`); closing a closed one changes nothing.
    pub async fn close_pull(&self, repo: &RepoName, number: PrNumber) -> GhResult<()> {
        self.write(
            "PATCH",
            &format!("/repos/{repo}/pulls/{number}"),
            json!({ "state": "closed" }),
        )
        .await
        .map(|_| ())
    }

    /// Closes an issue as completed (`PATCH …/issues/{n}`).
    pub async fn close_issue(&self, repo: &RepoName, number: PrNumber) -> GhResult<()> {
        self.write(
            "PATCH",
            &format!("/repos/{repo}/issues/{number}"),
            json!({ "state": "closed", "state_reason": "completed" }),
        )
        .await
        .map(|_| ())
    }

    /// The token git authenticates with: the personal token, or a current installation token of
    /// the App (fetched and renewed as needed).
    pub async fn git_token(&self) -> GhResult<SecretString> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        // Reused while it has a minute left, so a fetch never starts with a token about to expire.
        self.octo
            .installation_token_with_buffer(chrono::Duration::seconds(60))
            .await
            .map_err(|e| GithubError::Unavailable(format!("an installation token for git: {}", describe_octocrab(&e))))
    }

    /// The URL git clones the repository from (`GET /repos/{o}/{r}`, its `clone_url`).
    pub async fn clone_url(&self, repo: &RepoName) -> GhResult<String> {
        let (_, v) = self.read(&format!("/repos/{repo}")).await?;
        v.get("clone_url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| GithubError::Protocol("repository without clone_url".into()))
    }

    pub async fn comment(&self, repo: &RepoName, number: PrNumber, body: &str) -> GhResult<()> {
        self.write(
            "POST",
            &format!("/repos/{repo}/issues/{number}/comments"),
            json!({ "body": body }),
        )
        .await
        .map(|_| ())
    }

    // --- Checks and statuses (SPEC §5.7) ----------------------------------------------------

    /// Creates a check run (`POST …/check-runs`) from `run` (its fields as GitHub names them:
    /// `name`, `head_sha`, `status`, `conclusion`, `details_url`, `external_id`, `output`) and
    /// returns its id. A personal token is refused with 403 "Resource not accessible by personal
    /// access token": only Apps create check runs ([`GithubError::is_checks_forbidden`]).
    pub async fn create_check_run(&self, repo: &RepoName, run: Value) -> GhResult<u64> {
        let (_, v) = self.write("POST", &format!("/repos/{repo}/check-runs"), run).await?;
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| GithubError::Protocol("check run without id".into()))
    }

    /// Updates a check run (`PATCH …/check-runs/{id}`); the same fields but `head_sha`.
    pub async fn update_check_run(&self, repo: &RepoName, id: u64, run: Value) -> GhResult<()> {
        self.write("PATCH", &format!("/repos/{repo}/check-runs/{id}"), run)
            .await
            .map(|_| ())
    }

    /// Sets a commit status (`POST …/statuses/{sha}`): `state` is `error`, `failure`, `pending`
    /// or `success`; GitHub keeps the latest per `context`. `description` is cut to GitHub's 140
    /// characters here, so a long reason never turns the update into a 422.
    pub async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        context: &str,
        state: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> GhResult<()> {
        let description = shorten(description, STATUS_DESCRIPTION_LIMIT);
        let mut body = json!({ "state": state, "context": context, "description": description });
        if let Some(url) = target_url {
            body["target_url"] = json!(url);
        }
        self.write("POST", &format!("/repos/{repo}/statuses/{sha}"), body)
            .await
            .map(|_| ())
    }

    /// The latest check run of each name on `sha` (`GET …/commits/{sha}/check-runs`, every page),
    /// and the latest status of each context (`GET …/commits/{sha}/status`): what the
    /// repository's CI reported on a candidate.
    pub async fn ci_reports(&self, repo: &RepoName, sha: &CommitSha) -> GhResult<Vec<CiReport>> {
        let mut out = vec![];
        for page in 1..=10 {
            let (_, v) = self
                .read(&format!(
                    "/repos/{repo}/commits/{sha}/check-runs?per_page=100&page={page}"
                ))
                .await?;
            let runs = v
                .get("check_runs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = runs.len();
            out.extend(runs.iter().filter_map(CiReport::from_check_run));
            if n < 100 {
                break;
            }
        }
        for page in 1..=10 {
            let (_, v) = self
                .read(&format!("/repos/{repo}/commits/{sha}/status?per_page=100&page={page}"))
                .await?;
            let statuses = v.get("statuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = statuses.len();
            out.extend(statuses.iter().filter_map(CiReport::from_status));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Deserialize)]
struct RawBranch {
    sha: CommitSha,
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct RawPull {
    number: PrNumber,
    #[serde(default)]
    title: String,
    user: Option<RawUser>,
    state: PullState,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    merged: bool,
    head: RawBranch,
    base: RawBranch,
    #[serde(default)]
    body: Option<String>,
}

/// Percent-encodes a ref, branch, login or file path for a URL path, segment by segment: `/`
/// stays a separator (GitHub takes `heads/feature/x` and `contents/dir/file` as written), and
/// everything but letters, digits and `-._~` is encoded, so `feat#x` names the branch `feat#x`
/// rather than `feat` with a fragment, and `%`, `?` or a space can never change the request.
fn path_part(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    s.split('/')
        .map(|seg| percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The commit id at `pointer` of a GitHub answer; a missing or malformed one is a protocol error.
fn sha_at(v: &Value, pointer: &str, what: &str) -> GhResult<CommitSha> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| GithubError::Protocol(what.into()))
}

fn pull_from(p: RawPull) -> GhResult<PullRequest> {
    Ok(PullRequest {
        number: p.number,
        title: p.title,
        author: p.user.map(|u| u.login).unwrap_or_default(),
        state: p.state,
        draft: p.draft,
        merged: p.merged,
        head_sha: p.head.sha,
        head_ref: p.head.name,
        base_ref: p.base.name,
        body: p.body.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct RawReview {
    user: Option<RawUser>,
    state: ReviewState,
    commit_id: Option<CommitSha>,
}

/// Now in Unix seconds, for `X-RateLimit-Reset`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// octocrab's `Error::GitHub` prints only "GitHub"; say what actually happened.
fn describe_octocrab(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            format!("HTTP {}: {}", source.status_code.as_u16(), source.message)
        }
        other => {
            let mut s = other.to_string();
            let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(other);
            while let Some(c) = cur {
                s = format!("{s}: {c}");
                cur = c.source();
            }
            s.chars().take(300).collect()
        }
    }
}

#[cfg(test)]
mod path_tests {
    use super::path_part;

    #[test]
    fn names_are_encoded_segment_by_segment() {
        assert_eq!(path_part("feature/login"), "feature/login");
        assert_eq!(path_part("feat#x"), "feat%23x");
        assert_eq!(path_part("50%off"), "50%25off");
        assert_eq!(path_part("a?b=c&d"), "a%3Fb%3Dc%26d");
        assert_eq!(path_part("ünï/cödé"), "%C3%BCn%C3%AF/c%C3%B6d%C3%A9");
        assert_eq!(path_part(".gandalf/resources.toml"), ".gandalf/resources.toml");
        assert_eq!(path_part("release-1.2_rc~1"), "release-1.2_rc~1");
    }
}
