//! Assembles a running Bobby: database, configuration sync, HTTP server and background workers
//! (lease expiry, the Slack outbox, Nightly), and with `slack_mode = "socket"` the Socket Mode client.
//! `main` and the end-to-end tests start Bobby through the same [`start`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::clock::SharedClock;
use shared::ids::RepoName;
use shared::settings::Secrets;
use shared::slack::SlackApi;
use shared::slack::outbox::{Backoff, Deliverer, Sender};
use shared::slack::signature::SlackVerifier;
use shared::slack::socket::{SlackMode, SocketMode, SocketStatus, SocketTiming, require_app_token};
use shared::steps::Registry;
use shared::working_copy::Mirrors;
use tokio::sync::watch;

use shared::http::About;

use crate::config::{BobbyConfig, CheckoutConfig};
use crate::deploy::Deployer;
use crate::expiry::ExpiryWorker;
use crate::handler::Bobby;
use crate::nightly::scheduler::NightlyWorker;
use crate::nightly::{self, Nightly, NightlyCode};
use crate::routes::{AppState, router};
use shared::copies::Copies;

pub struct Options {
    pub config: BobbyConfig,
    pub secrets: Secrets,
    pub clock: SharedClock,
    pub listener: tokio::net::TcpListener,
    /// Postgres connections for requests and workers.
    pub pool_size: u32,
    pub outbox_backoff: Backoff,
    /// The clock that paces Slack retries (the wall clock in production).
    pub outbox_clock: SharedClock,
}

pub use shared::running::Running;

/// Connects, migrates, syncs the configured environments, and starts serving.
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
    let pool = shared::db::connect(&database_url, opts.pool_size)
        .await
        .context("connecting to Postgres")?;
    shared::db::migrate(&pool)
        .await
        .context("applying database migrations")?;
    shared::envs::store::sync_declared(&pool, "bobby", &opts.config.declared_environments(), false)
        .await
        .context("registering the configured environments")?;

    let slack = SlackApi::new(opts.secrets.slack_bot_token.as_ref(), &opts.secrets.slack_api_url);
    let mut notes = Vec::new();
    if !slack.is_configured() {
        let why = "no SLACK_BOT_TOKEN: Slack messages are logged instead of sent";
        tracing::warn!("{why}");
        notes.push(why.into());
    }
    if opts.secrets.slack_signing_secret.is_none() && socket.is_none() {
        let why = "no SLACK_SIGNING_SECRET: Slack requests are refused; use `bobby exec` to try commands";
        tracing::warn!("{why}");
        notes.push(why.into());
    }
    for why in opts.config.checkout_warnings() {
        tracing::warn!("{why}");
        notes.push(why);
    }
    let config = Arc::new(opts.config);
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut bobby = Bobby::new(pool.clone(), config.clone(), opts.clock.clone());
    let github = if config.deploy.is_some() || config.nightly.as_ref().is_some_and(|n| n.repo.is_some()) {
        shared::github::Github::from_secrets(&opts.secrets)
            .await
            .context("connecting to GitHub")?
    } else {
        None
    };
    let mirrors = mirrors(&config)?;
    if config.deploy.is_some() {
        let deploys = start_deploys(&bobby, &opts.secrets, github.clone(), &mirrors, rx.clone(), &mut notes).await?;
        if let Some((deployer, supervisor)) = deploys {
            tasks.push(tokio::spawn(supervisor.run()));
            bobby = bobby.with_deployer(deployer);
        }
    }
    let about = About {
        bot: "bobby",
        endpoints: ENDPOINTS,
        notes,
        public_url: config.public_url.clone(),
        people: config.people.clone(),
        timezone: config.timezone,
        clock: opts.clock.clone(),
        socket: socket_status.clone(),
    };
    // Nightly reaps the step processes a crashed Bobby left on this host when it takes the Nightly
    // leadership, not here: another replica on this host may be running steps right now.
    let nightly = Nightly::new(
        bobby.clone(),
        Some(Registry::new(pool.clone())),
        opts.secrets.mask_values(),
    )
    .map(|n| n.with_code(nightly_code(&config, github.clone(), &mirrors)));
    let state = AppState {
        bobby: bobby.clone(),
        slack: slack.clone(),
        verifier: SlackVerifier::new(opts.secrets.slack_signing_secret.clone(), opts.clock.clone()),
        api_token: opts.secrets.bobby_api_token.clone().map(Arc::new),
    };
    if let (Some(app_token), Some(status)) = (socket, socket_status) {
        let socket = SocketMode {
            slack: slack.clone(),
            app_token,
            pool: pool.clone(),
            handler: crate::routes::socket_handler(state.clone()),
            status,
            timing: SocketTiming::default(),
        };
        tasks.push(tokio::spawn(socket.run(rx.clone())));
    }
    let app = shared::http::instrument(
        router(state)
            .merge(nightly::log::routes(pool.clone()))
            .merge(shared::http::ops_routes(pool.clone(), about))
            .fallback(shared::http::not_found),
    );

    let addr = opts.listener.local_addr()?;
    let server_rx = rx.clone();
    let listener = opts.listener;
    tasks.push(tokio::spawn(async move {
        if let Err(e) = shared::http::serve(listener, app, server_rx).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }));
    let expiry = ExpiryWorker {
        bobby: bobby.clone(),
        database_url: database_url.clone(),
    };
    tasks.push(tokio::spawn(expiry.run(rx.clone())));
    if let Some(nightly) = nightly {
        let worker = NightlyWorker { nightly };
        tasks.push(tokio::spawn(worker.run(rx.clone())));
    }
    let deliverer = Deliverer {
        pool: pool.clone(),
        database_url,
        slack,
        sender: Sender::Bobby,
        clock: opts.outbox_clock,
        backoff: opts.outbox_backoff,
    };
    tasks.push(tokio::spawn(deliverer.run(rx.clone())));
    tracing::info!(address = %addr, "bobby is listening");
    Ok(Running::new(addr, pool, shutdown, tasks))
}

/// The deployer for `[deploy]`, with the deploys a previous Bobby left running concluded; `None`
/// (and a note on the status page) without GitHub credentials.
async fn start_deploys(
    bobby: &Bobby,
    secrets: &Secrets,
    github: Option<shared::github::Github>,
    mirrors: &Mirrors,
    shutdown: watch::Receiver<bool>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<(Deployer, crate::deploy::Supervisor)>> {
    let Some(github) = github else {
        let why = "[deploy] is configured but there is no GITHUB_TOKEN or GitHub App: `/bobby deploy` is off";
        tracing::warn!("{why}");
        notes.push(why.into());
        return Ok(None);
    };
    let config = &bobby.config;
    let copies = config.deploy.as_ref().and_then(|d| {
        Copies::new(
            mirrors.clone(),
            RepoName::parse(&d.repo)?,
            d.checkout.as_ref()?,
            Some(github.clone()),
            d.sandbox.user().cloned(),
        )
    });
    let Some((deployer, supervisor)) = Deployer::new(
        bobby.pool.clone(),
        config.clone(),
        github,
        bobby.clock.clone(),
        secrets.mask_values(),
        copies,
        shutdown,
    ) else {
        return Ok(None);
    };
    deployer
        .recover()
        .await
        .context("concluding deploys a previous Bobby left running")?;
    Ok(Some((deployer, supervisor)))
}

/// The mirrors and working copies under `state_dir` (SPEC §5.8). When a run of this Bobby uses
/// copies, the ones a previous Bobby left (it crashed mid-run) are removed first: a resumed run
/// makes a fresh copy. `state_dir` is this Bobby's own (one per replica).
fn mirrors(config: &BobbyConfig) -> anyhow::Result<Mirrors> {
    let mirrors = Mirrors::new(&config.state_dir);
    let deploy = config
        .deploy
        .as_ref()
        .is_some_and(|d| d.checkout.as_ref().is_some_and(CheckoutConfig::is_on));
    let nightly = config
        .nightly
        .as_ref()
        .is_some_and(|n| n.repo.is_some() && n.checkout.as_ref().is_some_and(CheckoutConfig::is_on));
    if deploy || nightly {
        let removed = mirrors.remove_leftovers().with_context(|| {
            format!(
                "removing the working copies a previous Bobby left under {}",
                config.state_dir.display()
            )
        })?;
        if removed > 0 {
            tracing::warn!(removed, "removed working copies a previous Bobby left");
        }
    }
    Ok(mirrors)
}

/// Where Nightly's create steps get the code: `[nightly] repo` with a `checkout` that is on.
pub fn nightly_code(
    config: &BobbyConfig,
    github: Option<shared::github::Github>,
    mirrors: &Mirrors,
) -> Option<NightlyCode> {
    let n = config.nightly.as_ref()?;
    let repo = RepoName::parse(n.repo.as_deref()?)?;
    let copies = Copies::new(
        mirrors.clone(),
        repo.clone(),
        n.checkout.as_ref()?,
        github.clone(),
        n.sandbox.user().cloned(),
    )?;
    Some(NightlyCode {
        repo,
        base: n.base.clone(),
        copies,
        github,
    })
}

const ENDPOINTS: &[&str] = &[
    "POST /slack/commands",
    "POST /slack/interactions",
    "GET  /api/v1/environments",
    "GET  /api/v1/environments/{name}",
    "POST /api/v1/environments/{name}/deploy-check",
    "GET  /nightly/runs/{id}/log.txt",
];

/// How long `serve` waits for in-flight work after SIGTERM before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
