//! The `gandalf` binary: the deploy-verified serial merge queue.
//!
//! `serve` runs the bot; `migrate` applies the schema; `plan` and `resources` are the offline tools
//! around the affected-set planner. The queue itself lives in the library modules.

mod discover;
mod plan;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::settings::{ProcessEnv, Secrets};

#[derive(Parser)]
#[command(name = "gandalf", version, about = "Gandalf: the deploy-verified serial merge queue")]
struct Cli {
    /// The gandalf.toml to use.
    #[arg(long, global = true, env = "GANDALF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: HTTP endpoints and the queue workers.
    Serve {
        /// Listen address; overrides `listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one command as a Slack user, exactly as `/gandalf` would, and print the reply.
    Exec {
        /// The Slack user id to act as, e.g. U0ALICE.
        #[arg(long = "as", value_name = "SLACK_ID")]
        as_user: String,
        /// The command text, e.g. "queue".
        text: String,
    },
    /// Show what a change affects: resources, build levels and deploys (no database needed).
    Plan(plan::PlanArgs),
    /// Tools for the resource map (`.gandalf/resources.toml`).
    Resources {
        #[command(subcommand)]
        command: discover::ResourcesCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::cli::run_main("gandalf", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { listen } => {
            let path = cli
                .config
                .context("no config: pass --config gandalf.toml or set GANDALF_CONFIG")?;
            let config = gandalf::config::GandalfConfig::load(&path)?;
            serve(config, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => shared::cli::migrate().await,
        Command::Exec { as_user, text } => {
            let user: shared::ids::SlackUserId = as_user.parse()?;
            let path = cli
                .config
                .context("no config: pass --config gandalf.toml or set GANDALF_CONFIG")?;
            let config = gandalf::config::GandalfConfig::load(&path)?;
            let secrets = Secrets::from_env(&ProcessEnv)?;
            let pool = shared::db::connect(secrets.require_database_url()?, 2)
                .await
                .context("connecting to Postgres")?;
            shared::db::migrate(&pool).await.context("applying migrations")?;
            let github = gandalf::handler::Gandalf::github_from(&secrets).await?;
            let gandalf = gandalf::handler::Gandalf {
                pool,
                config: std::sync::Arc::new(config),
                github,
                clock: std::sync::Arc::new(shared::clock::SystemClock),
            };
            let answer = gandalf.handle(&user, &text).await;
            println!("{}", answer.reply.plain());
            Ok(if answer.refused {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Plan(args) => plan::run(args),
        Command::Resources { command } => discover::run(command),
    }
}

async fn serve(config: gandalf::config::GandalfConfig, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let secrets = Secrets::from_env(&ProcessEnv)?;
    let database_url = secrets.require_database_url()?.to_string();
    let pool = shared::db::connect(&database_url, 8)
        .await
        .context("connecting to Postgres")?;
    shared::db::migrate(&pool).await.context("applying migrations")?;
    shared::envs::store::sync_declared(&pool, "gandalf", &config.verification_environments(), true).await?;

    let mut notes = Vec::new();
    if !secrets.has_github() {
        let why = "no GitHub credentials (GITHUB_TOKEN, or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY_FILE + GITHUB_APP_INSTALLATION_ID): the queues are idle";
        tracing::warn!("{why}");
        notes.push(why.to_string());
    }
    if secrets.slack_bot_token.is_none() {
        tracing::warn!("no SLACK_BOT_TOKEN: Slack messages are logged instead of sent");
    }
    let app = shared::http::instrument(
        shared::http::ops_routes(
            pool.clone(),
            shared::http::About {
                bot: "gandalf",
                endpoints: &[],
                notes,
            },
        )
        .fallback(shared::http::not_found),
    );
    let addr = listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "gandalf is listening");
    let (_tx, shutdown) = shared::http::shutdown_on_signals();
    shared::http::serve(listener, app, shutdown).await?;
    Ok(())
}
