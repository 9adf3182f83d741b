//! The sizes of cover packets in pad-to-target mode: drawn from the set's real size distribution
//! of the same direction, so that a dummy's size alone does not tell it from real traffic.

use rand::Rng;

use crate::packet::{Direction, Packet};

/// The empirical distribution of real packet sizes (payload bytes) of one direction of a set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SizeDistribution {
    /// Distinct sizes, ascending, with their cumulative counts.
    sizes: Vec<u32>,
    cumulative: Vec<u64>,
}

impl SizeDistribution {
    pub fn from_sizes(sizes: impl IntoIterator<Item = u32>) -> Self {
        let mut all: Vec<u32> = sizes.into_iter().collect();
        all.sort_unstable();
        let mut d = Self::default();
        for s in all {
            match d.sizes.last() {
                Some(&last) if last == s => *d.cumulative.last_mut().expect("parallel vectors") += 1,
                _ => {
                    let c = d.cumulative.last().copied().unwrap_or(0);
                    d.sizes.push(s);
                    d.cumulative.push(c + 1);
                }
            }
        }
        d
    }

    /// From `(size, count)` pairs (any order; zero counts ignored).
    pub fn from_counts(counts: &[(u32, u64)]) -> Self {
        let mut c: Vec<(u32, u64)> = counts.iter().copied().filter(|&(_, n)| n > 0).collect();
        c.sort_unstable();
        let mut d = Self::default();
        for (s, n) in c {
            match d.sizes.last() {
                Some(&last) if last == s => *d.cumulative.last_mut().expect("parallel vectors") += n,
                _ => {
                    let total = d.cumulative.last().copied().unwrap_or(0);
                    d.sizes.push(s);
                    d.cumulative.push(total + n);
                }
            }
        }
        d
    }

    /// `(size, count)` pairs, sizes ascending.
    pub fn counts(&self) -> Vec<(u32, u64)> {
        let mut prev = 0;
        self.sizes
            .iter()
            .zip(&self.cumulative)
            .map(|(&s, &c)| {
                let n = c - prev;
                prev = c;
                (s, n)
            })
            .collect()
    }

    /// Per direction (index [`Direction::index`]), from packets of any number of devices. A
    /// direction without packets borrows the other one's distribution.
    pub fn per_direction<'a>(packets: impl IntoIterator<Item = &'a Packet>) -> [Self; 2] {
        let (mut inc, mut out) = (Vec::new(), Vec::new());
        for p in packets {
            match p.direction {
                Direction::In => inc.push(p.size),
                Direction::Out => out.push(p.size),
            }
        }
        let (mut i, mut o) = (Self::from_sizes(inc), Self::from_sizes(out));
        if i.is_empty() {
            i = o.clone();
        } else if o.is_empty() {
            o = i.clone();
        }
        [i, o]
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The largest real size: no dummy is larger (0 when empty).
    pub fn max(&self) -> u32 {
        self.sizes.last().copied().unwrap_or(0)
    }

    /// The median real size (0 when empty).
    pub fn median(&self) -> u32 {
        let Some(&n) = self.cumulative.last() else { return 0 };
        let i = self.cumulative.partition_point(|&c| c < n.div_ceil(2));
        self.sizes[i]
    }

    /// One size drawn from the distribution (0 when empty).
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let Some(&n) = self.cumulative.last() else { return 0 };
        let u = rng.random_range(0..n);
        self.sizes[self.cumulative.partition_point(|&c| c <= u)]
    }

    /// `count` sizes summing to exactly `bytes` where the largest size allows it
    /// (`bytes <= count * max`): each drawn from the distribution, then clamped so that the rest
    /// stays reachable; the last one carries what is left. Where `bytes` is out of reach every
    /// size is the maximum (the shortfall is the caller's to count). Appends to `out`.
    pub fn split(&self, count: u32, bytes: u64, rng: &mut impl Rng, out: &mut Vec<u32>) {
        self.split_like(count, bytes, std::iter::empty(), rng, out)
    }

    /// [`split`](Self::split), with the first sizes proposed by `like` (the sizes of real packets
    /// to mirror) instead of drawn: where `like` gives `count` sizes summing to `bytes` they are
    /// kept exactly; the clamping and the last size's remainder are `split`'s.
    pub fn split_like(
        &self,
        count: u32,
        bytes: u64,
        like: impl IntoIterator<Item = u32>,
        rng: &mut impl Rng,
        out: &mut Vec<u32>,
    ) {
        let cap = u64::from(self.max());
        let mut like = like.into_iter();
        let mut left = bytes;
        for j in 0..count {
            let rest = u64::from(count - j - 1);
            let s = if j + 1 == count {
                left.min(cap)
            } else {
                let lo = left.saturating_sub(rest * cap);
                let proposed = like.next().unwrap_or_else(|| self.sample(rng));
                u64::from(proposed).clamp(lo.min(cap), left.min(cap))
            };
            left -= s;
            out.push(s as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    #[test]
    fn samples_follow_the_distribution_and_splits_hit_the_bytes() {
        let d = SizeDistribution::from_sizes([100, 100, 100, 1400]);
        assert_eq!((d.max(), d.median()), (1400, 100));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let draws: Vec<u32> = (0..4000).map(|_| d.sample(&mut rng)).collect();
        let big = draws.iter().filter(|&&s| s == 1400).count();
        assert!(draws.iter().all(|s| [100, 1400].contains(s)));
        assert!((850..1150).contains(&big), "{big}");
        for (count, bytes) in [(1, 77), (3, 300), (5, 2000), (4, 5600), (2, 0), (6, 7)] {
            let mut out = Vec::new();
            d.split(count, bytes, &mut rng, &mut out);
            assert_eq!(out.len(), count as usize);
            assert_eq!(out.iter().map(|&s| u64::from(s)).sum::<u64>(), bytes, "{count} {bytes}");
            assert!(out.iter().all(|&s| s <= 1400));
        }
        // Out of reach: every dummy at the maximum.
        let mut out = Vec::new();
        d.split(2, 5000, &mut rng, &mut out);
        assert_eq!(out, vec![1400, 1400]);
        assert_eq!(SizeDistribution::default().sample(&mut rng), 0);
    }
}
