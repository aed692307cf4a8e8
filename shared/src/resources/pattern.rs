//! Globs as lists of path segments, matched without regexes (SPEC §6 semantics).
//!
//! A map's globs are matched by [`super::index::GlobIndex`], which needs each glob as segments:
//! its literal leading segments pick the branch of the index the glob lives in, and what follows
//! is matched segment by segment against the path's own segments. This module turns a glob (one
//! [`super::glob::compile_with`] has already validated) into that form and matches it.
//!
//! The meaning is pinned to globset's, which stays the reference (the property tests in
//! `tests.rs` compare the two on random globs and paths):
//! - `**` as a whole segment is any number of whole segments; at the end of a glob (`docs/**`) at
//!   least one, so `docs/**` matches everything below `docs` but not `docs` itself;
//! - `*` is any run of characters within one segment (dotfiles too), `?` one character, `[…]`
//!   one character of the class, everything else (escaped with `\` or not) itself;
//! - `{a,b}` is expanded into one segment list per alternative (at most [`MAX_ALTERNATIVES`]).
//!
//! Globs whose globset meaning does not fit segments are returned as `None`, and the index asks
//! globset about them instead (compiled on first use): a negated class or a class holding `/`
//! (globset lets those match `/`, so they can span segments), a class next to braces or holding
//! `\`, braces touching a `*` (`{*,x}*` would become `**` once expanded), two `**` in a row, and
//! more than [`MAX_ALTERNATIVES`] alternatives. No map seen in practice has such a glob.

/// The most alternatives a glob's braces expand to before it is left to globset.
pub(crate) const MAX_ALTERNATIVES: usize = 64;

/// One segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// `**`: any number of whole segments (at least one at the end of the glob).
    AnyDepth,
    /// A segment without wildcards: equal to the path's segment.
    Literal(Box<str>),
    /// `*`: any segment, the empty one included.
    Any,
    /// `*x`: a segment ending with `x`.
    Suffix(Box<str>),
    /// `x*`: a segment starting with `x`.
    Prefix(Box<str>),
    /// Anything else within one segment.
    Tokens(Box<[Tok]>),
}

/// One element of a segment pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[…]`, not negated, ASCII, without `/`: inclusive ranges.
    Class(Box<[(char, char)]>),
}

/// A glob character, remembering whether it was escaped (`\*` is a literal star).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Plain(char),
    Escaped(char),
}

/// A token before splitting into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flat {
    Sep,
    Tok(Tok),
}

/// A validated glob in the form the index takes it (see [`prepare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prepared<'a> {
    /// Literal characters, `*`, `?` and `/` only (nearly every glob of a real map), as written:
    /// the index walks its literal leading segments as borrowed text and makes segments
    /// ([`plain_into`]) only of the rest, so such a glob costs no copy of its text.
    Plain(&'a str),
    /// Braces and nothing else of the rarer syntax, as written: every alternative is a plain glob
    /// ([`Expansion`] lists them). Kept as the text and expanded again when indexed, into the
    /// same reused buffer: storing the alternatives of thousands of `{a,b}` globs between
    /// compiling and indexing was three allocations per glob.
    Braces(&'a str),
    /// Anything else (classes, escapes): one list of segments per alternative.
    Segments(Vec<Vec<Seg>>),
}

/// A validated glob, ready for the index, or `None` when it is one globset must answer (see the
/// module documentation). Loading a 5,000-resource map prepares thousands of globs, so the
/// common forms take short cuts that allocate nothing: `expansion` is a buffer reused from glob
/// to glob. `parse` (for tests) gives every form as segments.
pub(crate) fn prepare<'a>(glob: &'a str, expansion: &mut Expansion) -> Option<Prepared<'a>> {
    if !has_byte(glob, b"[]{}\\") {
        return plain_fits(glob).then_some(Prepared::Plain(glob));
    }
    if !has_byte(glob, b"[]\\\0") {
        // Braces alone (`{libs,vendor}/x/**`, `*.{rs,toml}`): expanded as text, each alternative
        // then a plain glob. The same expansion as below, without the per-character units.
        let groups = brace_groups(glob)?;
        // One pair of braces and at most one `**` (nearly every glob with braces): the
        // alternatives need not be made to be checked. No `*` touches a brace or a comma, so
        // none can form a new `**`, and an alternative with one `**` at most always fits.
        if groups == 1 && glob.as_bytes().windows(2).filter(|w| w == b"**").count() <= 1 {
            let commas = glob.bytes().skip_while(|&b| b != b'{').take_while(|&b| b != b'}');
            let alternatives = 1 + commas.filter(|&b| b == b',').count();
            return (alternatives <= MAX_ALTERNATIVES).then_some(Prepared::Braces(glob));
        }
        expansion.expand(glob)?;
        let fits = expansion.alternatives().all(plain_fits);
        return fits.then_some(Prepared::Braces(glob));
    }
    let units = units(glob)?;
    let has = |c: char| units.contains(&Unit::Plain(c));
    let alternatives = if has('{') {
        if has('[') {
            return None;
        }
        expand(&units)?
    } else {
        vec![units]
    };
    alternatives
        .iter()
        .map(|alt| segments(alt))
        .collect::<Option<_>>()
        .map(Prepared::Segments)
}

/// The alternatives of a validated glob, each as a list of segments, or `None` when the glob is
/// one globset must answer (see the module documentation).
#[cfg(test)]
pub(crate) fn parse(glob: &str) -> Option<Vec<Vec<Seg>>> {
    let mut expansion = Expansion::default();
    Some(match prepare(glob, &mut expansion)? {
        Prepared::Plain(text) => vec![plain(text)],
        Prepared::Braces(text) => {
            expansion.expand(text)?;
            expansion.alternatives().map(plain).collect()
        }
        Prepared::Segments(alternatives) => alternatives,
    })
}

/// Whether a plain glob has the segment meaning: not with two `**` in a row (globset reads
/// `**/**` as something else entirely: only paths ending in `/`).
fn plain_fits(glob: &str) -> bool {
    let mut after_any_depth = false;
    for part in split_slash(glob) {
        let any_depth = part == "**";
        if any_depth && after_any_depth {
            return false;
        }
        after_any_depth = any_depth;
    }
    true
}

/// [`plain_into`] in a vector of its own (for tests).
#[cfg(test)]
pub(crate) fn plain(glob: &str) -> Vec<Seg> {
    let mut segs = Vec::with_capacity(glob.bytes().filter(|&b| b == b'/').count() + 1);
    plain_into(glob, &mut segs);
    segs
}

/// The segments of a glob of literal characters, `*`, `?` and `/` only, that [`plain_fits`],
/// straight from the text, without the general path's allocations; appended to `segs` (the index
/// keeps the segments of all its globs in one vector).
pub(crate) fn plain_into(glob: &str, segs: &mut Vec<Seg>) {
    let wild = |s: &str| has_byte(s, b"*?");
    for part in split_slash(glob) {
        let seg = match part {
            "**" => Seg::AnyDepth,
            "*" => Seg::Any,
            p if !wild(p) => Seg::Literal(p.into()),
            p if p.starts_with('*') && !wild(&p[1..]) => Seg::Suffix(p[1..].into()),
            p if p.ends_with('*') && !wild(&p[..p.len() - 1]) => Seg::Prefix(p[..p.len() - 1].into()),
            p => Seg::Tokens(
                p.chars()
                    .map(|c| match c {
                        '*' => Tok::Star,
                        '?' => Tok::One,
                        c => Tok::Char(c),
                    })
                    .collect(),
            ),
        };
        segs.push(seg);
    }
}

/// Whether a segment of a plain glob is a literal one (no `*`, no `?`).
pub(crate) fn is_plain_literal(segment: &str) -> bool {
    !has_byte(segment, b"*?")
}

/// Whether `text` holds one of the (ASCII) `bytes`. On bytes: `str::contains` with a set of
/// characters decodes every character, and this runs for every glob of a map.
fn has_byte(text: &str, bytes: &[u8]) -> bool {
    text.bytes().any(|b| bytes.contains(&b))
}

/// The segments of a `/`-separated text, split on the byte: `str::split('/')` goes through the
/// general character searcher, which calls `memcmp` for every `/` it finds (a few per cent of
/// loading a map).
pub(crate) fn split_slash(text: &str) -> impl Iterator<Item = &str> {
    split_byte(text, b'/')
}

/// `text` split on an ASCII byte.
fn split_byte(text: &str, byte: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == byte) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// How many pairs of braces a glob of plain characters and braces holds; `None` when they do not
/// balance, or when a `*` touches a brace or a separating comma: that could form `**` after
/// expansion, so such a glob is left to globset, as in [`expand`]. The structural characters are
/// ASCII, so bytes will do.
fn brace_groups(glob: &str) -> Option<usize> {
    let bytes = glob.as_bytes();
    let mut depth = 0usize;
    let mut groups = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let structural = match b {
            b'{' => {
                depth += 1;
                groups += 1;
                true
            }
            b'}' => {
                depth = depth.checked_sub(1)?;
                true
            }
            b',' => depth > 0,
            _ => false,
        };
        let star = |j: Option<usize>| j.and_then(|j| bytes.get(j)) == Some(&b'*');
        if structural && (star(i.checked_sub(1)) || star(Some(i + 1))) {
            return None;
        }
    }
    (depth == 0).then_some(groups)
}

/// [`expand`] for a glob of plain characters and braces (and no NUL), on its text: the buffers
/// are kept from one glob to the next, so expanding thousands of `{a,b}` globs allocates only
/// while they grow.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    /// The alternatives of the last glob expanded, separated by NUL (which a glob cannot hold).
    text: String,
    count: usize,
    /// The alternative being built.
    prefix: String,
    /// What remains to expand after the prefix, as pieces of the glob (byte ranges): each level
    /// of the recursion pushes its own pieces and truncates them when done, so the pieces are
    /// never copied into a string of their own.
    pieces: Vec<(usize, usize)>,
}

impl Expansion {
    /// Expands the braces of `glob` (in order, nested and empty alternatives too); `None` when
    /// the glob is one left to globset (a `*` touching a brace, too many alternatives).
    pub(crate) fn expand(&mut self, glob: &str) -> Option<()> {
        let groups = brace_groups(glob)?;
        self.text.clear();
        self.count = 0;
        if groups == 1 {
            return self.expand_one_group(glob);
        }
        self.prefix.clear();
        self.pieces.clear();
        self.pieces.push((0, glob.len()));
        self.expand_from(glob, 0)
    }

    /// [`Expansion::expand`] of a glob with one pair of braces and none inside them (nearly
    /// every glob with braces): what precedes the braces, each alternative, what follows them,
    /// with no recursion.
    fn expand_one_group(&mut self, glob: &str) -> Option<()> {
        let open = glob.bytes().position(|b| b == b'{')?;
        let close = open + glob[open..].bytes().position(|b| b == b'}')?;
        let (before, inside, after) = (&glob[..open], &glob[open + 1..close], &glob[close + 1..]);
        for alternative in split_byte(inside, b',') {
            if self.count >= MAX_ALTERNATIVES {
                return None;
            }
            if self.count > 0 {
                self.text.push('\0');
            }
            self.text.push_str(before);
            self.text.push_str(alternative);
            self.text.push_str(after);
            self.count += 1;
        }
        Some(())
    }

    /// The alternatives of the last glob [`Expansion::expand`] expanded.
    pub(crate) fn alternatives(&self) -> impl Iterator<Item = &str> {
        split_byte(&self.text, 0)
    }

    /// Appends every expansion of the prefix followed by the concatenation of the pieces from
    /// `rest` on. The prefix and the pieces are as they were when it returns.
    fn expand_from(&mut self, glob: &str, rest: usize) -> Option<()> {
        let Some(&(start, end)) = self.pieces.get(rest) else {
            if self.count >= MAX_ALTERNATIVES {
                return None;
            }
            if self.count > 0 {
                self.text.push('\0');
            }
            self.text.push_str(&self.prefix);
            self.count += 1;
            return Some(());
        };
        let first = &glob[start..end];
        let mark = self.prefix.len();
        let Some(open) = first.bytes().position(|b| b == b'{') else {
            self.prefix.push_str(first);
            let done = self.expand_from(glob, rest + 1);
            self.prefix.truncate(mark);
            return done;
        };
        // The matching `}`: braces balance within one piece (a piece is the glob, or one
        // alternative of it, which holds whole brace groups).
        let bytes = first.as_bytes();
        let mut depth = 0;
        let mut close = None;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close?;
        self.prefix.push_str(&first[..open]);
        let after = (start + close + 1, end);
        // This level's pieces end where the stack ends now (deeper levels truncate back to it).
        let level_end = self.pieces.len();
        // Each alternative (between the top-level commas), then what follows the braces, then
        // the pieces after this one.
        let mut from = open + 1;
        depth = 0;
        let mut done = Some(());
        for (i, &b) in bytes.iter().enumerate().take(close + 1).skip(open + 1) {
            match b {
                b'{' => depth += 1,
                b'}' if depth > 0 => depth -= 1,
                b',' | b'}' if depth == 0 => {
                    let frame = self.pieces.len();
                    self.pieces.push((start + from, start + i));
                    self.pieces.push(after);
                    self.pieces.extend_from_within(rest + 1..level_end);
                    done = self.expand_from(glob, frame);
                    self.pieces.truncate(frame);
                    if done.is_none() {
                        break;
                    }
                    from = i + 1;
                }
                _ => {}
            }
        }
        self.prefix.truncate(mark);
        done
    }
}

/// The glob's characters with escapes resolved. `None` on a dangling `\` (validation refuses it).
fn units(glob: &str) -> Option<Vec<Unit>> {
    let mut out = Vec::with_capacity(glob.len());
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => Unit::Escaped(chars.next()?),
            c => Unit::Plain(c),
        });
    }
    Some(out)
}

/// Expands `{a,b}` (nested too) into one unit list per alternative, in order.
fn expand(units: &[Unit]) -> Option<Vec<Vec<Unit>>> {
    // A `*` touching a brace or a separating comma could form `**` after expansion, which globset
    // does not read as "any depth": leave such globs to globset.
    let mut depth = 0usize;
    for (i, u) in units.iter().enumerate() {
        let structural = match u {
            Unit::Plain('{') => {
                depth += 1;
                true
            }
            Unit::Plain('}') => {
                depth = depth.checked_sub(1)?;
                true
            }
            Unit::Plain(',') => depth > 0,
            _ => false,
        };
        let star = |j: Option<usize>| j.and_then(|j| units.get(j)) == Some(&Unit::Plain('*'));
        if structural && (star(i.checked_sub(1)) || star(Some(i + 1))) {
            return None;
        }
    }
    let mut out = Vec::new();
    expand_into(units, Vec::new(), &mut out)?;
    Some(out)
}

/// Appends to `out` every expansion of `prefix` followed by `rest`.
fn expand_into(rest: &[Unit], mut prefix: Vec<Unit>, out: &mut Vec<Vec<Unit>>) -> Option<()> {
    let Some(open) = rest.iter().position(|u| *u == Unit::Plain('{')) else {
        prefix.extend_from_slice(rest);
        if out.len() >= MAX_ALTERNATIVES {
            return None;
        }
        out.push(prefix);
        return Some(());
    };
    prefix.extend_from_slice(&rest[..open]);
    // Find the matching `}` and the top-level commas between.
    let mut depth = 0;
    let mut cuts = vec![open];
    let mut close = None;
    for (i, u) in rest.iter().enumerate().skip(open) {
        match u {
            Unit::Plain('{') => depth += 1,
            Unit::Plain('}') => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            Unit::Plain(',') if depth == 1 => cuts.push(i),
            _ => {}
        }
    }
    let close = close?;
    cuts.push(close);
    for pair in cuts.windows(2) {
        // Each alternative followed by what comes after the braces, which may hold more braces.
        let mut alternative: Vec<Unit> = rest[pair[0] + 1..pair[1]].to_vec();
        alternative.extend_from_slice(&rest[close + 1..]);
        expand_into(&alternative, prefix.clone(), out)?;
    }
    Some(())
}

/// One brace-free alternative as segments, or `None` when it needs globset.
fn segments(units: &[Unit]) -> Option<Vec<Seg>> {
    let flat = flatten(units)?;
    let mut segs = Vec::new();
    for part in flat.split(|f| *f == Flat::Sep) {
        let toks: Vec<Tok> = part
            .iter()
            .map(|f| match f {
                Flat::Tok(t) => t.clone(),
                Flat::Sep => unreachable!("split on separators"),
            })
            .collect();
        let seg = segment(toks);
        if seg == Seg::AnyDepth && segs.last() == Some(&Seg::AnyDepth) {
            // `**/**`: globset reads it as something else entirely (only paths ending in `/`).
            return None;
        }
        segs.push(seg);
    }
    Some(segs)
}

/// The tokens of an alternative, classes parsed the way globset parses them.
fn flatten(units: &[Unit]) -> Option<Vec<Flat>> {
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let flat = match units[i] {
            Unit::Plain('/') | Unit::Escaped('/') => Flat::Sep,
            Unit::Plain('*') => Flat::Tok(Tok::Star),
            Unit::Plain('?') => Flat::Tok(Tok::One),
            Unit::Plain('[') => {
                let (class, end) = class(units, i + 1)?;
                i = end;
                Flat::Tok(class)
            }
            Unit::Plain(c) | Unit::Escaped(c) => Flat::Tok(Tok::Char(c)),
        };
        out.push(flat);
        i += 1;
    }
    Some(out)
}

/// The class starting after the `[` at `start`, and the index of its `]`; `None` for the classes
/// left to globset (negated, holding `/` or `\`, unclosed).
fn class(units: &[Unit], start: usize) -> Option<(Tok, usize)> {
    if matches!(units.get(start), Some(Unit::Plain('!' | '^'))) {
        return None;
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    let mut in_range = false;
    let mut i = start;
    loop {
        let Unit::Plain(c) = *units.get(i)? else {
            return None;
        };
        match c {
            ']' if !first => break,
            '-' if !first && !in_range => in_range = true,
            c => {
                match ranges.last_mut() {
                    Some(last) if in_range => last.1 = c,
                    _ => ranges.push((c, c)),
                }
                in_range = false;
            }
        }
        first = false;
        i += 1;
    }
    if in_range {
        ranges.push(('-', '-'));
    }
    if ranges.iter().any(|&(lo, hi)| lo <= '/' && '/' <= hi || !hi.is_ascii()) {
        return None;
    }
    Some((Tok::Class(ranges.into()), i))
}

/// The cheapest form of one segment's tokens.
fn segment(toks: Vec<Tok>) -> Seg {
    let literal = |toks: &[Tok]| -> Option<Box<str>> {
        toks.iter()
            .map(|t| match t {
                Tok::Char(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<String>>()
            .map(String::into_boxed_str)
    };
    match toks.as_slice() {
        [Tok::Star, Tok::Star] => Seg::AnyDepth,
        [Tok::Star] => Seg::Any,
        [Tok::Star, rest @ ..] if literal(rest).is_some() => Seg::Suffix(literal(rest).unwrap_or_default()),
        [rest @ .., Tok::Star] if literal(rest).is_some() => Seg::Prefix(literal(rest).unwrap_or_default()),
        _ => match literal(&toks) {
            Some(l) => Seg::Literal(l),
            None => Seg::Tokens(toks.into()),
        },
    }
}

/// The number of literal segments the glob starts with, and those segments: where it lives in
/// the index. Works on the raw text, so it serves the globs left to globset too: the literal
/// segments before the first glob operator, escape or brace.
pub(crate) fn literal_prefix(glob: &str) -> Vec<&str> {
    let stop = glob.find(['*', '?', '[', ']', '{', '}', '\\']).unwrap_or(glob.len());
    match glob[..stop].rfind('/') {
        Some(end) => glob[..end].split('/').collect(),
        // The first segment already holds an operator.
        None => Vec::new(),
    }
}

impl Seg {
    /// Whether this (non-`**`) segment pattern matches one path segment.
    fn matches(&self, s: &str) -> bool {
        match self {
            Seg::AnyDepth => true,
            Seg::Literal(l) => **l == *s,
            Seg::Any => true,
            Seg::Suffix(x) => s.ends_with(&**x),
            Seg::Prefix(x) => s.starts_with(&**x),
            Seg::Tokens(toks) => wildcard(toks, s),
        }
    }

    /// The literal text of a [`Seg::Literal`].
    pub(crate) fn literal(&self) -> Option<&str> {
        match self {
            Seg::Literal(l) => Some(l),
            _ => None,
        }
    }
}

impl Tok {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Tok::Char(x) => *x == c,
            Tok::One => true,
            Tok::Star => false,
            Tok::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
        }
    }
}

/// Classic wildcard matching with one backtracking point (the last `*`): linear in practice,
/// `O(pattern × text)` at worst, never exponential.
fn wildcard(toks: &[Tok], s: &str) -> bool {
    let text: Vec<char> = s.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if tok.matches_char(text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

/// Whether the segment pattern `pat` matches the path segments `path` as a whole.
pub(crate) fn matches(pat: &[Seg], path: &[&str]) -> bool {
    match pat.split_last() {
        // A final `**` needs at least one segment: `P/**` on `path` is `P` followed by any number
        // of segments on all of `path` but its last segment.
        Some((Seg::AnyDepth, _)) => match path.split_last() {
            Some((_, init)) => any_depth(pat, init),
            None => false,
        },
        _ => any_depth(pat, path),
    }
}

/// Segment matching where every `**` is any number of segments (zero included): the wildcard
/// algorithm again, one level up.
fn any_depth(pat: &[Seg], path: &[&str]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < path.len() {
        match pat.get(p) {
            Some(Seg::AnyDepth) => {
                star = Some((p, s));
                p += 1;
            }
            Some(seg) if seg.matches(path[s]) => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|seg| *seg == Seg::AnyDepth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(glob: &str) -> Vec<Seg> {
        let mut alts = parse(glob).unwrap_or_else(|| panic!("{glob} left to globset"));
        assert_eq!(alts.len(), 1, "{glob}");
        alts.remove(0)
    }

    fn is_match(glob: &str, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').collect();
        parse(glob)
            .unwrap_or_else(|| panic!("{glob} left to globset"))
            .iter()
            .any(|alt| matches(alt, &segs))
    }

    #[test]
    fn segments_take_their_cheapest_form() {
        use Seg::*;
        assert_eq!(
            one("libs/a/**/*.rs"),
            [
                Literal("libs".into()),
                Literal("a".into()),
                AnyDepth,
                Suffix(".rs".into())
            ]
        );
        assert_eq!(one("x/v*/*"), [Literal("x".into()), Prefix("v".into()), Any]);
        assert_eq!(one(r"a\*b"), [Literal("a*b".into())]);
        assert_eq!(
            one("a?[a-c-]"),
            [Tokens(
                vec![
                    Tok::Char('a'),
                    Tok::One,
                    Tok::Class(vec![('a', 'c'), ('-', '-')].into())
                ]
                .into()
            )]
        );
        assert_eq!(
            one("[]x]"),
            [Tokens(vec![Tok::Class(vec![(']', ']'), ('x', 'x')].into())].into())]
        );
    }

    #[test]
    fn braces_expand_in_order_nested_and_empty() {
        let alts = parse("{libs,vendor}/x/*.{rs,to{ml,ast}}").unwrap();
        let shown: Vec<String> = alts.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(alts.len(), 6, "{shown:?}");
        assert!(is_match("foo{,.txt}", "foo"));
        assert!(is_match("foo{,.txt}", "foo.txt"));
        assert!(is_match("{a/b,c}/**", "a/b/x"));
        assert!(!is_match("{a/b,c}/**", "a/x"));
        assert!(is_match(r"{a\,b,c}", "a,b"));
    }

    #[test]
    fn what_is_left_to_globset() {
        for glob in [
            "[!a]b",
            "[^a]b",
            "a[+-0]b",
            "a[/]b",
            r"a[\]]",
            "{[ab],c}",
            "{*,x}*",
            "x{**/a,b}",
            "a/**/**",
            "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}",
        ] {
            assert_eq!(parse(glob), None, "{glob}");
        }
    }

    #[test]
    fn any_depth_is_any_number_of_segments_and_at_least_one_at_the_end() {
        assert!(is_match("docs/**", "docs/a"));
        assert!(is_match("docs/**", "docs/"));
        assert!(!is_match("docs/**", "docs"));
        assert!(is_match("**", "x"));
        assert!(is_match("**/x", "x"));
        assert!(is_match("**/x", "/x"));
        assert!(is_match("a/**/b/**/c", "a/b/c"));
        assert!(is_match("a/**/b/**/c", "a/1/b/2/3/c"));
        assert!(!is_match("a/**/b/**/c", "a/1/c/2/b"));
        assert!(is_match("**/a/**", "x/a/y"));
        assert!(!is_match("**/a/**", "x/a"));
    }

    #[test]
    fn wildcards_within_a_segment() {
        assert!(is_match("*", ".env"));
        assert!(is_match("*.md", "README.md"));
        assert!(!is_match("*.md", "a/README.md"));
        assert!(is_match("a*b*c", "abxbc"));
        assert!(!is_match("a*b*c", "abxb"));
        assert!(is_match("v?.txt", "vé.txt"));
        assert!(!is_match("v?.txt", "vée.txt"));
        assert!(is_match("[ab]?", "aé"));
        assert!(is_match("é/*", "é/x"));
    }

    #[test]
    fn literal_prefixes_stop_at_the_first_operator() {
        assert_eq!(literal_prefix("libs/a/**/*.rs"), ["libs", "a"]);
        assert_eq!(literal_prefix("libs/a*/b"), ["libs"]);
        assert_eq!(literal_prefix("{a,b}/c"), Vec::<&str>::new());
        assert_eq!(literal_prefix("**/x"), Vec::<&str>::new());
        assert_eq!(literal_prefix("a/b/c.rs"), ["a", "b"]);
        assert_eq!(literal_prefix(r"a/b\*/c"), ["a"]);
    }
}
