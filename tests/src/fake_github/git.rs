//! The fake GitHub's object store: one bare repository per fake repository, driven through the
//! `git` CLI, so every commit, tree and merge the fake serves is a real git object that a working
//! copy can `git fetch` from the repository's `file://` clone URL (SPEC §5.8).
//!
//! Each call is one short-lived `git` process with a sealed environment: no system or user
//! configuration (`GIT_CONFIG_NOSYSTEM`, `HOME` and `XDG_CONFIG_HOME` in the fake's own temporary
//! directory), no inherited `GIT_DIR`-style variables, and a fixed author and committer whose
//! dates come from the fake's own counter — so two pushes of the same change are still two
//! commits, and a run is reproducible. Anything a request names is checked before it reaches a
//! command line (full hex SHAs, `refs/heads/…` names), so nothing a test sends can be read by git
//! as an option or a revision expression.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The identity the fake writes commits with (GitHub's own merges carry the token owner's).
pub const NAME: &str = "Fake GitHub";
pub const EMAIL: &str = "fake-github@example.com";

/// Dates of the fake's commits: this epoch plus the fake's counter, in seconds.
pub const EPOCH: i64 = 1_700_000_000;

/// The all-zero object id: "must not exist yet" in `git update-ref`.
const ZERO: &str = "0000000000000000000000000000000000000000";

/// A failed `git` command, with what it said.
#[derive(Debug)]
pub struct GitError(pub String);

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type GitResult<T> = Result<T, GitError>;

/// Whether `s` is a full object id (what the fake's API takes wherever GitHub wants a SHA).
pub fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` may be an abbreviated object id (GitHub resolves 4 to 40 hex digits).
pub fn is_sha_prefix(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Who and when, as a commit records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub email: String,
    /// Unix seconds.
    pub time: i64,
    /// `+0000`-style offset as written in the commit.
    pub offset: String,
}

impl Ident {
    pub fn fake(time: i64) -> Ident {
        Ident {
            name: NAME.into(),
            email: EMAIL.into(),
            time,
            offset: "+0000".into(),
        }
    }

    /// ISO 8601 as GitHub writes it (`2023-11-14T22:13:20Z`, or with the offset).
    pub fn date(&self) -> String {
        let utc = chrono::DateTime::from_timestamp(self.time, 0).unwrap_or_default();
        if self.offset == "+0000" {
            utc.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            let secs = parse_offset(&self.offset).unwrap_or(0);
            let tz = chrono::FixedOffset::east_opt(secs).unwrap_or(chrono::FixedOffset::east_opt(0).unwrap());
            utc.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }

    /// The `GIT_*_DATE` form.
    fn git_date(&self) -> String {
        format!("@{} {}", self.time, self.offset)
    }
}

fn parse_offset(s: &str) -> Option<i32> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// A commit object as `git cat-file commit` shows it.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Ident,
    pub committer: Ident,
    pub message: String,
}

/// One path of a diff between two commits (`git diff-tree -M`).
#[derive(Clone, Debug, PartialEq)]
pub struct FileChange {
    /// GitHub's words: `added`, `modified`, `removed`, `renamed`.
    pub status: &'static str,
    pub filename: String,
    pub previous_filename: Option<String>,
    /// The blob after the change (the zero id for a removal).
    pub sha: String,
}

/// A bare repository and the sealed environment git runs in for it.
pub struct Bare {
    dir: PathBuf,
    home: PathBuf,
}

impl Bare {
    /// Creates an empty bare repository at `dir` whose `HEAD` names `default_branch`, serving
    /// any reachable commit by SHA as GitHub does (`git fetch <url> <sha>`).
    pub fn init(dir: &Path, home: &Path, default_branch: &str) -> GitResult<Bare> {
        std::fs::create_dir_all(dir).map_err(|e| GitError(format!("create {}: {e}", dir.display())))?;
        let bare = Bare {
            dir: dir.to_path_buf(),
            home: home.to_path_buf(),
        };
        bare.run(&[
            "init",
            "--quiet",
            "--bare",
            &format!("--initial-branch={default_branch}"),
        ])?;
        bare.run(&["config", "uploadpack.allowReachableSHA1InWant", "true"])?;
        // No background maintenance in a directory the fake removes when it is dropped.
        bare.run(&["config", "gc.auto", "0"])?;
        Ok(bare)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn command(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("--git-dir").arg(&self.dir);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_CONFIG",
            "GIT_CONFIG_PARAMETERS",
            "GIT_CONFIG_COUNT",
            "GIT_NAMESPACE",
            "GIT_CEILING_DIRECTORIES",
        ] {
            c.env_remove(var);
        }
        c.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.home.join(".gitconfig"))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", NAME)
            .env("GIT_AUTHOR_EMAIL", EMAIL)
            .env("GIT_COMMITTER_NAME", NAME)
            .env("GIT_COMMITTER_EMAIL", EMAIL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn output(&self, mut c: Command, stdin: Option<&[u8]>) -> GitResult<Output> {
        let described = format!("{c:?}");
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().map_err(|e| GitError(format!("{described}: {e}")))?;
        if let Some(input) = stdin {
            // Written from a thread: git may fill its stdout pipe before it has read all of stdin.
            let mut pipe = child.stdin.take().expect("stdin was piped");
            let input = input.to_vec();
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child
                .wait_with_output()
                .map_err(|e| GitError(format!("{described}: {e}")))?;
            writer
                .join()
                .map_err(|_| GitError(format!("{described}: writer panicked")))?
                .map_err(|e| GitError(format!("{described}: writing stdin: {e}")))?;
            Ok(out)
        } else {
            child
                .wait_with_output()
                .map_err(|e| GitError(format!("{described}: {e}")))
        }
    }

    fn failed(args: &[&str], out: &Output) -> GitError {
        GitError(format!(
            "git {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// Runs git; its stdout when it succeeds.
    fn run(&self, args: &[&str]) -> GitResult<String> {
        self.run_with(args, None, None)
    }

    fn run_with(&self, args: &[&str], stdin: Option<&[u8]>, dates: Option<(&Ident, &Ident)>) -> GitResult<String> {
        let mut c = self.command();
        c.args(args);
        if let Some((author, committer)) = dates {
            c.env("GIT_AUTHOR_NAME", &author.name)
                .env("GIT_AUTHOR_EMAIL", &author.email)
                .env("GIT_AUTHOR_DATE", author.git_date())
                .env("GIT_COMMITTER_NAME", &committer.name)
                .env("GIT_COMMITTER_EMAIL", &committer.email)
                .env("GIT_COMMITTER_DATE", committer.git_date());
        }
        let out = self.output(c, stdin)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Self::failed(args, &out))
        }
    }

    /// Runs a command that answers yes (exit 0) or no (exit 1); anything else is an error.
    fn yes_no(&self, args: &[&str]) -> GitResult<bool> {
        let mut c = self.command();
        c.args(args);
        let out = self.output(c, None)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(Self::failed(args, &out)),
        }
    }

    /// Commits `changes` (`None` deletes a path) on top of `parent` (a root commit when `None`)
    /// in one `git fast-import` — hundreds of files cost one process — and points
    /// `refs/heads/{branch}` at it. Returns the new commit.
    pub fn import(
        &self,
        branch: &str,
        parent: Option<&str>,
        message: &str,
        changes: &[(&str, Option<&str>)],
        when: &Ident,
    ) -> GitResult<String> {
        let mut s: Vec<u8> = vec![];
        let who = |i: &Ident| format!("{} <{}> {} {}", i.name, i.email, i.time, i.offset);
        s.extend(format!("commit refs/heads/{branch}\nmark :1\n").as_bytes());
        s.extend(format!("author {}\ncommitter {}\n", who(when), who(when)).as_bytes());
        data(&mut s, message.as_bytes());
        if let Some(p) = parent {
            s.extend(format!("from {p}\n").as_bytes());
        }
        for (path, content) in changes {
            match content {
                Some(c) => {
                    s.extend(format!("M 100644 inline {}\n", quote(path)).as_bytes());
                    data(&mut s, c.as_bytes());
                }
                None => s.extend(format!("D {}\n", quote(path)).as_bytes()),
            }
        }
        s.extend(b"\nget-mark :1\ndone\n");
        let out = self.run_with(&["fast-import", "--quiet", "--force", "--done"], Some(&s), None)?;
        let sha = out.trim().to_string();
        if is_full_sha(&sha) {
            Ok(sha)
        } else {
            Err(GitError(format!("fast-import answered {out:?}")))
        }
    }

    /// The three-way merge of two commits, as a tree (`git merge-tree --write-tree`, the same
    /// `ort` merge `git merge` does); `None` on a conflict.
    pub fn merge_tree(&self, ours: &str, theirs: &str) -> GitResult<Option<String>> {
        let args = [
            "merge-tree",
            "--write-tree",
            "--no-messages",
            "--name-only",
            ours,
            theirs,
        ];
        let mut c = self.command();
        c.args(args);
        let out = self.output(c, None)?;
        match out.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            )),
            Some(1) => Ok(None),
            _ => Err(Self::failed(&args, &out)),
        }
    }

    /// Writes a commit of `tree` with these parents (`git commit-tree`).
    pub fn commit_tree(
        &self,
        tree: &str,
        parents: &[String],
        message: &str,
        author: &Ident,
        committer: &Ident,
    ) -> GitResult<String> {
        let mut args = vec!["commit-tree", tree];
        for p in parents {
            args.push("-p");
            args.push(p);
        }
        let out = self.run_with(&args, Some(message.as_bytes()), Some((author, committer)))?;
        Ok(out.trim().to_string())
    }

    /// The object's type (`commit`, `tree`, `blob`), or `None` when it does not exist.
    pub fn object_type(&self, sha: &str) -> GitResult<Option<String>> {
        debug_assert!(is_sha_prefix(sha));
        let mut c = self.command();
        c.args(["cat-file", "-t", sha]);
        let out = self.output(c, None)?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// The full id of the commit a (possibly abbreviated) hex SHA names: `Ok(None)` when none
    /// does, `Err` when the prefix is ambiguous.
    pub fn resolve_commit(&self, prefix: &str) -> GitResult<Option<String>> {
        if !is_sha_prefix(prefix) {
            return Ok(None);
        }
        let prefix = prefix.to_ascii_lowercase();
        // Every object with this prefix, then the commits among them.
        let spec = format!("{prefix}^{{commit}}");
        let mut c = self.command();
        c.args(["rev-parse", "--verify", "--quiet", "--end-of-options", &spec]);
        let out = self.output(c, None)?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()));
        }
        if String::from_utf8_lossy(&out.stderr).contains("ambiguous") {
            return Err(GitError(format!("ambiguous SHA {prefix}")));
        }
        Ok(None)
    }

    pub fn is_commit(&self, sha: &str) -> GitResult<bool> {
        Ok(is_full_sha(sha) && self.object_type(sha)?.as_deref() == Some("commit"))
    }

    pub fn is_tree(&self, sha: &str) -> GitResult<bool> {
        Ok(is_full_sha(sha) && self.object_type(sha)?.as_deref() == Some("tree"))
    }

    /// Whether `ancestor` is reachable from `of` (a commit is its own ancestor).
    pub fn is_ancestor(&self, ancestor: &str, of: &str) -> GitResult<bool> {
        self.yes_no(&["merge-base", "--is-ancestor", ancestor, of])
    }

    /// The best common ancestor, or `None` for unrelated histories.
    pub fn merge_base(&self, a: &str, b: &str) -> GitResult<Option<String>> {
        let mut c = self.command();
        c.args(["merge-base", a, b]);
        let out = self.output(c, None)?;
        match out.status.code() {
            Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string())),
            Some(1) => Ok(None),
            _ => Err(Self::failed(&["merge-base", a, b], &out)),
        }
    }

    /// Commits reachable from `to` and not from any of `not`, oldest first (`git log --reverse
    /// not..to`, GitHub's order in a comparison).
    pub fn commits_between(&self, not: &[&str], to: &str) -> GitResult<Vec<String>> {
        let mut args = vec!["rev-list", "--reverse", to];
        let excluded: Vec<String> = not.iter().map(|n| format!("^{n}")).collect();
        args.extend(excluded.iter().map(String::as_str));
        Ok(self.run(&args)?.lines().map(str::to_string).collect())
    }

    /// A commit object, parsed.
    pub fn commit(&self, sha: &str) -> GitResult<CommitInfo> {
        let raw = self.run(&["cat-file", "commit", sha])?;
        let (headers, message) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let mut info = CommitInfo {
            sha: sha.to_string(),
            tree: String::new(),
            parents: vec![],
            author: Ident::fake(EPOCH),
            committer: Ident::fake(EPOCH),
            message: message.to_string(),
        };
        for line in headers.lines() {
            if let Some(t) = line.strip_prefix("tree ") {
                info.tree = t.to_string();
            } else if let Some(p) = line.strip_prefix("parent ") {
                info.parents.push(p.to_string());
            } else if let Some(a) = line.strip_prefix("author ") {
                info.author = parse_ident(a).ok_or_else(|| GitError(format!("bad author line {a:?}")))?;
            } else if let Some(c) = line.strip_prefix("committer ") {
                info.committer = parse_ident(c).ok_or_else(|| GitError(format!("bad committer line {c:?}")))?;
            }
        }
        Ok(info)
    }

    /// The tree a commit points to.
    pub fn tree_of(&self, commit: &str) -> GitResult<String> {
        Ok(self
            .run(&["rev-parse", "--verify", &format!("{commit}^{{tree}}")])?
            .trim()
            .to_string())
    }

    /// What changed from `from` to `to`, renames found as `git diff -M` finds them, sorted by path.
    pub fn diff(&self, from: &str, to: &str) -> GitResult<Vec<FileChange>> {
        let out = self.run(&["diff-tree", "-r", "-z", "-M", "--no-commit-id", from, to])?;
        let mut fields = out.split('\0').filter(|f| !f.is_empty());
        let mut changes = vec![];
        while let Some(meta) = fields.next() {
            // `:old_mode new_mode old_sha new_sha STATUS`
            let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let (sha, letter) = match parts.as_slice() {
                [_, _, _, new, status] => (new.to_string(), status.chars().next().unwrap_or('M')),
                _ => return Err(GitError(format!("unexpected diff-tree line {meta:?}"))),
            };
            let first = fields.next().unwrap_or_default().to_string();
            let change = match letter {
                'A' => FileChange {
                    status: "added",
                    filename: first,
                    previous_filename: None,
                    sha,
                },
                'D' => FileChange {
                    status: "removed",
                    filename: first,
                    previous_filename: None,
                    sha,
                },
                'R' => FileChange {
                    status: "renamed",
                    filename: fields.next().unwrap_or_default().to_string(),
                    previous_filename: Some(first),
                    sha,
                },
                _ => FileChange {
                    status: "modified",
                    filename: first,
                    previous_filename: None,
                    sha,
                },
            };
            changes.push(change);
        }
        changes.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(changes)
    }

    /// Every file of a commit with its text (two processes whatever the number of files).
    pub fn files(&self, commit: &str) -> GitResult<BTreeMap<String, String>> {
        let listing = self.run(&["ls-tree", "-r", "-z", "--full-tree", commit])?;
        let mut entries = vec![];
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let (meta, path) = entry
                .split_once('\t')
                .ok_or_else(|| GitError(format!("unexpected ls-tree entry {entry:?}")))?;
            let blob = meta.split(' ').nth(2).unwrap_or_default();
            if meta.split(' ').nth(1) == Some("blob") {
                entries.push((path.to_string(), blob.to_string()));
            }
        }
        let input: String = entries.iter().map(|(_, b)| format!("{b}\n")).collect();
        let contents = self.batch(input.as_bytes())?;
        Ok(entries
            .into_iter()
            .zip(contents)
            .map(|((path, _), (_, bytes))| (path, String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()))
            .collect())
    }

    /// The blob at `path` in `commit`: `(blob sha, bytes)`, or `None` when there is no such file.
    pub fn file_at(&self, commit: &str, path: &str) -> GitResult<Option<(String, Vec<u8>)>> {
        // One request line each: a path with a line break names no file (and must not become two).
        if path.contains(['\n', '\r']) || path.is_empty() {
            return Ok(None);
        }
        let mut found = self.batch(format!("{commit}:{path}\n").as_bytes())?;
        Ok(match found.pop() {
            Some((Some((sha, kind)), Some(bytes))) if kind == "blob" => Some((sha, bytes)),
            _ => None,
        })
    }

    /// `git cat-file --batch`: for each line of `input`, `((sha, type), content)`, `None` when
    /// the object is missing.
    #[allow(clippy::type_complexity)]
    fn batch(&self, input: &[u8]) -> GitResult<Vec<(Option<(String, String)>, Option<Vec<u8>>)>> {
        let mut c = self.command();
        c.args(["cat-file", "--batch"]);
        let out = self.output(c, Some(input))?;
        if !out.status.success() {
            return Err(Self::failed(&["cat-file", "--batch"], &out));
        }
        let mut rest: &[u8] = &out.stdout;
        let mut answers = vec![];
        while !rest.is_empty() {
            let nl = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| GitError("cat-file --batch: truncated header".into()))?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            rest = &rest[nl + 1..];
            let parts: Vec<&str> = header.split(' ').collect();
            match parts.as_slice() {
                [sha, kind, size] if size.parse::<usize>().is_ok() => {
                    let size: usize = size.parse().unwrap_or(0);
                    if rest.len() < size + 1 {
                        return Err(GitError("cat-file --batch: truncated content".into()));
                    }
                    answers.push((Some((sha.to_string(), kind.to_string())), Some(rest[..size].to_vec())));
                    rest = &rest[size + 1..];
                }
                // `<name> missing`, `<name> ambiguous`
                _ => answers.push((None, None)),
            }
        }
        Ok(answers)
    }

    /// Moves (or creates) `refs/heads/{branch}` to `new`, only if it is still at `old` (`None`:
    /// only if it does not exist yet).
    pub fn update_branch(&self, branch: &str, new: &str, old: Option<&str>) -> GitResult<()> {
        let name = format!("refs/heads/{branch}");
        self.run(&["update-ref", &name, new, old.unwrap_or(ZERO)]).map(|_| ())
    }

    /// Whether `branch` makes a valid `refs/heads/…` name.
    pub fn valid_branch_name(&self, branch: &str) -> GitResult<bool> {
        if branch.starts_with('-') || branch.is_empty() {
            return Ok(false);
        }
        self.yes_no(&["check-ref-format", &format!("refs/heads/{branch}")])
    }
}

/// `data <n>\n<bytes>\n` of the fast-import stream.
fn data(s: &mut Vec<u8>, bytes: &[u8]) {
    s.extend(format!("data {}\n", bytes.len()).as_bytes());
    s.extend(bytes);
    s.push(b'\n');
}

/// A path in fast-import's C-style quoting, so spaces, quotes and newlines survive.
fn quote(path: &str) -> String {
    let mut q = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `Name <email> 1700000000 +0000`.
fn parse_ident(s: &str) -> Option<Ident> {
    let (name, rest) = s.split_once(" <")?;
    let (email, rest) = rest.split_once("> ")?;
    let (time, offset) = rest.split_once(' ')?;
    Some(Ident {
        name: name.to_string(),
        email: email.to_string(),
        time: time.parse().ok()?,
        offset: offset.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_parse_and_print_as_github_writes_dates() {
        let i = parse_ident("Ada Lovelace <ada@example.com> 1700000000 +0000").unwrap();
        assert_eq!(
            (i.name.as_str(), i.email.as_str(), i.time),
            ("Ada Lovelace", "ada@example.com", 1_700_000_000)
        );
        assert_eq!(i.date(), "2023-11-14T22:13:20Z");
        let j = parse_ident("B <b@x> 1700000000 +0130").unwrap();
        assert_eq!(j.date(), "2023-11-14T23:43:20+01:30");
        assert!(parse_ident("no email 1").is_none());
    }

    #[test]
    fn paths_are_quoted_for_fast_import() {
        assert_eq!(quote("a b/\"c\"\n"), "\"a b/\\\"c\\\"\\n\"");
    }

    #[test]
    fn only_hex_reaches_git_as_a_sha() {
        assert!(is_full_sha(&"a".repeat(40)));
        assert!(!is_full_sha(&"A".repeat(40)));
        assert!(!is_full_sha("--upload-pack=x"));
        assert!(is_sha_prefix("abcd") && !is_sha_prefix("abc") && !is_sha_prefix("main"));
    }
}
