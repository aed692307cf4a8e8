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

use std::hash::BuildHasher;

use foldhash::HashMap;

use super::glob::{Compiled, How, Reference};
use super::pattern::{self, Prepared, Seg};

/// The globs of a map, each owned by an index (a resource, or the ignore list's marker).
#[derive(Debug, Clone)]
pub(crate) struct GlobIndex {
    /// The trie; `nodes[0]` is the root.
    nodes: Vec<Node>,
    /// Every edge of the trie, by the hash of (parent, segment): the child, the first of those
    /// with that hash (the others are chained through [`Node::same_hash`]). One table for the
    /// whole trie and the segments in one string ([`GlobIndex::labels`]), rather than a table of
    /// boxed strings in every node: a map of 5,000 resources has up to tens of thousands of nodes,
    /// and allocating (then freeing) two or three blocks for each showed as a tenth of loading
    /// the `braces` map of `benches/affected.rs` in a profile.
    edges: HashMap<u64, usize>,
    /// Hashes (parent, segment) for [`GlobIndex::edges`]; seeded at random, like std's tables.
    hasher: foldhash::fast::RandomState,
    /// Every node's segment, one after the other.
    labels: String,
    entries: Vec<Entry>,
    /// `owner[g]` is the owner of the g-th glob.
    owner: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The node this one is a child of (the root is its own).
    parent: usize,
    /// Its segment: `labels[label.0..label.1]`.
    label: (usize, usize),
    /// The next node whose edge has the same hash, if any.
    same_hash: Option<usize>,
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
    /// Just `**` (`dir/**`, the most common glob): the segments [`BELOW`], without allocating them
    /// for every such glob.
    Below,
    /// A glob left to globset, matched against the whole path.
    Reference(Box<Reference>),
}

/// The rest of a `dir/**` glob.
const BELOW: &[Seg] = &[Seg::AnyDepth];

/// Reusable buffers for [`GlobIndex::owners`], so matching allocates nothing per path: the
/// path's segments (borrowed from the paths, which outlive a plan), the globs found, their owners.
#[derive(Debug, Default)]
pub(crate) struct Scratch<'p> {
    segments: Vec<&'p str>,
    found: Vec<usize>,
    owners: Vec<usize>,
}

impl GlobIndex {
    /// Builds the index from validated globs and their owners; glob `i` is the i-th of `globs`.
    pub(crate) fn new(globs: Vec<(Compiled<'_>, usize)>) -> GlobIndex {
        // Sized for the usual map, where each glob adds about one node and one entry: growing
        // these vectors by doubling was a tenth of loading a 5,000-resource map.
        let alternatives: usize = globs
            .iter()
            .map(|(compiled, _)| match &compiled.how {
                How::Segments(Prepared::Alternatives(joined)) => pattern::alternatives(joined).count(),
                How::Segments(Prepared::Segments(alternatives)) => alternatives.len(),
                _ => 1,
            })
            .sum();
        // Nodes: about one and a half per alternative (`services/svc0042/{src,tests}/**` adds three).
        let mut nodes = Vec::with_capacity(alternatives + alternatives / 2 + 1);
        nodes.push(Node::default());
        let mut index = GlobIndex {
            nodes,
            edges: HashMap::with_capacity_and_hasher(alternatives + alternatives / 2, Default::default()),
            hasher: Default::default(),
            labels: String::new(),
            entries: Vec::with_capacity(alternatives),
            owner: Vec::with_capacity(globs.len()),
        };
        for (glob, (compiled, who)) in globs.into_iter().enumerate() {
            index.owner.push(who);
            match compiled.how {
                How::Segments(Prepared::Plain(text)) => index.add_plain(glob, text),
                How::Segments(Prepared::Alternatives(joined)) => {
                    for text in pattern::alternatives(&joined) {
                        index.add_plain(glob, text);
                    }
                }
                How::Segments(Prepared::Segments(alternatives)) => {
                    for segs in alternatives {
                        index.add_segments(glob, segs);
                    }
                }
                How::Reference(reference) => {
                    let node = index.node_for(pattern::literal_prefix(reference.source()).into_iter());
                    let entry = index.push_entry(glob, Rest::Reference(reference));
                    index.nodes[node].always.push(entry);
                }
            }
        }
        index
    }

    fn add_segments(&mut self, glob: usize, mut segs: Vec<Seg>) {
        let literal = segs.iter().take_while(|s| s.literal().is_some()).count();
        let node = self.node_for(segs[..literal].iter().filter_map(Seg::literal));
        // Moved, not cloned: the segments' strings are allocated once, when the glob is parsed.
        if segs[literal..] == *BELOW {
            let entry = self.push_entry(glob, Rest::Below);
            self.nodes[node].always.push(entry);
            return;
        }
        let rest: Box<[Seg]> = segs.split_off(literal).into_boxed_slice();
        self.place(node, glob, rest);
    }

    /// A plain glob (`pattern::Prepared::Plain`): its literal leading segments walked as text,
    /// segments made only of the rest. The same placement as [`GlobIndex::add_segments`] gives
    /// `pattern::plain(text)`, without allocating the literal segments.
    fn add_plain(&mut self, glob: usize, text: &str) {
        let mut node = 0;
        let mut rest = Some(text);
        while let Some(remaining) = rest {
            let (segment, after) = match remaining.bytes().position(|b| b == b'/') {
                Some(i) => (&remaining[..i], Some(&remaining[i + 1..])),
                None => (remaining, None),
            };
            if !pattern::is_plain_literal(segment) {
                break;
            }
            node = self.child(node, segment);
            rest = after;
        }
        let rest: Box<[Seg]> = match rest {
            Some("**") => {
                let entry = self.push_entry(glob, Rest::Below);
                self.nodes[node].always.push(entry);
                return;
            }
            Some(remaining) => pattern::plain(remaining).into_boxed_slice(),
            None => Box::new([]),
        };
        self.place(node, glob, rest);
    }

    /// Files the entry for `rest` (what is left of a glob after its literal leading segments)
    /// at `node`.
    fn place(&mut self, node: usize, glob: usize, rest: Box<[Seg]>) {
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
        segments.fold(0, |at, segment| self.child(at, segment))
    }

    /// The child of `at` for `segment`, created as needed.
    fn child(&mut self, at: usize, segment: &str) -> usize {
        let hash = self.edge_hash(at, segment);
        if let Some(child) = self.find_child(hash, at, segment) {
            return child;
        }
        let child = self.nodes.len();
        let start = self.labels.len();
        self.labels.push_str(segment);
        self.nodes.push(Node {
            parent: at,
            label: (start, self.labels.len()),
            same_hash: self.edges.insert(hash, child),
            ..Node::default()
        });
        child
    }

    fn edge_hash(&self, parent: usize, segment: &str) -> u64 {
        self.hasher.hash_one((parent, segment))
    }

    /// The child of `parent` for `segment`, whose edge hashes to `hash`, if there is one.
    fn find_child(&self, hash: u64, parent: usize, segment: &str) -> Option<usize> {
        let mut at = *self.edges.get(&hash)?;
        loop {
            let node = &self.nodes[at];
            if node.parent == parent && self.labels.get(node.label.0..node.label.1) == Some(segment) {
                return Some(at);
            }
            at = node.same_hash?;
        }
    }

    /// Whether any glob matches `path`.
    #[cfg(test)]
    pub(crate) fn is_match(&self, path: &str) -> bool {
        !self.owners(path, &mut Scratch::default()).is_empty()
    }

    /// The owner of every glob matching `path`, in the order the globs were given (each glob
    /// once, so an owner whose globs were given together appears in one run, possibly repeated).
    pub(crate) fn owners<'s, 'p>(&self, path: &'p str, scratch: &'s mut Scratch<'p>) -> &'s [usize] {
        // Split on the byte: `str::split('/')` goes through the general char searcher, which was
        // a sixth of a plan's time.
        let segments = &mut scratch.segments;
        segments.clear();
        let mut start = 0;
        for (i, &b) in path.as_bytes().iter().enumerate() {
            if b == b'/' {
                segments.push(&path[start..i]);
                start = i + 1;
            }
        }
        segments.push(&path[start..]);
        let segments = &*segments;
        let found = &mut scratch.found;
        found.clear();
        let mut node = 0;
        let mut depth = 0;
        loop {
            self.visit(&self.nodes[node], depth, segments, path, found);
            let Some(next) = segments
                .get(depth)
                .and_then(|s| self.find_child(self.edge_hash(node, s), node, s))
            else {
                break;
            };
            node = next;
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
                Rest::Below => pattern::matches(BELOW, rest),
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
