//! Choosing a backend: round robin, smooth weighted round robin (nginx's
//! algorithm), random, among the candidates the worker offers (backends not
//! yet tried for this request and, where there are any, healthy ones; see
//! [`candidates`]).
//!
//! Round robin takes its turn from the region's shared `rr_counter`, so
//! consecutive requests alternate exactly whichever worker serves them.
//! Smooth WRR and random keep their state per worker: each worker spreads its
//! own share of the traffic exactly by weight (WRR) or uniformly (random), so
//! the whole does too, up to one round per worker.
#![forbid(unsafe_code)]

use super::backends::BackendSet;
use crate::config::{HealthSettings, Strategy, MAX_BACKENDS};
use crate::health::HealthState;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Balancer {
    strategy: Strategy,
    /// Smooth WRR running weights, by position in the set.
    current: [i64; MAX_BACKENDS],
    rng: u64,
}

/// Positions in `set` (bit i = `set.at(i)`) a request may go to: not in
/// `tried` (bit = backend id) and eligible (healthy, or with probing off due
/// a trial). Empty when every backend is down: the caller answers 503 at once
/// rather than send traffic to backends known to be down.
pub fn candidates(
    set: &BackendSet,
    tried: u64,
    health: &HealthState,
    settings: &HealthSettings,
    now_ms: u64,
) -> u64 {
    let mut ok = 0u64;
    for (i, b) in set.iter().enumerate() {
        if tried & (1 << b.id) == 0 && health.eligible(b.id, now_ms, settings) {
            ok |= 1 << i;
        }
    }
    ok
}

impl Balancer {
    pub fn new(strategy: Strategy, seed: u64) -> Balancer {
        Balancer {
            strategy,
            current: [0; MAX_BACKENDS],
            rng: seed | 1,
        }
    }

    /// Forgets per-worker state (after the backend set changed).
    pub fn reset(&mut self, strategy: Strategy) {
        self.strategy = strategy;
        self.current = [0; MAX_BACKENDS];
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Picks a position among `weights.len()` whose bit is set in `ok`.
    pub fn pick(&mut self, weights: &[u16], ok: u64, rr: &AtomicU64) -> Option<usize> {
        let n = weights.len();
        if ok == 0 || n == 0 {
            return None;
        }
        Some(match self.strategy {
            Strategy::RoundRobin => {
                let start = (rr.fetch_add(1, Relaxed) % n as u64) as usize;
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| ok & (1 << i) != 0)?
            }
            Strategy::WeightedRoundRobin => {
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, &weight) in weights.iter().enumerate() {
                    if ok & (1 << i) == 0 {
                        continue;
                    }
                    let w = weight.max(1) as i64;
                    self.current[i] += w;
                    total += w;
                    if best.is_none_or(|b| self.current[i] > self.current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                self.current[b] -= total;
                b
            }
            Strategy::Random => {
                let k = (self.next_random() % ok.count_ones() as u64) as u32;
                let mut bits = ok;
                for _ in 0..k {
                    bits &= bits - 1;
                }
                bits.trailing_zeros() as usize
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(strategy: Strategy, weights: &[u16], n: usize) -> String {
        let mut b = Balancer::new(strategy, 7);
        let rr = AtomicU64::new(0);
        let all = (1u64 << weights.len()) - 1;
        (0..n)
            .map(|_| (b'a' + b.pick(weights, all, &rr).unwrap() as u8) as char)
            .collect()
    }

    #[test]
    fn round_robin_alternates() {
        assert_eq!(seq(Strategy::RoundRobin, &[1, 1, 1], 7), "abcabca");
    }

    #[test]
    fn round_robin_shares_its_turn_between_workers() {
        let rr = AtomicU64::new(0);
        let mut w1 = Balancer::new(Strategy::RoundRobin, 1);
        let mut w2 = Balancer::new(Strategy::RoundRobin, 2);
        let picks: Vec<usize> = (0..6)
            .map(|k| {
                let w = if k % 3 == 0 { &mut w1 } else { &mut w2 };
                w.pick(&[1, 1], 0b11, &rr).unwrap()
            })
            .collect();
        assert_eq!(picks, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn smooth_weighted_matches_nginx() {
        assert_eq!(
            seq(Strategy::WeightedRoundRobin, &[5, 1, 1], 14),
            "aabacaaaabacaa"
        );
    }

    #[test]
    fn random_covers_all_and_keeps_to_candidates() {
        let s = seq(Strategy::Random, &[1, 1, 1], 300);
        assert!(s.contains('a') && s.contains('b') && s.contains('c'));
        let mut b = Balancer::new(Strategy::Random, 3);
        let rr = AtomicU64::new(0);
        for _ in 0..50 {
            assert_eq!(b.pick(&[1, 1, 1], 0b010, &rr), Some(1));
        }
        assert_eq!(b.pick(&[1, 1, 1], 0, &rr), None);
    }

    #[test]
    fn candidates_skip_tried_and_unhealthy() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let spec = |port| crate::config::BackendSpec {
            host: "127.0.0.1".into(),
            port,
            weight: 1,
            tls: false,
        };
        let st = crate::shm::Settings::new(Strategy::RoundRobin, &HealthSettings::default());
        r.publish(
            &super::super::backends::resolve_all(&[spec(1), spec(2)]).unwrap(),
            &st,
        )
        .unwrap();
        let set = BackendSet::load(r);
        let s = HealthSettings::default();
        let h = HealthState::new(2);
        assert_eq!(candidates(&set, 0, &h, &s, 20), 0b11);
        for _ in 0..3 {
            h.record_failure(0, 10, &s);
        }
        assert_eq!(candidates(&set, 0, &h, &s, 20), 0b10);
        assert_eq!(
            candidates(&set, 0b10, &h, &s, 20),
            0,
            "the only one left is down: none (503)"
        );
        assert_eq!(candidates(&set, 0b11, &h, &s, 20), 0);
    }
}
