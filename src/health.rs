//! Backend health: a bitmap (1 = healthy) and consecutive-result counters,
//! by backend id, in the shared region (atomics only, no pointers).
//!
//! Failures count from two sources: requests (connect refused, reset,
//! timeout, invalid response) and active probes. `unhealthy_threshold`
//! failures in a row take a backend out. What brings it back:
//! - probing on (`probe_interval_ms > 0`): `healthy_threshold` probe
//!   successes in a row; a down backend gets no client traffic meanwhile;
//! - probing off: one trial request every [`PASSIVE_RETRY_MS`], claimed by
//!   exactly one worker (a compare-and-swap), and `healthy_threshold`
//!   successful requests.
//!
//! A transition is reported (returns true) to exactly one caller, the one
//! whose atomic operation flipped the bit, so it is logged once.
#![forbid(unsafe_code)]

use crate::config::{HealthSettings, MAX_BACKENDS};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// With probing off: how often a down backend is given one trial request.
pub const PASSIVE_RETRY_MS: u64 = 5_000;

#[repr(C, align(64))]
pub struct HealthState {
    /// Bit i set: backend i is healthy.
    bitmap: AtomicU64,
    fails: [AtomicU32; MAX_BACKENDS],
    oks: [AtomicU32; MAX_BACKENDS],
    /// Probing off: monotonic ms before which no trial request may go to a
    /// down backend (moved forward by the worker that takes the trial).
    next_trial_ms: [AtomicU64; MAX_BACKENDS],
}

fn mask(count: usize) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

impl HealthState {
    /// All `count` backends start healthy.
    pub fn new(count: usize) -> HealthState {
        let h = HealthState {
            bitmap: AtomicU64::new(0),
            fails: std::array::from_fn(|_| AtomicU32::new(0)),
            oks: std::array::from_fn(|_| AtomicU32::new(0)),
            next_trial_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        h.reset(count);
        h
    }

    /// In place (the state lives in the shared region): backends
    /// `0..count` healthy, every counter zero.
    pub fn reset(&self, count: usize) {
        for i in 0..MAX_BACKENDS {
            self.reset_one(i, i < count);
        }
    }

    /// A backend id taken into use (healthy, counters zero) or out of use.
    pub fn reset_one(&self, i: usize, healthy: bool) {
        self.fails[i].store(0, Relaxed);
        self.oks[i].store(0, Relaxed);
        self.next_trial_ms[i].store(0, Relaxed);
        if healthy {
            self.bitmap.fetch_or(1 << i, Relaxed);
        } else {
            self.bitmap.fetch_and(!(1 << i), Relaxed);
        }
    }

    #[inline]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.bitmap.load(Relaxed) & (1 << i) != 0
    }

    /// May get client traffic: healthy, or (probing off) due a trial. A
    /// trial is only offered here; [`claim_trial`](Self::claim_trial) takes it.
    #[inline]
    pub fn eligible(&self, i: usize, now_ms: u64, s: &HealthSettings) -> bool {
        self.is_healthy(i)
            || (s.probe_interval_ms == 0 && now_ms >= self.next_trial_ms[i].load(Relaxed))
    }

    /// A down backend was picked for its trial request: true for exactly one
    /// caller per [`PASSIVE_RETRY_MS`] (the others pick again).
    pub fn claim_trial(&self, i: usize, now_ms: u64) -> bool {
        let due = self.next_trial_ms[i].load(Relaxed);
        now_ms >= due
            && self.next_trial_ms[i]
                .compare_exchange(due, now_ms + PASSIVE_RETRY_MS, Relaxed, Relaxed)
                .is_ok()
    }

    pub fn healthy_count(&self, count: usize) -> usize {
        (self.bitmap.load(Relaxed) & mask(count)).count_ones() as usize
    }

    /// Records a failed request, connect or probe; true if this call took the
    /// backend down.
    pub fn record_failure(&self, i: usize, now_ms: u64, s: &HealthSettings) -> bool {
        self.oks[i].store(0, Relaxed);
        let n = self.fails[i].fetch_add(1, Relaxed).saturating_add(1);
        if n >= s.unhealthy_threshold && self.is_healthy(i) {
            let prev = self.bitmap.fetch_and(!(1 << i), Relaxed);
            if prev & (1 << i) != 0 {
                self.next_trial_ms[i].store(now_ms + PASSIVE_RETRY_MS, Relaxed);
                return true;
            }
        }
        false
    }

    /// Records a successful request; true if this brought the backend back
    /// up. With probing on, only probes bring a backend back.
    #[inline]
    pub fn record_success(&self, i: usize, s: &HealthSettings) -> bool {
        if self.is_healthy(i) {
            if self.fails[i].load(Relaxed) != 0 {
                self.fails[i].store(0, Relaxed);
            }
            return false;
        }
        if s.probe_interval_ms > 0 {
            return false;
        }
        self.count_success(i, s)
    }

    /// Records a successful probe; true if this brought the backend back up.
    pub fn record_probe_success(&self, i: usize, s: &HealthSettings) -> bool {
        if self.is_healthy(i) {
            self.fails[i].store(0, Relaxed);
            return false;
        }
        self.count_success(i, s)
    }

    fn count_success(&self, i: usize, s: &HealthSettings) -> bool {
        self.fails[i].store(0, Relaxed);
        let n = self.oks[i].fetch_add(1, Relaxed).saturating_add(1);
        if n >= s.healthy_threshold {
            self.oks[i].store(0, Relaxed);
            let prev = self.bitmap.fetch_or(1 << i, Relaxed);
            return prev & (1 << i) == 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passive() -> HealthSettings {
        HealthSettings {
            probe_interval_ms: 0,
            ..HealthSettings::default()
        }
    }

    #[test]
    fn passive_thresholds_and_one_trial_per_interval() {
        let s = passive();
        let h = HealthState::new(2);
        assert_eq!(h.healthy_count(2), 2);
        assert!(!h.record_failure(1, 1000, &s));
        assert!(!h.record_failure(1, 1000, &s));
        assert!(h.record_failure(1, 1000, &s), "third failure takes it down");
        assert!(!h.record_failure(1, 1000, &s), "reported once");
        assert!(!h.eligible(1, 2000, &s));
        let due = 1000 + PASSIVE_RETRY_MS;
        assert!(h.eligible(1, due, &s));
        assert!(h.claim_trial(1, due), "one worker takes the trial");
        assert!(!h.claim_trial(1, due), "and no other");
        assert!(!h.eligible(1, due + 1, &s));
        assert!(!h.record_success(1, &s));
        assert!(h.record_success(1, &s), "healthy_threshold successes");
        assert_eq!(h.healthy_count(2), 2);
    }

    #[test]
    fn with_probing_only_probes_bring_a_backend_back() {
        let s = HealthSettings::default();
        assert!(s.probe_interval_ms > 0);
        let h = HealthState::new(1);
        for _ in 0..3 {
            h.record_failure(0, 0, &s);
        }
        assert!(!h.is_healthy(0));
        assert!(!h.eligible(0, u64::MAX, &s), "no trial traffic");
        for _ in 0..5 {
            assert!(!h.record_success(0, &s), "requests do not count");
        }
        assert!(!h.record_probe_success(0, &s));
        assert!(h.record_probe_success(0, &s));
        assert!(h.is_healthy(0));
    }

    #[test]
    fn reset_one_takes_an_id_in_and_out_of_use() {
        let h = HealthState::new(0);
        assert_eq!(h.healthy_count(64), 0);
        h.reset_one(5, true);
        assert!(h.is_healthy(5));
        h.reset_one(5, false);
        assert!(!h.is_healthy(5));
    }
}
