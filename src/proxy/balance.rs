//! Choosing a backend: round robin, smooth weighted round robin (nginx's
//! algorithm), random. Each pick skips backends already tried for this
//! request and backends that are down, unless nothing else is left.
#![forbid(unsafe_code)]

use crate::config::{HealthSettings, Strategy, MAX_BACKENDS};
use crate::health::HealthState;

pub struct Balancer {
    strategy: Strategy,
    rr: usize,
    /// Smooth WRR running weights.
    current: [i64; MAX_BACKENDS],
    rng: u64,
}

impl Balancer {
    pub fn new(strategy: Strategy, seed: u64) -> Balancer {
        Balancer {
            strategy,
            rr: 0,
            current: [0; MAX_BACKENDS],
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Picks a backend among `weights.len()` that is not in `tried` (bit i =
    /// backend i). Prefers eligible (healthy, or due a trial) backends; if
    /// none is, any untried one, so a fully-down pool still gets a chance.
    pub fn pick(
        &mut self,
        weights: &[u16],
        tried: u64,
        health: &HealthState,
        settings: &HealthSettings,
        now_ms: u64,
    ) -> Option<usize> {
        let n = weights.len();
        let untried = |i: usize| tried & (1 << i) == 0;
        let mut ok: u64 = 0;
        for i in 0..n {
            if untried(i) && health.eligible(i, now_ms, settings) {
                ok |= 1 << i;
            }
        }
        if ok == 0 {
            for i in 0..n {
                if untried(i) {
                    ok |= 1 << i;
                }
            }
        }
        if ok == 0 {
            return None;
        }
        Some(match self.strategy {
            Strategy::RoundRobin => {
                let start = self.rr % n;
                self.rr = self.rr.wrapping_add(1);
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
                    if best.map_or(true, |b| self.current[i] > self.current[b]) {
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
        let h = HealthState::new(weights.len());
        let s = HealthSettings::default();
        (0..n)
            .map(|_| (b'a' + b.pick(weights, 0, &h, &s, 0).unwrap() as u8) as char)
            .collect()
    }

    #[test]
    fn round_robin_alternates() {
        assert_eq!(seq(Strategy::RoundRobin, &[1, 1, 1], 7), "abcabca");
    }

    #[test]
    fn smooth_weighted_matches_nginx() {
        assert_eq!(
            seq(Strategy::WeightedRoundRobin, &[5, 1, 1], 14),
            "aabacaaaabacaa"
        );
    }

    #[test]
    fn random_covers_all_and_skips_tried() {
        let s = seq(Strategy::Random, &[1, 1, 1], 300);
        assert!(s.contains('a') && s.contains('b') && s.contains('c'));
        let mut b = Balancer::new(Strategy::Random, 3);
        let h = HealthState::new(3);
        for _ in 0..50 {
            assert_eq!(
                b.pick(&[1, 1, 1], 0b101, &h, &HealthSettings::default(), 0),
                Some(1)
            );
        }
        assert_eq!(
            b.pick(&[1, 1, 1], 0b111, &h, &HealthSettings::default(), 0),
            None
        );
    }

    #[test]
    fn skips_unhealthy_unless_nothing_else() {
        let s = HealthSettings::default();
        let h = HealthState::new(2);
        for _ in 0..3 {
            h.record_failure(0, 10, &s);
        }
        let mut b = Balancer::new(Strategy::RoundRobin, 1);
        for _ in 0..4 {
            assert_eq!(b.pick(&[1, 1], 0, &h, &s, 20), Some(1));
        }
        assert_eq!(b.pick(&[1, 1], 0b10, &h, &s, 20), Some(0));
    }
}
