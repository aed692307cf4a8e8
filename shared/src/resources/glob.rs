//! Glob syntax and matching for the resource map (SPEC §6).
//!
//! The map's globs are matched against whole repository-relative, `/`-separated paths,
//! case-sensitively: `*` stays within one segment (and matches dotfiles), `**` spans any number of
//! whole segments, `?` is one character, `{a,b}` are alternatives. `globset` does the matching; this
//! module pins the options that make it behave exactly like that and rejects the patterns that
//! could only ever be mistakes (so a typo in the map is an error, not a silent "never matches").
//!
//! Matching is done by [`GlobMatcher`]: all the globs of a map are compiled into one matcher (a
//! table of literal `dir/**` prefixes plus one `GlobSet` for everything else), so planning a
//! change of N files costs N look-ups, never N × (number of globs) matcher runs.

use std::collections::HashMap;

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiles one glob with the §6 semantics, or says why it is not a valid glob.
///
/// The options, and why:
/// - `literal_separator(true)`: `*` and `?` never match `/`, so `*.md` matches only at the root.
/// - case sensitive (globset's default), as the spec requires.
/// - `backslash_escape(true)`: `\*` is a literal star (paths are `/`-separated, so `\` is never
///   a separator here, whatever the platform).
/// - `empty_alternates(true)`: `foo{,.txt}` matches `foo` and `foo.txt`, as in a shell. globset's
///   default would silently drop the empty branch.
///
/// globset treats a leading `.` like any other character, so `*` matches dotfiles (§6), and `**`
/// as a whole segment matches zero or more segments: `docs/**` matches everything below `docs`,
/// `**/x` matches `x` at any depth including the root, `a/**/b` matches `a/b` and `a/x/y/b`.
pub(crate) fn compile(glob: &str) -> Result<Compiled, String> {
    check_shape(glob)?;
    let compiled = GlobBuilder::new(glob)
        .literal_separator(true)
        .case_insensitive(false)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|e| e.kind().to_string())?;
    let unicode = unicode_regex(compiled.regex())?;
    Ok(Compiled {
        glob: compiled,
        unicode,
    })
}

/// A valid glob, ready for a [`GlobMatcher`].
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    glob: Glob,
    /// For globs whose meaning differs on non-ASCII paths (see [`unicode_regex`]): a byte regex
    /// that gets them right.
    unicode: Option<String>,
}

/// globset compiles globs to byte regexes in which `?` (and a negated class such as `[!a]`) is
/// `[^/]`: ONE BYTE, so `v?.txt` does not match `vé.txt`. §6 says `?` is one character. For the
/// (rare) globs with such a class, this returns the regex with every negated class that is not a
/// `*` (`[^/]*`, which is right either way) replaced by "one UTF-8 encoded character outside the
/// class"; the matcher uses it for the (rare) non-ASCII paths. Positive classes holding
/// non-ASCII characters cannot be fixed that way and are refused.
fn unicode_regex(re: &str) -> Result<Option<String>, String> {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 64);
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                out.push('\\');
                if let Some(&c) = chars.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            '[' => {
                let negated = chars.get(i + 1) == Some(&'^');
                let content_start = if negated { i + 2 } else { i + 1 };
                let mut j = content_start;
                while j < chars.len() && chars[j] != ']' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                if j >= chars.len() {
                    // Not a class we understand: leave the regex as globset made it.
                    return Ok(None);
                }
                let content: String = chars[content_start..j].iter().collect();
                if has_non_ascii_byte(&content) {
                    return Err("character classes (`[...]`) can only hold ASCII characters".into());
                }
                if negated && chars.get(j + 1) != Some(&'*') {
                    changed = true;
                    out.push_str("(?:[^");
                    out.push_str(&content);
                    out.push_str(
                        "\\x80-\\xff]|[\\xc0-\\xdf][\\x80-\\xbf]|[\\xe0-\\xef][\\x80-\\xbf]{2}\
                         |[\\xf0-\\xf7][\\x80-\\xbf]{3})",
                    );
                } else {
                    out.extend(&chars[i..=j]);
                }
                i = j + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(changed.then_some(out))
}

/// Whether an escaped regex fragment holds a `\xHH` escape of a byte above 0x7f.
fn has_non_ascii_byte(fragment: &str) -> bool {
    fragment.match_indices("\\x").any(|(at, _)| {
        fragment
            .get(at + 2..at + 4)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .is_some_and(|b| b > 0x7f)
    })
}

/// Rejects globs that globset would accept but that can never do what the author meant.
fn check_shape(glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err("a glob cannot be empty".into());
    }
    if glob.starts_with('/') {
        return Err("globs are relative to the repository root: drop the leading `/`".into());
    }
    if glob.starts_with("./") {
        return Err("globs are relative to the repository root: drop the leading `./`".into());
    }
    if glob.ends_with('/') {
        return Err(format!(
            "a glob ending in `/` matches no file: write `{glob}**` for everything below it"
        ));
    }
    if glob.chars().any(char::is_control) {
        return Err("a glob cannot contain control characters".into());
    }
    // `**` means "any number of segments" only as a whole segment. globset quietly reads
    // `a**` or `**.rs` as `*`, which is never what the author of `services/**.rs` meant, so
    // such globs are refused with a hint instead.
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '*' => {
                let start = i;
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                let run = i - start;
                if run >= 3 {
                    return Err("`***` is not a glob operator: use `*` or `**`".into());
                }
                if run == 2 {
                    let before_ok = start == 0 || matches!(chars[start - 1], '/' | '{' | ',');
                    let after_ok = i == chars.len() || matches!(chars[i], '/' | '}' | ',');
                    if !(before_ok && after_ok) {
                        return Err("`**` must be a whole path segment (`**/x`, `x/**`, `a/**/b`); \
                             use `*` within a segment"
                            .into());
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Every glob of a map in one matcher, each glob owned by an index (a resource, or the ignore
/// list's marker).
///
/// Two structures share the work, neither of them a loop over globs:
/// - the `dir/**` globs whose directory is a plain literal (in practice nearly every resource
///   path) go into a hash table keyed by `dir/`: a path is looked up once per `/` it contains.
///   globset would put them in an Aho–Corasick automaton instead; with thousands of prefixes it
///   runs as an NFA and was half the time of a 20,000-file plan; the table cut that plan from
///   18 to 10 ms (`docs/benchmarks-planner.md`);
/// - every other glob goes into one `GlobSet`, skipped entirely when there are none.
#[derive(Debug, Clone)]
pub(crate) struct GlobMatcher {
    /// `dir/` → the indices of the globs `dir/**`.
    prefixes: HashMap<Box<str>, Vec<usize>>,
    /// The other globs, and the index of each of them among all globs.
    set: GlobSet,
    set_index: Vec<usize>,
    /// `owner[i]` is the owner of the i-th glob.
    owner: Vec<usize>,
    /// The globs of `set` whose non-ASCII behaviour needs the fixed regex: (index in `set`, regex).
    unicode: Vec<(usize, regex::bytes::Regex)>,
}

/// Reusable buffers for [`GlobMatcher::owners`], so matching allocates nothing per path.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    owners: Vec<usize>,
    set: Vec<usize>,
}

impl GlobMatcher {
    /// Builds the matcher from already validated globs and their owners.
    pub(crate) fn new(globs: Vec<(Compiled, usize)>) -> Result<GlobMatcher, String> {
        let mut prefixes: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut builder = GlobSetBuilder::new();
        let mut set_index = Vec::new();
        let mut owner = Vec::with_capacity(globs.len());
        let mut unicode = Vec::new();
        for (i, (compiled, who)) in globs.into_iter().enumerate() {
            owner.push(who);
            if let Some(dir) = literal_dir(compiled.glob.glob()) {
                prefixes.entry(dir.into()).or_default().push(i);
                continue;
            }
            if let Some(re) = &compiled.unicode {
                let re = regex::bytes::Regex::new(re).map_err(|e| format!("glob {:?}: {e}", compiled.glob.glob()))?;
                unicode.push((set_index.len(), re));
            }
            builder.add(compiled.glob);
            set_index.push(i);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(GlobMatcher {
            prefixes,
            set,
            set_index,
            owner,
            unicode,
        })
    }

    /// Whether any glob matches `path`.
    #[cfg(test)]
    pub(crate) fn is_match(&self, path: &str) -> bool {
        !self.owners(path, &mut Scratch::default()).is_empty()
    }

    /// The owner of every glob matching `path`, in the order the globs were added (so an owner
    /// whose globs were added together appears in one run, possibly repeated).
    pub(crate) fn owners<'s>(&self, path: &str, scratch: &'s mut Scratch) -> &'s [usize] {
        let into = &mut scratch.owners;
        into.clear();
        if !self.prefixes.is_empty() {
            for (i, byte) in path.bytes().enumerate() {
                if byte == b'/'
                    && let Some(globs) = self.prefixes.get(&path[..=i])
                {
                    into.extend_from_slice(globs);
                }
            }
        }
        if !self.set_index.is_empty() {
            let found = &mut scratch.set;
            self.set
                .matches_candidate_into(&Candidate::from_bytes(path.as_bytes()), found);
            if !self.unicode.is_empty() && !path.is_ascii() {
                // On a non-ASCII path, globset's answer for these few globs is replaced by the
                // regex's.
                found.retain(|i| self.unicode.binary_search_by_key(i, |(j, _)| *j).is_err());
                for (i, re) in &self.unicode {
                    if re.is_match(path.as_bytes()) {
                        found.push(*i);
                    }
                }
            }
            into.extend(found.iter().map(|&i| self.set_index[i]));
            into.sort_unstable();
        }
        for i in into.iter_mut() {
            *i = self.owner[*i];
        }
        into
    }
}

/// `dir` + `/` when the glob is `dir/**` with a `dir` free of glob syntax: then it matches
/// exactly the paths that start with `dir/` (globset: `^dir/.*$`).
fn literal_dir(glob: &str) -> Option<&str> {
    let dir = glob.strip_suffix("**")?;
    let ok = dir.len() > 1 && dir.ends_with('/') && !dir.contains(['*', '?', '[', ']', '{', '}', '\\']);
    ok.then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(glob: &str, path: &str) -> bool {
        let g = compile(glob).unwrap_or_else(|e| panic!("{glob}: {e}"));
        let m = GlobMatcher::new(vec![(g, 0)]).unwrap();
        m.is_match(path)
    }

    #[test]
    fn star_stays_within_one_segment() {
        assert!(matches("*.md", "README.md"));
        assert!(!matches("*.md", "docs/README.md"));
        assert!(matches("services/*/Dockerfile", "services/api/Dockerfile"));
        assert!(!matches("services/*/Dockerfile", "services/a/b/Dockerfile"));
        assert!(matches("src/*", "src/lib.rs"));
        assert!(!matches("src/*", "src/a/lib.rs"));
    }

    #[test]
    fn star_matches_dotfiles() {
        assert!(matches("*", ".env"));
        assert!(matches("config/*", "config/.hidden"));
        assert!(matches("*.toml", ".rustfmt.toml"));
        assert!(matches("**/*.yml", ".github/workflows/ci.yml"));
        assert!(matches("svc/**", "svc/.cache/x"));
    }

    #[test]
    fn double_star_spans_any_number_of_segments() {
        assert!(matches("docs/**", "docs/a.md"));
        assert!(matches("docs/**", "docs/a/b/c.md"));
        assert!(!matches("docs/**", "docs"));
        assert!(!matches("docs/**", "docsx/a.md"));
        assert!(!matches("docs/**", "other/docs/a.md"));
        assert!(matches("**/*.md", "README.md"));
        assert!(matches("**/*.md", "a/b/README.md"));
        assert!(matches("a/**/b", "a/b"));
        assert!(matches("a/**/b", "a/x/b"));
        assert!(matches("a/**/b", "a/x/y/b"));
        assert!(!matches("a/**/b", "a/xb"));
        assert!(matches("**", "anything/at/all"));
        assert!(matches("**/Dockerfile", "Dockerfile"));
        assert!(matches("**/Dockerfile", "x/y/Dockerfile"));
    }

    #[test]
    fn question_mark_is_one_character_but_not_a_slash() {
        assert!(matches("v?.txt", "v1.txt"));
        assert!(!matches("v?.txt", "v10.txt"));
        assert!(!matches("a?b", "a/b"));
    }

    #[test]
    fn question_mark_and_negated_classes_are_one_character_on_non_ascii_paths() {
        assert!(matches("v?.txt", "vé.txt"));
        assert!(matches("v?.txt", "v€.txt"));
        assert!(matches("v?.txt", "v😀.txt"));
        assert!(!matches("v?.txt", "vée.txt"));
        assert!(matches("[!a]b", "éb"));
        assert!(!matches("[!a]b", "ab"));
        assert!(matches("[ab]?", "aé"));
        assert!(matches("é/*", "é/x"));
        assert!(matches("??", "éé"));
        assert!(!matches("??", "é/"));
        assert!(compile("[é]").is_err(), "non-ASCII classes are refused");
        // A set mixing ordinary and fixed globs keeps the ordinary answers.
        let m = GlobMatcher::new(vec![
            (compile("a/**").unwrap(), 0),
            (compile("a/?").unwrap(), 1),
            (compile("a/é").unwrap(), 2),
        ])
        .unwrap();
        assert_eq!(m.owners("a/é", &mut Scratch::default()), [0, 1, 2]);
    }

    #[test]
    fn owners_come_in_glob_order_whichever_structure_matched() {
        let m = GlobMatcher::new(vec![
            (compile("b/**").unwrap(), 0),
            (compile("**/*.md").unwrap(), 0),
            (compile("b/x/**").unwrap(), 1),
            (compile("b/{x,y}/*.md").unwrap(), 2),
            (compile("b/x/**").unwrap(), 3),
            (compile("**/README.md").unwrap(), 7),
        ])
        .unwrap();
        let mut scratch = Scratch::default();
        assert_eq!(m.owners("b/x/README.md", &mut scratch), [0, 0, 1, 2, 3, 7]);
        assert_eq!(m.owners("b/y/z", &mut scratch), [0]);
        assert_eq!(m.owners("README.md", &mut scratch), [0, 7]);
        assert!(m.owners("bb/x", &mut scratch).is_empty());
        assert!(m.owners("b", &mut scratch).is_empty());
        assert_eq!(literal_dir("a/b/**"), Some("a/b/"));
        for not_plain in ["**", "a/*/**", "{a,b}/**", "a/**/**", "a/**/b", r"a\*/**"] {
            assert_eq!(literal_dir(not_plain), None, "{not_plain}");
        }
    }

    #[test]
    fn alternatives() {
        assert!(matches("{api,web}/**", "api/x"));
        assert!(matches("{api,web}/**", "web/y/z"));
        assert!(!matches("{api,web}/**", "db/x"));
        assert!(matches("lib/*.{rs,toml}", "lib/a.toml"));
        assert!(matches("foo{,.txt}", "foo"));
        assert!(matches("foo{,.txt}", "foo.txt"));
    }

    #[test]
    fn whole_path_and_case_sensitive() {
        assert!(!matches("src/**", "x/src/a"));
        assert!(!matches("README.md", "docs/README.md"));
        assert!(!matches("*.MD", "README.md"));
        assert!(!matches("Docs/**", "docs/a"));
        assert!(matches("src/lib.rs", "src/lib.rs"));
        assert!(!matches("src/lib.rs", "src/lib.rsx"));
    }

    #[test]
    fn escapes_are_literal() {
        assert!(matches(r"weird\*name", "weird*name"));
        assert!(!matches(r"weird\*name", "weirdXname"));
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for bad in [
            "",
            "/abs/**",
            "./rel/**",
            "dir/",
            "a**",
            "**.rs",
            "src/**.rs",
            "a/***/b",
            "{a,b",
            "[z-a]",
            "x\ny",
        ] {
            assert!(compile(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["**", "**/x", "x/**", "a/**/b", "{**/a,b/**}", r"\**", "*"] {
            assert!(compile(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
