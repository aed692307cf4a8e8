//! `bobby.toml` (SPEC §4.1), parsed into typed, validated structs. A wrong config fails at start
//! with a message naming the key and what is wrong; secrets never live here (see
//! `shared::settings`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Weekday};
use serde::{Deserialize, Deserializer};
pub use shared::copies::CheckoutConfig;
use shared::copies::resolve_clone_url;
use shared::duration::Span;
use shared::envs::{Declared, DefaultLease, LeasePolicy};
use shared::ids::{ChannelId, EnvName, SlackUserId};
use shared::people::{People, Person};
use shared::settings::{Invalid, SettingsError, TimeOfDay, Timezone, config_dir, load_toml, parse_toml};
use shared::steps::env::{EnvValue, StepEnv};

#[derive(Debug, Clone)]
pub struct BobbyConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    pub timezone: chrono_tz::Tz,
    pub admins: Vec<SlackUserId>,
    pub announce_channel: Option<ChannelId>,
    pub require_lease_to_deploy: bool,
    pub default_lease: DefaultLeaseSetting,
    pub max_lease: Span,
    pub remind_before: Span,
    pub environments: Vec<EnvironmentConfig>,
    pub people: People,
    pub nightly: Option<NightlyConfig>,
    pub deploy: Option<DeployConfig>,
    /// How Slack reaches the bot: HTTP callbacks (default) or Socket Mode (SPEC §11).
    pub slack_mode: shared::slack::socket::SlackMode,
    /// The directory of the config file: steps run there, relative paths resolve from there.
    pub base_dir: PathBuf,
    /// What Bobby keeps on disk: the repository mirrors and working copies (SPEC §5.8).
    pub state_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default)]
    timezone: Timezone,
    #[serde(default)]
    admins: Vec<SlackUserId>,
    #[serde(default)]
    announce_channel: Option<ChannelId>,
    #[serde(default = "yes")]
    require_lease_to_deploy: bool,
    #[serde(default)]
    default_lease: Option<DefaultLeaseSetting>,
    #[serde(default = "three_days")]
    max_lease: Span,
    #[serde(default = "half_hour")]
    remind_before: Span,
    #[serde(default)]
    environments: Vec<EnvironmentConfig>,
    #[serde(default)]
    people: Vec<Person>,
    #[serde(default)]
    nightly: Option<NightlyConfig>,
    #[serde(default)]
    deploy: Option<DeployConfig>,
    #[serde(default)]
    slack_mode: shared::slack::socket::SlackMode,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    /// Patterns of Bobby's own variables that steps get (SPEC §8); default: proxies and CAs.
    #[serde(default)]
    pass_env: Option<Vec<String>>,
    /// The Unix user steps run as.
    #[serde(default)]
    step_user: Option<String>,
}

fn yes() -> bool {
    true
}
fn three_days() -> Span {
    Span::from_secs(3 * 86_400)
}
fn half_hour() -> Span {
    Span::from_secs(30 * 60)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultLeaseSetting {
    UntilNightly,
    For(Span),
}

impl<'de> Deserialize<'de> for DefaultLeaseSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "until-nightly" {
            return Ok(DefaultLeaseSetting::UntilNightly);
        }
        Span::parse_config(&s).map(DefaultLeaseSetting::For).map_err(|e| {
            serde::de::Error::custom(format!("expected \"until-nightly\" or a duration such as \"8h\": {e}"))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub name: EnvName,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub keep_on_weekends: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightlyConfig {
    pub delete_at: TimeOfDay,
    pub create_at: TimeOfDay,
    #[serde(default = "workweek", deserialize_with = "weekdays")]
    pub workdays: Vec<Weekday>,
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
    #[serde(default)]
    pub weekend_keep: u32,
    #[serde(default = "four")]
    pub concurrency: u32,
    #[serde(default = "half_hour")]
    pub step_timeout: Span,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub delete: Vec<StepConfig>,
    #[serde(default)]
    pub create: Vec<StepConfig>,
    /// What one environment costs per hour it is up, in whatever currency the team counts in:
    /// the summary then also says how much the hours Nightly saved were worth.
    #[serde(default)]
    pub cost_per_environment_hour: Option<f64>,
    /// `[nightly.env]`: the only variables Nightly's steps get besides `BOBBY_*` and the basics.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, EnvValue>,
    /// The repository whose `base` tip create steps run in (SPEC §4.5); `None`: the config
    /// file's directory.
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default = "main_branch")]
    pub base: String,
    /// Where create steps' working copy comes from (SPEC §5.8); only with `repo`.
    #[serde(default)]
    pub checkout: Option<CheckoutConfig>,
    /// `pass_env`, `step_user` and `env`, checked when the config is read.
    #[serde(skip)]
    pub sandbox: StepEnv,
}

fn four() -> u32 {
    4
}

fn workweek() -> Vec<Weekday> {
    vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
}

fn weekdays<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| match n.to_ascii_lowercase().as_str() {
            "mon" => Ok(Weekday::Mon),
            "tue" => Ok(Weekday::Tue),
            "wed" => Ok(Weekday::Wed),
            "thu" => Ok(Weekday::Thu),
            "fri" => Ok(Weekday::Fri),
            "sat" => Ok(Weekday::Sat),
            "sun" => Ok(Weekday::Sun),
            _ => Err(serde::de::Error::custom(format!(
                "`{n}` is not a weekday; use mon, tue, wed, thu, fri, sat, sun"
            ))),
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "five")]
    pub attempts: u32,
    #[serde(default = "two_secs")]
    pub initial_backoff: Span,
    #[serde(default = "two_mins")]
    pub max_backoff: Span,
}

fn five() -> u32 {
    5
}
fn two_secs() -> Span {
    Span::from_secs(2)
}
fn two_mins() -> Span {
    Span::from_secs(120)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: five(),
            initial_backoff: two_secs(),
            max_backoff: two_mins(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: String,
    pub run: String,
}

/// `[deploy]` (SPEC §4.6): read and validated now, used by the deploy feature.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    pub repo: String,
    #[serde(default = "main_branch")]
    pub base: String,
    #[serde(default = "default_map")]
    pub resource_map: String,
    #[serde(default)]
    pub checkout: Option<CheckoutConfig>,
    #[serde(default = "twenty_minutes")]
    pub step_timeout: Span,
    #[serde(default = "four")]
    pub parallelism: u32,
    pub pipeline: PipelineConfig,
    /// `pass_env`, `step_user` and `[deploy.pipeline.env]`, checked when the config is read.
    #[serde(skip)]
    pub sandbox: StepEnv,
}

fn main_branch() -> String {
    "main".into()
}
fn default_map() -> String {
    ".gandalf/resources.toml".into()
}
fn twenty_minutes() -> Span {
    Span::from_secs(20 * 60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub build: String,
    pub deploy: String,
    #[serde(default)]
    pub test: Option<String>,
    /// `[deploy.pipeline.env]`: the only variables deploy steps get besides `BOBBY_*` and the basics.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, EnvValue>,
}

impl BobbyConfig {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let raw: RawConfig = load_toml(path)?;
        Self::validate(raw, config_dir(path)).map_err(|e| e.at(path))
    }

    /// Parses a config from text (tests and tools); relative paths resolve from `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        let raw: RawConfig = parse_toml(text)?;
        Self::validate(raw, base_dir.to_path_buf()).map_err(|e| e.to_string())
    }

    fn validate(raw: RawConfig, base_dir: PathBuf) -> Result<Self, Invalid> {
        if raw.environments.is_empty() {
            return Err(Invalid::new(
                "environments",
                "lists no environment; add at least one [[environments]] with a name",
            ));
        }
        let mut seen = HashSet::new();
        for e in &raw.environments {
            if !seen.insert(e.name.as_str()) {
                return Err(Invalid::new("environments", format!("lists `{}` twice", e.name)));
            }
        }
        if e_is_any(&raw.environments) {
            return Err(Invalid::new(
                "environments",
                "cannot name an environment `any`: `/bobby lock any` means any free one",
            ));
        }
        let people = People::new(raw.people);
        people.validate().map_err(|m| Invalid::new("people", m))?;
        let default_lease = raw.default_lease.unwrap_or(if raw.nightly.is_some() {
            DefaultLeaseSetting::UntilNightly
        } else {
            DefaultLeaseSetting::For(Span::from_secs(8 * 3600))
        });
        match &default_lease {
            DefaultLeaseSetting::UntilNightly if raw.nightly.is_none() => {
                return Err(Invalid::new(
                    "default_lease",
                    "is \"until-nightly\" but there is no [nightly] section; add one or use a duration such as \"8h\"",
                ));
            }
            DefaultLeaseSetting::For(span) if *span > raw.max_lease => {
                return Err(Invalid::new(
                    "default_lease",
                    format!("({span}) is longer than max_lease ({})", raw.max_lease),
                ));
            }
            _ => {}
        }
        if raw.remind_before >= raw.max_lease {
            return Err(Invalid::new(
                "remind_before",
                format!(
                    "({}) must be shorter than max_lease ({})",
                    raw.remind_before, raw.max_lease
                ),
            ));
        }
        if let Some(n) = &raw.nightly {
            validate_nightly(n)?;
        }

        let steps = StepEnv::from_config(raw.pass_env, raw.step_user.as_deref())?;
        let mut nightly = raw.nightly;
        if let Some(n) = &mut nightly {
            resolve_clone_url(&mut n.checkout, &base_dir);
            n.sandbox = steps
                .with_table(&n.env)
                .map_err(|e| Invalid::new("nightly.env", e.to_string()))?;
        }
        let mut deploy = raw.deploy;
        if let Some(d) = &mut deploy {
            resolve_clone_url(&mut d.checkout, &base_dir);
            d.sandbox = steps
                .with_table(&d.pipeline.env)
                .map_err(|e| Invalid::new("deploy.pipeline.env", e.to_string()))?;
        }
        if let Some(d) = &deploy {
            if d.parallelism == 0 {
                return Err(Invalid::new("deploy.parallelism", "must be at least 1"));
            }
            if d.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
                return Err(Invalid::new(
                    "deploy.repo",
                    format!("`{}` is not of the form owner/name", d.repo),
                ));
            }
        }
        let public_url = raw.public_url.unwrap_or_else(|| format!("http://{}", raw.listen));
        if url::Url::parse(&public_url).is_err() {
            return Err(Invalid::new("public_url", format!("`{public_url}` is not a URL")));
        }
        Ok(BobbyConfig {
            listen: raw.listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            timezone: raw.timezone.0,
            admins: raw.admins,
            announce_channel: raw.announce_channel,
            require_lease_to_deploy: raw.require_lease_to_deploy,
            default_lease,
            max_lease: raw.max_lease,
            remind_before: raw.remind_before,
            environments: raw.environments,
            people,
            nightly,
            deploy,
            slack_mode: raw.slack_mode,
            state_dir: raw
                .state_dir
                .unwrap_or_else(|| shared::settings::default_state_dir("bobby")),
            base_dir,
        })
    }

    /// The tables whose steps do not see the code because they name no `checkout` (SPEC §5.8):
    /// Bobby says so at start, in `/readyz`'s body and on the control center. `checkout = false`
    /// is a choice and says nothing.
    pub fn checkout_warnings(&self) -> Vec<String> {
        let mut notes = vec![];
        if let Some(d) = &self.deploy
            && d.checkout.is_none()
        {
            notes.push(
                "[deploy] names no `checkout`: deploy steps run in the config file's directory and do not see the code \
                 they deploy; set `checkout = true` (or `checkout = false` to keep this)"
                    .to_string(),
            );
        }
        if let Some(n) = &self.nightly
            && n.repo.is_some()
            && n.checkout.is_none()
        {
            notes.push(
                "[nightly] names a repo but no `checkout`: create steps run in the config file's directory and do not \
                 see the code; set `checkout = true` (or `checkout = false` to keep this)"
                    .to_string(),
            );
        }
        notes
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a.as_str() == user)
    }

    pub fn lease_policy(&self) -> LeasePolicy {
        LeasePolicy {
            default_lease: match (&self.default_lease, &self.nightly) {
                (DefaultLeaseSetting::For(span), _) => DefaultLease::For(*span),
                (DefaultLeaseSetting::UntilNightly, Some(n)) => DefaultLease::UntilNightly(n.delete_at.0),
                // Validation refuses until-nightly without [nightly]; keep a sane fallback anyway.
                (DefaultLeaseSetting::UntilNightly, None) => DefaultLease::For(Span::from_secs(8 * 3600)),
            },
            max_lease: self.max_lease,
            remind_before: self.remind_before,
            timezone: self.timezone,
        }
    }

    pub fn declared_environments(&self) -> Vec<Declared> {
        self.environments
            .iter()
            .map(|e| Declared {
                name: e.name.clone(),
                url: e.url.clone(),
                keep_on_weekends: e.keep_on_weekends,
            })
            .collect()
    }
}

fn e_is_any(envs: &[EnvironmentConfig]) -> bool {
    envs.iter().any(|e| e.name.as_str() == "any")
}

fn validate_nightly(n: &NightlyConfig) -> Result<(), Invalid> {
    if n.concurrency == 0 {
        return Err(Invalid::new("nightly.concurrency", "must be at least 1"));
    }
    if n.retry.attempts == 0 {
        return Err(Invalid::new(
            "nightly.retry.attempts",
            "must be at least 1 (it counts the first attempt)",
        ));
    }
    if n.retry.initial_backoff > n.retry.max_backoff {
        return Err(Invalid::new(
            "nightly.retry.initial_backoff",
            "is longer than nightly.retry.max_backoff",
        ));
    }
    if let Some(cost) = n.cost_per_environment_hour
        && !(cost.is_finite() && cost >= 0.0)
    {
        return Err(Invalid::new(
            "nightly.cost_per_environment_hour",
            "must be a number of at least 0, like 0.85",
        ));
    }
    match (&n.repo, &n.checkout) {
        (Some(repo), _) if repo.split('/').filter(|p| !p.is_empty()).count() != 2 => {
            return Err(Invalid::new(
                "nightly.repo",
                format!("`{repo}` is not of the form owner/name"),
            ));
        }
        (None, Some(c)) if c.is_on() => {
            return Err(Invalid::new(
                "nightly.checkout",
                "needs nightly.repo: name the repository whose base tip create steps run in",
            ));
        }
        _ => {}
    }
    if n.base.trim().is_empty() {
        return Err(Invalid::new("nightly.base", "is empty; name a branch such as \"main\""));
    }
    if n.delete_at == n.create_at {
        return Err(Invalid::new(
            "nightly.create_at",
            "is the same time as nightly.delete_at",
        ));
    }
    for (phase, steps) in [("delete", &n.delete), ("create", &n.create)] {
        let mut names = HashSet::new();
        for s in steps {
            if s.name.trim().is_empty() {
                return Err(Invalid::new(format!("nightly.{phase}"), "has a step without a name"));
            }
            if s.run.trim().is_empty() {
                return Err(Invalid::new(
                    format!("nightly.{phase}"),
                    format!("step `{}` has nothing to run", s.name),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(Invalid::new(
                    format!("nightly.{phase}"),
                    format!("has two steps named `{}`", s.name),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
listen = "0.0.0.0:8081"
public_url = "https://bobby.example.com"
timezone = "Europe/Berlin"
admins = ["U0ADMIN1"]
announce_channel = "C0ENVS"
require_lease_to_deploy = true
default_lease = "until-nightly"
max_lease = "3d"
remind_before = "30m"

[[environments]]
name = "env-1"
url = "https://env-1.dev.example.com"
keep_on_weekends = true

[[environments]]
name = "env-2"

[[people]]
slack = "U0ALICE"
github = "alice"
email = "alice@example.com"

[nightly]
delete_at = "20:00"
create_at = "06:30"
workdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2026-12-24", "2026-12-25"]
weekend_keep = 2
concurrency = 4
step_timeout = "30m"
retry = { attempts = 5, initial_backoff = "2s", max_backoff = "2m" }

[[nightly.delete]]
name = "scorch-databases"
run = "ops/nightly/scorch-databases.sh"

[[nightly.create]]
name = "infrastructure"
run = "ops/nightly/infra.sh"

[deploy]
repo = "acme/platform"
base = "main"
resource_map = ".gandalf/resources.toml"
checkout = { clone_url = "https://github.com/acme/platform.git" }
step_timeout = "20m"
[deploy.pipeline]
build  = "ci/build.sh"
deploy = "ci/deploy.sh"
test   = "ci/smoke.sh"
"#;

    fn parse(text: &str) -> Result<BobbyConfig, String> {
        BobbyConfig::parse(text, Path::new("."))
    }

    #[test]
    fn the_spec_example_parses() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(c.environments.len(), 2);
        assert!(c.environments[0].keep_on_weekends);
        assert_eq!(c.default_lease, DefaultLeaseSetting::UntilNightly);
        let n = c.nightly.as_ref().unwrap();
        assert_eq!(n.workdays.len(), 5);
        assert_eq!(n.retry.attempts, 5);
        assert_eq!(n.retry.max_backoff.as_secs(), 120);
        assert_eq!(c.deploy.as_ref().unwrap().pipeline.test.as_deref(), Some("ci/smoke.sh"));
        assert_eq!(n.cost_per_environment_hour, None);
        let with_cost =
            parse(&FULL.replace("weekend_keep = 2", "weekend_keep = 2\ncost_per_environment_hour = 0.85")).unwrap();
        assert_eq!(with_cost.nightly.unwrap().cost_per_environment_hour, Some(0.85));
        assert!(c.is_admin("U0ADMIN1") && !c.is_admin("U0ALICE"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("max_lease = \"3d\"", "max_lease = \"3 days\"", "max_lease"),
            ("remind_before = \"30m\"", "remind_before = \"5d\"", "remind_before"),
            (
                "timezone = \"Europe/Berlin\"",
                "timezone = \"Mars/Olympus\"",
                "timezone",
            ),
            ("admins = [\"U0ADMIN1\"]", "admins = [\"alice\"]", "admins"),
            ("delete_at = \"20:00\"", "delete_at = \"8pm\"", "delete_at"),
            ("concurrency = 4", "concurrency = 0", "nightly.concurrency"),
            ("concurrency = 4", "concurency = 4", "concurency"),
            ("name = \"env-2\"", "name = \"env-1\"", "environments"),
            ("name = \"env-2\"", "name = \"Env 2\"", "name"),
            (
                "workdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
                "workdays = [\"monday\"]",
                "workdays",
            ),
            (
                "default_lease = \"until-nightly\"",
                "default_lease = \"5d\"",
                "default_lease",
            ),
            (
                "weekend_keep = 2",
                "weekend_keep = 2\ncost_per_environment_hour = -1.5",
                "nightly.cost_per_environment_hour",
            ),
        ];
        for (from, to, key) in cases {
            assert!(FULL.contains(from), "{from}");
            let err = parse(&FULL.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(key), "error for {to:?} should name {key}: {err}");
        }
    }

    #[test]
    fn checkout_is_true_false_or_a_clone_url_and_its_absence_is_warned_about() {
        let deploy = |checkout: &str| {
            FULL.replace(
                "checkout = { clone_url = \"https://github.com/acme/platform.git\" }",
                checkout,
            )
        };
        let c = parse(&deploy("checkout = true")).unwrap();
        assert_eq!(c.deploy.as_ref().unwrap().checkout, Some(CheckoutConfig::GitHub));
        assert!(c.checkout_warnings().is_empty(), "{:?}", c.checkout_warnings());
        let c = parse(&deploy("checkout = false")).unwrap();
        assert_eq!(c.deploy.as_ref().unwrap().checkout, Some(CheckoutConfig::Off));
        assert!(c.checkout_warnings().is_empty());
        let c = BobbyConfig::parse(
            &deploy("checkout = { clone_url = \"mirrors/platform.git\" }"),
            Path::new("/etc/bobby"),
        )
        .unwrap();
        assert_eq!(
            c.deploy.as_ref().unwrap().checkout,
            Some(CheckoutConfig::CloneUrl("/etc/bobby/mirrors/platform.git".into()))
        );
        let c = parse(&deploy("checkout = { clone_url = \"file:///srv/platform.git\" }")).unwrap();
        assert_eq!(
            c.deploy.as_ref().unwrap().checkout,
            Some(CheckoutConfig::CloneUrl("file:///srv/platform.git".into()))
        );
        let c = parse(&deploy("")).unwrap();
        assert_eq!(c.deploy.as_ref().unwrap().checkout, None);
        let warnings = c.checkout_warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("[deploy]") && warnings[0].contains("do not see the code"));

        for bad in ["checkout = \"yes\"", "checkout = { url = \"x\" }", "checkout = {}"] {
            let err = parse(&deploy(bad)).unwrap_err();
            assert!(err.contains("checkout") || err.contains("clone_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn nightly_create_steps_get_a_copy_of_the_repo_base() {
        let with = |extra: &str| FULL.replace("concurrency = 4\n", &format!("concurrency = 4\n{extra}\n"));
        let c = parse(&with("repo = \"acme/platform\"\ncheckout = true")).unwrap();
        let n = c.nightly.as_ref().unwrap();
        assert_eq!((n.repo.as_deref(), n.base.as_str()), (Some("acme/platform"), "main"));
        assert_eq!(n.checkout, Some(CheckoutConfig::GitHub));
        assert!(c.checkout_warnings().is_empty());

        let c = parse(&with("repo = \"acme/platform\"\nbase = \"trunk\"")).unwrap();
        assert_eq!(c.nightly.as_ref().unwrap().base, "trunk");
        assert!(c.checkout_warnings().iter().any(|w| w.contains("[nightly]")));

        assert!(parse(&with("checkout = true")).unwrap_err().contains("nightly.repo"));
        assert!(
            parse(&with("repo = \"platform\""))
                .unwrap_err()
                .contains("nightly.repo")
        );
        // Without a repo, Nightly's steps never concerned the code: nothing to warn about.
        assert!(parse(FULL).unwrap().checkout_warnings().is_empty());
    }

    #[test]
    fn the_example_config_parses_and_its_steps_see_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/bobby.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // `step_user = "step"` names the container image's user, which this machine may not have.
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("step_user"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&text).unwrap();
        assert_eq!(c.deploy.as_ref().unwrap().checkout, Some(CheckoutConfig::GitHub));
        assert_eq!(c.state_dir, Path::new("/var/lib/bobby"));
        assert!(c.checkout_warnings().is_empty(), "{:?}", c.checkout_warnings());
    }

    #[test]
    fn until_nightly_needs_a_nightly_section() {
        let text = "listen = \"127.0.0.1:1\"\ndefault_lease = \"until-nightly\"\n[[environments]]\nname = \"env-1\"\n";
        assert!(parse(text).unwrap_err().contains("[nightly]"));
        let text = "listen = \"127.0.0.1:1\"\n[[environments]]\nname = \"env-1\"\n";
        assert_eq!(
            parse(text).unwrap().default_lease,
            DefaultLeaseSetting::For(Span::from_secs(8 * 3600))
        );
    }
}
