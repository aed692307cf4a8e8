//! The affected-set planner (SPEC §6): from changed paths to what to build, in which order, and
//! what to deploy.
//!
//! [`ResourceMap::plan`] is a pure function of the map and the changed paths. Its cost is one
//! walk down the map's glob index per distinct changed path (a few hash look-ups, and only the
//! globs that can match that path: see `index`) plus a few linear passes over the resource graph,
//! so it is linear in the number of files and in the size of the map, whatever the globs look
//! like (`benches/affected.rs` and `docs/benchmarks.md` for five map shapes).
//!
//! The rules, in the order they are applied:
//! 1. blank and repeated paths are dropped; a path matching `ignore` counts for nothing, even
//!    when a resource claims it;
//! 2. a path claimed by no resource (enabled or not) is *unmapped*; with `unmapped = "all"` any
//!    unmapped path makes every enabled resource affected (`all = true`);
//! 3. otherwise the enabled resources claiming a path are the seeds, and every resource that
//!    depends on a seed, transitively, is affected too;
//! 4. the build set adds, when `build_dependencies = true`, everything the affected resources
//!    depend on, transitively;
//! 5. levels: a resource is on level 0 when none of its direct dependencies is in the build
//!    set, else one above the highest of those that are;
//! 6. deploy: the affected resources with `deploy = true`, by level, then name.
//!
//! Disabled resources never appear in any output, but they claim their paths and are walked
//! through like any other node. For levels, "direct dependencies" are taken in the graph where
//! disabled resources are contracted away (`web -> api (disabled) -> core` is `web -> core`), so
//! a disabled resource's own files affect nothing: it is not an enabled resource whose paths
//! match, and nothing depends on it in the contracted graph.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;

use super::index::Scratch;
use super::map::{IGNORE, ResourceMap, Unmapped};

/// The answer of the planner. Serializes to exactly the §6 JSON object:
/// `{"all", "affected", "levels", "deploy", "unmapped"}`; the other fields are for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// True only when unmapped paths made every enabled resource affected.
    pub all: bool,
    /// The affected resources, sorted by name.
    pub affected: Vec<String>,
    /// The build set in topological levels; names sorted within a level.
    pub levels: Vec<Vec<String>>,
    /// The affected resources with `deploy = true`, in level order, then by name.
    pub deploy: Vec<String>,
    /// Changed, non-ignored paths no resource claims, sorted, whatever the `unmapped` policy.
    pub unmapped: Vec<String>,
    /// Why each affected resource is affected: `reasons[i]` explains `affected[i]`.
    #[serde(skip)]
    pub reasons: Vec<Reason>,
    /// Changed paths that matched `ignore`, sorted.
    #[serde(skip)]
    pub ignored: Vec<String>,
    /// How many distinct, non-blank changed paths were considered.
    #[serde(skip)]
    pub changed: usize,
}

/// Why a resource is affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "because", rename_all = "snake_case")]
pub enum Reason {
    /// Its paths claim `total` changed files, `first` being the first of them in the order the
    /// change listed them.
    Changed { first: String, total: usize },
    /// It depends, directly or through the disabled resources in `via` (nearest first), on
    /// `dependency`, which is affected.
    Dependency { dependency: String, via: Vec<String> },
    /// Unmapped files made everything affected.
    Unmapped,
    /// Named explicitly (`only …`).
    Selected,
}

const NONE: usize = usize::MAX;

impl ResourceMap {
    /// Plans a change: `changed` are repository-relative, `/`-separated paths (as git prints
    /// them). Blank and duplicate entries are ignored.
    pub fn plan<I, S>(&self, changed: I) -> Plan
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let changed: Vec<S> = changed.into_iter().collect();
        let n = self.resources.len();

        // 1–2. Classify every distinct path: ignored, claimed (by whom) or unmapped. For each
        // resource only the first path it claims and the count are kept, nothing is copied.
        let mut seen: HashSet<&str, foldhash::fast::RandomState> =
            HashSet::with_capacity_and_hasher(changed.len(), Default::default());
        let mut first_file: Vec<Option<&str>> = vec![None; n];
        let mut file_count: Vec<usize> = vec![0; n];
        let mut ignored: Vec<&str> = Vec::new();
        let mut unmapped: Vec<&str> = Vec::new();
        let mut scratch = Scratch::default();
        for path in &changed {
            let path = path.as_ref();
            if path.trim().is_empty() || !seen.insert(path) {
                continue;
            }
            let owners = self.globs.owners(path, &mut scratch);
            match owners.last() {
                Some(&IGNORE) => ignored.push(path),
                None => unmapped.push(path),
                Some(_) => {
                    // A resource's globs are consecutive in the set, so a path matched by several
                    // globs of one resource shows up as a run of the same owner.
                    let mut previous = NONE;
                    for &r in owners {
                        if r != previous {
                            first_file[r].get_or_insert(path);
                            file_count[r] += 1;
                            previous = r;
                        }
                    }
                }
            }
        }
        unmapped.sort_unstable();
        ignored.sort_unstable();

        // 3. The affected set, with a reason for each member.
        let enabled = |r: usize| self.resources[r].enabled;
        let mut affected = vec![false; n];
        let mut reasons: Vec<Reason> = Vec::new();
        let all = self.unmapped == Unmapped::All && !unmapped.is_empty();
        if all {
            for r in (0..n).filter(|&r| enabled(r)) {
                affected[r] = true;
                let reason = match first_file[r] {
                    None => Reason::Unmapped,
                    first => changed_because(first, file_count[r]),
                };
                reasons.push(reason);
            }
        } else {
            // Breadth-first over dependents, through disabled resources too; `parent` remembers
            // where each one was reached from, to explain it.
            let mut reached = vec![false; n];
            let mut parent = vec![NONE; n];
            let mut queue = VecDeque::new();
            for r in (0..n).filter(|&r| enabled(r) && first_file[r].is_some()) {
                reached[r] = true;
                queue.push_back(r);
            }
            while let Some(r) = queue.pop_front() {
                for &d in &self.dependents[r] {
                    if !reached[d] {
                        reached[d] = true;
                        parent[d] = r;
                        queue.push_back(d);
                    }
                }
            }
            for r in (0..n).filter(|&r| reached[r] && enabled(r)) {
                affected[r] = true;
                let reason = if parent[r] == NONE {
                    changed_because(first_file[r], file_count[r])
                } else {
                    let mut via = Vec::new();
                    let mut at = parent[r];
                    // Seeds are enabled, so this walk ends on an enabled resource.
                    while !enabled(at) && parent[at] != NONE {
                        via.push(self.resources[at].name.clone());
                        at = parent[at];
                    }
                    Reason::Dependency {
                        dependency: self.resources[at].name.clone(),
                        via,
                    }
                };
                reasons.push(reason);
            }
        }

        let mut plan = self.finish(&affected, reasons);
        plan.all = all;
        plan.unmapped = unmapped.into_iter().map(str::to_owned).collect();
        plan.ignored = ignored.into_iter().map(str::to_owned).collect();
        plan.changed = seen.len();
        plan
    }

    /// Plans an explicit selection (`/bobby deploy … only api,web`): exactly the named resources
    /// are affected (not what depends on them); their build set, levels and deploy order follow
    /// the same rules as [`ResourceMap::plan`]. Fails on the first name that is not an enabled
    /// resource of the map.
    /// The plan when the change list may be incomplete: every enabled resource is affected.
    pub fn plan_all(&self) -> Plan {
        let names: Vec<&str> = self
            .resources
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.name.as_str())
            .collect();
        self.plan_only(&names).expect("every enabled resource is a valid name")
    }

    pub fn plan_only<S: AsRef<str>>(&self, names: &[S]) -> Result<Plan, String> {
        let mut affected = vec![false; self.resources.len()];
        for name in names {
            let name = name.as_ref();
            match self.resources.iter().position(|r| r.name == name && r.enabled) {
                Some(r) => affected[r] = true,
                None => return Err(name.to_string()),
            }
        }
        let reasons = affected.iter().filter(|a| **a).map(|_| Reason::Selected).collect();
        Ok(self.finish(&affected, reasons))
    }

    /// Steps 4–6: from the affected set to the build set, its levels and the deploy order.
    fn finish(&self, affected: &[bool], reasons: Vec<Reason>) -> Plan {
        let n = self.resources.len();
        let enabled = |r: usize| self.resources[r].enabled;

        // 4. The build set: affected plus (optionally) all they depend on, through anything.
        let mut in_build = affected.to_vec();
        if self.build_dependencies {
            let mut walked = affected.to_vec();
            let mut stack: Vec<usize> = (0..n).filter(|&r| affected[r]).collect();
            while let Some(r) = stack.pop() {
                for &d in &self.deps[r] {
                    if !walked[d] {
                        walked[d] = true;
                        in_build[d] = enabled(d);
                        stack.push(d);
                    }
                }
            }
        }

        // 5. Levels, in topological order. For an enabled resource in the build set, `value` is
        // its level; for a disabled one, the highest level among the build-set resources it
        // passes through to (its "direct dependencies" in the contracted graph), if any.
        let mut value: Vec<Option<usize>> = vec![None; n];
        let mut level = vec![NONE; n];
        for &r in &self.topo {
            let highest = self.deps[r]
                .iter()
                .filter_map(|&d| {
                    if enabled(d) {
                        (level[d] != NONE).then_some(level[d])
                    } else {
                        value[d]
                    }
                })
                .max();
            if enabled(r) {
                if in_build[r] {
                    let l = highest.map_or(0, |h| h + 1);
                    level[r] = l;
                    value[r] = Some(l);
                }
            } else {
                value[r] = highest;
            }
        }
        let mut levels: Vec<Vec<String>> = Vec::new();
        for r in (0..n).filter(|&r| in_build[r]) {
            let l = level[r];
            if levels.len() <= l {
                levels.resize(l + 1, Vec::new());
            }
            levels[l].push(self.resources[r].name.clone());
        }

        // 6. Deploy order.
        let mut deploy: Vec<usize> = (0..n).filter(|&r| affected[r] && self.resources[r].deploy).collect();
        deploy.sort_by_key(|&r| (level[r], r));

        let names = |keep: &[bool]| -> Vec<String> {
            (0..n)
                .filter(|&r| keep[r])
                .map(|r| self.resources[r].name.clone())
                .collect()
        };
        Plan {
            all: false,
            affected: names(affected),
            levels,
            deploy: deploy.into_iter().map(|r| self.resources[r].name.clone()).collect(),
            unmapped: vec![],
            reasons,
            ignored: vec![],
            changed: 0,
        }
    }
}

fn changed_because(first: Option<&str>, total: usize) -> Reason {
    // One example, the first in the order the change listed them (git lists paths sorted), is
    // enough to say "this file": copying a few paths for each of thousands of resources was a
    // tenth of the time of a 20,000-file plan.
    Reason::Changed {
        first: first.unwrap_or_default().to_owned(),
        total,
    }
}

impl Plan {
    /// The build set (affected plus, with `build_dependencies`, their dependencies), sorted.
    pub fn build(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.levels.iter().flatten().map(String::as_str).collect();
        all.sort_unstable();
        all
    }

    /// Why `name` is affected, or `None` when it is not.
    pub fn reason(&self, name: &str) -> Option<&Reason> {
        let at = self.affected.binary_search_by(|a| a.as_str().cmp(name)).ok()?;
        self.reasons.get(at)
    }

    /// The §6 JSON object, on one line.
    pub fn to_json(&self) -> String {
        // Serializing strings, bools and vectors of them cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The plan for people when the change list may be cut short ([`Plan`] of every enabled
    /// resource, from `plan_all`): why everything is affected, then the plan.
    pub fn to_text_cut_short(&self, listed: usize) -> String {
        format!(
            "GitHub listed {listed} changed files, the most it lists for one comparison: there may be more, so every enabled resource counts as affected.\n{}",
            self.to_text()
        )
    }

    /// The plan for people: what is affected and why, the build levels, what is deployed.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} changed file{} ({} ignored, {} unmapped)",
            self.changed,
            plural(self.changed),
            self.ignored.len(),
            self.unmapped.len()
        );
        if !self.unmapped.is_empty() {
            let _ = writeln!(
                out,
                "\nUnmapped (no resource claims them){}:",
                if self.all {
                    "; they make every resource affected"
                } else {
                    ""
                }
            );
            list(&mut out, &self.unmapped, 10);
        }
        if self.affected.is_empty() {
            let _ = writeln!(out, "\nNothing is affected: nothing to build or deploy.");
            return out;
        }
        let _ = writeln!(out, "\nAffected ({}):", self.affected.len());
        let width = self.affected.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for name in &self.affected {
            let why = match self.reason(name) {
                Some(Reason::Changed { first, total }) => match total.saturating_sub(1) {
                    0 => format!("changed: {first}"),
                    more => format!("changed: {first} and {more} more"),
                },
                Some(Reason::Dependency { dependency, via }) if via.is_empty() => {
                    format!("depends on {dependency}")
                }
                Some(Reason::Dependency { dependency, via }) => {
                    format!("depends on {dependency} (through disabled {})", via.join(" -> "))
                }
                Some(Reason::Unmapped) => "unmapped files changed".to_string(),
                Some(Reason::Selected) => "selected".to_string(),
                None => String::new(),
            };
            let _ = writeln!(out, "  {name:<width$}  {why}");
        }
        let affected: HashSet<&str> = self.affected.iter().map(String::as_str).collect();
        let _ = writeln!(out, "\nBuild ({} in {} levels):", self.build().len(), self.levels.len());
        for (i, level) in self.levels.iter().enumerate() {
            let names: Vec<String> = level
                .iter()
                .map(|n| {
                    if affected.contains(n.as_str()) {
                        n.clone()
                    } else {
                        format!("{n} (dependency)")
                    }
                })
                .collect();
            let _ = writeln!(out, "  level {i}: {}", names.join(", "));
        }
        if self.deploy.is_empty() {
            let _ = writeln!(out, "\nDeploy: nothing");
        } else {
            let _ = writeln!(out, "\nDeploy ({}): {}", self.deploy.len(), self.deploy.join(", "));
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn list(out: &mut String, items: &[String], max: usize) {
    for item in items.iter().take(max) {
        let _ = writeln!(out, "  {item}");
    }
    if items.len() > max {
        let _ = writeln!(out, "  … and {} more", items.len() - max);
    }
}
