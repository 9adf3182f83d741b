//! What the shaper asks of a defense. The decisions themselves live in the data plane
//! (`ipet_traffic::shaper`), the same code the simulator runs; this module adapts them to live
//! frames.

use ipet_traffic::Direction;

/// Something the defense wants on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Emit {
    /// A cover frame for `device` in `direction` carrying `size` bytes, due at `at_ns`;
    /// `mirrors_ns` the receive time of the real frame it copies (0: none known).
    Cover { device: usize, direction: Direction, size: u32, at_ns: i64, mirrors_ns: i64 },
    /// Send held real frame number `seq` (arrivals of the device and direction counted from 0
    /// since the configuration was taken) at `at_ns`.
    Release { device: usize, direction: Direction, seq: u64, at_ns: i64 },
}

impl Emit {
    pub fn at_ns(&self) -> i64 {
        match self {
            Emit::Cover { at_ns, .. } | Emit::Release { at_ns, .. } => *at_ns,
        }
    }

    pub fn set_at_ns(&mut self, t: i64) {
        match self {
            Emit::Cover { at_ns, .. } | Emit::Release { at_ns, .. } => *at_ns = t,
        }
    }
}

/// One slot's decision for one set, for the decision log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotRecord {
    pub set: String,
    /// Slot index on the home grid.
    pub slot: i64,
    /// The slot of the grid in which its frames go on the wire (the same slot, or the next one
    /// for a shaper running one slot behind).
    pub emitted_slot: i64,
    /// Target per direction: [in packets, in bytes, out packets, out bytes].
    pub target: [u64; 4],
    pub cover: u32,
    pub released: u32,
}

/// A live defense, owned by the timing thread (the data plane's step is not `Send`: it is built
/// and driven on that one thread). Calls come in time order: `arrive` as frames are seen,
/// `end_slot` at each boundary of the home grid (slot k ends at origin + (k+1) omega).
pub trait Engine {
    fn name(&self) -> &'static str;
    /// The home grid starts: slot 0 at `origin_ns`.
    fn start(&mut self, origin_ns: i64) -> anyhow::Result<()>;
    /// A real frame of `device` arrived at `t_ns` (kernel time). Slots it passes are closed
    /// first (their emissions into `out`).
    fn arrive(
        &mut self,
        device: usize,
        direction: Direction,
        size: u32,
        t_ns: i64,
        out: &mut Vec<Emit>,
        log: &mut Vec<SlotRecord>,
    );
    /// Closes every slot up to and including `slot`: cover up to the targets, releases.
    fn end_slot(&mut self, slot: i64, out: &mut Vec<Emit>, log: &mut Vec<SlotRecord>);
}

/// Forwards everything, emits nothing: measures the testbed itself.
pub struct PassThrough;

impl Engine for PassThrough {
    fn name(&self) -> &'static str {
        "pass-through"
    }

    fn start(&mut self, _: i64) -> anyhow::Result<()> {
        Ok(())
    }

    fn arrive(&mut self, _: usize, _: Direction, _: u32, _: i64, _: &mut Vec<Emit>, _: &mut Vec<SlotRecord>) {}

    fn end_slot(&mut self, _: i64, _: &mut Vec<Emit>, _: &mut Vec<SlotRecord>) {}
}
