//! `/metrics` as the control center's Prometheus side (SPEC §7): request latency by route, leases
//! and environments by state, the queues, time in queue, verification and step durations, the
//! outbox backlog. One test in its own binary on purpose: the metrics recorder is process-wide,
//! and another test's bots would set the same series.

use bg_tests::{BobbyOptions, Pipeline, RESOURCE_MAP, spawn_bobby_on, spawn_gandalf_with};

/// The value of the series `name` whose labels include all of `labels`.
async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_cover_leases_environments_queues_durations_and_the_outbox() {
    let p = Pipeline::new();
    let g = spawn_gandalf_with(&p.config(""), p.dir(), true).await;
    g.github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    // Counters and histograms are process-wide, and every end-to-end test shares this process:
    // compare with what they said before this test's PR landed (other tests only add to them).
    let before = scrape(&format!("http://{}/metrics", g.addr)).await;
    let counted = |m: &str, name: &str, labels: &[&str]| value(m, name, labels).unwrap_or(0.0);
    g.ready_pull(7, "api/x.rs");
    let (reply, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "{reply}");
    g.wait_for_state(7, "merged").await;
    // One verifying, one waiting behind it.
    p.block("build-8");
    g.ready_pull(8, "api/y.rs");
    g.command("U0ALICE", "merge #8").await;
    p.wait_for_start("build 8 lib", 1).await;
    g.ready_pull(9, "web/z.rs");
    g.command("U0BOB", "merge #9").await;

    let bobby = spawn_bobby_on(g.database(), g.clock.clone(), BobbyOptions::default()).await;
    let lock = bobby.command("U0ALICE", "lock env-2 for 1h").await;
    assert!(lock.in_channel(), "{}", lock.text());
    let home = bobby.http.get(bobby.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);

    let metrics = bobby
        .http
        .get(bobby.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Scrape-time gauges from the shared database: both bots report them.
    assert_eq!(
        value(&metrics, "leases", &["state=\"ready\""]),
        Some(2.0),
        "alice's env-2 and Gandalf's verify-1 while #8 verifies: {metrics}"
    );
    assert_eq!(
        value(&metrics, "environments", &["state=\"ready\""]),
        Some(5.0),
        "env-1…4 and verify-1: {metrics}"
    );
    assert_eq!(value(&metrics, "environments", &["state=\"faulted\""]), Some(0.0));
    assert_eq!(
        value(&metrics, "gandalf_queue_length", &["repo=\"acme/platform\""]),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            "gandalf_queue_items",
            &["repo=\"acme/platform\"", "state=\"queued\""]
        ),
        Some(1.0)
    );
    assert!(value(&metrics, "slack_outbox_backlog", &[]).is_some(), "{metrics}");
    // Recorded where things happen.
    assert!(
        value(
            &metrics,
            "http_request_duration_seconds_count",
            &["route=\"/\"", "status=\"200\""]
        )
        .is_some(),
        "the control center's latency: {metrics}"
    );
    assert!(
        counted(&metrics, "gandalf_verification_seconds_count", &["outcome=\"merged\""])
            >= counted(&before, "gandalf_verification_seconds_count", &["outcome=\"merged\""]) + 1.0,
        "{metrics}"
    );
    assert!(value(&metrics, "gandalf_step_seconds_count", &["step=\"build\""]).is_some());
    assert!(
        counted(&metrics, "gandalf_time_in_queue_seconds_count", &[])
            >= counted(&before, "gandalf_time_in_queue_seconds_count", &[]) + 1.0,
        "recorded as a PR lands"
    );
    assert!(
        counted(&metrics, "gandalf_outcomes_total", &["outcome=\"merged\""])
            >= counted(&before, "gandalf_outcomes_total", &["outcome=\"merged\""]) + 1.0
    );
    p.unblock("build-8");
}
