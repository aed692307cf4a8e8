//! The processor of stored GitHub deliveries (SPEC §5.4): deliveries never block each other, and a
//! retried one never runs a command twice.
//!
//! - **Claiming** ([`store::claim`]): the oldest due delivery, not behind an unfinished earlier one
//!   about the same pull request, is claimed for [`CLAIM`] in one statement (`FOR UPDATE SKIP
//!   LOCKED`); no transaction is held while GitHub is asked anything, and a crashed replica's claim
//!   runs out. Replicas share the work.
//! - **Retrying** ([`retry_delay`]): a failed attempt is tried again after a growing delay (5 s,
//!   30 s, 1.5 min, 4 min, 9 min: six attempts over about a quarter of an hour); GitHub refusing for
//!   good (403, 404, 410, 422: a missing App permission, a PR gone) is tried [`PERMANENT_ATTEMPTS`]
//!   times only. After the last attempt the delivery is set aside as failed with its error (the
//!   control center lists it, `/metrics` counts it) and the deliveries behind it go on.
//! - **Once** ([`Once`]): each command of a comment records its answer in the transaction of its
//!   own write (the queue item inserted or cancelled), so a retry skips it; a `pull_request`
//!   change drops the item and records the effect in one transaction. The effect and the reply to
//!   post are committed before the reply is posted; a retry after that only posts the reply.
//!   GitHub reads before a write (permission, PR state) may be repeated by a retry; the write not.
//! - **The last attempt answers**: until then our own trouble (GitHub unavailable, the database)
//!   fails the attempt so it is retried; the last attempt (and the one after GitHub refused for
//!   good) answers it on the PR, as a Slack command would ("GitHub is unavailable…").

pub mod store;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shared::github::{GithubError, PrNumber, RepoName};
use sqlx::PgConnection;
use tokio::sync::watch;

use crate::handler::{CommentRun, Gandalf};
use crate::webhook::{Event, decode};
use store::{Claimed, Fenced};

/// How long a claim lasts: longer than any attempt ([`ATTEMPT_TIMEOUT`]), so a live replica never
/// loses a delivery it works on, and a crashed one's delivery waits at most this long.
pub const CLAIM: Duration = Duration::from_secs(10 * 60);

/// An attempt that has not finished by then is abandoned (and retried), well before its claim runs
/// out, so two replicas never work on one delivery at once.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Attempts of a delivery in all, the first included.
pub const ATTEMPTS: u32 = 6;

/// Attempts of a delivery GitHub refused for good: once more, in case the refusal was GitHub
/// catching up (a PR just opened), then set aside.
pub const PERMANENT_ATTEMPTS: u32 = 2;

/// The wait after each failed attempt, before the jitter: about a quarter of an hour in all.
const DELAYS: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(90),
    Duration::from_secs(4 * 60),
    Duration::from_secs(9 * 60),
];

/// How a failed attempt failed, for how often it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// GitHub down or slow, the database, a timeout: asking again later may work.
    Transient,
    /// GitHub refused for good: the App lacks a permission (403), the PR or repository is gone
    /// (404, 410), GitHub will not take what we sent (422).
    Permanent,
}

/// Sorts an attempt's error by the GitHub answer in its chain (SPEC §5.4).
pub fn classify(e: &anyhow::Error) -> Failure {
    let refused = e.chain().find_map(|c| match c.downcast_ref::<GithubError>() {
        Some(GithubError::Refused { status, .. }) => Some(*status),
        _ => None,
    });
    match refused {
        Some(403 | 404 | 410 | 422) => Failure::Permanent,
        _ => Failure::Transient,
    }
}

/// Whether the database could not be reached (connection lost or refused, the server shutting
/// down or starting): not the delivery's fault, so the attempt is given back and made again once
/// the database answers, without a backoff. A database error about the delivery's own data
/// (a constraint, a timeout) is an ordinary [`Failure::Transient`].
pub fn database_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<sqlx::Error>() {
        Some(
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed,
        ) => true,
        // Class 08: connection exception; 57P01-03: admin or crash shutdown, cannot connect now.
        Some(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    })
}

/// How many attempts a delivery gets, by how its last one failed.
pub fn max_attempts(failure: Failure) -> u32 {
    match failure {
        Failure::Transient => ATTEMPTS,
        Failure::Permanent => PERMANENT_ATTEMPTS,
    }
}

/// The wait before the next attempt after attempt number `attempt` (from 1) failed, or `None` when
/// it was the last: the delivery is set aside. `seed` spreads deliveries that failed together over
/// up to a fifth more of the wait, so they are not retried in one burst.
pub fn retry_delay(attempt: u32, failure: Failure, seed: u64) -> Option<Duration> {
    if attempt >= max_attempts(failure) {
        return None;
    }
    let base = DELAYS[(attempt.max(1) as usize - 1).min(DELAYS.len() - 1)];
    let fifth_millis = u64::try_from(base.as_millis() / 5).unwrap_or(u64::MAX);
    Some(base + Duration::from_millis(seed % (fifth_millis + 1)))
}

fn seed(id: &str, attempt: u32) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (id, attempt).hash(&mut h);
    h.finish()
}

/// Who claims: unique per processor, across replicas and within one process (the tests run two).
fn claimant() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "gandalf".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{host}:{}:{started}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One command of a comment, run for a claimed delivery: where its answer is recorded, once.
pub struct Once<'a> {
    pub delivery: &'a str,
    pub claimant: &'a str,
    /// The command's place in the comment, from 0.
    pub position: usize,
    /// The command as typed, the heading of its answer when the comment has several.
    pub command: &'a str,
    recorded: AtomicBool,
}

impl<'a> Once<'a> {
    pub fn new(delivery: &'a str, claimant: &'a str, position: usize, command: &'a str) -> Self {
        Once {
            delivery,
            claimant,
            position,
            command,
            recorded: AtomicBool::new(false),
        }
    }

    /// Records the command's answer in `conn`'s transaction: the one of the command's write, so
    /// both commit or neither. Fails (and so rolls the write back) when the claim was lost.
    pub async fn record(&self, conn: &mut PgConnection, answer: &str) -> anyhow::Result<()> {
        store::record_answer(conn, self.delivery, self.claimant, self.position, self.command, answer).await?;
        self.recorded.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Once::record`] ran (its transaction may still have to commit).
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }
}

/// Works through stored deliveries: at start (leftovers of a crash), whenever one arrives or a
/// claim is released, and when a retry is due.
pub async fn process_deliveries(gandalf: Gandalf, mut shutdown: watch::Receiver<bool>) {
    let me = claimant();
    loop {
        if let Err(e) = drain(&gandalf, &me, &mut shutdown).await {
            tracing::warn!(error = format!("{e:#}"), "delivery processor stumbled; starting over");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn drain(gandalf: &Gandalf, me: &str, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut listener = shared::db::listen(&gandalf.pool, &["github_deliveries"]).await?;
    {
        // Starting (over): no attempt of ours is under way, so a claim of ours is a leftover.
        let mut conn = gandalf.pool.acquire().await?;
        store::release_claims(&mut conn, me).await?;
    }
    loop {
        while process_one(gandalf, me).await? {}
        let next = {
            let mut conn = gandalf.pool.acquire().await?;
            store::next_due(&mut conn, gandalf.clock.now()).await?
        };
        tokio::select! {
            n = shared::db::next_change(&mut listener) => { n?; }
            _ = gandalf.clock.sleep_until(next.unwrap_or_default()), if next.is_some() => {}
            // Belt and braces: a notification lost with its connection is made up for.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Claims one delivery and makes an attempt at it; `false` when none was due.
async fn process_one(gandalf: &Gandalf, me: &str) -> anyhow::Result<bool> {
    let now = gandalf.clock.now();
    let claimed = {
        let mut conn = gandalf.pool.acquire().await?;
        store::claim(&mut conn, me, now, now + CLAIM).await?
    };
    let Some(d) = claimed else { return Ok(false) };
    let last_failure = if d.last_error_permanent {
        Failure::Permanent
    } else {
        Failure::Transient
    };
    let outcome = if d.attempt > max_attempts(last_failure) {
        // Its attempts ran out without one failing: each stopped with its replica.
        Err(anyhow::anyhow!(
            "the previous attempt did not finish (its replica stopped?), and no attempts are left"
        ))
    } else {
        let last = d.attempt >= max_attempts(last_failure);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(gandalf, me, &d, last)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the attempt took longer than {ATTEMPT_TIMEOUT:?}")),
        }
    };
    let Err(e) = outcome else { return Ok(true) };
    if e.chain().any(|c| c.is::<Fenced>()) {
        tracing::warn!(delivery = d.id, "another replica took this delivery over; leaving it");
        return Ok(true);
    }
    if database_unreachable(&e) {
        tracing::warn!(
            delivery = d.id,
            error = format!("{e:#}"),
            "the database is unreachable; the delivery will be tried again once it answers"
        );
        if let Ok(mut conn) = gandalf.pool.acquire().await {
            store::give_back(&mut conn, &d.id, me).await?;
        }
        // The processor starts over (and releases the claim, if giving it back failed).
        return Err(e);
    }
    let failure = if d.attempt > max_attempts(last_failure) {
        last_failure
    } else {
        classify(&e)
    };
    let delay = retry_delay(d.attempt, failure, seed(&d.id, d.attempt));
    let now = gandalf.clock.now();
    let error = format!("{e:#}");
    match delay {
        Some(delay) => tracing::warn!(
            delivery = d.id,
            event = d.event,
            attempt = d.attempt,
            error,
            retry_in = ?delay,
            "delivery not processed yet; it will be tried again"
        ),
        None => tracing::error!(
            delivery = d.id,
            event = d.event,
            attempts = d.attempt,
            error,
            "delivery set aside as failed after its last attempt"
        ),
    }
    let retry_at = delay.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d);
    let mut conn = gandalf.pool.acquire().await?;
    store::attempt_failed(
        &mut conn,
        &d.id,
        me,
        &error,
        failure == Failure::Permanent,
        retry_at,
        now,
    )
    .await?;
    Ok(true)
}

/// One attempt: the effect unless a previous attempt committed it, then the reply, then done.
async fn attempt(gandalf: &Gandalf, me: &str, d: &Claimed, last: bool) -> anyhow::Result<()> {
    let event = decode(&d.event, &d.payload, &gandalf.config.bot_login);
    let reply = if d.executed {
        d.reply.clone()
    } else {
        execute(gandalf, me, d, &event, last).await?
    };
    if let (Some(reply), Some((repo, number))) = (reply, event.pull()) {
        comment(gandalf, repo, number, &reply).await?;
    }
    let mut conn = gandalf.pool.acquire().await?;
    store::processed(&mut conn, &d.id, me, gandalf.clock.now()).await
}

/// Runs what the delivery asks and commits its effect with the reply to post.
async fn execute(
    gandalf: &Gandalf,
    me: &str,
    d: &Claimed,
    event: &Event,
    last: bool,
) -> anyhow::Result<Option<String>> {
    let now = || gandalf.clock.now();
    let reply = match event {
        Event::Comment {
            repo,
            number,
            author,
            body,
        } => {
            // Each command commits its answer with its write (`Once`); what is left is the reply.
            let run = CommentRun {
                delivery: &d.id,
                claimant: me,
                done: &d.answers,
                answer_trouble: last,
            };
            let reply = gandalf
                .handle_delivered_comment(repo, *number, author, body, &run)
                .await?;
            let mut conn = gandalf.pool.acquire().await?;
            store::executed(&mut conn, &d.id, me, reply.as_deref(), now()).await?;
            reply
        }
        Event::PullRequest { repo, number, change } => {
            let mut tx = gandalf.pool.begin().await?;
            let note = gandalf.pull_request_changed(&mut tx, repo, *number, change).await?;
            store::executed(&mut tx, &d.id, me, note.as_deref(), now()).await?;
            tx.commit().await?;
            note
        }
        Event::Reviewed { repo, number } => {
            let note = crate::reviews::on_review(gandalf, repo, *number).await?;
            let mut conn = gandalf.pool.acquire().await?;
            store::executed(&mut conn, &d.id, me, note.as_deref(), now()).await?;
            note
        }
        // SPEC §5.7 (issue 17): what CI reported, for a verifier waiting on `required_checks`.
        Event::Ci { repo, sha, report } => {
            let mut tx = gandalf.pool.begin().await?;
            match report {
                Some(r) => {
                    crate::checks::required::record(&mut tx, repo, sha, r).await?;
                }
                None => crate::checks::required::poke(&mut tx, repo, sha).await?,
            }
            store::executed(&mut tx, &d.id, me, None, now()).await?;
            tx.commit().await?;
            None
        }
        Event::Ignored => {
            let mut conn = gandalf.pool.acquire().await?;
            store::executed(&mut conn, &d.id, me, None, now()).await?;
            None
        }
    };
    Ok(reply)
}

async fn comment(gandalf: &Gandalf, repo: &RepoName, number: PrNumber, body: &str) -> anyhow::Result<()> {
    let Some(gh) = gandalf.github.as_ref() else {
        return Ok(());
    };
    gh.comment(repo, number, body).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> anyhow::Error {
        anyhow::Error::new(GithubError::Refused {
            status,
            message: "no".into(),
        })
        .context("posting the reply")
    }

    #[test]
    fn github_refusing_for_good_is_permanent_and_everything_else_transient() {
        for status in [403, 404, 410, 422] {
            assert_eq!(classify(&refused(status)), Failure::Permanent, "{status}");
        }
        for status in [401, 409, 500] {
            assert_eq!(classify(&refused(status)), Failure::Transient, "{status}");
        }
        let down = anyhow::Error::new(GithubError::Unavailable("HTTP 502".into()));
        assert_eq!(classify(&down), Failure::Transient);
        assert_eq!(classify(&anyhow::anyhow!("pool timed out")), Failure::Transient);
    }

    #[test]
    fn losing_the_database_is_not_the_deliverys_fault() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(database_unreachable(
            &anyhow::Error::new(sqlx::Error::Io(io)).context("claiming")
        ));
        assert!(database_unreachable(&anyhow::Error::new(sqlx::Error::PoolTimedOut)));
        assert!(!database_unreachable(&anyhow::Error::new(sqlx::Error::RowNotFound)));
        assert!(!database_unreachable(&refused(502)));
        assert!(!database_unreachable(&anyhow::anyhow!("connection reset")));
    }

    #[test]
    fn six_attempts_over_a_quarter_of_an_hour_then_set_aside() {
        let waits: Vec<Duration> = (1..=ATTEMPTS)
            .map_while(|a| retry_delay(a, Failure::Transient, 0))
            .collect();
        assert_eq!(waits.len() as u32, ATTEMPTS - 1, "five waits between six attempts");
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "growing: {waits:?}");
        let total: Duration = waits.iter().sum();
        assert!(
            total >= Duration::from_secs(10 * 60) && total <= Duration::from_secs(20 * 60),
            "{total:?}"
        );
        assert!(waits[0] <= Duration::from_secs(10), "a first retry within seconds");
        assert_eq!(retry_delay(ATTEMPTS, Failure::Transient, 0), None);
        assert_eq!(retry_delay(ATTEMPTS + 3, Failure::Transient, 0), None);
    }

    #[test]
    fn a_permanent_refusal_is_tried_once_more_only() {
        assert_eq!(retry_delay(1, Failure::Permanent, 0), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(PERMANENT_ATTEMPTS, Failure::Permanent, 0), None);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth_and_differs_between_deliveries() {
        for attempt in 1..ATTEMPTS {
            let base = retry_delay(attempt, Failure::Transient, 0).unwrap();
            for s in [1, 7, u64::MAX, seed("a", attempt), seed("b", attempt)] {
                let d = retry_delay(attempt, Failure::Transient, s).unwrap();
                assert!(d >= base && d <= base + base / 5, "{attempt}: {d:?} vs {base:?}");
            }
        }
        assert_ne!(seed("delivery-1", 1), seed("delivery-2", 1));
    }

    #[test]
    fn claimants_differ_within_one_process() {
        assert_ne!(claimant(), claimant());
    }
}
