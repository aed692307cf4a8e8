//! What a landing writes besides moving the base (SPEC §5.3 step 5), kept pure: the message of a
//! `squash` commit, and the issues a PR body closes with GitHub's closing keywords.
//!
//! GitHub closes those issues by itself when it merges a PR; a PR landed by `squash` is closed,
//! not merged, so Gandalf closes them — the same issues GitHub would have closed, no more: only
//! this repository's issues (`#n`, `owner/repo#n` naming it, or its issue URL), after one of the
//! nine keywords.

use shared::github::{PrNumber, PullRequest, RepoName};

/// The keywords GitHub reads as "this PR closes that issue" (any case).
const KEYWORDS: [&str; 9] = [
    "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
];

/// The squash commit's message: the PR's title with `(#n)`, its body, and a `Co-authored-by`
/// trailer per distinct author of its commits other than the committer GitHub records.
pub fn squash_message(pull: &PullRequest, co_authors: &[String]) -> String {
    let mut msg = format!("{} (#{})", pull.title.trim(), pull.number);
    let body = pull.body.trim();
    if !body.is_empty() {
        msg.push_str("\n\n");
        msg.push_str(&body.replace("\r\n", "\n"));
    }
    let mut trailers: Vec<&str> = vec![];
    for a in co_authors {
        let a = a.trim();
        if !a.is_empty() && !trailers.contains(&a) && !body.contains(a) {
            trailers.push(a);
        }
    }
    if !trailers.is_empty() {
        msg.push_str("\n\n");
        let lines: Vec<String> = trailers.iter().map(|a| format!("Co-authored-by: {a}")).collect();
        msg.push_str(&lines.join("\n"));
    }
    msg
}

/// The issues of `repo` that `body` closes, in order of first mention, each once.
pub fn closed_issues(body: &str, repo: &RepoName) -> Vec<PrNumber> {
    let words: Vec<&str> = body.split_whitespace().collect();
    let mut out = vec![];
    for pair in words.windows(2) {
        let keyword = pair[0].trim_end_matches(':').to_ascii_lowercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            continue;
        }
        if let Some(n) = issue_ref(pair[1], repo)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// `#12`, `owner/repo#12` or `https://github.com/owner/repo/issues/12` naming an issue of `repo`
/// (trailing punctuation allowed).
fn issue_ref(word: &str, repo: &RepoName) -> Option<PrNumber> {
    let word = word.trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
    let same_repo = |name: &str| name.eq_ignore_ascii_case(&repo.to_string());
    let number = if let Some(n) = word.strip_prefix('#') {
        n
    } else if let Some((name, n)) = word.split_once('#') {
        if !same_repo(name) {
            return None;
        }
        n
    } else {
        let rest = word
            .strip_prefix("https://github.com/")
            .or_else(|| word.strip_prefix("http://github.com/"))?;
        let (name, n) = rest.rsplit_once("/issues/")?;
        if !same_repo(name) {
            return None;
        }
        n
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok().and_then(PrNumber::new)
}

#[cfg(test)]
mod tests {
    use shared::github::{CommitSha, PullState};

    use super::*;

    fn repo() -> RepoName {
        "acme/platform".parse().unwrap()
    }

    fn numbers(body: &str) -> Vec<u64> {
        closed_issues(body, &repo()).iter().map(|n| n.get()).collect()
    }

    #[test]
    fn the_keywords_close_this_repositorys_issues_only() {
        assert_eq!(numbers("Fixes #12 and closes: #13. Resolved #12"), vec![12, 13]);
        assert_eq!(
            numbers("fix acme/platform#7, fix ACME/Platform#8 and fix other/repo#9"),
            vec![7, 8]
        );
        assert_eq!(
            numbers(
                "Resolves https://github.com/acme/platform/issues/21.\nCloses https://github.com/else/where/issues/22"
            ),
            vec![21]
        );
        assert_eq!(
            numbers("See #4; this is related to #5, not a fix for #x"),
            Vec::<u64>::new()
        );
        assert_eq!(numbers("prefixes #3"), Vec::<u64>::new(), "not a keyword");
        assert_eq!(numbers(""), Vec::<u64>::new());
    }

    #[test]
    fn a_squash_message_has_the_title_number_body_and_co_authors() {
        let pull = PullRequest {
            number: PrNumber::new(42).unwrap(),
            title: " Pay faster ".into(),
            author: "alice".into(),
            state: PullState::Open,
            draft: false,
            merged: false,
            head_sha: "a".repeat(40).parse::<CommitSha>().unwrap(),
            head_ref: "pay-faster".into(),
            base_ref: "main".into(),
            body: "Batches the payments.\r\n\r\nFixes #7".into(),
        };
        let co = vec![
            "Bob <bob@example.com>".to_string(),
            "Bob <bob@example.com>".to_string(),
            "Carol <carol@example.com>".to_string(),
        ];
        insta::assert_snapshot!(squash_message(&pull, &co), @r"
        Pay faster (#42)

        Batches the payments.

        Fixes #7

        Co-authored-by: Bob <bob@example.com>
        Co-authored-by: Carol <carol@example.com>
        ");
        let bare = PullRequest {
            body: String::new(),
            ..pull
        };
        assert_eq!(squash_message(&bare, &[]), "Pay faster (#42)");
    }
}
