//! The one command handler behind `/gandalf` and `gandalf exec`: resolves who and which
//! repository, checks what GitHub says (permission, PR state, approvals on the current head), and
//! changes the queue in one transaction. Every step returns [`Handled`]: a refusal the user reads,
//! or our own error, which is logged and answered with an apology (`shared::refusal`).

use std::sync::Arc;

use shared::clock::SharedClock;
use shared::github::{Github, GithubError, PrNumber, PullRequest, RepoName};
use shared::ids::{Holder, SlackUserId};
use shared::refusal::{Answer, Handled, OrRefuse, Refusal, refuse};
use sqlx::{PgConnection, PgPool};

use crate::command::{self, Command, CommentCommand, PrRef};
use crate::config::{GandalfConfig, RepoConfig};
use crate::deliveries::Once;
use crate::drop_reason::{DropReason, PrChange};
use crate::messages::{self, Unqueueable};
use crate::store::{self, ItemState, NewItem};

#[derive(Clone)]
pub struct Gandalf {
    pub pool: PgPool,
    pub config: Arc<GandalfConfig>,
    pub github: Option<Github>,
    pub clock: SharedClock,
    /// The repositories' mirrors and the verifications' working copies, under `state_dir`.
    pub mirrors: shared::working_copy::Mirrors,
}

/// Who asked: their GitHub login (what permissions are checked against) and, when known, their
/// Slack user (who is DMed later, and mentioned in Slack replies).
#[derive(Clone, Copy)]
struct Requester<'a> {
    login: &'a str,
    slack: Option<&'a SlackUserId>,
    /// Whether the reply goes to Slack (mention them) or to a PR comment (name their login).
    in_slack: bool,
}

impl Requester<'_> {
    /// How a reply names them: a Slack mention in Slack; on GitHub their login reads better than
    /// a Slack id.
    fn by(&self) -> messages::By<'_> {
        match self.slack {
            Some(user) if self.in_slack => messages::By::Slack(user),
            _ => messages::By::GitHub(self.login),
        }
    }
}

impl Gandalf {
    /// Connects to GitHub with whatever credentials the environment has; `None` without any (the
    /// queues are then idle, and commands say so).
    pub async fn github_from(secrets: &shared::settings::Secrets) -> anyhow::Result<Option<Github>> {
        Ok(Github::from_secrets(secrets).await?)
    }

    /// Runs a command typed in Slack by `user`. Never fails: our own errors are logged and answered
    /// with a generic apology that changed nothing.
    pub async fn handle(&self, user: &SlackUserId, text: &str) -> Answer {
        let cmd = match command::parse(text) {
            Ok(c) => c,
            Err(e) => return Answer::refused(messages::parse_error(&e)),
        };
        self.run(user, cmd)
            .await
            .unwrap_or_else(|r| answer_of(r, &format!("command of {user}")))
    }

    /// The GitHub login a Slack user acts as, from `[[people]]`.
    fn login_of(&self, user: &SlackUserId) -> Handled<&str> {
        self.config
            .people
            .by_slack(user)
            .and_then(|p| p.github.as_deref())
            .or_refuse(|| messages::unmapped_user(user))
    }

    /// Runs the `@gandalf` commands of one PR comment and returns the one reply to post: each
    /// command's answer, together (one comment answers one comment), or `None` when it held none.
    pub async fn handle_comment(&self, repo: &RepoName, number: PrNumber, login: &str, body: &str) -> Option<String> {
        // Without a delivery every trouble is answered and nothing is recorded: no error is left.
        self.comment_commands(repo, number, login, body, None)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = format!("{e:#}"), "comment of {login} failed");
                Some(messages::internal_error().plain())
            })
    }

    /// [`Gandalf::handle_comment`] for a stored delivery (`crate::deliveries`): the commands a
    /// previous attempt ran are not run again, each command's answer is recorded with its write,
    /// and our own trouble is an error (the delivery is retried) unless `run` says to answer it.
    pub async fn handle_delivered_comment(
        &self,
        repo: &RepoName,
        number: PrNumber,
        login: &str,
        body: &str,
        run: &CommentRun<'_>,
    ) -> anyhow::Result<Option<String>> {
        self.comment_commands(repo, number, login, body, Some(run)).await
    }

    async fn comment_commands(
        &self,
        repo: &RepoName,
        number: PrNumber,
        login: &str,
        body: &str,
        run: Option<&CommentRun<'_>>,
    ) -> anyhow::Result<Option<String>> {
        let Some(repo) = self.config.repo(repo) else {
            return Ok(None);
        };
        let slack = self.config.people.find(login).map(|p| p.slack.clone());
        let who = Requester {
            login,
            slack: slack.as_ref(),
            in_slack: false,
        };
        let mut replies = vec![];
        for (position, cmd) in command::parse_comment(body, &self.config.bot_login)
            .into_iter()
            .enumerate()
        {
            let label = cmd.label(&self.config.bot_login);
            if let Some(done) = run.and_then(|r| r.done.get(position)) {
                replies.push(done.clone());
                continue;
            }
            let once = run.map(|r| Once::new(r.delivery, r.claimant, position, &label));
            let once = once.as_ref();
            let result = match cmd {
                CommentCommand::Merge { priority } => self.enqueue(repo, number, priority, who, once).await,
                CommentCommand::Cancel => self.cancel(repo, number, who, once).await,
                CommentCommand::Retry => self.retry(repo, number, who, once).await,
                CommentCommand::Status => self.status(repo, number).await,
                CommentCommand::Unknown(what) => {
                    refuse(messages::unknown_comment_command(&what, &self.config.bot_login))
                }
            };
            let (answer, trouble) = match result {
                // Nothing changed: the delivery is tried again later, this command included.
                Err(Refusal::Internal(e)) if run.is_some_and(|r| !r.answer_trouble) => {
                    return Err(e.context(format!("`{label}`")));
                }
                Ok(answer) => (answer, false),
                Err(r) => {
                    let trouble = matches!(r, Refusal::Internal(_));
                    (answer_of(r, &format!("comment command of {login}")), trouble)
                }
            };
            let text = answer.reply.plain();
            // A command without a write (or refused before it) records its answer on its own; so
            // does one whose write failed (its record, if made, was rolled back with it).
            if let Some(once) = once.filter(|o| trouble || !o.recorded()) {
                let mut conn = self.pool.acquire().await?;
                once.record(&mut conn, &text).await?;
            }
            replies.push((label, text));
        }
        Ok(messages::comment_reply(&replies))
    }

    fn repo_named(&self, name: Option<&RepoName>) -> Handled<&RepoConfig> {
        let names = self.config.repo_names();
        match name {
            Some(n) => self.config.repo(n).or_refuse(|| messages::unknown_repo(n, &names)),
            None if self.config.repos.len() == 1 => Ok(&self.config.repos[0]),
            None => refuse(messages::which_repo(&names)),
        }
    }

    fn repo_of(&self, pr: &PrRef) -> Handled<&RepoConfig> {
        self.repo_named(pr.repo.as_ref())
    }

    fn github(&self) -> Handled<&Github> {
        self.github.as_ref().or_refuse(messages::no_github)
    }

    fn admin(&self, user: &SlackUserId, what: &str) -> Handled<()> {
        if self.config.is_admin(user) {
            Ok(())
        } else {
            refuse(messages::admins_only(what))
        }
    }

    async fn run(&self, user: &SlackUserId, cmd: Command) -> Handled<Answer> {
        let requester = |login| Requester {
            login,
            slack: Some(user),
            in_slack: true,
        };
        match cmd {
            Command::Help => Ok(Answer::ok(messages::help())),
            Command::Merge { pr, priority } => {
                let repo = self.repo_of(&pr)?;
                let who = requester(self.login_of(user)?);
                self.enqueue(repo, pr.number, priority, who, None).await
            }
            Command::Retry { pr } => {
                let repo = self.repo_of(&pr)?;
                let who = requester(self.login_of(user)?);
                self.retry(repo, pr.number, who, None).await
            }
            Command::Cancel { pr } => {
                let repo = self.repo_of(&pr)?;
                let who = requester(self.login_of(user)?);
                self.cancel(repo, pr.number, who, None).await
            }
            Command::Queue { repo } => self.queue(self.repo_named(repo.as_ref())?).await,
            Command::Status { pr } => self.status(self.repo_of(&pr)?, pr.number).await,
            Command::Pause { repo, reason } => {
                self.admin(user, "pause")?;
                let repo = self.repo_named(repo.as_ref())?;
                self.set_paused(repo, user, Some(&reason)).await
            }
            Command::Resume { repo } => {
                self.admin(user, "resume")?;
                let repo = self.repo_named(repo.as_ref())?;
                self.set_paused(repo, user, None).await
            }
            Command::Plan { pr } => self.plan(self.repo_of(&pr)?, pr.number).await,
        }
    }

    async fn queue(&self, repo: &RepoConfig) -> Handled<Answer> {
        let mut conn = self.pool.acquire().await?;
        let items = store::queue(&mut conn, &repo.name).await?;
        let pause = store::pause_state(&mut conn, &repo.name).await?;
        let typical = store::typical_verification(&mut conn, &repo.name).await?;
        let flaky = store::flaky_rate(&mut conn, &repo.name).await?;
        let per_candidate = candidate_size(&mut conn, repo).await?;
        let now = self.clock.now();
        Ok(Answer::ok(messages::queue(
            &repo.name,
            &items,
            &pause,
            typical,
            per_candidate,
            flaky,
            now,
        )))
    }

    /// Pauses the queue with `reason`, or resumes it (`None`).
    async fn set_paused(&self, repo: &RepoConfig, user: &SlackUserId, reason: Option<&str>) -> Handled<Answer> {
        let mut conn = self.pool.acquire().await?;
        let by = Holder::from(user);
        let now = self.clock.now();
        store::set_paused(&mut conn, &repo.name, reason.is_some(), reason.unwrap_or(""), &by, now).await?;
        Ok(Answer::ok(match reason {
            Some(reason) => messages::paused(&repo.name, user, reason),
            None => messages::resumed(&repo.name, user),
        }))
    }

    async fn retry(
        &self,
        repo: &RepoConfig,
        number: PrNumber,
        who: Requester<'_>,
        once: Option<&Once<'_>>,
    ) -> Handled<Answer> {
        let mut conn = self.pool.acquire().await?;
        let last = store::latest_item(&mut conn, &repo.name, number).await?;
        drop(conn);
        match last {
            Some(item) if item.state == ItemState::Failed => self.enqueue(repo, number, item.priority, who, once).await,
            _ => refuse(messages::nothing_to_retry(&repo.name, number)),
        }
    }

    async fn cancel(
        &self,
        repo: &RepoConfig,
        number: PrNumber,
        who: Requester<'_>,
        once: Option<&Once<'_>>,
    ) -> Handled<Answer> {
        let mut conn = self.pool.acquire().await?;
        let item = store::active_item(&mut conn, &repo.name, number)
            .await?
            .or_refuse(|| messages::not_queued(&repo.name, number))?;
        drop(conn);
        if item.queued_by != who.login && !self.can_write(repo, who.login).await? {
            return refuse(messages::cancel_not_allowed(&item));
        }
        let reason = DropReason::Cancelled {
            by: who.login.to_string(),
        };
        // No transaction is open while GitHub is asked; the write and its record commit together.
        let mut tx = self.pool.begin().await?;
        if !store::finish(&mut tx, item.id, &reason, self.clock.now()).await? {
            return refuse(messages::too_late_to_cancel(&item));
        }
        let answer = Answer::ok(messages::cancelled(&item, who.by()));
        if let Some(once) = once {
            once.record(&mut tx, &answer.reply.plain()).await?;
        }
        tx.commit().await?;
        Ok(answer)
    }

    async fn status(&self, repo: &RepoConfig, number: PrNumber) -> Handled<Answer> {
        let mut conn = self.pool.acquire().await?;
        let item = store::latest_item(&mut conn, &repo.name, number)
            .await?
            .or_refuse(|| messages::never_queued(&repo.name, number))?;
        let position = if item.state.is_finished() {
            None
        } else {
            store::queue(&mut conn, &repo.name)
                .await?
                .iter()
                .position(|i| i.id == item.id)
                .map(|p| p + 1)
        };
        let batch = store::batch_of(&mut conn, item.id)
            .await?
            .map(|(_, prs)| prs)
            .unwrap_or_default();
        Ok(Answer::ok(messages::status(
            &item,
            position,
            &batch,
            &self.config.public_url,
        )))
    }

    /// A `pull_request` event: new commits, closing or a base change drop the PR from the queue,
    /// in `conn`'s transaction (the delivery's, which records the drop with it). Returns the
    /// comment to post, if the queue changed. Asks GitHub nothing.
    pub async fn pull_request_changed(
        &self,
        conn: &mut PgConnection,
        repo: &RepoName,
        number: PrNumber,
        change: &PrChange,
    ) -> anyhow::Result<Option<String>> {
        let Some(repo) = self.config.repo(repo) else {
            return Ok(None);
        };
        let Some(item) = store::active_item(conn, &repo.name, number).await? else {
            return Ok(None);
        };
        let Some(reason) = DropReason::from_change(change, &item.head_sha) else {
            return Ok(None);
        };
        if reason.leaves_it_to_the_worker(&store::landing_commits(conn, item.id).await?) {
            return Ok(None);
        }
        if store::finish(conn, item.id, &reason, self.clock.now()).await? {
            Ok(Some(messages::dropped(&reason)))
        } else {
            Ok(None)
        }
    }

    async fn can_write(&self, repo: &RepoConfig, login: &str) -> Handled<bool> {
        let gh = self.github()?;
        Ok(gh
            .permission(&repo.name, login)
            .await
            .map_err(github_refusal)?
            .can_write())
    }

    /// Queues a PR after checking, on GitHub, everything SPEC §5.3 asks of it. With `once`, the
    /// answer is recorded in the transaction that queues it.
    async fn enqueue(
        &self,
        repo: &RepoConfig,
        number: PrNumber,
        priority: i32,
        who: Requester<'_>,
        once: Option<&Once<'_>>,
    ) -> Handled<Answer> {
        let pull = self.queueable_pull(repo, number, who.login).await?;
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        store::ensure_repos(&mut tx, std::slice::from_ref(&repo.name)).await?;
        let new = NewItem {
            repo: &repo.name,
            pr: number,
            title: &pull.title,
            author: &pull.author,
            head_sha: &pull.head_sha,
            priority,
            queued_by: who.login,
            queued_by_slack: who.slack,
        };
        let outcome = store::enqueue(&mut tx, new, now).await?;
        let items = store::queue(&mut tx, &repo.name).await?;
        let typical = store::typical_verification(&mut tx, &repo.name).await?;
        let per_candidate = candidate_size(&mut tx, repo).await?;
        let position_of = |id| items.iter().position(|i| i.id == id).map(|p| p + 1);
        let answer = match outcome {
            Ok(item) => {
                let position = position_of(item.id).unwrap_or(items.len());
                // With batches, the PRs ahead go `per_candidate` at a time.
                let ahead = i32::try_from(position.saturating_sub(1) / per_candidate.max(1)).unwrap_or(i32::MAX);
                let eta = typical.map(|t| t * ahead);
                Answer::ok(messages::queued(&item, position, eta, who.by()))
            }
            Err(existing) => Answer::refused(messages::already_queued(
                &existing,
                position_of(existing.id).unwrap_or(0),
            )),
        };
        if let Some(once) = once {
            once.record(&mut tx, &answer.reply.plain()).await?;
        }
        tx.commit().await?;
        if answer.refused {
            return Err(Refusal::User(answer.reply));
        }
        metrics::counter!("gandalf_enqueued_total").increment(1);
        Ok(answer)
    }

    /// The pull request, when `login` may queue it and it may be queued: open, ready, on the
    /// queue's base, with enough approvals on its current head.
    async fn queueable_pull(&self, repo: &RepoConfig, number: PrNumber, login: &str) -> Handled<PullRequest> {
        let gh = self.github()?;
        let no = |why: Unqueueable| refuse(messages::refused(&repo.name, number, &why));
        if !gh
            .permission(&repo.name, login)
            .await
            .map_err(github_refusal)?
            .can_write()
        {
            return no(Unqueueable::NoWritePermission {
                login: login.to_string(),
            });
        }
        let pull = match gh.pull(&repo.name, number).await {
            Ok(p) => p,
            Err(GithubError::Refused { status: 404, .. }) => return no(Unqueueable::NoSuchPull),
            Err(e) => return Err(github_refusal(e)),
        };
        if pull.merged {
            return no(Unqueueable::Merged);
        }
        if !pull.is_open() {
            return no(Unqueueable::Closed);
        }
        if pull.draft {
            return no(Unqueueable::Draft);
        }
        if pull.base_ref != repo.base {
            return no(Unqueueable::OtherBase {
                targets: pull.base_ref,
                base: repo.base.clone(),
            });
        }
        let standing = crate::reviews::standing(
            gh,
            &repo.name,
            number,
            &pull.head_sha,
            &pull.author,
            repo.required_approvals,
        )
        .await
        .map_err(github_refusal)?;
        match standing {
            None => {}
            Some(DropReason::ChangesRequested { by }) => return no(Unqueueable::ChangesRequested { by }),
            Some(DropReason::TooFewApprovals { have, need }) => {
                return no(Unqueueable::TooFewApprovals {
                    have,
                    need,
                    head: pull.head_sha,
                });
            }
            Some(other) => {
                return Err(Refusal::Internal(anyhow::anyhow!(
                    "unexpected review standing: {other}"
                )));
            }
        }
        Ok(pull)
    }

    async fn plan(&self, repo: &RepoConfig, number: PrNumber) -> Handled<Answer> {
        let gh = self.github()?;
        let name = &repo.name;
        let pull = gh.pull(name, number).await.map_err(github_refusal)?;
        let base_tip = gh
            .branch_tip(name, &repo.base)
            .await
            .map_err(github_refusal)?
            .or_refuse(|| messages::refused(name, number, &Unqueueable::NoBaseBranch))?;
        let changed = gh
            .changed_files(name, &base_tip, &pull.head_sha)
            .await
            .map_err(github_refusal)?;
        let map = gh
            .file_at(name, &repo.resource_map, &pull.head_sha)
            .await
            .map_err(github_refusal)?;
        let text = match map.as_deref().map(shared::resources::ResourceMap::parse) {
            Some(Ok(map)) if changed.complete => map.plan(&changed.paths).to_text(),
            Some(Ok(map)) => map.plan_all().to_text_cut_short(changed.paths.len()),
            Some(Err(e)) => return refuse(messages::bad_map(name, number, &e.render(&repo.resource_map))),
            None => messages::no_resource_map(&repo.resource_map, changed.paths.len()),
        };
        Ok(Answer::ok(messages::plan(name, number, &text)))
    }
}

/// A GitHub failure is ours, not the user's: a stored delivery is retried on it. Where it is
/// answered ([`answer_of`]), GitHub being unavailable is worth telling the user (nothing changed;
/// try again).
/// How many PRs a candidate of this repository carries, for ETAs: `batch_size`, or what `"auto"`
/// would pick now.
pub(crate) async fn candidate_size(conn: &mut sqlx::PgConnection, repo: &RepoConfig) -> sqlx::Result<usize> {
    Ok(match repo.batch_size {
        crate::batch::BatchSize::Fixed(n) => n,
        crate::batch::BatchSize::Auto => {
            let (landed, rejected) = store::recent_outcomes(conn, &repo.name).await?;
            let red = crate::batch::red_rate(landed, rejected);
            crate::batch::size_for(repo.batch_size, repo.max_batch_size, red)
        }
    })
}

fn github_refusal(e: GithubError) -> Refusal {
    Refusal::Internal(e.into())
}

/// The answer to a refused command: the user's message, "GitHub is unavailable" when it was, or
/// an apology for our own failure (logged).
fn answer_of(r: Refusal, context: &str) -> Answer {
    if let Refusal::Internal(e) = &r
        && let Some(GithubError::Unavailable(detail)) = e.chain().find_map(|c| c.downcast_ref::<GithubError>())
    {
        tracing::warn!(error = format!("{e:#}"), "{context}: GitHub is unavailable");
        return Answer::refused(messages::github_down(detail));
    }
    r.into_answer(context, messages::internal_error)
}

/// A comment's commands run for a stored delivery ([`Gandalf::handle_delivered_comment`]).
pub struct CommentRun<'a> {
    pub delivery: &'a str,
    /// Who holds the delivery's claim: every record is fenced by it.
    pub claimant: &'a str,
    /// The answers of the commands a previous attempt ran: `(command, answer)`, in order.
    pub done: &'a [(String, String)],
    /// Answer our own trouble (the delivery's last attempt) instead of failing the attempt.
    pub answer_trouble: bool,
}
