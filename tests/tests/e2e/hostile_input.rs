//! Hostile input against the running bots (issue 7, SPEC §8): oversized bodies on every POST
//! endpoint, replayed and forged Slack requests on both bots, forged GitHub deliveries, and markup
//! smuggled in through lock reasons and pull-request titles.
//!
//! What tests/tests/bobby_safety.rs and tests/tests/gandalf_webhooks.rs already prove is not
//! repeated here (Bobby's oversized slash commands and deploy checks, Bobby's stale and wrong-secret
//! Slack requests, GitHub deliveries without or with a wrong-secret signature); this file covers the
//! rest: Gandalf's Slack endpoints, Bobby's interactions, more ways to forge a signature, and
//! escaping of hostile text everywhere it is shown — Slack mrkdwn (both bots), the control center's
//! HTML and `/cctray.xml`. Every check is on the real bots, a real Postgres and the loopback fakes.

use bg_tests::{SIGNING_SECRET, TestBobby, TestGandalf, WEBHOOK_SECRET, command_form, spawn_bobby, spawn_gandalf};
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::slack::mrkdwn;
use shared::slack::signature::sign;

/// Everything Slack or a browser would treat as markup, in one lock reason or PR title: a
/// channel-wide ping, a mention, a disguised link, mrkdwn formatting, a bare `&`, `<` and `>`, and
/// HTML that breaks out of text and out of an attribute.
const HOSTILE: &str = "<!channel> <@U123> <https://evil.example|click> *bold* & < > \
                       <script>alert(1)</script> \"><img src=x onerror=alert(2)>";

/// The text as askama writes it into HTML (and XML): `&`, `<`, `>`, `"` and `'` as entities.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Asserts that no `<…>` construct in a Slack message — the only way to ping, mention or link in
/// mrkdwn — comes from [`HOSTILE`].
fn assert_no_live_mrkdwn(what: &str, text: &str) {
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>').unwrap_or(after.len());
        let construct = &after[..end];
        for bad in ["!channel", "@U123", "evil", "script", "img"] {
            assert!(!construct.contains(bad), "{what}: live markup <{construct}> in {text}");
        }
        rest = &after[end.min(after.len())..];
    }
}

/// Every string in a Slack answer (block texts, the notification `text`, button labels…): all of
/// them are rendered by Slack.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// Asserts that a Slack answer shows [`HOSTILE`] as text: some text in it has it escaped the way
/// Slack requires (`&amp;`, `&lt;`, `&gt;`), and no text anywhere in it makes live markup of it.
fn assert_inert_answer(what: &str, answer: &Value) {
    let all = strings(answer);
    assert!(
        all.iter().any(|s| s.contains(&mrkdwn::escape(HOSTILE))),
        "{what}: the hostile text is not there, escaped: {answer}"
    );
    for s in all {
        assert_no_live_mrkdwn(what, s);
    }
}

/// Asserts that an HTML page shows [`HOSTILE`] as text and none of its markup got through.
fn assert_inert_html(what: &str, html: &str) {
    assert!(
        html.contains(&html_escaped(HOSTILE)),
        "{what}: the hostile text is not there, escaped: {html}"
    );
    for raw in ["<script", "<img", "\"><img", "<!channel>", "<@U123>", "<https://evil"] {
        assert!(!html.contains(raw), "{what}: {raw} got through unescaped: {html}");
    }
}

/// Asserts that a cctray feed is still well-formed XML and carries none of the hostile markup.
fn assert_inert_cctray(what: &str, xml: &str) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{what}: not XML ({e}): {xml}"));
    assert_eq!(doc.root_element().tag_name().name(), "Projects", "{what}: {xml}");
    for node in doc.descendants() {
        for a in node.attributes() {
            assert!(
                !a.value().contains('<'),
                "{what}: markup in {}={:?}",
                a.name(),
                a.value()
            );
        }
    }
    for raw in ["<script", "<img", "<!channel>", "<https://evil"] {
        assert!(!xml.contains(raw), "{what}: {raw} in {xml}");
    }
}

async fn get_text(http: &reqwest::Client, url: String) -> String {
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.unwrap()
}

/// A POST with exactly the Slack headers given (none, some or all), as a forger would send it.
async fn slack_post(http: &reqwest::Client, url: &str, ts: Option<&str>, sig: Option<&str>, body: &str) -> u16 {
    let mut req = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(ts) = ts {
        req = req.header("x-slack-request-timestamp", ts);
    }
    if let Some(sig) = sig {
        req = req.header("x-slack-signature", sig);
    }
    req.send().await.expect("request reaches the bot").status().as_u16()
}

/// Every forged or replayed variant of a Slack request for `body` at time `now`; each must get a 401.
fn forgeries(body: &str, now: i64) -> Vec<(&'static str, Option<String>, Option<String>, String)> {
    let good = sign(SIGNING_SECRET, now, body.as_bytes());
    let replayed_at = now - 5 * 60 - 1;
    let other_body = format!("{body}&text=unlock+env-1");
    vec![
        ("no headers", None, None, body.to_string()),
        ("no signature", Some(now.to_string()), None, body.to_string()),
        ("no timestamp", None, Some(good.clone()), body.to_string()),
        (
            "wrong secret",
            Some(now.to_string()),
            Some(sign("not-the-secret", now, body.as_bytes())),
            body.to_string(),
        ),
        (
            "wrong version prefix",
            Some(now.to_string()),
            Some(good.replacen("v0=", "v1=", 1)),
            body.to_string(),
        ),
        (
            "bare hex, no version",
            Some(now.to_string()),
            Some(good.trim_start_matches("v0=").to_string()),
            body.to_string(),
        ),
        (
            "signature over a different body",
            Some(now.to_string()),
            Some(sign(SIGNING_SECRET, now, other_body.as_bytes())),
            body.to_string(),
        ),
        (
            "body swapped under a good signature",
            Some(now.to_string()),
            Some(good.clone()),
            other_body,
        ),
        (
            "replayed: properly signed, 5 minutes and 1 second old",
            Some(replayed_at.to_string()),
            Some(sign(SIGNING_SECRET, replayed_at, body.as_bytes())),
            body.to_string(),
        ),
        (
            "from the future: properly signed, 5 minutes and 1 second ahead",
            Some((now + 301).to_string()),
            Some(sign(SIGNING_SECRET, now + 301, body.as_bytes())),
            body.to_string(),
        ),
        // Found with the slack_signature fuzz target: `(now - ts).abs()` overflowed here.
        (
            "timestamp i64::MIN, properly signed",
            Some(i64::MIN.to_string()),
            Some(sign(SIGNING_SECRET, i64::MIN, body.as_bytes())),
            body.to_string(),
        ),
        (
            "timestamp -i64::MAX, properly signed",
            Some((-i64::MAX).to_string()),
            Some(sign(SIGNING_SECRET, -i64::MAX, body.as_bytes())),
            body.to_string(),
        ),
    ]
}

// --- Bobby ---------------------------------------------------------------------------------

/// Nothing in Bobby's database changed.
async fn bobby_untouched(app: &TestBobby) {
    for sql in [
        "SELECT count(*) FROM leases",
        "SELECT count(*) FROM waitlist",
        "SELECT count(*) FROM history",
        "SELECT count(*) FROM slack_outbox",
        "SELECT count(*) FROM environments WHERE preserved_until IS NOT NULL",
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap();
        assert_eq!(n, 0, "{sql}");
    }
}

#[tokio::test]
async fn bobby_refuses_oversized_interactions_and_unauthenticated_oversized_deploy_checks() {
    let app = spawn_bobby().await;
    // A correctly signed interaction of 200 KB: refused by size, before anything parses it.
    let huge = format!("payload={}", "a".repeat(200 * 1024));
    let r = app.signed_post("/slack/interactions", huge).await;
    assert_eq!(r.status(), 413);
    // Oversized and unauthenticated at once: a clean 4xx either way.
    let r = app
        .http
        .post(app.url("/api/v1/environments/env-1/deploy-check"))
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert!([401, 413].contains(&r.status().as_u16()), "{}", r.status());
    bobby_untouched(&app).await;
}

#[tokio::test]
async fn bobby_refuses_every_forged_or_replayed_slack_request_with_401() {
    let app = spawn_bobby().await;
    let now = app.clock.now().timestamp();
    let command = command_form("U0ALICE", "lock env-1 for 2h", &app.slack.response_url("x"));
    let interaction = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(
            json!({
                "type": "block_actions",
                "user": { "id": "U0ALICE" },
                "actions": [{ "action_id": "wait", "value": "env-1" }],
                "response_url": app.slack.response_url("y"),
            })
            .to_string()
            .as_bytes()
        )
        .collect::<String>()
    );
    for (path, body) in [("/slack/commands", &command), ("/slack/interactions", &interaction)] {
        for (what, ts, sig, body) in forgeries(body, now) {
            let status = slack_post(&app.http, &app.url(path), ts.as_deref(), sig.as_deref(), &body).await;
            assert_eq!(status, 401, "{path}: {what}");
        }
    }
    bobby_untouched(&app).await;
    // The same request, properly signed and on time, is taken: the refusals were the forgery.
    assert!(app.command("U0ALICE", "lock env-1 for 2h").await.in_channel());
}

#[tokio::test]
async fn a_hostile_lock_reason_is_shown_as_text_in_slack_the_control_center_and_cctray() {
    let app = spawn_bobby().await;
    let lock = app.command("U0ALICE", &format!("lock env-1 for 2h {HOSTILE}")).await;
    assert!(lock.in_channel(), "{:?}", lock.body);
    // The whole answer, not just its blocks: the notification text (`text`) is rendered too.
    assert_inert_answer("the lock announcement", &lock.body);
    let lease = app.environment("env-1").await;
    assert_eq!(
        lease["lease"]["reason"], HOSTILE,
        "stored as typed, escaped only when shown"
    );

    // Where else the reason is shown: someone else's attempt, status, and the history.
    let held = app.command("U0BOB", "lock env-1").await;
    assert!(held.ephemeral());
    assert_inert_answer("the 'held by' answer", &held.body);
    let status = app.command("U0BOB", "status env-1").await;
    assert_inert_answer("status env-1", &status.body);
    let list = app.command("U0BOB", "list").await;
    for t in strings(&list.body) {
        assert_no_live_mrkdwn("list", t);
    }

    // Everything Bobby queued for the channel, as it will be posted.
    let outbox: Vec<String> = sqlx::query_scalar("SELECT text FROM slack_outbox")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for text in &outbox {
        assert_no_live_mrkdwn("an outbox message", text);
    }

    // The control center and the build-monitor feed.
    let html = get_text(&app.http, app.url("/")).await;
    assert_inert_html("Bobby's control center", &html);
    let xml = get_text(&app.http, app.url("/cctray.xml")).await;
    assert_inert_cctray("Bobby's cctray.xml", &xml);
}

// --- Gandalf -------------------------------------------------------------------------------

fn gandalf_url(g: &TestGandalf, path: &str) -> String {
    format!("http://{}{path}", g.addr)
}

/// Nothing in Gandalf's queue, deliveries or outbox.
async fn gandalf_untouched(g: &TestGandalf) {
    for sql in [
        "SELECT count(*) FROM queue_items",
        "SELECT count(*) FROM github_deliveries",
        "SELECT count(*) FROM slack_outbox",
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&g.pool).await.unwrap();
        assert_eq!(n, 0, "{sql}");
    }
}

/// `/gandalf <text>` over HTTP, signed as Slack signs it: the status and the JSON answer.
async fn gandalf_slash(g: &TestGandalf, user: &str, text: &str) -> (u16, Value) {
    let now = g.clock.now().timestamp();
    let body = command_form(user, text, "http://127.0.0.1:9/response");
    let r = g
        .http
        .post(gandalf_url(g, "/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now.to_string())
        .header("x-slack-signature", sign(SIGNING_SECRET, now, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn comment_payload(number: u64, body: &str) -> Value {
    json!({
        "action": "created",
        "issue": { "number": number, "pull_request": { "url": "x" } },
        "comment": { "body": body, "user": { "login": "alice", "type": "User" } },
        "repository": { "full_name": "acme/platform" },
    })
}

#[tokio::test]
async fn gandalf_refuses_oversized_bodies_on_every_post_endpoint() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let now = g.clock.now().timestamp();
    // Slack endpoints, correctly signed: refused by size before the signature is even useful.
    for path in ["/slack/commands", "/slack/interactions"] {
        let huge = format!("text={}", "a".repeat(200 * 1024));
        let sig = sign(SIGNING_SECRET, now, huge.as_bytes());
        let status = slack_post(
            &g.http,
            &gandalf_url(&g, path),
            Some(&now.to_string()),
            Some(&sig),
            &huge,
        )
        .await;
        assert_eq!(status, 413, "{path}");
    }
    // A webhook over the 2 MB limit, correctly signed, that would otherwise queue #7.
    let mut payload = comment_payload(7, "@gandalf merge");
    payload["padding"] = json!("x".repeat(gandalf::webhook::MAX_WEBHOOK_BODY));
    assert_eq!(g.deliver("issue_comment", "huge-1", &payload).await, 413);
    gandalf_untouched(&g).await;
    assert!(g.github.comments("acme/platform", 7).is_empty());
}

#[tokio::test]
async fn gandalf_refuses_every_forged_or_replayed_slack_request_with_401() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let now = g.clock.now().timestamp();
    let body = command_form("U0ALICE", "merge #7", "http://127.0.0.1:9/response");
    for path in ["/slack/commands", "/slack/interactions"] {
        for (what, ts, sig, body) in forgeries(&body, now) {
            let status = slack_post(&g.http, &gandalf_url(&g, path), ts.as_deref(), sig.as_deref(), &body).await;
            assert_eq!(status, 401, "{path}: {what}");
        }
    }
    gandalf_untouched(&g).await;
    // The same command, properly signed, queues the pull request.
    let (status, answer) = gandalf_slash(&g, "U0ALICE", "merge #7").await;
    assert_eq!(status, 200, "{answer}");
    g.wait_for("SELECT count(*) FROM queue_items", 1i64).await;
}

#[tokio::test]
async fn forged_github_deliveries_are_refused_before_anything_is_stored() {
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let body = comment_payload(7, "@gandalf merge").to_string();
    let other = comment_payload(7, "@gandalf merge p=high").to_string();
    let good = gandalf::webhook::sign(WEBHOOK_SECRET, body.as_bytes());
    let hex = good.trim_start_matches("sha256=").to_string();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "signature over a different body",
            gandalf::webhook::sign(WEBHOOK_SECRET, other.as_bytes()),
            body.clone(),
        ),
        ("body swapped under a good signature", good.clone(), other.clone()),
        ("sha1 prefix", format!("sha1={hex}"), body.clone()),
        ("Slack's prefix", format!("v0={hex}"), body.clone()),
        ("bare hex", hex.clone(), body.clone()),
        ("empty signature", "sha256=".into(), body.clone()),
        ("truncated signature", good[..good.len() - 2].to_string(), body.clone()),
        (
            "signature of the empty body",
            gandalf::webhook::sign(WEBHOOK_SECRET, b""),
            body.clone(),
        ),
    ];
    for (what, sig, body) in cases {
        let r = g
            .http
            .post(gandalf_url(&g, "/github/webhook"))
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", format!("forged-{what}"))
            .header("x-hub-signature-256", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
    }
    gandalf_untouched(&g).await;
    // The genuine delivery is taken (and queues #7), so the refusals were about the forgery.
    assert_eq!(
        g.deliver("issue_comment", "genuine-1", &comment_payload(7, "@gandalf merge"))
            .await,
        202
    );
    g.wait_for("SELECT count(*) FROM queue_items", 1i64).await;
}

#[tokio::test]
async fn a_signed_delivery_with_nul_characters_is_stored_and_acted_on_not_a_500() {
    // JSON may carry `\u0000`, which Postgres's jsonb refuses. GitHub signs whatever its users
    // typed, so such a payload is authentic: it used to be answered 500 (and retried by GitHub
    // forever) and the comment's commands were lost. Now the NULs are replaced before storing.
    let g = spawn_gandalf().await;
    g.ready_pull(7, "a.txt");
    let mut payload = comment_payload(7, "before\u{0}after\n@gandalf merge");
    payload["comment"]["\u{0}key"] = json!(["\u{0}"]);
    assert_eq!(g.deliver("issue_comment", "nul-1", &payload).await, 202);
    g.wait_for("SELECT count(*) FROM queue_items", 1i64).await;
    let stored: String = sqlx::query_scalar("SELECT payload->'comment'->>'body' FROM github_deliveries")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert_eq!(stored, "before\u{FFFD}after\n@gandalf merge");
}

#[tokio::test]
async fn nul_characters_in_slack_commands_and_the_deploy_check_are_answered_cleanly() {
    let app = spawn_bobby().await;
    for text in [
        "lock env-1\u{0}",
        "status \u{0}",
        "history env\u{0}-1",
        "wait \u{0}",
        "lock any for 1h \u{0}",
    ] {
        let r = app.command("U0ALICE", text).await;
        assert_eq!(r.status, 200, "{text:?}: {:?}", r.body);
        for t in strings(&r.body) {
            assert!(!t.contains('\u{0}'), "{text:?} echoed a NUL: {t:?}");
        }
    }
    let r = app
        .http
        .post(app.url("/api/v1/environments/env-1/deploy-check"))
        .bearer_auth(bg_tests::API_TOKEN)
        .json(&json!({ "as": "U0ALICE\u{0}" }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_client_error(),
        "{}",
        r.status()
    );
    let g = spawn_gandalf().await;
    for text in ["merge #7\u{0}", "pause acme/platform \u{0}", "queue acme/\u{0}"] {
        let (status, answer) = gandalf_slash(&g, "U0ADMIN1", text).await;
        assert_eq!(status, 200, "{text:?}: {answer}");
    }
}

#[tokio::test]
async fn a_hostile_pull_request_title_is_shown_as_text_in_slack_the_control_center_and_cctray() {
    let g = spawn_gandalf().await;
    let branch = "pr-7";
    g.github
        .push("acme/platform", branch, "main", &[("a.txt", Some("a\n"))]);
    g.github.open_pull("acme/platform", 7, HOSTILE, "alice", branch, "main");
    g.github.approve("acme/platform", 7, "bob");

    let (status, merge) = gandalf_slash(&g, "U0ALICE", "merge #7").await;
    assert_eq!(status, 200, "{merge}");
    assert_inert_answer("the merge answer", &merge);
    let (_, queue) = gandalf_slash(&g, "U0BOB", "queue").await;
    assert_inert_answer("/gandalf queue", &queue);
    let (_, pr_status) = gandalf_slash(&g, "U0BOB", "status #7").await;
    assert_inert_answer("/gandalf status", &pr_status);
    // What Gandalf queued for its channel, as it will be posted.
    let outbox: Vec<String> = sqlx::query_scalar("SELECT text FROM slack_outbox")
        .fetch_all(&g.pool)
        .await
        .unwrap();
    for text in &outbox {
        assert_no_live_mrkdwn("an outbox message", text);
    }

    let html = get_text(&g.http, gandalf_url(&g, "/")).await;
    assert_inert_html("Gandalf's control center", &html);
    let page = get_text(&g.http, gandalf_url(&g, "/queue/acme/platform/pulls/7")).await;
    assert_inert_html("the pull request's page", &page);
    let xml = get_text(&g.http, gandalf_url(&g, "/cctray.xml")).await;
    assert_inert_cctray("Gandalf's cctray.xml", &xml);
}
