//! Zipf-distributed keys and the offline hit-ratio comparison (quick_cache against a
//! plain LRU on one trace), in the manner of Pingora's `bench_hit_ratio`.

use std::collections::HashMap;

use serde::Serialize;

/// xorshift64*: small, fast, deterministic — the same trace on every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ids `0..n` (id 0 the most popular), exponent `s`, sampled by inverting the CDF.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` keys.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// One id.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

/// A plain LRU over a slab-backed doubly linked list: the textbook baseline.
struct Lru {
    cap: usize,
    map: HashMap<u64, usize>,
    nodes: Vec<(u64, usize, usize)>,
    head: usize,
    tail: usize,
}

const NIL: usize = usize::MAX;

impl Lru {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::with_capacity(cap),
            nodes: Vec::with_capacity(cap),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (_, prev, next) = self.nodes[i];
        if prev != NIL {
            self.nodes[prev].2 = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next].1 = prev;
        } else {
            self.tail = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].1 = NIL;
        self.nodes[i].2 = self.head;
        if self.head != NIL {
            self.nodes[self.head].1 = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// Looks `key` up; inserts it on a miss. Returns whether it was a hit.
    fn access(&mut self, key: u64) -> bool {
        if let Some(&i) = self.map.get(&key) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        let i = if self.nodes.len() < self.cap {
            self.nodes.push((key, NIL, NIL));
            self.nodes.len() - 1
        } else {
            let victim = self.tail;
            self.unlink(victim);
            self.map.remove(&self.nodes[victim].0);
            self.nodes[victim].0 = key;
            victim
        };
        self.map.insert(key, i);
        self.push_front(i);
        false
    }
}

/// Hit ratios of both caches at one capacity.
#[derive(Debug, Clone, Serialize)]
pub struct HitRatioRow {
    /// Capacity as a share of the key space.
    pub capacity_pct: f64,
    /// Capacity in entries.
    pub capacity: usize,
    /// quick_cache (S3-FIFO-like, as larder-store's L1).
    pub quick_cache: f64,
    /// Plain LRU.
    pub lru: f64,
}

/// Replays one Zipf trace of `requests` over `keys` keys through both caches at several
/// capacities.
pub fn hit_ratios(keys: usize, s: f64, requests: usize, pcts: &[f64]) -> Vec<HitRatioRow> {
    let zipf = Zipf::new(keys, s);
    let mut rng = Rng::new(42);
    let trace: Vec<u64> = (0..requests).map(|_| zipf.sample(&mut rng)).collect();
    pcts.iter()
        .map(|&pct| {
            let cap = ((keys as f64 * pct / 100.0) as usize).max(1);
            let qc = quick_cache::unsync::Cache::<u64, ()>::new(cap);
            let mut qc = qc;
            let mut lru = Lru::new(cap);
            let (mut qh, mut lh) = (0usize, 0usize);
            for &k in &trace {
                if qc.get(&k).is_some() {
                    qh += 1;
                } else {
                    qc.insert(k, ());
                }
                lh += usize::from(lru.access(k));
            }
            HitRatioRow {
                capacity_pct: pct,
                capacity: cap,
                quick_cache: qh as f64 / requests as f64,
                lru: lh as f64 / requests as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let mut l = Lru::new(2);
        assert!(!l.access(1));
        assert!(!l.access(2));
        assert!(l.access(1));
        assert!(!l.access(3)); // evicts 2
        assert!(l.access(1));
        assert!(!l.access(2));
    }

    #[test]
    fn zipf_favours_low_ids() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(1);
        let zeros = (0..10_000).filter(|_| z.sample(&mut rng) == 0).count();
        // P(0) = 1 / H(1000) ≈ 0.134.
        assert!((1100..1600).contains(&zeros), "{zeros}");
    }
}
