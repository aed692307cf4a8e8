//! Bobby: leases shared development environments over Slack (SPEC §4).
//!
//! The binary in `main.rs` is a thin shell; everything lives here so the end-to-end tests run the
//! very same code. Where to look:
//!
//! - `command` parses what people type into a `Command` (the environment still as typed);
//! - `handler` decides: `Bobby::execute` dispatches to one module per family (`handler::leases`,
//!   `preserve`, `status`, `nightly`, `deploy`); each resolves the typed name to a configured
//!   `EnvName` and refuses with `shared::refusal` (`refuse(..)` / `?`);
//! - `messages` words it, one module per family, each pinned by insta snapshots
//!   (`messages/snapshots/`); the rules themselves are in `shared::envs::store`;
//! - `routes` is the HTTP surface (Slack, the API, deploy-check), `expiry` the lease-expiry worker,
//!   `nightly` the evening teardown and morning rebuild, `deploy` `/bobby deploy`, `deploy_check`
//!   the deploy gate (their steps' working copies are `shared::copies`, SPEC §5.8), `config` the
//!   TOML, `app` puts it together.

pub mod app;
pub mod command;
pub mod config;
pub mod deploy;
pub mod deploy_check;
pub mod expiry;
pub mod handler;
pub mod messages;
pub mod nightly;
pub mod routes;
