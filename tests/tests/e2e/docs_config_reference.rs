//! The configuration reference in `docs/operations.md` is checked against the code, so it cannot
//! drift: a key the parsers accept but the page does not document fails this test, and so does a
//! documented key the parsers refuse. Likewise for the environment variables the bots read.
//!
//! How the accepted keys are found: every config struct is `#[serde(deny_unknown_fields)]`, and
//! serde's "unknown field" error lists the fields the struct expects. So the test feeds the real
//! parsers (`BobbyConfig::parse`, `GandalfConfig::parse`, `ResourceMap::parse`) a document holding
//! one made-up key at a given place (`nightly = { retry = { <made-up> = 1 } }`), reads the expected
//! fields out of the error, and walks into each of them (as a table, then as an array of tables) until
//! no struct is left. Nothing is listed by hand: a field added to a struct shows up here at once.
//! (A struct without `deny_unknown_fields` would not be seen; all of them have it, because a misspelt
//! key must be an error rather than silently ignored.)

use std::collections::BTreeSet;
use std::path::Path;

/// A key no config will ever have.
const PROBE: &str = "zz_probe_not_a_key";

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `key = { … }` (a `[key]` table).
    Table,
    /// `key = [{ … }]` (a `[[key]]` array of tables).
    Array,
}

fn wrap(shape: Shape, table: String) -> String {
    match shape {
        Shape::Table => table,
        Shape::Array => format!("[{table}]"),
    }
}

/// A TOML document with the made-up key inside the struct at `path`.
fn probe_document(path: &[(String, Shape)]) -> String {
    let Some(((first, _), _)) = path.split_first() else {
        return format!("{PROBE} = 1\n");
    };
    let mut value = wrap(path[path.len() - 1].1, format!("{{ {PROBE} = 1 }}"));
    for i in (0..path.len() - 1).rev() {
        value = wrap(path[i].1, format!("{{ {} = {value} }}", path[i + 1].0));
    }
    format!("{first} = {value}\n")
}

/// The fields serde expects where the made-up key was, if the error is serde's "unknown field".
fn expected_fields(error: &str) -> Option<Vec<String>> {
    let at = error.find(&format!("unknown field `{PROBE}`"))?;
    let rest = &error[at + PROBE.len() + 16..];
    if rest.contains("there are no fields") {
        return Some(vec![]);
    }
    let rest = &rest[rest.find("expected")?..];
    let rest = rest.lines().next().unwrap_or_default();
    Some(rest.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

/// Every key (dotted path) the parser accepts, found by probing it.
fn accepted_keys(parse: &dyn Fn(&str) -> Result<(), String>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut todo: Vec<Vec<(String, Shape)>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let fields = if path.is_empty() {
            let doc = probe_document(&path);
            let err = parse(&doc).expect_err("a made-up key must be refused");
            expected_fields(&err).unwrap_or_else(|| panic!("not serde's unknown-field error for {doc:?}: {err}"))
        } else {
            // Is the value at `path` a struct? Try it as a table, then as an array of tables.
            let mut found = None;
            for shape in [Shape::Table, Shape::Array] {
                let mut tried = path.clone();
                tried.last_mut().expect("not empty").1 = shape;
                if let Err(err) = parse(&probe_document(&tried))
                    && let Some(fields) = expected_fields(&err)
                {
                    found = Some((tried, fields));
                    break;
                }
            }
            match found {
                Some((tried, fields)) => {
                    for field in fields {
                        let mut p = tried.clone();
                        p.push((field, Shape::Table));
                        keys.insert(dotted(&p));
                        todo.push(p);
                    }
                    continue;
                }
                None => continue, // a plain value: a string, number, list of strings, enum…
            }
        };
        for field in fields {
            let p = vec![(field, Shape::Table)];
            keys.insert(dotted(&p));
            todo.push(p);
        }
    }
    keys
}

fn dotted(path: &[(String, Shape)]) -> String {
    path.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(".")
}

fn operations_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backquoted names in the first column of the tables under the heading `heading` (up to the
/// next heading): the first one per row, or all of them (`DATABASE_URL`, `DATABASE_URL_FILE`).
fn documented(heading: &str, all_in_cell: bool) -> BTreeSet<String> {
    let doc = operations_md();
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "docs/operations.md has no heading {heading:?}");
    let mut keys = BTreeSet::new();
    for line in lines.take_while(|l| !l.starts_with('#')) {
        let Some(cell) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
            continue;
        };
        let names: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        let names = if all_in_cell {
            &names[..]
        } else {
            &names[..names.len().min(1)]
        };
        keys.extend(names.iter().map(|n| n.to_string()));
    }
    assert!(!keys.is_empty(), "no table rows under {heading:?}");
    keys
}

fn assert_same(what: &str, accepted: &BTreeSet<String>, documented: &BTreeSet<String>) {
    let undocumented: Vec<_> = accepted.difference(documented).collect();
    let unknown: Vec<_> = documented.difference(accepted).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/operations.md is out of step with {what}:\n  accepted but not documented: {undocumented:?}\n  \
         documented but not accepted: {unknown:?}"
    );
}

#[test]
fn every_bobby_toml_key_is_documented_and_every_documented_key_exists() {
    let accepted = accepted_keys(&|text| bobby::config::BobbyConfig::parse(text, Path::new(".")).map(|_| ()));
    // The probe must have found the nested structs, not only the top level.
    for key in [
        "nightly.retry.attempts",
        "environments.keep_on_weekends",
        "deploy.pipeline.test",
    ] {
        assert!(accepted.contains(key), "{key} not found by probing: {accepted:?}");
    }
    assert_same("bobby.toml", &accepted, &documented("### `bobby.toml`", false));
}

#[test]
fn every_gandalf_toml_key_is_documented_and_every_documented_key_exists() {
    let accepted = accepted_keys(&|text| gandalf::config::GandalfConfig::parse(text, Path::new(".")).map(|_| ()));
    for key in ["repos.pipeline.revert", "repos.pipeline.env", "people.github"] {
        assert!(accepted.contains(key), "{key} not found by probing: {accepted:?}");
    }
    assert_same("gandalf.toml", &accepted, &documented("### `gandalf.toml`", false));
}

#[test]
fn every_resource_map_key_is_documented_and_every_documented_key_exists() {
    let accepted = accepted_keys(&|text| {
        shared::resources::ResourceMap::parse(text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    assert!(accepted.contains("resource.depends_on"), "{accepted:?}");
    assert_same(
        ".gandalf/resources.toml",
        &accepted,
        &documented("### `.gandalf/resources.toml`", false),
    );
}

/// The environment variables the bots read, found in their source: `env.var("X")` (settings),
/// `secret(env, "X")` (which also reads `X_FILE`), clap's `env = "X"`, and tracing's `RUST_LOG`.
fn variables_read() -> BTreeSet<String> {
    fn quoted_after(text: &str, marker: &str) -> Vec<String> {
        text.match_indices(marker)
            .filter_map(|(i, _)| {
                let rest = &text[i + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                (rest[name.len()..].starts_with('"') && !name.is_empty()).then_some(name)
            })
            .collect()
    }
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    for krate in ["shared/src", "bobby/src", "gandalf/src"] {
        walk(&root.join(krate), &mut sources);
    }
    let mut vars = BTreeSet::new();
    for text in &sources {
        vars.extend(quoted_after(text, ".var(\""));
        vars.extend(quoted_after(text, "env = \""));
        for name in quoted_after(text, "secret(env, \"") {
            vars.insert(format!("{name}_FILE"));
            vars.insert(name);
        }
        if text.contains("EnvFilter::try_from_default_env") {
            vars.insert("RUST_LOG".into());
        }
    }
    vars
}

#[test]
fn every_environment_variable_the_bots_read_is_documented() {
    let read = variables_read();
    for v in ["DATABASE_URL_FILE", "GITHUB_APP_ID", "BOBBY_CONFIG", "LOG_FORMAT"] {
        assert!(read.contains(v), "{v} not found in the source: {read:?}");
    }
    assert_same(
        "the environment variables the bots read",
        &read,
        &documented("### Environment variables", true),
    );
}

#[test]
fn the_probe_reads_serde_errors_of_every_arity() {
    let err = |fields: &str| format!("TOML parse error at line 1\nunknown field `{PROBE}`, expected {fields}\n");
    assert_eq!(expected_fields(&err("`a`")), Some(vec!["a".to_string()]));
    assert_eq!(
        expected_fields(&err("`a` or `b`")),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(expected_fields(&err("one of `a`, `b`, `c`")).map(|f| f.len()), Some(3));
    assert_eq!(
        expected_fields(&format!("unknown field `{PROBE}`, there are no fields")),
        Some(vec![])
    );
    assert_eq!(expected_fields("invalid type: map, expected a string"), None);
    assert_eq!(
        probe_document(&[("a".into(), Shape::Array), ("b".into(), Shape::Table)]),
        format!("a = [{{ b = {{ {PROBE} = 1 }} }}]\n")
    );
}
