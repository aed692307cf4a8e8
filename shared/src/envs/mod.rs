//! Development environments and their leases: the model both bots share.
//!
//! The rules live in [`store`], as transactions over Postgres: one lease per environment is a
//! primary key, not a hope. Functions there take an open transaction and return what happened; the
//! caller writes the messages that report it into the outbox in the same transaction, so a change
//! and its announcement commit together.

pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::ids::{EnvName, Holder, SlackUserId};

pub use store::NightlyPhase;

/// Why someone holds a lease, as they typed it (free text, possibly empty). A type of its own so
/// that it can never be passed where an environment name or a holder is expected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct LeaseReason(String);

impl LeaseReason {
    pub fn new(reason: impl Into<String>) -> Self {
        LeaseReason(reason.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for LeaseReason {
    fn from(s: &str) -> Self {
        LeaseReason(s.to_string())
    }
}

impl From<String> for LeaseReason {
    fn from(s: String) -> Self {
        LeaseReason(s)
    }
}

impl std::fmt::Display for LeaseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lifecycle state of an environment. Nightly moves it; leases do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "environment_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    Ready,
    Deleting,
    Deleted,
    Creating,
    Faulted,
}

impl EnvState {
    pub const ALL: [EnvState; 5] = [
        EnvState::Ready,
        EnvState::Deleting,
        EnvState::Deleted,
        EnvState::Creating,
        EnvState::Faulted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Ready => "ready",
            EnvState::Deleting => "deleting",
            EnvState::Deleted => "deleted",
            EnvState::Creating => "creating",
            EnvState::Faulted => "faulted",
        }
    }

    /// Nightly is tearing it down or building it: nobody may deploy.
    pub fn is_busy(self) -> bool {
        matches!(self, EnvState::Deleting | EnvState::Creating)
    }
}

/// The live lease of an environment. Gandalf holds leases too ([`Holder::Gandalf`]): Nightly skips
/// environments it holds, and deploy-check lets `as: "gandalf"` deploy there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Lease {
    #[serde(skip)]
    pub environment: EnvName,
    pub holder: Holder,
    pub reason: LeaseReason,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why a step of Nightly failed, as stored (JSON in `environments.fault`) when an environment is
/// faulted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub phase: NightlyPhase,
    pub step: String,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub log_tail: String,
}

/// The outcome of the last Nightly phase that touched an environment (JSON in
/// `environments.last_nightly`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastNightly {
    pub phase: NightlyPhase,
    pub outcome: NightlyOutcome,
    pub finished_at: DateTime<Utc>,
}

/// How a Nightly phase ended on one environment; stored and served as the lowercase word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NightlyOutcome {
    Ok,
    /// A step failed: the environment is `faulted`.
    Faulted,
    /// A crash cut the phase short and it was not resumed in time.
    Interrupted,
    /// The phase looked at the environment and left it alone.
    Skipped,
}

impl NightlyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NightlyOutcome::Ok => "ok",
            NightlyOutcome::Faulted => "faulted",
            NightlyOutcome::Interrupted => "interrupted",
            NightlyOutcome::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for NightlyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a `/bobby deploy`, or of one of its steps (the `deploys` and `deploy_steps`
/// tables' `state` text, and the API's `deploy.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DeployState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Running => "running",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::Cancelled => "cancelled",
            DeployState::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource deployed to an environment by `/bobby deploy` (SPEC §4.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub sha: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The latest deploy to an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySummary {
    pub state: DeployState,
    #[serde(rename = "ref")]
    pub reference: String,
    pub sha: String,
    pub by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Not part of the API's shape: for links to the deploy's page.
    #[serde(skip_serializing, default)]
    pub id: i64,
}

/// Everything there is to know about an environment at one instant: the API's `Environment`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Environment {
    pub name: EnvName,
    pub url: String,
    pub state: EnvState,
    pub lease: Option<Lease>,
    pub preserved_until: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub preserved_by: Option<SlackUserId>,
    pub waitlist: Vec<SlackUserId>,
    pub last_nightly: Option<LastNightly>,
    pub fault: Option<Fault>,
    /// Resources deployed by `/bobby deploy` since Nightly last rebuilt the environment.
    pub deployed: std::collections::BTreeMap<String, Deployed>,
    pub deploy: Option<DeploySummary>,
}

impl Environment {
    pub fn is_preserved_at(&self, now: DateTime<Utc>) -> bool {
        self.preserved_until.is_some_and(|t| t > now)
    }
}

/// An environment as declared by a bot's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub name: EnvName,
    pub url: String,
    pub keep_on_weekends: bool,
}

/// Who is acting, and whether they may act for others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: Holder,
    pub is_admin: bool,
}

impl Actor {
    pub fn person(user: &SlackUserId, is_admin: bool) -> Self {
        Actor {
            id: Holder::Person(user.clone()),
            is_admin,
        }
    }

    /// Gandalf, letting go of its verification environments: never an admin.
    pub fn gandalf() -> Self {
        Actor {
            id: Holder::Gandalf,
            is_admin: false,
        }
    }
}

/// How long leases last and how far they may reach; resolved from a bot's configuration.
#[derive(Clone, Debug)]
pub struct LeasePolicy {
    /// What a lock without `for`/`until` gets, and what a waiter gets on handoff.
    pub default_lease: DefaultLease,
    pub max_lease: Span,
    pub remind_before: Span,
    pub timezone: chrono_tz::Tz,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultLease {
    /// Until the next Nightly delete, at this local time.
    UntilNightly(chrono::NaiveTime),
    For(Span),
}

impl LeasePolicy {
    /// When a lease taken now with no explicit end expires.
    pub fn default_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let t = match &self.default_lease {
            DefaultLease::UntilNightly(at) => crate::schedule::next_local_time(now, self.timezone, *at),
            DefaultLease::For(span) => now + span.chrono(),
        };
        t.min(self.latest_expiry(now))
    }

    /// The furthest expiry a lease may have when taken or extended now.
    pub fn latest_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.max_lease.chrono()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faults and `last_nightly` are JSON inside jsonb columns: rows written before these were
    /// enums must still decode, and what is written now must read the same.
    #[test]
    fn stored_nightly_json_keeps_its_words() {
        let fault: Fault =
            serde_json::from_str(r#"{"phase":"create","step":"create","exit_code":1,"attempts":3,"log_tail":"boom"}"#)
                .unwrap();
        assert_eq!(fault.phase, NightlyPhase::Create);
        let last: LastNightly =
            serde_json::from_str(r#"{"phase":"delete","outcome":"interrupted","finished_at":"2026-01-05T18:00:00Z"}"#)
                .unwrap();
        assert_eq!(
            (last.phase, last.outcome),
            (NightlyPhase::Delete, NightlyOutcome::Interrupted)
        );
        let json = serde_json::to_value(&last).unwrap();
        assert_eq!(
            (json["phase"].as_str(), json["outcome"].as_str()),
            (Some("delete"), Some("interrupted"))
        );
        for o in [
            NightlyOutcome::Ok,
            NightlyOutcome::Faulted,
            NightlyOutcome::Interrupted,
            NightlyOutcome::Skipped,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap().as_str(), Some(o.as_str()));
        }
        let d: DeployState = serde_json::from_str(r#""cancelled""#).unwrap();
        assert_eq!(d, DeployState::Cancelled);
    }
}
