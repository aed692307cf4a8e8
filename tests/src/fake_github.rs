//! A stateful fake of the slice of GitHub's REST API that Gandalf uses (SPEC §5.4), on loopback.
//!
//! It models what the merge queue's correctness depends on, the way GitHub does it: commits with
//! parents and whole trees, branches that move (fast-forward or forced), three-way merges that
//! conflict when both sides changed a file differently, three-dot compares from the merge base,
//! file contents at a commit, pull requests whose head follows their branch, reviews on a commit,
//! collaborator permissions, and `PUT …/merge` that refuses a stale `sha`. Tests drive it like a
//! team would (push, open a PR, approve). Every request is logged so tests can assert that a write
//! happened exactly once.
//!
//! Like GitHub (docs: "Rate limits for the REST API"), every answer — errors included, a 502 too —
//! carries `X-RateLimit-Limit/Remaining/Reset/Used/Resource`, where Reset is the end of the current
//! one-hour window in Unix seconds (so usually far ahead: the very header that made one 502 cost
//! 300 s, issue 14). Tests can make it fail the way GitHub fails: a 5xx on the next requests (to any
//! path, or to one `METHOD /path`), a dropped connection, a primary rate limit (the window used
//! up: 403, `X-RateLimit-Remaining: 0`, "API rate limit exceeded…", until Reset) and a secondary
//! one (403 or 429, "You have exceeded a secondary rate limit…", with or without `Retry-After`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const TOKEN: &str = "ghp-test-token";

#[derive(Clone, Debug)]
struct Commit {
    parents: Vec<String>,
    tree: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct Pull {
    title: String,
    author: String,
    open: bool,
    draft: bool,
    merged: bool,
    head_ref: String,
    /// The head when it stopped following its branch (merged or closed).
    frozen_head: Option<String>,
    base_ref: String,
}

#[derive(Clone, Debug)]
struct ReviewRec {
    login: String,
    state: String,
    commit_id: String,
}

#[derive(Default)]
struct RepoState {
    commits: HashMap<String, Commit>,
    branches: BTreeMap<String, String>,
    pulls: BTreeMap<u64, Pull>,
    reviews: HashMap<u64, Vec<ReviewRec>>,
    permissions: HashMap<String, String>,
    comments: Vec<(u64, String)>,
}

/// A failure queued for a coming request.
#[derive(Clone, Debug)]
struct Fault {
    /// `METHOD /path` it waits for; any request when `None`.
    on: Option<String>,
    kind: FaultKind,
}

#[derive(Clone, Debug)]
enum FaultKind {
    /// This status with a GitHub-like error body (`502` → "Server Error").
    Status(u16),
    /// A secondary rate limit: 403 or 429, with `Retry-After` seconds when given.
    Secondary { status: u16, retry_after: Option<u64> },
    /// The answer's headers, then the connection drops mid-body: a network error to the client.
    Drop,
}

/// GitHub's primary rate limit for the `core` resource: requests per window.
struct Window {
    limit: u64,
    used: u64,
    /// The window's end, Unix seconds (`X-RateLimit-Reset`).
    reset: u64,
}

/// 15,000: a GitHub App installation's limit on GitHub Enterprise Cloud, high enough that the
/// benchmarks' runs never use it up by accident (tests exhaust it on purpose).
const DEFAULT_LIMIT: u64 = 15_000;
const WINDOW_SECS: u64 = 3600;

const RATE_LIMIT_DOCS: &str = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api";
const SECONDARY_DOCS: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Inner {
    repos: HashMap<String, RepoState>,
    counter: u64,
    /// Failures still to inject, in order.
    faults: Vec<Fault>,
    window: Window,
    log: Vec<String>,
    /// When each request of `log` arrived (wall clock: `X-RateLimit-Reset` is wall-clock seconds).
    arrivals: Vec<std::time::SystemTime>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            repos: HashMap::new(),
            counter: 0,
            faults: vec![],
            window: Window {
                limit: DEFAULT_LIMIT,
                used: 0,
                reset: unix_now() + WINDOW_SECS,
            },
            log: vec![],
            arrivals: vec![],
        }
    }
}

impl Inner {
    /// A new window once the current one has ended, as GitHub does.
    fn roll_window(&mut self, now: u64) {
        if now >= self.window.reset {
            self.window.used = 0;
            self.window.reset = now + WINDOW_SECS;
        }
    }

    /// The headers GitHub sends on every answer.
    fn rate_headers(&self) -> [(&'static str, String); 5] {
        let w = &self.window;
        [
            ("x-ratelimit-limit", w.limit.to_string()),
            ("x-ratelimit-remaining", w.limit.saturating_sub(w.used).to_string()),
            ("x-ratelimit-reset", w.reset.to_string()),
            ("x-ratelimit-used", w.used.to_string()),
            ("x-ratelimit-resource", "core".to_string()),
        ]
    }

    /// The first queued fault for this request, removed from the queue.
    fn take_fault(&mut self, line: &str) -> Option<FaultKind> {
        let at = self
            .faults
            .iter()
            .position(|f| f.on.as_deref().is_none_or(|on| on == line))?;
        Some(self.faults.remove(at).kind)
    }
}

#[derive(Clone)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn sha_of(counter: u64, parents: &[String], tree: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(counter.to_le_bytes());
    for p in parents {
        h.update(p.as_bytes());
    }
    for (k, v) in tree {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..20])
}

impl RepoState {
    fn ancestors(&self, sha: &str) -> Vec<String> {
        let mut seen = vec![];
        let mut stack = vec![sha.to_string()];
        while let Some(s) = stack.pop() {
            if seen.contains(&s) {
                continue;
            }
            if let Some(c) = self.commits.get(&s) {
                stack.extend(c.parents.iter().cloned());
            }
            seen.push(s);
        }
        seen
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        self.ancestors(of).iter().any(|a| a == ancestor)
    }

    /// The nearest common ancestor (by breadth from `b`).
    fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let of_a = self.ancestors(a);
        let mut queue = std::collections::VecDeque::from([b.to_string()]);
        let mut seen = vec![];
        while let Some(s) = queue.pop_front() {
            if of_a.contains(&s) {
                return Some(s);
            }
            if seen.contains(&s) {
                continue;
            }
            seen.push(s.clone());
            if let Some(c) = self.commits.get(&s) {
                queue.extend(c.parents.iter().cloned());
            }
        }
        None
    }

    fn pull_head(&self, p: &Pull) -> String {
        p.frozen_head
            .clone()
            .unwrap_or_else(|| self.branches.get(&p.head_ref).cloned().unwrap_or_default())
    }

    /// Three-way merge of trees; `None` on conflict.
    fn merge_trees(&self, base: &str, ours: &str, theirs: &str) -> Option<BTreeMap<String, String>> {
        let empty = BTreeMap::new();
        let b = self.commits.get(base).map(|c| &c.tree).unwrap_or(&empty);
        let o = &self.commits[ours].tree;
        let t = &self.commits[theirs].tree;
        let mut out = BTreeMap::new();
        let paths: std::collections::BTreeSet<&String> = b.keys().chain(o.keys()).chain(t.keys()).collect();
        for p in paths {
            let (bv, ov, tv) = (b.get(p), o.get(p), t.get(p));
            let v = if ov == tv {
                ov
            } else if bv == ov {
                tv
            } else if bv == tv {
                ov
            } else {
                return None;
            };
            if let Some(v) = v {
                out.insert(p.clone(), v.clone());
            }
        }
        Some(out)
    }
}

impl FakeGithub {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts the fake on a chosen address (the mixed load benchmark runs it as its own process,
    /// at an address Gandalf is configured with before it starts).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeGithub { addr, inner };
        let app = Router::new()
            .route("/repos/{o}/{r}/pulls", axum::routing::get(list_pulls))
            .route("/repos/{o}/{r}/pulls/{n}", axum::routing::get(get_pull))
            .route("/repos/{o}/{r}/pulls/{n}/reviews", axum::routing::get(get_reviews))
            .route("/repos/{o}/{r}/pulls/{n}/merge", axum::routing::put(merge_pull))
            .route(
                "/repos/{o}/{r}/collaborators/{login}/permission",
                axum::routing::get(get_permission),
            )
            .route("/repos/{o}/{r}/git/ref/heads/{*branch}", axum::routing::get(get_ref))
            .route("/repos/{o}/{r}/git/refs", axum::routing::post(create_ref))
            .route(
                "/repos/{o}/{r}/git/refs/heads/{*branch}",
                axum::routing::patch(update_ref),
            )
            .route("/repos/{o}/{r}/merges", axum::routing::post(merges))
            .route("/repos/{o}/{r}/compare/{basehead}", axum::routing::get(compare))
            .route("/repos/{o}/{r}/commits/{reference}", axum::routing::get(get_commit))
            .route("/repos/{o}/{r}/contents/{*path}", axum::routing::get(contents))
            .route("/repos/{o}/{r}/issues/{n}/comments", axum::routing::post(comment))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), gate))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        fake
    }

    /// `GITHUB_API_URL` for the bots.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    /// Creates `repo` with one commit on `base` holding `files`.
    pub fn create_repo(&self, repo: &str, base: &str, files: &[(&str, &str)]) -> String {
        self.with(|i| {
            i.repos.insert(repo.to_string(), RepoState::default());
            i.counter += 1;
            let tree: BTreeMap<String, String> = files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let sha = sha_of(i.counter, &[], &tree);
            let r = i.repos.get_mut(repo).unwrap();
            r.commits.insert(sha.clone(), Commit { parents: vec![], tree });
            r.branches.insert(base.to_string(), sha.clone());
            sha
        })
    }

    /// Commits changes on top of `branch` (created from `from` when missing); `None` deletes a file.
    pub fn push(&self, repo: &str, branch: &str, from: &str, changes: &[(&str, Option<&str>)]) -> String {
        self.with(|i| {
            i.counter += 1;
            let counter = i.counter;
            let r = i.repos.get_mut(repo).expect("repo exists");
            let parent = r
                .branches
                .get(branch)
                .or_else(|| r.branches.get(from))
                .cloned()
                .expect("branch to start from");
            let mut tree = r.commits[&parent].tree.clone();
            for (path, content) in changes {
                match content {
                    Some(c) => tree.insert(path.to_string(), c.to_string()),
                    None => tree.remove(*path),
                };
            }
            let sha = sha_of(counter, std::slice::from_ref(&parent), &tree);
            r.commits.insert(
                sha.clone(),
                Commit {
                    parents: vec![parent],
                    tree,
                },
            );
            r.branches.insert(branch.to_string(), sha.clone());
            sha
        })
    }

    /// Opens a pull request from `head_ref` into `base_ref`; returns its number.
    pub fn open_pull(&self, repo: &str, number: u64, title: &str, author: &str, head_ref: &str, base_ref: &str) {
        self.with(|i| {
            let r = i.repos.get_mut(repo).unwrap();
            r.pulls.insert(
                number,
                Pull {
                    title: title.into(),
                    author: author.into(),
                    open: true,
                    draft: false,
                    merged: false,
                    head_ref: head_ref.into(),
                    frozen_head: None,
                    base_ref: base_ref.into(),
                },
            );
        })
    }

    pub fn set_draft(&self, repo: &str, number: u64, draft: bool) {
        self.with(|i| i.repos.get_mut(repo).unwrap().pulls.get_mut(&number).unwrap().draft = draft)
    }

    pub fn close_pull(&self, repo: &str, number: u64) {
        self.with(|i| {
            let r = i.repos.get_mut(repo).unwrap();
            let head = r.pull_head(&r.pulls[&number]);
            let p = r.pulls.get_mut(&number).unwrap();
            p.open = false;
            p.frozen_head = Some(head);
        })
    }

    /// `login` approves the pull request's current head.
    pub fn approve(&self, repo: &str, number: u64, login: &str) {
        self.with(|i| {
            let r = i.repos.get_mut(repo).unwrap();
            let head = r.pull_head(&r.pulls[&number]);
            r.reviews.entry(number).or_default().push(ReviewRec {
                login: login.into(),
                state: "APPROVED".into(),
                commit_id: head,
            });
        })
    }

    pub fn set_permission(&self, repo: &str, login: &str, permission: &str) {
        self.with(|i| {
            i.repos
                .get_mut(repo)
                .unwrap()
                .permissions
                .insert(login.into(), permission.into());
        })
    }

    /// Moves a branch the way a push would (no webhook, no pull request bookkeeping).
    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        self.with(|i| {
            let r = i.repos.get_mut(repo).expect("repo exists");
            assert!(r.commits.contains_key(sha), "no commit {sha}");
            r.branches.insert(branch.to_string(), sha.to_string());
        })
    }

    /// How many requests so far were `METHOD /path`.
    pub fn calls_to(&self, what: &str) -> usize {
        self.with(|i| i.log.iter().filter(|l| l.as_str() == what).count())
    }

    pub fn branch(&self, repo: &str, branch: &str) -> Option<String> {
        self.with(|i| i.repos.get(repo)?.branches.get(branch).cloned())
    }

    /// The file tree at a commit.
    pub fn tree(&self, repo: &str, sha: &str) -> BTreeMap<String, String> {
        self.with(|i| i.repos[repo].commits[sha].tree.clone())
    }

    pub fn parents(&self, repo: &str, sha: &str) -> Vec<String> {
        self.with(|i| i.repos[repo].commits[sha].parents.clone())
    }

    pub fn comments(&self, repo: &str, number: u64) -> Vec<String> {
        self.with(|i| {
            i.repos[repo]
                .comments
                .iter()
                .filter(|(n, _)| *n == number)
                .map(|(_, b)| b.clone())
                .collect()
        })
    }

    pub fn is_merged(&self, repo: &str, number: u64) -> bool {
        self.with(|i| i.repos[repo].pulls[&number].merged)
    }

    /// The next `n` requests, whatever they are, answer with `status` (502, 503…; a 429 is a
    /// secondary rate limit with `Retry-After: 0`).
    pub fn fail_next(&self, n: usize, status: u16) {
        let kind = if status == 429 {
            FaultKind::Secondary {
                status,
                retry_after: Some(0),
            }
        } else {
            FaultKind::Status(status)
        };
        self.queue_faults(None, n, kind)
    }

    /// The next `n` requests to `what` (`METHOD /path`, as in [`FakeGithub::log`]) answer with
    /// `status`; other requests go through.
    pub fn fail_next_on(&self, what: &str, n: usize, status: u16) {
        self.queue_faults(Some(what), n, FaultKind::Status(status))
    }

    /// The next `n` requests to `what` lose their connection mid-answer (a network error).
    pub fn drop_next_on(&self, what: &str, n: usize) {
        self.queue_faults(Some(what), n, FaultKind::Drop)
    }

    /// The next `n` requests meet a secondary rate limit: `status` 403 or 429, with
    /// `Retry-After: retry_after` when given (GitHub does not always send it).
    pub fn secondary_rate_limit_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        assert!(
            matches!(status, 403 | 429),
            "GitHub answers rate limits with 403 or 429"
        );
        self.queue_faults(None, n, FaultKind::Secondary { status, retry_after })
    }

    /// Like [`FakeGithub::secondary_rate_limit_next`], for the next `n` requests to `what` only.
    pub fn secondary_rate_limit_on(&self, what: &str, n: usize, status: u16, retry_after: Option<u64>) {
        assert!(
            matches!(status, 403 | 429),
            "GitHub answers rate limits with 403 or 429"
        );
        self.queue_faults(Some(what), n, FaultKind::Secondary { status, retry_after })
    }

    /// Uses up the primary rate limit now, with the window ending `reset_in` seconds from now:
    /// until then every request is a 403 with `X-RateLimit-Remaining: 0`, after it a new window
    /// starts.
    pub fn exhaust_rate_limit(&self, reset_in: u64) {
        self.with(|i| {
            i.window.used = i.window.limit;
            i.window.reset = unix_now() + reset_in;
        })
    }

    /// The primary limit's size (GitHub's: 5,000 for a token, more for some App installations).
    pub fn set_rate_limit(&self, limit: u64) {
        self.with(|i| i.window.limit = limit)
    }

    /// `X-RateLimit-Reset` now: the current window's end, in Unix seconds.
    pub fn rate_limit_reset(&self) -> u64 {
        self.with(|i| i.window.reset)
    }

    fn queue_faults(&self, on: Option<&str>, n: usize, kind: FaultKind) {
        self.with(|i| {
            i.faults.extend(std::iter::repeat_n(
                Fault {
                    on: on.map(str::to_string),
                    kind,
                },
                n,
            ))
        })
    }

    /// Every request so far with the time it arrived.
    pub fn timed_log(&self) -> Vec<(std::time::SystemTime, String)> {
        self.with(|i| i.arrivals.iter().copied().zip(i.log.iter().cloned()).collect())
    }

    /// Every request so far, as `METHOD /path`.
    pub fn log(&self) -> Vec<String> {
        self.with(|i| i.log.clone())
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    error_with_docs(status, message, "https://docs.github.com/rest")
}

fn error_with_docs(status: StatusCode, message: &str, docs: &str) -> Response {
    (status, Json(json!({ "message": message, "documentation_url": docs }))).into_response()
}

/// What the gate decided for one request.
enum Verdict {
    Fault(FaultKind),
    PrimaryLimit,
    Pass,
}

/// Every request passes here: logged, counted against the window, failed as told, checked for
/// credentials; every answer leaves with the rate-limit headers of the window.
async fn gate(
    State(fake): State<FakeGithub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let verdict = fake.with(|i| {
        let line = format!("{method} {}", uri.path());
        i.log.push(line.clone());
        i.arrivals.push(std::time::SystemTime::now());
        i.roll_window(unix_now());
        if let Some(kind) = i.take_fault(&line) {
            Verdict::Fault(kind)
        } else if i.window.used >= i.window.limit {
            Verdict::PrimaryLimit
        } else {
            i.window.used += 1;
            Verdict::Pass
        }
    });
    let mut response = match verdict {
        Verdict::Fault(FaultKind::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap();
            error(status, status.canonical_reason().unwrap_or("Server Error"))
        }
        Verdict::Fault(FaultKind::Secondary { status, retry_after }) => {
            let mut r = error_with_docs(
                StatusCode::from_u16(status).unwrap(),
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
                 If you reach out to GitHub Support for help, please include the request ID 0000:FAKE.",
                SECONDARY_DOCS,
            );
            if let Some(secs) = retry_after {
                r.headers_mut().insert("retry-after", secs.into());
            }
            r
        }
        Verdict::Fault(FaultKind::Drop) => {
            // Headers go out, then the body fails: hyper aborts the connection mid-answer.
            let body = futures::stream::once(async {
                Err::<axum::body::Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake GitHub dropped the connection",
                ))
            });
            (StatusCode::OK, axum::body::Body::from_stream(body)).into_response()
        }
        Verdict::PrimaryLimit => error_with_docs(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, \
             please include the request ID 0000:FAKE.",
            RATE_LIMIT_DOCS,
        ),
        Verdict::Pass => {
            let authorized =
                headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
            if authorized {
                next.run(req).await
            } else {
                error(StatusCode::UNAUTHORIZED, "Bad credentials")
            }
        }
    };
    for (name, value) in fake.with(|i| i.rate_headers()) {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn pull_json(r: &RepoState, number: u64, p: &Pull) -> Value {
    json!({
        "number": number,
        "title": p.title,
        "user": { "login": p.author },
        "state": if p.open { "open" } else { "closed" },
        "draft": p.draft,
        "merged": p.merged,
        "head": { "sha": r.pull_head(p), "ref": p.head_ref },
        "base": { "sha": r.branches.get(&p.base_ref).cloned().unwrap_or_default(), "ref": p.base_ref },
    })
}

type RepoPath = (String, String);

async fn list_pulls(State(fake): State<FakeGithub>, Path((o, r)): Path<RepoPath>) -> Response {
    fake.with(|i| match i.repos.get(&format!("{o}/{r}")) {
        Some(repo) => Json(Value::Array(
            repo.pulls
                .iter()
                .filter(|(_, p)| p.open)
                .map(|(n, p)| pull_json(repo, *n, p))
                .collect(),
        ))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    })
}

async fn get_pull(State(fake): State<FakeGithub>, Path((o, r, n)): Path<(String, String, u64)>) -> Response {
    fake.with(|i| {
        match i
            .repos
            .get(&format!("{o}/{r}"))
            .and_then(|repo| repo.pulls.get(&n).map(|p| (repo, p)))
        {
            Some((repo, p)) => Json(pull_json(repo, n, p)).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn get_reviews(State(fake): State<FakeGithub>, Path((o, r, n)): Path<(String, String, u64)>) -> Response {
    fake.with(|i| {
        let reviews = i
            .repos
            .get(&format!("{o}/{r}"))
            .and_then(|repo| repo.reviews.get(&n))
            .cloned()
            .unwrap_or_default();
        Json(Value::Array(
            reviews
                .iter()
                .map(|rv| json!({ "user": { "login": rv.login }, "state": rv.state, "commit_id": rv.commit_id }))
                .collect(),
        ))
        .into_response()
    })
}

async fn get_permission(
    State(fake): State<FakeGithub>,
    Path((o, r, login)): Path<(String, String, String)>,
) -> Response {
    fake.with(|i| {
        match i
            .repos
            .get(&format!("{o}/{r}"))
            .and_then(|repo| repo.permissions.get(&login))
        {
            // GitHub's real answer: "write", not the team-style "push" octocrab's typed model expects.
            Some(p) => Json(json!({ "permission": p, "role_name": p, "user": { "login": login } })).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

async fn get_ref(State(fake): State<FakeGithub>, Path((o, r, branch)): Path<(String, String, String)>) -> Response {
    fake.with(|i| {
        match i
            .repos
            .get(&format!("{o}/{r}"))
            .and_then(|repo| repo.branches.get(&branch))
        {
            Some(sha) => {
                Json(json!({ "ref": format!("refs/heads/{branch}"), "object": { "sha": sha, "type": "commit" } }))
                    .into_response()
            }
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

/// A commit by full or abbreviated SHA, or by branch name; 422 for an ambiguous prefix.
async fn get_commit(
    State(fake): State<FakeGithub>,
    Path((o, r, reference)): Path<(String, String, String)>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        if let Some(sha) = repo.branches.get(&reference) {
            return Json(json!({ "sha": sha })).into_response();
        }
        let matches: Vec<&String> = if reference.len() >= 4 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            repo.commits.keys().filter(|k| k.starts_with(&reference)).collect()
        } else {
            vec![]
        };
        match matches.as_slice() {
            [one] => Json(json!({ "sha": one })).into_response(),
            [] => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("No commit found for SHA: {reference}"),
            ),
            _ => error(StatusCode::UNPROCESSABLE_ENTITY, "ambiguous SHA"),
        }
    })
}

#[derive(Deserialize)]
struct CreateRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

async fn create_ref(
    State(fake): State<FakeGithub>,
    Path((o, r)): Path<RepoPath>,
    Json(body): Json<CreateRef>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get_mut(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(branch) = body.name.strip_prefix("refs/heads/") else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference name must start with refs/");
        };
        if repo.branches.contains_key(branch) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
        }
        if !repo.commits.contains_key(&body.sha) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
        }
        repo.branches.insert(branch.to_string(), body.sha.clone());
        (
            StatusCode::CREATED,
            Json(json!({ "ref": body.name, "object": { "sha": body.sha } })),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
struct UpdateRef {
    sha: String,
    #[serde(default)]
    force: bool,
}

async fn update_ref(
    State(fake): State<FakeGithub>,
    Path((o, r, branch)): Path<(String, String, String)>,
    Json(body): Json<UpdateRef>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get_mut(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(current) = repo.branches.get(&branch).cloned() else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
        };
        if !repo.commits.contains_key(&body.sha) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
        }
        if !body.force && !repo.is_ancestor(&current, &body.sha) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Update is not a fast forward");
        }
        repo.branches.insert(branch.clone(), body.sha.clone());
        // As on GitHub: an open pull request whose head is now contained in its base is merged.
        let merged: Vec<u64> = repo
            .pulls
            .iter()
            .filter(|(_, p)| p.open && p.base_ref == branch)
            .filter(|(_, p)| {
                let head = repo.pull_head(p);
                !head.is_empty() && repo.is_ancestor(&head, &body.sha)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in merged {
            let head = repo.pull_head(&repo.pulls[&n]);
            let p = repo.pulls.get_mut(&n).expect("listed above");
            p.merged = true;
            p.open = false;
            p.frozen_head = Some(head);
        }
        Json(json!({ "ref": format!("refs/heads/{branch}"), "object": { "sha": body.sha } })).into_response()
    })
}

#[derive(Deserialize)]
struct MergeBody {
    base: String,
    head: String,
}

async fn merges(State(fake): State<FakeGithub>, Path((o, r)): Path<RepoPath>, Json(body): Json<MergeBody>) -> Response {
    fake.with(|i| {
        i.counter += 1;
        let counter = i.counter;
        let Some(repo) = i.repos.get_mut(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(base_tip) = repo.branches.get(&body.base).cloned() else {
            return error(StatusCode::NOT_FOUND, "Base does not exist");
        };
        let head = repo.branches.get(&body.head).cloned().unwrap_or(body.head.clone());
        if !repo.commits.contains_key(&head) {
            return error(StatusCode::NOT_FOUND, "Head does not exist");
        }
        if repo.is_ancestor(&head, &base_tip) {
            return StatusCode::NO_CONTENT.into_response();
        }
        let merge_base = repo.merge_base(&base_tip, &head).unwrap_or_default();
        let Some(tree) = repo.merge_trees(&merge_base, &base_tip, &head) else {
            return error(StatusCode::CONFLICT, "Merge conflict");
        };
        let parents = vec![base_tip, head];
        let sha = sha_of(counter, &parents, &tree);
        repo.commits.insert(sha.clone(), Commit { parents, tree });
        repo.branches.insert(body.base.clone(), sha.clone());
        (StatusCode::CREATED, Json(json!({ "sha": sha }))).into_response()
    })
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    page: Option<usize>,
}

async fn compare(
    State(fake): State<FakeGithub>,
    Path((o, r, basehead)): Path<(String, String, String)>,
    Query(paging): Query<Paging>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some((base, head)) = basehead.split_once("...") else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let resolve = |s: &str| repo.branches.get(s).cloned().unwrap_or(s.to_string());
        let (base, head) = (resolve(base), resolve(head));
        if !repo.commits.contains_key(&base) || !repo.commits.contains_key(&head) {
            return error(StatusCode::NOT_FOUND, "No common ancestor or unknown commit");
        }
        let mb = repo.merge_base(&base, &head).unwrap_or_default();
        let empty = BTreeMap::new();
        let from = repo.commits.get(&mb).map(|c| &c.tree).unwrap_or(&empty);
        let to = &repo.commits[&head].tree;
        let mut files = vec![];
        for (p, v) in to {
            match from.get(p) {
                None => files.push(json!({ "filename": p, "status": "added" })),
                Some(old) if old != v => files.push(json!({ "filename": p, "status": "modified" })),
                _ => {}
            }
        }
        for p in from.keys().filter(|p| !to.contains_key(*p)) {
            files.push(json!({ "filename": p, "status": "removed" }));
        }
        // As GitHub: pagination is over commits; the files are on the first page only, and at
        // most 300 for the whole comparison.
        let page = paging.page.unwrap_or(1).max(1);
        files.sort_by(|a, b| a["filename"].as_str().cmp(&b["filename"].as_str()));
        let files: Vec<Value> = if page == 1 {
            files.into_iter().take(300).collect()
        } else {
            vec![]
        };
        Json(json!({ "merge_base_commit": { "sha": mb }, "files": files })).into_response()
    })
}

#[derive(Deserialize)]
struct RefQuery {
    #[serde(rename = "ref")]
    at: Option<String>,
}

async fn contents(
    State(fake): State<FakeGithub>,
    Path((o, r, path)): Path<(String, String, String)>,
    Query(q): Query<RefQuery>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let at =
            q.at.map(|a| repo.branches.get(&a).cloned().unwrap_or(a))
                .unwrap_or_default();
        match repo.commits.get(&at).and_then(|c| c.tree.get(&path)) {
            Some(text) => Json(json!({
                "type": "file",
                "path": path,
                "encoding": "base64",
                "content": base64::engine::general_purpose::STANDARD.encode(text),
            }))
            .into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    })
}

#[derive(Deserialize)]
struct MergePullBody {
    sha: Option<String>,
    merge_method: Option<String>,
}

async fn merge_pull(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<MergePullBody>,
) -> Response {
    fake.with(|i| {
        i.counter += 1;
        let counter = i.counter;
        let Some(repo) = i.repos.get_mut(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(pull) = repo.pulls.get(&n).cloned() else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        if pull.merged {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable (already merged)",
            );
        }
        let head = repo.pull_head(&pull);
        if body.sha.as_deref().is_some_and(|s| s != head) {
            return error(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            );
        }
        let base_tip = repo.branches[&pull.base_ref].clone();
        let mb = repo.merge_base(&base_tip, &head).unwrap_or_default();
        let Some(tree) = repo.merge_trees(&mb, &base_tip, &head) else {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable");
        };
        let parents = if body.merge_method.as_deref() == Some("squash") {
            vec![base_tip]
        } else {
            vec![base_tip, head.clone()]
        };
        let sha = sha_of(counter, &parents, &tree);
        repo.commits.insert(sha.clone(), Commit { parents, tree });
        repo.branches.insert(pull.base_ref.clone(), sha.clone());
        let p = repo.pulls.get_mut(&n).unwrap();
        p.merged = true;
        p.open = false;
        p.frozen_head = Some(head);
        Json(json!({ "sha": sha, "merged": true, "message": "Pull Request successfully merged" })).into_response()
    })
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
}

async fn comment(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<CommentBody>,
) -> Response {
    fake.with(|i| {
        let Some(repo) = i.repos.get_mut(&format!("{o}/{r}")) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        repo.comments.push((n, body.body.clone()));
        (
            StatusCode::CREATED,
            Json(json!({ "id": repo.comments.len(), "body": body.body })),
        )
            .into_response()
    })
}
