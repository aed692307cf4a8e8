//! The `/gandalf` and `@gandalf` command language (SPEC §5.2), parsed into [`Command`]s. Pure: the
//! Slack handler and the PR-comment handler both call it, and every mistake yields a message that
//! says what to type instead.

use std::fmt;

use shared::ids::{PrNumber, RepoName};

/// A pull request as someone referred to it: `#123`, `123`, `owner/repo#123` or its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrRef {
    /// `owner/name` when the reference said so; otherwise the caller's default repository.
    pub repo: Option<RepoName>,
    pub number: PrNumber,
}

impl fmt::Display for PrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(r) => write!(f, "{r}#{}", self.number),
            None => write!(f, "#{}", self.number),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Merge { pr: PrRef, priority: i32 },
    Cancel { pr: PrRef },
    Retry { pr: PrRef },
    Queue { repo: Option<RepoName> },
    Status { pr: PrRef },
    Pause { repo: Option<RepoName>, reason: String },
    Resume { repo: Option<RepoName> },
    Plan { pr: PrRef },
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub usage: Option<&'static str>,
}

fn err(message: impl Into<String>, usage: Option<&'static str>) -> ParseError {
    ParseError {
        message: message.into(),
        usage,
    }
}

pub const VERBS: &[(&str, &str)] = &[
    ("merge", "merge <pr> [p=urgent|p=high|p=low|p=<n>]"),
    ("cancel", "cancel <pr>"),
    ("retry", "retry <pr>"),
    ("queue", "queue [owner/repo]"),
    ("status", "status <pr>"),
    ("pause", "pause [owner/repo] [reason…]"),
    ("resume", "resume [owner/repo]"),
    ("plan", "plan <pr>"),
    ("help", "help"),
];

pub fn usage(verb: &str) -> Option<&'static str> {
    VERBS.iter().find(|(v, _)| *v == verb).map(|(_, u)| *u)
}

pub const PRIORITY_HIGH: i32 = 10;
pub const PRIORITY_LOW: i32 = -10;

/// Parses `<pr>`.
pub fn parse_pr(s: &str) -> Result<PrRef, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "`{}` is not a pull request; write `#123`, `owner/repo#123` or the PR's URL",
            clip(s)
        )
    };
    let number = |n: &str| n.parse::<PrNumber>().map_err(|_| bad());
    let repo = |owner: &str, name: &str| format!("{owner}/{name}").parse::<RepoName>().map_err(|_| bad());
    if let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) {
        // https://host/owner/repo/pull/123[/files…]
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [_host, owner, name, "pull", n, ..] => Ok(PrRef {
                repo: Some(repo(owner, name)?),
                number: number(n.split(['?', '#']).next().unwrap_or(""))?,
            }),
            _ => Err(bad()),
        };
    }
    if let Some((repo, n)) = s.split_once('#') {
        if repo.is_empty() {
            return Ok(PrRef {
                repo: None,
                number: number(n)?,
            });
        }
        return Ok(PrRef {
            repo: Some(repo.parse::<RepoName>().map_err(|_| bad())?),
            number: number(n)?,
        });
    }
    Ok(PrRef {
        repo: None,
        number: number(s)?,
    })
}

fn parse_repo(s: &str) -> Result<RepoName, String> {
    s.parse()
        .map_err(|_| format!("`{}` is not a repository; write it as owner/repo", clip(s)))
}

fn parse_priority(s: &str) -> Result<i32, String> {
    let value = s
        .strip_prefix("p=")
        .or_else(|| s.strip_prefix("priority="))
        .ok_or_else(|| {
            format!(
                "`{}` is not a priority; write `p=urgent`, `p=high`, `p=low` or `p=<number>`",
                clip(s)
            )
        })?;
    match value.to_ascii_lowercase().as_str() {
        "urgent" => Ok(shared::queue::URGENT),
        "high" => Ok(PRIORITY_HIGH),
        "low" => Ok(PRIORITY_LOW),
        "normal" | "default" => Ok(0),
        n => n
            .parse::<i32>()
            .ok()
            .filter(|n| (-1000..=1000).contains(n))
            .ok_or_else(|| {
                format!(
                    "`{}` is not a priority; use urgent, high, low or a number from -1000 to 1000",
                    clip(value)
                )
            }),
    }
}

/// Parses the text after `/gandalf`.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&verb_raw, args)) = words.split_first() else {
        return Ok(Command::Help);
    };
    let verb = verb_raw.to_lowercase();
    let u = usage(&verb);
    let pr_arg = |args: &[&str]| -> Result<PrRef, ParseError> {
        match args {
            [one] => parse_pr(one).map_err(|m| err(m, u)),
            [] => Err(err("say which pull request, like `#123`", u)),
            _ => Err(err("this command takes one pull request", u)),
        }
    };
    match verb.as_str() {
        "merge" => match args {
            [] => Err(err("say which pull request to merge, like `merge #123`", u)),
            [pr] => Ok(Command::Merge {
                pr: parse_pr(pr).map_err(|m| err(m, u))?,
                priority: 0,
            }),
            [pr, p] => Ok(Command::Merge {
                pr: parse_pr(pr).map_err(|m| err(m, u))?,
                priority: parse_priority(p).map_err(|m| err(m, u))?,
            }),
            _ => Err(err("`merge` takes a pull request and optionally a priority", u)),
        },
        "cancel" => Ok(Command::Cancel { pr: pr_arg(args)? }),
        "retry" => Ok(Command::Retry { pr: pr_arg(args)? }),
        "status" => Ok(Command::Status { pr: pr_arg(args)? }),
        "plan" => Ok(Command::Plan { pr: pr_arg(args)? }),
        "queue" => match args {
            [] => Ok(Command::Queue { repo: None }),
            [r] => Ok(Command::Queue {
                repo: Some(parse_repo(r).map_err(|m| err(m, u))?),
            }),
            _ => Err(err("`queue` takes at most a repository", u)),
        },
        "pause" => {
            let (repo, rest) = match args.first() {
                Some(first) if first.contains('/') => (Some(parse_repo(first).map_err(|m| err(m, u))?), &args[1..]),
                _ => (None, args),
            };
            Ok(Command::Pause {
                repo,
                reason: rest.join(" ").chars().filter(|c| !c.is_control()).take(300).collect(),
            })
        }
        "resume" => match args {
            [] => Ok(Command::Resume { repo: None }),
            [r] => Ok(Command::Resume {
                repo: Some(parse_repo(r).map_err(|m| err(m, u))?),
            }),
            _ => Err(err("`resume` takes at most a repository", u)),
        },
        "help" | "-h" | "--help" | "?" => Ok(Command::Help),
        _ => {
            let verbs: Vec<&str> = VERBS.iter().map(|(v, _)| *v).collect();
            let hint = closest(&verb, &verbs)
                .map(|v| format!(" Did you mean `{v}`?"))
                .unwrap_or_default();
            Err(err(
                format!("I don't know the command `{}`.{hint}", clip(verb_raw)),
                None,
            ))
        }
    }
}

/// A command found in a PR comment, already bound to that PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentCommand {
    Merge {
        priority: i32,
    },
    Cancel,
    Retry,
    Status,
    /// `@gandalf <something we do not take in comments>`: answered with a hint.
    Unknown(String),
}

impl CommentCommand {
    /// The command as a person would write it, for a reply that answers several at once.
    pub fn label(&self, bot: &str) -> String {
        match self {
            CommentCommand::Merge { priority: 0 } => format!("@{bot} merge"),
            CommentCommand::Merge { priority } => {
                format!("@{bot} merge p={}", shared::queue::priority_label(*priority))
            }
            CommentCommand::Cancel => format!("@{bot} cancel"),
            CommentCommand::Retry => format!("@{bot} retry"),
            CommentCommand::Status => format!("@{bot} status"),
            CommentCommand::Unknown(what) => format!("@{bot} {what}"),
        }
    }
}

/// Finds the `@<bot_login> …` commands in a PR comment: one per line; lines inside fenced code
/// blocks and quoted lines are ignored, as are mentions in the middle of a sentence.
pub fn parse_comment(body: &str, bot_login: &str) -> Vec<CommentCommand> {
    let mention = format!("@{}", bot_login.to_ascii_lowercase());
    let mut in_fence = false;
    let mut out = vec![];
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || trimmed.starts_with('>') || line.starts_with("    ") || line.starts_with('\t') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.to_ascii_lowercase() != mention {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let cmd = match rest.as_slice() {
            ["merge"] => CommentCommand::Merge { priority: 0 },
            ["merge", p] => match parse_priority(p) {
                Ok(priority) => CommentCommand::Merge { priority },
                Err(_) => CommentCommand::Unknown(rest.join(" ")),
            },
            ["cancel"] => CommentCommand::Cancel,
            ["retry"] => CommentCommand::Retry,
            ["status"] => CommentCommand::Status,
            _ => CommentCommand::Unknown(rest.join(" ").chars().take(60).collect()),
        };
        out.push(cmd);
    }
    out
}

pub fn clip(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(repo: Option<&str>, number: u64) -> PrRef {
        PrRef {
            repo: repo.map(|r| r.parse().unwrap()),
            number: PrNumber::new(number).unwrap(),
        }
    }

    #[test]
    fn pr_references() {
        assert_eq!(parse_pr("#123"), Ok(pr(None, 123)));
        assert_eq!(parse_pr("123"), Ok(pr(None, 123)));
        assert_eq!(parse_pr("acme/platform#7"), Ok(pr(Some("acme/platform"), 7)));
        assert_eq!(
            parse_pr("https://github.com/acme/platform/pull/42"),
            Ok(pr(Some("acme/platform"), 42))
        );
        assert_eq!(
            parse_pr("https://ghe.acme.io/acme/platform/pull/42/files?x=1"),
            Ok(pr(Some("acme/platform"), 42))
        );
        for bad in [
            "",
            "#",
            "#0",
            "#-1",
            "abc",
            "acme#1",
            "/x#1",
            "https://github.com/acme/platform/issues/1",
            "#12x",
        ] {
            assert!(parse_pr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slack_commands() {
        assert_eq!(
            parse("merge #123"),
            Ok(Command::Merge {
                pr: pr(None, 123),
                priority: 0
            })
        );
        assert_eq!(
            parse("merge #123 p=high"),
            Ok(Command::Merge {
                pr: pr(None, 123),
                priority: 10
            })
        );
        assert_eq!(
            parse("merge 5 p=low"),
            Ok(Command::Merge {
                pr: pr(None, 5),
                priority: -10
            })
        );
        assert_eq!(
            parse("merge 5 p=3"),
            Ok(Command::Merge {
                pr: pr(None, 5),
                priority: 3
            })
        );
        assert_eq!(
            parse("cancel acme/platform#5"),
            Ok(Command::Cancel {
                pr: pr(Some("acme/platform"), 5)
            })
        );
        assert_eq!(parse("queue"), Ok(Command::Queue { repo: None }));
        assert_eq!(
            parse("queue acme/platform"),
            Ok(Command::Queue {
                repo: Some("acme/platform".parse().unwrap())
            })
        );
        assert_eq!(
            parse("pause acme/platform infra is down"),
            Ok(Command::Pause {
                repo: Some("acme/platform".parse().unwrap()),
                reason: "infra is down".into()
            })
        );
        assert_eq!(
            parse("pause infra work"),
            Ok(Command::Pause {
                repo: None,
                reason: "infra work".into()
            })
        );
        assert_eq!(parse("resume"), Ok(Command::Resume { repo: None }));
        assert_eq!(parse("plan #9"), Ok(Command::Plan { pr: pr(None, 9) }));
        assert_eq!(parse(""), Ok(Command::Help));
    }

    #[test]
    fn mistakes_say_what_to_type() {
        assert!(parse("merge").unwrap_err().message.contains("which pull request"));
        assert!(parse("merge #1 p=soon").unwrap_err().message.contains("not a priority"));
        assert_eq!(
            parse("merge #1 p=urgent"),
            Ok(Command::Merge {
                pr: PrRef {
                    repo: None,
                    number: PrNumber::new(1).unwrap()
                },
                priority: shared::queue::URGENT
            })
        );
        assert!(parse("merge #1 p=99999").unwrap_err().message.contains("-1000 to 1000"));
        assert!(
            parse("merge banana")
                .unwrap_err()
                .message
                .contains("not a pull request")
        );
        assert!(parse("mrege #1").unwrap_err().message.contains("Did you mean `merge`?"));
        assert!(parse("queue platform").unwrap_err().message.contains("owner/repo"));
        assert_eq!(parse("status").unwrap_err().usage, Some("status <pr>"));
    }

    #[test]
    fn comment_commands() {
        let body = "LGTM!\n@gandalf merge p=high\n\n> @gandalf cancel\n```\n@gandalf retry\n```\nplease @gandalf merge\n    @gandalf status\n@Gandalf status\n@gandalf deploy everything";
        assert_eq!(
            parse_comment(body, "gandalf"),
            vec![
                CommentCommand::Merge { priority: 10 },
                CommentCommand::Status,
                CommentCommand::Unknown("deploy everything".into())
            ]
        );
        assert_eq!(parse_comment("@gandalfbot merge", "gandalf"), vec![]);
        assert_eq!(
            parse_comment("@gandalf-bot merge", "gandalf-bot"),
            vec![CommentCommand::Merge { priority: 0 }]
        );
    }
}
