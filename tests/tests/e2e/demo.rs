//! `deploy/dev.sh demo` end to end, the project's smoke test: the real `demo` driver binary (its
//! embedded GitHub and Slack, its scripted morning) against both bots started exactly as `serve`
//! starts them (`app::start`, system clock, secrets from variables) with the demo's own configs
//! (`deploy/demo/*.toml`, placeholders filled in as `dev.sh` fills them) on a fresh database.
//!
//! The bots run in-process rather than as the `bobby`/`gandalf` binaries: a test cannot build
//! another package's binaries, and `app::start` is what their `serve` runs. The driver checks each
//! scripted step itself and exits non-zero when one went wrong; this test also checks the outcome
//! of each step on its own, through the bots' APIs, the environments' directories and the demo
//! GitHub's git repository, so a driver that checked nothing would still fail here.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bg_tests::git;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const WEBHOOK_SECRET: &str = "demo-test-webhook-secret";
const SIGNING_SECRET: &str = "demo-test-signing-secret";

/// A bound on failing, not a timing: the demo takes seconds; this is for a machine busy building.
const LIMIT: Duration = Duration::from_secs(240);

/// A demo config with its placeholders filled in, as `deploy/dev.sh` fills them.
fn config(name: &str, dir: &Path, bobby_port: u16, gandalf_port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/demo/{name}.toml"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("@DEMO@", &dir.display().to_string())
        .replace("@BOBBY_PORT@", &bobby_port.to_string())
        .replace("@GANDALF_PORT@", &gandalf_port.to_string())
}

async fn json(url: String) -> Value {
    let r = reqwest::get(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_its_morning_end_to_end() {
    let db = bg_tests::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let bobby_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gandalf_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bobby_addr = bobby_listener.local_addr().unwrap();
    let gandalf_addr = gandalf_listener.local_addr().unwrap();

    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--monorepo")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/monorepo"))
        .arg("--github-dir")
        .arg(dir.path().join("github"))
        .args(["--github-listen", "127.0.0.1:0", "--slack-listen", "127.0.0.1:0"])
        .arg("--slack-log")
        .arg(dir.path().join("slack.log"))
        .arg("--environments")
        .arg(dir.path().join("environments"))
        .args(["--bobby-url", &format!("http://{bobby_addr}")])
        .args(["--gandalf-url", &format!("http://{gandalf_addr}")])
        .arg("--exit-when-done")
        .env("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo binary starts");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut transcript = String::new();

    // The driver says where its GitHub and Slack are before it waits for the bots.
    let mut urls: HashMap<String, String> = HashMap::new();
    while urls.len() < 2 {
        let line = tokio::time::timeout(LIMIT, lines.next_line())
            .await
            .expect("the demo announces its GitHub and Slack")
            .unwrap()
            .unwrap_or_else(|| panic!("the demo ended early:\n{transcript}"));
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some((what, url)) = line.split_once(' ')
            && (what == "github" || what == "slack")
        {
            urls.insert(what.into(), url.into());
        }
    }

    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("DATABASE_URL".into(), db.url.clone());
    env.insert("GITHUB_API_URL".into(), urls["github"].clone());
    env.insert("GITHUB_TOKEN".into(), bg_tests::fake_github::TOKEN.into());
    env.insert("GITHUB_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    env.insert("SLACK_API_URL".into(), urls["slack"].clone());
    env.insert("SLACK_BOT_TOKEN".into(), bg_tests::fake_slack::BOT_TOKEN.into());
    env.insert("SLACK_SIGNING_SECRET".into(), SIGNING_SECRET.into());
    env.insert("BOBBY_API_TOKEN".into(), "demo-api-token".into());
    let secrets = shared::settings::Secrets::from_env(&env).unwrap();

    let (bp, gp) = (bobby_addr.port(), gandalf_addr.port());
    let gandalf_config = gandalf::config::GandalfConfig::parse(&config("gandalf", dir.path(), bp, gp), dir.path())
        .expect("the demo's Gandalf config parses");
    let bobby_config = bobby::config::BobbyConfig::parse(&config("bobby", dir.path(), bp, gp), dir.path())
        .expect("the demo's Bobby config parses");
    let github = gandalf::handler::Gandalf::github_from(&secrets).await.unwrap();
    assert!(github.is_some(), "the demo's Gandalf has GitHub");
    let gandalf = gandalf::app::start(gandalf::app::Options {
        config: gandalf_config,
        secrets: secrets.clone(),
        clock: Arc::new(shared::clock::SystemClock),
        listener: gandalf_listener,
        pool_size: 5,
        github,
    })
    .await
    .expect("gandalf starts");
    let bobby = bobby::app::start(bobby::app::Options {
        config: bobby_config,
        secrets,
        clock: Arc::new(shared::clock::SystemClock),
        listener: bobby_listener,
        pool_size: 5,
        outbox_backoff: Default::default(),
        outbox_clock: Arc::new(shared::clock::SystemClock),
    })
    .await
    .expect("bobby starts");

    // The morning, to its end.
    let rest = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            transcript.push_str(&line);
            transcript.push('\n');
        }
        demo.wait().await.unwrap()
    };
    let status = tokio::time::timeout(LIMIT, rest).await.expect("the demo ends");
    assert!(status.success(), "the demo failed ({status}):\n{transcript}");
    assert!(
        transcript.contains("8 of 8 scripted outcomes as expected") && transcript.contains("demo finished"),
        "{transcript}"
    );

    // 1. The merge queue: #1 landed, #2 rejected at its test with its deploy reverted, #3 a conflict.
    let g = format!("http://{gandalf_addr}/api/v1/repos/acme/platform/pulls");
    let one = json(format!("{g}/1")).await;
    assert_eq!(one["state"], "merged", "{one}");
    let two = json(format!("{g}/2")).await;
    assert_eq!(two["state"], "failed", "{two}");
    let failed: Vec<&Value> = two["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{two}");
    assert_eq!(failed[0]["name"], "test", "{two}");
    assert!(
        two["steps"].as_array().unwrap().iter().any(|s| s["name"] == "revert"),
        "what #2 deployed was reverted: {two}"
    );
    let three = json(format!("{g}/3")).await;
    assert_eq!(three["state"], "failed", "{three}");
    assert!(
        three["outcome_reason"].as_str().unwrap_or("").contains("conflict"),
        "{three}"
    );
    // On the demo GitHub's real repository: main is #1's merge on the first commit, nothing else.
    let repo = dir.path().join("github/repos/acme/platform.git");
    let subjects = git(&repo, &["log", "--format=%s", "main"]);
    assert!(
        subjects.starts_with("Merge pull request #1 from web-banner"),
        "{subjects}"
    );
    assert!(
        !subjects.contains("howdy") && !subjects.contains("holiday"),
        "{subjects}"
    );
    let main = git(&repo, &["rev-parse", "main"]);
    let envs = dir.path().join("environments");
    let read = |p: &str| std::fs::read_to_string(envs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("verify-1/web/banner.txt"),
        "Welcome to Acme, where deploys are boring\n"
    );
    assert!(
        !read("verify-1/api/greeting.sh").contains("Howdy"),
        "#2's deploy was reverted"
    );

    // 2. The lock and the deploy: alice holds env-1, which runs her branch's api.
    let b = format!("http://{bobby_addr}/api/v1/environments");
    let env1 = json(format!("{b}/env-1")).await;
    assert_eq!(env1["lease"]["holder"], "U0ALICE", "{env1}");
    assert_eq!(env1["deploy"]["state"], "succeeded", "{env1}");
    assert_eq!(env1["deployed"]["api"]["ref"], "feature/api-search", "{env1}");
    let feature = git(&repo, &["rev-parse", "feature/api-search"]);
    assert_eq!(env1["deployed"]["api"]["sha"], feature.as_str(), "{env1}");
    assert_eq!(read("env-1/api/VERSION").trim(), feature);
    assert!(read("env-1/api/service.sh").contains("search:"));

    // 3. Nightly: env-3 deleted, then created again at main's tip.
    let env3 = json(format!("{b}/env-3")).await;
    assert_eq!(env3["state"], "ready", "{env3}");
    assert_eq!(read("env-3/web/VERSION").trim(), main);
    assert_eq!(read("env-3/api/VERSION").trim(), main);

    // What Slack would have shown is in the demo's Slack log (the driver waits for the merge
    // announcement and both Nightly summaries before it ends).
    let slack = std::fs::read_to_string(dir.path().join("slack.log")).unwrap();
    for needle in [
        "Merged *acme/platform#1*",
        "failed verification at `test`",
        "Nightly delete",
        "Nightly create",
    ] {
        assert!(slack.contains(needle), "{needle:?} not in the Slack log:\n{slack}");
    }

    gandalf.stop().await;
    bobby.stop().await;
}
