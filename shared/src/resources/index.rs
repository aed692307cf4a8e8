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
//! Building it is cheap: nothing is compiled to a regex except the rare globs left to globset,
//! and the whole index is a few flat vectors (nodes, entries grouped by node, segments) and one
//! hash table of edges, so indexing a glob allocates little or nothing: a node's
//! entries are a range of one vector, a key is a node of its own, and the segments of a glob's
//! rest (`**/*.rs` in `libs/x/**/*.rs`) are made once per distinct text, however many directories
//! share it. Consecutive globs and consecutive paths usually start alike, so each walk reuses
//! the nodes of the previous one while their segments agree. The history of this structure (one
//! `GlobSet` for everything, then a prefix table in front of it, then this) is in
//! `docs/benchmarks.md`.

use std::hash::BuildHasher;

use foldhash::HashMap;

use super::glob::{Compiled, How, Reference};
use super::pattern::{self, Expansion, Prepared, Seg};

/// The globs of a map, each owned by an index (a resource, or the ignore list's marker).
///
/// Everything lives in a handful of flat vectors rather than in one allocation (or three) per
/// node, entry or segment list: a 5,000-resource map has tens of thousands of each, and their
/// allocations and frees were a quarter of loading one (the history is in `docs/benchmarks.md`).
#[derive(Debug, Clone)]
pub(crate) struct GlobIndex {
    /// The trie's nodes; `nodes[0]` is the root. A node's edge from its parent, and its keys (see
    /// [`KEY`]), are in [`GlobIndex::edges`], under the node's own number.
    nodes: Vec<Node>,
    edges: Strings,
    /// Every entry, grouped by node: a node's entries are `entries[node.entries.0..node.entries.1]`.
    entries: Vec<Entry>,
    /// The segments of every [`Rest::Segments`], one list after the other.
    segs: Vec<Seg>,
    /// `owner[g]` is the owner of the g-th glob.
    owner: Vec<usize>,
}

/// Within a node, an entry whose remaining pattern holds a literal segment (`**/lib0042/**`,
/// `**/Cargo.toml`) is filed under that segment, and checked only when one of the path's remaining
/// segments is it: so thousands of `**/name` globs at the root cost a few hash look-ups per path.
/// The entries filed under a segment form a node of their own, a "key node", reached through the
/// edge table like a child, but from the tag `parent | KEY` rather than `parent`: the walk down
/// the trie never meets one.
const KEY: usize = 1 << (usize::BITS - 1);

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Its entries: `entries[self.entries.0..self.entries.1]`.
    entries: (usize, usize),
    /// Whether it has key nodes (see [`KEY`]).
    has_keys: bool,
}

/// One alternative of one glob, at its node.
#[derive(Debug, Clone)]
struct Entry {
    glob: usize,
    rest: Rest,
}

#[derive(Debug, Clone)]
enum Rest {
    /// The segments after the node's (`segs[start..end]`), matched against the path's segments
    /// after the node's.
    Segments(usize, usize),
    /// Just `**` (`dir/**`, the most common glob): the segments [`BELOW`].
    Below,
    /// A glob left to globset, matched against the whole path.
    Reference(Box<Reference>),
}

/// The rest of a `dir/**` glob.
const BELOW: &[Seg] = &[Seg::AnyDepth];

/// Strings, each with a tag, numbered in the order they were first added; one hash table and one
/// string for all of them. The trie's edges are its strings (a node's number is that of its
/// (parent, segment)), and so are, while building, the texts of the glob rests already made into
/// segments (the same `*.rs` after thousands of different directories is made once).
#[derive(Debug, Clone)]
struct Strings {
    /// The first string with each hash of (tag, text); the others are chained through
    /// [`Item::same_hash`].
    first: HashMap<u64, usize>,
    /// Seeded at random, like std's tables.
    hasher: foldhash::fast::RandomState,
    text: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
struct Item {
    tag: usize,
    /// `text[self.text.0..self.text.1]`.
    text: (usize, usize),
    same_hash: Option<usize>,
}

impl Strings {
    fn with_capacity(items: usize) -> Strings {
        Strings {
            first: HashMap::with_capacity_and_hasher(items, Default::default()),
            hasher: Default::default(),
            text: String::new(),
            items: Vec::with_capacity(items),
        }
    }

    fn hash(&self, tag: usize, text: &str) -> u64 {
        self.hasher.hash_one((tag, text))
    }

    /// The number of `(tag, text)`, if it was added.
    fn find(&self, tag: usize, text: &str) -> Option<usize> {
        self.find_hashed(self.hash(tag, text), tag, text)
    }

    fn find_hashed(&self, hash: u64, tag: usize, text: &str) -> Option<usize> {
        let mut at = *self.first.get(&hash)?;
        loop {
            let item = &self.items[at];
            if item.tag == tag && self.text.get(item.text.0..item.text.1) == Some(text) {
                return Some(at);
            }
            at = item.same_hash?;
        }
    }

    /// The number of `(tag, text)`, added if needed, and whether it was new.
    fn add(&mut self, tag: usize, text: &str) -> (usize, bool) {
        let hash = self.hash(tag, text);
        if let Some(found) = self.find_hashed(hash, tag, text) {
            return (found, false);
        }
        let number = self.items.len();
        let start = self.text.len();
        self.text.push_str(text);
        self.items.push(Item {
            tag,
            text: (start, self.text.len()),
            same_hash: self.first.insert(hash, number),
        });
        (number, true)
    }
}

/// Reusable buffers for [`GlobIndex::owners`], so matching allocates nothing per path: the
/// path's segments (borrowed from the paths, which outlive a plan), the globs found, their owners,
/// and the previous path's walk down the trie. One `Scratch` serves one index: the walk it
/// remembers is made of that index's nodes.
#[derive(Debug, Default)]
pub(crate) struct Scratch<'p> {
    segments: Vec<&'p str>,
    found: Vec<usize>,
    owners: Vec<usize>,
    /// The previous path's segments, and the node each of its leading segments led to.
    previous: Vec<&'p str>,
    walk: Vec<usize>,
}

/// A [`GlobIndex`] being built: entries are gathered with their node, then grouped by node.
struct Builder {
    edges: Strings,
    pending: Vec<(usize, Entry)>,
    segs: Vec<Seg>,
    /// The rests already made into segments (tag 0, their text), and where their segments are:
    /// `rests.items[i]` is at `rest_segs[i]`.
    rests: Strings,
    rest_segs: Vec<(usize, usize)>,
    expansion: Expansion,
    /// The last glob [`Builder::add_plain`] walked, and the end (in it) and node of each
    /// literal segment it walked through.
    walk_text: String,
    walk: Vec<(usize, usize)>,
}

impl GlobIndex {
    /// Builds the index from validated globs and their owners; glob `i` is the i-th of `globs`.
    pub(crate) fn new(globs: Vec<(Compiled<'_>, usize)>) -> GlobIndex {
        // Sized for the usual map, where each glob adds about one node and one entry.
        let sizing = 2 * globs.len() + 1;
        let mut builder = Builder {
            edges: Strings::with_capacity(sizing),
            pending: Vec::with_capacity(sizing),
            segs: Vec::new(),
            rests: Strings::with_capacity(16),
            rest_segs: Vec::new(),
            expansion: Expansion::default(),
            walk_text: String::new(),
            walk: Vec::new(),
        };
        // The root: an item of its own so that node numbers are item numbers. Its tag is no
        // node's, so no look-up finds it.
        builder.edges.add(usize::MAX, "");
        let mut owner = Vec::with_capacity(globs.len());
        for (glob, (compiled, who)) in globs.into_iter().enumerate() {
            owner.push(who);
            match compiled.how {
                How::Segments(Prepared::Plain(text)) => builder.add_plain(glob, text),
                How::Segments(Prepared::Braces(text)) => {
                    let mut expansion = std::mem::take(&mut builder.expansion);
                    // It expanded when it was compiled, so it does again.
                    if expansion.expand(text).is_some() {
                        for alternative in expansion.alternatives() {
                            builder.add_plain(glob, alternative);
                        }
                    }
                    builder.expansion = expansion;
                }
                How::Segments(Prepared::Segments(alternatives)) => {
                    for segs in alternatives {
                        builder.add_segments(glob, segs);
                    }
                }
                How::Reference(reference) => {
                    let node = builder.node_for(pattern::literal_prefix(reference.source()).into_iter());
                    builder.pending.push((
                        node,
                        Entry {
                            glob,
                            rest: Rest::Reference(reference),
                        },
                    ));
                }
            }
        }
        builder.finish(owner)
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
        std::mem::swap(&mut scratch.segments, &mut scratch.previous);
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
        let (previous, walk) = (&scratch.previous, &mut scratch.walk);
        let mut node = 0;
        let mut depth = 0;
        // Changed paths come sorted (git sorts them), so a path usually starts like the one
        // before: while its segments are the previous path's, the nodes that walk reached are
        // taken again rather than looked up.
        let mut same = true;
        loop {
            let rest = &segments[depth..];
            self.check(node, rest, path, found);
            if self.nodes[node].has_keys {
                for segment in rest {
                    if let Some(key) = self.edges.find(node | KEY, segment) {
                        self.check(key, rest, path, found);
                    }
                }
            }
            let Some(&segment) = segments.get(depth) else {
                break;
            };
            same = same && depth < walk.len() && previous.get(depth) == Some(&segment);
            if same {
                node = walk[depth];
            } else {
                walk.truncate(depth);
                let Some(next) = self.edges.find(node, segment) else {
                    break;
                };
                walk.push(next);
                node = next;
            }
            depth += 1;
        }
        // Usually one glob or two: sorting is nearly free, and it gives the owners in glob order.
        found.sort_unstable();
        found.dedup();
        scratch.owners.clear();
        scratch.owners.extend(found.iter().map(|&g| self.owner[g]));
        &scratch.owners
    }

    /// Checks the entries of `node` against `rest`, the segments of `path` after the node's.
    fn check(&self, node: usize, rest: &[&str], path: &str, found: &mut Vec<usize>) {
        let (start, end) = self.nodes[node].entries;
        for entry in &self.entries[start..end] {
            let hit = match &entry.rest {
                Rest::Segments(from, to) => pattern::matches(&self.segs[*from..*to], rest),
                Rest::Below => pattern::matches(BELOW, rest),
                Rest::Reference(reference) => reference.is_match(path),
            };
            if hit {
                found.push(entry.glob);
            }
        }
    }
}

impl Builder {
    /// Alternatives given as segments (`pattern::Prepared::Segments`, the rare globs with classes
    /// or escapes).
    fn add_segments(&mut self, glob: usize, mut segs: Vec<Seg>) {
        let literal = segs.iter().take_while(|s| s.literal().is_some()).count();
        let node = self.node_for(segs[..literal].iter().filter_map(Seg::literal));
        let rest = segs.split_off(literal);
        let rest = if rest == *BELOW {
            Rest::Below
        } else {
            let start = self.segs.len();
            self.segs.extend(rest);
            Rest::Segments(start, self.segs.len())
        };
        self.place(node, glob, rest);
    }

    /// A plain glob (`pattern::Prepared::Plain`, or one alternative of braces): its literal
    /// leading segments walked as text, segments made only of the rest, once for each different
    /// rest. The same placement as [`Builder::add_segments`] gives `pattern::plain(text)`.
    fn add_plain(&mut self, glob: usize, text: &str) {
        let mut node = 0;
        let mut rest = Some(text);
        // Consecutive globs usually start alike (a resource's globs, or its braces' alternatives,
        // and resources under one directory): while the segments are those of the previous
        // walk, its nodes are taken again rather than looked up (about half the look-ups).
        let (mut depth, mut at, mut same) = (0, 0, true);
        while let Some(remaining) = rest {
            let (segment, after) = match remaining.bytes().position(|b| b == b'/') {
                Some(i) => (&remaining[..i], Some(&remaining[i + 1..])),
                None => (remaining, None),
            };
            if !pattern::is_plain_literal(segment) {
                break;
            }
            let end = at + segment.len();
            same = same
                && self.walk.get(depth).is_some_and(|&(e, _)| e == end)
                && self.walk_text.get(at..end) == Some(segment);
            if same {
                node = self.walk[depth].1;
            } else {
                node = self.child(node, segment);
                self.walk.truncate(depth);
                self.walk.push((end, node));
            }
            depth += 1;
            at = end + 1;
            rest = after;
        }
        self.walk.truncate(depth);
        self.walk_text.clear();
        self.walk_text.push_str(text);
        let rest = match rest {
            Some("**") => Rest::Below,
            Some(remaining) => {
                let (number, new) = self.rests.add(0, remaining);
                if new {
                    let start = self.segs.len();
                    pattern::plain_into(remaining, &mut self.segs);
                    self.rest_segs.push((start, self.segs.len()));
                }
                let (start, end) = self.rest_segs[number];
                Rest::Segments(start, end)
            }
            None => Rest::Segments(0, 0),
        };
        self.place(node, glob, rest);
    }

    /// Files the entry for `rest` (what is left of a glob after its literal leading segments)
    /// at `node`, or at its key node for the last literal segment of `rest` if there is one
    /// (usually the most particular one: a file name).
    fn place(&mut self, node: usize, glob: usize, rest: Rest) {
        let key = match &rest {
            Rest::Segments(start, end) => self.segs[*start..*end].iter().rev().find_map(Seg::literal),
            Rest::Below | Rest::Reference(_) => None,
        };
        let at = match key {
            Some(key) => self.edges.add(node | KEY, key).0,
            None => node,
        };
        self.pending.push((at, Entry { glob, rest }));
    }

    /// The node reached from the root through `segments`, created as needed.
    fn node_for<'a>(&mut self, segments: impl Iterator<Item = &'a str>) -> usize {
        segments.fold(0, |at, segment| self.child(at, segment))
    }

    /// The child of `at` for `segment`, created as needed.
    fn child(&mut self, at: usize, segment: &str) -> usize {
        self.edges.add(at, segment).0
    }

    /// The index: the entries grouped by node (their order within a node does not matter, the
    /// globs found are sorted), the nodes that have keys marked.
    fn finish(mut self, owner: Vec<usize>) -> GlobIndex {
        let mut nodes = vec![Node::default(); self.edges.items.len()];
        for item in &self.edges.items {
            if item.tag != usize::MAX && item.tag & KEY != 0 {
                nodes[item.tag & !KEY].has_keys = true;
            }
        }
        self.pending.sort_unstable_by_key(|&(node, _)| node);
        let mut entries = Vec::with_capacity(self.pending.len());
        let mut previous = None;
        for (node, entry) in self.pending {
            if previous != Some(node) {
                nodes[node].entries.0 = entries.len();
                previous = Some(node);
            }
            entries.push(entry);
            nodes[node].entries.1 = entries.len();
        }
        GlobIndex {
            nodes,
            edges: self.edges,
            entries,
            segs: self.segs,
            owner,
        }
    }
}
