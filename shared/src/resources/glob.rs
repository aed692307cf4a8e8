//! Glob syntax for the resource map (SPEC §6): validation, and globset as the reference meaning.
//!
//! The map's globs are matched against whole repository-relative, `/`-separated paths,
//! case-sensitively: `*` stays within one segment (and matches dotfiles), `**` spans any number of
//! whole segments, `?` is one character, `{a,b}` are alternatives. globset, with the options
//! pinned here, is the reference for that meaning; this module also rejects the patterns that
//! could only ever be mistakes (so a typo in the map is an error, not a silent "never matches").
//!
//! Matching a whole map is not done with globset: [`compile_with`] turns each glob into segment
//! patterns (`pattern`) that the map's index (`index`) matches without regexes. The few globs
//! whose globset meaning does not fit segments keep a compiled globset [`Reference`] instead,
//! and the property tests compare the two on random globs and paths.

use globset::{Candidate, GlobBuilder};

use super::pattern::{self, Expansion, Prepared};

/// The options that give globset the §6 meaning, and why:
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
fn builder(glob: &str) -> GlobBuilder<'_> {
    let mut builder = GlobBuilder::new(glob);
    builder
        .literal_separator(true)
        .case_insensitive(false)
        .backslash_escape(true)
        .empty_alternates(true);
    builder
}

/// [`compile_with`] with a buffer of its own (for tests, which compile globs one by one).
#[cfg(test)]
pub(crate) fn compile(glob: &str) -> Result<Compiled<'_>, String> {
    compile_with(glob, &mut Expansion::default())
}

/// Validates one glob and prepares it for matching, or says why it is not a valid glob.
/// `expansion` is a buffer for expanding braces that the caller reuses from glob to glob.
///
/// Parsing a 5,000-resource map compiles thousands of globs, so the common ones cost no globset
/// work at all: a glob without `[`, `]` or `\` and with balanced braces cannot be refused by
/// globset once [`check_shape`] accepted it. The others are parsed by globset too, for its
/// verdict and its messages; only those `pattern::prepare` leaves to globset get a compiled regex.
pub(crate) fn compile_with<'a>(glob: &'a str, expansion: &mut Expansion) -> Result<Compiled<'a>, String> {
    check_shape(glob)?;
    // On bytes: every character looked for is ASCII (see `check_shape`).
    if glob.bytes().any(|b| matches!(b, b'[' | b']' | b'\\')) || !braces_balance(glob) {
        let parsed = builder(glob).build().map_err(|e| e.kind().to_string())?;
        if glob.contains('[') {
            unicode_regex(parsed.regex())?;
        }
    }
    let how = match pattern::prepare(glob, expansion) {
        Some(prepared) => How::Segments(prepared),
        None => How::Reference(Box::new(Reference::new(glob)?)),
    };
    Ok(Compiled { how })
}

/// Whether every `{` has its `}` and no `}` comes first. For a glob without classes or escapes
/// (and one [`check_shape`] accepted), that is all globset checks: it accepts nested and empty
/// alternatives. So only unbalanced globs need globset's parse, for its message; this keeps a map
/// of thousands of `{a,b}` globs cheap to load.
fn braces_balance(glob: &str) -> bool {
    let mut depth = 0usize;
    for b in glob.bytes() {
        match b {
            b'{' => depth += 1,
            b'}' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => {}
        }
    }
    depth == 0
}

/// A valid glob, ready for the map's index. It may borrow the glob's text (a plain glob is
/// indexed straight from it), so it lives only until the index is built.
#[derive(Debug, Clone)]
pub(crate) struct Compiled<'a> {
    pub(crate) how: How<'a>,
}

/// How a glob is matched.
#[derive(Debug, Clone)]
pub(crate) enum How<'a> {
    /// By segments, in the form `pattern::prepare` gives.
    Segments(Prepared<'a>),
    /// By globset (see `pattern` for which globs).
    Reference(Box<Reference>),
}

/// globset's answer for one glob, with the non-ASCII fix of [`unicode_regex`]: the reference
/// meaning of a glob.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    matcher: globset::GlobMatcher,
    /// For globs whose meaning differs on non-ASCII paths: a byte regex that gets them right.
    unicode: Option<regex::bytes::Regex>,
}

impl Reference {
    /// Compiles a glob with globset (and the fix for `?` on non-ASCII paths).
    pub(crate) fn new(glob: &str) -> Result<Reference, String> {
        check_shape(glob)?;
        let parsed = builder(glob).build().map_err(|e| e.kind().to_string())?;
        let unicode = match unicode_regex(parsed.regex())? {
            Some(re) => Some(regex::bytes::Regex::new(&re).map_err(|e| format!("glob {glob:?}: {e}"))?),
            None => None,
        };
        Ok(Reference {
            matcher: parsed.compile_matcher(),
            unicode,
        })
    }

    /// The glob as written.
    pub(crate) fn source(&self) -> &str {
        self.matcher.glob().glob()
    }

    /// Whether the glob matches the whole `path`.
    pub(crate) fn is_match(&self, path: &str) -> bool {
        match &self.unicode {
            // On a non-ASCII path, globset's answer for these globs is replaced by the regex's.
            Some(re) if !path.is_ascii() => re.is_match(path.as_bytes()),
            _ => self.matcher.is_match_candidate(&Candidate::from_bytes(path.as_bytes())),
        }
    }
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

/// Whether `text` holds a control character (`char::is_control`: U+0000–U+001F and
/// U+007F–U+009F), read on bytes rather than decoding every character: the first are single
/// bytes, the others `C2 80` to `C2 9F` in UTF-8.
fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b < 0x20 || b == 0x7f || (b == 0xc2 && matches!(bytes.get(i + 1), Some(0x80..=0x9f))))
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
    if has_control(glob) {
        return Err("a glob cannot contain control characters".into());
    }
    // `**` means "any number of segments" only as a whole segment. globset quietly reads
    // `a**` or `**.rs` as `*`, which is never what the author of `services/**.rs` meant, so
    // such globs are refused with a hint instead.
    // On bytes: every character looked at is ASCII, and the bytes of a multi-byte character are
    // never ASCII, so this reads the same as on characters without collecting them.
    let chars = glob.as_bytes();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            b'\\' => i += 2,
            b'*' => {
                let start = i;
                while i < chars.len() && chars[i] == b'*' {
                    i += 1;
                }
                let run = i - start;
                if run >= 3 {
                    return Err("`***` is not a glob operator: use `*` or `**`".into());
                }
                if run == 2 {
                    let before_ok = start == 0 || matches!(chars[start - 1], b'/' | b'{' | b',');
                    let after_ok = i == chars.len() || matches!(chars[i], b'/' | b'}' | b',');
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

#[cfg(test)]
mod tests {
    use super::super::index::{GlobIndex, Scratch};
    use super::*;

    /// The answer of the map's index for one glob, checked against globset's (the reference).
    fn matches(glob: &str, path: &str) -> bool {
        let g = compile(glob).unwrap_or_else(|e| panic!("{glob}: {e}"));
        let indexed = GlobIndex::new(vec![(g, 0)]).is_match(path);
        let reference = Reference::new(glob).unwrap().is_match(path);
        assert_eq!(indexed, reference, "{glob:?} on {path:?}: index and globset disagree");
        indexed
    }

    fn index(globs: &[(&str, usize)]) -> GlobIndex {
        GlobIndex::new(globs.iter().map(|&(g, o)| (compile(g).unwrap(), o)).collect())
    }

    #[test]
    fn control_characters_are_found_on_bytes_as_on_characters() {
        for text in [
            "a", "é", "\u{a0}", "\u{9f}", "\u{80}", "x\u{85}y", "\t", "\u{7f}", "日本", "\u{100}", "😀",
        ] {
            assert_eq!(has_control(text), text.chars().any(char::is_control), "{text:?}");
        }
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
        assert!(matches("[!a]b", "éb"), "left to globset, with the fix");
        // An index mixing ordinary globs and globs left to globset answers for all of them.
        let m = index(&[("a/**", 0), ("a/?", 1), ("a/é", 2), ("a/[!x]", 3)]);
        assert_eq!(m.owners("a/é", &mut Scratch::default()), [0, 1, 2, 3]);
    }

    #[test]
    fn owners_come_in_glob_order_each_glob_once_wherever_it_lives_in_the_index() {
        let m = index(&[
            ("b/**", 0),
            ("**/*.md", 0),
            ("b/x/**", 1),
            ("b/{x,y}/*.md", 2),
            ("b/x/**", 3),
            ("**/README.md", 7),
            ("**/x/**/README.md", 8),
            ("{b,c}/x/{README,NOTES}.md", 9),
        ]);
        let mut scratch = Scratch::default();
        assert_eq!(m.owners("b/x/README.md", &mut scratch), [0, 0, 1, 2, 3, 7, 8, 9]);
        assert_eq!(m.owners("b/x/x/README.md", &mut scratch), [0, 0, 1, 3, 7, 8]);
        assert_eq!(m.owners("b/y/z", &mut scratch), [0]);
        assert_eq!(m.owners("README.md", &mut scratch), [0, 7]);
        assert!(m.owners("bb/x", &mut scratch).is_empty());
        assert!(m.owners("b", &mut scratch).is_empty());
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
