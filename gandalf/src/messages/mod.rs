//! Every sentence Gandalf writes — in Slack, on pull requests and in git — in one place. Handlers
//! decide what happened; this module decides how it reads. PR titles, logins and reasons people
//! typed are user input and always escaped.
//!
//! By family: [`commands`] answers `/gandalf` and `@gandalf` (a reply to a PR comment is the same
//! reply rendered as plain text), [`verification`] is what the queue worker says while it verifies
//! and lands (PR comments, the `merges_channel` announcement, DMs, the notes `status` shows). Each
//! has snapshot tests (`snapshots/`) of every message with fixed inputs, so a change of wording
//! shows up in review; why a PR leaves the queue is worded in [`crate::drop_reason`].

use shared::ids::{PrNumber, RepoName};
use shared::slack::mrkdwn::escape;

pub mod checks;
pub mod commands;
pub mod verification;

pub use commands::*;
pub use verification::*;

/// A pull request in Slack: `*acme/platform#42*`.
fn pr(repo: &RepoName, number: PrNumber) -> String {
    format!("*{}#{number}*", escape(&repo.to_string()))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Fixed inputs for the snapshot tests: one item of each shape the messages see.

    use chrono::{DateTime, TimeZone, Utc};
    use shared::queue::{Item, ItemState};
    use shared::slack::Reply;

    pub fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    pub fn sha(c: char) -> shared::ids::CommitSha {
        c.to_string().repeat(40).parse().unwrap()
    }

    /// `acme/platform#42`, queued by alice (Slack U0ALICE) at 09:00, verifying since 09:10.
    pub fn item() -> Item {
        Item {
            id: 1,
            repo: "acme/platform".parse().unwrap(),
            pr: shared::ids::PrNumber::new(42).unwrap(),
            title: "Pay <faster> & cheaper".into(),
            author: "carol".into(),
            head_sha: sha('a'),
            priority: 0,
            queued_by: "alice".into(),
            queued_by_slack: Some("U0ALICE".parse().unwrap()),
            enqueued_at: at(9, 0),
            state: ItemState::Testing,
            base_sha: Some(sha('b')),
            candidate_sha: Some(sha('c')),
            affected: sqlx::types::Json(vec!["billing".into(), "web".into()]),
            outcome_reason: None,
            verify_started_at: Some(at(9, 10)),
            finished_at: None,
            landed_sha: None,
            note: None,
            deployed: sqlx::types::Json(vec![]),
            attempts: 1,
            flaky: false,
        }
    }

    /// A Slack reply as a reviewer reads it: who sees it, the mrkdwn text, any buttons.
    pub fn slack(r: &Reply) -> String {
        let mut out = format!("[{:?}]\n{}", r.visibility, r.text);
        for b in &r.buttons {
            out.push_str(&format!("\n[button: {}]", b.label));
        }
        out
    }

    /// A reply that is also posted as a PR comment (answering `@gandalf …`): Slack, then GitHub.
    pub fn both(r: &Reply) -> String {
        format!("{}\n--- as a PR comment ---\n{}", slack(r), r.plain())
    }
}
