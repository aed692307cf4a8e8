//! The map's TOML in its raw shape (every string with its place in the file), read two ways.
//!
//! [`RawMap`] is what `toml` deserializes the map into, every string `Spanned` so that the checks
//! after reading (names, dependencies, globs, cycles) can point at the exact value. That serde
//! path is the reference, and it is the one that reports a TOML mistake with its line and column.
//!
//! It is also most of the cost of parsing a large map: for 5,000 resources (600–750 KB) the
//! `toml` deserializer took about half of `ResourceMap::parse`, which SPEC §9 wants under 20 ms
//! together with the plan. So [`quick`] reads first: a hand-written reader for the small subset
//! of TOML a resource map is written in (comments, `key = value` lines with the map's own keys,
//! `[[resource]]` headers, basic strings without escapes, `true`/`false`, arrays of strings over
//! one or several lines). It builds the very same `RawMap`, spans included, in one pass over the
//! bytes. On anything outside that subset (an escape, a literal or multi-line string, a quoted or
//! dotted key, an inline table, an unknown or repeated key, a missing `name`, a value of the wrong
//! type, any mistake at all) it gives up and returns `None`, and the map is read again by `toml`,
//! which then says exactly what it always said. So the fast reader never decides what a map means
//! or whether it is wrong, only how quickly a well-formed, plainly written one is read; the tests
//! (`tests.rs`) check that it agrees with `toml`, spans included, on every input it accepts.

use serde::Deserialize;
use toml::Spanned;

use super::map::Unmapped;

// `deny_unknown_fields` everywhere: a misspelt key (`depends-on`, `[[resources]]`) must be an
// error, not a silently ignored line.

fn yes() -> bool {
    true
}

/// The whole map as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMap {
    #[serde(default)]
    pub(super) ignore: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) unmapped: Unmapped,
    #[serde(default = "yes")]
    pub(super) build_dependencies: bool,
    #[serde(default)]
    pub(super) resource: Vec<RawResource>,
}

/// One `[[resource]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    #[serde(default)]
    pub(super) paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) depends_on: Vec<Spanned<String>>,
    pub(super) deploy: Option<bool>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
}

/// The map through `toml`'s deserializer: the reference, and the one that explains mistakes.
pub(super) fn serde(src: &str) -> Result<RawMap, toml::de::Error> {
    toml::from_str(src)
}

/// The map through the fast reader, or `None` when it is not written in the plain subset this
/// reader knows (or is wrong in any way): then [`serde`] must read it.
pub(super) fn quick(src: &str) -> Option<RawMap> {
    let mut r = Reader {
        src,
        bytes: src.as_bytes(),
        at: 0,
    };
    let mut map = RawMap {
        ignore: Vec::new(),
        unmapped: Unmapped::All,
        build_dependencies: true,
        // Sized once: growing a vector of 5,000 resources by doubling copied it a dozen times.
        resource: Vec::with_capacity(src.matches("[[resource]]").count()),
    };
    // Which top-level keys were given (a key given twice is a TOML error: left to `toml`).
    let mut top = [false; 3];
    let mut current: Option<Partial> = None;
    loop {
        r.skip_blank();
        match r.peek() {
            None => break,
            Some(b'\n' | b'\r' | b'#') => r.end_of_line()?,
            Some(b'[') => {
                r.literal(b"[[resource]]")?;
                r.end_of_line()?;
                if let Some(done) = current.replace(Partial::default()) {
                    map.resource.push(done.finish()?);
                }
            }
            Some(_) => {
                let key = r.bare_key()?;
                r.skip_blank();
                r.literal(b"=")?;
                r.skip_blank();
                match &mut current {
                    None => top_level(&mut r, key, &mut map, &mut top)?,
                    Some(resource) => resource.key(&mut r, key)?,
                }
                r.end_of_line()?;
            }
        }
    }
    if let Some(done) = current {
        map.resource.push(done.finish()?);
    }
    Some(map)
}

/// One top-level `key = value` (before the first `[[resource]]`).
fn top_level(r: &mut Reader<'_>, key: &str, map: &mut RawMap, given: &mut [bool; 3]) -> Option<()> {
    let slot = match key {
        "ignore" => 0,
        "unmapped" => 1,
        "build_dependencies" => 2,
        _ => return None,
    };
    if std::mem::replace(&mut given[slot], true) {
        return None;
    }
    match slot {
        0 => map.ignore = r.strings()?,
        1 => {
            map.unmapped = match r.string()?.get_ref().as_str() {
                "all" => Unmapped::All,
                "none" => Unmapped::None,
                _ => return None,
            }
        }
        _ => map.build_dependencies = r.boolean()?,
    }
    Some(())
}

/// A `[[resource]]` being read: each key at most once.
#[derive(Default)]
struct Partial {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    paths: Option<Vec<Spanned<String>>>,
    depends_on: Option<Vec<Spanned<String>>>,
    deploy: Option<bool>,
    enabled: Option<bool>,
}

impl Partial {
    fn key(&mut self, r: &mut Reader<'_>, key: &str) -> Option<()> {
        // `once` refuses a key given twice; the value is read only the first time.
        fn once<T>(slot: &mut Option<T>, read: impl FnOnce() -> Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(read()?);
            Some(())
        }
        match key {
            "name" => once(&mut self.name, || r.string()),
            "type" => once(&mut self.kind, || r.string()),
            "paths" => once(&mut self.paths, || r.strings()),
            "depends_on" => once(&mut self.depends_on, || r.strings()),
            "deploy" => once(&mut self.deploy, || r.boolean()),
            "enabled" => once(&mut self.enabled, || r.boolean()),
            _ => None,
        }
    }

    /// The resource, with serde's defaults; `None` without a `name` or a `type`.
    fn finish(self) -> Option<RawResource> {
        Some(RawResource {
            name: self.name?,
            kind: self.kind?,
            paths: self.paths.unwrap_or_default(),
            depends_on: self.depends_on.unwrap_or_default(),
            deploy: self.deploy,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// A cursor over the text. Every method returns `None` on anything it does not expect.
struct Reader<'a> {
    src: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Spaces and tabs, TOML's whitespace within a line.
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Exactly `expected`.
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        if self.bytes[self.at..].starts_with(expected) {
            self.at += expected.len();
            Some(())
        } else {
            None
        }
    }

    /// A comment, if one starts here, up to (not including) its line's end. Control characters
    /// other than tab are not allowed in TOML comments: left to `toml` to report.
    fn comment(&mut self) -> Option<()> {
        if self.peek() != Some(b'#') {
            return Some(());
        }
        while let Some(b) = self.peek() {
            match b {
                b'\n' | b'\r' => break,
                b'\t' => {}
                0..=0x1f | 0x7f => return None,
                _ => {}
            }
            self.at += 1;
        }
        Some(())
    }

    /// Blanks, an optional comment, and the end of the line (`\n`, `\r\n`) or of the text.
    fn end_of_line(&mut self) -> Option<()> {
        self.skip_blank();
        self.comment()?;
        match self.peek() {
            None => Some(()),
            Some(b'\n') => {
                self.at += 1;
                Some(())
            }
            Some(b'\r') => self.literal(b"\r\n"),
            Some(_) => None,
        }
    }

    /// Whitespace, newlines and comments, as allowed between the values of an array.
    fn skip_in_array(&mut self) -> Option<()> {
        loop {
            self.skip_blank();
            match self.peek() {
                Some(b'#') => self.comment()?,
                Some(b'\n') => self.at += 1,
                Some(b'\r') => self.literal(b"\r\n")?,
                _ => return Some(()),
            }
        }
    }

    /// A bare key (`A-Za-z0-9_-`).
    fn bare_key(&mut self) -> Option<&'a str> {
        let start = self.at;
        while matches!(self.peek(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.src[start..self.at])
    }

    /// A basic string without escapes, spanning its quotes (as `toml`'s spans do). Bytes below
    /// 0x80 are whole characters in UTF-8, so cutting the text at the quotes is always on a
    /// character boundary.
    fn string(&mut self) -> Option<Spanned<String>> {
        let start = self.at;
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => break,
                // Escapes are left to `toml`, and so are control characters (tab is allowed).
                b'\\' | 0..=0x08 | 0x0a..=0x1f | 0x7f => return None,
                _ => self.at += 1,
            }
        }
        let value = self.src[start + 1..self.at].to_string();
        self.at += 1;
        Some(Spanned::new(start..self.at, value))
    }

    /// An array of strings, over one line or several, a trailing comma allowed.
    fn strings(&mut self) -> Option<Vec<Spanned<String>>> {
        self.literal(b"[")?;
        let mut out = Vec::new();
        loop {
            self.skip_in_array()?;
            if self.peek() == Some(b']') {
                break;
            }
            out.push(self.string()?);
            self.skip_in_array()?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.at += 1;
        Some(out)
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else {
            self.literal(b"false").map(|()| false)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Everything of a raw map, spans included (`Spanned`'s own `==` ignores spans).
    fn flat(map: &RawMap) -> String {
        let s = |v: &Spanned<String>| format!("{:?}@{:?}", v.get_ref(), v.span());
        let list = |v: &[Spanned<String>]| v.iter().map(s).collect::<Vec<_>>().join(",");
        let mut out = format!(
            "ignore=[{}] unmapped={:?} build_dependencies={}",
            list(&map.ignore),
            map.unmapped,
            map.build_dependencies
        );
        for r in &map.resource {
            out.push_str(&format!(
                "\n[{} {} paths=[{}] depends_on=[{}] deploy={:?} enabled={}]",
                s(&r.name),
                s(&r.kind),
                list(&r.paths),
                list(&r.depends_on),
                r.deploy,
                r.enabled
            ));
        }
        out
    }

    /// The fast reader reads `src`, and exactly as `toml` does.
    fn read_alike(src: &str) {
        let quick = quick(src).unwrap_or_else(|| panic!("the fast reader gave up on:\n{src}"));
        let reference = serde(src).unwrap_or_else(|e| panic!("toml refused:\n{src}\n{e}"));
        assert_eq!(flat(&quick), flat(&reference), "{src}");
    }

    #[test]
    fn the_fast_reader_reads_plain_maps_exactly_as_toml_does() {
        read_alike("");
        read_alike("# nothing but a comment\n\n   \n");
        read_alike(concat!(
            "# The map.\n",
            "ignore = [\"docs/**\", \"**/*.md\"]   # ignored\n",
            "unmapped = \"none\"\n",
            "build_dependencies = false\n",
            "\n",
            "[[resource]]\n",
            "name = \"common\"\n",
            "type = \"package\"\n",
            "paths = [\"libs/common/**\"]\n",
            "[[resource]]   # the service\n",
            "\tname\t=\t\"billing\"\n",
            "type=\"service\"\n",
            "paths = [\n",
            "  \"services/billing/**\",   # its sources\n",
            "  # a comment line inside the array\n",
            "  \"proto/billing/*.{proto,json}\",\n",
            "]\n",
            "depends_on = [ \"common\" , \"common\" ]\n",
            "deploy = false\n",
            "enabled = true\n",
            "[[resource]]\n",
            "type = \"job\"\n",
            "name = \"é-ü\"\n",
            "paths = []\n",
            "depends_on = [\n]",
        ));
        // Windows line ends, tabs and non-ASCII text in strings and comments, no final newline.
        read_alike(
            "ignore = [\"a\tb/**\"] # é\r\n[[resource]]\r\nname = \"日本\"\r\ntype = \"x\"\r\npaths = [\r\n\"x/**\",\r\n]",
        );
    }

    #[test]
    fn the_fast_reader_leaves_everything_else_to_toml() {
        let head = "[[resource]]\nname = \"a\"\ntype = \"service\"\n";
        for tail in [
            // Valid TOML outside the plain subset.
            "paths = [\"a\\\\b\"]\n",
            "paths = ['literal/**']\n",
            "paths = [\"\"\"x\"\"\"]\n",
            "\"deploy\" = true\n",
            "[[ resource ]]\nname = \"b\"\ntype = \"x\"\n",
            // Mistakes: `toml` reports them.
            "depends-on = [\"b\"]\n",
            "deploy = 1\n",
            "deploy = true\ndeploy = false\n",
            "paths = \"a/**\"\n",
            "paths = [\"a\", 3]\n",
            "paths = [\"a\" \"b\"]\n",
            "paths = [,]\n",
            "name = \"again\"\n",
            "enabled = truely\n",
            "x.y = 1\n",
            "[resource]\n",
            "[[resource]]\nname = \"b\"\n",
            "type = \"a\nb\"\n",
            "# a control character \u{1}\n",
            "paths = [\"a\"] junk\n",
            "paths = [\"a\u{7f}\"]\n",
            "\r",
        ] {
            let src = format!("{head}{tail}");
            assert!(quick(&src).is_none(), "the fast reader read:\n{src}");
        }
        for top in [
            "unmapped = \"some\"\n",
            "unmapped = \"all\"\nunmapped = \"all\"\n",
            "ignore = []\nignore = []\n",
            "resource = [{ name = \"a\", type = \"x\" }]\n",
            "build_dependencies = \"yes\"\n",
            "\u{feff}ignore = []\n",
        ] {
            assert!(quick(top).is_none(), "the fast reader read:\n{top}");
        }
    }

    /// A plainly written map of `n` resources (four lines each, after two lines of header), the
    /// shape the fast reader takes.
    fn big_map(n: usize) -> String {
        let mut src = String::from("ignore = [\"docs/**\"]\nunmapped = \"none\"\n");
        for i in 0..n {
            let deps = if i == 0 {
                String::new()
            } else {
                format!("\"r{}\"", i - 1)
            };
            src.push_str(&format!(
                "[[resource]]\nname = \"r{i}\"\ntype = \"service\"\ndepends_on = [{deps}]\n"
            ));
        }
        src
    }

    #[test]
    fn mistakes_in_a_large_map_are_still_reported_at_their_line() {
        use crate::resources::{ProblemKind, ResourceMap};
        let src = big_map(1_000);
        assert!(quick(&src).is_some(), "the fast reader takes the valid map");
        assert_eq!(ResourceMap::parse(&src).map(|m| m.resources().len()), Ok(1_000));

        // A TOML mistake on line 2,005 (resource 500's `type` line): the fast reader gives up,
        // and `toml` says where.
        let lines: Vec<&str> = src.lines().collect();
        assert_eq!(lines[2_004], "type = \"service\"");
        let mut broken = lines.clone();
        broken[2_004] = "kind = \"service\"";
        let broken = broken.join("\n");
        assert!(quick(&broken).is_none());
        let e = ResourceMap::parse(&broken).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].kind, ProblemKind::Syntax);
        assert_eq!(e.problems[0].line, Some(2_005), "{e}");
        assert!(e.problems[0].message.contains("kind"), "{e}");

        // A mistake found after reading (an unknown dependency on line 2,006), on a map the fast
        // reader took: its span points at the value.
        let mut unknown = lines.clone();
        unknown[2_005] = "depends_on = [\"r499\", \"nope\"]";
        let unknown = unknown.join("\n");
        assert!(quick(&unknown).is_some());
        let e = ResourceMap::parse(&unknown).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].kind, ProblemKind::UnknownDependency);
        assert_eq!(
            (e.problems[0].line, e.problems[0].column),
            (Some(2_006), Some(23)),
            "{e}"
        );
    }

    /// Map-like text, mostly well formed but with a little of everything the fast reader must
    /// refuse: escapes, quotes, control characters, other string kinds, unknown and repeated
    /// keys, junk after values, odd headers, bare carriage returns.
    fn map_like() -> impl Strategy<Value = String> {
        let string = prop_oneof![
            6 => "[a-z/*.{},é# \t\\[\\]]{0,6}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z\"\\\\\u{1}\u{7f}]{0,4}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z\\\\]{0,4}".prop_map(|s| format!("'{s}'")),
            1 => Just("\"\"\"x\"\"\"".to_string()),
        ];
        let gap = prop::sample::select(vec!["", " ", "\t", "\n", "\r\n", " # c\n", "#é\n", "\r"]);
        let array =
            prop::collection::vec((gap.clone(), string.clone(), gap.clone(), any::<bool>()), 0..4).prop_map(|items| {
                let mut s = String::from("[");
                let n = items.len();
                for (i, (before, value, after, comma)) in items.into_iter().enumerate() {
                    s.push_str(before);
                    s.push_str(&value);
                    s.push_str(after);
                    if comma || i + 1 < n {
                        s.push(',');
                    }
                }
                s.push(']');
                s
            });
        let value = prop_oneof![
            4 => string,
            4 => array,
            2 => prop::sample::select(vec!["true", "false", "1", "truely", "\"all\"", "\"none\""])
                .prop_map(str::to_string),
        ];
        let key = prop::sample::select(vec![
            "name",
            "type",
            "paths",
            "depends_on",
            "deploy",
            "enabled",
            "ignore",
            "unmapped",
            "build_dependencies",
            "name",
            "type",
            "paths",
            "nmae",
            "\"name\"",
            "a.b",
            "resource",
        ]);
        let equals = prop::sample::select(vec!["=", " = ", "\t=\t", " =", "=="]);
        let after = prop::sample::select(vec!["", "", " # c", " x", "#\u{1}", "\t"]);
        let line = prop_oneof![
            1 => prop::sample::select(vec![
                "[[resource]]", "[[resource]]", "[[ resource ]]", "[resource]", "[[resource]] # x", "",
                "# comment",
            ])
            .prop_map(str::to_string),
            5 => (key, equals, value, after).prop_map(|(k, e, v, a)| format!("{k}{e}{v}{a}")),
        ];
        let end = prop::sample::select(vec!["\n", "\n", "\r\n", "\n\n"]);
        prop::collection::vec((line, end), 0..14)
            .prop_map(|lines| lines.into_iter().map(|(l, e)| format!("{l}{e}")).collect::<String>())
    }

    /// A well-formed plain map, spelt in the ways people do.
    fn plain_map() -> impl Strategy<Value = String> {
        let string = "[a-z0-9/*.{},é# \t\\[\\]-]{0,8}".prop_map(|s| format!("\"{s}\""));
        let sep = prop::sample::select(vec![" ", "", "\n  ", " # c\n ", "\r\n"]);
        let array =
            (prop::collection::vec((string.clone(), sep), 0..4), any::<bool>()).prop_map(|(items, trailing)| {
                let n = items.len();
                let body: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, (s, sep))| {
                        let comma = if i + 1 < n || trailing { "," } else { "" };
                        format!("{sep}{s}{comma}")
                    })
                    .collect();
                format!("[{}\n]", body.concat())
            });
        let resource = (
            string.clone(),
            string.clone(),
            prop::option::of(array.clone()),
            prop::option::of(array.clone()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            any::<bool>(),
        )
            .prop_map(|(name, kind, paths, deps, deploy, enabled, swap)| {
                let mut lines = vec![format!("name = {name}"), format!("type\t= {kind}  # t")];
                if swap {
                    lines.swap(0, 1);
                }
                lines.extend(paths.map(|p| format!("paths = {p}")));
                lines.extend(deps.map(|d| format!("depends_on={d}")));
                lines.extend(deploy.map(|d| format!("deploy = {d}")));
                lines.extend(enabled.map(|e| format!("  enabled = {e}")));
                format!("[[resource]]\n{}\n", lines.join("\n"))
            });
        (
            prop::option::of(array),
            prop::option::of(prop::sample::select(vec!["all", "none"])),
            prop::option::of(any::<bool>()),
            prop::collection::vec(resource, 0..5),
        )
            .prop_map(|(ignore, unmapped, build, resources)| {
                let mut s = String::from("# map\n");
                s.extend(ignore.map(|i| format!("ignore = {i}\n")));
                s.extend(unmapped.map(|u| format!("unmapped = \"{u}\"\n")));
                s.extend(build.map(|b| format!("build_dependencies = {b}\n\n")));
                s.push_str(&resources.concat());
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the fast reader accepts, `toml` accepts and reads the same, spans included;
        /// whatever `toml` refuses, the fast reader refuses (so the error comes from `toml`).
        #[test]
        fn the_fast_reader_never_disagrees_with_toml(src in map_like()) {
            match (quick(&src), serde(&src)) {
                (Some(q), Ok(s)) => prop_assert_eq!(flat(&q), flat(&s), "{}", src),
                (Some(q), Err(e)) => prop_assert!(false, "fast read {} where toml says {}:\n{}", flat(&q), e, src),
                (None, _) => {}
            }
        }

        /// And it does read plainly written maps (so the fast path is the one taken).
        #[test]
        fn the_fast_reader_reads_every_plain_map(src in plain_map()) {
            read_alike(&src);
        }
    }
}
