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
//!
//! Least connections and p2c see load: the requests in flight to each
//! backend, summed over every worker's counter slot in the region (each
//! worker writes only its own, cache-line apart), which the caller passes as
//! [`Load`]. Least connections takes the fewest in flight per unit of weight,
//! ties broken from the shared round-robin turn. P2c draws two candidates at
//! random and takes the one whose (in flight + 1) × recent response time
//! (an exponentially weighted moving average this worker keeps per backend
//! id) per unit of weight is lower.
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
    /// p2c: moving average of response times (µs) by backend id.
    ewma_us: [u64; MAX_BACKENDS],
}

/// What the load-aware strategies see of a candidate: its backend id and
/// the requests in flight to it (all workers).
pub trait Load {
    fn id(&self, pos: usize) -> usize;
    fn inflight(&self, pos: usize) -> u64;
}

/// Weight of a new observation in the p2c moving average (of 8).
const EWMA_NEW_EIGHTHS: u64 = 2;
/// The response time a backend is assumed to have before any is observed.
const EWMA_START_US: u64 = 1_000;

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
            ewma_us: [EWMA_START_US; MAX_BACKENDS],
        }
    }

    /// A response head from backend `id` came `us` after the request went
    /// (p2c's moving average).
    #[inline]
    pub fn observe(&mut self, id: usize, us: u64) {
        if let Some(e) = self.ewma_us.get_mut(id) {
            *e = (*e * (8 - EWMA_NEW_EIGHTHS) + us.max(1) * EWMA_NEW_EIGHTHS) / 8;
        }
    }

    /// A backend id taken into use by another backend starts afresh.
    pub fn forget(&mut self, id: usize) {
        if let Some(e) = self.ewma_us.get_mut(id) {
            *e = EWMA_START_US;
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
    pub fn pick(
        &mut self,
        weights: &[u16],
        ok: u64,
        rr: &AtomicU64,
        load: &impl Load,
    ) -> Option<usize> {
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
            Strategy::Random => self.random_of(ok),
            Strategy::LeastConnections => {
                // Fewest in flight per unit of weight: compare a/wa < b/wb
                // as a*wb < b*wa (no division); ties go to the first from
                // the shared round-robin turn.
                let start = (rr.fetch_add(1, Relaxed) % n as u64) as usize;
                let mut best: Option<(usize, u64, u64)> = None;
                for i in (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| ok & (1 << i) != 0)
                {
                    let (f, w) = (load.inflight(i), weights[i].max(1) as u64);
                    if best.is_none_or(|(_, bf, bw)| f * bw < bf * w) {
                        best = Some((i, f, w));
                    }
                }
                best?.0
            }
            Strategy::P2c => {
                let a = self.random_of(ok);
                let rest = ok & !(1 << a);
                if rest == 0 {
                    return Some(a);
                }
                let b = self.random_of(rest);
                let cost = |i: usize| {
                    let e = self.ewma_us[load.id(i).min(MAX_BACKENDS - 1)];
                    // (in flight + 1) × response time, per unit of weight;
                    // as cost_a/w_a vs cost_b/w_b, cross-multiplied.
                    (
                        (load.inflight(i) + 1) as u128 * e as u128,
                        weights[i].max(1) as u128,
                    )
                };
                let ((ca, wa), (cb, wb)) = (cost(a), cost(b));
                if ca * wb <= cb * wa {
                    a
                } else {
                    b
                }
            }
        })
    }

    /// A position drawn uniformly among the bits of `ok` (not empty).
    fn random_of(&mut self, ok: u64) -> usize {
        let k = (self.next_random() % ok.count_ones() as u64) as u32;
        let mut bits = ok;
        for _ in 0..k {
            bits &= bits - 1;
        }
        bits.trailing_zeros() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing in flight anywhere.
    struct NoLoad;
    impl Load for NoLoad {
        fn id(&self, pos: usize) -> usize {
            pos
        }
        fn inflight(&self, _pos: usize) -> u64 {
            0
        }
    }

    /// In flight per position (id = position).
    struct Inflight(Vec<u64>);
    impl Load for Inflight {
        fn id(&self, pos: usize) -> usize {
            pos
        }
        fn inflight(&self, pos: usize) -> u64 {
            self.0[pos]
        }
    }

    #[test]
    fn least_connections_takes_the_fewest_per_weight_ties_in_turn() {
        let mut b = Balancer::new(Strategy::LeastConnections, 1);
        let rr = AtomicU64::new(0);
        assert_eq!(
            b.pick(&[1, 1, 1], 0b111, &rr, &Inflight(vec![3, 1, 2])),
            Some(1)
        );
        // Weight 4 with 4 in flight is as loaded as weight 1 with 1.
        assert_eq!(b.pick(&[4, 1], 0b11, &rr, &Inflight(vec![3, 1])), Some(0));
        // Not a candidate (tried, down): never chosen.
        assert_eq!(
            b.pick(&[1, 1, 1], 0b101, &rr, &Inflight(vec![3, 0, 2])),
            Some(2)
        );
        // Ties: round robin from the shared turn.
        let rr = AtomicU64::new(0);
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick(&[1, 1], 0b11, &rr, &Inflight(vec![2, 2])).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn p2c_prefers_the_faster_and_the_less_loaded_of_two() {
        let rr = AtomicU64::new(0);
        let mut b = Balancer::new(Strategy::P2c, 9);
        for _ in 0..50 {
            b.observe(0, 1_000);
            b.observe(1, 50_000);
        }
        // Two candidates: always the faster one at equal load.
        for _ in 0..100 {
            assert_eq!(b.pick(&[1, 1], 0b11, &rr, &Inflight(vec![0, 0])), Some(0));
        }
        // 60 in flight on the fast one outweighs 50x its response time.
        assert_eq!(b.pick(&[1, 1], 0b11, &rr, &Inflight(vec![60, 0])), Some(1));
        // One candidate: that one.
        assert_eq!(b.pick(&[1, 1], 0b10, &rr, &Inflight(vec![0, 0])), Some(1));
        // Among many equal ones every one gets picked.
        let mut seen = 0u64;
        let mut b = Balancer::new(Strategy::P2c, 5);
        for _ in 0..200 {
            seen |= 1 << b.pick(&[1; 4], 0b1111, &rr, &Inflight(vec![0; 4])).unwrap();
        }
        assert_eq!(seen, 0b1111);
        assert_eq!(b.pick(&[1; 4], 0, &rr, &NoLoad), None);
    }

    fn seq(strategy: Strategy, weights: &[u16], n: usize) -> String {
        let mut b = Balancer::new(strategy, 7);
        let rr = AtomicU64::new(0);
        let all = (1u64 << weights.len()) - 1;
        (0..n)
            .map(|_| (b'a' + b.pick(weights, all, &rr, &NoLoad).unwrap() as u8) as char)
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
                w.pick(&[1, 1], 0b11, &rr, &NoLoad).unwrap()
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
            assert_eq!(b.pick(&[1, 1, 1], 0b010, &rr, &NoLoad), Some(1));
        }
        assert_eq!(b.pick(&[1, 1, 1], 0, &rr, &NoLoad), None);
    }

    #[test]
    fn candidates_skip_tried_and_unhealthy() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let spec = |port| crate::config::BackendSpec {
            host: "127.0.0.1".into(),
            port,
            weight: 1,
            tls: false,
            srv: false,
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
