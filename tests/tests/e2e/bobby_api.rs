//! Bobby's JSON API, deploy gate and operational endpoints.

use bg_tests::{API_TOKEN, spawn_bobby};
use serde_json::json;

#[tokio::test]
async fn deploy_check_follows_the_rules() {
    let app = spawn_bobby().await;
    // Unleased with require_lease_to_deploy: refused, with the command to fix it.
    let (status, body) = app.deploy_check("env-1", "alice").await;
    assert_eq!(status, 409);
    assert_eq!(body["allowed"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("lock it first: `/bobby lock env-1`"),
        "{body}"
    );

    app.command("U0ALICE", "lock env-1 for 2h feature x").await;
    for who in ["U0ALICE", "alice", "alice@example.com", "ALICE@example.com"] {
        let (status, body) = app.deploy_check("env-1", who).await;
        assert_eq!((status, &body), (200, &json!({"allowed": true})), "{who}");
    }
    for who in ["bob", "U0BOB", "mallory@example.com", "gandalf"] {
        let (status, body) = app.deploy_check("env-1", who).await;
        assert_eq!(status, 409, "{who}");
        assert_eq!(body["allowed"], false);
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .starts_with("env-1 is locked by U0ALICE"),
            "{body}"
        );
    }
    // Nightly at work: nobody, not even the holder.
    sqlx::query("UPDATE environments SET state = 'creating' WHERE name = 'env-1'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, body) = app.deploy_check("env-1", "alice").await;
    assert_eq!(status, 409);
    assert!(body["reason"].as_str().unwrap().contains("creating"), "{body}");
}

#[tokio::test]
async fn deploy_check_needs_the_bearer_token_and_good_input() {
    let app = spawn_bobby().await;
    let url = app.url("/api/v1/environments/env-1/deploy-check");
    let r = app.http.post(&url).json(&json!({"as": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .post(&url)
        .bearer_auth("wrong")
        .json(&json!({"as": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let r = app
        .http
        .post(&url)
        .bearer_auth(API_TOKEN)
        .body("{\"who\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains(r#"{"as": "alice"}"#), "{body}");
    let r = app
        .http
        .post(&url)
        .bearer_auth(API_TOKEN)
        .json(&json!({"as": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, body) = app.deploy_check("env-7", "alice").await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("no environment named `env-7`"),
        "{body}"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_bobby().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("ready"));

    app.command("U0ALICE", "lock env-1").await;
    app.command("U0BOB", "lock env-1").await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("http_request_duration_seconds_bucket{route=\"/slack/commands\""),
        "{text}"
    );
    assert!(text.contains("leases{state=\"ready\"}"), "{text}");
    assert!(text.contains("environments{state=\"ready\"}"), "{text}");
    assert!(text.contains("slack_outbox_backlog"), "{text}");
    assert!(text.contains("bobby_lock_total{outcome=\"refused\"}"), "{text}");

    // Readiness fails when the database is gone; liveness does not.
    app.pool.close().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = spawn_bobby().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}
