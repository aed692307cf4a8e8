//! A throwaway Postgres for tests, and a fresh database per test.
//!
//! With `DATABASE_URL` set, tests create their databases on that server (the role needs CREATEDB).
//! Without it, the first test of a process starts a private server from the machine's PostgreSQL
//! binaries in a temporary directory, listening only on a Unix socket there (no port to collide
//! on). When run as root the server runs as an unprivileged user, as Postgres insists. The server
//! dies with the test process (`PR_SET_PDEATHSIG`), and directories left by dead runs are removed.
//!
//! Each test gets `CREATE DATABASE … TEMPLATE` of a database migrated once per process: fast, and
//! every test starts from the exact schema the bots run on.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

/// A database made for one test.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
}

struct Server {
    /// URL of the maintenance database, where `CREATE DATABASE` runs.
    admin_url: String,
    template: String,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();
/// A second private server, only for tests that stop and start Postgres ([`on_restartable_server`]):
/// every end-to-end test shares one process, and stopping the first server would break them all.
static RESTARTABLE: OnceCell<Server> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

tokio::task_local! {
    /// Set by [`on_restartable_server`]: databases made in this task come from [`RESTARTABLE`].
    static ON_RESTARTABLE: bool;
}

/// Runs `test` with every [`fresh_database`] it makes on a private server of its own, which
/// [`stop_server`] and [`start_server`] stop and start without touching any other test's.
pub async fn on_restartable_server<F: std::future::Future>(test: F) -> F::Output {
    ON_RESTARTABLE.scope(true, test).await
}

/// A new, migrated, empty database.
pub async fn fresh_database() -> TestDb {
    let server = if ON_RESTARTABLE.try_with(|r| *r).unwrap_or(false) {
        RESTARTABLE
            .get_or_init(|| async {
                // With DATABASE_URL the tests cannot restart the server: they see it in
                // `can_restart_server` and skip.
                if std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()).is_some() {
                    return init().await;
                }
                let admin_url = tokio::task::spawn_blocking(|| start_private_server("restartable"))
                    .await
                    .expect("start Postgres");
                prepare(admin_url).await
            })
            .await
    } else {
        SERVER.get_or_init(init).await
    };
    let name = format!("t{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = PgConnection::connect(&server.admin_url)
        .await
        .expect("connect to the test Postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {}",
        server.template
    )))
    .execute(&mut admin)
    .await
    .expect("create a test database");
    admin.close().await.ok();
    TestDb {
        url: with_database(&server.admin_url, &name),
        name,
    }
}

async fn init() -> Server {
    let admin_url = match std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()) {
        Some(url) => url,
        None => tokio::task::spawn_blocking(|| start_private_server("main"))
            .await
            .expect("start Postgres"),
    };
    prepare(admin_url).await
}

/// Makes the migrated template database on the server at `admin_url`.
async fn prepare(admin_url: String) -> Server {
    let template = format!("tmpl{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres ({}): {e}", redact(&admin_url)));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {template}")))
        .execute(&mut admin)
        .await
        .expect("drop an old template");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {template}")))
        .execute(&mut admin)
        .await
        .expect("create the template database");
    admin.close().await.ok();
    let mut conn = PgConnection::connect(&with_database(&admin_url, &template))
        .await
        .expect("connect to template");
    shared::db::MIGRATOR
        .run(&mut conn)
        .await
        .expect("migrate the template database");
    // Nobody may stay connected to a template while databases are copied from it.
    conn.close().await.ok();
    Server { admin_url, template }
}

/// Replaces the database name in a Postgres URL.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable DATABASE_URL>".into(),
    }
}

/// Where the PostgreSQL server binaries are: `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`, or `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(PathBuf::from)
        .find(|d| has_server(d))
}

const INSTALL_HINT: &str = "PostgreSQL's server binaries (initdb, postgres) were not found. Install them \
    (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`) or point the tests \
    at a server with DATABASE_URL=postgres://user:pass@host/db (the role needs CREATEDB).";

/// The uid/gid the server runs as: ourselves, or an unprivileged user when we are root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    };
    Some(find("postgres").or_else(|| find("nobody")).unwrap_or((65534, 65534)))
}

fn chown(path: &Path, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown the Postgres directory");
    }
}

/// Removes directories of earlier runs whose process is gone.
fn sweep_stale(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pg-"))
            .and_then(|p| p.split('-').next()?.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts a private server (`tag` names it among this process's); returns its admin URL. The
/// `restartable` one is remembered for [`stop_server`] and [`start_server`].
fn start_private_server(tag: &str) -> String {
    let bindir = find_bindir().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
    let root = std::env::temp_dir().join("bobby-gandalf-tests");
    std::fs::create_dir_all(&root).expect("create the test temp root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).ok();
    sweep_stale(&root);
    let dir = root.join(format!("pg-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the Postgres directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok();
    let ids = server_user();
    chown(&dir, ids);
    let data = dir.join("data");

    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = ids {
        initdb.uid(uid).gid(gid);
    }
    let out = initdb
        .output()
        .unwrap_or_else(|e| panic!("cannot run initdb: {e}. {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = PrivateServer {
        bindir,
        data,
        socket_dir: dir.clone(),
        ids,
    };
    server.spawn().unwrap_or_else(|e| panic!("{e}"));
    if tag == "restartable" {
        let _ = PRIVATE.set(server);
    }
    let socket = url_encode(dir.to_str().unwrap());
    format!("postgres://postgres@localhost/postgres?host={socket}")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// --- Restarting the private server (for the fault tests) -------------------------------------

/// The restartable private server this process started: what it takes to start it again.
struct PrivateServer {
    bindir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    ids: Option<(u32, u32)>,
}

static PRIVATE: std::sync::OnceLock<PrivateServer> = std::sync::OnceLock::new();

impl PrivateServer {
    /// Starts `postgres` on the data directory and waits until it accepts connections.
    fn spawn(&self) -> Result<(), String> {
        // The server is spawned from a thread that lives as long as the process, because the parent
        // death signal fires when the spawning *thread* exits.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (bindir, data, socket_dir, ids) = (
            self.bindir.clone(),
            self.data.clone(),
            self.socket_dir.clone(),
            self.ids,
        );
        std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || {
                let mut cmd = Command::new(bindir.join("postgres"));
                cmd.args([
                    "-D",
                    data.to_str().unwrap(),
                    "-k",
                    socket_dir.to_str().unwrap(),
                    "-h",
                    "",
                ])
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args([
                    "-c",
                    "max_connections=500",
                    "-c",
                    "shared_buffers=128MB",
                    "-c",
                    "log_min_messages=warning",
                ])
                .args(["-c", "logging_collector=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
                if let Some((uid, gid)) = ids {
                    cmd.uid(uid).gid(gid);
                }
                // SAFETY: prctl is async-signal-safe; this runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                        Ok(())
                    });
                }
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start postgres: {e}")));
                        return;
                    }
                };
                let stderr = child.stderr.take().expect("piped stderr");
                let mut said_ready = false;
                let mut log = Vec::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if !said_ready {
                        if line.contains("ready to accept connections") {
                            said_ready = true;
                            let _ = ready_tx.send(Ok(()));
                        } else {
                            log.push(line);
                        }
                    }
                }
                if !said_ready {
                    let _ = ready_tx.send(Err(format!("postgres exited before it was ready:\n{}", log.join("\n"))));
                }
                let _ = child.wait();
            })
            .expect("spawn the Postgres thread");
        match ready_rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => Err("postgres did not become ready within 60 s".into()),
        }
    }
}

/// How [`stop_server`] stops Postgres (`pg_ctl stop -m …`, as signals to the postmaster).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgStop {
    /// SIGINT: running transactions are rolled back, connections closed, a clean shutdown.
    Fast,
    /// SIGQUIT: everything dies at once, as in a crash; the next start recovers from the WAL.
    Immediate,
}

/// Whether this process runs its own Postgres (which [`stop_server`] can stop), rather than one
/// named by `DATABASE_URL`. Call after [`fresh_database`].
pub fn can_restart_server() -> bool {
    PRIVATE.get().is_some()
}

/// Stops the private test server, and waits until it is gone: every database of this test
/// process becomes unreachable until [`start_server`]. Panics when the tests run against a server
/// of `DATABASE_URL` (see [`can_restart_server`]).
pub async fn stop_server(how: PgStop) {
    let server = PRIVATE.get().expect("the tests run their own Postgres");
    let pid_file = server.data.join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse().ok())
        .expect("the postmaster's pid");
    let signal = match how {
        PgStop::Fast => libc::SIGINT,
        PgStop::Immediate => libc::SIGQUIT,
    };
    // SAFETY: kill(2) on the postmaster this process started.
    unsafe { libc::kill(pid, signal) };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    // The spawning thread reaps it; until then it is a zombie, which kill(pid, 0) still finds.
    // SAFETY: signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "postgres did not stop within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts the private test server again on the same data directory and socket, after
/// [`stop_server`]; returns when it accepts connections.
pub async fn start_server() {
    tokio::task::spawn_blocking(|| PRIVATE.get().expect("the tests run their own Postgres").spawn())
        .await
        .expect("start Postgres")
        .unwrap_or_else(|e| panic!("{e}"));
}
