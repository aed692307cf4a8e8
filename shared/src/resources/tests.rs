//! Tests of the planner against SPEC §6, rule by rule, and a property test that compares it with
//! a deliberately naive second implementation (its own glob matcher, reachability by brute force,
//! levels by recursion) over random maps and random changes.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn map(src: &str) -> ResourceMap {
    ResourceMap::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// `name type [deps...]` lines to a map; paths are `<name>/**`.
fn graph(header: &str, lines: &[&str]) -> ResourceMap {
    let mut src = format!("{header}\n");
    for line in lines {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        let kind = words.next().unwrap();
        let mut enabled = true;
        let mut deps = Vec::new();
        for w in words {
            if w == "disabled" {
                enabled = false;
            } else {
                deps.push(format!("{w:?}"));
            }
        }
        src.push_str(&format!(
            "[[resource]]\nname = {name:?}\ntype = {kind:?}\npaths = [\"{name}/**\"]\ndepends_on = [{}]\nenabled = {enabled}\n\n",
            deps.join(", ")
        ));
    }
    map(&src)
}

fn changed(files: &[&str]) -> Reason {
    Reason::Changed {
        first: files[0].to_string(),
        total: files.len(),
    }
}

fn levels(plan: &Plan) -> Vec<Vec<&str>> {
    plan.levels
        .iter()
        .map(|l| l.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn a_change_affects_its_resource_and_its_dependents_transitively() {
    let m = graph(
        "",
        &["core package", "api service core", "web service api", "other service"],
    );
    let p = m.plan(["core/src/lib.rs"]);
    assert!(!p.all);
    assert_eq!(p.affected, ["api", "core", "web"]);
    assert_eq!(levels(&p), [vec!["core"], vec!["api"], vec!["web"]]);
    assert_eq!(p.deploy, ["api", "web"]);
    assert!(p.unmapped.is_empty());
    assert_eq!(p.reason("core"), Some(&changed(&["core/src/lib.rs"])));
    assert_eq!(
        p.reason("web"),
        Some(&Reason::Dependency {
            dependency: "api".into(),
            via: vec![]
        })
    );

    let p = m.plan(["web/index.html"]);
    assert_eq!(p.affected, ["web"]);
    assert_eq!(p.build(), ["api", "core", "web"], "dependencies are built too");
    assert_eq!(levels(&p), [vec!["core"], vec!["api"], vec!["web"]]);
    assert_eq!(p.deploy, ["web"], "dependencies are built, not deployed");
}

#[test]
fn diamonds() {
    //      top
    //     /   \
    //  left   right
    //     \   /
    //     base
    let m = graph(
        "",
        &[
            "base package",
            "left service base",
            "right service base",
            "top service left right",
        ],
    );
    let p = m.plan(["base/x"]);
    assert_eq!(p.affected, ["base", "left", "right", "top"]);
    assert_eq!(levels(&p), [vec!["base"], vec!["left", "right"], vec!["top"]]);
    assert_eq!(p.deploy, ["left", "right", "top"]);

    let p = m.plan(["left/x"]);
    assert_eq!(p.affected, ["left", "top"]);
    assert_eq!(p.build(), ["base", "left", "right", "top"]);
    assert_eq!(levels(&p), [vec!["base"], vec!["left", "right"], vec!["top"]]);
    assert_eq!(p.deploy, ["left", "top"]);
}

#[test]
fn level_is_one_above_the_highest_dependency_in_the_build_set() {
    // deep -> mid -> low, and deep -> low directly: deep is on level 2, not 1.
    let m = graph("", &["low package", "mid package low", "deep service mid low"]);
    let p = m.plan(["low/a"]);
    assert_eq!(levels(&p), [vec!["low"], vec!["mid"], vec!["deep"]]);
}

#[test]
fn chains_pass_through_disabled_resources() {
    let m = graph("", &["core package", "api service core disabled", "web service api"]);
    // A change to core reaches web through the disabled api.
    let p = m.plan(["core/lib.rs"]);
    assert_eq!(p.affected, ["core", "web"]);
    assert_eq!(levels(&p), [vec!["core"], vec!["web"]]);
    assert_eq!(p.deploy, ["web"]);
    assert_eq!(
        p.reason("web"),
        Some(&Reason::Dependency {
            dependency: "core".into(),
            via: vec!["api".into()]
        })
    );
    // Building web builds core (through api), which is web's direct dependency once api is
    // contracted away: web is on level 1.
    let p = m.plan(["web/app.js"]);
    assert_eq!(p.affected, ["web"]);
    assert_eq!(p.build(), ["core", "web"]);
    assert_eq!(levels(&p), [vec!["core"], vec!["web"]]);
    // The disabled resource's own files are claimed (not unmapped) but affect nothing.
    let p = m.plan(["api/main.go"]);
    assert!(!p.all);
    assert!(p.affected.is_empty());
    assert!(p.unmapped.is_empty());
    assert!(p.levels.is_empty());
}

#[test]
fn disabled_resources_never_appear_even_when_everything_is_affected() {
    let m = graph("", &["core package", "api service core disabled", "web service api"]);
    let p = m.plan(["Makefile"]);
    assert!(p.all);
    assert_eq!(p.affected, ["core", "web"]);
    assert_eq!(p.build(), ["core", "web"]);
    assert_eq!(levels(&p), [vec!["core"], vec!["web"]]);
    assert_eq!(p.unmapped, ["Makefile"]);
    assert_eq!(p.reason("web"), Some(&Reason::Unmapped));
}

#[test]
fn several_disabled_resources_in_a_row() {
    let m = graph(
        "",
        &[
            "a package",
            "b package a disabled",
            "c package b disabled",
            "d service c",
        ],
    );
    let p = m.plan(["a/1"]);
    assert_eq!(p.affected, ["a", "d"]);
    assert_eq!(levels(&p), [vec!["a"], vec!["d"]]);
    assert_eq!(
        p.reason("d"),
        Some(&Reason::Dependency {
            dependency: "a".into(),
            via: vec!["c".into(), "b".into()]
        })
    );
}

#[test]
fn ignore_beats_resource_paths() {
    let m = map(r#"
ignore = ["docs/**", "**/*.md"]
[[resource]]
name = "api"
type = "service"
paths = ["services/api/**", "docs/api/**"]
"#);
    let p = m.plan(["services/api/README.md", "docs/api/guide.txt", "README.md"]);
    assert!(p.affected.is_empty());
    assert!(p.unmapped.is_empty());
    assert!(!p.all);
    assert_eq!(p.ignored, ["README.md", "docs/api/guide.txt", "services/api/README.md"]);
    let p = m.plan(["services/api/main.rs", "services/api/README.md"]);
    assert_eq!(p.affected, ["api"]);
    assert_eq!(p.reason("api"), Some(&changed(&["services/api/main.rs"])));
}

#[test]
fn unmapped_all_makes_every_enabled_resource_affected() {
    let m = graph("", &["a package", "b service a", "c job", "d service disabled"]);
    let p = m.plan(["a/x", "Makefile", "ci/build.sh"]);
    assert!(p.all);
    assert_eq!(p.affected, ["a", "b", "c"]);
    assert_eq!(p.unmapped, ["Makefile", "ci/build.sh"]);
    assert_eq!(levels(&p), [vec!["a", "c"], vec!["b"]]);
    assert_eq!(p.deploy, ["c", "b"], "level order, then name");
    assert_eq!(p.reason("a"), Some(&changed(&["a/x"])));
    assert_eq!(p.reason("c"), Some(&Reason::Unmapped));
}

#[test]
fn unmapped_none_lists_the_paths_but_affects_nothing_more() {
    let m = graph("unmapped = \"none\"", &["a package", "b service a", "c job"]);
    let p = m.plan(["a/x", "Makefile"]);
    assert!(!p.all);
    assert_eq!(p.affected, ["a", "b"]);
    assert_eq!(p.unmapped, ["Makefile"]);
    let p = m.plan(["Makefile"]);
    assert!(!p.all);
    assert!(p.affected.is_empty());
    assert_eq!(p.unmapped, ["Makefile"]);
}

#[test]
fn a_path_claimed_by_a_disabled_resource_is_not_unmapped() {
    let m = graph("", &["a service", "b service disabled"]);
    let p = m.plan(["b/x"]);
    assert!(!p.all);
    assert!(p.unmapped.is_empty());
    assert!(p.affected.is_empty());
}

#[test]
fn build_dependencies_false_builds_only_the_affected() {
    let m = graph(
        "build_dependencies = false",
        &["core package", "api service core", "web service api"],
    );
    let p = m.plan(["web/x"]);
    assert_eq!(p.build(), ["web"]);
    assert_eq!(
        levels(&p),
        [vec!["web"]],
        "api is not in the build set, so web is on level 0"
    );
    let p = m.plan(["api/x"]);
    assert_eq!(p.build(), ["api", "web"]);
    assert_eq!(levels(&p), [vec!["api"], vec!["web"]]);
    let p = m.plan(["core/x"]);
    assert_eq!(levels(&p), [vec!["core"], vec!["api"], vec!["web"]]);
}

#[test]
fn build_dependencies_true_builds_dependencies_through_disabled_ones() {
    let m = graph(
        "",
        &["core package", "mid package core disabled", "svc service mid", "x job"],
    );
    let p = m.plan(["svc/main"]);
    assert_eq!(p.build(), ["core", "svc"]);
    assert_eq!(p.affected, ["svc"]);
    assert_eq!(p.deploy, ["svc"]);
}

#[test]
fn deploy_follows_the_deploy_flag_in_level_then_name_order() {
    let m = map(r#"
[[resource]]
name = "lib"
type = "package"
paths = ["lib/**"]
[[resource]]
name = "zeta"
type = "function"
paths = ["zeta/**"]
[[resource]]
name = "alpha"
type = "service"
paths = ["alpha/**"]
depends_on = ["lib"]
[[resource]]
name = "quiet"
type = "service"
deploy = false
paths = ["quiet/**"]
[[resource]]
name = "shipped-lib"
type = "package"
deploy = true
paths = ["shipped/**"]
"#);
    let p = m.plan(["lib/a", "zeta/a", "alpha/a", "quiet/a", "shipped/a"]);
    assert_eq!(levels(&p), [vec!["lib", "quiet", "shipped-lib", "zeta"], vec!["alpha"]]);
    assert_eq!(p.deploy, ["shipped-lib", "zeta", "alpha"]);
}

#[test]
fn blank_and_duplicate_paths_are_ignored() {
    let m = graph("", &["a service"]);
    let p = m.plan(["", "  ", "a/x", "a/x", "\t", "a/y"]);
    assert_eq!(p.changed, 2);
    assert_eq!(p.reason("a"), Some(&changed(&["a/x", "a/y"])));
    let p = m.plan(["", " "]);
    assert_eq!(p.changed, 0);
    assert!(!p.all, "blank lines are not unmapped files");
    let p = m.plan(["zz", "zz", "b"]);
    assert_eq!(p.unmapped, ["b", "zz"]);
}

#[test]
fn nothing_changed_means_nothing_affected() {
    let m = graph("", &["a service"]);
    let p = m.plan(Vec::<String>::new());
    assert!(!p.all);
    assert!(p.affected.is_empty() && p.levels.is_empty() && p.deploy.is_empty());
    assert_eq!(
        p.to_json(),
        r#"{"all":false,"affected":[],"levels":[],"deploy":[],"unmapped":[]}"#
    );
}

#[test]
fn names_sort_by_code_point() {
    let m = graph(
        "",
        &[
            "b service",
            "B service",
            "_ service",
            "a service",
            "é service",
            "z service",
        ],
    );
    let p = m.plan(["Makefile"]);
    assert_eq!(p.affected, ["B", "_", "a", "b", "z", "é"]);
    assert_eq!(levels(&p), [vec!["B", "_", "a", "b", "z", "é"]]);
}

#[test]
fn a_file_claimed_twice_by_one_resource_is_listed_once_and_two_resources_can_share_it() {
    let m = map(r#"
[[resource]]
name = "a"
type = "service"
paths = ["shared/**", "shared/*.proto", "a/**"]
[[resource]]
name = "b"
type = "service"
paths = ["shared/*.proto"]
"#);
    let p = m.plan(["shared/x.proto"]);
    assert_eq!(p.affected, ["a", "b"]);
    assert_eq!(p.reason("a"), Some(&changed(&["shared/x.proto"])));
}

#[test]
fn a_reason_names_the_first_changed_file_in_the_given_order_and_counts_them_all() {
    let m = graph("", &["a service"]);
    let p = m.plan(["a/5", "a/3", "a/4", "a/1", "a/2"]);
    assert_eq!(
        p.reason("a"),
        Some(&Reason::Changed {
            first: "a/5".into(),
            total: 5
        })
    );
}

#[test]
fn json_is_exactly_the_spec_object() {
    let m = graph("", &["core package", "web service core"]);
    let p = m.plan(["core/a", "nowhere"]);
    let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5);
    for k in ["all", "affected", "levels", "deploy", "unmapped"] {
        assert!(keys.contains(&k), "{k}");
    }
    assert_eq!(
        p.to_json(),
        r#"{"all":true,"affected":["core","web"],"levels":[["core"],["web"]],"deploy":["web"],"unmapped":["nowhere"]}"#
    );
}

#[test]
fn text_form_explains_the_plan() {
    let m = graph(
        "",
        &[
            "core package",
            "api service core disabled",
            "web service api",
            "solo job",
        ],
    );
    let text = m.plan(["core/a", "core/b", "core/c", "core/d", "README"]).to_text();
    assert!(text.contains("5 changed files (0 ignored, 1 unmapped)"), "{text}");
    assert!(text.contains("make every resource affected"), "{text}");
    assert!(text.contains("core  changed: core/a and 3 more"), "{text}");
    assert!(text.contains("solo  unmapped files changed"), "{text}");
    assert!(text.contains("level 0: core, solo"), "{text}");
    assert!(text.contains("level 1: web"), "{text}");
    assert!(text.contains("Deploy (2): solo, web"), "{text}");
    let m = graph(
        "unmapped = \"none\"",
        &["core package", "api service core disabled", "web service api"],
    );
    let text = m.plan(["core/a"]).to_text();
    assert!(text.contains("web   depends on core (through disabled api)"), "{text}");
    let text = m.plan(["web/a"]).to_text();
    assert!(text.contains("core (dependency)"), "{text}");
    let text = m.plan(["elsewhere"]).to_text();
    assert!(text.contains("Nothing is affected"), "{text}");
}

#[test]
fn the_example_of_the_spec() {
    let m = map(r#"
ignore = ["docs/**", "**/*.md"]        # changes here affect nothing
unmapped = "all"                       # a changed file no resource claims: "all" (default) or "none"
build_dependencies = true              # build what affected resources depend on, too

[[resource]]
name = "common"
type = "package"                       # package | service | function | job | infra (free text allowed)
paths = ["libs/common/**"]

[[resource]]
name = "billing"
type = "service"
paths = ["services/billing/**"]
depends_on = ["common"]
deploy = true                          # deployable; packages are built but not deployed
enabled = true
"#);
    let p = m.plan(["libs/common/a.rs", "docs/x.txt", "CHANGELOG.md"]);
    assert_eq!(
        p.to_json(),
        r#"{"all":false,"affected":["billing","common"],"levels":[["common"],["billing"]],"deploy":["billing"],"unmapped":[]}"#
    );
}

// ---- the property test --------------------------------------------------------------------

/// A naive glob matcher over `/`-separated segments, written from the §6 text alone: `**` as a
/// whole segment spans any number of segments, `*` any run of characters within a segment,
/// `?` one character, anything else itself. (No alternatives: the generator does not make them.)
fn naive_glob(glob: &str, path: &str) -> bool {
    fn segments(g: &[&str], p: &[&str]) -> bool {
        match g.split_first() {
            None => p.is_empty(),
            // A trailing `**` is "everything below": at least one segment.
            Some((&"**", [])) => !p.is_empty(),
            Some((&"**", rest)) => (0..=p.len()).any(|skip| segments(rest, &p[skip..])),
            Some((first, rest)) => {
                let g: Vec<char> = first.chars().collect();
                let s: Vec<char> = p.first().map(|s| s.chars().collect()).unwrap_or_default();
                !p.is_empty() && segment(&g, &s) && segments(rest, &p[1..])
            }
        }
    }
    fn segment(g: &[char], s: &[char]) -> bool {
        match g.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|skip| segment(rest, &s[skip..])),
            Some(('?', rest)) => !s.is_empty() && segment(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && segment(rest, &s[1..]),
        }
    }
    let g: Vec<&str> = glob.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    segments(&g, &p)
}

/// name, deploy, enabled, globs, deps (indices into the model's resources)
type ModelResource = (String, bool, bool, Vec<String>, Vec<usize>);
/// all, affected, build, levels, deploy, unmapped
type ModelPlan = (
    bool,
    Vec<String>,
    Vec<String>,
    Vec<Vec<String>>,
    Vec<String>,
    Vec<String>,
);

#[derive(Debug, Clone)]
struct Model {
    ignore: Vec<String>,
    unmapped_all: bool,
    build_dependencies: bool,
    /// name, deploy, enabled, globs, deps (indices into this vector)
    resources: Vec<ModelResource>,
}

impl Model {
    fn toml(&self) -> String {
        let quote = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        let mut s = format!(
            "ignore = [{}]\nunmapped = \"{}\"\nbuild_dependencies = {}\n",
            quote(&self.ignore),
            if self.unmapped_all { "all" } else { "none" },
            self.build_dependencies
        );
        for (name, deploy, enabled, globs, deps) in &self.resources {
            let deps: Vec<String> = deps.iter().map(|&d| self.resources[d].0.clone()).collect();
            // Alternate between spelling `deploy` out and relying on the type's default.
            let kind = if *deploy { "service" } else { "package" };
            s.push_str(&format!(
                "\n[[resource]]\nname = {name:?}\ntype = \"{kind}\"\npaths = [{}]\ndepends_on = [{}]\nenabled = {enabled}\n",
                quote(globs),
                quote(&deps)
            ));
        }
        s
    }

    /// The deliberately simple planner: brute-force reachability and recursive levels.
    fn plan(&self, changed: &[String]) -> ModelPlan {
        let rs = &self.resources;
        let n = rs.len();
        // reaches[a][b]: a depends on b, transitively, through anything.
        let mut reaches = vec![vec![false; n]; n];
        for (a, row) in reaches.iter_mut().enumerate() {
            let mut stack = rs[a].4.clone();
            while let Some(b) = stack.pop() {
                if !row[b] {
                    row[b] = true;
                    stack.extend(rs[b].4.iter().copied());
                }
            }
        }
        let paths: BTreeSet<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|p| !p.trim().is_empty())
            .collect();
        let relevant: Vec<&str> = paths
            .into_iter()
            .filter(|p| !self.ignore.iter().any(|g| naive_glob(g, p)))
            .collect();
        let claims = |r: usize, p: &str| rs[r].3.iter().any(|g| naive_glob(g, p));
        let unmapped: Vec<String> = relevant
            .iter()
            .filter(|p| !(0..n).any(|r| claims(r, p)))
            .map(|p| p.to_string())
            .collect();
        let all = self.unmapped_all && !unmapped.is_empty();
        let seed = |r: usize| rs[r].2 && relevant.iter().any(|p| claims(r, p));
        let affected: Vec<usize> = (0..n)
            .filter(|&r| rs[r].2 && (all || seed(r) || (0..n).any(|s| seed(s) && reaches[r][s])))
            .collect();
        let build: Vec<usize> = (0..n)
            .filter(|&r| {
                rs[r].2
                    && (affected.contains(&r) || (self.build_dependencies && affected.iter().any(|&a| reaches[a][r])))
            })
            .collect();
        // Direct dependencies once disabled resources are contracted away.
        fn contracted(rs: &[ModelResource], r: usize, out: &mut BTreeSet<usize>) {
            for &d in &rs[r].4 {
                if rs[d].2 {
                    out.insert(d);
                } else {
                    contracted(rs, d, out);
                }
            }
        }
        fn level(rs: &[ModelResource], build: &[usize], r: usize) -> usize {
            let mut direct = BTreeSet::new();
            contracted(rs, r, &mut direct);
            direct
                .into_iter()
                .filter(|d| build.contains(d))
                .map(|d| level(rs, build, d) + 1)
                .max()
                .unwrap_or(0)
        }
        let mut by_level: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for &r in &build {
            by_level.entry(level(rs, &build, r)).or_default().push(rs[r].0.clone());
        }
        let levels: Vec<Vec<String>> = by_level
            .into_values()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect();
        let mut deploy: Vec<(usize, String)> = affected
            .iter()
            .filter(|&&r| rs[r].1)
            .map(|&r| (level(rs, &build, r), rs[r].0.clone()))
            .collect();
        deploy.sort();
        let sorted = |v: &[usize]| {
            let mut names: Vec<String> = v.iter().map(|&r| rs[r].0.clone()).collect();
            names.sort();
            names
        };
        (
            all,
            sorted(&affected),
            sorted(&build),
            levels,
            deploy.into_iter().map(|(_, n)| n).collect(),
            unmapped,
        )
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", ".d", "ab", "x.md", "y.rs", "B", "é", "éb"]).prop_map(String::from)
}

fn glob_segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "b", "c", ".d", "*", "**", "?", "a*", "*.md", "*.rs", "?b", "B",
    ])
    .prop_map(String::from)
}

fn glob() -> impl Strategy<Value = String> {
    prop::collection::vec(glob_segment(), 1..4).prop_map(|s| s.join("/"))
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(segment(), 1..5).prop_map(|s| s.join("/")),
        1 => Just(String::new()),
        1 => Just("  ".to_string()),
    ]
}

/// Glob segments of every kind the index treats differently: literals (some shared, so globs
/// meet in the trie), `*` forms, `**`, `?`, classes (positive, negated, ranges), braces (in one
/// segment, across segments, nested, empty, touching a `*`), escapes, unicode.
fn rich_glob_segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "lib",
        ".d",
        "é",
        "日本",
        "a,b",
        "*",
        "**",
        "**",
        "?",
        "a*",
        "*.rs",
        "*.md",
        "*b*",
        "?b",
        "é?",
        "[ab]",
        "[a-c]x",
        "[!a]",
        "[^b]*",
        "[]a]",
        "[a-]",
        "{a,b}",
        "{x,*.md}",
        "x{,.rs}",
        "{a/b,c}",
        "{a,{b,c}}",
        "{**/a,b}",
        r"\*",
        r"a\?",
        "Cargo.toml",
        "{a",
        "b}",
        "{,}",
    ])
    .prop_map(String::from)
}

fn rich_glob() -> impl Strategy<Value = String> {
    prop::collection::vec(rich_glob_segment(), 1..5).prop_map(|s| s.join("/"))
}

fn rich_path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a",
        "b",
        "c",
        "lib",
        ".d",
        "ab",
        "x.md",
        "y.rs",
        "b.rs",
        "B",
        "é",
        "éb",
        "日本",
        "x😀",
        "*",
        "?",
        "a,b",
        "",
        "Cargo.toml",
        "x.rs",
        "[ab]",
        "-",
        "]",
    ]);
    prop::collection::vec(segment, 1..6).prop_map(|s| s.join("/"))
}

fn model() -> impl Strategy<Value = Model> {
    let names = prop::sample::subsequence(
        vec!["api", "web", "core", "db", "B", "_x", "é", "a-b", "zz", "lib.1", "Z"],
        1..=11,
    )
    .prop_shuffle();
    (names, prop::collection::vec(glob(), 0..3), any::<bool>(), any::<bool>())
        .prop_flat_map(|(names, ignore, unmapped_all, build_dependencies)| {
            let n = names.len();
            // Dependencies only point to later positions, so the graph is a DAG; the shuffle
            // above makes the name order unrelated to the topological order.
            let resources = (0..n)
                .map(|i| {
                    (
                        any::<bool>(),
                        prop::bool::weighted(0.75),
                        prop::collection::vec(glob(), 0..3),
                        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                    )
                        .prop_map(move |(deploy, enabled, globs, deps)| {
                            let mut deps: Vec<usize> = if i + 1 < n {
                                deps.into_iter().map(|d| i + 1 + d.index(n - i - 1)).collect()
                            } else {
                                Vec::new()
                            };
                            deps.sort();
                            deps.dedup();
                            (deploy, enabled, globs, deps)
                        })
                })
                .collect::<Vec<_>>();
            (
                Just(names),
                Just(ignore),
                Just(unmapped_all),
                Just(build_dependencies),
                resources,
            )
        })
        .prop_map(|(names, ignore, unmapped_all, build_dependencies, resources)| Model {
            ignore,
            unmapped_all,
            build_dependencies,
            resources: names
                .into_iter()
                .zip(resources)
                .map(|(name, (deploy, enabled, globs, deps))| (name.to_string(), deploy, enabled, globs, deps))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn planner_agrees_with_the_naive_model(
        model in model(),
        changed in prop::collection::vec(path(), 0..12),
    ) {
        let src = model.toml();
        let map = ResourceMap::parse(&src).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let plan = map.plan(&changed);
        let (all, affected, build, levels, deploy, unmapped) = model.plan(&changed);
        prop_assert_eq!(plan.all, all, "all\n{}", src);
        prop_assert_eq!(&plan.affected, &affected, "affected\n{}", src);
        prop_assert_eq!(plan.build(), build.iter().map(String::as_str).collect::<Vec<_>>(), "build\n{}", src);
        prop_assert_eq!(&plan.levels, &levels, "levels\n{}", src);
        prop_assert_eq!(&plan.deploy, &deploy, "deploy\n{}", src);
        prop_assert_eq!(&plan.unmapped, &unmapped, "unmapped\n{}", src);
        // Every affected resource has a reason, and nothing else has one.
        prop_assert_eq!(plan.reasons.len(), plan.affected.len());
        // The levels are the build set, partitioned.

    }

    #[test]
    fn globs_agree_with_the_naive_matcher(g in glob(), p in prop::collection::vec(segment(), 1..5)) {
        let p = p.join("/");
        let compiled = super::glob::compile(&g);
        if let Ok(compiled) = compiled {
            let m = super::index::GlobIndex::new(vec![(compiled, 0)]);
            prop_assert_eq!(m.is_match(&p), naive_glob(&g, &p), "{} on {}", g, p);
        }
    }

    /// Speed never changes a plan: the map's index answers exactly what globset answers glob by
    /// glob (the way the first planner matched), on random maps of globs of every kind and on
    /// random paths (dotfiles, unicode, empty segments, `**` in the middle, braces, classes).
    #[test]
    fn the_index_agrees_with_globset_glob_by_glob(
        globs in prop::collection::vec((rich_glob(), 0..4usize), 1..24),
        paths in prop::collection::vec(rich_path(), 1..16),
    ) {
        let mut compiled = Vec::new();
        let mut references = Vec::new();
        for (g, owner) in &globs {
            // Invalid globs are the map parser's business (and refused by both).
            if let Ok(c) = super::glob::compile(g) {
                compiled.push((c, *owner));
                references.push((super::glob::Reference::new(g).expect("valid for compile, valid for globset"), *owner, g));
            } else {
                prop_assert!(super::glob::Reference::new(g).is_err() || g.contains('['), "{} refused by compile only", g);
            }
        }
        let index = super::index::GlobIndex::new(compiled);
        let mut scratch = super::index::Scratch::default();
        // In the order given, then sorted and repeated: consecutive paths then share their
        // leading segments, as git lists them, and the index reuses the previous path's walk.
        let mut sorted = paths.clone();
        sorted.sort();
        let repeated = sorted.iter().flat_map(|p| [p, p]);
        for path in paths.iter().chain(repeated) {
            let expected: Vec<usize> = references.iter().filter(|(r, _, _)| r.is_match(path)).map(|(_, o, _)| *o).collect();
            let globs: Vec<&String> = references.iter().map(|(_, _, g)| *g).collect();
            prop_assert_eq!(index.owners(path, &mut scratch), expected.as_slice(), "{:?} on {:?}", globs, path);
        }
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_text(src in "\\PC{0,200}") {
        let _ = ResourceMap::parse(&src);
    }

    #[test]
    fn parsing_never_panics_on_map_like_text(
        lines in prop::collection::vec(prop::sample::select(vec![
            "[[resource]]", "name = \"a\"", "name = \"b\"", "type = \"service\"", "type = \"\"",
            "depends_on = [\"a\"]", "depends_on = [\"b\", \"c\"]", "paths = [\"a/**\", \"{x\"]",
            "paths = [\"**\"]", "enabled = false", "deploy = 1", "ignore = [\"/x\"]",
            "unmapped = \"none\"", "build_dependencies = false", "[x]", "name = 3", "é = \"\"",
        ]), 0..20),
        changed in prop::collection::vec(path(), 0..5),
    ) {
        let src = lines.join("\n");
        if let Ok(map) = ResourceMap::parse(&src) {
            let _ = map.plan(&changed).to_text();
        }
    }
}

#[test]
fn only_plans_exactly_the_named_resources_and_what_they_need_built() {
    let m = graph(
        "build_dependencies = true",
        &[
            "core package",
            "api service core",
            "web service api",
            "other service",
            "old service disabled",
        ],
    );
    let p = m.plan_only(&["api"]).unwrap();
    assert_eq!(p.affected, ["api"], "dependents of a selected resource are not added");
    assert_eq!(levels(&p), [vec!["core"], vec!["api"]]);
    assert_eq!(p.deploy, ["api"]);
    assert_eq!(p.reason("api"), Some(&Reason::Selected));

    let p = m.plan_only(&["web", "other"]).unwrap();
    assert_eq!(p.affected, ["other", "web"]);
    assert_eq!(levels(&p), [vec!["core", "other"], vec!["api"], vec!["web"]]);
    assert_eq!(p.deploy, ["other", "web"]);

    assert_eq!(m.plan_only(&["nope"]), Err("nope".to_string()));
    assert_eq!(
        m.plan_only(&["old"]),
        Err("old".to_string()),
        "disabled resources cannot be selected"
    );
}

#[test]
fn a_change_list_that_may_be_cut_short_affects_every_enabled_resource_and_says_why() {
    let m = graph(
        "build_dependencies = true",
        &[
            "core package",
            "api service core",
            "web service api",
            "old service disabled",
        ],
    );
    let p = m.plan_all();
    assert_eq!(p.affected, ["api", "core", "web"]);
    let text = p.to_text_cut_short(300);
    assert!(
        text.starts_with(
            "GitHub listed 300 changed files, the most it lists for one comparison: there may be more, so every enabled resource counts as affected.\n"
        ),
        "{text}"
    );
    assert!(text.ends_with(&p.to_text()));
}
