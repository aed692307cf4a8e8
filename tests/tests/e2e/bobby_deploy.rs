//! `/bobby deploy` end to end (SPEC §4.6): the real Bobby against a real Postgres, the stateful
//! GitHub fake (refs, pull requests, compare, contents) and the Slack fake (messages edited with
//! `chat.update`, thread replies). The pipeline is a shell script that logs every call with the
//! `BOBBY_*` variables it got, and can be told to block or fail per step and resource.

use std::path::Path;
use std::time::Duration;

use bg_tests::fake_github::FakeGithub;
use bg_tests::fake_slack::Posted;
use bg_tests::{BOBBY_TOML, BobbyOptions, MoreOptions, Stop, TestBobby, spawn_bobby_with};
use serde_json::Value;

const REPO: &str = "acme/platform";
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const ADMIN: &str = "U0ADMIN1";

/// core ← api ← web, core ← worker; docs are ignored.
const MAP: &str = r#"
ignore = ["**/*.md", ".gandalf/**"]

[[resource]]
name = "core"
type = "package"
paths = ["core/**"]
deploy = false

[[resource]]
name = "api"
type = "service"
paths = ["api/**"]
depends_on = ["core"]

[[resource]]
name = "web"
type = "service"
paths = ["web/**"]
depends_on = ["api"]

[[resource]]
name = "worker"
type = "service"
paths = ["worker/**"]
depends_on = ["core"]
"#;

const STEP_SH: &str = r#"key="$BOBBY_STEP-${BOBBY_RESOURCE:--}"
echo $$ > "pid-$key"
echo "$(date +%s%N)|start|$BOBBY_STEP|${BOBBY_RESOURCE:--}|$BOBBY_SHA|$BOBBY_RESOURCES|$BOBBY_ENV|$BOBBY_REF|$BOBBY_USER|$BOBBY_ENV_URL" >> calls.log
while [ -e "block-$key" ]; do sleep 0.02; done
echo "output of $key"
if [ -e "fail-$key" ]; then
  echo "boom in $key"
  echo "$(date +%s%N)|end|$BOBBY_STEP|${BOBBY_RESOURCE:--}|3" >> calls.log
  exit 3
fi
echo "$(date +%s%N)|end|$BOBBY_STEP|${BOBBY_RESOURCE:--}|0" >> calls.log
"#;

struct Setup {
    app: TestBobby,
    github: FakeGithub,
    dir: tempfile::TempDir,
    main: String,
}

fn config() -> String {
    format!(
        "{BOBBY_TOML}\n[deploy]\nrepo = \"{REPO}\"\nbase = \"main\"\nstep_timeout = \"30s\"\nparallelism = 2\n\
         [deploy.pipeline]\nbuild = \"sh step.sh\"\ndeploy = \"sh step.sh\"\ntest = \"sh step.sh\"\n"
    )
}

async fn setup() -> Setup {
    let github = FakeGithub::start().await;
    let main = github.create_repo(
        REPO,
        "main",
        &[
            (".gandalf/resources.toml", MAP),
            ("core/lib.rs", "core"),
            ("api/main.rs", "api"),
            ("web/index.html", "web"),
            ("worker/main.rs", "worker"),
            ("README.md", "hello"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("step.sh"), STEP_SH).unwrap();
    let app = spawn_bobby_with(BobbyOptions {
        config: config(),
        more: MoreOptions {
            github_api_url: Some(github.api_url()),
            base_dir: Some(dir.path().to_path_buf()),
        },
        ..Default::default()
    })
    .await;
    Setup { app, github, dir, main }
}

/// One line of `calls.log`.
#[derive(Debug, Clone)]
struct Call {
    start: bool,
    step: String,
    resource: String,
    /// Start: `BOBBY_SHA`; end: the exit status.
    detail: String,
    fields: Vec<String>,
}

impl Setup {
    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<String> = l.split('|').map(str::to_string).collect();
                Call {
                    start: f[1] == "start",
                    step: f[2].clone(),
                    resource: f[3].clone(),
                    detail: f[4].clone(),
                    fields: f,
                }
            })
            .collect()
    }

    fn started(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.start)
            .map(|c| format!("{} {}", c.step, c.resource))
            .collect()
    }

    fn touch(&self, file: &str) {
        std::fs::write(self.dir.path().join(file), "").unwrap();
    }

    fn remove(&self, file: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(file));
    }

    async fn wait_for_start(&self, what: &str) {
        wait_until(&format!("{what} to start"), || self.started().iter().any(|s| s == what)).await;
    }

    async fn lock(&self, user: &str, env: &str) {
        let a = self.app.command(user, &format!("lock {env}")).await;
        let a = self.app.settle(user, a).await;
        assert!(a.text().contains("locked"), "{}", a.text());
    }

    /// Types `/bobby <text>` and returns the final answer's text.
    async fn say(&self, user: &str, text: &str) -> String {
        let a = self.app.command(user, text).await;
        assert_eq!(a.status, 200);
        self.app.settle(user, a).await.text()
    }

    async fn environment(&self, env: &str) -> Value {
        self.app.environment(env).await
    }

    async fn wait_for_deploy_state(&self, env: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.environment(env).await;
            if e["deploy"]["state"] == state {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the deploy to {env} never became {state}: {e:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The progress message in the channel, once it says `needle`.
    async fn progress(&self, needle: &str) -> Posted {
        let s = &self.app.slack;
        s.wait_until(
            &format!("a progress message saying {needle:?}"),
            Duration::from_secs(30),
            |s| {
                s.posts_to("C0DEV")
                    .iter()
                    .any(|p| p.thread_ts.is_none() && p.block_text().contains(needle))
            },
        )
        .await;
        s.posts_to("C0DEV")
            .into_iter()
            .find(|p| p.thread_ts.is_none() && p.block_text().contains(needle))
            .unwrap()
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.app.pool).await.unwrap()
    }
}

/// Bounded polling of state the step script writes to a file (no notification to await there).
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Whether the process is still running (a zombie waiting for its parent counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

impl Setup {
    /// The pid the step `<step>-<resource>` wrote when it started.
    fn pid_of(&self, key: &str) -> u32 {
        std::fs::read_to_string(self.dir.path().join(format!("pid-{key}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

#[tokio::test]
async fn a_branch_deploy_builds_and_deploys_only_what_it_changed() {
    let s = setup().await;
    let head = s
        .github
        .push(REPO, "feature/api", "main", &[("api/handler.rs", Some("new"))]);
    s.lock(ALICE, "env-1").await;

    let answer = s.say(ALICE, "deploy env-1 feature/api").await;
    assert!(answer.contains("Deploying `feature/api`"), "{answer}");
    let done = s.progress("is deployed to").await;

    // core is built first (api needs it), then api, then web (it depends on api); worker is
    // untouched. Only services that changed, or depend on what changed, are deployed.
    assert_eq!(
        s.started(),
        [
            "build core",
            "build api",
            "build web",
            "deploy api",
            "deploy web",
            "test -"
        ]
    );
    let first = &s.calls()[0];
    assert_eq!(first.detail, head, "BOBBY_SHA is the branch's tip");
    assert_eq!(first.fields[5], "api web", "BOBBY_RESOURCES is the affected set");
    assert_eq!(first.fields[6], "env-1");
    assert_eq!(first.fields[7], "feature/api", "BOBBY_REF is the ref as typed");
    assert_eq!(first.fields[8], ALICE);
    assert_eq!(first.fields[9], "https://env-1.dev.example.com");

    // One message, edited as steps finished, ending with every step ticked.
    // An edit is queued per finished step and one at the end; Slack gets at least one of them
    // (the outbox skips an edit that a newer one superseded before it went out).
    assert_eq!(
        s.count("SELECT count(*) FROM slack_outbox WHERE edits IS NOT NULL")
            .await,
        7,
        "six steps finished, then the deploy"
    );
    assert!(done.edits >= 1, "the message was edited: {}", done.edits);
    assert_eq!(
        s.app
            .slack
            .posts_to("C0DEV")
            .iter()
            .filter(|p| p.block_text().contains("deploying") || p.block_text().contains("is deployed"))
            .count(),
        1,
        "one progress message, not one per step"
    );
    let text = done.block_text();
    for line in ["build `core`", "deploy `api`", "deploy `web`", "test"] {
        assert!(text.contains(&format!(":white_check_mark: {line}")), "{line} in {text}");
    }
    assert!(!text.contains("worker"), "{text}");

    let env = s.wait_for_deploy_state("env-1", "succeeded").await;
    assert_eq!(env["deploy"]["ref"], "feature/api");
    assert_eq!(env["deploy"]["sha"], head.as_str());
    assert_eq!(env["deploy"]["by"], ALICE);
    assert!(env["deploy"]["finished_at"].is_string());
    let deployed = env["deployed"].as_object().unwrap();
    assert_eq!(deployed.keys().collect::<Vec<_>>(), ["api", "web"]);
    assert_eq!(deployed["api"]["sha"], head.as_str());
    assert_eq!(deployed["api"]["ref"], "feature/api");
    assert_eq!(deployed["api"]["by"], ALICE);

    let status = s.say(ALICE, "status env-1").await;
    assert!(status.contains("Last deploy: `feature/api`"), "{status}");
    assert!(status.contains("succeeded"), "{status}");
    assert!(status.contains("Deployed: `api` `feature/api`"), "{status}");

    // The control center has the deploy's steps and logs.
    let id = s.count("SELECT max(id) FROM deploys").await;
    let page = s
        .app
        .http
        .get(s.app.url(&format!("/deploys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("output of build-api"), "{html}");
}

#[tokio::test]
async fn only_deploys_the_named_resources_and_a_pull_request_deploys_its_head() {
    let s = setup().await;
    s.lock(ALICE, "env-2").await;
    let head = s.github.push(REPO, "pr-7", "main", &[("web/app.js", Some("x"))]);
    s.github.open_pull(REPO, 7, "Web things", "alice", "pr-7", "main");

    let answer = s.say(ALICE, "deploy env-2 #7 only worker").await;
    assert!(answer.contains("Deploying `#7`"), "{answer}");
    s.wait_for_deploy_state("env-2", "succeeded").await;
    assert_eq!(s.started(), ["build core", "build worker", "deploy worker", "test -"]);
    assert_eq!(s.calls()[0].detail, head, "a pull request deploys its head");
    assert_eq!(s.calls()[0].fields[5], "worker");

    // Unknown resources are refused with the list, and nothing runs.
    let answer = s.say(ALICE, "deploy env-2 main only wroker").await;
    assert!(answer.contains("no resource `wroker`"), "{answer}");
    assert!(answer.contains("Did you mean `worker`?"), "{answer}");
    assert_eq!(s.count("SELECT count(*) FROM deploys").await, 1);
}

#[tokio::test]
async fn a_dry_run_plans_without_a_lease_and_runs_nothing() {
    let s = setup().await;
    s.github
        .push(REPO, "feature/core", "main", &[("core/lib.rs", Some("changed"))]);
    let answer = s.say(BOB, "deploy env-3 feature/core --dry-run").await;
    assert!(answer.contains("Dry run"), "{answer}");
    for line in ["Affected (4)", "core", "api", "web", "worker"] {
        assert!(answer.contains(line), "{line} in {answer}");
    }
    assert!(s.started().is_empty());
    assert_eq!(s.count("SELECT count(*) FROM deploys").await, 0);
}

#[tokio::test]
async fn deploys_are_refused_to_everyone_but_the_holder_and_while_busy() {
    let s = setup().await;
    s.github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);

    // Unleased: the same words as deploy-check.
    let answer = s.say(BOB, "deploy env-1 feature/api").await;
    assert!(
        answer.contains("env-1 is not locked by anyone; lock it first"),
        "{answer}"
    );

    // Held by someone else.
    s.lock(ALICE, "env-1").await;
    let answer = s.say(BOB, "deploy env-1 feature/api").await;
    assert!(answer.contains("env-1 is locked by U0ALICE"), "{answer}");

    // Unknown refs and pull requests, typos in the environment.
    let answer = s.say(ALICE, "deploy env-1 no-such-branch").await;
    assert!(answer.contains("neither a branch nor a commit"), "{answer}");
    let answer = s.say(ALICE, "deploy env-1 #404").await;
    assert!(answer.contains("no pull request #404"), "{answer}");
    let answer = s.say(ALICE, "deploy env-11 main").await;
    assert!(answer.contains("no environment `env-11`"), "{answer}");

    // A second deploy while one runs is refused, naming the running one.
    s.touch("block-build-core");
    let answer = s.say(ALICE, "deploy env-1 feature/api").await;
    assert!(answer.contains("Deploying"), "{answer}");
    s.wait_for_start("build core").await;
    let answer = s.say(ADMIN, "deploy env-1 main").await;
    assert!(answer.contains("is deploying `feature/api`"), "{answer}");
    assert!(answer.contains("<@U0ALICE>"), "{answer}");

    // An admin deploys anywhere else; nobody deploys while Nightly works on an environment.
    sqlx::query("UPDATE environments SET state = 'deleting' WHERE name = 'env-3'")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let answer = s.say(ADMIN, "deploy env-3 main").await;
    assert!(answer.contains("env-3 is deleting by Nightly"), "{answer}");
    s.remove("block-build-core");
    s.wait_for_deploy_state("env-1", "succeeded").await;
    assert_eq!(s.count("SELECT count(*) FROM deploys").await, 1);
}

#[tokio::test]
async fn cancelling_kills_the_running_step_and_a_lease_ending_cancels_too() {
    let s = setup().await;
    s.github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);
    s.lock(ALICE, "env-1").await;
    s.touch("block-build-api");
    s.say(ALICE, "deploy env-1 feature/api").await;
    s.wait_for_start("build api").await;

    let answer = s.say(BOB, "deploy cancel env-1").await;
    assert!(answer.contains("Only <@U0ALICE>"), "{answer}");
    let answer = s.say(ALICE, "deploy cancel env-1").await;
    assert!(answer.contains("Cancelling the deploy"), "{answer}");
    let env = s.wait_for_deploy_state("env-1", "cancelled").await;
    assert!(env["deploy"]["finished_at"].is_string());
    s.progress("was cancelled: cancelled by <@U0ALICE>").await;
    // The step was killed: it never logged its end, and nothing after it started.
    assert!(
        !s.calls()
            .iter()
            .any(|c| !c.start && c.step == "build" && c.resource == "api")
    );
    assert_eq!(s.started(), ["build core", "build api"]);
    assert!(
        exists(s.dir.path(), "block-build-api"),
        "the step stopped while still blocked"
    );
    let pid = s.pid_of("build-api");
    wait_until("the step's process to be killed", || !alive(pid)).await;
    assert_eq!(
        s.count("SELECT count(*) FROM deploy_steps WHERE state = 'cancelled' AND resource = 'api'")
            .await,
        1
    );

    // The holder unlocking while a deploy runs cancels it.
    s.say(ALICE, "deploy env-1 feature/api").await;
    wait_until("the second build of api", || {
        s.started().iter().filter(|x| *x == "build api").count() == 2
    })
    .await;
    s.say(ALICE, "unlock env-1").await;
    let env = s.wait_for_deploy_state("env-1", "cancelled").await;
    assert!(env["deployed"].as_object().unwrap().is_empty());
    s.progress("was cancelled: the lease on env-1 ended").await;
}

#[tokio::test]
async fn a_failing_step_ends_the_deploy_with_its_log_in_the_thread() {
    let s = setup().await;
    let head = s.github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);
    s.lock(ALICE, "env-1").await;
    s.touch("fail-deploy-web");
    s.say(ALICE, "deploy env-1 feature/api").await;
    let env = s.wait_for_deploy_state("env-1", "failed").await;

    // api was deployed before web failed: `deployed` says exactly that.
    let deployed = env["deployed"].as_object().unwrap();
    assert_eq!(deployed.keys().collect::<Vec<_>>(), ["api"]);
    assert_eq!(deployed["api"]["sha"], head.as_str());
    assert!(
        !s.started().contains(&"test -".to_string()),
        "no test after a failed deploy"
    );

    let progress = s.progress("failed: deploy web exit status 3").await;
    assert!(
        progress.block_text().contains(":x: deploy `web`"),
        "{}",
        progress.block_text()
    );
    let thread = s.app.slack.wait_for_post("C0DEV", "boom in deploy-web").await;
    assert_eq!(
        thread.thread_ts.as_deref(),
        Some(progress.ts.as_str()),
        "the log tail is in the thread"
    );
    assert!(thread.block_text().contains("exit status 3"), "{}", thread.block_text());
}

#[tokio::test]
async fn a_deploy_interrupted_by_kill_9_is_resumed_at_restart() {
    let s = setup().await;
    s.github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);
    s.lock(ALICE, "env-1").await;
    s.touch("block-build-api");
    s.say(ALICE, "deploy env-1 feature/api").await;
    s.wait_for_start("build api").await;

    let pid = s.pid_of("build-api");
    let Setup { app, github, dir, main } = s;
    let down = app.down(Stop::Kill9).await;
    // As after a real `kill -9`: the shell Bobby started died with it, what it ran lives on.
    assert!(alive(pid), "the step's script outlived the killed Bobby");
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM deploys WHERE state = 'running'")
        .fetch_one(&down.pool)
        .await
        .unwrap();
    assert_eq!(running, 1, "a killed Bobby leaves its deploy running");
    let s = Setup {
        app: down.up().await,
        github,
        dir,
        main,
    };
    // SPEC §8: once the dead runner's lease has expired, the restarted Bobby takes the deploy
    // over: the leftover step is killed and the interrupted step runs again from its start.
    wait_until("the leftover step to be killed at restart", || !alive(pid)).await;
    wait_until("build api to run again", || {
        s.started().iter().filter(|x| *x == "build api").count() == 2
    })
    .await;
    assert_eq!(s.environment("env-1").await["deploy"]["state"], "running");
    s.remove("block-build-api");
    let env = s.wait_for_deploy_state("env-1", "succeeded").await;
    assert!(env["deployed"].as_object().unwrap().contains_key("api"), "{env}");
    assert_eq!(
        s.count("SELECT count(*) FROM deploy_steps WHERE state = 'interrupted'")
            .await,
        1,
        "the killed attempt is on record"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM deploy_steps WHERE state = 'running'")
            .await,
        0
    );
}

#[tokio::test]
async fn nightly_forgets_what_was_deployed() {
    let s = setup().await;
    s.github.push(REPO, "feature/api", "main", &[("api/x.rs", Some("x"))]);
    s.lock(ALICE, "env-1").await;
    s.say(ALICE, "deploy env-1 feature/api").await;
    let env = s.wait_for_deploy_state("env-1", "succeeded").await;
    assert!(!env["deployed"].as_object().unwrap().is_empty());
    // Nightly's claim of the environment (the same statement its delete phase runs).
    sqlx::query("UPDATE environments SET state = 'deleting' WHERE name = 'env-1'")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let env = s.environment("env-1").await;
    assert!(env["deployed"].as_object().unwrap().is_empty(), "{env:#}");
    assert_eq!(env["deploy"]["state"], "succeeded", "the last deploy is still shown");
}
