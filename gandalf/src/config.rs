//! `gandalf.toml`. For now only what `serve` needs to start (listen address and the verification
//! environments it registers); the queue's keys are read when the queue lands.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use shared::envs::Declared;
use shared::ids::EnvName;
use shared::settings::{SettingsError, load_toml};

#[derive(Debug, Deserialize)]
pub struct GandalfConfig {
    pub listen: SocketAddr,
    #[serde(default)]
    pub repos: Vec<RepoConfig>,
}

#[derive(Debug, Deserialize)]
pub struct RepoConfig {
    pub environment: EnvName,
}

impl GandalfConfig {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        load_toml(path)
    }

    pub fn verification_environments(&self) -> Vec<Declared> {
        self.repos
            .iter()
            .map(|r| Declared {
                name: r.environment.to_string(),
                url: String::new(),
                keep_on_weekends: false,
            })
            .collect()
    }
}
