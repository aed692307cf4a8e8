//! Slack without a public URL (SPEC §11): Socket Mode. The bot opens an outbound WebSocket
//! (`apps.connections.open` with the app-level token `SLACK_APP_TOKEN`, at `SLACK_API_URL`) and
//! receives slash commands and button presses over it instead of `POST /slack/…`.
//!
//! What the HTTP path promises holds here too, and this module is where it is kept:
//!
//! - **Same handler, same reply.** An envelope's `payload` is what Slack would have POSTed; the
//!   bot's [`SocketHandler`] runs the very code of its HTTP routes (including the 3-second
//!   "working on it" and the late answer through `response_url` or the outbox), and the slash
//!   command's reply rides back in the acknowledgement's `payload`.
//! - **Exactly once.** Each envelope is taken in Postgres first ([`claims`]): a retry Slack sends
//!   after a missed acknowledgement, to this connection or another replica's, is answered with
//!   the recorded acknowledgement instead of running the command again.
//! - **No gap on refresh.** On a `disconnect` frame, and shortly before the connection's announced
//!   lifetime ends, a new connection is opened and has said `hello` before the old one is closed
//!   (after its in-flight envelopes were acknowledged). A connection that drops is re-opened at
//!   once; only a failing `apps.connections.open` (or WebSocket handshake) is retried with backoff.
//!   What Slack sent on a connection that died before we acknowledged is lost: Slack does not
//!   redeliver it, and no bot can prevent that.
//! - **Health without Slack.** The connection's state is reported by [`SocketStatus`] in
//!   `/readyz`'s body and in `/metrics`; it never makes `/readyz` fail, since a Slack outage must
//!   not take the GitHub webhook endpoint (on the same server) out of service.
//!
//! The WebSocket is `tokio-tungstenite`, the crate slack-morphism's own Socket Mode client is built
//! on (so it is already in the build, with rustls and ring). slack-morphism's listener is not used:
//! it acknowledges envelopes itself, so it gives no place to take an envelope in the database
//! before handling it or to measure acknowledgement latency, and it does not open the new
//! connection before closing the old one.

pub mod claims;
pub mod frames;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use slack_morphism::prelude::SlackCommandEvent;
use sqlx::PgPool;
use tokio::sync::{RwLock, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use self::claims::Claim;
use self::frames::{Envelope, EnvelopeKind, Frame};
use super::outbox::Backoff;
use super::{Reply, SendError, SlackApi};

/// How Slack reaches a bot: `slack_mode` in either TOML.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// Slack POSTs to `/slack/commands` and `/slack/interactions` (needs a public HTTPS URL).
    #[default]
    Http,
    /// The bot opens Socket Mode connections to Slack (needs `SLACK_APP_TOKEN`).
    Socket,
}

/// The app-level token Socket Mode needs, checked at start: missing or of the wrong kind is a
/// configuration error worth refusing to start over (the bot could not hear a single command).
pub fn require_app_token(token: Option<&SecretString>) -> Result<SecretString, String> {
    let Some(token) = token else {
        return Err(
            "slack_mode = \"socket\" needs SLACK_APP_TOKEN (or SLACK_APP_TOKEN_FILE): the app-level token \
                    (xapp-…) from the Slack app's Basic Information page, with the connections:write scope"
                .into(),
        );
    };
    let value = token.expose_secret();
    if value.starts_with("xapp-") {
        Ok(token.clone())
    } else {
        // Never echo the value: it may be a real bot token pasted into the wrong variable.
        let kind = value.split('-').next().filter(|p| p.len() <= 5).unwrap_or("?");
        Err(format!(
            "SLACK_APP_TOKEN must be an app-level token (xapp-…); this one starts with `{kind}-` \
             (a bot token, xoxb-…, belongs in SLACK_BOT_TOKEN)"
        ))
    }
}

/// What a bot does with what arrives over the socket: the same processing as its HTTP routes.
pub trait SocketHandler: Send + Sync + 'static {
    /// A slash command (the same fields as the HTTP form); the reply goes back in the
    /// acknowledgement. Must return within Slack's 3 seconds (the HTTP path's `answer_in_time`).
    /// `Err` is a payload we cannot use (logged; acknowledged without a reply).
    fn command(&self, event: SlackCommandEvent) -> BoxFuture<'static, Result<Reply, String>>;
    /// An interaction payload (`block_actions`…), the JSON Slack POSTs as the `payload` field.
    fn interaction(&self, payload: Value) -> BoxFuture<'static, Result<(), String>>;
}

/// Timings of the connection manager; [`SocketTiming::default`] in production.
#[derive(Clone, Debug)]
pub struct SocketTiming {
    /// From `apps.connections.open` to `hello`.
    pub hello_timeout: Duration,
    /// Lifetime assumed when `hello` announces none.
    pub default_lifetime: Duration,
    /// The longest an old connection is kept for its in-flight envelopes after its successor is up.
    pub drain: Duration,
    /// Between failed attempts to open a connection.
    pub backoff: Backoff,
}

impl Default for SocketTiming {
    fn default() -> Self {
        SocketTiming {
            hello_timeout: Duration::from_secs(10),
            default_lifetime: Duration::from_secs(60 * 60),
            drain: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(60),
            },
        }
    }
}

/// When to open a connection's successor: a little before the lifetime `hello` announced (a tenth
/// of it, at most a minute), so the refresh never leaves a moment without a connection.
pub fn refresh_after(announced: Option<Duration>, default: Duration) -> Duration {
    let lifetime = announced.unwrap_or(default);
    lifetime.saturating_sub((lifetime / 10).min(Duration::from_secs(60)))
}

/// The socket's state, as `/readyz` and `/metrics` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketState {
    Starting,
    Connected,
    /// Lost, or not yet re-opened: why.
    Reconnecting(String),
    /// Slack refused the app token: nothing will arrive until it is fixed.
    Refused(String),
    Stopped,
}

impl SocketState {
    const LABELS: [&'static str; 5] = ["starting", "connected", "reconnecting", "refused", "stopped"];

    pub fn label(&self) -> &'static str {
        match self {
            SocketState::Starting => "starting",
            SocketState::Connected => "connected",
            SocketState::Reconnecting(_) => "reconnecting",
            SocketState::Refused(_) => "refused",
            SocketState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct StatusInner {
    state: SocketState,
    connections: usize,
    reconnects: u64,
}

/// Shared between the connection manager (writes) and `/readyz` (reads).
#[derive(Clone, Debug)]
pub struct SocketStatus(Arc<Mutex<StatusInner>>);

impl Default for SocketStatus {
    fn default() -> Self {
        SocketStatus(Arc::new(Mutex::new(StatusInner {
            state: SocketState::Starting,
            connections: 0,
            reconnects: 0,
        })))
    }
}

impl SocketStatus {
    pub fn state(&self) -> SocketState {
        self.lock().state.clone()
    }

    /// One line for `/readyz`'s body.
    pub fn describe(&self) -> String {
        let s = self.lock();
        let detail = match &s.state {
            SocketState::Reconnecting(why) | SocketState::Refused(why) => format!(": {why}"),
            _ => String::new(),
        };
        format!(
            "slack socket mode: {}{detail} (connections: {}, reconnects: {})",
            s.state.label(),
            s.connections,
            s.reconnects
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, state: SocketState) {
        for label in SocketState::LABELS {
            metrics::gauge!("slack_socket_state", "state" => label).set(if label == state.label() { 1.0 } else { 0.0 });
        }
        self.lock().state = state;
    }

    fn connections(&self, n: usize) {
        metrics::gauge!("slack_socket_connections").set(n as f64);
        self.lock().connections = n;
    }

    fn reconnected(&self, reason: &'static str) {
        metrics::counter!("slack_socket_reconnects_total", "reason" => reason).increment(1);
        self.lock().reconnects += 1;
    }
}

/// A bot's Socket Mode client: run it as a task next to the HTTP server.
pub struct SocketMode {
    /// Where `apps.connections.open` is called (`SLACK_API_URL`).
    pub slack: SlackApi,
    pub app_token: SecretString,
    pub pool: PgPool,
    pub handler: Arc<dyn SocketHandler>,
    pub status: SocketStatus,
    pub timing: SocketTiming,
}

/// What a connection tells its manager.
enum Event {
    Disconnect { conn: u64, reason: String },
    Closed { conn: u64, why: String },
}

/// What a connection's writer sends.
enum Out {
    Ack {
        text: String,
        kind: &'static str,
        received: Instant,
    },
    Close,
}

/// One open connection, as its manager holds it.
struct Conn {
    id: u64,
    out: mpsc::UnboundedSender<Out>,
    /// Envelope tasks hold read guards; closing waits for the write lock, i.e. for them.
    inflight: Arc<RwLock<()>>,
    reader: JoinHandle<()>,
    refresh_at: Instant,
}

impl Conn {
    /// Closes after the in-flight envelopes were acknowledged (at most `drain` later).
    fn close_when_drained(self, drain: Duration) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(drain, self.inflight.clone().write_owned()).await;
            let _ = self.out.send(Out::Close);
            // Slack answers our close frame, which ends the reader; don't wait forever for it.
            tokio::time::sleep(drain).await;
            self.reader.abort();
        });
    }
}

/// Why opening a connection failed.
struct OpenError {
    message: String,
    /// Slack refused the token: report it as such (and retry slowly: only a fix helps).
    refused: bool,
}

impl From<SendError> for OpenError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Permanent(m) => OpenError {
                message: format!(
                    "apps.connections.open failed: {m}; check SLACK_APP_TOKEN (an app-level token, xapp-…, with \
                     the connections:write scope, of an app with Socket Mode enabled)"
                ),
                refused: true,
            },
            SendError::Transient { message, .. } => OpenError {
                message: format!("apps.connections.open failed: {message}"),
                refused: false,
            },
        }
    }
}

impl SocketMode {
    /// Holds a connection (two while one replaces the other) until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        let mut next_id = 0u64;
        let mut current: Option<Conn> = None;
        let mut failures = 0u32;
        let mut prune = tokio::time::interval(Duration::from_secs(10 * 60));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let Some(conn) = current.as_ref() else {
                next_id += 1;
                let opened = tokio::select! {
                    opened = this.open(next_id, events_tx.clone()) => opened,
                    _ = shutdown.changed() => break,
                };
                match opened {
                    Ok(conn) => {
                        if failures > 0 || next_id > 1 {
                            tracing::info!(connection = conn.id, "Slack Socket Mode connection re-established");
                        } else {
                            tracing::info!(connection = conn.id, "Slack Socket Mode connected");
                        }
                        failures = 0;
                        current = Some(conn);
                        this.status.connections(1);
                        this.status.set(SocketState::Connected);
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = if e.refused {
                            tracing::error!("{}", e.message);
                            this.status.set(SocketState::Refused(e.message));
                            this.timing.backoff.cap
                        } else {
                            tracing::warn!(attempt = failures, "{}", e.message);
                            this.status.set(SocketState::Reconnecting(e.message));
                            this.timing.backoff.delay(failures, None)
                        };
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            r = shutdown.changed() => if r.is_err() { break },
                        }
                    }
                }
                continue;
            };
            let refresh_at = conn.refresh_at;
            let current_id = conn.id;
            tokio::select! {
                // A dropped sender means nobody can ask us to stop any more: stop now rather than spin.
                r = shutdown.changed() => if r.is_err() { break },
                _ = prune.tick() => {
                    if let Err(e) = claims::prune(&this.pool).await {
                        tracing::debug!(error = %e, "could not prune old Socket Mode envelopes");
                    }
                }
                _ = tokio::time::sleep_until(refresh_at) => {
                    current = this.replace(current.take(), &mut next_id, &events_tx, "periodic").await;
                }
                Some(event) = events.recv() => match event {
                    Event::Disconnect { conn, reason } if conn == current_id => {
                        tracing::info!(connection = conn, %reason, "Slack asked to reconnect");
                        let label = match reason.as_str() {
                            "refresh_requested" => "refresh_requested",
                            "warning" => "warning",
                            _ => "disconnect",
                        };
                        current = this.replace(current.take(), &mut next_id, &events_tx, label).await;
                    }
                    Event::Closed { conn, why } if conn == current_id => {
                        tracing::warn!(connection = conn, %why, "Slack Socket Mode connection dropped; re-opening");
                        current = None;
                        this.status.connections(0);
                        this.status.reconnected("dropped");
                        this.status.set(SocketState::Reconnecting(format!("connection dropped: {why}")));
                    }
                    // Frames of connections already replaced.
                    _ => {}
                },
            }
        }
        if let Some(conn) = current {
            conn.close_when_drained(this.timing.drain);
        }
        this.status.connections(0);
        this.status.set(SocketState::Stopped);
    }

    /// Opens a successor, then closes `old` once the successor said hello. If the successor cannot
    /// be opened, `old` is kept (it is still up; its own drop or the next refresh retries).
    async fn replace(
        self: &Arc<Self>,
        old: Option<Conn>,
        next_id: &mut u64,
        events: &mpsc::UnboundedSender<Event>,
        reason: &'static str,
    ) -> Option<Conn> {
        *next_id += 1;
        match self.open(*next_id, events.clone()).await {
            Ok(new) => {
                self.status.reconnected(reason);
                if let Some(old) = old {
                    tracing::info!(
                        old = old.id,
                        new = new.id,
                        reason,
                        "new Slack connection up; closing the old one"
                    );
                    old.close_when_drained(self.timing.drain);
                }
                self.status.connections(1);
                self.status.set(SocketState::Connected);
                Some(new)
            }
            Err(e) => {
                tracing::warn!(reason, "could not open a replacement Slack connection: {}", e.message);
                let mut old = old;
                if let Some(o) = old.as_mut() {
                    // Try again soon rather than at once in a loop.
                    o.refresh_at = Instant::now() + self.timing.backoff.delay(1, None).max(Duration::from_secs(1));
                }
                old
            }
        }
    }

    /// `apps.connections.open`, the WebSocket handshake, `hello`; then the connection's reader
    /// and writer run as tasks.
    async fn open(self: &Arc<Self>, id: u64, events: mpsc::UnboundedSender<Event>) -> Result<Conn, OpenError> {
        let transient = |message: String| OpenError {
            message,
            refused: false,
        };
        // Bounded, so a hanging Slack delays neither a reconnect nor a shutdown for long.
        let url = tokio::time::timeout(self.timing.hello_timeout, self.slack.open_socket(&self.app_token))
            .await
            .map_err(|_| transient("apps.connections.open timed out".into()))??;
        let (ws, _) = tokio::time::timeout(
            self.timing.hello_timeout,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| transient("the WebSocket handshake timed out".into()))?
        .map_err(|e| transient(format!("the WebSocket handshake failed: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let announced = tokio::time::timeout(self.timing.hello_timeout, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => match frames::parse(&text) {
                        Ok(Frame::Hello {
                            approximate_connection_time,
                        }) => return Ok(approximate_connection_time.map(Duration::from_secs)),
                        other => tracing::debug!(frame = ?other, "a frame before hello; ignored"),
                    },
                    Some(Ok(Message::Close(_))) | None => return Err("closed before hello".to_string()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| transient("no hello from Slack in time".into()))?
        .map_err(transient)?;
        let refresh_at = Instant::now() + refresh_after(announced, self.timing.default_lifetime);

        let (out, mut outgoing) = mpsc::unbounded_channel::<Out>();
        tokio::spawn(async move {
            while let Some(item) = outgoing.recv().await {
                match item {
                    Out::Ack { text, kind, received } => {
                        if let Err(e) = sink.send(Message::text(text)).await {
                            tracing::warn!(connection = id, error = %e, "an acknowledgement could not be sent");
                            break;
                        }
                        metrics::counter!("slack_socket_envelopes_acknowledged_total", "type" => kind).increment(1);
                        metrics::histogram!("slack_socket_ack_seconds", "type" => kind)
                            .record(received.elapsed().as_secs_f64());
                    }
                    Out::Close => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                }
            }
        });
        let inflight = Arc::new(RwLock::new(()));
        let reader = {
            let this = self.clone();
            let out = out.clone();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let why = loop {
                    match stream.next().await {
                        Some(Ok(Message::Text(text))) => {
                            let received = Instant::now();
                            match frames::parse(&text) {
                                Ok(Frame::Envelope(envelope)) => {
                                    let guard = inflight.clone().try_read_owned().ok();
                                    let (this, out) = (this.clone(), out.clone());
                                    tokio::spawn(async move {
                                        this.take_and_handle(envelope, received, out).await;
                                        drop(guard);
                                    });
                                }
                                Ok(Frame::Disconnect { reason }) => {
                                    let _ = events.send(Event::Disconnect { conn: id, reason });
                                }
                                Ok(Frame::Hello { .. }) => {}
                                Ok(Frame::Other { kind }) => {
                                    tracing::debug!(kind, "unknown Socket Mode frame; ignored")
                                }
                                Err(e) => tracing::warn!(connection = id, "{e}"),
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break frame.map_or_else(
                                || "closed by Slack".to_string(),
                                |f| format!("closed by Slack: {}", f.reason),
                            );
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break e.to_string(),
                        None => break "connection ended".to_string(),
                    }
                };
                let _ = events.send(Event::Closed { conn: id, why });
            })
        };
        Ok(Conn {
            id,
            out,
            inflight,
            reader,
            refresh_at,
        })
    }

    /// Takes the envelope in the database, handles it when it is ours, and acknowledges it.
    async fn take_and_handle(&self, envelope: Envelope, received: Instant, out: mpsc::UnboundedSender<Out>) {
        let kind = envelope.kind.as_str();
        metrics::counter!("slack_socket_envelopes_received_total", "type" => kind).increment(1);
        let id = envelope.id.clone();
        let accepts_payload = envelope.accepts_response_payload;
        let mut claim = claims::take(&self.pool, &id, kind).await;
        if let Ok(Claim::InProgress) = claim {
            // Slack re-sent it while another connection (this replica's old one, or another
            // replica's) still handles it: wait for that reply, within Slack's 3 seconds.
            let budget = super::late::SLACK_DEADLINE.saturating_sub(received.elapsed());
            claim = claims::wait_handled(&self.pool, &id, budget).await;
        }
        let payload = match claim {
            Ok(Claim::Fresh) => {
                let payload = self.dispatch(envelope).await;
                if let Err(e) = claims::handled(&self.pool, &id, payload.as_ref()).await {
                    tracing::warn!(envelope = %id, error = %e, "could not record a handled envelope");
                }
                payload
            }
            Ok(Claim::Handled(payload)) => {
                tracing::info!(envelope = %id, retry = envelope.retry_attempt, "envelope handled already; acknowledging it again");
                metrics::counter!("slack_socket_envelopes_duplicate_total", "type" => kind).increment(1);
                payload
            }
            Ok(Claim::InProgress) => {
                tracing::warn!(envelope = %id, retry = envelope.retry_attempt, "envelope still being handled elsewhere; acknowledging without a reply");
                metrics::counter!("slack_socket_envelopes_duplicate_total", "type" => kind).increment(1);
                None
            }
            Err(e) => {
                // Without the database no command can succeed anyway; handling it still gives the
                // person the handler's own answer (an apology) rather than Slack's timeout.
                tracing::warn!(envelope = %id, error = %e, "could not take an envelope in the database; handling it anyway");
                self.dispatch(envelope).await
            }
        };
        let payload = payload.filter(|_| accepts_payload);
        let _ = out.send(Out::Ack {
            text: frames::ack(&id, payload.as_ref()),
            kind,
            received,
        });
    }

    /// Runs the bot's handler; returns the acknowledgement's payload.
    async fn dispatch(&self, envelope: Envelope) -> Option<Value> {
        match envelope.kind {
            EnvelopeKind::SlashCommand => match serde_json::from_value::<SlackCommandEvent>(envelope.payload) {
                Ok(event) => match self.handler.command(event).await {
                    Ok(reply) => Some(reply.command_response()),
                    Err(why) => {
                        tracing::warn!(envelope = %envelope.id, "unusable slash command: {why}");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(envelope = %envelope.id, error = %e, "malformed slash command payload");
                    None
                }
            },
            EnvelopeKind::Interactive => {
                if let Err(why) = self.handler.interaction(envelope.payload).await {
                    tracing::warn!(envelope = %envelope.id, "unusable interaction: {why}");
                }
                None
            }
            // Not subscribed to any; acknowledge so Slack does not retry.
            EnvelopeKind::EventsApi | EnvelopeKind::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_tokens_are_checked_without_echoing_them() {
        assert!(require_app_token(None).unwrap_err().contains("SLACK_APP_TOKEN_FILE"));
        let bot = SecretString::from("xoxb-1234-secret");
        let err = require_app_token(Some(&bot)).unwrap_err();
        assert!(err.contains("`xoxb-`"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let app = SecretString::from("xapp-1-A1-2-abc");
        assert_eq!(
            require_app_token(Some(&app)).unwrap().expose_secret(),
            "xapp-1-A1-2-abc"
        );
    }

    #[test]
    fn the_successor_opens_before_the_announced_lifetime_ends() {
        let default = Duration::from_secs(3600);
        assert_eq!(
            refresh_after(Some(Duration::from_secs(18060)), default),
            Duration::from_secs(18000)
        );
        assert_eq!(
            refresh_after(Some(Duration::from_secs(10)), default),
            Duration::from_secs(9)
        );
        assert_eq!(refresh_after(None, default), Duration::from_secs(3540));
        assert_eq!(refresh_after(Some(Duration::ZERO), default), Duration::ZERO);
    }

    #[test]
    fn the_status_line_says_why() {
        let s = SocketStatus::default();
        assert_eq!(
            s.describe(),
            "slack socket mode: starting (connections: 0, reconnects: 0)"
        );
        s.set(SocketState::Refused("invalid_auth".into()));
        s.reconnected("dropped");
        assert_eq!(
            s.describe(),
            "slack socket mode: refused: invalid_auth (connections: 0, reconnects: 1)"
        );
    }

    /// `wss://` builds a rustls client config; with two crypto backends in the build rustls would
    /// panic there (SPEC §10). A listener that hangs up makes the handshake fail, not panic.
    #[tokio::test]
    async fn wss_handshakes_fail_cleanly_instead_of_panicking() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let result = tokio_tungstenite::connect_async(format!("wss://localhost:{port}/link")).await;
        assert!(result.is_err());
    }

    #[test]
    fn modes_parse_from_toml() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            slack_mode: SlackMode,
        }
        let t: T = toml::from_str("slack_mode = \"socket\"").unwrap();
        assert_eq!(t.slack_mode, SlackMode::Socket);
        let t: T = toml::from_str("").unwrap();
        assert_eq!(t.slack_mode, SlackMode::Http);
        assert!(toml::from_str::<T>("slack_mode = \"websocket\"").is_err());
    }
}
