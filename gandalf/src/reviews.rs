//! Reviews as GitHub counts them (SPEC §5.3): each reviewer's latest verdict — approve, request
//! changes, or a dismissal — on the pinned head; comments change nothing.
//!
//! A PR is queued only with enough approvals, and it stays queued only while that holds: a
//! `pull_request_review` delivery ([`on_review`]) re-counts and drops a queued or verifying PR
//! whose approvals fell below `required_approvals` (a dismissal, an approver changing their mind)
//! or on which a reviewer with write access requested changes; a read-only reviewer's "changes
//! requested" is advice and drops nothing (GitHub's branch protection ignores it the same way).
//! The verifier asks [`standing`] once more right before it lands, so a missed delivery cannot
//! let a PR through.
//!
//! [`tally`] is pure; the rest reads GitHub.

use std::collections::BTreeMap;

use shared::github::{CommitSha, GhResult, Github, PrNumber, RepoName, Review, ReviewState};

use crate::drop_reason::DropReason;
use crate::handler::Gandalf;
use crate::messages;
use crate::store;

/// What the reviews on one head add up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// Distinct reviewers (not the author) whose latest verdict approves `head`.
    pub approvals: usize,
    /// Reviewers whose latest verdict on `head` requests changes, sorted, whatever their
    /// permission (the caller checks who has write access).
    pub changes_requested: Vec<String>,
}

/// Counts `reviews` (in the order GitHub lists them, oldest first) for `head`. A reviewer's later
/// verdict replaces their earlier one; a verdict on another commit is not a verdict on `head`; the
/// author's own reviews never count.
pub fn tally(reviews: &[Review], head: &CommitSha, author: &str) -> Tally {
    let mut latest: BTreeMap<String, &Review> = BTreeMap::new();
    for r in reviews.iter().filter(|r| r.state.is_verdict()) {
        // Logins are case-insensitive on GitHub.
        latest.insert(r.login.to_ascii_lowercase(), r);
    }
    let mut out = Tally::default();
    for r in latest.values() {
        if r.commit_id.as_ref() != Some(head) || r.login.eq_ignore_ascii_case(author) {
            continue;
        }
        match r.state {
            ReviewState::Approved => out.approvals += 1,
            ReviewState::ChangesRequested => out.changes_requested.push(r.login.clone()),
            _ => {}
        }
    }
    out
}

/// Whether the PR's reviews still let it land; `Some` is why not.
pub async fn standing(
    gh: &Github,
    repo: &RepoName,
    number: PrNumber,
    head: &CommitSha,
    author: &str,
    required: u32,
) -> GhResult<Option<DropReason>> {
    let reviews = gh.reviews(repo, number).await?;
    let tally = tally(&reviews, head, author);
    let mut writers = vec![];
    for login in &tally.changes_requested {
        if gh.permission(repo, login).await?.can_write() {
            writers.push(login.clone());
        }
    }
    if !writers.is_empty() {
        return Ok(Some(DropReason::ChangesRequested { by: writers }));
    }
    if tally.approvals < required as usize {
        return Ok(Some(DropReason::TooFewApprovals {
            have: tally.approvals,
            need: required,
        }));
    }
    Ok(None)
}

/// A `pull_request_review` delivery: re-counts the reviews of a queued or verifying PR and drops
/// it when they no longer let it land. Returns the comment to post on the PR.
pub async fn on_review(gandalf: &Gandalf, repo: &RepoName, number: PrNumber) -> anyhow::Result<Option<String>> {
    let Some(config) = gandalf.config.repo(repo) else {
        return Ok(None);
    };
    let Some(gh) = gandalf.github.as_ref() else {
        return Ok(None);
    };
    let item = {
        let mut conn = gandalf.pool.acquire().await?;
        store::active_item(&mut conn, &config.name, number).await?
    };
    let Some(item) = item else {
        return Ok(None);
    };
    let Some(reason) = standing(
        gh,
        &config.name,
        number,
        &item.head_sha,
        &item.author,
        config.required_approvals,
    )
    .await?
    else {
        return Ok(None);
    };
    let mut conn = gandalf.pool.acquire().await?;
    // A verifying PR's watcher sees its row end and stops the run (its environment reverted); a
    // landing one is past this point and re-checks by itself.
    if store::finish(&mut conn, item.id, &reason, gandalf.clock.now()).await? {
        tracing::info!(repo = %config.name, pr = %number, %reason, "dropped after a review");
        Ok(Some(messages::dropped(&reason)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: &str) -> CommitSha {
        c.repeat(20).parse().unwrap()
    }

    fn review(login: &str, state: ReviewState, at: &str) -> Review {
        Review {
            login: login.into(),
            state,
            commit_id: Some(sha(at)),
        }
    }

    use ReviewState::*;

    #[test]
    fn the_latest_verdict_on_the_head_counts_and_comments_change_nothing() {
        let reviews = vec![
            review("bob", Approved, "a1"),
            review("carol", Approved, "a2"),
            review("dave", Approved, "a2"),
            review("dave", ChangesRequested, "a2"),
            review("alice", Approved, "a2"),
            review("erin", Commented, "a2"),
            review("carol", Commented, "a2"),
        ];
        let t = tally(&reviews, &sha("a2"), "alice");
        assert_eq!(t.approvals, 1, "carol only: bob's is on another head, alice wrote it");
        assert_eq!(t.changes_requested, vec!["dave".to_string()]);
    }

    #[test]
    fn a_dismissal_withdraws_the_approval_and_a_new_approval_lifts_a_request() {
        let head = sha("a2");
        let dismissed = vec![review("bob", Approved, "a2"), review("bob", Dismissed, "a2")];
        assert_eq!(tally(&dismissed, &head, "alice").approvals, 0);
        let changed_mind = vec![review("bob", ChangesRequested, "a2"), review("Bob", Approved, "a2")];
        let t = tally(&changed_mind, &head, "alice");
        assert_eq!(
            (t.approvals, t.changes_requested.len()),
            (1, 0),
            "logins are case-insensitive"
        );
    }

    #[test]
    fn a_request_on_an_older_head_is_not_a_verdict_on_this_one() {
        let t = tally(&[review("bob", ChangesRequested, "a1")], &sha("a2"), "alice");
        assert!(t.changes_requested.is_empty());
    }
}
