//! The random streams of the crate: ChaCha20, seeded when a caller gives a seed (a reproducible
//! run), else seeded from the operating system (a predictable cover schedule is a broken defense).

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// A noise source: seeded, or from the operating system.
pub fn rng(seed: Option<u64>) -> ChaCha20Rng {
    match seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s),
        None => ChaCha20Rng::from_os_rng(),
    }
}
