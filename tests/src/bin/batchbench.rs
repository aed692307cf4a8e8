//! Batches measured on the real queue (SPEC §5.6, the throughput row of §9): a day of a merge queue
//! simulated with the real Gandalf, a throwaway Postgres and the fake GitHub on real git — the
//! harness of the end-to-end tests, on the wall clock.
//!
//! For every red rate `r` and every `batch_size` (1, 4, 8, 16 and `"auto"`) one fresh Gandalf gets
//! `--prs` PRs queued while paused (a full queue, closed: no arrivals during the run), then resumed.
//! `r·M` of the M PRs are red, at positions drawn up front by a seeded shuffle ([`red_set`]): the
//! same red set for every batch size at one `r`. The pipeline's `build` and `deploy` are `true`; its
//! `test` sleeps `--test-ms` (the verification time `T`, scaled down) and fails when any PR in
//! `GANDALF_PRS` is red, logging each run (members, outcome) — so a verification is one `test` run.
//!
//! Reported per run, side by side: verifications, PRs landed per verification (over the full-queue
//! part of the run — verifications that started while at least `max_batch_size` PRs were still
//! unresolved — and over the whole run, drain included), the model of `gandalf::batch`, the
//! information limit `(1 − r) / H(r)`, merges per hour at a stated real verification time, time in
//! queue p50/p95, and whether exactly the innocent PRs landed and exactly the red ones were rejected
//! (and `main`'s tree holds exactly the innocent PRs' files). Optionally writes an SVG plot.
//!
//!   cargo run -p bg-tests --bin batchbench -- --svg docs/batches.svg

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bg_tests::{RESOURCE_MAP, Stop, spawn_gandalf_with};
use clap::Parser;
use gandalf::batch;

#[derive(Parser)]
#[command(about = "Measures PRs landed per verification with batches on the real queue")]
struct Cli {
    /// Pull requests queued for each run.
    #[arg(long, default_value_t = 100)]
    prs: u64,
    /// The scaled-down verification time: how long the `test` step sleeps, in milliseconds.
    #[arg(long, default_value_t = 100)]
    test_ms: u64,
    /// The real verification time the merges-per-hour and time-in-queue columns are stated at.
    #[arg(long, default_value_t = 45)]
    real_minutes: u64,
    /// Red rates, in percent.
    #[arg(long, value_delimiter = ',', default_value = "0,2,5,10,20")]
    rates: Vec<f64>,
    /// Batch sizes: numbers, or `auto`.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16,auto")]
    sizes: Vec<String>,
    /// Seed of the red draws.
    #[arg(long, default_value_t = 20261206)]
    seed: u64,
    /// Writes a plot of merges per hour against r for each batch size here (SVG).
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

/// `max_batch_size` (the default): the full-queue window ends when fewer PRs than this are left.
const MAX_BATCH: usize = batch::DEFAULT_MAX_BATCH;

/// The `test` step: sleeps T, then is red when any member is red; one log line per run.
const TEST_SH: &str = r#"D="@DIR@"
s=$(date +%s%N)
sleep @SECS@
res=green
for p in $GANDALF_PRS; do if [ -e "$D/red/$p" ]; then res=red; fi; done
echo "$s|$(date +%s%N)|$res|$GANDALF_PRS" >> "$D/runs.log"
[ "$res" = green ]
"#;

/// A seeded xorshift generator: the red draws must not depend on a crate's version.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The red PRs among `1..=m` at rate `r`: `round(r·m)` of them, at positions drawn uniformly by a
/// seeded shuffle (from `seed` and `r` only). That is independent draws with probability `r`
/// conditioned on their count being `r·m`: with a day of only about a hundred PRs, unconditioned
/// draws at 2 % give anywhere from none to five red PRs, and the figure would measure the luck of
/// the draw rather than the queue.
fn red_set(m: u64, r: f64, seed: u64) -> BTreeSet<u64> {
    let mut rng = Rng(seed ^ (r * 1e6) as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let mut prs: Vec<u64> = (1..=m).collect();
    // Fisher–Yates.
    for i in (1..prs.len()).rev() {
        let j = (rng.unit() * (i + 1) as f64) as usize;
        prs.swap(i, j.min(i));
    }
    let k = (r * m as f64).round() as usize;
    prs.into_iter().take(k).collect()
}

/// One verification, as the `test` step logged it.
struct Run {
    start_ns: u128,
    green: bool,
    members: Vec<u64>,
}

fn read_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    let mut runs = vec![];
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        anyhow::ensure!(f.len() == 4, "a malformed line in runs.log: {line:?}");
        runs.push(Run {
            start_ns: f[0].parse()?,
            green: f[2] == "green",
            members: f[3].split_whitespace().map(str::parse).collect::<Result<_, _>>()?,
        });
    }
    runs.sort_by_key(|r| r.start_ns);
    Ok(runs)
}

/// What one (batch size, red rate) run measured.
struct Measured {
    size: String,
    r: f64,
    reds: usize,
    verifications: usize,
    landed: usize,
    rejected: usize,
    /// PRs landed per verification while the queue was full, and the verifications counted.
    full_ppv: f64,
    full_runs: usize,
    whole_ppv: f64,
    /// The largest candidate run.
    largest: usize,
    wall: Duration,
    /// Wall time per verification in the scaled run, milliseconds (T plus Gandalf's work).
    per_verification_ms: f64,
    /// Time in queue (resume to the end of the run that resolved it), p50 and p95, in verifications.
    queue_p50: f64,
    queue_p95: f64,
    /// Empty when exactly the innocent PRs landed and exactly the red ones were rejected.
    problems: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run_one(cli: &Cli, size: &str, r: f64, reds: &BTreeSet<u64>) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("red"))?;
    for p in reds {
        std::fs::write(dir.path().join("red").join(p.to_string()), "")?;
    }
    let script = TEST_SH
        .replace("@DIR@", &dir.path().display().to_string())
        .replace("@SECS@", &format!("{:.3}", cli.test_ms as f64 / 1000.0));
    let test = dir.path().join("test.sh");
    std::fs::write(&test, script)?;
    let batch_size = if size == "auto" {
        "\"auto\"".to_string()
    } else {
        size.to_string()
    };
    let config = bg_tests::GANDALF_TOML.replace(
        "[repos.pipeline]\nbuild = \"true\"\ndeploy = \"true\"\ntest = \"true\"\n",
        &format!(
            "batch_size = {batch_size}\nmax_batch_size = {MAX_BATCH}\n\n[repos.pipeline]\nbuild = \"true\"\ndeploy = \"true\"\ntest = \"sh {}\"\n",
            test.display()
        ),
    );
    anyhow::ensure!(config.contains("batch_size"), "the test configuration changed shape");
    let config = format!("state_dir = \"{}\"\n{config}", dir.path().join("state").display());
    let mut g = spawn_gandalf_with(&config, dir.path(), false).await;
    g.github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    g.command("U0ADMIN1", "pause").await;
    for n in 1..=cli.prs {
        g.ready_pull(n, &format!("web/{n}.js"));
        let (reply, refused) = g.command("U0ALICE", &format!("merge #{n}")).await;
        anyhow::ensure!(!refused, "queueing #{n}: {reply}");
    }
    let started = Instant::now();
    g.command("U0ADMIN1", "resume").await;
    // The whole queue resolves; a generous bound, so a stuck queue is reported, not waited on.
    let bound = Duration::from_secs(60) + Duration::from_millis(cli.test_ms * 40) * cli.prs as u32;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_items WHERE state IN ('merged', 'failed', 'dropped', 'cancelled')",
        )
        .fetch_one(&g.pool)
        .await?;
        if done >= cli.prs as i64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < bound,
            "batch_size {size}, r {r}: only {done} of {} PRs resolved after {:?}",
            cli.prs,
            bound
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();

    let items: Vec<(i32, String)> =
        sqlx::query_as("SELECT pr, state::text FROM queue_items WHERE finished_at IS NOT NULL ORDER BY pr")
            .fetch_all(&g.pool)
            .await?;
    let runs = read_runs(dir.path())?;

    let mut problems = vec![];
    let landed: BTreeSet<u64> = items.iter().filter(|i| i.1 == "merged").map(|i| i.0 as u64).collect();
    let rejected: BTreeSet<u64> = items.iter().filter(|i| i.1 == "failed").map(|i| i.0 as u64).collect();
    let innocent: BTreeSet<u64> = (1..=cli.prs).filter(|p| !reds.contains(p)).collect();
    if landed != innocent {
        problems.push(format!(
            "landed {:?} but innocent {:?}",
            landed.difference(&innocent).collect::<Vec<_>>(),
            innocent.difference(&landed).collect::<Vec<_>>()
        ));
    }
    if &rejected != reds {
        problems.push(format!(
            "rejected but innocent {:?}; red but not rejected {:?}",
            rejected.difference(reds).collect::<Vec<_>>(),
            reds.difference(&rejected).collect::<Vec<_>>()
        ));
    }
    for i in items.iter().filter(|i| i.1 != "merged" && i.1 != "failed") {
        problems.push(format!("#{} ended {}", i.0, i.1));
    }
    // Only a solo red run rejects: every rejected PR had a red run of its own.
    for p in &rejected {
        if !runs.iter().any(|run| !run.green && run.members == [*p]) {
            problems.push(format!("#{p} rejected without a solo red run"));
        }
    }
    // main's tree: exactly the innocent PRs' files.
    let tip = g.github.branch("acme/platform", "main").unwrap_or_default();
    let files = g.github.commit_files("acme/platform", &tip);
    let on_main: BTreeSet<u64> = files
        .keys()
        .filter_map(|f| f.strip_prefix("web/")?.strip_suffix(".js")?.parse().ok())
        .collect();
    if on_main != innocent {
        problems.push(format!(
            "main holds {} PRs' files, {} innocent PRs",
            on_main.len(),
            innocent.len()
        ));
    }

    // The full-queue window: verifications that started while at least MAX_BATCH PRs were still
    // unresolved (no batch size up to the maximum is cut short by the end of the queue).
    let (mut resolved, mut full_runs, mut full_landed) = (0usize, 0usize, 0usize);
    for run in &runs {
        if cli.prs as usize - resolved >= MAX_BATCH {
            full_runs += 1;
            if run.green {
                full_landed += run.members.len();
            }
        }
        if run.green {
            resolved += run.members.len();
        } else if run.members.len() == 1 {
            resolved += 1;
        }
    }
    let per_verification = wall.as_secs_f64() / runs.len().max(1) as f64;
    // Time in queue counted in verifications: a PR waits from the resume until the end of the run
    // that resolved it (its green candidate, or its solo red run). Counting runs rather than
    // reading the clock keeps the figure independent of Gandalf's own time per run and of the
    // machine's load (the runs of one rate share the two cores); at a real T it is that many T.
    let mut waits = vec![];
    for (i, run) in runs.iter().enumerate() {
        if run.green {
            waits.extend(run.members.iter().map(|_| (i + 1) as f64));
        } else if run.members.len() == 1 {
            waits.push((i + 1) as f64);
        }
    }
    waits.sort_by(f64::total_cmp);
    g.down(Stop::Graceful).await;
    Ok(Measured {
        size: size.to_string(),
        r,
        reds: reds.len(),
        verifications: runs.len(),
        landed: landed.len(),
        rejected: rejected.len(),
        full_ppv: full_landed as f64 / full_runs.max(1) as f64,
        full_runs,
        whole_ppv: landed.len() as f64 / runs.len().max(1) as f64,
        largest: runs.iter().map(|r| r.members.len()).max().unwrap_or(0),
        wall,
        per_verification_ms: per_verification * 1000.0,
        queue_p50: percentile(&waits, 0.5),
        queue_p95: percentile(&waits, 0.95),
        problems,
    })
}

/// The model's PRs per verification for this size at `r` (`auto`: at the size it would pick
/// knowing `r`).
fn model(size: &str, r: f64) -> f64 {
    let n = size.parse().unwrap_or_else(|_| batch::auto_size(r, MAX_BATCH));
    batch::throughput(n, r)
}

/// SPEC §9's target for this row, and whether the measurement meets it.
fn target(m: &Measured) -> String {
    let limit = batch::information_limit(m.r);
    if m.r == 0.0 {
        match m.size.parse::<f64>() {
            Ok(n) => {
                let met = m.full_ppv >= 0.9 * n;
                format!("≥ {:.1}: {}", 0.9 * n, if met { "met" } else { "**not met**" })
            }
            Err(_) => "— (no target)".into(),
        }
    } else if m.size == "auto" {
        let met = m.full_ppv >= 0.7 * limit;
        format!("≥ {:.2}: {}", 0.7 * limit, if met { "met" } else { "**not met**" })
    } else {
        "—".into()
    }
}

fn table(cli: &Cli, results: &[Measured]) -> String {
    let mut out = String::new();
    let per_hour = 60.0 / cli.real_minutes as f64;
    let _ = writeln!(
        out,
        "| r | batch_size | red PRs | verifications | PRs/verification, full queue (runs counted) | whole run, drain included | model | limit (1−r)/H(r) | % of limit | merges/hour at T = {} min | time in queue p50 / p95 (h at T = {} min) | largest candidate | wall per verification (ms, scaled) | exact (innocent landed, red rejected) | SPEC §9 target |",
        cli.real_minutes, cli.real_minutes
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in results {
        let limit = batch::information_limit(m.r);
        let (limit_s, pct) = if limit.is_finite() {
            (format!("{limit:.2}"), format!("{:.0} %", 100.0 * m.full_ppv / limit))
        } else {
            ("∞".into(), "—".into())
        };
        let hours = cli.real_minutes as f64 / 60.0;
        let _ = writeln!(
            out,
            "| {:.0} % | {} | {} | {} | **{:.2}** ({}) | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} / {:.1} | {} | {:.0} | {} | {} |",
            m.r * 100.0,
            m.size,
            m.reds,
            m.verifications,
            m.full_ppv,
            m.full_runs,
            m.whole_ppv,
            model(&m.size, m.r),
            limit_s,
            pct,
            m.full_ppv * per_hour,
            m.queue_p50 * hours,
            m.queue_p95 * hours,
            m.largest,
            m.per_verification_ms,
            if m.problems.is_empty() {
                format!("yes ({} landed, {} rejected)", m.landed, m.rejected)
            } else {
                format!("**NO**: {}", m.problems.join("; "))
            },
            target(m),
        );
    }
    out
}

/// A hand-written SVG: merges per hour at the stated T against r, one line per batch size, and
/// the information limit dashed.
fn svg(cli: &Cli, results: &[Measured]) -> String {
    let per_hour = 60.0 / cli.real_minutes as f64;
    let (w, h, left, right, top, bottom) = (860.0, 520.0, 70.0, 170.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let rmax = cli.rates.iter().cloned().fold(0.0f64, f64::max).max(1.0) / 100.0;
    let ymax_data = results.iter().map(|m| m.full_ppv * per_hour).fold(0.0f64, f64::max);
    let ymax = ((ymax_data * 1.1) / 2.0).ceil() * 2.0;
    let x = |r: f64| left + pw * r / rmax;
    let y = |v: f64| top + ph * (1.0 - v.min(ymax) / ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Merges per hour at T = {} min against the red rate r ({} PRs queued, measured on the real queue)</text>"#,
        left + pw / 2.0,
        cli.real_minutes,
        cli.prs
    );
    // Axes and grid.
    let step = if ymax > 16.0 { 4.0 } else { 2.0 };
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v}</text>"##,
            left + pw,
            left - 8.0,
            y(v) + 4.0,
            yy = y(v)
        );
        v += step;
    }
    for r in &cli.rates {
        let xx = x(r / 100.0);
        let _ = writeln!(
            s,
            r##"<line x1="{xx}" x2="{xx}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xx}" y="{}" text-anchor="middle">{r} %</text>"##,
            top + ph,
            top + ph + 20.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">red rate r (r·M of the M queued PRs red, at random positions)</text>"#,
        left + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">merges per hour (PRs per verification × 60 / {})</text>"#,
        top + ph / 2.0,
        cli.real_minutes
    );
    // The information limit, from r = 1 % (it is infinite at 0).
    let mut path = String::new();
    let mut r = 0.01;
    while r <= rmax + 1e-9 {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if path.is_empty() { "M" } else { "L" },
            x(r),
            y(batch::information_limit(r) * per_hour)
        );
        r += 0.0025;
    }
    let _ = writeln!(
        s,
        r##"<path d="{path}" fill="none" stroke="#888" stroke-width="2" stroke-dasharray="6 4"/>"##
    );
    let colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
    let mut legend_y = top + 10.0;
    for (i, size) in cli.sizes.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let points: Vec<(f64, f64)> = results
            .iter()
            .filter(|m| &m.size == size)
            .map(|m| (x(m.r), y(m.full_ppv * per_hour)))
            .collect();
        let d: String = points
            .iter()
            .enumerate()
            .map(|(j, (px, py))| format!("{}{px:.1},{py:.1} ", if j == 0 { "M" } else { "L" }))
            .collect();
        // `auto` often coincides with a fixed size: drawn dotted with hollow markers, so the line
        // under it still shows.
        let (width, dash, fill) = if size == "auto" {
            (3.5, "2 4", "white")
        } else {
            (2.0, "none", colour)
        };
        let _ = writeln!(
            s,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#
        );
        for (px, py) in &points {
            let _ = writeln!(
                s,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2"/>"#
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}"/><text x="{}" y="{}">batch_size = {size}</text>"#,
            left + pw + 12.0,
            left + pw + 40.0,
            left + pw + 46.0,
            legend_y + 4.0
        );
        legend_y += 22.0;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="#888" stroke-width="2" stroke-dasharray="6 4"/><text x="{}" y="{}">limit (1−r)/H(r)</text>"##,
        left + pw + 12.0,
        left + pw + 40.0,
        left + pw + 46.0,
        legend_y + 4.0
    );
    s.push_str("</svg>\n");
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    for size in &cli.sizes {
        anyhow::ensure!(
            size == "auto" || size.parse::<usize>().is_ok_and(|n| (1..=100).contains(&n)),
            "--sizes: {size:?} is neither a number of PRs (1 to 100) nor auto"
        );
    }
    let started = Instant::now();
    let mut results = vec![];
    for rate in &cli.rates {
        let r = rate / 100.0;
        anyhow::ensure!((0.0..1.0).contains(&r), "--rates: {rate} % is not a rate below 100 %");
        let reds = red_set(cli.prs, r, cli.seed);
        // The batch sizes of one rate run at once, each with its own Gandalf, database and
        // GitHub: the counts measured do not depend on the machine's load, only the wall times do.
        let runs = futures::future::join_all(cli.sizes.iter().map(|size| run_one(&cli, size, r, &reds))).await;
        for m in runs {
            let m = m?;
            eprintln!(
                "r = {rate} %, batch_size = {}: {} verifications, {:.2} PRs/verification (full queue), {} landed, {} rejected, {:.1} s{}",
                m.size,
                m.verifications,
                m.full_ppv,
                m.landed,
                m.rejected,
                m.wall.as_secs_f64(),
                if m.problems.is_empty() {
                    String::new()
                } else {
                    format!(", PROBLEMS: {:?}", m.problems)
                }
            );
            results.push(m);
        }
    }
    println!(
        "{} PRs queued at once per run (closed: no arrivals during the run), test step T = {} ms, seed {}; \
         merges per hour and time in queue stated at a real T = {} min; whole benchmark {:.0} s\n",
        cli.prs,
        cli.test_ms,
        cli.seed,
        cli.real_minutes,
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&cli, &results));
    if let Some(path) = &cli.svg {
        std::fs::write(path, svg(&cli, &results))?;
        println!("\nplot written to {}", path.display());
    }
    let broken: Vec<String> = results
        .iter()
        .filter(|m| !m.problems.is_empty())
        .map(|m| format!("batch_size {} at r {}: {}", m.size, m.r, m.problems.join("; ")))
        .collect();
    anyhow::ensure!(broken.is_empty(), "the invariant failed: {broken:?}");
    Ok(())
}
