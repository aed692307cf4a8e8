//! Every end-to-end test in one binary (one link of the whole workspace instead of one per file).
//! Each module is one surface or one family of faults; `bg_tests` (this crate's `src/`) holds
//! the harness: a throwaway Postgres, the fakes of Slack and GitHub, `spawn_bobby`/`spawn_gandalf`.
//! Run one family with `cargo test -p bg-tests --test e2e <module>::`.

mod bobby_api;
mod bobby_deploy;
mod bobby_leases;
mod bobby_nightly;
mod bobby_safety;
mod bobby_working_copies;
mod control_center;
mod control_metrics;
mod demo;
mod docs_config_reference;
mod fake_github_git;
mod faults_day;
mod faults_fencing;
mod faults_postgres;
mod faults_shutdown;
mod faults_slack;
mod gandalf_batches;
mod gandalf_checks;
mod gandalf_commands;
mod gandalf_deliveries;
mod gandalf_landing;
mod gandalf_queue;
mod gandalf_webhooks;
mod github_client;
mod github_faults;
mod hostile_input;
mod listen_reconnect;
mod secrets_missing;
mod slack_socket;
mod step_secrets;
