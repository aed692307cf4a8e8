//! HTTP plumbing both bots share: errors split into "the caller's fault" and "ours", body limits,
//! request ids, latency metrics, the health/readiness/metrics endpoints and graceful serving.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// An error answered over HTTP. `User` errors carry a message meant for the caller; `Internal`
/// errors are logged with their whole chain and answered with a generic sentence.
#[derive(Debug)]
pub enum ApiError {
    User { status: StatusCode, message: String },
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn user(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::User {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::user(StatusCode::NOT_FOUND, message)
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::User { status, message } => (status, Json(json!({ "error": message }))).into_response(),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": "internal error; the details are in the server log" })),
                )
                    .into_response()
            }
        }
    }
}

pub enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// The process-wide Prometheus recorder (installed once, however many apps a test process starts).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already, in which case ours just renders
        // nothing; never worth refusing to start over.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// What a bot says about itself on its pages and `/readyz`, and what the control center needs to
/// show the shared database the way this bot's people read it.
#[derive(Clone)]
pub struct About {
    pub bot: &'static str,
    /// Its own endpoints, listed at the foot of the control center.
    pub endpoints: &'static [&'static str],
    /// Conditions under which the bot is alive and healthy but has less to do (no GitHub
    /// credentials, say); shown on `/` and in `/readyz`'s body.
    pub notes: Vec<String>,
    /// Where people reach this bot: the base of the links in `/cctray.xml`.
    pub public_url: String,
    /// Slack ids to names, for holders and waitlists.
    pub people: crate::people::People,
    /// Absolute times on the pages are in this zone (Bobby's `timezone`; UTC for Gandalf, whose
    /// config has none).
    pub timezone: chrono_tz::Tz,
    /// "Now" for relative times: the bot's clock, so that pages agree with what the bot decides.
    pub clock: crate::clock::SharedClock,
    /// With `slack_mode = "socket"`: the Socket Mode connection's state, reported in `/readyz`'s
    /// body (never its status: a Slack outage must not take the GitHub webhooks out of service).
    pub socket: Option<crate::slack::socket::SocketStatus>,
}

#[derive(Clone)]
struct OpsState {
    pool: PgPool,
    about: About,
}

/// The control center (`/`, `/cctray.xml` and the run pages), `/healthz`, `/readyz` and `/metrics`.
pub fn ops_routes(pool: PgPool, about: About) -> Router {
    // Install the recorder now, so what happens before the first scrape is counted.
    prometheus();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(OpsState {
            pool: pool.clone(),
            about: about.clone(),
        })
        .merge(crate::control::routes(pool, about))
}

async fn readyz(State(s): State<OpsState>) -> Response {
    match crate::db::ready(&s.pool).await {
        Ok(()) => {
            let mut body = String::from("ready\n");
            for n in &s.about.notes {
                body.push_str(n);
                body.push('\n');
            }
            if let Some(socket) = &s.about.socket {
                body.push_str(&socket.describe());
                body.push('\n');
            }
            (StatusCode::OK, body).into_response()
        }
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// Refreshes the gauges that describe the database (environments and leases by state, the merge
/// queues, GitHub deliveries pending and set aside, the outbox backlog), then renders everything.
/// Computed at scrape time from the shared database, so there is no background polling and both
/// bots report the same numbers; the histograms and counters (latencies, durations, outcomes) are
/// recorded where things happen.
async fn metrics_page(State(s): State<OpsState>) -> String {
    if let Ok(mut conn) = s.pool.acquire().await {
        if let Ok(census) = crate::envs::store::census(&mut conn).await {
            for state in crate::envs::EnvState::ALL {
                let count = |leased: bool| {
                    census
                        .iter()
                        .filter(|(st, l, _)| *st == state && *l == leased)
                        .map(|(_, _, n)| *n)
                        .sum::<i64>()
                };
                let (leased, free) = (count(true), count(false));
                metrics::gauge!("environments", "state" => state.as_str()).set((leased + free) as f64);
                metrics::gauge!("leases", "state" => state.as_str()).set(leased as f64);
            }
        }
        if let Ok(census) = crate::control::read::queue_census(&mut conn).await {
            let mut repos: Vec<&str> = census.iter().map(|(r, _, _)| r.as_str()).collect();
            repos.dedup();
            for repo in repos {
                let of = |state: Option<&str>| {
                    census
                        .iter()
                        .filter(|(r, s, _)| r == repo && (state.is_none() || s.as_deref() == state))
                        .map(|(_, _, n)| *n)
                        .sum::<i64>()
                };
                // Read at every scrape, so both bots report it and it is fresh while the worker is
                // busy verifying.
                metrics::gauge!("gandalf_queue_length", "repo" => repo.to_string()).set(of(None) as f64);
                for state in crate::queue::ItemState::ACTIVE.map(|s| s.as_str()) {
                    metrics::gauge!("gandalf_queue_items", "repo" => repo.to_string(), "state" => state)
                        .set(of(Some(state)) as f64);
                }
            }
        }
        // From the table, so every replica (and Bobby) reports the same counts, across restarts.
        if let Ok((pending, failed)) = crate::control::read::delivery_census(&mut conn).await {
            metrics::gauge!("gandalf_deliveries_pending").set(pending as f64);
            metrics::counter!("gandalf_deliveries_failed_total").absolute(u64::try_from(failed).unwrap_or(0));
        }
        if let Ok(n) = crate::slack::outbox::backlog(&s.pool).await {
            metrics::gauge!("slack_outbox_backlog").set(n as f64);
        }
    }
    prometheus().render()
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids (taken from `X-Request-Id` or made up), a tracing span per request carrying it, and
/// a latency histogram per route.
pub fn instrument(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(record_latency))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

async fn record_latency(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(start.elapsed().as_secs_f64());
    response
}

/// A fallback that answers unknown paths with a JSON 404 instead of an empty body.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Serves until `shutdown` turns true, then stops accepting and lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

/// A watch channel that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_on_signals() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down: no new requests, finishing running work");
        let _ = signal_tx.send(true);
    });
    (tx, rx)
}

/// Logs through `tracing`: human-readable, or JSON with `LOG_FORMAT=json`; `RUST_LOG` filters.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
