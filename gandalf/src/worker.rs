//! The queue worker: on exactly one replica (the `gandalf` lease, SPEC §8), one task per
//! repository takes the next PR and verifies it ([`crate::verify`]), then the next, woken by
//! Postgres notifications rather than a polling tick — the gap between one PR landing and the next
//! starting is a query, not a timer.
//!
//! The replica owns the queues through a lease with an epoch ([`shared::fence`]), not a session
//! advisory lock: such a lock vanishes the instant its session dies while the verification's steps
//! keep running, and a second replica would verify (and land) beside the first. Every write of a
//! verification checks the lease; when it cannot be renewed the worker stops its verifications
//! (their steps are killed) before it can expire, and another replica takes over only after it has.
//!
//! At the start of ownership it kills step processes a crashed Gandalf left on this host, and puts
//! every item that was verifying back in the queue (a verification starts over, §5.3); one that
//! was landing is checked on GitHub first, so it is never landed twice. A reconciliation with
//! GitHub (open PRs and their heads) runs at start and every few minutes, for deliveries that never
//! arrived.

use std::sync::Arc;
use std::time::Duration;

use shared::copies::Copies;
use shared::envs::store as envs;
use shared::fence::{self, Lease};
use shared::github::Github;
use shared::ids::{EnvName, Holder};
use shared::steps::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::batch;
use crate::config::RepoConfig;
use crate::drop_reason::DropReason;
use crate::handler::Gandalf;
use crate::messages;
use crate::store::{self, Item, ItemState};
use crate::verify::{LEASE_MARGIN, Outcome, StopHandle, StopReason, Verifier};

/// How often the queues are reconciled with GitHub.
const RECONCILE_EVERY: Duration = Duration::from_secs(300);
/// The lease the queues are worked under (`work_lease_kinds` holds its time to live).
pub const LEASE_KIND: &str = "gandalf";
pub const LEASE_KEY: &str = "queues";

#[derive(Clone)]
pub struct QueueWorker {
    pub gandalf: Gandalf,
    pub registry: Option<Registry>,
    /// Secret values masked in step logs.
    pub mask: Arc<Vec<String>>,
}

impl QueueWorker {
    /// Runs until shutdown: competes for the queues' lease, then works every repository's queue
    /// until shutdown or until the lease cannot be kept (then competes again).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let Some(github) = self.gandalf.github.clone() else {
            return;
        };
        loop {
            let Some(lease) = fence::acquire(
                &self.gandalf.pool,
                LEASE_KIND,
                LEASE_KEY,
                Duration::from_secs(2),
                shutdown.clone(),
            )
            .await
            else {
                return;
            };
            tracing::info!(epoch = lease.epoch, "working the merge queues on this replica");
            let keep = lease.keep_alive(shutdown.clone());
            self.clear_leftovers().await;
            // Raised at shutdown, or when the lease could not be renewed in time: every
            // verification stops and kills its steps, before the lease can expire.
            let stop = keep.stop();
            let owner = Owner {
                lease: lease.clone(),
                stop: stop.clone(),
                lost: keep.lost_watch(),
            };
            let mut tasks = JoinSet::new();
            for repo in self.gandalf.config.repos.clone() {
                tasks.spawn(self.clone().work_repo(github.clone(), repo, owner.clone()));
            }
            tasks.spawn(self.clone().reconcile_periodically(github.clone(), stop.clone()));
            while tasks.join_next().await.is_some() {}
            let lost = keep.lost();
            drop(keep);
            if lost {
                tracing::warn!(epoch = lease.epoch, "lost the queues' lease; stopped working them");
                continue;
            }
            // Shutting down: free the queues for another replica at once rather than at expiry.
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %shared::db::short_db_error(&e), "could not release the queues' lease");
            }
            return;
        }
    }

    /// What a crashed owner may have left on this host: step processes and working copies.
    async fn clear_leftovers(&self) {
        if let Some(registry) = &self.registry {
            match registry.reap_leftovers("gandalf:").await {
                Ok(killed) if !killed.is_empty() => tracing::warn!(?killed, "killed steps a previous run left"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not look for leftover steps"),
            }
        }
        // A resumed verification makes a fresh copy.
        match self.gandalf.mirrors.remove_leftovers() {
            Ok(n) if n > 0 => tracing::warn!(removed = n, "removed working copies a previous run left"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove leftover working copies"),
        }
    }

    async fn work_repo(self, github: Github, repo: RepoConfig, owner: Owner) {
        let stop = owner.stop.clone();
        // One per repository for as long as this replica leads: it asks GitHub for the clone URL
        // once, not at every verification.
        let copies = repo.checkout.as_ref().and_then(|checkout| {
            Copies::new(
                self.gandalf.mirrors.clone(),
                repo.name.clone(),
                checkout,
                Some(github.clone()),
                repo.sandbox.user().cloned(),
            )
        });
        loop {
            match self.work_repo_once(&github, &repo, copies.as_ref(), &owner).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(repo = %repo.name, error = format!("{e:#}"), "queue worker stumbled; starting over");
                    let mut stop = stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    fn verifier<'a>(
        &'a self,
        github: &'a Github,
        repo: &'a RepoConfig,
        copies: Option<&'a Copies>,
        owner: &'a Owner,
    ) -> Verifier<'a> {
        Verifier {
            gandalf: &self.gandalf,
            github,
            repo,
            copies,
            registry: self.registry.as_ref(),
            mask: &self.mask,
            lease: &owner.lease,
            lease_lost: owner.lost.clone(),
        }
    }

    async fn work_repo_once(
        &self,
        github: &Github,
        repo: &RepoConfig,
        copies: Option<&Copies>,
        owner: &Owner,
    ) -> anyhow::Result<()> {
        let mut stop = owner.stop.clone();
        let mut listener = shared::db::listen(&self.gandalf.pool, &["gandalf_queue"]).await?;
        self.recover(github, repo, copies, owner).await?;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let next = {
                let mut conn = self.gandalf.pool.acquire().await?;
                // (`gandalf_queue_length` is read from the database at each scrape, not here.)
                let paused = store::pause_state(&mut conn, &repo.name).await?.paused;
                if paused {
                    None
                } else {
                    store::next_to_verify(&mut conn, &repo.name).await?
                }
            };
            match next {
                Some(item) => {
                    // Drain the notifications our own work caused while verifying.
                    while listener.next_buffered().is_some() {}
                    let members = self.candidate_members(repo, item).await?;
                    self.verify_one(github, repo, copies, members, owner).await?;
                }
                None => {
                    tokio::select! {
                        n = shared::db::next_change(&mut listener) => { n?; }
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                }
            }
        }
    }

    /// The PRs of the next candidate, `front` first (SPEC §5.6): with `batch_size` above one, up to
    /// that many queued PRs of `front`'s priority in queue order, or the half of a known-red group
    /// that bisection verifies next; an urgent PR alone.
    async fn candidate_members(&self, repo: &RepoConfig, front: Item) -> anyhow::Result<Vec<Item>> {
        if front.priority == shared::queue::URGENT || front.state != ItemState::Queued {
            return Ok(vec![front]);
        }
        let mut conn = self.gandalf.pool.acquire().await?;
        let size = crate::handler::candidate_size(&mut conn, repo).await?;
        let queued: Vec<Item> = store::queue(&mut conn, &repo.name)
            .await?
            .into_iter()
            .filter(|i| i.state == ItemState::Queued && i.priority == front.priority)
            .collect();
        let prs: Vec<_> = queued.iter().map(|i| i.pr).collect();
        let known = store::known_red(&mut conn, &repo.name).await?;
        let mut knowledge = batch::Knowledge {
            known_red: known.clone(),
        };
        let Some(candidate) = knowledge.next(&prs, size) else {
            return Ok(vec![front]);
        };
        if knowledge.known_red != known {
            // The group it knew about is no longer at the front: forgotten.
            store::set_known_red(&mut conn, &repo.name, &knowledge.known_red).await?;
        }
        let members: Vec<Item> = candidate
            .members
            .iter()
            .filter_map(|pr| queued.iter().find(|i| i.pr == *pr).cloned())
            .collect();
        if members.first().map(|m| m.id) != Some(front.id) {
            return Ok(vec![front]);
        }
        if members.len() > 1 {
            tracing::info!(repo = %repo.name, prs = ?candidate.members, step = ?candidate.step, "verifying a batch");
        }
        Ok(members)
    }

    /// Verifies one candidate with a watcher that stops it when a member is cancelled or dropped,
    /// when the repository's `timeout` passes, or when this replica stops working the queue.
    async fn verify_one(
        &self,
        github: &Github,
        repo: &RepoConfig,
        copies: Option<&Copies>,
        members: Vec<Item>,
        owner: &Owner,
    ) -> anyhow::Result<Outcome> {
        let item = members[0].clone();
        let (handle, verify_stop) = StopHandle::new();
        let watcher = tokio::spawn(watch_item(
            self.gandalf.clone(),
            members.iter().map(|m| m.id).collect(),
            repo.environment.clone(),
            repo.timeout.chrono(),
            handle,
            owner.stop.clone(),
        ));
        tracing::info!(repo = %repo.name, pr = %item.pr, "verifying");
        let outcome = self
            .verifier(github, repo, copies, owner)
            .run(members, verify_stop)
            .await;
        watcher.abort();
        match &outcome {
            Ok(o) => tracing::info!(repo = %repo.name, pr = %item.pr, outcome = o.as_str(), "verification ended"),
            Err(e) => {
                tracing::warn!(repo = %repo.name, pr = %item.pr, error = format!("{e:#}"), "verification interrupted")
            }
        }
        outcome
    }

    /// Puts what a previous leader left verifying back in the queue; a PR that was landing is
    /// checked on GitHub first and concluded as merged if it landed.
    async fn recover(
        &self,
        github: &Github,
        repo: &RepoConfig,
        copies: Option<&Copies>,
        owner: &Owner,
    ) -> anyhow::Result<()> {
        let items = {
            let mut conn = self.gandalf.pool.acquire().await?;
            store::queue(&mut conn, &repo.name).await?
        };
        let verifier = self.verifier(github, repo, copies, owner);
        for item in items.into_iter().filter(|i| i.state.is_verifying()) {
            let mut tx = owner.lease.begin().await?;
            store::interrupt_steps(&mut tx, item.id, self.gandalf.clock.now()).await?;
            tx.commit().await?;
            if item.state == ItemState::Landing
                && let Some(landed) = verifier.landed_already(&item).await?
            {
                tracing::warn!(repo = %repo.name, pr = %item.pr, %landed, "a restart found the PR landed already");
                verifier.landed(&[(item.clone(), landed)]).await?;
                verifier.release_environment().await?;
                continue;
            }
            tracing::warn!(repo = %repo.name, pr = %item.pr, state = item.state.as_str(), "verifying again after a restart");
            let mut tx = owner.lease.begin().await?;
            store::requeue(&mut tx, item.id, messages::interrupted_by_restart()).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn reconcile_periodically(self, github: Github, mut stop: watch::Receiver<bool>) {
        loop {
            for repo in &self.gandalf.config.repos {
                if let Err(e) = reconcile(&self.gandalf, &github, repo).await {
                    tracing::warn!(repo = %repo.name, error = format!("{e:#}"), "could not reconcile with GitHub");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// This replica's ownership of the queues: the lease every write of a verification checks, the
/// signal raised when it must stop (shutdown, or the lease could not be kept), and the one raised
/// only when the lease could not be kept.
#[derive(Clone)]
struct Owner {
    lease: Lease,
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
}

/// When Gandalf's lease of the verification environment gets this close to its end while a
/// verification (or its revert) still runs, it is renewed by [`LEASE_MARGIN`].
const RENEW_BEFORE: chrono::Duration = chrono::Duration::minutes(5);

/// Watches one verifying item: raises the stop when its row is no longer active (cancelled,
/// dropped), when `timeout` has passed since its verification started, when Gandalf no longer holds
/// the verification environment (an admin forced it open), or when the worker stops. While the
/// item verifies or reverts it keeps Gandalf's lease of the environment alive.
async fn watch_item(
    gandalf: Gandalf,
    ids: Vec<i64>,
    env: EnvName,
    timeout: chrono::Duration,
    handle: StopHandle,
    mut worker_stop: watch::Receiver<bool>,
) {
    let Ok(mut listener) = shared::db::listen(&gandalf.pool, &["gandalf_queue", "leases"]).await else {
        return;
    };
    loop {
        // The first member leads (its start is the verification's); any member that ends stops
        // the candidate.
        let mut items = vec![];
        if let Ok(mut conn) = gandalf.pool.acquire().await {
            for id in &ids {
                if let Ok(Some(i)) = store::item(&mut conn, *id).await {
                    items.push(i);
                }
            }
        }
        let item = items.iter().find(|i| i.id == ids[0]).cloned();
        let now = gandalf.clock.now();
        let finished = items.iter().any(|i| i.state.is_finished());
        if finished {
            // Cancelled or dropped: stop. The watch goes on while the revert runs, for the lease.
            handle.raise(StopReason::Withdrawn);
        }
        let started = item
            .as_ref()
            .filter(|i| finished || !matches!(i.state, ItemState::WaitingForEnvironment | ItemState::Queued))
            .and_then(|i| i.verify_started_at);
        let deadline = started.filter(|_| !finished).map(|t| t + timeout);
        if deadline.is_some_and(|d| now >= d) {
            // Past its timeout: stop. The watch goes on while the revert runs, for the lease.
            handle.raise(StopReason::TimedOut);
        }
        // From the start of the verification until its revert is done Gandalf holds the
        // environment: keep the lease alive, or stop when it is gone.
        let mut renew_at = None;
        if started.is_some() {
            let kept = match gandalf.pool.acquire().await {
                Ok(mut conn) => {
                    envs::keep_alive(
                        &mut conn,
                        &env,
                        &Holder::Gandalf,
                        now + RENEW_BEFORE,
                        now + LEASE_MARGIN,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &kept {
                // The database is away: look again at the next wake-up; the lease has its margin.
                tracing::warn!(error = %e, "could not check the verification lease");
            }
            match kept {
                Ok(None) => {
                    handle.raise(StopReason::LeaseLost);
                    return;
                }
                Ok(Some(ends)) => renew_at = Some(ends - RENEW_BEFORE),
                Err(_) => {}
            }
        }
        let deadline = deadline.filter(|d| *d > now);
        let far = gandalf.clock.now() + chrono::Duration::days(365);
        let wake = [deadline, renew_at].into_iter().flatten().min().unwrap_or(far);
        let listener_failed = tokio::select! {
            n = shared::db::next_change(&mut listener) => n.is_err(),
            _ = gandalf.clock.sleep_until(wake) => false,
            _ = worker_stop.wait_for(|s| *s) => {
                handle.raise(StopReason::Shutdown);
                return;
            }
        };
        if listener_failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Drops queued PRs that GitHub says are closed, merged, moved to another base or carry new
/// commits — what a missed `pull_request` delivery would have told us.
pub async fn reconcile(gandalf: &Gandalf, github: &Github, repo: &RepoConfig) -> anyhow::Result<usize> {
    let queued: Vec<Item> = {
        let mut conn = gandalf.pool.acquire().await?;
        store::queue(&mut conn, &repo.name)
            .await?
            .into_iter()
            .filter(|i| i.state == ItemState::Queued)
            .collect()
    };
    if queued.is_empty() {
        return Ok(0);
    }
    let name = &repo.name;
    let open = github.open_pulls(name).await?;
    let mut dropped = 0;
    for item in queued {
        let pull = match open.iter().find(|p| p.number == item.pr) {
            Some(p) => p.clone(),
            None => github.pull(name, item.pr).await?,
        };
        let Some(reason) = DropReason::from_pull(&pull, &item.head_sha, &repo.base) else {
            continue;
        };
        let mut conn = gandalf.pool.acquire().await?;
        if reason.leaves_it_to_the_worker(&store::landing_commits(&mut conn, item.id).await?) {
            continue;
        }
        if store::finish(&mut conn, item.id, &reason, gandalf.clock.now()).await? {
            dropped += 1;
            tracing::info!(repo = %repo.name, pr = %item.pr, %reason, "reconciliation dropped a PR");
            if let Err(e) = github.comment(name, item.pr, &messages::dropped(&reason)).await {
                tracing::warn!(repo = %repo.name, pr = %item.pr, error = %e, "could not comment on the pull request");
            }
        }
    }
    Ok(dropped)
}
