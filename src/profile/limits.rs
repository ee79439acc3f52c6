//! What callers may do to a profile's [`Limits`]: the limits a request asks
//! for on top of the profile's ([`LimitOverrides`]: `sandbox exec`'s flags,
//! a job step's `limits`), and the three ways they combine, written once
//! for every front door: replace (`overlay`, the command line's owner may
//! loosen), tighten only (`tighten`, an API client), and a server's maxima
//! (`cap`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Limits;

/// Limits asked for on top of a profile's; `None` keeps the profile's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitOverrides {
    pub cpu_time: Option<Duration>,
    pub wall_time: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub output: Option<u64>,
    pub file_size: Option<u64>,
    pub open_files: Option<u64>,
    pub stack: Option<u64>,
}

/// A limit asked above the one in force ([`Limits::tighten`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{asked} exceeds the maximum of {max} (limits may only be tightened)")]
pub struct LimitTooHigh {
    /// The limit's key (`cpu_time`, `memory`, ...).
    pub key: &'static str,
    pub asked: String,
    pub max: String,
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn num(n: u64) -> String {
    n.to_string()
}

fn min_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

fn tighten_one<T: PartialOrd + Copy>(
    cur: &mut Option<T>,
    want: Option<T>,
    key: &'static str,
    show: fn(T) -> String,
) -> Result<(), LimitTooHigh> {
    if let Some(w) = want {
        if let Some(c) = *cur
            && w > c
        {
            return Err(LimitTooHigh {
                key,
                asked: show(w),
                max: show(c),
            });
        }
        *cur = Some(w);
    }
    Ok(())
}

impl Limits {
    /// The request's values replace these (`sandbox exec --time-limit`:
    /// the caller owns the machine and may loosen too).
    pub fn overlay(&mut self, o: &LimitOverrides) {
        let set = |cur: &mut Option<u64>, v: Option<u64>| {
            if v.is_some() {
                *cur = v;
            }
        };
        if o.cpu_time.is_some() {
            self.cpu_time = o.cpu_time;
        }
        if o.wall_time.is_some() {
            self.wall_time = o.wall_time;
        }
        set(&mut self.memory, o.memory);
        set(&mut self.pids, o.pids);
        set(&mut self.output, o.output);
        set(&mut self.file_size, o.file_size);
        set(&mut self.open_files, o.open_files);
        set(&mut self.stack, o.stack);
    }

    /// The request's values replace these only where they are no looser
    /// (an API client's step limits); the first one above its ceiling is
    /// the error. Checked in a fixed order, so the error is reproducible.
    pub fn tighten(&mut self, o: &LimitOverrides) -> Result<(), LimitTooHigh> {
        tighten_one(&mut self.cpu_time, o.cpu_time, "cpu_time", secs)?;
        tighten_one(&mut self.wall_time, o.wall_time, "wall_time", secs)?;
        tighten_one(&mut self.memory, o.memory, "memory", num)?;
        tighten_one(&mut self.pids, o.pids, "pids", num)?;
        tighten_one(&mut self.output, o.output, "output", num)?;
        tighten_one(&mut self.file_size, o.file_size, "file_size", num)?;
        tighten_one(&mut self.open_files, o.open_files, "open_files", num)?;
        tighten_one(&mut self.stack, o.stack, "stack", num)
    }

    /// Each limit no looser than `max`'s (a server's maxima); where this
    /// has none, `max`'s.
    pub fn cap(&mut self, max: &Limits) {
        self.cpu_time = min_opt(self.cpu_time, max.cpu_time);
        self.wall_time = min_opt(self.wall_time, max.wall_time);
        self.memory = min_opt(self.memory, max.memory);
        self.pids = min_opt(self.pids, max.pids);
        self.output = min_opt(self.output, max.output);
        self.file_size = min_opt(self.file_size, max.file_size);
        self.open_files = min_opt(self.open_files, max.open_files);
        self.stack = min_opt(self.stack, max.stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_tighten_refuses_more_cap_takes_the_smaller() {
        let profile = Limits {
            cpu_time: Some(Duration::from_secs(10)),
            memory: Some(512 << 20),
            ..Limits::default()
        };
        let more = LimitOverrides {
            cpu_time: Some(Duration::from_secs(20)),
            pids: Some(8),
            ..LimitOverrides::default()
        };
        let mut l = profile.clone();
        l.overlay(&more);
        assert_eq!(l.cpu_time, Some(Duration::from_secs(20)));
        assert_eq!((l.memory, l.pids), (Some(512 << 20), Some(8)));

        let mut l = profile.clone();
        let e = l.tighten(&more).unwrap_err();
        assert_eq!(e.key, "cpu_time");
        assert_eq!(
            e.to_string(),
            "20.000s exceeds the maximum of 10.000s (limits may only be tightened)"
        );
        let less = LimitOverrides {
            memory: Some(64 << 20),
            pids: Some(8),
            ..LimitOverrides::default()
        };
        l.tighten(&less).expect("tighter");
        assert_eq!((l.memory, l.pids), (Some(64 << 20), Some(8)));

        let mut l = profile;
        l.cap(&Limits {
            cpu_time: Some(Duration::from_secs(2)),
            pids: Some(16),
            ..Limits::default()
        });
        assert_eq!(l.cpu_time, Some(Duration::from_secs(2)));
        assert_eq!((l.memory, l.pids), (Some(512 << 20), Some(16)));
    }
}
