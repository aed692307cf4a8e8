//! `GET /nightly/runs/{id}/log.txt`: the whole log of one Nightly run as plain text — every
//! environment, every step, every attempt with its backoff, exit and (masked) output — for `curl`,
//! a terminal or an attachment. The summary links the control center's page of the run
//! (`/nightly/runs/{id}`, served by both bots from the shared crate), which links this.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shared::http::ApiError;
use sqlx::PgPool;

use super::runs;
use crate::messages;

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/nightly/runs/{id}/log.txt", get(page))
        .with_state(pool)
}

async fn page(State(pool): State<PgPool>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no Nightly run `{}`", crate::command::clip(&id)));
    let run_id: i64 = id.parse().map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    let Some(run) = runs::get(&mut conn, run_id).await? else {
        return Err(not_found());
    };
    let envs = runs::envs_of(&mut conn, run_id).await?;
    let steps = runs::steps_of(&mut conn, run_id).await?;
    let attempts = runs::attempts_of(&mut conn, run_id).await?;
    let body = messages::nightly_log_page(&run, &envs, &steps, &attempts);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}
