//! Fuzzes the Slack request verifier (shared/src/slack/signature.rs) that guards every Slack
//! endpoint of both bots: the timestamp and signature headers are attacker-controlled strings.
//!
//! Input layout: timestamp header line, signature header line, body. Invariants: never panics; it
//! accepts only a timestamp within five minutes of the clock whose signature is the right one; a
//! request we sign ourselves for the current time verifies.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use shared::clock::ManualClock;
use shared::slack::signature::{SlackVerifier, sign};
use std::sync::Arc;

const SECRET: &str = "fuzz-signing-secret";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(ts), Some(sig)) = (parts.next(), parts.next()) else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let (Ok(ts), Ok(sig)) = (std::str::from_utf8(ts), std::str::from_utf8(sig)) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    let verifier = SlackVerifier::new(Some(SecretString::from(SECRET)), Arc::new(ManualClock::new(now)));

    if verifier.verify(Some(ts), Some(sig), body).is_ok() {
        let t: i64 = ts.trim().parse().expect("an accepted timestamp is a number");
        assert!((now.timestamp() - t).abs() <= 300, "stale timestamp {t} accepted");
        // Slack signs the timestamp as sent; when it is written canonically we can sign it too.
        if ts.trim() == t.to_string() {
            assert!(
                sig.trim().eq_ignore_ascii_case(&sign(SECRET, t, body)),
                "wrong signature accepted"
            );
        }
    }
    let fresh = now.timestamp() - 60;
    assert!(
        verifier
            .verify(Some(&fresh.to_string()), Some(&sign(SECRET, fresh, body)), body)
            .is_ok()
    );
    assert!(
        verifier
            .verify(Some(&fresh.to_string()), Some(&sign("wrong", fresh, body)), body)
            .is_err()
    );
});
