//! What the shaper asks of a defense. The decisions themselves live in the data plane
//! (`ipet_traffic`), the same code the simulator runs; this module adapts them to live frames.

use ipet_traffic::Direction;

/// What to do with a real frame of a shaped device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on now.
    Forward,
    /// Keep it: a later [`Emit::Release`] sends it.
    Hold,
}

/// Something the defense wants on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Emit {
    /// A cover frame for `device` in `direction` carrying `size` bytes, due at `at_ns`; `mirrors_ns`
    /// the receive time of the real frame it copies (0: none).
    Cover { device: usize, direction: Direction, size: u32, at_ns: i64, mirrors_ns: i64 },
    /// Send the oldest `count` held real frames of `device` in `direction` at `at_ns`.
    Release { device: usize, direction: Direction, count: u32, at_ns: i64 },
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
    pub members: Vec<String>,
}

/// A live defense. Calls come in time order: `on_real` as frames arrive, `on_slot_end` at each
/// slot boundary of the home grid (slot k ends at origin + (k+1) omega).
pub trait Engine: Send {
    fn name(&self) -> &'static str;
    /// A real frame of `device` arrived at `t_ns` (kernel time). Emissions due at once (mirrored
    /// copies) go into `out`.
    fn on_real(&mut self, device: usize, direction: Direction, size: u32, t_ns: i64, out: &mut Vec<Emit>) -> Verdict;
    /// Slot `slot` ended: its remaining emissions (cover up to the target, releases).
    fn on_slot_end(&mut self, slot: i64, out: &mut Vec<Emit>, log: &mut Vec<SlotRecord>);
}

/// Forwards everything, emits nothing: measures the testbed itself.
pub struct PassThrough;

impl Engine for PassThrough {
    fn name(&self) -> &'static str {
        "pass-through"
    }

    fn on_real(&mut self, _: usize, _: Direction, _: u32, _: i64, _: &mut Vec<Emit>) -> Verdict {
        Verdict::Forward
    }

    fn on_slot_end(&mut self, _: i64, _: &mut Vec<Emit>, _: &mut Vec<SlotRecord>) {}
}
