//! The scripted morning of `deploy/dev.sh demo`: an embedded GitHub and a recording Slack for the
//! real bots, and a driver that uses both bots the way a team would, printing what happens.
//!
//!   demo --github-dir .dev/demo/github --slack-log .dev/demo/slack.log \
//!        --environments .dev/demo/environments [--bobby-url …] [--gandalf-url …] [--exit-when-done]
//!
//! It serves the tests' fake GitHub (real git: bare repositories under `--github-dir`, `clone_url`
//! as `file://`) and fake Slack, both on loopback only — this is a development tool, and neither bot
//! ever starts it: `serve` talks to whatever `GITHUB_API_URL` names. It pushes the example monorepo
//! (`deploy/demo/monorepo`) as `acme/platform`, prepares three pull requests and a feature branch,
//! prints `github <url>` and `slack <url>`, and waits for both bots' `/readyz`. Then:
//!
//! 1. three `@gandalf merge` comments, delivered to Gandalf as GitHub would (signed
//!    `issue_comment` webhooks): #1 is green and lands, #2 breaks the package's test and is
//!    rejected with its failing step (and what it deployed is reverted), #3 changes the line #1
//!    changed and is rejected for the conflict once #1 has landed;
//! 2. `/bobby lock env-1` and `/bobby deploy env-1 feature/api-search`, signed as Slack signs them;
//! 3. `/bobby nightly run delete env-3`, then `create env-3`.
//!
//! Everything the bots do shows up as it happens: queue items and their steps (Gandalf's API),
//! environments and deploys (Bobby's API), every Slack message (also appended to `--slack-log`) and
//! every comment on the pull requests. Each step's outcome is checked — the bots' answers and the
//! environment directories the pipeline scripts "deploy" into — and summed up at the end, with the
//! control center's URLs. Then it keeps serving GitHub and Slack (the bots still talk to them) until
//! SIGTERM or Ctrl-C, or exits at once with `--exit-when-done`, non-zero when a check failed: the
//! e2e test `demo::` runs it that way.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bg_tests::fake_github::FakeGithub;
use bg_tests::fake_slack::FakeSlack;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "The demo's embedded GitHub and Slack, and its scripted morning (deploy/dev.sh demo)")]
struct Cli {
    /// The example monorepo pushed as acme/platform's first commit.
    #[arg(long, default_value = "deploy/demo/monorepo")]
    monorepo: PathBuf,
    /// Where the embedded GitHub keeps its bare repositories (must be empty or missing).
    #[arg(long)]
    github_dir: PathBuf,
    /// The embedded GitHub's address (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:8083")]
    github_listen: SocketAddr,
    /// The recording Slack's address (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:8084")]
    slack_listen: SocketAddr,
    /// Every Slack message the bots send is appended here.
    #[arg(long)]
    slack_log: PathBuf,
    /// The directory whose subdirectories stand for the environments (the configs' DEMO_ENVS).
    #[arg(long)]
    environments: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    bobby_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    gandalf_url: String,
    /// How long to wait for the bots to answer /readyz.
    #[arg(long, default_value = "180")]
    wait_for_bots_secs: u64,
    /// Exit when the script is done (status 1 when a check failed) instead of serving on.
    #[arg(long)]
    exit_when_done: bool,
}

const REPO: &str = "acme/platform";
/// A bound on each phase, so that a stuck bot ends the demo with a message instead of hanging.
const PHASE_LIMIT: Duration = Duration::from_secs(240);

const BANNER_1: &str = "Welcome to Acme, where deploys are boring\n";
const BANNER_3: &str = "Happy holidays from Acme\n";
const HOWDY: &str =
    "# The shared package: how every service says hello.\ngreet() {\n  printf 'Howdy, %s!\\n' \"$1\"\n}\n";
const SEARCH: &str = "# The API service: greets its caller, and now searches too.\n. \"$(dirname \"$0\")/greeting.sh\"\ngreet \"${1:-API client}\"\necho \"search: 3 results for 'boring deploys'\"\n";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The demo's secrets: the same environment variables the bots read.
struct Secrets {
    webhook: String,
    signing: String,
}

fn secrets() -> anyhow::Result<Secrets> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{name} is not set: the demo signs what it sends with the bots' own secret"))
    };
    Ok(Secrets {
        webhook: var("GITHUB_WEBHOOK_SECRET")?,
        signing: var("SLACK_SIGNING_SECRET")?,
    })
}

/// Loopback only, and the port free: said plainly rather than as a panic of the fakes' `bind`.
fn check_listen(what: &str, addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("{what} listens on loopback only (it is a development tool), not on {addr}");
    }
    std::net::TcpListener::bind(addr).with_context(|| {
        format!("{what} cannot listen on {addr}: is a previous demo still running? (deploy/dev.sh down)")
    })?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let secrets = secrets()?;
    check_listen("the embedded GitHub", cli.github_listen)?;
    check_listen("the recording Slack", cli.slack_listen)?;
    if std::fs::read_dir(&cli.github_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} holds a previous run's repositories; remove it first (deploy/dev.sh demo does)",
            cli.github_dir.display()
        );
    }
    let files = monorepo_files(&cli.monorepo)?;
    std::fs::create_dir_all(&cli.environments).with_context(|| format!("creating {}", cli.environments.display()))?;

    let github = FakeGithub::start_in(cli.github_listen, &cli.github_dir).await;
    let slack = FakeSlack::start_on(cli.slack_listen).await;
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let root = github.create_repo(REPO, "main", &refs);
    for login in ["alice", "bob"] {
        github.set_permission(REPO, login, "write");
    }
    let pulls = [
        (
            1,
            "Web: a friendlier banner",
            "alice",
            "web-banner",
            "services/web/banner.txt",
            BANNER_1,
            "bob",
        ),
        (
            2,
            "Greeting: say Howdy",
            "bob",
            "howdy",
            "libs/greeting/greeting.sh",
            HOWDY,
            "alice",
        ),
        (
            3,
            "Web: the holiday banner",
            "bob",
            "holiday-banner",
            "services/web/banner.txt",
            BANNER_3,
            "alice",
        ),
    ];
    for (n, title, author, branch, path, content, approver) in pulls {
        github.push(REPO, branch, "main", &[(path, Some(content))]);
        github.open_pull(REPO, n, title, author, branch, "main");
        github.approve(REPO, n, approver);
    }
    let feature = github.push(
        REPO,
        "feature/api-search",
        "main",
        &[("services/api/service.sh", Some(SEARCH))],
    );

    // The test (and anyone curious) reads where the fakes are before the bots start.
    println!("github {}", github.api_url());
    println!("slack {}", slack.api_url());
    println!(
        "== the embedded GitHub has {REPO} ({} files, main at {}), three pull requests and feature/api-search",
        files.len(),
        short(&root)
    );
    std::io::stdout().flush().ok();

    let mut demo = Demo {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        github,
        slack,
        secrets,
        bobby: cli.bobby_url.trim_end_matches('/').to_string(),
        gandalf: cli.gandalf_url.trim_end_matches('/').to_string(),
        envs: cli.environments.clone(),
        slack_log: std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cli.slack_log)
            .with_context(|| format!("opening {}", cli.slack_log.display()))?,
        started: Instant::now(),
        seen: Seen::default(),
        checks: vec![],
        deliveries: 0,
    };
    demo.wait_for_bots(Duration::from_secs(cli.wait_for_bots_secs)).await?;
    demo.say("both bots are ready; the morning begins");

    demo.merge_queue().await?;
    demo.deploy(&feature).await?;
    demo.nightly().await?;
    let ok = demo.summary();

    if cli.exit_when_done {
        return Ok(ok);
    }
    let (_signals, mut stop) = shared::http::shutdown_on_signals();
    let _ = stop.wait_for(|s| *s).await;
    Ok(ok)
}

/// Every file of the monorepo, relative to it, `/`-separated, sorted.
fn monorepo_files(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).expect("below the root");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into())
                    .collect();
                let content = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                out.push((rel.join("/"), content));
            }
        }
        Ok(())
    }
    let mut out = vec![];
    walk(dir, dir, &mut out).with_context(|| format!("the example monorepo {}", dir.display()))?;
    if out.is_empty() {
        bail!("the example monorepo {} is empty", dir.display());
    }
    out.sort();
    Ok(out)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// What the watcher has already printed, so it prints only what changed.
#[derive(Default)]
struct Seen {
    /// Gandalf's item per PR: its state and each step's `name resource` → state.
    items: HashMap<u64, (String, BTreeMap<String, String>)>,
    /// Bobby's environment: its state and its latest deploy's state.
    envs: HashMap<String, (String, String)>,
    /// Slack messages by (channel, ts) → edits seen.
    slack: HashMap<(String, String), usize>,
    /// Comments printed per PR.
    comments: HashMap<u64, usize>,
}

struct Demo {
    http: reqwest::Client,
    github: FakeGithub,
    slack: FakeSlack,
    secrets: Secrets,
    bobby: String,
    gandalf: String,
    envs: PathBuf,
    slack_log: std::fs::File,
    started: Instant,
    seen: Seen,
    /// Each scripted outcome: what was expected, and whether it happened.
    checks: Vec<(String, bool)>,
    deliveries: u64,
}

impl Demo {
    fn say(&self, what: &str) {
        let t = self.started.elapsed().as_secs_f64();
        for (i, line) in what.lines().enumerate() {
            if i == 0 {
                println!("[{t:6.1}s] {line}");
            } else {
                println!("          {line}");
            }
        }
        std::io::stdout().flush().ok();
    }

    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        let mark = if ok { "ok  " } else { "FAIL" };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        self.say(&format!("  {mark} {what}{detail}"));
        self.checks.push((what.to_string(), ok));
    }

    async fn wait_for_bots(&self, limit: Duration) -> anyhow::Result<()> {
        self.say(&format!(
            "waiting for Bobby ({}) and Gandalf ({})…",
            self.bobby, self.gandalf
        ));
        let deadline = Instant::now() + limit;
        for url in [&self.bobby, &self.gandalf] {
            loop {
                let ready = self.http.get(format!("{url}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{url}/readyz did not answer within {limit:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn get(&self, url: String) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    // --- Watching: print what changed since the last look ------------------------------------

    async fn look(&mut self, prs: &[u64], envs: &[&str]) {
        for &n in prs {
            if let Some(item) = self
                .get(format!("{}/api/v1/repos/{REPO}/pulls/{n}", self.gandalf))
                .await
            {
                self.print_item(n, &item);
            }
            let comments = self.github.comments(REPO, n);
            let seen = self.seen.comments.get(&n).copied().unwrap_or(0);
            for c in comments.iter().skip(seen) {
                self.say(&format!("github  #{n} comment: {}", excerpt(c, 4)));
            }
            self.seen.comments.insert(n, comments.len());
        }
        for &env in envs {
            if let Some(e) = self.get(format!("{}/api/v1/environments/{env}", self.bobby)).await {
                self.print_env(env, &e);
            }
        }
        self.print_slack();
    }

    fn print_item(&mut self, n: u64, item: &Value) {
        let state = item["state"].as_str().unwrap_or("?").to_string();
        let mut steps = BTreeMap::new();
        let mut lines = vec![];
        let (old_state, old_steps) = self.seen.items.get(&n).cloned().unwrap_or_default();
        for step in item["steps"].as_array().into_iter().flatten() {
            let key = match step["resource"].as_str() {
                Some(r) => format!("{} {r}", step["name"].as_str().unwrap_or("?")),
                None => step["name"].as_str().unwrap_or("?").to_string(),
            };
            let s = step["state"].as_str().unwrap_or("?").to_string();
            if old_steps.get(&key) != Some(&s) {
                let exit = step["exit_code"]
                    .as_i64()
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default();
                lines.push(format!("gandalf #{n} step {key}: {s}{exit}"));
            }
            steps.insert(key, s);
        }
        if state != old_state {
            let reason = item["outcome_reason"]
                .as_str()
                .map(|r| format!(" — {}", excerpt(r, 2)))
                .unwrap_or_default();
            lines.push(format!(
                "gandalf #{n} {}: {state}{reason}",
                item["title"].as_str().unwrap_or("")
            ));
        }
        for l in lines {
            self.say(&l);
        }
        self.seen.items.insert(n, (state, steps));
    }

    fn print_env(&mut self, env: &str, e: &Value) {
        let state = e["state"].as_str().unwrap_or("?").to_string();
        let deploy = e["deploy"]["state"].as_str().unwrap_or("").to_string();
        let (old_state, old_deploy) = self.seen.envs.get(env).cloned().unwrap_or_default();
        if state != old_state {
            let holder = e["lease"]["holder"]
                .as_str()
                .map(|h| format!(", held by {h}"))
                .unwrap_or_default();
            self.say(&format!("bobby   {env}: {state}{holder}"));
        }
        if deploy != old_deploy && !deploy.is_empty() {
            let d = &e["deploy"];
            self.say(&format!(
                "bobby   {env}: deploy of {} ({}) {deploy}",
                d["ref"].as_str().unwrap_or("?"),
                short(d["sha"].as_str().unwrap_or("?"))
            ));
        }
        self.seen.envs.insert(env.to_string(), (state, deploy));
    }

    fn print_slack(&mut self) {
        for post in self.slack.posts() {
            let key = (post.channel.clone(), post.ts.clone());
            let edits = self.seen.slack.get(&key).copied();
            if edits == Some(post.edits) {
                continue;
            }
            let text = if post.block_text().is_empty() {
                post.text.clone()
            } else {
                post.block_text()
            };
            let what = match (edits, &post.thread_ts) {
                (Some(_), _) => "updated",
                (None, Some(_)) => "thread reply",
                (None, None) => "message",
            };
            let _ = writeln!(
                self.slack_log,
                "--- {} {what} in {} (ts {})\n{text}",
                chrono::Utc::now().format("%H:%M:%S"),
                post.channel,
                post.ts
            );
            self.say(&format!("slack   {what} in {}: {}", post.channel, excerpt(&text, 3)));
            self.seen.slack.insert(key, post.edits);
        }
    }

    /// Looks every 200 ms, printing changes, until `done` holds for what Gandalf and Bobby say.
    async fn watch_until(&mut self, what: &str, prs: &[u64], envs: &[&str], done: impl Fn(&Demo) -> bool) -> bool {
        let deadline = Instant::now() + PHASE_LIMIT;
        loop {
            self.look(prs, envs).await;
            if done(self) {
                // Messages the bots send right after (the merge announcement) are worth a look.
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.look(prs, envs).await;
                return true;
            }
            if Instant::now() > deadline {
                self.say(&format!("gave up waiting for {what} after {PHASE_LIMIT:?}"));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn item_state(&self, n: u64) -> &str {
        self.seen.items.get(&n).map(|(s, _)| s.as_str()).unwrap_or("")
    }

    fn env_state(&self, env: &str) -> (&str, &str) {
        self.seen
            .envs
            .get(env)
            .map(|(s, d)| (s.as_str(), d.as_str()))
            .unwrap_or(("", ""))
    }

    // --- Talking to the bots as GitHub and Slack do ------------------------------------------

    /// `@gandalf merge` commented on PR `n` by `login`: the `issue_comment` delivery GitHub sends.
    async fn comment(&mut self, n: u64, login: &str, body: &str) -> anyhow::Result<()> {
        self.deliveries += 1;
        let delivery = format!("demo-{}-{}", std::process::id(), self.deliveries);
        let payload = json!({
            "action": "created",
            "issue": { "number": n, "pull_request": { "url": format!("{}/repos/{REPO}/pulls/{n}", self.github.api_url()) } },
            "comment": { "body": body, "user": { "login": login, "type": "User" } },
            "repository": { "full_name": REPO },
            "sender": { "login": login, "type": "User" },
        });
        let body_bytes = payload.to_string();
        let r = self
            .http
            .post(format!("{}/github/webhook", self.gandalf))
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", &delivery)
            .header(
                "x-hub-signature-256",
                gandalf::webhook::sign(&self.secrets.webhook, body_bytes.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body_bytes)
            .send()
            .await
            .context("delivering a webhook to Gandalf")?;
        self.say(&format!(
            "github  {login} comments on #{n}: {body:?} → delivery {delivery} answered {}",
            r.status().as_u16()
        ));
        Ok(())
    }

    /// `/bobby <text>` typed by `user` in #dev, signed as Slack signs it; returns Bobby's answer
    /// (the late one through the `response_url` when Bobby acknowledged first).
    async fn bobby(&mut self, user: &str, text: &str) -> anyhow::Result<String> {
        let response_id = format!("demo-{}", self.slack.responses().len() + self.deliveries as usize);
        self.deliveries += 1;
        let form = bg_tests::command_form(user, text, &self.slack.response_url(&response_id));
        let ts = chrono::Utc::now().timestamp();
        let r = self
            .http
            .post(format!("{}/slack/commands", self.bobby))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header(
                "x-slack-signature",
                shared::slack::signature::sign(&self.secrets.signing, ts, form.as_bytes()),
            )
            .body(form)
            .send()
            .await
            .context("sending a slash command to Bobby")?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let mut answer = slack_text(&body);
        if answer.contains("Working on it") {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some((_, b)) = self.slack.responses().into_iter().find(|(id, _)| *id == response_id) {
                    answer = slack_text(&b);
                    break;
                }
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.say(&format!("slack   {user}: /bobby {text}  →  {}", excerpt(&answer, 3)));
        if status != 200 {
            bail!("Bobby answered {status} to /bobby {text}: {body}");
        }
        Ok(answer)
    }

    // --- The script ---------------------------------------------------------------------------

    async fn merge_queue(&mut self) -> anyhow::Result<()> {
        self.say("== 1. three pull requests queued with @gandalf merge");
        self.comment(1, "alice", "Looks good, ship it.\n@gandalf merge").await?;
        self.comment(2, "bob", "@gandalf merge").await?;
        self.comment(3, "bob", "@gandalf merge").await?;
        // Done when all three are, and #1's landing has been announced in the merges channel.
        let finished = |d: &Demo| {
            (1..=3).all(|n| matches!(d.item_state(n), "merged" | "failed" | "cancelled" | "dropped"))
                && (d.item_state(1) != "merged" || !d.slack.posts_to("C0MERGES").is_empty())
        };
        self.watch_until("the three pull requests", &[1, 2, 3], &[], finished)
            .await;

        let main = self.github.branch(REPO, "main").unwrap_or_default();
        let merged = self.github.is_merged(REPO, 1);
        self.check(
            "#1 (green) landed on main",
            self.item_state(1) == "merged" && merged,
            &format!("main is {}", short(&main)),
        );
        let item2 = self
            .get(format!("{}/api/v1/repos/{REPO}/pulls/2", self.gandalf))
            .await
            .unwrap_or_default();
        let failed_step = item2["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["state"] == "failed")
            .and_then(|s| s["name"].as_str())
            .unwrap_or("none")
            .to_string();
        self.check(
            "#2 (its test fails) rejected at its test step",
            self.item_state(2) == "failed" && failed_step == "test" && !self.github.is_merged(REPO, 2),
            &format!("failed step: {failed_step}"),
        );
        let item3 = self
            .get(format!("{}/api/v1/repos/{REPO}/pulls/3", self.gandalf))
            .await
            .unwrap_or_default();
        let reason3 = item3["outcome_reason"].as_str().unwrap_or("").to_string();
        self.check(
            "#3 (conflicts with #1) rejected for the conflict",
            self.item_state(3) == "failed" && reason3.to_lowercase().contains("conflict"),
            &excerpt(&reason3, 1),
        );
        // What the verification environment runs now: #1's banner (#2's deploy was reverted).
        let web = self.run_service("verify-1", "web");
        let api = self.run_service("verify-1", "api");
        self.say(&format!("verify-1 now answers:\n  web: {web}\n  api: {api}"));
        self.check(
            "verify-1 runs #1's banner and was reverted after #2",
            web.contains(BANNER_1.trim()) && !web.contains("Howdy") && !api.contains("Howdy"),
            "",
        );
        Ok(())
    }

    async fn deploy(&mut self, feature: &str) -> anyhow::Result<()> {
        self.say("== 2. alice locks env-1 and deploys her branch to it");
        self.look(&[], &["env-1"]).await;
        self.bobby("U0ALICE", "lock env-1 for 2h trying the search API").await?;
        let env1 = self
            .get(format!("{}/api/v1/environments/env-1", self.bobby))
            .await
            .unwrap_or_default();
        let holder = env1["lease"]["holder"].as_str().unwrap_or("nobody").to_string();
        self.check("alice holds env-1", holder == "U0ALICE", &format!("held by {holder}"));
        self.bobby("U0ALICE", "deploy env-1 feature/api-search").await?;
        let ended = |d: &Demo| {
            matches!(
                d.env_state("env-1").1,
                "succeeded" | "failed" | "cancelled" | "interrupted"
            )
        };
        self.watch_until("the deploy to env-1", &[], &["env-1"], ended).await;
        let version = std::fs::read_to_string(self.envs.join("env-1/api/VERSION")).unwrap_or_default();
        let api = self.run_service("env-1", "api");
        self.say(&format!("env-1 now answers:\n  api: {api}"));
        self.check(
            "feature/api-search deployed to env-1",
            self.env_state("env-1").1 == "succeeded" && version.trim() == feature && api.contains("search:"),
            &format!("env-1/api/VERSION is {}", short(version.trim())),
        );
        Ok(())
    }

    async fn nightly(&mut self) -> anyhow::Result<()> {
        self.say("== 3. Nightly deletes env-3 and creates it again from main");
        self.look(&[], &["env-3"]).await;
        self.bobby("U0ADMIN1", "nightly run delete env-3").await?;
        let deleted = |d: &Demo| matches!(d.env_state("env-3").0, "deleted" | "faulted");
        self.watch_until("env-3's delete", &[], &["env-3"], deleted).await;
        self.check(
            "env-3 deleted",
            self.env_state("env-3").0 == "deleted" && !self.envs.join("env-3").exists(),
            "",
        );
        self.bobby("U0ADMIN1", "nightly run create env-3").await?;
        // Done when env-3 is, and both runs' summaries have reached the announce channel.
        let created =
            |d: &Demo| matches!(d.env_state("env-3").0, "ready" | "faulted") && d.slack.posts_to("C0ENVS").len() >= 2;
        self.watch_until("env-3's create", &[], &["env-3"], created).await;
        let main = self.github.branch(REPO, "main").unwrap_or_default();
        let version = std::fs::read_to_string(self.envs.join("env-3/web/VERSION")).unwrap_or_default();
        let web = self.run_service("env-3", "web");
        self.say(&format!("env-3 now answers:\n  web: {web}"));
        self.check(
            "env-3 created again at main's tip",
            self.env_state("env-3").0 == "ready" && version.trim() == main && web.contains(BANNER_1.trim()),
            &format!("env-3/web/VERSION is {}", short(version.trim())),
        );
        Ok(())
    }

    /// What a "deployed" service answers: its script run from the environment's directory.
    fn run_service(&self, env: &str, service: &str) -> String {
        let script = self.envs.join(env).join(service).join("service.sh");
        if !script.exists() {
            return "(not deployed)".into();
        }
        match std::process::Command::new("sh").arg(&script).arg("demo").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().replace('\n', " / "),
            Err(e) => format!("(could not run {}: {e})", script.display()),
        }
    }

    fn summary(&self) -> bool {
        let passed = self.checks.iter().filter(|(_, ok)| *ok).count();
        let ok = passed == self.checks.len();
        self.say(&format!(
            "== {passed} of {} scripted outcomes as expected{}",
            self.checks.len(),
            if ok { "" } else { " — see FAIL above" }
        ));
        for (what, _) in self.checks.iter().filter(|(_, ok)| !ok) {
            self.say(&format!("  FAIL {what}"));
        }
        println!(
            "
The control center (every run, step and log): {bobby}/  and  {gandalf}/
  Gandalf's queue history:  {gandalf}/api/v1/repos/{REPO}/history
  Environments:             {bobby}/api/v1/environments
  The environments' files:  {envs}
  What Slack would show:    the slack lines above
The demo's GitHub has {REPO} as a real git repository: git clone {clone}
demo finished",
            bobby = self.bobby,
            gandalf = self.gandalf,
            envs = self.envs.display(),
            clone = self.github.clone_url(REPO),
        );
        std::io::stdout().flush().ok();
        ok
    }
}

/// The text of a Slack message body: its section blocks, or its `text`.
fn slack_text(body: &Value) -> String {
    let blocks: Vec<&str> = body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    if blocks.is_empty() {
        body["text"].as_str().unwrap_or_default().to_string()
    } else {
        blocks.join("\n")
    }
}

/// The first `lines` non-empty lines of `text`, with "…" when there is more.
fn excerpt(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut out = all.iter().take(lines).copied().collect::<Vec<_>>().join("\n  ");
    if all.len() > lines {
        out.push_str(" …");
    }
    out
}
