//! Newtypes for every identifier the bots pass around, so that a Slack user id can never be handed
//! to something expecting an environment name, nor a PR number to something expecting an item id.
//! Each is built by `parse()` (`FromStr`), which is the only place its rules live, at the edge where
//! text comes in (config, command, webhook); after that the type says it is valid.
//!
//! Every id is also a Postgres value: it encodes as the column's plain type (`text`, `integer`) and
//! decodes through the same `parse()`, so a row holding an impossible id fails to decode instead of
//! travelling on as a string. Swapping two of them in a call is a compile error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// Makes a type stored as Postgres `text` whose `FromStr` is the only way in.
macro_rules! text_column {
    ($name:ident) => {
        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <String as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <String as Type<Postgres>>::compatible(ty)
            }
        }

        impl PgHasArrayType for $name {
            fn array_type_info() -> PgTypeInfo {
                <String as PgHasArrayType>::array_type_info()
            }
            fn array_compatible(ty: &PgTypeInfo) -> bool {
                <String as PgHasArrayType>::array_compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(&self.to_string(), buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let s = <&str as Decode<Postgres>>::decode(value)?;
                Ok(s.parse::<$name>()?)
            }
        }
    };
}

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

text_column!(SlackUserId);
text_column!(ChannelId);
text_column!(EnvName);
text_column!(RepoName);
text_column!(CommitSha);
text_column!(Holder);

impl SlackUserId {
    /// Bypasses the check, for tests and fixtures only.
    #[doc(hidden)]
    pub fn new_unchecked(s: impl Into<String>) -> Self {
        SlackUserId(s.into())
    }
}

impl EnvName {
    /// Bypasses the check, for tests and fixtures only.
    #[doc(hidden)]
    pub fn new_unchecked(s: impl Into<String>) -> Self {
        EnvName(s.into())
    }
}

/// `owner/name` of a GitHub repository, as configs, commands and webhooks name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl RepoName {
    /// `None` when `s` is not `owner/name`; see [`FromStr`] for the reason.
    pub fn parse(s: &str) -> Option<RepoName> {
        s.parse().ok()
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl FromStr for RepoName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // GitHub allows letters, digits, `-`, `_` and `.` in both halves; `.` and `..` alone are
        // not names. Anything else could escape the URL path it is put in.
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 100
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match s.split_once('/') {
            Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(RepoName {
                owner: owner.to_string(),
                name: name.to_string(),
            }),
            _ => Err(IdError::Repo(s.chars().take(80).collect())),
        }
    }
}

impl Serialize for RepoName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RepoName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A pull request's number in its repository. Stored as Postgres `integer` (GitHub's numbers are
/// far below 2³¹), always positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PrNumber(u32);

impl PrNumber {
    /// `None` for 0 and for numbers past what the database column holds.
    pub fn new(n: u64) -> Option<PrNumber> {
        (n > 0 && n <= i32::MAX as u64).then_some(PrNumber(n as u32))
    }

    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

impl fmt::Display for PrNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PrNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .ok()
            .and_then(PrNumber::new)
            .ok_or_else(|| IdError::Pr(s.chars().take(40).collect()))
    }
}

impl<'de> Deserialize<'de> for PrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        PrNumber::new(n).ok_or_else(|| serde::de::Error::custom(IdError::Pr(n.to_string())))
    }
}

impl Type<Postgres> for PrNumber {
    fn type_info() -> PgTypeInfo {
        <i32 as Type<Postgres>>::type_info()
    }
}

impl PgHasArrayType for PrNumber {
    fn array_type_info() -> PgTypeInfo {
        <i32 as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for PrNumber {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i32 as Encode<Postgres>>::encode(self.0 as i32, buf)
    }
}

impl<'r> Decode<'r, Postgres> for PrNumber {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let n = <i32 as Decode<Postgres>>::decode(value)?;
        Ok(u64::try_from(n)
            .ok()
            .and_then(PrNumber::new)
            .ok_or_else(|| IdError::Pr(n.to_string()))?)
    }
}

/// A git commit id: 7 to 64 lowercase hex digits (abbreviated, SHA-1 or SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first seven digits, as people read them.
    pub fn short(&self) -> &str {
        &self.0[..7.min(self.0.len())]
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CommitSha {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommitSha {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(CommitSha(s.to_string()))
        } else {
            Err(IdError::Sha(s.chars().take(70).collect()))
        }
    }
}

impl<'de> Deserialize<'de> for CommitSha {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who holds a lease: a person, or Gandalf on its verification environments. Stored as the
/// person's Slack user id or the word `gandalf` (never a valid user id, so the two cannot mix).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    Person(SlackUserId),
    Gandalf,
}

impl Holder {
    /// The word stored for Gandalf's leases.
    pub const GANDALF: &'static str = "gandalf";

    /// The holder as a Slack user, when it is one.
    pub fn person(&self) -> Option<&SlackUserId> {
        match self {
            Holder::Person(u) => Some(u),
            Holder::Gandalf => None,
        }
    }

    pub fn is_gandalf(&self) -> bool {
        matches!(self, Holder::Gandalf)
    }
}

impl From<SlackUserId> for Holder {
    fn from(u: SlackUserId) -> Self {
        Holder::Person(u)
    }
}

impl From<&SlackUserId> for Holder {
    fn from(u: &SlackUserId) -> Self {
        Holder::Person(u.clone())
    }
}

impl PartialEq<SlackUserId> for Holder {
    fn eq(&self, other: &SlackUserId) -> bool {
        self.person() == Some(other)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Person(u) => f.write_str(u.as_str()),
            Holder::Gandalf => f.write_str(Holder::GANDALF),
        }
    }
}

impl FromStr for Holder {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Holder::GANDALF {
            Ok(Holder::Gandalf)
        } else {
            s.parse().map(Holder::Person)
        }
    }
}

impl Serialize for Holder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Holder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{0}` is not a GitHub repository (write it as `owner/name`)")]
    Repo(String),
    #[error("`{0}` is not a pull request number")]
    Pr(String),
    #[error("`{0}` is not a commit SHA (7 to 64 lowercase hex digits)")]
    Sha(String),
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
    fn repos_prs_shas_holders() {
        let r: RepoName = "acme/mono.repo".parse().unwrap();
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("acme", "mono.repo"));
        for bad in [
            "", "acme", "acme/", "/x", "a/b/c", "a/..", "a b/c", "a/b?x", "a/b#c", "a/%2e",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
        assert_eq!("42".parse::<PrNumber>().unwrap().get(), 42);
        for bad in ["0", "-1", "x", "4294967296", "2147483648"] {
            assert!(bad.parse::<PrNumber>().is_err(), "{bad}");
        }
        assert!("abc1234".parse::<CommitSha>().is_ok());
        for bad in ["abc123", "ABC1234", "g000000", &"a".repeat(65)] {
            assert!(bad.parse::<CommitSha>().is_err(), "{bad}");
        }
        assert_eq!("gandalf".parse::<Holder>().unwrap(), Holder::Gandalf);
        let alice: SlackUserId = "U0ALICE".parse().unwrap();
        assert_eq!("U0ALICE".parse::<Holder>().unwrap(), Holder::Person(alice.clone()));
        assert!(Holder::Person(alice.clone()) == alice);
        assert!("Gandalf".parse::<Holder>().is_err());
        assert_eq!(Holder::Gandalf.to_string(), "gandalf");
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
