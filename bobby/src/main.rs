//! The `bobby` binary: `serve`, `migrate`, `exec` (try a command locally), `deploy-check` (the
//! deploy gate for scripts) and `nightly run` (a Nightly phase by hand, waited for).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bobby::config::BobbyConfig;
use bobby::deploy_check::CliOutcome;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use shared::clock::SystemClock;
use shared::ids::SlackUserId;
use shared::settings::{ProcessEnv, Secrets};

#[derive(Parser)]
#[command(
    name = "bobby",
    version,
    about = "Bobby: leases shared development environments over Slack"
)]
struct Cli {
    /// The bobby.toml to use.
    #[arg(long, global = true, env = "BOBBY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: HTTP endpoints, lease expiry and the Slack outbox.
    Serve {
        /// Listen address; overrides `listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one command as a Slack user, exactly as `/bobby` would, and print the reply.
    Exec {
        /// The Slack user id to act as, e.g. U0ALICE.
        #[arg(long = "as", value_name = "SLACK_ID")]
        as_user: String,
        /// The command text, e.g. "lock env-4 for 2h".
        text: String,
    },
    /// Ask a running Bobby whether someone may deploy to an environment. Exits 0 (allowed),
    /// 1 (refused) or 2 (could not decide).
    DeployCheck {
        /// The environment, e.g. env-4.
        env: String,
        /// Who deploys: a Slack id, GitHub login or email.
        #[arg(long = "as", value_name = "WHO")]
        who: String,
        /// Bobby's base URL.
        #[arg(long, env = "BOBBY_URL", default_value = "http://127.0.0.1:8081")]
        url: String,
    },
    /// Nightly by hand.
    Nightly {
        #[command(subcommand)]
        command: NightlyCli,
    },
}

#[derive(Subcommand)]
enum NightlyCli {
    /// Run a Nightly phase now (as `/bobby nightly run` does), wait for it and print the outcome.
    /// Exits 0 when it went through, 1 when an environment faulted, 2 on bad input.
    Run {
        /// `delete` or `create`.
        #[arg(value_parser = ["delete", "create"])]
        phase: String,
        /// Only this environment.
        env: Option<String>,
        /// Print what would run, run nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::cli::run_main("bobby", run(cli))
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<BobbyConfig> {
    let path = path.context("no config: pass --config bobby.toml or set BOBBY_CONFIG")?;
    Ok(BobbyConfig::load(&path)?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { listen } => serve(load_config(cli.config)?, listen).await,
        Command::Migrate => shared::cli::migrate().await,
        Command::Exec { as_user, text } => {
            let user: SlackUserId = as_user.parse()?;
            exec(load_config(cli.config)?, &user, &text).await
        }
        Command::Nightly {
            command: NightlyCli::Run { phase, env, dry_run },
        } => nightly_run(load_config(cli.config)?, &phase, env.as_deref(), dry_run).await,
        Command::DeployCheck { env, who, url } => Ok(deploy_check(&env, &who, &url).await),
    }
}

/// `bobby serve`: until SIGTERM or Ctrl-C, then a graceful stop.
async fn serve(config: BobbyConfig, listen: Option<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    let secrets = Secrets::from_env(&ProcessEnv)?;
    let addr = listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let running = bobby::app::start(bobby::app::Options {
        config,
        secrets,
        clock: Arc::new(SystemClock),
        listener,
        pool_size: shared::settings::database_pool_size(&ProcessEnv),
        outbox_backoff: Default::default(),
        outbox_clock: Arc::new(SystemClock),
    })
    .await?;
    let (_signals, mut stop) = shared::http::shutdown_on_signals();
    let _ = stop.wait_for(|s| *s).await;
    let handle = running.shutdown_handle();
    let _ = handle.send(true);
    if tokio::time::timeout(bobby::app::SHUTDOWN_GRACE, running.wait())
        .await
        .is_err()
    {
        tracing::warn!("work did not stop within the grace period; exiting anyway");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bobby exec --as U… "<command>"`: one command, as Slack would run it; exit 1 when refused.
async fn exec(config: BobbyConfig, user: &SlackUserId, text: &str) -> anyhow::Result<ExitCode> {
    let secrets = Secrets::from_env(&ProcessEnv)?;
    let pool = shared::db::connect(secrets.require_database_url()?, 2)
        .await
        .context("connecting to Postgres")?;
    shared::db::migrate(&pool).await.context("applying migrations")?;
    shared::envs::store::sync_declared(&pool, "bobby", &config.declared_environments(), false).await?;
    let bobby = bobby::handler::Bobby::new(pool, Arc::new(config), Arc::new(SystemClock));
    let answer = bobby.handle(user, text).await;
    println!("{}", answer.reply.plain());
    Ok(if answer.refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `bobby nightly run <phase> [env] [--dry-run]`: exit 0 done, 1 faults, 2 could not run.
async fn nightly_run(config: BobbyConfig, phase: &str, env: Option<&str>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let Some(phase) = bobby::nightly::Phase::parse(phase) else {
        eprintln!("bobby: `{phase}` is not a Nightly phase; use delete or create");
        return Ok(ExitCode::from(2));
    };
    if config.nightly.is_none() {
        eprintln!("bobby: the config has no [nightly] section, so there is no Nightly to run");
        return Ok(ExitCode::from(2));
    }
    let secrets = Secrets::from_env(&ProcessEnv)?;
    let database_url = secrets.require_database_url()?.to_string();
    let pool = shared::db::connect(&database_url, 8)
        .await
        .context("connecting to Postgres")?;
    shared::db::migrate(&pool).await.context("applying migrations")?;
    shared::envs::store::sync_declared(&pool, "bobby", &config.declared_environments(), false).await?;
    // Create steps get their working copy as under the server (SPEC §4.5): same mirrors, same remote.
    let github = if config.nightly.as_ref().is_some_and(|n| n.repo.is_some()) {
        shared::github::Github::from_secrets(&secrets).await?
    } else {
        None
    };
    let code = bobby::app::nightly_code(&config, github, &shared::working_copy::Mirrors::new(&config.state_dir));
    let bobby = bobby::handler::Bobby::new(pool.clone(), Arc::new(config), Arc::new(SystemClock));
    let registry = shared::steps::Registry::new(pool);
    let Some(nightly) = bobby::nightly::Nightly::new(bobby, Some(registry), secrets.mask_values()) else {
        return Ok(ExitCode::from(2));
    };
    let nightly = nightly.with_code(code);
    let outcome = bobby::nightly::cli::run(&nightly, &database_url, phase, env, dry_run).await?;
    if outcome.code == 2 {
        eprintln!("{}", outcome.text);
    } else {
        println!("{}", outcome.text);
    }
    Ok(ExitCode::from(outcome.code))
}

/// `bobby deploy-check <env> --as <who>`: asks a running Bobby; exit 0 allowed, 1 refused, 2 unknown.
async fn deploy_check(env: &str, who: &str, url: &str) -> ExitCode {
    let token = match Secrets::from_env(&ProcessEnv) {
        Ok(s) => s.bobby_api_token,
        Err(e) => {
            eprintln!("bobby: {e}");
            return ExitCode::from(2);
        }
    };
    match bobby::deploy_check::ask(url, token.as_ref().map(|t| t.expose_secret()), env, who).await {
        CliOutcome::Allowed => {
            println!("allowed: {who} may deploy to {env}");
            ExitCode::SUCCESS
        }
        CliOutcome::Refused(reason) => {
            println!("refused: {reason}");
            ExitCode::from(1)
        }
        CliOutcome::Undecided(why) => {
            eprintln!("bobby deploy-check: {why}");
            ExitCode::from(2)
        }
    }
}
