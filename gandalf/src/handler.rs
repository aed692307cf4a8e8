//! The one command handler behind `/gandalf` and `gandalf exec`: resolves who and which
//! repository, checks what GitHub says (permission, PR state, approvals on the current head), and
//! changes the queue in one transaction.

use std::sync::Arc;

use shared::clock::SharedClock;
use shared::github::{Github, GithubError, RepoName};
use shared::ids::SlackUserId;
use shared::slack::Reply;
use sqlx::PgPool;

use crate::command::{self, Command, PrRef};
use crate::config::{GandalfConfig, RepoConfig};
use crate::messages;
use crate::store::{self, ItemState, NewItem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply: Reply,
    pub refused: bool,
}

impl Answer {
    fn ok(reply: Reply) -> Self {
        Answer { reply, refused: false }
    }
    fn refused(reply: Reply) -> Self {
        Answer { reply, refused: true }
    }
}

/// What failed: a refusal the user should read, or our own trouble.
enum Stop {
    Answer(Answer),
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Internal(e.into())
    }
}

type Step<T> = Result<T, Stop>;

fn refuse(reply: Reply) -> Stop {
    Stop::Answer(Answer::refused(reply))
}

#[derive(Clone)]
pub struct Gandalf {
    pub pool: PgPool,
    pub config: Arc<GandalfConfig>,
    pub github: Option<Github>,
    pub clock: SharedClock,
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
        match self.run(user, cmd).await {
            Ok(a) => a,
            Err(Stop::Answer(a)) => a,
            Err(Stop::Internal(e)) => {
                tracing::error!(user = %user, error = format!("{e:#}"), "command failed");
                Answer::refused(messages::internal_error())
            }
        }
    }

    /// The GitHub login a Slack user acts as, from `[[people]]`.
    fn login_of(&self, user: &SlackUserId) -> Step<String> {
        self.config
            .people
            .by_slack(user)
            .and_then(|p| p.github.clone())
            .ok_or_else(|| refuse(messages::unmapped_user(user.as_str())))
    }

    /// Runs the `@gandalf …` commands of one PR comment by `login`; returns the replies to post
    /// on the PR (plain text, in order).
    pub async fn handle_comment(&self, repo: &str, number: u64, login: &str, body: &str) -> Vec<String> {
        let Some(repo) = self.config.repo(repo) else {
            return vec![];
        };
        let slack = self.config.people.find(login).map(|p| p.slack.to_string());
        let mut replies = vec![];
        for cmd in command::parse_comment(body, &self.config.bot_login) {
            let result = match cmd {
                command::CommentCommand::Merge { priority } => {
                    self.enqueue(repo, number, priority, login, slack.as_deref(), false)
                        .await
                }
                command::CommentCommand::Cancel => self.cancel(repo, number, login, slack.as_deref()).await,
                command::CommentCommand::Retry => self.retry(repo, number, login, slack.as_deref()).await,
                command::CommentCommand::Status => self.status(repo, number).await,
                command::CommentCommand::Unknown(what) => {
                    Err(refuse(messages::unknown_comment_command(&what, &self.config.bot_login)))
                }
            };
            let answer = match result {
                Ok(a) => a,
                Err(Stop::Answer(a)) => a,
                Err(Stop::Internal(e)) => {
                    tracing::error!(login, error = format!("{e:#}"), "comment command failed");
                    Answer::refused(messages::internal_error())
                }
            };
            replies.push(answer.reply.plain());
        }
        replies
    }

    fn repo_named(&self, name: Option<&str>) -> Step<&RepoConfig> {
        let names: Vec<&str> = self.config.repos.iter().map(|r| r.name.as_str()).collect();
        match name {
            Some(n) => self
                .config
                .repo(n)
                .ok_or_else(|| refuse(messages::unknown_repo(n, &names))),
            None if self.config.repos.len() == 1 => Ok(&self.config.repos[0]),
            None => Err(refuse(messages::which_repo(&names))),
        }
    }

    fn repo_of(&self, pr: &PrRef) -> Step<&RepoConfig> {
        self.repo_named(pr.repo.as_deref())
    }

    fn github(&self) -> Step<&Github> {
        self.github.as_ref().ok_or_else(|| refuse(messages::no_github()))
    }

    fn is_admin(&self, user: &SlackUserId) -> bool {
        self.config.is_admin(user.as_str())
    }

    async fn run(&self, user: &SlackUserId, cmd: Command) -> Step<Answer> {
        let now = self.clock.now();
        match cmd {
            Command::Help => Ok(Answer::ok(messages::help())),
            Command::Merge { pr, priority } => {
                let repo = self.repo_of(&pr)?;
                let login = self.login_of(user)?;
                self.enqueue(repo, pr.number, priority, &login, Some(user.as_str()), true)
                    .await
            }
            Command::Retry { pr } => {
                let repo = self.repo_of(&pr)?;
                let login = self.login_of(user)?;
                self.retry(repo, pr.number, &login, Some(user.as_str())).await
            }
            Command::Cancel { pr } => {
                let repo = self.repo_of(&pr)?;
                let login = self.login_of(user)?;
                self.cancel(repo, pr.number, &login, Some(user.as_str())).await
            }
            Command::Queue { repo } => {
                let repo = self.repo_named(repo.as_deref())?;
                let mut conn = self.pool.acquire().await?;
                let items = store::queue(&mut conn, &repo.name).await?;
                let pause = store::pause_state(&mut conn, &repo.name).await?;
                let typical = store::typical_verification(&mut conn, &repo.name).await?;
                Ok(Answer::ok(messages::queue(&repo.name, &items, &pause, typical, now)))
            }
            Command::Status { pr } => {
                let repo = self.repo_of(&pr)?;
                self.status(repo, pr.number).await
            }
            Command::Pause { repo, reason } => {
                if !self.is_admin(user) {
                    return Err(refuse(messages::admins_only("pause")));
                }
                let repo = self.repo_named(repo.as_deref())?;
                let mut conn = self.pool.acquire().await?;
                store::set_paused(&mut conn, &repo.name, true, &reason, user.as_str(), now).await?;
                Ok(Answer::ok(messages::paused(&repo.name, user.as_str(), &reason)))
            }
            Command::Resume { repo } => {
                if !self.is_admin(user) {
                    return Err(refuse(messages::admins_only("resume")));
                }
                let repo = self.repo_named(repo.as_deref())?;
                let mut conn = self.pool.acquire().await?;
                store::set_paused(&mut conn, &repo.name, false, "", user.as_str(), now).await?;
                Ok(Answer::ok(messages::resumed(&repo.name, user.as_str())))
            }
            Command::Plan { pr } => {
                let repo = self.repo_of(&pr)?;
                self.plan(repo, pr.number).await
            }
        }
    }

    async fn retry(&self, repo: &RepoConfig, number: u64, login: &str, slack: Option<&str>) -> Step<Answer> {
        let mut conn = self.pool.acquire().await?;
        let last = store::latest_item(&mut conn, &repo.name, pr_number(number)?).await?;
        drop(conn);
        match last {
            Some(item) if item.state == ItemState::Failed => {
                self.enqueue(repo, number, item.priority, login, slack, true).await
            }
            _ => Err(refuse(messages::nothing_to_retry(&repo.name, number as i64))),
        }
    }

    async fn cancel(&self, repo: &RepoConfig, number: u64, login: &str, slack: Option<&str>) -> Step<Answer> {
        let mut conn = self.pool.acquire().await?;
        let Some(item) = store::active_item(&mut conn, &repo.name, pr_number(number)?).await? else {
            return Err(refuse(messages::not_queued(&repo.name, number as i64)));
        };
        if item.queued_by != login && !self.can_write(repo, login).await? {
            return Err(refuse(messages::cancel_not_allowed(&item)));
        }
        let now = self.clock.now();
        let cancelled = store::finish(
            &mut conn,
            item.id,
            ItemState::Cancelled,
            &format!("cancelled by {login}"),
            now,
        )
        .await?;
        if !cancelled {
            return Err(refuse(messages::too_late_to_cancel(&item)));
        }
        Ok(Answer::ok(messages::cancelled(&item, slack.unwrap_or(login))))
    }

    async fn status(&self, repo: &RepoConfig, number: u64) -> Step<Answer> {
        let mut conn = self.pool.acquire().await?;
        let Some(item) = store::latest_item(&mut conn, &repo.name, pr_number(number)?).await? else {
            return Err(refuse(messages::never_queued(&repo.name, number as i64)));
        };
        let position = if item.state.is_finished() {
            None
        } else {
            store::queue(&mut conn, &repo.name)
                .await?
                .iter()
                .position(|i| i.id == item.id)
                .map(|p| p + 1)
        };
        Ok(Answer::ok(messages::status(&item, position, &self.config.public_url)))
    }

    /// A `pull_request` event: new commits, closing or a base change drop the PR from the queue.
    /// Returns the comment to post, if the queue changed.
    pub async fn pull_request_changed(
        &self,
        repo: &str,
        number: u64,
        action: &str,
        head_sha: &str,
        base_changed: bool,
        merged: bool,
    ) -> anyhow::Result<Option<String>> {
        let Some(repo) = self.config.repo(repo) else {
            return Ok(None);
        };
        let Ok(pr) = i32::try_from(number) else { return Ok(None) };
        let mut conn = self.pool.acquire().await?;
        let Some(item) = store::active_item(&mut conn, &repo.name, pr).await? else {
            return Ok(None);
        };
        let reason = match action {
            "synchronize" if item.head_sha != head_sha => {
                format!(
                    "new commits were pushed ({}); queue it again once they are reviewed",
                    &head_sha[..head_sha.len().min(7)]
                )
            }
            "closed" if merged => "it was merged outside the queue".to_string(),
            "closed" => "it was closed".to_string(),
            "edited" if base_changed => "its base branch changed".to_string(),
            _ => return Ok(None),
        };
        let now = self.clock.now();
        if store::finish(&mut conn, item.id, ItemState::Dropped, &reason, now).await? {
            Ok(Some(messages::dropped(&reason)))
        } else {
            Ok(None)
        }
    }

    async fn can_write(&self, repo: &RepoConfig, login: &str) -> Step<bool> {
        let gh = self.github()?;
        Ok(gh
            .permission(&repo_name(repo), login)
            .await
            .map_err(github_stop)?
            .can_write())
    }

    /// Queues a PR after checking, on GitHub, everything SPEC §5.3 asks of it. `slack` is who to
    /// DM later; `mention` says whether the reply names them by Slack mention (in Slack) or by
    /// GitHub login (in a PR comment).
    async fn enqueue(
        &self,
        repo: &RepoConfig,
        number: u64,
        priority: i32,
        login: &str,
        slack: Option<&str>,
        mention: bool,
    ) -> Step<Answer> {
        let gh = self.github()?;
        let name = repo_name(repo);
        let n = number as i64;
        if !gh.permission(&name, login).await.map_err(github_stop)?.can_write() {
            return Err(refuse(messages::refused(
                &repo.name,
                n,
                &format!("{login} has no write permission on {}", repo.name),
            )));
        }
        let pull = match gh.pull(&name, number).await {
            Ok(p) => p,
            Err(GithubError::Refused { status: 404, .. }) => {
                return Err(refuse(messages::refused(
                    &repo.name,
                    n,
                    "there is no such pull request",
                )));
            }
            Err(e) => return Err(github_stop(e)),
        };
        if pull.merged {
            return Err(refuse(messages::refused(&repo.name, n, "it is merged already")));
        }
        if !pull.is_open() {
            return Err(refuse(messages::refused(&repo.name, n, "it is closed")));
        }
        if pull.draft {
            return Err(refuse(messages::refused(
                &repo.name,
                n,
                "it is a draft; mark it ready for review first",
            )));
        }
        if pull.base_ref != repo.base {
            return Err(refuse(messages::refused(
                &repo.name,
                n,
                &format!(
                    "it targets `{}`, and this queue lands on `{}`",
                    pull.base_ref, repo.base
                ),
            )));
        }
        let reviews = gh.reviews(&name, number).await.map_err(github_stop)?;
        let approvals = approvals_on_head(&reviews, &pull.head_sha, &pull.author);
        if approvals < repo.required_approvals as usize {
            return Err(refuse(messages::refused(
                &repo.name,
                n,
                &format!(
                    "it has {approvals} approval(s) on its current head {}, and needs {}",
                    pull.head_sha.short(),
                    repo.required_approvals
                ),
            )));
        }
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        store::ensure_repos(&mut tx, std::slice::from_ref(&repo.name)).await?;
        let new = NewItem {
            repo: &repo.name,
            pr: pr_number(number)?,
            title: &pull.title,
            author: &pull.author,
            head_sha: &pull.head_sha.to_string(),
            priority,
            queued_by: login,
            queued_by_slack: slack,
        };
        let outcome = store::enqueue(&mut tx, new, now).await?;
        let items = store::queue(&mut tx, &repo.name).await?;
        let typical = store::typical_verification(&mut tx, &repo.name).await?;
        tx.commit().await?;
        match outcome {
            Ok(item) => {
                let position = items
                    .iter()
                    .position(|i| i.id == item.id)
                    .map(|p| p + 1)
                    .unwrap_or(items.len());
                let eta = typical.map(|t| t * (position.saturating_sub(1) as i32));
                metrics::counter!("gandalf_enqueued_total").increment(1);
                Ok(Answer::ok(messages::queued(
                    &item,
                    position,
                    eta,
                    slack.filter(|_| mention),
                )))
            }
            Err(existing) => {
                let position = items
                    .iter()
                    .position(|i| i.id == existing.id)
                    .map(|p| p + 1)
                    .unwrap_or(0);
                Err(refuse(messages::already_queued(&existing, position)))
            }
        }
    }

    async fn plan(&self, repo: &RepoConfig, number: u64) -> Step<Answer> {
        let gh = self.github()?;
        let name = repo_name(repo);
        let pull = gh.pull(&name, number).await.map_err(github_stop)?;
        let base_tip = gh
            .branch_tip(&name, &repo.base)
            .await
            .map_err(github_stop)?
            .ok_or_else(|| {
                refuse(messages::refused(
                    &repo.name,
                    number as i64,
                    "its base branch does not exist",
                ))
            })?;
        let changed = gh
            .changed_files(&name, &base_tip, &pull.head_sha)
            .await
            .map_err(github_stop)?;
        let text = match gh
            .file_at(&name, &repo.resource_map, &pull.head_sha)
            .await
            .map_err(github_stop)?
        {
            Some(map) => match shared::resources::ResourceMap::parse(&map) {
                Ok(map) => map.plan(&changed).to_text(),
                Err(e) => {
                    return Err(refuse(messages::bad_map(
                        &repo.name,
                        number as i64,
                        &e.render(&repo.resource_map),
                    )));
                }
            },
            None => format!(
                "No resource map at {}: everything is built, deployed and tested ({} changed files).",
                repo.resource_map,
                changed.len()
            ),
        };
        Ok(Answer::ok(messages::plan(&repo.name, number as i64, &text)))
    }
}

fn repo_name(repo: &RepoConfig) -> RepoName {
    RepoName {
        owner: repo.owner().to_string(),
        name: repo.short_name().to_string(),
    }
}

fn pr_number(n: u64) -> Step<i32> {
    i32::try_from(n).map_err(|_| {
        refuse(messages::parse_error(&command::ParseError {
            message: format!("#{n} is not a pull request number"),
            usage: None,
        }))
    })
}

fn github_stop(e: GithubError) -> Stop {
    match e {
        GithubError::Unavailable(detail) => refuse(messages::github_down(&detail)),
        other => Stop::Internal(other.into()),
    }
}

/// Distinct reviewers whose latest review approves the current head (the author's own reviews do
/// not count; a later "changes requested" withdraws an approval).
pub fn approvals_on_head(reviews: &[shared::github::Review], head: &shared::github::CommitSha, author: &str) -> usize {
    let mut latest: std::collections::HashMap<&str, &shared::github::Review> = std::collections::HashMap::new();
    for r in reviews
        .iter()
        .filter(|r| matches!(r.state.as_str(), "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"))
    {
        latest.insert(r.login.as_str(), r);
    }
    latest
        .values()
        .filter(|r| {
            r.state == "APPROVED" && r.commit_id.as_ref() == Some(head) && !r.login.eq_ignore_ascii_case(author)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::github::{CommitSha, Review};

    fn review(login: &str, state: &str, sha: &str) -> Review {
        Review {
            login: login.into(),
            state: state.into(),
            commit_id: Some(sha.repeat(20).parse().unwrap()),
        }
    }

    #[test]
    fn approvals_count_only_the_current_head_and_the_latest_word() {
        let head: CommitSha = "a2".repeat(20).parse().unwrap();
        let reviews = vec![
            review("bob", "APPROVED", "a1"),
            review("carol", "APPROVED", "a2"),
            review("dave", "APPROVED", "a2"),
            review("dave", "CHANGES_REQUESTED", "a2"),
            review("alice", "APPROVED", "a2"),
            review("erin", "COMMENTED", "a2"),
            review("carol", "COMMENTED", "a2"),
        ];
        assert_eq!(approvals_on_head(&reviews, &head, "alice"), 1, "only carol");
    }
}
