//! `/gandalf` commands against a real Postgres and the stateful fake GitHub: queuing with every
//! refusal of SPEC §5.3, priorities and order, cancel, retry, status, pause and plan.

use bg_tests::spawn_gandalf;

#[tokio::test]
async fn merge_queues_an_approved_pull_request_with_the_head_pinned() {
    let g = spawn_gandalf().await;
    let head = g.ready_pull(7, "services/billing/main.rs");
    let (text, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "{text}");
    assert!(
        text.contains("@U0ALICE queued *acme/platform#7* Change 7 at position 1"),
        "{text}"
    );
    let pinned: String = sqlx::query_scalar("SELECT head_sha FROM queue_items WHERE pr = 7")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(pinned, head);

    let (text, refused) = g.command("U0BOB", "merge acme/platform#7").await;
    assert!(refused && text.contains("already in the queue (position 1"), "{text}");
    let (text, _) = g.command("U0BOB", "status #7").await;
    assert!(text.contains("queued") && text.contains("position 1"), "{text}");
}

#[tokio::test]
async fn refusals_name_the_reason_and_queue_nothing() {
    let g = spawn_gandalf().await;
    g.ready_pull(1, "a.txt");
    g.github.close_pull("acme/platform", 1);
    g.ready_pull(2, "b.txt");
    g.github.set_draft("acme/platform", 2, true);
    let branch_head = g.github.push("acme/platform", "pr-3", "main", &[("c.txt", Some("c"))]);
    g.github
        .open_pull("acme/platform", 3, "Unapproved", "alice", "pr-3", "main");
    let _ = branch_head;
    g.ready_pull(4, "d.txt");
    // New commits after the approval: the approval no longer counts.
    g.github
        .push("acme/platform", "pr-4", "main", &[("d.txt", Some("again"))]);
    g.github
        .push("acme/platform", "release", "main", &[("r.txt", Some("r"))]);
    g.github.push("acme/platform", "pr-5", "main", &[("e.txt", Some("e"))]);
    g.github
        .open_pull("acme/platform", 5, "Other base", "alice", "pr-5", "release");
    g.github.approve("acme/platform", 5, "bob");
    g.ready_pull(6, "f.txt");

    let cases = [
        ("U0ALICE", "merge #1", "it is closed"),
        ("U0ALICE", "merge #2", "draft"),
        ("U0ALICE", "merge #3", "0 approval(s) on its current head"),
        ("U0ALICE", "merge #4", "0 approval(s) on its current head"),
        ("U0ALICE", "merge #5", "targets `release`"),
        ("U0CAROL", "merge #6", "carol has no write permission"),
        ("U0DAVE", "merge #6", "don't know your GitHub login"),
        ("U0ALICE", "merge #99", "no such pull request"),
        ("U0ALICE", "merge other/repo#6", "I don't queue `other/repo`"),
        ("U0ALICE", "merge #6 p=asap", "not a priority"),
    ];
    for (user, text, expected) in cases {
        let (reply, refused) = g.command(user, text).await;
        assert!(refused, "{text}: {reply}");
        assert!(reply.contains(expected), "{text}: {reply}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_items")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn the_queue_is_ordered_by_priority_then_time() {
    let g = spawn_gandalf().await;
    for n in 1..=4 {
        g.ready_pull(n, &format!("f{n}.txt"));
    }
    g.command("U0ALICE", "merge #1").await;
    g.clock.advance(chrono::Duration::seconds(1));
    g.command("U0ALICE", "merge #2 p=low").await;
    g.clock.advance(chrono::Duration::seconds(1));
    g.command("U0ALICE", "merge #3").await;
    g.clock.advance(chrono::Duration::seconds(1));
    let (text, _) = g.command("U0ALICE", "merge #4 p=high").await;
    assert!(text.contains("position 1") && text.contains("priority high"), "{text}");
    let (text, refused) = g.command("U0BOB", "queue").await;
    assert!(!refused);
    let order: Vec<usize> = ["#4", "#1", "#3", "#2"]
        .iter()
        .map(|p| text.find(&format!("platform{p}*")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[tokio::test]
async fn cancel_needs_write_access_or_to_have_queued_it_and_retry_needs_a_failure() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    g.command("U0ALICE", "merge #7").await;
    let (text, refused) = g.command("U0CAROL", "cancel #7").await;
    assert!(refused && text.contains("Only people with write access"), "{text}");
    let (text, refused) = g.command("U0BOB", "cancel #7").await;
    assert!(
        !refused && text.contains("took *acme/platform#7* out of the queue"),
        "{text}"
    );
    let (text, refused) = g.command("U0BOB", "cancel #7").await;
    assert!(refused && text.contains("is not in the queue"), "{text}");
    let (text, _) = g.command("U0BOB", "status #7").await;
    assert!(
        text.contains("cancelled") && text.contains("cancelled by bob"),
        "{text}"
    );

    let (text, refused) = g.command("U0ALICE", "retry #7").await;
    assert!(refused && text.contains("has not failed"), "{text}");
    sqlx::query("UPDATE queue_items SET state = 'failed' WHERE pr = 7")
        .execute(&g.pool)
        .await
        .unwrap();
    let (text, refused) = g.command("U0ALICE", "retry #7").await;
    assert!(!refused && text.contains("queued"), "{text}");
    let (text, _) = g.command("U0ALICE", "status #8").await;
    assert!(text.contains("never been queued"), "{text}");
}

#[tokio::test]
async fn pause_and_resume_are_for_admins() {
    let g = spawn_gandalf().await;
    let (text, refused) = g.command("U0ALICE", "pause deploys are frozen").await;
    assert!(refused && text.contains("Only admins"), "{text}");
    let (text, refused) = g.command("U0ADMIN1", "pause deploys are frozen").await;
    assert!(
        !refused && text.contains("paused the queue of `acme/platform`: deploys are frozen"),
        "{text}"
    );
    let (text, _) = g.command("U0ALICE", "queue").await;
    assert!(text.contains("paused: deploys are frozen"), "{text}");
    let (text, refused) = g.command("U0ADMIN1", "resume").await;
    assert!(!refused && text.contains("resumed"), "{text}");
}

#[tokio::test]
async fn plan_reads_the_map_at_the_pull_requests_head() {
    let g = spawn_gandalf().await;
    let map = "[[resource]]\nname = \"common\"\ntype = \"package\"\npaths = [\"libs/common/**\"]\n\n\
               [[resource]]\nname = \"billing\"\ntype = \"service\"\npaths = [\"services/billing/**\"]\ndepends_on = [\"common\"]\n";
    g.github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(map)), ("libs/common/x.rs", Some("x"))],
    );
    g.ready_pull(9, "libs/common/lib.rs");
    let (text, refused) = g.command("U0ALICE", "plan #9").await;
    assert!(!refused, "{text}");
    assert!(text.contains("billing") && text.contains("common"), "{text}");
    g.github.push(
        "acme/platform",
        "pr-9",
        "main",
        &[(".gandalf/resources.toml", Some("[[resource]]\nname = 1\n"))],
    );
    let (text, refused) = g.command("U0ALICE", "plan #9").await;
    assert!(refused && text.contains("does not parse"), "{text}");
}

#[tokio::test]
async fn github_outages_are_reported_and_change_nothing() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    g.github.fail_next(3, 502);
    let (text, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(refused && text.contains("GitHub is not answering"), "{text}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_items")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    g.github.fail_next(2, 502);
    let (text, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "two 502s are retried away: {text}");
}
