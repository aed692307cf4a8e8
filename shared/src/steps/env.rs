//! What a step can see (SPEC §8). Steps run code the bots did not write — a pull request's, any
//! branch's — so they start from an empty environment and get only:
//!
//! 1. `PATH`, `HOME`, `LANG`, `TZ` (from the bot's environment, or sane defaults; `HOME` is the
//!    step user's home when `step_user` is set);
//! 2. the bot's variables whose names match `pass_env` (glob patterns; default: the proxy and CA
//!    variables), except the bots' own secrets, which no pattern passes;
//! 3. the pipeline's `env` table: `NAME = "literal"`, `NAME = { from_env="VAR" }`,
//!    `NAME = { from_file = "/run/secrets/x" }` — the values of the last two are masked in every
//!    log line the step prints, and this is the only way a bot secret reaches a step;
//! 4. the documented `GANDALF_*` / `BOBBY_*` variables of the run, last, so nothing overrides them.
//!
//! With `step_user`, the step runs as that Unix user (the bot needs root or `CAP_SETUID` and
//! `CAP_SETGID` for that), so it cannot read the bot's secret files, its state directory or
//! `/proc/<bot>/environ`. The bots also mark themselves non-dumpable ([`harden_process`]) so a step
//! running as the bot's own user cannot read that file either.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::EnvSource;

/// `pass_env` when a config does not set it: proxies and CA bundles, in either case.
pub const DEFAULT_PASS_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// What PATH is when the bot has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The bots' own secrets and what leads to them. `pass_env` never passes these, whatever its
/// patterns say; a pipeline `env` entry naming one (`{ from_env = "GITHUB_TOKEN" }`) is the only way.
pub fn is_bot_secret(name: &str) -> bool {
    const PREFIXES: &[&str] = &["SLACK_", "GITHUB_", "DATABASE_URL", "BOBBY_API_TOKEN", "PG"];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One entry of a pipeline's `env` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawValue")]
pub enum EnvValue {
    Literal(String),
    /// A variable of the bot's environment, read when the step starts.
    FromEnv(String),
    /// A file's contents (one trailing newline removed), read when the step starts, so a rotated
    /// secret is picked up without a restart.
    FromFile(PathBuf),
}

impl EnvValue {
    /// Whether the value must be masked in logs: anything that is not written in the config.
    pub fn is_secret(&self) -> bool {
        !matches!(self, EnvValue::Literal(_))
    }
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a string, { from_env = \"VAR\" } or { from_file = \"/path\" }"
)]
enum RawValue {
    Literal(String),
    Table(RawTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    from_env: Option<String>,
    from_file: Option<PathBuf>,
}

impl TryFrom<RawValue> for EnvValue {
    type Error = String;
    fn try_from(raw: RawValue) -> Result<Self, String> {
        match raw {
            RawValue::Literal(s) => Ok(EnvValue::Literal(s)),
            RawValue::Table(RawTable {
                from_env: Some(var),
                from_file: None,
            }) if valid_name(&var) => Ok(EnvValue::FromEnv(var)),
            RawValue::Table(RawTable {
                from_env: Some(var),
                from_file: None,
            }) => Err(format!("`from_env` names `{var}`, which is not a variable name")),
            RawValue::Table(RawTable {
                from_env: None,
                from_file: Some(path),
            }) if path.is_absolute() => Ok(EnvValue::FromFile(path)),
            RawValue::Table(RawTable {
                from_env: None,
                from_file: Some(path),
            }) => Err(format!("`from_file = \"{}\"` must be an absolute path", path.display())),
            RawValue::Table(_) => Err("give exactly one of `from_env` and `from_file`".into()),
        }
    }
}

/// A variable name a shell accepts.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Unix user steps run as (`step_user`), resolved once when the config is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl StepUser {
    /// Looks the user up in the system's user database.
    pub fn lookup(name: &str) -> Result<StepUser, StepEnvError> {
        let c_name = std::ffi::CString::new(name).map_err(|_| StepEnvError::NoSuchUser(name.into()))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives the reads of `pwd` below.
        let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc != 0 || result.is_null() {
            return Err(StepEnvError::NoSuchUser(name.into()));
        }
        // SAFETY: getpwnam_r succeeded, so pw_dir points to a NUL-terminated string inside `buf`.
        let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
            .to_string_lossy()
            .into_owned();
        Ok(StepUser {
            name: name.into(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: PathBuf::from(home),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepEnvError {
    #[error("`step_user = \"{0}\"`: there is no such user on this machine")]
    NoSuchUser(String),
    #[error("`pass_env` pattern `{0}` is not a variable name (letters, digits, `_`, with `*` and `?` as wildcards)")]
    BadPattern(String),
    #[error("`env` entry `{0}` is not a variable name")]
    BadName(String),
    #[error("`env` entry `{name}`: the bot has no variable `{var}` (from_env)")]
    MissingVar { name: String, var: String },
    #[error("`env` entry `{name}`: cannot read {path} (from_file): {error}")]
    UnreadableFile { name: String, path: String, error: String },
}

/// Everything that shapes a step's environment, from a bot's config: its `pass_env`, `step_user`,
/// and the `env` table of the pipeline at hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepEnv {
    pass_env: Vec<String>,
    table: BTreeMap<String, EnvValue>,
    user: Option<StepUser>,
}

impl Default for StepEnv {
    /// The secure default: proxies and CA paths, nothing else of the bot's, the bot's own user.
    fn default() -> Self {
        StepEnv {
            pass_env: DEFAULT_PASS_ENV.iter().map(|s| s.to_string()).collect(),
            table: BTreeMap::new(),
            user: None,
        }
    }
}

/// A step's resolved environment: every variable it gets, and the values to mask in its output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub vars: Vec<(String, String)>,
    pub masked: Vec<String>,
}

impl StepEnv {
    /// `pass_env` (`None`: the default) and `step_user` as a config gives them; checked here so a
    /// bad pattern or an unknown user stops the bot at start with a clear message.
    pub fn new(pass_env: Option<Vec<String>>, step_user: Option<&str>) -> Result<StepEnv, StepEnvError> {
        let pass_env = match pass_env {
            None => StepEnv::default().pass_env,
            Some(patterns) => {
                // A variable name's characters, and the two wildcards.
                let valid = |p: &str| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'))
                };
                if let Some(bad) = patterns.iter().find(|p| !valid(p)) {
                    return Err(StepEnvError::BadPattern(bad.clone()));
                }
                patterns
            }
        };
        let user = step_user.map(StepUser::lookup).transpose()?;
        Ok(StepEnv {
            pass_env,
            table: BTreeMap::new(),
            user,
        })
    }

    /// [`StepEnv::new`] for a config file: a bad pattern or an unknown user names its key.
    pub fn from_config(
        pass_env: Option<Vec<String>>,
        step_user: Option<&str>,
    ) -> Result<StepEnv, crate::settings::Invalid> {
        StepEnv::new(pass_env, step_user).map_err(|e| {
            let key = if matches!(e, StepEnvError::NoSuchUser(_)) {
                "step_user"
            } else {
                "pass_env"
            };
            crate::settings::Invalid::new(key, e.to_string())
        })
    }

    /// The same settings with a pipeline's `env` table.
    pub fn with_table(&self, table: &BTreeMap<String, EnvValue>) -> Result<StepEnv, StepEnvError> {
        if let Some(bad) = table.keys().find(|k| !valid_name(k)) {
            return Err(StepEnvError::BadName(bad.clone()));
        }
        Ok(StepEnv {
            table: table.clone(),
            ..self.clone()
        })
    }

    pub fn user(&self) -> Option<&StepUser> {
        self.user.as_ref()
    }

    /// The variables of a step: see the module doc for the order. `documented` are the run's own
    /// `GANDALF_*` / `BOBBY_*` variables. Reads `from_env` and `from_file` values now.
    pub fn resolve(&self, host: &dyn EnvSource, documented: &[(String, String)]) -> Result<Resolved, StepEnvError> {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("PATH".into(), host.var("PATH").unwrap_or_else(|| DEFAULT_PATH.into()));
        let home = match &self.user {
            Some(u) => Some(u.home.display().to_string()),
            None => host.var("HOME"),
        };
        vars.insert("HOME".into(), home.unwrap_or_else(|| "/".into()));
        vars.insert("LANG".into(), host.var("LANG").unwrap_or_else(|| "C.UTF-8".into()));
        if let Some(tz) = host.var("TZ") {
            vars.insert("TZ".into(), tz);
        }
        for (name, value) in host.vars() {
            if !is_bot_secret(&name) && self.pass_env.iter().any(|p| wildcard(p, &name)) {
                vars.insert(name, value);
            }
        }
        let mut masked = Vec::new();
        for (name, value) in &self.table {
            let v = match value {
                EnvValue::Literal(s) => s.clone(),
                EnvValue::FromEnv(var) => host.var(var).ok_or_else(|| StepEnvError::MissingVar {
                    name: name.clone(),
                    var: var.clone(),
                })?,
                EnvValue::FromFile(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| StepEnvError::UnreadableFile {
                        name: name.clone(),
                        path: path.display().to_string(),
                        error: e.to_string(),
                    })?;
                    text.strip_suffix('\n').unwrap_or(&text).to_string()
                }
            };
            if value.is_secret() {
                masked.push(v.clone());
            }
            vars.insert(name.clone(), v);
        }
        for (name, value) in documented {
            vars.insert(name.clone(), value.clone());
        }
        Ok(Resolved {
            vars: vars.into_iter().collect(),
            masked,
        })
    }
}

/// `*` any run of characters, `?` one: the shell's patterns over a variable name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Makes this process non-dumpable: `/proc/<pid>/environ`, `mem` and friends become readable only
/// by root, and no core dump carries the secrets. Both bots call it first thing.
pub fn harden_process() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) changes a flag of this process; no memory is involved.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not make the process non-dumpable");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn host() -> HashMap<String, String> {
        [
            ("PATH", "/opt/bin:/usr/bin"),
            ("HOME", "/home/bot"),
            ("TZ", "Europe/Berlin"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
            ("DATABASE_URL", "postgres://bot:pw@db/bg"),
            ("SLACK_SIGNING_SECRET", "shh-signing"),
            ("SLACK_BOT_TOKEN_FILE", "/run/secrets/slack"),
            ("GITHUB_TOKEN", "ghp_secret"),
            ("BOBBY_API_TOKEN", "api-secret"),
            ("PGPASSWORD", "pw"),
            ("DEPLOY_REGION", "eu-1"),
            ("AWS_PROFILE", "dev"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.vars.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn by_default_a_step_gets_the_base_proxies_and_its_documented_variables_only() {
        let documented = vec![("GANDALF_SHA".to_string(), "abc1234".to_string())];
        let r = StepEnv::default().resolve(&host(), &documented).unwrap();
        assert_eq!(
            names(&r),
            ["GANDALF_SHA", "HOME", "HTTPS_PROXY", "LANG", "PATH", "TZ", "no_proxy"]
        );
        assert!(r.masked.is_empty());
        let all: String = r.vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        for secret in ["pw", "shh-signing", "ghp_secret", "api-secret", "/run/secrets"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
    }

    #[test]
    fn pass_env_never_passes_the_bots_secrets_but_the_env_table_may() {
        let env = StepEnv::new(Some(vec!["*".into()]), None).unwrap();
        let r = env.resolve(&host(), &[]).unwrap();
        assert!(names(&r).contains(&"AWS_PROFILE"));
        assert!(names(&r).contains(&"DEPLOY_REGION"));
        for secret in [
            "DATABASE_URL",
            "SLACK_SIGNING_SECRET",
            "SLACK_BOT_TOKEN_FILE",
            "GITHUB_TOKEN",
            "BOBBY_API_TOKEN",
            "PGPASSWORD",
        ] {
            assert!(!names(&r).contains(&secret), "{secret} passed by `*`");
        }

        let table: BTreeMap<String, EnvValue> = toml::from_str(
            r#"
            REGISTRY_TOKEN = { from_env = "GITHUB_TOKEN" }
            STAGE = "verify"
            "#,
        )
        .unwrap();
        let r = env.with_table(&table).unwrap().resolve(&host(), &[]).unwrap();
        assert!(r.vars.contains(&("REGISTRY_TOKEN".into(), "ghp_secret".into())));
        assert!(r.vars.contains(&("STAGE".into(), "verify".into())));
        assert_eq!(r.masked, ["ghp_secret"], "from_env values are masked, literals are not");
    }

    #[test]
    fn from_file_is_read_when_the_step_starts_and_masked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-secret\n").unwrap();
        let table = BTreeMap::from([("TOKEN".to_string(), EnvValue::FromFile(path.clone()))]);
        let env = StepEnv::default().with_table(&table).unwrap();
        let r = env.resolve(&host(), &[]).unwrap();
        assert!(r.vars.contains(&("TOKEN".into(), "file-secret".into())));
        assert_eq!(r.masked, ["file-secret"]);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            env.resolve(&host(), &[]),
            Err(StepEnvError::UnreadableFile { .. })
        ));
    }

    #[test]
    fn documented_variables_win_and_bad_config_is_refused_clearly() {
        let table = BTreeMap::from([("GANDALF_SHA".to_string(), EnvValue::Literal("forged".into()))]);
        let r = StepEnv::default()
            .with_table(&table)
            .unwrap()
            .resolve(&host(), &[("GANDALF_SHA".into(), "real".into())])
            .unwrap();
        assert!(r.vars.contains(&("GANDALF_SHA".into(), "real".into())));

        let missing = BTreeMap::from([("X".to_string(), EnvValue::FromEnv("NOPE".into()))]);
        let e = StepEnv::default()
            .with_table(&missing)
            .unwrap()
            .resolve(&host(), &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`env` entry `X`: the bot has no variable `NOPE` (from_env)"
        );

        for bad in [
            r#"X = { from_env="A", from_file = "/b" }"#,
            r#"X = { from_file = "rel" }"#,
            r#"X = { from_env="1A" }"#,
            "X = 3",
        ] {
            assert!(toml::from_str::<BTreeMap<String, EnvValue>>(bad).is_err(), "{bad}");
        }
        assert!(StepEnv::new(Some(vec!["HTTP-PROXY".into()]), None).is_err());
        assert!(StepEnv::new(Some(vec!["AWS_*".into(), "*_PROXY".into()]), None).is_ok());
        assert!(matches!(
            StepEnv::new(None, Some("no-such-user-here")),
            Err(StepEnvError::NoSuchUser(_))
        ));
        let bad_name = BTreeMap::from([("A B".to_string(), EnvValue::Literal("x".into()))]);
        assert!(StepEnv::default().with_table(&bad_name).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "ANY"));
        assert!(wildcard("AWS_*", "AWS_PROFILE"));
        assert!(!wildcard("AWS_*", "XAWS_PROFILE"));
        assert!(wildcard("*_PROXY", "HTTP_PROXY"));
        assert!(wildcard("A?C", "ABC"));
        assert!(!wildcard("A?C", "AC"));
    }

    #[test]
    fn a_step_user_is_looked_up_with_its_home() {
        let root = StepUser::lookup("root").unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(root.home, PathBuf::from("/root"));
    }
}
