//! Where the bots read their surroundings: the TOML file and the process environment.
//!
//! This is the only module that touches `std::env`. Configuration is layered file → environment:
//! the TOML holds what an operator reviews in a pull request; secrets and endpoints come only from
//! the environment (or from a file named by `*_FILE`, the way Kubernetes mounts secrets).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Where environment variables come from: the process, or a map in tests and `exec`.
pub trait EnvSource: Send + Sync {
    fn var(&self, key: &str) -> Option<String>;

    /// Every variable, for `pass_env`'s patterns (SPEC §8). Names that are not UTF-8 are skipped.
    fn vars(&self) -> Vec<(String, String)>;
}

/// `state_dir` when a config does not set it: a directory of the bot's under the system's
/// temporary directory (SPEC §3).
pub fn default_state_dir(bot: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{bot}-state"))
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl ProcessEnv {
    /// `PATH` for the programs the bot itself runs (git), with a sane default.
    pub fn path_or_default(&self) -> String {
        self.var("PATH")
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
    }
}

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.is_empty())
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}` {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{var} names the file {path}, which cannot be read: {source}")]
    SecretFile {
        var: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var} is not set; {hint}")]
    Missing { var: String, hint: String },
    #[error("{var}: {message}")]
    BadVar { var: String, message: String },
}

/// A semantic problem found after parsing, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn at(self, path: &Path) -> SettingsError {
        SettingsError::Invalid {
            path: path.to_path_buf(),
            key: self.key,
            message: self.message,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.key, self.message)
    }
}

/// The directory a config file lives in: where its relative paths (step scripts) resolve from.
pub fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads and parses a TOML config file. Parse errors carry toml's own report, which shows the line,
/// the column and the offending key.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text).map_err(|message| SettingsError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

/// Reads `NAME`, or the contents of the file named by `NAME_FILE` (trailing newline trimmed).
pub fn secret(env: &dyn EnvSource, name: &str) -> Result<Option<SecretString>, SettingsError> {
    if let Some(v) = env.var(name) {
        return Ok(Some(SecretString::from(v)));
    }
    let file_var = format!("{name}_FILE");
    match env.var(&file_var) {
        None => Ok(None),
        Some(path) => {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
                var: file_var.clone(),
                path: path.clone(),
                source,
            })?;
            let text = text.trim_end_matches(['\n', '\r']).to_string();
            if text.is_empty() {
                Ok(None)
            } else {
                Ok(Some(SecretString::from(text)))
            }
        }
    }
}

/// The endpoints of the outside services and the secrets shared by both bots.
#[derive(Clone)]
pub struct Secrets {
    pub database_url: Option<SecretString>,
    pub slack_bot_token: Option<SecretString>,
    pub slack_signing_secret: Option<SecretString>,
    /// The app-level token (`xapp-…`) for Socket Mode (SPEC §11); only read with
    /// `slack_mode = "socket"`.
    pub slack_app_token: Option<SecretString>,
    pub slack_api_url: String,
    pub github_api_url: String,
    pub bobby_api_token: Option<SecretString>,
    pub github_token: Option<SecretString>,
    pub github_app: Option<GithubApp>,
    pub github_webhook_secret: Option<SecretString>,
}

/// GitHub App credentials: all three variables, or none.
#[derive(Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub private_key: SecretString,
    pub installation_id: u64,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<SecretString>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("database_url", &set(&self.database_url))
            .field("slack_bot_token", &set(&self.slack_bot_token))
            .field("slack_signing_secret", &set(&self.slack_signing_secret))
            .field("slack_app_token", &set(&self.slack_app_token))
            .field("slack_api_url", &self.slack_api_url)
            .field("github_api_url", &self.github_api_url)
            .field("bobby_api_token", &set(&self.bobby_api_token))
            .field("github_token", &set(&self.github_token))
            .field("github_app", &self.github_app.as_ref().map(|a| a.app_id))
            .field("github_webhook_secret", &set(&self.github_webhook_secret))
            .finish()
    }
}

pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api/";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

impl Secrets {
    /// The secret values a bot holds, masked wherever step output is shown: the environment's
    /// secrets (steps inherit the bot's environment, and a script that prints it should not leak
    /// them) and the database password on its own.
    pub fn mask_values(&self) -> Vec<String> {
        let mut values: Vec<String> = [
            &self.database_url,
            &self.slack_bot_token,
            &self.slack_signing_secret,
            &self.slack_app_token,
            &self.bobby_api_token,
            &self.github_token,
            &self.github_webhook_secret,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose_secret().to_string())
        .collect();
        if let Some(app) = &self.github_app {
            values.push(app.private_key.expose_secret().to_string());
        }
        if let Some(password) = self
            .database_url
            .as_ref()
            .and_then(|u| url::Url::parse(u.expose_secret()).ok())
            .and_then(|u| u.password().map(str::to_owned))
        {
            values.push(password);
        }
        // Longest first, so a value containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values
    }

    pub fn from_env(env: &dyn EnvSource) -> Result<Self, SettingsError> {
        let slack_api_url = env
            .var("SLACK_API_URL")
            .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_string());
        check_url("SLACK_API_URL", &slack_api_url)?;
        let github_api_url = env
            .var("GITHUB_API_URL")
            .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_string());
        check_url("GITHUB_API_URL", &github_api_url)?;
        Ok(Secrets {
            database_url: secret(env, "DATABASE_URL")?,
            slack_bot_token: secret(env, "SLACK_BOT_TOKEN")?,
            slack_signing_secret: secret(env, "SLACK_SIGNING_SECRET")?,
            slack_app_token: secret(env, "SLACK_APP_TOKEN")?,
            // slack-morphism joins the base and the method with a slash of its own.
            slack_api_url: slack_api_url.trim_end_matches('/').to_string(),
            github_api_url: github_api_url.trim_end_matches('/').to_string(),
            bobby_api_token: secret(env, "BOBBY_API_TOKEN")?,
            github_token: secret(env, "GITHUB_TOKEN")?,
            github_app: github_app(env)?,
            github_webhook_secret: secret(env, "GITHUB_WEBHOOK_SECRET")?,
        })
    }

    /// Whether any GitHub credentials are configured.
    pub fn has_github(&self) -> bool {
        self.github_token.is_some() || self.github_app.is_some()
    }

    pub fn require_database_url(&self) -> Result<&str, SettingsError> {
        self.database_url
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or_else(|| SettingsError::Missing {
                var: "DATABASE_URL".into(),
                hint: "set it (or DATABASE_URL_FILE) to a Postgres URL such as postgres://bobby@localhost/bobby".into(),
            })
    }
}

fn github_app(env: &dyn EnvSource) -> Result<Option<GithubApp>, SettingsError> {
    let id = env.var("GITHUB_APP_ID");
    let key_file = env.var("GITHUB_APP_PRIVATE_KEY_FILE");
    let installation = env.var("GITHUB_APP_INSTALLATION_ID");
    let number = |var: &str, v: String| {
        v.trim().parse::<u64>().map_err(|_| SettingsError::BadVar {
            var: var.into(),
            message: format!("`{v}` is not a number"),
        })
    };
    match (id, key_file, installation) {
        (None, None, None) => Ok(None),
        (Some(id), Some(path), Some(installation)) => {
            let private_key = std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
                var: "GITHUB_APP_PRIVATE_KEY_FILE".into(),
                path: PathBuf::from(&path),
                source,
            })?;
            Ok(Some(GithubApp {
                app_id: number("GITHUB_APP_ID", id)?,
                private_key: SecretString::from(private_key),
                installation_id: number("GITHUB_APP_INSTALLATION_ID", installation)?,
            }))
        }
        _ => Err(SettingsError::Missing {
            var: "GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE and GITHUB_APP_INSTALLATION_ID".into(),
            hint: "a GitHub App needs all three (or use GITHUB_TOKEN)".into(),
        }),
    }
}

fn check_url(var: &str, value: &str) -> Result<(), SettingsError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(SettingsError::BadVar {
            var: var.to_string(),
            message: format!("`{value}` is not an http(s) URL"),
        }),
    }
}

/// Postgres connections per bot process: `DATABASE_POOL_SIZE`, default 16.
pub fn database_pool_size(env: &dyn EnvSource) -> u32 {
    env.var("DATABASE_POOL_SIZE")
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(16)
}

/// How logs are written: human-readable by default, JSON with `LOG_FORMAT=json`.
pub fn log_format_json(env: &dyn EnvSource) -> bool {
    env.var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"))
}

/// A time of day, `HH:MM`, 24-hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub chrono::NaiveTime);

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let ok_shape = s.len() == 5 && s.as_bytes()[2] == b':';
        match chrono::NaiveTime::parse_from_str(s, "%H:%M") {
            Ok(t) if ok_shape => Ok(TimeOfDay(t)),
            _ => Err(format!(
                "`{s}` is not a time of day; write it as HH:MM, like `06:30` or `20:00`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

/// An IANA timezone such as `Europe/Berlin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timezone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<chrono_tz::Tz>().map(Timezone).map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is not an IANA timezone (like `Europe/Berlin` or `UTC`)"))
        })
    }
}

impl Default for Timezone {
    fn default() -> Self {
        Timezone(chrono_tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_secret_is_masked_including_the_database_password() {
        let env: std::collections::HashMap<String, String> = [
            ("DATABASE_URL", "postgres://bobby:s3cr3t-pw@db/bobby"),
            ("SLACK_BOT_TOKEN", "xoxb-111-222"),
            ("BOBBY_API_TOKEN", "api-token-value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let secrets = Secrets::from_env(&env).unwrap();
        let values = secrets.mask_values();
        let out = crate::steps::mask(
            "url postgres://bobby:s3cr3t-pw@db/bobby pw s3cr3t-pw token xoxb-111-222 api api-token-value",
            &values,
        );
        assert_eq!(out, "url *** pw *** token *** api ***");
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn secrets_come_from_variables_or_files() {
        let dir = std::env::temp_dir().join(format!("bg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "xoxb-from-file\n").unwrap();
        let e = env(&[
            ("SLACK_BOT_TOKEN_FILE", file.to_str().unwrap()),
            ("SLACK_SIGNING_SECRET", "shh"),
            ("SLACK_APP_TOKEN_FILE", file.to_str().unwrap()),
            ("SLACK_API_URL", "http://127.0.0.1:9/api"),
        ]);
        let s = Secrets::from_env(&e).unwrap();
        assert_eq!(s.slack_bot_token.unwrap().expose_secret(), "xoxb-from-file");
        assert_eq!(s.slack_signing_secret.unwrap().expose_secret(), "shh");
        // The same file serves both here; what matters is that `*_FILE` is read for the app token.
        assert_eq!(s.slack_app_token.unwrap().expose_secret(), "xoxb-from-file");
        assert_eq!(s.slack_api_url, "http://127.0.0.1:9/api");
        assert_eq!(s.github_api_url, DEFAULT_GITHUB_API_URL);
        assert!(s.database_url.is_none());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_secret_file_is_an_error_naming_the_variable() {
        let e = env(&[("DATABASE_URL_FILE", "/nonexistent/db-url")]);
        let err = Secrets::from_env(&e).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL_FILE"), "{err}");
    }

    #[test]
    fn bad_endpoint_urls_are_refused() {
        let err = Secrets::from_env(&env(&[("GITHUB_API_URL", "ftp://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GITHUB_API_URL"), "{err}");
    }

    #[test]
    fn times_of_day() {
        assert_eq!("06:30".parse::<TimeOfDay>().unwrap().to_string(), "06:30");
        for bad in ["6:30", "24:00", "06:60", "0630", "noon"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
    }
}
