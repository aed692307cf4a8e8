//! Bobby under bad input, forged requests, concurrency, Slack outages and restarts.

use std::time::Duration;

use bg_tests::{BobbyOptions, Outage, SIGNING_SECRET, command_form, spawn_bobby, spawn_bobby_with};
use futures::future::join_all;

/// Nothing at all was changed: no lease, no waiter, no history, no message.
async fn assert_untouched(app: &bg_tests::TestBobby) {
    assert_eq!(app.count("SELECT count(*) FROM leases").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM waitlist").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM history").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM slack_outbox").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM environments WHERE preserved_until IS NOT NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn malformed_commands_get_helpful_replies_and_change_nothing() {
    let app = spawn_bobby().await;
    let ten_kb = "lock env-1 ".to_string() + &"ü".repeat(10 * 1024);
    let cases: Vec<(&str, &str)> = vec![
        ("", "Commands:"),
        ("   ", "Commands:"),
        ("frobnicate env-1", "I don't know the command `frobnicate`"),
        ("lokc env-1", "Did you mean `lock`?"),
        ("lock env-1 for 2x", "not a duration"),
        ("lock env-1 for 0m", "zero"),
        ("lock env-1 until 25:61", "HH:MM"),
        ("lock env4", "Did you mean `env-4`?"),
        ("lock production", "Environments: `env-1`, `env-2`, `env-3`, `env-4`"),
        ("unlock", "Usage: `/bobby unlock &lt;env&gt; [--force]`"),
        ("extend env-1", "how much longer"),
        ("preserve env-1 until tomorrow", "YYYY-MM-DD"),
        (ten_kb.as_str(), "too long"),
        ("lock \u{202E}1-vne", "There is no environment"),
        ("lock env-1\u{200B}", "There is no environment"),
        ("🔒 env-1", "I don't know the command"),
        ("lock ＥＮＶ-1", "There is no environment"),
        ("deploy env-1 main", "Deploying is not set up on this Bobby"),
        ("deploy env-1 ../../etc/passwd", "not a branch name"),
    ];
    for (text, expected) in cases {
        let r = app.command("U0ALICE", text).await;
        assert_eq!(r.status, 200, "{text:?}");
        assert!(r.ephemeral(), "{text:?} → {:?}", r.body);
        assert!(
            r.text().contains(expected),
            "{:?} → {}",
            text.chars().take(40).collect::<String>(),
            r.text()
        );
        assert!(r.text().len() < 3000, "replies stay short even for huge input");
    }
    assert_untouched(&app).await;
}

#[tokio::test]
async fn unsigned_forged_and_stale_requests_are_refused_with_401_and_change_nothing() {
    let app = spawn_bobby().await;
    let body = command_form("U0ALICE", "lock env-1", &app.slack.response_url("x"));
    let now = monday_unix();
    let good_sig = shared::slack::signature::sign(SIGNING_SECRET, now, body.as_bytes());
    let stale = now - 301;
    let stale_sig = shared::slack::signature::sign(SIGNING_SECRET, stale, body.as_bytes());
    let wrong_secret = shared::slack::signature::sign("not-the-secret", now, body.as_bytes());
    let tampered = body.replace("env-1", "env-2");
    let cases: Vec<(Option<String>, Option<String>, String)> = vec![
        (None, None, body.clone()),
        (Some(now.to_string()), None, body.clone()),
        (None, Some(good_sig.clone()), body.clone()),
        (Some(now.to_string()), Some(wrong_secret), body.clone()),
        (Some(stale.to_string()), Some(stale_sig), body.clone()),
        (Some(now.to_string()), Some(good_sig.clone()), tampered),
        (Some("yesterday".into()), Some(good_sig.clone()), body.clone()),
        (Some(now.to_string()), Some("v0=nothex".into()), body.clone()),
    ];
    for path in ["/slack/commands", "/slack/interactions"] {
        for (ts, sig, body) in &cases {
            let mut req = app.http.post(app.url(path)).body(body.clone());
            if let Some(ts) = ts {
                req = req.header("x-slack-request-timestamp", ts);
            }
            if let Some(sig) = sig {
                req = req.header("x-slack-signature", sig);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with ts={ts:?} sig={sig:?}");
        }
    }
    assert_untouched(&app).await;
    // And the same request, correctly signed, works.
    let r = app.command("U0ALICE", "lock env-1").await;
    assert!(r.in_channel());
}

fn monday_unix() -> i64 {
    bg_tests::monday_morning().timestamp()
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_cleanly() {
    let app = spawn_bobby().await;
    let huge = "text=".to_string() + &"a".repeat(200 * 1024);
    let r = app.signed_post("/slack/commands", huge).await;
    assert_eq!(r.status(), 413);
    let r = app.signed_post("/slack/commands", "this is not a form".into()).await;
    assert_eq!(r.status(), 400);
    let r = app
        .signed_post("/slack/interactions", "payload=%7Bnot-json".into())
        .await;
    assert_eq!(r.status(), 400);
    let body = command_form("not-a-user-id", "lock env-1", "http://x/y");
    let r = app.signed_post("/slack/commands", body).await;
    assert_eq!(r.status(), 400);
    let r = app
        .http
        .post(app.url("/api/v1/environments/env-1/deploy-check"))
        .bearer_auth(bg_tests::API_TOKEN)
        .body(vec![b'{'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (status, _) = app.get_json("/no/such/path").await;
    assert_eq!(status, 404);
    assert_untouched(&app).await;
}

#[tokio::test]
async fn a_thousand_concurrent_locks_have_exactly_one_winner() {
    let app = spawn_bobby_with(BobbyOptions {
        pool_size: 20,
        ..Default::default()
    })
    .await;
    let requests = (0..1000).map(|i| {
        let app = &app;
        async move {
            let user = format!("U0USER{i}");
            let answer = app.command(&user, "lock env-1 for 1h").await;
            // Past Slack's 3-second budget the answer comes later, through response_url or the
            // channel; take it from there.
            (user.clone(), app.settle(&user, answer).await)
        }
    });
    let answers = join_all(requests).await;
    let winners: Vec<&String> = answers.iter().filter(|(_, a)| a.in_channel()).map(|(u, _)| u).collect();
    assert_eq!(winners.len(), 1, "exactly one winner");
    let winner = winners[0];
    for (user, a) in &answers {
        assert_eq!(a.status, 200);
        if user != winner {
            assert!(a.ephemeral(), "{user}: {:?}", a.body);
            assert!(
                a.text().contains(&format!("locked by <@{winner}>")),
                "{user}: {}",
                a.text()
            );
        }
    }
    assert_eq!(app.environment("env-1").await["lease"]["holder"], winner.as_str());
    assert_eq!(
        app.count("SELECT count(*) FROM history WHERE action = 'locked'").await,
        1
    );
}

#[tokio::test]
async fn a_slack_outage_delays_announcements_but_loses_none() {
    let app = spawn_bobby().await;
    app.slack.set_outage(Some(Outage::Status(500)));
    app.command("U0ALICE", "lock env-1 for 2h").await;
    app.command("U0BOB", "wait env-1").await;
    let r = app.command("U0ADMIN1", "unlock env-1 --force").await;
    assert!(r.in_channel(), "the command itself does not depend on Slack being up");
    app.slack
        .wait_until("several refused deliveries", Duration::from_secs(20), |s| {
            s.refused_calls() >= 3
        })
        .await;
    assert!(app.slack.posts().is_empty());
    assert_eq!(
        app.count("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NULL")
            .await,
        3
    );

    app.slack.set_outage(Some(Outage::RateLimited { retry_after: 0 }));
    let before = app.slack.refused_calls();
    app.slack
        .wait_until("rate-limited deliveries", Duration::from_secs(20), |s| {
            s.refused_calls() > before
        })
        .await;

    app.slack.set_outage(None);
    app.slack.wait_for_post("U0ALICE", "force-unlocked").await;
    app.slack.wait_for_post("C0ENVS", "force-unlocked").await;
    app.slack.wait_for_post("U0BOB", "is yours now").await;
    app.slack
        .wait_until("the backlog to drain", Duration::from_secs(20), |s| {
            s.posts().len() == 3
        })
        .await;
    app.wait_for_count("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NULL", 0)
        .await;
}

#[tokio::test]
async fn leases_waitlists_and_undelivered_messages_survive_a_restart() {
    let app = spawn_bobby().await;
    app.slack.set_outage(Some(Outage::Status(503)));
    app.command("U0ALICE", "lock env-1 for 2h").await;
    app.command("U0BOB", "wait env-1").await;
    app.command("U0CAROL", "wait env-1").await;
    app.command("U0ADMIN1", "unlock env-1 --force").await;
    app.command("U0ALICE", "preserve env-2").await;
    app.command("U0DAVE", "lock env-2 for 3h").await;
    app.slack
        .wait_until("a refused delivery", Duration::from_secs(20), |s| {
            s.refused_calls() >= 1
        })
        .await;

    let app = app.restart().await;
    let env1 = app.environment("env-1").await;
    assert_eq!(env1["lease"]["holder"], "U0BOB");
    assert_eq!(env1["waitlist"], serde_json::json!(["U0CAROL"]));
    assert_eq!(app.environment("env-2").await["lease"]["holder"], "U0DAVE");
    app.slack.set_outage(None);
    app.slack.wait_for_post("U0BOB", "is yours now").await;
    app.slack.wait_for_post("U0ALICE", "force-unlocked").await;

    // Expiry still works after the restart: the worker re-reads its deadlines from Postgres.
    app.clock.advance(chrono::Duration::hours(3));
    app.slack.wait_for_post("U0DAVE", "expired").await;
    // Bob got env-1 until the evening's Nightly (19:00 UTC); then it is Carol's turn.
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-23T19:00:00Z")
            .unwrap()
            .into(),
    );
    app.slack.wait_for_post("U0BOB", "expired").await;
    app.slack.wait_for_post("U0CAROL", "is yours now").await;
}

#[tokio::test]
async fn buttons_act_as_the_person_who_pressed_them() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    // Bob presses "Join waitlist" on the refusal: he is told privately, through response_url.
    assert_eq!(app.press("U0BOB", "wait", "env-1", "bob-wait").await, 200);
    app.slack
        .wait_until("bob's private answer", Duration::from_secs(20), |s| {
            s.responses()
                .iter()
                .any(|(id, body)| id == "bob-wait" && body.to_string().contains("position 1"))
        })
        .await;
    assert_eq!(app.environment("env-1").await["waitlist"], serde_json::json!(["U0BOB"]));
    // Bob presses "Unlock" on Alice's message: refused, privately.
    app.press("U0BOB", "unlock", "env-1", "bob-unlock").await;
    app.slack
        .wait_until("bob's refusal", Duration::from_secs(20), |s| {
            s.responses()
                .iter()
                .any(|(id, body)| id == "bob-unlock" && body.to_string().contains("not you"))
        })
        .await;
    // Alice presses "Extend 1h".
    app.press("U0ALICE", "extend_1h", "env-1", "alice-extend").await;
    app.slack
        .wait_until("alice's extension", Duration::from_secs(20), |s| {
            s.responses().iter().any(|(id, _)| id == "alice-extend")
        })
        .await;
    assert_eq!(
        app.environment("env-1").await["lease"]["expires_at"],
        "2026-11-23T12:00:00Z",
        "2h + 1h from 09:00"
    );
    // Alice presses "Unlock": the success goes to the channel, and Bob gets it.
    app.press("U0ALICE", "unlock", "env-1", "alice-unlock").await;
    app.slack.wait_for_post("C0DEV", "unlocked *env-1*").await;
    app.slack.wait_for_post("U0BOB", "is yours now").await;
    // An unknown button changes nothing.
    app.press("U0ALICE", "self_destruct", "env-1", "odd").await;
    app.slack
        .wait_until("the answer to an unknown button", Duration::from_secs(20), |s| {
            s.responses()
                .iter()
                .any(|(id, b)| id == "odd" && b.to_string().contains("not one I know"))
        })
        .await;
    assert_eq!(app.environment("env-1").await["lease"]["holder"], "U0BOB");
}

#[tokio::test]
async fn without_a_slack_token_messages_are_logged_not_lost() {
    let app = spawn_bobby_with(BobbyOptions {
        slack_token: false,
        ..Default::default()
    })
    .await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    app.command("U0ADMIN1", "unlock env-1 --force").await;
    // The outbox worker logs the messages and marks them handled.
    app.wait_for_count("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NOT NULL", 2)
        .await;
    assert!(app.slack.posts().is_empty(), "nothing was sent to Slack");
    let (status, body) = {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(body.contains("no SLACK_BOT_TOKEN"), "{body}");
}

#[tokio::test]
async fn two_replicas_share_the_work_without_doing_it_twice() {
    let first = spawn_bobby().await;
    let second = first.another_replica().await;
    // Commands work on either replica, against the same state.
    first.command("U0ALICE", "lock env-1 for 1h").await;
    let r = second.command("U0BOB", "lock env-1").await;
    assert!(r.text().contains("locked by <@U0ALICE>"), "{}", r.text());
    second.command("U0BOB", "wait env-1").await;

    // One reminder, one release, one hand-over: the expiry worker and the outbox run on one
    // replica only.
    first.clock.advance(chrono::Duration::minutes(31));
    first.slack.wait_for_post("U0ALICE", "expires").await;
    first.clock.advance(chrono::Duration::minutes(30));
    first.slack.wait_for_post("U0BOB", "is yours now").await;
    first.slack.wait_for_post("C0ENVS", "expired").await;
    first
        .wait_for_count("SELECT count(*) FROM slack_outbox WHERE delivered_at IS NULL", 0)
        .await;
    assert_eq!(first.slack.posts_to("U0ALICE").len(), 2, "{:#?}", first.slack.posts());
    assert_eq!(first.slack.posts_to("U0BOB").len(), 1);
    assert_eq!(first.slack.posts_to("C0ENVS").len(), 1);
    assert_eq!(
        first
            .count("SELECT count(*) FROM history WHERE action = 'expired'")
            .await,
        1
    );

    // When the leader goes away, the other replica takes over.
    first.stop().await;
    second.command("U0CAROL", "wait env-1").await;
    second.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-23T19:30:00Z")
            .unwrap()
            .into(),
    );
    second.slack.wait_for_post("U0CAROL", "is yours now").await;
}
