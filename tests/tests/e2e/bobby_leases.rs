//! Bobby's lease commands end to end: real Bobby, real Postgres, fake Slack.

use std::time::Duration;

use bg_tests::{monday_morning, spawn_bobby};
use chrono::{DateTime, Utc};
use serde_json::Value;

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn lock_refuse_and_unlock() {
    let app = spawn_bobby().await;

    let r = app.command("U0ALICE", "lock env-1 for 2h testing payments").await;
    assert_eq!(r.status, 200);
    assert!(r.in_channel(), "{:?}", r.body);
    assert!(r.text().contains("<@U0ALICE> locked *env-1*"), "{}", r.text());
    assert!(r.text().contains("testing payments"));
    assert!(
        r.text().contains("<!date^"),
        "times use Slack date formatting: {}",
        r.text()
    );
    assert_eq!(r.action_ids(), ["unlock", "extend_1h"]);

    let env = app.environment("env-1").await;
    assert_eq!(env["lease"]["holder"], "U0ALICE");
    assert_eq!(env["lease"]["reason"], "testing payments");
    assert_eq!(time(&env["lease"]["since"]), monday_morning());
    assert_eq!(
        time(&env["lease"]["expires_at"]),
        monday_morning() + chrono::Duration::hours(2)
    );

    let r = app.command("U0BOB", "lock env-1").await;
    assert!(r.ephemeral());
    let t = r.text();
    assert!(
        t.contains("locked by <@U0ALICE>") && t.contains("testing payments") && t.contains("/bobby wait env-1"),
        "{t}"
    );
    assert_eq!(r.action_ids(), ["wait"]);

    let r = app.command("U0ALICE", "lock env-1").await;
    assert!(r.ephemeral() && r.text().contains("You already hold"), "{}", r.text());

    let r = app.command("U0BOB", "unlock env-1").await;
    assert!(
        r.ephemeral() && r.text().contains("held by <@U0ALICE>, not you"),
        "{}",
        r.text()
    );
    assert_eq!(app.environment("env-1").await["lease"]["holder"], "U0ALICE");

    let r = app.command("U0ALICE", "unlock env-1").await;
    assert!(
        r.in_channel() && r.text().contains("<@U0ALICE> unlocked *env-1*"),
        "{}",
        r.text()
    );
    assert!(app.environment("env-1").await["lease"].is_null());

    let r = app.command("U0ALICE", "unlock env-1").await;
    assert!(r.ephemeral() && r.text().contains("not locked"), "{}", r.text());
}

#[tokio::test]
async fn lock_any_takes_free_ready_environments_in_order() {
    let app = spawn_bobby().await;
    for (i, user) in ["U0A", "U0B", "U0C", "U0D"].iter().enumerate() {
        let r = app.command(user, "lock any").await;
        assert!(r.in_channel(), "{}", r.text());
        assert!(r.text().contains(&format!("*env-{}*", i + 1)), "{}", r.text());
    }
    let r = app.command("U0E", "lock any").await;
    assert!(
        r.ephemeral() && r.text().contains("No environment is free"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn lease_lengths_follow_for_until_default_and_max_lease() {
    let app = spawn_bobby().await;
    // Default: until the next Nightly delete, 20:00 in Berlin = 19:00 UTC in November.
    app.command("U0A", "lock env-1").await;
    assert_eq!(
        time(&app.environment("env-1").await["lease"]["expires_at"]).to_rfc3339(),
        "2026-11-23T19:00:00+00:00"
    );
    // until HH:MM is local time.
    app.command("U0B", "lock env-2 until 17:30").await;
    assert_eq!(
        time(&app.environment("env-2").await["lease"]["expires_at"]).to_rfc3339(),
        "2026-11-23T16:30:00+00:00"
    );
    // Earlier than now: tomorrow.
    app.command("U0C", "lock env-3 until 08:00").await;
    assert_eq!(
        time(&app.environment("env-3").await["lease"]["expires_at"]).to_rfc3339(),
        "2026-11-24T07:00:00+00:00"
    );
    // Beyond max_lease (3d) is refused and changes nothing.
    let r = app.command("U0D", "lock env-4 for 4d").await;
    assert!(
        r.ephemeral() && r.text().contains("longer than the longest lease (3d)"),
        "{}",
        r.text()
    );
    assert!(app.environment("env-4").await["lease"].is_null());
}

#[tokio::test]
async fn extend_moves_the_expiry_within_max_lease() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    let r = app.command("U0ALICE", "extend env-1 1h30m").await;
    assert!(r.text().contains("yours until"), "{}", r.text());
    assert_eq!(
        time(&app.environment("env-1").await["lease"]["expires_at"]),
        monday_morning() + chrono::Duration::minutes(210)
    );
    let r = app.command("U0ALICE", "extend env-1 5d").await;
    assert!(r.text().contains("as far as a lease goes"), "{}", r.text());
    assert_eq!(
        time(&app.environment("env-1").await["lease"]["expires_at"]),
        monday_morning() + chrono::Duration::days(3)
    );
    let r = app.command("U0ALICE", "extend env-1 1h").await;
    assert!(r.text().contains("already held until"), "{}", r.text());
    let r = app.command("U0BOB", "extend env-1 1h").await;
    assert!(r.text().contains("not you"), "{}", r.text());
    let r = app.command("U0BOB", "extend env-2 1h").await;
    assert!(r.text().contains("not locked"), "{}", r.text());
}

#[tokio::test]
async fn waitlist_hands_over_on_unlock_with_a_dm() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    let r = app.command("U0BOB", "wait env-1").await;
    assert!(r.text().contains("position 1"), "{}", r.text());
    let r = app.command("U0CAROL", "wait env-1").await;
    assert!(r.text().contains("position 2"), "{}", r.text());
    let r = app.command("U0CAROL", "wait env-1").await;
    assert!(
        r.text().contains("already waiting") && r.text().contains("position 2"),
        "{}",
        r.text()
    );
    assert_eq!(
        app.environment("env-1").await["waitlist"],
        serde_json::json!(["U0BOB", "U0CAROL"])
    );
    let r = app.command("U0ALICE", "wait env-1").await;
    assert!(r.text().contains("You hold"), "{}", r.text());
    let r = app.command("U0BOB", "wait env-2").await;
    assert!(r.text().contains("is free, no need to wait"), "{}", r.text());

    let r = app.command("U0ALICE", "unlock env-1").await;
    assert!(r.text().contains("goes to <@U0BOB>"), "{}", r.text());
    let env = app.environment("env-1").await;
    assert_eq!(env["lease"]["holder"], "U0BOB");
    assert_eq!(env["waitlist"], serde_json::json!(["U0CAROL"]));
    let dm = app.slack.wait_for_post("U0BOB", "is yours now").await;
    assert!(dm.block_text().contains("*env-1*"));

    let r = app.command("U0CAROL", "unwait env-1").await;
    assert!(r.text().contains("left the waitlist"), "{}", r.text());
    let r = app.command("U0CAROL", "unwait env-1").await;
    assert!(r.text().contains("were not waiting"), "{}", r.text());
    assert_eq!(app.environment("env-1").await["waitlist"], serde_json::json!([]));
}

#[tokio::test]
async fn force_unlock_is_for_admins_audited_and_told() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h demo").await;
    let r = app.command("U0BOB", "unlock env-1 --force").await;
    assert!(r.ephemeral() && r.text().contains("Only admins"), "{}", r.text());
    let r = app.command("U0ADMIN1", "unlock env-1").await;
    assert!(
        r.text().contains("--force"),
        "an admin is told about --force: {}",
        r.text()
    );
    assert_eq!(app.environment("env-1").await["lease"]["holder"], "U0ALICE");

    let r = app.command("U0ADMIN1", "unlock env-1 --force").await;
    assert!(r.in_channel() && r.text().contains("force-unlocked"), "{}", r.text());
    assert!(app.environment("env-1").await["lease"].is_null());
    app.slack.wait_for_post("U0ALICE", "force-unlocked *env-1*").await;
    app.slack.wait_for_post("C0ENVS", "force-unlocked *env-1*").await;
    let r = app.command("U0BOB", "history env-1").await;
    assert!(
        r.text().contains("<@U0ADMIN1> force-unlocked was held by U0ALICE"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn expiry_reminds_then_releases_and_hands_over() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    app.command("U0BOB", "wait env-1").await;

    // 31 minutes before expiry: nothing yet. 29 minutes before: the reminder.
    app.clock.advance(chrono::Duration::minutes(89));
    app.clock.advance(chrono::Duration::minutes(2));
    let dm = app.slack.wait_for_post("U0ALICE", "expires").await;
    assert!(dm.block_text().contains("/bobby extend env-1 1h"));
    assert_eq!(app.slack.posts_to("U0ALICE").len(), 1, "one reminder only");

    app.clock.advance(chrono::Duration::minutes(29));
    app.slack.wait_for_post("U0ALICE", "expired").await;
    app.slack.wait_for_post("C0ENVS", "lease of <@U0ALICE> expired").await;
    app.slack.wait_for_post("U0BOB", "is yours now").await;
    let env = app.environment("env-1").await;
    assert_eq!(env["lease"]["holder"], "U0BOB");
    assert_eq!(
        app.slack.posts_to("U0ALICE").len(),
        2,
        "reminder and release, nothing twice"
    );
}

#[tokio::test]
async fn extending_after_a_reminder_rearms_it() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 1h").await;
    app.clock.advance(chrono::Duration::minutes(31));
    app.slack.wait_for_post("U0ALICE", "expires").await;
    app.command("U0ALICE", "extend env-1 1h").await;
    app.clock.advance(chrono::Duration::minutes(60));
    app.slack
        .wait_until("a second reminder", Duration::from_secs(20), |s| {
            s.posts_to("U0ALICE").len() == 2
        })
        .await;
    assert_eq!(
        app.environment("env-1").await["lease"]["holder"],
        "U0ALICE",
        "not expired yet"
    );
}

#[tokio::test]
async fn preserve_needs_the_lease_and_extends_it_through_the_night() {
    let app = spawn_bobby().await;
    let r = app.command("U0BOB", "preserve env-1").await;
    assert!(r.text().contains("hold it first"), "{}", r.text());
    app.command("U0ALICE", "lock env-1 for 2h").await;
    let r = app.command("U0BOB", "preserve env-1").await;
    assert!(r.text().contains("Only the holder"), "{}", r.text());

    let r = app.command("U0ALICE", "preserve env-1").await;
    assert!(r.in_channel() && r.text().contains("preserved *env-1*"), "{}", r.text());
    let env = app.environment("env-1").await;
    // Through the coming night: until tomorrow's 06:30 Berlin (05:30 UTC).
    assert_eq!(time(&env["preserved_until"]).to_rfc3339(), "2026-11-24T05:30:00+00:00");
    assert_eq!(
        time(&env["lease"]["expires_at"]).to_rfc3339(),
        "2026-11-24T05:30:00+00:00"
    );

    let r = app.command("U0ALICE", "preserve env-1 until 2026-11-24").await;
    assert!(r.in_channel(), "{}", r.text());
    assert_eq!(
        time(&app.environment("env-1").await["preserved_until"]).to_rfc3339(),
        "2026-11-24T23:00:00+00:00"
    );
    let r = app.command("U0ALICE", "preserve env-1 until 2026-11-20").await;
    assert!(r.text().contains("passed"), "{}", r.text());
    let r = app.command("U0ALICE", "preserve env-1 for 10d").await;
    assert!(r.text().contains("further away than the longest lease"), "{}", r.text());
    // Admins may preserve for longer, and without holding it.
    let r = app.command("U0ADMIN1", "preserve env-2 for 10d").await;
    assert!(r.in_channel(), "{}", r.text());

    let r = app.command("U0BOB", "unpreserve env-1").await;
    assert!(r.text().contains("Only the holder"), "{}", r.text());
    let r = app.command("U0ALICE", "unpreserve env-1").await;
    assert!(r.text().contains("no longer preserved"), "{}", r.text());
    assert!(app.environment("env-1").await["preserved_until"].is_null());
    let r = app.command("U0ALICE", "unpreserve env-1").await;
    assert!(r.text().contains("is not preserved"), "{}", r.text());
}

#[tokio::test]
async fn status_list_and_history_show_everything() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-2 for 2h <b>bold</b> & <!channel>")
        .await;
    app.command("U0BOB", "wait env-2").await;

    let r = app.command("U0BOB", "list").await;
    let t = r.text();
    assert!(r.ephemeral());
    assert!(t.contains("3 of 4 free"), "{t}");
    assert!(t.contains("*env-2* · ready · :lock: <@U0ALICE>"), "{t}");
    assert!(t.contains("waiting: <@U0BOB>"), "{t}");
    // Reasons are escaped: no channel-wide pings, no markup smuggled in.
    assert!(t.contains("&lt;!channel&gt;") && !t.contains("<!channel>"), "{t}");
    assert_eq!(app.command("U0BOB", "status").await.text(), t);

    let r = app.command("U0BOB", "status env-2").await;
    assert!(r.text().contains("Held since"), "{}", r.text());
    let r = app.command("U0BOB", "status env-1").await;
    assert!(r.text().contains("https://env-1.dev.example.com"), "{}", r.text());

    let r = app.command("U0BOB", "history env-2").await;
    let t = r.text();
    let joined = t.find("joined-waitlist").expect("waitlist event");
    let locked = t.find("locked").expect("lock event");
    assert!(joined < locked, "newest first: {t}");
    let r = app.command("U0BOB", "history env-3").await;
    assert!(r.text().contains("Nothing has happened"), "{}", r.text());

    let (status, body) = app.get_json("/api/v1/environments").await;
    assert_eq!(status, 200);
    let envs = body["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 4);
    let e2 = &envs[1];
    for key in [
        "name",
        "url",
        "state",
        "lease",
        "preserved_until",
        "waitlist",
        "last_nightly",
        "fault",
    ] {
        assert!(e2.get(key).is_some(), "Environment has {key}: {e2}");
    }
    assert_eq!(e2["state"], "ready");
    assert_eq!(e2["lease"]["holder"], "U0ALICE");
    assert_eq!(
        e2["lease"]["reason"], "<b>bold</b> & <!channel>",
        "the API returns the reason as typed"
    );
    assert!(
        e2["lease"]["expires_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC: {e2}"
    );

    let (status, body) = app.get_json("/api/v1/environments/env-9").await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("env-1, env-2, env-3, env-4"),
        "{body}"
    );
}

#[tokio::test]
async fn history_is_append_only_in_the_database() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1").await;
    let update = sqlx::query("UPDATE history SET actor = 'mallory'")
        .execute(&app.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM history").execute(&app.pool).await;
    assert!(delete.is_err());
    assert_eq!(
        app.count("SELECT count(*) FROM history WHERE actor = 'U0ALICE'").await,
        1
    );
}

#[tokio::test]
async fn one_lease_per_environment_is_enforced_by_the_database() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1").await;
    let second = sqlx::query(
        "INSERT INTO leases (environment, holder, since, expires_at) VALUES ('env-1', 'U0BOB', now(), now() + interval '1h')",
    )
    .execute(&app.pool)
    .await;
    assert!(second.is_err(), "a second live lease must be impossible");
}
