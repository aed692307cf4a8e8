//! Bobby's Nightly end to end: real Bobby, real Postgres, fake Slack, and real child processes from
//! generated step scripts (succeeding, failing, throttling, hanging). Time is a manual clock: the
//! tests move it to each slot (after seeing the scheduler sleep until exactly that instant) and
//! through each retry backoff; no test waits for schedule time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bg_tests::{BobbyOptions, StepScripts, Stop, TestBobby, nightly_toml, spawn_bobby_at, spawn_bobby_with};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::clock::Clock;
use sqlx::PgPool;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const ENVS: [&str; 4] = ["env-1", "env-2", "env-3", "env-4"];

fn opts(config: String) -> BobbyOptions {
    BobbyOptions {
        config,
        ..Default::default()
    }
}

/// Bounded polling of a condition on state a background worker writes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Bounded polling until `get` yields a value.
async fn poll<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = get().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn next_due(pool: &PgPool) -> Option<(String, DateTime<Utc>)> {
    sqlx::query_as("SELECT next_phase, next_due_at FROM nightly_scheduler")
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Waits until the Nightly leader sleeps until exactly `at` for `phase`.
async fn wait_next_due(app: &TestBobby, phase: &str, at: &str) {
    let want = (phase.to_string(), utc(at));
    poll(&format!("the scheduler to sleep until {phase} at {at}"), || {
        let pool = app.pool.clone();
        let want = want.clone();
        async move { (next_due(&pool).await == Some(want)).then_some(()) }
    })
    .await
}

async fn run_state(pool: &PgPool, id: i64) -> String {
    sqlx::query_scalar("SELECT state FROM nightly_runs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until run `id` has ended, moving the clock to each retry's time whenever a step waits
/// out a backoff (the only thing a run sleeps on).
async fn drive_until_ended(app: &TestBobby, id: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = run_state(&app.pool, id).await;
        if matches!(state.as_str(), "finished" | "interrupted" | "skipped") {
            return;
        }
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM nightly_steps WHERE run_id = $1 AND state = 'backoff'",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if let Some(t) = next
            && t > app.clock.now()
        {
            app.clock.set(t);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run #{id} did not end (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run_for_slot(pool: &PgPool, at: DateTime<Utc>) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM nightly_runs WHERE scheduled_for = $1")
        .bind(at)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Lets the schedule fire `phase` at `at`: waits until the scheduler sleeps until exactly then,
/// moves the clock there, and waits until the slot's run has ended. Returns the run's id.
async fn run_slot(app: &TestBobby, phase: &str, at: &str) -> i64 {
    wait_next_due(app, phase, at).await;
    app.clock.set(utc(at));
    let id = wait_for_slot_run(app, utc(at)).await;
    drive_until_ended(app, id).await;
    id
}

async fn wait_for_slot_run(app: &TestBobby, at: DateTime<Utc>) -> i64 {
    poll(&format!("a run for the slot at {at}"), || {
        let pool = app.pool.clone();
        async move { run_for_slot(&pool, at).await }
    })
    .await
}

/// The run id a `/bobby nightly run …` reply names.
fn queued_run_id(text: &str) -> i64 {
    let after = text
        .split("run #")
        .nth(1)
        .unwrap_or_else(|| panic!("no run id in {text}"));
    after
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// An admin asks for a manual run; waits until it has ended.
async fn manual_run(app: &TestBobby, text: &str) -> i64 {
    let r = app.command("U0ADMIN1", text).await;
    assert!(r.text().contains("queued as run #"), "{}", r.text());
    let id = queued_run_id(&r.text());
    drive_until_ended(app, id).await;
    id
}

async fn states(app: &TestBobby) -> Vec<String> {
    let mut out = Vec::new();
    for e in ENVS {
        out.push(app.environment(e).await["state"].as_str().unwrap().to_string());
    }
    out
}

async fn run_envs(pool: &PgPool, id: i64, state: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT environment FROM nightly_run_envs WHERE run_id = $1 AND state = $2 ORDER BY position")
        .bind(id)
        .bind(state)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn busy_environments(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM environments WHERE state IN ('deleting', 'creating')")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Whether a process still runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn pid_in(s: &StepScripts, file: &str) -> i32 {
    s.read(file)
        .unwrap_or_else(|| panic!("{file} was not written"))
        .trim()
        .parse()
        .unwrap()
}

/// The summaries Nightly posted to the announce channel.
fn summaries(app: &TestBobby) -> Vec<String> {
    app.slack
        .posts_to("C0ENVS")
        .iter()
        .map(|p| p.block_text())
        .filter(|t| t.contains("*Nightly "))
        .collect()
}

#[tokio::test]
async fn steps_run_in_order_per_environment_and_at_most_concurrency_environments_at_once() {
    let s = StepScripts::new();
    let first = s.script(
        "scale",
        "pwd > \"$D/pwd-$BOBBY_ENV\"; printf '%s' \"$BOBBY_ENV_URL\" > \"$D/url-$BOBBY_ENV\"; sleep 0.2",
    );
    let delete = [
        ("scale", first),
        ("scorch", s.script("scorch", "sleep 0.2")),
        ("dns", s.script("dns", "sleep 0.2")),
    ];
    let app = spawn_bobby_with(opts(nightly_toml("concurrency = 2", &delete, &[]))).await;

    let id = run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;

    let calls = s.calls();
    assert_eq!(calls.iter().filter(|c| c.event == "start").count(), 12, "{calls:#?}");
    for c in &calls {
        assert_eq!((c.phase.as_str(), c.attempt), ("delete", 1), "{c:?}");
    }
    // Each environment: its steps in order, each starting after the previous one ended.
    let mut intervals = Vec::new();
    for env in ENVS {
        let mine: Vec<_> = calls.iter().filter(|c| c.env == env).collect();
        let order: Vec<(&str, &str)> = mine.iter().map(|c| (c.event.as_str(), c.step.as_str())).collect();
        assert_eq!(
            order,
            [
                ("start", "scale"),
                ("end", "scale"),
                ("start", "scorch"),
                ("end", "scorch"),
                ("start", "dns"),
                ("end", "dns")
            ],
            "{env}"
        );
        assert!(mine.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        intervals.push((mine[0].at_ns, mine[5].at_ns));
    }
    // An environment holds its slot from its first step to its last: at most two at any time,
    // and both slots were used.
    let mut events: Vec<(u128, i32)> = intervals.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    events.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut max) = (0, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    assert_eq!(max, 2, "environments at once: {intervals:?}");

    // The variables and the working directory (the config file's).
    assert_eq!(s.read("url-env-1").unwrap(), "https://env-1.dev.example.com");
    assert_eq!(s.read("url-env-2").unwrap(), "");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        std::path::PathBuf::from(s.read("pwd-env-3").unwrap().trim())
            .canonicalize()
            .unwrap(),
        cwd.canonicalize().unwrap()
    );

    for env in ENVS {
        let e = app.environment(env).await;
        assert_eq!(e["state"], "deleted", "{e}");
        assert!(e["fault"].is_null());
        assert_eq!(
            e["last_nightly"],
            json!({"phase": "delete", "outcome": "ok", "finished_at": "2026-11-23T19:00:00Z"})
        );
    }
    let trigger: String = sqlx::query_scalar("SELECT trigger FROM nightly_runs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(trigger, "scheduled");
    let summary = app.slack.wait_for_post("C0ENVS", "*Nightly delete* finished").await;
    assert!(
        summary
            .block_text()
            .contains("Deleted (4): *env-1*, *env-2*, *env-3*, *env-4*"),
        "{}",
        summary.block_text()
    );
    // Then the scheduler sleeps until the morning.
    wait_next_due(&app, "create", "2026-11-24T05:30:00Z").await;
}

#[tokio::test]
async fn throttled_steps_are_retried_with_exponential_full_jitter_backoff_until_attempts_run_out() {
    let s = StepScripts::new();
    // env-1 is throttled 4 times, then succeeds on its 5th and last allowed attempt; env-2 always.
    let throttle = s.script(
        "scorch",
        r#"case "$BOBBY_ENV" in env-1) k=4;; env-2) k=1000;; *) k=0;; esac
f="$D/count-$BOBBY_ENV"; n=$(cat "$f" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$f"
if [ "$n" -le "$k" ]; then echo "cloud API says: slow down (call $n)"; exit 75; fi
echo scorched"#,
    );
    let config = nightly_toml(
        "retry = { attempts = 5, initial_backoff = \"1s\", max_backoff = \"4s\" }",
        &[("scorch", throttle)],
        &[],
    );
    let app = spawn_bobby_with(opts(config)).await;

    let id = manual_run(&app, "nightly run delete env-1").await;
    /// attempt, backoff_ms, backoff_cap_ms, started_at, exit_code
    type AttemptRow = (i32, Option<i64>, Option<i64>, DateTime<Utc>, Option<i32>);
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT attempt, backoff_ms, backoff_cap_ms, started_at, exit_code FROM nightly_attempts \
         WHERE run_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        attempts.iter().map(|a| (a.0, a.2, a.4)).collect::<Vec<_>>(),
        vec![
            (1, None, Some(75)),
            (2, Some(1000), Some(75)),
            (3, Some(2000), Some(75)),
            (4, Some(4000), Some(75)),
            (5, Some(4000), Some(0)),
        ],
        "the ceilings double up to max_backoff"
    );
    for w in attempts.windows(2) {
        let (waited, cap) = (w[1].1.unwrap(), w[1].2.unwrap());
        assert!((0..=cap).contains(&waited), "{waited} ms drawn from [0, {cap}]");
        // The retry came exactly when its backoff (slept through the clock) was over.
        let gap = (w[1].3 - w[0].3).num_milliseconds();
        assert!((gap - waited).abs() <= 1, "gap {gap} ms vs backoff {waited} ms");
    }
    let tries: Vec<u32> = s.starts().into_iter().filter(|c| c.0 == "env-1").map(|c| c.2).collect();
    assert_eq!(tries, [1, 2, 3, 4, 5], "BOBBY_ATTEMPT counts from 1");
    let e1 = app.environment("env-1").await;
    assert_eq!((e1["state"].as_str(), e1["fault"].is_null()), (Some("deleted"), true));
    assert_eq!(app.environment("env-3").await["state"], "ready", "only env-1 was named");

    // Throttled on every attempt: faulted after the 5th, with exit 75.
    manual_run(&app, "nightly run delete env-2").await;
    let e2 = app.environment("env-2").await;
    assert_eq!(e2["state"], "faulted");
    assert_eq!(e2["fault"]["step"], "scorch");
    assert_eq!(e2["fault"]["exit_code"], 75);
    assert_eq!(e2["fault"]["attempts"], 5);
    assert!(e2["fault"]["log_tail"].as_str().unwrap().contains("slow down (call 5)"));
    assert_eq!(e2["last_nightly"]["outcome"], "faulted");
    let summary = app.slack.wait_for_post("C0ENVS", "Faulted (1)").await.block_text();
    assert!(
        summary.contains("*env-2* at step `scorch` (exit 75, 5 attempts)"),
        "{summary}"
    );

    // Step outcomes are in /metrics.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nightly_step_attempts_total{") && l.contains("outcome=\"throttled\"")),
        "{metrics}"
    );
    assert!(metrics.contains("nightly_step_duration_seconds"), "{metrics}");
}

#[tokio::test]
async fn a_failing_step_faults_its_environment_with_the_log_tail_and_the_others_carry_on() {
    let s = StepScripts::new();
    let build = s.script(
        "build",
        r#"i=1; while [ $i -le 60 ]; do echo "compiling unit $i"; i=$((i+1)); done
if [ "$BOBBY_ENV" = env-2 ]; then echo "error: the api token test-api-token was refused" >&2; exit 3; fi"#,
    );
    let create = [
        ("infrastructure", s.script("infra", "echo infra")),
        ("build", build),
        ("deploy", s.script("deploy", "echo deployed")),
    ];
    let app = spawn_bobby_with(opts(nightly_toml("", &[], &create))).await;
    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    let id = run_slot(&app, "create", "2026-11-24T05:30:00Z").await;

    let e2 = app.environment("env-2").await;
    assert_eq!(e2["state"], "faulted");
    let tail = e2["fault"]["log_tail"].as_str().unwrap().to_string();
    assert_eq!(
        e2["fault"],
        json!({"phase": "create", "step": "build", "exit_code": 3, "attempts": 1, "log_tail": tail})
    );
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 50, "the last 50 lines");
    assert_eq!(lines[0], "compiling unit 12");
    assert_eq!(lines[49], "error: the api token *** was refused", "secrets are masked");
    assert_eq!(
        e2["last_nightly"],
        json!({"phase": "create", "outcome": "faulted", "finished_at": "2026-11-24T05:30:00Z"})
    );
    // Not retried, and the steps after it never ran there; everywhere else all three did.
    let starts = s.starts();
    let of = |env: &str| -> Vec<String> { starts.iter().filter(|c| c.0 == env).map(|c| c.1.clone()).collect() };
    assert_eq!(of("env-2"), ["infrastructure", "build"]);
    for env in ["env-1", "env-3", "env-4"] {
        assert_eq!(of(env), ["infrastructure", "build", "deploy"], "{env}");
        assert_eq!(app.environment(env).await["state"], "ready");
    }
    let summary = app
        .slack
        .wait_for_post("C0ENVS", "*Nightly create* finished")
        .await
        .block_text();
    assert!(summary.contains("Created (3): *env-1*, *env-3*, *env-4*"), "{summary}");
    assert!(
        summary.contains(&format!(
            "Faulted (1): *env-2* at step `build` (exit 3, 1 attempt) <http://bobby.test/nightly/runs/{id}#env-2|log>"
        )),
        "{summary}"
    );
    // The log behind the link (the page itself is the control center's; its plain-text form is
    // checked here).
    let log = app
        .http
        .get(app.url(&format!("/nightly/runs/{id}/log.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(log.status(), 200);
    let log = log.text().await.unwrap();
    assert!(log.contains("== env-2: faulted"), "{log}");
    assert!(log.contains("| error: the api token *** was refused"), "{log}");
    assert!(!log.contains("test-api-token"));
    assert_eq!(
        app.http
            .get(app.url("/nightly/runs/999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_and_is_never_retried() {
    let s = StepScripts::new();
    let hang = s.script(
        "scorch",
        "echo starting; sleep 600 & echo $! > \"$D/grandchild-$BOBBY_ENV\"; wait",
    );
    let config = nightly_toml(
        "step_timeout = \"300ms\"\nretry = { attempts = 5, initial_backoff = \"1s\", max_backoff = \"4s\" }",
        &[("scorch", hang)],
        &[],
    );
    let app = spawn_bobby_with(opts(config)).await;
    let started = std::time::Instant::now();
    manual_run(&app, "nightly run delete env-4").await;
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());

    let e = app.environment("env-4").await;
    assert_eq!(e["state"], "faulted");
    assert_eq!(e["fault"]["step"], "scorch");
    assert!(e["fault"]["exit_code"].is_null(), "{e}");
    assert_eq!(e["fault"]["attempts"], 1, "a timeout is not retried");
    assert_eq!(e["fault"]["log_tail"], "starting");
    let ended: String = sqlx::query_scalar("SELECT ended FROM nightly_steps WHERE environment = 'env-4'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(ended.contains("timed out"), "{ended}");
    // The grandchild went with its group.
    let grandchild = pid_in(&s, "grandchild-env-4");
    eventually("the grandchild to be gone", || async move { !alive(grandchild) }).await;
    assert_eq!(app.count("SELECT count(*) FROM step_processes").await, 0);
}

#[tokio::test]
async fn delete_ends_leases_and_clears_waitlists_but_spares_preserved_and_gandalf_held_environments() {
    let s = StepScripts::new();
    let config = nightly_toml(
        "cost_per_environment_hour = 0.5",
        &[("scorch", s.script("scorch", "echo scorched"))],
        &[("build", s.script("build", "echo built"))],
    );
    let app = spawn_bobby_with(opts(config)).await;
    // env-1: Alice holds and preserves it (through the coming night).
    app.command("U0ALICE", "lock env-1 for 1d demo").await;
    let r = app.command("U0ALICE", "preserve env-1").await;
    assert!(r.in_channel(), "{}", r.text());
    // env-2: Bob holds it, Carol waits for it.
    app.command("U0BOB", "lock env-2 for 1d").await;
    app.command("U0CAROL", "wait env-2").await;
    // verify-1: registered by Gandalf alone; Bobby's config does not know it.
    shared::envs::store::sync_declared(
        &app.pool,
        "gandalf",
        &[shared::envs::Declared {
            name: "verify-1".parse().unwrap(),
            url: String::new(),
            keep_on_weekends: false,
        }],
        true,
    )
    .await
    .unwrap();
    // env-3: Gandalf verifies a pull request on it.
    {
        let mut conn = app.pool.acquire().await.unwrap();
        let now = app.clock.now();
        shared::envs::store::lock(
            &mut conn,
            &"env-3".parse().unwrap(),
            &shared::ids::Holder::Gandalf,
            &"verifying acme/platform#12".into(),
            now,
            now + chrono::Duration::days(2),
        )
        .await
        .unwrap();
    }

    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;

    assert_eq!(states(&app).await, ["ready", "deleted", "ready", "deleted"]);
    let e1 = app.environment("env-1").await;
    assert_eq!(
        e1["lease"]["holder"], "U0ALICE",
        "a preserved environment keeps its lease"
    );
    assert_eq!(e1["last_nightly"]["outcome"], "skipped");
    let e2 = app.environment("env-2").await;
    assert!(e2["lease"].is_null(), "{e2}");
    assert_eq!(e2["waitlist"], json!([]));
    let e3 = app.environment("env-3").await;
    assert_eq!(e3["lease"]["holder"], "gandalf");
    assert_eq!(e3["last_nightly"]["outcome"], "skipped");
    let mut started: Vec<String> = s.starts().into_iter().map(|c| c.0).collect();
    started.sort();
    assert_eq!(started, ["env-2", "env-4"], "only those were deleted");
    let verify = app.environment("verify-1").await;
    assert_eq!(verify["state"], "ready");
    assert!(verify["last_nightly"].is_null(), "not Bobby's to tear down: {verify}");

    // Bob is told his lease ended, Carol that she no longer waits; Alice hears nothing.
    let dm = app.slack.wait_for_post("U0BOB", "lease on it ended").await;
    assert!(
        dm.block_text().contains("Nightly is tearing down *env-2*"),
        "{}",
        dm.block_text()
    );
    app.slack.wait_for_post("U0CAROL", "its waitlist was cleared").await;
    let summary = app
        .slack
        .wait_for_post("C0ENVS", "*Nightly delete* finished")
        .await
        .block_text();
    assert!(summary.contains("Deleted (2): *env-2*, *env-4*"), "{summary}");
    assert!(summary.contains("Preserved (1): *env-1* until <!date^"), "{summary}");
    assert!(
        summary.contains("Skipped, held by Gandalf for a verification (1): *env-3*"),
        "{summary}"
    );
    assert!(app.slack.posts_to("U0ALICE").is_empty());
    assert!(!summary.contains("verify-1"), "{summary}");
    let history = app.command("U0BOB", "history env-2").await.text();
    assert!(history.contains("released-by-nightly"), "{history}");

    // The morning: env-1's preservation ran until the create time, so it is simply up; env-3 is
    // still Gandalf's. Two environments down for 10.5 hours: 21 environment-hours saved.
    run_slot(&app, "create", "2026-11-24T05:30:00Z").await;
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);
    let summary = app
        .slack
        .wait_for_post("C0ENVS", "*Nightly create* finished")
        .await
        .block_text();
    assert!(summary.contains("Created (2): *env-2*, *env-4*"), "{summary}");
    assert!(summary.contains("Skipped, already up (1): *env-1*"), "{summary}");
    assert!(
        summary.contains("held by Gandalf for a verification (1): *env-3*"),
        "{summary}"
    );
    // 4 environments since 2026-11-01 00:00 Berlin (2026-10-31T23:00Z): 558.5 h each.
    assert!(
        summary.contains("21.0 environment-hours saved so far this month, 1% of the 2234 it takes to keep 4 environments up all the time (≈ 10.50 saved)"),
        "{summary}"
    );
}

#[tokio::test]
async fn a_lease_until_nightly_expires_first_then_the_delete_ends_the_next_holders_lease() {
    let s = StepScripts::new();
    let config = nightly_toml("", &[("scorch", s.script("scorch", "true"))], &[]);
    let app = spawn_bobby_with(opts(config)).await;
    // The default lease runs until the delete: the expiry worker and Nightly both wake at 19:00.
    app.command("U0BOB", "lock env-1").await;
    app.command("U0CAROL", "wait env-1").await;
    app.command("U0DAVE", "wait env-1").await;
    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    // Whichever woke first: Bob's lease expired and went to Carol, the first waiter; then the
    // delete ended Carol's and cleared the rest of the waitlist.
    app.slack.wait_for_post("U0BOB", "expired").await;
    app.slack.wait_for_post("U0CAROL", "is yours now").await;
    app.slack
        .wait_for_post("U0CAROL", "Nightly is tearing down *env-1*")
        .await;
    app.slack.wait_for_post("U0DAVE", "its waitlist was cleared").await;
    let e = app.environment("env-1").await;
    assert_eq!(e["state"], "deleted");
    assert!(e["lease"].is_null(), "{e}");
    assert_eq!(e["waitlist"], json!([]));
    let history = app.command("U0BOB", "history env-1").await.text();
    let expired = history.find("expired").unwrap();
    let nightly = history.find("released-by-nightly").unwrap();
    assert!(
        nightly < expired,
        "newest first: the expiry came before the delete\n{history}"
    );
}

#[tokio::test]
async fn deploy_check_refuses_and_nothing_stays_creating_after_kill_9_mid_run_and_a_restart_resumes_the_step() {
    let s = StepScripts::new();
    // `build` hangs the first time on each environment (with a grandchild in its process group),
    // and succeeds when run again: steps are idempotent.
    let build = s.script(
        "build",
        r#"if [ ! -e "$D/built-$BOBBY_ENV" ]; then
  touch "$D/built-$BOBBY_ENV"; sleep 600 & echo $! > "$D/grandchild-$BOBBY_ENV"; wait
fi
echo built"#,
    );
    let create = [
        ("infrastructure", s.script("infra", "echo infra")),
        ("build", build),
        ("deploy", s.script("deploy", "echo deployed")),
    ];
    let app = spawn_bobby_with(opts(nightly_toml("", &[], &create))).await;
    app.command("U0ALICE", "lock env-1 for 1d").await;
    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    app.command("U0ALICE", "lock env-1 for 1d").await;
    wait_next_due(&app, "create", "2026-11-24T05:30:00Z").await;
    app.clock.set(utc("2026-11-24T05:30:00Z"));
    eventually("every build to hang", || async {
        ENVS.iter().all(|e| s.read(&format!("grandchild-{e}")).is_some())
    })
    .await;
    let (status, body) = app.deploy_check("env-1", "U0ALICE").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("creating"), "{body}");

    let down = app.down(Stop::Kill9).await;
    // What the crash left: environments mid-create, process groups recorded, grandchildren alive.
    let creating: i64 = sqlx::query_scalar("SELECT count(*) FROM environments WHERE state = 'creating'")
        .fetch_one(&down.pool)
        .await
        .unwrap();
    assert_eq!(creating, 4);
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM step_processes WHERE what LIKE 'nightly:%:create:build'")
            .fetch_one(&down.pool)
            .await
            .unwrap();
    assert_eq!(recorded, 4);
    let grandchildren: Vec<i32> = ENVS.iter().map(|e| pid_in(&s, &format!("grandchild-{e}"))).collect();
    assert!(
        grandchildren.iter().all(|p| alive(*p)),
        "kill -9 leaves the step processes"
    );

    let app = down.up().await;
    let id = wait_for_slot_run(&app, utc("2026-11-24T05:30:00Z")).await;
    drive_until_ended(&app, id).await;
    for pid in grandchildren {
        eventually(
            "the leftover step processes to be killed",
            || async move { !alive(pid) },
        )
        .await;
    }
    assert_eq!(app.count("SELECT count(*) FROM step_processes").await, 0);
    assert_eq!(busy_environments(&app.pool).await, 0, "nothing stays deleting/creating");
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);
    assert_eq!(run_state(&app.pool, id).await, "finished");
    // Resumed from the step that was running: infrastructure once, build twice (a new try from
    // attempt 1), deploy once.
    for env in ENVS {
        let mine: Vec<(String, u32)> = s
            .starts()
            .into_iter()
            .filter(|c| c.0 == env)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(
            mine,
            [
                ("infrastructure".to_string(), 1),
                ("build".to_string(), 1),
                ("build".to_string(), 1),
                ("deploy".to_string(), 1)
            ],
            "{env}"
        );
        assert_eq!(app.environment(env).await["last_nightly"]["outcome"], "ok");
    }
    assert_eq!(app.environment("env-1").await["lease"]["holder"], "U0ALICE");
    let (status, _) = app.deploy_check("env-1", "U0ALICE").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_run_cut_short_and_not_back_before_the_create_time_is_marked_interrupted() {
    let s = StepScripts::new();
    let scorch = s.script(
        "scorch",
        r#"if [ "$BOBBY_ENV" = env-2 ]; then sleep 600 & echo $! > "$D/grandchild-env-2"; wait; fi"#,
    );
    let config = nightly_toml(
        "weekend_keep = 1",
        &[("scale", s.script("scale", "true")), ("scorch", scorch)],
        &[("build", s.script("build", "true"))],
    );
    // Friday, 2026-11-27.
    let app = spawn_bobby_at(opts(config), utc("2026-11-27T12:00:00Z")).await;
    wait_next_due(&app, "delete", "2026-11-27T19:00:00Z").await;
    app.clock.set(utc("2026-11-27T19:00:00Z"));
    eventually("env-2 to hang in scorch with the others deleted", || async {
        s.read("grandchild-env-2").is_some()
            && app
                .count("SELECT count(*) FROM environments WHERE state = 'deleted'")
                .await
                == 3
    })
    .await;
    let down = app.down(Stop::Kill9).await;
    // Back only on Saturday at 07:00 Berlin, past the 06:30 create.
    down.clock.set(utc("2026-11-28T06:00:00Z"));
    let app = down.up().await;

    let interrupted = wait_for_slot_run(&app, utc("2026-11-27T19:00:00Z")).await;
    drive_until_ended(&app, interrupted).await;
    assert_eq!(run_state(&app.pool, interrupted).await, "interrupted");
    let caught_up = wait_for_slot_run(&app, utc("2026-11-28T05:30:00Z")).await;
    drive_until_ended(&app, caught_up).await;

    let e2 = app.environment("env-2").await;
    assert_eq!(e2["state"], "faulted", "{e2}");
    assert_eq!(e2["fault"]["phase"], "delete");
    assert_eq!(e2["fault"]["step"], "scorch");
    assert!(e2["fault"]["exit_code"].is_null());
    assert_eq!(e2["fault"]["attempts"], 1);
    assert!(
        e2["fault"]["log_tail"].as_str().unwrap().starts_with("interrupted"),
        "{e2}"
    );
    assert_eq!(
        e2["last_nightly"],
        json!({"phase": "delete", "outcome": "interrupted", "finished_at": "2026-11-28T06:00:00Z"})
    );
    assert_eq!(busy_environments(&app.pool).await, 0, "nothing stays deleting/creating");
    let grandchild = pid_in(&s, "grandchild-env-2");
    eventually("the leftover step process to be killed", || async move {
        !alive(grandchild)
    })
    .await;
    let summary = app.slack.wait_for_post("C0ENVS", "was interrupted").await.block_text();
    assert!(
        summary.contains(&format!("*Nightly delete* was interrupted (run #{interrupted})")),
        "{summary}"
    );
    assert!(
        summary.contains("Interrupted (1): *env-2* at step `scorch` (faulted)"),
        "{summary}"
    );
    // The missed Saturday create was caught up: the one environment kept on weekends.
    let trigger: String = sqlx::query_scalar("SELECT trigger FROM nightly_runs WHERE id = $1")
        .bind(caught_up)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(trigger, "caught-up");
    assert_eq!(states(&app).await, ["ready", "faulted", "deleted", "deleted"]);
}

async fn walk_slots(app: &TestBobby, slots: &[(&str, &str)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (phase, at) in slots {
        ids.push(run_slot(app, phase, at).await);
    }
    let recorded: Vec<(String, DateTime<Utc>, String)> =
        sqlx::query_as("SELECT phase, scheduled_for, trigger FROM nightly_runs ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let expected: Vec<(String, DateTime<Utc>, String)> = slots
        .iter()
        .map(|(p, at)| (p.to_string(), utc(at), "scheduled".to_string()))
        .collect();
    assert_eq!(recorded, expected);
    ids
}

#[tokio::test]
async fn the_schedule_follows_both_daylight_saving_changes() {
    let steps = |s: &StepScripts| {
        nightly_toml(
            "weekend_keep = 1",
            &[("down", s.script("down", "true"))],
            &[("up", s.script("up", "true"))],
        )
    };
    // Spring forward in Berlin on Sunday 2026-03-29: 20:00 is 19:00Z before, 18:00Z after.
    let s = StepScripts::new();
    let app = spawn_bobby_at(opts(steps(&s)), utc("2026-03-28T10:00:00Z")).await;
    let ids = walk_slots(
        &app,
        &[
            ("delete", "2026-03-28T19:00:00Z"),
            ("create", "2026-03-29T04:30:00Z"),
            ("delete", "2026-03-29T18:00:00Z"),
            ("create", "2026-03-30T04:30:00Z"),
        ],
    )
    .await;
    assert_eq!(run_envs(&app.pool, ids[1], "ok").await, ["env-1"], "Sunday keeps one");
    assert_eq!(run_envs(&app.pool, ids[3], "ok").await, ENVS, "Monday brings all");
    wait_next_due(&app, "delete", "2026-03-30T18:00:00Z").await;
    app.stop().await;

    // Fall back on Sunday 2026-10-25: 20:00 is 18:00Z before, 19:00Z after.
    let s = StepScripts::new();
    let app = spawn_bobby_at(opts(steps(&s)), utc("2026-10-24T10:00:00Z")).await;
    walk_slots(
        &app,
        &[
            ("delete", "2026-10-24T18:00:00Z"),
            ("create", "2026-10-25T05:30:00Z"),
            ("delete", "2026-10-25T19:00:00Z"),
            ("create", "2026-10-26T05:30:00Z"),
        ],
    )
    .await;
    wait_next_due(&app, "delete", "2026-10-26T19:00:00Z").await;
}

#[tokio::test]
async fn weekends_and_holidays_keep_weekend_keep_environments_keep_on_weekends_first() {
    let s = StepScripts::new();
    // env-3 is the one flagged keep_on_weekends here; Monday 2026-11-30 is a holiday.
    let config = nightly_toml(
        "weekend_keep = 2\nholidays = [\"2026-11-30\"]",
        &[("down", s.script("down", "true"))],
        &[("up", s.script("up", "true"))],
    )
    .replace("keep_on_weekends = true", "keep_on_weekends = false")
    .replace("name = \"env-3\"\n", "name = \"env-3\"\nkeep_on_weekends = true\n");
    let app = spawn_bobby_at(opts(config), utc("2026-11-27T12:00:00Z")).await;
    let ids = walk_slots(
        &app,
        &[
            ("delete", "2026-11-27T19:00:00Z"),
            ("create", "2026-11-28T05:30:00Z"),
            ("delete", "2026-11-28T19:00:00Z"),
            ("create", "2026-11-29T05:30:00Z"),
            ("delete", "2026-11-29T19:00:00Z"),
            ("create", "2026-11-30T05:30:00Z"),
            ("delete", "2026-11-30T19:00:00Z"),
            ("create", "2026-12-01T05:30:00Z"),
        ],
    )
    .await;
    for (i, day) in [(1, "Saturday"), (3, "Sunday"), (5, "the Monday holiday")] {
        assert_eq!(run_envs(&app.pool, ids[i], "ok").await, ["env-1", "env-3"], "{day}");
        assert_eq!(
            run_envs(&app.pool, ids[i], "skipped").await,
            ["env-2", "env-4"],
            "{day}"
        );
    }
    assert_eq!(
        run_envs(&app.pool, ids[2], "ok").await,
        ["env-1", "env-3"],
        "only what is up is deleted"
    );
    assert_eq!(run_envs(&app.pool, ids[7], "ok").await, ENVS, "Tuesday brings all");
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);
    let saturday = summaries(&app)
        .into_iter()
        .find(|t| t.contains(&format!("(run #{})", ids[1])))
        .unwrap();
    assert!(
        saturday.contains("Skipped, not kept up on weekends and holidays (2): *env-2*, *env-4*"),
        "{saturday}"
    );
}

#[tokio::test]
async fn missed_runs_are_caught_up_at_start_and_a_fresh_database_has_missed_nothing() {
    let s = StepScripts::new();
    let config = nightly_toml(
        "",
        &[("down", s.script("down", "true"))],
        &[("up", s.script("up", "true"))],
    );
    // A fresh database at Monday 22:00 Berlin, after the 20:00 delete: nothing was missed.
    let app = spawn_bobby_at(opts(config), utc("2026-11-23T21:00:00Z")).await;
    wait_next_due(&app, "create", "2026-11-24T05:30:00Z").await;
    assert_eq!(app.count("SELECT count(*) FROM nightly_runs").await, 0);
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);
    run_slot(&app, "create", "2026-11-24T05:30:00Z").await;

    // Down over Tuesday's delete, back at 22:00 before the create: the delete is caught up.
    let down = app.down(Stop::Graceful).await;
    down.clock.set(utc("2026-11-24T21:00:00Z"));
    let app = down.up().await;
    let id = wait_for_slot_run(&app, utc("2026-11-24T19:00:00Z")).await;
    drive_until_ended(&app, id).await;
    assert_eq!(states(&app).await, ["deleted", "deleted", "deleted", "deleted"]);
    wait_next_due(&app, "create", "2026-11-25T05:30:00Z").await;

    // Down until Thursday 08:00: Wednesday's create and delete passed, then Thursday's create.
    // Only the latest is run; the delete whose create time passed is not.
    let down = app.down(Stop::Graceful).await;
    down.clock.set(utc("2026-11-26T07:00:00Z"));
    let app = down.up().await;
    let id = wait_for_slot_run(&app, utc("2026-11-26T05:30:00Z")).await;
    drive_until_ended(&app, id).await;
    wait_next_due(&app, "delete", "2026-11-26T19:00:00Z").await;
    let runs: Vec<(String, DateTime<Utc>, String)> =
        sqlx::query_as("SELECT phase, scheduled_for, trigger FROM nightly_runs ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        runs,
        vec![
            ("create".into(), utc("2026-11-24T05:30:00Z"), "scheduled".into()),
            ("delete".into(), utc("2026-11-24T19:00:00Z"), "caught-up".into()),
            ("create".into(), utc("2026-11-26T05:30:00Z"), "caught-up".into()),
        ]
    );
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);
    let summary = app.slack.wait_for_post("C0ENVS", "caught up").await.block_text();
    assert!(summary.contains("Bobby was not running at"), "{summary}");
}

#[tokio::test]
async fn nightly_commands_status_run_dry_run_skip_and_refusals() {
    let s = StepScripts::new();
    let config = nightly_toml(
        "",
        &[
            ("scale", s.script("scale", "true")),
            ("scorch", s.script("scorch", "true")),
        ],
        &[("build", s.script("build", "true"))],
    );
    let app = spawn_bobby_with(opts(config)).await;

    // Not an admin.
    for text in [
        "nightly run delete",
        "nightly run delete env-1 --dry-run",
        "nightly skip 2026-11-24",
    ] {
        let r = app.command("U0ALICE", text).await;
        assert!(
            r.ephemeral() && r.text().contains("Only admins"),
            "{text}: {}",
            r.text()
        );
    }
    let r = app.command("U0ADMIN1", "nightly run delete env-9").await;
    assert!(r.text().contains("There is no environment `env-9`"), "{}", r.text());

    // A dry run says what would happen and runs nothing.
    app.command("U0ALICE", "lock env-1 for 1d").await;
    app.command("U0ALICE", "preserve env-1 for 2d").await;
    let r = app.command("U0ADMIN1", "nightly run delete --dry-run").await;
    let t = r.text();
    assert!(r.ephemeral() && t.contains("Dry run"), "{t}");
    assert!(t.contains("*env-1*: skip, preserved until <!date^"), "{t}");
    assert!(t.contains("*env-2*: run `scale` → `scorch`"), "{t}");
    assert_eq!(app.count("SELECT count(*) FROM nightly_runs").await, 0);
    assert!(s.calls().is_empty());

    // Skipping tonight: no delete this evening, no create tomorrow morning.
    let r = app.command("U0ADMIN1", "nightly skip 2026-11-23").await;
    assert!(
        r.in_channel() && r.text().contains("skipped the night of Mon 2026-11-23"),
        "{}",
        r.text()
    );
    let r = app.command("U0ADMIN1", "nightly skip 2026-11-20").await;
    assert!(
        r.ephemeral() && r.text().contains("already started or passed"),
        "{}",
        r.text()
    );
    let status = app.command("U0BOB", "nightly status").await.text();
    assert!(
        status.contains("deletes at 20:00 and creates at 06:30 (Europe/Berlin)"),
        "{status}"
    );
    assert!(
        status.contains("Skipped nights: 2026-11-23 (by <@U0ADMIN1>)"),
        "{status}"
    );
    assert!(status.contains("Next: delete <!date^1795460400^"), "{status}");
    assert!(status.contains("(skipped by <@U0ADMIN1>)"), "{status}");
    let id = run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    assert_eq!(run_state(&app.pool, id).await, "skipped");
    let id = run_slot(&app, "create", "2026-11-24T05:30:00Z").await;
    assert_eq!(run_state(&app.pool, id).await, "skipped");
    app.slack
        .wait_for_post("C0ENVS", ":zzz: *Nightly delete* skipped")
        .await;
    assert!(s.calls().is_empty());
    assert_eq!(states(&app).await, ["ready", "ready", "ready", "ready"]);

    // A manual run of one environment, reported in the channel and to whoever asked.
    let id = manual_run(&app, "nightly run delete env-3").await;
    assert_eq!(states(&app).await, ["ready", "ready", "deleted", "ready"]);
    let summary = app
        .slack
        .wait_for_post("C0ENVS", &format!("(run #{id}) (run by <@U0ADMIN1>)"))
        .await
        .block_text();
    assert!(summary.contains("Deleted (1): *env-3*"), "{summary}");
    app.slack
        .wait_for_post("U0ADMIN1", &format!("Your Nightly delete run #{id} is done: 1 deleted"))
        .await;
    // Manual runs follow the same rules: a preserved environment is still skipped.
    manual_run(&app, "nightly run delete env-1").await;
    assert_eq!(app.environment("env-1").await["state"], "ready");
    let status = app.command("U0BOB", "nightly status").await.text();
    assert!(status.contains(&format!("Last delete run #{}", id + 1)), "{status}");
    assert!(
        status.contains("*env-3* · deleted · last Nightly: delete ok"),
        "{status}"
    );
}

#[tokio::test]
async fn the_command_line_waits_for_the_run_and_exits_by_its_outcome() {
    use bobby::nightly::cli;
    use bobby::nightly::{Nightly, Phase};

    let s = StepScripts::new();
    let config = nightly_toml(
        "",
        &[("scorch", s.script("scorch", "true"))],
        &[(
            "build",
            s.script("build", "if [ \"$BOBBY_ENV\" = env-2 ]; then echo broken; exit 4; fi"),
        )],
    );
    let app = spawn_bobby_with(opts(config.clone())).await;
    let nightly_on = |pool: PgPool, clock: shared::clock::ManualClock| {
        let cfg = bobby::config::BobbyConfig::parse(&config, std::path::Path::new(".")).unwrap();
        let bobby = bobby::handler::Bobby::new(pool.clone(), Arc::new(cfg), Arc::new(clock));
        Nightly::new(bobby, Some(shared::steps::Registry::new(pool)), vec![]).unwrap()
    };
    let n = nightly_on(app.pool.clone(), app.clock.clone());

    let out = cli::run(&n, &app.db.url, Phase::Delete, Some("env-7"), false)
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("There is no environment `env-7`"), "{}", out.text);
    let out = cli::run(&n, &app.db.url, Phase::Delete, None, true).await.unwrap();
    assert_eq!(out.code, 0);
    assert!(
        out.text.contains("Dry run") && out.text.contains("*env-4*: run `scorch`"),
        "{}",
        out.text
    );

    // With Bobby running, Bobby runs it; the command line waits and reports.
    let out = cli::run(&n, &app.db.url, Phase::Delete, None, false).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.text);
    assert!(out.text.contains("Deleted (4)"), "{}", out.text);
    assert!(out.text.contains("(run from the command line)"), "{}", out.text);

    // With no Bobby running, the command line runs it itself; a fault exits 1 with its log.
    let down = app.down(Stop::Graceful).await;
    let n = nightly_on(down.pool.clone(), down.clock.clone());
    let out = cli::run(&n, &down.db.url, Phase::Create, None, false).await.unwrap();
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(out.text.contains("Created (3)"), "{}", out.text);
    assert!(
        out.text
            .contains("Faulted (1): *env-2* at step `build` (exit 4, 1 attempt)"),
        "{}",
        out.text
    );
    assert!(
        out.text.contains("--- env-2 · build: last lines ---\nbroken"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn with_two_replicas_each_slot_runs_once() {
    let s = StepScripts::new();
    let config = nightly_toml("", &[("scorch", s.script("scorch", "true"))], &[]);
    let app = spawn_bobby_with(opts(config)).await;
    let other = app.another_replica().await;
    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    wait_next_due(&app, "create", "2026-11-24T05:30:00Z").await;
    assert_eq!(app.count("SELECT count(*) FROM nightly_runs").await, 1);
    let mut started: Vec<String> = s.starts().into_iter().map(|c| c.0).collect();
    started.sort();
    assert_eq!(started, ENVS, "each environment's step ran exactly once");
    assert_eq!(summaries(&app).len(), 1);
    other.stop().await;
}

/// SPEC §8 under Nightly's runner: a step gets its `BOBBY_*` variables and what `[nightly.env]`
/// names — a literal, and a `from_env` value masked in its log — and nothing else of the bot's
/// process environment (the test process stands for it: cargo's `CARGO_*` variables are there).
#[tokio::test]
async fn nightly_steps_see_only_their_variables_and_the_env_table() {
    let s = StepScripts::new();
    let dump = s.script(
        "dump",
        "env | sort > \"$D/env-$BOBBY_ENV.txt\"\necho \"the path is $FROM_BOT\"",
    );
    let config = nightly_toml(
        "[nightly.env]\nSTAGE = \"nightly\"\nFROM_BOT = { from_env = \"CARGO_MANIFEST_DIR\" }\n",
        &[],
        &[("dump", dump)],
    );
    let app = spawn_bobby_with(opts(config)).await;
    run_slot(&app, "delete", "2026-11-23T19:00:00Z").await;
    run_slot(&app, "create", "2026-11-24T05:30:00Z").await;

    let dumped = s
        .read("env-env-1.txt")
        .expect("the step ran and dumped its environment");
    let names: Vec<&str> = dumped
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(
        dumped.contains("BOBBY_ENV=env-1") && dumped.contains("STAGE=nightly"),
        "{dumped}"
    );
    assert!(names.contains(&"FROM_BOT"), "{dumped}");
    assert!(
        !names.iter().any(|n| n.starts_with("CARGO") || n.starts_with("RUST")),
        "the bot's own variables reached the step:\n{dumped}"
    );
    let log: String = sqlx::query_scalar(
        "SELECT a.output FROM nightly_attempts a JOIN nightly_steps s \
           ON (s.run_id, s.environment, s.position) = (a.run_id, a.environment, a.step_position) \
         WHERE a.environment = 'env-1' AND s.name = 'dump' ORDER BY a.id DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(log.contains("the path is ***"), "the from_env value is masked: {log}");
}
