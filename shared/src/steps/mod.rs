//! Running pipeline steps: a shell command line in its own process group, with a timeout that kills
//! the whole group, its output captured (stdout and stderr, interleaved by line), and the group
//! recorded in Postgres so that a bot that crashed kills its leftovers at the next start.
//!
//! Nightly, deploys and Gandalf's verifications all run their steps through [`run`]. Nothing is ever
//! interpolated into the command line: everything a step needs arrives in environment variables,
//! and a step gets none of the bot's own ([`env`]: it starts from an empty environment).

pub mod env;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// What to run.
#[derive(Clone, Debug)]
pub struct StepSpec {
    /// A shell command line, run as `sh -c <command>`.
    pub command: String,
    pub dir: PathBuf,
    /// The run's documented variables (`GANDALF_*`, `BOBBY_*`); they win over everything else.
    pub env: Vec<(String, String)>,
    /// What else the step may see, and as whom it runs (`pass_env`, the pipeline's `env` table,
    /// `step_user`).
    pub sandbox: env::StepEnv,
    pub timeout: Duration,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i32),
    /// Killed by a signal we did not send.
    Signalled(i32),
    TimedOut,
    Cancelled,
    /// `sh` could not even be started.
    SpawnFailed(String),
}

impl StepEnd {
    pub fn succeeded(&self) -> bool {
        *self == StepEnd::Exited(0)
    }

    /// The exit status to show and store: the code, or `None` when there is none.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StepEnd::Exited(c) => Some(*c),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StepEnd::Exited(c) => format!("exit status {c}"),
            StepEnd::Signalled(s) => format!("killed by signal {s}"),
            StepEnd::TimedOut => "timed out (its process group was killed)".into(),
            StepEnd::Cancelled => "cancelled (its process group was killed)".into(),
            StepEnd::SpawnFailed(e) => format!("could not start: {e}"),
        }
    }
}

/// The captured output of a step, bounded: the first and the last lines are kept when a step
/// prints more than [`Output::MAX_LINES`].
#[derive(Clone, Debug, Default)]
pub struct Output {
    head: Vec<String>,
    tail: VecDeque<String>,
    dropped: usize,
}

impl Output {
    pub const MAX_LINES: usize = 20_000;
    const MAX_LINE_CHARS: usize = 4_000;

    fn push(&mut self, mut line: String) {
        if line.len() > Self::MAX_LINE_CHARS {
            let cut = (0..=Self::MAX_LINE_CHARS)
                .rev()
                .find(|i| line.is_char_boundary(*i))
                .unwrap_or(0);
            line.truncate(cut);
            line.push('…');
        }
        if self.head.len() < Self::MAX_LINES / 2 {
            self.head.push(line);
            return;
        }
        self.tail.push_back(line);
        if self.tail.len() > Self::MAX_LINES / 2 {
            self.tail.pop_front();
            self.dropped += 1;
        }
    }

    /// Every kept line, with a marker where lines were dropped.
    pub fn text(&self) -> String {
        let mut lines: Vec<String> = self.head.clone();
        if self.dropped > 0 {
            lines.push(format!("[… {} lines not kept …]", self.dropped));
        }
        lines.extend(self.tail.iter().cloned());
        lines.join("\n")
    }

    /// The last `n` lines.
    pub fn last_lines(&self, n: usize) -> String {
        let all: Vec<&String> = self.head.iter().chain(self.tail.iter()).collect();
        let start = all.len().saturating_sub(n);
        all[start..].iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    }
}

#[derive(Clone, Debug)]
pub struct StepResult {
    pub end: StepEnd,
    pub output: Output,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Replaces every configured secret value in `text` with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// Masks `secrets` in one line of output, and each line of a multi-line secret (a PEM key printed
/// by a step arrives one line at a time).
fn mask_lines(line: &str, secrets: &[String]) -> String {
    let mut out = mask(line, secrets);
    for s in secrets.iter().filter(|s| s.contains('\n')) {
        let parts: Vec<String> = s.lines().map(str::to_string).collect();
        out = mask(&out, &parts);
    }
    out
}

/// Where the running groups are recorded; `None` runs without crash bookkeeping (tools, tests of
/// the runner itself).
#[derive(Clone)]
pub struct Registry {
    pool: PgPool,
    host: String,
}

impl Registry {
    pub fn new(pool: PgPool) -> Self {
        Registry {
            pool,
            host: host_identity(),
        }
    }

    async fn record(&self, pgid: i32, what: &str) {
        let r = sqlx::query("INSERT INTO step_processes (pgid, host, what, started_at) VALUES ($1, $2, $3, now()) ON CONFLICT (host, pgid) DO UPDATE SET what = $3, started_at = now()")
            .bind(pgid)
            .bind(&self.host)
            .bind(what)
            .execute(&self.pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(pgid, error = %e, "could not record a step's process group");
        }
    }

    async fn forget(&self, pgid: i32) {
        let _ = sqlx::query("DELETE FROM step_processes WHERE host = $1 AND pgid = $2")
            .bind(&self.host)
            .bind(pgid)
            .execute(&self.pool)
            .await;
    }

    /// Kills the process groups a previous run of a bot on this host left behind, and forgets
    /// them. Call at start, before resuming any work. Returns what was killed.
    pub async fn reap_leftovers(&self, what_prefix: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(i32, String)> =
            sqlx::query_as("DELETE FROM step_processes WHERE host = $1 AND what LIKE $2 || '%' RETURNING pgid, what")
                .bind(&self.host)
                .bind(what_prefix)
                .fetch_all(&self.pool)
                .await?;
        for (pgid, what) in &rows {
            tracing::warn!(pgid, what, "killing a step left running by a previous run");
            kill_group(*pgid, libc::SIGKILL);
        }
        Ok(rows.into_iter().map(|(_, w)| w).collect())
    }
}

/// This machine and boot: process group ids are only meaningful within one boot of one host.
fn host_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}/{}", host.trim(), boot.trim())
}

/// Whether any process of group `pgid` is left (a zombie not yet reaped counts).
fn group_exists(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group has a member we may signal.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// How long a group gets between SIGTERM and SIGKILL when we stop it.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the step's shell exits, how long we keep reading output its leftovers might still hold.
const DRAIN: Duration = Duration::from_millis(500);

/// Runs one step to its end. `cancel` turning true stops it (the group is killed). `what` names it
/// in the registry, e.g. `nightly:env-4:create:infra`.
pub async fn run(
    spec: &StepSpec,
    what: &str,
    registry: Option<&Registry>,
    mut cancel: watch::Receiver<bool>,
) -> StepResult {
    let started_at = Utc::now();
    let output = Arc::new(Mutex::new(Output::default()));
    let resolved = match spec.sandbox.resolve(&crate::settings::ProcessEnv, &spec.env) {
        Ok(r) => r,
        Err(e) => {
            return StepResult {
                end: StepEnd::SpawnFailed(e.to_string()),
                output: Output::default(),
                started_at,
                finished_at: Utc::now(),
            };
        }
    };
    let masked = Arc::new(resolved.masked);
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.dir)
        .env_clear()
        .envs(resolved.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = spec.sandbox.user() {
        // As root, std also clears the supplementary groups before switching (setgroups(0)).
        cmd.uid(user.uid).gid(user.gid);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return StepResult {
                end: StepEnd::SpawnFailed(format!("{e} (in {})", spec.dir.display())),
                output: Output::default(),
                started_at,
                finished_at: Utc::now(),
            };
        }
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    if let Some(r) = registry {
        r.record(pgid, what).await;
    }
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_lines(s, output.clone(), masked.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_lines(s, output.clone(), masked.clone()))),
    ];

    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(code), _) => StepEnd::Exited(code),
                (None, Some(sig)) => StepEnd::Signalled(sig),
                (None, None) => StepEnd::Signalled(0),
            },
            Err(e) => StepEnd::SpawnFailed(e.to_string()),
        },
        _ = tokio::time::sleep(spec.timeout) => StepEnd::TimedOut,
        _ = cancel.wait_for(|c| *c) => StepEnd::Cancelled,
    };
    if matches!(end, StepEnd::TimedOut | StepEnd::Cancelled) {
        kill_group(pgid, libc::SIGTERM);
        // The grace is for the whole group, not only its leader: the leader is usually the
        // `sh -c` wrapper, which dies of SIGTERM at once, while the script it runs traps SIGTERM
        // to clean up. Killing the group as soon as the wrapper is gone gave it no grace at all.
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        let _ = tokio::time::timeout_at(deadline, child.wait()).await;
        while group_exists(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever the shell left running in its group goes with it.
    kill_group(pgid, libc::SIGKILL);
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(DRAIN, reader).await;
    }
    if let Some(r) = registry {
        r.forget(pgid).await;
    }
    let output = output.lock().expect("output mutex").clone();
    StepResult {
        end,
        output,
        started_at,
        finished_at: Utc::now(),
    }
}

/// Runs `step` for each of `items` (one build level), at most `parallelism` at once. The first
/// failure cancels the rest: each step gets a cancel flag that turns true when a sibling failed or
/// `cancel` did, and items not started by then are not started at all (`None`). Results are in the
/// order of `items`.
pub async fn run_level<'a, T, E, F, Fut>(
    items: &'a [T],
    parallelism: usize,
    cancel: &watch::Receiver<bool>,
    step: F,
) -> Vec<Option<Result<(), E>>>
where
    F: Fn(&'a T, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let (level_tx, level_rx) = watch::channel(*cancel.borrow());
    let slots = tokio::sync::Semaphore::new(parallelism.max(1));
    let (level_tx, slots, step) = (&level_tx, &slots, &step);
    let runs = futures::future::join_all(items.iter().map(|item| {
        let level_rx = level_rx.clone();
        async move {
            let _slot = slots.acquire().await.ok()?;
            if *level_rx.borrow() {
                return None;
            }
            let result = step(item, level_rx).await;
            if result.is_err() {
                level_tx.send_replace(true);
            }
            Some(result)
        }
    }));
    let mut outer = cancel.clone();
    let forward = async move {
        // A dropped sender means nobody can cancel any more, not "cancel".
        if outer.wait_for(|c| *c).await.is_ok() {
            level_tx.send_replace(true);
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        results = runs => results,
        _ = forward => unreachable!("forwarding the cancel flag never ends"),
    }
}

/// Reads a stream line by line into `output`, masking the values of the step's secret variables
/// as they arrive, so no log of the step (stored, shown or tailed) ever holds them.
async fn read_lines(stream: impl AsyncRead + Unpin, output: Arc<Mutex<Output>>, masked: Arc<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                let line = if masked.is_empty() {
                    line
                } else {
                    mask_lines(&line, &masked)
                };
                output.lock().expect("output mutex").push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> StepSpec {
        StepSpec {
            command: command.into(),
            dir: std::env::temp_dir(),
            env: vec![("STEP_GREETING".into(), "hello $(rm -rf /)".into())],
            sandbox: env::StepEnv::default(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn never() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    #[tokio::test]
    async fn captures_output_and_exit_status() {
        let r = run(
            &spec("echo \"$STEP_GREETING\"; echo oops >&2; exit 3", 10_000),
            "t",
            None,
            never(),
        )
        .await;
        assert_eq!(r.end, StepEnd::Exited(3));
        let text = r.output.text();
        assert!(
            text.contains("hello $(rm -rf /)"),
            "variables arrive verbatim, never interpolated: {text}"
        );
        assert!(text.contains("oops"));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let marker = std::env::temp_dir().join(format!("step-grandchild-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // A grandchild that would write the marker after 2 s, unless the group dies first.
        let cmd = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let t0 = std::time::Instant::now();
        let r = run(&spec(&cmd, 200), "t", None, never()).await;
        assert_eq!(r.end, StepEnd::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the grandchild survived the timeout");
    }

    #[tokio::test]
    async fn cancelling_stops_the_step() {
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move { run(&spec("sleep 30", 60_000), "t", None, rx).await });
        tx.send(true).unwrap();
        assert_eq!(handle.await.unwrap().end, StepEnd::Cancelled);
    }

    #[tokio::test]
    async fn a_level_runs_bounded_in_parallel_and_stops_at_the_first_failure() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..6).collect();
        let results = run_level(&items, 2, &never(), |i, mut cancel| {
            let (running, peak) = (&running, &peak);
            let i = *i;
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let r = if i == 1 {
                    Err("red")
                } else {
                    // The others run until told to stop: only the failure can end them.
                    let _ = cancel.wait_for(|c| *c).await;
                    Ok(())
                };
                running.fetch_sub(1, Ordering::SeqCst);
                r
            }
        })
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 2, "at most `parallelism` at once");
        assert_eq!(results[1], Some(Err("red")));
        assert_eq!(results[0], Some(Ok(())), "the sibling was cancelled, and ended");
        assert!(
            results[2..].iter().all(Option::is_none),
            "nothing starts after a failure: {results:?}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_level_starts_nothing() {
        let (tx, rx) = watch::channel(true);
        let results = run_level(&[1, 2], 4, &rx, |_, _| async { Ok::<(), ()>(()) }).await;
        drop(tx);
        assert_eq!(results, vec![None, None]);
    }

    #[test]
    fn output_is_bounded_and_keeps_both_ends() {
        let mut o = Output::default();
        for i in 0..(Output::MAX_LINES + 500) {
            o.push(format!("line {i}"));
        }
        let text = o.text();
        assert!(text.starts_with("line 0\n"));
        assert!(text.contains("[… 500 lines not kept …]"));
        assert!(o.last_lines(2).ends_with(&format!("line {}", Output::MAX_LINES + 499)));
        assert_eq!(o.last_lines(50).lines().count(), 50);
    }

    #[tokio::test]
    async fn a_step_sees_none_of_the_bots_environment_and_secret_table_values_are_masked() {
        // The test process stands for the bot: whatever it has must not reach the step.
        let table = std::collections::BTreeMap::from([
            ("SHOWN".to_string(), env::EnvValue::Literal("plain-value".into())),
            ("PASSED".to_string(), env::EnvValue::FromEnv("CARGO_PKG_NAME".into())),
        ]);
        let mut s = spec("env; echo \"token is $PASSED\"", 10_000);
        s.sandbox = env::StepEnv::default().with_table(&table).unwrap();
        let r = run(&s, "t", None, never()).await;
        assert_eq!(r.end, StepEnd::Exited(0));
        let text = r.output.text();
        let names: Vec<&str> = text.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        for n in &names {
            assert!(
                [
                    "PATH",
                    "HOME",
                    "LANG",
                    "TZ",
                    "PWD",
                    "SHLVL",
                    "_",
                    "OLDPWD",
                    "STEP_GREETING",
                    "SHOWN",
                    "PASSED"
                ]
                .contains(n)
                    || env::DEFAULT_PASS_ENV.contains(n),
                "the step saw {n}: {text}"
            );
        }
        assert!(names.contains(&"PATH") && names.contains(&"HOME"), "{text}");
        assert!(text.contains("SHOWN=plain-value"), "literals are shown: {text}");
        assert!(text.contains("token is ***"), "from_env values are masked: {text}");
        assert!(
            !text.contains("shared"),
            "the masked value never reaches the log: {text}"
        );
    }

    #[tokio::test]
    async fn an_unresolvable_table_entry_fails_the_step_clearly_without_running_it() {
        let table = std::collections::BTreeMap::from([(
            "TOKEN".to_string(),
            env::EnvValue::FromFile("/nonexistent/secret".into()),
        )]);
        let mut s = spec("echo ran", 10_000);
        s.sandbox = env::StepEnv::default().with_table(&table).unwrap();
        let r = run(&s, "t", None, never()).await;
        match r.end {
            StepEnd::SpawnFailed(m) => assert!(m.contains("TOKEN") && m.contains("/nonexistent/secret"), "{m}"),
            other => panic!("expected a refusal to start, got {other:?}"),
        }
        assert!(r.output.text().is_empty());
    }

    /// As root (CI and the container's init), `step_user` drops to another user: the step cannot
    /// read a file only the bot may read, nor the bot's `/proc/<pid>/environ`.
    #[tokio::test]
    async fn a_step_user_cannot_read_the_bots_secrets() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("skipped: switching users needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("slack-token");
        std::fs::write(&secret, "xoxb-very-secret").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut s = spec(
            &format!(
                "id -u; cat {} || echo no-file; tr '\\0' '\\n' < /proc/$PPID/environ || echo no-environ",
                secret.display()
            ),
            10_000,
        );
        s.dir = PathBuf::from("/");
        s.sandbox = env::StepEnv::new(None, Some("nobody")).unwrap();
        let r = run(&s, "t", None, never()).await;
        let text = r.output.text();
        assert_ne!(text.lines().next(), Some("0"), "still root: {text}");
        assert!(text.contains("no-file") && !text.contains("xoxb-very-secret"), "{text}");
        assert!(text.contains("no-environ") && !text.contains("CARGO"), "{text}");
    }

    #[test]
    fn masks_secret_values() {
        assert_eq!(
            mask("token=xoxb-123 ok", &["xoxb-123".into(), "".into()]),
            "token=*** ok"
        );
    }
}
