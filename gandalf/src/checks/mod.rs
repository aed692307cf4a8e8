//! Gandalf on the pull request (SPEC §5.7): its own check on each queued PR's pinned head, and the
//! repository's own CI as a gate on the candidate.
//!
//! - [`outbox`]: the check named `gandalf` follows the item's state. A database trigger writes one
//!   row per state change (and per step started) in the transaction of the change, so no code path
//!   can forget it; a worker delivers the rows to GitHub in order per item, as a check run — or as
//!   a commit status `gandalf` where the token cannot create check runs — retrying through
//!   outages, never blocking the queue. [`landing_status`] is the one synchronous write: the
//!   status `gandalf` = `success` on the exact commit about to land, just before the base moves.
//! - [`required`]: `required_checks`, waited for on the candidate while the pipeline runs, fed by
//!   `check_run`/`check_suite`/`status` deliveries with a slow poll of GitHub as a fallback.
//!
//! What the check says is worded in `crate::messages::checks`, from the [`CheckView`] here.

pub mod outbox;
pub mod required;

use serde_json::{Value, json};
use shared::github::{CHECK_OUTPUT_LIMIT, CommitSha, GhResult, Github, RepoName, STATUS_DESCRIPTION_LIMIT, shorten};

/// The name of Gandalf's check run and the context of its commit status.
pub const CHECK_NAME: &str = "gandalf";

/// How a finished check ended, in GitHub's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    /// Landed.
    Success,
    /// Red: the failing step, its exit status and last lines are in the summary.
    Failure,
    /// Cancelled by someone.
    Cancelled,
    /// Dropped (new commits, closed, approvals withdrawn…): not the code's verdict.
    Neutral,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Neutral => "neutral",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed(Conclusion),
}

/// What Gandalf's check shows at one moment: GitHub renders `title` next to the check and
/// `summary` (Markdown) on its page; a commit status gets the title as its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    pub status: CheckStatus,
    pub title: String,
    pub summary: String,
}

impl CheckView {
    /// The body of `POST …/check-runs` (with `head_sha`) or `PATCH …/check-runs/{id}` (without).
    pub fn check_run(&self, head_sha: Option<&CommitSha>, details_url: &str, external_id: &str) -> Value {
        let mut body = json!({
            "name": CHECK_NAME,
            "details_url": details_url,
            "external_id": external_id,
            "output": {
                "title": shorten(&self.title, 255),
                "summary": shorten(&self.summary, CHECK_OUTPUT_LIMIT),
            },
        });
        match self.status {
            CheckStatus::Queued => body["status"] = json!("queued"),
            CheckStatus::InProgress => body["status"] = json!("in_progress"),
            CheckStatus::Completed(c) => {
                body["status"] = json!("completed");
                body["conclusion"] = json!(c.as_str());
            }
        }
        if let Some(sha) = head_sha {
            body["head_sha"] = json!(sha.as_str());
        }
        body
    }

    /// The commit status that stands in for the check run: statuses know only `pending`,
    /// `success`, `failure` and `error` (a cancelled or dropped PR is an `error`: not green, and
    /// not the code's fault).
    pub fn status_state(&self) -> &'static str {
        match self.status {
            CheckStatus::Queued | CheckStatus::InProgress => "pending",
            CheckStatus::Completed(Conclusion::Success) => "success",
            CheckStatus::Completed(Conclusion::Failure) => "failure",
            CheckStatus::Completed(Conclusion::Cancelled | Conclusion::Neutral) => "error",
        }
    }

    /// The status's `description`: GitHub takes at most 140 characters.
    pub fn status_description(&self) -> String {
        shorten(&self.title, STATUS_DESCRIPTION_LIMIT)
    }
}

/// Just before the base moves: the commit status `gandalf` = `success` on the exact commit that
/// lands, so a branch rule requiring `gandalf` lets this landing through and nothing else. A
/// status, not a check run: it works with every kind of token, and a rule can require it.
pub async fn landing_status(github: &Github, repo: &RepoName, sha: &CommitSha, details_url: &str) -> GhResult<()> {
    let description = crate::messages::checks::landing_description();
    github
        .set_status(repo, sha, CHECK_NAME, "success", &description, Some(details_url))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: CheckStatus, title: &str, summary: &str) -> CheckView {
        CheckView {
            status,
            title: title.into(),
            summary: summary.into(),
        }
    }

    #[test]
    fn a_check_run_body_has_what_github_requires_for_its_status() {
        let sha: CommitSha = "a".repeat(40).parse().unwrap();
        let queued = view(CheckStatus::Queued, "Queued: 2nd", "s").check_run(Some(&sha), "http://g/x", "7");
        assert_eq!(queued["status"], "queued");
        assert_eq!(queued["head_sha"], "a".repeat(40));
        assert!(queued.get("conclusion").is_none(), "only completed runs carry one");
        assert_eq!(queued["details_url"], "http://g/x");
        assert_eq!(queued["external_id"], "7");
        let done = view(CheckStatus::Completed(Conclusion::Neutral), "Dropped", "s").check_run(None, "u", "7");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["conclusion"], "neutral");
        assert!(done.get("head_sha").is_none(), "a PATCH cannot move a check run");
    }

    #[test]
    fn outputs_are_cut_to_githubs_limits() {
        let long = view(CheckStatus::InProgress, &"t".repeat(400), &"s".repeat(70_000));
        let body = long.check_run(None, "u", "1");
        assert_eq!(
            body["output"]["summary"].as_str().unwrap().chars().count(),
            CHECK_OUTPUT_LIMIT
        );
        assert_eq!(body["output"]["title"].as_str().unwrap().chars().count(), 255);
        assert_eq!(long.status_description().chars().count(), 140);
        assert!(long.status_description().ends_with('…'));
    }

    #[test]
    fn statuses_have_four_states() {
        let s = |st| view(st, "t", "s").status_state();
        assert_eq!(s(CheckStatus::Queued), "pending");
        assert_eq!(s(CheckStatus::InProgress), "pending");
        assert_eq!(s(CheckStatus::Completed(Conclusion::Success)), "success");
        assert_eq!(s(CheckStatus::Completed(Conclusion::Failure)), "failure");
        assert_eq!(s(CheckStatus::Completed(Conclusion::Cancelled)), "error");
        assert_eq!(s(CheckStatus::Completed(Conclusion::Neutral)), "error");
    }
}
