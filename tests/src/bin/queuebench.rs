//! Gandalf's queue benchmark (SPEC §9): N pull requests queued at once, instant steps (`true`), the
//! stateful GitHub fake on loopback, a throwaway Postgres — the same harness as the end-to-end tests,
//! on the wall clock. Reports, from the timestamps Gandalf itself recorded:
//!
//! - Gandalf's own overhead per PR: verification start to merged, minus the time inside the steps;
//!   and how much of it, on average, is the fake GitHub answering (it does real git work on the
//!   same cores; GitHub's own latency is not modelled);
//! - the gap between one PR landing and the next starting verification.
//!
//!   cargo run --release -p bg-tests --bin queuebench -- --prs 100

use std::time::Instant;

use bg_tests::{Pipeline, RESOURCE_MAP, spawn_gandalf_with};
use chrono::{DateTime, Utc};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measures Gandalf's per-PR overhead and the gap between PRs")]
struct Cli {
    /// Pull requests to queue.
    #[arg(long, default_value_t = 100)]
    prs: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{name:<44} n={:<4} mean {mean:>7.1} ms  p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pipeline = Pipeline::new();
    let config = pipeline
        .config("")
        .replace("\"sh step.sh\"", "\"true\"")
        .replace("required_approvals = 1", "required_approvals = 1\nparallelism = 4");
    let g = spawn_gandalf_with(&config, pipeline.dir(), false).await;
    g.github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    g.command("U0ADMIN1", "pause").await;
    for n in 1..=cli.prs {
        // Alternate between a library change (two builds, one deploy) and a service change.
        let path = if n % 2 == 0 {
            format!("lib/{n}.rs")
        } else {
            format!("web/{n}.js")
        };
        g.ready_pull(n, &path);
        let (reply, refused) = g.command("U0ALICE", &format!("merge #{n}")).await;
        anyhow::ensure!(!refused, "queueing #{n}: {reply}");
    }
    let started = Instant::now();
    let busy_before = g.github.busy();
    g.command("U0ADMIN1", "resume").await;
    let want = cli.prs as i64;
    g.wait_for("SELECT count(*) FROM queue_items WHERE state = 'merged'", want)
        .await;
    let wall = started.elapsed();
    let fake_per_pr = (g.github.busy() - busy_before).as_secs_f64() * 1000.0 / cli.prs as f64;

    let items: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT pr, verify_started_at, finished_at FROM queue_items WHERE state = 'merged' ORDER BY finished_at",
    )
    .fetch_all(&g.pool)
    .await?;
    let in_steps: Vec<(i32, f64)> = sqlx::query_as(
        "SELECT i.pr, COALESCE(SUM(EXTRACT(EPOCH FROM s.finished_at - s.started_at) * 1000), 0)::float8 \
         FROM queue_items i LEFT JOIN queue_steps s ON s.item_id = i.id GROUP BY i.pr",
    )
    .fetch_all(&g.pool)
    .await?;
    let steps_of = |pr: i32| {
        in_steps
            .iter()
            .find(|(p, _)| *p == pr)
            .map(|(_, ms)| *ms)
            .unwrap_or(0.0)
    };
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;

    let total: Vec<f64> = items.iter().map(|(_, s, f)| ms(*f - *s)).collect();
    let overhead: Vec<f64> = items.iter().map(|(pr, s, f)| ms(*f - *s) - steps_of(*pr)).collect();
    let gaps: Vec<f64> = items.windows(2).map(|w| ms(w[1].1 - w[0].2)).collect();
    let patch_main = g.github.calls_to("PATCH /repos/acme/platform/git/refs/heads/main");

    println!(
        "{} PRs merged in {:.1} s ({:.1} PRs/s); main moved {patch_main} times",
        items.len(),
        wall.as_secs_f64(),
        items.len() as f64 / wall.as_secs_f64()
    );
    summary("verification, start to merged", total);
    let mean_overhead = overhead.iter().sum::<f64>() / overhead.len().max(1) as f64;
    summary("Gandalf's own overhead (outside the steps)", overhead);
    println!(
        "  of which the fake GitHub answering: {fake_per_pr:.1} ms per PR on average; \
         the rest, mean: {:.1} ms",
        mean_overhead - fake_per_pr
    );
    summary("gap: one PR landed -> next verifying", gaps);
    Ok(())
}
