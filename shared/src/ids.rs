//! Newtypes for every identifier the bots pass around, so that a Slack user id can never be handed
//! to something expecting an environment name. Each is built by `parse()`, which is the only place
//! its rules live.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A Slack user id such as `U0ALICE` (or `W…` on Enterprise Grid).
    SlackUserId
);
string_id!(
    /// A Slack conversation id: a channel (`C…`), private group (`G…`), DM (`D…`), or a user id
    /// (posting to a user id lands in the bot's DM with that user).
    ChannelId
);
string_id!(
    /// The name of a development environment, such as `env-4`.
    EnvName
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{0}` is not a Slack user id (they look like `U012ABCDEF`)")]
    SlackUser(String),
    #[error("`{0}` is not a Slack channel id (they look like `C012ABCDEF`)")]
    Channel(String),
    #[error(
        "`{0}` is not a valid environment name: use 1–63 lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit"
    )]
    Env(String),
}

fn slack_shaped(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if prefixes.contains(&c))
        && s.len() >= 3
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl FromStr for SlackUserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if slack_shaped(s, &['U', 'W']) {
            Ok(SlackUserId(s.to_string()))
        } else {
            Err(IdError::SlackUser(s.chars().take(40).collect()))
        }
    }
}

impl FromStr for ChannelId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if slack_shaped(s, &['C', 'G', 'D', 'U', 'W']) {
            Ok(ChannelId(s.to_string()))
        } else {
            Err(IdError::Channel(s.chars().take(40).collect()))
        }
    }
}

impl From<&SlackUserId> for ChannelId {
    /// A user id is a valid `channel` for `chat.postMessage`: Slack delivers it as a DM.
    fn from(user: &SlackUserId) -> Self {
        ChannelId(user.0.clone())
    }
}

impl FromStr for EnvName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(EnvName(s.to_string()))
        } else {
            Err(IdError::Env(s.chars().take(40).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_ids() {
        assert!("U0ALICE".parse::<SlackUserId>().is_ok());
        assert!("W012AB".parse::<SlackUserId>().is_ok());
        for bad in ["", "u0alice", "C0CHAN", "U", "U0-ALICE", "U0ALICÉ"] {
            assert!(bad.parse::<SlackUserId>().is_err(), "{bad}");
        }
        assert!("C0ENVS".parse::<ChannelId>().is_ok());
        assert!("#general".parse::<ChannelId>().is_err());
    }

    #[test]
    fn env_names() {
        for ok in ["env-1", "verify-1", "a", "stage_2.eu"] {
            assert!(ok.parse::<EnvName>().is_ok(), "{ok}");
        }
        for bad in ["", "Env-1", "-x", "env 1", "env/1", &"a".repeat(64)] {
            assert!(bad.parse::<EnvName>().is_err(), "{bad}");
        }
    }
}
