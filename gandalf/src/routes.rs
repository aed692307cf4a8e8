//! Gandalf's HTTP surface (SPEC §5.5): GitHub webhooks, Slack commands, and the queue's JSON API.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::http::ApiError;
use shared::ids::{PrNumber, RepoName, SlackUserId};
use shared::slack::Reply;
use shared::slack::signature::{SignedSlackBody, SlackVerifier};
use shared::slack::socket::SocketHandler;
use slack_morphism::prelude::SlackCommandEvent;

use crate::handler::Gandalf;
use crate::store::{self, Item};
use crate::webhook::{SignedDelivery, WebhookSecret};

#[derive(Clone)]
pub struct AppState {
    pub gandalf: Gandalf,
    pub slack: shared::slack::SlackApi,
    pub verifier: SlackVerifier,
    pub webhook_secret: WebhookSecret,
}

impl FromRef<AppState> for SlackVerifier {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

impl FromRef<AppState> for WebhookSecret {
    fn from_ref(s: &AppState) -> Self {
        s.webhook_secret.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/github/webhook", post(webhook))
        .route("/slack/commands", post(slash_command))
        .route("/slack/interactions", post(interaction))
        .route("/api/v1/repos/{owner}/{repo}/queue", get(queue))
        .route("/api/v1/repos/{owner}/{repo}/pulls/{n}", get(pull))
        .route("/api/v1/repos/{owner}/{repo}/history", get(history))
        .with_state(state)
}

async fn webhook(State(app): State<AppState>, delivery: SignedDelivery) -> Result<Response, ApiError> {
    let mut payload: Value = serde_json::from_slice(&delivery.body)
        .map_err(|_| ApiError::user(StatusCode::BAD_REQUEST, "the payload is not JSON"))?;
    crate::webhook::replace_nul(&mut payload);
    let now = app.gandalf.clock.now();
    let mut conn = app.gandalf.pool.acquire().await?;
    let fresh =
        crate::deliveries::store::store_delivery(&mut conn, &delivery.delivery, &delivery.event, &payload, now).await?;
    let body = if delivery.event == "ping" {
        json!({ "ok": true, "pong": true })
    } else {
        json!({ "ok": true, "duplicate": !fresh })
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn slash_command(State(app): State<AppState>, SignedSlackBody(body): SignedSlackBody) -> Response {
    let Ok(event) = serde_urlencoded::from_bytes::<SlackCommandEvent>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed slash command payload").into_response();
    };
    match command_reply(&app, event).await {
        Ok(reply) => Json(reply.command_response()).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

/// A parsed slash command's reply, within Slack's 3 seconds: what both the HTTP route and Socket
/// Mode answer with. `Err` is a payload we cannot use.
pub async fn command_reply(app: &AppState, event: SlackCommandEvent) -> Result<Reply, &'static str> {
    let Ok(user) = event.user_id.0.parse::<SlackUserId>() else {
        return Err("malformed user_id");
    };
    let text = event.text.clone().unwrap_or_default();
    let gandalf = app.gandalf.clone();
    let late = shared::slack::late::LateDelivery {
        pool: app.gandalf.pool.clone(),
        slack: app.slack.clone(),
        sender: shared::slack::outbox::Sender::Gandalf,
        clock: app.gandalf.clock.clone(),
        channel: event.channel_id.0.clone(),
        response_url: event.response_url.0.to_string(),
    };
    // Enqueueing asks GitHub three questions; a slow GitHub must not make Slack give up on us.
    let work = async move { gandalf.handle(&user, &text).await.reply };
    Ok(shared::slack::late::answer_in_time(work, late, crate::messages::internal_error()).await)
}

/// Gandalf's messages carry no buttons yet; acknowledge so Slack does not retry.
async fn interaction(SignedSlackBody(_): SignedSlackBody) -> StatusCode {
    StatusCode::OK
}

/// Socket Mode (SPEC §11) runs the same processing as the HTTP routes.
pub fn socket_handler(app: AppState) -> std::sync::Arc<dyn SocketHandler> {
    struct Socket(AppState);
    impl SocketHandler for Socket {
        fn command(&self, event: SlackCommandEvent) -> BoxFuture<'static, Result<Reply, String>> {
            let app = self.0.clone();
            Box::pin(async move { command_reply(&app, event).await.map_err(str::to_string) })
        }
        /// As [`interaction`]: nothing to do yet.
        fn interaction(&self, _payload: Value) -> BoxFuture<'static, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }
    std::sync::Arc::new(Socket(app))
}

fn repo_of(app: &AppState, owner: &str, repo: &str) -> Result<RepoName, ApiError> {
    let name = format!("{owner}/{repo}");
    let config = &app.gandalf.config;
    name.parse()
        .ok()
        .and_then(|n| config.repo(&n))
        .map(|r| r.name.clone())
        .ok_or_else(|| {
            let names: Vec<String> = config.repo_names().iter().map(|r| r.to_string()).collect();
            ApiError::not_found(format!("no queue for `{name}`; repositories: {}", names.join(", ")))
        })
}

async fn item_json(conn: &mut sqlx::PgConnection, item: &Item, position: Option<usize>) -> Result<Value, ApiError> {
    // A batch's steps are recorded on its first member.
    let batch = store::batch_of(conn, item.id).await?;
    let steps = store::steps(conn, batch.as_ref().map_or(item.id, |(lead, _)| *lead)).await?;
    Ok(json!({
        "pr": item.pr,
        "title": item.title,
        "head_sha": item.head_sha,
        "state": item.state,
        "position": position,
        // A number, or "urgent" (which sorts before every number).
        "priority": if item.priority == shared::queue::URGENT { json!("urgent") } else { json!(item.priority) },
        "queued_by": item.queued_by,
        "enqueued_at": item.enqueued_at,
        "candidate_sha": item.candidate_sha,
        "affected": item.affected.0,
        "steps": steps,
        "outcome_reason": item.outcome_reason,
        "batch": batch.map(|(id, prs)| json!({ "id": id, "prs": prs })),
        "flaky": item.flaky,
    }))
}

async fn queue(
    State(app): State<AppState>,
    Path((owner, repo)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = repo_of(&app, &owner, &repo)?;
    let mut conn = app.gandalf.pool.acquire().await?;
    let items = store::queue(&mut conn, &name).await?;
    let pause = store::pause_state(&mut conn, &name).await?;
    let mut out = vec![];
    for (i, item) in items.iter().enumerate() {
        out.push(item_json(&mut conn, item, Some(i + 1)).await?);
    }
    Ok(Json(json!({ "repo": name, "paused": pause.paused, "items": out })))
}

async fn pull(
    State(app): State<AppState>,
    Path((owner, repo, n)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = repo_of(&app, &owner, &repo)?;
    let number: PrNumber = n
        .parse()
        .map_err(|_| ApiError::user(StatusCode::BAD_REQUEST, format!("`{n}` is not a pull request number")))?;
    let mut conn = app.gandalf.pool.acquire().await?;
    let Some(item) = store::latest_item(&mut conn, &name, number).await? else {
        return Err(ApiError::not_found(format!("{name}#{number} has never been queued")));
    };
    let position = if item.state.is_finished() {
        None
    } else {
        store::queue(&mut conn, &name)
            .await?
            .iter()
            .position(|i| i.id == item.id)
            .map(|p| p + 1)
    };
    Ok(Json(item_json(&mut conn, &item, position).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
}

async fn history(
    State(app): State<AppState>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = repo_of(&app, &owner, &repo)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let mut conn = app.gandalf.pool.acquire().await?;
    let items = store::history(&mut conn, &name, limit).await?;
    let mut out = vec![];
    for item in &items {
        out.push(item_json(&mut conn, item, None).await?);
    }
    Ok(Json(json!({ "repo": name, "items": out })))
}
