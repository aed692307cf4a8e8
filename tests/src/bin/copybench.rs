//! Working copies at monorepo scale (SPEC §5.8, §9): a generated repository of `--files` files in
//! `--dirs` directories, and the time to get a working copy of a candidate commit
//!
//! - cold: an empty state directory (the mirror is created and the whole history fetched), then
//!   a fresh checkout;
//! - the end of a run (dropping its copy: renamed away, deleted in the background) and the
//!   background work a run leaves (the next pristine copy made, the old copy deleted), waited for
//!   with `Mirrors::settle` before the next timing, as a verification's steps would overlap it;
//! - warm: the mirror already holds the base and the pristine copy waits at the base; the candidate
//!   (a commit changing 20 files on top of it) is fetched and its copy made from the pristine, as
//!   for every verification after the first;
//! - warm without a pristine (another run took it): the candidate's copy made fresh from the
//!   up-to-date mirror;
//! - the complete change list of that candidate, read from the mirror.
//!
//! Files are about 1 KiB of source-like text each, with bodies that differ (so git stores them
//! as it would real files, not as delta chains of one another). Each timing is one run of the real
//! `shared::working_copy` code (the machine's `git`), repeated `--runs` times; the source repository is a local `file://` remote, so the figures leave out the
//! network (a fetch from GitHub adds its transfer time).
//!
//!   cargo run --release -p bg-tests --bin copybench -- --files 100000

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use bg_tests::git;
use clap::Parser;
use shared::ids::{CommitSha, RepoName};
use shared::working_copy::{Mirrors, Remote};

#[derive(Parser)]
#[command(about = "Times working copies of a candidate in a generated monorepo")]
struct Cli {
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    #[arg(long, default_value_t = 500)]
    dirs: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The base commit: `files` small files under `services/svcNNNN/src/…`, written by fast-import.
fn generate(dir: &Path, files: usize, dirs: usize) -> (CommitSha, CommitSha) {
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    {
        let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
        // A second commit to the same branch in one import takes the first as its parent.
        let mut commit = |msg: &str, range: std::ops::Range<usize>, version: &str| {
            writeln!(w, "commit refs/heads/main").unwrap();
            writeln!(w, "committer Bench <bench@example.com> 1700000000 +0000").unwrap();
            writeln!(w, "data {}\n{msg}", msg.len()).unwrap();
            for i in range {
                // Source-like files of about 1 KiB whose bodies differ (so that git does not store
                // them as long delta chains of one another, which real files are not either).
                let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let body: String = (0..24)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!("    let v{:08x} = {};\n", x as u32, x >> 40)
                    })
                    .collect();
                let content = format!("// file {i} {version}\nfn f{i}() {{\n{body}}}\n");
                writeln!(w, "M 644 inline services/svc{:04}/src/f{i}.rs", i % dirs).unwrap();
                writeln!(w, "data {}\n{content}", content.len()).unwrap();
            }
            writeln!(w).unwrap();
        };
        commit("base", 0..files, "v1");
        commit("candidate", 0..20, "v2");
        w.flush().unwrap();
    }
    assert!(child.wait().unwrap().success());
    let candidate = git(dir, &["rev-parse", "main"]);
    let base = git(dir, &["rev-parse", "main~1"]);
    (base.parse().unwrap(), candidate.parse().unwrap())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let src = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (base, candidate) = generate(src.path(), cli.files, cli.dirs);
    eprintln!("generated {} files in {:.0} ms", cli.files, ms(t));
    let remote = Remote {
        url: format!("file://{}", src.path().display()),
        token: None,
    };
    let repo: RepoName = "bench/mono".parse().unwrap();
    let (mut cold, mut drop_ms, mut background, mut warm_fetch, mut warm, mut fresh, mut diff) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..cli.runs {
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let t = Instant::now();
        let copy = mirrors
            .checkout(&repo, &remote, &base, &format!("cold-{run}"))
            .await
            .unwrap();
        cold.push(ms(t));
        let t = Instant::now();
        drop(copy);
        drop_ms.push(ms(t));
        let t = Instant::now();
        mirrors.settle().await;
        background.push(ms(t));
        // The mirror now holds the base: a verification's fetch and checkout of a new candidate.
        let t = Instant::now();
        mirrors.fetch(&repo, &remote, &[&candidate]).await.unwrap();
        warm_fetch.push(ms(t));
        let t = Instant::now();
        let copy = mirrors
            .checkout(&repo, &remote, &candidate, &format!("warm-{run}"))
            .await
            .unwrap();
        warm.push(ms(t));
        assert_eq!(
            git(copy.path(), &["rev-parse", "HEAD"]),
            candidate.as_str(),
            "the copy is the candidate"
        );
        let t = Instant::now();
        let files = mirrors.changed_files(&repo, &base, &candidate).await.unwrap();
        diff.push(ms(t));
        assert_eq!(files.len(), 20);
        drop(copy);
        mirrors.settle().await;
        // Another run took the pristine: the copy is made fresh from the up-to-date mirror.
        std::fs::remove_dir_all(state.path().join("pristine")).unwrap();
        let t = Instant::now();
        let copy = mirrors
            .checkout(&repo, &remote, &candidate, &format!("fresh-{run}"))
            .await
            .unwrap();
        fresh.push(ms(t));
        drop(copy);
        mirrors.settle().await;
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "files={} runs={} (medians) cold_copy_ms={:.0} drop_ms={:.1} background_ms={:.0} warm_fetch_ms={:.0} \
         warm_copy_from_pristine_ms={:.0} warm_fresh_copy_ms={:.0} changed_files_ms={:.1}",
        cli.files,
        cli.runs,
        med(&mut cold),
        med(&mut drop_ms),
        med(&mut background),
        med(&mut warm_fetch),
        med(&mut warm),
        med(&mut fresh),
        med(&mut diff)
    );
}
