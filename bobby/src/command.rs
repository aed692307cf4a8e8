//! The `/bobby` command language (SPEC §4.3), parsed into a [`Command`]. Pure: no database, no
//! configuration beyond what is passed in. Every way to get it wrong yields a [`ParseError`] whose
//! message says what to type instead.

use chrono::{NaiveDate, NaiveTime};
use shared::duration::Span;
use shared::envs::LeaseReason;
pub use shared::envs::store::NightlyPhase;
use shared::ids::PrNumber;

/// The longest reason kept; longer ones are refused rather than silently cut.
pub const MAX_REASON_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Any,
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnd {
    Default,
    For(Span),
    Until(NaiveTime),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreserveEnd {
    /// Through the coming night.
    Default,
    For(Span),
    /// Through the end of this local date.
    Until(NaiveDate),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Lock {
        target: Target,
        end: LeaseEnd,
        reason: LeaseReason,
    },
    Unlock {
        env: String,
        force: bool,
    },
    Extend {
        env: String,
        by: Span,
    },
    Wait {
        env: String,
    },
    Unwait {
        env: String,
    },
    Preserve {
        env: String,
        end: PreserveEnd,
    },
    Unpreserve {
        env: String,
    },
    Status {
        env: Option<String>,
    },
    History {
        env: String,
    },
    Nightly(NightlyCommand),
    Deploy(DeployCommand),
    Help,
}

/// `/bobby deploy …` (SPEC §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployCommand {
    Start {
        env: String,
        reference: DeployRef,
        /// `only a,b`: exactly these resources (and what they need built).
        only: Option<Vec<String>>,
        dry_run: bool,
    },
    Cancel {
        env: String,
    },
}

/// What to deploy, as typed: a pull request's head, or a name that is a branch or a commit SHA
/// (GitHub decides which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployRef {
    Pull(PrNumber),
    Name(String),
}

/// Whether `s` can name a branch (or be a SHA): git's rules for ref names
/// (`git check-ref-format --branch`). Anything else it allows — `#`, `%`, non-ASCII letters — is
/// percent-encoded when it reaches GitHub's URLs.
fn is_git_ref_name(s: &str) -> bool {
    !s.is_empty()
        && s != "@"
        && !s.starts_with('-')
        && !s.ends_with(['/', '.'])
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("@{")
        && s.split('/').all(|c| !c.starts_with('.') && !c.ends_with(".lock"))
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"~^:?*[\\".contains(c))
}

impl DeployRef {
    /// Parses `#123`, a branch name or a SHA. Refuses what can be neither, so nothing odd reaches
    /// GitHub's URLs.
    pub fn parse(s: &str) -> Result<DeployRef, String> {
        if let Some(n) = s.strip_prefix('#') {
            return match n.parse::<PrNumber>() {
                Ok(n) => Ok(DeployRef::Pull(n)),
                Err(_) => Err(format!("`{}` is not a pull request number; say `#123`", clip(s))),
            };
        }
        let valid = s.len() <= 200 && is_git_ref_name(s);
        if valid {
            Ok(DeployRef::Name(s.to_string()))
        } else {
            Err(format!(
                "`{}` is not a branch name, a commit SHA or a pull request like `#123`",
                clip(s)
            ))
        }
    }

    /// As typed, for messages and `BOBBY_REF`.
    pub fn as_typed(&self) -> String {
        match self {
            DeployRef::Pull(n) => format!("#{n}"),
            DeployRef::Name(s) => s.clone(),
        }
    }
}

/// `/bobby nightly …` (SPEC §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NightlyCommand {
    Status,
    Run {
        phase: NightlyPhase,
        env: Option<String>,
        dry_run: bool,
    },
    Skip {
        night: NaiveDate,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// The usage line of the command that was meant, when we know which.
    pub usage: Option<&'static str>,
}

impl ParseError {
    fn new(message: impl Into<String>, usage: Option<&'static str>) -> Self {
        ParseError {
            message: message.into(),
            usage,
        }
    }
}

pub const VERBS: &[(&str, &str)] = &[
    ("lock", "lock <env|any> [for <duration>|until <HH:MM>] [reason…]"),
    ("unlock", "unlock <env> [--force]"),
    ("extend", "extend <env> <duration>"),
    ("wait", "wait <env>"),
    ("unwait", "unwait <env>"),
    ("preserve", "preserve <env> [for <duration>|until <YYYY-MM-DD>]"),
    ("unpreserve", "unpreserve <env>"),
    ("status", "status [env]"),
    ("list", "list"),
    ("history", "history <env>"),
    (
        "deploy",
        "deploy <env> <ref> [only <res>,…] [--dry-run] | deploy cancel <env>",
    ),
    (
        "nightly",
        "nightly status | nightly run <delete|create> [env] [--dry-run] | nightly skip <YYYY-MM-DD>",
    ),
    ("help", "help"),
];

pub fn usage(verb: &str) -> Option<&'static str> {
    VERBS.iter().find(|(v, _)| *v == verb).map(|(_, u)| *u)
}

/// Parses the text after `/bobby`.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&verb_raw, args)) = words.split_first() else {
        return Ok(Command::Help);
    };
    let verb = verb_raw.to_lowercase();
    let u = usage(&verb);
    match verb.as_str() {
        "lock" => parse_lock(args),
        "unlock" | "release" => {
            let force = args.iter().any(|a| *a == "--force" || *a == "-f");
            let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "--force" && *a != "-f").collect();
            if let Some(flag) = rest.iter().find(|a| a.starts_with('-')) {
                return Err(ParseError::new(
                    format!("`unlock` has no option {}", clip(flag)),
                    usage("unlock"),
                ));
            }
            Ok(Command::Unlock {
                env: one_env(&rest, usage("unlock"))?,
                force,
            })
        }
        "extend" => match args {
            [env, by] => Ok(Command::Extend {
                env: env.to_string(),
                by: duration(by, usage("extend"))?,
            }),
            [_] => Err(ParseError::new("say how much longer, like `extend env-4 2h`", u)),
            _ => Err(ParseError::new("`extend` takes an environment and a duration", u)),
        },
        "wait" => Ok(Command::Wait { env: one_env(args, u)? }),
        "unwait" => Ok(Command::Unwait { env: one_env(args, u)? }),
        "preserve" => parse_preserve(args),
        "unpreserve" => Ok(Command::Unpreserve { env: one_env(args, u)? }),
        "status" => match args {
            [] => Ok(Command::Status { env: None }),
            [env] => Ok(Command::Status {
                env: Some(env.to_string()),
            }),
            _ => Err(ParseError::new("`status` takes at most one environment", u)),
        },
        "list" | "ls" => match args {
            [] => Ok(Command::Status { env: None }),
            _ => Err(ParseError::new(
                "`list` takes no arguments; for one environment use `status env-4`",
                usage("list"),
            )),
        },
        "history" => Ok(Command::History { env: one_env(args, u)? }),
        "deploy" => parse_deploy(args).map(Command::Deploy),
        "nightly" => parse_nightly(args).map(Command::Nightly),
        "help" | "-h" | "--help" | "?" => Ok(Command::Help),
        _ => {
            let names: Vec<&str> = VERBS.iter().map(|(v, _)| *v).collect();
            let hint = match closest(&verb, &names) {
                Some(v) => format!(" Did you mean `{v}`?"),
                None => String::new(),
            };
            Err(ParseError::new(
                format!("I don't know the command `{}`.{hint}", clip(verb_raw)),
                None,
            ))
        }
    }
}

fn parse_deploy(args: &[&str]) -> Result<DeployCommand, ParseError> {
    let u = usage("deploy");
    match args {
        [cancel, rest @ ..] if cancel.eq_ignore_ascii_case("cancel") => {
            return match rest {
                [env] => Ok(DeployCommand::Cancel { env: env.to_string() }),
                [] => Err(ParseError::new(
                    "say which environment's deploy to cancel, like `deploy cancel env-4`",
                    u,
                )),
                _ => Err(ParseError::new("`deploy cancel` takes one environment", u)),
            };
        }
        [] => return Err(ParseError::new("say where and what, like `deploy env-4 my-branch`", u)),
        [_] => {
            return Err(ParseError::new(
                "say what to deploy: a branch, `#123` (a pull request) or a SHA, like `deploy env-4 my-branch`",
                u,
            ));
        }
        _ => {}
    }
    let env = args[0].to_string();
    let reference = DeployRef::parse(args[1]).map_err(|m| ParseError::new(m, u))?;
    let mut dry_run = false;
    let mut only: Option<Vec<String>> = None;
    let mut rest = args[2..].iter().peekable();
    while let Some(word) = rest.next() {
        if *word == "--dry-run" || *word == "--dryrun" {
            dry_run = true;
        } else if word.eq_ignore_ascii_case("only") {
            if only.is_some() {
                return Err(ParseError::new("say `only` once, with a comma-separated list", u));
            }
            // `only api,web`, also written `only api, web` or `only api web`.
            let mut names = Vec::new();
            while let Some(next) = rest.next_if(|w| !w.starts_with("--")) {
                names.extend(
                    next.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                );
            }
            if names.is_empty() {
                return Err(ParseError::new("`only` needs resources, like `only api,web`", u));
            }
            names.dedup();
            only = Some(names);
        } else if word.starts_with('-') {
            return Err(ParseError::new(format!("`deploy` has no option {}", clip(word)), u));
        } else {
            return Err(ParseError::new(
                format!(
                    "I don't understand `{}` here: after the ref come only `only <res>,…` and `--dry-run`",
                    clip(word)
                ),
                u,
            ));
        }
    }
    Ok(DeployCommand::Start {
        env,
        reference,
        only,
        dry_run,
    })
}

fn parse_lock(args: &[&str]) -> Result<Command, ParseError> {
    let u = usage("lock");
    let Some((&target, rest)) = args.split_first() else {
        return Err(ParseError::new("say which environment to lock, or `any`", u));
    };
    let target = if target.eq_ignore_ascii_case("any") {
        Target::Any
    } else {
        Target::Env(target.to_string())
    };
    let (end, rest) = match rest {
        [kw, value, tail @ ..] if kw.eq_ignore_ascii_case("for") && looks_numeric(value) => {
            (LeaseEnd::For(duration(value, u)?), tail)
        }
        [kw, value, tail @ ..] if kw.eq_ignore_ascii_case("until") && looks_numeric(value) => {
            (LeaseEnd::Until(time_of_day(value, u)?), tail)
        }
        [kw] if kw.eq_ignore_ascii_case("for") || kw.eq_ignore_ascii_case("until") => {
            return Err(ParseError::new(
                format!("`{kw}` needs a value, like `for 2h` or `until 17:30`"),
                u,
            ));
        }
        // "lock env-4 for the demo": `for` starts the reason.
        _ => (LeaseEnd::Default, rest),
    };
    Ok(Command::Lock {
        target,
        end,
        reason: LeaseReason::new(reason(rest)?),
    })
}

fn parse_preserve(args: &[&str]) -> Result<Command, ParseError> {
    let u = usage("preserve");
    match args {
        [env] => Ok(Command::Preserve {
            env: env.to_string(),
            end: PreserveEnd::Default,
        }),
        [env, kw, value] if kw.eq_ignore_ascii_case("for") => Ok(Command::Preserve {
            env: env.to_string(),
            end: PreserveEnd::For(duration(value, u)?),
        }),
        [env, kw, value] if kw.eq_ignore_ascii_case("until") => match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(d) => Ok(Command::Preserve {
                env: env.to_string(),
                end: PreserveEnd::Until(d),
            }),
            Err(_) => Err(ParseError::new(
                format!("`{}` is not a date; write it as YYYY-MM-DD", clip(value)),
                u,
            )),
        },
        [] => Err(ParseError::new("say which environment to preserve", u)),
        _ => Err(ParseError::new(
            "`preserve` takes an environment and optionally `for <duration>` or `until <date>`",
            u,
        )),
    }
}

fn parse_nightly(args: &[&str]) -> Result<NightlyCommand, ParseError> {
    let u = usage("nightly");
    let Some((&sub, rest)) = args.split_first() else {
        return Ok(NightlyCommand::Status);
    };
    match sub.to_lowercase().as_str() {
        "status" => match rest {
            [] => Ok(NightlyCommand::Status),
            _ => Err(ParseError::new("`nightly status` takes no arguments", u)),
        },
        "run" => {
            let dry_run = rest.iter().any(|a| a.eq_ignore_ascii_case("--dry-run"));
            let words: Vec<&str> = rest
                .iter()
                .copied()
                .filter(|a| !a.eq_ignore_ascii_case("--dry-run"))
                .collect();
            if let Some(flag) = words.iter().find(|a| a.starts_with('-')) {
                return Err(ParseError::new(
                    format!("`nightly run` has no option {}", clip(flag)),
                    u,
                ));
            }
            let (phase, env) = match words.as_slice() {
                [phase] => (phase, None),
                [phase, env] => (phase, Some(env.to_string())),
                [] => {
                    return Err(ParseError::new(
                        "say which phase: `nightly run delete` or `nightly run create`",
                        u,
                    ));
                }
                _ => {
                    return Err(ParseError::new(
                        "`nightly run` takes a phase and at most one environment",
                        u,
                    ));
                }
            };
            let phase = NightlyPhase::parse(&phase.to_lowercase()).ok_or_else(|| {
                ParseError::new(
                    format!("`{}` is not a Nightly phase; use `delete` or `create`", clip(phase)),
                    u,
                )
            })?;
            Ok(NightlyCommand::Run { phase, env, dry_run })
        }
        "skip" => match rest {
            [d] => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(|night| NightlyCommand::Skip { night })
                .map_err(|_| ParseError::new(format!("`{}` is not a date; write it as YYYY-MM-DD", clip(d)), u)),
            [] => Err(ParseError::new(
                "say which night to skip, like `nightly skip 2026-12-24`",
                u,
            )),
            _ => Err(ParseError::new("`nightly skip` takes one date (YYYY-MM-DD)", u)),
        },
        other => {
            let hint = match closest(other, &["status", "run", "skip"]) {
                Some(s) => format!(" Did you mean `nightly {s}`?"),
                None => String::new(),
            };
            Err(ParseError::new(
                format!("`nightly` has no subcommand `{}`.{hint}", clip(sub)),
                u,
            ))
        }
    }
}

fn one_env(args: &[&str], u: Option<&'static str>) -> Result<String, ParseError> {
    match args {
        [env] => Ok(env.to_string()),
        [] => Err(ParseError::new("say which environment", u)),
        _ => Err(ParseError::new("this command takes exactly one environment", u)),
    }
}

fn looks_numeric(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_digit())
}

fn duration(s: &str, u: Option<&'static str>) -> Result<Span, ParseError> {
    Span::parse_command(s).map_err(|e| ParseError::new(e.to_string(), u))
}

fn time_of_day(s: &str, u: Option<&'static str>) -> Result<NaiveTime, ParseError> {
    let ok = s.len() <= 5 && s.contains(':');
    match NaiveTime::parse_from_str(s, "%H:%M") {
        Ok(t) if ok => Ok(t),
        _ => Err(ParseError::new(
            format!("`{}` is not a time of day; write it as HH:MM, like `17:30`", clip(s)),
            u,
        )),
    }
}

fn reason(words: &[&str]) -> Result<String, ParseError> {
    // Control characters (and the zero-width tricks among format characters) are dropped; the rest
    // of Unicode is welcome.
    let cleaned: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| !c.is_control() && !is_invisible(*c))
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let reason = cleaned.join(" ");
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ParseError::new(
            format!(
                "the reason is too long ({} characters; at most {MAX_REASON_CHARS})",
                reason.chars().count()
            ),
            usage("lock"),
        ));
    }
    Ok(reason)
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// At most 40 characters of user input in a message, so a pasted novel does not come back whole.
pub fn clip(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The closest candidate by edit distance, when it is close enough to be a plausible typo.
pub fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input = input.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&input, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
        .or_else(|| {
            // "env4" for "env-4", "4" for "env-4": compare with separators removed.
            let squash = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<String>();
            let si = squash(&input);
            candidates
                .iter()
                .copied()
                .find(|c| !si.is_empty() && (squash(c) == si || c.ends_with(&format!("-{si}"))))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Command {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn err(s: &str) -> ParseError {
        parse(s).expect_err(s)
    }

    #[test]
    fn lock_forms() {
        assert_eq!(
            ok("lock env-4"),
            Command::Lock {
                target: Target::Env("env-4".into()),
                end: LeaseEnd::Default,
                reason: LeaseReason::default()
            }
        );
        assert_eq!(
            ok("lock env-4 for 2h testing the payments flow"),
            Command::Lock {
                target: Target::Env("env-4".into()),
                end: LeaseEnd::For(Span::from_secs(7200)),
                reason: "testing the payments flow".into()
            }
        );
        assert_eq!(
            ok("LOCK any until 17:30 demo"),
            Command::Lock {
                target: Target::Any,
                end: LeaseEnd::Until(NaiveTime::from_hms_opt(17, 30, 0).unwrap()),
                reason: "demo".into()
            }
        );
        assert_eq!(
            ok("lock env-4 for the demo"),
            Command::Lock {
                target: Target::Env("env-4".into()),
                end: LeaseEnd::Default,
                reason: "for the demo".into()
            }
        );
    }

    #[test]
    fn lock_mistakes_say_what_to_type() {
        assert!(err("lock").message.contains("which environment"));
        assert!(err("lock env-4 for 2x").message.contains("not a duration"));
        assert!(err("lock env-4 for 0m").message.contains("zero"));
        assert!(err("lock env-4 until 25:00").message.contains("HH:MM"));
        assert!(err("lock env-4 for").message.contains("needs a value"));
        assert_eq!(err("lock env-4 for 2x").usage, usage("lock"));
        let long = format!("lock env-4 {}", "x ".repeat(5000));
        assert!(err(&long).message.contains("too long"));
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            ok("unlock env-4"),
            Command::Unlock {
                env: "env-4".into(),
                force: false
            }
        );
        assert_eq!(
            ok("unlock --force env-4"),
            Command::Unlock {
                env: "env-4".into(),
                force: true
            }
        );
        assert_eq!(
            ok("unlock env-4 --force"),
            Command::Unlock {
                env: "env-4".into(),
                force: true
            }
        );
        assert_eq!(
            ok("extend env-4 1h30m"),
            Command::Extend {
                env: "env-4".into(),
                by: Span::from_secs(5400)
            }
        );
        assert_eq!(ok("wait env-4"), Command::Wait { env: "env-4".into() });
        assert_eq!(ok("unwait env-4"), Command::Unwait { env: "env-4".into() });
        assert_eq!(
            ok("preserve env-4"),
            Command::Preserve {
                env: "env-4".into(),
                end: PreserveEnd::Default
            }
        );
        assert_eq!(
            ok("preserve env-4 for 2d"),
            Command::Preserve {
                env: "env-4".into(),
                end: PreserveEnd::For(Span::from_secs(172_800))
            }
        );
        assert_eq!(
            ok("preserve env-4 until 2026-12-01"),
            Command::Preserve {
                env: "env-4".into(),
                end: PreserveEnd::Until(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())
            }
        );
        assert_eq!(ok("unpreserve env-4"), Command::Unpreserve { env: "env-4".into() });
        assert_eq!(ok("status"), Command::Status { env: None });
        assert_eq!(ok("list"), Command::Status { env: None });
        assert_eq!(
            ok("status env-4"),
            Command::Status {
                env: Some("env-4".into())
            }
        );
        assert_eq!(ok("history env-4"), Command::History { env: "env-4".into() });
        assert_eq!(ok("help"), Command::Help);
        assert_eq!(ok(""), Command::Help);
        assert_eq!(ok("   \u{a0} "), Command::Help);
    }

    #[test]
    fn nightly_commands() {
        assert_eq!(ok("nightly status"), Command::Nightly(NightlyCommand::Status));
        assert_eq!(ok("nightly"), Command::Nightly(NightlyCommand::Status));
        assert_eq!(
            ok("nightly run delete"),
            Command::Nightly(NightlyCommand::Run {
                phase: NightlyPhase::Delete,
                env: None,
                dry_run: false
            })
        );
        assert_eq!(
            ok("NIGHTLY run Create env-3 --dry-run"),
            Command::Nightly(NightlyCommand::Run {
                phase: NightlyPhase::Create,
                env: Some("env-3".into()),
                dry_run: true
            })
        );
        assert_eq!(
            ok("nightly run --dry-run create"),
            Command::Nightly(NightlyCommand::Run {
                phase: NightlyPhase::Create,
                env: None,
                dry_run: true
            })
        );
        assert_eq!(
            ok("nightly skip 2026-12-24"),
            Command::Nightly(NightlyCommand::Skip {
                night: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap()
            })
        );
    }

    #[test]
    fn nightly_mistakes_say_what_to_type() {
        assert!(err("nightly run").message.contains("which phase"));
        assert!(err("nightly run destroy").message.contains("not a Nightly phase"));
        assert!(err("nightly run delete env-1 env-2").message.contains("at most one"));
        assert!(err("nightly run delete --force").message.contains("--force"));
        assert!(err("nightly skip tomorrow").message.contains("YYYY-MM-DD"));
        assert!(err("nightly skip 2026-02-30").message.contains("YYYY-MM-DD"));
        assert!(err("nightly skip").message.contains("which night"));
        assert!(err("nightly stats").message.contains("`nightly status`"));
        assert_eq!(err("nightly run").usage, usage("nightly"));
    }

    #[test]
    fn mistakes_in_other_commands() {
        assert!(err("unlock").message.contains("which environment"));
        assert!(err("unlock env-4 --hard").message.contains("--hard"));
        assert!(err("extend env-4").message.contains("how much longer"));
        assert!(err("extend env-4 forever").message.contains("not a duration"));
        assert!(err("preserve env-4 until friday").message.contains("YYYY-MM-DD"));
        assert!(err("wait env-1 env-2").message.contains("exactly one"));
        assert!(err("list env-1").message.contains("status env-4"));
        let e = err("lokc env-4");
        assert!(e.message.contains("`lock`"), "{}", e.message);
        assert!(err("frobnicate").message.contains("frobnicate"));
    }

    #[test]
    fn odd_unicode_is_handled() {
        // Zero-width and bidi controls vanish from reasons; other scripts stay.
        match ok("lock env-1 for 1h d\u{200B}emo \u{202E}ok 🚀 тест") {
            Command::Lock { reason, .. } => assert_eq!(reason.as_str(), "demo ok 🚀 тест"),
            other => panic!("{other:?}"),
        }
        // A full-width digit is not a duration, so "for ２h" reads as the start of a reason.
        match ok("lock env-1 for ２h") {
            Command::Lock { end, reason, .. } => assert_eq!((end, reason.as_str()), (LeaseEnd::Default, "for ２h")),
            other => panic!("{other:?}"),
        }
        assert!(parse("ünlock env-1").is_err());
    }

    #[test]
    fn closest_names() {
        let envs = ["env-1", "env-2", "env-10", "verify-1"];
        assert_eq!(closest("env4", &["env-4", "env-5"]), Some("env-4"));
        assert_eq!(closest("env-01", &envs), Some("env-1"));
        assert_eq!(closest("verfy-1", &envs), Some("verify-1"));
        assert_eq!(closest("10", &envs), Some("env-10"));
        assert_eq!(closest("production", &envs), None);
    }

    #[test]
    fn deploy_commands() {
        assert_eq!(
            ok("deploy env-4 feature/login"),
            Command::Deploy(DeployCommand::Start {
                env: "env-4".into(),
                reference: DeployRef::Name("feature/login".into()),
                only: None,
                dry_run: false,
            })
        );
        assert_eq!(
            ok("deploy env-4 #123 only api, web,api --dry-run"),
            Command::Deploy(DeployCommand::Start {
                env: "env-4".into(),
                reference: DeployRef::Pull(PrNumber::new(123).unwrap()),
                only: Some(vec!["api".into(), "web".into(), "api".into()]),
                dry_run: true,
            })
        );
        // What git allows in a ref is taken as typed (and percent-encoded for GitHub's URLs).
        for name in ["feat#x", "50%off", "fix/ünïcode", "v1.2.3", "a@b"] {
            assert!(
                matches!(DeployRef::parse(name), Ok(DeployRef::Name(n)) if n == name),
                "{name}"
            );
        }
        assert_eq!(
            ok("DEPLOY cancel env-2"),
            Command::Deploy(DeployCommand::Cancel { env: "env-2".into() })
        );
    }

    #[test]
    fn bad_deploy_commands_say_what_to_type() {
        for (text, hint) in [
            ("deploy", "deploy env-4 my-branch"),
            ("deploy env-4", "a branch, `#123`"),
            ("deploy --dry-run", "a branch, `#123`"),
            ("deploy env-4 --dry-run", "not a branch name"),
            ("deploy env-4 #abc", "not a pull request number"),
            ("deploy env-4 #0", "not a pull request number"),
            ("deploy env-4 ../etc", "not a branch name"),
            ("deploy env-4 a..b", "not a branch name"),
            ("deploy env-4 feat?x", "not a branch name"),
            ("deploy env-4 feat~1", "not a branch name"),
            ("deploy env-4 x.lock", "not a branch name"),
            ("deploy env-4 a/.hidden", "not a branch name"),
            ("deploy env-4 @", "not a branch name"),
            ("deploy env-4 main only", "`only` needs resources"),
            ("deploy env-4 main only ,", "`only` needs resources"),
            ("deploy env-4 main --force", "has no option --force"),
            ("deploy env-4 main please", "I don't understand `please`"),
            ("deploy cancel", "deploy cancel env-4"),
            ("deploy cancel env-1 env-2", "takes one environment"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.message.contains(hint), "{text:?}: {}", e.message);
            assert_eq!(e.usage, usage("deploy"), "{text:?}");
        }
    }
}
