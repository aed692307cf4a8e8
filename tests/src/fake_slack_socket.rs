//! A fake of Slack's Socket Mode on loopback, as strict as the real one where the bots can tell:
//! `apps.connections.open` checks the app-level token and answers a `ws://` URL served here; each
//! WebSocket starts with `hello` (announcing the connection's lifetime); envelopes carry slash
//! commands and block actions the way Slack sends them (the HTTP form as a JSON `payload`); every
//! acknowledgement is recorded with its content, connection and receive time. The test can drop a
//! connection abruptly (as a network failure does), send `disconnect` frames (`refresh_requested`,
//! `warning`) and re-send an envelope (as Slack's retry does).
//!
//! Every other Web API call (`chat.postMessage`…) is forwarded to the [`FakeSlack`] this fake wraps,
//! so a bot has one `SLACK_API_URL` as in production, and the tests read posts where they always do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_slack::FakeSlack;

/// The app-level token the fake accepts.
pub const APP_TOKEN: &str = "xapp-1-A0TEST-1-fake-app-token";

/// An acknowledgement the bot sent.
#[derive(Clone, Debug)]
pub struct Ack {
    pub envelope_id: String,
    /// The connection it came back on.
    pub connection: usize,
    /// The `payload` (a slash command's reply), if any.
    pub payload: Option<Value>,
    /// From the envelope's send (on that connection) to the acknowledgement's arrival.
    pub latency: Duration,
}

impl Ack {
    /// The reply's text: all section blocks joined, as a reader sees it.
    pub fn text(&self) -> String {
        self.payload
            .as_ref()
            .and_then(|p| p["blocks"].as_array())
            .map(|bs| {
                bs.iter()
                    .filter_map(|b| b["text"]["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    pub fn response_type(&self) -> Option<String> {
        self.payload
            .as_ref()
            .and_then(|p| p["response_type"].as_str())
            .map(str::to_owned)
    }

    /// The `action_id`s of the reply's buttons.
    pub fn action_ids(&self) -> Vec<String> {
        self.payload
            .as_ref()
            .and_then(|p| p["blocks"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|b| b["elements"].as_array())
            .flatten()
            .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// One WebSocket connection, as the fake saw it.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: usize,
    /// When `hello` was sent: the connection is usable from then on.
    pub hello_at: Instant,
    pub closed_at: Option<Instant>,
    /// Who ended it: the bot (a close frame or its end of the socket) or the fake ([`FakeSocketSlack::kill`]).
    pub closed_by_bot: bool,
}

enum Command {
    Send(String),
    /// Drop the socket without a close frame.
    Kill,
}

#[derive(Default)]
struct Inner {
    connections: Vec<Connection>,
    senders: Vec<mpsc::UnboundedSender<Command>>,
    /// Envelope id and connection → when it was sent.
    sent: Vec<(String, usize, Instant)>,
    acks: Vec<Ack>,
    opens: usize,
    /// `apps.connections.open` calls to answer with HTTP 500 (an outage), counted down.
    failing_opens: usize,
    next_envelope: usize,
    /// `approximate_connection_time` in `hello`, seconds.
    lifetime: u64,
    killed_at: Vec<(usize, Instant)>,
}

#[derive(Clone)]
pub struct FakeSocketSlack {
    /// The Web API (`SLACK_API_URL` is `api_url()`).
    pub addr: SocketAddr,
    ws_addr: SocketAddr,
    pub slack: FakeSlack,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    http: reqwest::Client,
}

impl FakeSocketSlack {
    /// Starts the fake in front of `slack` (which receives every other Web API call).
    pub async fn start(slack: FakeSlack) -> Self {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeSocketSlack {
            addr: api.local_addr().unwrap(),
            ws_addr: ws.local_addr().unwrap(),
            slack,
            inner: Arc::new(Mutex::new(Inner {
                lifetime: 3600,
                ..Inner::default()
            })),
            changed: Arc::new(Notify::new()),
            http: reqwest::Client::new(),
        };
        let app = Router::new()
            .route("/api/apps.connections.open", post(connections_open))
            .fallback(forward)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(api, app).await.ok() });
        let accepting = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                let fake = accepting.clone();
                tokio::spawn(async move { fake.serve_connection(stream).await });
            }
        });
        fake
    }

    /// `SLACK_API_URL` for the bots.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// The `hello` of connections opened from now on announces this lifetime (Slack: hours).
    pub fn set_lifetime(&self, secs: u64) {
        self.lock().lifetime = secs;
    }

    /// The next `n` calls of `apps.connections.open` fail with HTTP 500.
    pub fn fail_opens(&self, n: usize) {
        self.lock().failing_opens = n;
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.lock().connections.clone()
    }

    /// Connections that are open now, oldest first.
    pub fn open_connections(&self) -> Vec<usize> {
        self.connections()
            .iter()
            .filter(|c| c.closed_at.is_none())
            .map(|c| c.id)
            .collect()
    }

    /// How often `apps.connections.open` was called (successfully or not).
    pub fn opens(&self) -> usize {
        self.lock().opens
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.lock().acks.clone()
    }

    /// When the fake killed connection `id`.
    pub fn killed_at(&self, id: usize) -> Option<Instant> {
        self.lock().killed_at.iter().find(|(c, _)| *c == id).map(|(_, t)| *t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Waits until `pred` holds, or panics after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&FakeSocketSlack) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if pred(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; connections {:#?}, acks {:#?}",
                    self.connections(),
                    self.acks()
                );
            }
        }
    }

    /// Waits until `n` connections are open and returns their ids.
    pub async fn wait_for_open(&self, n: usize) -> Vec<usize> {
        self.wait_until(&format!("{n} open connections"), Duration::from_secs(20), |f| {
            f.open_connections().len() == n
        })
        .await;
        self.open_connections()
    }

    /// Waits until connection `old` is closed and a later one is open, and returns the latter.
    pub async fn wait_for_successor(&self, old: usize) -> usize {
        self.wait_until(
            &format!("connection {old} closed and a successor open"),
            Duration::from_secs(20),
            |f| {
                f.connections().get(old - 1).is_some_and(|c| c.closed_at.is_some())
                    && f.open_connections().iter().any(|c| *c > old)
            },
        )
        .await;
        *self.open_connections().iter().find(|c| **c > old).unwrap()
    }

    /// Waits for the acknowledgement of `envelope_id` (the first, if it came more than once).
    pub async fn wait_for_ack(&self, envelope_id: &str) -> Ack {
        self.wait_until(
            &format!("the acknowledgement of {envelope_id}"),
            Duration::from_secs(20),
            // Under the lock, not on a copy: a benchmark waits for thousands of acks.
            |f| f.lock().acks.iter().any(|a| a.envelope_id == envelope_id),
        )
        .await;
        self.lock()
            .acks
            .iter()
            .find(|a| a.envelope_id == envelope_id)
            .cloned()
            .unwrap()
    }

    /// Sends a raw envelope on connection `conn`.
    pub fn send_envelope(&self, conn: usize, envelope_id: &str, kind: &str, payload: Value, retry_attempt: u32) {
        let frame = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind == "slash_commands",
            "retry_attempt": retry_attempt,
            "retry_reason": if retry_attempt > 0 { "timeout" } else { "" },
        });
        let mut inner = self.lock();
        inner.sent.push((envelope_id.to_string(), conn, Instant::now()));
        let sender = inner.senders.get(conn - 1).cloned().expect("no such connection");
        drop(inner);
        let _ = sender.send(Command::Send(frame.to_string()));
    }

    fn next_envelope_id(&self) -> String {
        let mut inner = self.lock();
        inner.next_envelope += 1;
        format!("env-{:04}-{}", inner.next_envelope, self.ws_addr.port())
    }

    /// `<command> <text>` typed by `user` in C0DEV, sent on connection `conn`; returns the
    /// envelope id. The `response_url` (for late answers) is `resp-<user>` on the wrapped Slack.
    pub fn command_on(&self, conn: usize, command: &str, user: &str, text: &str) -> String {
        let id = self.next_envelope_id();
        self.send_envelope(
            conn,
            &id,
            "slash_commands",
            self.command_payload(command, user, text),
            0,
        );
        id
    }

    /// The payload Slack sends for a slash command: the HTTP form's fields as JSON.
    pub fn command_payload(&self, command: &str, user: &str, text: &str) -> Value {
        json!({
            "token": "deprecated",
            "team_id": "T0001",
            "team_domain": "acme",
            "channel_id": "C0DEV",
            "channel_name": "dev",
            "user_id": user,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": "A0TEST",
            "is_enterprise_install": "false",
            "response_url": self.slack.response_url(&format!("resp-{user}")),
            "trigger_id": "123.456.abc",
        })
    }

    /// A button press by `user` on connection `conn`; returns the envelope id.
    pub fn press_on(&self, conn: usize, user: &str, action_id: &str, value: &str, response_id: &str) -> String {
        let id = self.next_envelope_id();
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user, "username": "someone", "team_id": "T0001" },
            "api_app_id": "A0TEST",
            "team": { "id": "T0001", "domain": "acme" },
            "channel": { "id": "C0DEV", "name": "dev" },
            "response_url": self.slack.response_url(response_id),
            "trigger_id": "123.456.abc",
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                "text": { "type": "plain_text", "text": "x" }, "action_ts": "1700000000.000001"
            }]
        });
        self.send_envelope(conn, &id, "interactive", payload, 0);
        id
    }

    /// A `disconnect` frame on connection `conn` (`refresh_requested`, `warning`, …).
    pub fn disconnect(&self, conn: usize, reason: &str) {
        let frame = json!({ "type": "disconnect", "reason": reason, "debug_info": { "host": "fake" } });
        if let Some(s) = self.lock().senders.get(conn - 1) {
            let _ = s.send(Command::Send(frame.to_string()));
        }
    }

    /// Drops connection `conn` without a close frame, as a network failure does.
    pub fn kill(&self, conn: usize) {
        let mut inner = self.lock();
        inner.killed_at.push((conn, Instant::now()));
        if let Some(s) = inner.senders.get(conn - 1) {
            let _ = s.send(Command::Kill);
        }
    }

    async fn serve_connection(self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut sink, mut incoming) = ws.split();
        let (tx, mut commands) = mpsc::unbounded_channel();
        let (id, lifetime, count) = {
            let mut inner = self.lock();
            let id = inner.connections.len() + 1;
            inner.senders.push(tx);
            let count = inner.connections.iter().filter(|c| c.closed_at.is_none()).count() + 1;
            (id, inner.lifetime, count)
        };
        let hello = json!({
            "type": "hello",
            "num_connections": count,
            "debug_info": { "host": "fake-applink", "build_number": 1, "approximate_connection_time": lifetime },
            "connection_info": { "app_id": "A0TEST" }
        });
        if sink.send(Message::text(hello.to_string())).await.is_err() {
            return;
        }
        self.lock().connections.push(Connection {
            id,
            hello_at: Instant::now(),
            closed_at: None,
            closed_by_bot: false,
        });
        self.changed.notify_waiters();
        let closed_by_bot = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send(text)) => {
                        if sink.send(Message::text(text)).await.is_err() {
                            break true;
                        }
                    }
                    Some(Command::Kill) | None => break false,
                },
                message = incoming.next() => match message {
                    Some(Ok(Message::Text(text))) => self.record_ack(id, &text),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break true,
                    Some(Ok(_)) => {}
                },
            }
        };
        // Dropping both halves drops the TCP stream: a kill sends no close frame.
        drop((sink, incoming));
        {
            let mut inner = self.lock();
            let c = &mut inner.connections[id - 1];
            c.closed_at = Some(Instant::now());
            c.closed_by_bot = closed_by_bot;
        }
        self.changed.notify_waiters();
    }

    fn record_ack(&self, conn: usize, text: &str) {
        let now = Instant::now();
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("the bot sent {text:?}, not JSON: {e}"));
        let envelope_id = v["envelope_id"]
            .as_str()
            .unwrap_or_else(|| panic!("an acknowledgement without envelope_id: {text}"))
            .to_string();
        let mut inner = self.lock();
        let sent = inner
            .sent
            .iter()
            .rev()
            .find(|(e, c, _)| *e == envelope_id && *c == conn)
            .map(|(_, _, t)| *t)
            .unwrap_or_else(|| panic!("acknowledged {envelope_id} on connection {conn}, which never carried it"));
        inner.acks.push(Ack {
            envelope_id,
            connection: conn,
            payload: v.get("payload").cloned(),
            latency: now - sent,
        });
        drop(inner);
        self.changed.notify_waiters();
    }
}

async fn connections_open(State(fake): State<FakeSocketSlack>, headers: HeaderMap) -> Response {
    let mut inner = fake.lock();
    inner.opens += 1;
    if inner.failing_opens > 0 {
        inner.failing_opens -= 1;
        drop(inner);
        fake.changed.notify_waiters();
        return (StatusCode::INTERNAL_SERVER_ERROR, "applink is having a bad day").into_response();
    }
    drop(inner);
    fake.changed.notify_waiters();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {APP_TOKEN}"));
    let body = if authorized {
        json!({ "ok": true, "url": format!("ws://{}/link/?ticket=fake", fake.ws_addr) })
    } else {
        // What Slack answers for a revoked token or a bot token in its place.
        json!({ "ok": false, "error": "invalid_auth" })
    };
    axum::Json(body).into_response()
}

/// Every other Web API call goes to the wrapped [`FakeSlack`], unchanged.
async fn forward(State(fake): State<FakeSocketSlack>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut call = fake
        .http
        .request(parts.method, format!("http://{}{path}", fake.slack.addr))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            call = call.header(name, value);
        }
    }
    match call.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            for (name, value) in &headers {
                if name == "content-type" || name == "retry-after" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
