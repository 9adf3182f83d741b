//! Pad-to-target: a whole home defended in anonymity sets ([`crate::sets`]).
//!
//! The gateway sees every member's traffic as it happens. Time is cut into slots of `omega` on
//! ONE grid for the home (slot k covers `[t0 + k*omega, t0 + (k+1)*omega)`, `t0` the home's first
//! real packet), so all members of a set share slot boundaries. Sets are independent; within a
//! set, slot by slot:
//! 1. Arrivals: each member's real packets arriving in the slot join its queue of that direction
//!    (first in, first out).
//! 2. Target: the set's [`TargetSource`] gives one target per direction, `(packets, bytes)`,
//!    the same for every member, from what the members have pending.
//! 3. Serving, per member and direction: queued real packets go, in order, while they fit: one
//!    more packet within the target's packets and its bytes within the target's bytes. A packet
//!    that arrived in the slot goes at its arrival time (no delay); one that waited goes at the
//!    slot's start. The first that does not fit stops the queue (no overtaking). Real traffic
//!    goes before exact bytes: where the dummies left cannot carry the bytes left at the set's
//!    largest real size, the slot falls short of its target's bytes and the summary counts the
//!    missing bytes (`missed_target_bytes`; never for the supersequence and the regulator, whose
//!    targets leave room for it).
//! 4. Leaking: a queued packet whose wait reaches the latency budget inside the slot is sent at
//!    that moment (arrival + budget) in excess of the target and counted as leaked. Budget 0 is
//!    pure padding: what does not fit its arrival slot leaks at once.
//! 5. Cover: the member pads with dummies up to the target: `packets left` dummies carrying
//!    exactly the `bytes left` ([`SizeDistribution::split`]: sizes drawn from the set's real
//!    sizes of that direction, the last one adjusted; a seeded ChaCha20 stream per set). Cover
//!    mirrors the slot's lead (the member with the most real bytes arriving in the slot in that
//!    direction): its dummies copy the lead's real packets, time and size, in a random order, so
//!    that a silent member's slot is the lead's to the packet; the dummies beyond the lead's
//!    count go at a random lead arrival with a drawn size (uniformly in the slot when nothing
//!    arrived). Dummies at fixed offsets with drawn sizes (as slotted iPET places its own) gave
//!    the cover away to a distinguisher on timing (AUC 0.98) and left members apart by size.
//!
//! Each member's output is handed to the sink in time order, slot by slot: memory is the
//! members' queues (bounded by the latency budget) and one slot's packets, flat in the trace's
//! length. The grid runs from the home's first to its last real packet, and on while a queue
//! still holds packets; slots in which no member has anything pending and the source would give
//! a zero target anyway ([`TargetSource::quiet_slots`]) are skipped.
//!
//! The decisions are the step's ([`SetShaper`], module `crate::shaper`); this module feeds it
//! each member's packets slot by slot and hands its emissions to the sink in time order.
//!
//! Idealisation (the `ideal` deployment, the default): a slot's target is decided from the
//! traffic that arrives during the slot, and cover may sit before a real packet of the same slot,
//! copies at their original's exact time. The release settings ([`LagSettings`]: `bridge` or `ap`,
//! a reaction lag per direction, held release, random order, one slot behind) move each decided
//! frame to when a gateway would put it on the air; they change when frames go, never which. A
//! member's decisions may then reach into later slots: the driver holds them until no later
//! decision can come before them.

use rand_chacha::ChaCha20Rng;

use super::{Input, OutputPacket, pad_summary::PadCounts};
use crate::{
    error::{Error, Result},
    packet::Packet,
    shaper::{
        Emission, LagSettings, PadSettings, SetShaper, SetShaperParts, SizeDistribution, TargetRowsStats, TargetSource,
    },
};

/// One member of a set: its device id and its packets in time order.
pub struct PadMember<I> {
    pub device: usize,
    pub packets: I,
}

/// One set to defend.
pub struct PadSet<'a, I> {
    pub members: Vec<PadMember<I>>,
    /// The set's real size distribution per direction (cover sizes come from it).
    pub sizes: [SizeDistribution; 2],
    pub targets: Box<dyn TargetSource + 'a>,
}

/// What one set sent: per member (in the order given) and the set's non-zero target slots.
pub(crate) struct SetCounts {
    pub(crate) members: Vec<PadCounts>,
    pub(crate) target_slots: u64,
    pub(crate) rows: Option<TargetRowsStats>,
}

/// A member as the driver feeds it: its input, its next packet, what it sent, and its decided
/// packets that may still be overtaken by a later slot's (lag and holds reach past a slot).
struct Feed<I> {
    device: usize,
    input: Input<I>,
    next: Option<Packet>,
    counts: PadCounts,
    last_ns: i64,
    held: Vec<(OutputPacket, bool)>,
}

impl<I> Feed<I> {
    /// Hands the held packets before `before_ns` to the sink, in time order.
    fn release(&mut self, before_ns: i64, sink: &mut dyn FnMut(usize, &OutputPacket) -> Result<()>) -> Result<()> {
        let n = self.held.partition_point(|(p, _)| p.time_ns < before_ns);
        for k in 0..n {
            let (p, leaked) = self.held[k];
            self.emit(&p, leaked, sink)?;
        }
        self.held.drain(..n);
        Ok(())
    }

    /// Hands one packet to the sink, counted (in time order).
    fn emit(
        &mut self,
        p: &OutputPacket,
        leaked: bool,
        sink: &mut dyn FnMut(usize, &OutputPacket) -> Result<()>,
    ) -> Result<()> {
        if p.time_ns < self.last_ns {
            return Err(Error::Internal(format!(
                "pad-to-target output out of order: {} ns after {} ns",
                p.time_ns, self.last_ns
            )));
        }
        self.last_ns = p.time_ns;
        self.counts.count(p, leaked);
        sink(self.device, p)
    }
}

/// A decided frame as the simulator's output: on the air at its time, a real frame's hold as its
/// delay.
fn output(e: &Emission) -> OutputPacket {
    OutputPacket {
        time_ns: e.on_air_ns(),
        direction: e.direction,
        dummy: e.is_cover(),
        size: f64::from(e.size),
        delay_ns: e.hold_ns(),
    }
}

/// Defends one set on the grid starting at `origin_ns`, up to the slot holding `end_ns` (and on
/// while queues hold packets), by driving a [`SetShaper`] with each member's packets slot by
/// slot; `sink(device, packet)` gets each member's packets in time order. `rngs`: the set's
/// mirrored-cover stream and its release stream ([`crate::shaper::set_rng`],
/// [`crate::shaper::release_rng`]).
pub(crate) fn pad_set<I: Iterator<Item = Packet>>(
    set: PadSet<'_, I>,
    origin_ns: i64,
    end_ns: i64,
    settings: &PadSettings,
    release: &LagSettings,
    rngs: [ChaCha20Rng; 2],
    sink: &mut dyn FnMut(usize, &OutputPacket) -> Result<()>,
) -> Result<SetCounts> {
    let PadSet { members, sizes, targets } = set;
    let [cover_rng, release_rng] = rngs;
    let parts = SetShaperParts { members: members.len(), sizes, targets, cover_rng, release_rng };
    let mut shaper = SetShaper::new(parts, origin_ns, settings, release)?;
    let mut feeds: Vec<Feed<I>> = members
        .into_iter()
        .map(|m| Feed {
            device: m.device,
            input: Input::new(m.packets),
            next: None,
            counts: PadCounts::default(),
            last_ns: i64::MIN,
            held: Vec::new(),
        })
        .collect();
    for m in &mut feeds {
        m.next = m.input.next()?;
        if let Some(p) = m.next
            && p.time_ns < origin_ns
        {
            return Err(Error::Internal("a packet before the home's first packet".into()));
        }
    }
    let end_slot = shaper.slot_of(end_ns) + 1;
    loop {
        let end = shaper.slot_end_ns();
        for (i, m) in feeds.iter_mut().enumerate() {
            while let Some(p) = m.next.filter(|p| p.time_ns < end) {
                shaper.arrive(i, p.direction, p.size, p.time_ns)?;
                m.next = m.input.next()?;
            }
        }
        if shaper.is_idle() {
            let slot = shaper.slot();
            let next = feeds.iter().filter_map(|m| m.next).map(|p| shaper.slot_of(p.time_ns)).min();
            if next.is_none() && slot >= end_slot {
                break;
            }
            let horizon = next.unwrap_or(end_slot).min(end_slot).max(slot);
            if shaper.skip_quiet((horizon - slot) as u64) > 0 {
                continue;
            }
        }
        let dec = shaper.end_slot()?;
        // Every later decision goes at or after the next slot's start.
        let final_before = dec.start_ns + settings.omega_ns;
        for (i, m) in feeds.iter_mut().enumerate() {
            let missed = dec.missed_bytes(i);
            for (d, &b) in missed.iter().enumerate() {
                m.counts.missed(d, b);
            }
            let mine = dec.member(i);
            if m.held.is_empty() && mine.last().is_none_or(|e| e.on_air_ns() < final_before) {
                // Nothing reaches past the slot (always so in the ideal deployment): straight out.
                for e in mine {
                    m.emit(&output(e), e.leaked(), sink)?;
                }
                continue;
            }
            let was_empty = m.held.is_empty();
            m.held.extend(mine.iter().map(|e| (output(e), e.leaked())));
            if !was_empty {
                m.held.sort_by_key(|(p, _)| (p.time_ns, p.dummy));
            }
            m.release(final_before, sink)?;
        }
    }
    for m in &mut feeds {
        m.release(i64::MAX, sink)?;
    }
    Ok(SetCounts {
        members: feeds.into_iter().map(|m| m.counts).collect(),
        target_slots: shaper.target_slots(),
        rows: shaper.rows_stats(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::testing::{MS, S, pkt};
    use super::*;
    use crate::packet::{Direction, Transport};
    use crate::shaper::{Regulator, RegulatorSettings, SlotView, Supersequence, Target, release_rng, set_rng};

    /// The same target in every slot.
    struct Fixed {
        t: [Target; 2],
    }

    impl TargetSource for Fixed {
        fn target(&mut self, _: &SlotView<'_>) -> Result<[Target; 2]> {
            Ok(self.t)
        }

        fn quiet_slots(&self) -> u64 {
            0
        }
    }

    fn t(packets: u64, bytes: u64) -> Target {
        Target { packets, bytes }
    }

    /// Runs one set; returns each member's output (tagged with whether it leaked is not visible
    /// in the output: leaks are read from the summary).
    fn run_set(
        members: Vec<Vec<Packet>>,
        sizes: [SizeDistribution; 2],
        targets: Box<dyn TargetSource>,
        budget_s: f64,
    ) -> (Vec<Vec<OutputPacket>>, Vec<super::super::PadSummary>) {
        let origin = members.iter().filter_map(|m| m.first()).map(|p| p.time_ns).min().expect("packets");
        let end = members.iter().filter_map(|m| m.last()).map(|p| p.time_ns).max().expect("packets");
        let n = members.len();
        let set = PadSet {
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, p)| PadMember { device: i, packets: p.into_iter() })
                .collect(),
            sizes,
            targets,
        };
        let mut out = vec![Vec::new(); n];
        let settings = PadSettings::new(0.1, budget_s).expect("settings");
        let counts = pad_set(
            set,
            origin,
            end,
            &settings,
            &LagSettings::default(),
            [set_rng(Some(7), 0), release_rng(Some(7), 0)],
            &mut |d, p| {
                out[d].push(*p);
                Ok(())
            },
        )
        .expect("pad");
        (out, counts.members.iter().map(PadCounts::summary).collect())
    }

    /// Per home slot: [in packets, in bytes, out packets, out bytes] (all packets, real and dummy).
    fn per_slot(out: &[OutputPacket], origin: i64) -> BTreeMap<i64, [u64; 4]> {
        let mut m: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
        for p in out {
            let e = m.entry((p.time_ns - origin).div_euclid(100 * MS)).or_default();
            let c = 2 * p.direction.index();
            e[c] += 1;
            e[c + 1] += p.size as u64;
        }
        m
    }

    fn sizes(s: &[u32]) -> [SizeDistribution; 2] {
        [SizeDistribution::from_sizes(s.iter().copied()), SizeDistribution::from_sizes(s.iter().copied())]
    }

    #[test]
    fn members_are_padded_up_to_the_target_in_every_slot() {
        let trace = vec![pkt(0, Direction::In, 100), pkt(250 * MS, Direction::Out, 40), pkt(S - 1, Direction::In, 10)];
        let (out, s) =
            run_set(vec![trace.clone()], sizes(&[10, 40, 200]), Box::new(Fixed { t: [t(3, 300), t(2, 90)] }), 0.0);
        let slots = per_slot(&out[0], 0);
        assert_eq!(slots.len(), 10, "slots 0..=9 of the 1 s home");
        assert!(slots.values().all(|v| *v == [3, 300, 2, 90]), "{slots:?}");
        // Real packets untouched, at their own time.
        let real: Vec<Packet> = out[0].iter().filter(|p| !p.dummy).map(|p| p.to_packet(Transport::Tcp)).collect();
        assert_eq!(real, trace);
        assert_eq!(s[0].total.real_packets, 3);
        assert_eq!(s[0].total.dummy_packets, 10 * 5 - 3);
        assert_eq!(s[0].total.dummy_bytes, 10 * 390 - 150);
        assert_eq!((s[0].total.leaked_packets, s[0].total.delayed_packets, s[0].total.missed_target_bytes), (0, 0, 0));
        assert_eq!(s[0].total.bandwidth_overhead, Some((3900.0 - 150.0) / 150.0));
        assert!(out[0].windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    }

    #[test]
    fn excess_waits_for_room_within_the_budget() {
        // Three packets at once; room for one per slot; budget 1 s: sent at slots 0, 1, 2.
        let trace =
            vec![pkt(10 * MS, Direction::Out, 50), pkt(20 * MS, Direction::Out, 50), pkt(30 * MS, Direction::Out, 50)];
        let (out, s) = run_set(vec![trace], sizes(&[50]), Box::new(Fixed { t: [t(0, 0), t(1, 50)] }), 1.0);
        let real: Vec<(i64, i64)> = out[0].iter().filter(|p| !p.dummy).map(|p| (p.time_ns, p.delay_ns)).collect();
        assert_eq!(real, vec![(10 * MS, 0), (110 * MS, 90 * MS), (210 * MS, 180 * MS)]);
        assert_eq!(s[0].total.delayed_packets, 2);
        assert_eq!(s[0].total.leaked_packets, 0);
        assert!((s[0].latency.mean_s - 0.09).abs() < 1e-9);
        assert_eq!(s[0].latency.max_s, 0.18);
        // The run goes on past the last packet's slot until the queue is empty.
        assert_eq!(per_slot(&out[0], 10 * MS).len(), 3);
    }

    #[test]
    fn excess_leaks_at_once_with_budget_zero_and_at_the_budget_otherwise() {
        let trace =
            vec![pkt(10 * MS, Direction::In, 80), pkt(20 * MS, Direction::In, 80), pkt(30 * MS, Direction::In, 80)];
        let target = || Box::new(Fixed { t: [t(1, 80), t(0, 0)] });
        let (out, s) = run_set(vec![trace.clone()], sizes(&[80]), target(), 0.0);
        let real: Vec<(i64, i64)> = out[0].iter().filter(|p| !p.dummy).map(|p| (p.time_ns, p.delay_ns)).collect();
        assert_eq!(real, vec![(10 * MS, 0), (20 * MS, 0), (30 * MS, 0)]);
        assert_eq!((s[0].total.leaked_packets, s[0].total.leaked_bytes, s[0].total.delayed_packets), (2, 160, 0));
        assert_eq!(s[0].total.dummy_packets, 0);
        // Budget 0.15 s: the second goes at slot 1's start (0.11 s, waited 0.09 s), the third
        // leaks at 0.03 + 0.15 s, in excess of slot 1's target.
        let (out, s) = run_set(vec![trace], sizes(&[80]), target(), 0.15);
        let real: Vec<(i64, i64)> = out[0].iter().filter(|p| !p.dummy).map(|p| (p.time_ns, p.delay_ns)).collect();
        assert_eq!(real, vec![(10 * MS, 0), (110 * MS, 90 * MS), (180 * MS, 150 * MS)]);
        assert_eq!((s[0].total.leaked_packets, s[0].total.delayed_packets), (1, 2));
        assert_eq!(s[0].latency.max_s, 0.15);
        // With nothing to carry, a target of 0 leaks everything at the budget.
        let lone = vec![pkt(0, Direction::Out, 5), pkt(S, Direction::Out, 5)];
        let (out, s) = run_set(vec![lone], sizes(&[5]), Box::new(Fixed { t: [t(0, 0); 2] }), 0.25);
        assert_eq!(out[0].iter().map(|p| p.time_ns).collect::<Vec<_>>(), vec![250 * MS, S + 250 * MS]);
        assert_eq!(s[0].total.leaked_packets, 2);
    }

    #[test]
    fn cover_sizes_come_from_the_sets_real_sizes_and_carry_the_bytes_exactly() {
        let real_sizes = [60u32, 60, 60, 1200];
        let trace = vec![pkt(0, Direction::Out, 60), pkt(100 * S, Direction::Out, 60)];
        let (out, s) = run_set(vec![trace], sizes(&real_sizes), Box::new(Fixed { t: [t(0, 0), t(6, 1500)] }), 0.0);
        let slots = per_slot(&out[0], 0);
        assert!(slots.values().all(|v| v[2..] == [6, 1500]));
        // All but the last dummy of a slot are drawn from {60, 1200}, clamped only where the rest
        // of the slot's bytes would be out of reach.
        let dummies: Vec<u32> = out[0].iter().filter(|p| p.dummy).map(|p| p.size as u32).collect();
        let drawn = dummies.iter().filter(|&&s| s == 60 || s == 1200).count();
        assert!(drawn as f64 > 0.6 * dummies.len() as f64, "{drawn} of {}", dummies.len());
        assert!(dummies.iter().all(|&s| s <= 1200));
        assert!(dummies.contains(&1200) && dummies.contains(&60));
        assert_eq!(s[0].total.missed_target_bytes, 0);
    }

    #[test]
    fn cover_mirrors_the_slots_lead_packet_for_packet() {
        // Member 0 is active; member 1 is silent and covers for it. Slot 0 holds two incoming
        // arrivals and one outgoing, slot 2 one incoming: member 1's dummies sit exactly at those
        // times, in their direction, never at fixed offsets.
        let active = vec![
            pkt(10 * MS, Direction::In, 100),
            pkt(23 * MS, Direction::Out, 60),
            pkt(37 * MS, Direction::In, 300),
            pkt(251 * MS, Direction::In, 100),
        ];
        let silent = vec![pkt(251 * MS, Direction::Out, 60)];
        let all: Vec<Packet> = active.iter().chain(&silent).copied().collect();
        let (out, s) =
            run_set(vec![active, silent], SizeDistribution::per_direction(all.iter()), Box::new(Supersequence), 0.0);
        let dummies: Vec<(i64, Direction)> =
            out[1].iter().filter(|p| p.dummy).map(|p| (p.time_ns, p.direction)).collect();
        assert_eq!(s[1].total.dummy_packets, 4);
        for (at, d) in &dummies {
            let real_at: &[i64] = match (d, *at < 100 * MS) {
                (Direction::In, true) => &[10 * MS, 37 * MS],
                (Direction::Out, true) => &[23 * MS],
                (Direction::In, false) => &[251 * MS],
                (Direction::Out, false) => &[],
            };
            assert!(real_at.contains(at), "dummy {d:?} at {at} ns, not at a real arrival {real_at:?}");
        }
        // A silent member's slot is the lead's to the packet: times and sizes.
        let mut mirrored: Vec<(i64, Direction, u32)> =
            out[1].iter().filter(|p| p.dummy).map(|p| (p.time_ns, p.direction, p.size as u32)).collect();
        mirrored.sort_by_key(|&(t, d, _)| (t, d.index()));
        assert_eq!(
            mirrored,
            vec![
                (10 * MS, Direction::In, 100),
                (23 * MS, Direction::Out, 60),
                (37 * MS, Direction::In, 300),
                (251 * MS, Direction::In, 100)
            ]
        );
        // Member 0 covers member 1's outgoing packet of slot 2 at its time.
        let cover: Vec<i64> = out[0].iter().filter(|p| p.dummy).map(|p| p.time_ns).collect();
        assert_eq!(cover, vec![251 * MS]);
    }

    #[test]
    fn the_supersequence_makes_members_identical_per_slot_without_delay() {
        let mut x: u64 = 99;
        let mut members = vec![Vec::new(), Vec::new(), Vec::new()];
        for (m, trace) in members.iter_mut().enumerate() {
            let mut t = m as i64 * 7 * MS;
            for _ in 0..300 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t += ((x >> 33) % 400) as i64 * MS * (m as i64 + 1);
                let d = if x & 4 == 0 { Direction::In } else { Direction::Out };
                trace.push(pkt(t, d, ((x >> 40) % 1400) as u32 + 1));
            }
        }
        let all: Vec<Packet> = members.iter().flatten().copied().collect();
        let origin = all.iter().map(|p| p.time_ns).min().expect("packets");
        let (out, s) =
            run_set(members.clone(), SizeDistribution::per_direction(all.iter()), Box::new(Supersequence), 0.0);
        let first = per_slot(&out[0], origin);
        for (m, o) in out.iter().enumerate().skip(1) {
            assert_eq!(per_slot(o, origin), first, "member {m}");
        }
        for (m, summary) in s.iter().enumerate() {
            assert_eq!(summary.total.real_packets, 300);
            assert_eq!((summary.total.leaked_packets, summary.total.delayed_packets), (0, 0));
            assert_eq!(summary.total.missed_target_bytes, 0);
            let mut real: Vec<Packet> =
                out[m].iter().filter(|p| !p.dummy).map(|p| p.to_packet(Transport::Tcp)).collect();
            let mut want = members[m].clone();
            for v in [&mut real, &mut want] {
                v.sort_by_key(|p| (p.time_ns, p.direction.index(), p.size));
            }
            assert_eq!(real, want, "member {m}: every real packet at its own time");
        }
    }

    #[test]
    fn the_regulator_covers_silence_at_its_floor_rate() {
        // One packet at 0 and one at 100 s: in between, only the floor (1 per second and
        // direction) once the surge has decayed.
        let trace = vec![pkt(0, Direction::In, 300), pkt(100 * S, Direction::In, 300)];
        let settings =
            RegulatorSettings { floor_rate: 1.0, half_life: 0.5, surge: 2.0, ..RegulatorSettings::default() };
        let sz = sizes(&[300]);
        let reg = Regulator::new(settings, 100 * MS, &sz).expect("regulator");
        let (out, s) = run_set(vec![trace], sz, Box::new(reg), 0.0);
        let silent: Vec<&OutputPacket> = out[0].iter().filter(|p| p.time_ns >= 20 * S && p.time_ns < 90 * S).collect();
        assert!(silent.iter().all(|p| p.dummy && p.size == 300.0));
        for d in [Direction::In, Direction::Out] {
            let n = silent.iter().filter(|p| p.direction == d).count();
            assert!((69..=71).contains(&n), "{d:?}: {n} dummies in 70 s");
        }
        assert_eq!((s[0].total.real_packets, s[0].total.leaked_packets), (2, 0));
        // With no floor, silence stays silent.
        let no_floor = RegulatorSettings { floor_rate: 0.0, ..settings };
        let sz = sizes(&[300]);
        let reg = Regulator::new(no_floor, 100 * MS, &sz).expect("regulator");
        let (out, _) =
            run_set(vec![vec![pkt(0, Direction::In, 300), pkt(100 * S, Direction::In, 300)]], sz, Box::new(reg), 0.0);
        assert_eq!(out[0].iter().filter(|p| p.time_ns >= 20 * S && p.time_ns < 90 * S).count(), 0);
    }

    #[test]
    fn real_traffic_goes_before_exact_bytes_and_the_shortfall_is_counted() {
        // Target 2 packets, 2000 bytes; the largest real size is 1000. A 10-byte real packet goes
        // at once; the one dummy left carries 1000 bytes and 990 are reported missing.
        let (out, s) = run_set(
            vec![vec![pkt(0, Direction::Out, 10)]],
            sizes(&[10, 1000]),
            Box::new(Fixed { t: [t(0, 0), t(2, 2000)] }),
            0.0,
        );
        let sent: Vec<(bool, u32)> = out[0].iter().map(|p| (p.dummy, p.size as u32)).collect();
        assert_eq!(sent, vec![(false, 10), (true, 1000)]);
        assert_eq!((s[0].total.leaked_packets, s[0].total.missed_target_bytes), (0, 990));
    }

    #[test]
    fn settings_are_checked() {
        assert!(PadSettings::new(0.1, 0.0).is_ok());
        for (o, b) in [(0.0, 0.0), (0.1, -1.0), (f64::NAN, 0.0), (0.1, f64::INFINITY)] {
            assert_eq!(PadSettings::new(o, b).expect_err("bad").code(), "invalid_simulation_settings");
        }
    }

    #[test]
    fn an_unsorted_member_is_refused() {
        let set = PadSet {
            members: vec![PadMember {
                device: 0,
                packets: vec![pkt(S, Direction::In, 1), pkt(0, Direction::In, 1)].into_iter(),
            }],
            sizes: sizes(&[1]),
            targets: Box::new(Supersequence),
        };
        let err = pad_set(
            set,
            0,
            S,
            &PadSettings::default(),
            &LagSettings::default(),
            [set_rng(Some(1), 0), release_rng(Some(1), 0)],
            &mut |_, _| Ok(()),
        )
        .err()
        .expect("unsorted");
        assert_eq!(err.code(), "unsorted_trace");
    }
}
