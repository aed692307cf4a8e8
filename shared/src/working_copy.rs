//! Working copies (SPEC §5.8): every step runs in a checkout of exactly the commit it concerns.
//!
//! One bare mirror per repository lives under `<state_dir>/mirrors/`; it is updated with
//! `git fetch` of just the commits a run needs (and their history, once), so a copy of a large
//! monorepo costs a checkout, not a clone. Each run gets its own copy under `<state_dir>/copies/`
//! (`git clone --shared`: its own `.git`, the mirror's objects through alternates), shared by all
//! its steps and removed when the run ends ([`WorkingCopy`] removes itself on drop; leftovers of a
//! crashed run are removed by [`Mirrors::remove_leftovers`] at start).
//!
//! Making a copy is bound by the disk, not by git: a fresh checkout of a 100,000-file repository
//! creates 100,000 files, seconds of kernel time on an ordinary virtual disk (and removing them as
//! many again). So the files are created *ahead of time*, off the run's path (`docs/benchmarks.md`,
//! "working copies", has the measurements):
//!
//! - one **pristine** copy per repository waits under `<state_dir>/pristine/`: a complete clone
//!   checked out at the last commit a run asked for, made by the bot and seen by nobody else. A run
//!   takes it by *renaming* it into `copies/` (atomic: of two takers one wins, the other makes a
//!   fresh copy), then moves it to its commit with `git checkout --detach`, which writes only the
//!   files that differ between the two commits. Only then does a step see it; it never comes back.
//! - a replacement pristine is made in the background (a fresh clone and checkout in a temporary
//!   directory, renamed into place when complete, so a half-made one is never taken);
//! - a copy that is done with is renamed into `<state_dir>/trash/` and deleted by a thread of its
//!   own, so the end of a run does not wait for 100,000 unlinks either.
//!
//! With no pristine at hand (the first run, a run while the replacement is still being made and
//! another run took it, a failure) a run makes a fresh copy as before: slower, never wrong.
//!
//! The pristine is trusted as the mirror is: both are the bot's files under `state_dir`. A step
//! running as the bot's own user could write to either (and the mirror is the worse one); with
//! `step_user` set, neither is writable by the steps. Moving the pristine to the run's commit checks
//! only the files that change, so checking the whole tree first (0.2–0.4 s of `stat`s at 100,000
//! files) would buy nothing the mirror does not already give away.
//!
//! The bot's git is locked down: hooks off, no system or global config, no terminal prompts, an
//! empty environment but for what git needs. The token reaches git through `GIT_CONFIG_*`
//! variables of that one git process (never its command line, which any user can read in `/proc`,
//! and never a file): not the copy's `.git/config`, not a step. The list of changed files is read
//! from the mirror, never from the copy, so nothing a step plants in the copy's `.git` (a hook, an
//! `fsmonitor` command) ever runs as the bot.
//!
//! Failures here are never the change's fault (no `git`, no route, GitHub's git down, a full
//! disk): they come back as [`CopyError`] after a few retries, for the caller to pause, fail the
//! deploy or fault the environment — never to reject a PR.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use crate::ids::{CommitSha, RepoName};

/// Where a repository's commits come from, and how to authenticate.
#[derive(Clone)]
pub struct Remote {
    /// An `https://` clone URL (GitHub's `clone_url`), or `file://` / a path for mirrors and tests.
    pub url: String,
    /// GitHub's token (a personal token or an App installation token), sent as HTTP basic auth.
    pub token: Option<SecretString>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Git could not be run at all: not installed, or not executable.
    #[error("cannot run git: {0}")]
    NoGit(String),
    /// A git command failed after its retries; the message is git's own last words.
    #[error("{what} failed: {detail}")]
    Git { what: String, detail: String },
    #[error("{what}: {error}")]
    Io { what: String, error: String },
}

/// How often and how patiently a fetch is tried before the run gives up (and the caller pauses the
/// queue, fails the deploy or faults the environment).
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_backoff: Duration::from_secs(2),
        }
    }
}

/// The mirrors and copies of one bot, under its `state_dir`.
#[derive(Clone)]
pub struct Mirrors {
    root: PathBuf,
    retry: Retry,
    /// One fetch at a time per mirror within this process (git's ref locks would fail the second).
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Per repository: the pristine copy being made, and whether a run already waits for it.
    pristine_locks: Arc<Mutex<HashMap<String, Arc<PristineSlot>>>>,
    /// The pristine copies being made, for [`Mirrors::settle`].
    preparing: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    trash: Trash,
}

/// A repository's pristine copy in this process. `making` is held while one is being made, so that
/// a run arriving meanwhile waits for it (it is further along than a fresh copy would be) instead of
/// writing a second tree at the same time. Only one run waits for each: the others (Nightly's
/// environments all starting at once, say) make fresh copies side by side rather than queue up
/// behind one pristine after another.
#[derive(Default)]
struct PristineSlot {
    making: tokio::sync::Mutex<()>,
    awaited: std::sync::atomic::AtomicBool,
}

/// Copies on their way out: renamed under `<state_dir>/trash/` and deleted by a thread each. The
/// count of deletions under way lets [`Mirrors::settle`] wait for them.
#[derive(Clone, Debug)]
struct Trash {
    dir: PathBuf,
    pending: Arc<(Mutex<usize>, Condvar)>,
}

/// Unique names for temporary directories (trash, pristines being made) within this process;
/// the process id keeps two processes sharing a `state_dir` apart.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Trash {
    /// Moves `path` out of the way at once and deletes it in the background; deletes it in place
    /// when it cannot be moved (the trash directory cannot be made, say).
    fn discard(&self, path: &Path) {
        let target = self.dir.join(unique("copy"));
        let moved = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::rename(path, &target));
        match moved {
            Ok(()) => {
                *self.pending.0.lock().expect("trash count") += 1;
                let pending = self.pending.clone();
                let spawned = std::thread::Builder::new().name("copy-removal".into()).spawn(move || {
                    remove_quietly(&target);
                    let (count, done) = &*pending;
                    *count.lock().expect("trash count") -= 1;
                    done.notify_all();
                });
                if let Err(e) = spawned {
                    // No thread to be had: the copy stays in the trash until the next start.
                    tracing::warn!(error = %e, "could not start removing a working copy");
                    *self.pending.0.lock().expect("trash count") -= 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.exists() => {}
            Err(_) => remove_quietly(path),
        }
    }

    fn wait(&self) {
        let (count, done) = &*self.pending;
        let mut n = count.lock().expect("trash count");
        while *n > 0 {
            n = done.wait(n).expect("trash count");
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a working copy");
    }
}

impl Mirrors {
    pub fn new(state_dir: &Path) -> Self {
        Mirrors {
            root: state_dir.to_path_buf(),
            retry: Retry::default(),
            locks: Arc::default(),
            pristine_locks: Arc::default(),
            preparing: Arc::default(),
            trash: Trash {
                dir: state_dir.join("trash"),
                pending: Arc::default(),
            },
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn mirror_dir(&self, repo: &RepoName) -> PathBuf {
        self.root
            .join("mirrors")
            .join(&repo.owner)
            .join(format!("{}.git", repo.name))
    }

    fn copies_dir(&self) -> PathBuf {
        self.root.join("copies")
    }

    /// Where the repository's pristine copy waits, complete, for the next run.
    fn pristine_dir(&self, repo: &RepoName) -> PathBuf {
        self.root.join("pristine").join(&repo.owner).join(&repo.name)
    }

    /// Removes the copies a previous run of this bot left (it crashed, or was killed, mid-run).
    /// Call at start, before any run resumes: a resumed run makes a fresh copy.
    pub fn remove_leftovers(&self) -> Result<usize, CopyError> {
        let dir = self.copies_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("reading the copies directory", e)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing a working copy left by a previous run");
            std::fs::remove_dir_all(&path).map_err(|e| io_error("removing a left-over working copy", e))?;
            removed += 1;
        }
        // What a previous process was deleting, and pristine copies it was still making (a
        // complete pristine, renamed into place only once complete, is kept: the bot made it and
        // no step ever saw it).
        remove_all_in(&self.root.join("trash"), |_| true)?;
        if let Ok(owners) = std::fs::read_dir(self.root.join("pristine")) {
            for owner in owners.flatten() {
                remove_all_in(&owner.path(), |name| name.contains(".tmp-"))?;
            }
        }
        Ok(removed)
    }

    /// Waits until the work a run leaves behind is done: the pristine copies being made and the
    /// copies being deleted. Nothing needs this for correctness; it is for benchmarks and tests
    /// that measure one run at a time.
    pub async fn settle(&self) {
        let preparing = std::mem::take(&mut *self.preparing.lock().expect("preparing"));
        for task in preparing {
            let _ = task.await;
        }
        let trash = self.trash.clone();
        let _ = tokio::task::spawn_blocking(move || trash.wait()).await;
    }

    fn lock_for(&self, repo: &RepoName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("mirror locks");
        locks.entry(repo.to_string()).or_default().clone()
    }

    fn pristine_lock_for(&self, repo: &RepoName) -> Arc<PristineSlot> {
        let mut locks = self.pristine_locks.lock().expect("pristine locks");
        locks.entry(repo.to_string()).or_default().clone()
    }

    /// Makes sure the mirror of `repo` holds `shas` and their history, fetching only what is
    /// missing. Retried with backoff; an error means the commits could not be had.
    pub async fn fetch(&self, repo: &RepoName, remote: &Remote, shas: &[&CommitSha]) -> Result<(), CopyError> {
        let lock = self.lock_for(repo);
        let _guard = lock.lock().await;
        let mirror = self.mirror_dir(repo);
        if !mirror.join("HEAD").exists() {
            std::fs::create_dir_all(&mirror).map_err(|e| io_error("creating the mirror", e))?;
            git(
                Some(&mirror),
                &["init", "--quiet", "--bare"],
                None,
                "git init of the mirror",
            )
            .await?;
        }
        let missing: Vec<&CommitSha> = {
            let mut m = vec![];
            for sha in shas {
                if !has_commit(&mirror, sha).await {
                    m.push(*sha);
                }
            }
            m
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            &remote.url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(missing.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut backoff = self.retry.first_backoff;
        let mut last = None;
        for attempt in 1..=self.retry.attempts.max(1) {
            match git(Some(&mirror), &args, remote.token.as_ref(), "git fetch").await {
                Ok(_) => {
                    // Keep what was fetched: a ref per commit, so `gc` never prunes a run's commits.
                    for sha in &missing {
                        let name = format!("refs/runs/{sha}");
                        git(
                            Some(&mirror),
                            &["update-ref", &name, sha.as_str()],
                            None,
                            "git update-ref",
                        )
                        .await?;
                    }
                    return Ok(());
                }
                Err(e @ CopyError::NoGit(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(repo = %repo, attempt, error = %e, "fetching into the mirror failed");
                    last = Some(e);
                    if attempt < self.retry.attempts {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The paths that differ between two commits of the mirror (both must have been fetched), each
    /// once, sorted; a rename counts as both paths. Complete, unlike GitHub's compare (300 files).
    pub async fn changed_files(
        &self,
        repo: &RepoName,
        from: &CommitSha,
        to: &CommitSha,
    ) -> Result<Vec<String>, CopyError> {
        let mirror = self.mirror_dir(repo);
        let out = git(
            Some(&mirror),
            &[
                "diff",
                "--name-only",
                "--no-renames",
                "-z",
                from.as_str(),
                to.as_str(),
                "--",
            ],
            None,
            "git diff",
        )
        .await?;
        let mut files: Vec<String> = out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// The distinct authors (`Name <email>`) of the commits in `to` that are not in `from`, oldest
    /// first (a squash commit's `Co-authored-by` trailers).
    pub async fn authors(&self, repo: &RepoName, from: &CommitSha, to: &CommitSha) -> Result<Vec<String>, CopyError> {
        let mirror = self.mirror_dir(repo);
        let range = format!("{from}..{to}");
        let out = git(
            Some(&mirror),
            &["log", "--reverse", "--format=%an <%ae>", &range, "--"],
            None,
            "git log",
        )
        .await?;
        let mut authors: Vec<String> = vec![];
        for line in String::from_utf8_lossy(&out).lines() {
            if !line.trim().is_empty() && !authors.iter().any(|a| a == line) {
                authors.push(line.to_string());
            }
        }
        Ok(authors)
    }

    /// The merge base of two fetched commits (for "what did this branch change", SPEC §4.6).
    pub async fn merge_base(
        &self,
        repo: &RepoName,
        a: &CommitSha,
        b: &CommitSha,
    ) -> Result<Option<CommitSha>, CopyError> {
        let mirror = self.mirror_dir(repo);
        match git(
            Some(&mirror),
            &["merge-base", a.as_str(), b.as_str()],
            None,
            "git merge-base",
        )
        .await
        {
            Ok(out) => Ok(String::from_utf8_lossy(&out).trim().parse().ok()),
            Err(CopyError::Git { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A working copy of `repo` at `sha` (fetched first if needed), named after the run (`name`
    /// must be unique among running runs, e.g. `verify-42`). Its steps all run in it; it is removed
    /// when the returned value is dropped.
    ///
    /// The repository's pristine copy, when there is one, becomes this copy (only the files that
    /// differ from its commit are written); a replacement is then made in the background.
    pub async fn checkout(
        &self,
        repo: &RepoName,
        remote: &Remote,
        sha: &CommitSha,
        name: &str,
    ) -> Result<WorkingCopy, CopyError> {
        self.fetch(repo, remote, &[sha]).await?;
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        let path = self.copies_dir().join(safe);
        if path.exists() {
            self.trash.discard(&path);
        }
        std::fs::create_dir_all(self.copies_dir()).map_err(|e| io_error("creating the copies directory", e))?;
        let copy = match self.take_pristine(repo, &path, sha).await {
            Some(copy) => copy,
            None => {
                // From here on the path is the run's: removed on drop, or at the next start.
                let copy = self.guard(path.clone());
                self.fresh_copy(repo, &path, sha).await?;
                copy
            }
        };
        // The next run's pristine, made while this run's steps run.
        let (mirrors, repo, sha) = (self.clone(), repo.clone(), sha.clone());
        let task = tokio::spawn(async move { mirrors.prepare_pristine(&repo, &sha).await });
        let mut preparing = self.preparing.lock().expect("preparing");
        preparing.retain(|t| !t.is_finished());
        preparing.push(task);
        Ok(copy)
    }

    fn guard(&self, path: PathBuf) -> WorkingCopy {
        WorkingCopy {
            path,
            trash: Some(self.trash.clone()),
        }
    }

    /// The pristine copy renamed to `path` and moved to `sha`; `None` when there is none (or it
    /// could not be moved: it is then thrown away and the caller makes a fresh copy).
    async fn take_pristine(&self, repo: &RepoName, path: &Path, sha: &CommitSha) -> Option<WorkingCopy> {
        let pristine = self.pristine_dir(repo);
        {
            let slot = self.pristine_lock_for(repo);
            if slot.awaited.swap(true, Ordering::AcqRel) {
                return None; // another run waits for this one
            }
            // Cleared however this ends, a run cancelled while waiting included.
            struct Awaiting<'a>(&'a PristineSlot);
            impl Drop for Awaiting<'_> {
                fn drop(&mut self) {
                    self.0.awaited.store(false, Ordering::Release);
                }
            }
            let _awaiting = Awaiting(&slot);
            let _making = slot.making.lock().await;
            // The rename is the taking: atomic, so of two takers (even in two processes) one wins.
            std::fs::rename(&pristine, path).ok()?;
        }
        // Renamed into `copies/` before it is changed: a crash from here on leaves a left-over
        // copy (removed at start), never a pristine at no known commit.
        let copy = self.guard(path.to_path_buf());
        // `--force`: a tracked file that differs from the index (it should not; nothing runs in a
        // pristine) is put back rather than carried into the run.
        match git(
            Some(path),
            &["checkout", "--quiet", "--force", "--detach", sha.as_str()],
            None,
            "git checkout",
        )
        .await
        {
            Ok(_) => Some(copy),
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "could not move the pristine copy; making a fresh one");
                None
            }
        }
    }

    /// A new copy at `path`: a clone of the mirror sharing its objects, then a checkout of `sha`.
    async fn fresh_copy(&self, repo: &RepoName, path: &Path, sha: &CommitSha) -> Result<(), CopyError> {
        let mirror = self.mirror_dir(repo);
        let (mirror_s, path_s) = (mirror.display().to_string(), path.display().to_string());
        git(
            None,
            &[
                "clone",
                "--quiet",
                "--shared",
                "--no-checkout",
                "--",
                &mirror_s,
                &path_s,
            ],
            None,
            "git clone of the mirror",
        )
        .await?;
        git(
            Some(path),
            &["checkout", "--quiet", "--detach", sha.as_str()],
            None,
            "git checkout",
        )
        .await?;
        Ok(())
    }

    /// Makes the repository's pristine copy, at `sha`, unless there is one already. Built in a
    /// temporary directory and renamed into place when complete; a failure only costs the next run
    /// the speed-up (it makes a fresh copy), so it is logged, not returned.
    async fn prepare_pristine(&self, repo: &RepoName, sha: &CommitSha) {
        let slot = self.pristine_lock_for(repo);
        let _making = slot.making.lock().await;
        let pristine = self.pristine_dir(repo);
        if pristine.exists() {
            return;
        }
        let Some(parent) = pristine.parent() else { return };
        let tmp = parent.join(format!("{}.{}", repo.name, unique("tmp")));
        let made = async {
            std::fs::create_dir_all(parent).map_err(|e| io_error("creating the pristine directory", e))?;
            self.fresh_copy(repo, &tmp, sha).await?;
            std::fs::rename(&tmp, &pristine).map_err(|e| io_error("putting the pristine copy in place", e))
        }
        .await;
        if let Err(e) = made {
            tracing::warn!(repo = %repo, error = %e, "could not prepare the next working copy");
            self.trash.discard(&tmp);
        }
    }
}

/// A checkout for one run; removed from disk when dropped.
#[derive(Debug)]
pub struct WorkingCopy {
    path: PathBuf,
    /// Where the copy goes when dropped (deleted in the background); `None`: deleted in place.
    trash: Option<Trash>,
}

impl WorkingCopy {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkingCopy {
    fn drop(&mut self) {
        match &self.trash {
            Some(trash) => trash.discard(&self.path),
            None => remove_quietly(&self.path),
        }
    }
}

/// Removes the entries of `dir` whose names `pick` chooses; a missing `dir` has none.
fn remove_all_in(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<(), CopyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("reading the state directory", e)),
    };
    for entry in entries.flatten() {
        if pick(&entry.file_name().to_string_lossy()) {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io_error("removing a left-over directory", e))?;
        }
    }
    Ok(())
}

fn io_error(what: &str, e: std::io::Error) -> CopyError {
    CopyError::Io {
        what: what.into(),
        error: e.to_string(),
    }
}

async fn has_commit(mirror: &Path, sha: &CommitSha) -> bool {
    let spec = format!("{sha}^{{commit}}");
    git(Some(mirror), &["cat-file", "-e", &spec], None, "git cat-file")
        .await
        .is_ok()
}

/// Runs the bot's own git: an empty environment but PATH, no system or global config, hooks off,
/// no prompts; the token, when given, as an HTTP header in `GIT_CONFIG_*` of this process only.
async fn git(
    dir: Option<&Path>,
    args: &[&str],
    token: Option<&SecretString>,
    what: &str,
) -> Result<Vec<u8>, CopyError> {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", crate::settings::ProcessEnv.path_or_default())
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut n = 0;
    if let Some(token) = token {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose_secret()));
        cmd.env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
        n += 1;
    }
    cmd.env("GIT_CONFIG_COUNT", n.to_string());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().await.map_err(|e| CopyError::NoGit(e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // git's own verdict is its first `fatal:`/`error:` line; advice ("Please make sure you have
    // the correct access rights…") follows it. Without one, its last words.
    let detail = stderr
        .lines()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no message")
        .trim();
    Err(CopyError::Git {
        what: what.into(),
        detail: detail.chars().take(300).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source repository with two commits on `main` and a side commit; returns (dir, [c1, c2, side]).
    fn source() -> (tempfile::TempDir, Vec<CommitSha>) {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(&["init", "--quiet", "--initial-branch=main"]);
        std::fs::create_dir_all(dir.path().join("services/api")).unwrap();
        std::fs::write(dir.path().join("services/api/main.rs"), "v1").unwrap();
        std::fs::write(dir.path().join("README.md"), "hi").unwrap();
        run(&["add", "-A"]);
        run(&["commit", "--quiet", "-m", "one"]);
        let c1 = run(&["rev-parse", "HEAD"]);
        std::fs::write(dir.path().join("services/api/main.rs"), "v2").unwrap();
        run(&["mv", "README.md", "docs.md"]);
        run(&["commit", "--quiet", "-am", "two"]);
        let c2 = run(&["rev-parse", "HEAD"]);
        run(&["checkout", "--quiet", "-b", "side", &c1]);
        std::fs::write(dir.path().join("side.txt"), "side").unwrap();
        run(&["add", "-A"]);
        run(&["commit", "--quiet", "-m", "side"]);
        let side = run(&["rev-parse", "HEAD"]);
        run(&["checkout", "--quiet", "main"]);
        let shas = [c1, c2, side].into_iter().map(|s| s.parse().unwrap()).collect();
        (dir, shas)
    }

    fn remote(dir: &Path) -> Remote {
        Remote {
            url: format!("file://{}", dir.display()),
            token: None,
        }
    }

    #[tokio::test]
    async fn a_copy_is_exactly_the_commit_with_its_own_git_and_goes_away() {
        let (src, shas) = source();
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let repo: RepoName = "acme/mono".parse().unwrap();
        let copy = mirrors
            .checkout(&repo, &remote(src.path()), &shas[1], "verify-7")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.path().join("services/api/main.rs")).unwrap(),
            "v2"
        );
        assert!(copy.path().join("docs.md").exists() && !copy.path().join("README.md").exists());
        assert_eq!(git_out(copy.path(), &["rev-parse", "HEAD"]), shas[1].as_str());
        assert!(
            copy.path().join(".git/objects/info/alternates").exists(),
            "objects shared, .git its own"
        );
        let config = std::fs::read_to_string(copy.path().join(".git/config")).unwrap();
        assert!(
            !config.contains(src.path().to_str().unwrap()),
            "the copy does not name the remote"
        );

        // A second run of the same commit needs no fetch; a side commit is fetched on its own.
        let other = mirrors
            .checkout(&repo, &remote(src.path()), &shas[2], "deploy-3")
            .await
            .unwrap();
        assert!(other.path().join("side.txt").exists());
        let path = copy.path().to_path_buf();
        drop(copy);
        assert!(!path.exists(), "a copy is removed when its run ends");
        drop(other);
        mirrors.settle().await;
        assert_eq!(
            std::fs::read_dir(state.path().join("trash")).unwrap().count(),
            0,
            "removed in the background, completely"
        );
    }

    fn git_out(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn a_copy_made_from_the_pristine_is_exactly_its_commit_whatever_the_previous_run_did() {
        use std::os::unix::fs::MetadataExt;
        let (src, shas) = source();
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let repo: RepoName = "acme/mono".parse().unwrap();
        let first = mirrors
            .checkout(&repo, &remote(src.path()), &shas[0], "verify-1")
            .await
            .unwrap();
        // The first run's steps change, add and remove files, and plant a hook.
        std::fs::write(first.path().join("services/api/main.rs"), "changed by a step").unwrap();
        std::fs::write(first.path().join("build-output.bin"), "made by a step").unwrap();
        std::fs::remove_file(first.path().join("README.md")).unwrap();
        std::fs::write(
            first.path().join(".git/hooks/post-checkout"),
            "#!/bin/sh\ntouch /tmp/pwned\n",
        )
        .unwrap();

        // Meanwhile the next run's pristine was made, at the first run's commit, by the bot alone.
        mirrors.settle().await;
        let pristine = state.path().join("pristine/acme/mono");
        assert_eq!(git_out(&pristine, &["rev-parse", "HEAD"]), shas[0].as_str());
        let pristine_git = std::fs::metadata(pristine.join(".git")).unwrap().ino();

        let second = mirrors
            .checkout(&repo, &remote(src.path()), &shas[1], "verify-2")
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(second.path().join(".git")).unwrap().ino(),
            pristine_git,
            "the pristine copy became the run's copy (renamed, not copied)"
        );
        assert_eq!(git_out(second.path(), &["rev-parse", "HEAD"]), shas[1].as_str());
        assert_eq!(
            git_out(second.path(), &["status", "--porcelain", "--ignored"]),
            "",
            "nothing but the commit"
        );
        assert_eq!(
            std::fs::read_to_string(second.path().join("services/api/main.rs")).unwrap(),
            "v2"
        );
        assert!(second.path().join("docs.md").exists() && !second.path().join("README.md").exists());
        assert!(!second.path().join("build-output.bin").exists());
        assert!(!second.path().join(".git/hooks/post-checkout").exists());
        assert!(
            second.path().join(".git/objects/info/alternates").exists(),
            "its own .git"
        );

        // Two runs at once: the second finds no pristine (or the new one) and still gets its commit.
        let third = mirrors
            .checkout(&repo, &remote(src.path()), &shas[2], "verify-3")
            .await
            .unwrap();
        assert_eq!(git_out(third.path(), &["rev-parse", "HEAD"]), shas[2].as_str());
        assert_eq!(git_out(third.path(), &["status", "--porcelain", "--ignored"]), "");
        assert!(third.path().join("side.txt").exists() && !third.path().join("docs.md").exists());
        drop((first, second, third));
        mirrors.settle().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_starting_together_each_get_their_own_exact_copy() {
        let (src, shas) = source();
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let repo: RepoName = "acme/mono".parse().unwrap();
        let r = remote(src.path());
        drop(mirrors.checkout(&repo, &r, &shas[0], "warm-up").await.unwrap());
        mirrors.settle().await;
        // Four at once, as Nightly's environments start: one gets the pristine, the others fresh
        // copies; every one is the commit, in a directory of its own.
        let names = ["nightly-1", "nightly-2", "nightly-3", "nightly-4"];
        let copies = futures::future::join_all(names.iter().map(|n| mirrors.checkout(&repo, &r, &shas[1], n))).await;
        let copies: Vec<WorkingCopy> = copies.into_iter().map(Result::unwrap).collect();
        for copy in &copies {
            assert_eq!(git_out(copy.path(), &["rev-parse", "HEAD"]), shas[1].as_str());
            assert_eq!(git_out(copy.path(), &["status", "--porcelain", "--ignored"]), "");
            assert!(copy.path().join("docs.md").exists() && !copy.path().join("README.md").exists());
        }
        drop(copies);
        mirrors.settle().await;
        assert_eq!(std::fs::read_dir(state.path().join("copies")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn changed_files_are_complete_and_count_a_rename_as_both_paths() {
        let (src, shas) = source();
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let repo: RepoName = "acme/mono".parse().unwrap();
        mirrors
            .fetch(&repo, &remote(src.path()), &[&shas[1], &shas[2]])
            .await
            .unwrap();
        let files = mirrors.changed_files(&repo, &shas[0], &shas[1]).await.unwrap();
        assert_eq!(files, ["README.md", "docs.md", "services/api/main.rs"]);
        mirrors.settle().await;
        assert_eq!(
            mirrors.merge_base(&repo, &shas[1], &shas[2]).await.unwrap(),
            Some(shas[0].clone())
        );
    }

    #[tokio::test]
    async fn an_unreachable_remote_is_retried_then_reported_and_leftovers_are_removed() {
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path()).with_retry(Retry {
            attempts: 2,
            first_backoff: Duration::from_millis(10),
        });
        let repo: RepoName = "acme/gone".parse().unwrap();
        let sha: CommitSha = "a".repeat(40).parse().unwrap();
        let gone = Remote {
            url: "file:///nonexistent/repo".into(),
            token: None,
        };
        let err = mirrors.checkout(&repo, &gone, &sha, "verify-1").await.unwrap_err();
        assert!(matches!(err, CopyError::Git { .. }), "{err:?}");

        std::fs::create_dir_all(state.path().join("copies/verify-9/src")).unwrap();
        std::fs::create_dir_all(state.path().join("trash/copy-1-0/src")).unwrap();
        std::fs::create_dir_all(state.path().join("pristine/acme/mono.tmp-1-3/src")).unwrap();
        std::fs::create_dir_all(state.path().join("pristine/acme/mono/.git")).unwrap();
        assert_eq!(mirrors.remove_leftovers().unwrap(), 1);
        assert!(!state.path().join("copies/verify-9").exists());
        assert!(
            !state.path().join("trash/copy-1-0").exists(),
            "a removal cut short is finished"
        );
        assert!(
            !state.path().join("pristine/acme/mono.tmp-1-3").exists(),
            "a half-made pristine is never taken"
        );
        assert!(
            state.path().join("pristine/acme/mono").exists(),
            "a complete one is kept"
        );
    }

    #[tokio::test]
    async fn the_token_reaches_git_only_through_its_environment() {
        let (src, shas) = source();
        let state = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(state.path());
        let repo: RepoName = "acme/mono".parse().unwrap();
        let r = Remote {
            url: format!("file://{}", src.path().display()),
            token: Some(SecretString::from("ghs_installation_token")),
        };
        let copy = mirrors.checkout(&repo, &r, &shas[1], "verify-8").await.unwrap();
        mirrors.settle().await;
        for dir in [
            copy.path().join(".git"),
            state.path().join("mirrors"),
            state.path().join("pristine"),
        ] {
            let out = std::process::Command::new("grep")
                .args(["-rl", "ghs_installation_token"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.stdout.is_empty(), "token written under {}", dir.display());
        }
        assert!(format!("{r:?}").contains("***") && !format!("{r:?}").contains("ghs_"));
    }
}
