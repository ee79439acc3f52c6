//! The results store: which finished jobs the queue still remembers, the
//! bytes their results hold, and which were evicted to stay within the
//! results budget (`--results-budget`).
//!
//! It owns the bookkeeping only; the jobs themselves stay in the queue's
//! map of jobs, and every method returns the ids the caller must drop from
//! there. Only finished jobs enter the store: running and queued ones are
//! never evicted.
//! A finished job leaves it in one of three ways:
//!
//! - evicted, oldest first, as soon as the bytes held exceed the budget; a
//!   small record of its id (a tombstone) stays, so that fetching it answers
//!   "evicted" rather than a 404 indistinguishable from a typo;
//! - expired, past `keep_for`, or beyond `keep_jobs` finished jobs (results
//!   and tombstones counted together, so tombstones are bounded by the same
//!   count and never outlive the time the results would have been kept);
//! - never otherwise.
//!
//! Evictions always take the oldest results, so tombstones are always older
//! than every kept result: expiry takes them first.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A finished job whose results are still held.
#[derive(Debug)]
struct Kept {
    id: String,
    finished: Instant,
    bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Results {
    budget: u64,
    keep_jobs: usize,
    keep_for: Duration,
    /// Oldest first.
    kept: VecDeque<Kept>,
    /// Sum of `kept[..].bytes`.
    held: u64,
    /// Evicted jobs, oldest first, with the time they finished.
    tombstones: VecDeque<(Instant, String)>,
    evicted_ids: HashSet<String>,
    evictions: u64,
}

impl Results {
    pub(crate) fn new(budget: u64, keep_jobs: usize, keep_for: Duration) -> Results {
        Results {
            budget,
            keep_jobs,
            keep_for,
            kept: VecDeque::new(),
            held: 0,
            tombstones: VecDeque::new(),
            evicted_ids: HashSet::new(),
            evictions: 0,
        }
    }

    /// Record a job that finished at `now` holding `bytes` of results.
    /// Returns the ids whose results must go: the oldest ones while the
    /// total is over the budget (the new job itself last, if it alone is
    /// larger), then those past `keep_for` or beyond `keep_jobs`.
    pub(crate) fn finished(&mut self, id: String, bytes: u64, now: Instant) -> Vec<String> {
        self.held += bytes;
        self.kept.push_back(Kept {
            id,
            finished: now,
            bytes,
        });
        let mut gone = Vec::new();
        while self.held > self.budget {
            let Some(k) = self.kept.pop_front() else {
                break;
            };
            self.held -= k.bytes;
            self.evictions += 1;
            self.evicted_ids.insert(k.id.clone());
            self.tombstones.push_back((k.finished, k.id.clone()));
            gone.push(k.id);
        }
        gone.extend(self.expire(now));
        gone
    }

    /// Forget what is past `keep_for` or beyond `keep_jobs`, tombstones
    /// first (they are the oldest). Returns the ids of the kept results
    /// forgotten (tombstones have no job left to drop).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired = |t: Instant| now.duration_since(t) >= self.keep_for;
        while let Some((t, _)) = self.tombstones.front() {
            if self.tombstones.len() + self.kept.len() > self.keep_jobs || expired(*t) {
                if let Some((_, id)) = self.tombstones.pop_front() {
                    self.evicted_ids.remove(&id);
                }
            } else {
                break;
            }
        }
        let mut gone = Vec::new();
        while let Some(k) = self.kept.front() {
            if self.tombstones.len() + self.kept.len() > self.keep_jobs || expired(k.finished) {
                self.held -= k.bytes;
                if let Some(k) = self.kept.pop_front() {
                    gone.push(k.id);
                }
            } else {
                break;
            }
        }
        gone
    }

    /// Whether `id`'s results were evicted (and it would still be
    /// remembered otherwise).
    pub(crate) fn was_evicted(&self, id: &str) -> bool {
        self.evicted_ids.contains(id)
    }

    /// Bytes held by the kept results.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Results evicted since start.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn oldest_evicted_first_and_never_over_budget() {
        let mut r = Results::new(100, 1000, HOUR);
        let t = Instant::now();
        assert!(r.finished("a".into(), 40, t).is_empty());
        assert!(r.finished("b".into(), 40, t).is_empty());
        assert_eq!(r.held(), 80);
        // 120 > 100: a goes.
        assert_eq!(r.finished("c".into(), 40, t), ids(&["a"]));
        assert_eq!(r.held(), 80);
        // 150 > 100: b, then c (80 + 70 - 40 = 110 is still over).
        assert_eq!(r.finished("d".into(), 70, t), ids(&["b", "c"]));
        assert_eq!(r.held(), 70);
        assert!(r.was_evicted("a") && r.was_evicted("b") && r.was_evicted("c"));
        assert!(!r.was_evicted("d") && !r.was_evicted("nope"));
        assert_eq!(r.evictions(), 3);
    }

    #[test]
    fn a_result_alone_over_the_budget_is_evicted_too() {
        let mut r = Results::new(100, 1000, HOUR);
        let t = Instant::now();
        r.finished("a".into(), 10, t);
        assert_eq!(r.finished("big".into(), 101, t), ids(&["a", "big"]));
        assert_eq!(r.held(), 0);
        assert!(r.was_evicted("big"));
        // Exactly the budget fits.
        assert!(r.finished("fits".into(), 100, t).is_empty());
        assert_eq!(r.held(), 100);
    }

    #[test]
    fn zero_budget_keeps_nothing() {
        let mut r = Results::new(0, 1000, HOUR);
        let t = Instant::now();
        assert_eq!(r.finished("a".into(), 1, t), ids(&["a"]));
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn keep_jobs_counts_tombstones_and_takes_them_first() {
        let mut r = Results::new(100, 3, HOUR);
        let t = Instant::now();
        r.finished("a".into(), 60, t);
        assert_eq!(r.finished("b".into(), 60, t), ids(&["a"]));
        assert!(r.finished("c".into(), 10, t).is_empty());
        // a (tombstone), b, c, d: 4 > 3, the tombstone goes first.
        assert!(r.finished("d".into(), 10, t).is_empty());
        assert!(!r.was_evicted("a"), "a is forgotten, no longer 'evicted'");
        // b, c, d, e: the oldest kept result is forgotten (not evicted).
        assert_eq!(r.finished("e".into(), 10, t), ids(&["b"]));
        assert!(!r.was_evicted("b"));
        assert_eq!(r.held(), 30);
        assert_eq!(r.evictions(), 1);
    }

    #[test]
    fn keep_for_expires_results_and_tombstones() {
        let mut r = Results::new(100, 1000, Duration::from_secs(10));
        let t = Instant::now();
        r.finished("a".into(), 60, t);
        r.finished("b".into(), 60, t + Duration::from_secs(5));
        assert!(r.was_evicted("a"));
        assert!(r.expire(t + Duration::from_secs(9)).is_empty());
        assert!(r.was_evicted("a"));
        // a's tombstone is as old as a would have been.
        assert!(r.expire(t + Duration::from_secs(10)).is_empty());
        assert!(!r.was_evicted("a"));
        assert_eq!(r.expire(t + Duration::from_secs(15)), ids(&["b"]));
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn tombstones_stay_bounded() {
        let mut r = Results::new(10, 50, HOUR);
        let t = Instant::now();
        for i in 0..10_000 {
            r.finished(format!("{i}"), 11, t);
        }
        assert_eq!(r.evictions(), 10_000);
        assert!(r.tombstones.len() <= 50 && r.evicted_ids.len() <= 50);
        assert!(r.was_evicted("9999") && !r.was_evicted("0"));
    }
}
