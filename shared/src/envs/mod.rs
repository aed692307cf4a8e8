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
use crate::ids::SlackUserId;

/// The lease holder Gandalf uses for its verification environments. Nightly skips environments held
/// by it, and deploy-check lets `as: "gandalf"` deploy there.
pub const GANDALF_HOLDER: &str = "gandalf";

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

/// The live lease of an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Lease {
    #[serde(skip)]
    pub environment: String,
    pub holder: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// The holder as a Slack user, when it is one (Gandalf holds leases under its own name).
    pub fn holder_slack(&self) -> Option<SlackUserId> {
        self.holder.parse().ok()
    }
}

/// Why a step of Nightly failed, as stored when an environment is faulted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub phase: String,
    pub step: String,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub log_tail: String,
}

/// The outcome of the last Nightly phase that touched an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastNightly {
    pub phase: String,
    pub outcome: String,
    pub finished_at: DateTime<Utc>,
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
    pub state: String,
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
    pub name: String,
    pub url: String,
    pub state: EnvState,
    pub lease: Option<Lease>,
    pub preserved_until: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub preserved_by: Option<String>,
    pub waitlist: Vec<String>,
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
    pub name: String,
    pub url: String,
    pub keep_on_weekends: bool,
}

/// Who is acting, and whether they may act for others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub is_admin: bool,
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
