//! The fake GitHub's REST handlers: one function per call of SPEC §5.4, answering with GitHub's
//! statuses, messages and shapes (docs.github.com, "REST API endpoints for …": git references,
//! git commits, branches/merging, commits/compare, repository contents, pulls, reviews, issues).
//!
//! Each handler's work runs under the fake's lock on a blocking thread ([`FakeGithub::serve`]):
//! it may run git. What a request names is checked before git sees it — branch names against the
//! fake's own list, SHAs as hex — so a request can never become a git option or revision syntax.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::git::{CommitInfo, FileChange, GitError, Ident};
use super::{FakeGithub, Inner, Pull, RepoState, ReviewRec, error, file_url};

/// A refusal (GitHub's status and message) or the fake's own failure (a 500 naming the git
/// command), short-circuited with `?`.
pub struct Fail(Box<Response>);

impl Fail {
    pub(super) fn new(response: Response) -> Fail {
        Fail(Box::new(response))
    }
}

/// [`repo`] for the other handler modules.
pub(super) fn repo_of<'a>(i: &'a mut Inner, o: &str, r: &str) -> Result<&'a mut RepoState, Fail> {
    repo(i, o, r)
}

/// [`paginate`] of JSON values at `url`.
pub(super) fn paginate_json(
    items: &[Value],
    paging: &Paging,
    default: usize,
    url: &str,
) -> (Vec<Value>, Option<String>) {
    paginate(items, paging, default, url, "")
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<GitError> for Fail {
    fn from(e: GitError) -> Fail {
        Fail(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("fake GitHub: {e}"),
        )))
    }
}

fn fail(status: StatusCode, message: &str) -> Fail {
    Fail(Box::new(error(status, message)))
}

fn not_found() -> Fail {
    fail(StatusCode::NOT_FOUND, "Not Found")
}

fn unprocessable(message: &str) -> Fail {
    fail(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// GitHub's 422 for a body that does not validate.
pub(super) fn validation_failed(resource: &str, field: &str, code: &str) -> Fail {
    Fail(Box::new(
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": "Validation Failed",
                "errors": [{ "resource": resource, "field": field, "code": code }],
                "documentation_url": "https://docs.github.com/rest",
            })),
        )
            .into_response(),
    ))
}

type Answer = Result<Response, Fail>;

fn repo<'a>(i: &'a mut Inner, o: &str, r: &str) -> Result<&'a mut RepoState, Fail> {
    i.repos.get_mut(&format!("{o}/{r}")).ok_or_else(not_found)
}

fn ok(v: Value) -> Answer {
    Ok(Json(v).into_response())
}

fn created(v: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `?page=&per_page=` as GitHub reads them.
#[derive(Deserialize, Default, Clone)]
pub struct Paging {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// One page of `items`, GitHub-style: `per_page` defaults to `default` and is capped at 100, pages
/// count from 1, a page past the end is empty; the `Link` header names next/last (and
/// first/prev past page 1), keeping the request's other query parameters.
fn paginate<T: Clone>(
    items: &[T],
    paging: &Paging,
    default: usize,
    url: &str,
    other: &str,
) -> (Vec<T>, Option<String>) {
    let per_page = paging.per_page.unwrap_or(default).clamp(1, 100);
    let page = paging.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice = items
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .cloned()
        .collect();
    let link_to = |p: usize, rel: &str| format!("<{url}?{other}per_page={per_page}&page={p}>; rel=\"{rel}\"");
    let mut links = vec![];
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    (slice, (!links.is_empty()).then(|| links.join(", ")))
}

pub(super) fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert("link", link);
    }
    response
}

fn person(i: &Ident) -> Value {
    json!({ "name": i.name, "email": i.email, "date": i.date() })
}

/// A commit in the `GET …/git/commits/{sha}` shape.
fn git_commit_json(base: &str, c: &CommitInfo) -> Value {
    json!({
        "sha": c.sha,
        "node_id": format!("C_{}", c.sha),
        "url": format!("{base}/git/commits/{}", c.sha),
        "author": person(&c.author),
        "committer": person(&c.committer),
        "message": c.message,
        "tree": { "sha": c.tree, "url": format!("{base}/git/trees/{}", c.tree) },
        "parents": c.parents.iter().map(|p| json!({ "sha": p, "url": format!("{base}/git/commits/{p}") })).collect::<Vec<_>>(),
        "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null },
    })
}

/// A commit in the `GET …/commits/{ref}` shape (also the merges API's and the compare's).
fn commit_json(base: &str, c: &CommitInfo) -> Value {
    json!({
        "sha": c.sha,
        "node_id": format!("C_{}", c.sha),
        "url": format!("{base}/commits/{}", c.sha),
        "commit": {
            "author": person(&c.author),
            "committer": person(&c.committer),
            "message": c.message,
            "tree": { "sha": c.tree, "url": format!("{base}/git/trees/{}", c.tree) },
            "url": format!("{base}/git/commits/{}", c.sha),
            "comment_count": 0,
        },
        "author": null,
        "committer": null,
        "parents": c.parents.iter().map(|p| json!({ "sha": p, "url": format!("{base}/commits/{p}") })).collect::<Vec<_>>(),
    })
}

fn file_json(f: &FileChange) -> Value {
    let mut v = json!({ "sha": f.sha, "filename": f.filename, "status": f.status });
    if let Some(prev) = &f.previous_filename {
        v["previous_filename"] = json!(prev);
    }
    v
}

/// GitHub lists at most this many files for a whole comparison (docs: "Compare two commits").
const COMPARE_FILES: usize = 300;

fn pull_json(r: &RepoState, number: u64, p: &Pull) -> Value {
    json!({
        "number": number,
        "title": p.title,
        "body": p.body,
        "user": { "login": p.author },
        "state": if p.open { "open" } else { "closed" },
        "draft": p.draft,
        "merged": p.merged,
        "merged_at": p.merged_at,
        "closed_at": p.closed_at,
        "merge_commit_sha": p.merge_commit_sha,
        "head": { "sha": r.pull_head(p), "ref": p.head_ref },
        "base": { "sha": r.branches.get(&p.base_ref).cloned().unwrap_or_default(), "ref": p.base_ref },
    })
}

fn api_base(fake: &FakeGithub, o: &str, r: &str) -> String {
    format!("{}/repos/{o}/{r}", fake.api_url())
}

pub(super) type RepoPath = (String, String);
type NumberPath = (String, String, u64);
pub(super) type NamePath = (String, String, String);

pub async fn get_repo(State(fake): State<FakeGithub>, Path((o, r)): Path<RepoPath>) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        ok(json!({
            "id": 1,
            "name": r,
            "full_name": format!("{o}/{r}"),
            "owner": { "login": o },
            "private": true,
            "visibility": "private",
            "default_branch": repo.default_branch,
            "url": base,
            "html_url": format!("https://github.com/{o}/{r}"),
            "clone_url": file_url(repo.git.path()),
        }))
    })
    .await
}

/// `?state=&page=&per_page=` (not a flattened [`Paging`]: serde's `flatten` cannot read numbers
/// from a query string).
#[derive(Deserialize, Default)]
pub struct PullsQuery {
    state: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// `GET …/pulls`: newest first (GitHub's default `sort=created&direction=desc`), paginated.
pub async fn list_pulls(
    State(fake): State<FakeGithub>,
    Path((o, r)): Path<RepoPath>,
    Query(q): Query<PullsQuery>,
) -> Response {
    let url = format!("{}/pulls", api_base(&fake, &o, &r));
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let state = q.state.unwrap_or_else(|| "open".into());
        let wanted = |p: &Pull| match state.as_str() {
            "open" => Ok(p.open),
            "closed" => Ok(!p.open),
            "all" => Ok(true),
            _ => Err(validation_failed("PullRequest", "state", "invalid")),
        };
        let mut all = vec![];
        for (n, p) in repo.pulls.iter().rev() {
            if wanted(p)? {
                all.push(pull_json(repo, *n, p));
            }
        }
        let paging = Paging {
            page: q.page,
            per_page: q.per_page,
        };
        let (page, link) = paginate(&all, &paging, 30, &url, &format!("state={state}&"));
        Ok(with_link(Json(Value::Array(page)).into_response(), link))
    })
    .await
}

pub async fn get_pull(State(fake): State<FakeGithub>, Path((o, r, n)): Path<NumberPath>) -> Response {
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let p = repo.pulls.get(&n).ok_or_else(not_found)?;
        ok(pull_json(repo, n, p))
    })
    .await
}

/// `PATCH …/pulls/{n}`: `title`, `body`, `state` (`open`/`closed`). Closing freezes the head;
/// reopening follows the branch again (refused when the branch is gone, or the PR was merged).
pub async fn update_pull(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<NumberPath>,
    Json(body): Json<Value>,
) -> Response {
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let head = repo.pull_head(repo.pulls.get(&n).ok_or_else(not_found)?);
        let head_exists = {
            let p = &repo.pulls[&n];
            repo.branches.contains_key(&p.head_ref)
        };
        let p = repo.pulls.get_mut(&n).expect("checked above");
        if let Some(title) = body.get("title") {
            p.title = title
                .as_str()
                .ok_or_else(|| validation_failed("PullRequest", "title", "invalid"))?
                .to_string();
        }
        if let Some(text) = body.get("body") {
            p.body = text.as_str().map(str::to_string);
        }
        match body.get("state").map(|s| s.as_str()) {
            Some(Some("closed")) if p.open => {
                p.open = false;
                p.frozen_head = Some(head);
                p.closed_at = Some(when.date());
            }
            None | Some(Some("closed")) => {}
            Some(Some("open")) => {
                if p.merged {
                    return Err(unprocessable("Pull request is merged and cannot be reopened"));
                }
                if !p.open {
                    if !head_exists {
                        return Err(unprocessable(
                            "state cannot be changed. The head branch of this pull request was deleted.",
                        ));
                    }
                    p.open = true;
                    p.frozen_head = None;
                    p.closed_at = None;
                }
            }
            Some(_) => return Err(validation_failed("PullRequest", "state", "invalid")),
        }
        let p = repo.pulls[&n].clone();
        ok(pull_json(repo, n, &p))
    })
    .await
}

/// `GET …/pulls/{n}/reviews`: every review, in the order submitted, 30 a page by default (up to
/// 100), with `Link` headers.
pub async fn list_reviews(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<NumberPath>,
    Query(paging): Query<Paging>,
) -> Response {
    let url = format!("{}/pulls/{n}/reviews", api_base(&fake, &o, &r));
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        if !repo.pulls.contains_key(&n) {
            return Err(not_found());
        }
        let reviews: Vec<ReviewRec> = repo.reviews.get(&n).cloned().unwrap_or_default();
        let (page, link) = paginate(&reviews, &paging, 30, &url, "");
        let page: Vec<Value> = page
            .iter()
            .map(|rv| {
                json!({
                    "id": rv.id,
                    "node_id": format!("PRR_{}", rv.id),
                    "user": { "login": rv.login },
                    "body": "",
                    "state": rv.state,
                    "commit_id": rv.commit_id,
                    "submitted_at": rv.submitted_at,
                    "author_association": "COLLABORATOR",
                    "html_url": format!("https://github.com/{o}/{r}/pull/{n}#pullrequestreview-{}", rv.id),
                })
            })
            .collect();
        Ok(with_link(Json(Value::Array(page)).into_response(), link))
    })
    .await
}

pub async fn get_permission(State(fake): State<FakeGithub>, Path((o, r, login)): Path<NamePath>) -> Response {
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let p = repo.permissions.get(&login).ok_or_else(not_found)?;
        // GitHub's real answer: "write", not the team-style "push" octocrab's typed model expects.
        ok(json!({ "permission": p, "role_name": p, "user": { "login": login } }))
    })
    .await
}

fn ref_json(base: &str, branch: &str, sha: &str) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "node_id": format!("REF_{branch}"),
        "url": format!("{base}/git/refs/heads/{branch}"),
        "object": { "sha": sha, "type": "commit", "url": format!("{base}/git/commits/{sha}") },
    })
}

pub async fn get_ref(State(fake): State<FakeGithub>, Path((o, r, branch)): Path<NamePath>) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let sha = repo.branches.get(&branch).ok_or_else(not_found)?;
        ok(ref_json(&base, &branch, sha))
    })
    .await
}

/// `POST …/git/refs` `{ref, sha}`: a new branch.
pub async fn create_ref(
    State(fake): State<FakeGithub>,
    Path((o, r)): Path<RepoPath>,
    Json(body): Json<Value>,
) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let (Some(name), Some(sha)) = (
            body.get("ref").and_then(Value::as_str),
            body.get("sha").and_then(Value::as_str),
        ) else {
            return Err(unprocessable("Invalid request.\n\n\"ref\" and \"sha\" are required."));
        };
        if !name.starts_with("refs/") || name.matches('/').count() < 2 {
            return Err(unprocessable(
                "Reference name must start with 'refs/' and have at least two slashes.",
            ));
        }
        let Some(branch) = name.strip_prefix("refs/heads/") else {
            // Tags and other namespaces are not part of what the bots do.
            return Err(unprocessable("The fake GitHub creates branches (refs/heads/…) only"));
        };
        if !repo.git.valid_branch_name(branch)? {
            return Err(unprocessable(&format!("{name} is not a valid ref name.")));
        }
        if repo.branches.contains_key(branch) {
            return Err(unprocessable("Reference already exists"));
        }
        if !repo.git.is_commit(sha)? {
            return Err(unprocessable("Object does not exist"));
        }
        repo.move_branch(branch, sha, &when)?;
        created(ref_json(&base, branch, sha))
    })
    .await
}

/// `PATCH …/git/refs/heads/{branch}` `{sha, force}`: only a fast-forward unless `force`.
pub async fn update_ref(
    State(fake): State<FakeGithub>,
    Path((o, r, branch)): Path<NamePath>,
    Json(body): Json<Value>,
) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let Some(sha) = body.get("sha").and_then(Value::as_str) else {
            return Err(unprocessable("Invalid request.\n\n\"sha\" wasn't supplied."));
        };
        let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
        let Some(current) = repo.branches.get(&branch).cloned() else {
            return Err(unprocessable("Reference does not exist"));
        };
        if !repo.git.is_commit(sha)? {
            return Err(unprocessable("Object does not exist"));
        }
        if !force && !repo.git.is_ancestor(&current, sha)? {
            return Err(unprocessable("Update is not a fast forward"));
        }
        repo.move_branch(&branch, sha, &when)?;
        ok(ref_json(&base, &branch, sha))
    })
    .await
}

/// `POST …/merges` `{base, head, commit_message}`: a real merge commit (two parents) on `base`.
pub async fn merges(State(fake): State<FakeGithub>, Path((o, r)): Path<RepoPath>, Json(body): Json<Value>) -> Response {
    let base_url = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let (Some(base), Some(head)) = (
            body.get("base").and_then(Value::as_str),
            body.get("head").and_then(Value::as_str),
        ) else {
            return Err(unprocessable("Invalid request.\n\n\"base\" and \"head\" are required."));
        };
        let Some(base_tip) = repo.branches.get(base).cloned() else {
            return Err(fail(StatusCode::NOT_FOUND, "Base does not exist"));
        };
        let Some(head_sha) = repo.resolve(head)? else {
            return Err(fail(StatusCode::NOT_FOUND, "Head does not exist"));
        };
        if repo.git.is_ancestor(&head_sha, &base_tip)? {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let Some(tree) = repo.git.merge_tree(&base_tip, &head_sha)? else {
            return Err(fail(StatusCode::CONFLICT, "Merge conflict"));
        };
        let message = body
            .get("commit_message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("Merge {head} into {base}"));
        let sha = repo
            .git
            .commit_tree(&tree, &[base_tip, head_sha], &message, &when, &when)?;
        repo.move_branch(base, &sha, &when)?;
        let info = repo.git.commit(&sha)?;
        created(commit_json(&base_url, &info))
    })
    .await
}

/// A full 40-hex commit id in this repository, or `None`.
fn full_commit(repo: &RepoState, sha: &str) -> Result<Option<String>, GitError> {
    Ok(repo.git.is_commit(sha)?.then(|| sha.to_string()))
}

/// `GET …/git/commits/{sha}`: the commit object (a full SHA, as GitHub's git database API wants).
pub async fn get_git_commit(State(fake): State<FakeGithub>, Path((o, r, sha)): Path<NamePath>) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let sha = full_commit(repo, &sha)?.ok_or_else(not_found)?;
        ok(git_commit_json(&base, &repo.git.commit(&sha)?))
    })
    .await
}

/// An `author`/`committer` object of a create-commit body; `None` when absent.
fn ident_from(v: Option<&Value>, field: &str, default_time: i64) -> Result<Option<Ident>, Fail> {
    let Some(v) = v else { return Ok(None) };
    let bad = || validation_failed("Commit", field, "invalid");
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    let email = v.get("email").and_then(Value::as_str).ok_or_else(bad)?;
    if name.contains(['<', '>', '\n']) || email.contains(['<', '>', '\n']) {
        return Err(bad());
    }
    let (time, offset) = match v.get("date").and_then(Value::as_str) {
        None => (default_time, "+0000".to_string()),
        Some(d) => {
            let t = chrono::DateTime::parse_from_rfc3339(d).map_err(|_| bad())?;
            let secs = t.offset().local_minus_utc();
            let sign = if secs < 0 { '-' } else { '+' };
            let abs = secs.abs();
            (t.timestamp(), format!("{sign}{:02}{:02}", abs / 3600, abs % 3600 / 60))
        }
    };
    Ok(Some(Ident {
        name: name.into(),
        email: email.into(),
        time,
        offset,
    }))
}

/// `POST …/git/commits` `{message, tree, parents, author?, committer?}`: a real commit object
/// (no ref moves). The committer defaults to the author, the author to the token's user now.
pub async fn create_commit(
    State(fake): State<FakeGithub>,
    Path((o, r)): Path<RepoPath>,
    Json(body): Json<Value>,
) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let Some(message) = body.get("message").and_then(Value::as_str) else {
            return Err(unprocessable("Invalid request.\n\n\"message\" wasn't supplied."));
        };
        let Some(tree) = body.get("tree").and_then(Value::as_str) else {
            return Err(unprocessable("Invalid request.\n\n\"tree\" wasn't supplied."));
        };
        let parents: Vec<String> = match body.get("parents") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(ps)) => ps
                .iter()
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| validation_failed("Commit", "parents", "invalid"))?,
            Some(_) => return Err(validation_failed("Commit", "parents", "invalid")),
        };
        if !repo.git.is_tree(tree)? {
            return Err(unprocessable("Tree SHA does not exist"));
        }
        for p in &parents {
            if !repo.git.is_commit(p)? {
                return Err(unprocessable("Parent SHA does not exist or is not a commit object"));
            }
        }
        let author = ident_from(body.get("author"), "author", when.time)?.unwrap_or_else(|| when.clone());
        let committer = ident_from(body.get("committer"), "committer", when.time)?.unwrap_or_else(|| author.clone());
        let sha = repo.git.commit_tree(tree, &parents, message, &author, &committer)?;
        let info = repo.git.commit(&sha)?;
        let mut response = (StatusCode::CREATED, Json(git_commit_json(&base, &info))).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("{base}/git/commits/{sha}")) {
            response.headers_mut().insert("location", location);
        }
        Ok(response)
    })
    .await
}

/// `GET …/commits/{ref}`: a commit named by a branch or a full or abbreviated SHA (422 for
/// anything else, as GitHub answers), with its files (GitHub's first 300).
pub async fn get_commit(State(fake): State<FakeGithub>, Path((o, r, reference)): Path<NamePath>) -> Response {
    let base = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let sha = match repo.resolve(&reference) {
            Ok(Some(sha)) => sha,
            Ok(None) => return Err(unprocessable(&format!("No commit found for SHA: {reference}"))),
            Err(_) => return Err(unprocessable(&format!("No commit found for SHA: {reference}"))),
        };
        let info = repo.git.commit(&sha)?;
        // A root commit's changes are against the empty tree.
        let from = info
            .parents
            .first()
            .cloned()
            .unwrap_or_else(|| "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into());
        let files: Vec<Value> = repo
            .git
            .diff(&from, &sha)?
            .iter()
            .take(COMPARE_FILES)
            .map(file_json)
            .collect();
        let mut v = commit_json(&base, &info);
        v["files"] = Value::Array(files);
        ok(v)
    })
    .await
}

/// `GET …/compare/{base}...{head}`: three dots, so from the merge base to `head`. Commits are
/// paginated (all of them up to 250 without `page`/`per_page`, else 30 a page up to 100); the
/// files are on the first page only, and at most [`COMPARE_FILES`] for the whole comparison.
pub async fn compare(
    State(fake): State<FakeGithub>,
    Path((o, r, basehead)): Path<NamePath>,
    Query(paging): Query<Paging>,
) -> Response {
    let base_url = api_base(&fake, &o, &r);
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let Some((base_name, head_name)) = basehead.split_once("...") else {
            return Err(not_found());
        };
        let (Some(base), Some(head)) = (repo.resolve(base_name)?, repo.resolve(head_name)?) else {
            return Err(not_found());
        };
        let Some(mb) = repo.git.merge_base(&base, &head)? else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                &format!("No common ancestor between {base_name} and {head_name}."),
            ));
        };
        let ahead = repo.git.commits_between(&[&base], &head)?;
        let behind = repo.git.commits_between(&[&head], &base)?.len();
        let status = match (ahead.len(), behind) {
            (0, 0) => "identical",
            (_, 0) => "ahead",
            (0, _) => "behind",
            _ => "diverged",
        };
        let paged = paging.page.is_some() || paging.per_page.is_some();
        let (commits, link) = if paged {
            paginate(&ahead, &paging, 30, &format!("{base_url}/compare/{basehead}"), "")
        } else {
            (ahead.iter().take(250).cloned().collect(), None)
        };
        let commits: Vec<Value> = commits
            .iter()
            .map(|c| repo.git.commit(c).map(|info| commit_json(&base_url, &info)))
            .collect::<Result<_, _>>()?;
        let files: Vec<Value> = if paging.page.unwrap_or(1) <= 1 {
            repo.git
                .diff(&mb, &head)?
                .iter()
                .take(COMPARE_FILES)
                .map(file_json)
                .collect()
        } else {
            vec![]
        };
        let v = json!({
            "url": format!("{base_url}/compare/{basehead}"),
            "status": status,
            "ahead_by": ahead.len(),
            "behind_by": behind,
            "total_commits": ahead.len(),
            "base_commit": commit_json(&base_url, &repo.git.commit(&base)?),
            "merge_base_commit": commit_json(&base_url, &repo.git.commit(&mb)?),
            "commits": commits,
            "files": files,
        });
        Ok(with_link(Json(v).into_response(), link))
    })
    .await
}

#[derive(Deserialize)]
pub struct RefQuery {
    #[serde(rename = "ref")]
    at: Option<String>,
}

/// `GET …/contents/{path}?ref=`: a file of the real tree, base64 in lines of 60 as GitHub sends it.
pub async fn contents(
    State(fake): State<FakeGithub>,
    Path((o, r, path)): Path<NamePath>,
    Query(q): Query<RefQuery>,
) -> Response {
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        let at = q.at.unwrap_or_else(|| repo.default_branch.clone());
        let Some(commit) = repo.resolve(&at).unwrap_or(None) else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                &format!("No commit found for the ref {at}"),
            ));
        };
        let Some((sha, bytes)) = repo.git.file_at(&commit, &path)? else {
            return Err(not_found());
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        ok(json!({
            "type": "file",
            "encoding": "base64",
            "size": bytes.len(),
            "name": path.rsplit('/').next().unwrap_or(&path),
            "path": path,
            "sha": sha,
            "content": wrapped.join("\n") + "\n",
        }))
    })
    .await
}

fn issue_json(repo: &RepoState, n: u64) -> Option<Value> {
    if let Some(issue) = repo.issues.get(&n) {
        return Some(json!({
            "number": n,
            "title": issue.title,
            "body": issue.body,
            "state": if issue.open { "open" } else { "closed" },
            "state_reason": issue.state_reason,
            "closed_at": issue.closed_at,
        }));
    }
    let p = repo.pulls.get(&n)?;
    Some(json!({
        "number": n,
        "title": p.title,
        "body": p.body,
        "user": { "login": p.author },
        "state": if p.open { "open" } else { "closed" },
        "state_reason": null,
        "closed_at": p.closed_at,
        "pull_request": { "merged_at": p.merged_at },
    }))
}

pub async fn get_issue(State(fake): State<FakeGithub>, Path((o, r, n)): Path<NumberPath>) -> Response {
    fake.serve(move |i| {
        let repo = repo(i, &o, &r)?;
        ok(issue_json(repo, n).ok_or_else(not_found)?)
    })
    .await
}

/// `PATCH …/issues/{n}` `{state, state_reason, title, body}`. Closing without a reason is
/// `completed`, reopening is `reopened`; a pull request's number works too, as on GitHub.
pub async fn update_issue(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<NumberPath>,
    Json(body): Json<Value>,
) -> Response {
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let state = match body.get("state") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "open" || s == "closed" => Some(s.clone()),
            Some(_) => return Err(validation_failed("Issue", "state", "invalid")),
        };
        let reason = match body.get("state_reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if matches!(s.as_str(), "completed" | "not_planned" | "reopened") => Some(s.clone()),
            Some(_) => return Err(validation_failed("Issue", "state_reason", "invalid")),
        };
        if let Some(issue) = repo.issues.get_mut(&n) {
            if let Some(title) = body.get("title").and_then(Value::as_str) {
                issue.title = title.into();
            }
            if let Some(text) = body.get("body") {
                issue.body = text.as_str().map(str::to_string);
            }
            match state.as_deref() {
                Some("closed") => {
                    if issue.open {
                        issue.closed_at = Some(when.date());
                    }
                    issue.open = false;
                    issue.state_reason = Some(reason.unwrap_or_else(|| "completed".into()));
                }
                Some("open") => {
                    if !issue.open {
                        issue.state_reason = Some("reopened".into());
                    }
                    issue.open = true;
                    issue.closed_at = None;
                }
                _ => {}
            }
        } else if repo.pulls.contains_key(&n) {
            let head = repo.pull_head(&repo.pulls[&n]);
            let p = repo.pulls.get_mut(&n).expect("checked above");
            match state.as_deref() {
                Some("closed") if p.open => {
                    p.open = false;
                    p.frozen_head = Some(head);
                    p.closed_at = Some(when.date());
                }
                Some("open") if !p.open => {
                    if p.merged {
                        return Err(unprocessable("Pull request is merged and cannot be reopened"));
                    }
                    p.open = true;
                    p.frozen_head = None;
                    p.closed_at = None;
                }
                _ => {}
            }
        } else {
            return Err(not_found());
        }
        ok(issue_json(repo, n).expect("exists"))
    })
    .await
}

/// `PUT …/pulls/{n}/merge` `{sha, merge_method}`: GitHub's merge button, with real git behind it.
pub async fn merge_pull(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<NumberPath>,
    Json(body): Json<Value>,
) -> Response {
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        let pull = repo.pulls.get(&n).cloned().ok_or_else(not_found)?;
        if pull.merged {
            return Err(fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable (already merged)",
            ));
        }
        if !pull.open {
            return Err(fail(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable"));
        }
        let head = repo.pull_head(&pull);
        if body.get("sha").and_then(Value::as_str).is_some_and(|s| s != head) {
            return Err(fail(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            ));
        }
        let Some(base_tip) = repo.branches.get(&pull.base_ref).cloned() else {
            return Err(fail(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable"));
        };
        let Some(tree) = repo.git.merge_tree(&base_tip, &head)? else {
            return Err(fail(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable"));
        };
        let squash = body.get("merge_method").and_then(Value::as_str) == Some("squash");
        let (parents, message) = if squash {
            (vec![base_tip], format!("{} (#{n})", pull.title))
        } else {
            (
                vec![base_tip, head.clone()],
                format!("Merge pull request #{n} from {}", pull.head_ref),
            )
        };
        let sha = repo.git.commit_tree(&tree, &parents, &message, &when, &when)?;
        repo.move_branch(&pull.base_ref, &sha, &when)?;
        // A merge commit made the head reachable (and `move_branch` marked it); a squash does not.
        let p = repo.pulls.get_mut(&n).expect("checked above");
        p.merged = true;
        p.open = false;
        p.frozen_head = Some(head);
        p.merged_at = Some(when.date());
        p.closed_at = Some(when.date());
        p.merge_commit_sha = Some(sha.clone());
        ok(json!({ "sha": sha, "merged": true, "message": "Pull Request successfully merged" }))
    })
    .await
}

/// `POST …/issues/{n}/comments`: on an issue or a pull request that exists (404 otherwise).
pub async fn comment(
    State(fake): State<FakeGithub>,
    Path((o, r, n)): Path<NumberPath>,
    Json(body): Json<Value>,
) -> Response {
    fake.serve(move |i| {
        let when = i.tick();
        let repo = repo(i, &o, &r)?;
        if !repo.pulls.contains_key(&n) && !repo.issues.contains_key(&n) {
            return Err(not_found());
        }
        let Some(text) = body.get("body").and_then(Value::as_str) else {
            return Err(unprocessable("Invalid request.\n\n\"body\" wasn't supplied."));
        };
        repo.comments.push((n, text.to_string()));
        created(json!({ "id": repo.comments.len(), "body": text, "created_at": when.date() }))
    })
    .await
}
