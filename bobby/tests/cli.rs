//! The `bobby` command line: `exec`, `deploy-check`, `--help`, and what a broken config says.

use std::process::{Command, Output};

use bg_tests::{API_TOKEN, BOBBY_TOML, fresh_database, spawn_bobby};

fn bobby(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bobby"));
    cmd.args(args)
        .env_remove("BOBBY_CONFIG")
        .env_remove("BOBBY_URL")
        .env_remove("BOBBY_API_TOKEN");
    cmd.env_remove("DATABASE_URL")
        .env_remove("SLACK_BOT_TOKEN")
        .env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bobby")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(text: &str) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("bobby.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "bobby-cli-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn help_lists_the_subcommands() {
    let o = bobby(&["--help"], &[]);
    assert!(o.status.success());
    for sub in ["serve", "migrate", "exec", "deploy-check"] {
        assert!(stdout(&o).contains(sub), "{}", stdout(&o));
    }
}

#[test]
fn a_broken_config_names_the_key_and_exits_2() {
    let (_dir, path) = write_config(&BOBBY_TOML.replace("max_lease = \"3d\"", "max_lease = \"three days\""));
    let o = bobby(
        &["--config", &path, "exec", "--as", "U0ALICE", "list"],
        &[("DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("max_lease") && stderr(&o).contains("not a duration"),
        "{}",
        stderr(&o)
    );
    let o = bobby(&["--config", "/nonexistent/bobby.toml", "serve"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/bobby.toml"), "{}", stderr(&o));
}

#[tokio::test]
async fn exec_runs_the_same_handler_as_slack() {
    let db = fresh_database().await;
    let (_dir, path) = write_config(BOBBY_TOML);
    let env = [("DATABASE_URL", db.url.as_str())];
    let o = bobby(
        &["--config", &path, "exec", "--as", "U0ALICE", "lock env-2 for 2h demo"],
        &env,
    );
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("@U0ALICE locked *env-2* until") && stdout(&o).contains("demo"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("[Unlock] [Extend 1h]"), "{}", stdout(&o));

    let o = bobby(&["--config", &path, "exec", "--as", "U0BOB", "lock env-2"], &env);
    assert_eq!(o.status.code(), Some(1), "a refusal exits 1");
    assert!(stdout(&o).contains("locked by @U0ALICE"), "{}", stdout(&o));

    let o = bobby(&["--config", &path, "exec", "--as", "U0BOB", "lock env2"], &env);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Did you mean `env-2`?"), "{}", stdout(&o));

    let o = bobby(
        &["exec", "--as", "U0BOB", "list"],
        &[("DATABASE_URL", db.url.as_str()), ("BOBBY_CONFIG", &path)],
    );
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("*env-2* · ready · :lock: @U0ALICE"),
        "{}",
        stdout(&o)
    );

    let o = bobby(&["--config", &path, "exec", "--as", "alice", "list"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a Slack user id"), "{}", stderr(&o));
}

#[tokio::test]
async fn deploy_check_exits_0_1_or_2() {
    let app = spawn_bobby().await;
    app.command("U0ALICE", "lock env-1 for 2h").await;
    let url = format!("http://{}", app.addr);
    let env = [("BOBBY_API_TOKEN", API_TOKEN), ("BOBBY_URL", url.as_str())];
    let run = |args: Vec<&str>, env: Vec<(&str, &str)>| {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            bobby(&a, &e)
        })
    };
    let o = run(vec!["deploy-check", "env-1", "--as", "alice"], env.to_vec())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{} {}", stdout(&o), stderr(&o));
    let o = run(vec!["deploy-check", "env-1", "--as", "bob"], env.to_vec())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("env-1 is locked by U0ALICE"), "{}", stdout(&o));
    let o = run(
        vec!["deploy-check", "env-2", "--as", "alice", "--url", &url],
        vec![("BOBBY_API_TOKEN", API_TOKEN)],
    )
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("lock it first"), "{}", stdout(&o));
    // Could not decide: unknown environment, wrong token, nobody listening, bad URL, bad usage.
    for (args, env) in [
        (vec!["deploy-check", "env-9", "--as", "alice"], env.to_vec()),
        (
            vec!["deploy-check", "env-1", "--as", "alice"],
            vec![("BOBBY_API_TOKEN", "nope"), ("BOBBY_URL", url.as_str())],
        ),
        (
            vec!["deploy-check", "env-1", "--as", "alice", "--url", "http://127.0.0.1:9"],
            env.to_vec(),
        ),
        (
            vec!["deploy-check", "env-1", "--as", "alice", "--url", "not a url"],
            env.to_vec(),
        ),
        (vec!["deploy-check", "env-1"], env.to_vec()),
    ] {
        let o = run(args.clone(), env).await.unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {} {}", stdout(&o), stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} explains itself");
    }
}
