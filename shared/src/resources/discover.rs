//! `gandalf resources discover`: a starting resource map from what a repository already declares.
//!
//! Sources, each turned into resources keyed by directory (one directory is one resource, whatever
//! declared it):
//! - Cargo: the members of every `[workspace]` (globs and `exclude` honoured), packages outside any
//!   workspace, and the path dependencies of those (`path = …` and `workspace = true` entries
//!   pointing at a path in `[workspace.dependencies]`). A package with a binary target is a
//!   `service`, a library a `package`. Dev-dependencies are left out: they only matter to tests,
//!   and Cargo allows them to form cycles, which a map cannot.
//! - npm / pnpm / yarn: workspace members (`workspaces` in `package.json`, array or yarn's
//!   `{ packages }`, and `pnpm-workspace.yaml`), standalone `package.json` projects, and their
//!   dependencies on each other (by package name, or `file:`/`link:` paths). A package with a
//!   `bin` or a `start` script is a `service`.
//! - Go: every `go.mod`; requires of modules of the same repository and `replace` directives to
//!   local directories are dependencies. A module with `package main` at its root or a `cmd/`
//!   directory is a `service`.
//! - Directories holding a `Dockerfile` (or `Containerfile`, `Dockerfile.*`, `*.Dockerfile`) are
//!   `service`s.
//!
//! Each resource claims its directory; a directory holding other resources claims its own files
//! and subdirectories only, so nested resources do not claim each other's files. Workspace root
//! manifests and lockfiles stay unclaimed on purpose: changing them affects everything
//! (`unmapped = "all"`). The result is checked with [`ResourceMap::parse`] before it is printed;
//! dependency cycles found in the declarations are broken (dev edges first) and said so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::map::{ResourceMap, cycles, topological_order};

/// A resource found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    /// `service` or `package`.
    pub kind: String,
    /// The directory, relative to the repository root (`""` for the root itself).
    pub dir: String,
    pub paths: Vec<String>,
    pub depends_on: Vec<String>,
    /// What declared it, for the comment above it (`Cargo package `api``, `Dockerfile`…).
    pub sources: Vec<String>,
}

/// Everything `discover` found, ready to print with [`Discovery::to_toml`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub ignore: Vec<String>,
    /// In dependency order (levels), then by name.
    pub resources: Vec<Found>,
    /// Things the user should know: skipped manifests, dependency cycles broken, unclaimed files.
    pub notes: Vec<String>,
}

/// The repository root cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct DiscoverError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Directories nested deeper than this are not walked (a symlink loop cannot happen, links are
/// not followed, but a pathological tree should not exhaust anything either).
const MAX_DEPTH: usize = 48;

/// Files at the root of a workspace that every member depends on: left unclaimed, when the root
/// is itself a resource, so that changing them affects everything.
const SHARED_ROOT_FILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "yarn.lock",
    "go.work",
    "go.work.sum",
];

/// Walks `root` and proposes a resource map.
pub fn discover(root: &Path) -> Result<Discovery, DiscoverError> {
    let tree = Tree::walk(root)?;
    let mut d = Discoverer {
        root,
        tree: &tree,
        entries: BTreeMap::new(),
        notes: Vec::new(),
        unclaimed: BTreeSet::new(),
    };
    d.cargo();
    d.node();
    d.go();
    d.docker();
    Ok(d.finish())
}

// ---- the file tree ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct DirListing {
    files: Vec<String>,
    dirs: Vec<String>,
}

/// Every directory of the repository (relative, `/`-separated, `""` for the root) with its files
/// and subdirectories, minus what is never source: `.git`, `node_modules`, build caches (a
/// directory with a `CACHEDIR.TAG`, like Cargo's `target/`) and nested repositories.
struct Tree {
    dirs: BTreeMap<String, DirListing>,
}

impl Tree {
    fn walk(root: &Path) -> Result<Tree, DiscoverError> {
        let mut dirs = BTreeMap::new();
        let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
        while let Some((abs, rel, depth)) = stack.pop() {
            let read = match fs::read_dir(&abs) {
                Ok(read) => read,
                Err(source) if rel.is_empty() => return Err(DiscoverError { path: abs, source }),
                Err(_) => continue,
            };
            let mut listing = DirListing::default();
            for entry in read.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    let path = entry.path();
                    let skip = name == ".git"
                        || name == "node_modules"
                        || path.join("CACHEDIR.TAG").exists()
                        || path.join(".git").exists()
                        || depth >= MAX_DEPTH;
                    if !skip {
                        listing.dirs.push(name.clone());
                        stack.push((path, join(&rel, &name), depth + 1));
                    }
                } else if kind.is_file() {
                    listing.files.push(name);
                }
                // Symbolic links are neither followed nor claimed: git stores them as files, but
                // what they point to is claimed where it lives.
            }
            listing.files.sort();
            listing.dirs.sort();
            dirs.insert(rel, listing);
        }
        Ok(Tree { dirs })
    }

    fn has_file(&self, dir: &str, name: &str) -> bool {
        self.dirs
            .get(dir)
            .is_some_and(|l| l.files.binary_search_by(|f| f.as_str().cmp(name)).is_ok())
    }

    fn has_dir(&self, dir: &str, name: &str) -> bool {
        self.dirs
            .get(dir)
            .is_some_and(|l| l.dirs.binary_search_by(|f| f.as_str().cmp(name)).is_ok())
    }

    /// Directories holding a file called `name`, outside hidden directories.
    fn dirs_with(&self, name: &str) -> Vec<String> {
        self.dirs
            .keys()
            .filter(|d| !is_hidden(d) && self.has_file(d, name))
            .cloned()
            .collect()
    }
}

fn is_hidden(dir: &str) -> bool {
    dir.split('/').any(|segment| segment.starts_with('.'))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `dir` joined with a relative path from a manifest, normalized; `None` if it leaves the
/// repository or is absolute.
fn resolve(dir: &str, relative: &str) -> Option<String> {
    if relative.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

fn basename(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

/// A set of directory globs relative to `base` (workspace member lists), with `!` exclusions.
struct DirGlobs {
    base: String,
    include: GlobSet,
    exclude: GlobSet,
}

impl DirGlobs {
    fn new<'a>(base: &str, patterns: impl IntoIterator<Item = &'a str>, excluded: &[&str]) -> DirGlobs {
        let build = |pats: Vec<&str>| {
            let mut builder = GlobSetBuilder::new();
            for p in pats {
                let p = p.trim().trim_start_matches("./").trim_end_matches('/');
                if let Ok(g) = GlobBuilder::new(p).literal_separator(true).build() {
                    builder.add(g);
                }
            }
            builder.build().unwrap_or_else(|_| GlobSet::empty())
        };
        let mut include = Vec::new();
        let mut exclude: Vec<&str> = excluded.to_vec();
        for p in patterns {
            match p.trim().strip_prefix('!') {
                Some(negated) => exclude.push(negated),
                None => include.push(p),
            }
        }
        DirGlobs {
            base: base.to_string(),
            include: build(include),
            exclude: build(exclude),
        }
    }

    fn contains(&self, dir: &str) -> bool {
        let relative = if self.base.is_empty() {
            dir
        } else {
            match dir.strip_prefix(&self.base).and_then(|r| r.strip_prefix('/')) {
                Some(r) => r,
                None => return false,
            }
        };
        self.include.is_match(relative) && !self.exclude.is_match(relative)
    }
}

// ---- discovery -------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Entry {
    /// Candidate names, best first.
    names: Vec<String>,
    service: bool,
    sources: Vec<String>,
    /// (directory depended on, is it a dev/peer edge that may be dropped to break a cycle)
    deps: Vec<(String, bool)>,
    /// Declared only by a Dockerfile at the repository root: an image built from the whole tree.
    from_docker_root: bool,
}

struct Discoverer<'a> {
    root: &'a Path,
    tree: &'a Tree,
    entries: BTreeMap<String, Entry>,
    notes: Vec<String>,
    /// Workspace manifests: files that stay unclaimed.
    unclaimed: BTreeSet<String>,
}

impl Discoverer<'_> {
    fn read(&mut self, rel: &str) -> Option<String> {
        match fs::read_to_string(self.root.join(rel)) {
            Ok(text) => Some(text),
            Err(e) => {
                self.notes.push(format!("skipped {rel}: {e}"));
                None
            }
        }
    }

    fn entry(&mut self, dir: &str) -> &mut Entry {
        self.entries.entry(dir.to_string()).or_default()
    }

    fn cargo(&mut self) {
        struct Package {
            name: String,
            binary: bool,
            deps: Vec<String>,
        }
        struct Workspace {
            dir: String,
            members: DirGlobs,
            /// `[workspace.dependencies]` name → directory.
            paths: HashMap<String, String>,
        }
        let mut packages: BTreeMap<String, Package> = BTreeMap::new();
        let mut raw_deps: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new(); // dir → (name, path?)
        let mut workspaces: Vec<Workspace> = Vec::new();
        for dir in self.tree.dirs_with("Cargo.toml") {
            let rel = join(&dir, "Cargo.toml");
            let Some(text) = self.read(&rel) else { continue };
            let manifest: toml::Table = match toml::from_str(&text) {
                Ok(m) => m,
                Err(e) => {
                    self.notes
                        .push(format!("skipped {rel}: not valid TOML ({})", e.message().trim()));
                    continue;
                }
            };
            if let Some(ws) = manifest.get("workspace").and_then(|w| w.as_table()) {
                let strings = |key: &str| -> Vec<String> {
                    ws.get(key)
                        .and_then(|v| v.as_array())
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                };
                let members = strings("members");
                let exclude = strings("exclude");
                let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
                let mut paths = HashMap::new();
                if let Some(deps) = ws.get("dependencies").and_then(|d| d.as_table()) {
                    for (name, spec) in deps {
                        if let Some(p) = spec.get("path").and_then(|p| p.as_str())
                            && let Some(target) = resolve(&dir, p)
                        {
                            paths.insert(name.clone(), target);
                        }
                    }
                }
                workspaces.push(Workspace {
                    members: DirGlobs::new(&dir, members.iter().map(String::as_str), &exclude),
                    dir: dir.clone(),
                    paths,
                });
                self.unclaimed.insert(rel.clone());
            }
            let Some(package) = manifest.get("package").and_then(|p| p.as_table()) else {
                continue;
            };
            let Some(name) = package.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let binary = self.tree.has_file(&join(&dir, "src"), "main.rs")
                || self.tree.has_dir(&join(&dir, "src"), "bin")
                || manifest
                    .get("bin")
                    .and_then(|b| b.as_array())
                    .is_some_and(|b| !b.is_empty());
            let mut deps = Vec::new();
            let mut tables: Vec<&toml::Table> = Vec::new();
            for key in ["dependencies", "build-dependencies"] {
                tables.extend(manifest.get(key).and_then(|t| t.as_table()));
            }
            if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
                for target in targets.values() {
                    for key in ["dependencies", "build-dependencies"] {
                        tables.extend(target.get(key).and_then(|t| t.as_table()));
                    }
                }
            }
            for table in tables {
                for (key, spec) in table {
                    let path = spec.get("path").and_then(|p| p.as_str()).and_then(|p| resolve(&dir, p));
                    let inherited = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                    if path.is_some() || inherited {
                        deps.push((key.clone(), path));
                    }
                }
            }
            raw_deps.insert(dir.clone(), deps);
            packages.insert(
                dir,
                Package {
                    name: name.to_string(),
                    binary,
                    deps: Vec::new(),
                },
            );
        }

        // The workspace of each package: the nearest enclosing workspace root.
        let workspace_of = |dir: &str| -> Option<usize> {
            workspaces
                .iter()
                .enumerate()
                .filter(|(_, w)| w.dir.is_empty() || dir == w.dir || dir.starts_with(&format!("{}/", w.dir)))
                .max_by_key(|(_, w)| w.dir.len())
                .map(|(i, _)| i)
        };
        for (dir, deps) in raw_deps {
            let ws = workspace_of(&dir);
            let resolved: Vec<String> = deps
                .into_iter()
                .filter_map(|(name, path)| path.or_else(|| ws.and_then(|w| workspaces[w].paths.get(&name).cloned())))
                .collect();
            if let Some(p) = packages.get_mut(&dir) {
                p.deps = resolved;
            }
        }

        // Included: members, root packages of workspaces, packages outside any workspace, and
        // (transitively) the path dependencies of included packages.
        let mut included: BTreeSet<String> = packages
            .keys()
            .filter(|dir| match workspace_of(dir) {
                None => true,
                Some(w) => workspaces[w].dir == **dir || workspaces[w].members.contains(dir),
            })
            .cloned()
            .collect();
        let mut queue: Vec<String> = included.iter().cloned().collect();
        while let Some(dir) = queue.pop() {
            for dep in &packages[&dir].deps {
                if packages.contains_key(dep) && included.insert(dep.clone()) {
                    queue.push(dep.clone());
                }
            }
        }
        for dir in included {
            let p = &packages[&dir];
            let deps: Vec<(String, bool)> = p
                .deps
                .iter()
                .filter(|d| packages.contains_key(*d))
                .map(|d| (d.clone(), false))
                .collect();
            let what = if p.binary { "binary" } else { "library" };
            let source = format!("Cargo package `{}` ({what})", p.name);
            let (name, binary) = (p.name.clone(), p.binary);
            let e = self.entry(&dir);
            e.names.push(name);
            e.service |= binary;
            e.sources.push(source);
            e.deps.extend(deps);
        }
    }

    fn node(&mut self) {
        struct Node {
            name: Option<String>,
            service: bool,
            deps: Vec<(String, bool)>,      // (package name, dev)
            file_deps: Vec<(String, bool)>, // (directory, dev)
        }
        let mut roots: Vec<DirGlobs> = Vec::new();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for dir in self.tree.dirs_with("package.json") {
            let rel = join(&dir, "package.json");
            let Some(text) = self.read(&rel) else { continue };
            let json: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    self.notes.push(format!("skipped {rel}: not valid JSON ({e})"));
                    continue;
                }
            };
            let workspaces = match json.get("workspaces") {
                Some(serde_json::Value::Array(a)) => Some(a.clone()),
                Some(serde_json::Value::Object(o)) => o.get("packages").and_then(|p| p.as_array()).cloned(),
                _ => None,
            };
            let mut globs: Vec<String> = workspaces
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if self.tree.has_file(&dir, "pnpm-workspace.yaml")
                && let Some(yaml) = self.read(&join(&dir, "pnpm-workspace.yaml"))
            {
                globs.extend(pnpm_packages(&yaml));
            }
            if !globs.is_empty() {
                roots.push(DirGlobs::new(&dir, globs.iter().map(String::as_str), &[]));
                self.unclaimed.insert(rel);
                continue;
            }
            let mut deps = Vec::new();
            let mut file_deps = Vec::new();
            for (key, dev) in [
                ("dependencies", false),
                ("optionalDependencies", false),
                ("devDependencies", true),
                ("peerDependencies", true),
            ] {
                let Some(obj) = json.get(key).and_then(|d| d.as_object()) else {
                    continue;
                };
                for (name, spec) in obj {
                    let spec = spec.as_str().unwrap_or("");
                    let local = spec.strip_prefix("file:").or_else(|| spec.strip_prefix("link:"));
                    match local.and_then(|p| resolve(&dir, p)) {
                        Some(target) => file_deps.push((target, dev)),
                        None => deps.push((name.clone(), dev)),
                    }
                }
            }
            let service = json.get("bin").is_some() || json.pointer("/scripts/start").is_some();
            let name = json.get("name").and_then(|n| n.as_str()).map(str::to_string);
            nodes.insert(
                dir,
                Node {
                    name,
                    service,
                    deps,
                    file_deps,
                },
            );
        }
        // A package.json is a resource when it is a member of a workspace, or when no workspace
        // encloses it (a standalone project).
        let inside = |dir: &str, root: &DirGlobs| root.base.is_empty() || dir.starts_with(&format!("{}/", root.base));
        let kept: Vec<String> = nodes
            .keys()
            .filter(|dir| {
                let enclosing: Vec<&DirGlobs> = roots.iter().filter(|r| inside(dir, r)).collect();
                enclosing.is_empty() || enclosing.iter().any(|r| r.contains(dir))
            })
            .cloned()
            .collect();
        let by_name: HashMap<String, String> = kept
            .iter()
            .filter_map(|dir| nodes[dir].name.clone().map(|n| (n, dir.clone())))
            .collect();
        for dir in kept {
            let node = &nodes[&dir];
            let mut deps: Vec<(String, bool)> = node
                .deps
                .iter()
                .filter_map(|(name, dev)| by_name.get(name).map(|d| (d.clone(), *dev)))
                .collect();
            deps.extend(node.file_deps.iter().filter(|(d, _)| nodes.contains_key(d)).cloned());
            let what = if node.service { "application" } else { "library" };
            let label = node.name.clone().unwrap_or_else(|| basename(&dir).to_string());
            let source = format!("npm package `{label}` ({what})");
            let (name, service) = (node.name.clone(), node.service);
            let e = self.entry(&dir);
            e.names.extend(name);
            e.service |= service;
            e.sources.push(source);
            e.deps.extend(deps);
        }
    }

    fn go(&mut self) {
        struct Module {
            path: String,
            requires: Vec<String>,
            replaces: Vec<(String, String)>, // (module, local directory)
        }
        for dir in self.tree.dirs_with("go.work") {
            self.unclaimed.insert(join(&dir, "go.work"));
        }
        let mut modules: BTreeMap<String, Module> = BTreeMap::new();
        for dir in self.tree.dirs_with("go.mod") {
            let rel = join(&dir, "go.mod");
            let Some(text) = self.read(&rel) else { continue };
            let parsed = parse_go_mod(&text);
            let Some(path) = parsed.module else {
                self.notes.push(format!("skipped {rel}: no `module` line"));
                continue;
            };
            let replaces = parsed
                .replaces
                .into_iter()
                .filter_map(|(m, target)| {
                    let local = target.starts_with("./") || target.starts_with("../");
                    if local {
                        resolve(&dir, &target).map(|t| (m, t))
                    } else {
                        None
                    }
                })
                .collect();
            modules.insert(
                dir,
                Module {
                    path,
                    requires: parsed.requires,
                    replaces,
                },
            );
        }
        let by_path: HashMap<&str, &str> = modules.iter().map(|(d, m)| (m.path.as_str(), d.as_str())).collect();
        let mut found = Vec::new();
        for (dir, m) in &modules {
            let mut deps: BTreeSet<String> = BTreeSet::new();
            for r in &m.requires {
                if let Some(d) = by_path.get(r.as_str()) {
                    deps.insert(d.to_string());
                }
            }
            for (_, target) in &m.replaces {
                if modules.contains_key(target) {
                    deps.insert(target.clone());
                }
            }
            deps.remove(dir);
            let service = self.tree.has_dir(dir, "cmd") || self.go_main_at(dir);
            found.push((dir.clone(), go_name(&m.path), m.path.clone(), service, deps));
        }
        for (dir, name, path, service, deps) in found {
            let what = if service { "command" } else { "library" };
            let e = self.entry(&dir);
            e.names.push(name);
            e.service |= service;
            e.sources.push(format!("Go module `{path}` ({what})"));
            e.deps.extend(deps.into_iter().map(|d| (d, false)));
        }
    }

    /// Whether a Go file directly in `dir` is `package main`.
    fn go_main_at(&self, dir: &str) -> bool {
        let Some(listing) = self.tree.dirs.get(dir) else {
            return false;
        };
        listing
            .files
            .iter()
            .filter(|f| f.ends_with(".go") && !f.ends_with("_test.go"))
            .any(|f| {
                fs::read_to_string(self.root.join(join(dir, f)))
                    .map(|text| text.lines().take(200).any(|l| l.trim() == "package main"))
                    .unwrap_or(false)
            })
    }

    fn docker(&mut self) {
        let dirs: Vec<String> = self
            .tree
            .dirs
            .iter()
            .filter(|(dir, listing)| !is_hidden(dir) && listing.files.iter().any(|f| is_dockerfile(f)))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in dirs {
            let root_name = self
                .root
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
                .unwrap_or_else(|| "app".to_string());
            let e = self.entry(&dir);
            if e.names.is_empty() {
                e.names.push(if dir.is_empty() {
                    root_name
                } else {
                    basename(&dir).to_string()
                });
                e.from_docker_root = dir.is_empty();
            }
            e.service = true;
            e.sources.push("Dockerfile".to_string());
        }
    }

    fn finish(mut self) -> Discovery {
        // An image built at the root of the repository (and nothing else declared there) is
        // built from the whole tree: it depends on everything else.
        let all_dirs: Vec<String> = self.entries.keys().filter(|d| !d.is_empty()).cloned().collect();
        if let Some(root) = self.entries.get_mut("")
            && root.from_docker_root
        {
            root.deps.extend(all_dirs.into_iter().map(|d| (d, false)));
        }

        let dirs: Vec<String> = self.entries.keys().cloned().collect();
        let names = unique_names(&dirs, &self.entries);
        let index: HashMap<&str, usize> = dirs.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();

        // Edges by index; a (to, dev) pair once per resource.
        let mut edges: Vec<BTreeMap<usize, bool>> = vec![BTreeMap::new(); dirs.len()];
        for (i, dir) in dirs.iter().enumerate() {
            for (target, dev) in &self.entries[dir].deps {
                if let Some(&j) = index.get(target.as_str())
                    && j != i
                {
                    let slot = edges[i].entry(j).or_insert(*dev);
                    *slot &= *dev; // a normal edge wins over a dev one
                }
            }
        }
        // Break dependency cycles, preferring dev/peer edges, and say so.
        loop {
            let deps: Vec<Vec<usize>> = edges.iter().map(|e| e.keys().copied().collect()).collect();
            let found = cycles(&deps);
            if found.is_empty() {
                break;
            }
            for cycle in found {
                let pairs: Vec<(usize, usize)> = (0..cycle.len())
                    .map(|k| (cycle[k], cycle[(k + 1) % cycle.len()]))
                    .collect();
                let (from, to) = pairs
                    .iter()
                    .copied()
                    .find(|&(a, b)| edges[a].get(&b) == Some(&true))
                    .unwrap_or(pairs[pairs.len() - 1]);
                if edges[from].remove(&to).is_some() {
                    let shown: Vec<&str> = cycle.iter().map(|&k| names[k].as_str()).collect();
                    self.notes.push(format!(
                        "dependency cycle {} -> {}: left out {} -> {}",
                        shown.join(" -> "),
                        shown[0],
                        names[from],
                        names[to]
                    ));
                }
            }
        }

        // Claims: each directory, minus the resources nested in it and the shared root files.
        let resource_dirs: BTreeSet<&str> = dirs.iter().map(String::as_str).collect();
        let mut unclaimed = self.unclaimed.clone();
        // Root lockfiles belong to everyone when the root is a workspace (its manifest is then
        // unclaimed too); in a single-project repository they are that project's.
        if resource_dirs.contains("") && self.unclaimed.iter().any(|f| !f.contains('/')) {
            unclaimed.extend(SHARED_ROOT_FILES.iter().map(|f| f.to_string()));
        }
        let mut resources: Vec<Found> = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let e = &self.entries[dir];
            let mut paths = Vec::new();
            claim(self.tree, dir, &resource_dirs, &unclaimed, &mut paths);
            let mut depends_on: Vec<String> = edges[i].keys().map(|&j| names[j].clone()).collect();
            depends_on.sort();
            resources.push(Found {
                name: names[i].clone(),
                kind: if e.service { "service" } else { "package" }.to_string(),
                dir: dir.clone(),
                paths,
                depends_on,
                sources: e.sources.clone(),
            });
        }

        // Order: dependency levels, then name, so the file reads from foundations to services.
        let deps: Vec<Vec<usize>> = edges.iter().map(|e| e.keys().copied().collect()).collect();
        let levels = levels_of(&deps);
        let mut order: Vec<usize> = (0..resources.len()).collect();
        order.sort_by(|&a, &b| (levels[a], &resources[a].name).cmp(&(levels[b], &resources[b].name)));
        let mut slots: Vec<Option<Found>> = resources.into_iter().map(Some).collect();
        let resources: Vec<Found> = order.into_iter().filter_map(|i| slots[i].take()).collect();

        let mut ignore = vec!["**/*.md".to_string()];
        if self.tree.dirs.contains_key("docs") && !dirs.iter().any(|d| d == "docs" || d.starts_with("docs/")) {
            ignore.push("docs/**".to_string());
        }
        Discovery {
            ignore,
            resources,
            notes: self.notes,
        }
    }
}

/// The globs for `dir`: `dir/**` when nothing else lives below it, else its files and the
/// subdirectories that hold no other resource, recursively.
fn claim(tree: &Tree, dir: &str, resources: &BTreeSet<&str>, unclaimed: &BTreeSet<String>, out: &mut Vec<String>) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let nested = resources
        .range::<str, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded))
        .any(|d| {
            if dir.is_empty() {
                !d.is_empty()
            } else {
                d.starts_with(&prefix)
            }
        });
    let has_unclaimed = unclaimed.iter().any(|f| f.starts_with(&prefix));
    if !nested && !has_unclaimed {
        out.push(format!("{}**", escape_glob(&prefix)));
        return;
    }
    let Some(listing) = tree.dirs.get(dir) else { return };
    for file in &listing.files {
        let path = join(dir, file);
        if !unclaimed.contains(&path) {
            out.push(escape_glob(&path));
        }
    }
    for sub in &listing.dirs {
        let path = join(dir, sub);
        if !resources.contains(path.as_str()) {
            claim(tree, &path, resources, unclaimed, out);
        }
    }
}

/// Escapes glob syntax in a literal path (`pages/[id].tsx` is a file, not a class).
fn escape_glob(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Level of every node (0 without dependencies), for an acyclic graph.
fn levels_of(deps: &[Vec<usize>]) -> Vec<usize> {
    let mut level = vec![0; deps.len()];
    for r in topological_order(deps) {
        level[r] = deps[r].iter().map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    level
}

/// One name per directory: the declared name when it is unique, else the directory's path;
/// whitespace and control characters become `-`.
fn unique_names(dirs: &[String], entries: &BTreeMap<String, Entry>) -> Vec<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_whitespace() || c.is_control() { '-' } else { c })
            .collect()
    };
    let wanted: Vec<String> = dirs
        .iter()
        .map(|d| {
            let name = entries[d].names.first().map(|n| clean(n)).unwrap_or_default();
            if name.is_empty() {
                if d.is_empty() { "root".to_string() } else { clean(d) }
            } else {
                name
            }
        })
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for w in &wanted {
        *count.entry(w.as_str()).or_default() += 1;
    }
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(dirs.len());
    for (dir, want) in dirs.iter().zip(&wanted) {
        let mut name = if count[want.as_str()] > 1 && !dir.is_empty() {
            clean(dir)
        } else {
            want.clone()
        };
        if taken.contains(&name) {
            let mut k = 2;
            while taken.contains(&format!("{name}-{k}")) {
                k += 1;
            }
            name = format!("{name}-{k}");
        }
        taken.insert(name.clone());
        out.push(name);
    }
    out
}

fn is_dockerfile(name: &str) -> bool {
    name == "Dockerfile"
        || name == "Containerfile"
        || name.starts_with("Dockerfile.")
        || name.ends_with(".Dockerfile")
        || name.ends_with(".dockerfile")
}

/// The name of a Go module: its last path element, skipping a major-version suffix (`/v2`).
fn go_name(module: &str) -> String {
    let mut parts = module.rsplit('/');
    let last = parts.next().unwrap_or(module);
    let is_major = last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    if is_major {
        parts.next().unwrap_or(last).to_string()
    } else {
        last.to_string()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct GoMod {
    module: Option<String>,
    requires: Vec<String>,
    replaces: Vec<(String, String)>,
}

/// Just enough of the `go.mod` grammar: `module`, `require` and `replace`, single-line or in
/// blocks, with `//` comments and quoted paths.
fn parse_go_mod(text: &str) -> GoMod {
    let mut out = GoMod::default();
    let mut block: Option<&str> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(kind) = block {
            if line == ")" {
                block = None;
            } else {
                go_directive(kind, line, &mut out);
            }
            continue;
        }
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match verb {
            "module" => out.module = Some(unquote(rest).to_string()),
            "require" | "replace" if rest == "(" => block = Some(if verb == "require" { "require" } else { "replace" }),
            "require" | "replace" => go_directive(verb, rest, &mut out),
            _ => {}
        }
    }
    out
}

fn go_directive(kind: &str, line: &str, out: &mut GoMod) {
    match kind {
        "require" => {
            if let Some(path) = line.split_whitespace().next() {
                out.requires.push(unquote(path).to_string());
            }
        }
        _ => {
            if let Some((old, new)) = line.split_once("=>") {
                let old = old.split_whitespace().next().map(unquote).unwrap_or("");
                let new = new.split_whitespace().next().map(unquote).unwrap_or("");
                if !old.is_empty() && !new.is_empty() {
                    out.replaces.push((old.to_string(), new.to_string()));
                }
            }
        }
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('`')
}

/// The `packages:` list of a `pnpm-workspace.yaml` (block or flow style), without a YAML parser.
fn pnpm_packages(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    let clean = |s: &str| s.trim().trim_matches(|c| c == '\'' || c == '"').trim().to_string();
    for line in yaml.lines() {
        let without_comment = line.split(" #").next().unwrap_or("");
        if without_comment.trim_start().starts_with('#') || without_comment.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented {
            inside = false;
            if let Some(rest) = without_comment.trim().strip_prefix("packages:") {
                let rest = rest.trim();
                if let Some(flow) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                    out.extend(flow.split(',').map(clean).filter(|s| !s.is_empty()));
                } else {
                    inside = true;
                }
            }
            continue;
        }
        if inside && let Some(item) = without_comment.trim().strip_prefix('-') {
            let item = clean(item);
            if !item.is_empty() {
                out.push(item);
            }
        }
    }
    out
}

impl Discovery {
    /// The map as TOML, with a comment above each resource saying what declared it.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# A starting resource map, written by `gandalf resources discover` from what the repository\n\
             # declares (Cargo and npm/pnpm/yarn workspaces, Go modules, Dockerfiles). Names, types and\n\
             # dependencies are guesses: review them. Workspace manifests and lockfiles at the root are\n\
             # left unclaimed on purpose, so changing them affects everything (unmapped = \"all\").\n",
        );
        for note in &self.notes {
            let _ = writeln!(out, "# note: {note}");
        }
        let _ = writeln!(out, "ignore = [{}]", quoted_list(&self.ignore));
        out.push_str("unmapped = \"all\"\nbuild_dependencies = true\n");
        for r in &self.resources {
            out.push('\n');
            let _ = writeln!(out, "# {}", r.sources.join(" + ").replace('\n', " "));
            out.push_str("[[resource]]\n");
            let _ = writeln!(out, "name = {}", toml_string(&r.name));
            let _ = writeln!(out, "type = {}", toml_string(&r.kind));
            let _ = writeln!(out, "paths = [{}]", quoted_list(&r.paths));
            if !r.depends_on.is_empty() {
                let _ = writeln!(out, "depends_on = [{}]", quoted_list(&r.depends_on));
            }
        }
        out
    }

    /// [`Discovery::to_toml`], checked to be a valid map (it always should be: a failure here is
    /// a bug, reported rather than printed).
    pub fn to_checked_toml(&self) -> Result<String, super::MapError> {
        let text = self.to_toml();
        ResourceMap::parse(&text)?;
        Ok(text)
    }
}

fn quoted_list(items: &[String]) -> String {
    items.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ")
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_grammar() {
        let parsed = parse_go_mod(
            r#"module github.com/acme/platform/services/billing // the billing service

go 1.22

require github.com/acme/platform/libs/common v0.0.0
require (
    github.com/lib/pq v1.10.9 // indirect
    "github.com/acme/platform/libs/db" v0.0.0
)
replace github.com/acme/platform/libs/common => ../../libs/common
replace (
    github.com/acme/platform/libs/db v0.0.0 => ../../libs/db
    golang.org/x/net => golang.org/x/net v0.1.0
)
"#,
        );
        assert_eq!(
            parsed.module.as_deref(),
            Some("github.com/acme/platform/services/billing")
        );
        assert_eq!(
            parsed.requires,
            [
                "github.com/acme/platform/libs/common",
                "github.com/lib/pq",
                "github.com/acme/platform/libs/db"
            ]
        );
        assert_eq!(parsed.replaces.len(), 3);
        assert_eq!(
            parsed.replaces[1],
            ("github.com/acme/platform/libs/db".into(), "../../libs/db".into())
        );
    }

    #[test]
    fn go_names_skip_major_versions() {
        assert_eq!(go_name("github.com/acme/billing"), "billing");
        assert_eq!(go_name("github.com/acme/billing/v2"), "billing");
        assert_eq!(go_name("example.com/v"), "v");
        assert_eq!(go_name("tool"), "tool");
    }

    #[test]
    fn pnpm_workspace_yaml() {
        let yaml =
            "# comment\npackages:\n  - 'packages/*'\n  - \"apps/**\" # apps\n  - '!**/test/**'\ncatalog:\n  - x\n";
        assert_eq!(pnpm_packages(yaml), ["packages/*", "apps/**", "!**/test/**"]);
        assert_eq!(pnpm_packages("packages: ['a/*', \"b\"]\n"), ["a/*", "b"]);
    }

    #[test]
    fn paths_resolve_inside_the_repository_only() {
        assert_eq!(
            resolve("services/api", "../../libs/common").as_deref(),
            Some("libs/common")
        );
        assert_eq!(resolve("", "./crates/x/").as_deref(), Some("crates/x"));
        assert_eq!(resolve("a", "../../x"), None);
        assert_eq!(resolve("a", "/abs"), None);
    }

    #[test]
    fn literal_paths_are_escaped_and_strings_quoted() {
        assert_eq!(escape_glob("pages/[id]/{x}*.tsx"), r"pages/\[id\]/\{x\}\*.tsx");
        assert_eq!(toml_string("a\"b\\c\u{1}"), r#""a\"b\\c\u0001""#);
    }

    #[test]
    fn names_are_unique() {
        let mut entries = BTreeMap::new();
        for (dir, name) in [
            ("apps/web", "web"),
            ("services/web", "web"),
            ("x", "a b"),
            ("web", "apps/web"),
        ] {
            entries.insert(
                dir.to_string(),
                Entry {
                    names: vec![name.to_string()],
                    ..Entry::default()
                },
            );
        }
        let dirs: Vec<String> = entries.keys().cloned().collect();
        let names = unique_names(&dirs, &entries);
        assert_eq!(names, ["apps/web", "services/web", "apps/web-2", "a-b"]);
    }

    #[test]
    fn levels_of_a_dag() {
        assert_eq!(levels_of(&[vec![1, 2], vec![2], vec![]]), [2, 1, 0]);
        // A wide diamond: every node shares the same two dependencies.
        let mut deps: Vec<Vec<usize>> = (0..50).map(|_| vec![50, 51]).collect();
        deps.push(vec![51]);
        deps.push(vec![]);
        let levels = levels_of(&deps);
        assert!(levels[..50].iter().all(|&l| l == 2));
        assert_eq!(levels[50..], [1, 0]);
    }
}
