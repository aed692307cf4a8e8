//! GitHub webhooks: the signature is checked by an extractor before anything parses the body;
//! deliveries are stored (deduplicated by `X-GitHub-Delivery`) and acknowledged at once, and a
//! processor works through the stored ones, so a crash between the two loses nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use shared::github::RepoName;
use tokio::sync::watch;

use crate::handler::Gandalf;
use crate::store;

/// GitHub caps payloads at 25 MB; ours are comments and PR events, far smaller.
pub const MAX_WEBHOOK_BODY: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct WebhookSecret(pub Option<Arc<SecretString>>);

/// Computes `X-Hub-Signature-256` for a body (what GitHub sends; tests sign with it).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery whose signature checked out, with its event name and delivery id.
pub struct SignedDelivery {
    pub event: String,
    pub delivery: String,
    pub body: Bytes,
}

pub struct Rejection(StatusCode, &'static str);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::UNAUTHORIZED {
            tracing::warn!(reason = self.1, "refused a GitHub delivery");
        }
        (self.0, self.1).into_response()
    }
}

impl<S> FromRequest<S> for SignedDelivery
where
    S: Send + Sync,
    WebhookSecret: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let WebhookSecret(secret) = WebhookSecret::from_ref(state);
        let Some(secret) = secret else {
            return Err(Rejection(
                StatusCode::SERVICE_UNAVAILABLE,
                "no GITHUB_WEBHOOK_SECRET is configured",
            ));
        };
        let (signature, event, delivery) = {
            let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            (h("x-hub-signature-256"), h("x-github-event"), h("x-github-delivery"))
        };
        let body = shared::http::read_body(req.into_body(), MAX_WEBHOOK_BODY)
            .await
            .map_err(|e| match e {
                shared::http::BodyError::TooLarge => Rejection(StatusCode::PAYLOAD_TOO_LARGE, "payload too large"),
                shared::http::BodyError::Unreadable => Rejection(StatusCode::BAD_REQUEST, "unreadable body"),
            })?;
        let Some(hex_sig) = signature.as_deref().and_then(|s| s.strip_prefix("sha256=")) else {
            return Err(Rejection(StatusCode::UNAUTHORIZED, "missing X-Hub-Signature-256"));
        };
        let expected = hex::decode(hex_sig).map_err(|_| Rejection(StatusCode::UNAUTHORIZED, "bad signature"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key");
        mac.update(&body);
        // Constant-time comparison.
        mac.verify_slice(&expected)
            .map_err(|_| Rejection(StatusCode::UNAUTHORIZED, "signature does not match"))?;
        let (Some(event), Some(delivery)) = (event, delivery) else {
            return Err(Rejection(
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Event or X-GitHub-Delivery",
            ));
        };
        Ok(SignedDelivery { event, delivery, body })
    }
}

/// Works through stored deliveries: at start (leftovers of a crash) and whenever one arrives.
pub async fn process_deliveries(gandalf: Gandalf, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = drain(&gandalf, &mut shutdown).await {
            tracing::warn!(error = format!("{e:#}"), "delivery processor stumbled; starting over");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn drain(gandalf: &Gandalf, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut listener = shared::db::listen(&gandalf.pool, &["github_deliveries"]).await?;
    loop {
        while process_one(gandalf).await? {}
        tokio::select! {
            n = listener.recv() => { n?; }
            // A delivery left pending because GitHub was down is tried again after a while.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Processes the oldest pending delivery; `false` when there was none.
async fn process_one(gandalf: &Gandalf) -> anyhow::Result<bool> {
    let mut tx = gandalf.pool.begin().await?;
    let Some((id, event, payload)) = store::next_delivery(&mut tx).await? else {
        return Ok(false);
    };
    if let Err(e) = handle_event(gandalf, &event, &payload).await {
        // GitHub being down while we answer: leave it pending and try again later.
        tracing::warn!(
            delivery = id,
            event,
            error = format!("{e:#}"),
            "delivery not processed yet"
        );
        return Ok(false);
    }
    store::delivery_processed(&mut tx, &id, gandalf.clock.now()).await?;
    tx.commit().await?;
    Ok(true)
}

async fn handle_event(gandalf: &Gandalf, event: &str, p: &Value) -> anyhow::Result<()> {
    let repo = p
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let str_at = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
    match event {
        "issue_comment" => {
            let on_pull = p.pointer("/issue/pull_request").is_some();
            let action = str_at("/action");
            let number = p.pointer("/issue/number").and_then(Value::as_u64).unwrap_or(0);
            let author = str_at("/comment/user/login");
            let is_bot = p.pointer("/comment/user/type").and_then(Value::as_str) == Some("Bot")
                || author.eq_ignore_ascii_case(&gandalf.config.bot_login);
            if !on_pull || action != "created" || number == 0 || is_bot {
                return Ok(());
            }
            let replies = gandalf
                .handle_comment(&repo, number, &author, &str_at("/comment/body"))
                .await;
            for reply in replies {
                comment(gandalf, &repo, number, &reply).await?;
            }
        }
        "pull_request" => {
            let number = p.pointer("/pull_request/number").and_then(Value::as_u64).unwrap_or(0);
            let merged = p
                .pointer("/pull_request/merged")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let base_changed = p.pointer("/changes/base").is_some();
            let note = gandalf
                .pull_request_changed(
                    &repo,
                    number,
                    &str_at("/action"),
                    &str_at("/pull_request/head/sha"),
                    base_changed,
                    merged,
                )
                .await?;
            if let Some(note) = note {
                comment(gandalf, &repo, number, &note).await?;
            }
        }
        // ping, pull_request_review and everything else: acknowledged, nothing to do.
        _ => {}
    }
    Ok(())
}

async fn comment(gandalf: &Gandalf, repo: &str, number: u64, body: &str) -> anyhow::Result<()> {
    let (Some(gh), Some(name)) = (gandalf.github.as_ref(), RepoName::parse(repo)) else {
        return Ok(());
    };
    gh.comment(&name, number, body).await?;
    Ok(())
}
