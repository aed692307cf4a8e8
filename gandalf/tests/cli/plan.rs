//! `gandalf plan` as a user runs it: the built binary, on real git repositories made by the test,
//! with an empty environment (no database, no config file, no variables but `PATH`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const MAP: &str = r#"
ignore = ["docs/**", "**/*.md"]

[[resource]]
name = "common"
type = "package"
paths = ["libs/common/**"]

[[resource]]
name = "api"
type = "service"
paths = ["services/api/**"]
depends_on = ["common"]

[[resource]]
name = "legacy"
type = "service"
paths = ["services/legacy/**"]
depends_on = ["common"]
enabled = false

[[resource]]
name = "web"
type = "service"
paths = ["services/web/**"]
depends_on = ["legacy"]

[[resource]]
name = "jobs"
type = "job"
paths = ["jobs/**"]
"#;

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Repo {
    /// A repository with the map and one file per resource on `main`.
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("repo");
        fs::create_dir(&path).unwrap();
        let repo = Repo { _dir: dir, path };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.write(".gandalf/resources.toml", MAP);
        for f in [
            "libs/common/lib.rs",
            "services/api/main.rs",
            "services/api/old_name.rs",
            "services/legacy/main.rs",
            "services/web/app.js",
            "jobs/nightly.sh",
            "docs/guide.txt",
            "README.md",
        ] {
            repo.write(f, "v1\n");
        }
        repo.commit("base");
        repo
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&self.path)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", message]);
    }
}

/// Runs the binary with nothing in the environment but `PATH` (git must be found).
fn gandalf(cwd: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gandalf"));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("gandalf starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "exactly one line of JSON: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr(out)
}

const MAP_PATH: &str = ".gandalf/resources.toml";

#[test]
fn base_and_head_plan_the_pull_request_not_the_base_branch() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    repo.write("libs/common/lib.rs", "v2\n");
    repo.commit("change common");
    // Meanwhile on main: a change to jobs, which is not part of the pull request.
    repo.git(&["checkout", "--quiet", "main"]);
    repo.write("jobs/nightly.sh", "v2\n");
    repo.commit("change jobs on main");

    let out = gandalf(
        &repo.path,
        &[
            "plan", "--map", MAP_PATH, "--base", "main", "--head", "feature", "--json",
        ],
        None,
    );
    assert_eq!(
        json_of(&out),
        json!({
            "all": false,
            "affected": ["api", "common", "web"],
            "levels": [["common"], ["api", "web"]],
            "deploy": ["api", "web"],
            "unmapped": []
        })
    );
    // The object has exactly the five keys of the spec, in the spec's order.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(r#"{"all":false,"affected":"#), "{text}");
}

#[test]
fn renames_count_as_both_paths_and_deletions_count() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    // A rename from api to jobs: both resources lose or gain a file.
    fs::create_dir_all(repo.path.join("jobs/moved")).unwrap();
    repo.git(&["mv", "services/api/old_name.rs", "jobs/moved/new_name.rs"]);
    repo.git(&["rm", "--quiet", "services/web/app.js"]);
    repo.commit("move and delete");
    let out = gandalf(
        &repo.path,
        &[
            "plan", "--map", MAP_PATH, "--base", "main", "--head", "feature", "--json",
        ],
        None,
    );
    let plan = json_of(&out);
    assert_eq!(plan["affected"], json!(["api", "jobs", "web"]));
    assert_eq!(plan["levels"], json!([["common", "jobs"], ["api", "web"]]));
    assert_eq!(plan["deploy"], json!(["jobs", "api", "web"]));
}

#[test]
fn unmapped_files_make_everything_affected_and_ignored_ones_count_for_nothing() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    repo.write("docs/guide.txt", "v2\n");
    repo.write("services/api/README.md", "v2\n");
    repo.commit("docs only");
    let out = gandalf(
        &repo.path,
        &[
            "plan", "--map", MAP_PATH, "--base", "main", "--head", "feature", "--json",
        ],
        None,
    );
    assert_eq!(
        json_of(&out),
        json!({"all": false, "affected": [], "levels": [], "deploy": [], "unmapped": []})
    );

    repo.write("Makefile", "all:\n");
    repo.commit("a file nobody claims");
    let out = gandalf(
        &repo.path,
        &[
            "plan", "--map", MAP_PATH, "--base", "main", "--head", "feature", "--json",
        ],
        None,
    );
    assert_eq!(
        json_of(&out),
        json!({
            "all": true,
            "affected": ["api", "common", "jobs", "web"],
            "levels": [["common", "jobs"], ["api", "web"]],
            "deploy": ["jobs", "api", "web"],
            "unmapped": ["Makefile"]
        })
    );
}

#[test]
fn repo_and_map_paths_are_independent_of_each_other() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    repo.write("services/web/app.js", "v2\n");
    repo.commit("web");
    // Run from the temp dir's root: --map is relative to the current directory, --repo says
    // where the repository is.
    let cwd = repo.path.parent().unwrap();
    let out = gandalf(
        cwd,
        &[
            "plan",
            "--map",
            "repo/.gandalf/resources.toml",
            "--repo",
            "repo",
            "--base",
            "main",
            "--head",
            "feature",
            "--json",
        ],
        None,
    );
    let plan = json_of(&out);
    assert_eq!(plan["affected"], json!(["web"]));
    assert_eq!(
        plan["levels"],
        json!([["common"], ["web"]]),
        "web builds common through the disabled legacy"
    );
    // Commits work as well as branch names.
    let base = repo.git(&["rev-parse", "main"]);
    let head = repo.git(&["rev-parse", "feature"]);
    let out = gandalf(
        &repo.path,
        &[
            "plan",
            "--map",
            MAP_PATH,
            "--base",
            base.trim(),
            "--head",
            head.trim(),
            "--json",
        ],
        None,
    );
    assert_eq!(json_of(&out)["affected"], json!(["web"]));
}

#[test]
fn the_human_form_shows_why_levels_and_deploys() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    repo.write("libs/common/lib.rs", "v2\n");
    repo.commit("common");
    let out = gandalf(
        &repo.path,
        &["plan", "--map", MAP_PATH, "--base", "main", "--head", "feature"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "1 changed file (0 ignored, 0 unmapped)",
        "Affected (3):",
        "common  changed: libs/common/lib.rs",
        "api     depends on common",
        "web     depends on common (through disabled legacy)",
        "level 0: common",
        "level 1: api, web",
        "Deploy (2): api, web",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn files_from_standard_input() {
    let repo = Repo::new();
    let input = "jobs/a.sh\n\njobs/a.sh\r\nlibs/common/x.rs\ndocs/x\n   \n";
    let out = gandalf(
        &repo.path,
        &["plan", "--map", MAP_PATH, "--files", "-", "--json"],
        Some(input),
    );
    assert_eq!(
        json_of(&out),
        json!({
            "all": false,
            "affected": ["api", "common", "jobs", "web"],
            "levels": [["common", "jobs"], ["api", "web"]],
            "deploy": ["jobs", "api", "web"],
            "unmapped": []
        })
    );
    // No input at all is a valid, empty change.
    let out = gandalf(
        &repo.path,
        &["plan", "--map", MAP_PATH, "--files", "-", "--json"],
        Some(""),
    );
    assert_eq!(
        json_of(&out),
        json!({"all": false, "affected": [], "levels": [], "deploy": [], "unmapped": []})
    );
    // And a file of paths works like standard input.
    repo.write("changes.txt", "services/api/x\n");
    let out = gandalf(
        &repo.path,
        &["plan", "--map", MAP_PATH, "--files", "changes.txt", "--json"],
        None,
    );
    assert_eq!(json_of(&out)["affected"], json!(["api"]));
}

#[test]
fn errors_exit_2_with_the_message_on_stderr() {
    let repo = Repo::new();
    let plan = |args: &[&str]| gandalf(&repo.path, args, Some(""));

    let err = fails(&plan(&[
        "plan",
        "--map",
        MAP_PATH,
        "--base",
        "main",
        "--head",
        "no-such-branch",
    ]));
    assert!(err.contains("unknown revision `no-such-branch`"), "{err}");
    let err = fails(&plan(&[
        "plan",
        "--map",
        MAP_PATH,
        "--base",
        "--output=x",
        "--head",
        "main",
    ]));
    assert!(!err.is_empty());
    let err = fails(&plan(&["plan", "--map", "missing.toml", "--files", "-"]));
    assert!(err.contains("missing.toml"), "{err}");
    let err = fails(&plan(&["plan", "--map", MAP_PATH]));
    assert!(err.contains("--files") && err.contains("--base"), "{err}");
    let err = fails(&plan(&["plan", "--map", MAP_PATH, "--base", "main"]));
    assert!(err.contains("--head"), "{err}");
    let err = fails(&plan(&[
        "plan", "--map", MAP_PATH, "--files", "-", "--base", "main", "--head", "main",
    ]));
    assert!(err.contains("cannot be used with"), "{err}");
    let err = fails(&plan(&["plan", "--files", "-"]));
    assert!(err.contains("--map"), "{err}");

    let not_a_repo = tempfile::tempdir().unwrap();
    let map = repo.path.join(MAP_PATH);
    let err = fails(&gandalf(
        not_a_repo.path(),
        &[
            "plan",
            "--map",
            map.to_str().unwrap(),
            "--base",
            "main",
            "--head",
            "main",
        ],
        None,
    ));
    assert!(err.contains("not a git repository"), "{err}");
}

#[test]
fn a_bad_map_is_reported_with_its_position() {
    let repo = Repo::new();
    let cases: &[(&str, &str)] = &[
        (
            "[[resource]]\nname = \"a\"\ntype = \"service\"\ndepends_on = [\"ghost\"]\n",
            "bad.toml:4:15: resource `a` depends on unknown resource `ghost`",
        ),
        (
            "[[resource]]\nname = \"a\"\ntype = \"x\"\ndepends_on = [\"b\"]\n[[resource]]\nname = \"b\"\ntype = \"x\"\ndepends_on = [\"a\"]\nenabled = false\n",
            "dependency cycle: a -> b -> a",
        ),
        (
            "[[resource]]\nname = \"a\"\ntype = \"x\"\n[[resource]]\nname = \"a\"\ntype = \"y\"\n",
            "duplicate resource name `a`",
        ),
        (
            "[[resource]]\nname = \"a\"\npaths = [\"a/**\"]\n",
            "missing field `type`",
        ),
        (
            "[[resource]]\nname = \"a\"\ntype = \"x\"\npath = [\"a/**\"]\n",
            "bad.toml:4:1: unknown field `path`",
        ),
        (
            "[[resource]]\nname = \"a\"\ntype = \"x\"\npaths = [\"a/{b\"]\n",
            "bad.toml:4:10: resource `a`: invalid glob",
        ),
        ("unmapped = \"sometimes\"\n", "bad.toml:1:12:"),
        ("this is not toml", "bad.toml:1:"),
    ];
    for (map, expected) in cases {
        repo.write("bad.toml", map);
        let err = fails(&gandalf(
            &repo.path,
            &["plan", "--map", "bad.toml", "--files", "-"],
            Some("a/x\n"),
        ));
        assert!(err.contains(expected), "expected {expected:?} in {err:?} for\n{map}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Every kind of glob the planner's index files differently, through the binary: literal
/// prefixes with a wildcard suffix, `**/name` anywhere, braces (expanded into several prefixes),
/// a character class, a negated class (left to globset), `*` at the root only, dotfiles.
#[test]
fn every_kind_of_glob_plans_the_same_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("map.toml"),
        r#"
ignore = ["docs/**", "**/*.md"]
unmapped = "none"
[[resource]]
name = "lib"
type = "package"
paths = ["libs/lib/**/*.rs", "libs/lib/**/Cargo.toml"]
[[resource]]
name = "k8s"
type = "infra"
paths = ["**/k8s/**", "**/Dockerfile"]
[[resource]]
name = "svc"
type = "service"
paths = ["{services,jobs}/svc/**", "proto/svc/*.{proto,json}"]
depends_on = ["lib"]
[[resource]]
name = "v"
type = "job"
paths = ["tools/v[0-9]/*", "odd/[!x]y", "*.toml", ".github/**"]
"#,
    )
    .unwrap();
    let plan = |files: &str| {
        json_of(&gandalf(
            dir.path(),
            &["plan", "--map", "map.toml", "--files", "-", "--json"],
            Some(files),
        ))
    };
    let only = |files: &str| plan(files)["affected"].clone();
    assert_eq!(only("libs/lib/src/a/b.rs\n"), json!(["lib", "svc"]));
    assert_eq!(only("libs/lib/Cargo.toml\n"), json!(["lib", "svc"]));
    assert_eq!(plan("libs/lib/data.bin\n")["unmapped"], json!(["libs/lib/data.bin"]));
    assert_eq!(only("deploy/k8s/a.yaml\nx/y/Dockerfile\n"), json!(["k8s"]));
    assert_eq!(only("k8s/a\n"), json!(["k8s"]));
    assert_eq!(only("jobs/svc/run.sh\n"), json!(["svc"]));
    assert_eq!(only("proto/svc/a.json\n"), json!(["svc"]));
    assert_eq!(
        plan("proto/svc/deeper/a.json\n")["unmapped"],
        json!(["proto/svc/deeper/a.json"])
    );
    assert_eq!(only("tools/v7/x\n"), json!(["v"]));
    assert_eq!(only("odd/éy\n"), json!(["v"]), "a negated class is one character");
    assert_eq!(only("odd/xy\n"), json!([]));
    assert_eq!(only("Cargo.toml\n.github/workflows/ci.yml\n"), json!(["v"]));
    assert_eq!(
        plan("sub/Cargo.toml\n")["unmapped"],
        json!(["sub/Cargo.toml"]),
        "`*` stays at the root"
    );
    assert_eq!(only("libs/lib/README.md\ndocs/k8s/x\n"), json!([]), "ignored");
}
