//! How the control center words things: times relative to the bot's clock and absolute in its
//! timezone, durations, display names, the colour ("tone") of every state, and log paging.
//!
//! Everything here is plain text; escaping is the templates' job (askama escapes every value of an
//! `.html` or `.xml` template unless told otherwise, and these templates never tell it otherwise).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::people::People;

/// The colours of the build-monitor convention, as CSS classes: green ok, red failed, amber
/// running; blue for waiting on something else; grey for idle, queued or not applicable.
pub type Tone = &'static str;
pub const OK: Tone = "ok";
pub const FAILED: Tone = "failed";
pub const RUNNING: Tone = "running";
pub const WAITING: Tone = "waiting";
pub const IDLE: Tone = "idle";

/// An environment's lifecycle state.
pub fn env_tone(state: &str) -> Tone {
    match state {
        "ready" => OK,
        "deleting" | "creating" => RUNNING,
        "faulted" => FAILED,
        _ => IDLE,
    }
}

/// A queue item's state.
pub fn item_tone(state: &str) -> Tone {
    match state {
        "merged" => OK,
        "failed" => FAILED,
        "waiting_for_environment" => WAITING,
        "preparing" | "deploying" | "testing" | "landing" => RUNNING,
        _ => IDLE,
    }
}

/// A step's state, Nightly's (`ok`, `backoff`…) and Gandalf's (`succeeded`, `interrupted`…).
pub fn step_tone(state: &str) -> Tone {
    match state {
        "ok" | "succeeded" => OK,
        "failed" | "interrupted" | "faulted" => FAILED,
        "running" => RUNNING,
        "backoff" => WAITING,
        _ => IDLE,
    }
}

/// A Nightly run: finished runs are red when any environment faulted.
pub fn run_tone(state: &str, faulted: i64) -> Tone {
    match state {
        "running" => RUNNING,
        "requested" => WAITING,
        "interrupted" => FAILED,
        "finished" if faulted > 0 => FAILED,
        "finished" => OK,
        _ => IDLE,
    }
}

/// The outcome of the last Nightly phase on an environment (`ok`, `faulted`, `interrupted`, `skipped`).
pub fn outcome_tone(outcome: &str) -> Tone {
    match outcome {
        "ok" => OK,
        "faulted" | "interrupted" => FAILED,
        _ => IDLE,
    }
}

/// States as people read them: `waiting_for_environment` → `waiting for environment`.
pub fn words(state: &str) -> String {
    state.replace('_', " ")
}

/// Times as the page shows them, all relative to one instant (the bot's clock, so a page is
/// consistent with itself and tests can pin it).
#[derive(Clone, Copy)]
pub struct Times {
    pub now: DateTime<Utc>,
    pub tz: Tz,
}

impl Times {
    /// `Mon 23 Nov 10:00 CET`: the weekday matters on a Monday morning wall screen, the year does not.
    pub fn at(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz).format("%a %d %b %H:%M %Z").to_string()
    }

    /// `5m ago`, `in 2h 10m`, `just now`.
    pub fn rel(&self, t: DateTime<Utc>) -> String {
        let d = t - self.now;
        if d.num_seconds().abs() < 5 {
            "just now".into()
        } else if d > chrono::Duration::zero() {
            format!("in {}", span(d))
        } else {
            format!("{} ago", span(-d))
        }
    }

    /// How long since `from` (to `to`, or to now while it lasts).
    pub fn took(&self, from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
        span(to.unwrap_or(self.now) - from)
    }
}

/// A duration for people, to two units at most: `0s`, `1.6s`, `45s`, `3m 12s`, `5m`, `2h 05m`,
/// `3d 4h`. Under ten seconds, tenths count (steps are often that quick).
pub fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let ms = d.num_milliseconds().max(0);
    if s < 10 && ms % 1000 >= 50 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small:02}{small_unit}")
        }
    };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => two(s / 60, "m", s % 60, "s"),
        3600..86_400 => two(s / 3600, "h", (s % 3600) / 60, "m"),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A person as the page names them: the GitHub login `[[people]]` maps a Slack id to (what the
/// team knows each other by in PRs), else the id as given. Gandalf holds its verification
/// environments under its own name.
pub fn person(people: &People, who: &str) -> String {
    if who == crate::ids::Holder::GANDALF {
        return "Gandalf".into();
    }
    match people.find(who) {
        Some(p) => p
            .github
            .clone()
            .or_else(|| p.email.as_ref().map(|e| e.split('@').next().unwrap_or(e).to_string()))
            .unwrap_or_else(|| who.to_string()),
        None => who.to_string(),
    }
}

/// A commit for people: its first 10 characters.
pub fn short_sha(sha: &str) -> String {
    sha.chars().take(10).collect()
}

/// An environment's URL as a link, only when it is http(s): an admin typo (or worse, a
/// `javascript:` URL) in the config must not become a clickable link on everyone's screen.
pub fn safe_link(url: &str) -> Option<String> {
    (url.starts_with("https://") || url.starts_with("http://")).then(|| url.to_string())
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines shown on one page of a log. Step output is capped at 20,000 lines when stored, so a log
/// has at most 40 pages; a page this size renders fast even on a wall screen's small computer.
pub const PAGE_LINES: usize = 500;

/// Lines of a step's output shown inline on a run page; the whole log is a click away.
pub const INLINE_LINES: usize = 40;

/// One page of a log: its lines with their numbers, and where the others are.
pub struct LogPage {
    pub page: usize,
    pub pages: usize,
    pub total_lines: usize,
    pub first_line: usize,
    pub lines: Vec<(usize, String)>,
}

impl LogPage {
    /// Page `page` (1-based) of `log`; without one, the last page, where failures are.
    pub fn of(log: &str, page: Option<usize>) -> LogPage {
        let all: Vec<&str> = log.lines().collect();
        let pages = all.len().div_ceil(PAGE_LINES).max(1);
        let page = page.unwrap_or(pages).clamp(1, pages);
        let start = (page - 1) * PAGE_LINES;
        let lines = all
            .iter()
            .enumerate()
            .skip(start)
            .take(PAGE_LINES)
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect();
        LogPage {
            page,
            pages,
            total_lines: all.len(),
            first_line: start + 1,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        let s = |secs| span(chrono::Duration::seconds(secs));
        assert_eq!(s(0), "0s");
        assert_eq!(s(59), "59s");
        assert_eq!(s(192), "3m 12s");
        assert_eq!(s(7500), "2h 05m");
        assert_eq!(s(300), "5m");
        assert_eq!(s(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(s(-5), "0s");
        let ms = |ms| span(chrono::Duration::milliseconds(ms));
        assert_eq!(ms(1560), "1.6s");
        assert_eq!(ms(30), "0s");
        assert_eq!(ms(12_400), "12s");
    }

    #[test]
    fn relative_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap().to_utc();
        let t = Times {
            now,
            tz: chrono_tz::Europe::Berlin,
        };
        assert_eq!(t.rel(now + chrono::Duration::minutes(130)), "in 2h 10m");
        assert_eq!(t.rel(now - chrono::Duration::seconds(300)), "5m ago");
        assert_eq!(t.rel(now), "just now");
        assert_eq!(t.at(now), "Mon 23 Nov 10:00 CET");
    }

    #[test]
    fn logs_page_from_the_end() {
        let log: String = (1..=1200).map(|i| format!("line {i}\n")).collect();
        let last = LogPage::of(&log, None);
        assert_eq!((last.page, last.pages, last.total_lines), (3, 3, 1200));
        assert_eq!(last.lines.first().unwrap(), &(1001, "line 1001".to_string()));
        assert_eq!(last.lines.len(), 200);
        let first = LogPage::of(&log, Some(1));
        assert_eq!(first.lines.len(), PAGE_LINES);
        assert_eq!(first.lines[0], (1, "line 1".to_string()));
        assert_eq!(LogPage::of(&log, Some(99)).page, 3, "past the end is the last page");
        let empty = LogPage::of("", None);
        assert_eq!((empty.page, empty.pages, empty.lines.len()), (1, 1, 0));
    }

    #[test]
    fn only_web_links_are_links() {
        assert!(safe_link("https://env-1.dev.example.com").is_some());
        assert!(safe_link("javascript:alert(1)").is_none());
        assert!(safe_link("").is_none());
    }
}
