//! SPEC §8, "losing a LISTEN connection is noticed and followed by a re-read": Gandalf's queue
//! worker waits on Postgres notifications. Here its LISTEN connection is terminated
//! (`pg_terminate_backend`) in the very transaction that resumes the queue, so the notification
//! is sent while nobody listens. sqlx's `recv` would reconnect silently and the worker would sleep
//! until its one-minute safety tick; instead the reconnection is reported, the worker re-reads the
//! queue, and the PR is verified and lands within the harness's 30 s wait.

use bg_tests::{Pipeline, RESOURCE_MAP, spawn_gandalf_with};
use std::time::Duration;

#[tokio::test]
async fn a_change_notified_while_the_listener_was_down_is_acted_on() {
    let p = Pipeline::new();
    let g = spawn_gandalf_with(&p.config(""), p.dir(), true).await;
    g.github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    let (reply, refused) = g.command("U0ADMIN1", "pause acme/platform maintenance").await;
    assert!(!refused, "{reply}");
    g.ready_pull(7, "api/x.rs");
    let (reply, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "{reply}");
    assert_eq!(g.state_of(7).await, "queued");

    // Wait until the idle worker listens for queue changes (its connection's last statement).
    let listeners = "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(listeners)
        .fetch_one(&g.pool)
        .await
        .unwrap()
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "nobody listens");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut tx = g.pool.begin().await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(killed.iter().any(|k| *k), "no listener was terminated");
    sqlx::query(
        "UPDATE repo_queues SET paused = false, paused_reason = '', paused_by = NULL WHERE repo = 'acme/platform'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    g.wait_for_state(7, "merged").await;
}
