//! Socket Mode (SPEC §11) end to end: the real bots with `slack_mode = "socket"` against a fake
//! Socket Mode server (`bg_tests::fake_slack_socket`), which serves `apps.connections.open` and the
//! WebSocket, sends envelopes the way Slack does and records every acknowledgement.
//!
//! What is checked: every `/bobby` and `/gandalf` command family answers through the socket with
//! the reply the HTTP path gives (compared byte for byte where the command changes nothing), a
//! slow command is acknowledged with "working on it" and answered later, a button press, a forced
//! disconnect with commands around it, the refresh (`disconnect` frames and the announced lifetime:
//! the new connection is up before the old one closes), two replicas (each envelope handled once,
//! even when Slack re-sends it to the other), and the app token (refused at start when missing or of
//! the wrong kind; rejected by Slack: the bot runs and `/readyz` says why), and `bobby exec` /
//! `gandalf exec` on the real binaries in both modes. Acknowledgement times are
//! recorded, never asserted; `socket_benchmark` (ignored) prints them for `docs/benchmarks.md`.

use std::time::Duration;

use bg_tests::fake_slack_socket::{APP_TOKEN, Ack};
use bg_tests::{BobbyOptions, FakeSocketSlack, TestBobby, spawn_bobby_socket, spawn_gandalf_socket};

/// `/bobby <text>` by `user` on connection `conn`; its acknowledgement.
async fn bobby(socket: &FakeSocketSlack, conn: usize, user: &str, text: &str) -> Ack {
    let id = socket.command_on(conn, "/bobby", user, text);
    socket.wait_for_ack(&id).await
}

async fn gandalf(socket: &FakeSocketSlack, conn: usize, user: &str, text: &str) -> Ack {
    let id = socket.command_on(conn, "/gandalf", user, text);
    socket.wait_for_ack(&id).await
}

async fn readyz(app: &TestBobby) -> (u16, String) {
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn lock_events(app: &TestBobby, env: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM history WHERE environment = $1 AND action = 'locked'")
        .bind(env)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_bobby_command_family_answers_through_the_socket_as_over_http() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let conn = socket.wait_for_open(1).await[0];

    let a = bobby(&socket, conn, "U0ALICE", "lock env-1 for 2h testing payments").await;
    assert_eq!(a.response_type().as_deref(), Some("in_channel"), "{a:?}");
    assert!(
        a.text().contains("<@U0ALICE> locked *env-1*") && a.text().contains("testing payments"),
        "{}",
        a.text()
    );
    assert_eq!(a.action_ids(), ["unlock", "extend_1h"]);
    assert_eq!(app.environment("env-1").await["lease"]["holder"], "U0ALICE");

    let a = bobby(&socket, conn, "U0BOB", "lock env-1").await;
    assert_eq!(a.response_type().as_deref(), Some("ephemeral"));
    assert!(a.text().contains("locked by <@U0ALICE>"), "{}", a.text());
    assert_eq!(a.action_ids(), ["wait"]);

    let a = bobby(&socket, conn, "U0ALICE", "extend env-1 1h").await;
    assert!(!a.text().is_empty(), "{a:?}");
    assert_eq!(
        app.environment("env-1").await["lease"]["expires_at"],
        "2026-11-23T12:00:00Z"
    );

    bobby(&socket, conn, "U0BOB", "wait env-1").await;
    assert_eq!(app.environment("env-1").await["waitlist"], serde_json::json!(["U0BOB"]));
    bobby(&socket, conn, "U0BOB", "unwait env-1").await;
    assert_eq!(app.environment("env-1").await["waitlist"], serde_json::json!([]));

    let a = bobby(&socket, conn, "U0ALICE", "preserve env-1").await;
    assert!(a.text().contains("preserved"), "{}", a.text());
    let a = bobby(&socket, conn, "U0ALICE", "unpreserve env-1").await;
    assert!(!a.text().is_empty(), "{a:?}");

    // Read-only commands: the very reply the HTTP route gives for the same state.
    for text in [
        "status",
        "status env-1",
        "list",
        "history env-1",
        "nightly status",
        "help",
        "deploy env-1 main",
        "frobnicate",
    ] {
        let over_socket = bobby(&socket, conn, "U0BOB", text).await;
        let over_http = app.command("U0BOB", text).await;
        assert_eq!(over_http.status, 200);
        assert_eq!(over_socket.payload.as_ref(), Some(&over_http.body), "`/bobby {text}`");
    }

    let a = bobby(&socket, conn, "U0ALICE", "unlock env-1").await;
    assert_eq!(a.response_type().as_deref(), Some("in_channel"));
    assert!(a.text().contains("<@U0ALICE> unlocked *env-1*"), "{}", a.text());
    assert!(app.environment("env-1").await["lease"].is_null());

    // Each envelope was acknowledged once, on the connection that carried it.
    let acks = socket.acks();
    let mut ids: Vec<&str> = acks.iter().map(|a| a.envelope_id.as_str()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an envelope acknowledged twice");
    assert!(acks.iter().all(|a| a.connection == conn));
}

/// Work that takes longer than Slack's 3 seconds: acknowledged with "working on it", and the reply
/// follows through the outbox (in channel), as over HTTP.
#[tokio::test]
async fn a_slow_command_is_acknowledged_in_time_and_answered_later() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let conn = socket.wait_for_open(1).await[0];
    // Hold every environment row: the lock's transaction waits behind this one.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE environments IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let a = bobby(&socket, conn, "U0ALICE", "lock env-3").await;
    assert!(a.text().contains("Working on it"), "{a:?}");
    assert_eq!(a.response_type().as_deref(), Some("ephemeral"));
    tx.rollback().await.unwrap();
    let post = app.slack.wait_for_post("C0DEV", "locked *env-3*").await;
    assert!(post.block_text().contains("<@U0ALICE>"), "{}", post.block_text());
    println!("slow command acknowledged after {:?}", a.latency);
}

#[tokio::test]
async fn a_button_press_arrives_through_the_socket() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let conn = socket.wait_for_open(1).await[0];
    bobby(&socket, conn, "U0ALICE", "lock env-1").await;
    let id = socket.press_on(conn, "U0BOB", "wait", "env-1", "bob-wait");
    let ack = socket.wait_for_ack(&id).await;
    assert_eq!(
        ack.payload, None,
        "a button press is answered through response_url, not the ack"
    );
    app.slack
        .wait_until("bob's private answer", Duration::from_secs(20), |s| {
            s.responses()
                .iter()
                .any(|(id, body)| id == "bob-wait" && body.to_string().contains("position 1"))
        })
        .await;
    assert_eq!(app.environment("env-1").await["waitlist"], serde_json::json!(["U0BOB"]));
}

#[tokio::test]
async fn every_gandalf_command_family_answers_through_the_socket() {
    let (g, socket) = spawn_gandalf_socket(APP_TOKEN).await;
    let conn = socket.wait_for_open(1).await[0];
    g.ready_pull(7, "services/billing/main.rs");

    let a = gandalf(&socket, conn, "U0ALICE", "merge #7").await;
    assert!(a.text().contains("queued *acme/platform#7*"), "{}", a.text());
    let cases = [
        ("U0BOB", "queue", "#7"),
        ("U0BOB", "status #7", "position 1"),
        ("U0BOB", "plan #7", "acme/platform#7"),
        ("U0BOB", "retry #7", "#7"),
        ("U0BOB", "pause", "admin"),
        ("U0ADMIN1", "resume", "acme/platform"),
        ("U0ADMIN1", "pause acme/platform tests", "acme/platform"),
        ("U0ALICE", "cancel #7", "#7"),
        ("U0BOB", "help", "merge"),
    ];
    for (user, text, needle) in cases {
        let a = gandalf(&socket, conn, user, text).await;
        assert!(a.payload.is_some(), "`/gandalf {text}` got an empty acknowledgement");
        assert!(a.text().contains(needle), "`/gandalf {text}`: {}", a.text());
        // The same handler as HTTP and `gandalf exec`: compare with what it says directly (the
        // queue state is unchanged by the read-only ones).
        if matches!(text, "queue" | "help") {
            let (plain, _) = g.command(user, text).await;
            assert_eq!(shared::slack::mrkdwn::to_plain(&a.text()), plain, "`/gandalf {text}`");
        }
    }
    let state: String = sqlx::query_scalar("SELECT state::text FROM queue_items WHERE pr = 7")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(state, "cancelled");
    // Gandalf has no buttons yet: an interaction is acknowledged with nothing.
    let id = socket.press_on(conn, "U0BOB", "anything", "x", "r");
    assert_eq!(socket.wait_for_ack(&id).await.payload, None);
}

#[tokio::test]
async fn a_dropped_connection_is_reopened_at_once_and_nothing_is_handled_twice() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let first = socket.wait_for_open(1).await[0];
    let a = bobby(&socket, first, "U0ALICE", "lock env-1").await;
    assert!(a.text().contains("locked *env-1*"), "{}", a.text());

    socket.kill(first);
    let second = socket.wait_for_successor(first).await;
    let c = socket.connections();
    println!(
        "re-established {:?} after the kill",
        c[second - 1].hello_at - socket.killed_at(first).unwrap()
    );
    let a = bobby(&socket, second, "U0ALICE", "unlock env-1").await;
    assert!(a.text().contains("unlocked *env-1*"), "{}", a.text());

    // Mid-stream: a command goes out and the connection dies at once, perhaps before the bot read
    // it, perhaps after it handled it but before its acknowledgement got through. Slack re-sends
    // it on the next connection; it is handled once either way (a second handling would answer
    // "You already hold env-2").
    let id = socket.command_on(second, "/bobby", "U0BOB", "lock env-2");
    socket.kill(second);
    let third = socket.wait_for_successor(second).await;
    socket.send_envelope(
        third,
        &id,
        "slash_commands",
        socket.command_payload("/bobby", "U0BOB", "lock env-2"),
        1,
    );
    let acks: Vec<Ack> = {
        socket
            .wait_until("the re-sent envelope's acknowledgement", Duration::from_secs(20), |f| {
                f.acks().iter().any(|a| a.envelope_id == id && a.connection == third)
            })
            .await;
        socket.acks().into_iter().filter(|a| a.envelope_id == id).collect()
    };
    for a in &acks {
        assert!(a.text().contains("<@U0BOB> locked *env-2*"), "{a:?}");
    }
    assert_eq!(lock_events(&app, "env-2").await, 1);
    let a = bobby(&socket, third, "U0CAROL", "status env-2").await;
    assert!(a.text().contains("U0BOB"), "{}", a.text());
}

/// When `apps.connections.open` itself fails (Slack's API down), the bot keeps trying, with
/// backoff, and `/readyz` stays 200 meanwhile.
#[tokio::test]
async fn a_failing_connections_open_is_retried_until_it_works() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let first = socket.wait_for_open(1).await[0];
    assert_eq!(socket.opens(), 1);
    socket.fail_opens(2);
    socket.kill(first);
    let next = socket.wait_for_successor(first).await;
    assert_eq!(
        socket.opens(),
        4,
        "one open that worked, two refused, one that worked again"
    );
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    assert!(body.contains("slack socket mode: connected"), "{body}");
    let a = bobby(&socket, next, "U0ALICE", "lock env-4").await;
    assert!(a.text().contains("locked *env-4*"), "{}", a.text());
}

#[tokio::test]
async fn on_refresh_the_new_connection_is_up_before_the_old_one_closes() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let first = socket.wait_for_open(1).await[0];
    for (reason, env) in [("refresh_requested", "env-1"), ("warning", "env-2")] {
        let old = socket.open_connections()[0];
        let before = socket.command_on(old, "/bobby", "U0ALICE", &format!("lock {env}"));
        socket.disconnect(old, reason);
        socket
            .wait_until("the old connection closed", Duration::from_secs(20), |f| {
                f.connections()[old - 1].closed_at.is_some()
            })
            .await;
        let c = socket.connections();
        let new = c.iter().find(|c| c.id > old).expect("a successor");
        assert!(c[old - 1].closed_by_bot, "the bot closed the old connection, not Slack");
        assert!(
            new.hello_at < c[old - 1].closed_at.unwrap(),
            "{reason}: the new connection must be up before the old one closes: {c:#?}"
        );
        // What was sent before the refresh was acknowledged on the old connection.
        let a = socket.wait_for_ack(&before).await;
        assert_eq!(a.connection, old);
        assert!(a.text().contains(&format!("locked *{env}*")), "{}", a.text());
        let after = bobby(&socket, new.id, "U0ALICE", &format!("unlock {env}")).await;
        assert!(after.text().contains("unlocked"), "{}", after.text());
    }

    // Before the lifetime `hello` announced runs out, without being asked.
    socket.set_lifetime(1);
    socket.disconnect(socket.open_connections()[0], "refresh_requested");
    socket
        .wait_until("a refresh of a short-lived connection", Duration::from_secs(20), |f| {
            f.connections().len() >= first + 4 && f.connections()[first + 2].closed_at.is_some()
        })
        .await;
    socket.set_lifetime(3600);
    let c = socket.connections();
    let (short, successor) = (&c[first + 2], &c[first + 3]);
    assert!(short.closed_by_bot);
    assert!(successor.hello_at < short.closed_at.unwrap(), "{c:#?}");

    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    assert!(body.contains("slack socket mode: connected"), "{body}");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "slack_socket_state",
        "slack_socket_envelopes_received_total",
        "slack_socket_envelopes_acknowledged_total",
        "slack_socket_reconnects_total",
        "slack_socket_ack_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn two_replicas_handle_each_envelope_once() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    socket.wait_for_open(1).await;
    let replica = app.another_replica().await;
    let conns = socket.wait_for_open(2).await;

    // Commands spread over both connections, as Slack spreads them.
    let mut sent = vec![];
    for (i, env) in ["env-1", "env-2", "env-3", "env-4"].iter().enumerate() {
        let user = format!("U0USER{i}");
        sent.push((
            env,
            socket.command_on(conns[i % 2], "/bobby", &user, &format!("lock {env}")),
        ));
    }
    for (env, id) in &sent {
        let a = socket.wait_for_ack(id).await;
        assert!(a.text().contains(&format!("locked *{env}*")), "{}", a.text());
    }

    // Slack re-sends an envelope it thinks was lost to the other connection: handled once.
    let id = socket.command_on(conns[0], "/bobby", "U0USER0", "unlock env-1");
    let payload = socket.command_payload("/bobby", "U0USER0", "unlock env-1");
    socket.send_envelope(conns[1], &id, "slash_commands", payload, 1);
    socket
        .wait_until("both acknowledgements", Duration::from_secs(20), |f| {
            f.acks().iter().filter(|a| a.envelope_id == id).count() == 2
        })
        .await;
    for a in socket.acks().iter().filter(|a| a.envelope_id == id) {
        // The second carries the first's reply (recorded, or awaited while the first still ran);
        // never a second handling's "env-1 is not locked".
        assert!(a.text().contains("unlocked *env-1*"), "{a:?}");
    }
    let unlocks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history WHERE environment = 'env-1' AND action = 'unlocked'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(unlocks, 1);
    let handled: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_socket_envelopes WHERE handled_at IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(handled, 5);
    replica.stop().await;
}

#[tokio::test]
async fn a_rejected_app_token_keeps_the_bot_up_and_readyz_says_why() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), "xapp-1-revoked").await;
    socket
        .wait_until("an attempt to connect", Duration::from_secs(20), |f| f.opens() >= 1)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = readyz(&app).await;
        assert_eq!(
            status, 200,
            "Slack refusing the token must not make the bot unready: {body}"
        );
        if body.contains("refused") {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        body.contains("invalid_auth") && body.contains("SLACK_APP_TOKEN"),
        "{body}"
    );
    assert!(!body.contains("xapp-1-revoked"), "the token itself never shows: {body}");
    assert!(socket.open_connections().is_empty());
    // The HTTP surface still works.
    assert_eq!(app.environment("env-1").await["name"], "env-1");
}

#[tokio::test]
async fn a_missing_or_wrong_kind_of_app_token_refuses_to_start() {
    let config =
        bobby::config::BobbyConfig::parse(&bg_tests::socket_mode(bg_tests::BOBBY_TOML), std::path::Path::new("."))
            .unwrap();
    for (token, needle) in [(None, "SLACK_APP_TOKEN_FILE"), (Some("xoxb-a-bot-token"), "`xoxb-`")] {
        let mut env = std::collections::HashMap::new();
        if let Some(t) = token {
            env.insert("SLACK_APP_TOKEN".to_string(), t.to_string());
        }
        let secrets = shared::settings::Secrets::from_env(&env).unwrap();
        let err = bobby::app::start(bobby::app::Options {
            config: config.clone(),
            secrets,
            clock: std::sync::Arc::new(shared::clock::SystemClock),
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            pool_size: 1,
            outbox_backoff: Default::default(),
            outbox_clock: std::sync::Arc::new(shared::clock::SystemClock),
        })
        .await
        .err()
        .expect("refuses to start");
        let err = format!("{err:#}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("xoxb-a-bot-token"), "{err}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// For `docs/benchmarks.md`: acknowledgement latency under a mixed command load through one
/// Socket Mode connection, and the time to re-establish after a forced disconnect.
/// `cargo test -p bg-tests --test e2e slack_socket::socket_benchmark -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn socket_benchmark() {
    let (app, socket) = spawn_bobby_socket(BobbyOptions::default(), APP_TOKEN).await;
    let conn = socket.wait_for_open(1).await[0];
    let rounds = 100;
    let clients = 20;
    let command = |round: usize, c: usize| {
        let env = format!("env-{}", c % 4 + 1);
        match (round + c) % 4 {
            0 => format!("lock {env} for 1h"),
            1 => format!("status {env}"),
            2 => format!("unlock {env}"),
            _ => "list".to_string(),
        }
    };
    let started = std::time::Instant::now();
    for round in 0..rounds {
        // Twenty people at once, each with one of the HTTP row's commands.
        let ids: Vec<String> = (0..clients)
            .map(|c| socket.command_on(conn, "/bobby", &format!("U0LOAD{c}"), &command(round, c)))
            .collect();
        for id in &ids {
            socket.wait_for_ack(id).await;
        }
    }
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = socket.acks().iter().map(|a| a.latency).collect();
    latencies.sort();
    println!(
        "socket mode: {} commands ({clients} concurrent) in {elapsed:?}: ack p50 {:?} p99 {:?} max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    // The same commands over HTTP, in the same process and build, for comparison.
    let started = std::time::Instant::now();
    let mut http = vec![];
    for round in 0..rounds {
        let answers = futures::future::join_all((0..clients).map(|c| {
            let (app, text) = (&app, command(round, c));
            async move {
                let t = std::time::Instant::now();
                let r = app.command(&format!("U0LOAD{c}"), &text).await;
                assert_eq!(r.status, 200);
                t.elapsed()
            }
        }))
        .await;
        http.extend(answers);
    }
    let elapsed = started.elapsed();
    http.sort();
    println!(
        "http: {} commands ({clients} concurrent) in {elapsed:?}: response p50 {:?} p99 {:?} max {:?}",
        http.len(),
        percentile(&http, 0.5),
        percentile(&http, 0.99),
        http.last().unwrap()
    );
    let mut gaps = vec![];
    for _ in 0..20 {
        let old = socket.open_connections()[0];
        socket.kill(old);
        let new = socket.wait_for_successor(old).await;
        gaps.push(socket.connections()[new - 1].hello_at - socket.killed_at(old).unwrap());
    }
    gaps.sort();
    println!(
        "re-established after a forced disconnect (20 kills): p50 {:?} max {:?}",
        percentile(&gaps, 0.5),
        gaps.last().unwrap()
    );
}

/// Where cargo put the workspace's binaries (as in `faults_shutdown`): `cargo test --workspace`
/// builds them; running only this binary needs `cargo build -p bobby -p gandalf` first.
fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p bobby -p gandalf` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// `bobby exec` and `gandalf exec` run the command handler directly, whatever `slack_mode` says,
/// and need no app token: the real binaries, in both modes.
#[tokio::test]
async fn exec_works_in_both_modes() {
    let db = bg_tests::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("bobby", bg_tests::BOBBY_TOML, "list", "env-4"),
        ("gandalf", bg_tests::GANDALF_TOML, "help", "merge"),
    ];
    for (bot, config, command, needle) in cases {
        for (mode, text) in [("http", config.to_string()), ("socket", bg_tests::socket_mode(config))] {
            let path = dir.path().join(format!("{bot}-{mode}.toml"));
            std::fs::write(&path, text).unwrap();
            let out = tokio::process::Command::new(binary(bot))
                .arg("--config")
                .arg(&path)
                .args(["exec", "--as", "U0ALICE", command])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATABASE_URL", &db.url)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(needle),
                "{bot} exec in {mode} mode: {:?}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
