//! Slotted iPET (the default): one row per omega slot, both directions, dummies spread inside
//! their slot. The decisions are the iPET step's ([`crate::shaper::IpetShaper`]); this driver
//! feeds it the trace and hands real packets and cover to the emitter in time order.

use super::{Emitter, Input, OutputPacket, RowSource, SimSettings};
use crate::{error::Result, packet::Packet, shaper::IpetShaper};

pub(super) fn slotted<I: Iterator<Item = Packet>, S: FnMut(&OutputPacket) -> Result<()>>(
    input: &mut Input<I>,
    rows: &mut dyn RowSource,
    settings: &SimSettings,
    out: &mut Emitter<S>,
) -> Result<()> {
    let mut step = IpetShaper::new(rows, settings.omega_ns, settings.active_gap_ns);
    while let Some(pkt) = input.next()? {
        let t = pkt.time_ns;
        out.start_ns.get_or_insert(t);
        step.arrive(t, &mut |c| out.dummy(c.time_ns, c.direction, c.size))?;
        out.real(&pkt, t)?;
    }
    step.finish(&mut |c| out.dummy(c.time_ns, c.direction, c.size))?;
    let stats = step.stats();
    out.rows_used += stats.rows_used;
    out.slots_without_cover += stats.slots_without_cover;
    out.active_ns += stats.active_ns;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MS, S, dummies, pkt, reals, run, run_with};
    use super::super::{FixedRows, LatencySummary, Mode};
    use super::*;
    use crate::packet::{Direction, Transport};

    #[test]
    fn slotted_takes_one_row_per_slot_for_both_directions_and_keeps_dummies_in_their_slot() {
        // One packet: a period of 5 s = 50 slots; row k = [1 + k%3, 10 + k, 2, 20 + k].
        let rows: Vec<[i32; 4]> = (0..50).map(|k| [1 + k % 3, 10 + k, 2, 20 + k]).collect();
        let (out, summary, left) = run(&[pkt(7 * S, Direction::In, 100)], Mode::Slotted, rows.clone());
        assert_eq!((summary.rows_used, summary.slots_without_cover, left), (50, 0, 0));
        for (k, row) in rows.iter().enumerate() {
            let (lo, hi) = (7 * S + k as i64 * 100 * MS, 7 * S + (k as i64 + 1) * 100 * MS);
            let in_slot =
                |d| dummies(&out, d).into_iter().filter(|p| p.time_ns >= lo && p.time_ns < hi).collect::<Vec<_>>();
            let (i, o) = (in_slot(Direction::In), in_slot(Direction::Out));
            assert_eq!(i.len() as i32, row[0], "slot {k}");
            assert_eq!(i.iter().map(|p| p.size).sum::<f64>(), f64::from(row[1]), "slot {k}");
            assert_eq!(o.len() as i32, row[2], "slot {k}");
            assert_eq!(o.iter().map(|p| p.size).sum::<f64>(), f64::from(row[3]), "slot {k}");
            // Evenly placed: incoming at (4j+1)/4m of the slot, outgoing at (4j+3)/4n.
            for (j, p) in i.iter().enumerate() {
                assert_eq!(p.time_ns, lo + (4 * j as i64 + 1) * 100 * MS / (4 * i64::from(row[0])));
            }
            assert_eq!(o[0].time_ns, lo + 3 * 100 * MS / 8);
            assert_eq!(o[1].time_ns, lo + 7 * 100 * MS / 8);
        }
        assert_eq!(summary.total.dummy_packets, rows.iter().map(|r| (r[0] + r[2]) as u64).sum::<u64>());
        assert_eq!(summary.active_time_s, 5.0);
    }

    #[test]
    fn slotted_splits_bytes_exactly_with_the_remainder_first() {
        let (out, summary, _) = run(&[pkt(0, Direction::Out, 5)], Mode::Slotted, vec![[3, 10, 4, 7]]);
        let sizes = |d| dummies(&out, d).iter().map(|p| p.size as u32).collect::<Vec<_>>();
        assert_eq!(sizes(Direction::In), vec![4, 3, 3]);
        assert_eq!(sizes(Direction::Out), vec![2, 2, 2, 1]);
        assert_eq!((summary.incoming.dummy_bytes, summary.outgoing.dummy_bytes), (10, 7));
        assert_eq!(summary.total.dummy_bytes, 17);
        // One row for 50 slots: the other 49 get no cover, and the summary says so.
        assert_eq!((summary.rows_used, summary.slots_without_cover), (1, 49));
    }

    #[test]
    fn slotted_zero_packet_slots_emit_nothing_but_still_use_their_row() {
        let rows = vec![[0, 0, 0, 0], [0, 50, 1, 9], [2, 0, 0, 0]];
        let mut all = rows.clone();
        all.extend(std::iter::repeat_n([0, 0, 0, 0], 47));
        let (out, summary, left) = run(&[pkt(0, Direction::In, 1)], Mode::Slotted, all);
        assert_eq!((summary.rows_used, left), (50, 0));
        let d: Vec<(i64, Direction, u32)> =
            out.iter().filter(|p| p.dummy).map(|p| (p.time_ns / (100 * MS), p.direction, p.size as u32)).collect();
        // Slot 0 nothing; slot 1 one outgoing of 9 bytes (its in_bytes 50 has no packets);
        // slot 2 two incoming of 0 bytes.
        assert_eq!(d, vec![(1, Direction::Out, 9), (2, Direction::In, 0), (2, Direction::In, 0)]);
    }

    #[test]
    fn slotted_consumes_rows_in_order_never_skipping_or_reusing_across_periods() {
        // Two periods (20 s apart), each 50 slots: rows 0..50 to the first, 50..100 to the second.
        let rows: Vec<[i32; 4]> = (0..100).map(|k| [1, k, 0, 0]).collect();
        let trace = [pkt(0, Direction::In, 1), pkt(20 * S, Direction::Out, 1)];
        let (out, summary, _) = run(&trace, Mode::Slotted, rows);
        let got: Vec<(i64, u32)> = dummies(&out, Direction::In).iter().map(|p| (p.time_ns, p.size as u32)).collect();
        let want: Vec<(i64, u32)> = (0..100)
            .map(|k| {
                let start = if k < 50 { k * 100 * MS } else { 20 * S + (k - 50) * 100 * MS };
                (start + 25 * MS, k as u32)
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(summary.rows_used, 100);
        assert_eq!(summary.active_time_s, 10.0);
    }

    #[test]
    fn the_active_gap_threshold_is_strict_in_slotted_mode() {
        let settings = SimSettings::new(0.1, 0.45).expect("settings");
        let ones = || FixedRows::new(vec![[1, 1, 1, 1]; 100]).expect("rows");
        // 1 ns under the gap: one period from 0 to 0.45 + 0.45 - 1 ns: slots 0..9 (9 rows), the
        // last one cut at the period's end.
        let (out, s) = run_with(
            &[pkt(0, Direction::In, 1), pkt(450 * MS - 1, Direction::In, 1)],
            Mode::Slotted,
            &mut ones(),
            settings,
        );
        assert_eq!(s.rows_used, 9);
        assert_eq!(s.active_time_s, 0.9 - 1e-9);
        assert!(out.iter().all(|p| p.time_ns < 900 * MS - 1));
        let last = dummies(&out, Direction::Out).last().copied().expect("cover");
        assert_eq!(last.time_ns, 800 * MS + 3 * (100 * MS - 1) / 4);
        // Exactly the gap: two periods of 0.45 s, 5 slots each (the fifth cut to 50 ms), the
        // second aligned to its own first packet.
        let (out, s) = run_with(
            &[pkt(0, Direction::In, 1), pkt(450 * MS, Direction::In, 1)],
            Mode::Slotted,
            &mut ones(),
            settings,
        );
        assert_eq!(s.rows_used, 10);
        assert_eq!(s.active_time_s, 0.9);
        let times: Vec<i64> = dummies(&out, Direction::In).iter().map(|p| p.time_ns).collect();
        assert_eq!(
            times,
            vec![
                25 * MS,
                125 * MS,
                225 * MS,
                325 * MS,
                400 * MS + 50 * MS / 4,
                475 * MS,
                575 * MS,
                675 * MS,
                775 * MS,
                850 * MS + 50 * MS / 4
            ]
        );
        // The cover of the first period ends before the second period starts.
        assert!(out.iter().filter(|p| p.dummy && p.time_ns < 450 * MS).count() == 10);
    }

    #[test]
    fn slotted_passes_real_packets_unchanged_in_time_order_and_keeps_the_last_one() {
        let mut trace = Vec::new();
        let mut t = 0;
        let mut x: u64 = 12345;
        for i in 0..400 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            t += ((x >> 33) % 3_000) as i64 * MS + if i % 50 == 0 { 9 * S } else { 0 };
            let d = if x & 1 == 0 { Direction::In } else { Direction::Out };
            trace.push(pkt(t, d, (x >> 40) as u32 % 1500));
        }
        let rows: Vec<[i32; 4]> = (0..100_000).map(|k| [k % 4, (k * 7) % 101, (k + 1) % 4, (k * 13) % 101]).collect();
        let (out, summary, left) = run(&trace, Mode::Slotted, rows.clone());
        assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns), "output is time-ordered");
        let real: Vec<Packet> = reals(&out).iter().map(|p| p.to_packet(Transport::Tcp)).collect();
        assert_eq!(real, trace, "every real packet, unchanged, the last one included");
        assert!(reals(&out).iter().all(|p| p.delay_ns == 0));
        assert_eq!(summary.total.real_packets, 400);
        assert_eq!(summary.real_packets_dropped, 0);
        assert_eq!(summary.latency, LatencySummary::default());
        let used = (rows.len() - left) as u64;
        assert_eq!(summary.rows_used, used);
        let want_bytes: i64 = rows[..used as usize]
            .iter()
            .map(|r| i64::from(if r[0] > 0 { r[1] } else { 0 }) + i64::from(if r[2] > 0 { r[3] } else { 0 }))
            .sum();
        assert_eq!(summary.total.dummy_bytes as i64, want_bytes);
        let want_packets: i64 = rows[..used as usize].iter().map(|r| i64::from(r[0] + r[2])).sum();
        assert_eq!(summary.total.dummy_packets as i64, want_packets);
        assert_eq!(summary.output_packets, out.len() as u64);
        // Overheads agree with the rows.
        let real_bytes: f64 = reals(&out).iter().map(|p| p.size).sum();
        assert_eq!(summary.total.real_bytes as f64, real_bytes);
        assert_eq!(summary.total.bandwidth_overhead, Some(want_bytes as f64 / real_bytes));
    }
}
