//! Fuzzes the `/bobby` command parser (bobby/src/command.rs): whatever anyone types after `/bobby`
//! reaches it verbatim from Slack. Besides "never panics", checks the invariants the handler and the
//! messages rely on: a lock reason is bounded and free of control and invisible characters, a lock
//! duration renders in the grammar it was parsed from, and error messages stay short however long
//! the input (they echo clipped user input back to Slack).
#![no_main]

use bobby::command::{Command, LeaseEnd, MAX_REASON_CHARS, PreserveEnd, parse};
use libfuzzer_sys::fuzz_target;
use shared::duration::Span;

fuzz_target!(|data: &[u8]| {
    // Slack sends UTF-8; lossy conversion keeps every input useful instead of skipping invalid ones.
    let text = String::from_utf8_lossy(data);
    let parsed = parse(&text);
    // Only whitespace-separated words matter: re-joining them with single spaces changes nothing.
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        parse(&words.join(" ")),
        parsed,
        "whitespace changed the meaning of {text:?}"
    );
    match parsed {
        Ok(Command::Lock { end, reason, .. }) => {
            assert!(
                reason.chars().count() <= MAX_REASON_CHARS,
                "reason too long: {reason:?}"
            );
            assert!(
                !reason.chars().any(char::is_control),
                "control character kept: {reason:?}"
            );
            assert!(!reason.contains('\u{200B}') && !reason.contains('\u{202E}') && !reason.contains('\u{FEFF}'));
            if let LeaseEnd::For(span) = end {
                round_trips(span);
            }
        }
        Ok(Command::Extend { by, .. }) => round_trips(by),
        Ok(Command::Preserve {
            end: PreserveEnd::For(span),
            ..
        }) => round_trips(span),
        Ok(_) => {}
        Err(e) => {
            // Errors quote at most 40 characters of input (plus a fixed sentence and the count of a
            // too-long reason), so a pasted novel does not come back whole.
            assert!(
                e.message.chars().count() <= 300,
                "error message too long: {:?}",
                e.message
            );
        }
    }
});

/// A duration accepted in a command is positive and renders in the command grammar as itself.
fn round_trips(span: Span) {
    assert!(span.as_secs() > 0);
    assert_eq!(Span::parse_command(&span.to_string()), Ok(span));
}
