//! Postgres restarted under load, twice (a fast shutdown, then an immediate one, which is a crash
//! as far as the database can tell), while four pairs of people keep locking, waiting for,
//! unlocking and being handed over environments through Bobby, and GitHub keeps delivering webhooks
//! to Gandalf. It proves (SPEC §8 "malformed input gets a clear error, never a panic or a 500 with
//! internals"; §7 `/readyz`; §4.2 history and outbox in one transaction):
//!
//! - during the outage every answer is well formed: a Slack command gets a 200 with a Slack
//!   message (a clear "something went wrong, nothing was changed", or a late answer), a webhook a
//!   success or a 5xx with the generic error body (so GitHub records the delivery as failed), never
//!   a hang past GitHub's 10 s, a panic or a leaked internal error; `/readyz` says 503;
//! - afterwards both bots are ready again by themselves, commands succeed, the outbox and the
//!   webhook processor work again;
//! - nothing is half-written: per environment the history alternates lease start / lease end and
//!   agrees with the lease table; every hand-over has its DM in the outbox (and it was delivered);
//!   the locks recorded are at least those people were told succeeded and at most those tried;
//!   every webhook acknowledged with 202 is stored, and redelivering the failed ones stores them.
//!
//! Only the test process's own Postgres can be restarted; with `DATABASE_URL` set the test says so
//! and passes without doing anything. It is the only test in this binary, since the restart takes
//! every database of the process down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bg_tests::pg::{PgStop, can_restart_server, on_restartable_server, start_server, stop_server};
use bg_tests::{TestBobby, TestGandalf, WEBHOOK_SECRET, spawn_bobby, spawn_gandalf};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long each outage lasts: longer than Slack's 3 s answer window, so that commands queued
/// behind the outage are answered late, shorter than the pool's patience.
const OUTAGE: Duration = Duration::from_secs(4);
/// What may appear in no answer: the wording of database and runtime errors.
const INTERNALS: [&str; 7] = [
    "sqlx",
    "pooltimedout",
    "os error",
    "panicked",
    "error returned from database",
    "postgres",
    "connection refused",
];

#[derive(Default, Debug)]
struct Tally {
    /// Per environment: locks tried, and locks people were told succeeded.
    lock_tried: BTreeMap<String, i64>,
    lock_told: BTreeMap<String, i64>,
    /// Successful rounds (lock and unlock both confirmed) per environment.
    rounds: BTreeMap<String, i64>,
    internal_errors: usize,
    late: usize,
    /// Answers that break the rules: not 200, not a Slack message, or leaking internals.
    bad: Vec<String>,
    /// Webhooks: (delivery id, status).
    deliveries: Vec<(String, u16)>,
}

fn leaks(body: &str) -> bool {
    let lower = body.to_lowercase();
    INTERNALS.iter().any(|w| lower.contains(w))
}

/// One command; returns whether it was confirmed in the channel.
async fn command(app: &TestBobby, tally: &Mutex<Tally>, user: &str, text: &str) -> bool {
    let a = app.command(user, text).await;
    let raw = a.body.to_string();
    let mut t = tally.lock().await;
    if a.status != 200 || a.body.is_null() || leaks(&raw) {
        t.bad.push(format!("{user} `{text}`: {} {raw}", a.status));
        return false;
    }
    let said = a.text();
    if said.contains("Something went wrong") {
        t.internal_errors += 1;
    } else if said.contains("Working on it") {
        t.late += 1;
    }
    a.in_channel()
}

/// A pair of people on one environment, round after round: `a` locks it, `b` waits for it, `a`
/// unlocks it (so `b` is handed it, with a DM), `b` unlocks it.
async fn pair(app: Arc<TestBobby>, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>, env: String, a: String, b: String) {
    while !stop.load(Ordering::SeqCst) {
        *tally.lock().await.lock_tried.entry(env.clone()).or_default() += 1;
        let locked = command(&app, &tally, &a, &format!("lock {env} for 1h")).await;
        if locked {
            *tally.lock().await.lock_told.entry(env.clone()).or_default() += 1;
        }
        command(&app, &tally, &b, &format!("wait {env}")).await;
        let unlocked = command(&app, &tally, &a, &format!("unlock {env}")).await;
        command(&app, &tally, &b, &format!("unlock {env}")).await;
        if locked && unlocked {
            *tally.lock().await.rounds.entry(env.clone()).or_default() += 1;
        }
    }
}

/// GitHub delivering `ping`s, each with a fresh delivery id, until `stop`.
async fn webhooks(g: Arc<TestGandalf>, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let id = format!("delivery-{n}");
        let status = deliver(&g, &id, &tally).await;
        tally.lock().await.deliveries.push((id, status));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One signed delivery; answers must come within GitHub's 10 s and be 202 or a clean 5xx.
async fn deliver(g: &TestGandalf, id: &str, tally: &Mutex<Tally>) -> u16 {
    let body = serde_json::json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }).to_string();
    let sent = g
        .http
        .post(format!("http://{}/github/webhook", g.addr))
        .header("x-github-event", "ping")
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            gandalf::webhook::sign(WEBHOOK_SECRET, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => {
            tally
                .lock()
                .await
                .bad
                .push(format!("webhook {id}: no answer within 10 s: {e}"));
            return 0;
        }
    };
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let clean_failure = status >= 500 && text.contains("internal error; the details are in the server log");
    if !(status == 202 || clean_failure) || leaks(&text) {
        tally.lock().await.bad.push(format!("webhook {id}: {status} {text}"));
    }
    status
}

async fn readyz(http: &reqwest::Client, base: String) -> u16 {
    match http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits (boundedly) until both bots' `/readyz` answer `want`.
async fn wait_ready(bobby: &TestBobby, g: &TestGandalf, want: u16, within: Duration) -> Duration {
    let t0 = Instant::now();
    let http = reqwest::Client::new();
    loop {
        let b = readyz(&http, format!("http://{}", bobby.addr)).await;
        let gg = readyz(&http, format!("http://{}", g.addr)).await;
        if b == want && gg == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "/readyz: bobby {b}, gandalf {gg}; waited for {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (boundedly) until every environment had `more` successful rounds since `before`.
async fn wait_rounds(tally: &Mutex<Tally>, before: &BTreeMap<String, i64>, more: i64) {
    let t0 = Instant::now();
    loop {
        let now = tally.lock().await.rounds.clone();
        if (1..=4).all(|i| {
            let env = format!("env-{i}");
            now.get(&env).copied().unwrap_or(0) >= before.get(&env).copied().unwrap_or(0) + more
        }) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "rounds stalled at {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_restarted_under_load_fails_requests_cleanly_and_leaves_nothing_half_written() {
    // Its own Postgres: every other end-to-end test runs in this process on the shared one.
    on_restartable_server(restarted_under_load()).await;
}

async fn restarted_under_load() {
    let bobby = Arc::new(spawn_bobby().await);
    if !can_restart_server() {
        println!("skipped: the tests use DATABASE_URL's server, which they cannot restart");
        return;
    }
    let g = Arc::new(spawn_gandalf().await);
    // The test server runs with `synchronous_commit = off` for speed, which lets a crash lose
    // commits already acknowledged; production Postgres does not. These databases get the default
    // back, for every session opened from now on: all of them once the first (fast, and so
    // lossless) restart has closed the old ones; the second restart is the crash.
    for pool in [&bobby.pool, &g.pool] {
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {db} SET synchronous_commit = on"
        )))
        .execute(&bobby.pool)
        .await
        .unwrap();
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let people = [
        ("U0ALICE", "U0BOB"),
        ("U0CAROL", "U0DAVE"),
        ("U0ERIN", "U0FRANK"),
        ("U0GRACE", "U0HEIDI"),
    ];
    for (i, (a, b)) in people.iter().enumerate() {
        tasks.push(tokio::spawn(pair(
            bobby.clone(),
            tally.clone(),
            stop.clone(),
            format!("env-{}", i + 1),
            a.to_string(),
            b.to_string(),
        )));
    }
    tasks.push(tokio::spawn(webhooks(g.clone(), tally.clone(), stop.clone())));

    for how in [PgStop::Fast, PgStop::Immediate] {
        let before = tally.lock().await.rounds.clone();
        wait_rounds(&tally, &before, 2).await;
        stop_server(how).await;
        // While it is down both bots say they are not ready.
        wait_ready(&bobby, &g, 503, OUTAGE).await;
        // The outage itself is scenario time, not synchronisation.
        tokio::time::sleep(OUTAGE).await;
        start_server().await;
        let took = wait_ready(&bobby, &g, 200, Duration::from_secs(30)).await;
        println!("{how:?} restart: both bots ready {took:?} after Postgres was back");
        // New commands succeed on every environment (the pool found its way back by itself).
        let before = tally.lock().await.rounds.clone();
        wait_rounds(&tally, &before, 2).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let t = tally.lock().await;
    println!(
        "rounds {:?}; {} clear internal-error answers, {} late answers, {} webhooks ({} failed)",
        t.rounds,
        t.internal_errors,
        t.late,
        t.deliveries.len(),
        t.deliveries.iter().filter(|(_, s)| *s != 202).count()
    );
    assert!(t.bad.is_empty(), "badly formed answers: {:#?}", t.bad);
    assert!(
        t.internal_errors + t.late + t.deliveries.iter().filter(|(_, s)| *s != 202).count() > 0,
        "the outages were noticed by someone"
    );

    // Nothing half-written, per environment.
    for i in 1..=4 {
        let env = format!("env-{i}");
        let events: Vec<(String, String)> = sqlx::query_as(
            "SELECT action, detail FROM history WHERE environment = $1 \
             AND action IN ('locked', 'handed-over', 'unlocked', 'force-unlocked', 'expired') ORDER BY id",
        )
        .bind(&env)
        .fetch_all(&bobby.pool)
        .await
        .unwrap();
        let mut held = false;
        for (action, detail) in &events {
            let starts = action == "locked" || action == "handed-over";
            assert_ne!(held, starts, "{env}: `{action}` ({detail}) out of turn in {events:?}");
            held = starts;
        }
        let lease: i64 = sqlx::query_scalar("SELECT count(*) FROM leases WHERE environment = $1")
            .bind(&env)
            .fetch_one(&bobby.pool)
            .await
            .unwrap();
        assert_eq!(lease == 1, held, "{env}: the lease table and the history disagree");
        let locks = events.iter().filter(|(a, _)| a == "locked").count() as i64;
        let told = t.lock_told.get(&env).copied().unwrap_or(0);
        let tried = t.lock_tried.get(&env).copied().unwrap_or(0);
        assert!(
            told <= locks && locks <= tried,
            "{env}: {locks} locks recorded, {told} confirmed, {tried} tried"
        );
        let handovers = events.iter().filter(|(a, _)| a == "handed-over").count() as i64;
        let dms: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM slack_outbox WHERE text LIKE '%is yours now%' AND text LIKE '%' || $1 || '%'",
        )
        .bind(format!("*{env}*"))
        .fetch_one(&bobby.pool)
        .await
        .unwrap();
        assert_eq!(dms, handovers, "{env}: every hand-over has its DM, and only those");
    }
    // The outbox worker found its way back too: everything it holds reaches Slack.
    bobby
        .wait_for_count("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NULL", 0)
        .await;

    // Every acknowledged delivery is stored; the failed ones are stored when GitHub redelivers.
    let acknowledged: Vec<String> = t
        .deliveries
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(id, _)| id.clone())
        .collect();
    let failed: Vec<String> = t
        .deliveries
        .iter()
        .filter(|(_, s)| *s != 202)
        .map(|(id, _)| id.clone())
        .collect();
    drop(t);
    let stored: Vec<String> = sqlx::query_scalar("SELECT delivery_id FROM github_deliveries")
        .fetch_all(&g.pool)
        .await
        .unwrap();
    for id in &acknowledged {
        assert!(stored.contains(id), "{id} was acknowledged but not stored");
    }
    let scratch = Mutex::new(Tally::default());
    for id in &failed {
        assert_eq!(deliver(&g, id, &scratch).await, 202, "redelivery of {id}");
    }
    let all = acknowledged.len() + failed.len();
    g.wait_for(
        "SELECT count(*) FROM github_deliveries WHERE processed_at IS NOT NULL",
        all as i64,
    )
    .await;
}
