//! GitHub's REST API as the bots use it (SPEC §5.4), through octocrab, with domain-named methods
//! and our own retry policy.
//!
//! Every call is one of the table in §5.4. Requests use paths relative to `GITHUB_API_URL`, so
//! octocrab attaches credentials (it only does so for relative URIs or api.github.com, which would
//! otherwise strip them on GitHub Enterprise). Responses are read into structs of our own: octocrab's
//! typed models reject some of GitHub's real answers (the collaborator permission, for one).
//!
//! Retries: reads are retried on 5xx, 429 and rate-limit 403s, honouring `Retry-After` and
//! `X-RateLimit-Reset`. Writes are never repeated blindly: a failed write returns
//! [`GithubError::Unavailable`] and the caller re-reads state before deciding to try again.

use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::settings::GithubApp;

pub use crate::ids::{CommitSha, PrNumber, RepoName};

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
    pub base_ref: String,
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

/// How `merge_pull` lands a pull request (GitHub's `merge_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStyle {
    Merge,
    Squash,
}

impl MergeStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
        }
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

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct Github {
    octo: Octocrab,
    retry: RetryPolicy,
}

/// What a failed HTTP exchange means for retrying.
enum Failure {
    Retry { after: Option<Duration>, why: String },
    Final(GithubError),
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
            .set_read_timeout(Some(Duration::from_secs(60)));
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
        Ok(Github { octo, retry })
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value), Failure> {
        let response = match method {
            "GET" => self.octo._get(path).await,
            "POST" => self.octo._post(path, body).await,
            "PATCH" => self.octo._patch(path, body).await,
            "PUT" => self.octo._put(path, body).await,
            _ => unreachable!("only the methods above are used"),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure::Retry {
                    after: None,
                    why: describe_octocrab(&e),
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = self.octo.body_to_string(response).await.map_err(|e| Failure::Retry {
            after: None,
            why: describe_octocrab(&e),
        })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok((status, value));
        }
        let message = value.get("message").and_then(Value::as_str).unwrap_or("").to_string();
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (headers.get("x-ratelimit-remaining").is_some_and(|v| v == "0")
                    || message.to_ascii_lowercase().contains("rate limit")));
        if rate_limited || status.is_server_error() {
            return Err(Failure::Retry {
                after: retry_after(&headers),
                why: format!(
                    "HTTP {}{}",
                    status.as_u16(),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            });
        }
        Err(Failure::Final(GithubError::Refused {
            status: status.as_u16(),
            message,
        }))
    }

    /// A read, retried with backoff on transient failures.
    async fn read(&self, path: &str) -> GhResult<(StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send("GET", path, None).await {
                Ok(ok) => return Ok(ok),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retry { after, why }) => {
                    if attempt >= self.retry.attempts {
                        return Err(GithubError::Unavailable(why));
                    }
                    let wait = self.backoff(attempt, after);
                    tracing::warn!(path, attempt, error = %why, retry_in = ?wait, "GitHub read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A write, sent once. A transient failure is reported as `Unavailable`: the caller re-reads
    /// state before deciding whether to send it again.
    async fn write(&self, method: &str, path: &str, body: Value) -> GhResult<(StatusCode, Value)> {
        match self.send(method, path, Some(&body)).await {
            Ok(ok) => Ok(ok),
            Err(Failure::Final(e)) => Err(e),
            Err(Failure::Retry { why, .. }) => Err(GithubError::Unavailable(why)),
        }
    }

    fn backoff(&self, attempt: u32, after: Option<Duration>) -> Duration {
        let exp = self.retry.base.saturating_mul(1 << attempt.min(16)).min(self.retry.cap);
        after
            .map(|a| a.min(self.retry.cap.max(Duration::from_secs(300))))
            .unwrap_or(exp)
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
            .read(&format!("/repos/{repo}/collaborators/{login}/permission"))
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
        match self.read(&format!("/repos/{repo}/git/ref/heads/{branch}")).await {
            Ok((_, v)) => Ok(Some(sha_at(&v, "/object/sha", "ref without sha")?)),
            Err(GithubError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The full SHA of a commit named by a SHA (full or abbreviated) or any ref GitHub resolves,
    /// or `None` when there is no such commit.
    pub async fn commit_sha(&self, repo: &RepoName, reference: &str) -> GhResult<Option<CommitSha>> {
        match self.read(&format!("/repos/{repo}/commits/{reference}")).await {
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
                &format!("/repos/{repo}/git/refs/heads/{branch}"),
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
    /// counts as both paths.
    pub async fn changed_files(&self, repo: &RepoName, base: &CommitSha, head: &CommitSha) -> GhResult<Vec<String>> {
        let mut out = vec![];
        for page in 1..=100 {
            let (_, v) = self
                .read(&format!(
                    "/repos/{repo}/compare/{base}...{head}?per_page=100&page={page}"
                ))
                .await?;
            let files = v.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = files.len();
            for f in files {
                if let Some(p) = f.get("filename").and_then(Value::as_str) {
                    out.push(p.to_string());
                }
                if let Some(p) = f.get("previous_filename").and_then(Value::as_str) {
                    out.push(p.to_string());
                }
            }
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// A file's text at a commit, or `None` when it does not exist there.
    pub async fn file_at(&self, repo: &RepoName, path: &str, sha: &CommitSha) -> GhResult<Option<String>> {
        match self.read(&format!("/repos/{repo}/contents/{path}?ref={sha}")).await {
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

    /// Merges a pull request with `merge` or `squash`, only if its head is still `sha`.
    pub async fn merge_pull(
        &self,
        repo: &RepoName,
        number: PrNumber,
        sha: &CommitSha,
        style: MergeStyle,
    ) -> GhResult<CommitSha> {
        let (_, v) = self
            .write(
                "PUT",
                &format!("/repos/{repo}/pulls/{number}/merge"),
                json!({ "sha": sha.as_str(), "merge_method": style.as_str() }),
            )
            .await?;
        sha_at(&v, "/sha", "merge without sha")
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
        base_ref: p.base.name,
    })
}

#[derive(Deserialize)]
struct RawReview {
    user: Option<RawUser>,
    state: ReviewState,
    commit_id: Option<CommitSha>,
}

/// `Retry-After` (seconds) or `X-RateLimit-Reset` (epoch seconds), whichever GitHub sent.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = num("x-ratelimit-reset")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now) + 1))
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
