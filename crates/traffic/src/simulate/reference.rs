//! Reference iPET: the published simulator's ticks, defects included, for comparison.

use super::{Emitter, Input, OutputPacket, RowSource, SimSettings};
use crate::{
    error::Result,
    packet::{Direction, Packet},
};

/// The published simulator's ticks of one period.
struct RefPeriod {
    start: i64,
    last: i64,
    /// Next incoming tick index and next outgoing tick index.
    k_in: i64,
    k_out: i64,
}

struct Reference<'r> {
    omega: i64,
    half: i64,
    gap: i64,
    rows: &'r mut dyn RowSource,
    exhausted: bool,
}

impl Reference<'_> {
    /// Emits the ticks before `limit` (ticks never reach `last + gap`).
    fn ticks<S: FnMut(&OutputPacket) -> Result<()>>(
        &mut self,
        p: &mut RefPeriod,
        limit: i64,
        out: &mut Emitter<S>,
    ) -> Result<()> {
        let end = (p.last + self.gap).min(limit);
        loop {
            let t_in = p.start + p.k_in * self.omega;
            let t_out = p.start + self.half + p.k_out * self.omega;
            let (t, d) = if t_in <= t_out { (t_in, Direction::In) } else { (t_out, Direction::Out) };
            if t >= end {
                return Ok(());
            }
            match d {
                Direction::In => p.k_in += 1,
                Direction::Out => p.k_out += 1,
            }
            // The defect: one row iterator for both directions.
            let row = if self.exhausted { None } else { self.rows.next_row()? };
            let Some(row) = row else {
                self.exhausted = true;
                out.slots_without_cover += 1;
                continue;
            };
            out.rows_used += 1;
            let (count, bytes) = match d {
                Direction::In => (row[0], row[1]),
                Direction::Out => (row[2], row[3]),
            };
            // The defect: a zero count still sends one packet.
            let count = count.max(1);
            let size = f64::from(bytes) / f64::from(count);
            for _ in 0..count {
                out.dummy(t, d, size)?;
            }
        }
    }
}

pub(super) fn reference<I: Iterator<Item = Packet>, S: FnMut(&OutputPacket) -> Result<()>>(
    input: &mut Input<I>,
    rows: &mut dyn RowSource,
    settings: &SimSettings,
    out: &mut Emitter<S>,
) -> Result<()> {
    let mut sim = Reference {
        omega: settings.omega_ns,
        half: settings.omega_ns / 2,
        gap: settings.active_gap_ns,
        rows,
        exhausted: false,
    };
    let mut period: Option<RefPeriod> = None;
    // One packet of lookahead: the published loop stops before the last packet.
    let Some(mut held) = input.next()? else {
        return Ok(());
    };
    out.start_ns = Some(held.time_ns);
    while let Some(next) = input.next()? {
        let pkt = std::mem::replace(&mut held, next);
        let t = pkt.time_ns;
        match &mut period {
            // The published split: MORE than the gap apart.
            Some(p) if t - p.last <= sim.gap => {
                p.last = t;
                sim.ticks(p, t, out)?;
            }
            _ => {
                if let Some(mut p) = period.take() {
                    sim.ticks(&mut p, i64::MAX, out)?;
                    out.active_ns += p.last + sim.gap - p.start;
                }
                period = Some(RefPeriod { start: t, last: t, k_in: 0, k_out: 0 });
            }
        }
        out.real(&pkt, t)?;
    }
    if let Some(mut p) = period.take() {
        sim.ticks(&mut p, i64::MAX, out)?;
        out.active_ns += p.last + sim.gap - p.start;
    }
    // The defect: the last real packet is never sent.
    out.dropped += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Mode;
    use super::super::testing::{MS, S, dummies, pkt, reals, run};
    use super::*;

    #[test]
    fn reference_mode_reproduces_the_published_defects() {
        // Ticks: incoming at 0, 100, ... ms; outgoing at 50, 150, ... ms, until 5 s after the
        // last kept packet; one shared row iterator; zero counts forced to 1.
        let rows: Vec<[i32; 4]> = (0..100).map(|k| [k % 2 * 3, 30 + k, 0, 7 + k]).collect();
        let trace = [pkt(0, Direction::In, 10), pkt(S, Direction::Out, 20), pkt(30 * S, Direction::In, 40)];
        let (out, summary, _) = run(&trace, Mode::Reference, rows);
        // The last packet (at 30 s) is dropped; the period runs from 0 to 1 s + 5 s.
        assert_eq!(reals(&out).iter().map(|p| p.time_ns).collect::<Vec<_>>(), vec![0, S]);
        assert_eq!(summary.real_packets_dropped, 1);
        assert_eq!(summary.active_time_s, 6.0);
        // 60 incoming and 60 outgoing ticks, 120 rows.
        assert_eq!(summary.rows_used, 100);
        assert_eq!(summary.slots_without_cover, 20);
        let ins = dummies(&out, Direction::In);
        let outs = dummies(&out, Direction::Out);
        // Incoming ticks see only even rows (whose in_packets is 0, forced to 1); outgoing ticks
        // odd rows (out_packets 0, forced to 1, carrying out_bytes).
        assert_eq!(ins.len(), 50);
        for (k, p) in ins.iter().enumerate() {
            assert_eq!((p.time_ns, p.size), (k as i64 * 100 * MS, f64::from(30 + 2 * k as i32)));
        }
        assert_eq!(outs.len(), 50);
        for (k, p) in outs.iter().enumerate() {
            assert_eq!((p.time_ns, p.size), (50 * MS + k as i64 * 100 * MS, f64::from(7 + 2 * k as i32 + 1)));
        }
        assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    }

    #[test]
    fn reference_mode_divides_bytes_as_floats_and_emits_count_packets_at_the_tick() {
        let (out, summary, _) =
            run(&[pkt(0, Direction::In, 1), pkt(1, Direction::In, 1)], Mode::Reference, vec![[3, 10, 0, 0]]);
        let ins = dummies(&out, Direction::In);
        assert_eq!(ins.len(), 3);
        assert!(ins.iter().all(|p| p.time_ns == 0 && p.size == 10.0 / 3.0));
        assert_eq!(summary.incoming.dummy_bytes, 10);
        assert_eq!(reals(&out).len(), 1);
    }

    #[test]
    fn reference_mode_keeps_packets_exactly_the_gap_apart_in_one_period() {
        let trace = [
            pkt(0, Direction::In, 1),
            pkt(5 * S, Direction::In, 1),
            pkt(11 * S, Direction::In, 1),
            pkt(99 * S, Direction::In, 1),
        ];
        let (_, s, _) = run(&trace, Mode::Reference, vec![[0, 0, 0, 0]; 1000]);
        // Periods [0, 5 s + 5 s) and [11 s, 16 s): 100 + 50 ticks of each direction.
        assert_eq!(s.rows_used, 300);
        assert_eq!(s.active_time_s, 15.0);
        // Slotted mode: 5 s apart is a new period; the last packet is kept.
        let (_, s, _) = run(&trace, Mode::Slotted, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(s.rows_used, 50 + 50 + 50 + 50);
        assert_eq!(s.real_packets_dropped, 0);
        assert_eq!(s.total.real_packets, 4);
    }

    #[test]
    fn slotted_mode_has_none_of_the_reference_defects() {
        // Zero rows: no cover at all (the reference would send one packet per tick).
        let trace = [pkt(0, Direction::In, 1), pkt(2 * S, Direction::Out, 1)];
        let (out, s, _) = run(&trace, Mode::Slotted, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(s.total.dummy_packets, 0);
        assert_eq!(out.len(), 2);
        assert_eq!(s.rows_used, 70);
        let (_, r, _) = run(&trace, Mode::Reference, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(r.total.dummy_packets, 100);
        assert_eq!(r.total.real_packets, 1);
    }
}
