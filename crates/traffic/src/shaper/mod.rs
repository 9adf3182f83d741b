//! The defenses' decisions, once, for every driver: the simulator, the CLI, the service's jobs
//! and the live gateway.
//!
//! - [`SetShaper`] (module `step`): one anonymity set's per-slot decisions, pushed slot by slot
//!   with no look-ahead: arrivals in, emissions and holds out;
//! - [`IpetShaper`] (module `ipet`): one device's slotted iPET cover from perturbation rows,
//!   pushed frame by frame;
//! - [`TargetSource`]s (module `targets`): where a set's per-slot targets come from (the
//!   [`Supersequence`], the [`Regulator`]; target rows in [`crate::simulate::TargetRows`]);
//! - [`SizeDistribution`]: cover sizes drawn from the set's real sizes;
//! - [`LagSettings`] (module `lag`): reaction lag per direction, the deployment (what the
//!   gateway can hold and emit) and the countermeasures (held release, random order, one slot
//!   behind);
//! - the random streams of a set, derived from the home's seed ([`set_rng`], [`release_rng`]).
//!
//! Nothing here reads files, opens sockets or keeps the clock: callers give times.

mod ipet;
mod lag;
mod sizes;
mod step;
mod targets;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub use self::ipet::{IpetCover, IpetShaper, IpetStats};
pub use self::lag::{Deployment, Lag, LagBin, LagSettings, ReleaseKnobs};
pub use self::sizes::SizeDistribution;
pub use self::step::{Emission, EmissionKind, PadSettings, SetShaper, SetShaperParts, SlotDecisions};
pub use self::targets::{
    AlignedSupersequence, Pending, Regulator, RegulatorSettings, SlotView, Supersequence, Target, TargetRowsStats,
    TargetSource, supersequence,
};

/// Where perturbation rows `[in_packets, in_bytes, out_packets, out_bytes]` come from, one at a
/// time, in schedule order (iPET's rows for a device, or a set's target rows). `Ok(None)`: the
/// schedule is used up. A fixed schedule: [`crate::simulate::FixedRows`]; generators drawn on
/// demand implement it above the data plane.
pub trait RowSource {
    fn next_row(&mut self) -> crate::error::Result<Option<[i32; 4]>>;
}

/// A borrowed source reads the source it borrows (so a driver can lend its rows to a step).
impl<R: RowSource + ?Sized> RowSource for &mut R {
    fn next_row(&mut self) -> crate::error::Result<Option<[i32; 4]>> {
        (**self).next_row()
    }
}

/// The random stream of set number `index`: from `seed` (reproducible) or the operating system.
/// The mirrored-cover stream of a set is `set_rng(seed, index)`.
pub fn set_rng(seed: Option<u64>, index: usize) -> ChaCha20Rng {
    match seed {
        Some(s) => {
            let mut rng = ChaCha20Rng::seed_from_u64(s);
            rng.set_stream(index as u64 + 1);
            rng
        }
        None => ChaCha20Rng::from_os_rng(),
    }
}

/// The lag draws and emission orders of set number `index`: a stream apart from the cover's, so
/// that a deployment's lag changes when frames go, never which frames go.
pub fn release_rng(seed: Option<u64>, index: usize) -> ChaCha20Rng {
    set_rng(seed.map(|s| s.rotate_left(41) ^ 0x1A65_EED0), index)
}
