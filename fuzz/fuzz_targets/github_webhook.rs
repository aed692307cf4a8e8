//! Fuzzes the GitHub webhook decoder (gandalf/src/webhook.rs): the `X-Hub-Signature-256` check that
//! runs before anything parses the body, the JSON decoding the route does, and the [`decode`] of a
//! stored delivery into what Gandalf acts on, then the `@gandalf` comment parser it feeds. NULs are
//! replaced before storing (jsonb refuses them), and none may survive.
//!
//! Input layout: the first byte picks the event name, the first line after it is the signature
//! header, the rest is the body. Invariants: a correct signature verifies and a header verifies only
//! when it is the correct signature (hex is case-insensitive); decoded comments are on a real pull
//! request number and never Gandalf's own.
#![no_main]

use gandalf::command::parse_comment;
use gandalf::webhook::{Event, decode, replace_nul, sign, verify};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &str = "fuzz-webhook-secret";
const EVENTS: [&str; 5] = ["issue_comment", "pull_request", "ping", "pull_request_review", "push"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(pick) % EVENTS.len()];
    let (header, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };

    let right = sign(SECRET, body);
    assert_eq!(verify(SECRET, Some(&right), body), Ok(()));
    assert!(verify("another-secret", Some(&right), body).is_err());
    assert!(verify(SECRET, None, body).is_err());
    if let Ok(header) = std::str::from_utf8(header) {
        let ok = verify(SECRET, Some(header), body).is_ok();
        assert_eq!(
            ok,
            header.starts_with("sha256=") && header.eq_ignore_ascii_case(&right),
            "{header:?}"
        );
    }

    let Ok(mut payload) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    // What the route does before storing: afterwards nothing Postgres's jsonb refuses is left.
    replace_nul(&mut payload);
    assert!(!payload.to_string().contains("\\u0000"), "a NUL survived: {payload}");
    match decode(event, &payload, "gandalf") {
        Event::Comment {
            number, author, body, ..
        } => {
            assert!(number.get() > 0);
            assert!(!author.eq_ignore_ascii_case("gandalf"), "Gandalf would answer itself");
            let _ = parse_comment(&body, "gandalf");
        }
        Event::PullRequest { .. } => assert_eq!(event, "pull_request"),
        Event::Ignored => {}
    }
});
