//! Gandalf: the deploy-verified serial merge queue (SPEC §5).
//!
//! The binary in `main.rs` is a thin shell; the queue lives here so the end-to-end tests run the
//! very same code. Where to look: `command` parses what people type (Slack and PR comments),
//! `handler` decides, `messages` words it (by family: `messages::commands`,
//! `messages::verification`, each with snapshot tests), `store` is the queue in Postgres, `config`
//! reads `gandalf.toml`, `worker` works the queues and `verify` verifies and lands one pull
//! request; `drop_reason` is why a PR leaves the queue, whichever of them finds out; `webhook`
//! takes GitHub's deliveries and `deliveries` processes them (retried, never blocking, once). The ids
//! (`RepoName`, `PrNumber`, `CommitSha`) are `shared::ids`, parsed at the edge (config, command,
//! webhook) and typed everywhere after; refusals are `shared::refusal`.

pub mod app;
pub mod batch;
pub mod checks;
pub mod command;
pub mod config;
pub mod deliveries;
pub mod drop_reason;
pub mod handler;
pub mod landing;
pub mod messages;
pub mod reviews;
pub mod routes;
pub mod store;
pub mod verify;
pub mod webhook;
pub mod worker;
