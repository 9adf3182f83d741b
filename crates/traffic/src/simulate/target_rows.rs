//! Targets from rows: a set's per-slot targets read from a [`RowSource`] (a learned target
//! generator of the set through `crate::models::GeneratorRows`, or a fixed schedule), in windows.
//!
//! One target stream per set, shared by all its members at the same slot. Rows come in target
//! windows of `slots_per_window` slots (the generator's window: 40 slots of 0.1 s), one row per
//! slot, `[in_packets, in_bytes, out_packets, out_bytes]`:
//! - a window starts at a slot where some member has real traffic pending and no window runs
//!   (so a burst longer than a window runs on in the next one);
//! - FAKE windows start at random times, a Poisson process of `fake_window_rate` per second for
//!   the set (a window due while one runs is absorbed), so that silence is covered at set-level
//!   timing and the start of a window does not by itself reveal real activity;
//! - outside windows the target is zero (real traffic then waits for the next window, which it
//!   starts itself at once, so the wait is at most a slot's worth of arrival);
//! - windows take rows in order, whole windows at a time; a used-up fixed schedule gives zero
//!   targets from then on (counted in [`TargetRowsStats::slots_without_rows`]).
//!
//! Real packets that do not fit a row wait (and leak at the latency budget) as everywhere in
//! pad-to-target; a row whose bytes its packets cannot carry at the set's largest real size is
//! padded as far as it goes (the missing bytes are reported).

use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::RowSource;
use crate::error::{Error, ErrorCode, Result};
use crate::shaper::{SlotView, Target, TargetRowsStats, TargetSource};

/// Knobs of [`TargetRows`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetRowsSettings {
    /// Slots per target window (the generator's window length in slots).
    pub slots_per_window: u32,
    /// Fake target windows per second for the set (Poisson), filling silence.
    pub fake_window_rate: f64,
}

impl Default for TargetRowsSettings {
    fn default() -> Self {
        Self { slots_per_window: 40, fake_window_rate: 1.0 / 60.0 }
    }
}

impl TargetRowsSettings {
    pub fn check(&self) -> Result<()> {
        if self.slots_per_window == 0 {
            return Err(Error::invalid(ErrorCode::InvalidTargetSettings, "slots_per_window must be at least 1"));
        }
        if !(self.fake_window_rate.is_finite() && self.fake_window_rate >= 0.0) {
            return Err(Error::invalid(
                ErrorCode::InvalidTargetSettings,
                format!("fake_window_rate {} per second must be zero or positive", self.fake_window_rate),
            ));
        }
        Ok(())
    }
}

/// A set's targets from rows, in windows (see the module doc).
pub struct TargetRows<'a> {
    rows: Box<dyn RowSource + 'a>,
    settings: TargetRowsSettings,
    /// Chance that a fake window falls due in a slot.
    p_fake: f64,
    rng: ChaCha20Rng,
    /// Slots of the running window still to come.
    left: u32,
    /// Slots until the next fake window is due (u64::MAX: never).
    until_fake: u64,
    exhausted: bool,
    stats: TargetRowsStats,
}

impl<'a> TargetRows<'a> {
    pub fn new(
        rows: Box<dyn RowSource + 'a>,
        settings: TargetRowsSettings,
        omega_ns: i64,
        rng: ChaCha20Rng,
    ) -> Result<Self> {
        settings.check()?;
        let p_fake = (settings.fake_window_rate * omega_ns as f64 / 1e9).min(1.0);
        let mut s = Self {
            rows,
            settings,
            p_fake,
            rng,
            left: 0,
            until_fake: u64::MAX,
            exhausted: false,
            stats: TargetRowsStats::default(),
        };
        s.until_fake = s.draw_gap();
        Ok(s)
    }

    /// Slots before the next fake window falls due (geometric, the slotted Poisson process).
    fn draw_gap(&mut self) -> u64 {
        if self.p_fake <= 0.0 {
            return u64::MAX;
        }
        if self.p_fake >= 1.0 {
            return 0;
        }
        let u: f64 = self.rng.random_range(f64::MIN_POSITIVE..1.0);
        let g = (u.ln() / (1.0 - self.p_fake).ln()).floor();
        if g >= u64::MAX as f64 { u64::MAX } else { g as u64 }
    }

    pub fn stats(&self) -> TargetRowsStats {
        self.stats
    }
}

impl TargetSource for TargetRows<'_> {
    fn target(&mut self, view: &SlotView<'_>) -> Result<[Target; 2]> {
        let fake_due = self.until_fake == 0;
        if fake_due {
            self.until_fake = self.draw_gap();
        } else if self.until_fake != u64::MAX {
            self.until_fake -= 1;
        }
        if self.left == 0 {
            let demand = view.pending.iter().any(|m| m.iter().any(|d| d.packets > 0));
            if demand || fake_due {
                self.left = self.settings.slots_per_window;
                self.stats.windows += 1;
                if !demand {
                    self.stats.fake_windows += 1;
                }
            }
        }
        if self.left == 0 {
            return Ok([Target::default(); 2]);
        }
        self.left -= 1;
        let row = if self.exhausted { None } else { self.rows.next_row()? };
        let Some(r) = row else {
            self.exhausted = true;
            self.stats.slots_without_rows += 1;
            return Ok([Target::default(); 2]);
        };
        self.stats.rows_used += 1;
        let v = |x: i32| u64::try_from(x.max(0)).unwrap_or(0);
        Ok([Target { packets: v(r[0]), bytes: v(r[1]) }, Target { packets: v(r[2]), bytes: v(r[3]) }])
    }

    fn quiet_slots(&self) -> u64 {
        if self.left > 0 { 0 } else { self.until_fake }
    }

    fn skip(&mut self, slots: u64) {
        if self.until_fake != u64::MAX {
            self.until_fake = self.until_fake.saturating_sub(slots);
        }
    }

    fn rows_stats(&self) -> Option<TargetRowsStats> {
        Some(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::FixedRows;
    use super::*;
    use crate::shaper::{Pending, SizeDistribution};

    fn view<'v>(slot: i64, pending: &'v [[Pending; 2]], sizes: &'v [SizeDistribution; 2]) -> SlotView<'v> {
        SlotView { slot, pending, sizes }
    }

    #[test]
    fn windows_start_on_demand_take_rows_in_order_and_end_after_their_slots() {
        let rows: Vec<[i32; 4]> = (0..10).map(|k| [k, 10 * k, 1, 5]).collect();
        let settings = TargetRowsSettings { slots_per_window: 4, fake_window_rate: 0.0 };
        let mut t = TargetRows::new(
            Box::new(FixedRows::new(rows).expect("rows")),
            settings,
            100_000_000,
            ChaCha20Rng::seed_from_u64(1),
        )
        .expect("source");
        let sizes = [SizeDistribution::from_sizes([10]), SizeDistribution::from_sizes([10])];
        let idle = [[Pending::default(); 2]; 2];
        let mut busy = idle;
        busy[1][0] = Pending { packets: 1, bytes: 10 };
        assert_eq!(t.quiet_slots(), u64::MAX);
        assert_eq!(t.target(&view(0, &idle, &sizes)).expect("t"), [Target::default(); 2]);
        let mut got = Vec::new();
        for slot in 1..7 {
            let p = if slot == 1 { &busy } else { &idle };
            got.push(t.target(&view(slot, p, &sizes)).expect("t")[0].packets);
        }
        // A window of 4 from the demand at slot 1 (rows 0..4), then nothing.
        assert_eq!(got, vec![0, 1, 2, 3, 0, 0]);
        // Demand again: the next rows in order; a used-up schedule gives zero targets.
        let mut got = Vec::new();
        for slot in 7..16 {
            got.push(t.target(&view(slot, &busy, &sizes)).expect("t")[0].packets);
        }
        assert_eq!(got, vec![4, 5, 6, 7, 8, 9, 0, 0, 0]);
        assert_eq!(t.stats(), TargetRowsStats { windows: 4, fake_windows: 0, rows_used: 10, slots_without_rows: 3 });
    }

    #[test]
    fn fake_windows_come_at_the_set_rate_in_silence() {
        let settings = TargetRowsSettings { slots_per_window: 40, fake_window_rate: 0.1 };
        let mut t = TargetRows::new(
            Box::new(FixedRows::new(vec![[1, 100, 1, 100]; 1_000_000]).expect("rows")),
            settings,
            100_000_000,
            ChaCha20Rng::seed_from_u64(5),
        )
        .expect("source");
        let sizes = [SizeDistribution::from_sizes([100]), SizeDistribution::from_sizes([100])];
        let idle = [[Pending::default(); 2]; 3];
        // 10,000 s of silence: a fake window is due every 10 s on average, absorbed while one of
        // 4 s runs: about 10000 / (10 + 4) = 714 windows.
        let mut slot = 0;
        while slot < 100_000 {
            let q = t.quiet_slots().min(100_000 - slot as u64);
            if q > 0 {
                t.skip(q);
                slot += q as i64;
                continue;
            }
            t.target(&view(slot, &idle, &sizes)).expect("t");
            slot += 1;
        }
        let s = t.stats();
        assert_eq!(s.windows, s.fake_windows);
        assert!((600..830).contains(&s.windows), "{s:?}");
        assert_eq!(s.rows_used, 40 * s.windows - u64::from(t.left));
        assert!(TargetRowsSettings { slots_per_window: 0, ..settings }.check().is_err());
        assert!(TargetRowsSettings { fake_window_rate: -1.0, ..settings }.check().is_err());
    }
}
