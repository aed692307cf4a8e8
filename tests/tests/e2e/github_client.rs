//! The GitHub client (`shared::github`) against the stateful fake GitHub: every call of SPEC §5.4,
//! the shapes GitHub really answers with, and the retry policy (reads retried, writes never
//! repeated blindly).

use std::time::Duration;

use bg_tests::fake_github::{FakeGithub, TOKEN};
use secrecy::SecretString;
use shared::github::{
    Auth, CommitSha, Github, GithubError, MergeOutcome, MergeStyle, Permission, PrNumber, RepoName, RetryPolicy,
};

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

    let mut changed = gh.changed_files(&repo, &tip, &candidate).await.unwrap();
    changed.sort();
    assert_eq!(changed, ["services/billing/main.rs"]);
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

    let head = fake.push(REPO, "other", "main", &[("new.txt", Some("x\n"))]);
    fake.open_pull(REPO, 8, "Other", "alice", "other", "main");
    let stale = "0".repeat(40).parse::<CommitSha>().unwrap();
    assert_eq!(
        gh.merge_pull(&repo, number(8), &stale, MergeStyle::Squash)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    let landed = gh
        .merge_pull(
            &repo,
            number(8),
            &head.parse::<CommitSha>().unwrap(),
            MergeStyle::Squash,
        )
        .await
        .unwrap();
    assert!(fake.is_merged(REPO, 8));
    assert_eq!(fake.branch(REPO, "main").unwrap(), landed.to_string());
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
