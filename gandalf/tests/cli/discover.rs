//! `gandalf resources discover` on small generated repositories (Cargo, npm/pnpm/yarn, Go,
//! Dockerfiles): what it finds, and that what it prints is a map `gandalf plan` accepts.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
}

fn gandalf(cwd: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gandalf"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gandalf starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs discover on `root`, checks it succeeded, writes the map next to the repository and
/// returns it as TOML and as text.
fn discover(root: &Path) -> (toml::Table, String) {
    let out = gandalf(
        root.parent().unwrap(),
        &["resources", "discover", "--repo", root.to_str().unwrap()],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    fs::write(root.parent().unwrap().join("map.toml"), &text).unwrap();
    (toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), text)
}

/// name → (type, paths, depends_on)
fn resources(map: &toml::Table) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    let list = map
        .get("resource")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    list.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                strings(r.get("paths")),
                strings(r.get("depends_on")),
            )
        })
        .collect()
}

fn find<'a>(
    list: &'a [(String, String, Vec<String>, Vec<String>)],
    name: &str,
) -> &'a (String, String, Vec<String>, Vec<String>) {
    list.iter()
        .find(|r| r.0 == name)
        .unwrap_or_else(|| panic!("no resource {name} in {list:?}"))
}

/// Plans a change with the discovered map.
fn plan(root: &Path, changed: &str) -> Value {
    let out = gandalf(
        root.parent().unwrap(),
        &["plan", "--map", "map.toml", "--files", "-", "--json"],
        Some(changed),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn repo() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    fs::create_dir(&root).unwrap();
    (dir, root)
}

#[test]
fn cargo_workspace_members_and_path_dependencies() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"crates/*\", \"apps/server\"]\nexclude = [\"crates/scratch\"]\n\n[workspace.dependencies]\ncommon = { path = \"crates/common\" }\nserde = \"1\"\n",
            ),
            ("Cargo.lock", "# lock\n"),
            (
                "crates/common/Cargo.toml",
                "[package]\nname = \"common\"\nversion = \"0.1.0\"\n\n[dev-dependencies]\nserver = { path = \"../../apps/server\" }\n",
            ),
            ("crates/common/src/lib.rs", ""),
            (
                "crates/util/Cargo.toml",
                "[package]\nname = \"util\"\nversion = \"0.1.0\"\n[dependencies]\ncommon = { path = \"../common\" }\nserde = { workspace = true }\n",
            ),
            ("crates/util/src/lib.rs", ""),
            // A fixture inside a member is not a member.
            (
                "crates/util/tests/fixture/Cargo.toml",
                "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\n",
            ),
            (
                "crates/scratch/Cargo.toml",
                "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\n",
            ),
            (
                "apps/server/Cargo.toml",
                "[package]\nname = \"server\"\nversion = \"0.1.0\"\n[dependencies]\ncommon.workspace = true\n[target.'cfg(unix)'.dependencies]\nutil = { path = \"../../crates/util\" }\n",
            ),
            ("apps/server/src/main.rs", "fn main() {}\n"),
            ("apps/server/Dockerfile", "FROM scratch\n"),
            // Cargo's build output is never a resource.
            ("target/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n"),
            ("target/debug/build/x/Cargo.toml", "[package]\nname = \"x\"\n"),
            ("README.md", "# hi\n"),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    assert_eq!(list.len(), 3, "{text}");
    assert_eq!(find(&list, "common").1, "package");
    assert_eq!(find(&list, "common").2, ["crates/common/**"]);
    assert!(find(&list, "common").3.is_empty(), "dev-dependencies are left out");
    assert_eq!(find(&list, "util").1, "package");
    assert_eq!(find(&list, "util").3, ["common"]);
    assert_eq!(find(&list, "server").1, "service", "a binary with a Dockerfile");
    assert_eq!(find(&list, "server").3, ["common", "util"]);
    assert!(
        text.contains("# Cargo package `server` (binary) + Dockerfile"),
        "{text}"
    );
    // Dependencies come first in the file.
    let names: Vec<&str> = list.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["common", "util", "server"]);

    let p = plan(&root, "crates/common/src/lib.rs\n");
    assert_eq!(p["affected"], json!(["common", "server", "util"]));
    assert_eq!(p["levels"], json!([["common"], ["util"], ["server"]]));
    assert_eq!(p["deploy"], json!(["server"]));
    // The lockfile and the workspace manifest are unclaimed: they affect everything.
    let p = plan(&root, "Cargo.lock\n");
    assert_eq!(p["all"], json!(true));
    let p = plan(&root, "README.md\n");
    assert_eq!(p["affected"], json!([]));
}

#[test]
fn npm_workspaces_and_their_dependencies() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            (
                "package.json",
                r#"{"name": "monorepo", "private": true, "workspaces": ["packages/*", "apps/*", "!apps/legacy"]}"#,
            ),
            ("package-lock.json", "{}"),
            (
                "packages/ui/package.json",
                r#"{"name": "@acme/ui", "version": "1.0.0", "devDependencies": {"web": "*"}}"#,
            ),
            ("packages/ui/index.js", ""),
            (
                "packages/config/package.json",
                r#"{"name": "@acme/config", "version": "1.0.0"}"#,
            ),
            (
                "apps/web/package.json",
                r#"{"name": "web", "scripts": {"start": "next start"}, "dependencies": {"@acme/ui": "workspace:*", "react": "^18"}, "devDependencies": {"@acme/config": "*"}}"#,
            ),
            ("apps/web/pages/[id].tsx", ""),
            (
                "apps/cli/package.json",
                r#"{"name": "acme-cli", "bin": {"acme": "bin.js"}}"#,
            ),
            ("apps/legacy/package.json", r#"{"name": "legacy"}"#),
            ("node_modules/left-pad/package.json", r#"{"name": "left-pad"}"#),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    let names: Vec<&str> = list.iter().map(|r| r.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["@acme/config", "@acme/ui", "acme-cli", "web"], "{text}");
    assert_eq!(find(&list, "@acme/ui").1, "package");
    assert_eq!(find(&list, "web").1, "service");
    assert_eq!(find(&list, "acme-cli").1, "service");
    assert_eq!(find(&list, "web").3, ["@acme/config", "@acme/ui"]);
    // ui's devDependency on web closes a cycle: the dev edge is the one left out, and said so.
    assert!(find(&list, "@acme/ui").3.is_empty(), "{text}");
    assert!(text.contains("left out @acme/ui -> web"), "{text}");

    let p = plan(&root, "packages/ui/index.js\n");
    assert_eq!(p["affected"], json!(["@acme/ui", "web"]));
    assert_eq!(p["deploy"], json!(["web"]));
    // A literal `[id]` in a path is escaped, not a character class.
    let p = plan(&root, "apps/web/pages/[id].tsx\n");
    assert_eq!(p["affected"], json!(["web"]));
    let p = plan(&root, "package-lock.json\n");
    assert_eq!(p["all"], json!(true));
}

#[test]
fn pnpm_workspace_yaml() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            ("package.json", r#"{"name": "root", "private": true}"#),
            ("pnpm-workspace.yaml", "packages:\n  - 'libs/*'\n  - \"services/**\"\n"),
            ("libs/db/package.json", r#"{"name": "db"}"#),
            (
                "services/api/package.json",
                r#"{"name": "api", "scripts": {"start": "node ."}, "dependencies": {"db": "workspace:^"}}"#,
            ),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    assert_eq!(list.len(), 2, "{text}");
    assert_eq!(find(&list, "api").3, ["db"]);
    assert_eq!(find(&list, "db").1, "package");
}

#[test]
fn go_modules_with_local_requires_and_replaces() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            ("go.work", "go 1.22\nuse (\n  ./libs/common\n  ./services/billing\n)\n"),
            ("libs/common/go.mod", "module example.com/acme/common\n\ngo 1.22\n"),
            ("libs/common/common.go", "package common\n"),
            ("libs/auth/go.mod", "module example.com/acme/auth/v2\n"),
            ("libs/auth/auth.go", "package auth\n"),
            (
                "services/billing/go.mod",
                "module example.com/acme/billing\n\nrequire (\n\texample.com/acme/common v0.0.0\n\tgithub.com/lib/pq v1.10.9\n)\n\nreplace example.com/acme/common => ../../libs/common\nreplace example.com/other => ../../libs/auth\n",
            ),
            (
                "services/billing/main.go",
                "// Billing.\npackage main\n\nfunc main() {}\n",
            ),
            (
                "services/report/go.mod",
                "module example.com/acme/report\nrequire example.com/acme/auth/v2 v2.0.0\n",
            ),
            ("services/report/cmd/report/main.go", "package main\n"),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    assert_eq!(list.len(), 4, "{text}");
    assert_eq!(find(&list, "common").1, "package");
    assert_eq!(find(&list, "auth").1, "package", "the /v2 suffix is not the name");
    assert_eq!(find(&list, "billing").1, "service");
    assert_eq!(find(&list, "billing").3, ["auth", "common"]);
    assert_eq!(find(&list, "report").1, "service");
    assert_eq!(find(&list, "report").3, ["auth"]);
    let p = plan(&root, "libs/auth/auth.go\n");
    assert_eq!(p["affected"], json!(["auth", "billing", "report"]));
    let p = plan(&root, "go.work\n");
    assert_eq!(p["all"], json!(true));
}

#[test]
fn dockerfiles_nesting_and_name_clashes() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            // The root is a crate, with a web front end nested in it.
            ("Cargo.toml", "[package]\nname = \"platform\"\nversion = \"0.1.0\"\n"),
            ("Cargo.lock", "# the root crate's own lockfile\n"),
            ("src/main.rs", "fn main() {}\n"),
            ("build.rs", "fn main() {}\n"),
            ("web/package.json", r#"{"name": "web"}"#),
            ("web/index.js", ""),
            // Two things called "worker": both get their directory as name.
            ("deploy/worker/Dockerfile", "FROM scratch\n"),
            ("jobs/worker/go.mod", "module example.com/worker\n"),
            ("jobs/worker/main.go", "package main\n"),
            // A dev container is not a service.
            (".devcontainer/Dockerfile", "FROM scratch\n"),
            (".github/workflows/ci.yml", "on: push\n"),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    let mut names: Vec<&str> = list.iter().map(|r| r.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["deploy/worker", "jobs/worker", "platform", "web"], "{text}");
    assert_eq!(find(&list, "deploy/worker").1, "service");
    let root_paths = &find(&list, "platform").2;
    assert!(root_paths.contains(&"src/**".to_string()), "{root_paths:?}");
    assert!(root_paths.contains(&"build.rs".to_string()), "{root_paths:?}");
    assert!(
        root_paths.contains(&"Cargo.lock".to_string()),
        "a single crate's lockfile is its own: {root_paths:?}"
    );
    assert!(root_paths.contains(&".github/**".to_string()), "{root_paths:?}");
    assert!(
        !root_paths.iter().any(|p| p.starts_with("web")),
        "nested resources are not claimed twice: {root_paths:?}"
    );
    let p = plan(&root, "web/index.js\n");
    assert_eq!(p["affected"], json!(["web"]));
    let p = plan(&root, "src/main.rs\n");
    assert_eq!(p["affected"], json!(["platform"]));
}

#[test]
fn a_root_dockerfile_builds_from_everything() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . .\n"),
            ("lib/package.json", r#"{"name": "lib"}"#),
            ("app.py", ""),
        ],
    );
    let (map, text) = discover(&root);
    let list = resources(&map);
    assert_eq!(list.len(), 2, "{text}");
    let image = list.iter().find(|r| r.0 != "lib").unwrap();
    assert_eq!(image.0, "repo", "named after the repository's directory");
    assert_eq!(image.1, "service");
    assert_eq!(image.3, ["lib"]);
    let p = plan(&root, "lib/x.js\n");
    assert_eq!(p["affected"], json!(["lib", "repo"]));
}

#[test]
fn an_empty_repository_gives_an_empty_valid_map_and_errors_exit_2() {
    let (_dir, root) = repo();
    let (map, _) = discover(&root);
    assert!(resources(&map).is_empty());
    let p = plan(&root, "anything\n");
    assert_eq!(p["all"], json!(true));

    let out = gandalf(&root, &["resources", "discover", "--repo", "does/not/exist"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist"));
    assert!(out.stdout.is_empty());
}

#[test]
fn broken_manifests_are_skipped_with_a_note() {
    let (_dir, root) = repo();
    write(
        &root,
        &[
            ("a/Cargo.toml", "[package\nname = "),
            ("b/package.json", "{not json"),
            ("c/package.json", r#"{"name": "c"}"#),
        ],
    );
    let (map, text) = discover(&root);
    assert_eq!(resources(&map).len(), 1, "{text}");
    assert!(text.contains("# note: skipped a/Cargo.toml: not valid TOML"), "{text}");
    assert!(
        text.contains("# note: skipped b/package.json: not valid JSON"),
        "{text}"
    );
}
