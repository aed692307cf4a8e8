//! SIGTERM during work, on the real `bobby` and `gandalf` binaries (child processes, not the
//! in-process harness): each bot is stopped with a real SIGTERM while one of its steps runs, and
//! must stop taking requests, let the step reach a safe point, exit 0 within [`EXIT_BOUND`], and
//! leave the work where its next start resumes it (SPEC §7 "graceful shutdown", §4.5, §5.3).
//!
//! The step scripts trap SIGTERM and keep running, so the bots have to escalate (SIGTERM, then
//! SIGKILL after the steps' 2 s grace): that gives the test a window in which the process is still
//! alive but must already refuse new connections.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this test (`target/debug`);
//! running only this test binary needs `cargo build -p bobby -p gandalf` first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bg_tests::fake_github::{self, FakeGithub};
use bg_tests::{
    FakeSlack, Pipeline, RESOURCE_MAP, SIGNING_SECRET, StepScripts, WEBHOOK_SECRET, command_form, fresh_database,
    nightly_toml, spawn_gandalf_with,
};
use tokio::process::{Child, Command};

/// How long a bot may take from SIGTERM to exit. Its steps get 2 s between SIGTERM and SIGKILL;
/// everything else is database writes. The bots' own grace period (20 s) is the outer limit.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Where cargo put the workspace's binaries: next to the directory of this test executable.
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p bobby -p gandalf` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bot running as a child process, its output in a log file shown when an assertion fails.
pub(crate) struct Bot {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Bot {
    pub(crate) async fn start(bin: &str, config: &Path, env: &[(&str, String)], log: PathBuf) -> Bot {
        let port = free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(binary(bin))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let bot = Bot { child, port, log };
        bot.wait_ready().await;
        bot
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the bot is running")
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "never ready:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("the bot is running") as i32;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// After SIGTERM: waits until a fresh connection is refused, and checks that the process was
    /// still alive then (it had stopped taking requests before it finished its work).
    async fn wait_refusing_while_alive(&mut self) {
        let deadline = Instant::now() + EXIT_BOUND;
        loop {
            // A new client each time: no pooled connection may carry the request.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            if http.get(self.url("/healthz")).send().await.is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "still serving after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the process was already gone when requests were first refused: the step's grace \
             period should have kept it alive a little longer:\n{}",
            self.output()
        );
    }

    /// Waits (at most `EXIT_BOUND` after `since`) for the exit and asserts it is a clean 0.
    async fn assert_exits_cleanly(&mut self, since: Instant) -> Duration {
        let left = EXIT_BOUND.saturating_sub(since.elapsed());
        let status = match tokio::time::timeout(left, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!("still running {EXIT_BOUND:?} after SIGTERM:\n{}", self.output()),
        };
        let took = since.elapsed();
        assert_eq!(status.code(), Some(0), "exit status {status:?}:\n{}", self.output());
        took
    }
}

/// Whether a process exists (a zombie does not count: its parent reaps it).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

async fn wait_for_file(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scalar<T>(pool: &sqlx::PgPool, sql: &'static str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Bounded polling until `sql` returns `want`.
async fn wait_for(pool: &sqlx::PgPool, sql: &'static str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Option<String> = sqlx::query_scalar(sql).fetch_optional(pool).await.unwrap().flatten();
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: still {got:?}, waited for {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_during_a_nightly_step_exits_0_in_bounded_time_and_the_next_start_resumes_the_run() {
    let db = fresh_database().await;
    let slack = FakeSlack::start().await;
    let s = StepScripts::new();
    let d = s.dir.display().to_string();
    // The delete step records its pid, notes every SIGTERM it gets and ignores it, and runs until
    // the `block` file is gone: the first Bobby has to kill it; the second one finds it unblocked.
    std::fs::write(s.dir.join("block"), "").unwrap();
    let scorch = s.script(
        "scorch",
        &format!(
            "echo $$ >> '{d}/pids'; trap 'echo term >> \"{d}/terms\"' TERM; \
             while [ -e '{d}/block' ]; do sleep 0.05; done; echo scorched"
        ),
    );
    let config = nightly_toml("", &[("scorch", scorch)], &[]);
    let config_path = s.dir.join("bobby.toml");
    std::fs::write(&config_path, &config).unwrap();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("SLACK_BOT_TOKEN", fake_slack_token()),
        ("BOBBY_API_TOKEN", bg_tests::API_TOKEN.to_string()),
    ];
    let log = s.dir.join("bobby.log");
    let mut bobby = Bot::start("bobby", &config_path, &env, log.clone()).await;

    // An admin starts a delete of env-1, through the real Slack endpoint (signed, wall clock).
    let body = command_form("U0ADMIN1", "nightly run delete env-1", &slack.response_url("admin"));
    let ts = chrono::Utc::now().timestamp();
    let sig = shared::slack::signature::sign(SIGNING_SECRET, ts, body.as_bytes());
    let r = reqwest::Client::new()
        .post(bobby.url("/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pid: i32 = wait_for_file(&s.dir.join("pids"), "the delete step's start")
        .await
        .trim()
        .parse()
        .unwrap();

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let sent = Instant::now();
    bobby.sigterm();
    bobby.wait_refusing_while_alive().await;
    let took = bobby.assert_exits_cleanly(sent).await;
    println!("bobby exited 0 {took:?} after SIGTERM");

    // The safe point: the step was asked to stop (SIGTERM reached it) and then killed; nothing of
    // it runs on, nothing is left registered for the next start to reap, and the run is left
    // `running` with its attempt marked interrupted, for the next start to resume.
    assert!(
        std::fs::read_to_string(s.dir.join("terms")).is_ok(),
        "the step never got SIGTERM:\n{}",
        std::fs::read_to_string(s.dir.join("bobby.log")).unwrap_or_default()
    );
    assert!(!alive(pid), "the step outlived Bobby");
    assert_eq!(scalar::<i64>(&pool, "SELECT count(*) FROM step_processes").await, 0);
    assert_eq!(
        scalar::<String>(&pool, "SELECT state FROM nightly_runs ORDER BY id DESC LIMIT 1").await,
        "running"
    );
    assert_eq!(
        scalar::<String>(&pool, "SELECT ended FROM nightly_attempts ORDER BY id DESC LIMIT 1").await,
        "interrupted (Bobby is stopping)"
    );
    assert_eq!(
        scalar::<String>(&pool, "SELECT state::text FROM environments WHERE name = 'env-1'").await,
        "deleting",
        "Bobby cannot tell whether a half-run delete left env-1 up: it stays `deleting` until resumed"
    );

    // The next start resumes the run: the step runs again (now unblocked) and the run finishes.
    std::fs::remove_file(s.dir.join("block")).unwrap();
    let mut bobby = Bot::start("bobby", &config_path, &env, log).await;
    wait_for(
        &pool,
        "SELECT state FROM nightly_runs ORDER BY id DESC LIMIT 1",
        "finished",
    )
    .await;
    assert_eq!(
        scalar::<String>(&pool, "SELECT state::text FROM environments WHERE name = 'env-1'").await,
        "deleted"
    );
    let starts = s.starts();
    assert_eq!(starts.len(), 2, "one interrupted attempt, one resumed: {starts:?}");

    // An idle Bobby stops at once.
    let sent = Instant::now();
    bobby.sigterm();
    let took = bobby.assert_exits_cleanly(sent).await;
    println!("idle bobby exited 0 {took:?} after SIGTERM");
}

fn fake_slack_token() -> String {
    bg_tests::fake_slack::BOT_TOKEN.to_string()
}

#[tokio::test]
async fn sigterm_during_a_verification_exits_0_in_bounded_time_and_the_pr_is_verified_again_and_lands_once() {
    let pipeline = Pipeline::new();
    let dir = pipeline.dir().to_path_buf();
    let d = dir.display().to_string();
    // `test` of PR 7 ignores SIGTERM and runs while `block-slow` exists; the other steps are the
    // pipeline's logging script.
    std::fs::write(
        dir.join("slow.sh"),
        format!(
            "sh step.sh\necho $$ >> '{d}/pids'\ntrap 'echo term >> \"{d}/terms\"' TERM\n\
             while [ -e '{d}/block-slow' ]; do sleep 0.05; done\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("block-slow"), "").unwrap();
    let config = pipeline.config("").replace(
        &format!("test = \"{}\"", pipeline.step_command()),
        "test = \"sh slow.sh\"",
    );
    assert!(config.contains("slow.sh"));
    // The in-process harness gives the database, the fake GitHub with its repository, and a
    // handler to queue the PR with; its own Gandalf is stopped, so the child does all the work.
    let mut g = spawn_gandalf_with(&config, &dir, false).await;
    g.down(bg_tests::Stop::Graceful).await;
    let github: &FakeGithub = &g.github;
    github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    let config_path = dir.join("gandalf.toml");
    std::fs::write(&config_path, &config).unwrap();
    let env = [
        ("DATABASE_URL", g.database().url),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_string()),
        ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("GITHUB_API_URL", github.api_url()),
        ("GITHUB_TOKEN", fake_github::TOKEN.to_string()),
    ];
    let log = dir.join("gandalf.log");
    let mut gandalf = Bot::start("gandalf", &config_path, &env, log.clone()).await;

    g.ready_pull(7, "api/x.rs");
    let (reply, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "{reply}");
    let pid: i32 = wait_for_file(&dir.join("pids"), "the test step's start")
        .await
        .trim()
        .parse()
        .unwrap();
    assert_eq!(g.state_of(7).await, "testing");

    let sent = Instant::now();
    gandalf.sigterm();
    gandalf.wait_refusing_while_alive().await;
    let took = gandalf.assert_exits_cleanly(sent).await;
    println!("gandalf exited 0 {took:?} after SIGTERM");

    // The safe point: the step got SIGTERM and is gone, its row says interrupted, the PR is back in
    // the queue (not rejected, not landed), and nothing moved `main`.
    assert!(
        std::fs::read_to_string(dir.join("terms")).is_ok(),
        "the step never got SIGTERM:\n{}",
        std::fs::read_to_string(dir.join("gandalf.log")).unwrap_or_default()
    );
    assert!(!alive(pid), "the step outlived Gandalf");
    assert_eq!(g.state_of(7).await, "queued");
    assert_eq!(scalar::<i64>(&g.pool, "SELECT count(*) FROM step_processes").await, 0);
    assert_eq!(
        scalar::<i64>(&g.pool, "SELECT count(*) FROM queue_steps WHERE state = 'running'").await,
        0
    );
    let test_step: String = scalar(&g.pool, "SELECT state FROM queue_steps WHERE name = 'test'").await;
    assert!(
        ["interrupted", "cancelled"].contains(&test_step.as_str()),
        "the stopped step is marked as such, not as failed: {test_step}"
    );
    let patch_main = "PATCH /repos/acme/platform/git/refs/heads/main";
    assert_eq!(github.calls_to(patch_main), 0);
    assert!(github.comments("acme/platform", 7).is_empty(), "no verdict was posted");

    // The next start verifies it again from the start and lands it once.
    std::fs::remove_file(dir.join("block-slow")).unwrap();
    let mut gandalf = Bot::start("gandalf", &config_path, &env, log).await;
    g.wait_for_state(7, "merged").await;
    assert_eq!(github.calls_to(patch_main), 1, "landed exactly once");
    assert!(github.is_merged("acme/platform", 7));

    let sent = Instant::now();
    gandalf.sigterm();
    let took = gandalf.assert_exits_cleanly(sent).await;
    println!("idle gandalf exited 0 {took:?} after SIGTERM");
}
