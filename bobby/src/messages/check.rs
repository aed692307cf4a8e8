//! Deploy-check's reasons (SPEC §4.6): plain text, read by deploy scripts and by people in CI logs.

use shared::envs::{EnvState, Lease};
use shared::ids::EnvName;

pub fn check_busy(name: &EnvName, state: EnvState) -> String {
    // The API's `reason` (SPEC §4.4): scripts may match on the state's word, so it stays as stored
    // ("env-4 is creating by Nightly") rather than as prose would have it.
    format!("{name} is {} by Nightly; deploy once it is ready", state.as_str())
}

pub fn check_locked_by(lease: &Lease) -> String {
    let mut s = format!(
        "{} is locked by {} until {}",
        lease.environment,
        lease.holder,
        lease.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    if !lease.reason.is_empty() {
        s.push_str(&format!(" ({})", lease.reason));
    }
    s
}

pub fn check_unleased(name: &EnvName) -> String {
    format!("{name} is not locked by anyone; lock it first: `/bobby lock {name}`")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{lease, name};
    use super::*;

    #[test]
    fn deploy_check_reasons() {
        insta::assert_snapshot!("check_busy", check_busy(&name("env-4"), EnvState::Deleting));
        insta::assert_snapshot!(
            "check_locked_by",
            check_locked_by(&lease("env-4", "U0BOB", "payments demo"))
        );
        insta::assert_snapshot!(
            "check_locked_by_gandalf",
            check_locked_by(&lease("env-4", "gandalf", ""))
        );
        insta::assert_snapshot!("check_unleased", check_unleased(&name("env-4")));
    }
}
