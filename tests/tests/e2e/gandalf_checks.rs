//! Issue 17 end to end: Gandalf's own check on the pull request (check run, or the commit status
//! `gandalf` with a personal token), the landing status on the exact commit that lands, and the
//! repository's own CI as `required_checks` — green, red, never started, a missed delivery — with
//! the fake GitHub as strict as GitHub about tokens and fields. Deliveries of CI reports are the
//! ones the fake says GitHub would send, delivered (or lost) by the test.

use std::time::Duration;

use bg_tests::TestGandalf;
use bg_tests::fake_github::checks::{CheckRun, CommitStatus};
use serde_json::{Value, json};

use crate::gandalf_queue::{item_field, main_tip, merge, outbox, setup};

const REPO: &str = "acme/platform";
const DETAILS: &str = "http://gandalf.test/queue/acme/platform/pulls/7";
const POST_CHECK_RUNS: &str = "POST /repos/acme/platform/check-runs";

/// Waits (boundedly) until `f` gives `Some`.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "still waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gandalf's check run on `head`, once its last write is `want` (`status` or `status/conclusion`).
async fn check_run_reaches(g: &TestGandalf, head: &str, want: &str) -> CheckRun {
    eventually(&format!("the gandalf check run to be {want}"), || {
        g.github
            .check_runs(REPO, head, "gandalf")
            .into_iter()
            .last()
            .filter(|r| r.history.last().map(String::as_str) == Some(want))
    })
    .await
}

async fn status_reaches(g: &TestGandalf, sha: &str, want: &str) -> Vec<CommitStatus> {
    eventually(&format!("the gandalf status to be {want}"), || {
        let all = g.github.statuses(REPO, sha, "gandalf");
        (all.last().map(|s| s.state.as_str()) == Some(want)).then_some(all)
    })
    .await
}

/// The first comment on #7 containing `text`, once there is one.
async fn comment_with(g: &TestGandalf, text: &str) -> String {
    eventually(&format!("a comment with {text:?}"), || {
        g.github.comments(REPO, 7).into_iter().find(|c| c.contains(text))
    })
    .await
}

async fn deliver(g: &TestGandalf, event: &str, id: &str, payload: &Value) {
    assert_eq!(g.deliver(event, id, payload).await, 202, "{event} {payload}");
}

#[tokio::test]
async fn a_green_pr_shows_queued_then_in_progress_then_success_and_its_landing_gets_the_status() {
    let (g, p) = setup("", true).await;
    g.github.act_as_app();
    g.command("U0ADMIN1", "pause").await;
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    let queued = check_run_reaches(&g, &head, "queued").await;
    assert_eq!(queued.title.as_deref(), Some("Queued: 1st in line"));
    assert_eq!(
        queued.details_url.as_deref(),
        Some(DETAILS),
        "the PR's page on the control center"
    );
    assert!(queued.external_id.is_some());

    p.block("test-7");
    g.command("U0ADMIN1", "resume").await;
    p.wait_for_start("test 7 -", 1).await;
    let running = check_run_reaches(&g, &head, "in_progress").await;
    assert!(
        running.summary.as_deref().unwrap_or_default().contains("Running")
            || running.summary.as_deref().unwrap_or_default().contains("Preparing"),
        "{running:?}"
    );
    p.unblock("test-7");
    g.wait_for_state(7, "merged").await;
    let done = check_run_reaches(&g, &head, "completed/success").await;
    assert_eq!(
        g.github.check_runs(REPO, &head, "gandalf").len(),
        1,
        "one check run per item"
    );
    assert_eq!(done.history.first().map(String::as_str), Some("queued"));
    assert!(done.history.contains(&"in_progress".to_string()), "{:?}", done.history);

    // The landing: `gandalf` = success on exactly the commit the base moved to, set before it moved.
    let landed = main_tip(&g);
    let statuses = g.github.statuses(REPO, &landed, "gandalf");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].state, "success");
    let log = g.github.log();
    let status_at = log
        .iter()
        .position(|l| l == &format!("POST /repos/{REPO}/statuses/{landed}"))
        .unwrap();
    let moved_at = log
        .iter()
        .position(|l| l == "PATCH /repos/acme/platform/git/refs/heads/main")
        .unwrap();
    assert!(status_at < moved_at, "the status comes before the base moves");
}

#[tokio::test]
async fn a_red_pr_fails_its_check_with_the_step_its_exit_status_and_last_lines() {
    let (g, p) = setup("", true).await;
    g.github.act_as_app();
    p.fail("test-7");
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "failed").await;
    let red = check_run_reaches(&g, &head, "completed/failure").await;
    assert_eq!(red.title.as_deref(), Some("Failed at test (exit status 3)"), "{red:?}");
    let summary = red.summary.unwrap();
    assert!(summary.contains("boom in test-7--"), "the last lines: {summary}");
    assert!(summary.contains("exit status 3"), "{summary}");
}

#[tokio::test]
async fn a_dropped_pr_gets_a_neutral_check_saying_why() {
    let (g, _p) = setup("", true).await;
    g.github.act_as_app();
    g.command("U0ADMIN1", "pause").await;
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    check_run_reaches(&g, &head, "queued").await;
    let new_head = g.github.push(REPO, "pr-7", "main", &[("api/x.rs", Some("v2\n"))]);
    deliver(
        &g,
        "pull_request",
        "sync-1",
        &json!({ "action": "synchronize", "pull_request": { "number": 7, "head": { "sha": new_head }, "merged": false }, "repository": { "full_name": REPO } }),
    )
    .await;
    g.wait_for_state(7, "dropped").await;
    let dropped = check_run_reaches(&g, &head, "completed/neutral").await;
    assert!(dropped.title.unwrap().starts_with("Dropped: "), "says why");
}

#[tokio::test]
async fn a_cancelled_verification_cancels_the_check() {
    let (g, p) = setup("", true).await;
    g.github.act_as_app();
    p.block("test-7");
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    check_run_reaches(&g, &head, "in_progress").await;
    merge(&g, "cancel #7").await;
    g.wait_for_state(7, "cancelled").await;
    p.unblock("test-7");
    check_run_reaches(&g, &head, "completed/cancelled").await;
}

#[tokio::test]
async fn a_crash_mid_verification_keeps_one_check_run_that_ends_green() {
    let (mut g, p) = setup("", true).await;
    g.github.act_as_app();
    p.block("test-7");
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    check_run_reaches(&g, &head, "in_progress").await;
    g.down(bg_tests::Stop::Kill9).await;
    p.unblock("test-7");
    g.up().await;
    g.wait_for_state(7, "merged").await;
    check_run_reaches(&g, &head, "completed/success").await;
    assert_eq!(
        g.github.check_runs(REPO, &head, "gandalf").len(),
        1,
        "the restarted Gandalf updates the check run it created"
    );
}

#[tokio::test]
async fn a_personal_token_shows_the_check_as_the_gandalf_status() {
    let (g, _p) = setup("", true).await;
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;
    let statuses = status_reaches(&g, &head, "success").await;
    assert!(statuses.iter().all(|s| s.target_url.as_deref() == Some(DETAILS)));
    assert!(
        statuses
            .iter()
            .all(|s| s.description.as_ref().is_some_and(|d| d.chars().count() <= 140))
    );
    assert!(g.github.check_runs(REPO, &head, "gandalf").is_empty());
    assert_eq!(
        g.github.calls_to(POST_CHECK_RUNS),
        1,
        "refused once (403 for a personal token), then statuses only"
    );
}

/// A Gandalf requiring `build` (a check run) and `unit` (a status context), with #7 verified and
/// its pipeline green: returns the candidate.
async fn waiting_for_checks(extra: &str) -> (TestGandalf, bg_tests::Pipeline, String) {
    let (g, p) = setup(&format!("required_checks = [\"build\", \"unit\"]\n{extra}"), true).await;
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "waiting_for_checks").await;
    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    assert_eq!(
        g.github.branch(REPO, "gandalf/candidate").as_deref(),
        Some(candidate.as_str())
    );
    (g, p, candidate)
}

#[tokio::test]
async fn green_required_checks_land_the_candidate() {
    let (g, _p, candidate) = waiting_for_checks("").await;
    let before = main_tip(&g);
    let started = g.github.ci_check_run(REPO, &candidate, "build", "in_progress", None);
    deliver(&g, "check_run", "ci-1", &started).await;
    let unit = g
        .github
        .ci_status(REPO, &candidate, "unit", "success", Some("https://ci.example/unit"));
    deliver(&g, "status", "ci-2", &unit).await;
    assert_eq!(g.state_of(7).await, "waiting_for_checks", "build still runs");
    assert_eq!(main_tip(&g), before);
    let done = g
        .github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("success"));
    deliver(&g, "check_run", "ci-3", &done).await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(main_tip(&g), candidate, "exactly the candidate CI passed");
}

#[tokio::test]
async fn a_red_required_check_rejects_the_pr_with_its_name_conclusion_and_link() {
    let (g, _p, candidate) = waiting_for_checks("").await;
    let before = main_tip(&g);
    let red = g
        .github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("timed_out"));
    let link = red["check_run"]["html_url"].as_str().unwrap().to_string();
    deliver(&g, "check_run", "ci-1", &red).await;
    g.wait_for_state(7, "failed").await;
    let comment = comment_with(&g, "Verification failed").await;
    assert!(comment.contains("`build`"), "{comment}");
    assert!(comment.contains("timed_out"), "{comment}");
    assert!(comment.contains(&link), "{comment}");
    assert_eq!(main_tip(&g), before, "nothing landed");
    // The control center's PR page shows the required check, its state and its link.
    let page = g.get_text("/queue/acme/platform/pulls/7").await;
    let checks = page.split("Required checks").nth(1).expect("a Required checks section");
    assert!(checks.contains("build") && checks.contains("timed out"), "{checks}");
    assert!(checks.contains(&format!("href=\"{link}\"")), "{checks}");
}

#[tokio::test]
async fn a_red_required_check_stops_the_running_pipeline() {
    let (g, p) = setup("required_checks = [\"build\"]", true).await;
    p.block("test-7");
    g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    p.wait_for_start("test 7 -", 1).await;
    let candidate = item_field(&g, 7, "candidate_sha").await.unwrap();
    let red = g
        .github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("failure"));
    deliver(&g, "check_run", "ci-1", &red).await;
    g.wait_for_state(7, "failed").await;
    let reason = item_field(&g, 7, "outcome_reason").await.unwrap();
    assert!(reason.contains("`build` concluded `failure`"), "{reason}");
    p.unblock("test-7");
    assert!(
        !p.calls().iter().any(|c| !c.start && c.step == "test"),
        "the test step was stopped, not left to finish"
    );
}

#[tokio::test]
async fn a_missed_delivery_is_recovered_by_the_slow_poll() {
    let (g, _p, candidate) = waiting_for_checks("").await;
    // CI reports, and GitHub's deliveries are lost.
    g.github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("success"));
    g.github.ci_status(REPO, &candidate, "unit", "success", None);
    g.clock.advance(chrono::Duration::seconds(61));
    g.wait_for_state(7, "merged").await;
    assert_eq!(main_tip(&g), candidate);
}

#[tokio::test]
async fn a_check_suite_delivery_makes_gandalf_look() {
    let (g, _p, candidate) = waiting_for_checks("").await;
    g.github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("success"));
    g.github.ci_status(REPO, &candidate, "unit", "success", None);
    let suite = g.github.check_suite_completed(REPO, &candidate);
    deliver(&g, "check_suite", "suite-1", &suite).await;
    g.wait_for_state(7, "merged").await;
}

#[tokio::test]
async fn a_required_check_that_never_starts_is_reported_then_red_at_timeout() {
    let (g, _p, candidate) = waiting_for_checks("timeout = \"30m\"").await;
    let done = g
        .github
        .ci_check_run(REPO, &candidate, "build", "completed", Some("success"));
    deliver(&g, "check_run", "ci-1", &done).await;
    // `unit` never starts.
    g.clock.advance(chrono::Duration::minutes(11));
    let comment = comment_with(&g, "never started").await;
    assert!(comment.contains("`unit`") && !comment.contains("`build`"), "{comment}");
    assert!(comment.contains("filtered by paths"), "{comment}");
    // The report is written before the comment is posted: it is there by now.
    let announced = outbox(&g, "C0MERGES")
        .await
        .into_iter()
        .find(|t| t.contains("never started"))
        .expect("reported in merges_channel");
    assert!(announced.contains("`unit`"), "{announced}");
    assert_eq!(g.state_of(7).await, "waiting_for_checks");

    g.clock.advance(chrono::Duration::minutes(20));
    g.wait_for_state(7, "failed").await;
    let reason = item_field(&g, 7, "outcome_reason").await.unwrap();
    assert!(reason.contains("never started"), "{reason}");
    assert!(reason.contains("`unit`"), "{reason}");
}

#[tokio::test]
async fn a_github_outage_delays_check_updates_loses_none_and_never_blocks_the_queue() {
    let (g, _p) = setup("", true).await;
    g.github.act_as_app();
    g.github.fail_next_on(POST_CHECK_RUNS, 3, 502);
    let head = g.ready_pull(7, "api/x.rs");
    merge(&g, "merge #7").await;
    g.wait_for_state(7, "merged").await;
    let done = check_run_reaches(&g, &head, "completed/success").await;
    assert_eq!(
        g.github.check_runs(REPO, &head, "gandalf").len(),
        1,
        "created once: {done:?}"
    );
    assert!(g.github.calls_to(POST_CHECK_RUNS) >= 4, "retried through the outage");
    // Every update is accounted for (the marks commit just after GitHub answered).
    g.wait_for("SELECT count(*) FROM pr_check_updates WHERE delivered_at IS NULL", 0i64)
        .await;
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM pr_check_updates WHERE attempts > 0")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert!(
        retried > 0,
        "the updates the outage held back were delivered later, not dropped"
    );
}

/// Measurement for docs/benchmarks.md (run with `--ignored --nocapture`): the time from a
/// required check's completion delivery to the base moving, and the GitHub calls of one verified
/// PR with and without `required_checks`, by kind. Prints; asserts only that it landed.
#[tokio::test]
#[ignore]
async fn measure_required_check_to_landing_and_api_calls() {
    fn by_kind(log: &[String]) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for l in log {
            // `METHOD /repos/o/r/<kind>…`, SHAs and numbers folded away.
            let kind: Vec<&str> = l
                .split('/')
                .map(|seg| {
                    if seg.len() >= 7 && seg.chars().all(|c| c.is_ascii_hexdigit()) || seg.parse::<u64>().is_ok() {
                        "{x}"
                    } else {
                        seg
                    }
                })
                .collect();
            *m.entry(kind.join("/")).or_insert(0) += 1;
        }
        m
    }
    for required in [false, true] {
        let extra = if required { "required_checks = [\"build\"]" } else { "" };
        let (g, _p) = setup(extra, true).await;
        g.github.act_as_app();
        let mut latencies = vec![];
        let mut calls = vec![];
        for n in 7..10u64 {
            let before = g.github.log().len();
            g.ready_pull(n, &format!("api/x{n}.rs"));
            merge(&g, &format!("merge #{n}")).await;
            if required {
                g.wait_for_state(n as i32, "waiting_for_checks").await;
                let candidate = item_field(&g, n as i32, "candidate_sha").await.unwrap();
                let done = g
                    .github
                    .ci_check_run(REPO, &candidate, "build", "completed", Some("success"));
                let t0 = std::time::Instant::now();
                deliver(&g, "check_run", &format!("ci-{n}"), &done).await;
                eventually("the base to move", || (main_tip(&g) == candidate).then_some(())).await;
                latencies.push(t0.elapsed());
            }
            g.wait_for_state(n as i32, "merged").await;
            // Let the check's last update go out before counting.
            g.wait_for("SELECT count(*) FROM pr_check_updates WHERE delivered_at IS NULL", 0i64)
                .await;
            let log = g.github.log();
            calls.push(log[before..].to_vec());
        }
        println!("required_checks = {required}: delivery→landing {latencies:?}");
        for (i, c) in calls.iter().enumerate() {
            println!("  PR {}: {} calls {:?}", 7 + i, c.len(), by_kind(c));
        }
    }
}
