//! Every glob of a map in one index, so that a changed path meets only the globs that can match
//! it: the cost of matching scales with the path, not with the number of globs.
//!
//! The index is a trie keyed by whole path segments. A glob lives at the node of its literal
//! leading segments (`libs/lib0042/**/*.rs` under `libs` → `lib0042`; `**/x` and `{a,b}/…`
//! alternatives at the root or under their own prefix, since braces are expanded). A path walks
//! down the trie one segment at a time and, at each node it reaches, checks that node's globs
//! against its remaining segments. Within a node, a glob that still holds a literal segment
//! (`**/lib0042/**`, `**/Cargo.toml`) is filed under that segment and checked only when the path
//! has such a segment, so thousands of `**/name` globs at the root cost a few hash look-ups per
//! path; the others (`**/*.md`, `*`) are checked for every path that reaches the node.
//!
//! Building it is cheap: globs are already segment lists (`pattern`), nothing is compiled to a
//! regex except the rare globs left to globset, so parsing a 5,000-resource map costs the TOML
//! and a few allocations per glob. The history of this structure (one `GlobSet` for everything,
//! then a prefix table in front of it, then this) is in `docs/benchmarks.md`.

use std::collections::HashMap;

use super::glob::{Compiled, How, Reference};
use super::pattern::{self, Seg};

/// The globs of a map, each owned by an index (a resource, or the ignore list's marker).
#[derive(Debug, Clone)]
pub(crate) struct GlobIndex {
    /// The trie; `nodes[0]` is the root.
    nodes: Vec<Node>,
    entries: Vec<Entry>,
    /// `owner[g]` is the owner of the g-th glob.
    owner: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The next literal segment → its node.
    children: HashMap<Box<str>, usize>,
    /// Entries checked for every path reaching this node.
    always: Vec<usize>,
    /// Entries whose remaining pattern holds this literal segment: checked only when one of the
    /// path's remaining segments is it.
    keyed: HashMap<Box<str>, Vec<usize>>,
}

/// One alternative of one glob, at its node.
#[derive(Debug, Clone)]
struct Entry {
    glob: usize,
    rest: Rest,
}

#[derive(Debug, Clone)]
enum Rest {
    /// The segments after the node's, matched against the path's segments after the node's.
    Segments(Box<[Seg]>),
    /// A glob left to globset, matched against the whole path.
    Reference(Box<Reference>),
}

/// Reusable buffers for [`GlobIndex::owners`], so matching allocates nothing per path.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    found: Vec<usize>,
    owners: Vec<usize>,
}

impl GlobIndex {
    /// Builds the index from validated globs and their owners; glob `i` is the i-th of `globs`.
    pub(crate) fn new(globs: Vec<(Compiled, usize)>) -> GlobIndex {
        let mut index = GlobIndex {
            nodes: vec![Node::default()],
            entries: Vec::new(),
            owner: Vec::with_capacity(globs.len()),
        };
        for (glob, (compiled, who)) in globs.into_iter().enumerate() {
            index.owner.push(who);
            match compiled.how {
                How::Segments(alternatives) => {
                    for segs in alternatives {
                        index.add_segments(glob, segs);
                    }
                }
                How::Reference(reference) => {
                    let node = index.node_for(pattern::literal_prefix(&compiled.source).into_iter());
                    let entry = index.push_entry(glob, Rest::Reference(reference));
                    index.nodes[node].always.push(entry);
                }
            }
        }
        index
    }

    fn add_segments(&mut self, glob: usize, segs: Vec<Seg>) {
        let literal = segs.iter().take_while(|s| s.literal().is_some()).count();
        let node = self.node_for(segs[..literal].iter().filter_map(Seg::literal));
        let rest: Box<[Seg]> = segs[literal..].into();
        // The last literal segment of what remains, if any: usually the most particular one
        // (a file name).
        let key: Option<Box<str>> = rest.iter().rev().find_map(Seg::literal).map(Into::into);
        let entry = self.push_entry(glob, Rest::Segments(rest));
        let node = &mut self.nodes[node];
        match key {
            Some(key) => node.keyed.entry(key).or_default().push(entry),
            None => node.always.push(entry),
        }
    }

    fn push_entry(&mut self, glob: usize, rest: Rest) -> usize {
        self.entries.push(Entry { glob, rest });
        self.entries.len() - 1
    }

    /// The node reached from the root through `segments`, created as needed.
    fn node_for<'a>(&mut self, segments: impl Iterator<Item = &'a str>) -> usize {
        let mut at = 0;
        for segment in segments {
            at = match self.nodes[at].children.get(segment) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(segment.into(), child);
                    child
                }
            };
        }
        at
    }

    /// Whether any glob matches `path`.
    #[cfg(test)]
    pub(crate) fn is_match(&self, path: &str) -> bool {
        !self.owners(path, &mut Scratch::default()).is_empty()
    }

    /// The owner of every glob matching `path`, in the order the globs were given (each glob
    /// once, so an owner whose globs were given together appears in one run, possibly repeated).
    pub(crate) fn owners<'s>(&self, path: &str, scratch: &'s mut Scratch) -> &'s [usize] {
        let segments: Vec<&str> = path.split('/').collect();
        let found = &mut scratch.found;
        found.clear();
        let mut node = 0;
        let mut depth = 0;
        loop {
            self.visit(&self.nodes[node], depth, &segments, path, found);
            let Some(next) = segments.get(depth).and_then(|s| self.nodes[node].children.get(*s)) else {
                break;
            };
            node = *next;
            depth += 1;
        }
        found.sort_unstable();
        found.dedup();
        scratch.owners.clear();
        scratch.owners.extend(found.iter().map(|&g| self.owner[g]));
        &scratch.owners
    }

    /// Checks the entries of `node`, reached after `depth` segments of `path`.
    fn visit(&self, node: &Node, depth: usize, segments: &[&str], path: &str, found: &mut Vec<usize>) {
        let rest = &segments[depth..];
        let mut check = |entry: usize| {
            let entry = &self.entries[entry];
            let hit = match &entry.rest {
                Rest::Segments(pattern) => pattern::matches(pattern, rest),
                Rest::Reference(reference) => reference.is_match(path),
            };
            if hit {
                found.push(entry.glob);
            }
        };
        node.always.iter().for_each(|&e| check(e));
        if !node.keyed.is_empty() {
            for segment in rest {
                if let Some(entries) = node.keyed.get(*segment) {
                    entries.iter().for_each(|&e| check(e));
                }
            }
        }
    }
}
