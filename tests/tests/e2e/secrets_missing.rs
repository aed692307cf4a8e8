//! A bot started without its Slack signing secret or GitHub webhook secret (SPEC §3, §8; issue 14
//! item 7): it runs, refuses those requests with 401 — nothing can be authenticated, and a 503 would
//! invite retries of a bot that will never accept them — changes nothing, and says why in
//! `/readyz`'s body, which stays 200 (the process is healthy; it just cannot take those requests).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bg_tests::{BOBBY_TOML, GANDALF_TOML, command_form, fresh_database};
use shared::clock::SystemClock;
use shared::settings::Secrets;
use shared::slack::outbox::Backoff;

/// Secrets with nothing but the database.
fn database_only(url: &str) -> Secrets {
    let env: HashMap<String, String> = [("DATABASE_URL".to_string(), url.to_string())].into();
    Secrets::from_env(&env).unwrap()
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A request Slack would sign, signed with a secret the bot does not have.
async fn slack_post(http: &reqwest::Client, url: String) -> (u16, String) {
    let body = command_form("U0ALICE", "lock env-1 for 1h", "http://127.0.0.1:9/unused");
    let ts = chrono::Utc::now().timestamp();
    let r = http
        .post(url)
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            shared::slack::signature::sign("whatever", ts, body.as_bytes()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn readyz(http: &reqwest::Client, addr: std::net::SocketAddr) -> (u16, String) {
    let r = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn bobby_without_a_signing_secret_answers_401_and_says_why_in_readyz() {
    let db = fresh_database().await;
    let running = bobby::app::start(bobby::app::Options {
        config: bobby::config::BobbyConfig::parse(BOBBY_TOML, Path::new(".")).unwrap(),
        secrets: database_only(&db.url),
        clock: Arc::new(SystemClock),
        listener: listener().await,
        pool_size: 3,
        outbox_backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        outbox_clock: Arc::new(SystemClock),
    })
    .await
    .expect("Bobby starts without Slack credentials");
    let http = reqwest::Client::new();
    let (status, body) = slack_post(&http, format!("http://{}/slack/commands", running.addr)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no SLACK_SIGNING_SECRET"), "{body}");
    let (status, body) = readyz(&http, running.addr).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("no SLACK_SIGNING_SECRET"), "{body}");

    let pool = shared::db::connect(&db.url, 1).await.unwrap();
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM leases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leases, 0, "nothing changed");
    running.stop().await;
}

#[tokio::test]
async fn gandalf_without_its_secrets_answers_401_and_says_why_in_readyz() {
    let db = fresh_database().await;
    let running = gandalf::app::start(gandalf::app::Options {
        config: gandalf::config::GandalfConfig::parse(GANDALF_TOML, Path::new(".")).unwrap(),
        secrets: database_only(&db.url),
        clock: Arc::new(SystemClock),
        listener: listener().await,
        pool_size: 3,
        github: None,
    })
    .await
    .expect("Gandalf starts without credentials");
    let http = reqwest::Client::new();
    let body = r#"{"zen":"Keep it simple."}"#;
    let r = http
        .post(format!("http://{}/github/webhook", running.addr))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "d-1")
        .header(
            "x-hub-signature-256",
            gandalf::webhook::sign("whatever", body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("no GITHUB_WEBHOOK_SECRET"), "{text}");
    let (status, text) = slack_post(&http, format!("http://{}/slack/commands", running.addr)).await;
    assert_eq!(status, 401, "{text}");

    let (status, text) = readyz(&http, running.addr).await;
    assert_eq!(status, 200, "{text}");
    for why in [
        "no GITHUB_WEBHOOK_SECRET",
        "no SLACK_SIGNING_SECRET",
        "no GitHub credentials",
    ] {
        assert!(text.contains(why), "{why}: {text}");
    }
    let pool = shared::db::connect(&db.url, 1).await.unwrap();
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM github_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 0, "nothing stored");
    running.stop().await;
}
