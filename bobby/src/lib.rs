//! Bobby: leases shared development environments over Slack (SPEC §4).
//!
//! The binary in `main.rs` is a thin shell; everything lives here so the end-to-end tests run the
//! very same code. Where to look: `command` parses what people type, `handler` decides, `messages`
//! words it, `routes` is the HTTP surface, `expiry` the lease-expiry worker, `nightly` the evening
//! teardown and morning rebuild of the environments, `deploy_check` the deploy gate, `config` the
//! TOML, `app` puts it together.

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
