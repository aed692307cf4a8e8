//! SPEC §8, steps run code we did not write: the real `gandalf` binary, started with every secret
//! a bot has in its environment (and one as a `*_FILE`), verifies a PR whose `test` step does what
//! a hostile PR would — dumps its environment, reads the bot's `/proc/<pid>/environ`, reads the
//! secret file — and finds none of them. Only what the pipeline's `env` table names reaches it, and
//! a `from_env` value is masked in the stored log. With `step_user = "nobody"` the step runs as
//! another user (this needs root, as CI and the container's init have).

use std::os::unix::fs::PermissionsExt;

use bg_tests::fake_github::{self, FakeGithub};
use bg_tests::{Pipeline, RESOURCE_MAP, SIGNING_SECRET, WEBHOOK_SECRET, spawn_gandalf_with};

use super::faults_shutdown::Bot;

const SLACK_TOKEN: &str = "xoxb-step-must-not-see-this";

#[tokio::test]
async fn a_step_sees_none_of_gandalfs_secrets_unless_its_pipeline_names_them() {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let pipeline = Pipeline::new();
    let dir = pipeline.dir().to_path_buf();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    // The step user must reach the pipeline and write its log and findings; the secret file
    // stays 0600.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret_file = dir.join("slack-token");
    std::fs::write(&secret_file, SLACK_TOKEN).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let user = if root { "step_user = \"nobody\"\n" } else { "" };
    let config = format!(
        "{user}{}\n[repos.pipeline.env]\nSHOWN = \"a literal\"\nPASSED_TOKEN = {{ from_env = \"GITHUB_TOKEN\" }}\n",
        pipeline.config("").replace(
            &format!("test = \"{}\"", pipeline.step_command()),
            "test = \"sh snoop.sh\""
        )
    );

    let mut g = spawn_gandalf_with(&pipeline.config(""), &dir, false).await;
    g.down(bg_tests::Stop::Graceful).await;
    let github: &FakeGithub = &g.github;
    github.push(
        "acme/platform",
        "main",
        "main",
        &[(".gandalf/resources.toml", Some(RESOURCE_MAP))],
    );
    let config_path = dir.join("gandalf.toml");
    std::fs::write(&config_path, &config).unwrap();
    let database_url = g.database().url;
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_string()),
        ("SLACK_BOT_TOKEN_FILE", secret_file.display().to_string()),
        ("SLACK_API_URL", "http://127.0.0.1:9/api/".to_string()),
        ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("GITHUB_API_URL", github.api_url()),
        ("GITHUB_TOKEN", fake_github::TOKEN.to_string()),
        ("BOBBY_API_TOKEN", "bobby-api-secret".to_string()),
        ("PGPASSWORD", "pg-secret".to_string()),
        ("HTTPS_PROXY", "http://proxy.internal:3128".to_string()),
    ];
    let gandalf = Bot::start("gandalf", &config_path, &env, dir.join("gandalf.log")).await;
    // What a hostile PR's test step does: dump its environment, read Gandalf's, read the secret.
    let o = out.display();
    std::fs::write(
        dir.join("snoop.sh"),
        format!(
            "env > '{o}/env.txt'\n\
             (tr '\\0' '\\n' < /proc/{pid}/environ || echo unreadable) > '{o}/proc.txt' 2>&1\n\
             (cat '{}' || echo unreadable) > '{o}/file.txt' 2>&1\n\
             id -u > '{o}/uid.txt'\n\
             echo \"the token is $PASSED_TOKEN\"\n",
            secret_file.display(),
            pid = gandalf.pid()
        ),
    )
    .unwrap();

    g.ready_pull(7, "api/x.rs");
    let (reply, refused) = g.command("U0ALICE", "merge #7").await;
    assert!(!refused, "{reply}");
    g.wait_for_state(7, "merged").await;

    let read =
        |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}\n{}", gandalf.output()));
    let dumped = read("env.txt");
    // GITHUB_TOKEN's value is there once, as PASSED_TOKEN: the env table names it.
    assert_step_env_hides(&dumped, &env, &["GITHUB_TOKEN"]);
    for want in [
        "GANDALF_PR=7",
        "GANDALF_STEP=test",
        "SHOWN=a literal",
        "HTTPS_PROXY=http://proxy.internal:3128",
    ] {
        assert!(dumped.contains(want), "{want} missing:\n{dumped}");
    }
    assert!(
        dumped.contains(&format!("PASSED_TOKEN={}", fake_github::TOKEN)),
        "what the env table names does arrive:\n{dumped}"
    );

    let proc_environ = read("proc.txt");
    assert_proc_hides(&proc_environ, &env);
    let log: String = sqlx::query_scalar("SELECT log FROM queue_steps WHERE name = 'test' ORDER BY id DESC LIMIT 1")
        .fetch_one(&g.pool)
        .await
        .unwrap();
    assert!(
        log.contains("the token is ***"),
        "a from_env value is masked in the log: {log}"
    );
    assert!(!log.contains(fake_github::TOKEN), "{log}");

    if root {
        assert_another_user(&read("uid.txt"), &read("file.txt"), &proc_environ);
    } else {
        eprintln!("not root: step_user and the file and /proc checks of another user were not exercised");
    }
}

/// The same for Bobby's deploy runner: the real `bobby` binary deploys a branch whose `test` step
/// snoops, in a working copy of the branch, and finds none of Bobby's secrets.
#[tokio::test]
async fn a_deploy_step_sees_none_of_bobbys_secrets_unless_its_pipeline_names_them() {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let db = bg_tests::fresh_database().await;
    let slack = bg_tests::FakeSlack::start().await;
    let github = FakeGithub::start().await;
    github.create_repo(
        "acme/platform",
        "main",
        &[
            (".gandalf/resources.toml", RESOURCE_MAP),
            ("api/main.rs", "fn main() {}\n"),
        ],
    );
    let branch = github.push("acme/platform", "feature", "main", &[("api/x.rs", Some("x\n"))]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_path_buf();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret_file = dir.join("slack-token");
    std::fs::write(&secret_file, SLACK_TOKEN).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = out.display();
    std::fs::write(
        dir.join("snoop.sh"),
        format!(
            "env > '{o}/env.txt'\n\
             (tr '\\0' '\\n' < /proc/$BOT_PID/environ || echo unreadable) > '{o}/proc.txt' 2>&1\n\
             (cat '{}' || echo unreadable) > '{o}/file.txt' 2>&1\n\
             git rev-parse HEAD > '{o}/head.txt' 2>&1\n\
             id -u > '{o}/uid.txt'\n",
            secret_file.display()
        ),
    )
    .unwrap();
    let user = if root { "step_user = \"nobody\"\n" } else { "" };
    let config = format!(
        "{user}state_dir = \"{state}\"\n{base}\n[deploy]\nrepo = \"acme/platform\"\nbase = \"main\"\ncheckout = true\n\
         [deploy.pipeline]\nbuild = \"true\"\ndeploy = \"true\"\ntest = \"sh {snoop}\"\n\
         [deploy.pipeline.env]\nSHOWN = \"a literal\"\nBOT_PID = {{ from_file = \"{pidfile}\" }}\n",
        state = dir.join("state").display(),
        base = bg_tests::BOBBY_TOML,
        snoop = dir.join("snoop.sh").display(),
        pidfile = dir.join("bot.pid").display(),
    );
    let config_path = dir.join("bobby.toml");
    std::fs::write(&config_path, &config).unwrap();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_string()),
        ("SLACK_BOT_TOKEN_FILE", secret_file.display().to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("GITHUB_API_URL", github.api_url()),
        ("GITHUB_TOKEN", fake_github::TOKEN.to_string()),
        ("BOBBY_API_TOKEN", "bobby-api-secret".to_string()),
        ("PGPASSWORD", "pg-secret".to_string()),
        ("HTTPS_PROXY", "http://proxy.internal:3128".to_string()),
    ];
    // The step learns Bobby's pid through a file its pipeline names (read when a step starts).
    std::fs::write(dir.join("bot.pid"), "0").unwrap();
    let bobby = Bot::start("bobby", &config_path, &env, dir.join("bobby.log")).await;
    std::fs::write(dir.join("bot.pid"), bobby.pid().to_string()).unwrap();

    let http = reqwest::Client::new();
    for text in ["lock env-1", "deploy env-1 feature"] {
        let body = bg_tests::command_form("U0ALICE", text, &slack.response_url("alice"));
        let ts = chrono::Utc::now().timestamp();
        let sig = shared::slack::signature::sign(SIGNING_SECRET, ts, body.as_bytes());
        let r = http
            .post(bobby.url("/slack/commands"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{text}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join("uid.txt").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy's test never ran:\n{}",
            bobby.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let dumped = read("env.txt");
    assert_step_env_hides(&dumped, &env, &[]);
    for want in [
        "BOBBY_ENV=env-1",
        "BOBBY_STEP=test",
        "SHOWN=a literal",
        "BOBBY_REF=feature",
    ] {
        assert!(dumped.contains(want), "{want} missing:\n{dumped}");
    }
    assert_eq!(
        read("head.txt").trim(),
        branch,
        "the step ran in a copy of the deployed commit"
    );
    assert!(
        dumped.contains(&format!("BOT_PID={}", bobby.pid())),
        "the step looked at the running bot's /proc entry:\n{dumped}"
    );
    let proc_environ = read("proc.txt");
    assert_proc_hides(&proc_environ, &env);
    if root {
        assert_another_user(&read("uid.txt"), &read("file.txt"), &proc_environ);
    }
}

/// What a step dumped of its environment holds none of the bot's variables by name but
/// `HTTPS_PROXY` (passed by `pass_env`'s default), and none of their values but those the pipeline's
/// `env` table passes on under another name (`renamed`). Nor the token the bot read from a file.
fn assert_step_env_hides(dumped: &str, env: &[(&str, String)], renamed: &[&str]) {
    let names: Vec<&str> = dumped
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for (name, value) in env {
        let passed = *name == "HTTPS_PROXY";
        assert_eq!(
            names.contains(name),
            passed,
            "{name} in the step's environment:\n{dumped}"
        );
        if !passed && !renamed.contains(name) {
            assert!(
                !dumped.contains(value.as_str()),
                "the value of {name} leaked:\n{dumped}"
            );
        }
    }
    assert!(!dumped.contains(SLACK_TOKEN), "{dumped}");
}

/// The bot's `/proc/<pid>/environ`, as the step read it, gave away none of its secrets.
fn assert_proc_hides(proc_environ: &str, env: &[(&str, String)]) {
    for (name, value) in env {
        if *name != "HTTPS_PROXY" {
            assert!(
                !proc_environ.contains(value.as_str()),
                "/proc/<bot>/environ gave {name}:\n{proc_environ}"
            );
        }
    }
}

/// With `step_user`: the step ran as another user, who could read neither the secret file nor the
/// bot's `/proc/<pid>/environ`.
fn assert_another_user(uid: &str, file: &str, proc_environ: &str) {
    assert_ne!(uid.trim(), "0", "step_user: the step ran as root");
    assert!(file.contains("unreadable"), "the step read the bot's secret file");
    assert!(proc_environ.contains("unreadable"), "{proc_environ}");
}
