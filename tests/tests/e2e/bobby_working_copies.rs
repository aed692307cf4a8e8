//! Bobby's working copies end to end (SPEC §4.5, §4.6, §5.8): a deploy's steps run in a copy of
//! exactly the deployed commit, shared by its steps and removed afterwards, with a complete change
//! list however many files changed; Nightly's create steps run in a copy of the base tip; a copy
//! that cannot be had fails the deploy (or faults the environment) with the reason.
//!
//! The repository is a real git repository in the test's temporary directory, made with the `git`
//! CLI; Bobby clones it through `checkout = { clone_url = "file://…" }`, or with `checkout = true`
//! through the `clone_url` the GitHub stub reports for it. GitHub is a small stub
//! over that same repository ([`GitHubOverGit`]): the shared fake keeps commits of its own that git
//! cannot fetch, so refs, contents and compares are answered here from git itself, the way GitHub
//! answers them (the compare lists files on its first page only, at most 300).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bg_tests::{BOBBY_TOML, BobbyOptions, MoreOptions, TestBobby, git, nightly_toml, spawn_bobby_with};
use serde_json::{Value, json};

const REPO: &str = "acme/platform";
const ALICE: &str = "U0ALICE";
const TOKEN: &str = bg_tests::fake_github::TOKEN;

const MAP: &str = r#"
ignore = ["**/*.md", ".gandalf/**"]

[[resource]]
name = "core"
type = "package"
paths = ["core/**"]
deploy = false

[[resource]]
name = "api"
type = "service"
paths = ["api/**"]
depends_on = ["core"]

[[resource]]
name = "web"
type = "service"
paths = ["web/**"]
depends_on = ["api"]

[[resource]]
name = "bulk"
type = "service"
paths = ["bulk/**"]

[[resource]]
name = "worker"
type = "service"
paths = ["worker/**"]
"#;

/// A repository with `main` (the map and one file per resource) and `feature`, which changes
/// `api/` and adds `api/new.txt`. Returns the tips of (main, feature).
fn repository(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    for (path, text) in [
        (".gandalf/resources.toml", MAP),
        ("core/lib.rs", "core"),
        ("api/main.rs", "api"),
        ("web/index.html", "web"),
        ("bulk/f000.txt", "bulk"),
        ("worker/main.rs", "worker"),
        ("README.md", "hello"),
    ] {
        write(dir, path, text);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "main"]);
    let main = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "-b", "feature"]);
    write(dir, "api/main.rs", "api v2");
    write(dir, "api/new.txt", "only on feature");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "feature"]);
    let feature = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "main"]);
    (main, feature)
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The slice of GitHub's REST API Bobby's deploys and Nightly read, answered from a real git
/// repository: refs, commits, contents at a commit, the repository's `clone_url`, and the
/// three-dot compare with GitHub's limits (files on the first page only, 300 at most).
#[derive(Clone)]
struct GitHubOverGit {
    repo: PathBuf,
    compares: Arc<AtomicUsize>,
}

impl GitHubOverGit {
    async fn start(repo: &Path) -> (String, GitHubOverGit) {
        let stub = GitHubOverGit {
            repo: repo.to_path_buf(),
            compares: Arc::default(),
        };
        let app = Router::new()
            .route("/repos/{o}/{r}", axum::routing::get(repository_info))
            .route("/repos/{o}/{r}/git/ref/heads/{*branch}", axum::routing::get(get_ref))
            .route("/repos/{o}/{r}/commits/{reference}", axum::routing::get(get_commit))
            .route("/repos/{o}/{r}/contents/{*path}", axum::routing::get(contents))
            .route("/repos/{o}/{r}/compare/{basehead}", axum::routing::get(compare))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (url, stub)
    }

    /// git's answer, or `None` when git says no (an unknown ref, a missing file).
    fn git(&self, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&self.repo)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn commit(&self, reference: &str) -> Option<String> {
        self.git(&["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")])
            .map(|s| s.trim().to_string())
    }
}

type RepoPath = (String, String);

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" })),
    )
        .into_response()
}

fn known(o: &str, r: &str) -> bool {
    format!("{o}/{r}") == REPO
}

async fn repository_info(State(s): State<GitHubOverGit>, UrlPath((o, r)): UrlPath<RepoPath>) -> Response {
    if !known(&o, &r) {
        return not_found();
    }
    Json(json!({
        "full_name": REPO,
        "default_branch": "main",
        "clone_url": format!("file://{}", s.repo.display()),
    }))
    .into_response()
}

async fn get_ref(
    State(s): State<GitHubOverGit>,
    UrlPath((o, r, branch)): UrlPath<(String, String, String)>,
) -> Response {
    match s.commit(&format!("refs/heads/{branch}")).filter(|_| known(&o, &r)) {
        Some(sha) => Json(json!({ "ref": format!("refs/heads/{branch}"), "object": { "sha": sha, "type": "commit" } }))
            .into_response(),
        None => not_found(),
    }
}

async fn get_commit(
    State(s): State<GitHubOverGit>,
    UrlPath((o, r, reference)): UrlPath<(String, String, String)>,
) -> Response {
    match s.commit(&reference).filter(|_| known(&o, &r)) {
        Some(sha) => Json(json!({ "sha": sha })).into_response(),
        None => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "message": format!("No commit found for SHA: {reference}") })),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct RefQuery {
    #[serde(rename = "ref")]
    at: Option<String>,
}

async fn contents(
    State(s): State<GitHubOverGit>,
    UrlPath((o, r, path)): UrlPath<(String, String, String)>,
    Query(q): Query<RefQuery>,
) -> Response {
    let at = q.at.unwrap_or_else(|| "main".into());
    match s.git(&["show", &format!("{at}:{path}")]).filter(|_| known(&o, &r)) {
        Some(text) => Json(json!({
            "type": "file",
            "path": path,
            "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode(text),
        }))
        .into_response(),
        None => not_found(),
    }
}

async fn compare(
    State(s): State<GitHubOverGit>,
    UrlPath((o, r, basehead)): UrlPath<(String, String, String)>,
) -> Response {
    s.compares.fetch_add(1, Ordering::SeqCst);
    let Some((base, head)) = basehead.split_once("...") else {
        return not_found();
    };
    let (Some(base), Some(head)) = (s.commit(base), s.commit(head)) else {
        return not_found();
    };
    if !known(&o, &r) {
        return not_found();
    }
    let mb = s.git(&["merge-base", &base, &head]).unwrap_or_default();
    let names = s
        .git(&["diff", "--name-only", "--no-renames", mb.trim(), &head])
        .unwrap_or_default();
    // As GitHub: at most 300 files for the whole comparison.
    let files: Vec<Value> = names
        .lines()
        .take(300)
        .map(|f| json!({ "filename": f, "status": "modified" }))
        .collect();
    Json(json!({ "status": "ahead", "files": files, "commits": [] })).into_response()
}

/// The step script: logs, per call, the step, its resource, `BOBBY_SHA`, where it ran, that
/// directory's `HEAD`, whether the branch's file is there, how many files under `.git` and how
/// many environment variables hold the token, `BOBBY_RESOURCES`, and (for deploy steps) what the
/// build steps left in the directory.
fn step_script(dir: &Path) -> PathBuf {
    let log = dir.join("calls.log");
    let mirror = dir.join("state/mirrors/acme/platform.git");
    let script = format!(
        r#"if [ "$BOBBY_STEP" = build ]; then touch "built-$BOBBY_RESOURCE"; fi
built=$(ls built-* 2>/dev/null | tr '\n' ' ')
leaks=$(grep -rl {TOKEN} .git 2>/dev/null | wc -l)
envleaks=$(env | grep -c {TOKEN})
mirror=$( (touch {mirror}/planted && echo writable) 2>/dev/null || echo read-only)
echo "$BOBBY_STEP|${{BOBBY_RESOURCE:--}}|$BOBBY_SHA|$(pwd)|$(git rev-parse HEAD 2>&1)|$(test -f api/new.txt && echo present || echo missing)|$leaks|$envleaks|$BOBBY_RESOURCES|$built|$(id -u)|$mirror" >> {log}
"#,
        log = log.display(),
        mirror = mirror.display()
    );
    let path = dir.join("step.sh");
    std::fs::write(&path, script).unwrap();
    path
}

#[derive(Debug)]
struct Call {
    step: String,
    resource: String,
    sha: String,
    pwd: String,
    head: String,
    branch_file: String,
    git_leaks: String,
    env_leaks: String,
    resources: String,
    built: String,
    uid: String,
    mirror: String,
}

fn calls(dir: &Path) -> Vec<Call> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        // A step that failed half-way (git's error spans lines) leaves short lines: missing
        // fields read as empty, so the assertions below say what went wrong.
        .filter(|l| l.contains('|'))
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let at = |i: usize| f.get(i).copied().unwrap_or("").trim().to_string();
            Call {
                step: at(0),
                resource: at(1),
                sha: at(2),
                pwd: at(3),
                head: at(4),
                branch_file: at(5),
                git_leaks: at(6),
                env_leaks: at(7),
                resources: at(8),
                built: at(9),
                uid: at(10),
                mirror: at(11),
            }
        })
        .collect()
}

struct Setup {
    app: TestBobby,
    dir: tempfile::TempDir,
    github: GitHubOverGit,
    main: String,
    feature: String,
}

impl Setup {
    fn repo(&self) -> PathBuf {
        self.dir.path().join("platform")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    async fn say(&self, user: &str, text: &str) -> String {
        let a = self.app.command(user, text).await;
        assert_eq!(a.status, 200);
        self.app.settle(user, a).await.text()
    }

    async fn wait_for_deploy_end(&self, env: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let e = self.app.environment(env).await;
            if let Some(state) = e["deploy"]["state"].as_str()
                && state != "running"
            {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the deploy to {env} never ended: {e:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Bobby with the test repository and `checkout` as given (`None`: the repository itself by
/// `file://`). `deploy` adds a `[deploy]` table, `nightly_extra` goes into `[nightly]`.
async fn setup(clone_url: Option<&str>, nightly_extra: &str, create_steps: bool) -> Setup {
    setup_with(clone_url, nightly_extra, create_steps, "").await
}

/// As [`setup`], with `top` (top-level keys) at the head of the config.
async fn setup_with(clone_url: Option<&str>, nightly_extra: &str, create_steps: bool, top: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("platform");
    let (main, feature) = repository(&repo);
    let script = step_script(dir.path());
    let (api, github) = GitHubOverGit::start(&repo).await;
    let url = clone_url.map_or_else(|| format!("file://{}", repo.display()), str::to_string);
    let step = format!("sh {}", script.display());
    let creates: Vec<(&str, String)> = if create_steps {
        vec![("rebuild", step.clone()), ("seed", step.clone())]
    } else {
        vec![]
    };
    let nightly_extra = nightly_extra.replace("{url}", &url);
    let base = nightly_toml(&nightly_extra, &[("scorch", "true".into())], &creates);
    assert!(base.starts_with(BOBBY_TOML));
    // `state_dir` is a top-level key: it goes before every table.
    let config = format!(
        "{top}state_dir = \"{}\"\n{base}\n[deploy]\nrepo = \"{REPO}\"\nbase = \"main\"\ncheckout = {{ clone_url = \"{url}\" }}\n\
         step_timeout = \"30s\"\n[deploy.pipeline]\nbuild = \"{step}\"\ndeploy = \"{step}\"\ntest = \"{step}\"\n",
        dir.path().join("state").display()
    );
    let app = spawn_bobby_with(BobbyOptions {
        config,
        more: MoreOptions {
            github_api_url: Some(api),
            base_dir: Some(dir.path().to_path_buf()),
        },
        ..Default::default()
    })
    .await;
    Setup {
        app,
        dir,
        github,
        main,
        feature,
    }
}

#[tokio::test]
async fn a_deploy_runs_in_a_copy_of_exactly_the_deployed_commit_shared_by_its_steps_and_removed_after() {
    let s = setup(None, "", false).await;
    // A copy a crashed Bobby left is gone once Bobby has started.
    assert!(!s.state().join("copies").exists() || std::fs::read_dir(s.state().join("copies")).unwrap().count() == 0);

    s.say(ALICE, "lock env-4").await;
    let answer = s.say(ALICE, "deploy env-4 feature").await;
    assert!(answer.contains("Deploying `feature`"), "{answer}");
    let e = s.wait_for_deploy_end("env-4").await;
    assert_eq!(e["deploy"]["state"], "succeeded", "{e:#}");
    assert_eq!(e["deploy"]["sha"], s.feature.as_str());

    let calls = calls(s.dir.path());
    let order: Vec<String> = calls.iter().map(|c| format!("{} {}", c.step, c.resource)).collect();
    assert_eq!(
        order,
        [
            "build core",
            "build api",
            "build web",
            "deploy api",
            "deploy web",
            "test -"
        ],
        "the change list is feature's, read from git"
    );
    let copy = &calls[0].pwd;
    let copies = s.state().join("copies");
    assert!(
        Path::new(copy).starts_with(&copies),
        "steps run in a working copy under state_dir ({copy})"
    );
    for c in &calls {
        assert_eq!(&c.pwd, copy, "one copy shared by all the deploy's steps: {c:?}");
        assert_eq!(c.head, s.feature, "HEAD is exactly the deployed commit: {c:?}");
        assert_eq!(c.sha, s.feature, "BOBBY_SHA names it: {c:?}");
        assert_eq!(c.branch_file, "present", "the branch's files are there: {c:?}");
        assert_eq!(c.git_leaks, "0", "no file under the copy's .git holds the token: {c:?}");
        assert_eq!(c.env_leaks, "0", "no variable of the step holds the token: {c:?}");
    }
    let deploys: Vec<&Call> = calls.iter().filter(|c| c.step == "deploy").collect();
    assert!(
        deploys.iter().all(|c| c.built == "built-api built-core built-web"),
        "what the build steps made is there for the deploy steps: {deploys:?}"
    );
    assert!(!Path::new(copy).exists(), "the copy is removed when the deploy ends");
    let mirror_config = std::fs::read_to_string(s.state().join("mirrors/acme/platform.git/config")).unwrap();
    assert!(!mirror_config.contains(TOKEN), "the mirror's config holds no token");
    assert_eq!(
        s.github.compares.load(Ordering::SeqCst),
        0,
        "with a checkout the change list comes from git, not GitHub's compare"
    );
    assert_ne!(s.main, s.feature);
}

/// With `step_user`, the copy is handed to that user: its steps build in it and read its history
/// (through the mirror's objects), but cannot write the mirror.
#[tokio::test]
async fn with_step_user_the_steps_own_their_copy_but_not_the_mirror() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: steps cannot run as another user here; step_user was not exercised");
        return;
    }
    let s = setup_with(None, "", false, "step_user = \"nobody\"\n").await;
    // The step user reaches the script, its log and state_dir (made by Bobby, 0755), not more.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(s.dir.path().join("calls.log"), "").unwrap();
    std::fs::set_permissions(s.dir.path().join("calls.log"), std::fs::Permissions::from_mode(0o666)).unwrap();

    s.say(ALICE, "lock env-4").await;
    s.say(ALICE, "deploy env-4 feature").await;
    let e = s.wait_for_deploy_end("env-4").await;
    assert_eq!(e["deploy"]["state"], "succeeded", "{e:#}");
    let calls = calls(s.dir.path());
    assert_eq!(calls.len(), 6, "{calls:?}");
    for c in &calls {
        assert_ne!(c.uid, "0", "the step ran as nobody: {c:?}");
        assert_eq!(c.head, s.feature, "git works for the step user in its copy: {c:?}");
        assert_eq!(c.mirror, "read-only", "the step cannot write the mirror: {c:?}");
    }
    let deploys: Vec<&Call> = calls.iter().filter(|c| c.step == "deploy").collect();
    assert!(
        deploys.iter().all(|c| c.built == "built-api built-core built-web"),
        "the step user could build in its copy: {deploys:?}"
    );
    assert!(
        !Path::new(&calls[0].pwd).exists(),
        "the copy is removed, whoever owns it"
    );
}

#[tokio::test]
async fn a_deploy_plans_from_every_changed_file_past_githubs_300() {
    let s = setup(None, "", false).await;
    // 400 files under bulk/, then one under worker/: sorted, the worker file is the 401st, past
    // anything GitHub's compare would list.
    let repo = s.repo();
    git(&repo, &["checkout", "--quiet", "-b", "big"]);
    for i in 1..=400 {
        write(&repo, &format!("bulk/f{i:03}.txt"), "changed");
    }
    write(&repo, "worker/zz.rs", "the deciding file");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "big"]);
    let big = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    let names = git(&repo, &["diff", "--name-only", &s.main, &big]);
    assert_eq!(names.lines().count(), 401);
    assert_eq!(names.lines().last(), Some("worker/zz.rs"));

    let dry = s.say(ALICE, "deploy env-4 big --dry-run").await;
    assert!(dry.contains("worker") && dry.contains("bulk"), "{dry}");
    assert!(
        !dry.contains("api"),
        "only what changed is planned, not everything: {dry}"
    );

    s.say(ALICE, "lock env-4").await;
    s.say(ALICE, "deploy env-4 big").await;
    let e = s.wait_for_deploy_end("env-4").await;
    assert_eq!(e["deploy"]["state"], "succeeded", "{e:#}");
    let calls = calls(s.dir.path());
    let mut order: Vec<String> = calls.iter().map(|c| format!("{} {}", c.step, c.resource)).collect();
    // bulk and worker build in parallel (one level): in either order.
    order[..2].sort();
    assert_eq!(
        order,
        ["build bulk", "build worker", "deploy bulk", "deploy worker", "test -"]
    );
    assert!(calls.iter().all(|c| c.resources == "bulk worker"), "{calls:?}");
    assert!(calls.iter().all(|c| c.head == big));
    assert_eq!(s.github.compares.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_deploy_whose_copy_cannot_be_had_fails_with_the_reason() {
    let s = setup(Some("file:///nonexistent/platform.git"), "", false).await;
    s.say(ALICE, "lock env-4").await;
    s.say(ALICE, "deploy env-4 feature").await;
    let e = s.wait_for_deploy_end("env-4").await;
    assert_eq!(e["deploy"]["state"], "failed", "{e:#}");
    assert!(calls(s.dir.path()).is_empty(), "no step ran");
    let slack = &s.app.slack;
    slack
        .wait_until("the failure in the thread", Duration::from_secs(30), |sl| {
            sl.posts_to("C0DEV").iter().any(|p| p.thread_ts.is_some())
        })
        .await;
    let thread = slack
        .posts_to("C0DEV")
        .into_iter()
        .find(|p| p.thread_ts.is_some())
        .unwrap();
    let text = format!("{}{}", thread.text, thread.block_text());
    assert!(
        text.contains("checkout") && text.contains("git fetch failed") && text.contains("/nonexistent/platform.git"),
        "the reason is told: {text}"
    );
}

#[tokio::test]
async fn nightly_create_steps_run_in_a_copy_of_the_base_tip() {
    // `checkout = true`: the clone URL is the one GitHub reports for the repository.
    let extra = format!("repo = \"{REPO}\"\nbase = \"main\"\ncheckout = true");
    let s = setup(None, &extra, true).await;
    manual_run(&s.app, "nightly run delete env-1").await;
    assert_eq!(s.app.environment("env-1").await["state"], "deleted");
    assert!(
        calls(s.dir.path()).is_empty(),
        "delete steps run `true` in the config's directory"
    );
    manual_run(&s.app, "nightly run create env-1").await;
    let e = s.app.environment("env-1").await;
    assert_eq!(e["state"], "ready", "{e:#}");

    let calls = calls(s.dir.path());
    assert_eq!(calls.len(), 2, "{calls:?}");
    let copy = &calls[0].pwd;
    assert!(Path::new(copy).starts_with(s.state().join("copies")), "{copy}");
    let steps: Vec<&str> = calls.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(steps, ["rebuild", "seed"]);
    for c in &calls {
        assert_eq!(&c.pwd, copy, "one copy for the environment's create steps");
        assert_eq!(c.head, s.main, "HEAD is main's tip: {c:?}");
        assert_eq!(c.sha, c.head, "BOBBY_SHA names HEAD");
        assert_eq!(c.branch_file, "missing", "main's files, not feature's");
        assert_eq!(c.env_leaks, "0");
        assert_eq!(c.git_leaks, "0");
    }
    assert!(
        !Path::new(copy).exists(),
        "the copy is removed when the environment's run ends"
    );
}

#[tokio::test]
async fn nightly_faults_an_environment_whose_copy_cannot_be_had() {
    let extra = format!("repo = \"{REPO}\"\ncheckout = {{ clone_url = \"{{url}}\" }}");
    let s = setup(Some("file:///nonexistent/platform.git"), &extra, true).await;
    manual_run(&s.app, "nightly run delete env-1").await;
    manual_run(&s.app, "nightly run create env-1").await;
    let e = s.app.environment("env-1").await;
    assert_eq!(e["state"], "faulted", "{e:#}");
    assert_eq!(e["fault"]["step"], "rebuild");
    let tail = e["fault"]["log_tail"].as_str().unwrap();
    assert!(
        tail.contains("git fetch failed") && tail.contains("/nonexistent/platform.git"),
        "{tail}"
    );
    assert!(calls(s.dir.path()).is_empty(), "no create step ran");
}

#[tokio::test]
async fn steps_that_do_not_see_the_code_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\nrepo = \"{REPO}\"\n[deploy]\nrepo = \"{REPO}\"\n[deploy.pipeline]\nbuild = \"true\"\ndeploy = \"true\"\n",
        BOBBY_TOML.trim_end()
    );
    let app = spawn_bobby_with(BobbyOptions {
        config,
        more: MoreOptions {
            github_api_url: None,
            base_dir: Some(dir.path().to_path_buf()),
        },
        ..Default::default()
    })
    .await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body = ready.text().await.unwrap();
    assert!(
        body.contains("[deploy] names no `checkout`") && body.contains("[nightly] names a repo but no `checkout`"),
        "{body}"
    );
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("do not see the code"), "the control center says so too");
}

/// An admin asks for a manual Nightly run and waits until it has ended (no step here backs off).
async fn manual_run(app: &TestBobby, text: &str) {
    let r = app.command("U0ADMIN1", text).await;
    let r = app.settle("U0ADMIN1", r).await.text();
    let id: i64 = r
        .split("run #")
        .nth(1)
        .unwrap_or_else(|| panic!("no run id in {r}"))
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state: String = sqlx::query_scalar("SELECT state FROM nightly_runs WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if matches!(state.as_str(), "finished" | "interrupted" | "skipped") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run #{id} did not end ({state})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
