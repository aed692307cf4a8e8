//! Why a pull request leaves the queue without landing: one [`DropReason`], decided in one place
//! and worded in one place.
//!
//! Four paths find these out — a `pull_request` or `pull_request_review` delivery (`handler`,
//! [`crate::reviews`]), the reconciliation with
//! GitHub that covers missed deliveries (`worker`), and the checks a verification makes before it
//! builds and lands (`verify`) — and a person may cancel. They all end the item with
//! [`DropReason::state`] and store [`DropReason`]'s `Display` as its `outcome_reason`, which
//! `status`, the control center and the PR comment ([`crate::messages::dropped`]) show.

use std::fmt;

use shared::github::{CommitSha, PullRequest};

use crate::store::ItemState;

/// What a `pull_request` delivery says happened to a pull request, as far as the queue cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrChange {
    /// Commits were pushed: its head is now `head`.
    Pushed {
        head: CommitSha,
    },
    Closed {
        merged: bool,
    },
    /// Its base branch was changed.
    Retargeted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// New commits were pushed: the approvals were given on another head.
    NewCommits {
        head: CommitSha,
    },
    /// It was merged on GitHub by someone else.
    MergedElsewhere,
    Closed,
    /// It now targets another branch than the queue's base.
    BaseChanged,
    /// Merging it into the base changes nothing: its commits are there already.
    AlreadyInBase {
        base: String,
    },
    /// Someone took it out of the queue (`cancel`); `by` is their GitHub login.
    Cancelled {
        by: String,
    },
    /// Its approvals on the pinned head fell below `required_approvals` (a review was dismissed,
    /// or an approver changed their mind).
    TooFewApprovals {
        have: usize,
        need: u32,
    },
    /// A reviewer with write access requested changes; `by` are their GitHub logins.
    ChangesRequested {
        by: Vec<String>,
    },
}

impl DropReason {
    /// What GitHub says about a queued PR that makes it leave the queue, checked in this order:
    /// merged, closed, new commits (its head is no longer `pinned`), retargeted away from `base`.
    pub fn from_pull(pull: &PullRequest, pinned: &CommitSha, base: &str) -> Option<DropReason> {
        if pull.merged {
            Some(DropReason::MergedElsewhere)
        } else if !pull.is_open() {
            Some(DropReason::Closed)
        } else if pull.head_sha != *pinned {
            Some(DropReason::NewCommits {
                head: pull.head_sha.clone(),
            })
        } else if pull.base_ref != base {
            Some(DropReason::BaseChanged)
        } else {
            None
        }
    }

    /// Whether a PR GitHub shows merged is better left to the queue worker than dropped: an
    /// attempt of it recorded a commit before moving the base (`landing`), so the merge may be
    /// Gandalf's own landing, answered after the replica that made it lost the queues (SPEC §8).
    /// The worker checks the base for that commit and concludes the PR as landed, or drops it.
    pub fn leaves_it_to_the_worker(&self, landing: &[CommitSha]) -> bool {
        matches!(self, DropReason::MergedElsewhere) && !landing.is_empty()
    }

    /// What a `pull_request` delivery means for an item queued with head `pinned`: a push that
    /// leaves the head where it was (a delivery seen again) changes nothing.
    pub fn from_change(change: &PrChange, pinned: &CommitSha) -> Option<DropReason> {
        match change {
            PrChange::Pushed { head } if head == pinned => None,
            PrChange::Pushed { head } => Some(DropReason::NewCommits { head: head.clone() }),
            PrChange::Closed { merged: true } => Some(DropReason::MergedElsewhere),
            PrChange::Closed { merged: false } => Some(DropReason::Closed),
            PrChange::Retargeted => Some(DropReason::BaseChanged),
        }
    }

    /// The state the item ends in: `cancelled` when a person took it out, else `dropped`.
    pub fn state(&self) -> ItemState {
        match self {
            DropReason::Cancelled { .. } => ItemState::Cancelled,
            _ => ItemState::Dropped,
        }
    }
}

/// The reason as stored in `outcome_reason` and read after "Removed from the merge queue: ".
impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::NewCommits { head } => write!(
                f,
                "new commits were pushed ({}); queue it again once they are reviewed",
                head.short()
            ),
            DropReason::MergedElsewhere => f.write_str("it was merged outside the queue"),
            DropReason::Closed => f.write_str("it was closed"),
            DropReason::BaseChanged => f.write_str("its base branch changed"),
            DropReason::AlreadyInBase { base } => write!(f, "its changes are already in `{base}`"),
            DropReason::Cancelled { by } => write!(f, "cancelled by {by}"),
            DropReason::TooFewApprovals { have, need } => write!(
                f,
                "it has {have} of the {need} approvals it needs on its head; queue it again once it is approved"
            ),
            DropReason::ChangesRequested { by } => write!(
                f,
                "changes were requested by {}; queue it again once they approve",
                by.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::github::{PrNumber, PullState};

    use super::*;

    fn sha(c: char) -> CommitSha {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn pull() -> PullRequest {
        PullRequest {
            number: PrNumber::new(7).unwrap(),
            title: "Pay faster".into(),
            author: "alice".into(),
            state: PullState::Open,
            draft: false,
            merged: false,
            head_sha: sha('a'),
            head_ref: "pay-faster".into(),
            base_ref: "main".into(),
            body: String::new(),
        }
    }

    #[test]
    fn github_decides_in_order_merged_closed_new_commits_base() {
        assert_eq!(DropReason::from_pull(&pull(), &sha('a'), "main"), None);
        let moved = PullRequest {
            head_sha: sha('b'),
            base_ref: "release".into(),
            ..pull()
        };
        assert_eq!(
            DropReason::from_pull(&moved, &sha('a'), "main"),
            Some(DropReason::NewCommits { head: sha('b') })
        );
        let retargeted = PullRequest {
            base_ref: "release".into(),
            ..pull()
        };
        assert_eq!(
            DropReason::from_pull(&retargeted, &sha('a'), "main"),
            Some(DropReason::BaseChanged)
        );
        let closed = PullRequest {
            state: PullState::Closed,
            ..moved.clone()
        };
        assert_eq!(
            DropReason::from_pull(&closed, &sha('a'), "main"),
            Some(DropReason::Closed)
        );
        let merged = PullRequest { merged: true, ..closed };
        assert_eq!(
            DropReason::from_pull(&merged, &sha('a'), "main"),
            Some(DropReason::MergedElsewhere)
        );
    }

    #[test]
    fn deliveries_decide_the_same_way() {
        let pushed = |c| PrChange::Pushed { head: sha(c) };
        assert_eq!(DropReason::from_change(&pushed('a'), &sha('a')), None);
        // Merged on GitHub after Gandalf recorded a landing commit: the worker decides.
        assert!(DropReason::MergedElsewhere.leaves_it_to_the_worker(&[sha('c')]));
        assert!(!DropReason::MergedElsewhere.leaves_it_to_the_worker(&[]));
        assert!(!DropReason::Closed.leaves_it_to_the_worker(&[sha('c')]));
        assert_eq!(
            DropReason::from_change(&pushed('b'), &sha('a')),
            Some(DropReason::NewCommits { head: sha('b') })
        );
        assert_eq!(
            DropReason::from_change(&PrChange::Closed { merged: true }, &sha('a')),
            Some(DropReason::MergedElsewhere)
        );
        assert_eq!(
            DropReason::from_change(&PrChange::Closed { merged: false }, &sha('a')),
            Some(DropReason::Closed)
        );
        assert_eq!(
            DropReason::from_change(&PrChange::Retargeted, &sha('a')),
            Some(DropReason::BaseChanged)
        );
    }

    #[test]
    fn only_a_cancellation_ends_as_cancelled() {
        assert_eq!(DropReason::Cancelled { by: "bob".into() }.state(), ItemState::Cancelled);
        assert_eq!(DropReason::Closed.state(), ItemState::Dropped);
    }

    #[test]
    fn wording() {
        let all = [
            DropReason::NewCommits { head: sha('b') },
            DropReason::MergedElsewhere,
            DropReason::Closed,
            DropReason::BaseChanged,
            DropReason::AlreadyInBase { base: "main".into() },
            DropReason::Cancelled { by: "bob".into() },
            DropReason::TooFewApprovals { have: 0, need: 1 },
            DropReason::ChangesRequested {
                by: vec!["carol".into(), "dave".into()],
            },
        ];
        let text: Vec<String> = all.iter().map(|r| r.to_string()).collect();
        insta::assert_snapshot!(text.join("\n"), @r"
        new commits were pushed (bbbbbbb); queue it again once they are reviewed
        it was merged outside the queue
        it was closed
        its base branch changed
        its changes are already in `main`
        cancelled by bob
        it has 0 of the 1 approvals it needs on its head; queue it again once it is approved
        changes were requested by carol, dave; queue it again once they approve
        ");
    }
}
