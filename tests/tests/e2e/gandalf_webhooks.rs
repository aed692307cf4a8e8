//! GitHub webhooks into the running Gandalf: signatures, deduplication, `@gandalf` comments and the
//! pull-request events that drop a queued PR.

use bg_tests::spawn_gandalf;
use serde_json::json;

fn comment_payload(number: u64, login: &str, body: &str) -> serde_json::Value {
    json!({
        "action": "created",
        "issue": { "number": number, "pull_request": { "url": "x" } },
        "comment": { "body": body, "user": { "login": login, "type": "User" } },
        "repository": { "full_name": "acme/platform" },
    })
}

async fn queued_count(g: &bg_tests::TestGandalf) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM queue_items WHERE state = 'queued'")
        .fetch_one(&g.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_comment_queues_the_pull_request_and_gandalf_answers_on_it() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let status = g
        .deliver(
            "issue_comment",
            "d-1",
            &comment_payload(7, "alice", "Ship it!\n@gandalf merge p=high"),
        )
        .await;
    assert_eq!(status, 202);
    let comments = g.wait_for_comments(7, 1).await;
    assert!(
        comments[0].contains("alice queued *acme/platform#7*") && comments[0].contains("priority high"),
        "{comments:?}"
    );
    assert_eq!(queued_count(&g).await, 1);

    // The same delivery again (GitHub retries): acknowledged, nothing done twice.
    let status = g
        .deliver(
            "issue_comment",
            "d-1",
            &comment_payload(7, "alice", "@gandalf merge p=high"),
        )
        .await;
    assert_eq!(status, 202);
    g.deliver("issue_comment", "d-2", &comment_payload(7, "alice", "@gandalf status"))
        .await;
    let comments = g.wait_for_comments(7, 2).await;
    assert_eq!(comments.len(), 2, "the duplicate delivery was ignored: {comments:?}");
    assert!(
        comments[1].contains("queued") && comments[1].contains("position 1"),
        "{comments:?}"
    );

    // Commands in quotes and code blocks, and comments by bots, are not commands.
    g.deliver(
        "issue_comment",
        "d-3",
        &comment_payload(7, "alice", "> @gandalf cancel\n```\n@gandalf cancel\n```"),
    )
    .await;
    let mut bot = comment_payload(7, "gandalf", "@gandalf cancel");
    bot["comment"]["user"]["type"] = json!("Bot");
    g.deliver("issue_comment", "d-4", &bot).await;
    g.deliver("issue_comment", "d-5", &comment_payload(7, "carol", "@gandalf cancel"))
        .await;
    let comments = g.wait_for_comments(7, 3).await;
    assert!(comments[2].contains("Only people with write access"), "{comments:?}");
    assert_eq!(queued_count(&g).await, 1);
}

#[tokio::test]
async fn refusals_are_answered_on_the_pull_request() {
    let g = spawn_gandalf().await;
    g.github.push("acme/platform", "pr-3", "main", &[("c.txt", Some("c"))]);
    g.github
        .open_pull("acme/platform", 3, "Unapproved", "alice", "pr-3", "main");
    g.deliver("issue_comment", "d-1", &comment_payload(3, "alice", "@gandalf merge"))
        .await;
    g.deliver(
        "issue_comment",
        "d-2",
        &comment_payload(3, "alice", "@gandalf frobnicate"),
    )
    .await;
    let comments = g.wait_for_comments(3, 2).await;
    assert!(
        comments[0].contains("0 approval(s) on its current head"),
        "{comments:?}"
    );
    assert!(comments[1].contains("I don't know `frobnicate`"), "{comments:?}");
    assert_eq!(queued_count(&g).await, 0);
}

#[tokio::test]
async fn new_commits_closing_and_a_base_change_drop_a_queued_pull_request() {
    let g = spawn_gandalf().await;
    for n in [1, 2, 3] {
        g.ready_pull(n, &format!("f{n}.txt"));
        g.command("U0ALICE", &format!("merge #{n}")).await;
    }
    let new_head = g
        .github
        .push("acme/platform", "pr-1", "main", &[("f1.txt", Some("more"))]);
    let pr = |n: u64, head: &str| json!({ "number": n, "head": { "sha": head }, "merged": false });
    g.deliver("pull_request", "e-1", &json!({ "action": "synchronize", "pull_request": pr(1, &new_head), "repository": { "full_name": "acme/platform" } })).await;
    g.deliver(
        "pull_request",
        "e-2",
        &json!({ "action": "closed", "pull_request": pr(2, "x"), "repository": { "full_name": "acme/platform" } }),
    )
    .await;
    g.deliver("pull_request", "e-3", &json!({ "action": "edited", "changes": { "base": { "ref": { "from": "main" } } }, "pull_request": pr(3, "x"), "repository": { "full_name": "acme/platform" } })).await;
    assert!(g.wait_for_comments(1, 1).await[0].contains("new commits were pushed"));
    assert!(g.wait_for_comments(2, 1).await[0].contains("it was closed"));
    assert!(g.wait_for_comments(3, 1).await[0].contains("base branch changed"));
    assert_eq!(queued_count(&g).await, 0);
    let (text, _) = g.command("U0ALICE", "status #1").await;
    assert!(text.contains("dropped"), "{text}");
}

/// SPEC §8: a PR shown merged after an attempt recorded its landing commit may be Gandalf's own
/// landing, answered after the replica that made it lost the queues; the worker decides (landed, or
/// dropped), a `closed` delivery does not drop it. Without a recorded commit it is dropped at once.
#[tokio::test]
async fn a_merged_pull_request_with_a_recorded_landing_is_left_to_the_worker() {
    let g = spawn_gandalf().await;
    for n in [4, 5] {
        g.ready_pull(n, &format!("f{n}.txt"));
        g.command("U0ALICE", &format!("merge #{n}")).await;
    }
    let recorded = "c".repeat(40);
    sqlx::query("UPDATE queue_items SET earlier_landing_shas = ARRAY[$1] WHERE pr = 4")
        .bind(&recorded)
        .execute(&g.pool)
        .await
        .unwrap();
    let merged = |n: u64| json!({ "action": "closed", "pull_request": { "number": n, "head": { "sha": "x" }, "merged": true }, "repository": { "full_name": "acme/platform" } });
    assert_eq!(g.deliver("pull_request", "m-5", &merged(5)).await, 202);
    assert!(
        g.wait_for_comments(5, 1).await[0].contains("merged"),
        "dropped: merged elsewhere"
    );
    assert_eq!(g.deliver("pull_request", "m-4", &merged(4)).await, 202);
    g.wait_for(
        "SELECT count(*) FROM github_deliveries WHERE processed_at IS NOT NULL",
        2i64,
    )
    .await;
    assert_eq!(g.state_of(4).await, "queued");
    assert!(
        g.github
            .comments("acme/platform", 4)
            .iter()
            .all(|c| !c.contains("dropped"))
    );
}

#[tokio::test]
async fn bad_signatures_are_refused_before_anything_is_stored() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let body = comment_payload(7, "alice", "@gandalf merge").to_string();
    let url = format!("http://{}/github/webhook", g.addr);
    for sig in [
        None,
        Some("sha256=00".to_string()),
        Some(gandalf::webhook::sign("wrong", body.as_bytes())),
        Some("md5=abc".into()),
    ] {
        let mut req = g
            .http
            .post(&url)
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", "evil")
            .body(body.clone());
        if let Some(s) = sig {
            req = req.header("x-hub-signature-256", s);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM github_deliveries")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // ping and unknown events are acknowledged.
    assert_eq!(
        g.deliver("ping", "p-1", &json!({ "zen": "Design for failure." })).await,
        202
    );
    assert_eq!(
        g.deliver("check_run", "c-1", &json!({ "action": "completed" })).await,
        202
    );
}

#[tokio::test]
async fn the_queue_api_shows_items_in_order() {
    let g = spawn_gandalf().await;
    g.ready_pull(1, "a.txt");
    g.ready_pull(2, "b.txt");
    g.command("U0ALICE", "merge #1").await;
    g.command("U0ALICE", "merge #2 p=high").await;
    let v: serde_json::Value = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/platform/queue", g.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repo"], "acme/platform");
    assert_eq!(
        v["paused"], true,
        "spawn_gandalf pauses the queue so that items stay put"
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        (items[0]["pr"].as_i64(), items[0]["position"].as_i64()),
        (Some(2), Some(1))
    );
    for key in [
        "pr",
        "title",
        "head_sha",
        "state",
        "position",
        "priority",
        "queued_by",
        "enqueued_at",
        "candidate_sha",
        "affected",
        "steps",
        "outcome_reason",
    ] {
        assert!(items[0].get(key).is_some(), "Item has {key}");
    }
    let r = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/platform/pulls/1", g.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/platform/pulls/9", g.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/nope/queue", g.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    g.command("U0ALICE", "cancel #1").await;
    let v: serde_json::Value = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/platform/history?limit=5", g.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"][0]["state"], "cancelled");
}

/// SPEC §5.2 / issue 14: a comment with several `@gandalf` lines gets one reply that answers each.
#[tokio::test]
async fn several_commands_in_one_comment_get_one_reply() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    g.deliver(
        "issue_comment",
        "d-1",
        &comment_payload(7, "alice", "@gandalf merge\n@gandalf status\n@gandalf frobnicate"),
    )
    .await;
    let comments = g.wait_for_comments(7, 1).await;
    g.deliver("issue_comment", "d-2", &comment_payload(7, "alice", "@gandalf status"))
        .await;
    let after = g.wait_for_comments(7, 2).await;
    assert_eq!(after.len(), 2, "one reply per comment: {after:?}");
    let reply = &comments[0];
    for part in [
        "`@gandalf merge`",
        "`@gandalf status`",
        "`@gandalf frobnicate`",
        "I don't know `frobnicate`",
    ] {
        assert!(reply.contains(part), "{part} missing from the one reply: {reply}");
    }
    assert_eq!(queued_count(&g).await, 1);
}

fn review_payload(action: &str, number: u64, login: &str, state: &str) -> serde_json::Value {
    json!({
        "action": action,
        "review": { "state": state, "user": { "login": login } },
        "pull_request": { "number": number },
        "repository": { "full_name": "acme/platform" },
    })
}

/// Reviews as GitHub counts them (SPEC §5.3): a dismissed approval, or changes requested by
/// someone with write access, drops a queued PR; a read-only reviewer's request does not.
#[tokio::test]
async fn reviews_that_no_longer_let_a_pr_land_drop_it_and_read_only_advice_does_not() {
    let g = spawn_gandalf().await;
    for n in [1, 2, 3] {
        g.ready_pull(n, &format!("f{n}.txt"));
        g.command("U0ALICE", &format!("merge #{n}")).await;
    }
    assert_eq!(queued_count(&g).await, 3);

    // #1: bob's approval is dismissed.
    g.github.dismiss_review("acme/platform", 1, "bob");
    g.deliver(
        "pull_request_review",
        "r-1",
        &review_payload("dismissed", 1, "bob", "dismissed"),
    )
    .await;
    let c = g.wait_for_comments(1, 1).await;
    assert!(c[0].contains("0 of the 1 approvals"), "{c:?}");

    // #2: carol (read only) requests changes: advice, nothing happens.
    g.github.review("acme/platform", 2, "carol", "CHANGES_REQUESTED");
    g.deliver(
        "pull_request_review",
        "r-2",
        &review_payload("submitted", 2, "carol", "changes_requested"),
    )
    .await;
    // #3: bob (write) requests changes after approving: dropped. Deliveries are handled in
    // order, so once #3's comment is there #2's delivery has been handled too.
    g.github.review("acme/platform", 3, "bob", "CHANGES_REQUESTED");
    g.deliver(
        "pull_request_review",
        "r-3",
        &review_payload("submitted", 3, "bob", "changes_requested"),
    )
    .await;
    let c = g.wait_for_comments(3, 1).await;
    assert!(c[0].contains("changes were requested by bob"), "{c:?}");
    g.wait_for(
        "SELECT count(*) FROM github_deliveries WHERE processed_at IS NULL",
        0i64,
    )
    .await;
    assert_eq!(g.github.comments("acme/platform", 2), Vec::<String>::new());
    assert_eq!(g.state_of(2).await, "queued", "read-only advice drops nothing");
    assert_eq!(g.state_of(1).await, "dropped");
    assert_eq!(g.state_of(3).await, "dropped");

    // Queuing again is refused while the request stands.
    let (text, refused) = g.command("U0ALICE", "merge #3").await;
    assert!(refused && text.contains("changes were requested by bob"), "{text}");
}
