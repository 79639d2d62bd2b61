//! Backend health: a bitmap (1 = healthy) and consecutive-result counters.
//!
//! Passive checking only, for now: `unhealthy_threshold` failures in a row
//! take a backend out; after `probe_interval_ms` it is given one trial
//! request, and `healthy_threshold` successes bring it back. The state is
//! made of atomics in a `#[repr(C)]` block so that it can move into the
//! shared-memory region unchanged when workers become processes.
#![forbid(unsafe_code)]

use crate::config::{HealthSettings, MAX_BACKENDS};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

#[repr(C, align(64))]
pub struct HealthState {
    /// Bit i set: backend i is healthy.
    bitmap: AtomicU64,
    fails: [AtomicU32; MAX_BACKENDS],
    oks: [AtomicU32; MAX_BACKENDS],
    /// Monotonic ms of the last failure, for the trial-request interval.
    last_fail_ms: [AtomicU64; MAX_BACKENDS],
}

impl HealthState {
    /// All `count` backends start healthy.
    pub fn new(count: usize) -> HealthState {
        let bits = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        HealthState {
            bitmap: AtomicU64::new(bits),
            fails: std::array::from_fn(|_| AtomicU32::new(0)),
            oks: std::array::from_fn(|_| AtomicU32::new(0)),
            last_fail_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// In place (the state lives in the shared region): backends
    /// `0..count` healthy, every counter zero.
    pub fn reset(&self, count: usize) {
        let bits = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        for i in 0..MAX_BACKENDS {
            self.fails[i].store(0, Relaxed);
            self.oks[i].store(0, Relaxed);
            self.last_fail_ms[i].store(0, Relaxed);
        }
        self.bitmap.store(bits, Relaxed);
    }

    #[inline]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.bitmap.load(Relaxed) & (1 << i) != 0
    }

    /// Healthy, or unhealthy long enough ago to deserve a trial request.
    #[inline]
    pub fn eligible(&self, i: usize, now_ms: u64, s: &HealthSettings) -> bool {
        self.is_healthy(i)
            || now_ms.saturating_sub(self.last_fail_ms[i].load(Relaxed)) >= s.probe_interval_ms
    }

    pub fn healthy_count(&self, count: usize) -> usize {
        let mask = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        (self.bitmap.load(Relaxed) & mask).count_ones() as usize
    }

    /// Records a failed request or connect; true if this took the backend down.
    pub fn record_failure(&self, i: usize, now_ms: u64, s: &HealthSettings) -> bool {
        self.oks[i].store(0, Relaxed);
        self.last_fail_ms[i].store(now_ms, Relaxed);
        let n = self.fails[i].fetch_add(1, Relaxed) + 1;
        if n >= s.unhealthy_threshold && self.is_healthy(i) {
            self.bitmap.fetch_and(!(1 << i), Relaxed);
            return true;
        }
        false
    }

    /// Records a success; true if this brought the backend back up.
    #[inline]
    pub fn record_success(&self, i: usize, s: &HealthSettings) -> bool {
        if self.is_healthy(i) {
            if self.fails[i].load(Relaxed) != 0 {
                self.fails[i].store(0, Relaxed);
            }
            return false;
        }
        self.fails[i].store(0, Relaxed);
        let n = self.oks[i].fetch_add(1, Relaxed) + 1;
        if n >= s.healthy_threshold {
            self.bitmap.fetch_or(1 << i, Relaxed);
            self.oks[i].store(0, Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let s = HealthSettings::default();
        let h = HealthState::new(2);
        assert_eq!(h.healthy_count(2), 2);
        assert!(!h.record_failure(1, 1000, &s));
        assert!(!h.record_failure(1, 1000, &s));
        assert!(h.record_failure(1, 1000, &s));
        assert!(!h.is_healthy(1) && !h.eligible(1, 2000, &s) && h.eligible(1, 6000, &s));
        assert!(!h.record_success(1, &s));
        assert!(h.record_success(1, &s));
        assert_eq!(h.healthy_count(2), 2);
    }
}
