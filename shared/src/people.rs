//! The identity map of `[[people]]`: one person's Slack id, GitHub login and email, so a deploy
//! script that only knows a GitHub login or an email can still be matched to a Slack lease holder.

use serde::Deserialize;

use crate::ids::SlackUserId;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub slack: SlackUserId,
    #[serde(default)]
    pub github: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct People(Vec<Person>);

impl People {
    pub fn new(people: Vec<Person>) -> Self {
        People(people)
    }

    /// Finds a person by Slack id, GitHub login (case-insensitive, `@` optional) or email
    /// (case-insensitive).
    pub fn find(&self, who: &str) -> Option<&Person> {
        let who = who.trim();
        let login = who.strip_prefix('@').unwrap_or(who);
        self.0.iter().find(|p| {
            p.slack.as_str() == who
                || p.github.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(login))
                || p.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(who))
        })
    }

    pub fn by_slack(&self, id: &SlackUserId) -> Option<&Person> {
        self.0.iter().find(|p| &p.slack == id)
    }

    /// The Slack id someone is known by: the mapped one, or the input itself when it already is a
    /// Slack id nobody mapped.
    pub fn slack_id_of(&self, who: &str) -> Option<SlackUserId> {
        self.find(who)
            .map(|p| p.slack.clone())
            .or_else(|| who.trim().parse().ok())
    }

    /// Duplicate Slack ids, GitHub logins or emails make identity ambiguous; names the first.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for p in &self.0 {
            let keys = std::iter::once(format!("slack {}", p.slack))
                .chain(p.github.iter().map(|g| format!("github {}", g.to_ascii_lowercase())))
                .chain(p.email.iter().map(|e| format!("email {}", e.to_ascii_lowercase())));
            for k in keys {
                if !seen.insert(k.clone()) {
                    return Err(format!("lists {k} twice"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> People {
        People::new(vec![Person {
            slack: "U0ALICE".parse().unwrap(),
            github: Some("alice".into()),
            email: Some("alice@example.com".into()),
        }])
    }

    #[test]
    fn finds_by_any_identity() {
        let p = people();
        for who in ["U0ALICE", "alice", "@Alice", "ALICE@example.com"] {
            assert_eq!(p.slack_id_of(who).unwrap().as_str(), "U0ALICE", "{who}");
        }
        assert_eq!(p.slack_id_of("U0BOB").unwrap().as_str(), "U0BOB");
        assert!(p.slack_id_of("bob").is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let mut v = people().0;
        v.push(Person {
            slack: "U0BOB".parse().unwrap(),
            github: Some("Alice".into()),
            email: None,
        });
        assert!(People::new(v).validate().unwrap_err().contains("github alice"));
    }
}
