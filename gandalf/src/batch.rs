//! Batches and bisection as pure rules (SPEC §5.6): which PRs the next candidate carries, what a
//! green or red outcome means for each of them, and how big a batch should be.
//!
//! The queue worker keeps one piece of knowledge between candidates: the PRs at the front of the
//! queue that are *known to hold a culprit* (a red candidate of more than one PR). Everything else in
//! the queue is unknown. From that:
//!
//! - with nothing known, the next candidate is the front of the queue, up to the batch size;
//! - with a known-red group of several PRs, its first half is verified alone; green lands it and the
//!   rest is still known red (so it is split again without being verified whole); red makes the
//!   first half the known-red group and the rest goes back to being unknown, in its place;
//! - a PR is rejected only by a red candidate holding it alone — inference never rejects anyone.
//!
//! [`throughput`] computes, for independent red probability `r`, the expected PRs landed per
//! verification of these rules with a full queue; [`auto_size`] picks the batch size that maximises
//! it. With halving the rules reach 87–93 % of the information limit `(1 − r) / H(r)` at the best
//! size (the unit tests pin that), which is what `batch_size = "auto"` aims for.

use serde::{Deserialize, Deserializer};
use shared::ids::PrNumber;

/// `batch_size` in a `[[repos]]` table: a number, or `"auto"` (up to `max_batch_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    Auto,
}

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize::Fixed(1)
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a number of PRs (1 or more) or \"auto\"")]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if (1..=100).contains(&n) => Ok(BatchSize::Fixed(n as usize)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "batch_size = {n}: use 1 to 100 PRs per candidate, or \"auto\""
            ))),
            Raw::S(s) if s == "auto" => Ok(BatchSize::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "batch_size = \"{s}\": use a number of PRs, or \"auto\""
            ))),
        }
    }
}

/// `max_batch_size` when a config does not say.
pub const DEFAULT_MAX_BATCH: usize = 16;

/// The red rate assumed before a repository has history: one PR in twenty.
const PRIOR_RED: f64 = 0.05;
/// How many PRs' worth of weight the prior carries against the observed outcomes.
const PRIOR_WEIGHT: f64 = 10.0;

/// The estimated probability that a PR is red, from the recent outcomes of PRs (landed and
/// rejected by a solo red run), pulled towards [`PRIOR_RED`] while there are few.
pub fn red_rate(landed: u32, rejected: u32) -> f64 {
    (f64::from(rejected) + PRIOR_RED * PRIOR_WEIGHT) / (f64::from(landed + rejected) + PRIOR_WEIGHT)
}

/// The batch size for this candidate.
pub fn size_for(setting: BatchSize, max: usize, red: f64) -> usize {
    match setting {
        BatchSize::Fixed(n) => n.max(1),
        BatchSize::Auto => auto_size(red, max),
    }
}

/// How close to the best modelled throughput a smaller batch must come to be preferred.
const GOOD_ENOUGH: f64 = 0.97;

/// The smallest size in `1..=max` that lands within 3 % of the most PRs per verification at red
/// rate `r`. The curve is nearly flat around its best, so the largest size wins on paper by a
/// hair while costing the most when `r` is underestimated (a 16-PR batch at a real 20 % lands
/// 0.73 PRs per verification against 0.97 for 4); the smaller size is the robust choice.
pub fn auto_size(r: f64, max: usize) -> usize {
    let max = max.max(1);
    let best = (1..=max).map(|n| throughput(n, r)).fold(0.0, f64::max);
    (1..=max).find(|n| throughput(*n, r) >= GOOD_ENOUGH * best).unwrap_or(1)
}

/// Expected PRs landed per verification with batches of `n`, each PR independently red with
/// probability `r`, under the rules of this module and a full queue (a renewal argument: each cycle
/// starts with nothing known and ends when nothing is known again).
pub fn throughput(n: usize, r: f64) -> f64 {
    let q = 1.0 - r.clamp(0.0, 1.0);
    if n <= 1 {
        return q;
    }
    // known[k] = (expected landed, expected verifications) from a known-red group of k until
    // nothing is known.
    let mut known = vec![(0.0f64, 0.0f64); n + 1];
    known[1] = (0.0, 1.0); // one PR known red: its solo run rejects it
    for k in 2..=n {
        let a = k.div_ceil(2);
        let b = k - a;
        let denom = 1.0 - q.powi(k as i32);
        let p_green = if denom > 0.0 {
            q.powi(a as i32) * (1.0 - q.powi(b as i32)) / denom
        } else {
            0.0
        };
        let (lb, cb) = known[b];
        let (la, ca) = if a == 1 { (0.0, 0.0) } else { known[a] };
        known[k] = (
            p_green * (a as f64 + lb) + (1.0 - p_green) * la,
            1.0 + p_green * cb + (1.0 - p_green) * ca,
        );
    }
    let p_all = q.powi(n as i32);
    let (l, c) = known[n];
    (p_all * n as f64 + (1.0 - p_all) * l) / (1.0 + (1.0 - p_all) * c)
}

/// The information limit: no strategy with one environment lands more than this many PRs per
/// verification on average (one verification answers one yes/no question).
pub fn information_limit(r: f64) -> f64 {
    if r <= 0.0 || r >= 1.0 {
        return f64::INFINITY;
    }
    let h = -r * r.log2() - (1.0 - r) * (1.0 - r).log2();
    (1.0 - r) / h
}

/// Why a candidate holds the PRs it holds (shown on the control center and in `/gandalf status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The front of the queue, up to the batch size.
    Fresh,
    /// The first half of a group known to hold a culprit.
    Bisect { of: usize },
    /// One PR alone: only such a run can reject it.
    Solo,
}

/// The next candidate: its members in queue order, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub members: Vec<PrNumber>,
    pub step: Step,
}

/// What the worker knows between candidates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knowledge {
    /// PRs at the front of the queue known to hold at least one culprit, in queue order.
    pub known_red: Vec<PrNumber>,
}

/// What an outcome means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub land: Vec<PrNumber>,
    pub reject: Vec<PrNumber>,
    pub knowledge: Knowledge,
}

impl Knowledge {
    /// The next candidate from `queue` (the batchable PRs in queue order), or `None` when empty.
    /// A known-red group that is no longer at the front of the queue (a member was dropped or a
    /// PR jumped ahead) is forgotten: knowledge only holds for the exact group it was learnt on.
    pub fn next(&mut self, queue: &[PrNumber], size: usize) -> Option<Candidate> {
        if queue.is_empty() {
            return None;
        }
        if !self.known_red.is_empty() && !queue.starts_with(&self.known_red) {
            self.known_red.clear();
        }
        let k = self.known_red.len();
        Some(match k {
            0 => {
                let members: Vec<PrNumber> = queue.iter().take(size.max(1)).copied().collect();
                let step = if members.len() == 1 { Step::Solo } else { Step::Fresh };
                Candidate { members, step }
            }
            1 => Candidate {
                members: self.known_red.clone(),
                step: Step::Solo,
            },
            k => {
                let a = k.div_ceil(2);
                Candidate {
                    members: self.known_red[..a].to_vec(),
                    step: if a == 1 { Step::Solo } else { Step::Bisect { of: k } },
                }
            }
        })
    }

    /// What a completed verification of `candidate` means. (An interrupted one is no outcome: do
    /// not call this, verify the same candidate again.)
    pub fn outcome(&self, candidate: &Candidate, green: bool) -> Verdict {
        let members = &candidate.members;
        if green {
            // Whatever of the known-red group was not in this candidate still holds the culprit.
            let rest: Vec<PrNumber> = self
                .known_red
                .iter()
                .filter(|p| !members.contains(p))
                .copied()
                .collect();
            return Verdict {
                land: members.clone(),
                reject: vec![],
                knowledge: Knowledge { known_red: rest },
            };
        }
        if members.len() == 1 {
            // A solo red run: the only kind that rejects. The rest of a group it came from is
            // unknown again (there may have been one culprit only).
            return Verdict {
                land: vec![],
                reject: members.clone(),
                knowledge: Knowledge::default(),
            };
        }
        Verdict {
            land: vec![],
            reject: vec![],
            knowledge: Knowledge {
                known_red: members.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prs(ns: &[u64]) -> Vec<PrNumber> {
        ns.iter().map(|n| PrNumber::new(*n).unwrap()).collect()
    }

    /// Runs the rules on a queue where `red` are the culprits; returns (landed, rejected,
    /// verifications, the sizes of the candidates in order).
    fn drive(queue: &[u64], red: &[u64], size: usize) -> (Vec<u64>, Vec<u64>, usize, Vec<usize>) {
        let mut q = prs(queue);
        let mut k = Knowledge::default();
        let (mut landed, mut rejected, mut sizes) = (vec![], vec![], vec![]);
        while let Some(c) = k.next(&q, size) {
            sizes.push(c.members.len());
            let green = !c.members.iter().any(|p| red.contains(&p.get()));
            let v = k.outcome(&c, green);
            q.retain(|p| !v.land.contains(p) && !v.reject.contains(p));
            landed.extend(v.land.iter().map(|p| p.get()));
            rejected.extend(v.reject.iter().map(|p| p.get()));
            k = v.knowledge;
            assert!(sizes.len() < 100, "the rules must end");
        }
        (landed, rejected, sizes.len(), sizes)
    }

    #[test]
    fn a_green_batch_lands_whole() {
        assert_eq!(drive(&[1, 2, 3, 4], &[], 4), (vec![1, 2, 3, 4], vec![], 1, vec![4]));
    }

    #[test]
    fn one_culprit_is_found_by_halving_and_rejected_only_by_its_solo_run() {
        let (landed, rejected, runs, sizes) = drive(&[1, 2, 3, 4, 5, 6, 7, 8], &[6], 8);
        assert_eq!(rejected, vec![6]);
        assert_eq!(landed, vec![1, 2, 3, 4, 5, 7, 8], "innocents land, in queue order");
        // 8 red → 1-4 green (5-8 known red, split unverified) → 5,6 red → 5 alone green
        // → 6 known red alone → solo red → 7,8 green.
        assert_eq!(sizes, vec![8, 4, 2, 1, 1, 2]);
        assert_eq!(runs, 6);
    }

    #[test]
    fn two_culprits_are_both_rejected_and_nobody_else() {
        let (mut landed, rejected, _, _) = drive(&[1, 2, 3, 4, 5, 6, 7, 8], &[2, 7], 8);
        landed.sort();
        assert_eq!(rejected, vec![2, 7]);
        assert_eq!(landed, vec![1, 3, 4, 5, 6, 8]);
    }

    #[test]
    fn a_dropped_member_voids_what_was_known() {
        let mut k = Knowledge {
            known_red: prs(&[1, 2, 3, 4]),
        };
        let c = k.next(&prs(&[1, 3, 4, 5]), 4).unwrap();
        assert_eq!(c.members, prs(&[1, 3, 4, 5]), "2 was dropped: start fresh");
        assert_eq!(c.step, Step::Fresh);
        assert!(k.known_red.is_empty());
    }

    #[test]
    fn throughput_matches_a_simulation_of_the_rules() {
        // A deterministic pseudo-random queue, long enough for the average to settle.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for (n, r) in [(4usize, 0.1f64), (8, 0.05), (2, 0.2)] {
            let queue: Vec<u64> = (1..=8_000).collect();
            let red: Vec<u64> = queue.iter().copied().filter(|_| rnd() < r).collect();
            let red_set: std::collections::HashSet<u64> = red.iter().copied().collect();
            let mut q = prs(&queue);
            let mut k = Knowledge::default();
            let (mut landed, mut runs) = (0usize, 0usize);
            // Stop while the queue is still full, so every candidate could be complete.
            while q.len() > 64 {
                let c = k.next(&q, n).unwrap();
                runs += 1;
                let green = !c.members.iter().any(|p| red_set.contains(&p.get()));
                let v = k.outcome(&c, green);
                q.retain(|p| !v.land.contains(p) && !v.reject.contains(p));
                landed += v.land.len();
                k = v.knowledge;
            }
            let measured = landed as f64 / runs as f64;
            let model = throughput(n, r);
            assert!(
                (measured - model).abs() / model < 0.05,
                "n={n} r={r}: simulated {measured:.3}, model {model:.3}"
            );
        }
    }

    #[test]
    fn auto_reaches_seventy_percent_of_the_information_limit() {
        for r in [0.02, 0.05, 0.10, 0.20] {
            let n = auto_size(r, DEFAULT_MAX_BATCH);
            let ratio = throughput(n, r) / information_limit(r);
            assert!(ratio >= 0.70, "r={r}: n={n} reaches {ratio:.2} of the limit");
        }
        assert_eq!(auto_size(0.0, 16), 16, "nothing fails: the biggest batch");
        assert_eq!(auto_size(0.6, 16), 1, "most candidates fail: one at a time");
        assert!((throughput(1, 0.1) - 0.9).abs() < 1e-9);
        assert!((throughput(16, 0.0) - 16.0).abs() < 1e-9);
    }

    #[test]
    fn red_rate_starts_at_the_prior_and_follows_history() {
        assert!((red_rate(0, 0) - PRIOR_RED).abs() < 1e-9);
        assert!(red_rate(90, 10) > 0.09 && red_rate(90, 10) < 0.1);
    }

    #[test]
    fn batch_size_reads_numbers_and_auto() {
        #[derive(Deserialize)]
        struct T {
            batch_size: BatchSize,
        }
        let t: T = toml::from_str("batch_size = 4").unwrap();
        assert_eq!(t.batch_size, BatchSize::Fixed(4));
        let t: T = toml::from_str("batch_size = \"auto\"").unwrap();
        assert_eq!(t.batch_size, BatchSize::Auto);
        for bad in ["batch_size = 0", "batch_size = \"big\"", "batch_size = 1.5"] {
            assert!(toml::from_str::<T>(bad).is_err(), "{bad}");
        }
    }
}
