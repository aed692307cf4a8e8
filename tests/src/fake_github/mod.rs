//! A stateful fake of the slice of GitHub's REST API that Gandalf and Bobby use (SPEC §5.4), on
//! loopback, whose commits are real git objects.
//!
//! Each fake repository is a bare git repository in a temporary directory the fake owns (removed
//! when the last handle is dropped; [`git`] drives it), or in a directory the caller names and
//! keeps ([`FakeGithub::start_in`]: the demo's `.dev/demo/github`). Everything the API creates — merges into
//! `gandalf/candidate`, squash commits made with `POST …/git/commits`, fast-forwards of the base —
//! lands in that repository, so a working copy can `git fetch` it from the `clone_url` that
//! `GET /repos/{o}/{r}` reports (a `file://` URL), and tests can check that a step ran on exactly
//! the tested commit. Merges are git's own (`git merge-tree`), compares are `git diff -M` from the
//! merge base, contents are read from the real tree.
//!
//! Around the object store it models what the merge queue's correctness depends on, the way
//! GitHub does it: branches that move only by fast-forward unless forced; pull requests whose head
//! follows their branch until they are closed, and that GitHub marks **Merged** once their head
//! becomes reachable from their base through any ref update; issues with a state and a
//! `state_reason`; reviews on a commit, paginated with `Link` headers; collaborator permissions;
//! and `PUT …/merge` that refuses a stale `sha`. Tests drive it like a team would (push, open a PR,
//! approve) and can race a call: [`FakeGithub::before_next_on`] runs a change (a push to `main`)
//! just before the fake answers the next matching request. Every request is logged so tests can
//! assert that a write happened exactly once.
//!
//! Like GitHub (docs: "Rate limits for the REST API"), every answer — errors included, a 502 too —
//! carries `X-RateLimit-Limit/Remaining/Reset/Used/Resource`, where Reset is the end of the current
//! one-hour window in Unix seconds (so usually far ahead: the very header that made one 502 cost
//! 300 s, issue 14). Tests can make it fail the way GitHub fails: a 5xx on the next requests (to any
//! path, or to one `METHOD /path`), a dropped connection, a primary rate limit (the window used
//! up: 403, `X-RateLimit-Remaining: 0`, "API rate limit exceeded…", until Reset) and a secondary
//! one (403 or 429, "You have exceeded a secondary rate limit…", with or without `Retry-After`).
//!
//! The test-facing methods panic on misuse (an unknown repository, a missing branch): that is a
//! broken test, said at once. The HTTP side never panics on what a client sends; a git failure
//! there (a bug of the fake) is a 500 naming the command.

mod api;
pub mod checks;
pub mod git;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde_json::json;

use git::{Bare, GitError, Ident};

pub const TOKEN: &str = "ghp-test-token";

/// A pull request as GitHub keeps it.
#[derive(Clone, Debug)]
struct Pull {
    title: String,
    body: Option<String>,
    author: String,
    open: bool,
    draft: bool,
    merged: bool,
    merged_at: Option<String>,
    closed_at: Option<String>,
    merge_commit_sha: Option<String>,
    head_ref: String,
    /// The head when it stopped following its branch (merged or closed).
    frozen_head: Option<String>,
    base_ref: String,
}

/// An issue (not a pull request: those are [`Pull`]s, in the same number space).
#[derive(Clone, Debug)]
struct Issue {
    title: String,
    body: Option<String>,
    open: bool,
    state_reason: Option<String>,
    closed_at: Option<String>,
}

/// An issue's (or a pull request's) state as GitHub reports it on `GET …/issues/{n}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueState {
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned`, `reopened`, or none.
    pub state_reason: Option<String>,
}

#[derive(Clone, Debug)]
struct ReviewRec {
    id: u64,
    login: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`.
    state: String,
    /// The pull request's head when the review was submitted.
    commit_id: String,
    submitted_at: String,
}

struct RepoState {
    git: Bare,
    default_branch: String,
    /// The branches, mirrored from the bare repository's `refs/heads` (the fake is their only
    /// writer, and every move goes through [`RepoState::moved`]): reads cost no process.
    branches: BTreeMap<String, String>,
    pulls: BTreeMap<u64, Pull>,
    issues: BTreeMap<u64, Issue>,
    reviews: HashMap<u64, Vec<ReviewRec>>,
    permissions: HashMap<String, String>,
    comments: Vec<(u64, String)>,
    /// Check runs and commit statuses ([`checks`]).
    checks: checks::Checks,
}

impl RepoState {
    fn pull_head(&self, p: &Pull) -> String {
        p.frozen_head
            .clone()
            .unwrap_or_else(|| self.branches.get(&p.head_ref).cloned().unwrap_or_default())
    }

    /// A branch name or a (possibly abbreviated) commit SHA, as GitHub resolves a `ref`.
    fn resolve(&self, reference: &str) -> Result<Option<String>, GitError> {
        if let Some(sha) = self.branches.get(reference) {
            return Ok(Some(sha.clone()));
        }
        self.git.resolve_commit(reference)
    }

    /// Points `branch` at `new` in the bare repository, then does what GitHub does after any ref
    /// update.
    fn move_branch(&mut self, branch: &str, new: &str, when: &Ident) -> Result<(), GitError> {
        let old = self.branches.get(branch).cloned();
        self.git.update_branch(branch, new, old.as_deref())?;
        self.moved(branch, old.as_deref(), new, when)
    }

    /// After `branch` moved from `old` to `new` (by the API, a push or a test): the mirror follows,
    /// and every open pull request into `branch` whose head is now reachable from it is Merged, as
    /// GitHub marks a pull request whose commits were pushed or fast-forwarded into its base.
    fn moved(&mut self, branch: &str, old: Option<&str>, new: &str, when: &Ident) -> Result<(), GitError> {
        self.branches.insert(branch.to_string(), new.to_string());
        let waiting: Vec<(u64, String)> = self
            .pulls
            .iter()
            .filter(|(_, p)| p.open && p.base_ref == branch)
            .map(|(n, p)| (*n, self.pull_head(p)))
            .filter(|(_, head)| !head.is_empty())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        // One `rev-list` for all of them: the commits this update made reachable.
        let newly: HashSet<String> = self.git.commits_between(old.as_slice(), new)?.into_iter().collect();
        for (n, head) in waiting {
            if newly.contains(&head) {
                let p = self.pulls.get_mut(&n).expect("listed above");
                p.merged = true;
                p.open = false;
                p.frozen_head = Some(head);
                p.merged_at = Some(when.date());
                p.closed_at = Some(when.date());
                p.merge_commit_sha = Some(new.to_string());
            }
        }
        Ok(())
    }
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

/// Something a test wants done just before the fake handles the next `METHOD /path` request.
struct Hook {
    on: String,
    run: Box<dyn FnOnce(&FakeGithub) + Send>,
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
    /// The fake's clock: commit dates, review and merge times are [`git::EPOCH`] plus this, so
    /// every commit is distinct and a run is reproducible.
    counter: u64,
    /// Review ids, unique across the fake as on GitHub.
    next_review_id: u64,
    /// Check run ids, unique across the fake.
    next_check_run_id: u64,
    /// Whether the test token is an App's installation token (it may create check runs) rather
    /// than a personal token (the default, which GitHub refuses them).
    token_is_app: bool,
    /// Failures still to inject, in order.
    faults: Vec<Fault>,
    hooks: Vec<Hook>,
    window: Window,
    log: Vec<String>,
    /// When each request of `log` arrived (wall clock: `X-RateLimit-Reset` is wall-clock seconds).
    arrivals: Vec<std::time::SystemTime>,
    /// Time spent answering, summed over requests (a test's hook excluded): what the fake's own
    /// work (real git) adds to a benchmark's figures.
    busy: std::time::Duration,
    /// The bare repositories (`repos/{owner}/{name}.git`) and git's `HOME`; removed on drop
    /// unless the caller chose the directory. Declared last so that it is dropped after everything
    /// that points into it.
    dir: Dir,
}

/// Where the fake keeps its repositories: a temporary directory it removes (tests), or one the
/// caller chose and keeps (the demo's `.dev/`, which people browse and clone from after the run).
enum Dir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Dir {
    fn path(&self) -> &std::path::Path {
        match self {
            Dir::Temp(t) => t.path(),
            Dir::Kept(p) => p,
        }
    }
}

impl Inner {
    fn new(dir: Option<PathBuf>) -> Inner {
        let dir = match dir {
            Some(d) => Dir::Kept(d),
            None => Dir::Temp(
                tempfile::Builder::new()
                    .prefix("fake-github-")
                    .tempdir()
                    .expect("a temporary directory for the fake GitHub's repositories"),
            ),
        };
        std::fs::create_dir_all(dir.path().join("home")).expect("the fake GitHub's git HOME");
        Inner {
            repos: HashMap::new(),
            counter: 0,
            next_review_id: 1_000_000,
            next_check_run_id: 5_000_000,
            token_is_app: false,
            faults: vec![],
            hooks: vec![],
            window: Window {
                limit: DEFAULT_LIMIT,
                used: 0,
                reset: unix_now() + WINDOW_SECS,
            },
            log: vec![],
            arrivals: vec![],
            busy: std::time::Duration::ZERO,
            dir,
        }
    }

    /// The next instant of the fake's clock, as the fake's own identity.
    fn tick(&mut self) -> Ident {
        self.counter += 1;
        Ident::fake(git::EPOCH + self.counter as i64)
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{repo}.git"))
    }

    /// A test's repository; a name the test never created is a broken test.
    fn repo_mut(&mut self, repo: &str) -> &mut RepoState {
        self.repos
            .get_mut(repo)
            .unwrap_or_else(|| panic!("the fake GitHub has no repository {repo}"))
    }

    fn repo(&self, repo: &str) -> &RepoState {
        self.repos
            .get(repo)
            .unwrap_or_else(|| panic!("the fake GitHub has no repository {repo}"))
    }

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

/// A test helper's git failure: the fake itself is broken, say how.
fn must<T>(r: Result<T, GitError>) -> T {
    r.unwrap_or_else(|e| panic!("fake GitHub: {e}"))
}

impl FakeGithub {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts the fake on a chosen address (the mixed load benchmark runs it as its own process,
    /// at an address Gandalf is configured with before it starts).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::start_with(addr, None).await
    }

    /// Starts the fake on a chosen address with its bare repositories under `dir` (created if
    /// missing, never removed): the demo (`deploy/dev.sh demo`) keeps them in `.dev/` so they can
    /// be cloned and browsed after the run. The directory must not hold a previous run's
    /// repositories: the fake's pull requests and reviews live in memory, so it starts from none.
    pub async fn start_in(addr: SocketAddr, dir: &std::path::Path) -> Self {
        Self::start_with(addr, Some(dir.to_path_buf())).await
    }

    async fn start_with(addr: SocketAddr, dir: Option<PathBuf>) -> Self {
        let inner = Arc::new(Mutex::new(Inner::new(dir)));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeGithub { addr, inner };
        let app = Router::new()
            .route("/repos/{o}/{r}", get(api::get_repo))
            .route("/repos/{o}/{r}/pulls", get(api::list_pulls))
            .route("/repos/{o}/{r}/pulls/{n}", get(api::get_pull).patch(api::update_pull))
            .route("/repos/{o}/{r}/pulls/{n}/reviews", get(api::list_reviews))
            .route("/repos/{o}/{r}/pulls/{n}/merge", put(api::merge_pull))
            .route(
                "/repos/{o}/{r}/collaborators/{login}/permission",
                get(api::get_permission),
            )
            .route("/repos/{o}/{r}/git/ref/heads/{*branch}", get(api::get_ref))
            .route("/repos/{o}/{r}/git/refs", post(api::create_ref))
            .route("/repos/{o}/{r}/git/refs/heads/{*branch}", patch(api::update_ref))
            .route("/repos/{o}/{r}/git/commits", post(api::create_commit))
            .route("/repos/{o}/{r}/git/commits/{sha}", get(api::get_git_commit))
            .route("/repos/{o}/{r}/merges", post(api::merges))
            .route("/repos/{o}/{r}/compare/{basehead}", get(api::compare))
            .route("/repos/{o}/{r}/commits/{reference}", get(api::get_commit))
            .route("/repos/{o}/{r}/contents/{*path}", get(api::contents))
            .route(
                "/repos/{o}/{r}/issues/{n}",
                get(api::get_issue).patch(api::update_issue),
            )
            .route("/repos/{o}/{r}/issues/{n}/comments", post(api::comment))
            .route("/repos/{o}/{r}/check-runs", post(checks::create_check_run))
            .route("/repos/{o}/{r}/check-runs/{id}", patch(checks::update_check_run))
            .route("/repos/{o}/{r}/statuses/{sha}", post(checks::create_status))
            .route(
                "/repos/{o}/{r}/commits/{reference}/check-runs",
                get(checks::list_check_runs),
            )
            .route(
                "/repos/{o}/{r}/commits/{reference}/status",
                get(checks::combined_status),
            )
            .layer(axum::middleware::from_fn_with_state(fake.clone(), gate))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        fake
    }

    /// `GITHUB_API_URL` for the bots.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test helper must not turn every later request into a second panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.lock())
    }

    /// Runs a request's work off the async runtime: it runs git, which blocks.
    async fn serve(&self, f: impl FnOnce(&mut Inner) -> Result<Response, api::Fail> + Send + 'static) -> Response {
        let fake = self.clone();
        match tokio::task::spawn_blocking(move || fake.with(f)).await {
            Ok(Ok(r)) => r,
            Ok(Err(fail)) => fail.into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("fake GitHub: {e}")),
        }
    }

    /// Creates `repo` with one commit on `base` (its default branch) holding `files`.
    pub fn create_repo(&self, repo: &str, base: &str, files: &[(&str, &str)]) -> String {
        self.with(|i| {
            assert!(!i.repos.contains_key(repo), "the fake GitHub already has {repo}");
            let dir = i.repo_dir(repo);
            let git = must(Bare::init(&dir, &i.dir.path().join("home"), base));
            let when = i.tick();
            let changes: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
            let sha = must(git.import(base, None, "Initial commit", &changes, &when));
            let mut state = RepoState {
                git,
                default_branch: base.to_string(),
                branches: BTreeMap::new(),
                pulls: BTreeMap::new(),
                issues: BTreeMap::new(),
                reviews: HashMap::new(),
                permissions: HashMap::new(),
                comments: vec![],
                checks: Default::default(),
            };
            must(state.moved(base, None, &sha, &when));
            i.repos.insert(repo.to_string(), state);
            sha
        })
    }

    /// Commits changes on top of `branch` (created from `from` when missing) and moves `branch`
    /// to it, as a `git push` would; `None` deletes a file. Any number of files costs one git
    /// process. Pull requests whose head this makes reachable from their base become Merged.
    pub fn push(&self, repo: &str, branch: &str, from: &str, changes: &[(&str, Option<&str>)]) -> String {
        self.with(|i| {
            let when = i.tick();
            let r = i.repo_mut(repo);
            let old = r.branches.get(branch).cloned();
            let parent = old
                .clone()
                .or_else(|| r.branches.get(from).cloned())
                .unwrap_or_else(|| panic!("{repo} has neither {branch} nor {from} to start from"));
            let message = format!("Change {branch}");
            let sha = must(r.git.import(branch, Some(&parent), &message, changes, &when));
            must(r.moved(branch, old.as_deref(), &sha, &when));
            sha
        })
    }

    /// Opens pull request `number` from `head_ref` into `base_ref`.
    pub fn open_pull(&self, repo: &str, number: u64, title: &str, author: &str, head_ref: &str, base_ref: &str) {
        self.with(|i| {
            let r = i.repo_mut(repo);
            assert!(
                !r.issues.contains_key(&number),
                "#{number} of {repo} is an issue: pull requests and issues share numbers"
            );
            r.pulls.insert(
                number,
                Pull {
                    title: title.into(),
                    body: None,
                    author: author.into(),
                    open: true,
                    draft: false,
                    merged: false,
                    merged_at: None,
                    closed_at: None,
                    merge_commit_sha: None,
                    head_ref: head_ref.into(),
                    frozen_head: None,
                    base_ref: base_ref.into(),
                },
            );
        })
    }

    /// The pull request's description (GitHub's `body`; `None` is an empty description).
    pub fn set_pull_body(&self, repo: &str, number: u64, body: Option<&str>) {
        self.with(|i| i.repo_mut(repo).pulls.get_mut(&number).expect("a pull request").body = body.map(Into::into))
    }

    pub fn set_draft(&self, repo: &str, number: u64, draft: bool) {
        self.with(|i| i.repo_mut(repo).pulls.get_mut(&number).expect("a pull request").draft = draft)
    }

    pub fn close_pull(&self, repo: &str, number: u64) {
        self.with(|i| {
            let when = i.tick();
            let r = i.repo_mut(repo);
            let head = r.pull_head(&r.pulls[&number]);
            let p = r.pulls.get_mut(&number).expect("a pull request");
            p.open = false;
            p.frozen_head = Some(head);
            p.closed_at = Some(when.date());
        })
    }

    /// Opens issue `number` (an issue, not a pull request).
    pub fn open_issue(&self, repo: &str, number: u64, title: &str) {
        self.with(|i| {
            let r = i.repo_mut(repo);
            assert!(
                !r.pulls.contains_key(&number),
                "#{number} of {repo} is a pull request: pull requests and issues share numbers"
            );
            r.issues.insert(
                number,
                Issue {
                    title: title.into(),
                    body: None,
                    open: true,
                    state_reason: None,
                    closed_at: None,
                },
            );
        })
    }

    /// The state of issue (or pull request) `number`, `None` when there is none.
    pub fn issue(&self, repo: &str, number: u64) -> Option<IssueState> {
        self.with(|i| {
            let r = i.repo(repo);
            if let Some(issue) = r.issues.get(&number) {
                return Some(IssueState {
                    state: if issue.open { "open" } else { "closed" }.into(),
                    state_reason: issue.state_reason.clone(),
                });
            }
            r.pulls.get(&number).map(|p| IssueState {
                state: if p.open { "open" } else { "closed" }.into(),
                state_reason: None,
            })
        })
    }

    /// `login` approves the pull request's current head; returns the review's id.
    pub fn approve(&self, repo: &str, number: u64, login: &str) -> u64 {
        self.review(repo, number, login, "APPROVED")
    }

    /// `login` submits a review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`) on the pull
    /// request's current head; returns its id.
    pub fn review(&self, repo: &str, number: u64, login: &str, state: &str) -> u64 {
        assert!(
            matches!(state, "APPROVED" | "CHANGES_REQUESTED" | "COMMENTED"),
            "a submitted review is APPROVED, CHANGES_REQUESTED or COMMENTED, not {state}"
        );
        self.with(|i| {
            let when = i.tick();
            i.next_review_id += 1;
            let id = i.next_review_id;
            let r = i.repo_mut(repo);
            let head = r.pull_head(r.pulls.get(&number).expect("a pull request"));
            r.reviews.entry(number).or_default().push(ReviewRec {
                id,
                login: login.into(),
                state: state.into(),
                commit_id: head,
                submitted_at: when.date(),
            });
            id
        })
    }

    /// Dismisses a review, named by its id or by its author (their latest approval or change
    /// request), as a maintainer does; it stays in the list as `DISMISSED`. Returns its id.
    pub fn dismiss_review(&self, repo: &str, number: u64, id_or_login: &str) -> u64 {
        self.with(|i| {
            let reviews = i.repo_mut(repo).reviews.entry(number).or_default();
            let target = reviews
                .iter_mut()
                .rev()
                .find(|rv| {
                    rv.id.to_string() == id_or_login
                        || (rv.login == id_or_login && matches!(rv.state.as_str(), "APPROVED" | "CHANGES_REQUESTED"))
                })
                .unwrap_or_else(|| panic!("no review {id_or_login} to dismiss on #{number}"));
            target.state = "DISMISSED".into();
            target.id
        })
    }

    pub fn set_permission(&self, repo: &str, login: &str, permission: &str) {
        self.with(|i| {
            i.repo_mut(repo).permissions.insert(login.into(), permission.into());
        })
    }

    /// Moves a branch the way a (force) push would, with GitHub's bookkeeping after it (pull
    /// requests now contained in their base are Merged) and no webhook.
    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        self.with(|i| {
            let when = i.tick();
            let r = i.repo_mut(repo);
            assert!(must(r.git.is_commit(sha)), "no commit {sha} in {repo}");
            must(r.move_branch(branch, sha, &when));
        })
    }

    /// Runs `f` just before the fake handles the next request to `what` (`METHOD /path`, as in
    /// [`FakeGithub::log`]) — e.g. a push to `main` right before the landing's
    /// `PATCH /repos/{o}/{r}/git/refs/heads/main`. The request is logged first, then `f` runs, then
    /// the request is answered (faults queued for it apply as usual).
    pub fn before_next_on(&self, what: &str, f: impl FnOnce(&FakeGithub) + Send + 'static) {
        self.with(|i| {
            i.hooks.push(Hook {
                on: what.to_string(),
                run: Box::new(f),
            })
        })
    }

    /// Time spent answering so far, summed over requests (hooks excluded).
    pub fn busy(&self) -> std::time::Duration {
        self.with(|i| i.busy)
    }

    /// How many requests so far were `METHOD /path`.
    pub fn calls_to(&self, what: &str) -> usize {
        self.with(|i| i.log.iter().filter(|l| l.as_str() == what).count())
    }

    pub fn branch(&self, repo: &str, branch: &str) -> Option<String> {
        self.with(|i| i.repos.get(repo)?.branches.get(branch).cloned())
    }

    /// The files of a commit with their text.
    pub fn tree(&self, repo: &str, sha: &str) -> BTreeMap<String, String> {
        self.with(|i| must(i.repo(repo).git.files(sha)))
    }

    /// The files of a commit with their text (the same as [`FakeGithub::tree`]).
    pub fn commit_files(&self, repo: &str, sha: &str) -> BTreeMap<String, String> {
        self.tree(repo, sha)
    }

    /// The id of a commit's tree.
    pub fn tree_sha(&self, repo: &str, sha: &str) -> String {
        self.with(|i| must(i.repo(repo).git.tree_of(sha)))
    }

    pub fn parents(&self, repo: &str, sha: &str) -> Vec<String> {
        self.with(|i| must(i.repo(repo).git.commit(sha)).parents)
    }

    /// A commit's message.
    pub fn message(&self, repo: &str, sha: &str) -> String {
        self.with(|i| must(i.repo(repo).git.commit(sha)).message)
    }

    /// Whether commit `ancestor` is reachable from `of` (a commit is its own ancestor).
    pub fn is_ancestor(&self, repo: &str, ancestor: &str, of: &str) -> bool {
        self.with(|i| must(i.repo(repo).git.is_ancestor(ancestor, of)))
    }

    /// The bare repository behind `repo`.
    pub fn repo_path(&self, repo: &str) -> PathBuf {
        self.with(|i| i.repo(repo).git.path().to_path_buf())
    }

    /// The `clone_url` `GET /repos/{o}/{r}` reports: a `file://` URL of the bare repository.
    pub fn clone_url(&self, repo: &str) -> String {
        file_url(&self.repo_path(repo))
    }

    pub fn comments(&self, repo: &str, number: u64) -> Vec<String> {
        self.with(|i| {
            i.repo(repo)
                .comments
                .iter()
                .filter(|(n, _)| *n == number)
                .map(|(_, b)| b.clone())
                .collect()
        })
    }

    pub fn is_merged(&self, repo: &str, number: u64) -> bool {
        self.with(|i| i.repo(repo).pulls.get(&number).expect("a pull request").merged)
    }

    /// Whether pull request `number` is open.
    pub fn is_open(&self, repo: &str, number: u64) -> bool {
        self.with(|i| i.repo(repo).pulls.get(&number).expect("a pull request").open)
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

fn file_url(path: &std::path::Path) -> String {
    url::Url::from_file_path(path)
        .map(String::from)
        .unwrap_or_else(|_| format!("file://{}", path.display()))
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

/// Every request passes here: logged, raced by a test's hook, counted against the window, failed
/// as told, checked for credentials; every answer leaves with the rate-limit headers of the window.
async fn gate(
    State(fake): State<FakeGithub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!("{method} {}", uri.path());
    let hook = fake.with(|i| {
        i.log.push(line.clone());
        i.arrivals.push(std::time::SystemTime::now());
        let at = i.hooks.iter().position(|h| h.on == line)?;
        Some(i.hooks.remove(at).run)
    });
    if let Some(run) = hook {
        // Outside the lock (the hook calls the fake), off the runtime (it runs git).
        let racer = fake.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || run(&racer)).await {
            return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("a test's hook failed: {e}"));
        }
    }
    let answering = std::time::Instant::now();
    let verdict = fake.with(|i| {
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
    for (name, value) in fake.with(|i| {
        i.busy += answering.elapsed();
        i.rate_headers()
    }) {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
