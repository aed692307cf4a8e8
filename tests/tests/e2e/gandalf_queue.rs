//! Gandalf's verification worker end to end: the real Gandalf against a real Postgres and the
//! stateful fake GitHub, with pipeline scripts that log every step and block or fail on demand.
//! The invariant under test everywhere: what lands on `main` is exactly the candidate that passed,
//! and nothing lands twice.

use bg_tests::{Pipeline, RESOURCE_MAP, Stop, TestGandalf, spawn_gandalf_with};
use serde_json::json;
use shared::clock::Clock;
use shared::envs::store as envs;

const REPO: &str = "acme/platform";
const PATCH_MAIN: &str = "PATCH /repos/acme/platform/git/refs/heads/main";

/// A Gandalf with the logging pipeline and `extra` repository keys; `map` commits the resource
/// map to `main` first.
pub(crate) async fn setup(extra: &str, map: bool) -> (TestGandalf, Pipeline) {
    let pipeline = Pipeline::new();
    let g = spawn_gandalf_with(&pipeline.config(extra), pipeline.dir(), true).await;
    if map {
        g.github
            .push(REPO, "main", "main", &[(".gandalf/resources.toml", Some(RESOURCE_MAP))]);
    }
    (g, pipeline)
}

pub(crate) fn main_tip(g: &TestGandalf) -> String {
    g.github.branch(REPO, "main").unwrap()
}

pub(crate) async fn merge(g: &TestGandalf, text: &str) {
    let (reply, refused) = g.command("U0ALICE", text).await;
    assert!(!refused, "{text}: {reply}");
}

pub(crate) async fn item_field(g: &TestGandalf, pr: i32, column: &'static str) -> Option<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {column}::text FROM queue_items WHERE pr = $1 ORDER BY id DESC LIMIT 1"
    )))
    .bind(pr)
    .fetch_one(&g.pool)
    .await
    .unwrap()
}

pub(crate) async fn step_states(g: &TestGandalf, pr: i32) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT s.name || ' ' || COALESCE(s.resource, '-') || ' ' || s.state FROM queue_steps s \
         JOIN queue_items i ON i.id = s.item_id WHERE i.pr = $1 ORDER BY s.id",
    )
    .bind(pr)
    .fetch_all(&g.pool)
    .await
    .unwrap()
}

pub(crate) async fn outbox(g: &TestGandalf, channel: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT text FROM slack_outbox WHERE sender = 'gandalf' AND channel = $1 ORDER BY id")
        .bind(channel)
        .fetch_all(&g.pool)
        .await
        .unwrap()
}

/// The [first start, last end] of each PR's steps must not overlap: one PR verifies at a time.
fn assert_serial(p: &Pipeline) {
    let calls = p.calls();
    let mut spans: std::collections::BTreeMap<String, (u128, u128)> = Default::default();
    for c in &calls {
        let e = spans.entry(c.pr.clone()).or_insert((u128::MAX, 0));
        e.0 = e.0.min(c.at_ns);
        e.1 = e.1.max(c.at_ns);
    }
    let mut spans: Vec<(u128, u128, String)> = spans.into_iter().map(|(pr, (a, b))| (a, b, pr)).collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 < w[1].0, "#{} and #{} overlapped: {calls:?}", w[0].2, w[1].2);
    }
}

#[tokio::test]
async fn a_green_pr_lands_exactly_the_tested_candidate_with_only_what_it_affects() {
    let (g, p) = setup("", true).await;
    let base = main_tip(&g);
    let head = g.ready_pull(7, "lib/core.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;

    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    assert_eq!(main_tip(&g), candidate, "main is exactly the tested candidate");
    assert_eq!(item_field(&g, 7, "landed_sha").await.unwrap(), candidate);
    assert_eq!(g.github.parents(REPO, &candidate), vec![base.clone(), head]);
    assert_eq!(
        g.github.tree(REPO, &candidate).get("lib/core.rs").map(String::as_str),
        Some("change 7\n")
    );
    assert!(g.github.is_merged(REPO, 7), "GitHub sees the PR merged");

    // lib changed: lib and its dependent api are built, dependencies first; only api deploys
    // (lib is a package); web is untouched; the test runs once.
    assert_eq!(
        p.started(),
        vec!["build 7 lib", "build 7 api", "deploy 7 api", "test 7 -"]
    );
    for c in p.calls().iter().filter(|c| c.start) {
        assert_eq!(c.detail, candidate, "GANDALF_SHA is the candidate");
        assert_eq!(c.resources, "api lib", "GANDALF_RESOURCES");
    }
    assert_eq!(
        step_states(&g, 7).await,
        vec![
            "build lib succeeded",
            "build api succeeded",
            "deploy api succeeded",
            "test - succeeded"
        ]
    );

    let comments = g.wait_for_comments(7, 1).await;
    assert!(comments.last().unwrap().contains("Landed on `main`"), "{comments:?}");
    let announced = outbox(&g, "C0MERGES").await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert!(
        announced[0].contains("Merged *acme/platform#7*") && announced[0].contains("`api`"),
        "{announced:?}"
    );
    g.wait_for("SELECT count(*) FROM leases", 0i64).await;

    let api: serde_json::Value = g
        .http
        .get(format!("http://{}/api/v1/repos/acme/platform/pulls/7", g.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["state"], "merged");
    assert_eq!(api["candidate_sha"], json!(candidate));
    assert_eq!(api["affected"], json!(["api", "lib"]));
    assert_eq!(api["steps"].as_array().unwrap().len(), 4, "{api}");
}

#[tokio::test]
async fn prs_verify_one_at_a_time_in_priority_order() {
    let (g, p) = setup("", true).await;
    let (_, refused) = g.command("U0ADMIN1", "pause").await;
    assert!(!refused);
    g.ready_pull(1, "web/a.js");
    g.ready_pull(2, "api/b.rs");
    g.ready_pull(3, "web/c.js");
    merge(&g, "merge #1").await;
    merge(&g, "merge #2").await;
    merge(&g, "merge #3 p=high").await;
    assert_eq!(g.state_of(1).await, "queued", "a paused queue starts nothing");
    g.command("U0ADMIN1", "resume").await;
    for pr in [1, 2, 3] {
        g.wait_for_state(pr, "merged").await;
    }
    let tests: Vec<String> = p.started().into_iter().filter(|s| s.starts_with("test")).collect();
    assert_eq!(
        tests,
        vec!["test 3 -", "test 1 -", "test 2 -"],
        "priority, then time queued"
    );
    assert_serial(&p);
    let tree = g.github.tree(REPO, &main_tip(&g));
    for f in ["web/a.js", "api/b.rs", "web/c.js"] {
        assert!(tree.contains_key(f), "{f} landed");
    }
    assert_eq!(g.github.calls_to(PATCH_MAIN), 3);
}

#[tokio::test]
async fn a_red_run_is_rejected_with_its_log_reverted_and_the_queue_goes_on() {
    let (g, p) = setup("", true).await;
    let before = main_tip(&g);
    p.fail("test-7");
    g.ready_pull(7, "api/x.rs");
    g.ready_pull(8, "web/y.js");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "failed").await;
    assert_eq!(main_tip(&g), before, "nothing landed");

    // What was deployed is reverted with the base tip.
    let reverts: Vec<_> = p
        .calls()
        .into_iter()
        .filter(|c| c.start && c.step == "revert")
        .collect();
    assert_eq!(reverts.len(), 1, "{reverts:?}");
    assert_eq!(
        (reverts[0].resource.as_str(), reverts[0].detail.as_str()),
        ("api", before.as_str())
    );

    let comments = g.wait_for_comments(7, 1).await;
    let red = comments.last().unwrap();
    assert!(red.contains("Verification failed at `test`: exit status 3"), "{red}");
    assert!(
        red.contains("boom in test-7--"),
        "the log tail is in the comment: {red}"
    );
    assert!(red.contains("reverted to the base for: api"), "{red}");
    let reason = item_field(&g, 7, "outcome_reason").await.unwrap();
    assert!(reason.contains("failed at `test`"), "{reason}");
    let dm = outbox(&g, "U0ALICE").await;
    assert!(dm.iter().any(|m| m.contains("failed verification")), "{dm:?}");
    let log: String = sqlx::query_scalar("SELECT log FROM queue_steps WHERE name = 'test'")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert!(log.contains("boom in test-7--"), "{log}");

    merge(&g, "merge #8").await;
    g.wait_for_state(8, "merged").await;
    g.wait_for("SELECT count(*) FROM leases", 0i64).await;
}

#[tokio::test]
async fn a_failed_revert_pauses_the_queue_and_says_so() {
    let (g, p) = setup("", true).await;
    p.fail("test-7");
    p.fail("revert-7");
    g.ready_pull(7, "api/x.rs");
    g.ready_pull(8, "web/y.js");
    g.command("U0ADMIN1", "pause").await;
    merge(&g, "merge #7").await;
    merge(&g, "merge #8").await;
    g.command("U0ADMIN1", "resume").await;
    g.wait_for_state(7, "failed").await;
    let paused: bool = sqlx::query_scalar("SELECT paused FROM repo_queues")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert!(paused);
    assert_eq!(
        g.state_of(8).await,
        "queued",
        "#8 waits for someone to repair the environment"
    );
    let said = outbox(&g, "C0MERGES").await;
    assert!(said.iter().any(|m| m.contains("is *paused*")), "{said:?}");
    let (status, _) = g.command("U0ALICE", "queue").await;
    assert!(status.contains("paused"), "{status}");

    g.command("U0ADMIN1", "resume").await;
    g.wait_for_state(8, "merged").await;
}

#[tokio::test]
async fn a_conflict_rejects_the_pr_with_a_comment_and_runs_nothing() {
    let (g, p) = setup("", true).await;
    g.ready_pull(7, "api/x.rs");
    g.github
        .push(REPO, "main", "main", &[("api/x.rs", Some("someone else's\n"))]);
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "failed").await;
    let comments = g.wait_for_comments(7, 1).await;
    assert!(
        comments.last().unwrap().contains("does not merge cleanly"),
        "{comments:?}"
    );
    assert!(p.started().is_empty(), "{:?}", p.started());
}

#[tokio::test]
async fn a_push_to_main_during_verification_verifies_again_on_the_new_tip() {
    let (g, p) = setup("", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    let pushed = g.github.push(REPO, "main", "main", &[("web/hotfix.js", Some("fix\n"))]);
    p.unblock("test-7");
    g.wait_for_state(7, "merged").await;

    assert_eq!(item_field(&g, 7, "attempts").await.as_deref(), Some("2"));
    let tip = main_tip(&g);
    assert_eq!(
        g.github.parents(REPO, &tip)[0],
        pushed,
        "landed on top of the push, by fast-forward"
    );
    let tree = g.github.tree(REPO, &tip);
    assert!(tree.contains_key("web/hotfix.js") && tree.contains_key("api/x.rs"));
    assert_eq!(
        p.started().iter().filter(|s| *s == "test 7 -").count(),
        2,
        "tested again: {:?}",
        p.started()
    );
    let last_test = p.calls().into_iter().rfind(|c| c.start && c.step == "test").unwrap();
    assert_eq!(last_test.detail, tip, "the second test ran on exactly what landed");
}

#[tokio::test]
async fn new_commits_on_a_verifying_pr_stop_it_and_revert() {
    let (g, p) = setup("", true).await;
    let before = main_tip(&g);
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    let new_head = g.github.push(REPO, "pr-7", "main", &[("api/x.rs", Some("v2\n"))]);
    let status = g
        .deliver(
            "pull_request",
            "sync-1",
            &json!({ "action": "synchronize", "pull_request": { "number": 7, "head": { "sha": new_head }, "merged": false }, "repository": { "full_name": REPO } }),
        )
        .await;
    assert_eq!(status, 202);
    g.wait_for_state(7, "dropped").await;
    p.wait_for_start("revert 7 api", 1).await;
    g.wait_for(
        "SELECT count(*) FROM queue_steps WHERE name = 'revert' AND state = 'succeeded'",
        1i64,
    )
    .await;
    assert!(step_states(&g, 7).await.contains(&"test - cancelled".to_string()));
    assert_eq!(main_tip(&g), before);
    p.unblock("test-7");
    assert!(
        !p.calls().iter().any(|c| !c.start && c.step == "test"),
        "the test's process group was killed, it never finished"
    );
}

#[tokio::test]
async fn cancel_stops_the_running_step_and_reverts() {
    let (g, p) = setup("", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    let (reply, refused) = g.command("U0ALICE", "cancel #7").await;
    assert!(!refused, "{reply}");
    assert_eq!(g.state_of(7).await, "cancelled");
    g.wait_for(
        "SELECT count(*) FROM queue_steps WHERE name = 'revert' AND state = 'succeeded'",
        1i64,
    )
    .await;
    assert!(step_states(&g, 7).await.contains(&"test - cancelled".to_string()));
    g.wait_for("SELECT count(*) FROM leases", 0i64).await;
}

#[tokio::test]
async fn a_person_holding_the_environment_makes_gandalf_wait_and_say_so() {
    let (g, _p) = setup("", true).await;
    let now = g.clock.now();
    {
        let mut tx = g.pool.begin().await.unwrap();
        envs::lock(
            &mut tx,
            &"verify-1".parse().unwrap(),
            &"U0BOB".parse().unwrap(),
            &"debugging".into(),
            now,
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "waiting_for_environment").await;
    let (status, _) = g.command("U0ALICE", "status #7").await;
    assert!(status.contains("held by U0BOB"), "{status}");

    let policy = shared::envs::LeasePolicy {
        default_lease: shared::envs::DefaultLease::For(shared::duration::Span::from_secs(3600)),
        max_lease: shared::duration::Span::from_secs(86_400),
        remind_before: shared::duration::Span::from_secs(600),
        timezone: chrono_tz::UTC,
    };
    let bob = shared::envs::Actor {
        id: "U0BOB".parse().unwrap(),
        is_admin: false,
    };
    let mut tx = g.pool.begin().await.unwrap();
    envs::unlock(&mut tx, &"verify-1".parse().unwrap(), &bob, false, now, &policy)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    g.wait_for_state(7, "merged").await;
}

/// Queues #7, and crashes Gandalf (`kill -9`) while its test step runs; Gandalf stays down and
/// the step no longer blocks.
async fn crashed_while_testing_7() -> (TestGandalf, Pipeline) {
    crashed_while_testing_7_with("").await
}

/// [`crashed_while_testing_7`] with `extra` repository keys.
pub(crate) async fn crashed_while_testing_7_with(extra: &str) -> (TestGandalf, Pipeline) {
    let (mut g, p) = setup(extra, true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    g.down(Stop::Kill9).await;
    p.unblock("test-7");
    (g, p)
}

/// The state a crash leaves mid-landing: the commit about to land recorded (SPEC §5.3 step 5).
async fn mark_landing(g: &TestGandalf) {
    sqlx::query("UPDATE queue_items SET state = 'landing', landing_sha = candidate_sha WHERE pr = 7")
        .execute(&g.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn kill_9_during_verification_verifies_again_and_lands_once() {
    let (mut g, _p) = crashed_while_testing_7().await;
    assert_eq!(g.state_of(7).await, "testing", "the crash left it mid-verification");
    g.up().await;
    g.wait_for_state(7, "merged").await;

    assert_eq!(g.github.calls_to(PATCH_MAIN), 1, "landed once");
    assert_eq!(item_field(&g, 7, "attempts").await.as_deref(), Some("2"));
    let states = step_states(&g, 7).await;
    assert!(states.contains(&"test - interrupted".to_string()), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| *s == "test - succeeded").count(),
        1,
        "{states:?}"
    );
    assert_eq!(main_tip(&g), item_field(&g, 7, "candidate_sha").await.unwrap());
}

#[tokio::test]
async fn a_crash_after_the_base_moved_but_before_it_was_recorded_is_not_landed_twice() {
    let (mut g, _p) = crashed_while_testing_7().await;
    // The crash point: Gandalf had moved `main` to the candidate and died before writing it down.
    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    mark_landing(&g).await;
    g.github.set_branch(REPO, "main", &candidate);
    g.up().await;
    g.wait_for_state(7, "merged").await;

    assert_eq!(g.github.calls_to(PATCH_MAIN), 0, "no second landing");
    assert_eq!(item_field(&g, 7, "landed_sha").await.unwrap(), candidate);
    assert_eq!(
        item_field(&g, 7, "attempts").await.as_deref(),
        Some("1"),
        "not verified again"
    );
    let announced = outbox(&g, "C0MERGES").await;
    assert_eq!(announced.len(), 1, "{announced:?}");
}

#[tokio::test]
async fn a_crash_while_landing_before_the_base_moved_verifies_again_and_lands_once() {
    let (mut g, _p) = crashed_while_testing_7().await;
    mark_landing(&g).await;
    g.up().await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1);
    assert_eq!(item_field(&g, 7, "attempts").await.as_deref(), Some("2"));
    assert_eq!(main_tip(&g), item_field(&g, 7, "landed_sha").await.unwrap());
}

#[tokio::test]
async fn github_errors_while_verifying_and_landing_still_land_once() {
    let (g, p) = setup("", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    // The landing PATCH answers 502, and the re-read of the base that follows a 429 (retried by
    // the client).
    g.github.fail_next_on(PATCH_MAIN, 1, 502);
    g.github
        .secondary_rate_limit_on("GET /repos/acme/platform/git/ref/heads/main", 1, 429, Some(1));
    p.unblock("test-7");
    g.wait_for_state(7, "merged").await;
    assert_eq!(g.github.calls_to(PATCH_MAIN), 2, "one refused, one landed");
    assert_eq!(main_tip(&g), item_field(&g, 7, "candidate_sha").await.unwrap());
    let comments = g.wait_for_comments(7, 1).await;
    assert_eq!(
        comments.iter().filter(|c| c.contains("Landed")).count(),
        1,
        "{comments:?}"
    );
}

#[tokio::test]
async fn two_replicas_work_the_queue_once() {
    let (g, p) = setup("", true).await;
    let second = g.another_replica().await;
    g.command("U0ADMIN1", "pause").await;
    for pr in 1..=3u64 {
        g.ready_pull(pr, &format!("web/{pr}.js"));
        merge(&g, &format!("merge #{pr}")).await;
    }
    g.command("U0ADMIN1", "resume").await;
    for pr in 1..=3 {
        g.wait_for_state(pr, "merged").await;
    }
    for pr in 1..=3 {
        assert_eq!(
            p.started().iter().filter(|s| **s == format!("test {pr} -")).count(),
            1,
            "{:?}",
            p.started()
        );
    }
    assert_serial(&p);
    assert_eq!(g.github.calls_to(PATCH_MAIN), 3);
    second.stop().await;
}

#[tokio::test]
async fn a_verification_past_its_timeout_fails_and_reverts() {
    let (g, p) = setup("timeout = \"10m\"\nstep_timeout = \"5m\"", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    g.clock.advance(chrono::Duration::minutes(11));
    g.wait_for_state(7, "failed").await;
    let reason = item_field(&g, 7, "outcome_reason").await.unwrap();
    assert!(reason.contains("timed out after 10m"), "{reason}");
    assert!(step_states(&g, 7).await.contains(&"test - cancelled".to_string()));
    p.wait_for_start("revert 7 api", 1).await;
    p.unblock("test-7");
}

#[tokio::test]
async fn without_a_resource_map_everything_is_built_and_deployed() {
    let (g, p) = setup("", false).await;
    g.ready_pull(7, "anything/at/all.txt");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(p.started(), vec!["build 7 -", "deploy 7 -", "test 7 -"]);
}

#[tokio::test]
async fn a_missed_delivery_is_caught_by_reconciliation() {
    let (g, _p) = setup("", true).await;
    g.command("U0ADMIN1", "pause").await;
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.github.close_pull(REPO, 7);
    let client = g.gandalf.github.clone().unwrap();
    // The worker's own reconciliation at start may get there first; either way it is dropped once.
    let dropped = gandalf::worker::reconcile(&g.gandalf, &client, &g.gandalf.config.repos[0])
        .await
        .unwrap();
    assert!(dropped <= 1);
    assert_eq!(g.state_of(7).await, "dropped");
    let comments = g.wait_for_comments(7, 1).await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains("it was closed"), "{comments:?}");
}

/// Issue 14: an admin forces Gandalf's verification lease open mid-run. The verification stops,
/// what was deployed is reverted, the PR and `merges_channel` are told, and the PR keeps its place:
/// once the environment is free again it is verified and lands.
#[tokio::test]
async fn a_forced_unlock_of_the_verification_environment_stops_reverts_and_says_so() {
    let (g, p) = setup("", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;

    let policy = shared::envs::LeasePolicy {
        default_lease: shared::envs::DefaultLease::For(shared::duration::Span::from_secs(3600)),
        max_lease: shared::duration::Span::from_secs(86_400),
        remind_before: shared::duration::Span::from_secs(600),
        timezone: chrono_tz::UTC,
    };
    let admin = shared::envs::Actor::person(&"U0ADMIN1".parse().unwrap(), true);
    let env: shared::ids::EnvName = "verify-1".parse().unwrap();
    {
        let mut tx = g.pool.begin().await.unwrap();
        let out = envs::unlock(&mut tx, &env, &admin, true, g.clock.now(), &policy)
            .await
            .unwrap();
        assert!(matches!(out, envs::UnlockOutcome::Released(_)), "{out:?}");
        tx.commit().await.unwrap();
    }

    g.wait_for(
        "SELECT count(*) FROM queue_steps WHERE name = 'revert' AND state = 'succeeded'",
        1i64,
    )
    .await;
    let comments = g.wait_for_comments(7, 1).await;
    assert!(comments[0].contains("was taken away"), "{comments:?}");
    assert!(step_states(&g, 7).await.contains(&"test - cancelled".to_string()));
    // Back in the queue (not rejected), and verified again: the environment is free now.
    p.unblock("test-7");
    g.wait_for_state(7, "merged").await;
    assert_eq!(
        g.wait_for(
            "SELECT count(*) FROM slack_outbox WHERE channel = 'C0MERGES' AND text LIKE '%was taken away%'",
            1i64
        )
        .await,
        1
    );
}

/// SPEC §5.3 step 3, §10: GitHub's compare lists at most 300 files. A PR of 300 files under
/// `api/` and one under `web/` (the 301st by name) must not be planned from the first 300: the
/// list may be cut short, so every enabled resource is affected, `web` included.
#[tokio::test]
async fn a_change_list_github_cut_at_300_files_affects_everything() {
    let (g, p) = setup("", true).await;
    let contents: Vec<(String, String)> = (0..300)
        .map(|i| (format!("api/f{i:03}.rs"), format!("{i}\n")))
        .chain([("web/z.rs".to_string(), "z\n".to_string())])
        .collect();
    let changes: Vec<(&str, Option<&str>)> = contents.iter().map(|(p, c)| (p.as_str(), Some(c.as_str()))).collect();
    g.github.push(REPO, "pr-7", "main", &changes);
    g.github.open_pull(REPO, 7, "A big refactor", "alice", "pr-7", "main");
    g.github.approve(REPO, 7, "bob");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;
    let started = p.started();
    assert!(
        started.contains(&"deploy 7 web".to_string()),
        "web was not deployed: {started:?}"
    );
    assert!(started.contains(&"deploy 7 api".to_string()), "{started:?}");
    assert_eq!(
        item_field(&g, 7, "affected").await.as_deref(),
        Some(r#"["api", "lib", "web"]"#),
        "every enabled resource"
    );
}

/// Issue 14: Gandalf's lease of the verification environment outlives the verification's
/// `timeout` by 15 minutes, and the revert after a timeout can run past that: while it runs, the
/// lease is renewed shortly before it would end, so Bobby's expiry never hands the environment to
/// someone else mid-revert.
#[tokio::test]
async fn the_verification_lease_is_renewed_while_a_revert_runs_past_it() {
    let (g, p) = setup("timeout = \"1h\"\nstep_timeout = \"1h\"", true).await;
    p.block("test-7");
    p.block("revert-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    let started = g.clock.now();
    let lease_end = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT expires_at FROM leases WHERE holder = 'gandalf'")
            .fetch_one(&g.pool)
            .await
            .unwrap()
    };
    let first = lease_end().await;
    assert_eq!(first, started + chrono::Duration::minutes(75), "timeout + 15 min");

    // Past the timeout: the test step is stopped and the revert starts (and hangs).
    g.clock.advance(chrono::Duration::minutes(61));
    p.wait_for_start("revert 7 api", 1).await;
    assert_eq!(lease_end().await, first, "no renewal while far from the end");

    // Four minutes before the lease would end, it is renewed by 15 minutes from then.
    g.clock.advance(chrono::Duration::minutes(10));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while lease_end().await == first {
        assert!(tokio::time::Instant::now() < deadline, "the lease was not renewed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(lease_end().await, started + chrono::Duration::minutes(71 + 15));

    p.unblock("revert-7");
    g.wait_for_state(7, "failed").await;
    g.wait_for("SELECT count(*) FROM leases", 0i64).await;
}

/// `test_retries`: a red `test` runs again on the same deployment; a pass lands and marks the run
/// flaky (comment, API, queue listing). Without retries the same flake rejects the PR.
#[tokio::test]
async fn a_test_that_passes_on_a_retry_lands_and_is_marked_flaky() {
    let (g, p) = setup("test_retries = 2", true).await;
    p.fail_once("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(
        p.started(),
        vec!["build 7 lib", "build 7 api", "deploy 7 api", "test 7 -", "test 7 -"],
        "the test ran again on the same deployment"
    );
    assert_eq!(main_tip(&g), item_field(&g, 7, "candidate_sha").await.unwrap());
    assert_eq!(item_field(&g, 7, "flaky").await.as_deref(), Some("true"));
    let comments = g.wait_for_comments(7, 1).await;
    assert!(comments.last().unwrap().contains("flaky"), "{comments:?}");
    let (_, item) = g.get_json("/api/v1/repos/acme/platform/pulls/7").await;
    assert_eq!(item["flaky"], true, "{item}");
    let (text, _) = g.command("U0ALICE", "queue").await;
    assert!(text.contains("Flaky rate: 100% (1 of the last 1 runs"), "{text}");

    // Without retries, a flake is a red run.
    let (g, p) = setup("", true).await;
    p.fail_once("test-8");
    g.ready_pull(8, "api/y.rs");
    merge(&g, "merge #8").await;
    g.wait_for_state(8, "failed").await;
    assert_eq!(item_field(&g, 8, "flaky").await.as_deref(), Some("false"));
}

/// `p=urgent` sorts before every number and goes next (without interrupting a running one).
#[tokio::test]
async fn an_urgent_pr_goes_next() {
    let (g, p) = setup("", true).await;
    p.block("test-1");
    g.ready_pull(1, "web/1.js");
    merge(&g, "merge #1").await;
    p.wait_for_start("test 1 -", 1).await;
    g.ready_pull(2, "web/2.js");
    merge(&g, "merge #2 p=1000").await;
    g.ready_pull(3, "web/3.js");
    merge(&g, "merge #3 p=urgent").await;
    let (text, _) = g.command("U0ALICE", "queue").await;
    let (at3, at2) = (text.find("#3").unwrap(), text.find("#2").unwrap());
    assert!(at3 < at2, "urgent first: {text}");
    assert!(text.contains("priority urgent"), "{text}");
    let (_, item) = g.get_json("/api/v1/repos/acme/platform/pulls/3").await;
    assert_eq!(item["priority"], "urgent", "{item}");
    p.unblock("test-1");
    for pr in 1..=3 {
        g.wait_for_state(pr, "merged").await;
    }
    let tests: Vec<String> = p.started().into_iter().filter(|s| s.starts_with("test")).collect();
    assert_eq!(
        tests,
        vec!["test 1 -", "test 3 -", "test 2 -"],
        "#1 finished first, then urgent #3"
    );
}
