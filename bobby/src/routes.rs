//! Bobby's HTTP surface (SPEC §4.4): Slack's slash commands and button presses, the JSON API and
//! the deploy gate. Slack bodies are verified by the `SignedSlackBody` extractor before anything
//! here parses them. The Slack processing is also reachable with a parsed payload
//! ([`command_reply`], [`on_interaction`]), which is how Socket Mode runs the very same code.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use shared::envs::store;
use shared::http::ApiError;
use shared::ids::SlackUserId;
use shared::slack::late::{LateDelivery, answer_in_time};
use shared::slack::outbox::Sender;
use shared::slack::signature::{SignedSlackBody, SlackVerifier};
use shared::slack::socket::SocketHandler;
use shared::slack::{Reply, SlackApi};
use slack_morphism::prelude::SlackCommandEvent;
use subtle::ConstantTimeEq;

use crate::deploy_check::{Decision, decide};
use crate::handler::Bobby;
use crate::messages;

#[derive(Clone)]
pub struct AppState {
    pub bobby: Bobby,
    pub slack: SlackApi,
    pub verifier: SlackVerifier,
    pub api_token: Option<std::sync::Arc<secrecy::SecretString>>,
}

impl FromRef<AppState> for SlackVerifier {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// The API's bodies are tiny; anything bigger is a mistake or an attack.
const MAX_API_BODY: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/slack/commands", post(slash_command))
        .route("/slack/interactions", post(interaction))
        .route("/api/v1/environments", get(list_environments))
        .route("/api/v1/environments/{name}", get(get_environment))
        .route("/api/v1/environments/{name}/deploy-check", post(deploy_check))
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .with_state(state)
}

/// Where a reply goes when it cannot go back in the HTTP response.
fn late_delivery(app: &AppState, channel: String, response_url: String) -> LateDelivery {
    LateDelivery {
        pool: app.bobby.pool.clone(),
        slack: app.slack.clone(),
        sender: Sender::Bobby,
        clock: app.bobby.clock.clone(),
        channel,
        response_url,
    }
}

fn slack_error(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
}

async fn slash_command(State(app): State<AppState>, SignedSlackBody(body): SignedSlackBody) -> Response {
    let event: SlackCommandEvent = match serde_urlencoded::from_bytes(&body) {
        Ok(e) => e,
        Err(_) => return slack_error(StatusCode::BAD_REQUEST, "malformed slash command payload"),
    };
    match command_reply(&app, event).await {
        Ok(reply) => Json(reply.command_response()).into_response(),
        Err(why) => slack_error(StatusCode::BAD_REQUEST, why),
    }
}

/// A parsed slash command's reply, within Slack's 3 seconds: what both the HTTP route and Socket
/// Mode answer with. `Err` is a payload we cannot use.
pub async fn command_reply(app: &AppState, event: SlackCommandEvent) -> Result<Reply, &'static str> {
    let Ok(user) = event.user_id.0.parse::<SlackUserId>() else {
        return Err("malformed user_id");
    };
    let text = event.text.clone().unwrap_or_default();
    let bobby = app.bobby.clone();
    let late = late_delivery(app, event.channel_id.0.clone(), event.response_url.0.to_string());
    let channel = event.channel_id.0.clone();
    let work = async move { bobby.handle_in(&user, &text, Some(&channel)).await.reply };
    Ok(answer_in_time(work, late, messages::internal_error()).await)
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct BlockActions {
    #[serde(rename = "type")]
    kind: String,
    user: IdOnly,
    #[serde(default)]
    channel: Option<IdOnly>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    actions: Vec<ActionPressed>,
}

#[derive(Deserialize)]
struct ActionPressed {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

async fn interaction(State(app): State<AppState>, SignedSlackBody(body): SignedSlackBody) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<InteractionForm>(&body) else {
        return slack_error(StatusCode::BAD_REQUEST, "expected a form with a `payload` field");
    };
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(&form.payload) else {
        return slack_error(StatusCode::BAD_REQUEST, "malformed interaction payload");
    };
    match on_interaction(&app, payload).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => slack_error(StatusCode::BAD_REQUEST, why),
    }
}

/// A button press (the interaction payload as JSON): what both the HTTP route and Socket Mode
/// run. The answer goes through `response_url`, so the acknowledgement carries nothing.
pub async fn on_interaction(app: &AppState, payload: serde_json::Value) -> Result<(), &'static str> {
    let Ok(payload) = serde_json::from_value::<BlockActions>(payload) else {
        return Err("malformed interaction payload");
    };
    if payload.kind != "block_actions" {
        // Shortcuts, view submissions…: nothing of ours. Acknowledge so Slack does not retry.
        return Ok(());
    }
    let Ok(user) = payload.user.id.parse::<SlackUserId>() else {
        return Err("malformed user id");
    };
    let Some(action) = payload.actions.first() else {
        return Ok(());
    };
    let answer = app
        .bobby
        .handle_action(&user, &action.action_id, action.value.as_deref().unwrap_or(""))
        .await;
    let late = late_delivery(
        app,
        payload.channel.map(|c| c.id).unwrap_or_else(|| user.to_string()),
        payload.response_url.unwrap_or_default(),
    );
    tokio::spawn(async move { late.deliver(&answer.reply).await });
    Ok(())
}

/// Socket Mode (SPEC §11) runs the same two functions as the HTTP routes.
pub fn socket_handler(app: AppState) -> std::sync::Arc<dyn SocketHandler> {
    struct Socket(AppState);
    impl SocketHandler for Socket {
        fn command(&self, event: SlackCommandEvent) -> BoxFuture<'static, Result<Reply, String>> {
            let app = self.0.clone();
            Box::pin(async move { command_reply(&app, event).await.map_err(str::to_string) })
        }
        fn interaction(&self, payload: serde_json::Value) -> BoxFuture<'static, Result<(), String>> {
            let app = self.0.clone();
            Box::pin(async move { on_interaction(&app, payload).await.map_err(str::to_string) })
        }
    }
    std::sync::Arc::new(Socket(app))
}

async fn list_environments(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut conn = app.bobby.pool.acquire().await?;
    let envs = store::list(&mut conn).await?;
    Ok(Json(json!({ "environments": envs })))
}

fn no_such_environment(app: &AppState, name: &str) -> ApiError {
    let names: Vec<&str> = app.bobby.config.environments.iter().map(|e| e.name.as_str()).collect();
    let mut message = format!("no environment named `{}`", crate::command::clip(name));
    if let Some(s) = crate::command::closest(name, &names) {
        message.push_str(&format!(" (did you mean `{s}`?)"));
    }
    message.push_str(&format!("; environments: {}", names.join(", ")));
    ApiError::not_found(message)
}

/// The environment a URL names: a name that cannot be one is simply not found.
async fn find(conn: &mut sqlx::PgConnection, name: &str) -> sqlx::Result<Option<shared::envs::Environment>> {
    match name.parse::<shared::ids::EnvName>() {
        Ok(name) => store::get(conn, &name).await,
        Err(_) => Ok(None),
    }
}

async fn get_environment(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let mut conn = app.bobby.pool.acquire().await?;
    match find(&mut conn, &name).await? {
        Some(env) => Ok(Json(env).into_response()),
        None => Err(no_such_environment(&app, &name)),
    }
}

#[derive(Deserialize)]
struct DeployCheckBody {
    #[serde(rename = "as")]
    who: String,
}

async fn deploy_check(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(token) = &app.api_token else {
        return Err(ApiError::user(
            StatusCode::SERVICE_UNAVAILABLE,
            "this Bobby has no BOBBY_API_TOKEN configured, so its write API is off",
        ));
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use secrecy::ExposeSecret;
    if !bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        return Err(ApiError::user(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (BOBBY_API_TOKEN)",
        ));
    }
    let request: DeployCheckBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::user(
            StatusCode::BAD_REQUEST,
            r#"the body must be JSON like {"as": "alice"} (a Slack id, GitHub login or email)"#,
        )
    })?;
    if request.who.trim().is_empty() {
        return Err(ApiError::user(
            StatusCode::BAD_REQUEST,
            "`as` is empty: say who deploys",
        ));
    }
    let mut conn = app.bobby.pool.acquire().await?;
    let Some(env) = find(&mut conn, &name).await? else {
        return Err(no_such_environment(&app, &name));
    };
    let config = &app.bobby.config;
    Ok(
        match decide(&env, &request.who, &config.people, config.require_lease_to_deploy) {
            Decision::Allowed => (StatusCode::OK, Json(json!({ "allowed": true }))).into_response(),
            Decision::Refused(reason) => (
                StatusCode::CONFLICT,
                Json(json!({ "allowed": false, "reason": reason })),
            )
                .into_response(),
        },
    )
}
