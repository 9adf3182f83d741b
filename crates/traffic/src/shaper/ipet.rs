//! The iPET step: one device's slotted cover from perturbation rows, pushed frame by frame, no
//! look-ahead.
//!
//! [`IpetShaper`] holds the device's running *active period* (real frames less than
//! `active_gap` apart), its position in the period's grid of `omega` slots (aligned to the
//! period's first frame) and the [`RowSource`] it reads one row per slot from. In:
//! [`IpetShaper::arrive`] for each real frame (any direction; real frames pass unchanged, iPET
//! never holds them). Out: [`IpetCover`] frames (time, direction, size), handed to a callback in
//! time order:
//! - `arrive(t)`: a frame `active_gap` or more after the period's last one closes the period
//!   (all its remaining cover, its last slot cut short at `last + active_gap`) and starts a new
//!   one at `t`; otherwise the period's cover before `t`;
//! - `due(until)`: the cover before `until` for a live gateway's timer (only slots that end before
//!   `last + active_gap`, which no later frame can change; once `until` reaches that end the
//!   period is closed);
//! - `finish()`: the end of the trace closes the period.
//!
//! The simulator's slotted mode ([`crate::simulate::Mode::Slotted`]) drives it with `arrive` per
//! packet and `finish`; a gateway adds `due` on its timer. The one difference a gateway sees: the
//! period's last, shortened slot is known only when the period ends, so its cover comes late.

use super::RowSource;
use crate::{error::Result, packet::Direction};

/// A cover frame of iPET: when, which direction, its size (bytes; whole).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpetCover {
    pub time_ns: i64,
    pub direction: Direction,
    pub size: f64,
}

/// What an [`IpetShaper`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpetStats {
    /// Rows read (one per slot while they last).
    pub rows_used: u64,
    /// Slots after the rows ran out (no cover).
    pub slots_without_cover: u64,
    /// Time covered: the closed periods' spans, each from its first frame to `active_gap` after
    /// its last.
    pub active_ns: i64,
}

/// One slot's cover in slotted mode.
///
/// Placement: the slot's `m` incoming dummies at `s + (4j+1)*w/(4m)` and its `n` outgoing ones at
/// `s + (4j+3)*w/(4n)` (`s` the slot start, `w` its width, integer nanoseconds rounded down).
/// Spreading them evenly, rather than bursting them at one tick, keeps each packet strictly
/// inside its slot (the offsets run from w/(4m) to w - w/(4m) < w), so a feature extractor whose
/// slots are aligned to the period's first packet counts exactly the row the generator produced,
/// and it looks like traffic rather than a machine-gun burst at a tick. The quarter offsets keep
/// incoming and outgoing dummies of equal count from sharing timestamps.
struct SlotCover {
    start: i64,
    width: i64,
    row: [i32; 4],
    next_in: i32,
    next_out: i32,
}

impl SlotCover {
    #[inline]
    fn time(&self, j: i32, count: i32, quarter: i64) -> i64 {
        let num = (4 * i128::from(j) + i128::from(quarter)) * i128::from(self.width);
        self.start + (num / (4 * i128::from(count))) as i64
    }

    #[inline]
    fn size(j: i32, count: i32, bytes: i32) -> f64 {
        f64::from(bytes / count + i32::from(j < bytes % count))
    }

    /// The next dummy: (time, direction, size); incoming first on a tie.
    #[inline]
    fn peek(&self) -> Option<(i64, Direction, f64)> {
        let [ip, ib, op, ob] = self.row;
        let a = (self.next_in < ip)
            .then(|| (self.time(self.next_in, ip, 1), Direction::In, Self::size(self.next_in, ip, ib)));
        let b = (self.next_out < op)
            .then(|| (self.time(self.next_out, op, 3), Direction::Out, Self::size(self.next_out, op, ob)));
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
            (x, y) => x.or(y),
        }
    }

    #[inline]
    fn advance(&mut self, d: Direction) {
        match d {
            Direction::In => self.next_in += 1,
            Direction::Out => self.next_out += 1,
        }
    }
}

struct Period {
    start: i64,
    last: i64,
    next_slot: i64,
    slot: Option<SlotCover>,
}

/// One device's iPET cover (see the module doc).
pub struct IpetShaper<'r> {
    omega: i64,
    gap: i64,
    rows: Box<dyn RowSource + 'r>,
    exhausted: bool,
    period: Option<Period>,
    stats: IpetStats,
}

impl<'r> IpetShaper<'r> {
    /// Slots of `omega_ns`, periods split at gaps of `active_gap_ns` (`0 < omega <= gap`).
    /// The rows: owned (a gateway's, fetched) or lent (`&mut rows`, as the simulator does).
    pub fn new(rows: impl RowSource + 'r, omega_ns: i64, active_gap_ns: i64) -> Self {
        Self {
            omega: omega_ns,
            gap: active_gap_ns,
            rows: Box::new(rows),
            exhausted: false,
            period: None,
            stats: IpetStats::default(),
        }
    }

    pub fn stats(&self) -> IpetStats {
        self.stats
    }

    /// A real frame at `time_ns` (in time order): the cover before it, or the closed period's.
    pub fn arrive(&mut self, time_ns: i64, out: &mut dyn FnMut(IpetCover) -> Result<()>) -> Result<()> {
        let t = time_ns;
        match self.period.take() {
            Some(mut p) if t - p.last < self.gap => {
                p.last = t;
                let r = self.cover(&mut p, t, false, out);
                self.period = Some(p);
                r?;
            }
            previous => {
                if let Some(mut p) = previous {
                    self.close(&mut p, out)?;
                }
                self.period = Some(Period { start: t, last: t, next_slot: 0, slot: None });
            }
        }
        Ok(())
    }

    /// The cover due before `until_ns` that no later frame can change (see the module doc).
    pub fn due(&mut self, until_ns: i64, out: &mut dyn FnMut(IpetCover) -> Result<()>) -> Result<()> {
        let Some(mut p) = self.period.take() else { return Ok(()) };
        if until_ns >= p.last + self.gap {
            return self.close(&mut p, out);
        }
        // Only slots that end by the period's present end are full whatever comes next.
        let safe = (p.last + self.gap - self.omega).min(until_ns);
        let r = self.cover(&mut p, safe, false, out);
        self.period = Some(p);
        r
    }

    /// Closes the running period (the end of the trace).
    pub fn finish(&mut self, out: &mut dyn FnMut(IpetCover) -> Result<()>) -> Result<()> {
        match self.period.take() {
            Some(mut p) => self.close(&mut p, out),
            None => Ok(()),
        }
    }

    fn close(&mut self, p: &mut Period, out: &mut dyn FnMut(IpetCover) -> Result<()>) -> Result<()> {
        self.cover(p, i64::MAX, true, out)?;
        self.stats.active_ns += p.last + self.gap - p.start;
        Ok(())
    }

    /// Emits the period's cover: everything before `limit`, or, when `closing`, all of it up to
    /// `last + gap`.
    fn cover(
        &mut self,
        p: &mut Period,
        limit: i64,
        closing: bool,
        out: &mut dyn FnMut(IpetCover) -> Result<()>,
    ) -> Result<()> {
        let end = p.last + self.gap;
        loop {
            if let Some(slot) = &mut p.slot {
                while let Some((t, d, size)) = slot.peek() {
                    if !closing && t >= limit {
                        return Ok(());
                    }
                    out(IpetCover { time_ns: t, direction: d, size })?;
                    slot.advance(d);
                }
                p.slot = None;
            }
            let s = p.start + p.next_slot * self.omega;
            if s >= end || (!closing && s >= limit) {
                return Ok(());
            }
            p.next_slot += 1;
            let row = if self.exhausted { None } else { self.rows.next_row()? };
            match row {
                Some(row) => {
                    self.stats.rows_used += 1;
                    let width = self.omega.min(end - s);
                    p.slot = Some(SlotCover { start: s, width, row, next_in: 0, next_out: 0 });
                }
                None => {
                    self.exhausted = true;
                    self.stats.slots_without_cover += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::FixedRows;

    const MS: i64 = 1_000_000;

    fn rows() -> FixedRows {
        FixedRows::new((0..2_000).map(|k| [k % 3, 30 * (k % 3), (k + 1) % 2, 70]).collect()).expect("rows")
    }

    /// Cover of frames at `times`, with `due` called at `ticks` in between (a gateway's timer).
    fn drive(times: &[i64], ticks: &[i64]) -> Vec<(i64, bool, u64)> {
        let mut r = rows();
        let mut s = IpetShaper::new(&mut r, 100 * MS, 5_000 * MS);
        let mut out = Vec::new();
        let mut push = |c: IpetCover| {
            out.push((c.time_ns, c.direction == Direction::In, c.size as u64));
            Ok(())
        };
        let mut ticks = ticks.iter().peekable();
        for &t in times {
            while let Some(&&k) = ticks.peek().filter(|&&&k| k <= t) {
                s.due(k, &mut push).expect("due");
                ticks.next();
            }
            s.arrive(t, &mut push).expect("arrive");
        }
        for &k in ticks {
            s.due(k, &mut push).expect("due");
        }
        s.finish(&mut push).expect("finish");
        out
    }

    #[test]
    fn a_gateways_timer_gets_the_simulators_cover_in_time_and_never_looks_ahead() {
        let times: Vec<i64> = [0, 300, 2_900, 4_000, 12_000, 12_050, 30_000].iter().map(|&t| t * MS).collect();
        let plain = drive(&times, &[]);
        let ticks: Vec<i64> = (0..400).map(|k| k * 97 * MS).collect();
        let timed = drive(&times, &ticks);
        assert_eq!(plain, timed);
        assert!(plain.windows(2).all(|w| w[0].0 <= w[1].0));
        // Cover handed out by `due(k)` lies before k.
        let mut s = IpetShaper::new(rows(), 100 * MS, 5_000 * MS);
        s.arrive(0, &mut |_| Ok(())).expect("arrive");
        let mut latest = 0;
        s.due(2_345 * MS, &mut |c| {
            latest = latest.max(c.time_ns);
            Ok(())
        })
        .expect("due");
        assert!(latest > 2_000 * MS && latest < 2_345 * MS, "{latest}");
        assert_eq!(s.stats().active_ns, 0);
        s.due(5_000 * MS, &mut |_| Ok(())).expect("close");
        assert_eq!(s.stats().active_ns, 5_000 * MS);
    }
}
