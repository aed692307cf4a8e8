//! GitHub deliveries as a work queue (SPEC §5.4, issue 14 item 2), against a running Gandalf and
//! the fake GitHub: a delivery that fails for good is set aside (control center, `/metrics`)
//! without holding up other pull requests; a failed attempt is retried and its command runs once;
//! a replica killed between a command's effect and its reply leaves a claim that runs out, and the
//! next attempt posts the reply without running the command again; two replicas share the
//! deliveries and run each command once, in order per pull request.
//!
//! Retries are paced by Gandalf's clock, which these tests hold: a retry happens when a test moves
//! the clock past it, never by waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bg_tests::fake_github::TOKEN;
use bg_tests::{Stop, TestGandalf, spawn_gandalf};
use secrecy::SecretString;
use serde_json::json;
use shared::github::{Auth, Github, RetryPolicy};

fn comment_payload(number: u64, body: &str) -> serde_json::Value {
    json!({
        "action": "created",
        "issue": { "number": number, "pull_request": { "url": "x" } },
        "comment": { "body": body, "user": { "login": "alice", "type": "User" } },
        "repository": { "full_name": "acme/platform" },
    })
}

fn comments_path(number: u64) -> String {
    format!("POST /repos/acme/platform/issues/{number}/comments")
}

/// One scalar of the test database.
async fn scalar<T>(g: &TestGandalf, sql: &str, delivery: &str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(delivery)
        .fetch_one(&g.pool)
        .await
        .unwrap()
}

/// Waits (boundedly) until delivery `id`'s row matches `condition` (SQL over its columns).
async fn wait_for_delivery(g: &TestGandalf, id: &str, condition: &str) {
    let sql = format!("SELECT count(*) FROM github_deliveries WHERE delivery_id = $1 AND {condition}");
    // A bound on failing, not a timing: generous, for a machine busy with other builds.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if scalar::<i64>(g, &sql, id).await == 1 {
            return;
        }
        let row: String = scalar(
            g,
            "SELECT row_to_json(d)::text FROM github_deliveries d WHERE delivery_id = $1",
            id,
        )
        .await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: waited for {condition}; the row: {row}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn items_of(g: &TestGandalf, pr: i32) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM queue_items WHERE pr = $1")
        .bind(pr)
        .fetch_one(&g.pool)
        .await
        .unwrap()
}

/// An attempt failed and its delivery waits for a retry: released, an error kept, not set aside.
const WAITING_FOR_RETRY: &str =
    "claimed_by IS NULL AND last_error IS NOT NULL AND next_attempt_at IS NOT NULL AND failed_at IS NULL";

#[tokio::test]
async fn a_delivery_that_fails_for_good_is_set_aside_without_holding_up_the_next_pull_request() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    g.ready_pull(8, "b.txt");
    // #7 is gone (404), and the App may not comment on it (403): both for good.
    g.github.fail_next_on("GET /repos/acme/platform/pulls/7", 1, 404);
    g.github.fail_next_on(&comments_path(7), 2, 403);

    assert_eq!(
        g.deliver("issue_comment", "d-7", &comment_payload(7, "@gandalf merge"))
            .await,
        202
    );
    wait_for_delivery(&g, "d-7", &format!("attempts = 1 AND {WAITING_FOR_RETRY}")).await;

    // Behind it: a later delivery about #7 waits its turn; #8 goes ahead at once.
    g.deliver("issue_comment", "d-7-status", &comment_payload(7, "@gandalf status"))
        .await;
    g.deliver("issue_comment", "d-8", &comment_payload(8, "@gandalf merge"))
        .await;
    let on_8 = g.wait_for_comments(8, 1).await;
    assert!(on_8[0].contains("queued"), "{on_8:?}");
    assert_eq!(g.state_of(8).await, "queued");
    // d-7-status arrived before d-8, so one processor would have taken it first had it been free.
    wait_for_delivery(&g, "d-7-status", "processed_at IS NULL AND attempts = 0").await;

    // The retry meets the same refusal and the delivery is set aside after its second attempt
    // (a refusal for good is not tried six times); what was behind it on #7 goes on.
    g.clock.advance(chrono::Duration::minutes(1));
    wait_for_delivery(
        &g,
        "d-7",
        "failed_at IS NOT NULL AND attempts = 2 AND last_error LIKE '%403%' AND claimed_by IS NULL \
         AND processed_at IS NULL AND reply_posted_at IS NULL",
    )
    .await;
    let on_7 = g.wait_for_comments(7, 1).await;
    assert_eq!(on_7.len(), 1, "only the status answer: {on_7:?}");
    assert!(on_7[0].contains("never been queued"), "{on_7:?}");
    wait_for_delivery(&g, "d-7-status", "processed_at IS NOT NULL").await;
    assert_eq!(g.github.calls_to(&comments_path(7)), 3, "two refused, then the status");

    // Visible: the control center lists it with its error, /metrics counts it.
    let page = g.get_text("/").await;
    let section = page
        .split("GitHub deliveries set aside")
        .nth(1)
        .unwrap_or_else(|| panic!("no section of failed deliveries: {page}"));
    assert!(
        section.contains("acme/platform#7") && section.contains("d-7"),
        "{section}"
    );
    assert!(section.contains("403"), "the error is shown: {section}");
    assert!(!section.contains("acme/platform#8"), "{section}");
    let metrics = g.get_text("/metrics").await;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    // Process-wide recorder shared with the other tests of this binary: at least ours.
    assert!(value("gandalf_deliveries_failed_total") >= 1.0, "{metrics}");
    assert!(value("gandalf_deliveries_pending") >= 0.0, "{metrics}");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_and_the_command_runs_once() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    g.ready_pull(8, "b.txt");
    // Attempt 1: GitHub is down for every try of the read (the harness's client tries 3 times).
    // Attempt 2: the PR is queued, but posting the reply meets a 502. Attempt 3: the reply.
    g.github.fail_next_on("GET /repos/acme/platform/pulls/7", 3, 502);
    g.github.fail_next_on(&comments_path(7), 1, 502);

    g.deliver("issue_comment", "d-7", &comment_payload(7, "@gandalf merge"))
        .await;
    wait_for_delivery(
        &g,
        "d-7",
        &format!("attempts = 1 AND executed_at IS NULL AND answers = '[]' AND {WAITING_FOR_RETRY}"),
    )
    .await;
    assert_eq!(items_of(&g, 7).await, 0, "nothing changed: the read failed");
    assert!(
        g.github.comments("acme/platform", 7).is_empty(),
        "trouble is retried, not answered, before the last attempt"
    );
    // Another PR is not held up meanwhile.
    g.deliver("issue_comment", "d-8", &comment_payload(8, "@gandalf merge"))
        .await;
    g.wait_for_comments(8, 1).await;

    g.clock.advance(chrono::Duration::minutes(1));
    wait_for_delivery(
        &g,
        "d-7",
        &format!("attempts = 2 AND executed_at IS NOT NULL AND reply LIKE '%queued%' AND {WAITING_FOR_RETRY}"),
    )
    .await;
    assert_eq!(items_of(&g, 7).await, 1);

    g.clock.advance(chrono::Duration::minutes(2));
    let comments = g.wait_for_comments(7, 1).await;
    wait_for_delivery(
        &g,
        "d-7",
        "attempts = 3 AND processed_at IS NOT NULL AND reply_posted_at IS NOT NULL",
    )
    .await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].contains("alice queued *acme/platform#7*") && !comments[0].contains("already"),
        "the answer of the one run: {comments:?}"
    );
    assert_eq!(items_of(&g, 7).await, 1, "queued once");
    assert_eq!(g.state_of(7).await, "queued");
    assert_eq!(g.github.calls_to(&comments_path(7)), 2, "the 502, then the reply");
}

/// A door to the fake GitHub that lets every request through but never answers a comment's POST:
/// a Gandalf behind it is caught with a delivery's effect committed and its reply on the way.
/// Returns the door's URL and how many POSTs it is holding.
async fn start_door(upstream: String) -> (String, Arc<AtomicUsize>) {
    let held = Arc::new(AtomicUsize::new(0));
    let counter = held.clone();
    let client = reqwest::Client::new();
    let app = Router::new().fallback(move |req: Request| {
        let (client, upstream, held) = (client.clone(), upstream.clone(), counter.clone());
        async move {
            let (parts, body) = req.into_parts();
            if parts.method == axum::http::Method::POST && parts.uri.path().ends_with("/comments") {
                held.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut request = client
                .request(parts.method.clone(), format!("{upstream}{path}"))
                .body(body);
            for (name, value) in &parts.headers {
                if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
                    request = request.header(name, value);
                }
            }
            let answer = request.send().await.unwrap();
            let status = answer.status();
            let mut headers = answer.headers().clone();
            headers.remove(axum::http::header::CONTENT_LENGTH);
            headers.remove(axum::http::header::TRANSFER_ENCODING);
            let body = answer.bytes().await.unwrap();
            let mut response: Response = (status, body).into_response();
            response.headers_mut().extend(headers);
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, held)
}

#[tokio::test]
async fn a_replica_killed_between_the_effect_and_the_reply_leaves_the_reply_to_post_once() {
    let mut g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    // Gandalf's own processor is down: the delivery goes to one whose comment POSTs never return.
    g.down(Stop::Kill9).await;
    let (door, held) = start_door(g.github.api_url()).await;
    let client = Github::new(&door, Auth::Token(SecretString::from(TOKEN)), RetryPolicy::default())
        .await
        .unwrap();
    let doomed = gandalf::handler::Gandalf {
        github: Some(client),
        ..g.gandalf.clone()
    };
    {
        let mut conn = g.pool.acquire().await.unwrap();
        let stored = gandalf::deliveries::store::store_delivery(
            &mut conn,
            "d-7",
            "issue_comment",
            &comment_payload(7, "@gandalf merge"),
            shared::clock::Clock::now(&g.clock),
        )
        .await
        .unwrap();
        assert!(stored);
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let replica = tokio::spawn(gandalf::deliveries::process_deliveries(doomed, rx));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while held.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the reply was never sent");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Killed while posting: the command's effect and reply are committed, the claim is held.
    replica.abort();
    let _ = replica.await;
    wait_for_delivery(
        &g,
        "d-7",
        "attempts = 1 AND executed_at IS NOT NULL AND reply IS NOT NULL AND reply_posted_at IS NULL \
         AND claimed_by IS NOT NULL AND processed_at IS NULL",
    )
    .await;
    assert_eq!(items_of(&g, 7).await, 1);

    // Gandalf comes back; the dead replica's claim runs out and the next attempt only posts.
    g.up().await;
    g.clock.advance(chrono::Duration::minutes(11));
    let comments = g.wait_for_comments(7, 1).await;
    wait_for_delivery(&g, "d-7", "attempts = 2 AND processed_at IS NOT NULL").await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].contains("alice queued *acme/platform#7*") && !comments[0].contains("already"),
        "{comments:?}"
    );
    assert_eq!(items_of(&g, 7).await, 1, "queued once");
    assert_eq!(
        g.github.calls_to("GET /repos/acme/platform/pulls/7"),
        1,
        "the retry asked GitHub nothing before posting"
    );
}

#[tokio::test]
async fn two_replicas_run_each_command_once_in_order_per_pull_request() {
    let g = spawn_gandalf().await;
    let replica = g.another_replica().await;
    let prs: Vec<u64> = (1..=8).collect();
    for &n in &prs {
        g.ready_pull(n, &format!("f{n}.txt"));
    }
    for &n in &prs {
        g.deliver(
            "issue_comment",
            &format!("d-{n}-merge"),
            &comment_payload(n, "@gandalf merge"),
        )
        .await;
        g.deliver(
            "issue_comment",
            &format!("d-{n}-status"),
            &comment_payload(n, "@gandalf status"),
        )
        .await;
    }
    for &n in &prs {
        let comments = g.wait_for_comments(n, 2).await;
        assert_eq!(comments.len(), 2, "#{n}: {comments:?}");
        assert!(
            comments[0].contains(&format!("alice queued *acme/platform#{n}*")),
            "#{n}: the merge first: {comments:?}"
        );
        assert!(
            comments[1].contains("position"),
            "#{n}: the status after it: {comments:?}"
        );
        assert_eq!(items_of(&g, n as i32).await, 1, "#{n} queued once");
    }
    g.wait_for(
        "SELECT count(*) FROM github_deliveries WHERE processed_at IS NOT NULL AND attempts = 1",
        16i64,
    )
    .await;
    replica.stop().await;
}

/// The two halves of "once", through the very calls the processor makes: a command whose answer an
/// earlier attempt recorded is not run again, and a write whose record finds the claim lost to
/// another replica is rolled back with it.
#[tokio::test]
async fn a_command_an_earlier_attempt_ran_is_skipped_and_a_lost_claim_undoes_the_write() {
    use gandalf::deliveries::store;
    use gandalf::handler::CommentRun;

    let mut g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    // Only this test touches the deliveries.
    g.down(Stop::Kill9).await;
    let body = "@gandalf merge\n@gandalf status";
    let now = shared::clock::Clock::now(&g.clock);
    let mut conn = g.pool.acquire().await.unwrap();
    store::store_delivery(&mut conn, "d-7", "issue_comment", &comment_payload(7, body), now)
        .await
        .unwrap();
    let claimed = store::claim(&mut conn, "replica-b", now, now + chrono::Duration::minutes(10))
        .await
        .unwrap()
        .expect("due");
    assert_eq!((claimed.id.as_str(), claimed.attempt), ("d-7", 1));
    let repo: shared::ids::RepoName = "acme/platform".parse().unwrap();
    let seven = shared::ids::PrNumber::new(7).unwrap();

    // Replica A's claim ran out and B holds it now: A's merge is undone with its record.
    let lost = CommentRun {
        delivery: "d-7",
        claimant: "replica-a",
        done: &[],
        answer_trouble: false,
    };
    let err = g
        .gandalf
        .handle_delivered_comment(&repo, seven, "alice", body, &lost)
        .await
        .unwrap_err();
    assert!(err.chain().any(|c| c.is::<store::Fenced>()), "{err:#}");
    assert_eq!(items_of(&g, 7).await, 0, "the queue item went with the lost record");

    // B, with the merge's answer recorded by an earlier attempt: only the status runs.
    store::record_answer(
        &mut conn,
        "d-7",
        "replica-b",
        0,
        "@gandalf merge",
        "queued by an earlier attempt",
    )
    .await
    .unwrap();
    let done = vec![("@gandalf merge".to_string(), "queued by an earlier attempt".to_string())];
    let run = CommentRun {
        delivery: "d-7",
        claimant: "replica-b",
        done: &done,
        answer_trouble: false,
    };
    let reply = g
        .gandalf
        .handle_delivered_comment(&repo, seven, "alice", body, &run)
        .await
        .unwrap()
        .expect("a reply");
    assert!(reply.contains("queued by an earlier attempt"), "{reply}");
    assert!(
        reply.contains("never been queued"),
        "the merge did not run again: {reply}"
    );
    assert_eq!(items_of(&g, 7).await, 0);
    let answers: i32 = scalar(
        &g,
        "SELECT jsonb_array_length(answers) FROM github_deliveries WHERE delivery_id = $1",
        "d-7",
    )
    .await;
    assert_eq!(answers, 2);
}

/// The table refuses rows the processor must never write: a reply posted that was never decided,
/// a delivery both processed and failed, set aside without its error, finished but still claimed,
/// half a claim.
#[tokio::test]
async fn the_table_refuses_impossible_deliveries() {
    let g = spawn_gandalf().await;
    let insert = |columns: &'static str, values: &'static str| {
        let pool = g.pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO github_deliveries (delivery_id, event, payload, received_at, {columns}) \
                 VALUES ('x', 'ping', '{{}}', now(), {values})"
            )))
            .execute(&pool)
            .await
        }
    };
    for (columns, values) in [
        ("reply_posted_at", "now()"),
        ("reply", "'hello'"),
        ("processed_at", "now()"),
        (
            "executed_at, processed_at, failed_at, last_error",
            "now(), now(), now(), 'x'",
        ),
        ("failed_at", "now()"),
        (
            "executed_at, processed_at, claimed_by, claimed_until",
            "now(), now(), 'r', now()",
        ),
        ("claimed_by", "'r'"),
        ("attempts", "-1"),
        ("answers", "'{}'"),
    ] {
        let refused = insert(columns, values).await.expect_err(columns);
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        // 23514: check_violation, so a constraint refused it (not a typo in this test).
        assert_eq!(code.as_deref(), Some("23514"), "({columns}) = ({values}): {refused}");
    }
    insert(
        "executed_at, reply, reply_posted_at, processed_at",
        "now(), 'hi', now(), now()",
    )
    .await
    .expect("a processed delivery whose reply was posted");
}
