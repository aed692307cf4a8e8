//! Batches, bisection and flaky retries end to end (SPEC §5.6): the real Gandalf with the logging
//! pipeline and the fake GitHub on real git. Everything that holds for one PR holds for a batch:
//! what lands is exactly the tested tree, nobody is rejected without a red run of their own, and
//! nothing lands twice.

use bg_tests::{Pipeline, Stop, TestGandalf};

use crate::gandalf_queue::{item_field, main_tip, merge, outbox, setup};

const REPO: &str = "acme/platform";
const PATCH_MAIN: &str = "PATCH /repos/acme/platform/git/refs/heads/main";

/// Queues `prs` while the queue is paused, then resumes it, so that they are batched together.
async fn queue_paused(g: &TestGandalf, prs: &[u64]) {
    g.command("U0ADMIN1", "pause").await;
    for pr in prs {
        g.ready_pull(*pr, &format!("web/{pr}.js"));
        merge(g, &format!("merge #{pr}")).await;
    }
    g.command("U0ADMIN1", "resume").await;
}

fn tests_run(p: &Pipeline) -> Vec<String> {
    p.calls()
        .into_iter()
        .filter(|c| c.start && c.step == "test")
        .map(|c| c.prs)
        .collect()
}

#[tokio::test]
async fn a_green_batch_lands_every_member_at_once_with_one_run() {
    let (g, p) = setup("batch_size = 3", true).await;
    let base = main_tip(&g);
    queue_paused(&g, &[1, 2, 3]).await;
    for pr in 1..=3 {
        g.wait_for_state(pr, "merged").await;
    }
    assert_eq!(tests_run(&p), vec!["1 2 3"], "one pipeline run for the three");
    let candidate = item_field(&g, 1, "candidate_sha").await.unwrap();
    assert_eq!(main_tip(&g), candidate, "main is exactly the tested candidate");
    for pr in 2..=3 {
        assert_eq!(item_field(&g, pr, "candidate_sha").await.unwrap(), candidate);
        assert_eq!(item_field(&g, pr, "landed_sha").await.unwrap(), candidate);
    }
    let files = g.github.commit_files(REPO, &candidate);
    assert!((1..=3).all(|pr| files.contains_key(&format!("web/{pr}.js"))));
    assert!(g.github.is_ancestor(REPO, &base, &candidate));
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1, "one fast-forward");
    for pr in 1..=3u64 {
        assert!(g.github.is_merged(REPO, pr));
        let c = g.wait_for_comments(pr, 1).await;
        assert!(c.last().unwrap().contains("one batch: #1, #2, #3"), "{c:?}");
    }
    let announced = outbox(&g, "C0MERGES").await;
    assert_eq!(announced.len(), 1, "one announcement: {announced:?}");
    assert!(announced[0].contains("#1") && announced[0].contains("#3"));
    let (_, item) = g.get_json("/api/v1/repos/acme/platform/pulls/2").await;
    assert_eq!(item["batch"]["prs"], serde_json::json!([1, 2, 3]), "{item}");
    let steps = item["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        3,
        "the batch's one run (build, deploy, test of web): {item}"
    );
    let (text, _) = g.command("U0ALICE", "status #2").await;
    assert!(text.contains("one batch with #1, #2, #3"), "{text}");
    let page = g.get_text("/queue/acme/platform/pulls/3").await;
    assert!(
        page.contains("deploy") && page.contains("web"),
        "the batch's steps on #3's page"
    );
}

/// One culprit among four: the batch is red, bisection finds it, it alone is rejected (after a
/// red run of its own), and the innocent land in their order.
#[tokio::test]
async fn bisection_rejects_only_the_culprit_after_a_solo_red_run() {
    let (g, p) = setup("batch_size = 4", true).await;
    // The pipeline fails `test` whenever #3 is in the candidate.
    p.fail("test-3");
    queue_paused(&g, &[1, 2, 3, 4]).await;
    for pr in [1, 2, 4] {
        g.wait_for_state(pr, "merged").await;
    }
    g.wait_for_state(3, "failed").await;
    // [1 2 3 4] red → [1 2] green, lands → [3 4] known red, split: [3] red alone → rejected → [4].
    assert_eq!(tests_run(&p), vec!["1 2 3 4", "1 2", "3", "4"]);
    let comments = g.wait_for_comments(3, 1).await;
    assert!(
        comments.iter().any(|c| c.contains("boom")),
        "its own run's log: {comments:?}"
    );
    let tip = main_tip(&g);
    let files = g.github.commit_files(REPO, &tip);
    assert!(files.contains_key("web/4.js") && !files.contains_key("web/3.js"));
    assert_eq!(main_tip(&g), item_field(&g, 4, "candidate_sha").await.unwrap());
}

/// #2 conflicts with #1 once #1 is merged into the candidate: it is rejected, and the batch goes
/// on without it.
#[tokio::test]
async fn a_conflict_inside_a_batch_rejects_that_pr_and_the_rest_go_on() {
    let (g, p) = setup("batch_size = 3", true).await;
    g.command("U0ADMIN1", "pause").await;
    g.ready_pull(1, "web/same.js");
    merge(&g, "merge #1").await;
    // #2 changes the same file differently: it conflicts once #1 is merged into the candidate.
    let head = g.github.push(REPO, "pr-2", "main", &[("web/same.js", Some("other\n"))]);
    let _ = head;
    g.github.open_pull(REPO, 2, "Change 2", "alice", "pr-2", "main");
    g.github.approve(REPO, 2, "bob");
    merge(&g, "merge #2").await;
    g.ready_pull(3, "web/3.js");
    merge(&g, "merge #3").await;
    g.command("U0ADMIN1", "resume").await;
    g.wait_for_state(2, "failed").await;
    g.wait_for_state(1, "merged").await;
    g.wait_for_state(3, "merged").await;
    assert_eq!(tests_run(&p), vec!["1 3"], "the batch went on without #2");
    let c = g.wait_for_comments(2, 1).await;
    assert!(c[0].contains("conflict"), "{c:?}");
}

/// New commits on a member mid-batch: the batch stops, is reverted, that member is dropped and
/// the others are verified again in their order.
#[tokio::test]
async fn new_commits_on_a_member_stop_the_batch_and_the_rest_land() {
    let (g, p) = setup("batch_size = 3", true).await;
    p.block("test-1");
    queue_paused(&g, &[1, 2, 3]).await;
    p.wait_for_start("test 1 -", 1).await;
    let new_head = g.github.push(REPO, "pr-2", "pr-2", &[("web/2.js", Some("more\n"))]);
    let payload = serde_json::json!({
        "action": "synchronize",
        "pull_request": { "number": 2, "head": { "sha": new_head }, "merged": false },
        "repository": { "full_name": REPO },
    });
    g.deliver("pull_request", "s-2", &payload).await;
    g.wait_for_state(2, "dropped").await;
    p.unblock("test-1");
    g.wait_for_state(1, "merged").await;
    g.wait_for_state(3, "merged").await;
    assert!(
        p.started().iter().any(|s| s.starts_with("revert 1")),
        "{:?}",
        p.started()
    );
    assert_eq!(tests_run(&p).last().map(String::as_str), Some("1 3"));
    let files = g.github.commit_files(REPO, &main_tip(&g));
    assert!(!files.contains_key("web/2.js"), "the dropped PR did not land");
}

/// `kill -9` mid-bisection: what was learnt is kept with the queue, so the restart goes on with
/// the known-red half instead of verifying the whole batch again, and nothing lands twice.
#[tokio::test]
async fn kill_9_mid_bisection_resumes_it() {
    let (mut g, p) = setup("batch_size = 4", true).await;
    p.fail("test-3");
    p.block("test-1");
    queue_paused(&g, &[1, 2, 3, 4]).await;
    // The first run [1 2 3 4] is red (3 in it): let it finish, then block the next one ([1 2]).
    p.wait_for_start("test 1 -", 1).await;
    p.unblock("test-1");
    p.wait_for_start("test 1 -", 2).await;
    g.down(Stop::Kill9).await;
    g.up().await;
    for pr in [1, 2, 4] {
        g.wait_for_state(pr, "merged").await;
    }
    g.wait_for_state(3, "failed").await;
    let runs = tests_run(&p);
    assert_eq!(runs[0], "1 2 3 4");
    assert!(
        !runs[1..].contains(&"1 2 3 4".to_string()),
        "the completed red run is not repeated: {runs:?}"
    );
    for pr in [1, 2, 4] {
        assert_eq!(
            g.github
                .comments(REPO, pr)
                .iter()
                .filter(|c| c.contains("Landed"))
                .count(),
            1,
            "#{pr} landed once"
        );
    }
}

/// `squash` in a batch: one commit per PR, chained in batch order on the tested tip; the last
/// one's tree is the tested tree.
#[tokio::test]
async fn a_squashed_batch_lands_one_commit_per_pr_ending_in_the_tested_tree() {
    let (g, _p) = setup("batch_size = 2\nmerge_method = \"squash\"", true).await;
    let base = main_tip(&g);
    queue_paused(&g, &[1, 2]).await;
    g.wait_for_state(1, "merged").await;
    g.wait_for_state(2, "merged").await;
    let candidate = item_field(&g, 1, "candidate_sha").await.unwrap();
    let (first, second) = (
        item_field(&g, 1, "landed_sha").await.unwrap(),
        item_field(&g, 2, "landed_sha").await.unwrap(),
    );
    assert_eq!(main_tip(&g), second);
    assert_eq!(g.github.parents(REPO, &second), vec![first.clone()]);
    assert_eq!(g.github.parents(REPO, &first), vec![base]);
    assert_eq!(g.github.tree_sha(REPO, &second), g.github.tree_sha(REPO, &candidate));
    assert!(g.github.message(REPO, &first).starts_with("Change 1 (#1)"));
    assert!(g.github.message(REPO, &second).starts_with("Change 2 (#2)"));
    let files = g.github.commit_files(REPO, &first);
    assert!(files.contains_key("web/1.js") && !files.contains_key("web/2.js"));
    assert!(!g.github.is_open(REPO, 1) && !g.github.is_open(REPO, 2));
}
