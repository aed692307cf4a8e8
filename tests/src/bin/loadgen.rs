//! The load generator: signs and sends Slack slash commands to a running Bobby and reports latency
//! percentiles, throughput and errors. Bounded in time and requests; talks only to the URL given
//! (loopback in every documented use).
//!
//!   loadgen config --envs 200 > load.toml             a Bobby config with load-1 … load-200
//!   loadgen lock-unlock --url http://127.0.0.1:8091 --clients 200 --duration 20s
//!   loadgen stampede --url http://127.0.0.1:8091 --clients 1000 --env load-1
//!
//! The signing secret comes from SLACK_SIGNING_SECRET, as for Bobby.

use std::sync::Arc;
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
        let body = bg_tests::command_form(user, text, "http://127.0.0.1:9/unused");
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
