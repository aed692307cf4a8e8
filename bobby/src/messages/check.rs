//! Deploy-check's reasons (SPEC §4.6): plain text, read by deploy scripts and by people in CI logs.

use shared::envs::{EnvState, Lease};
use shared::ids::EnvName;

pub fn check_busy(name: &EnvName, state: EnvState) -> String {
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
