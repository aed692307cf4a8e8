//! SPEC §8, "work that must happen once … is owned through a lease with an expiry and an epoch":
//! the lease primitive (`shared::fence`) against a real Postgres, then Nightly and a deploy run by
//! two replicas while the owner is cut off from the database mid-step.
//!
//! Cutting a replica off: it connects as a role of its own; the test forbids that role to log in
//! and terminates its backends (`pg_terminate_backend`). Its pool cannot reconnect, so it cannot
//! renew its lease: it must kill its step before the lease expires, and the other replica takes
//! over only after expiry and resumes from the interrupted step. (Terminating backends alone is a
//! blip: the pool reconnects and the lease is renewed on a fresh connection.) The leases' time to
//! live is set to 3 s in `work_lease_kinds` for these databases, so the tests wait seconds.
//!
//! What is checked: the interrupted step was never running on both replicas at once (the step
//! script takes an exclusive `flock` that the kernel drops when its processes die, and records any
//! start that finds it taken), no finished step ran again, nothing was faulted or failed, and the
//! work completed.

use std::time::Duration;

use bg_tests::pg::{TestDb, fresh_database};
use bg_tests::{BobbyOptions, MoreOptions, StepScripts, TestBobby, monday_morning, nightly_toml, spawn_bobby_on};
use shared::clock::ManualClock;
use shared::fence::{self, Acquired, FenceError};
use sqlx::PgPool;
use tokio::sync::watch;

/// Bounded polling of state only a file or another process shows.
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn admin_pool(db: &TestDb) -> PgPool {
    PgPool::connect(&db.url).await.expect("connect to the test database")
}

async fn short_leases(pool: &PgPool, ttl: &str) {
    sqlx::query("UPDATE work_lease_kinds SET ttl = $1::interval")
        .bind(ttl)
        .execute(pool)
        .await
        .unwrap();
}

// --- the primitive ------------------------------------------------------------------------------

#[tokio::test]
async fn a_lease_has_one_owner_is_taken_over_only_after_expiry_and_fences_the_stale_owner() {
    let db = fresh_database().await;
    let pool = admin_pool(&db).await;
    short_leases(&pool, "1 second").await;

    let Acquired::Ours(a) = fence::try_acquire(&pool, "deploy", "42", "a").await.unwrap() else {
        panic!("a free lease is taken");
    };
    assert_eq!(a.epoch, 1);
    // A second owner is refused while it is live, and told for how long.
    match fence::try_acquire(&pool, "deploy", "42", "b").await.unwrap() {
        Acquired::Held { owner, expires_in } => {
            assert_eq!(owner, "a");
            assert!(expires_in <= Duration::from_secs(1), "{expires_in:?}");
        }
        Acquired::Ours(_) => panic!("two owners at once"),
    }
    // The owner's writes pass while it holds it.
    a.begin().await.unwrap().commit().await.unwrap();
    assert!(a.renew().await.unwrap());

    // Unrenewed, it expires (by the database's clock); then, and only then, b takes over.
    let (_never, stop) = watch::channel(false);
    let b = fence::acquire(&pool, "deploy", "42", Duration::from_millis(200), stop.clone())
        .await
        .unwrap();
    assert_eq!(b.epoch, 2, "a take-over adds one to the epoch");
    // The stale owner can neither renew nor write; the new one can.
    assert!(!a.renew().await.unwrap(), "a stale epoch renewed");
    match a.begin().await {
        Err(FenceError::Lost { epoch, .. }) => assert_eq!(epoch, 1),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a write of a stale epoch was let through"),
    }
    let mut tx = b.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    // A stale owner's release does nothing; the owner's frees it at once for the next.
    a.release().await.unwrap();
    assert!(matches!(
        fence::try_acquire(&pool, "deploy", "42", "c").await.unwrap(),
        Acquired::Held { .. }
    ));
    b.release().await.unwrap();
    let Acquired::Ours(c) = fence::try_acquire(&pool, "deploy", "42", "c").await.unwrap() else {
        panic!("a released lease is free");
    };
    assert_eq!(c.epoch, 1, "a released lease starts over");
}

#[tokio::test]
async fn two_owners_racing_for_a_free_lease_get_it_once() {
    let db = fresh_database().await;
    let pool = admin_pool(&db).await;
    for round in 0..20 {
        let key = round.to_string();
        let tries = (0..8).map(|i| {
            let pool = pool.clone();
            let key = key.clone();
            async move {
                fence::try_acquire(&pool, "nightly", &key, &format!("o{i}"))
                    .await
                    .unwrap()
            }
        });
        let won = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|a| matches!(a, Acquired::Ours(_)))
            .count();
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test]
async fn an_owner_that_cannot_renew_is_told_to_stop_before_its_lease_expires() {
    let db = fresh_database().await;
    let pool = admin_pool(&db).await;
    short_leases(&pool, "3 seconds").await;
    let Acquired::Ours(a) = fence::try_acquire(&pool, "nightly", "leader", "a").await.unwrap() else {
        panic!("free");
    };
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let keep = a.keep_alive(shutdown);
    let mut stop = keep.stop();
    // Renewals keep it live past its first expiry (by the database's clock).
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM work_leases WHERE kind = 'nightly' AND key = 'leader'")
            .fetch_one(&pool)
            .await
            .unwrap();
    wait_until(
        "the lease to outlive its first expiry",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT clock_timestamp() > $1 AND expires_at > clock_timestamp() AND epoch = 1 \
             FROM work_leases WHERE kind = 'nightly' AND key = 'leader'",
            )
            .bind(first)
            .fetch_one(&pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert!(!*stop.borrow(), "a renewed lease was given up");
    assert!(!keep.lost());

    // Renewals now block behind a lock on the lease row: the owner gives up while the database
    // still says the lease is live (so nobody else could have taken it yet).
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM work_leases WHERE kind = 'nightly' AND key = 'leader' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    stop.wait_for(|s| *s).await.unwrap();
    assert!(keep.lost());
    let live: bool = sqlx::query_scalar(
        "SELECT expires_at > clock_timestamp() FROM work_leases WHERE kind = 'nightly' AND key = 'leader'",
    )
    .fetch_one(&mut *blocker)
    .await
    .unwrap();
    assert!(live, "the owner was told to stop only after its lease had expired");
    blocker.rollback().await.unwrap();
}

// --- two replicas, one cut off mid-step -------------------------------------------------------------

/// A role for one replica, so that it alone can be cut off.
struct Replica {
    role: String,
    db: TestDb,
}

async fn replica_role(admin: &PgPool, db: &TestDb, name: &str) -> Replica {
    let role = format!("{}_{name}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN SUPERUSER")))
        .execute(admin)
        .await
        .expect("create a role for a replica (the test server's user must be a superuser)");
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    Replica {
        role,
        db: TestDb {
            url: url.to_string(),
            name: db.name.clone(),
        },
    }
}

async fn cut_off(admin: &PgPool, r: &Replica) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER ROLE {} NOLOGIN", r.role)))
        .execute(admin)
        .await
        .unwrap();
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(&r.role)
            .fetch_all(admin)
            .await
            .unwrap();
    assert!(killed.iter().any(|k| *k), "the replica had no connection to terminate");
}

async fn reconnect(admin: &PgPool, r: &Replica) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER ROLE {} LOGIN", r.role)))
        .execute(admin)
        .await
        .unwrap();
}

async fn lease_owner(admin: &PgPool, kind: &str, key: &str) -> Option<(String, i64)> {
    sqlx::query_as("SELECT owner, epoch FROM work_leases WHERE kind = $1 AND key = $2")
        .bind(kind)
        .bind(key)
        .fetch_optional(admin)
        .await
        .unwrap()
}

/// The body of a step that must never run twice at once: an exclusive lock held by the step's
/// processes (the kernel drops it when they die); a start that finds it taken is recorded.
fn exclusive(name: &str, hold: &str) -> String {
    format!(
        "exec 9>\"$D/lock-{name}\"\n\
         flock -n 9 || echo \"$(date +%s%N) overlap $$\" >> \"$D/overlaps\"\n\
         echo $$ >> \"$D/pids-{name}\"\n\
         while [ -e \"$D/{hold}\" ]; do sleep 0.05; done"
    )
}

#[tokio::test]
async fn nightly_cut_off_mid_step_is_resumed_by_the_other_replica_without_running_a_step_twice_at_once() {
    let db = fresh_database().await;
    let admin = admin_pool(&db).await;
    short_leases(&admin, "3 seconds").await;
    let s = StepScripts::new();
    let delete = [
        ("drain", s.script("drain", "true")),
        ("scorch", s.script("scorch", &exclusive("scorch", "hold"))),
        ("sweep", s.script("sweep", "true")),
    ];
    let config = nightly_toml("", &delete, &[]);
    let opts = || BobbyOptions {
        config: config.clone(),
        more: MoreOptions::default(),
        ..Default::default()
    };
    let clock = ManualClock::new(monday_morning());
    let a_role = replica_role(&admin, &db, "a").await;
    let a = spawn_bobby_on(a_role.db.clone(), clock.clone(), opts()).await;
    wait_until("replica A to lead Nightly", Duration::from_secs(30), || async {
        lease_owner(&admin, "nightly", "leader").await.is_some()
    })
    .await;
    let (a_owner, a_epoch) = lease_owner(&admin, "nightly", "leader").await.unwrap();
    let b = spawn_bobby_on(db.clone(), clock.clone(), opts()).await;

    std::fs::write(s.dir.join("hold"), "").unwrap();
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO nightly_runs (phase, trigger, requested_by, only_env, state, created_at) \
         VALUES ('delete', 'manual', 'cli', 'env-1', 'requested', now()) RETURNING id",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    wait_until("A to start scorch", Duration::from_secs(30), || async {
        s.starts().iter().any(|(_, step, _)| step == "scorch")
    })
    .await;

    cut_off(&admin, &a_role).await;
    // B takes over after expiry, with a new epoch, and runs scorch again from its start.
    wait_until("B to start scorch again", Duration::from_secs(60), || async {
        s.starts().iter().filter(|(_, step, _)| step == "scorch").count() == 2
    })
    .await;
    let (b_owner, b_epoch) = lease_owner(&admin, "nightly", "leader").await.unwrap();
    assert_ne!(b_owner, a_owner);
    assert!(b_epoch > a_epoch);
    std::fs::remove_file(s.dir.join("hold")).unwrap();
    wait_until("the run to finish", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM nightly_runs WHERE id = $1")
            .bind(run)
            .fetch_one(&admin)
            .await
            .unwrap()
            == "finished"
    })
    .await;

    assert_eq!(s.read("overlaps"), None, "scorch ran on both replicas at once");
    let starts = s.starts();
    let count = |name: &str| starts.iter().filter(|(_, step, _)| step == name).count();
    assert_eq!(count("drain"), 1, "a finished step ran again: {starts:?}");
    assert_eq!(count("scorch"), 2, "{starts:?}");
    assert_eq!(count("sweep"), 1, "{starts:?}");
    let (state, fault): (String, Option<serde_json::Value>) =
        sqlx::query_as("SELECT state::text, fault FROM environments WHERE name = 'env-1'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(state, "deleted", "{fault:?}");
    let env_state: String =
        sqlx::query_scalar("SELECT state FROM nightly_run_envs WHERE run_id = $1 AND environment = 'env-1'")
            .bind(run)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(env_state, "ok");

    reconnect(&admin, &a_role).await;
    b.stop().await;
    stop_quietly(a).await;
}

/// Stops a replica that was cut off (its pool may still be reconnecting).
async fn stop_quietly(app: TestBobby) {
    let _ = tokio::time::timeout(Duration::from_secs(30), app.stop()).await;
}

// --- a deploy ------------------------------------------------------------------------------------

const REPO: &str = "acme/platform";
const ALICE: &str = "U0ALICE";

const DEPLOY_STEP_SH: &str = r#"D="@DIR@"
key="$BOBBY_STEP-${BOBBY_RESOURCE:--}"
exec 9>"$D/lock-$key"
flock -n 9 || echo "$(date +%s%N) overlap $key $$" >> "$D/overlaps"
echo "$(date +%s%N)|start|$key|$$" >> "$D/calls.log"
while [ -e "$D/block-$key" ]; do sleep 0.05; done
echo "$(date +%s%N)|end|$key|$$" >> "$D/calls.log"
"#;

fn deploy_config() -> String {
    format!(
        "{}\n[deploy]\nrepo = \"{REPO}\"\nbase = \"main\"\nstep_timeout = \"60s\"\n\
         [deploy.pipeline]\nbuild = \"sh step.sh\"\ndeploy = \"sh step.sh\"\ntest = \"sh step.sh\"\n",
        bg_tests::BOBBY_TOML
    )
}

fn deploy_starts(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.get(1) == Some(&"start")).then(|| f[2].to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_deploy_cut_off_mid_step_is_resumed_by_the_other_replica_not_failed() {
    let github = bg_tests::fake_github::FakeGithub::start().await;
    github.create_repo(
        REPO,
        "main",
        &[
            (
                ".gandalf/resources.toml",
                "[[resource]]\nname = \"api\"\ntype = \"service\"\npaths = [\"api/**\"]\n",
            ),
            ("api/main.rs", "api"),
        ],
    );
    github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("step.sh"),
        DEPLOY_STEP_SH.replace("@DIR@", &d.display().to_string()),
    )
    .unwrap();
    let opts = || BobbyOptions {
        config: deploy_config(),
        more: MoreOptions {
            github_api_url: Some(github.api_url()),
            base_dir: Some(d.clone()),
        },
        ..Default::default()
    };

    let db = fresh_database().await;
    let admin = admin_pool(&db).await;
    short_leases(&admin, "3 seconds").await;
    let clock = ManualClock::new(monday_morning());
    let a_role = replica_role(&admin, &db, "a").await;
    let a = spawn_bobby_on(a_role.db.clone(), clock.clone(), opts()).await;
    let b = spawn_bobby_on(db.clone(), clock.clone(), opts()).await;

    let answer = a.command(ALICE, "lock env-1").await;
    assert!(a.settle(ALICE, answer).await.text().contains("locked"));
    std::fs::write(d.join("block-deploy-api"), "").unwrap();
    // Typed on A: A runs it.
    let answer = a.command(ALICE, "deploy env-1 feature/api").await;
    let answer = a.settle(ALICE, answer).await.text();
    assert!(answer.contains("Deploying"), "{answer}");
    wait_until("A to start deploy api", Duration::from_secs(30), || async {
        deploy_starts(&d).iter().any(|s| s == "deploy-api")
    })
    .await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM deploys")
        .fetch_one(&admin)
        .await
        .unwrap();
    let (a_owner, a_epoch) = lease_owner(&admin, "deploy", &id.to_string()).await.unwrap();

    cut_off(&admin, &a_role).await;
    wait_until("B to start deploy api again", Duration::from_secs(60), || async {
        deploy_starts(&d).iter().filter(|s| *s == "deploy-api").count() == 2
    })
    .await;
    let (b_owner, b_epoch) = lease_owner(&admin, "deploy", &id.to_string()).await.unwrap();
    assert_ne!(b_owner, a_owner);
    assert!(b_epoch > a_epoch);
    // Never failed on the way.
    let state: String = sqlx::query_scalar("SELECT state FROM deploys WHERE id = $1")
        .bind(id)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(state, "running");
    std::fs::remove_file(d.join("block-deploy-api")).unwrap();
    wait_until("the deploy to end", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM deploys WHERE id = $1")
            .bind(id)
            .fetch_one(&admin)
            .await
            .unwrap()
            != "running"
    })
    .await;

    let (state, outcome): (String, Option<String>) = sqlx::query_as("SELECT state, outcome FROM deploys WHERE id = $1")
        .bind(id)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(state, "succeeded", "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(d.join("overlaps")).ok(),
        None,
        "a step ran on both replicas at once"
    );
    let starts = deploy_starts(&d);
    let count = |k: &str| starts.iter().filter(|s| *s == k).count();
    assert_eq!(count("build-api"), 1, "a finished step ran again: {starts:?}");
    assert_eq!(count("deploy-api"), 2, "{starts:?}");
    assert_eq!(count("test--"), 1, "{starts:?}");
    // The interrupted attempt is on record as such; api is deployed once, by the deploy.
    let steps: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT step, resource, state FROM deploy_steps WHERE deploy_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&admin)
            .await
            .unwrap();
    let states: Vec<String> = steps
        .iter()
        .map(|(s, r, st)| format!("{s} {} {st}", r.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        states,
        [
            "build api succeeded",
            "deploy api interrupted",
            "deploy api succeeded",
            "test - succeeded"
        ],
        "{states:?}"
    );
    let deployed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployed WHERE environment = 'env-1' AND deploy_id = $1")
            .bind(id)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(deployed, 1);

    reconnect(&admin, &a_role).await;
    b.stop().await;
    stop_quietly(a).await;
}

// --- Gandalf: a verification and a landing --------------------------------------------------------

use bg_tests::{Pipeline, TestGandalf};

const GANDALF_REPO: &str = "acme/platform";
const PATCH_MAIN: &str = "PATCH /repos/acme/platform/git/refs/heads/main";

/// Gandalf with the logging pipeline and a resource map; its own replica is stopped (and its lease
/// released), leases live 3 s, and replica A, on a role of its own (so that it alone can be cut
/// off), works the queues while replica B stands by.
async fn gandalf_replicas() -> (
    TestGandalf,
    Pipeline,
    PgPool,
    Replica,
    gandalf::app::Running,
    gandalf::app::Running,
) {
    let (mut g, p) = crate::gandalf_queue::setup("", true).await;
    g.down(bg_tests::Stop::Graceful).await;
    let db = g.database();
    let admin = admin_pool(&db).await;
    short_leases(&admin, "3 seconds").await;
    let a_role = replica_role(&admin, &db, "ga").await;
    let a = g.another_replica_on(&a_role.db.url).await;
    wait_until("replica A to own the queues", Duration::from_secs(30), || async {
        lease_owner(&admin, "gandalf", "queues").await.is_some()
    })
    .await;
    let b = g.another_replica().await;
    (g, p, admin, a_role, a, b)
}

async fn merge_pr(g: &TestGandalf, pr: u64) {
    g.ready_pull(pr, "api/x.rs");
    let (reply, refused) = g.command("U0ALICE", &format!("merge #{pr}")).await;
    assert!(!refused, "{reply}");
}

/// The "landed" comments on `pr`, once there is one (it is posted after the PR is recorded merged).
async fn landed_comments(g: &TestGandalf, pr: u64) -> Vec<String> {
    let landed = || -> Vec<String> {
        g.github
            .comments(GANDALF_REPO, pr)
            .into_iter()
            .filter(|c| c.contains("Landed on"))
            .collect()
    };
    wait_until("the landed comment", Duration::from_secs(30), || async {
        !landed().is_empty()
    })
    .await;
    landed()
}

#[tokio::test]
async fn a_verification_cut_off_mid_step_is_verified_again_by_the_other_replica_and_lands_once() {
    let (g, p, admin, a_role, a, b) = gandalf_replicas().await;
    let (a_owner, a_epoch) = lease_owner(&admin, "gandalf", "queues").await.unwrap();
    p.block("deploy-7");
    merge_pr(&g, 7).await;
    p.wait_for_start("deploy 7 api", 1).await;

    cut_off(&admin, &a_role).await;
    // A kills its step before its lease expires; B takes over after expiry (a new epoch) and
    // verifies the PR again from the start (SPEC §8: a verification may start over).
    p.wait_for_start("deploy 7 api", 2).await;
    let (b_owner, b_epoch) = lease_owner(&admin, "gandalf", "queues").await.unwrap();
    assert_ne!(b_owner, a_owner);
    assert!(b_epoch > a_epoch);
    assert_eq!(g.state_of(7).await, "deploying", "never rejected on the way");
    // A stopped its own step (SIGTERM) before B took the lease: not B reaping it (both replicas
    // run on this host, and a new owner kills what an old one left here, with SIGKILL).
    let b_took: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM acquired_at)::float8 FROM work_leases WHERE kind = 'gandalf' AND key = 'queues'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    let terms = p.terms();
    let a_stopped = terms
        .iter()
        .find(|(_, step)| step == "deploy-7-api")
        .unwrap_or_else(|| panic!("A never stopped its step: {terms:?}"));
    assert!(
        (a_stopped.0 as f64) / 1e9 < b_took,
        "A's step was stopped at {} s, after B took the lease at {b_took} s",
        a_stopped.0 as f64 / 1e9
    );
    p.unblock("deploy-7");
    g.wait_for_state(7, "merged").await;

    assert_eq!(p.overlaps(), None, "a step ran on both replicas at once");
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1, "{:?}", g.github.log());
    let landed: String = sqlx::query_scalar("SELECT landed_sha FROM queue_items WHERE pr = 7")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(Some(landed), g.github.branch(GANDALF_REPO, "main"));
    let started = p.started();
    assert!(
        !started.iter().any(|s| s.starts_with("revert")),
        "nothing was red, so nothing was reverted: {started:?}"
    );
    assert_eq!(started.iter().filter(|s| *s == "test 7 -").count(), 1, "{started:?}");
    // A's step is on record as interrupted (B found it running), B's as succeeded.
    let steps = crate::gandalf_queue::step_states(&g, 7).await;
    assert!(steps.contains(&"deploy api interrupted".to_string()), "{steps:?}");
    assert_eq!(steps.last().map(String::as_str), Some("test - succeeded"), "{steps:?}");
    assert_eq!(
        landed_comments(&g, 7).await.len(),
        1,
        "{:?}",
        g.github.comments(GANDALF_REPO, 7)
    );

    reconnect(&admin, &a_role).await;
    b.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), a.stop()).await;
}

#[tokio::test]
async fn a_replica_cut_off_while_landing_lands_once_and_the_other_concludes_it() {
    let (g, p, admin, a_role, a, b) = gandalf_replicas().await;
    // Replica A's move of `main` reaches GitHub; A is cut off before GitHub answers.
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    g.github.before_next_on(PATCH_MAIN, move |_| {
        let _ = arrived_tx.send(());
        let _ = go_rx.recv_timeout(Duration::from_secs(60));
    });
    merge_pr(&g, 8).await;
    tokio::time::timeout(Duration::from_secs(30), arrived)
        .await
        .expect("A moves main")
        .unwrap();
    assert_eq!(g.state_of(8).await, "landing");
    let (a_owner, _) = lease_owner(&admin, "gandalf", "queues").await.unwrap();
    cut_off(&admin, &a_role).await;
    go.send(()).unwrap();

    // B takes over after expiry, finds the recorded commit on `main`, and concludes the PR as
    // landed: no second verification, no second move.
    g.wait_for_state(8, "merged").await;
    let (b_owner, _) = lease_owner(&admin, "gandalf", "queues").await.unwrap();
    assert_ne!(b_owner, a_owner);
    assert_eq!(g.github.calls_to(PATCH_MAIN), 1, "{:?}", g.github.log());
    let (landed, landing): (String, String) =
        sqlx::query_as("SELECT landed_sha, landing_sha FROM queue_items WHERE pr = 8")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(landed, landing);
    assert_eq!(Some(landed), g.github.branch(GANDALF_REPO, "main"));
    let started = p.started();
    assert_eq!(started.iter().filter(|s| *s == "test 8 -").count(), 1, "{started:?}");
    assert_eq!(p.overlaps(), None);
    assert_eq!(
        landed_comments(&g, 8).await.len(),
        1,
        "{:?}",
        g.github.comments(GANDALF_REPO, 8)
    );
    let announced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM slack_outbox WHERE sender = 'gandalf' AND channel = 'C0MERGES' AND text LIKE '%#8%'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(announced, 1, "announced once");

    reconnect(&admin, &a_role).await;
    b.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), a.stop()).await;
}

/// Queues `pr` and holds replica A's move of `main` at GitHub: returns what releases it, and the
/// commit A recorded before moving.
async fn hold_a_landing(g: &TestGandalf, admin: &PgPool, pr: u64) -> (std::sync::mpsc::Sender<()>, String) {
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    g.github.before_next_on(PATCH_MAIN, move |_| {
        let _ = arrived_tx.send(());
        let _ = go_rx.recv_timeout(Duration::from_secs(60));
    });
    merge_pr(g, pr).await;
    tokio::time::timeout(Duration::from_secs(30), arrived)
        .await
        .expect("A moves main")
        .unwrap();
    let landing: String = sqlx::query_scalar("SELECT landing_sha FROM queue_items WHERE pr = $1")
        .bind(pr as i32)
        .fetch_one(admin)
        .await
        .unwrap();
    (go, landing)
}

/// PR `pr` ended merged as A's commit, which is `main`'s tip, with `patches` moves of `main` asked
/// of GitHub in all, one "landed" comment and no step run twice at once.
async fn assert_landed_once_as(
    g: &TestGandalf,
    p: &Pipeline,
    admin: &PgPool,
    pr: u64,
    a_landing: &str,
    patches: usize,
) {
    g.wait_for_state(pr as i32, "merged").await;
    let landed: String = sqlx::query_scalar("SELECT landed_sha FROM queue_items WHERE pr = $1")
        .bind(pr as i32)
        .fetch_one(admin)
        .await
        .unwrap();
    assert_eq!(landed, a_landing);
    assert_eq!(g.github.branch(GANDALF_REPO, "main").as_deref(), Some(a_landing));
    assert_eq!(g.github.calls_to(PATCH_MAIN), patches, "{:?}", g.github.log());
    assert_eq!(p.overlaps(), None);
    assert_eq!(
        landed_comments(g, pr).await.len(),
        1,
        "{:?}",
        g.github.comments(GANDALF_REPO, pr)
    );
}

#[tokio::test]
async fn a_landing_answered_after_the_other_replica_took_over_is_concluded_as_that_landing() {
    let (g, p, admin, a_role, a, b) = gandalf_replicas().await;
    // A's move of `main` is held at GitHub until B, having taken over, verifies the PR again.
    let (go, a_landing) = hold_a_landing(&g, &admin, 9).await;
    p.block("build-9");
    cut_off(&admin, &a_role).await;
    p.wait_for_start("build 9 lib", 2).await;
    // Now GitHub answers A: `main` moves to A's commit, behind B's back.
    go.send(()).unwrap();
    wait_until("main to hold A's commit", Duration::from_secs(30), || async {
        g.github.branch(GANDALF_REPO, "main").as_deref() == Some(a_landing.as_str())
    })
    .await;
    p.unblock("build-9");

    // B's re-check before landing finds the PR merged and A's recorded commit on `main`: it
    // concludes the PR as landed by that commit, without moving `main` itself. Nothing landed
    // twice, nothing was rejected.
    assert_landed_once_as(&g, &p, &admin, 9, &a_landing, 1).await;

    reconnect(&admin, &a_role).await;
    b.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), a.stop()).await;
}

#[tokio::test]
async fn a_landing_answered_while_the_other_replica_lands_leaves_one_landing() {
    let (g, p, admin, a_role, a, b) = gandalf_replicas().await;
    let (go, a_landing) = hold_a_landing(&g, &admin, 10).await;
    cut_off(&admin, &a_role).await;
    // B verifies again; right as its own move of `main` reaches GitHub, GitHub answers A's first.
    let released = a_landing.clone();
    g.github.before_next_on(PATCH_MAIN, move |fake| {
        go.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while fake.branch(GANDALF_REPO, "main").as_deref() != Some(released.as_str()) {
            assert!(std::time::Instant::now() < deadline, "A's move never went through");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // B's move is refused (not a fast-forward); B finds A's earlier commit on `main` and concludes
    // the PR as landed by it.
    assert_landed_once_as(&g, &p, &admin, 10, &a_landing, 2).await;
    let started = p.started();
    assert_eq!(started.iter().filter(|s| *s == "test 10 -").count(), 2, "{started:?}");

    reconnect(&admin, &a_role).await;
    b.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), a.stop()).await;
}
