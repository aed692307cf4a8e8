//! The deploy gate (SPEC §4.4): may this person deploy to this environment right now? The rule is
//! pure; the HTTP endpoint and the `bobby deploy-check` command line both use it.

use std::time::Duration;

use shared::envs::Environment;
use shared::people::People;

use crate::messages;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Refused(String),
}

/// Decides for `who` (a Slack id, GitHub login or email, resolved through `people`; anything else,
/// such as `gandalf`, is compared as it is).
pub fn decide(env: &Environment, who: &str, people: &People, require_lease: bool) -> Decision {
    if env.state.is_busy() {
        return Decision::Refused(messages::check_busy(&env.name, env.state));
    }
    let identity = people
        .slack_id_of(who)
        .map(|id| id.to_string())
        .unwrap_or_else(|| who.trim().to_string());
    match &env.lease {
        Some(lease) if lease.holder.to_string() == identity => Decision::Allowed,
        Some(lease) => Decision::Refused(messages::check_locked_by(lease)),
        None if require_lease => Decision::Refused(messages::check_unleased(&env.name)),
        None => Decision::Allowed,
    }
}

/// What the command line reports: exit 0 allowed, 1 refused, 2 could not decide.
#[derive(Debug)]
pub enum CliOutcome {
    Allowed,
    Refused(String),
    Undecided(String),
}

/// Asks a running Bobby. Needs no config file and no database.
pub async fn ask(base_url: &str, token: Option<&str>, env: &str, who: &str) -> CliOutcome {
    let url = match url::Url::parse(base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => return CliOutcome::Undecided(format!("`{base_url}` is not an http(s) URL (use --url or BOBBY_URL)")),
    };
    let mut endpoint = url.clone();
    match endpoint.path_segments_mut() {
        Ok(mut segs) => {
            segs.pop_if_empty()
                .extend(["api", "v1", "environments", env, "deploy-check"]);
        }
        Err(_) => return CliOutcome::Undecided(format!("`{base_url}` cannot be a base URL")),
    }
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(15)).build() {
        Ok(c) => c,
        Err(e) => return CliOutcome::Undecided(format!("cannot make an HTTP client: {e}")),
    };
    let mut request = client.post(endpoint).json(&serde_json::json!({ "as": who }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return CliOutcome::Undecided(format!("cannot reach Bobby at {url}: {}", root_cause(&e))),
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    match (status.as_u16(), body.get("allowed").and_then(|v| v.as_bool())) {
        (200, Some(true)) => CliOutcome::Allowed,
        (409, Some(false)) => CliOutcome::Refused(text("reason").unwrap_or_else(|| "refused".into())),
        (code, _) => CliOutcome::Undecided(format!(
            "Bobby answered HTTP {code}: {}",
            text("error").unwrap_or_else(|| "no explanation".into())
        )),
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;
    use shared::envs::{EnvState, Lease};
    use shared::people::Person;

    /// env-4 in `state`, leased by `holder` for an hour (also used by the deploy rules' tests).
    pub(crate) fn env(state: EnvState, holder: Option<&str>) -> Environment {
        let now = Utc::now();
        Environment {
            name: "env-4".parse().unwrap(),
            url: String::new(),
            state,
            lease: holder.map(|h| Lease {
                environment: "env-4".parse().unwrap(),
                holder: h.parse().unwrap(),
                reason: "demo".into(),
                since: now,
                expires_at: now + chrono::Duration::hours(1),
            }),
            preserved_until: None,
            preserved_by: None,
            waitlist: vec![],
            last_nightly: None,
            fault: None,
            deployed: Default::default(),
            deploy: None,
        }
    }

    fn people() -> People {
        People::new(vec![Person {
            slack: "U0ALICE".parse().unwrap(),
            github: Some("alice".into()),
            email: Some("alice@example.com".into()),
        }])
    }

    #[test]
    fn the_holder_may_deploy_by_any_of_their_names() {
        let e = env(EnvState::Ready, Some("U0ALICE"));
        for who in ["U0ALICE", "alice", "alice@example.com"] {
            assert_eq!(decide(&e, who, &people(), true), Decision::Allowed, "{who}");
        }
        match decide(&e, "bob", &people(), true) {
            Decision::Refused(r) => assert!(r.contains("env-4 is locked by U0ALICE"), "{r}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn gandalf_on_its_verification_environment() {
        assert_eq!(
            decide(&env(EnvState::Ready, Some("gandalf")), "gandalf", &people(), true),
            Decision::Allowed
        );
    }

    #[test]
    fn nobody_while_nightly_works_on_it() {
        for state in [EnvState::Deleting, EnvState::Creating] {
            assert!(matches!(
                decide(&env(state, Some("U0ALICE")), "U0ALICE", &people(), true),
                Decision::Refused(_)
            ));
        }
        assert_eq!(
            decide(&env(EnvState::Faulted, Some("U0ALICE")), "alice", &people(), true),
            Decision::Allowed
        );
    }

    #[test]
    fn unleased_depends_on_require_lease_to_deploy() {
        match decide(&env(EnvState::Ready, None), "alice", &people(), true) {
            Decision::Refused(r) => assert!(r.contains("lock it first: `/bobby lock env-4`"), "{r}"),
            d => panic!("{d:?}"),
        }
        assert_eq!(
            decide(&env(EnvState::Ready, None), "alice", &people(), false),
            Decision::Allowed
        );
    }
}
