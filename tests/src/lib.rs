//! Support for the end-to-end tests: a throwaway Postgres ([`pg`]), a fake Slack ([`fake_slack`]),
//! and [`spawn_bobby`], which starts the real Bobby (the same `bobby::app::start` as `main`) on
//! loopback against both.

pub mod fake_github;
pub mod fake_slack;
pub mod fake_slack_socket;
pub mod git;
pub mod pg;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bobby::config::BobbyConfig;
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::clock::{Clock, ManualClock};
use shared::settings::Secrets;
use shared::slack::outbox::Backoff;
use sqlx::PgPool;

pub use fake_slack::{FakeSlack, Outage};
pub use fake_slack_socket::FakeSocketSlack;
pub use git::git;
pub use pg::{TestDb, fresh_database};

pub const SIGNING_SECRET: &str = "test-signing-secret";
pub const API_TOKEN: &str = "test-api-token";

/// A config with four environments, two admins and an announce channel; tests tweak it as text.
pub const BOBBY_TOML: &str = r#"
listen = "127.0.0.1:0"
public_url = "http://bobby.test"
timezone = "Europe/Berlin"
admins = ["U0ADMIN1"]
announce_channel = "C0ENVS"
require_lease_to_deploy = true
default_lease = "until-nightly"
max_lease = "3d"
remind_before = "30m"

[[environments]]
name = "env-1"
url = "https://env-1.dev.example.com"
keep_on_weekends = true

[[environments]]
name = "env-2"

[[environments]]
name = "env-3"

[[environments]]
name = "env-4"

[[people]]
slack = "U0ALICE"
github = "alice"
email = "alice@example.com"

[[people]]
slack = "U0BOB"
github = "bob"

[nightly]
delete_at = "20:00"
create_at = "06:30"
"#;

/// 2026-11-23 (a Monday) 09:00 UTC, 10:00 in Berlin: the start of every test day.
pub fn monday_morning() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub struct TestBobby {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub pool: PgPool,
    pub slack: FakeSlack,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub config_text: String,
    /// What a restart keeps besides the config: GitHub and the config's directory.
    pub more: MoreOptions,
    /// Environment variables beyond the defaults (Socket Mode's), kept by restarts and replicas.
    extra_env: Vec<(String, String)>,
    running: Option<bobby::app::Running>,
}

pub struct BobbyOptions {
    pub config: String,
    pub slack_token: bool,
    pub pool_size: u32,
    pub more: MoreOptions,
}

/// Options a restarted Bobby keeps.
#[derive(Clone, Debug, Default)]
pub struct MoreOptions {
    /// `GITHUB_API_URL` (with a token) for `/bobby deploy`; no GitHub without it.
    pub github_api_url: Option<String>,
    /// The config file's directory (where steps run); the current directory without it.
    pub base_dir: Option<std::path::PathBuf>,
}

impl Default for BobbyOptions {
    fn default() -> Self {
        BobbyOptions {
            config: BOBBY_TOML.to_string(),
            slack_token: true,
            pool_size: 10,
            more: MoreOptions::default(),
        }
    }
}

/// Starts Bobby on a fresh database with the default test config.
pub async fn spawn_bobby() -> TestBobby {
    spawn_bobby_with(BobbyOptions::default()).await
}

pub async fn spawn_bobby_with(opts: BobbyOptions) -> TestBobby {
    let db = fresh_database().await;
    let slack = FakeSlack::start().await;
    let clock = ManualClock::new(monday_morning());
    start_on(db, slack, clock, opts).await
}

/// Starts Bobby on an existing database and clock (Gandalf's, say: in production both bots share
/// one database and the time of day).
pub async fn spawn_bobby_on(db: TestDb, clock: ManualClock, opts: BobbyOptions) -> TestBobby {
    let slack = FakeSlack::start().await;
    start_on(db, slack, clock, opts).await
}

async fn start_on(db: TestDb, slack: FakeSlack, clock: ManualClock, opts: BobbyOptions) -> TestBobby {
    start_on_env(db, slack, clock, opts, vec![]).await
}

async fn start_on_env(
    db: TestDb,
    slack: FakeSlack,
    clock: ManualClock,
    opts: BobbyOptions,
    extra_env: Vec<(String, String)>,
) -> TestBobby {
    init_logs();
    raise_fd_limit();
    let base_dir = opts.more.base_dir.clone().unwrap_or_else(|| ".".into());
    let config = BobbyConfig::parse(&opts.config, &base_dir).expect("test config parses");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("DATABASE_URL".into(), db.url.clone());
    env.insert("SLACK_SIGNING_SECRET".into(), SIGNING_SECRET.into());
    env.insert("SLACK_API_URL".into(), slack.api_url());
    env.insert("BOBBY_API_TOKEN".into(), API_TOKEN.into());
    if opts.slack_token {
        env.insert("SLACK_BOT_TOKEN".into(), fake_slack::BOT_TOKEN.into());
    }
    if let Some(url) = &opts.more.github_api_url {
        env.insert("GITHUB_API_URL".into(), url.clone());
        env.insert("GITHUB_TOKEN".into(), fake_github::TOKEN.into());
    }
    env.extend(extra_env.iter().cloned());
    let secrets = Secrets::from_env(&env).expect("test secrets");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = bobby::app::start(bobby::app::Options {
        config,
        secrets,
        clock: Arc::new(clock.clone()),
        listener,
        pool_size: opts.pool_size,
        // Fast retries: tests wait for deliveries, they do not sleep through backoffs.
        outbox_backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        outbox_clock: Arc::new(shared::clock::SystemClock),
    })
    .await
    .expect("bobby starts");
    TestBobby {
        addr: running.addr,
        pool: running.pool.clone(),
        db,
        slack,
        clock,
        http: reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap(),
        config_text: opts.config,
        more: opts.more,
        extra_env,
        running: Some(running),
    }
}

// --- Socket Mode (SPEC §11) --------------------------------------------------------------------

/// `config` with `slack_mode = "socket"` (a top-level key, so it goes before every table).
pub fn socket_mode(config: &str) -> String {
    format!("slack_mode = \"socket\"\n{config}")
}

/// What a bot in Socket Mode gets besides the usual: the fake's Web API and an app token.
fn socket_env(socket: &FakeSocketSlack, app_token: &str) -> Vec<(String, String)> {
    vec![
        ("SLACK_API_URL".into(), socket.api_url()),
        ("SLACK_APP_TOKEN".into(), app_token.into()),
    ]
}

/// Bobby with `slack_mode = "socket"` (added to `opts.config`) on a fresh database, talking to a
/// fake Socket Mode server in front of a fake Slack, with `app_token` as `SLACK_APP_TOKEN`
/// ([`fake_slack_socket::APP_TOKEN`] is the one the fake accepts). Its replicas and restarts stay
/// in Socket Mode.
pub async fn spawn_bobby_socket(opts: BobbyOptions, app_token: &str) -> (TestBobby, FakeSocketSlack) {
    let db = fresh_database().await;
    let slack = FakeSlack::start().await;
    let socket = FakeSocketSlack::start(slack.clone()).await;
    let clock = ManualClock::new(monday_morning());
    let opts = BobbyOptions {
        config: socket_mode(&opts.config),
        ..opts
    };
    let bobby = start_on_env(db, slack, clock, opts, socket_env(&socket, app_token)).await;
    (bobby, socket)
}

/// Gandalf as [`spawn_gandalf`] (queue paused), with `slack_mode = "socket"` against a fake Socket
/// Mode server in front of a fake Slack.
pub async fn spawn_gandalf_socket(app_token: &str) -> (TestGandalf, FakeSocketSlack) {
    let slack = FakeSlack::start().await;
    let socket = FakeSocketSlack::start(slack).await;
    let mut env = socket_env(&socket, app_token);
    env.push(("SLACK_BOT_TOKEN".into(), fake_slack::BOT_TOKEN.into()));
    let g = spawn_gandalf_env(&socket_mode(GANDALF_TOML), Path::new("."), true, env).await;
    pause_front_half(&g).await;
    (g, socket)
}

/// A thousand concurrent requests need two thousand sockets in one process (client and server
/// ends); lift the soft limit on open files to the hard one.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
}

/// What Bobby answered to a slash command.
#[derive(Debug, Clone)]
pub struct SlackAnswer {
    pub status: u16,
    pub body: Value,
}

impl SlackAnswer {
    pub fn text(&self) -> String {
        self.body["blocks"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .filter_map(|b| b["text"]["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    pub fn in_channel(&self) -> bool {
        self.body["response_type"] == "in_channel"
    }

    pub fn ephemeral(&self) -> bool {
        self.body["response_type"] == "ephemeral"
    }

    pub fn action_ids(&self) -> Vec<String> {
        self.body["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A form body as Slack sends for `/bobby <text>`.
pub fn command_form(user: &str, text: &str, response_url: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "deprecated"),
        ("team_id", "T0001"),
        ("team_domain", "acme"),
        ("channel_id", "C0DEV"),
        ("channel_name", "dev"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/bobby"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", "123.456.abc"),
        ("api_app_id", "A0BOBBY"),
    ])
    .unwrap()
}

impl TestBobby {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a correctly signed Slack request.
    pub async fn signed_post(&self, path: &str, body: String) -> reqwest::Response {
        let ts = self.clock_now_unix();
        let sig = shared::slack::signature::sign(SIGNING_SECRET, ts, body.as_bytes());
        self.http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
            .expect("request reaches bobby")
    }

    fn clock_now_unix(&self) -> i64 {
        use shared::clock::Clock;
        self.clock.now().timestamp()
    }

    /// `/bobby <text>` typed by `user`. The `response_url` is `resp-<user>`.
    pub async fn command(&self, user: &str, text: &str) -> SlackAnswer {
        let url = self.slack.response_url(&format!("resp-{user}"));
        let response = self
            .signed_post("/slack/commands", command_form(user, text, &url))
            .await;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        SlackAnswer { status, body }
    }

    /// The final answer to a command: the HTTP answer itself, or, when Bobby acknowledged first
    /// ("Working on it…"), what it later sent to the `response_url` (ephemeral) or to the channel
    /// (in-channel, recognised by the user's mention).
    pub async fn settle(&self, user: &str, answer: SlackAnswer) -> SlackAnswer {
        if !answer.text().contains("Working on it") {
            return answer;
        }
        let id = format!("resp-{user}");
        let mention = format!("<@{user}>");
        self.slack
            .wait_until("a late answer", Duration::from_secs(120), |s| {
                s.responses().iter().any(|(r, _)| *r == id)
                    || s.posts_to("C0DEV")
                        .iter()
                        .any(|p| p.block_text().starts_with(&format!(":lock: {mention}")))
            })
            .await;
        if let Some((_, body)) = self.slack.responses().into_iter().find(|(r, _)| *r == id) {
            let mut body = body;
            body["response_type"] = "ephemeral".into();
            return SlackAnswer { status: 200, body };
        }
        let post = self
            .slack
            .posts_to("C0DEV")
            .into_iter()
            .find(|p| p.block_text().contains(&mention))
            .unwrap();
        let mut body = post.body;
        body["response_type"] = "in_channel".into();
        SlackAnswer { status: 200, body }
    }

    /// A button press by `user`.
    pub async fn press(&self, user: &str, action_id: &str, env: &str, response_id: &str) -> u16 {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": { "id": user, "username": "someone", "team_id": "T0001" },
            "api_app_id": "A0BOBBY",
            "team": { "id": "T0001", "domain": "acme" },
            "channel": { "id": "C0DEV", "name": "dev" },
            "response_url": self.slack.response_url(response_id),
            "trigger_id": "123.456.abc",
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "b1", "value": env,
                "text": { "type": "plain_text", "text": "x" }, "action_ts": "1700000000.000001"
            }]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.signed_post("/slack/interactions", body).await.status().as_u16()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn environment(&self, name: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/v1/environments/{name}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn deploy_check(&self, env: &str, who: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/environments/{env}/deploy-check")))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({ "as": who }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Stops this Bobby (as SIGTERM would) and starts a new one on the same database, Slack and
    /// clock: what a restart or a deploy of a new version looks like.
    pub async fn restart(mut self) -> TestBobby {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        self.pool.close().await;
        let opts = BobbyOptions {
            config: self.config_text.clone(),
            more: self.more.clone(),
            ..Default::default()
        };
        start_on_env(
            self.db.clone(),
            self.slack.clone(),
            self.clock.clone(),
            opts,
            self.extra_env.clone(),
        )
        .await
    }

    /// A second Bobby on the same database, Slack and clock: another replica.
    pub async fn another_replica(&self) -> TestBobby {
        let opts = BobbyOptions {
            config: self.config_text.clone(),
            more: self.more.clone(),
            ..Default::default()
        };
        start_on_env(
            self.db.clone(),
            self.slack.clone(),
            self.clock.clone(),
            opts,
            self.extra_env.clone(),
        )
        .await
    }

    /// Stops this Bobby without starting another.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Waits (boundedly) until a count query on the test database returns `expected`: for state
    /// that a background worker writes after the effect the test can observe.
    pub async fn wait_for_count(&self, sql: &'static str, expected: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = self.count(sql).await;
            if n == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{sql}` stayed at {n}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows of a query on the test database, for assertions about state.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// A Gandalf handler on a fresh database, with a fake GitHub holding `acme/platform`: what
/// `/gandalf` and `gandalf exec` run.
pub struct TestGandalf {
    pub gandalf: gandalf::handler::Gandalf,
    pub github: fake_github::FakeGithub,
    pub pool: PgPool,
    pub clock: ManualClock,
    /// The running Gandalf server (the same `gandalf::app::start` as `main`).
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    running: Option<gandalf::app::Running>,
    start: GandalfStart,
}

/// What it takes to start (another) Gandalf on the same database, GitHub and clock.
#[derive(Clone)]
struct GandalfStart {
    config: gandalf::config::GandalfConfig,
    secrets: Secrets,
    client: shared::github::Github,
    clock: shared::clock::SharedClock,
}

impl GandalfStart {
    async fn start(&self) -> gandalf::app::Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        gandalf::app::start(gandalf::app::Options {
            config: self.config.clone(),
            secrets: self.secrets.clone(),
            clock: self.clock.clone(),
            listener,
            pool_size: 5,
            github: Some(self.client.clone()),
        })
        .await
        .expect("gandalf starts")
    }
}

pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

pub const GANDALF_TOML: &str = r#"
listen = "127.0.0.1:0"
public_url = "http://gandalf.test"
bot_login = "gandalf"
merges_channel = "C0MERGES"
admins = ["U0ADMIN1"]

[[people]]
slack = "U0ALICE"
github = "alice"

[[people]]
slack = "U0BOB"
github = "bob"

[[people]]
slack = "U0CAROL"
github = "carol"

[[repos]]
name = "acme/platform"
base = "main"
environment = "verify-1"
required_approvals = 1

[repos.pipeline]
build = "true"
deploy = "true"
test = "true"
"#;

/// Pauses the test repository's queue, so that what the front-half tests queue stays queued.
async fn pause_front_half(g: &TestGandalf) {
    let mut conn = g.pool.acquire().await.unwrap();
    gandalf::store::set_paused(
        &mut conn,
        &"acme/platform".parse().unwrap(),
        true,
        "tests of the front half",
        &shared::ids::Holder::Gandalf,
        g.clock.now(),
    )
    .await
    .unwrap();
}

/// Gandalf with its queue paused, so that what the tests queue stays queued (the verification
/// worker's tests use [`spawn_gandalf_with`] and let it run).
pub async fn spawn_gandalf() -> TestGandalf {
    let g = spawn_gandalf_with(GANDALF_TOML, Path::new("."), true).await;
    pause_front_half(&g).await;
    g
}

/// Gandalf with `config_toml`, steps running in `dir`; `manual_clock` false runs it on the wall
/// clock (for benchmarks that read timestamps).
pub async fn spawn_gandalf_with(config_toml: &str, dir: &Path, manual_clock: bool) -> TestGandalf {
    spawn_gandalf_env(config_toml, dir, manual_clock, vec![]).await
}

/// [`spawn_gandalf_with`] with more environment variables (Socket Mode's).
async fn spawn_gandalf_env(
    config_toml: &str,
    dir: &Path,
    manual_clock: bool,
    extra_env: Vec<(String, String)>,
) -> TestGandalf {
    init_logs();
    let db = fresh_database().await;
    let github = fake_github::FakeGithub::start().await;
    github.create_repo("acme/platform", "main", &[("README.md", "hello\n")]);
    for (login, perm) in [("alice", "write"), ("bob", "write"), ("carol", "read")] {
        github.set_permission("acme/platform", login, perm);
    }
    let pool = shared::db::connect(&db.url, 5).await.unwrap();
    shared::db::migrate(&pool).await.unwrap();
    let config = gandalf::config::GandalfConfig::parse(config_toml, dir).unwrap();
    let client = shared::github::Github::new(
        &github.api_url(),
        shared::github::Auth::Token(secrecy::SecretString::from(fake_github::TOKEN)),
        shared::github::RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
    )
    .await
    .unwrap();
    let clock = ManualClock::new(monday_morning());
    let shared_clock: shared::clock::SharedClock = if manual_clock {
        Arc::new(clock.clone())
    } else {
        Arc::new(shared::clock::SystemClock)
    };
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("DATABASE_URL".into(), db.url.clone());
    env.insert("SLACK_SIGNING_SECRET".into(), SIGNING_SECRET.into());
    env.insert("GITHUB_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    env.insert("GITHUB_API_URL".into(), github.api_url());
    env.extend(extra_env);
    let secrets = Secrets::from_env(&env).unwrap();
    let start = GandalfStart {
        config: config.clone(),
        secrets,
        client: client.clone(),
        clock: shared_clock.clone(),
    };
    let running = start.start().await;
    let gandalf = gandalf::handler::Gandalf {
        pool: pool.clone(),
        mirrors: shared::working_copy::Mirrors::new(&config.state_dir),
        config: Arc::new(config),
        github: Some(client),
        clock: shared_clock,
    };
    TestGandalf {
        gandalf,
        github,
        pool,
        clock,
        addr: running.addr,
        http: reqwest::Client::new(),
        running: Some(running),
        start,
    }
}

impl TestGandalf {
    /// GETs `path` from this Gandalf (a page, `/metrics`): the body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// GETs `path` from this Gandalf: the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}{path}", self.addr)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The database this Gandalf runs on, for a Bobby to share ([`spawn_bobby_on`]).
    pub fn database(&self) -> TestDb {
        let url = self
            .start
            .secrets
            .require_database_url()
            .expect("Gandalf was started with a database")
            .to_string();
        let name = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.path_segments().and_then(|mut s| s.next_back()).map(str::to_string))
            .unwrap_or_default();
        TestDb { url, name }
    }

    /// Stops this Gandalf (gracefully, or as `kill -9` would) and starts a new one on the same
    /// database, GitHub and clock.
    pub async fn restart(&mut self, how: Stop) {
        self.down(how).await;
        self.up().await;
    }

    /// Stops this Gandalf (gracefully, or as `kill -9` would); its database and GitHub stay.
    pub async fn down(&mut self, how: Stop) {
        if let Some(r) = self.running.take() {
            match how {
                Stop::Graceful => r.stop().await,
                Stop::Kill9 => r.abort().await,
            }
        }
    }

    /// Starts Gandalf again after [`TestGandalf::down`].
    pub async fn up(&mut self) {
        let running = self.start.start().await;
        self.addr = running.addr;
        self.running = Some(running);
    }

    /// A second Gandalf replica on the same database (dropped, it keeps running until stopped).
    pub async fn another_replica(&self) -> gandalf::app::Running {
        self.start.start().await
    }

    /// A Gandalf replica connecting with `database_url` (the same database as another role, so a
    /// test can cut that replica alone off), on the same GitHub, clock and config.
    pub async fn another_replica_on(&self, database_url: &str) -> gandalf::app::Running {
        let mut start = self.start.clone();
        start.secrets.database_url = Some(secrecy::SecretString::from(database_url.to_string()));
        start.start().await
    }

    /// Waits (boundedly) until `sql` (a scalar query) returns `want`.
    pub async fn wait_for<T>(&self, sql: &'static str, want: T) -> T
    where
        T: PartialEq
            + std::fmt::Debug
            + Send
            + Unpin
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got: T = sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap();
            if got == want {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sql}: still {got:?}, waited for {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The state of the latest item of PR `pr`.
    pub async fn state_of(&self, pr: i32) -> String {
        sqlx::query_scalar("SELECT state::text FROM queue_items WHERE pr = $1 ORDER BY id DESC LIMIT 1")
            .bind(pr)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Waits (boundedly) until the latest item of `pr` is in `state`.
    pub async fn wait_for_state(&self, pr: i32, state: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.state_of(pr).await;
            if got == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "#{pr} is {got:?}, waited for {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/gandalf <text>` by `user`: the reply's plain text and whether it was refused.
    pub async fn command(&self, user: &str, text: &str) -> (String, bool) {
        let answer = self.gandalf.handle(&user.parse().unwrap(), text).await;
        (answer.reply.plain(), answer.refused)
    }

    /// Delivers a GitHub webhook, signed; returns the status.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> u16 {
        let body = payload.to_string();
        self.http
            .post(format!("http://{}/github/webhook", self.addr))
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                gandalf::webhook::sign(WEBHOOK_SECRET, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits (boundedly) until the fake GitHub has `n` comments on PR `number`, and returns them.
    pub async fn wait_for_comments(&self, number: u64, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let comments = self.github.comments("acme/platform", number);
            if comments.len() >= n {
                return comments;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {comments:?} on #{number}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A PR `number` from branch `pr-<number>` changing `path`, approved by bob.
    pub fn ready_pull(&self, number: u64, path: &str) -> String {
        let branch = format!("pr-{number}");
        let head = self.github.push(
            "acme/platform",
            &branch,
            "main",
            &[(path, Some(&format!("change {number}\n")))],
        );
        self.github.open_pull(
            "acme/platform",
            number,
            &format!("Change {number}"),
            "alice",
            &branch,
            "main",
        );
        self.github.approve("acme/platform", number, "bob");
        head
    }
}

// --- Nightly support: a Bobby at a chosen instant, stopping and crashing it, step scripts -------

/// Starts Bobby on a fresh database with its clock at `start`.
pub async fn spawn_bobby_at(opts: BobbyOptions, start: DateTime<Utc>) -> TestBobby {
    let db = fresh_database().await;
    let slack = FakeSlack::start().await;
    start_on(db, slack, ManualClock::new(start), opts).await
}

/// How [`TestBobby::down`] stops Bobby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// As SIGTERM: work reaches a safe point (Nightly stops its steps and leaves the run to resume).
    Graceful,
    /// As `kill -9`: every task is dropped where it is; step shells die, what they started lives on.
    Kill9,
}

/// A Bobby that is down: its database, Slack and clock stay, to be inspected, moved and started
/// again.
pub struct DownBobby {
    pub db: TestDb,
    pub slack: FakeSlack,
    pub clock: ManualClock,
    /// A pool on the database, for looking at what the stopped Bobby left.
    pub pool: PgPool,
    pub config_text: String,
    pub more: MoreOptions,
}

impl TestBobby {
    /// Stops this Bobby without starting another.
    pub async fn down(mut self, how: Stop) -> DownBobby {
        if let Some(r) = self.running.take() {
            match how {
                Stop::Graceful => r.stop().await,
                Stop::Kill9 => r.abort().await,
            }
        }
        self.pool.close().await;
        let pool = PgPool::connect(&self.db.url)
            .await
            .expect("connect to the test database");
        DownBobby {
            db: self.db,
            slack: self.slack,
            clock: self.clock,
            pool,
            config_text: self.config_text,
            more: self.more,
        }
    }
}

impl DownBobby {
    /// Starts Bobby again on the same database, Slack and clock.
    pub async fn up(self) -> TestBobby {
        self.pool.close().await;
        let opts = BobbyOptions {
            config: self.config_text,
            more: self.more,
            ..Default::default()
        };
        start_on(self.db, self.slack, self.clock, opts).await
    }
}

/// Generated Nightly step scripts in a temporary directory (removed on drop). Every script logs
/// its start and its end (with the exit status) to `calls.log` with a nanosecond timestamp and the
/// `BOBBY_*` variables it got, then runs its body with `$D` naming the directory.
pub struct StepScripts {
    pub dir: std::path::PathBuf,
}

/// One line of `calls.log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepCall {
    pub at_ns: u128,
    /// `start` or `end`.
    pub event: String,
    pub phase: String,
    pub env: String,
    pub step: String,
    pub attempt: u32,
    /// The exit status (`end` only).
    pub status: Option<i32>,
}

impl Default for StepScripts {
    fn default() -> Self {
        Self::new()
    }
}

impl StepScripts {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bobby-nightly-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        StepScripts { dir }
    }

    /// Writes `<name>.sh` and returns the `run` command line for it.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.dir.join(format!("{name}.sh"));
        let text = format!(
            "#!/bin/sh\nD='{dir}'\nL=\"$D/calls.log\"\n\
             echo \"$(date +%s%N) start $BOBBY_PHASE $BOBBY_ENV $BOBBY_STEP $BOBBY_ATTEMPT\" >> \"$L\"\n\
             trap 'echo \"$(date +%s%N) end $BOBBY_PHASE $BOBBY_ENV $BOBBY_STEP $BOBBY_ATTEMPT $?\" >> \"$L\"' EXIT\n\
             {body}\n",
            dir = self.dir.display()
        );
        std::fs::write(&path, text).unwrap();
        format!("sh '{}'", path.display())
    }

    /// Every call logged so far, in order.
    pub fn calls(&self) -> Vec<StepCall> {
        let text = std::fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                Some(StepCall {
                    at_ns: f.first()?.parse().ok()?,
                    event: f.get(1)?.to_string(),
                    phase: f.get(2)?.to_string(),
                    env: f.get(3)?.to_string(),
                    step: f.get(4)?.to_string(),
                    attempt: f.get(5)?.parse().ok()?,
                    status: f.get(6).and_then(|s| s.parse().ok()),
                })
            })
            .collect()
    }

    /// The starts of the calls, as `(env, step, attempt)`.
    pub fn starts(&self) -> Vec<(String, String, u32)> {
        self.calls()
            .into_iter()
            .filter(|c| c.event == "start")
            .map(|c| (c.env, c.step, c.attempt))
            .collect()
    }

    pub fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }
}

impl Drop for StepScripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The default test config with `[nightly]` settings (`extra`, TOML lines) and steps: each
/// `(name, run)` of `delete`, then of `create`.
pub fn nightly_toml(extra: &str, delete: &[(&str, String)], create: &[(&str, String)]) -> String {
    let mut text = format!("{BOBBY_TOML}{extra}\n");
    for (table, steps) in [("delete", delete), ("create", create)] {
        for (name, run) in steps {
            text.push_str(&format!("\n[[nightly.{table}]]\nname = \"{name}\"\nrun = \"{run}\"\n"));
        }
    }
    text
}

// --- Gandalf verification support: pipeline scripts that log, block and fail on demand --------

/// A pipeline for Gandalf in a temporary directory: `build`, `deploy`, `test` and `revert` all run
/// `sh step.sh`, which logs each start and end to `calls.log` with a nanosecond timestamp and the
/// `GANDALF_*` variables it got. A step keyed `<step>-<pr>` or `<step>-<pr>-<resource>` blocks
/// while a file `block-<key>` exists, prints what [`Pipeline::say`] gave it for `<step>-<pr>`, and
/// fails (exit 3, after printing `boom`) when `fail-<key>` exists.
pub struct Pipeline {
    dir: tempfile::TempDir,
}

/// One line of `calls.log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub at_ns: u128,
    pub start: bool,
    pub step: String,
    pub pr: String,
    pub resource: String,
    /// At the start: `GANDALF_SHA`; at the end: the exit status.
    pub detail: String,
    /// At the start: `GANDALF_RESOURCES`.
    pub resources: String,
    /// At the start: `GANDALF_PRS`.
    pub prs: String,
}

const STEP_SH: &str = r#"D="@DIR@"
key="$GANDALF_STEP-$GANDALF_PR"
rkey="$key-${GANDALF_RESOURCE:--}"
# A step must never run twice at once (on two replicas): an exclusive lock the kernel drops when
# the step's processes die; a start that finds it taken is recorded (see `Pipeline::overlaps`).
exec 9>"$D/lock-$rkey"
flock -n 9 || echo "$(date +%s%N) overlap $rkey $$" >> "$D/overlaps"
# Stopped by Gandalf (SIGTERM, then SIGKILL after a grace) rather than reaped (SIGKILL at once):
# recorded with the time, so a test can tell who killed a step and when.
trap 'echo "$(date +%s%N)|$rkey|$$" >> "$D/terms.log"; exit 143' TERM
echo "$(date +%s%N)|start|$GANDALF_STEP|$GANDALF_PR|${GANDALF_RESOURCE:--}|$GANDALF_SHA|$GANDALF_RESOURCES|$GANDALF_REPO|$GANDALF_ENV|$GANDALF_BASE_SHA|$GANDALF_PRS" >> "$D/calls.log"
echo "$GANDALF_STEP|$GANDALF_PR|${GANDALF_RESOURCE:--}|$(pwd)|$(git rev-parse HEAD 2>/dev/null)|$(ls | tr '\n' ' ')" >> "$D/where.log"
while [ -e "$D/block-$key" ] || [ -e "$D/block-$rkey" ]; do sleep 0.02; done
echo "output of $rkey"
if [ -e "$D/say-$key" ]; then cat "$D/say-$key"; fi
if [ -e "$D/fail-once-$key" ]; then
  rm -f "$D/fail-once-$key"
  echo "flaked in $rkey"
  echo "$(date +%s%N)|end|$GANDALF_STEP|$GANDALF_PR|${GANDALF_RESOURCE:--}|3|" >> "$D/calls.log"
  exit 3
fi
fail=0
if [ -e "$D/fail-$key" ] || [ -e "$D/fail-$rkey" ]; then fail=1; fi
# In a batch, a step fails when any PR in it is flagged (not only the first).
for p in $GANDALF_PRS; do if [ -e "$D/fail-$GANDALF_STEP-$p" ]; then fail=1; fi; done
if [ "$fail" = 1 ]; then
  echo "boom in $rkey"
  echo "$(date +%s%N)|end|$GANDALF_STEP|$GANDALF_PR|${GANDALF_RESOURCE:--}|3|" >> "$D/calls.log"
  exit 3
fi
echo "$(date +%s%N)|end|$GANDALF_STEP|$GANDALF_PR|${GANDALF_RESOURCE:--}|0|" >> "$D/calls.log"
"#;

/// Where one step ran (see [`Pipeline::places`]).
#[derive(Debug, Clone)]
pub struct Place {
    pub step: String,
    pub dir: String,
    pub head: String,
    pub entries: Vec<String>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Absolute paths: with a checkout the steps run in a working copy, not here.
        let script = STEP_SH.replace("@DIR@", &dir.path().display().to_string());
        std::fs::write(dir.path().join("step.sh"), script).unwrap();
        Pipeline { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Gandalf's test configuration with this pipeline and `extra` keys for the repository.
    /// The command line of every step of [`Pipeline::config`] (for tests that swap one out).
    pub fn step_command(&self) -> String {
        format!("sh {}", self.dir.path().join("step.sh").display())
    }

    /// Its own `state_dir` (mirrors and working copies) in the pipeline's directory.
    pub fn config(&self, extra: &str) -> String {
        let step = self.dir.path().join("step.sh").display().to_string();
        let state = self.dir.path().join("state").display().to_string();
        let body = GANDALF_TOML.replace(
            "[repos.pipeline]\nbuild = \"true\"\ndeploy = \"true\"\ntest = \"true\"\n",
            &format!(
                "{extra}\n[repos.pipeline]\nbuild = \"sh {step}\"\ndeploy = \"sh {step}\"\ntest = \"sh {step}\"\nrevert = \"sh {step}\"\n"
            ),
        );
        format!("state_dir = \"{state}\"\n{body}")
    }

    /// Where each step ran: `(step pr resource, directory, HEAD there, top-level entries)`.
    pub fn places(&self) -> Vec<Place> {
        let text = std::fs::read_to_string(self.dir.path().join("where.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(6, '|').collect();
                (f.len() == 6).then(|| Place {
                    step: format!("{} {} {}", f[0], f[1], f[2]),
                    dir: f[3].into(),
                    head: f[4].into(),
                    entries: f[5].split_whitespace().map(str::to_string).collect(),
                })
            })
            .collect()
    }

    /// Starts of a step that found the same step (same name, PR and resource) still running.
    pub fn overlaps(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("overlaps")).ok()
    }

    /// Steps that were stopped with SIGTERM (by Gandalf, not reaped): `(unix ns, step-pr-resource)`.
    pub fn terms(&self) -> Vec<(u128, String)> {
        std::fs::read_to_string(self.dir.path().join("terms.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split('|');
                Some((f.next()?.parse().ok()?, f.next()?.to_string()))
            })
            .collect()
    }

    pub fn block(&self, key: &str) {
        std::fs::write(self.dir.path().join(format!("block-{key}")), "").unwrap();
    }

    pub fn unblock(&self, key: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(format!("block-{key}")));
    }

    /// Makes step `<step>-<pr>` print `output` (after its `output of …` line).
    pub fn say(&self, key: &str, output: &str) {
        std::fs::write(self.dir.path().join(format!("say-{key}")), output).unwrap();
    }

    /// Makes step `<step>-<pr>` fail once, then pass (a flaky test).
    pub fn fail_once(&self, key: &str) {
        std::fs::write(self.dir.path().join(format!("fail-once-{key}")), "").unwrap();
    }

    pub fn fail(&self, key: &str) {
        std::fs::write(self.dir.path().join(format!("fail-{key}")), "").unwrap();
    }

    pub fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() >= 7).then(|| Call {
                    at_ns: f[0].parse().unwrap_or(0),
                    start: f[1] == "start",
                    step: f[2].into(),
                    pr: f[3].into(),
                    resource: f[4].into(),
                    detail: f[5].into(),
                    resources: f[6].into(),
                    prs: f.get(10).copied().unwrap_or_default().into(),
                })
            })
            .collect()
    }

    /// The steps started, as `step pr resource`, in order.
    pub fn started(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.start)
            .map(|c| format!("{} {} {}", c.step, c.pr, c.resource))
            .collect()
    }

    /// Waits (boundedly) until `step pr resource` has started `n` times.
    pub async fn wait_for_start(&self, what: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let started = self.started();
            if started.iter().filter(|s| s.as_str() == what).count() >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never started {n}x: {started:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A resource map for `acme/platform`: `lib` (a package), `api` (needs `lib`), `web`.
pub const RESOURCE_MAP: &str = r#"
ignore = ["**/*.md", ".gandalf/**"]
unmapped = "none"

[[resource]]
name = "lib"
type = "package"
paths = ["lib/**"]
deploy = false

[[resource]]
name = "api"
type = "service"
paths = ["api/**"]
depends_on = ["lib"]

[[resource]]
name = "web"
type = "service"
paths = ["web/**"]
"#;
