//! A small seeded random number generator (SplitMix64) and the distributions fleets draw from.
//!
//! The simulation must replay byte for byte from its seed, independently of turmoil's own RNG
//! and of task scheduling: every simulated client gets its own stream, forked from the scenario
//! seed by a stable label, so adding a fleet does not shift the draws of another.

/// SplitMix64: tiny, fast, and good enough for workload generation (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// An independent stream derived from this seed and a label (fleet index, client index...).
    pub fn fork(seed: u64, label: u64) -> Self {
        let mut mixer = Rng::new(seed ^ label.wrapping_mul(0xA076_1D64_78BD_642F));
        Rng::new(mixer.next_u64() ^ label)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniformly drawn from [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer uniformly drawn from [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// An exponential draw with the given mean (memoryless arrivals).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A log-normal draw with the given median and shape `sigma` (heavy-tailed revisit gaps).
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, proptest};

    #[test]
    fn streams_replay_and_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::fork(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::fork(7, 1).next_u64(), Rng::fork(7, 2).next_u64());
        assert_ne!(Rng::fork(7, 1).next_u64(), Rng::fork(8, 1).next_u64());
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut r = Rng::new(42);
        let n = 20_000;
        let mean = (0..n).map(|_| r.exponential(10.0)).sum::<f64>() / n as f64;
        assert!((mean - 10.0).abs() < 0.5, "mean {mean}");
    }

    #[test]
    fn lognormal_median_is_close() {
        let mut r = Rng::new(43);
        let mut v: Vec<f64> = (0..20_001).map(|_| r.lognormal(5.0, 1.0)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((median - 5.0).abs() < 0.3, "median {median}");
    }

    proptest! {
        #[test]
        fn draws_are_in_range(seed in any::<u64>(), n in 0u64..1000) {
            let mut r = Rng::new(seed);
            let u = r.unit();
            prop_assert!((0.0..1.0).contains(&u));
            prop_assert!(r.below(n) < n.max(1));
            prop_assert!(r.exponential(1.0) >= 0.0);
            prop_assert!(r.lognormal(1.0, 0.5) > 0.0);
        }
    }
}
