//! The control center end to end (SPEC §7): the real bots on one real Postgres, driven through
//! their real commands, Nightly and verification worker, then read the way a browser and a build
//! monitor read them — `/`, the run pages, the paged logs and `/cctray.xml`.
//!
//! What is under test besides the content: user-supplied text (lease reasons, PR titles, step
//! output) arrives escaped, never as markup; the pages refresh themselves without JavaScript; the
//! cctray feed obeys the format's rules; both bots serve the same page from the shared database.

use std::future::Future;
use std::time::Duration;

use bg_tests::{
    BobbyOptions, Pipeline, RESOURCE_MAP, StepScripts, TestBobby, TestGandalf, monday_morning, nightly_toml,
    spawn_bobby_on, spawn_bobby_with, spawn_gandalf_with,
};
use chrono::{DateTime, Utc};

const REPO: &str = "acme/platform";
const SCRIPT: &str = "<script>alert(\"x\")</script>";
const ESCAPED_SCRIPT: &str = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;";

async fn get(http: &reqwest::Client, url: String) -> (u16, String, String) {
    let r = http.get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

/// A page that must exist: its HTML.
async fn page(http: &reqwest::Client, url: String) -> String {
    let (status, kind, body) = get(http, url.clone()).await;
    assert_eq!(status, 200, "{url}: {body}");
    assert!(kind.starts_with("text/html"), "{url}: {kind}");
    body
}

/// The part of `html` from the element with `id` to the next element of the same kind of block
/// (the next card, section or queue), so assertions stay about one thing.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[start..];
    let end = rest[1..].find(" id=\"").map(|i| i + 1).unwrap_or(rest.len());
    &rest[..end]
}

/// Bounded polling of a condition that a background worker makes true.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// An admin asks for a manual Nightly run; waits until it has ended and returns its id.
async fn manual_run(app: &TestBobby, text: &str) -> i64 {
    let reply = app.command("U0ADMIN1", text).await.text();
    let id: i64 = reply
        .split("run #")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {reply}"));
    eventually(&format!("run #{id} to end"), || async {
        let state: String = sqlx::query_scalar("SELECT state FROM nightly_runs WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        matches!(state.as_str(), "finished" | "interrupted" | "skipped")
    })
    .await;
    id
}

// --- cctray -----------------------------------------------------------------------------------

/// One `<Project>` of a cctray feed.
#[derive(Debug, Clone)]
struct Project {
    name: String,
    activity: String,
    status: String,
    label: String,
    time: DateTime<chrono::FixedOffset>,
    url: String,
}

/// Parses a feed with an XML parser and checks it against the cctray rules: a `Projects` root
/// holding only `Project` elements, each with every required attribute, an allowed `activity` and
/// `lastBuildStatus`, an ISO 8601 `lastBuildTime` with a zone, an absolute `webUrl`, and a unique
/// name.
fn parse_cctray(xml: &str) -> Vec<Project> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Projects", "{xml}");
    let mut out: Vec<Project> = Vec::new();
    for node in root.children().filter(|n| n.is_element()) {
        assert_eq!(node.tag_name().name(), "Project", "{xml}");
        let attr = |name: &str| {
            node.attribute(name)
                .unwrap_or_else(|| panic!("a Project without {name}: {xml}"))
                .to_string()
        };
        let p = Project {
            name: attr("name"),
            activity: attr("activity"),
            status: attr("lastBuildStatus"),
            label: attr("lastBuildLabel"),
            time: DateTime::parse_from_rfc3339(&attr("lastBuildTime"))
                .unwrap_or_else(|e| panic!("lastBuildTime is not ISO 8601 with a zone ({e}): {xml}")),
            url: attr("webUrl"),
        };
        assert!(
            ["Sleeping", "Building", "CheckingModifications"].contains(&p.activity.as_str()),
            "{p:?}"
        );
        assert!(
            ["Success", "Failure", "Exception", "Unknown"].contains(&p.status.as_str()),
            "{p:?}"
        );
        assert!(!p.name.is_empty() && !p.label.is_empty(), "{p:?}");
        assert!(
            url::Url::parse(&p.url).is_ok_and(|u| u.scheme().starts_with("http")),
            "{p:?}"
        );
        assert!(out.iter().all(|o| o.name != p.name), "{} twice: {xml}", p.name);
        out.push(p);
    }
    out
}

fn project<'a>(projects: &'a [Project], name: &str) -> &'a Project {
    projects
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no project {name} in {projects:?}"))
}

async fn cctray(http: &reqwest::Client, base: &str) -> Vec<Project> {
    let (status, kind, body) = get(http, format!("{base}/cctray.xml")).await;
    assert_eq!(status, 200);
    assert!(kind.contains("xml"), "{kind}");
    parse_cctray(&body)
}

// --- Bobby: environments, leases, Nightly -----------------------------------------------------

#[tokio::test]
async fn the_index_shows_each_environment_with_holder_reason_expiry_preservation_and_waitlist() {
    let app = spawn_bobby_with(BobbyOptions::default()).await;
    let lock = app
        .command("U0ALICE", &format!("lock env-1 for 2h demo {SCRIPT} & friends"))
        .await;
    assert!(lock.text().contains("env-1"), "{}", lock.text());
    app.command("U0BOB", "wait env-1").await;
    app.command("U0BOB", "lock env-3 for 1h").await;
    let kept = app.command("U0BOB", "preserve env-3").await.text();
    assert!(kept.contains("env-3"), "{kept}");

    let html = page(&app.http, app.url("/")).await;
    // Self-refreshing, without JavaScript, light and dark.
    assert!(html.contains(r#"<meta http-equiv="refresh" content="15">"#), "{html}");
    assert!(
        !html.contains("<script"),
        "no JavaScript, and no injected markup: {html}"
    );
    assert!(html.contains("prefers-color-scheme: dark"));

    let env1 = section(&html, "env-env-1");
    assert!(
        env1.contains(r#"<a href="https://env-1.dev.example.com">env-1</a>"#),
        "{env1}"
    );
    assert!(env1.contains("card ok"), "ready is green: {env1}");
    assert!(
        env1.contains(r#"<strong title="U0ALICE">alice</strong>"#),
        "the holder by name: {env1}"
    );
    assert!(
        env1.contains(&format!("demo {ESCAPED_SCRIPT} &#38; friends")),
        "the reason, escaped: {env1}"
    );
    assert!(env1.contains("in 2h"), "expiry: {env1}");
    assert!(!env1.contains("<dt>preserved</dt>"), "{env1}");
    assert!(env1.contains("<dt>waitlist</dt><dd>bob</dd>"), "{env1}");
    assert!(env1.contains("never run"), "no Nightly yet: {env1}");

    let env2 = section(&html, "env-env-2");
    assert!(env2.contains(r#"<span class="free">free</span>"#), "{env2}");
    assert!(!env2.contains("<dt>waitlist</dt>"), "{env2}");
    let env3 = section(&html, "env-env-3");
    assert!(env3.contains("<dt>preserved</dt><dd>until Tue 24 Nov"), "{env3}");
    assert!(env3.contains("by bob</dd>"), "{env3}");
    for name in ["env-3", "env-4"] {
        assert!(html.contains(&format!("id=\"env-{name}\"")), "{name}");
    }
    assert!(html.contains("No merge queues"), "Bobby alone has no queues: {html}");
    // What the bot serves besides, at the foot of the page.
    assert!(html.contains("/cctray.xml") && html.contains("/api/v1/environments"));
}

#[tokio::test]
async fn a_faulted_nightly_shows_red_with_its_step_and_escaped_masked_log() {
    let s = StepScripts::new();
    let build = s.script(
        "build",
        &format!(
            r#"i=1; while [ $i -le 60 ]; do echo "compiling unit $i"; i=$((i+1)); done
if [ "$BOBBY_ENV" = env-2 ]; then echo '{SCRIPT}'; echo "error: the api token test-api-token was refused" >&2; exit 3; fi"#
        ),
    );
    let create = [("build", build)];
    let app = spawn_bobby_with(BobbyOptions {
        config: nightly_toml("", &[], &create),
        ..Default::default()
    })
    .await;
    manual_run(&app, "nightly run delete env-2").await;
    let run = manual_run(&app, "nightly run create env-2").await;

    let html = page(&app.http, app.url("/")).await;
    let env2 = section(&html, "env-env-2");
    assert!(env2.contains("card failed"), "faulted is red: {env2}");
    assert!(env2.contains("create faulted"), "{env2}");
    assert!(env2.contains("failed at step <code>build</code>"), "{env2}");
    assert!(env2.contains("exit 3, 1 attempt)"), "{env2}");
    assert!(env2.contains(&format!("/nightly/runs/{run}#env-2")), "{env2}");
    assert!(
        env2.contains("error: the api token *** was refused"),
        "the fault's tail: {env2}"
    );
    let env1 = section(&html, "env-env-1");
    assert!(env1.contains("card ok"), "{env1}");
    assert!(
        html.contains(&format!(r#"<a href="/nightly/runs/{run}">#{run} create</a>"#)),
        "{html}"
    );

    // The run's page: the environment, its step, the attempt's output, escaped and masked.
    let runp = page(&app.http, app.url(&format!("/nightly/runs/{run}"))).await;
    assert!(
        !runp.contains("http-equiv=\"refresh\""),
        "a finished run does not refresh"
    );
    let env2 = section(&runp, "env-2");
    assert!(env2.contains(r#"<span class="badge failed">faulted</span>"#), "{env2}");
    assert!(env2.contains("<h3>build</h3>") && env2.contains("exit 3"), "{env2}");
    assert!(env2.contains("details open"), "the failed attempt is unfolded: {env2}");
    assert!(env2.contains(ESCAPED_SCRIPT), "{env2}");
    assert!(!runp.contains("<script"), "{runp}");
    assert!(env2.contains("compiling unit 60"), "{env2}");
    assert!(!runp.contains("test-api-token"));
    let attempt: i64 =
        sqlx::query_scalar("SELECT id FROM nightly_attempts WHERE run_id = $1 AND environment = 'env-2'")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(env2.contains(&format!("/logs/nightly/{attempt}")), "{env2}");
    assert!(
        runp.contains(&format!("/nightly/runs/{run}/log.txt")),
        "the text form is linked"
    );

    // The whole log of the attempt, numbered.
    let log = page(&app.http, app.url(&format!("/logs/nightly/{attempt}"))).await;
    assert!(log.contains(r#"<span class="n">1</span>compiling unit 1"#), "{log}");
    assert!(log.contains(ESCAPED_SCRIPT) && !log.contains("<script"), "{log}");
    assert!(log.contains(&format!("/nightly/runs/{run}#env-2")), "back to the run");

    // Missing things are 404 pages.
    for path in [
        "/nightly/runs/999",
        "/nightly/runs/junk",
        "/logs/nightly/999",
        "/logs/queue/1",
    ] {
        let (status, kind, _) = get(&app.http, app.url(path)).await;
        assert_eq!((status, kind.starts_with("text/html")), (404, true), "{path}");
    }

    // The build monitor: env-2 red with its run, the others never built.
    let projects = cctray(&app.http, &format!("http://{}", app.addr)).await;
    assert_eq!(projects.len(), 4, "{projects:?}");
    let e2 = project(&projects, "Nightly env-2");
    assert_eq!(
        (e2.activity.as_str(), e2.status.as_str(), e2.label.clone()),
        ("Sleeping", "Failure", format!("create #{run}"))
    );
    assert_eq!(e2.url, "http://bobby.test/#env-env-2");
    assert_eq!(e2.time.with_timezone(&Utc), monday_morning());
    let e1 = project(&projects, "Nightly env-1");
    assert_eq!((e1.status.as_str(), e1.label.as_str()), ("Unknown", "never"));
}

#[tokio::test]
async fn an_environment_is_building_in_cctray_while_nightly_works_on_it() {
    let s = StepScripts::new();
    let hold = s.script("hold", "while [ ! -e \"$D/go\" ]; do sleep 0.02; done");
    let app = spawn_bobby_with(BobbyOptions {
        config: nightly_toml("", &[("scorch", hold)], &[]),
        ..Default::default()
    })
    .await;
    let reply = app.command("U0ADMIN1", "nightly run delete env-3").await.text();
    assert!(reply.contains("run #"), "{reply}");
    eventually("env-3 to be deleting", || async {
        app.environment("env-3").await["state"] == "deleting"
    })
    .await;
    let base = format!("http://{}", app.addr);
    let building = cctray(&app.http, &base).await;
    let e3 = project(&building, "Nightly env-3");
    assert_eq!(e3.activity, "Building", "{e3:?}");
    let html = page(&app.http, app.url("/")).await;
    assert!(
        section(&html, "env-env-3").contains("card running"),
        "amber while it runs"
    );

    std::fs::write(s.dir.join("go"), "").unwrap();
    eventually("env-3 to be deleted", || async {
        app.environment("env-3").await["state"] == "deleted"
    })
    .await;
    let done = cctray(&app.http, &base).await;
    let e3 = project(&done, "Nightly env-3");
    assert_eq!((e3.activity.as_str(), e3.status.as_str()), ("Sleeping", "Success"));
}

// --- Gandalf: the queue, verifications and their logs -----------------------------------------

/// Opens PR `number` titled `title` from branch `pr-<number>`, approved.
fn open_pull(g: &TestGandalf, number: u64, title: &str) {
    let branch = format!("pr-{number}");
    g.github.push(
        REPO,
        &branch,
        "main",
        &[(&format!("api/f{number}.rs"), Some(&format!("change {number}\n")))],
    );
    g.github.open_pull(REPO, number, title, "alice", &branch, "main");
    g.github.approve(REPO, number, "bob");
}

async fn merge(g: &TestGandalf, user: &str, text: &str) {
    let (reply, refused) = g.command(user, text).await;
    assert!(!refused, "{text}: {reply}");
}

/// Lets PR `pr`'s test step take `minutes` on Gandalf's clock: blocks it, waits for it to start,
/// moves the clock, releases it.
async fn verify_taking(g: &TestGandalf, p: &Pipeline, pr: u64, minutes: i64, end: &str) {
    p.block(&format!("test-{pr}"));
    merge(g, "U0ALICE", &format!("merge #{pr}")).await;
    p.wait_for_start(&format!("test {pr} -"), 1).await;
    g.clock.advance(chrono::Duration::minutes(minutes));
    p.unblock(&format!("test-{pr}"));
    g.wait_for_state(pr as i32, end).await;
}

/// Gandalf with one PR merged (4 min), one failed (6 min, 1,200 lines of output and markup in its
/// log), one verifying (1 min so far) and two queued behind it, the later one with high priority.
async fn busy_gandalf() -> (TestGandalf, Pipeline) {
    let p = Pipeline::new();
    let g = spawn_gandalf_with(&p.config(""), p.dir(), true).await;
    g.github
        .push(REPO, "main", "main", &[(".gandalf/resources.toml", Some(RESOURCE_MAP))]);
    open_pull(&g, 7, &format!("Fix {SCRIPT} & stuff"));
    verify_taking(&g, &p, 7, 4, "merged").await;

    open_pull(&g, 8, "Break the build");
    let long: String = (1..=1200).map(|i| format!("line {i}\n")).collect();
    p.say("test-8", &format!("{long}{SCRIPT}\n"));
    p.fail("test-8");
    verify_taking(&g, &p, 8, 6, "failed").await;

    open_pull(&g, 9, "Verifying now");
    p.block("test-9");
    merge(&g, "U0ALICE", "merge #9").await;
    p.wait_for_start("test 9 -", 1).await;
    g.clock.advance(chrono::Duration::minutes(1));
    open_pull(&g, 10, "Queued first");
    merge(&g, "U0BOB", "merge #10").await;
    open_pull(&g, 11, "Queued later, urgent");
    merge(&g, "U0ALICE", "merge #11 p=high").await;
    (g, p)
}

#[tokio::test]
async fn the_queue_shows_positions_states_who_and_etas_and_the_recent_verdicts() {
    let (g, p) = busy_gandalf().await;
    let base = format!("http://{}", g.addr);
    let html = page(&g.http, format!("{base}/")).await;
    assert!(!html.contains("<script"), "{html}");

    let queue = section(&html, "queue-acme-platform");
    assert!(
        queue.contains("a verification takes ~5m"),
        "the median of 4 and 6 minutes: {queue}"
    );
    let rows: Vec<&str> = queue.split("<tr class=").skip(1).collect();
    assert_eq!(rows.len(), 3, "{queue}");
    // The verifying PR first, then by priority, then by time queued; ETAs from the 5-minute median.
    let expect = [
        ("1", "#9 Verifying now", "testing", "alice", "done in ~4m"),
        ("2", "#11 Queued later, urgent", "queued", "alice", "starts in ~4m"),
        ("3", "#10 Queued first", "queued", "bob", "starts in ~9m"),
    ];
    for (row, (pos, title, state, who, eta)) in rows.iter().zip(expect) {
        assert!(row.contains(&format!("<td class=\"num\">{pos}</td>")), "{row}");
        assert!(row.contains(title), "{row}");
        assert!(row.contains(&format!(">{state}</span>")), "{row}");
        assert!(row.contains(&format!("<td>{who}</td>")), "{row}");
        assert!(row.contains(&format!("<td>{eta}</td>")), "{row}");
    }
    assert!(rows[0].starts_with("\"running\""), "amber while verifying: {}", rows[0]);
    assert!(rows[1].contains("<span class=\"badge\">high</span>"), "{}", rows[1]);
    assert!(rows[0].contains("<td>1m</td>"), "time in queue: {}", rows[0]);

    let recent = section(&html, "recent");
    let (failed, merged) = (
        recent.find("acme/platform#8 Break the build").expect("#8 is listed"),
        recent.find("acme/platform#7 Fix").expect("#7 is listed"),
    );
    assert!(failed < merged, "newest first: {recent}");
    assert!(
        recent.contains(&format!("#7 Fix {ESCAPED_SCRIPT} &#38; stuff")),
        "the title, escaped: {recent}"
    );
    assert!(
        recent.contains("<td>6m</td>") && recent.contains("<td>4m</td>"),
        "{recent}"
    );
    assert!(
        recent.contains(r#"<span class="badge failed">failed</span>"#),
        "{recent}"
    );
    assert!(recent.contains(r#"<span class="badge ok">merged</span>"#), "{recent}");

    // The verification environment Gandalf registered is an environment like the others.
    assert!(section(&html, "env-verify-1").contains("<h3>verify-1</h3>"));

    // The build monitor: the queue is building (#9) and its last verdict is #8's failure.
    let projects = cctray(&g.http, &base).await;
    let q = project(&projects, "Merge queue acme/platform");
    assert_eq!(
        (q.activity.as_str(), q.status.as_str(), q.label.as_str()),
        ("Building", "Failure", "#8")
    );
    assert_eq!(q.url, "http://gandalf.test/#queue-acme-platform");
    let v = project(&projects, "Nightly verify-1");
    assert_eq!((v.activity.as_str(), v.status.as_str()), ("Sleeping", "Unknown"));

    p.unblock("test-9");
    g.wait_for_state(9, "merged").await;
    let projects = cctray(&g.http, &base).await;
    let q = project(&projects, "Merge queue acme/platform");
    assert_eq!((q.status.as_str(), q.label.as_str()), ("Success", "#9"));
}

#[tokio::test]
async fn a_failed_verification_has_a_page_with_its_steps_and_a_paged_escaped_log() {
    let (g, _p) = busy_gandalf().await;
    let base = format!("http://{}", g.addr);

    // The PR comment links the page.
    let comments = g.wait_for_comments(8, 1).await;
    assert!(
        comments
            .iter()
            .any(|c| c.contains("http://gandalf.test/queue/acme/platform/pulls/8")),
        "{comments:?}"
    );
    let (status, _) = g.command("U0ALICE", "status #8").await;
    assert!(
        status.contains("http://gandalf.test/queue/acme/platform/pulls/8"),
        "{status}"
    );

    let html = page(&g.http, format!("{base}/queue/acme/platform/pulls/8")).await;
    assert!(html.contains(r#"<span class="badge failed">failed</span>"#), "{html}");
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a finished verification does not refresh"
    );
    assert!(html.contains("<dd>6m</dd>"), "verification time: {html}");
    assert!(!html.contains("<script"), "{html}");
    let steps: Vec<&str> = html.split("<div class=\"step ").skip(1).collect();
    let names: Vec<String> = steps
        .iter()
        .map(|s| {
            let h = s.split("<h3>").nth(1).unwrap();
            h[..h.find("</h3>").unwrap()].to_string()
        })
        .collect();
    assert_eq!(names, ["build lib", "build api", "deploy api", "test", "revert api"]);
    let test = steps[3];
    assert!(test.starts_with("failed"), "{test}");
    assert!(test.contains("exit 3") && test.contains("details open"), "{test}");
    assert!(test.contains("1203 lines, the last 40 here"), "{test}");
    assert!(test.contains(ESCAPED_SCRIPT) && test.contains("line 1200"), "{test}");
    assert!(!test.contains("line 1100\n"), "only the tail inline: {test}");

    let step: i64 = sqlx::query_scalar(
        "SELECT s.id FROM queue_steps s JOIN queue_items i ON i.id = s.item_id WHERE i.pr = 8 AND s.name = 'test'",
    )
    .fetch_one(&g.pool)
    .await
    .unwrap();
    assert!(test.contains(&format!("href=\"/logs/queue/{step}\"")), "{test}");

    // The whole log, 500 lines a page, the last page first (where failures are).
    let last = page(&g.http, format!("{base}/logs/queue/{step}")).await;
    assert!(last.contains("1203 lines · page 3 of 3"), "{last}");
    assert!(
        last.contains(&format!("<span class=\"n\">1202</span>{ESCAPED_SCRIPT}")),
        "{last}"
    );
    assert!(!last.contains("<span class=\"n\">1000</span>"), "{last}");
    assert!(
        last.contains(&format!("href=\"/logs/queue/{step}?page=2\">← earlier")),
        "{last}"
    );
    let first = page(&g.http, format!("{base}/logs/queue/{step}?page=1")).await;
    assert!(
        first.contains("<span class=\"n\">1</span>output of test-8--"),
        "{first}"
    );
    assert!(first.contains("<span class=\"n\">500</span>line 499"), "{first}");
    assert!(!first.contains("<span class=\"n\">501</span>"), "{first}");
    assert!(first.contains("later →"));

    // A verifying PR's page refreshes itself and says where it is.
    let verifying = page(&g.http, format!("{base}/queue/acme/platform/pulls/9")).await;
    assert!(verifying.contains(r#"<meta http-equiv="refresh" content="15">"#));
    assert!(verifying.contains("position 1") && verifying.contains(">testing</span>"));
    assert!(verifying.contains("Running; its output appears here when it ends."));

    let (status, _, _) = get(&g.http, format!("{base}/queue/acme/platform/pulls/99")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn both_bots_serve_the_same_control_center_from_the_shared_database() {
    let (g, _p) = busy_gandalf().await;
    let bobby = spawn_bobby_on(g.database(), g.clock.clone(), BobbyOptions::default()).await;
    bobby.command("U0ALICE", "lock env-4 for 1h pairing").await;

    let from_bobby = page(&bobby.http, bobby.url("/")).await;
    let from_gandalf = page(&g.http, format!("http://{}/", g.addr)).await;
    for (bot, html) in [("bobby", &from_bobby), ("gandalf", &from_gandalf)] {
        assert!(html.contains(&format!("served by {bot}")), "{bot}");
        for env in ["env-1", "env-2", "env-3", "env-4", "verify-1"] {
            assert!(html.contains(&format!("id=\"env-{env}\"")), "{bot} shows {env}");
        }
        assert!(section(html, "env-env-4").contains("pairing"), "{bot}: Bobby's lease");
        assert!(
            section(html, "queue-acme-platform").contains("#9 Verifying now"),
            "{bot}: Gandalf's queue"
        );
        assert!(html.contains("acme/platform#8 Break the build"), "{bot}");
    }
    let bobby_feed = cctray(&bobby.http, &format!("http://{}", bobby.addr)).await;
    let names: Vec<&str> = bobby_feed.iter().map(|p| p.name.as_str()).collect();
    assert!(
        names.contains(&"Merge queue acme/platform") && names.contains(&"Nightly env-4"),
        "{names:?}"
    );
    assert!(
        bobby_feed.iter().all(|p| p.url.starts_with("http://bobby.test/")),
        "each bot links to itself"
    );
}
