//! `/bobby deploy` with a 20-resource map (SPEC §4.6): how long a deploy takes when one leaf
//! service changed, against `only` every resource, with steps that each take `--step-seconds`.
//! The real Bobby, a throwaway Postgres, the GitHub and Slack fakes on loopback — the harness of
//! the end-to-end tests. Prints the timings, what ran, and the final Slack message.
//!
//!   cargo run --release -p bg-tests --bin deploybench -- --step-seconds 0.2

use std::time::{Duration, Instant};

use bg_tests::fake_github::FakeGithub;
use bg_tests::{BOBBY_TOML, BobbyOptions, MoreOptions, TestBobby, spawn_bobby_with};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Times /bobby deploy on a 20-resource map: one leaf changed versus `only` everything")]
struct Cli {
    /// How long every build, deploy and test step takes.
    #[arg(long, default_value_t = 0.2)]
    step_seconds: f64,
    /// Builds at once within a level (`deploy.parallelism`).
    #[arg(long, default_value_t = 4)]
    parallelism: u32,
}

const REPO: &str = "acme/platform";

/// core → 3 libraries → 16 services (each on one library): 20 resources, 3 build levels.
fn resource_map() -> (String, Vec<String>) {
    let mut map = String::from("ignore = [\"**/*.md\", \".gandalf/**\"]\n");
    let mut names = vec!["core".to_string()];
    map.push_str("\n[[resource]]\nname = \"core\"\ntype = \"package\"\npaths = [\"core/**\"]\ndeploy = false\n");
    for l in 1..=3 {
        map.push_str(&format!(
            "\n[[resource]]\nname = \"lib{l}\"\ntype = \"package\"\npaths = [\"lib{l}/**\"]\ndepends_on = [\"core\"]\ndeploy = false\n"
        ));
        names.push(format!("lib{l}"));
    }
    for s in 1..=16 {
        let lib = 1 + (s - 1) % 3;
        map.push_str(&format!(
            "\n[[resource]]\nname = \"svc{s}\"\ntype = \"service\"\npaths = [\"svc{s}/**\"]\ndepends_on = [\"lib{lib}\"]\n"
        ));
        names.push(format!("svc{s}"));
    }
    (map, names)
}

async fn deploy(app: &TestBobby, text: &str) -> (Duration, String) {
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM deploys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let t0 = Instant::now();
    let answer = app.command("U0ALICE", text).await;
    let answer = app.settle("U0ALICE", answer).await;
    assert!(answer.text().contains("Deploying"), "{}", answer.text());
    loop {
        let done: Option<(String, i64)> =
            sqlx::query_as("SELECT state, id FROM deploys WHERE state <> 'running' ORDER BY id DESC LIMIT 1")
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        if let Some((state, id)) = done
            && id > before
        {
            assert_eq!(state, "succeeded");
            let took = t0.elapsed();
            // The final edit of the progress message, as Slack shows it.
            let message = loop {
                let posts = app.slack.posts_to("C0DEV");
                if let Some(p) = posts.iter().rev().find(|p| p.block_text().contains("is deployed to")) {
                    break p.block_text();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            return (took, message);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (map, names) = resource_map();
    let github = FakeGithub::start().await;
    let mut files: Vec<(String, String)> = vec![(".gandalf/resources.toml".into(), map)];
    files.extend(names.iter().map(|n| (format!("{n}/main.rs"), n.clone())));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    github.create_repo(REPO, "main", &refs);
    github.push(REPO, "leaf-change", "main", &[("svc7/main.rs", Some("changed"))]);

    let dir = tempfile::tempdir()?;
    let step = format!("sleep {}", cli.step_seconds);
    let config = format!(
        "{BOBBY_TOML}\n[deploy]\nrepo = \"{REPO}\"\nparallelism = {}\n[deploy.pipeline]\nbuild = \"{step}\"\ndeploy = \"{step}\"\ntest = \"{step}\"\n",
        cli.parallelism
    );
    let app = spawn_bobby_with(BobbyOptions {
        config,
        more: MoreOptions {
            github_api_url: Some(github.api_url()),
            base_dir: Some(dir.path().to_path_buf()),
        },
        ..Default::default()
    })
    .await;
    let locked = app.command("U0ALICE", "lock env-1").await;
    app.settle("U0ALICE", locked).await;

    println!(
        "20 resources (core → 3 libraries → 16 services), every step {:.2} s, parallelism {}",
        cli.step_seconds, cli.parallelism
    );
    let (leaf, leaf_message) = deploy(&app, "deploy env-1 leaf-change").await;
    let leaf_steps: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_steps WHERE deploy_id = (SELECT max(id) FROM deploys)")
            .fetch_one(&app.pool)
            .await?;
    let (all, _) = deploy(&app, &format!("deploy env-1 leaf-change only {}", names.join(","))).await;
    let all_steps: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_steps WHERE deploy_id = (SELECT max(id) FROM deploys)")
            .fetch_one(&app.pool)
            .await?;
    println!(
        "one leaf service changed: {:>6.2} s, {leaf_steps} steps",
        leaf.as_secs_f64()
    );
    println!(
        "only every resource:      {:>6.2} s, {all_steps} steps",
        all.as_secs_f64()
    );
    println!("\nThe Slack message of the leaf deploy, after its last edit:\n{leaf_message}");
    Ok(())
}
