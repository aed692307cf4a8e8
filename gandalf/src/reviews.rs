//! What a `pull_request_review` delivery (submitted, dismissed, edited) does to a queued PR; a stub until the lead's version replaces this file.

use shared::ids::{PrNumber, RepoName};

use crate::handler::Gandalf;

/// Reacts to a review of `repo#number`; returns the comment to post, if any.
pub async fn on_review(_gandalf: &Gandalf, _repo: &RepoName, _number: PrNumber) -> anyhow::Result<Option<String>> {
    Ok(None)
}
