//! `gandalf plan`: the affected-set planner (SPEC §6) on the command line.
//!
//! It reads a resource map from disk and the changed paths either from a file or standard input
//! (`--files -`) or from git (`--base`/`--head`, the paths changed on `head` since its merge base
//! with `base`, like a pull request), and prints the plan for people or, with `--json`, as the
//! single §6 object that deploy scripts parse. It needs no database, no config file and no
//! environment variable. Every error exits 2 with the message on standard error (via `main`).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use anyhow::{Context, anyhow, bail};
use clap::{ArgGroup, Args};
use shared::resources::ResourceMap;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("changes").required(true).args(["files", "base"])))]
pub struct PlanArgs {
    /// The resource map (a path relative to the current directory).
    #[arg(long, value_name = "FILE")]
    pub map: PathBuf,
    /// Changed paths, one a line, from this file, or from standard input with `-`.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["base", "head", "repo"])]
    pub files: Option<String>,
    /// The base revision: the change is what `--head` has since its merge base with it.
    #[arg(long, value_name = "REV", requires = "head")]
    pub base: Option<String>,
    /// The head revision (the pull request's branch or commit).
    #[arg(long, value_name = "REV", requires = "base")]
    pub head: Option<String>,
    /// The git repository to ask (default: the current directory).
    #[arg(long, value_name = "PATH", requires = "base")]
    pub repo: Option<PathBuf>,
    /// Print the plan as one JSON object: {"all", "affected", "levels", "deploy", "unmapped"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let origin = args.map.display().to_string();
    let text = std::fs::read_to_string(&args.map).with_context(|| format!("cannot read the resource map {origin}"))?;
    let map = ResourceMap::parse(&text).map_err(|e| anyhow!("{}", e.render(&origin)))?;

    let changed = match (&args.files, &args.base, &args.head) {
        (Some(source), _, _) => read_lines(source)?,
        (None, Some(base), Some(head)) => {
            let repo = args.repo.clone().unwrap_or_else(|| PathBuf::from("."));
            changed_paths(&repo, base, head, args.repo.is_some())?
        }
        // clap's argument group makes this unreachable; say so rather than panic.
        _ => bail!("give the change with --files FILE|- or with --base REV --head REV"),
    };

    let plan = map.plan(&changed);
    if args.json {
        print_out(&format!("{}\n", plan.to_json()))?;
    } else {
        print_out(&plan.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to standard output; a closed pipe (`gandalf plan | head -3`) is not an error.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}

/// Changed paths, one a line, from a file or standard input (`-`). A `\r` before the newline is
/// dropped (files written on Windows); blank lines are dropped by the planner.
fn read_lines(source: &str) -> anyhow::Result<Vec<String>> {
    let mut bytes = Vec::new();
    if source == "-" {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read the changed paths from standard input")?;
    } else {
        bytes = std::fs::read(source).with_context(|| format!("cannot read the changed paths from {source}"))?;
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect())
}

/// The paths changed on `head` since its merge base with `base`, as git reports them: both sides
/// of a rename (or copy) count, since the old path's owner lost a file and the new one gained it.
fn changed_paths(repo: &Path, base: &str, head: &str, explicit_repo: bool) -> anyhow::Result<Vec<String>> {
    for rev in [base, head] {
        // Revisions are passed to git as arguments: one starting with `-` would be an option.
        if rev.is_empty() || rev.starts_with('-') || rev.contains("..") {
            bail!("invalid revision {rev:?}");
        }
    }
    let shown = repo.display();
    let probe = git(repo, explicit_repo, &["rev-parse", "--git-dir"])?;
    if !probe.status.success() {
        bail!("{shown} is not a git repository: {}", stderr(&probe));
    }
    for rev in [base, head] {
        let out = git(
            repo,
            explicit_repo,
            &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
        )?;
        if !out.status.success() {
            bail!("unknown revision `{rev}` in {shown}");
        }
    }
    let range = format!("{base}...{head}");
    let out = git(
        repo,
        explicit_repo,
        &[
            "diff",
            "--name-status",
            "-z",
            "-M",
            "--no-ext-diff",
            "--no-relative",
            &range,
            "--",
        ],
    )?;
    if !out.status.success() {
        bail!("git diff {range} failed in {shown}: {}", stderr(&out));
    }
    Ok(parse_name_status(&out.stdout))
}

/// `git diff --name-status -z`: `STATUS\0PATH\0`, or `R100\0OLD\0NEW\0` for renames and copies.
fn parse_name_status(raw: &[u8]) -> Vec<String> {
    let mut fields = raw.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut paths = Vec::new();
    while let Some(status) = fields.next() {
        if status.is_empty() {
            continue;
        }
        let count = if status.starts_with('R') || status.starts_with('C') {
            2
        } else {
            1
        };
        paths.extend(fields.by_ref().take(count));
    }
    paths
}

fn git(repo: &Path, explicit_repo: bool, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).args(args).stdin(std::process::Stdio::null());
    if explicit_repo {
        // `--repo` must win over a repository named by the environment (as inside a git hook).
        cmd.env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
    }
    cmd.output().context("cannot run git (is it installed and on PATH?)")
}

fn stderr(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    let text = text.strip_prefix("fatal: ").unwrap_or(text);
    if text.is_empty() {
        format!("git exited with {}", out.status)
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_and_copies_count_both_paths() {
        let raw = b"M\0a.txt\0R087\0old/x.rs\0new/x.rs\0D\0gone\0C100\0src\0copy\0A\0with space\0";
        assert_eq!(
            parse_name_status(raw),
            ["a.txt", "old/x.rs", "new/x.rs", "gone", "src", "copy", "with space"]
        );
        assert!(parse_name_status(b"").is_empty());
    }
}
