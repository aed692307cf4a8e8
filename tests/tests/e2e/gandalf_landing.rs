//! Issue 13 end to end: Gandalf's steps run in a working copy of exactly the commit they concern,
//! the change list is complete past GitHub's 300 files, and every merge method lands exactly the
//! tested tree by a fast-forward — also when a push races the landing, and after a crash between
//! moving the base and closing the PR. The fake GitHub keeps real git repositories, so everything
//! the API creates can be fetched by the working copies (`file://` clone URLs).

use std::time::Duration;

use bg_tests::Pipeline;

use crate::gandalf_queue::{crashed_while_testing_7_with, item_field, main_tip, merge, outbox, setup};

const REPO: &str = "acme/platform";
const PATCH_MAIN: &str = "PATCH /repos/acme/platform/git/refs/heads/main";
const PUT_MERGE: &str = "PUT /repos/acme/platform/pulls/";
const POST_COMMIT: &str = "POST /repos/acme/platform/git/commits";

fn steps_at(p: &Pipeline, step: &str) -> Vec<bg_tests::Place> {
    p.places().into_iter().filter(|w| w.step.starts_with(step)).collect()
}

#[tokio::test]
async fn steps_run_in_a_copy_of_the_candidate_and_main_lands_exactly_it() {
    let (g, p) = setup("checkout = true", true).await;
    let base = main_tip(&g);
    g.ready_pull(7, "lib/core.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;

    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    assert_eq!(main_tip(&g), candidate, "main is exactly the tested candidate");
    assert_eq!(g.github.parents(REPO, &candidate)[0], base);
    assert!(g.github.is_merged(REPO, 7), "GitHub shows the PR merged");
    assert_eq!(g.github.calls_to(PUT_MERGE), 0, "never GitHub's merge button");
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1);
    assert_eq!(
        g.github.branch(REPO, "gandalf/candidate").as_deref(),
        Some(candidate.as_str()),
        "the candidate branch holds the candidate"
    );

    let places = p.places();
    assert_eq!(places.len(), 4, "build lib, build api, deploy api, test: {places:?}");
    let copy = places[0].dir.clone();
    for w in &places {
        assert_eq!(w.head, candidate, "{} ran at the candidate: {w:?}", w.step);
        assert_eq!(w.dir, copy, "one copy shared by all the steps");
        assert!(
            w.entries.contains(&"lib".to_string()),
            "the PR's files are there: {w:?}"
        );
        assert!(w.entries.contains(&"README.md".to_string()), "{w:?}");
    }
    assert!(copy.contains("/state/copies/"), "under state_dir: {copy}");
    assert!(
        !std::path::Path::new(&copy).exists(),
        "the copy is removed when the verification ends"
    );
}

#[tokio::test]
async fn a_red_run_reverts_in_a_copy_of_the_base_tip() {
    let (g, p) = setup("checkout = true", true).await;
    let base = main_tip(&g);
    p.fail("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "failed").await;

    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    for w in steps_at(&p, "deploy").iter().chain(&steps_at(&p, "test")) {
        assert_eq!(w.head, candidate, "{w:?}");
    }
    let reverts = steps_at(&p, "revert");
    assert_eq!(reverts.len(), 1, "{:?}", p.places());
    assert_eq!(reverts[0].head, base, "revert runs in the base tip it restores");
    assert!(!reverts[0].entries.is_empty());
    assert_eq!(main_tip(&g), base, "nothing landed");
}

#[tokio::test]
async fn a_change_past_the_300th_file_is_planned_from_the_copy() {
    let (g, p) = setup("checkout = true", true).await;
    // 400 unmapped files sort before the one that decides: GitHub's compare would list only the
    // first 300 of them.
    let mut changes: Vec<(String, Option<String>)> = (0..400)
        .map(|i| (format!("assets/f{i:03}.txt"), Some(format!("{i}\n"))))
        .collect();
    changes.push(("web/app.js".into(), Some("app\n".into())));
    let changes: Vec<(&str, Option<&str>)> = changes.iter().map(|(p, c)| (p.as_str(), c.as_deref())).collect();
    g.github.push(REPO, "pr-7", "main", &changes);
    g.github.open_pull(REPO, 7, "Big change", "alice", "pr-7", "main");
    g.github.approve(REPO, 7, "bob");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;

    assert_eq!(
        p.started(),
        vec!["build 7 web", "deploy 7 web", "test 7 -"],
        "exactly web, from the complete list"
    );
    assert_eq!(
        g.github.calls_to("GET /repos/acme/platform/compare/"),
        0,
        "the list came from git, not the capped compare"
    );
}

#[tokio::test]
async fn squash_lands_one_commit_of_the_tested_tree_and_closes_the_pr_and_its_issues() {
    let (g, p) = setup("merge_method = \"squash\"\ncheckout = true", true).await;
    let base = main_tip(&g);
    g.github.open_issue(REPO, 11, "Payments are slow");
    g.github.open_issue(REPO, 12, "Unrelated");
    g.ready_pull(7, "api/x.rs");
    g.github
        .set_pull_body(REPO, 7, Some("Batches the payments.\n\nFixes #11, see #12."));
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;

    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    let landed = main_tip(&g);
    assert_ne!(landed, candidate);
    assert_eq!(item_field(&g, 7, "landed_sha").await.unwrap(), landed);
    assert_eq!(
        g.github.parents(REPO, &landed),
        vec![base],
        "one commit on the tested base tip"
    );
    assert_eq!(
        g.github.tree_sha(REPO, &landed),
        g.github.tree_sha(REPO, &candidate),
        "the tree that landed is the tree that was tested"
    );
    let message = g.github.message(REPO, &landed);
    assert!(
        message.starts_with("Change 7 (#7)\n\nBatches the payments."),
        "{message}"
    );
    assert_eq!(g.github.calls_to(PUT_MERGE), 0);
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1);
    assert_eq!(g.github.calls_to(POST_COMMIT), 1);

    assert!(!g.github.is_open(REPO, 7), "closed");
    assert!(!g.github.is_merged(REPO, 7), "GitHub can only show it closed");
    let issue = |n| g.github.issue(REPO, n).unwrap();
    assert_eq!(issue(11).state, "closed", "the body closes #11");
    assert_eq!(issue(12).state, "open", "`see #12` closes nothing");
    let comments = g.wait_for_comments(7, 1).await;
    let landed_comment = comments.iter().find(|c| c.contains("Landed")).unwrap();
    assert!(landed_comment.contains(&landed), "{landed_comment}");
    assert!(p.started().contains(&"test 7 -".to_string()));
}

/// A push to `main` just before the landing call: the fast-forward is refused, the PR is verified
/// again on the new tip, and what lands is the second candidate, with the racing commit in it.
#[tokio::test]
async fn a_push_racing_the_landing_is_refused_and_the_pr_lands_on_the_new_tip() {
    for method in ["merge", "squash"] {
        let (g, p) = setup(&format!("merge_method = \"{method}\"\ncheckout = true"), true).await;
        g.ready_pull(7, "api/x.rs");
        g.github.before_next_on(PATCH_MAIN, |gh| {
            gh.push(REPO, "main", "main", &[("web/race.js", Some("racing\n"))]);
        });
        merge(&g, "merge #7").await;
        g.wait_for_state(7, "merged").await;

        let landed = main_tip(&g);
        let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
        assert_eq!(item_field(&g, 7, "attempts").await.as_deref(), Some("2"), "{method}");
        assert_eq!(
            g.github.tree_sha(REPO, &landed),
            g.github.tree_sha(REPO, &candidate),
            "{method}: the landed tree is the second, tested candidate's"
        );
        let files = g.github.commit_files(REPO, &landed);
        assert!(
            files.contains_key("web/race.js") && files.contains_key("api/x.rs"),
            "{method}"
        );
        // The second run's steps saw the racing commit.
        let last_test = steps_at(&p, "test").pop().unwrap();
        assert_eq!(last_test.head, candidate, "{method}");
        assert_eq!(g.github.calls_to(PATCH_MAIN), 2, "{method}: one refused, one landed");
    }
}

/// `kill -9` after `main` moved to the squash commit and before the PR was closed: the restart
/// finds the recorded commit on `main`, lands nothing again, and finishes the job.
#[tokio::test]
async fn kill_9_between_moving_the_base_and_closing_the_pr_lands_once() {
    let (mut g, _p) = crashed_while_testing_7_with("merge_method = \"squash\"\ncheckout = true").await;
    g.github.open_issue(REPO, 11, "Payments are slow");
    g.github.set_pull_body(REPO, 7, Some("Closes #11"));
    // The crash point: the squash commit was made, recorded and landed; nothing after that.
    let candidate: shared::github::CommitSha = item_field(&g, 7, "candidate_sha").await.unwrap().parse().unwrap();
    let base: shared::github::CommitSha = item_field(&g, 7, "base_sha").await.unwrap().parse().unwrap();
    let gh = g.gandalf.github.clone().unwrap();
    let repo: shared::github::RepoName = REPO.parse().unwrap();
    let tree = gh.git_commit(&repo, &candidate).await.unwrap().unwrap().tree;
    let squash = gh.create_commit(&repo, "Change 7 (#7)", &tree, &[&base]).await.unwrap();
    sqlx::query("UPDATE queue_items SET state = 'landing', landing_sha = $1 WHERE pr = 7")
        .bind(squash.as_str())
        .execute(&g.pool)
        .await
        .unwrap();
    g.github.set_branch(REPO, "main", squash.as_str());
    let commits_before = g.github.calls_to(POST_COMMIT);

    g.up().await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(g.github.calls_to(PATCH_MAIN), 0, "no second landing");
    assert_eq!(
        g.github.calls_to(POST_COMMIT),
        commits_before,
        "no second squash commit"
    );
    assert_eq!(main_tip(&g), squash.to_string());
    assert_eq!(item_field(&g, 7, "landed_sha").await.unwrap(), squash.to_string());
    assert!(!g.github.is_open(REPO, 7), "the PR is closed after the restart");
    assert_eq!(g.github.issue(REPO, 11).unwrap().state, "closed");
    assert_eq!(outbox(&g, "C0MERGES").await.len(), 1, "announced once");
}

/// A copy that cannot be had is never the PR's fault: it stays queued and the queue pauses,
/// saying why in `merges_channel`.
#[tokio::test]
async fn no_working_copy_pauses_the_queue_and_rejects_nothing() {
    let (g, p) = setup(
        "checkout = { clone_url = \"file:///nonexistent/acme/platform.git\" }",
        true,
    )
    .await;
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let paused: bool = sqlx::query_scalar("SELECT paused FROM repo_queues WHERE repo = $1")
            .bind(REPO)
            .fetch_optional(&g.pool)
            .await
            .unwrap()
            .unwrap_or(false);
        if paused {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the queue never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(g.state_of(7).await, "queued", "it keeps its place");
    assert!(p.started().is_empty(), "no step ran");
    let announced = outbox(&g, "C0MERGES").await;
    assert!(
        announced
            .iter()
            .any(|t| t.contains("paused") && t.contains("working copy")),
        "{announced:?}"
    );
    assert_eq!(g.github.comments(REPO, 7).len(), 0, "the PR is not told it failed");
}

/// A writer's "changes requested" while the PR verifies stops the run, reverts what was deployed
/// and drops the PR; with the delivery missed, the re-check right before landing catches it.
#[tokio::test]
async fn changes_requested_during_verification_stop_it_and_the_recheck_before_landing_catches_a_missed_one() {
    let (g, p) = setup("", true).await;
    let base = main_tip(&g);
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    g.github.review(REPO, 7, "bob", "CHANGES_REQUESTED");
    let payload = serde_json::json!({
        "action": "submitted",
        "review": { "state": "changes_requested", "user": { "login": "bob" } },
        "pull_request": { "number": 7 },
        "repository": { "full_name": REPO },
    });
    g.deliver("pull_request_review", "r-7", &payload).await;
    g.wait_for_state(7, "dropped").await;
    p.unblock("test-7");
    p.wait_for_start("revert 7 api", 1).await;
    assert_eq!(main_tip(&g), base);

    // #8: the review arrives while its test runs, and its delivery is lost.
    p.block("test-8");
    g.ready_pull(8, "web/y.js");
    merge(&g, "merge #8").await;
    p.wait_for_start("test 8 -", 1).await;
    g.github.dismiss_review(REPO, 8, "bob");
    p.unblock("test-8");
    g.wait_for_state(8, "dropped").await;
    assert_eq!(main_tip(&g), base, "nothing landed");
    assert_eq!(g.github.calls_to(PATCH_MAIN), 0);
    assert!(p.started().contains(&"revert 8 web".to_string()), "{:?}", p.started());
    let c = g.wait_for_comments(8, 1).await;
    assert!(c.iter().any(|c| c.contains("approvals")), "{c:?}");
}
