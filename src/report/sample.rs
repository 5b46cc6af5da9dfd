//! CPU and memory of instances, sampled from /proc only when a reader asks.
//!
//! Memory is the summed RSS of the instance's process group at the time of the request. CPU % is
//! the group's CPU time over the window since the previous sample of that group (kept here with
//! its time), or since the process started for the first sample; a sample younger than
//! `MIN_WINDOW` is not replaced, its percentage is reported again, so that two quick requests do
//! not report 0 %. 100 % is one core. Invariant: no background work; nothing is read from /proc
//! unless `sample` is called, and entries of groups that are gone are dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::os::proc;

/// The shortest window a new CPU percentage is computed over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Prev {
    ticks: u64,
    at: Instant,
    percent: f64,
}

/// What one instance uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// The instance's process is stopped by a signal (state `T` in /proc): it runs no code.
    pub paused: bool,
}

/// Keeps the previous sample of each process group.
#[derive(Debug, Default)]
pub struct Sampler {
    prev: HashMap<i32, Prev>,
}

impl Sampler {
    /// Usage of each running group: `(pgid, process start in Unix ms)`.
    pub fn sample(&mut self, groups: &[(i32, Option<u64>)], now_ms: u64) -> HashMap<i32, Usage> {
        let pgids: Vec<i32> = groups.iter().map(|g| g.0).collect();
        let read = proc::group_usage(&pgids);
        let now = Instant::now();
        let hz = proc::clock_ticks() as f64;
        self.prev.retain(|pgid, _| read.contains_key(pgid));
        let mut out = HashMap::new();
        for &(pgid, started) in groups {
            let Some(u) = read.get(&pgid) else { continue };
            let percent = match self.prev.get(&pgid) {
                Some(p) if now.duration_since(p.at) < MIN_WINDOW => p.percent,
                Some(p) => {
                    let secs = now.duration_since(p.at).as_secs_f64();
                    percent(u.cpu_ticks.saturating_sub(p.ticks), hz, secs)
                }
                None => {
                    let secs = started
                        .map(|s| now_ms.saturating_sub(s) as f64 / 1000.0)
                        .unwrap_or(0.0);
                    percent(u.cpu_ticks, hz, secs)
                }
            };
            let keep = self
                .prev
                .get(&pgid)
                .is_some_and(|p| now.duration_since(p.at) < MIN_WINDOW);
            if !keep {
                self.prev.insert(
                    pgid,
                    Prev {
                        ticks: u.cpu_ticks,
                        at: now,
                        percent,
                    },
                );
            }
            out.insert(
                pgid,
                Usage {
                    cpu_percent: percent,
                    memory_bytes: u.rss_bytes,
                    paused: u.leader_stopped,
                },
            );
        }
        out
    }
}

/// `ticks` of CPU over `secs` of wall time, as a percentage of one core, rounded to 0.1.
fn percent(ticks: u64, hz: f64, secs: f64) -> f64 {
    if secs <= 0.0 || hz <= 0.0 {
        return 0.0;
    }
    ((ticks as f64 / hz) / secs * 1000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentage_of_one_core() {
        assert_eq!(percent(100, 100.0, 1.0), 100.0);
        assert_eq!(percent(25, 100.0, 2.0), 12.5);
        assert_eq!(percent(5, 100.0, 0.0), 0.0);
    }

    #[test]
    fn samples_own_group_and_forgets_gone_ones() {
        // SAFETY: getpgrp has no preconditions.
        let g = unsafe { libc::getpgrp() };
        let mut s = Sampler::default();
        let u = s.sample(&[(g, Some(0)), (i32::MAX, None)], 1);
        assert!(u[&g].memory_bytes > 0);
        assert!(!u.contains_key(&i32::MAX));
        assert!(s.prev.contains_key(&g) && s.prev.len() == 1);
        s.sample(&[], 1);
        assert!(s.prev.is_empty());
    }
}
