//! When to ask GitHub again, and after how long (SPEC §8, §10): the decision as pure functions of
//! an answer (status, headers, message), so it is unit-tested without a server; `Github::read`/
//! `write` (in `github.rs`) only carry it out.
//!
//! GitHub sends `X-RateLimit-Limit/Remaining/Reset/Used/Resource` on *every* answer, and Reset is
//! the end of the current window, up to an hour ahead. Honouring Reset on any failure made one
//! transient 502 cost 300 s (issue 14). So the answers are sorted first:
//!
//! - **rate limited** — a 403 or 429 with `X-RateLimit-Remaining: 0` (primary limit) or whose
//!   message says "rate limit" (secondary limit), or any 429: wait what GitHub asks, in GitHub's
//!   order of precedence (`Retry-After`, else Reset when Remaining is 0, else one minute), but
//!   never longer than a cap — past it the call fails at once as `Unavailable` instead of holding
//!   its caller for an hour;
//! - **transient** — a 5xx or no answer at all (connection refused or reset, timeout): short
//!   exponential backoff with full jitter (a uniform wait in `[0, min(cap, base·2ⁿ)]`, so replicas
//!   that failed together do not retry together), a few attempts; the rate-limit headers on such
//!   an answer mean nothing and are ignored;
//! - **refused** — anything else (401, 404, 409, 422, a 403 about permissions): asking again
//!   changes nothing.
//!
//! Writes are sent once whatever the answer: a transient failure leaves their effect unknown, so
//! the caller re-reads state before deciding to send one again. A rate-limit answer still tells
//! the client to hold *later* requests (see `Github`'s gate), reads and writes alike.

use std::time::Duration;

use http::HeaderMap;

/// How a read meets transient failures (5xx, network errors).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries of one read in all, the first included.
    pub attempts: u32,
    /// The first backoff's upper bound; each later one doubles it.
    pub base: Duration,
    /// The largest upper bound of one backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Four tries, backoffs drawn from [0, 0.5 s], [0, 1 s], [0, 2 s]: a read that keeps failing
    /// gives up after at most 3.5 s of waiting; a single 502 costs 0.25 s on average.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(4),
        }
    }
}

/// The longest a request waits for a rate limit to pass. GitHub asks for "at least one minute"
/// when a secondary limit comes without `Retry-After`; a longer wait (a primary limit whose window
/// ends in 40 minutes) fails the call at once as `Unavailable`, and the client's gate keeps later
/// calls from reaching GitHub until the window ends.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// How many rate-limit waits one read sits through before giving up.
pub const RATE_LIMIT_WAITS: u32 = 3;

/// What GitHub asked for on a secondary rate limit without `Retry-After`: "wait for at least one
/// minute before retrying" (docs: Troubleshooting the REST API, rate limit errors).
pub const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Which part of a rate-limit answer set the wait (logged, so an operator can see why a call
/// waited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitBasis {
    RetryAfter,
    RateLimitReset,
    /// Neither header: GitHub's documented minimum of one minute.
    Default,
}

impl WaitBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitBasis::RetryAfter => "Retry-After",
            WaitBasis::RateLimitReset => "X-RateLimit-Reset",
            WaitBasis::Default => "GitHub's one-minute default",
        }
    }
}

/// A failed exchange, sorted by what asking again can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// A 5xx, or no (complete) answer: probably brief.
    Transient(String),
    /// A rate-limit answer, with the wait GitHub asked for.
    RateLimited {
        wait: Duration,
        basis: WaitBasis,
        why: String,
    },
    /// GitHub said no; asking again changes nothing.
    Refused { status: u16, message: String },
}

impl Trouble {
    /// What went wrong, for logs and `Unavailable`.
    pub fn describe(&self) -> String {
        match self {
            Trouble::Transient(why) | Trouble::RateLimited { why, .. } => why.clone(),
            Trouble::Refused { status, message } => format!("HTTP {status}: {message}"),
        }
    }
}

/// What to do after a failed try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then send the request again.
    Retry(Duration),
    /// Stop: the call fails as `Unavailable` with this reason.
    GiveUp(String),
    /// Stop: the call fails as `Refused`.
    Refuse,
}

/// Whether the request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    /// Sent once: a failure leaves its effect unknown, the caller re-reads before repeating it.
    Write,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Sorts a non-success answer. `now` is the current time in Unix seconds (for Reset).
pub fn classify(status: u16, headers: &HeaderMap, message: &str, now: u64) -> Trouble {
    let remaining_zero = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    // "API rate limit exceeded…", "You have exceeded a secondary rate limit…"; older GitHub
    // Enterprise Servers call the secondary limit "an abuse detection mechanism".
    let lower = message.to_ascii_lowercase();
    let says_rate_limit = lower.contains("rate limit") || lower.contains("abuse detection");
    let rate_limited = status == 429 || (status == 403 && (remaining_zero || says_rate_limit));
    let described = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    if rate_limited {
        let (wait, basis) = if let Some(secs) = header_u64(headers, "retry-after") {
            (Duration::from_secs(secs), WaitBasis::RetryAfter)
        } else if let (true, Some(reset)) = (remaining_zero, header_u64(headers, "x-ratelimit-reset")) {
            // Reset is whole seconds and clocks differ a little: one second past it.
            (
                Duration::from_secs(reset.saturating_sub(now) + 1),
                WaitBasis::RateLimitReset,
            )
        } else {
            (SECONDARY_DEFAULT_WAIT, WaitBasis::Default)
        };
        return Trouble::RateLimited {
            wait,
            basis,
            why: described,
        };
    }
    if status >= 500 {
        return Trouble::Transient(described);
    }
    Trouble::Refused {
        status,
        message: message.to_string(),
    }
}

/// After a *successful* answer: GitHub says "do not make another request until Reset" once
/// Remaining is 0, so the next request waits (or fails fast) instead of earning a 403.
pub fn exhausted_until(headers: &HeaderMap, now: u64) -> Option<Duration> {
    if header_u64(headers, "x-ratelimit-remaining") != Some(0) {
        return None;
    }
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    Some(Duration::from_secs(reset.saturating_sub(now) + 1))
}

/// The decision after a try met `trouble`. `attempt` counts this call's tries that met a transient
/// failure, this one included (1 after the first); `waited` counts the rate-limit waits it already
/// sat through; `jitter` is uniform in `[0, 1)` (a parameter, so tests pin it).
pub fn decide(policy: &RetryPolicy, kind: Kind, attempt: u32, waited: u32, trouble: &Trouble, jitter: f64) -> Decision {
    match trouble {
        Trouble::Refused { .. } => Decision::Refuse,
        Trouble::Transient(why) => match kind {
            Kind::Write => Decision::GiveUp(why.clone()),
            Kind::Read if attempt >= policy.attempts => Decision::GiveUp(format!("{why} (after {attempt} tries)")),
            Kind::Read => Decision::Retry(backoff(policy, attempt, jitter)),
        },
        Trouble::RateLimited { wait, basis, why } => {
            if *wait > MAX_RATE_LIMIT_WAIT {
                Decision::GiveUp(format!(
                    "{why}; rate limited for another {}s ({}), more than the {}s a call waits",
                    wait.as_secs(),
                    basis.as_str(),
                    MAX_RATE_LIMIT_WAIT.as_secs()
                ))
            } else if kind == Kind::Write {
                // Not applied by GitHub, but the caller owns the decision to send it again; the
                // gate makes its re-read wait out the limit.
                Decision::GiveUp(format!("{why}; rate limited for {}s", wait.as_secs()))
            } else if waited >= RATE_LIMIT_WAITS {
                Decision::GiveUp(format!("{why}; still rate limited after {waited} waits"))
            } else {
                Decision::Retry(*wait)
            }
        }
    }
}

/// Full jitter: uniform in `[0, min(cap, base·2^(attempt-1))]`.
pub fn backoff(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let ceiling = policy
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(policy.cap);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// What GitHub sends on every answer: a window ending `reset_in` seconds from now.
    fn github_headers(remaining: u64, reset_in: u64) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit", "5000".into()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", (NOW + reset_in).to_string()),
            ("x-ratelimit-used", (5000 - remaining).to_string()),
            ("x-ratelimit-resource", "core".into()),
        ]
    }

    fn read(attempt: u32, trouble: &Trouble, jitter: f64) -> Decision {
        decide(&RetryPolicy::default(), Kind::Read, attempt, 0, trouble, jitter)
    }

    /// Issue 14: a 502 carrying a Reset 58 minutes ahead was waited out for 300 s.
    #[test]
    fn a_502_ignores_the_reset_github_sends_on_every_answer() {
        let h = headers(&github_headers(4999, 3480));
        let t = classify(502, &h, "Server Error", NOW);
        assert_eq!(t, Trouble::Transient("HTTP 502: Server Error".into()));
        assert_eq!(
            read(1, &t, 0.999),
            Decision::Retry(Duration::from_millis(500).mul_f64(0.999))
        );
        // Nothing waits minutes: the worst case over all tries.
        let policy = RetryPolicy::default();
        let worst: Duration = (1..policy.attempts).map(|a| backoff(&policy, a, 1.0)).sum();
        assert_eq!(worst, Duration::from_millis(3500));
    }

    #[test]
    fn transient_failures_back_off_exponentially_with_full_jitter_then_give_up() {
        let t = Trouble::Transient("connection reset".into());
        let p = RetryPolicy::default();
        assert_eq!(read(1, &t, 0.0), Decision::Retry(Duration::ZERO));
        assert_eq!(read(1, &t, 1.0), Decision::Retry(Duration::from_millis(500)));
        assert_eq!(read(2, &t, 1.0), Decision::Retry(Duration::from_secs(1)));
        assert_eq!(read(3, &t, 0.5), Decision::Retry(Duration::from_secs(1)));
        assert!(matches!(read(4, &t, 0.5), Decision::GiveUp(why) if why.contains("after 4 tries")));
        // The ceiling stops at `cap` however many tries a policy allows.
        let many = RetryPolicy { attempts: 30, ..p };
        assert_eq!(backoff(&many, 29, 1.0), p.cap);
        for n in [0u32, 1, 2, 3] {
            let j = f64::from(n) / 4.0;
            let d = backoff(&p, 2, j);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
    }

    #[test]
    fn a_primary_rate_limit_waits_for_reset() {
        let h = headers(&github_headers(0, 2));
        let t = classify(403, &h, "API rate limit exceeded for installation ID 42.", NOW);
        assert!(
            matches!(&t, Trouble::RateLimited { wait, basis: WaitBasis::RateLimitReset, .. } if *wait == Duration::from_secs(3)),
            "{t:?}"
        );
        assert_eq!(read(1, &t, 0.5), Decision::Retry(Duration::from_secs(3)));
        // 429 is GitHub's other status for the same thing.
        assert_eq!(
            classify(429, &h, "API rate limit exceeded", NOW),
            t.clone_with_why("HTTP 429: API rate limit exceeded")
        );
        // A Reset in the past (clock skew) waits one second, not "forever" or a negative time.
        let past = headers(&[
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", (NOW - 30).to_string()),
        ]);
        assert!(
            matches!(classify(403, &past, "", NOW), Trouble::RateLimited { wait, .. } if wait == Duration::from_secs(1))
        );
    }

    #[test]
    fn a_reset_far_ahead_fails_fast_instead_of_holding_the_caller() {
        let t = classify(403, &headers(&github_headers(0, 2400)), "API rate limit exceeded", NOW);
        let Decision::GiveUp(why) = read(1, &t, 0.5) else {
            panic!("an hour's wait is not sat through")
        };
        assert!(why.contains("2401s") && why.contains("X-RateLimit-Reset"), "{why}");
    }

    #[test]
    fn a_secondary_rate_limit_honours_retry_after_else_waits_a_minute() {
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
        // Remaining is not 0 on a secondary limit; the Reset must not be used.
        let mut with = github_headers(4000, 3000);
        with.push(("retry-after", "7".into()));
        let t = classify(403, &headers(&with), msg, NOW);
        assert!(
            matches!(&t, Trouble::RateLimited { wait, basis: WaitBasis::RetryAfter, .. } if *wait == Duration::from_secs(7))
        );
        assert_eq!(read(1, &t, 0.9), Decision::Retry(Duration::from_secs(7)));
        let t = classify(403, &headers(&github_headers(4000, 3000)), msg, NOW);
        assert!(
            matches!(&t, Trouble::RateLimited { wait, basis: WaitBasis::Default, .. } if *wait == SECONDARY_DEFAULT_WAIT)
        );
        let older = "You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.";
        let t = classify(403, &HeaderMap::new(), older, NOW);
        assert!(matches!(&t, Trouble::RateLimited { .. }), "{t:?}");
        assert_eq!(t.describe(), format!("HTTP 403: {older}"));
        // A Retry-After beyond the cap gives up at once, saying so.
        let long = headers(&[("retry-after", "3600".into())]);
        let t = classify(429, &long, "", NOW);
        assert!(
            matches!(read(1, &t, 0.5), Decision::GiveUp(why) if why.contains("3600s") && why.contains("Retry-After"))
        );
        // A read sits through a few waits, not forever.
        let t = classify(429, &headers(&[("retry-after", "1".into())]), "", NOW);
        let p = RetryPolicy::default();
        assert_eq!(
            decide(&p, Kind::Read, 9, RATE_LIMIT_WAITS - 1, &t, 0.5),
            Decision::Retry(Duration::from_secs(1))
        );
        assert!(matches!(
            decide(&p, Kind::Read, 9, RATE_LIMIT_WAITS, &t, 0.5),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn writes_are_sent_once_whatever_the_failure() {
        let p = RetryPolicy::default();
        for t in [
            Trouble::Transient("HTTP 502".into()),
            classify(429, &headers(&[("retry-after", "1".into())]), "", NOW),
            classify(403, &headers(&github_headers(0, 5)), "", NOW),
        ] {
            assert!(
                matches!(decide(&p, Kind::Write, 1, 0, &t, 0.5), Decision::GiveUp(_)),
                "{t:?}"
            );
        }
        let refused = classify(409, &HeaderMap::new(), "Merge conflict", NOW);
        assert_eq!(decide(&p, Kind::Write, 1, 0, &refused, 0.5), Decision::Refuse);
    }

    #[test]
    fn other_client_errors_are_refusals_even_with_the_headers() {
        let h = headers(&github_headers(4999, 3000));
        for (status, msg) in [
            (403, "Resource not accessible by integration"),
            (401, "Bad credentials"),
            (404, "Not Found"),
            (422, "Update is not a fast forward"),
        ] {
            let t = classify(status, &h, msg, NOW);
            assert_eq!(
                t,
                Trouble::Refused {
                    status,
                    message: msg.into()
                }
            );
            assert_eq!(read(1, &t, 0.5), Decision::Refuse);
        }
    }

    #[test]
    fn a_success_with_nothing_left_holds_the_next_request_until_reset() {
        assert_eq!(exhausted_until(&headers(&github_headers(1, 100)), NOW), None);
        assert_eq!(
            exhausted_until(&headers(&github_headers(0, 100)), NOW),
            Some(Duration::from_secs(101))
        );
        assert_eq!(exhausted_until(&HeaderMap::new(), NOW), None);
    }

    impl Trouble {
        fn clone_with_why(&self, new: &str) -> Trouble {
            match self.clone() {
                Trouble::RateLimited { wait, basis, .. } => Trouble::RateLimited {
                    wait,
                    basis,
                    why: new.into(),
                },
                other => other,
            }
        }
    }
}
