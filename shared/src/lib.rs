//! The domain crate of Bobby and Gandalf: environments and leases, persistence, the Slack adapters
//! and the HTTP plumbing both bots serve. No binary lives here; `bobby/` and `gandalf/` are thin
//! shells around it.

pub mod cli;
pub mod clock;
pub mod control;
pub mod db;
pub mod duration;
pub mod envs;
pub mod github;
pub mod http;
pub mod ids;
pub mod people;
pub mod queue;
pub mod refusal;
pub mod resources;
pub mod running;
pub mod schedule;
pub mod settings;
pub mod slack;
pub mod steps;
