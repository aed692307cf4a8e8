//! `gandalf.toml` (SPEC §5.1), parsed into typed, validated structs. A wrong config fails at start
//! with a message naming the key; secrets come only from the environment (`shared::settings`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::copies::CheckoutConfig;
use shared::copies::resolve_clone_url;
use shared::duration::Span;
use shared::envs::Declared;
use shared::ids::{ChannelId, EnvName, RepoName, SlackUserId};
use shared::people::{People, Person};
use shared::settings::{Invalid, SettingsError, config_dir, load_toml, parse_toml};
use shared::steps::env::{EnvValue, StepEnv};

#[derive(Debug, Clone)]
pub struct GandalfConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    pub bot_login: String,
    pub merges_channel: Option<ChannelId>,
    pub admins: Vec<SlackUserId>,
    pub people: People,
    pub repos: Vec<RepoConfig>,
    /// How Slack reaches the bot: HTTP callbacks (default) or Socket Mode (SPEC §11).
    pub slack_mode: shared::slack::socket::SlackMode,
    /// The directory of the config file: steps run there when no checkout is configured.
    pub base_dir: PathBuf,
    /// What Gandalf keeps on disk: the repository mirrors and working copies (SPEC §5.8).
    pub state_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default = "gandalf")]
    bot_login: String,
    #[serde(default)]
    merges_channel: Option<ChannelId>,
    #[serde(default)]
    admins: Vec<SlackUserId>,
    #[serde(default)]
    people: Vec<Person>,
    #[serde(default)]
    repos: Vec<RepoConfig>,
    #[serde(default)]
    slack_mode: shared::slack::socket::SlackMode,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    /// Patterns of Gandalf's own variables that steps get (SPEC §8); default: proxies and CAs.
    #[serde(default)]
    pass_env: Option<Vec<String>>,
    /// The Unix user steps run as.
    #[serde(default)]
    step_user: Option<String>,
}

fn gandalf() -> String {
    "gandalf".into()
}

/// How the tested candidate lands on the base (SPEC §5.3 step 5). Both move the base by a
/// fast-forward `PATCH` of its ref, so nothing pushed meanwhile can slip in; they differ in what
/// the base is moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMethod {
    /// The candidate itself (its merge commit), so GitHub shows the PR as Merged.
    #[serde(alias = "fast-forward")]
    Merge,
    /// A commit Gandalf makes of the candidate's tree on the tested base tip.
    Squash,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// `owner/name`, parsed (and so checked) when the file is read.
    pub name: RepoName,
    #[serde(default = "main_branch")]
    pub base: String,
    pub environment: EnvName,
    #[serde(default = "one")]
    pub required_approvals: u32,
    #[serde(default = "fast_forward")]
    pub merge_method: MergeMethod,
    #[serde(default = "default_map")]
    pub resource_map: String,
    #[serde(default = "sixty_minutes")]
    pub timeout: Span,
    #[serde(default = "twenty_minutes")]
    pub step_timeout: Span,
    #[serde(default)]
    pub checkout: Option<CheckoutConfig>,
    /// Re-runs of a red `test` on the same deployment before the candidate counts as red; a pass
    /// on a retry lands and marks the run flaky (SPEC §5.6).
    #[serde(default)]
    pub test_retries: u32,
    /// PRs per candidate: a number, or `"auto"` (SPEC §5.6).
    #[serde(default)]
    pub batch_size: crate::batch::BatchSize,
    /// The largest batch `batch_size = "auto"` picks.
    #[serde(default = "max_batch")]
    pub max_batch_size: usize,
    #[serde(default = "four")]
    pub parallelism: u32,
    /// The repository's own CI checks (check run names or status contexts) that must pass on the
    /// candidate before it lands (SPEC §5.7); empty: Gandalf's pipeline alone decides.
    #[serde(default)]
    pub required_checks: Vec<String>,
    pub pipeline: PipelineConfig,
    /// What this repository's steps see besides their `GANDALF_*` variables: `pass_env`,
    /// `step_user` and `[repos.pipeline.env]`, checked when the config is read.
    #[serde(skip)]
    pub sandbox: StepEnv,
}

fn main_branch() -> String {
    "main".into()
}
fn max_batch() -> usize {
    crate::batch::DEFAULT_MAX_BATCH
}
fn one() -> u32 {
    1
}
fn four() -> u32 {
    4
}
fn fast_forward() -> MergeMethod {
    MergeMethod::Merge
}
fn default_map() -> String {
    ".gandalf/resources.toml".into()
}
fn sixty_minutes() -> Span {
    Span::from_secs(3600)
}
fn twenty_minutes() -> Span {
    Span::from_secs(1200)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub build: String,
    pub deploy: String,
    pub test: String,
    #[serde(default)]
    pub revert: Option<String>,
    /// `[repos.pipeline.env]`: the only variables steps get besides `GANDALF_*` and the basics.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, EnvValue>,
}

impl GandalfConfig {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let raw: RawConfig = load_toml(path)?;
        Self::validate(raw, config_dir(path)).map_err(|e| e.at(path))
    }

    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        let raw: RawConfig = parse_toml(text)?;
        Self::validate(raw, base_dir.to_path_buf()).map_err(|e| e.to_string())
    }

    fn validate(raw: RawConfig, base_dir: PathBuf) -> Result<Self, Invalid> {
        let people = People::new(raw.people);
        people.validate().map_err(|m| Invalid::new("people", m))?;
        if raw.bot_login.trim().is_empty() || raw.bot_login.contains(char::is_whitespace) {
            return Err(Invalid::new("bot_login", "must be a GitHub login such as \"gandalf\""));
        }
        let steps = StepEnv::from_config(raw.pass_env, raw.step_user.as_deref())?;
        let mut repos = raw.repos;
        for r in &mut repos {
            resolve_clone_url(&mut r.checkout, &base_dir);
            r.sandbox = steps
                .with_table(&r.pipeline.env)
                .map_err(|e| Invalid::new("repos.pipeline.env", format!("{e} (in `{}`)", r.name)))?;
        }
        let mut names = HashSet::new();
        for r in &repos {
            // The name's form was checked when it was parsed; GitHub's names are case-insensitive.
            if !names.insert(r.name.to_string().to_ascii_lowercase()) {
                return Err(Invalid::new("repos.name", format!("lists `{}` twice", r.name)));
            }
            if r.base.trim().is_empty() {
                return Err(Invalid::new("repos.base", format!("is empty for `{}`", r.name)));
            }
            let mut checks = HashSet::new();
            for c in &r.required_checks {
                if c.trim().is_empty() {
                    return Err(Invalid::new(
                        "repos.required_checks",
                        format!("has an empty name for `{}`", r.name),
                    ));
                }
                if !checks.insert(c.as_str()) {
                    return Err(Invalid::new(
                        "repos.required_checks",
                        format!("lists `{c}` twice for `{}`", r.name),
                    ));
                }
                if c == crate::checks::CHECK_NAME {
                    return Err(Invalid::new(
                        "repos.required_checks",
                        format!(
                            "names `{c}`, Gandalf's own check, for `{}`: it cannot wait for itself",
                            r.name
                        ),
                    ));
                }
            }
            if r.parallelism == 0 {
                return Err(Invalid::new(
                    "repos.parallelism",
                    format!("must be at least 1 for `{}`", r.name),
                ));
            }
            if r.step_timeout > r.timeout {
                return Err(Invalid::new(
                    "repos.step_timeout",
                    format!(
                        "({}) is longer than the whole verification's timeout ({}) for `{}`",
                        r.step_timeout, r.timeout, r.name
                    ),
                ));
            }
        }
        let public_url = raw.public_url.unwrap_or_else(|| format!("http://{}", raw.listen));
        if url::Url::parse(&public_url).is_err() {
            return Err(Invalid::new("public_url", format!("`{public_url}` is not a URL")));
        }
        Ok(GandalfConfig {
            listen: raw.listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            bot_login: raw.bot_login,
            merges_channel: raw.merges_channel,
            admins: raw.admins,
            people,
            repos,
            slack_mode: raw.slack_mode,
            state_dir: raw
                .state_dir
                .unwrap_or_else(|| shared::settings::default_state_dir("gandalf")),
            base_dir,
        })
    }

    pub fn is_admin(&self, user: &SlackUserId) -> bool {
        self.admins.contains(user)
    }

    /// The queue of `name`, compared as GitHub does (case-insensitively).
    pub fn repo(&self, name: &RepoName) -> Option<&RepoConfig> {
        self.repos
            .iter()
            .find(|r| r.name.owner.eq_ignore_ascii_case(&name.owner) && r.name.name.eq_ignore_ascii_case(&name.name))
    }

    /// The names of the repositories Gandalf queues, as the config spells them.
    pub fn repo_names(&self) -> Vec<&RepoName> {
        self.repos.iter().map(|r| &r.name).collect()
    }

    pub fn verification_environments(&self) -> Vec<Declared> {
        self.repos
            .iter()
            .map(|r| Declared {
                name: r.environment.clone(),
                url: String::new(),
                keep_on_weekends: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const EXAMPLE: &str = r#"
listen = "0.0.0.0:8082"
public_url = "https://gandalf.example.com"
bot_login = "gandalf"
merges_channel = "C0MERGES"
admins = ["U0ADMIN1"]

[[people]]
slack = "U0ALICE"
github = "alice"

[[repos]]
name = "acme/platform"
base = "main"
environment = "verify-1"
required_approvals = 1
merge_method = "fast-forward"
resource_map = ".gandalf/resources.toml"
timeout = "60m"
step_timeout = "20m"
checkout = { clone_url = "https://github.com/acme/platform.git" }

[repos.pipeline]
build  = "ci/build.sh"
deploy = "ci/deploy.sh"
test   = "ci/e2e.sh"
revert = "ci/deploy.sh"
"#;

    #[test]
    fn the_spec_example_parses() {
        let c = GandalfConfig::parse(EXAMPLE, Path::new(".")).unwrap();
        let r = c.repo(&"ACME/platform".parse().unwrap()).unwrap();
        assert_eq!((r.name.owner.as_str(), r.name.name.as_str()), ("acme", "platform"));
        assert_eq!(r.merge_method, MergeMethod::Merge);
        assert_eq!(r.timeout.as_secs(), 3600);
        assert_eq!(r.pipeline.revert.as_deref(), Some("ci/deploy.sh"));
        assert_eq!(c.verification_environments()[0].name.as_str(), "verify-1");
        assert!(r.required_checks.is_empty(), "no required checks unless listed");
        let with = EXAMPLE.replacen(
            "step_timeout = \"20m\"",
            "step_timeout = \"20m\"\nrequired_checks = [\"build\", \"unit-tests (ubuntu)\"]",
            1,
        );
        let c = GandalfConfig::parse(&with, Path::new(".")).unwrap();
        assert_eq!(c.repos[0].required_checks, ["build", "unit-tests (ubuntu)"]);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "merge_method = \"fast-forward\"",
                "merge_method = \"rebase\"",
                "merge_method",
            ),
            // The name is parsed as it is read: the error quotes the line and says what is wrong.
            ("name = \"acme/platform\"", "name = \"platform\"", "name = \"platform\""),
            (
                "name = \"acme/platform\"",
                "name = \"platform\"",
                "is not a GitHub repository",
            ),
            ("step_timeout = \"20m\"", "step_timeout = \"2h\"", "repos.step_timeout"),
            (
                "environment = \"verify-1\"",
                "environment = \"Verify 1\"",
                "environment",
            ),
            ("test   = \"ci/e2e.sh\"", "tests = \"ci/e2e.sh\"", "tests"),
            (
                "step_timeout = \"20m\"",
                "step_timeout = \"20m\"\nrequired_checks = [\"build\", \"build\"]",
                "lists `build` twice",
            ),
            (
                "step_timeout = \"20m\"",
                "step_timeout = \"20m\"\nrequired_checks = [\" \"]",
                "repos.required_checks",
            ),
            (
                "step_timeout = \"20m\"",
                "step_timeout = \"20m\"\nrequired_checks = [\"gandalf\"]",
                "cannot wait for itself",
            ),
        ];
        for (from, to, key) in cases {
            let err = GandalfConfig::parse(&EXAMPLE.replacen(from, to, 1), Path::new(".")).unwrap_err();
            assert!(err.contains(key), "{to}: {err}");
        }
    }
}
