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
                mirrors: shared::working_copy::Mirrors::new(&config.state_dir),
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
    let addr = listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let github = gandalf::handler::Gandalf::github_from(&secrets).await?;
    let running = gandalf::app::start(gandalf::app::Options {
        config,
        secrets,
        clock: std::sync::Arc::new(shared::clock::SystemClock),
        listener,
        pool_size: shared::settings::database_pool_size(&ProcessEnv),
        github,
    })
    .await?;
    let (_signals, mut stop) = shared::http::shutdown_on_signals();
    let _ = stop.wait_for(|s| *s).await;
    let handle = running.shutdown_handle();
    let _ = handle.send(true);
    if tokio::time::timeout(std::time::Duration::from_secs(20), running.wait())
        .await
        .is_err()
    {
        tracing::warn!("work did not stop within the grace period; exiting anyway");
    }
    Ok(())
}
