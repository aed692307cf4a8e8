//! Running git from tests and benches: one runner for the repositories they build by hand.
//!
//! No user or system configuration is read (a developer's hooks, signing or default branch must
//! not change what a test sees), `GIT_DIR`-style variables are dropped (a test run from a git hook
//! would otherwise act on the hook's repository), and commits get a fixed identity.

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir args…` and returns its trimmed standard output; any failure fails the caller
/// with git's standard error. `dir` may be a working tree or a bare repository.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
