//! The one duration grammar of the product: `45s`, `30m`, `2h`, `1d`, `1h30m`.
//!
//! Commands typed in Slack and keys in the TOML configs share it, so that what works in one place
//! works in the other. The configuration additionally accepts `ms` (step timeouts and backoffs are
//! naturally sub-second in tests); commands do not, since nobody leases an environment for 500 ms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive span of time, parsed from the product's duration grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("a duration is empty; write it like `30m`, `2h` or `1h30m`")]
    Empty,
    #[error("`{0}` is not a duration; write it like `30m`, `2h`, `1d` or `1h30m`")]
    Invalid(String),
    #[error("`{0}` is not a duration: units go from largest to smallest, each once (like `1h30m`)")]
    Order(String),
    #[error("`{0}` is zero; a duration must be longer than that")]
    Zero(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Grammar {
    /// What people type in commands: `d`, `h`, `m`, `s`.
    Command,
    /// What configuration files may say: the command grammar plus `ms`.
    Config,
}

/// Longest span accepted anywhere: one year. Larger numbers are typos, and they keep chrono
/// arithmetic far away from overflow.
const MAX_SECS: u64 = 366 * 24 * 3600;

impl Span {
    pub fn from_secs(secs: u64) -> Self {
        Span(std::time::Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Span(std::time::Duration::from_millis(ms))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Parses a duration as typed in a command (no `ms`).
    pub fn parse_command(s: &str) -> Result<Self, SpanError> {
        parse(s, Grammar::Command)
    }

    /// Parses a duration as written in a configuration file (`ms` allowed).
    pub fn parse_config(s: &str) -> Result<Self, SpanError> {
        parse(s, Grammar::Config)
    }
}

fn parse(input: &str, grammar: Grammar) -> Result<Span, SpanError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SpanError::Empty);
    }
    let invalid = || SpanError::Invalid(shorten(s));
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    // Rank of the last unit seen; units must strictly descend (d > h > m > s > ms).
    let mut last_rank = u8::MAX;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i || i - start > 9 {
            return Err(invalid());
        }
        let n: u128 = s[start..i].parse().map_err(|_| invalid())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (rank, ms_per_unit) = match &s[unit_start..i] {
            "d" => (4, 86_400_000),
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" if grammar == Grammar::Config => (0, 1),
            _ => return Err(invalid()),
        };
        if rank >= last_rank {
            return Err(SpanError::Order(shorten(s)));
        }
        last_rank = rank;
        total_ms += n * ms_per_unit;
    }
    if total_ms == 0 {
        return Err(SpanError::Zero(shorten(s)));
    }
    if total_ms > u128::from(MAX_SECS) * 1000 {
        return Err(SpanError::TooLong(shorten(s)));
    }
    Ok(Span(std::time::Duration::from_millis(total_ms as u64)))
}

/// Keeps error messages short when someone pastes a novel where a duration belongs.
fn shorten(s: &str) -> String {
    if s.chars().count() > 24 {
        let head: String = s.chars().take(24).collect();
        format!("{head}…")
    } else {
        s.to_string()
    }
}

impl fmt::Display for Span {
    /// Formats in the same grammar it parses: `1h30m`, `2d`, `45s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = total_ms;
        for (unit, ms) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            let n = rest / ms;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest %= ms;
            }
        }
        Ok(())
    }
}

/// Formats a chrono duration for people, rounded to minutes when it is long ("2h 5m", "3d 4h").
pub fn humanize(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Span::parse_config(s)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Span::parse_config(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(Span::parse_command("45s").unwrap().as_secs(), 45);
        assert_eq!(Span::parse_command("30m").unwrap().as_secs(), 1800);
        assert_eq!(Span::parse_command("2h").unwrap().as_secs(), 7200);
        assert_eq!(Span::parse_command("1d").unwrap().as_secs(), 86_400);
        assert_eq!(Span::parse_command("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(
            Span::parse_command(" 2d3h4m5s ").unwrap().as_secs(),
            2 * 86_400 + 3 * 3600 + 245
        );
        assert_eq!(Span::parse_config("250ms").unwrap().std().as_millis(), 250);
        assert_eq!(Span::parse_config("1s500ms").unwrap().std().as_millis(), 1500);
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            " ",
            "h",
            "2",
            "2x",
            "-2h",
            "2 h",
            "1.5h",
            "2H",
            "h2",
            "2h2h",
            "30m1h",
            "1d1d",
            "٣h",
            "2h!",
            "9999999999s",
        ] {
            assert!(Span::parse_command(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Span::parse_command("0m"), Err(SpanError::Zero("0m".into())));
        assert!(matches!(Span::parse_command("250ms"), Err(SpanError::Invalid(_))));
        assert!(matches!(Span::parse_command("400d"), Err(SpanError::TooLong(_))));
    }

    #[test]
    fn display_round_trips() {
        for s in ["45s", "30m", "2h", "1d", "1h30m", "2d3h4m5s", "250ms", "1s500ms"] {
            assert_eq!(Span::parse_config(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn humanize_rounds_for_people() {
        assert_eq!(humanize(chrono::Duration::seconds(42)), "42s");
        assert_eq!(humanize(chrono::Duration::minutes(90)), "1h 30m");
        assert_eq!(humanize(chrono::Duration::hours(50)), "2d 2h");
        assert_eq!(humanize(chrono::Duration::hours(48)), "2d");
    }
}
