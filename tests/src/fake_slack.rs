//! A stateful fake of the Slack Web API on loopback: it records every `chat.postMessage` (replies
//! in threads too), applies every `chat.update` to the message it edits, records every post to a
//! `response_url`, checks the bot token, and can be told to fail (HTTP 500 or 429) to
//! simulate an outage. Tests wait on its state changing instead of sleeping.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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
    next_ts: u64,
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
    api_call(&fake, &headers, |inner| {
        let channel = body["channel"].as_str().unwrap_or_default().to_string();
        if channel.is_empty() {
            return json!({"ok": false, "error": "channel_not_found"});
        }
        inner.next_ts += 1;
        let ts = format!("1700000000.{:06}", inner.next_ts);
        let text = body["text"].as_str().unwrap_or_default().to_string();
        let thread_ts = body["thread_ts"].as_str().map(str::to_string);
        inner.posts.push(Posted {
            channel: channel.clone(),
            text: text.clone(),
            body: body.clone(),
            ts: ts.clone(),
            thread_ts,
            edits: 0,
        });
        json!({
            "ok": true,
            "channel": channel,
            "ts": ts,
            "message": { "type": "message", "ts": ts, "text": text }
        })
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
