//! Assembles a running Gandalf: database, configuration sync, HTTP server and the delivery
//! processor (and with `slack_mode = "socket"` the Socket Mode client). `main` and the end-to-end tests start it through the same [`start`].

use std::sync::Arc;

use anyhow::Context;
use shared::clock::SharedClock;
use shared::github::Github;
use shared::http::About;
use shared::settings::Secrets;
use shared::slack::SlackApi;
use shared::slack::outbox::{Backoff, Deliverer, Sender};
use shared::slack::signature::SlackVerifier;
use shared::slack::socket::{SlackMode, SocketMode, SocketStatus, SocketTiming, require_app_token};
use shared::steps::Registry;
use tokio::sync::watch;

use crate::config::GandalfConfig;
use crate::handler::Gandalf;
use crate::routes::{AppState, router};
use crate::webhook::WebhookSecret;
use crate::worker::QueueWorker;

pub struct Options {
    pub config: GandalfConfig,
    pub secrets: Secrets,
    pub clock: SharedClock,
    pub listener: tokio::net::TcpListener,
    pub pool_size: u32,
    /// GitHub, when credentials are configured (tests pass a client pointed at their fake).
    pub github: Option<Github>,
}

pub use shared::running::Running;

const ENDPOINTS: &[&str] = &[
    "POST /github/webhook",
    "POST /slack/commands",
    "GET  /api/v1/repos/{owner}/{repo}/queue",
    "GET  /api/v1/repos/{owner}/{repo}/pulls/{n}",
    "GET  /api/v1/repos/{owner}/{repo}/history?limit=50",
];

pub async fn start(opts: Options) -> anyhow::Result<Running> {
    // Socket Mode without its token could not hear a single command: refuse before anything else.
    let socket = match opts.config.slack_mode {
        SlackMode::Socket => {
            Some(require_app_token(opts.secrets.slack_app_token.as_ref()).map_err(anyhow::Error::msg)?)
        }
        SlackMode::Http => None,
    };
    let socket_status = socket.as_ref().map(|_| SocketStatus::default());
    let database_url = opts.secrets.require_database_url()?.to_string();
    let pool = prepare_database(&database_url, &opts).await?;
    let notes = setup_notes(&opts);
    let slack = SlackApi::new(opts.secrets.slack_bot_token.as_ref(), &opts.secrets.slack_api_url);
    if !slack.is_configured() {
        tracing::warn!("no SLACK_BOT_TOKEN: Slack messages are logged instead of sent");
    }
    let mask = Arc::new(opts.secrets.mask_values());
    let about = About {
        bot: "gandalf",
        endpoints: ENDPOINTS,
        notes,
        public_url: opts.config.public_url.clone(),
        people: opts.config.people.clone(),
        timezone: chrono_tz::UTC,
        clock: opts.clock.clone(),
        socket: socket_status.clone(),
    };
    let gandalf = Gandalf {
        pool: pool.clone(),
        mirrors: shared::working_copy::Mirrors::new(&opts.config.state_dir),
        config: Arc::new(opts.config),
        github: opts.github,
        clock: opts.clock.clone(),
    };
    let state = AppState {
        gandalf: gandalf.clone(),
        slack: slack.clone(),
        verifier: SlackVerifier::new(opts.secrets.slack_signing_secret.clone(), opts.clock.clone()),
        webhook_secret: WebhookSecret(opts.secrets.github_webhook_secret.clone().map(Arc::new)),
    };
    let socket = match (socket, socket_status) {
        (Some(app_token), Some(status)) => Some(SocketMode {
            slack: slack.clone(),
            app_token,
            pool: pool.clone(),
            handler: crate::routes::socket_handler(state.clone()),
            status,
            timing: SocketTiming::default(),
        }),
        _ => None,
    };
    let app = shared::http::instrument(
        router(state)
            .merge(shared::http::ops_routes(pool.clone(), about))
            .fallback(shared::http::not_found),
    );
    let (shutdown, rx) = watch::channel(false);
    let addr = opts.listener.local_addr()?;
    let listener = opts.listener;
    let server_rx = rx.clone();
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(e) = shared::http::serve(listener, app, server_rx).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    })];
    if let Some(socket) = socket {
        tasks.push(tokio::spawn(socket.run(rx.clone())));
    }
    tasks.extend(spawn_workers(gandalf, database_url, slack, mask, &rx));
    tracing::info!(address = %addr, "gandalf is listening");
    Ok(Running::new(addr, pool, shutdown, tasks))
}

/// Connects, migrates, and registers the verification environments and the queues.
async fn prepare_database(database_url: &str, opts: &Options) -> anyhow::Result<sqlx::PgPool> {
    let pool = shared::db::connect(database_url, opts.pool_size)
        .await
        .context("connecting to Postgres")?;
    shared::db::migrate(&pool)
        .await
        .context("applying database migrations")?;
    shared::envs::store::sync_declared(&pool, "gandalf", &opts.config.verification_environments(), true)
        .await
        .context("registering the verification environments")?;
    let repos: Vec<_> = opts.config.repos.iter().map(|r| r.name.clone()).collect();
    crate::store::ensure_repos(&mut *pool.acquire().await?, &repos).await?;
    Ok(pool)
}

/// What is missing or not supported in this setup: logged, and shown by `/about`.
fn setup_notes(opts: &Options) -> Vec<String> {
    let mut notes = vec![];
    if opts.github.is_none() {
        let why = "no GitHub credentials (GITHUB_TOKEN, or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY_FILE + GITHUB_APP_INSTALLATION_ID): the queues are idle";
        tracing::warn!("{why}");
        notes.push(why.to_string());
    }
    for repo in opts.config.repos.iter().filter(|r| r.checkout.is_none()) {
        let why = format!(
            "{}: no `checkout` key, so its steps run in the config file's directory and do not see the code they verify; set `checkout = true` (or `false` to keep this and silence the warning)",
            repo.name
        );
        tracing::warn!("{why}");
        notes.push(why);
    }
    if opts.secrets.slack_signing_secret.is_none() {
        let why = "no SLACK_SIGNING_SECRET: Slack requests are refused; use `gandalf exec` to try commands";
        tracing::warn!("{why}");
        notes.push(why.to_string());
    }
    if opts.secrets.github_webhook_secret.is_none() {
        let why = "no GITHUB_WEBHOOK_SECRET: GitHub deliveries are refused";
        tracing::warn!("{why}");
        notes.push(why.to_string());
    }
    notes
}

/// The delivery processor, the queue worker and the Slack outbox, each stopping on `rx`.
fn spawn_workers(
    gandalf: Gandalf,
    database_url: String,
    slack: SlackApi,
    mask: Arc<Vec<String>>,
    rx: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pool = gandalf.pool.clone();
    let mut tasks = vec![tokio::spawn(crate::webhook::process_deliveries(
        gandalf.clone(),
        rx.clone(),
    ))];
    // SPEC §5.7 (issue 17): Gandalf's check on each PR, delivered apart from the queue.
    let checks = crate::checks::outbox::CheckUpdates::new(gandalf.clone(), database_url.clone());
    tasks.push(tokio::spawn(checks.run(rx.clone())));
    let worker = QueueWorker {
        gandalf,
        registry: Some(Registry::new(pool.clone())),
        mask,
    };
    tasks.push(tokio::spawn(worker.run(rx.clone())));
    let deliverer = Deliverer {
        pool,
        database_url,
        slack,
        sender: Sender::Gandalf,
        clock: Arc::new(shared::clock::SystemClock),
        backoff: Backoff::default(),
    };
    tasks.push(tokio::spawn(deliverer.run(rx.clone())));
    tasks
}
