//! The GitHub client (`shared::github`) against the stateful fake GitHub: every call of SPEC §5.4,
//! the shapes GitHub really answers with, and the retry policy (reads retried, writes never
//! repeated blindly), against GitHub's own rate-limit headers: a Reset far ahead on every answer
//! must not matter on a 502 (issue 14), and must be honoured on a rate limit. No test asserts an
//! upper bound on time: a client that sleeps until a far Reset fails by the `timeout` wrapped
//! around it; that a rate limit was waited out is read from when the fake saw each request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bg_tests::fake_github::{FakeGithub, TOKEN};
use secrecy::SecretString;
use shared::github::{Auth, CommitSha, Github, GithubError, MergeOutcome, Permission, PrNumber, RepoName, RetryPolicy};

const REPO: &str = "acme/platform";

async fn setup() -> (FakeGithub, Github, RepoName) {
    let fake = FakeGithub::start().await;
    fake.create_repo(
        REPO,
        "main",
        &[("README.md", "hello\n"), ("services/billing/main.rs", "fn main() {}\n")],
    );
    let retry = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
    };
    let gh = Github::new(&fake.api_url(), Auth::Token(SecretString::from(TOKEN)), retry)
        .await
        .unwrap();
    (fake, gh, RepoName::parse(REPO).unwrap())
}

fn number(n: u64) -> PrNumber {
    PrNumber::new(n).unwrap()
}

#[tokio::test]
async fn reads_pull_requests_reviews_and_permissions() {
    let (fake, gh, repo) = setup().await;
    let head = fake.push(
        REPO,
        "feature",
        "main",
        &[("services/billing/main.rs", Some("fn main() { pay() }\n"))],
    );
    fake.open_pull(REPO, 7, "Pay faster", "alice", "feature", "main");
    fake.approve(REPO, 7, "bob");
    fake.set_permission(REPO, "alice", "write");
    fake.set_permission(REPO, "carol", "read");

    let pr = gh.pull(&repo, number(7)).await.unwrap();
    assert_eq!(
        (pr.number, pr.title.as_str(), pr.author.as_str()),
        (number(7), "Pay faster", "alice")
    );
    assert!(pr.is_open() && !pr.draft && !pr.merged);
    assert_eq!(pr.head_sha, head.clone().parse::<CommitSha>().unwrap());
    assert_eq!(pr.base_ref, "main");

    let reviews = gh.reviews(&repo, number(7)).await.unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(
        (reviews[0].login.as_str(), reviews[0].state.as_str()),
        ("bob", "APPROVED")
    );
    assert_eq!(reviews[0].commit_id, Some(head.parse::<CommitSha>().unwrap()));

    assert_eq!(gh.permission(&repo, "alice").await.unwrap(), Permission::Write);
    assert!(gh.permission(&repo, "alice").await.unwrap().can_write());
    assert!(!gh.permission(&repo, "carol").await.unwrap().can_write());
    assert_eq!(gh.permission(&repo, "mallory").await.unwrap(), Permission::None);

    assert_eq!(gh.open_pulls(&repo).await.unwrap().len(), 1);
    fake.close_pull(REPO, 7);
    assert!(gh.open_pulls(&repo).await.unwrap().is_empty());
    assert!(matches!(
        gh.pull(&repo, number(99)).await,
        Err(GithubError::Refused { status: 404, .. })
    ));
}

#[tokio::test]
async fn builds_a_candidate_and_lands_it_by_fast_forward() {
    let (fake, gh, repo) = setup().await;
    let head = fake.push(REPO, "feature", "main", &[("services/billing/main.rs", Some("v2\n"))]);
    // Someone else lands on main meanwhile, touching another file.
    let main_tip = fake.push(REPO, "main", "main", &[("docs/guide.md", Some("guide\n"))]);

    let tip = gh.branch_tip(&repo, "main").await.unwrap().unwrap();
    assert_eq!(tip.to_string(), main_tip);
    assert_eq!(gh.branch_tip(&repo, "gandalf/candidate").await.unwrap(), None);
    gh.set_branch(&repo, "gandalf/candidate", &tip, true).await.unwrap();
    let merged = gh
        .merge(
            &repo,
            "gandalf/candidate",
            &head.clone().parse::<CommitSha>().unwrap(),
            "Merge #7",
        )
        .await
        .unwrap();
    let MergeOutcome::Merged(candidate) = merged else {
        panic!("{merged:?}")
    };
    assert_eq!(
        fake.parents(REPO, candidate.as_ref()),
        vec![main_tip.clone(), head.clone()]
    );
    assert_eq!(
        gh.merge(
            &repo,
            "gandalf/candidate",
            &head.clone().parse::<CommitSha>().unwrap(),
            "again"
        )
        .await
        .unwrap(),
        MergeOutcome::NothingToMerge
    );

    let changed = gh.changed_files(&repo, &tip, &candidate).await.unwrap();
    assert_eq!(changed.paths, ["services/billing/main.rs"]);
    assert!(changed.complete);
    assert_eq!(
        gh.file_at(&repo, "services/billing/main.rs", &candidate)
            .await
            .unwrap()
            .as_deref(),
        Some("v2\n")
    );
    assert_eq!(
        gh.file_at(&repo, ".gandalf/resources.toml", &candidate).await.unwrap(),
        None
    );

    // Landing is a fast-forward of main to exactly the tested commit.
    gh.set_branch(&repo, "main", &candidate, false).await.unwrap();
    assert_eq!(fake.branch(REPO, "main").unwrap(), candidate.to_string());
    // A non-fast-forward move without force is refused.
    let err = gh.set_branch(&repo, "main", &tip, false).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
}

#[tokio::test]
async fn conflicts_and_stale_merges_are_refused() {
    let (fake, gh, repo) = setup().await;
    let head = fake.push(REPO, "feature", "main", &[("README.md", Some("feature\n"))]);
    fake.push(REPO, "main", "main", &[("README.md", Some("main\n"))]);
    let tip = gh.branch_tip(&repo, "main").await.unwrap().unwrap();
    gh.set_branch(&repo, "gandalf/candidate", &tip, true).await.unwrap();
    assert_eq!(
        gh.merge(&repo, "gandalf/candidate", &head.parse::<CommitSha>().unwrap(), "m")
            .await
            .unwrap(),
        MergeOutcome::Conflict
    );

    // A squash landing: a commit of the candidate's tree on the base tip, then a fast-forward.
    let head: CommitSha = fake
        .push(REPO, "other", "main", &[("new.txt", Some("x\n"))])
        .parse()
        .unwrap();
    fake.open_pull(REPO, 8, "Other", "alice", "other", "main");
    let tip = gh.branch_tip(&repo, "main").await.unwrap().unwrap();
    let tree = gh.git_commit(&repo, &head).await.unwrap().unwrap().tree;
    let squash = gh.create_commit(&repo, "Other (#8)", &tree, &[&tip]).await.unwrap();
    let made = gh.git_commit(&repo, &squash).await.unwrap().unwrap();
    assert_eq!((made.tree, made.parents), (tree, vec![tip.clone()]));
    assert!(!gh.contains(&repo, &tip, &squash).await.unwrap());
    gh.set_branch(&repo, "main", &squash, false).await.unwrap();
    assert!(
        gh.contains(&repo, &squash, &tip).await.unwrap(),
        "the old tip is in the new one"
    );
    // Not a fast-forward: refused without force.
    assert_eq!(
        gh.set_branch(&repo, "main", &head, false).await.unwrap_err().status(),
        Some(422)
    );
    assert_eq!(fake.branch(REPO, "main").unwrap(), squash.to_string());
    gh.close_pull(&repo, number(8)).await.unwrap();
    assert!(!gh.pull(&repo, number(8)).await.unwrap().is_open());
    gh.comment(&repo, number(8), "Merged by Gandalf").await.unwrap();
    assert_eq!(fake.comments(REPO, 8), ["Merged by Gandalf"]);
}

#[tokio::test]
async fn reads_are_retried_and_writes_are_not_repeated_blindly() {
    let (fake, gh, repo) = setup().await;
    fake.fail_next(2, 502);
    assert!(gh.branch_tip(&repo, "main").await.unwrap().is_some());
    fake.fail_next(1, 429);
    assert!(gh.branch_tip(&repo, "main").await.unwrap().is_some());
    let gets = fake
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /repos/acme/platform/git/ref/heads/main"))
        .count();
    assert_eq!(gets, 5, "two 502s, one success, one 429, one success");

    // As many failures as attempts: the read gives up and says GitHub is unavailable.
    fake.fail_next(4, 502);
    assert!(matches!(
        gh.branch_tip(&repo, "main").await,
        Err(GithubError::Unavailable(_))
    ));

    fake.fail_next(1, 502);
    let before = fake
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /repos/acme/platform/issues"))
        .count();
    assert!(matches!(
        gh.comment(&repo, number(1), "hi").await,
        Err(GithubError::Unavailable(_))
    ));
    let after = fake
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /repos/acme/platform/issues"))
        .count();
    assert_eq!(
        after - before,
        1,
        "a failed write is sent once; the caller re-reads before repeating it"
    );
}

#[tokio::test]
async fn bad_credentials_are_a_refusal_not_a_retry() {
    let fake = FakeGithub::start().await;
    fake.create_repo(REPO, "main", &[("a", "b")]);
    let gh = Github::new(
        &fake.api_url(),
        Auth::Token(SecretString::from("wrong")),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let err = gh
        .branch_tip(&RepoName::parse(REPO).unwrap(), "main")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(fake.log().len(), 1);
}

/// The first `n` requests' arrival times of the requests whose line starts with `what`.
fn arrivals(fake: &FakeGithub, what: &str) -> Vec<SystemTime> {
    fake.timed_log()
        .into_iter()
        .filter(|(_, l)| l.starts_with(what))
        .map(|(t, _)| t)
        .collect()
}

/// The safety net: a client that waits for a far `X-RateLimit-Reset` fails here, not by hanging.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 60 s"))
}

#[tokio::test]
async fn every_answer_carries_githubs_rate_limit_headers() {
    let (fake, _gh, _repo) = setup().await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", fake.api_url()))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    fake.fail_next_on("GET /repos/acme/platform/git/ref/heads/main", 1, 502);
    for (response, status) in [
        (
            get("/repos/acme/platform/git/ref/heads/main", TOKEN).await.unwrap(),
            502,
        ),
        (
            get("/repos/acme/platform/git/ref/heads/main", TOKEN).await.unwrap(),
            200,
        ),
        (get("/repos/acme/platform/pulls/404", TOKEN).await.unwrap(), 404),
        (get("/repos/acme/platform/pulls/1", "wrong").await.unwrap(), 401),
    ] {
        assert_eq!(response.status().as_u16(), status);
        let h = |n: &str| response.headers().get(n).map(|v| v.to_str().unwrap().to_string());
        let reset: u64 = h("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset > now && reset <= now + 3601, "Reset is the window's end: {reset}");
        let (limit, remaining, used): (u64, u64, u64) = (
            h("x-ratelimit-limit").unwrap().parse().unwrap(),
            h("x-ratelimit-remaining").unwrap().parse().unwrap(),
            h("x-ratelimit-used").unwrap().parse().unwrap(),
        );
        assert_eq!(limit, remaining + used, "{status}");
        assert_eq!(h("x-ratelimit-resource").as_deref(), Some("core"));
    }
    // The 502's body is GitHub's shape, too.
    fake.fail_next(1, 502);
    let body: serde_json::Value = get("/repos/acme/platform", TOKEN).await.unwrap().json().await.unwrap();
    assert!(
        body["message"].is_string() && body["documentation_url"].is_string(),
        "{body}"
    );
}

/// Issue 14: a 502 on `GET …/pulls/{n}` carrying a Reset up to an hour ahead was waited out for
/// 300 s. With the production policy the read is simply tried again after a short backoff.
#[tokio::test]
async fn a_502_is_retried_at_once_whatever_reset_says() {
    let (fake, _, repo) = setup().await;
    fake.push(REPO, "feature", "main", &[("a.txt", Some("a\n"))]);
    fake.open_pull(REPO, 7, "A", "alice", "feature", "main");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        fake.rate_limit_reset() > now + 3000,
        "the fake's window ends about an hour ahead"
    );
    let gh = Github::new(
        &fake.api_url(),
        Auth::Token(SecretString::from(TOKEN)),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    const PULL: &str = "GET /repos/acme/platform/pulls/7";
    let mut delays = vec![];
    for _ in 0..5 {
        fake.fail_next_on(PULL, 1, 502);
        let started = std::time::Instant::now();
        let pr = within("a read after one 502", gh.pull(&repo, number(7))).await.unwrap();
        delays.push(started.elapsed());
        assert_eq!(pr.number, number(7));
    }
    assert_eq!(fake.calls_to(PULL), 10, "each read: one 502, one success");
    // Measured for docs/reliability.md (printed, not asserted: backoff is random by design).
    eprintln!("MEASURE one 502 on a read, production policy: {delays:?}");
}

#[tokio::test]
async fn a_primary_rate_limit_is_waited_out_until_reset_then_succeeds() {
    let (fake, gh, repo) = setup().await;
    fake.exhaust_rate_limit(2);
    let reset = fake.rate_limit_reset();
    const REF: &str = "GET /repos/acme/platform/git/ref/heads/main";
    let tip = within("a read past a 2 s rate limit", gh.branch_tip(&repo, "main")).await;
    assert!(tip.unwrap().is_some());
    let times = arrivals(&fake, REF);
    assert_eq!(
        times.len(),
        2,
        "one 403, then one request after Reset: {:?}",
        fake.log()
    );
    let second = times[1].duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        second >= reset,
        "nothing was sent before X-RateLimit-Reset ({second} < {reset})"
    );
}

#[tokio::test]
async fn a_rate_limit_far_ahead_fails_fast_and_holds_later_calls_from_github() {
    let (fake, gh, repo) = setup().await;
    fake.exhaust_rate_limit(3600);
    let err = within("a read under an hour's rate limit", gh.branch_tip(&repo, "main"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GithubError::Unavailable(why) if why.contains("rate limit")),
        "{err}"
    );
    // Later calls, reads and writes, from any clone of the client, do not reach GitHub meanwhile.
    let clone = gh.clone();
    assert!(matches!(
        within("a second read", clone.pull(&repo, number(1))).await,
        Err(GithubError::Unavailable(_))
    ));
    assert!(matches!(
        within("a write", gh.comment(&repo, number(1), "hi")).await,
        Err(GithubError::Unavailable(_))
    ));
    assert_eq!(fake.log().len(), 1, "{:?}", fake.log());
}

#[tokio::test]
async fn a_secondary_rate_limit_honours_retry_after() {
    let (fake, gh, repo) = setup().await;
    fake.secondary_rate_limit_next(1, 429, Some(1));
    let tip = within("a read after Retry-After: 1", gh.branch_tip(&repo, "main")).await;
    assert!(tip.unwrap().is_some());
    let times = arrivals(&fake, "GET /repos/acme/platform/git/ref/heads/main");
    assert_eq!(times.len(), 2);
    let gap = times[1].duration_since(times[0]).unwrap();
    assert!(gap >= Duration::from_secs(1), "retried {gap:?} after Retry-After: 1");

    // The same as a 403, the other status GitHub uses for it.
    fake.secondary_rate_limit_next(1, 403, Some(1));
    assert!(gh.branch_tip(&repo, "main").await.unwrap().is_some());
    // A write meeting one is not re-sent by the client; the caller's re-read waits it out.
    fake.secondary_rate_limit_next(1, 403, Some(1));
    assert!(matches!(
        gh.comment(&repo, number(1), "hi").await,
        Err(GithubError::Unavailable(_))
    ));
    assert_eq!(fake.calls_to("POST /repos/acme/platform/issues/1/comments"), 1);
    assert!(gh.branch_tip(&repo, "main").await.unwrap().is_some());
    let times = arrivals(&fake, "");
    let gap = times[times.len() - 1].duration_since(times[times.len() - 2]).unwrap();
    assert!(
        gap >= Duration::from_secs(1),
        "the read after the write waited out the limit: {gap:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_on_a_read_and_reported_on_a_write() {
    let (fake, gh, repo) = setup().await;
    const REF: &str = "GET /repos/acme/platform/git/ref/heads/main";
    fake.drop_next_on(REF, 2);
    assert!(gh.branch_tip(&repo, "main").await.unwrap().is_some());
    assert_eq!(fake.calls_to(REF), 3);

    const COMMENT: &str = "POST /repos/acme/platform/issues/1/comments";
    fake.drop_next_on(COMMENT, 1);
    assert!(matches!(
        gh.comment(&repo, number(1), "hi").await,
        Err(GithubError::Unavailable(_))
    ));
    assert_eq!(fake.calls_to(COMMENT), 1, "sent once: its effect is unknown");
}
