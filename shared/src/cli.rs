//! What both bots' command lines share: the process shell around them (logs, runtime, exit codes)
//! and the `migrate` subcommand.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;

use crate::settings::{ProcessEnv, Secrets};

/// Runs a bot's command: initialises logging, starts a Tokio runtime, and turns an error into exit
/// status 2 with the whole error chain on stderr.
pub fn run_main<F>(bot: &str, command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    crate::http::init_tracing(crate::settings::log_format_json(&ProcessEnv));
    // Steps run code we did not write: they must not read our environment through /proc (SPEC §8).
    crate::steps::env::harden_process();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{bot}: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{bot}: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `migrate`: applies pending migrations to `DATABASE_URL` and exits.
pub async fn migrate() -> anyhow::Result<ExitCode> {
    let secrets = Secrets::from_env(&ProcessEnv)?;
    let pool = crate::db::connect(secrets.require_database_url()?, 2)
        .await
        .context("connecting to Postgres")?;
    crate::db::migrate(&pool).await.context("applying migrations")?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
