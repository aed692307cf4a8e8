//! Fuzzes the one duration grammar of the product (shared/src/duration.rs), used by commands
//! (`lock env-4 for 2h`) and configuration (`step_timeout = "250ms"`). Invariants: a parsed span is
//! positive and at most a year; it renders in the same grammar and parses back to itself; what the
//! command grammar accepts the configuration grammar accepts with the same value; and `humanize`
//! formats any of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::duration::{Span, humanize};

/// The documented upper bound (`MAX_SECS` in duration.rs): one leap year.
const MAX_SECS: u64 = 366 * 24 * 3600;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let command = Span::parse_command(text);
    let config = Span::parse_config(text);
    if let Ok(span) = command {
        assert_eq!(config, Ok(span), "command grammar accepted {text:?} but config did not");
        assert_eq!(Span::parse_command(&span.to_string()), Ok(span));
    }
    if let Ok(span) = config {
        assert!(
            !span.std().is_zero() && span.as_secs() <= MAX_SECS,
            "{text:?} gave {span:?}"
        );
        assert_eq!(
            Span::parse_config(&span.to_string()),
            Ok(span),
            "{span} does not parse back"
        );
        let _ = humanize(span.chrono());
    }
    if let Err(e) = command {
        // Errors quote at most 24 characters of the input.
        assert!(e.to_string().chars().count() <= 120, "error too long: {e}");
    }
});
