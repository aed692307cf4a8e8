//! What Nightly does and when, as pure functions: the instants of the delete and create slots in
//! the configured timezone, which slot is due (including the catch-up of one missed while Bobby was
//! down), which night a slot belongs to (for `nightly skip`), and what a phase does with each
//! environment. No database, no clock: the scheduler and the runner feed in what they read.
//!
//! The rules (SPEC §4.5):
//! - every day has one delete slot (`delete_at`) and one create slot (`create_at`), local time in
//!   `timezone`; daylight-saving changes move their UTC instants, never their local times (a local
//!   time that does not exist that day means the first instant after the gap);
//! - the delete deletes every environment that is up (ready or faulted) and neither preserved nor
//!   held by Gandalf;
//! - the create creates the environments that should be up that day and are not (deleted or
//!   faulted): all of them on workdays, `weekend_keep` of them (`keep_on_weekends` ones first, then
//!   the others, each in config order) on other days and holidays;
//! - a night is named by the local date of its delete; skipping it skips that delete and the create
//!   that follows it;
//! - of the slots that passed while nobody ran them, only the latest is run: a missed delete only
//!   while its create time has not come, a missed create until the next delete.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use shared::envs::EnvState;
use shared::ids::{EnvName, Holder};
use shared::schedule::{local_instant, next_local_time};

use crate::config::NightlyConfig;

pub use shared::envs::store::NightlyPhase as Phase;

/// The schedule of Nightly, resolved from `[nightly]` and `timezone`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub tz: Tz,
    pub delete_at: NaiveTime,
    pub create_at: NaiveTime,
    pub workdays: Vec<Weekday>,
    pub holidays: BTreeSet<NaiveDate>,
    pub weekend_keep: usize,
}

/// One firing of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub phase: Phase,
    pub at: DateTime<Utc>,
}

impl Schedule {
    pub fn new(n: &NightlyConfig, tz: Tz) -> Self {
        Schedule {
            tz,
            delete_at: n.delete_at.0,
            create_at: n.create_at.0,
            workdays: n.workdays.clone(),
            holidays: n.holidays.iter().copied().collect(),
            weekend_keep: n.weekend_keep as usize,
        }
    }

    fn time_of(&self, phase: Phase) -> NaiveTime {
        match phase {
            Phase::Delete => self.delete_at,
            Phase::Create => self.create_at,
        }
    }

    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// A workday is one of `workdays` that is not a holiday; every other day keeps only
    /// `weekend_keep` environments.
    pub fn is_workday(&self, date: NaiveDate) -> bool {
        self.workdays.contains(&date.weekday()) && !self.holidays.contains(&date)
    }

    /// The next instant of `phase` strictly after `now`.
    pub fn next_of(&self, phase: Phase, now: DateTime<Utc>) -> DateTime<Utc> {
        next_local_time(now, self.tz, self.time_of(phase))
    }

    /// The latest instant of `phase` at or before `now`.
    pub fn latest_of(&self, phase: Phase, now: DateTime<Utc>) -> DateTime<Utc> {
        let time = self.time_of(phase);
        // Today's instant may still be ahead; yesterday's never is (a local day is at most 25 hours).
        let mut date = self.local_date(now);
        for _ in 0..3 {
            let t = local_instant(self.tz, date, time);
            if t <= now {
                return t;
            }
            date = date.checked_sub_days(Days::new(1)).unwrap_or(NaiveDate::MIN);
        }
        local_instant(self.tz, date, time)
    }

    /// The first slot of either phase strictly after `now`.
    pub fn next_slot(&self, now: DateTime<Utc>) -> Slot {
        let delete = self.next_of(Phase::Delete, now);
        let create = self.next_of(Phase::Create, now);
        if delete <= create {
            Slot {
                phase: Phase::Delete,
                at: delete,
            }
        } else {
            Slot {
                phase: Phase::Create,
                at: create,
            }
        }
    }

    /// The latest slot of either phase at or before `now`.
    pub fn latest_slot(&self, now: DateTime<Utc>) -> Slot {
        let delete = self.latest_of(Phase::Delete, now);
        let create = self.latest_of(Phase::Create, now);
        if delete >= create {
            Slot {
                phase: Phase::Delete,
                at: delete,
            }
        } else {
            Slot {
                phase: Phase::Create,
                at: create,
            }
        }
    }

    /// The slot to run now, if any: the latest one at or before `now` when it is later than
    /// `watermark` (the latest slot already run or skipped). Earlier missed slots are superseded
    /// by it: a missed delete whose create time has passed is not run, the create is.
    pub fn due(&self, now: DateTime<Utc>, watermark: DateTime<Utc>) -> Option<Slot> {
        Some(self.latest_slot(now)).filter(|s| s.at > watermark)
    }

    /// The night a slot belongs to: the local date of its delete (for a create, the delete before it).
    pub fn night_of(&self, slot: Slot) -> NaiveDate {
        match slot.phase {
            Phase::Delete => self.local_date(slot.at),
            Phase::Create => self.local_date(self.latest_of(Phase::Delete, slot.at)),
        }
    }

    /// The local day whose environments a create at `at` brings up.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        self.local_date(at)
    }

    /// Until when a run of `phase` started at `started` is resumed after a crash: the next slot of
    /// the other phase. Past it, resuming would fight the schedule (a delete finishing after the
    /// morning's create); the run is marked interrupted instead.
    pub fn resume_until(&self, phase: Phase, started: DateTime<Utc>) -> DateTime<Utc> {
        let other = match phase {
            Phase::Delete => Phase::Create,
            Phase::Create => Phase::Delete,
        };
        self.next_of(other, started)
    }

    /// The environments to keep up on `date`, by name: all on workdays, else the first
    /// `weekend_keep` of those with `keep_on_weekends`, then the others, each in config order.
    pub fn kept_on<'a>(&self, date: NaiveDate, envs: &'a [EnvView]) -> Vec<&'a str> {
        if self.is_workday(date) {
            return envs.iter().map(|e| e.name.as_str()).collect();
        }
        envs.iter()
            .filter(|e| e.keep_on_weekends)
            .chain(envs.iter().filter(|e| !e.keep_on_weekends))
            .take(self.weekend_keep)
            .map(|e| e.name.as_str())
            .collect()
    }
}

/// What planning needs to know about an environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvView {
    pub name: EnvName,
    pub state: EnvState,
    pub preserved_until: Option<DateTime<Utc>>,
    pub holder: Option<Holder>,
    pub keep_on_weekends: bool,
}

/// Why a phase leaves an environment alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    Preserved(DateTime<Utc>),
    /// Gandalf holds it to verify a pull request.
    Gandalf,
    /// Not one of the environments kept up on a weekend or holiday.
    NotKept,
    AlreadyUp,
    AlreadyDown,
    /// Another run is deleting or creating it (only after a crash's leftovers).
    Busy,
}

impl Skip {
    /// How it is stored (`nightly_run_envs.skip_reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Skip::Preserved(_) => "preserved",
            Skip::Gandalf => "gandalf",
            Skip::NotKept => "not-kept",
            Skip::AlreadyUp => "already-up",
            Skip::AlreadyDown => "already-down",
            Skip::Busy => "busy",
        }
    }

    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Skip::Preserved(t) => Some(*t),
            _ => None,
        }
    }

    pub fn from_code(code: &str, until: Option<DateTime<Utc>>) -> Skip {
        match code {
            "preserved" => Skip::Preserved(until.unwrap_or(DateTime::<Utc>::MIN_UTC)),
            "gandalf" => Skip::Gandalf,
            "not-kept" => Skip::NotKept,
            "already-up" => Skip::AlreadyUp,
            "already-down" => Skip::AlreadyDown,
            _ => Skip::Busy,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(Skip),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub name: EnvName,
    pub decision: Decision,
}

/// What `phase` does with each environment (in config order). `kept` are the environments that
/// should be up on the create's day (see [`Schedule::kept_on`]). `only` is a manual run's named
/// environment: it alone is planned, and the up/down and weekend rules give way to the admin who
/// named it; preservation and Gandalf's lease never do.
pub fn plan(phase: Phase, envs: &[EnvView], kept: &[&str], only: Option<&str>, now: DateTime<Utc>) -> Vec<Planned> {
    envs.iter()
        .filter(|e| only.is_none_or(|o| o == e.name.as_str()))
        .map(|e| Planned {
            name: e.name.clone(),
            decision: decide(phase, e, kept.contains(&e.name.as_str()), only.is_some(), now),
        })
        .collect()
}

fn decide(phase: Phase, e: &EnvView, kept: bool, named: bool, now: DateTime<Utc>) -> Decision {
    if let Some(until) = e.preserved_until.filter(|t| *t > now) {
        return Decision::Skip(Skip::Preserved(until));
    }
    if e.holder.as_ref().is_some_and(Holder::is_gandalf) {
        return Decision::Skip(Skip::Gandalf);
    }
    if e.state.is_busy() {
        return Decision::Skip(Skip::Busy);
    }
    if named {
        return Decision::Run;
    }
    match phase {
        Phase::Delete if e.state == EnvState::Deleted => Decision::Skip(Skip::AlreadyDown),
        Phase::Delete => Decision::Run,
        Phase::Create if !kept => Decision::Skip(Skip::NotKept),
        Phase::Create if e.state == EnvState::Ready => Decision::Skip(Skip::AlreadyUp),
        Phase::Create => Decision::Run,
    }
}

/// The ceiling of the wait before the `retry`-th retry (1-based): `min(max, initial × 2^(retry-1))`.
pub fn backoff_cap(retry: u32, initial: Duration, max: Duration) -> Duration {
    initial.saturating_mul(1u32 << retry.saturating_sub(1).min(30)).min(max)
}

/// Full jitter: a wait drawn uniformly from `[0, cap]`; `unit` is the random draw in `[0, 1)`.
pub fn backoff(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    backoff_cap(retry, initial, max).mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::TimeOfDay;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn schedule(delete: &str, create: &str) -> Schedule {
        Schedule {
            tz: chrono_tz::Europe::Berlin,
            delete_at: delete.parse::<TimeOfDay>().unwrap().0,
            create_at: create.parse::<TimeOfDay>().unwrap().0,
            workdays: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            holidays: [date("2026-12-24"), date("2026-12-25")].into_iter().collect(),
            weekend_keep: 2,
        }
    }

    fn slots_from(s: &Schedule, start: &str, n: usize) -> Vec<(Phase, String)> {
        let mut now = utc(start);
        (0..n)
            .map(|_| {
                let slot = s.next_slot(now);
                now = slot.at;
                (slot.phase, slot.at.to_rfc3339())
            })
            .collect()
    }

    #[test]
    fn slots_alternate_and_follow_spring_forward() {
        // 2026-03-29: Berlin goes from UTC+1 to UTC+2 at 02:00.
        let s = schedule("20:00", "06:30");
        assert_eq!(
            slots_from(&s, "2026-03-28T12:00:00Z", 4),
            vec![
                (Phase::Delete, "2026-03-28T19:00:00+00:00".into()),
                (Phase::Create, "2026-03-29T04:30:00+00:00".into()),
                (Phase::Delete, "2026-03-29T18:00:00+00:00".into()),
                (Phase::Create, "2026-03-30T04:30:00+00:00".into()),
            ]
        );
    }

    #[test]
    fn slots_follow_fall_back() {
        // 2026-10-25: Berlin goes from UTC+2 back to UTC+1 at 03:00.
        let s = schedule("20:00", "06:30");
        assert_eq!(
            slots_from(&s, "2026-10-24T12:00:00Z", 4),
            vec![
                (Phase::Delete, "2026-10-24T18:00:00+00:00".into()),
                (Phase::Create, "2026-10-25T05:30:00+00:00".into()),
                (Phase::Delete, "2026-10-25T19:00:00+00:00".into()),
                (Phase::Create, "2026-10-26T05:30:00+00:00".into()),
            ]
        );
    }

    #[test]
    fn times_inside_the_changes_happen_once() {
        // 02:30 does not exist on 2026-03-29 (first instant after the gap) and happens twice on
        // 2026-10-25 (the first one). Each day still has exactly one slot per phase.
        let s = schedule("02:30", "07:00");
        assert_eq!(
            slots_from(&s, "2026-03-28T12:00:00Z", 4),
            vec![
                (Phase::Delete, "2026-03-29T01:00:00+00:00".into()),
                (Phase::Create, "2026-03-29T05:00:00+00:00".into()),
                (Phase::Delete, "2026-03-30T00:30:00+00:00".into()),
                (Phase::Create, "2026-03-30T05:00:00+00:00".into()),
            ]
        );
        assert_eq!(
            slots_from(&s, "2026-10-24T12:00:00Z", 4),
            vec![
                (Phase::Delete, "2026-10-25T00:30:00+00:00".into()),
                (Phase::Create, "2026-10-25T06:00:00+00:00".into()),
                (Phase::Delete, "2026-10-26T01:30:00+00:00".into()),
                (Phase::Create, "2026-10-26T06:00:00+00:00".into()),
            ]
        );
    }

    #[test]
    fn latest_slot_is_the_mirror_of_next_slot() {
        let s = schedule("20:00", "06:30");
        let mut now = utc("2026-03-27T12:00:00Z");
        for _ in 0..20 {
            let next = s.next_slot(now);
            assert_eq!(s.latest_slot(next.at), next, "at {}", next.at);
            assert!(s.latest_slot(next.at - chrono::Duration::seconds(1)).at < next.at);
            now = next.at;
        }
        // Exactly at a slot, it is the latest one.
        assert_eq!(
            s.latest_slot(utc("2026-11-23T19:00:00Z")),
            Slot {
                phase: Phase::Delete,
                at: utc("2026-11-23T19:00:00Z")
            }
        );
    }

    #[test]
    fn catch_up_runs_only_the_latest_missed_slot() {
        let s = schedule("20:00", "06:30");
        // The last slot handled was Monday's create; Bobby was down over Monday's delete.
        let watermark = utc("2026-11-23T05:30:00Z");
        // Back at 23:00 Berlin: the delete is still worth running.
        assert_eq!(
            s.due(utc("2026-11-23T22:00:00Z"), watermark),
            Some(Slot {
                phase: Phase::Delete,
                at: utc("2026-11-23T19:00:00Z")
            })
        );
        // Back at 07:00 Tuesday: the create time has passed; the delete is not run, the create is.
        assert_eq!(
            s.due(utc("2026-11-24T06:00:00Z"), watermark),
            Some(Slot {
                phase: Phase::Create,
                at: utc("2026-11-24T05:30:00Z")
            })
        );
        // Nothing missed.
        assert_eq!(s.due(utc("2026-11-23T12:00:00Z"), watermark), None);
        assert_eq!(s.due(utc("2026-11-23T19:00:00Z"), utc("2026-11-23T19:00:00Z")), None);
    }

    #[test]
    fn nights_are_named_by_their_delete() {
        let s = schedule("20:00", "06:30");
        let create = Slot {
            phase: Phase::Create,
            at: utc("2026-11-24T05:30:00Z"),
        };
        assert_eq!(s.night_of(create), date("2026-11-23"));
        let delete = Slot {
            phase: Phase::Delete,
            at: utc("2026-11-23T19:00:00Z"),
        };
        assert_eq!(s.night_of(delete), date("2026-11-23"));
        // Delete after midnight: the create the same morning belongs to that night.
        let s = schedule("01:00", "06:30");
        let create = Slot {
            phase: Phase::Create,
            at: utc("2026-11-24T05:30:00Z"),
        };
        assert_eq!(s.night_of(create), date("2026-11-24"));
    }

    #[test]
    fn resume_deadline_is_the_other_phase() {
        let s = schedule("20:00", "06:30");
        assert_eq!(
            s.resume_until(Phase::Delete, utc("2026-11-23T19:00:00Z")),
            utc("2026-11-24T05:30:00Z")
        );
        assert_eq!(
            s.resume_until(Phase::Create, utc("2026-11-24T05:30:00Z")),
            utc("2026-11-24T19:00:00Z")
        );
    }

    fn env(name: &str, state: EnvState, keep: bool) -> EnvView {
        EnvView {
            name: name.parse().unwrap(),
            state,
            preserved_until: None,
            holder: None,
            keep_on_weekends: keep,
        }
    }

    fn decisions(p: &[Planned]) -> Vec<(&str, Decision)> {
        p.iter().map(|x| (x.name.as_str(), x.decision.clone())).collect()
    }

    #[test]
    fn weekends_and_holidays_keep_weekend_keep_environments_keep_on_weekends_first() {
        let s = schedule("20:00", "06:30");
        let envs = vec![
            env("env-1", EnvState::Deleted, false),
            env("env-2", EnvState::Deleted, true),
            env("env-3", EnvState::Deleted, false),
            env("env-4", EnvState::Deleted, true),
        ];
        // Monday: everything.
        assert_eq!(
            s.kept_on(date("2026-11-23"), &envs),
            ["env-1", "env-2", "env-3", "env-4"]
        );
        // Saturday, and Christmas Eve (a Thursday, but a holiday): the two keep_on_weekends ones.
        assert_eq!(s.kept_on(date("2026-11-28"), &envs), ["env-2", "env-4"]);
        assert_eq!(s.kept_on(date("2026-12-24"), &envs), ["env-2", "env-4"]);
        // More to keep than flagged: the others follow in config order.
        let s3 = Schedule {
            weekend_keep: 3,
            ..s.clone()
        };
        assert_eq!(s3.kept_on(date("2026-11-29"), &envs), ["env-2", "env-4", "env-1"]);
        let s0 = Schedule {
            weekend_keep: 0,
            ..s.clone()
        };
        assert!(s0.kept_on(date("2026-11-29"), &envs).is_empty());

        let now = utc("2026-11-28T05:30:00Z");
        let kept = s.kept_on(date("2026-11-28"), &envs);
        assert_eq!(
            decisions(&plan(Phase::Create, &envs, &kept, None, now)),
            vec![
                ("env-1", Decision::Skip(Skip::NotKept)),
                ("env-2", Decision::Run),
                ("env-3", Decision::Skip(Skip::NotKept)),
                ("env-4", Decision::Run),
            ]
        );
    }

    #[test]
    fn phases_skip_preserved_gandalf_and_what_is_already_there() {
        let now = utc("2026-11-23T19:00:00Z");
        let mut envs = vec![
            env("env-1", EnvState::Ready, false),
            env("env-2", EnvState::Ready, false),
            env("env-3", EnvState::Deleted, false),
            env("env-4", EnvState::Faulted, false),
            env("verify-1", EnvState::Ready, false),
            env("env-6", EnvState::Ready, false),
        ];
        envs[0].preserved_until = Some(now + chrono::Duration::hours(12));
        envs[4].holder = Some(Holder::Gandalf);
        // A preservation that ended is no preservation.
        envs[5].preserved_until = Some(now);
        let all: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            decisions(&plan(Phase::Delete, &envs, &all, None, now)),
            vec![
                (
                    "env-1",
                    Decision::Skip(Skip::Preserved(now + chrono::Duration::hours(12)))
                ),
                ("env-2", Decision::Run),
                ("env-3", Decision::Skip(Skip::AlreadyDown)),
                ("env-4", Decision::Run),
                ("verify-1", Decision::Skip(Skip::Gandalf)),
                ("env-6", Decision::Run),
            ]
        );
        assert_eq!(
            decisions(&plan(Phase::Create, &envs, &all, None, now)),
            vec![
                (
                    "env-1",
                    Decision::Skip(Skip::Preserved(now + chrono::Duration::hours(12)))
                ),
                ("env-2", Decision::Skip(Skip::AlreadyUp)),
                ("env-3", Decision::Run),
                ("env-4", Decision::Run),
                ("verify-1", Decision::Skip(Skip::Gandalf)),
                ("env-6", Decision::Skip(Skip::AlreadyUp)),
            ]
        );
        // Named by an admin: run whatever its state, but never over a preservation or Gandalf.
        assert_eq!(
            decisions(&plan(Phase::Create, &envs, &[], Some("env-2"), now)),
            vec![("env-2", Decision::Run)]
        );
        assert_eq!(
            decisions(&plan(Phase::Delete, &envs, &all, Some("env-1"), now))[0].1,
            Decision::Skip(Skip::Preserved(now + chrono::Duration::hours(12)))
        );
        assert_eq!(
            decisions(&plan(Phase::Delete, &envs, &all, Some("verify-1"), now))[0].1,
            Decision::Skip(Skip::Gandalf)
        );
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(120));
        let caps: Vec<u64> = (1..=8).map(|n| backoff_cap(n, initial, max).as_secs()).collect();
        assert_eq!(caps, [2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(backoff_cap(1000, initial, max), max);
        assert_eq!(backoff(3, initial, max, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, initial, max, 0.5), Duration::from_secs(4));
        assert!(backoff(3, initial, max, 0.999_999) < Duration::from_secs(8));
        assert_eq!(backoff(3, initial, max, 7.0), Duration::from_secs(8), "clamped");
    }
}
