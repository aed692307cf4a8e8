//! A stateful fake of the Slack Web API on loopback: it records every `chat.postMessage` (replies
//! in threads too, with their message metadata), applies every `chat.update` to the message it
//! edits, records every post to a `response_url`, checks the bot token, and can be told to fail
//! (HTTP 500 or 429) to simulate an outage. It serves `conversations.open` (a user's DM channel,
//! `D` + the user id), `conversations.history` and `conversations.replies` as Slack does: newest
//! first, `oldest` exclusive, cursor pagination, metadata only with `include_all_metadata=true`.
//! Message `ts` are wall-clock based and unique, like Slack's. It can also *hold* its answer to
//! posts ([`FakeSlack::hold_posts`]): the message is recorded, the caller never hears back — the
//! window in which a bot that dies has sent a message without knowing it. Tests wait on its state
//! changing instead of sleeping.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_TOKEN: &str = "xoxb-test-token";

#[derive(Clone, Debug)]
pub struct Posted {
    pub channel: String,
    pub text: String,
    pub body: Value,
    /// The message's id in its channel.
    pub ts: String,
    /// Set for a reply in the thread of the message with this `ts`.
    pub thread_ts: Option<String>,
    /// How many times `chat.update` replaced it (`text` and `body` are the latest).
    pub edits: usize,
    /// The message's `metadata` (`event_type`, `event_payload`), when it was posted with some.
    pub metadata: Option<Value>,
}

impl Posted {
    /// The text of all section blocks, joined: what a reader sees.
    pub fn block_text(&self) -> String {
        self.body["blocks"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .filter_map(|b| b["text"]["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Answer every call with this HTTP status.
    Status(u16),
    /// Answer 429 with `Retry-After: secs`.
    RateLimited { retry_after: u64 },
}

#[derive(Default)]
struct Inner {
    posts: Vec<Posted>,
    responses: Vec<(String, Value)>,
    refused_calls: usize,
    outage: Option<Outage>,
    last_ts_micros: u64,
    hold_posts: bool,
    history_calls: usize,
}

impl Inner {
    /// A new message id: the wall clock in microseconds, strictly increasing.
    fn next_ts(&mut self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        self.last_ts_micros = now.max(self.last_ts_micros + 1);
        format!(
            "{}.{:06}",
            self.last_ts_micros / 1_000_000,
            self.last_ts_micros % 1_000_000
        )
    }
}

#[derive(Clone)]
pub struct FakeSlack {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl FakeSlack {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts the fake on a chosen address (see `FakeGithub::start_on`).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let fake = FakeSlack {
            addr: "127.0.0.1:0".parse().unwrap(),
            inner: Arc::new(Mutex::new(Inner::default())),
            changed: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update_message))
            .route("/api/conversations.open", post(open_conversation))
            .route("/api/conversations.history", get(history))
            .route("/api/conversations.replies", get(replies))
            .route("/response/{id}", post(response_url))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeSlack { addr, ..fake }
    }

    /// `SLACK_API_URL` for the bots.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// A `response_url` that lands here.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.addr)
    }

    /// While on, `chat.postMessage` records the message and never answers.
    pub fn hold_posts(&self, on: bool) {
        self.inner.lock().unwrap().hold_posts = on;
    }

    /// `conversations.history` and `conversations.replies` calls answered.
    pub fn history_calls(&self) -> usize {
        self.inner.lock().unwrap().history_calls
    }

    pub fn set_outage(&self, outage: Option<Outage>) {
        self.inner.lock().unwrap().outage = outage;
    }

    pub fn posts(&self) -> Vec<Posted> {
        self.inner.lock().unwrap().posts.clone()
    }

    pub fn posts_to(&self, channel: &str) -> Vec<Posted> {
        self.posts().into_iter().filter(|p| p.channel == channel).collect()
    }

    pub fn responses(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().responses.clone()
    }

    /// Calls answered with an error while an outage was on.
    pub fn refused_calls(&self) -> usize {
        self.inner.lock().unwrap().refused_calls
    }

    /// Waits until `pred` holds for the recorded state, or panics after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&FakeSlack) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if pred(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; Slack saw: {:#?} and responses {:#?}",
                    self.posts(),
                    self.responses()
                );
            }
        }
    }

    /// Waits for a message to `channel` whose text contains `needle`, and returns it.
    pub async fn wait_for_post(&self, channel: &str, needle: &str) -> Posted {
        self.wait_until(
            &format!("a post to {channel} containing {needle:?}"),
            Duration::from_secs(20),
            |s| s.posts_to(channel).iter().any(|p| p.block_text().contains(needle)),
        )
        .await;
        self.posts_to(channel)
            .into_iter()
            .find(|p| p.block_text().contains(needle))
            .unwrap()
    }
}

async fn post_message(State(fake): State<FakeSlack>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut held = false;
    let answer = api_call(&fake, &headers, |inner| {
        let channel = body["channel"].as_str().unwrap_or_default().to_string();
        if channel.is_empty() {
            return json!({"ok": false, "error": "channel_not_found"});
        }
        let ts = inner.next_ts();
        let text = body["text"].as_str().unwrap_or_default().to_string();
        let thread_ts = body["thread_ts"].as_str().map(str::to_string);
        inner.posts.push(Posted {
            channel: channel.clone(),
            text: text.clone(),
            body: body.clone(),
            ts: ts.clone(),
            thread_ts,
            edits: 0,
            metadata: body.get("metadata").cloned(),
        });
        held = inner.hold_posts;
        json!({
            "ok": true,
            "channel": channel,
            "ts": ts,
            "message": { "type": "message", "ts": ts, "text": text }
        })
    });
    if held {
        // Slack took the message; the caller never learns it.
        std::future::pending::<()>().await;
    }
    answer
}

/// `conversations.open`: a DM channel per user, `D` + the user id (posts to the user id land there).
async fn open_conversation(State(fake): State<FakeSlack>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    api_call(&fake, &headers, |_| {
        let users = match &body["users"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            _ => String::new(),
        };
        match users.split(',').filter(|u| !u.is_empty()).collect::<Vec<_>>()[..] {
            [user] => json!({"ok": true, "channel": {"id": format!("D{user}")}}),
            _ => json!({"ok": false, "error": "users_list_not_supplied"}),
        }
    })
}

/// The posts of a channel as `conversations.*` name it: a DM channel `D<user>` holds the posts
/// made to the user id.
fn in_channel(p: &Posted, channel: &str) -> bool {
    p.channel == channel || channel.strip_prefix('D').is_some_and(|user| p.channel == user)
}

fn as_message(p: &Posted, with_metadata: bool) -> Value {
    let mut m = json!({"type": "message", "ts": p.ts, "text": p.text, "bot_id": "B0FAKE"});
    if let Some(t) = &p.thread_ts {
        m["thread_ts"] = json!(t);
    }
    if with_metadata && let Some(md) = &p.metadata {
        m["metadata"] = md.clone();
    }
    m
}

fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

/// One page of messages, newest first (Slack's order), after `oldest` (exclusive).
fn page(messages: Vec<&Posted>, q: &std::collections::HashMap<String, String>) -> Value {
    let oldest = q.get("oldest").map(|o| ts_value(o)).unwrap_or(0.0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100).clamp(1, 999);
    let offset: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let with_metadata = q.get("include_all_metadata").is_some_and(|v| v == "true");
    let mut found: Vec<&Posted> = messages.into_iter().filter(|p| ts_value(&p.ts) > oldest).collect();
    found.sort_by(|a, b| ts_value(&b.ts).total_cmp(&ts_value(&a.ts)));
    let more = found.len() > offset + limit;
    let messages: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|p| as_message(p, with_metadata))
        .collect();
    json!({
        "ok": true,
        "messages": messages,
        "has_more": more,
        "response_metadata": { "next_cursor": if more { (offset + limit).to_string() } else { String::new() } }
    })
}

async fn history(
    State(fake): State<FakeSlack>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    api_call(&fake, &headers, |inner| {
        let Some(channel) = q.get("channel").filter(|c| c.starts_with(['C', 'G', 'D'])) else {
            return json!({"ok": false, "error": "channel_not_found"});
        };
        inner.history_calls += 1;
        // Top-level messages only: thread replies are read with conversations.replies.
        let top: Vec<&Posted> = inner
            .posts
            .iter()
            .filter(|p| in_channel(p, channel) && p.thread_ts.is_none())
            .collect();
        page(top, &q)
    })
}

async fn replies(
    State(fake): State<FakeSlack>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    api_call(&fake, &headers, |inner| {
        let (Some(channel), Some(ts)) = (q.get("channel").filter(|c| c.starts_with(['C', 'G', 'D'])), q.get("ts"))
        else {
            return json!({"ok": false, "error": "channel_not_found"});
        };
        inner.history_calls += 1;
        let thread: Vec<&Posted> = inner
            .posts
            .iter()
            .filter(|p| in_channel(p, channel) && (&p.ts == ts || p.thread_ts.as_ref() == Some(ts)))
            .collect();
        if thread.is_empty() {
            return json!({"ok": false, "error": "thread_not_found"});
        }
        page(thread, &q)
    })
}

async fn update_message(State(fake): State<FakeSlack>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    api_call(&fake, &headers, |inner| {
        let channel = body["channel"].as_str().unwrap_or_default();
        let ts = body["ts"].as_str().unwrap_or_default();
        let Some(post) = inner.posts.iter_mut().find(|p| p.channel == channel && p.ts == ts) else {
            return json!({"ok": false, "error": "message_not_found"});
        };
        post.text = body["text"].as_str().unwrap_or_default().to_string();
        post.body = body.clone();
        post.edits += 1;
        json!({
            "ok": true,
            "channel": channel,
            "ts": ts,
            "text": post.text,
            "message": { "type": "message", "ts": ts, "text": post.text }
        })
    })
}

/// The part every Web API method shares: outages, the bot token, then the method itself.
fn api_call(fake: &FakeSlack, headers: &HeaderMap, method: impl FnOnce(&mut Inner) -> Value) -> Response {
    let mut inner = fake.inner.lock().unwrap();
    let answer = match inner.outage {
        Some(Outage::Status(code)) => {
            inner.refused_calls += 1;
            (StatusCode::from_u16(code).unwrap(), "slack is having a bad day").into_response()
        }
        Some(Outage::RateLimited { retry_after }) => {
            inner.refused_calls += 1;
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", retry_after.to_string()),
                    ("content-type", "application/json".into()),
                ],
                json!({"ok": false, "error": "ratelimited"}).to_string(),
            )
                .into_response()
        }
        None => {
            let authorized = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Bearer {BOT_TOKEN}"));
            if authorized {
                Json(method(&mut inner)).into_response()
            } else {
                Json(json!({"ok": false, "error": "invalid_auth"})).into_response()
            }
        }
    };
    drop(inner);
    fake.changed.notify_waiters();
    answer
}

async fn response_url(State(fake): State<FakeSlack>, Path(id): Path<String>, Json(body): Json<Value>) -> Response {
    fake.inner.lock().unwrap().responses.push((id, body));
    fake.changed.notify_waiters();
    (StatusCode::OK, "ok").into_response()
}
