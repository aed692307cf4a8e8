//! The resource map (`.gandalf/resources.toml`, SPEC §6): parsing and validation.
//!
//! [`ResourceMap::parse`] turns the TOML text into validated, compiled types in one go: every
//! problem a user can make (bad TOML, unknown keys, a missing `type`, duplicate or blank names,
//! unknown dependencies, dependency cycles, invalid globs) becomes a [`Problem`] with the line and
//! column it was found at, and all of them are reported together in a [`MapError`] so one edit
//! can fix them all. Nothing here panics on any input: the map comes from a pull request.
//!
//! A parsed map is also "compiled" for the planner: resources are indexed in name order (so a
//! sorted list of indices is a list of names sorted by code point), dependency and dependent
//! lists are index vectors, a topological order is precomputed, and all globs (resource paths and
//! `ignore`) live in one index of globs by their literal leading segments (`index`).
//!
//! `parse` is a short list of steps, one function each (read the TOML, check names, check each
//! resource, compile `ignore`, find cycles, assemble), in the section after `ResourceMap`'s
//! accessors.

use std::collections::{HashMap, VecDeque};

use foldhash::HashMap as FastMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::glob;
use super::index::GlobIndex;
use super::pattern::Expansion;
use super::raw::{self, RawMap, RawResource};

/// What a changed file that no resource claims does (`unmapped = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    /// Every enabled resource is affected (the default: an unknown change is assumed to matter).
    #[default]
    All,
    /// The file is listed in `unmapped` but affects nothing.
    None,
}

/// One `[[resource]]` of the map, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub name: String,
    /// The `type` key: `package`, `service`, `function`, `job`, `infra` or free text.
    #[serde(rename = "type")]
    pub kind: String,
    pub paths: Vec<String>,
    /// Names of the resources this one depends on, as written (duplicates removed).
    pub depends_on: Vec<String>,
    /// Whether it is deployed when affected; defaults to `true` for every type but `package`.
    pub deploy: bool,
    /// A disabled resource is never in a plan's output, but it claims its paths and its
    /// dependency edges are passed through (§6).
    pub enabled: bool,
}

/// A validated and compiled resource map. Build it with [`ResourceMap::parse`], plan with
/// [`ResourceMap::plan`](crate::resources::ResourceMap::plan).
#[derive(Debug, Clone)]
pub struct ResourceMap {
    /// Sorted by name; a resource's index is its position here.
    pub(crate) resources: Vec<Resource>,
    ignore: Vec<String>,
    pub(crate) unmapped: Unmapped,
    pub(crate) build_dependencies: bool,
    /// Direct dependencies of each resource (indices, sorted, deduplicated).
    pub(crate) deps: Vec<Vec<usize>>,
    /// Direct dependents of each resource (indices, sorted).
    pub(crate) dependents: Vec<Vec<usize>>,
    /// Every resource, dependencies before dependents.
    pub(crate) topo: Vec<usize>,
    /// Every glob of the map in ONE index, so each changed path is matched once: the resource
    /// paths (owner: the resource's index), grouped by resource, then `ignore` (owner: [`IGNORE`]).
    pub(crate) globs: GlobIndex,
}

/// The owner of the `ignore` globs in [`ResourceMap::globs`]; larger than any resource index, so
/// a path's owners, listed in glob order, end with it when the path is ignored.
pub(crate) const IGNORE: usize = usize::MAX;

/// What kind of mistake a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not TOML, an unknown key, a missing `type`, a value of the wrong type…
    Syntax,
    /// An empty name, or one with whitespace or control characters (names end up in
    /// space-separated lists like `GANDALF_RESOURCES`).
    InvalidName,
    DuplicateName,
    /// A blank `type`.
    InvalidType,
    UnknownDependency,
    Cycle,
    InvalidGlob,
}

/// One mistake in the map, where it was found (1-based line and column) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Everything wrong with a map, in the order it appears in the file (cycles last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    pub problems: Vec<Problem>,
}

impl MapError {
    /// The problems as `origin:line:column: message` lines, the way compilers print them, so
    /// editors and CI annotate the right line.
    pub fn render(&self, origin: &str) -> String {
        let mut out = String::new();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            match (p.line, p.column) {
                (Some(l), Some(c)) => out.push_str(&format!("{origin}:{l}:{c}: {}", p.message)),
                (Some(l), None) => out.push_str(&format!("{origin}:{l}: {}", p.message)),
                _ => out.push_str(&format!("{origin}: {}", p.message)),
            }
        }
        out
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid resource map: {one}"),
            many => {
                write!(f, "invalid resource map ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for MapError {}

/// Byte offsets to 1-based (line, column in characters).
struct Positions<'a> {
    src: &'a str,
    /// Where each line starts, found the first time a position is asked for: a valid map (the
    /// usual case) never needs them, and finding them in a 5,000-resource map was a few per cent
    /// of loading it.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Positions<'a> {
    fn new(src: &'a str) -> Self {
        Positions {
            src,
            line_starts: std::cell::OnceCell::new(),
        }
    }

    fn at(&self, offset: usize) -> (usize, usize) {
        let line_starts = self.line_starts.get_or_init(|| {
            let mut line_starts = vec![0];
            line_starts.extend(self.src.match_indices('\n').map(|(i, _)| i + 1));
            line_starts
        });
        let line = line_starts.partition_point(|&s| s <= offset).max(1);
        let start = line_starts[line - 1];
        let column = match self.src.get(start..offset.min(self.src.len())) {
            Some(s) => s.chars().count() + 1,
            None => offset.saturating_sub(start) + 1,
        };
        (line, column)
    }

    fn problem(&self, kind: ProblemKind, offset: usize, message: String) -> Problem {
        let (line, column) = self.at(offset);
        Problem {
            kind,
            line: Some(line),
            column: Some(column),
            message,
        }
    }
}

impl ResourceMap {
    /// Parses and validates a resource map, reporting every problem found.
    ///
    /// The steps, each a function below: read the TOML (`read_toml`); check the names and sort
    /// the resources by name (`check_names`); check each resource's type, dependencies and
    /// globs (`check_resources`) and the `ignore` globs (`compile_ignore`); look for
    /// dependency cycles (`cycle_problems`); and only when nothing is wrong, index the globs
    /// (`index_globs`, while they may still borrow the text read) and assemble the compiled map
    /// (`assemble`, which moves the strings read into it rather than copying them).
    pub fn parse(src: &str) -> Result<ResourceMap, MapError> {
        let pos = Positions::new(src);
        let raw = read_toml(src, &pos)?;
        let mut problems = Vec::new();
        let names = check_names(&raw, &pos, &mut problems);
        let checked = check_resources(&raw, &names, &pos, &mut problems);
        let ignore = compile_ignore(&raw, &pos, &mut problems);
        // Problems so far are reported in file order; cycles come after them.
        problems.sort_by_key(|p| (p.line, p.column));
        problems.extend(cycle_problems(&raw, &names, &checked.deps, &pos));
        if !problems.is_empty() {
            return Err(MapError { problems });
        }
        let kept = names.kept;
        let Checked { deps, globs } = checked;
        let globs = index_globs(globs, ignore);
        Ok(assemble(raw, &kept, deps, globs))
    }

    /// Every resource, enabled or not, sorted by name.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        // Sorted by name, so a binary search: no second table of names to build at each parse.
        let at = self.resources.binary_search_by(|r| r.name.as_str().cmp(name)).ok()?;
        self.resources.get(at)
    }

    /// The `ignore` globs.
    pub fn ignore(&self) -> &[String] {
        &self.ignore
    }

    /// The `unmapped` policy.
    pub fn unmapped(&self) -> Unmapped {
        self.unmapped
    }

    /// Whether the build set includes the dependencies of the affected resources.
    pub fn build_dependencies(&self) -> bool {
        self.build_dependencies
    }
}

// ---- the steps of `ResourceMap::parse` ---------------------------------------------------------

/// The TOML into the raw shape; a syntax error is the one problem reported (nothing after it can
/// be checked). The fast reader first (`raw::quick`, a plain map in one pass); anything it does
/// not read, valid or not, goes through `toml`, which is the one that explains a mistake.
fn read_toml(src: &str, pos: &Positions<'_>) -> Result<RawMap, MapError> {
    if let Some(raw) = raw::quick(src) {
        return Ok(raw);
    }
    raw::serde(src).map_err(|e: toml::de::Error| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = pos.at(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        MapError {
            problems: vec![Problem {
                kind: ProblemKind::Syntax,
                line,
                column,
                message: e.message().trim().to_string(),
            }],
        }
    })
}

/// The resources that passed the name checks.
struct Names<'r> {
    /// Each valid name → the position in the file of its first definition, and its index (its
    /// place in `kept`). One table for both: building a second one was a few per cent of loading
    /// a 5,000-resource map.
    first: FastMap<&'r str, (usize, usize)>,
    /// The file positions of the kept resources, sorted by name: a resource's index (everywhere
    /// after parsing) is its position here.
    kept: Vec<usize>,
}

impl Names<'_> {
    /// The index of the resource at file position `i`, unless it was dropped (a duplicate or an
    /// invalid name).
    fn me(&self, i: usize, name: &str) -> Option<usize> {
        match self.first.get(name) {
            Some(&(at, index)) if at == i => Some(index),
            _ => None,
        }
    }

    /// The index of the resource called `name`, if it is kept.
    fn index(&self, name: &str) -> Option<usize> {
        self.first.get(name).map(|&(_, index)| index)
    }
}

/// Names: valid and unique. The first definition of each name is kept.
fn check_names<'r>(raw: &'r RawMap, pos: &Positions<'_>, problems: &mut Vec<Problem>) -> Names<'r> {
    let mut first: FastMap<&str, (usize, usize)> =
        FastMap::with_capacity_and_hasher(raw.resource.len(), Default::default());
    for (i, r) in raw.resource.iter().enumerate() {
        let name = r.name.get_ref().as_str();
        let at = r.name.span().start;
        if let Some(why) = invalid_name(name) {
            problems.push(pos.problem(ProblemKind::InvalidName, at, why));
            continue;
        }
        if let Some(&(j, _)) = first.get(name) {
            let (line, _) = pos.at(raw.resource[j].name.span().start);
            problems.push(pos.problem(
                ProblemKind::DuplicateName,
                at,
                format!("duplicate resource name `{name}` (first defined on line {line})"),
            ));
            continue;
        }
        first.insert(name, (i, 0));
    }
    let mut kept: Vec<usize> = first.values().map(|&(i, _)| i).collect();
    // Names are unique here, so an unstable sort gives the one order.
    kept.sort_unstable_by(|&a, &b| raw.resource[a].name.get_ref().cmp(raw.resource[b].name.get_ref()));
    for (k, &i) in kept.iter().enumerate() {
        if let Some(entry) = first.get_mut(raw.resource[i].name.get_ref().as_str()) {
            entry.1 = k;
        }
    }
    Names { first, kept }
}

/// Why `name` cannot be a resource name, if it cannot.
fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a resource name cannot be empty".into());
    }
    name.chars().any(|c| c.is_whitespace() || c.is_control()).then(|| {
        format!(
            "resource name {name:?} contains whitespace or control characters \
             (names are passed on in space-separated lists)"
        )
    })
}

/// What [`check_resources`] found valid.
struct Checked<'r> {
    /// Direct dependencies of each kept resource (indices, sorted, deduplicated).
    deps: Vec<Vec<usize>>,
    /// Every valid glob of a kept resource: (file order, owner, glob).
    globs: Vec<(usize, usize, glob::Compiled<'r>)>,
}

/// Types, dependencies and globs of every resource, in file order. Resources dropped by the name
/// checks are checked too (their mistakes are reported) but contribute nothing.
fn check_resources<'r>(
    raw: &'r RawMap,
    names: &Names<'_>,
    pos: &Positions<'_>,
    problems: &mut Vec<Problem>,
) -> Checked<'r> {
    let mut checked = Checked {
        deps: vec![Vec::new(); names.kept.len()],
        globs: Vec::with_capacity(raw.resource.iter().map(|r| r.paths.len()).sum()),
    };
    let mut expansion = Expansion::default();
    for (i, r) in raw.resource.iter().enumerate() {
        let name = r.name.get_ref().as_str();
        let me = names.me(i, name);
        if r.kind.get_ref().trim().is_empty() {
            problems.push(pos.problem(
                ProblemKind::InvalidType,
                r.kind.span().start,
                format!("resource `{name}` has a blank `type`"),
            ));
        }
        for dep in &r.depends_on {
            match (names.index(dep.get_ref().as_str()), me) {
                (Some(k), Some(me)) => checked.deps[me].push(k),
                (Some(_), None) => {}
                (None, _) => problems.push(unknown_dependency(name, dep, names, pos)),
            }
        }
        for path in &r.paths {
            match glob::compile_with(path.get_ref(), &mut expansion) {
                Ok(g) => {
                    if let Some(me) = me {
                        checked.globs.push((i, me, g));
                    }
                }
                Err(why) => problems.push(pos.problem(
                    ProblemKind::InvalidGlob,
                    path.span().start,
                    format!("resource `{name}`: invalid glob {:?}: {why}", path.get_ref()),
                )),
            }
        }
    }
    for d in &mut checked.deps {
        d.sort_unstable();
        d.dedup();
    }
    checked
}

fn unknown_dependency(name: &str, dep: &Spanned<String>, names: &Names<'_>, pos: &Positions<'_>) -> Problem {
    let d = dep.get_ref().as_str();
    let hint = suggest(d, names.first.keys().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    pos.problem(
        ProblemKind::UnknownDependency,
        dep.span().start,
        format!("resource `{name}` depends on unknown resource `{d}`{hint}"),
    )
}

/// The `ignore` globs, owned by [`IGNORE`].
fn compile_ignore<'r>(
    raw: &'r RawMap,
    pos: &Positions<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<(glob::Compiled<'r>, usize)> {
    let mut ignore = Vec::new();
    let mut expansion = Expansion::default();
    for g in &raw.ignore {
        match glob::compile_with(g.get_ref(), &mut expansion) {
            Ok(compiled) => ignore.push((compiled, IGNORE)),
            Err(why) => problems.push(pos.problem(
                ProblemKind::InvalidGlob,
                g.span().start,
                format!("`ignore`: invalid glob {:?}: {why}", g.get_ref()),
            )),
        }
    }
    ignore
}

/// One problem per dependency cycle, naming its resources in order.
fn cycle_problems(raw: &RawMap, names: &Names<'_>, deps: &[Vec<usize>], pos: &Positions<'_>) -> Vec<Problem> {
    let name_of = |k: usize| &raw.resource[names.kept[k]].name;
    cycles(deps)
        .into_iter()
        .map(|cycle| {
            let listed: Vec<&str> = cycle.iter().map(|&k| name_of(k).get_ref().as_str()).collect();
            pos.problem(
                ProblemKind::Cycle,
                name_of(cycle[0]).span().start,
                format!("dependency cycle: {} -> {}", listed.join(" -> "), listed[0]),
            )
        })
        .collect()
}

/// Every glob of a map with no problems in ONE index, resource by resource so that a resource's
/// globs are consecutive (the planner relies on it to skip repeats cheaply), `ignore` last.
fn index_globs(
    mut globs: Vec<(usize, usize, glob::Compiled<'_>)>,
    ignore: Vec<(glob::Compiled<'_>, usize)>,
) -> GlobIndex {
    // Already in order when the file lists its resources by name, as most do (and as
    // `gandalf resources discover` writes them): then there is nothing to move.
    if !globs.is_sorted_by_key(|&(file_order, owner, _)| (owner, file_order)) {
        globs.sort_by_key(|&(file_order, owner, _)| (owner, file_order));
    }
    let mut all: Vec<(glob::Compiled<'_>, usize)> = Vec::with_capacity(globs.len() + ignore.len());
    all.extend(globs.into_iter().map(|(_, o, g)| (g, o)));
    all.extend(ignore);
    GlobIndex::new(all)
}

/// The compiled map, from a raw map with no problems.
fn assemble(raw: RawMap, kept: &[usize], deps: Vec<Vec<usize>>, globs: GlobIndex) -> ResourceMap {
    let dependents = dependents_of(&deps);
    let topo = topological_order_with(&deps, &dependents);
    // The kept resources, moved out of the raw map in name order.
    let mut read: Vec<Option<RawResource>> = raw.resource.into_iter().map(Some).collect();
    let mut resources: Vec<Resource> = Vec::with_capacity(kept.len());
    resources.extend(kept.iter().filter_map(|&i| read[i].take()).map(resource));
    ResourceMap {
        resources,
        ignore: raw.ignore.into_iter().map(|g| g.into_inner()).collect(),
        unmapped: raw.unmapped,
        build_dependencies: raw.build_dependencies,
        deps,
        dependents,
        topo,
        globs,
    }
}

/// One resource as the map's users see it, defaults applied.
fn resource(r: RawResource) -> Resource {
    let kind = r.kind.into_inner();
    let mut depends_on: Vec<String> = Vec::with_capacity(r.depends_on.len());
    for d in r.depends_on {
        let d = d.into_inner();
        if !depends_on.contains(&d) {
            depends_on.push(d);
        }
    }
    Resource {
        name: r.name.into_inner(),
        deploy: r.deploy.unwrap_or(kind != "package"),
        kind,
        paths: r.paths.into_iter().map(Spanned::into_inner).collect(),
        depends_on,
        enabled: r.enabled,
    }
}

/// The closest known name to a mistyped one, if it is close enough to be a likely typo.
fn suggest<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(2);
    known
        .map(|k| (strsim::levenshtein(wrong, k), k))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Every dependency cycle of the graph, one per strongly connected component, as the list of
/// nodes in dependency order starting at the component's smallest index (so `[a, b, c]` means
/// `a -> b -> c -> a`). Within a component the shortest cycle through that node is chosen, so
/// the message shows a short loop to break rather than a walk around the whole component.
///
/// Iterative (Tarjan with an explicit stack): a chain of thousands of resources must not
/// overflow the thread's stack.
pub(crate) fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut components: Vec<Vec<usize>> = Vec::new();
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        call.push((root, 0));
        while let Some(frame) = call.last_mut() {
            let (v, edge) = *frame;
            if let Some(&w) = deps[v].get(edge) {
                frame.1 += 1;
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    components.push(component);
                }
            }
        }
    }

    let mut in_component = vec![false; n];
    let mut out = Vec::new();
    for component in components {
        let Some(&start) = component.iter().min() else { continue };
        if component.len() == 1 && !deps[start].contains(&start) {
            continue;
        }
        for &c in &component {
            in_component[c] = true;
        }
        if let Some(cycle) = shortest_cycle(deps, start, &in_component) {
            out.push(cycle);
        }
        for &c in &component {
            in_component[c] = false;
        }
    }
    out.sort();
    out
}

/// Breadth-first search from `start` back to itself inside one component.
fn shortest_cycle(deps: &[Vec<usize>], start: usize, inside: &[bool]) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &w in &deps[u] {
            if w == start {
                let mut path = vec![u];
                let mut at = u;
                while at != start {
                    at = *parent.get(&at)?;
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            if inside[w] && !parent.contains_key(&w) {
                parent.insert(w, u);
                queue.push_back(w);
            }
        }
    }
    None
}

/// Kahn's algorithm: every node after all of its dependencies. Only called on acyclic graphs;
/// on a cyclic one the nodes of the cycles would simply be missing.
pub(crate) fn topological_order(deps: &[Vec<usize>]) -> Vec<usize> {
    topological_order_with(deps, &dependents_of(deps))
}

/// Each node's dependents (sorted), from each node's dependencies.
fn dependents_of(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    // Counted first, so each list is allocated once at its size, not grown push by push.
    let mut counts = vec![0; deps.len()];
    for &d in deps.iter().flatten() {
        counts[d] += 1;
    }
    let mut dependents: Vec<Vec<usize>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (r, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(r);
        }
    }
    dependents
}

/// [`topological_order`] when the dependents are known already.
fn topological_order_with(deps: &[Vec<usize>], dependents: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut queue: VecDeque<usize> = (0..n).filter(|&r| waiting[r] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(r) = queue.pop_front() {
        order.push(r);
        for &d in &dependents[r] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                queue.push_back(d);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> MapError {
        match ResourceMap::parse(src) {
            Ok(_) => panic!("expected an error for:\n{src}"),
            Err(e) => e,
        }
    }

    fn one(src: &str) -> Problem {
        let e = err(src);
        assert_eq!(e.problems.len(), 1, "{e}");
        e.problems.into_iter().next().unwrap()
    }

    #[test]
    fn defaults() {
        let map = ResourceMap::parse(
            r#"
[[resource]]
name = "common"
type = "package"

[[resource]]
name = "api"
type = "service"
paths = ["services/api/**"]
depends_on = ["common", "common"]
"#,
        )
        .unwrap();
        assert_eq!(map.unmapped(), Unmapped::All);
        assert!(map.build_dependencies());
        assert!(map.ignore().is_empty());
        let common = map.resource("common").unwrap();
        assert!(!common.deploy, "packages are not deployed by default");
        assert!(common.enabled);
        assert!(common.paths.is_empty());
        let api = map.resource("api").unwrap();
        assert!(api.deploy);
        assert_eq!(api.depends_on, vec!["common"]);
        let names: Vec<&str> = map.resources().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["api", "common"]);
    }

    #[test]
    fn every_type_but_package_deploys_by_default_and_deploy_overrides() {
        let map = ResourceMap::parse(
            r#"
[[resource]]
name = "f"
type = "function"
[[resource]]
name = "j"
type = "job"
[[resource]]
name = "i"
type = "infra"
[[resource]]
name = "x"
type = "something else"
[[resource]]
name = "p"
type = "package"
deploy = true
[[resource]]
name = "s"
type = "service"
deploy = false
"#,
        )
        .unwrap();
        for (name, deploy) in [
            ("f", true),
            ("j", true),
            ("i", true),
            ("x", true),
            ("p", true),
            ("s", false),
        ] {
            assert_eq!(map.resource(name).unwrap().deploy, deploy, "{name}");
        }
    }

    #[test]
    fn an_empty_map_is_valid() {
        let map = ResourceMap::parse("").unwrap();
        assert!(map.resources().is_empty());
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let p = one("unmapped = \"all\"\n[[resource]\n");
        assert_eq!(p.kind, ProblemKind::Syntax);
        assert_eq!(p.line, Some(2));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let p = one("[[resource]]\nname = \"a\"\ntype = \"service\"\ndepends-on = [\"b\"]\n");
        assert_eq!(p.kind, ProblemKind::Syntax);
        assert!(p.message.contains("depends-on"), "{p}");
        assert_eq!(p.line, Some(4));
        let p = one("[[resources]]\nname = \"a\"\n");
        assert!(p.message.contains("resources"), "{p}");
        let p = one("unmaped = \"none\"\n");
        assert!(p.message.contains("unmaped"), "{p}");
    }

    #[test]
    fn bad_values_are_errors() {
        let p = one("unmapped = \"some\"\n");
        assert!(p.message.contains("some"), "{p}");
        let p = one("build_dependencies = \"yes\"\n");
        assert_eq!(p.line, Some(1));
        let p = one("[[resource]]\nname = \"a\"\ntype = \"service\"\npaths = \"a/**\"\n");
        assert_eq!(p.line, Some(4));
    }

    #[test]
    fn type_is_required() {
        let p = one("[[resource]]\nname = \"a\"\npaths = [\"a/**\"]\n");
        assert!(p.message.contains("type"), "{p}");
        let p = one("[[resource]]\nname = \"a\"\ntype = \" \"\n");
        assert_eq!(p.kind, ProblemKind::InvalidType);
        assert!(p.message.contains("`a`"), "{p}");
    }

    #[test]
    fn names_must_be_unique_and_sensible() {
        let p = one("[[resource]]\nname = \"a\"\ntype = \"service\"\n\n[[resource]]\nname = \"a\"\ntype = \"job\"\n");
        assert_eq!(p.kind, ProblemKind::DuplicateName);
        assert_eq!((p.line, p.column), (Some(6), Some(8)));
        assert!(p.message.contains("`a`") && p.message.contains("line 2"), "{p}");
        let p = one("[[resource]]\nname = \"\"\ntype = \"service\"\n");
        assert_eq!(p.kind, ProblemKind::InvalidName);
        let p = one("[[resource]]\nname = \"a b\"\ntype = \"service\"\n");
        assert_eq!(p.kind, ProblemKind::InvalidName);
    }

    #[test]
    fn unknown_dependencies_name_the_offender_and_suggest() {
        let p = one(
            "[[resource]]\nname = \"common\"\ntype = \"package\"\n[[resource]]\nname = \"api\"\ntype = \"service\"\ndepends_on = [\"comon\"]\n",
        );
        assert_eq!(p.kind, ProblemKind::UnknownDependency);
        assert_eq!((p.line, p.column), (Some(7), Some(15)));
        assert_eq!(
            p.message,
            "resource `api` depends on unknown resource `comon` (did you mean `common`?)"
        );
    }

    #[test]
    fn cycles_are_printed_in_order() {
        let src = r#"
[[resource]]
name = "c"
type = "service"
depends_on = ["a"]
[[resource]]
name = "a"
type = "service"
depends_on = ["b"]
[[resource]]
name = "b"
type = "service"
depends_on = ["c"]
"#;
        let p = one(src);
        assert_eq!(p.kind, ProblemKind::Cycle);
        assert_eq!(p.message, "dependency cycle: a -> b -> c -> a");
        assert_eq!(p.line, Some(7));
    }

    #[test]
    fn cycles_through_disabled_resources_and_self_loops() {
        let src = r#"
[[resource]]
name = "web"
type = "service"
depends_on = ["api"]
[[resource]]
name = "api"
type = "service"
enabled = false
depends_on = ["web"]
[[resource]]
name = "solo"
type = "job"
depends_on = ["solo"]
"#;
        let e = err(src);
        let messages: Vec<&str> = e.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            ["dependency cycle: api -> web -> api", "dependency cycle: solo -> solo"]
        );
    }

    #[test]
    fn the_shortest_cycle_through_the_smallest_name_is_shown() {
        // a -> b -> c -> d -> a and a -> d: shortest loop from a is a -> d -> a.
        let src = r#"
[[resource]]
name = "a"
type = "x"
depends_on = ["b", "d"]
[[resource]]
name = "b"
type = "x"
depends_on = ["c"]
[[resource]]
name = "c"
type = "x"
depends_on = ["d"]
[[resource]]
name = "d"
type = "x"
depends_on = ["a"]
"#;
        assert_eq!(one(src).message, "dependency cycle: a -> d -> a");
    }

    #[test]
    fn invalid_globs_name_the_resource_and_the_glob() {
        let p = one("[[resource]]\nname = \"a\"\ntype = \"service\"\npaths = [\"ok/**\", \"bad/{x\"]\n");
        assert_eq!(p.kind, ProblemKind::InvalidGlob);
        assert_eq!((p.line, p.column), (Some(4), Some(19)));
        assert!(p.message.starts_with("resource `a`: invalid glob \"bad/{x\""), "{p}");
        let p = one("ignore = [\"/docs/**\"]\n");
        assert!(p.message.contains("`ignore`"), "{p}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let src = r#"
[[resource]]
name = "a"
type = "service"
depends_on = ["nope"]
paths = ["x/"]
[[resource]]
name = "a"
type = "service"
"#;
        let e = err(src);
        assert_eq!(e.problems.len(), 3, "{e}");
        let text = e.render("resources.toml");
        assert!(
            text.starts_with("resources.toml:5:15: resource `a` depends on unknown"),
            "{text}"
        );
        assert!(e.to_string().starts_with("invalid resource map (3 problems):"), "{e}");
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let p = one("# é\n[[resource]]\nname = \"é\"\ntype = \"x\"\ndepends_on = [\"ü\"]\n");
        assert_eq!((p.line, p.column), (Some(5), Some(15)));
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let n = 20_000;
        let deps: Vec<Vec<usize>> = (0..n).map(|i| if i + 1 < n { vec![i + 1] } else { vec![0] }).collect();
        let found = cycles(&deps);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), n);
        let acyclic: Vec<Vec<usize>> = (0..n).map(|i| if i + 1 < n { vec![i + 1] } else { vec![] }).collect();
        assert!(cycles(&acyclic).is_empty());
        assert_eq!(topological_order(&acyclic).len(), n);
    }
}
