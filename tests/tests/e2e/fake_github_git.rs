//! The fake GitHub itself (`bg_tests::fake_github`): its commits are real git objects in bare
//! repositories, so what the API creates — merges into `gandalf/candidate`, squash commits,
//! fast-forwards of the base — can be fetched by a working copy from the `clone_url` it reports.
//! These tests hold the fake to GitHub's documented answers (statuses, messages, the 300-file cap
//! of a comparison, review pagination), since the bots' tests are only as strict as it is.
//! Requests go over HTTP as the bots send them; the git side is checked with the `git` CLI.

use std::collections::BTreeMap;

use bg_tests::fake_github::{FakeGithub, IssueState, TOKEN};
use bg_tests::git;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::github::{Auth, CommitSha, Github, RepoName, RetryPolicy};

const REPO: &str = "acme/platform";
const PATCH_MAIN: &str = "PATCH /repos/acme/platform/git/refs/heads/main";

/// A raw HTTP client of the fake, to see statuses, messages and headers as GitHub sends them.
struct Api {
    fake: FakeGithub,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    body: Value,
    link: Option<String>,
}

impl Api {
    async fn new() -> Api {
        let fake = FakeGithub::start().await;
        fake.create_repo(
            REPO,
            "main",
            &[("README.md", "hello\n"), ("services/billing/main.rs", "fn main() {}\n")],
        );
        Api {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}/repos/{REPO}{path}", self.fake.api_url()))
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let link = resp.headers().get("link").map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, body, link }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// `gandalf/candidate` at main's tip with `head` merged in, as Gandalf makes it.
    async fn candidate(&self, head: &str) -> String {
        let tip = self.fake.branch(REPO, "main").unwrap();
        let r = self
            .post(
                "/git/refs",
                json!({ "ref": "refs/heads/gandalf/candidate", "sha": tip }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self
            .post(
                "/merges",
                json!({ "base": "gandalf/candidate", "head": head, "commit_message": "Merge pull request #7 from feature" }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["sha"].as_str().unwrap().to_string()
    }
}

fn message(r: &Reply) -> &str {
    r.body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn merges_are_real_two_parent_commits_with_409_on_conflict_and_204_when_contained() {
    let api = Api::new().await;
    let fake = &api.fake;
    let head = fake.push(
        REPO,
        "feature",
        "main",
        &[("services/billing/main.rs", Some("fn main() { pay() }\n"))],
    );
    let main_tip = fake.push(REPO, "main", "main", &[("docs/guide.md", Some("guide\n"))]);
    assert_eq!(head.len(), 40, "real SHAs: {head}");

    let candidate = api.candidate(&head).await;
    assert_eq!(fake.branch(REPO, "gandalf/candidate").unwrap(), candidate);
    assert_eq!(fake.parents(REPO, &candidate), vec![main_tip.clone(), head.clone()]);
    let files = fake.commit_files(REPO, &candidate);
    assert_eq!(files["services/billing/main.rs"], "fn main() { pay() }\n");
    assert_eq!(files["docs/guide.md"], "guide\n");
    // The object in the bare repository is what the API said.
    let bare = fake.repo_path(REPO);
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/gandalf/candidate"]), candidate);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", &candidate]),
        "Merge pull request #7 from feature"
    );
    let got = api.get(&format!("/git/commits/{candidate}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["tree"]["sha"], fake.tree_sha(REPO, &candidate));
    assert_eq!(got.body["parents"][1]["sha"], head);

    // Merging it again: nothing to do.
    let again = api
        .post("/merges", json!({ "base": "gandalf/candidate", "head": head }))
        .await;
    assert_eq!((again.status, &again.body), (204, &Value::Null));
    // By branch name too.
    let by_name = api
        .post("/merges", json!({ "base": "gandalf/candidate", "head": "feature" }))
        .await;
    assert_eq!(by_name.status, 204);

    // Both sides changed README.md differently: a conflict, and the branch does not move.
    let clash = fake.push(REPO, "clash", "main", &[("README.md", Some("clash\n"))]);
    fake.push(REPO, "gandalf/candidate", "main", &[("README.md", Some("candidate\n"))]);
    let before = fake.branch(REPO, "gandalf/candidate").unwrap();
    let conflict = api
        .post("/merges", json!({ "base": "gandalf/candidate", "head": clash }))
        .await;
    assert_eq!((conflict.status, message(&conflict)), (409, "Merge conflict"));
    assert_eq!(fake.branch(REPO, "gandalf/candidate").unwrap(), before);

    let no_base = api.post("/merges", json!({ "base": "nope", "head": head })).await;
    assert_eq!((no_base.status, message(&no_base)), (404, "Base does not exist"));
    let no_head = api
        .post("/merges", json!({ "base": "main", "head": "0".repeat(40) }))
        .await;
    assert_eq!((no_head.status, message(&no_head)), (404, "Head does not exist"));
}

#[tokio::test]
async fn refs_are_created_once_and_move_by_fast_forward_unless_forced() {
    let api = Api::new().await;
    let fake = &api.fake;
    let root = fake.branch(REPO, "main").unwrap();
    let sibling = fake.push(REPO, "other", "main", &[("b.txt", Some("b\n"))]);
    let ahead = fake.push(REPO, "main", "main", &[("a.txt", Some("a\n"))]);

    let r = api.get("/git/ref/heads/main").await;
    assert_eq!((r.status, &r.body["object"]["sha"]), (200, &json!(ahead)));
    assert_eq!(api.get("/git/ref/heads/nope").await.status, 404);

    let exists = api
        .post("/git/refs", json!({ "ref": "refs/heads/main", "sha": root }))
        .await;
    assert_eq!((exists.status, message(&exists)), (422, "Reference already exists"));
    let bad_name = api.post("/git/refs", json!({ "ref": "main", "sha": root })).await;
    assert_eq!(bad_name.status, 422);
    let unknown = api
        .post("/git/refs", json!({ "ref": "refs/heads/x", "sha": "1".repeat(40) }))
        .await;
    assert_eq!(unknown.status, 422);

    // Backwards is not a fast-forward: refused, and main stays.
    let back = api
        .patch("/git/refs/heads/main", json!({ "sha": root, "force": false }))
        .await;
    assert_eq!((back.status, message(&back)), (422, "Update is not a fast forward"));
    assert_eq!(fake.branch(REPO, "main").unwrap(), ahead);
    // A sibling is not one either.
    let side = api.patch("/git/refs/heads/main", json!({ "sha": sibling })).await;
    assert_eq!((side.status, message(&side)), (422, "Update is not a fast forward"));
    // Forced, it moves.
    let forced = api
        .patch("/git/refs/heads/main", json!({ "sha": root, "force": true }))
        .await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    assert_eq!(fake.branch(REPO, "main").unwrap(), root);
    assert_eq!(git(&fake.repo_path(REPO), &["rev-parse", "refs/heads/main"]), root);
    // Forward again: a fast-forward needs no force.
    let forward = api.patch("/git/refs/heads/main", json!({ "sha": ahead })).await;
    assert_eq!(forward.status, 200);

    let unknown = api
        .patch("/git/refs/heads/main", json!({ "sha": "2".repeat(40), "force": true }))
        .await;
    assert_eq!((unknown.status, message(&unknown)), (422, "Object does not exist"));
    let missing = api.patch("/git/refs/heads/nope", json!({ "sha": ahead })).await;
    assert_eq!((missing.status, message(&missing)), (422, "Reference does not exist"));
}

#[tokio::test]
async fn a_comparison_lists_at_most_300_files_even_of_a_400_file_change() {
    let api = Api::new().await;
    let fake = &api.fake;
    let root = fake.branch(REPO, "main").unwrap();
    let contents: Vec<(String, String)> = (0..400)
        .map(|n| (format!("services/s{n:03}/main.rs"), format!("// {n}\n")))
        .collect();
    let changes: Vec<(&str, Option<&str>)> = contents.iter().map(|(p, c)| (p.as_str(), Some(c.as_str()))).collect();
    let head = fake.push(REPO, "wide", "main", &changes);
    assert_eq!(
        fake.commit_files(REPO, &head).len(),
        402,
        "one commit holds all 400 new files"
    );
    let main_tip = fake.push(REPO, "main", "main", &[("docs/a.md", Some("a\n"))]);

    let r = api.get(&format!("/compare/main...{head}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let files = r.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 300, "GitHub's cap for the whole comparison");
    assert!(files.iter().all(|f| f["status"] == "added"));
    assert_eq!(r.body["merge_base_commit"]["sha"], root);
    assert_eq!(
        (&r.body["status"], &r.body["ahead_by"], &r.body["behind_by"]),
        (&json!("diverged"), &json!(1), &json!(1))
    );
    assert!(
        !files.iter().any(|f| f["filename"] == "docs/a.md"),
        "three dots: main's own change is not the head's"
    );
    // Files are on the first page only.
    let page2 = api.get(&format!("/compare/main...{head}?per_page=1&page=2")).await;
    assert_eq!(page2.body["files"], json!([]));

    // Gandalf's client reads the cap as "may be cut short".
    let gh = Github::new(
        &fake.api_url(),
        Auth::Token(SecretString::from(TOKEN)),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let changed = gh
        .changed_files(
            &RepoName::parse(REPO).unwrap(),
            &main_tip.parse::<CommitSha>().unwrap(),
            &head.parse::<CommitSha>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(changed.paths.len(), 300);
    assert!(!changed.complete);

    // Renames and removals as GitHub names them.
    let moved = fake.push(
        REPO,
        "moves",
        "main",
        &[
            ("services/billing/main.rs", None),
            ("services/payments/main.rs", Some("fn main() {}\n")),
            ("README.md", None),
        ],
    );
    let r = api.get(&format!("/compare/main...{moved}")).await;
    assert_eq!(
        r.body["files"],
        json!([
            { "filename": "README.md", "status": "removed", "sha": "0".repeat(40) },
            {
                "filename": "services/payments/main.rs",
                "status": "renamed",
                "previous_filename": "services/billing/main.rs",
                "sha": r.body["files"][1]["sha"],
            },
        ])
    );
    assert_eq!(r.body["status"], "ahead");
    assert_eq!(api.get("/compare/main..moves").await.status, 404);
}

#[tokio::test]
async fn a_squash_commit_is_made_with_git_commits_and_closing_is_not_merging() {
    let api = Api::new().await;
    let fake = &api.fake;
    let head = fake.push(REPO, "feature", "main", &[("services/billing/main.rs", Some("v2\n"))]);
    fake.open_pull(REPO, 7, "Pay faster", "alice", "feature", "main");
    fake.set_pull_body(REPO, 7, Some("Fixes #12"));
    fake.open_issue(REPO, 12, "Payments are slow");
    let base = fake.push(REPO, "main", "main", &[("docs/guide.md", Some("guide\n"))]);
    let candidate = api.candidate(&head).await;
    let tree = api.get(&format!("/git/commits/{candidate}")).await.body["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_string();

    let made = api
        .post(
            "/git/commits",
            json!({
                "message": "Pay faster (#7)\n\nFixes #12",
                "tree": tree,
                "parents": [base],
                "author": { "name": "Alice", "email": "alice@example.com", "date": "2024-05-01T12:00:00+02:00" },
            }),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let squash = made.body["sha"].as_str().unwrap().to_string();
    assert_eq!(made.body["tree"]["sha"], tree);
    assert_eq!(made.body["author"]["date"], "2024-05-01T12:00:00+02:00");
    assert_eq!(
        made.body["committer"]["name"], "Alice",
        "the committer defaults to the author"
    );
    assert_eq!(fake.parents(REPO, &squash), vec![base.clone()]);
    assert_eq!(fake.commit_files(REPO, &squash), fake.commit_files(REPO, &candidate));
    assert_eq!(fake.message(REPO, &squash), "Pay faster (#7)\n\nFixes #12");
    assert_eq!(
        git(&fake.repo_path(REPO), &["log", "-1", "--format=%an <%ae> %aI", &squash]),
        "Alice <alice@example.com> 2024-05-01T12:00:00+02:00"
    );
    assert_eq!(api.get(&format!("/git/commits/{squash}")).await.status, 200);
    assert_eq!(api.get(&format!("/git/commits/{}", "3".repeat(40))).await.status, 404);

    let no_tree = api
        .post(
            "/git/commits",
            json!({ "message": "m", "tree": "4".repeat(40), "parents": [base] }),
        )
        .await;
    assert_eq!((no_tree.status, message(&no_tree)), (422, "Tree SHA does not exist"));
    let no_parent = api
        .post(
            "/git/commits",
            json!({ "message": "m", "tree": tree, "parents": ["5".repeat(40)] }),
        )
        .await;
    assert_eq!(no_parent.status, 422);
    let a_tree_as_parent = api
        .post(
            "/git/commits",
            json!({ "message": "m", "tree": tree, "parents": [tree] }),
        )
        .await;
    assert_eq!(a_tree_as_parent.status, 422);
    let no_message = api.post("/git/commits", json!({ "tree": tree })).await;
    assert_eq!(no_message.status, 422);

    // Landing the squash commit does not make the PR's head reachable: still open, not merged.
    let landed = api
        .patch("/git/refs/heads/main", json!({ "sha": squash, "force": false }))
        .await;
    assert_eq!(landed.status, 200);
    let pr = api.get("/pulls/7").await.body;
    assert_eq!(
        (&pr["state"], &pr["merged"], &pr["body"]),
        (&json!("open"), &json!(false), &json!("Fixes #12"))
    );
    // Gandalf closes it, and the issue its body closes.
    let closed = api.patch("/pulls/7", json!({ "state": "closed" })).await;
    assert_eq!(closed.status, 200);
    assert_eq!(
        (&closed.body["state"], &closed.body["merged"]),
        (&json!("closed"), &json!(false))
    );
    assert!(!fake.is_merged(REPO, 7) && !fake.is_open(REPO, 7));
    // A closed PR's head stays where it was closed.
    fake.push(REPO, "feature", "main", &[("late.txt", Some("late\n"))]);
    assert_eq!(api.get("/pulls/7").await.body["head"]["sha"], head);

    assert_eq!(
        fake.issue(REPO, 12),
        Some(IssueState {
            state: "open".into(),
            state_reason: None
        })
    );
    let issue = api
        .patch("/issues/12", json!({ "state": "closed", "state_reason": "completed" }))
        .await;
    assert_eq!((issue.status, &issue.body["state"]), (200, &json!("closed")));
    assert_eq!(
        fake.issue(REPO, 12),
        Some(IssueState {
            state: "closed".into(),
            state_reason: Some("completed".into())
        })
    );
    let bad = api.patch("/issues/12", json!({ "state": "done" })).await;
    assert_eq!(bad.status, 422);
    assert_eq!(api.patch("/issues/99", json!({ "state": "closed" })).await.status, 404);
}

#[tokio::test]
async fn the_clone_url_serves_a_candidate_by_sha_to_a_separate_repository() {
    let api = Api::new().await;
    let fake = &api.fake;
    let head = fake.push(REPO, "feature", "main", &[("services/billing/main.rs", Some("v2\n"))]);
    let older = fake.branch(REPO, "main").unwrap();
    fake.push(REPO, "main", "main", &[("docs/guide.md", Some("guide\n"))]);
    let candidate = api.candidate(&head).await;
    // The candidate is no branch's tip any more: fetched by SHA as a reachable commit.
    fake.push(REPO, "gandalf/candidate", "main", &[("later.txt", Some("later\n"))]);

    let repo = api.get("").await.body;
    assert_eq!(repo["full_name"], REPO);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["private"], true);
    let url = repo["clone_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("file://"), "{url}");
    assert_eq!(url, fake.clone_url(REPO));

    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror.git");
    std::fs::create_dir(&mirror).unwrap();
    git(&mirror, &["init", "--quiet", "--bare"]);
    git(&mirror, &["fetch", "--quiet", "--no-tags", &url, &candidate, &older]);
    assert_eq!(git(&mirror, &["cat-file", "-t", &candidate]), "commit");
    assert_eq!(
        git(&mirror, &["rev-parse", &format!("{candidate}^{{tree}}")]),
        fake.tree_sha(REPO, &candidate)
    );

    // A working copy of exactly the candidate, with the PR's files.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    git(&copy, &["init", "--quiet"]);
    git(
        &copy,
        &["fetch", "--quiet", "--no-tags", mirror.to_str().unwrap(), &candidate],
    );
    git(&copy, &["checkout", "--quiet", "--detach", &candidate]);
    assert_eq!(git(&copy, &["rev-parse", "HEAD"]), candidate);
    assert_eq!(
        std::fs::read_to_string(copy.join("services/billing/main.rs")).unwrap(),
        "v2\n"
    );
    assert_eq!(std::fs::read_to_string(copy.join("docs/guide.md")).unwrap(), "guide\n");
    assert!(!copy.join("later.txt").exists());

    // Contents and commits read the same objects.
    let file = api
        .get(&format!("/contents/services/billing/main.rs?ref={candidate}"))
        .await;
    assert_eq!((file.status, &file.body["encoding"]), (200, &json!("base64")));
    assert_eq!(
        api.get(&format!("/contents/nope.txt?ref={candidate}")).await.status,
        404
    );
    let short = api.get(&format!("/commits/{}", &candidate[..10])).await;
    assert_eq!(short.body["sha"], candidate);
    assert_eq!(api.get("/commits/not-a-ref").await.status, 422);
    let gh = Github::new(
        &fake.api_url(),
        Auth::Token(SecretString::from(TOKEN)),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let text = gh
        .file_at(
            &RepoName::parse(REPO).unwrap(),
            "services/billing/main.rs",
            &candidate.parse::<CommitSha>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(text.as_deref(), Some("v2\n"));
}

#[tokio::test]
async fn a_pull_request_fast_forwarded_into_its_base_is_merged_and_a_closed_one_is_not() {
    let api = Api::new().await;
    let fake = &api.fake;
    let head = fake.push(REPO, "feature", "main", &[("a.txt", Some("a\n"))]);
    fake.open_pull(REPO, 7, "A", "alice", "feature", "main");
    fake.push(REPO, "other", "main", &[("b.txt", Some("b\n"))]);
    fake.open_pull(REPO, 8, "B", "bob", "other", "main");
    fake.push(REPO, "main", "main", &[("c.txt", Some("c\n"))]);
    let candidate = api.candidate(&head).await;
    assert!(
        !fake.is_merged(REPO, 7),
        "a merge into the candidate branch merges nothing"
    );

    let landed = api.patch("/git/refs/heads/main", json!({ "sha": candidate })).await;
    assert_eq!(landed.status, 200);
    let pr = api.get("/pulls/7").await.body;
    assert_eq!((&pr["state"], &pr["merged"]), (&json!("closed"), &json!(true)));
    assert_eq!(pr["merge_commit_sha"], candidate);
    assert_eq!(pr["head"]["sha"], head);
    assert!(pr["merged_at"].is_string());
    assert!(fake.is_ancestor(REPO, &head, &candidate));

    let closed = api.patch("/pulls/8", json!({ "state": "closed" })).await;
    assert_eq!(
        (&closed.body["state"], &closed.body["merged"]),
        (&json!("closed"), &json!(false))
    );
    assert!(closed.body["merged_at"].is_null());
    // Reopened, it follows its branch again; a merged one cannot be reopened.
    assert_eq!(
        api.patch("/pulls/8", json!({ "state": "open" })).await.body["state"],
        "open"
    );
    assert_eq!(api.patch("/pulls/7", json!({ "state": "open" })).await.status, 422);
    // Listing open pull requests sees only #8.
    let open = api.get("/pulls?state=open").await.body;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["number"], 8);
    // Newest first, paged with `Link` like every list.
    let all = api.get("/pulls?state=all&per_page=1").await;
    assert_eq!(all.body[0]["number"], 8);
    assert!(all.link.unwrap().contains("state=all&per_page=1&page=2>; rel=\"next\""));
    assert_eq!(api.get("/pulls?state=all&per_page=1&page=2").await.body[0]["number"], 7);
    assert_eq!(api.get("/pulls?state=merged").await.status, 422);
}

#[tokio::test]
async fn reviews_are_listed_as_github_pages_them() {
    let api = Api::new().await;
    let fake = &api.fake;
    let first = fake.push(REPO, "feature", "main", &[("a.txt", Some("a\n"))]);
    fake.open_pull(REPO, 7, "A", "alice", "feature", "main");
    let approval = fake.approve(REPO, 7, "bob");
    for n in 0..148 {
        fake.review(REPO, 7, &format!("reviewer{n}"), "COMMENTED");
    }
    let second = fake.push(REPO, "feature", "main", &[("a.txt", Some("a2\n"))]);
    fake.review(REPO, 7, "carol", "CHANGES_REQUESTED");
    assert_eq!(fake.dismiss_review(REPO, 7, "bob"), approval);

    let page1 = api.get("/pulls/7/reviews?per_page=100").await;
    let reviews = page1.body.as_array().unwrap();
    assert_eq!(reviews.len(), 100);
    let link = page1.link.unwrap();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("page=2>; rel=\"last\""), "{link}");
    assert_eq!(
        (
            &reviews[0]["id"],
            &reviews[0]["user"]["login"],
            &reviews[0]["state"],
            &reviews[0]["commit_id"]
        ),
        (&json!(approval), &json!("bob"), &json!("DISMISSED"), &json!(first))
    );
    assert!(reviews[0]["submitted_at"].is_string());
    let page2 = api.get("/pulls/7/reviews?per_page=100&page=2").await;
    let rest = page2.body.as_array().unwrap();
    assert_eq!(rest.len(), 50);
    assert!(!page2.link.unwrap().contains("rel=\"next\""));
    let last = &rest[49];
    assert_eq!(
        (&last["user"]["login"], &last["state"], &last["commit_id"]),
        (&json!("carol"), &json!("CHANGES_REQUESTED"), &json!(second))
    );
    // 30 by default; at most 100 whatever is asked; a page past the end is empty.
    assert_eq!(api.get("/pulls/7/reviews").await.body.as_array().unwrap().len(), 30);
    assert_eq!(
        api.get("/pulls/7/reviews?per_page=500")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        100
    );
    assert_eq!(api.get("/pulls/7/reviews?page=9&per_page=100").await.body, json!([]));
    let ids: Vec<u64> = reviews.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "ids are unique");
    assert_eq!(api.get("/pulls/99/reviews").await.status, 404);

    // The bots' client walks every page.
    let gh = Github::new(
        &fake.api_url(),
        Auth::Token(SecretString::from(TOKEN)),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let all = gh
        .reviews(
            &RepoName::parse(REPO).unwrap(),
            shared::github::PrNumber::new(7).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 150);
}

#[tokio::test]
async fn a_push_can_race_the_landing() {
    let api = Api::new().await;
    let fake = &api.fake;
    let head = fake.push(REPO, "feature", "main", &[("a.txt", Some("a\n"))]);
    let candidate = api.candidate(&head).await;
    fake.before_next_on(PATCH_MAIN, |f| {
        f.push(REPO, "main", "main", &[("hotfix.txt", Some("fix\n"))]);
    });
    let landing = api.patch("/git/refs/heads/main", json!({ "sha": candidate })).await;
    assert_eq!(
        (landing.status, message(&landing)),
        (422, "Update is not a fast forward")
    );
    let main = fake.branch(REPO, "main").unwrap();
    assert_ne!(main, candidate);
    assert_eq!(
        fake.commit_files(REPO, &main).get("hotfix.txt").map(String::as_str),
        Some("fix\n")
    );
    // The hook ran once: the next landing of a fresh candidate goes through.
    let fresh: BTreeMap<String, String> = fake.commit_files(REPO, &main);
    assert!(!fresh.contains_key("a.txt"));
    let r = api
        .patch(
            "/git/refs/heads/gandalf/candidate",
            json!({ "sha": main, "force": true }),
        )
        .await;
    assert_eq!(r.status, 200);
    let again = api
        .post("/merges", json!({ "base": "gandalf/candidate", "head": head }))
        .await;
    let again = again.body["sha"].as_str().unwrap().to_string();
    assert_eq!(
        api.patch("/git/refs/heads/main", json!({ "sha": again })).await.status,
        200
    );
    assert_eq!(fake.calls_to(PATCH_MAIN), 2);
}
