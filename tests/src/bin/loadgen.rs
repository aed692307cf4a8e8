//! The load generator: signs and sends Slack slash commands to a running Bobby and reports latency
//! percentiles, throughput and errors. Bounded in time and requests; talks only to the URL given
//! (loopback in every documented use).
//!
//!   loadgen config --envs 200 > load.toml             a Bobby config with load-1 … load-200
//!   loadgen lock-unlock --url http://127.0.0.1:8091 --clients 200 --duration 20s
//!   loadgen stampede --url http://127.0.0.1:8091 --clients 1000 --env load-1
//!
//! Both bots at once (`tests/bench/mixed.sh` runs all of it):
//!
//!   loadgen fakes --github 127.0.0.1:8094 --slack 127.0.0.1:8095 --prs 50   fake GitHub and Slack
//!   loadgen gandalf-config --listen 127.0.0.1:8092 > gandalf.toml
//!   loadgen mixed --bobby http://127.0.0.1:8091 --gandalf http://127.0.0.1:8092 --steps 10,50,200 \
//!       --bobby-pid 123 --gandalf-pid 456
//!
//! The signing secret comes from SLACK_SIGNING_SECRET, as for Bobby (the benchmark gives both bots
//! the same one); the webhook secret from GITHUB_WEBHOOK_SECRET, as for Gandalf.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Load generator for Bobby's Slack endpoints")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Print a Bobby config with `--envs` environments named load-1 … load-N.
    Config {
        #[arg(long, default_value_t = 200)]
        envs: usize,
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: String,
    },
    /// Each client locks and unlocks its own environment (load-<client>) in a loop.
    LockUnlock {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// How long to run, like `20s`.
        #[arg(long, default_value = "20s")]
        duration: String,
        /// Leave the first seconds out of the statistics (connections, caches).
        #[arg(long, default_value = "2s")]
        warmup: String,
        /// Total commands per second across all clients (open loop: each client sends on a
        /// schedule, so latency is not inflated by waiting for its previous answer). 0 sends as
        /// fast as answers come back (closed loop: measures the ceiling).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Runs the fake GitHub (holding `acme/platform` with `--prs` approved pull requests) and the
    /// fake Slack on the given loopback addresses until killed.
    Fakes {
        #[arg(long)]
        github: SocketAddr,
        #[arg(long)]
        slack: SocketAddr,
        #[arg(long, default_value_t = 50)]
        prs: u64,
    },
    /// Print a Gandalf config for the fakes: `acme/platform`, instant steps, verifying on verify-1.
    GandalfConfig {
        #[arg(long, default_value = "127.0.0.1:8092")]
        listen: String,
    },
    /// Drives both bots at once, one concurrency step after the other: Bobby slash commands (lock,
    /// status, unlock, list), signed GitHub deliveries to Gandalf (issue comments, reviews, pull
    /// request events) and `/gandalf` commands (queue, status). Reports latency percentiles,
    /// throughput and errors per endpoint and step, and the bots' resident memory.
    Mixed {
        #[arg(long)]
        bobby: String,
        #[arg(long)]
        gandalf: String,
        /// Concurrent clients of each step, comma-separated. Client i is a Bobby user when
        /// i % 4 is 0 or 1, a GitHub webhook sender when it is 2, a `/gandalf` user when it is 3.
        #[arg(long, default_value = "10,50,200")]
        steps: String,
        /// Measured time of each step, like `15s`.
        #[arg(long, default_value = "15s")]
        duration: String,
        /// Unmeasured time at the start of each step.
        #[arg(long, default_value = "2s")]
        warmup: String,
        /// Upper bound on the requests of one step, whatever the time.
        #[arg(long, default_value_t = 300_000)]
        max_requests: usize,
        /// Pull requests the fake GitHub holds (`loadgen fakes --prs`).
        #[arg(long, default_value_t = 50)]
        prs: u64,
        /// The fake Slack's base URL, for `response_url`s (answers Gandalf sends late).
        #[arg(long, default_value = "http://127.0.0.1:9")]
        slack: String,
        /// Bobby's process id, to sample its resident memory (VmRSS).
        #[arg(long)]
        bobby_pid: Option<u32>,
        #[arg(long)]
        gandalf_pid: Option<u32>,
    },
    /// `clients` people lock the same environment at once: exactly one must win.
    Stampede {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value = "load-1")]
        env: String,
    },
}

fn span(s: &str) -> Duration {
    shared::duration::Span::parse_config(s)
        .map(|s| s.std())
        .unwrap_or_else(|e| {
            eprintln!("loadgen: {e}");
            std::process::exit(2)
        })
}

struct Signer {
    secret: String,
    url: String,
    http: reqwest::Client,
}

impl Signer {
    async fn command(&self, user: &str, text: &str) -> Result<Value, String> {
        self.command_with(user, text, "http://127.0.0.1:9/unused").await
    }

    async fn command_with(&self, user: &str, text: &str, response_url: &str) -> Result<Value, String> {
        let body = bg_tests::command_form(user, text, response_url);
        let ts = chrono::Utc::now().timestamp();
        let sig = shared::slack::signature::sign(&self.secret, ts, body.as_bytes());
        let r = self
            .http
            .post(format!("{}/slack/commands", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        r.json().await.map_err(|e| e.to_string())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let secret = std::env::var("SLACK_SIGNING_SECRET").unwrap_or_default();
    match cli.mode {
        Mode::Config { envs, listen } => {
            println!("listen = \"{listen}\"\ntimezone = \"UTC\"\nadmins = [\"U0ADMIN1\"]\ndefault_lease = \"8h\"\n");
            for i in 1..=envs {
                println!("[[environments]]\nname = \"load-{i}\"\n");
            }
        }
        Mode::LockUnlock {
            url,
            clients,
            duration,
            warmup,
            rate,
        } => {
            let signer = Arc::new(Signer {
                secret,
                url,
                http: client(clients),
            });
            let (duration, warmup) = (span(&duration), span(&warmup));
            let start = Instant::now();
            let measure_from = start + warmup;
            let deadline = measure_from + duration;
            // Open loop: client i sends every `clients / rate` seconds, offset so the clients
            // spread evenly over the interval.
            let interval = (rate > 0).then(|| Duration::from_secs_f64(clients as f64 / rate as f64));
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let signer = signer.clone();
                    tokio::spawn(async move {
                        let mut ticker = interval.map(|every| {
                            let offset = every.mul_f64(i as f64 / clients as f64);
                            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
                            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            t
                        });
                        let (user, env) = (format!("U0LOAD{i}"), format!("load-{}", i + 1));
                        let mut lock_lat = Vec::new();
                        let mut all_lat = Vec::new();
                        let mut errors = 0usize;
                        let mut commands = 0usize;
                        while Instant::now() < deadline {
                            for (text, is_lock) in [
                                (format!("lock {env} for 1h load"), true),
                                (format!("unlock {env}"), false),
                            ] {
                                if let Some(t) = ticker.as_mut() {
                                    t.tick().await;
                                }
                                let t0 = Instant::now();
                                let ok = match signer.command(&user, &text).await {
                                    Ok(v) => v["response_type"] == "in_channel",
                                    Err(_) => false,
                                };
                                let took = t0.elapsed();
                                if t0 >= measure_from && t0 < deadline {
                                    commands += 1;
                                    all_lat.push(took);
                                    if is_lock {
                                        lock_lat.push(took);
                                    }
                                    if !ok {
                                        errors += 1;
                                    }
                                }
                            }
                        }
                        (lock_lat, all_lat, commands, errors)
                    })
                })
                .collect();
            let mut lock_lat = Vec::new();
            let mut all_lat = Vec::new();
            let (mut commands, mut errors) = (0, 0);
            for t in tasks {
                let (l, a, c, e) = t.await.expect("client task");
                lock_lat.extend(l);
                all_lat.extend(a);
                commands += c;
                errors += e;
            }
            lock_lat.sort();
            all_lat.sort();
            let secs = duration.as_secs_f64();
            println!(
                "clients {clients}, measured {secs:.0} s after {:.0} s warm-up",
                warmup.as_secs_f64()
            );
            println!(
                "lock round trip: p50 {} p99 {} p999 {} max {}",
                ms(percentile(&lock_lat, 0.5)),
                ms(percentile(&lock_lat, 0.99)),
                ms(percentile(&lock_lat, 0.999)),
                ms(percentile(&lock_lat, 1.0))
            );
            println!(
                "all commands:    p50 {} p99 {} p999 {}",
                ms(percentile(&all_lat, 0.5)),
                ms(percentile(&all_lat, 0.99)),
                ms(percentile(&all_lat, 0.999))
            );
            println!(
                "throughput: {:.0} commands/s ({:.0} lock+unlock pairs/s), errors {errors} of {commands}",
                commands as f64 / secs,
                commands as f64 / secs / 2.0
            );
            println!(
                "RESULT commands_per_sec={:.0} lock_p99_ms={:.2} errors={errors}",
                commands as f64 / secs,
                percentile(&lock_lat, 0.99).as_secs_f64() * 1000.0
            );
        }
        Mode::Fakes { github, slack, prs } => fakes(github, slack, prs).await,
        Mode::GandalfConfig { listen } => print!("{}", gandalf_config(&listen)),
        Mode::Mixed {
            bobby,
            gandalf,
            steps,
            duration,
            warmup,
            max_requests,
            prs,
            slack,
            bobby_pid,
            gandalf_pid,
        } => {
            let steps: Vec<usize> = steps
                .split(',')
                .map(|s| s.trim().parse().expect("--steps: numbers separated by commas"))
                .collect();
            let max_clients = steps.iter().copied().max().unwrap_or(1);
            let run = Arc::new(MixedRun {
                bobby: Signer {
                    secret: secret.clone(),
                    url: bobby,
                    http: client(max_clients),
                },
                gandalf: Signer {
                    secret,
                    url: gandalf,
                    http: client(max_clients),
                },
                webhook_secret: std::env::var("GITHUB_WEBHOOK_SECRET").unwrap_or_default(),
                prs,
                slack,
            });
            mixed(
                run,
                &steps,
                span(&duration),
                span(&warmup),
                max_requests,
                [("bobby", bobby_pid), ("gandalf", gandalf_pid)],
            )
            .await;
        }
        Mode::Stampede { url, clients, env } => {
            let signer = Arc::new(Signer {
                secret,
                url,
                http: client(clients),
            });
            let barrier = Arc::new(tokio::sync::Barrier::new(clients));
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let (signer, barrier, env) = (signer.clone(), barrier.clone(), env.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        signer
                            .command(&format!("U0RUSH{i}"), &format!("lock {env} for 1h"))
                            .await
                    })
                })
                .collect();
            let (mut winners, mut refusals, mut errors) = (0, 0, 0);
            for t in tasks {
                match t.await.expect("client task") {
                    Ok(v) if v["response_type"] == "in_channel" => winners += 1,
                    Ok(v) if v.to_string().contains("is locked by") => refusals += 1,
                    _ => errors += 1,
                }
            }
            println!(
                "{clients} concurrent locks of {env}: {winners} winner(s), {refusals} clear refusals, {errors} other"
            );
            if winners != 1 || refusals != clients - 1 {
                std::process::exit(1);
            }
        }
    }
}

fn client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

// --- both bots at once ------------------------------------------------------------------------

const REPO: &str = "acme/platform";

/// The fakes of `loadgen fakes`: Gandalf's GitHub and both bots' Slack, in a process of their own
/// so that the bots' resident memory is theirs alone.
async fn fakes(github_addr: SocketAddr, slack_addr: SocketAddr, prs: u64) {
    let github = bg_tests::fake_github::FakeGithub::start_on(github_addr).await;
    let slack = bg_tests::fake_slack::FakeSlack::start_on(slack_addr).await;
    github.create_repo(REPO, "main", &[("README.md", "hello\n")]);
    github.set_permission(REPO, "alice", "write");
    for n in 1..=prs {
        let branch = format!("pr-{n}");
        github.push(
            REPO,
            &branch,
            "main",
            &[(&format!("src/{n}.rs"), Some(&format!("change {n}\n")))],
        );
        github.open_pull(REPO, n, &format!("Change {n}"), "alice", &branch, "main");
        github.approve(REPO, n, "bob");
    }
    println!(
        "fake GitHub on {} (token {}), fake Slack on {} (token {}), {prs} pull requests",
        github.api_url(),
        bg_tests::fake_github::TOKEN,
        slack.api_url(),
        bg_tests::fake_slack::BOT_TOKEN
    );
    // Until the benchmark script kills this process.
    std::future::pending::<()>().await;
}

fn gandalf_config(listen: &str) -> String {
    format!(
        r#"listen = "{listen}"
bot_login = "gandalf"
merges_channel = "C0MERGES"
admins = ["U0ADMIN1"]

[[people]]
slack = "U0ALICE"
github = "alice"

[[repos]]
name = "{REPO}"
base = "main"
environment = "verify-1"
required_approvals = 1

[repos.pipeline]
build = "true"
deploy = "true"
test = "true"
"#
    )
}

struct MixedRun {
    bobby: Signer,
    gandalf: Signer,
    webhook_secret: String,
    prs: u64,
    slack: String,
}

/// One answered (or failed) request: which endpoint, when it was sent, how long it took, whether
/// the answer was the expected one.
struct Sample {
    endpoint: &'static str,
    sent: Instant,
    took: Duration,
    ok: bool,
}

impl MixedRun {
    async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> bool {
        let body = payload.to_string();
        let sent = self
            .gandalf
            .http
            .post(format!("{}/github/webhook", self.gandalf.url))
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                gandalf::webhook::sign(&self.webhook_secret, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        matches!(sent, Ok(r) if r.status() == 202)
    }

    /// One client's round of requests; `first` is its first round in the step.
    async fn round(&self, step: usize, i: usize, seq: usize, first: bool) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut timed = |endpoint: &'static str, sent: Instant, ok: bool| {
            out.push(Sample {
                endpoint,
                sent,
                took: sent.elapsed(),
                ok,
            })
        };
        match i % 4 {
            0 | 1 => {
                // A Bobby user: lock their own environment, look at it, let it go, list them all.
                // The round always completes, so no environment stays locked into the next step.
                let (user, env) = (format!("U0LOAD{i}"), format!("load-{}", i + 1));
                for (endpoint, text) in [
                    ("bobby lock", format!("lock {env} for 1h load")),
                    ("bobby status", format!("status {env}")),
                    ("bobby unlock", format!("unlock {env}")),
                    ("bobby list", "list".to_string()),
                ] {
                    let t0 = Instant::now();
                    let answer = self.bobby.command(&user, &text).await;
                    let ok = match (&answer, endpoint) {
                        (Ok(v), "bobby lock" | "bobby unlock") => v["response_type"] == "in_channel",
                        (Ok(_), _) => true,
                        (Err(_), _) => false,
                    };
                    timed(endpoint, t0, ok);
                }
            }
            2 => {
                // GitHub: comments with commands (a merge once per step, then status), a review,
                // and a pull request event Gandalf acknowledges and ignores.
                let pr = (i / 4) as u64 % self.prs.max(1) + 1;
                let comment = if first { "@gandalf merge" } else { "@gandalf status" };
                let repository = serde_json::json!({ "full_name": REPO });
                let events = [
                    (
                        "gandalf webhook issue_comment",
                        "issue_comment",
                        serde_json::json!({
                            "action": "created",
                            "issue": { "number": pr, "pull_request": { "url": "x" } },
                            "comment": { "body": comment, "user": { "login": "alice", "type": "User" } },
                            "repository": repository,
                        }),
                    ),
                    (
                        "gandalf webhook pull_request_review",
                        "pull_request_review",
                        serde_json::json!({
                            "action": "submitted",
                            "review": { "state": "approved", "user": { "login": "bob" } },
                            "pull_request": { "number": pr },
                            "repository": repository,
                        }),
                    ),
                    (
                        "gandalf webhook pull_request",
                        "pull_request",
                        serde_json::json!({
                            "action": "labeled",
                            "pull_request": { "number": pr, "head": { "sha": "0" }, "merged": false },
                            "repository": repository,
                        }),
                    ),
                ];
                for (k, (endpoint, event, payload)) in events.iter().enumerate() {
                    let t0 = Instant::now();
                    let ok = self
                        .deliver(event, &format!("mixed-{step}-{i}-{seq}-{k}"), payload)
                        .await;
                    timed(endpoint, t0, ok);
                }
            }
            _ => {
                let pr = (i / 4) as u64 % self.prs.max(1) + 1;
                let response_url = format!("{}/response/mixed-{i}-{seq}", self.slack);
                for (endpoint, text) in [
                    ("/gandalf queue", "queue".to_string()),
                    ("/gandalf status", format!("status #{pr}")),
                ] {
                    let t0 = Instant::now();
                    let ok = self.gandalf.command_with("U0ALICE", &text, &response_url).await.is_ok();
                    timed(endpoint, t0, ok);
                }
            }
        }
        out
    }
}

/// Resident memory (VmRSS or VmHWM) of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn mixed(
    run: Arc<MixedRun>,
    steps: &[usize],
    duration: Duration,
    warmup: Duration,
    max_requests: usize,
    pids: [(&'static str, Option<u32>); 2],
) {
    println!(
        "mixed load: steps {steps:?} clients, {:.0} s measured after {:.0} s warm-up each",
        duration.as_secs_f64(),
        warmup.as_secs_f64()
    );
    let mut summary = Vec::new();
    let mut run_peak = [0u64; 2];
    for (step, &clients) in steps.iter().enumerate() {
        let start = Instant::now();
        let measure_from = start + warmup;
        let deadline = measure_from + duration;
        let sent = Arc::new(AtomicUsize::new(0));
        // The memory sampler: every 100 ms, the resident set of each bot; the peak of the step.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sampler = tokio::spawn(async move {
            let mut peak = [0u64; 2];
            let mut stop = stop_rx;
            loop {
                for (k, (_, pid)) in pids.iter().enumerate() {
                    if let Some(kib) = pid.and_then(|p| memory_kib(p, "VmRSS:")) {
                        peak[k] = peak[k].max(kib);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => return peak,
                }
            }
        });
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let (run, sent) = (run.clone(), sent.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let mut seq = 0;
                    while Instant::now() < deadline && sent.load(Ordering::Relaxed) < max_requests {
                        let round = run.round(step, i, seq, seq == 0).await;
                        sent.fetch_add(round.len(), Ordering::Relaxed);
                        samples.extend(round);
                        seq += 1;
                    }
                    samples
                })
            })
            .collect();
        let mut by_endpoint: BTreeMap<&'static str, (Vec<Duration>, usize)> = BTreeMap::new();
        for t in tasks {
            for s in t.await.expect("client task") {
                if s.sent >= measure_from && s.sent < deadline {
                    let e = by_endpoint.entry(s.endpoint).or_default();
                    e.0.push(s.took);
                    if !s.ok {
                        e.1 += 1;
                    }
                }
            }
        }
        let measured = (Instant::now().min(deadline) - measure_from).as_secs_f64().max(0.001);
        let _ = stop_tx.send(true);
        let peak = sampler.await.unwrap_or([0, 0]);
        run_peak = [run_peak[0].max(peak[0]), run_peak[1].max(peak[1])];
        let kinds = [0, 1, 2, 3].map(|k| (0..clients).filter(|i| i % 4 == k).count());
        println!();
        println!(
            "== {clients} clients ({} Bobby users, {} webhook senders, {} /gandalf users), {measured:.0} s",
            kinds[0] + kinds[1],
            kinds[2],
            kinds[3]
        );
        println!("| clients | endpoint | requests | per second | p50 | p99 | p99.9 | max | errors |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let (mut total, mut errors) = (0, 0);
        for (endpoint, (mut lat, errs)) in by_endpoint {
            lat.sort();
            total += lat.len();
            errors += errs;
            println!(
                "| {clients} | {endpoint} | {} | {:.0} | {} | {} | {} | {} | {errs} |",
                lat.len(),
                lat.len() as f64 / measured,
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(percentile(&lat, 0.999)),
                ms(percentile(&lat, 1.0)),
            );
        }
        println!(
            "| {clients} | **all** | {total} | {:.0} | | | | | {errors} |",
            total as f64 / measured
        );
        let rss: Vec<String> = pids
            .iter()
            .zip(peak)
            .filter(|((_, pid), _)| pid.is_some())
            .map(|((name, _), kib)| format!("{name} {}", mib(kib)))
            .collect();
        if !rss.is_empty() {
            println!("resident memory (VmRSS), peak during the step: {}", rss.join(", "));
        }
        summary.push(format!(
            "RESULT clients={clients} requests_per_sec={:.0} errors={errors} {}",
            total as f64 / measured,
            pids.iter()
                .zip(peak)
                .filter(|((_, pid), _)| pid.is_some())
                .map(|((name, _), kib)| format!("{name}_rss_mib={:.1}", kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    println!();
    for ((name, pid), sampled) in pids.into_iter().zip(run_peak) {
        // The kernel updates VmHWM lazily (it can trail the last VmRSS sample by a few pages), so
        // the peak is the larger of the two.
        if let Some(hwm) = pid.and_then(|p| memory_kib(p, "VmHWM:")) {
            let peak = hwm.max(sampled);
            println!(
                "{name}: peak resident memory over the whole run {} (VmHWM {}, largest VmRSS sample {})",
                mib(peak),
                mib(hwm),
                mib(sampled)
            );
            summary.push(format!("RESULT {name}_peak_rss_mib={:.1}", peak as f64 / 1024.0));
        }
    }
    for line in summary {
        println!("{line}");
    }
}
