//! A control center with a day's worth of work in it, for people and for the browser test: starts
//! a throwaway Postgres, the real Gandalf (against the fake GitHub, with a scripted pipeline) and
//! the real Bobby (with scripted Nightly steps) on the one database, drives them through their
//! real commands — leases, a waitlist, a preservation, a Nightly delete and create where one
//! environment faults, merged, failed, verifying and queued pull requests — and serves both.
//!
//!   showcase [--serve-for 300s]
//!
//! Prints `bobby http://127.0.0.1:<port>` and `gandalf http://127.0.0.1:<port>` once everything is
//! in place, then `ready`, and serves until SIGTERM, Ctrl-C or the end of `--serve-for` (bounded
//! so that a forgotten showcase does not live on). Both bots share one manual clock that starts on a
//! Monday morning and moves only as the story needs, so the page looks the same every time (the
//! README's screenshot).

use std::time::Duration;

use bg_tests::{
    BobbyOptions, Pipeline, RESOURCE_MAP, StepScripts, TestBobby, TestGandalf, nightly_toml, spawn_bobby_on,
    spawn_gandalf_with,
};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Both bots with a day's worth of work in them, for screenshots and the browser test")]
struct Cli {
    /// How long to serve before exiting by itself.
    #[arg(long, default_value = "300s")]
    serve_for: String,
}

const REPO: &str = "acme/platform";

/// What the failed verification's test step prints: a realistic failure, with markup in it that
/// the page must show as text.
const LEDGER_FAILURE: &str = "running 212 tests
test billing::ledger::opens_an_account ... ok
test billing::ledger::posts_a_double_entry ... ok
test billing::ledger::rejects_unbalanced_postings ... ok
test billing::migrate::moves_invoices_to_the_ledger ... FAILED
test billing::migrate::keeps_<legacy>_ids ... ok

failures:

---- billing::migrate::moves_invoices_to_the_ledger stdout ----
thread 'billing::migrate::moves_invoices_to_the_ledger' panicked at billing/src/migrate.rs:88:9:
assertion `left == right` failed: ledger balance after migration
  left: 1204.50
 right: 1240.50

test result: FAILED. 211 passed; 1 failed; 0 ignored
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serve_for = shared::duration::Span::parse_config(&cli.serve_for)
        .map_err(|e| anyhow::anyhow!("--serve-for: {e}"))?
        .std();

    let pipeline = Pipeline::new();
    let g = spawn_gandalf_with(&pipeline.config(""), pipeline.dir(), true).await;
    g.github
        .push(REPO, "main", "main", &[(".gandalf/resources.toml", Some(RESOURCE_MAP))]);
    seed_queue(&g, &pipeline).await;

    let steps = StepScripts::new();
    let ok = |name: &str, what: &str| steps.script(name, &format!("echo '{what}'"));
    let build = steps.script(
        "build",
        r#"for s in api web search billing ledger auth; do echo "building $s from main"; done
if [ "$BOBBY_ENV" = env-3 ]; then
  echo "error: image registry refused the push of billing:latest (quota exceeded)"
  exit 3
fi"#,
    );
    let delete = [("scale-to-zero", ok("scale", "scaled every deployment to zero"))];
    let create = [
        (
            "infrastructure",
            ok("infra", "terraform apply: 0 to add, 2 to change, 0 to destroy"),
        ),
        ("build", build),
        ("deploy", ok("deploy", "deployed 6 services")),
        ("seed-data", ok("seed", "seeded 1,200 customers")),
    ];
    let bobby = spawn_bobby_on(
        g.database(),
        g.clock.clone(),
        BobbyOptions {
            config: nightly_toml("", &delete, &create),
            ..Default::default()
        },
    )
    .await;
    seed_environments(&bobby).await;

    println!("bobby http://{}", bobby.addr);
    println!("gandalf http://{}", g.addr);
    println!("ready");

    let (_tx, mut stop) = shared::http::shutdown_on_signals();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(serve_for) => {}
    }
    // Let the verification that is still "running" end with the process.
    pipeline.unblock("test-44");
    Ok(())
}

/// Lets PR `pr`'s test step take `minutes` on Gandalf's clock.
async fn verify(g: &TestGandalf, p: &Pipeline, pr: u64, title: &str, who: &str, minutes: i64, end: &str) {
    open(g, pr, title);
    p.block(&format!("test-{pr}"));
    command(g, who, &format!("merge #{pr}")).await;
    p.wait_for_start(&format!("test {pr} -"), 1).await;
    g.clock.advance(chrono::Duration::minutes(minutes));
    p.unblock(&format!("test-{pr}"));
    g.wait_for_state(pr as i32, end).await;
}

fn open(g: &TestGandalf, pr: u64, title: &str) {
    let branch = format!("pr-{pr}");
    let path = if pr.is_multiple_of(2) {
        "web/app.ts"
    } else {
        "api/handler.rs"
    };
    g.github
        .push(REPO, &branch, "main", &[(path, Some(&format!("change {pr}\n")))]);
    g.github.open_pull(REPO, pr, title, "alice", &branch, "main");
    g.github.approve(REPO, pr, "bob");
}

async fn command(g: &TestGandalf, who: &str, text: &str) {
    let (reply, refused) = g.command(who, text).await;
    assert!(!refused, "{text}: {reply}");
}

async fn seed_queue(g: &TestGandalf, p: &Pipeline) {
    verify(g, p, 41, "Add rate limiting to the public API", "U0ALICE", 7, "merged").await;
    g.clock.advance(chrono::Duration::minutes(3));
    p.say("test-42", LEDGER_FAILURE);
    p.fail("test-42");
    verify(g, p, 42, "Migrate billing to the new ledger", "U0BOB", 9, "failed").await;
    g.clock.advance(chrono::Duration::minutes(2));
    verify(g, p, 43, "Bump tokio to 1.48", "U0ALICE", 5, "merged").await;

    open(g, 44, "Search: fuzzy matching for service names");
    p.block("test-44");
    command(g, "U0BOB", "merge #44").await;
    p.wait_for_start("test 44 -", 1).await;
    g.clock.advance(chrono::Duration::minutes(2));
    open(g, 45, "Dark mode for the admin console");
    command(g, "U0BOB", "merge #45").await;
    g.clock.advance(chrono::Duration::minutes(1));
    open(g, 46, "Hotfix: session cookie SameSite=Lax");
    command(g, "U0ALICE", "merge #46 p=high").await;
}

/// Nightly first (its delete ends leases), then the morning's leases.
async fn seed_environments(b: &TestBobby) {
    nightly(b, "nightly run delete").await;
    nightly(b, "nightly run create").await;
    for (who, text) in [
        (
            "U0ALICE",
            "lock env-1 for 3h demo of the new checkout to the payments team",
        ),
        ("U0BOB", "wait env-1"),
        ("U0BOB", "lock env-2 for 2h load test of search <fuzzy>"),
        ("U0BOB", "preserve env-2"),
    ] {
        b.command(who, text).await;
    }
}

/// An admin's manual run, waited for (bounded).
async fn nightly(b: &TestBobby, text: &str) {
    let reply = b.command("U0ADMIN1", text).await.text();
    let id: i64 = reply
        .split("run #")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {reply}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state: String = sqlx::query_scalar("SELECT state FROM nightly_runs WHERE id = $1")
            .bind(id)
            .fetch_one(&b.pool)
            .await
            .expect("the run is recorded");
        if matches!(state.as_str(), "finished" | "interrupted" | "skipped") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "run #{id} did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
