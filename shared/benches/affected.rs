//! The affected-set planner at monorepo scale (SPEC §9: for 5,000 resources and a 20,000-file
//! change, `ResourceMap::parse` + `plan` in under 20 ms on a 2-core machine, linear in files, for
//! each of several map shapes).
//!
//! Every map is synthetic but shaped like what teams write; all have 5,000 resources (1,000
//! packages in a layered dependency graph, 4,000 services depending on one to three of them),
//! `ignore = ["docs/**", "**/*.md"]` and `unmapped = "none"`. They differ in their globs:
//!
//! - `prefix`: plain prefixes, `libs/lib0042/**`, `services/svc0042/**`;
//! - `prefix_suffix`: the shape of the issue that asked for this bench:
//!   `libs/lib0042/**/*.rs` and `libs/lib0042/**/Cargo.toml` for packages, `services/svc0042/**`
//!   for services, plus `proto/p0042/*.proto` for every fourth service (3,000 globs with a
//!   literal prefix and a wildcard suffix);
//! - `anywhere`: `**/name` globs: packages claim `**/lib0042/**`, services `**/svc0042.yaml` and
//!   `services/svc0042/**`;
//! - `braces`: `{libs,vendor}/lib0042/**`, `services/svc0042/{src,tests}/**`,
//!   `services/svc0042/*.{toml,json}`;
//! - `mix`: each resource takes one of the shapes above, in turn.
//!
//! Two changes of 20,000 files per shape: `spread` over the whole tree (sources, manifests,
//! protos, ignored docs, unclaimed files), and `corner`, every file under one package's directory.
//!
//! Benchmarks: `parse/<shape>` (the TOML to a compiled map), `plan/<shape>/<change>` (planning
//! with a parsed map) and `parse_and_plan/<shape>/<change>`, the §9 figure.
//!
//! Run: `cargo bench -p shared --bench affected` (a few minutes; `-- parse_and_plan` for the §9
//! rows only). With `PLANNER_BENCH_WRITE=DIR` set, it writes each map (`DIR/<shape>.toml`) and
//! change (`DIR/<shape>-<change>.txt`) instead, for timing the whole `gandalf plan` process
//! (`tests/bench/plan.sh`). With `PLANNER_BENCH_CPU=RUNS` set, it times each benchmark RUNS times
//! in the thread's CPU time instead of criterion's wall time (for a machine shared with builds),
//! and with `PLANNER_BENCH_ONLY=TEXT` too, only the benchmarks whose name starts with TEXT (for
//! profiling one of them: `perf record` on the bench binary).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use shared::resources::ResourceMap;

const PACKAGES: usize = 1_000;
const SERVICES: usize = 4_000;
const FILES: usize = 20_000;

/// The map shapes, in the order of the tables in `docs/benchmarks.md`.
const SHAPES: [&str; 5] = ["prefix", "prefix_suffix", "anywhere", "braces", "mix"];
const CHANGES: [&str; 2] = ["spread", "corner"];

/// A small deterministic generator, so every run measures the same map and change.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

/// The globs of package `p` (its name is `lib{p:04}`) in a map of `shape`.
fn package_paths(shape: &str, p: usize) -> Vec<String> {
    let shape = if shape == "mix" { SHAPES[p % 4] } else { shape };
    match shape {
        "prefix" => vec![format!("libs/lib{p:04}/**")],
        "prefix_suffix" => vec![
            format!("libs/lib{p:04}/**/*.rs"),
            format!("libs/lib{p:04}/**/Cargo.toml"),
        ],
        "anywhere" => vec![format!("**/lib{p:04}/**")],
        "braces" => vec![format!("{{libs,vendor}}/lib{p:04}/**")],
        other => unreachable!("{other}"),
    }
}

/// The globs of service `s` (its name is `svc{s:04}`) in a map of `shape`.
fn service_paths(shape: &str, s: usize) -> Vec<String> {
    let shape = if shape == "mix" { SHAPES[s % 4] } else { shape };
    match shape {
        "prefix" => vec![format!("services/svc{s:04}/**")],
        "prefix_suffix" if s.is_multiple_of(4) => {
            vec![format!("services/svc{s:04}/**"), format!("proto/p{s:04}/*.proto")]
        }
        "prefix_suffix" => vec![format!("services/svc{s:04}/**")],
        "anywhere" => vec![format!("services/svc{s:04}/**"), format!("**/svc{s:04}.yaml")],
        "braces" => vec![
            format!("services/svc{s:04}/{{src,tests}}/**"),
            format!("services/svc{s:04}/*.{{toml,json}}"),
        ],
        other => unreachable!("{other}"),
    }
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}

fn map_source(shape: &str) -> String {
    let mut rng = Lcg(42);
    let mut src = String::from("ignore = [\"docs/**\", \"**/*.md\"]\nunmapped = \"none\"\n");
    for p in 0..PACKAGES {
        // Packages depend on up to two packages of a lower number: a layered DAG.
        let deps: Vec<String> = (0..if p == 0 { 0 } else { rng.next(3) })
            .map(|_| format!("lib{:04}", rng.next(p)))
            .collect();
        src.push_str(&format!(
            "[[resource]]\nname = \"lib{p:04}\"\ntype = \"package\"\npaths = [{}]\ndepends_on = [{}]\n",
            quoted(&package_paths(shape, p)),
            quoted(&deps)
        ));
    }
    for s in 0..SERVICES {
        let deps: Vec<String> = (0..1 + rng.next(3))
            .map(|_| format!("lib{:04}", rng.next(PACKAGES)))
            .collect();
        src.push_str(&format!(
            "[[resource]]\nname = \"svc{s:04}\"\ntype = \"service\"\npaths = [{}]\ndepends_on = [{}]\n",
            quoted(&service_paths(shape, s)),
            quoted(&deps)
        ));
    }
    src
}

/// 20,000 changed paths. `spread`: all over the tree, some claimed by each kind of glob, some
/// ignored, some unclaimed; `corner`: all below one package's directory (`libs/lib0042/`).
fn change(change: &str) -> Vec<String> {
    let mut rng = Lcg(7);
    (0..FILES)
        .map(|i| {
            if change == "corner" {
                let dir = i % 97;
                return match i % 5 {
                    0 => format!("libs/lib0042/src/m{dir}/file{i}.rs"),
                    1 => format!("libs/lib0042/src/m{dir}/Cargo.toml"),
                    2 => format!("libs/lib0042/tests/t{dir}/case{i}.rs"),
                    3 => format!("libs/lib0042/src/m{dir}/README{i}.md"),
                    _ => format!("libs/lib0042/data/d{dir}/blob{i}.bin"),
                };
            }
            let (p, s) = (rng.next(PACKAGES), rng.next(SERVICES));
            match i % 20 {
                0 | 1 => format!("libs/lib{p:04}/src/deep/m{i}.rs"),
                2 => format!("libs/lib{p:04}/Cargo.toml"),
                3 => format!("vendor/lib{p:04}/src/v{i}.rs"),
                4 => format!("docs/page-{i}.md"),
                5 => format!("services/svc{s:04}/README.md"),
                6 => format!("proto/p{:04}/api{i}.proto", s / 4 * 4),
                7 => format!("services/svc{s:04}/Cargo.toml"),
                8 => format!("deploy/k8s/svc{s:04}.yaml"),
                9 => format!("tools/script{i}.sh"),
                10 | 11 => format!("services/svc{s:04}/tests/it{i}.rs"),
                _ => format!("services/svc{s:04}/src/deep/path/file{i}.rs"),
            }
        })
        .collect()
}

fn write_inputs(dir: &str) {
    std::fs::create_dir_all(dir).expect("create the output directory");
    for shape in SHAPES {
        std::fs::write(format!("{dir}/{shape}.toml"), map_source(shape)).expect("write the map");
        for c in CHANGES {
            let mut text = change(c).join("\n");
            text.push('\n');
            std::fs::write(format!("{dir}/{shape}-{c}.txt"), text).expect("write the change");
        }
    }
    eprintln!(
        "wrote {} maps and {} changes to {dir}",
        SHAPES.len(),
        SHAPES.len() * CHANGES.len()
    );
}

fn bench(c: &mut Criterion) {
    let changes: Vec<(&str, Vec<String>)> = CHANGES.iter().map(|&c| (c, change(c))).collect();
    for shape in SHAPES {
        let src = map_source(shape);
        let map = ResourceMap::parse(&src).expect("the generated map is valid");
        assert_eq!(map.resources().len(), PACKAGES + SERVICES);

        let mut group = c.benchmark_group("parse");
        group.bench_function(shape, |b| {
            b.iter(|| black_box(ResourceMap::parse(black_box(&src)).is_ok()))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("plan/{shape}"));
        for (name, changed) in &changes {
            group.bench_with_input(BenchmarkId::from_parameter(name), changed, |b, changed| {
                b.iter(|| black_box(map.plan(black_box(changed))))
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("parse_and_plan/{shape}"));
        for (name, changed) in &changes {
            group.bench_with_input(BenchmarkId::from_parameter(name), changed, |b, changed| {
                b.iter(|| {
                    let map = ResourceMap::parse(black_box(&src)).expect("valid");
                    black_box(map.plan(black_box(changed)))
                })
            });
        }
        group.finish();
    }
}

/// This thread's CPU time: unlike the wall clock, it does not count the time spent waiting for a
/// core, so it stays meaningful on a machine shared with other builds (see `docs/benchmarks.md`).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid pointer and reads nothing.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `PLANNER_BENCH_CPU=<runs>`: each benchmark `runs` times (after two warm-up runs), timed in
/// this thread's CPU time; prints the median and the minimum.
fn cpu_times(runs: usize) {
    let runs = runs.max(1);
    let only = std::env::var("PLANNER_BENCH_ONLY").unwrap_or_default();
    let report = |name: &str, mut f: Box<dyn FnMut() + '_>| {
        if !name.starts_with(only.as_str()) {
            return;
        }
        f();
        f();
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = thread_cpu();
                f();
                thread_cpu() - start
            })
            .collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<36} cpu median {:6.2} ms  min {:6.2} ms  ({runs} runs)",
            ms(times[runs / 2]),
            ms(times[0])
        );
    };
    let changes: Vec<(&str, Vec<String>)> = CHANGES.iter().map(|&c| (c, change(c))).collect();
    for shape in SHAPES {
        let src = map_source(shape);
        let map = ResourceMap::parse(&src).expect("the generated map is valid");
        report(
            &format!("parse/{shape}"),
            Box::new(|| drop(black_box(ResourceMap::parse(black_box(&src))))),
        );
        for (name, changed) in &changes {
            report(
                &format!("plan/{shape}/{name}"),
                Box::new(|| drop(black_box(map.plan(black_box(changed))))),
            );
        }
        for (name, changed) in &changes {
            report(
                &format!("parse_and_plan/{shape}/{name}"),
                Box::new(|| {
                    let map = ResourceMap::parse(black_box(&src)).expect("valid");
                    drop(black_box(map.plan(black_box(changed))))
                }),
            );
        }
    }
}

fn main() {
    if let Ok(dir) = std::env::var("PLANNER_BENCH_WRITE") {
        write_inputs(&dir);
        return;
    }
    if let Some(runs) = std::env::var("PLANNER_BENCH_CPU").ok().and_then(|r| r.parse().ok()) {
        cpu_times(runs);
        return;
    }
    // Small samples and short windows: 25 benchmarks, and the machine is shared.
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
