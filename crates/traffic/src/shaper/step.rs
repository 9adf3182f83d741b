//! The step: one anonymity set's per-slot decisions, pushed slot by slot, no look-ahead.
//!
//! [`SetShaper`] holds what a set's shaper must remember between slots, and nothing else: each
//! member's queue of real packets not yet sent (per direction, first in first out), their pending
//! totals, the set's [`TargetSource`] (with its own state: the regulator's rates, target rows'
//! windows), the mirrored-cover random stream and, outside the `ideal` deployment, the stream of
//! lag draws and emission orders. The simulator ([`crate::simulate`]'s pad-to-target), the CLI,
//! the service's jobs and the live gateway all drive this one type, so that what the simulator
//! predicts is what the gateway does.
//!
//! ## Time
//!
//! One grid per home: slot k covers `[origin + k*omega, origin + (k+1)*omega)` on the clock of
//! the arrivals (the simulator: capture time in Unix ns; a gateway: its monotonic or realtime
//! clock in ns, as long as arrivals and decisions use the same one). The shaper has one *open*
//! slot ([`SetShaper::slot`]); arrivals must fall inside it.
//!
//! ## What goes in
//!
//! [`SetShaper::arrive`]`(member, direction, size, time_ns)` for every real frame of a member, in
//! time order per member, as it comes (or a slot's worth at once). Nothing about later slots is
//! ever asked for.
//!
//! ## What comes out
//!
//! [`SetShaper::end_slot`] closes the open slot and returns its [`SlotDecisions`]: per member, in
//! member order, the [`Emission`]s of the slot, each member's in the order they go on the air:
//! - real frames released ([`EmissionKind::Real`]): the member's queue of that direction in
//!   order; `seq` counts the member's arrivals of that direction from 0, so the caller holding
//!   the frames knows which one; `leaked` when it goes in excess of the target because its wait
//!   reached the latency budget;
//! - cover frames ([`EmissionKind::Cover`]) of a size and direction, copying the slot's lead (the
//!   member with the most real bytes arriving in the slot in that direction) where it mirrors;
//! - `at_ns`: when the gateway sends it; for a real frame its arrival plus every hold the
//!   decision adds deliberately (waiting for room in the targets, a random order's spacing, one
//!   slot behind);
//! - `lag_ns`: the reaction lag the simulator adds on top, for frames the gateway sends in
//!   reaction to an arrival: copies, and the real frames it holds until they are decided
//!   ([`LagSettings::holds_until_decided`]: held release, mirror-all, one slot behind, random
//!   order or a latency budget), which it releases from the same timer as their copies, so that
//!   they suffer the same reaction; a live gateway does not wait for it (its own lag takes its
//!   place). 0 in the
//!   `ideal` deployment. The frame is on the air at [`Emission::on_air_ns`]; a real frame's
//!   whole hold, on the air, is [`Emission::hold_ns`]. With a random order, a group's frames
//!   after its first are spaced deliberately: the spacing is in `at_ns`, the first frame's
//!   reaction in `lag_ns` of each, so the order of `at_ns` is the order on the air.
//!
//! Holds are *deliberate*: a gateway executes a decision by sending each emission at its `at_ns`
//! (on its own clock, with a dedicated timer thread). A slot is decided when it ends, so outside
//! `ideal` nothing the gateway sends (cover, and the real frames it holds until decided:
//! [`LagSettings::holds_until_decided`]) is decided for before the slot's end: without
//! `slot_behind`, copies trail their originals by up to a slot, on the wire and in the
//! simulator alike. Times already past (cover mirroring frames of the slot just closed) are left
//! only in `ideal`, the simulator's idealisation of a gateway that reacts at once.
//! Decisions of a slot may reach past the slot's end (lag, held release, one slot behind), never
//! before its start: a consumer that merges several slots' emissions in time order may release
//! everything before the open slot's start after each `end_slot`.
//!
//! Holds: a real frame not released by a slot's decisions stays held (waiting for room in a later
//! slot's target, or leaked when its wait reaches the latency budget); [`SetShaper::held`] says
//! how much each member holds.
//!
//! ## Who holds what
//!
//! The shaper holds packet *descriptions* (time, size, seq), never frames: the gateway keeps the
//! frames (its hold queues) and the simulator keeps nothing. The shaper's memory is the members'
//! queues (bounded by the latency budget), one slot's arrivals and one slot's decisions, all in
//! vectors reused from slot to slot.
//!
//! ## Quiet slots
//!
//! When nothing is queued, [`SetShaper::skip_quiet`] passes slots whose target would be zero
//! anyway ([`TargetSource::quiet_slots`]) without deciding them; the simulator skips up to the
//! next arrival it knows of, a gateway may simply call `end_slot` every slot (the regulator then
//! decays slot by slot instead of in one step: the same up to floating-point rounding).

use std::collections::VecDeque;

use rand::{Rng, seq::SliceRandom};
use rand_chacha::ChaCha20Rng;

use super::{
    lag::{Deployment, Lag, LagSettings},
    sizes::SizeDistribution,
    targets::{Pending, SlotView, Target, TargetRowsStats, TargetSource},
};
use crate::{
    error::{Error, ErrorCode, Result},
    packet::{Direction, secs_to_ns},
};

/// Pad-to-target settings: the grid and how long a real packet may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadSettings {
    /// Slot length of the home grid, in nanoseconds.
    pub omega_ns: i64,
    /// How long a real packet may wait for room in the targets before it is leaked.
    pub latency_budget_ns: i64,
}

impl Default for PadSettings {
    fn default() -> Self {
        Self { omega_ns: 100_000_000, latency_budget_ns: 0 }
    }
}

impl PadSettings {
    /// From seconds: `omega > 0`, `latency_budget >= 0`.
    pub fn new(omega: f64, latency_budget: f64) -> Result<Self> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidSimulationSettings, m);
        if !(omega.is_finite() && omega > 0.0 && secs_to_ns(omega) > 0) {
            return Err(bad(format!("omega {omega} s must be positive")));
        }
        if !(latency_budget.is_finite() && latency_budget >= 0.0) {
            return Err(bad(format!("latency budget {latency_budget} s must be zero or positive")));
        }
        Ok(Self { omega_ns: secs_to_ns(omega), latency_budget_ns: secs_to_ns(latency_budget) })
    }
}

/// What a [`SetShaper`] is built from.
pub struct SetShaperParts<'a> {
    /// Members of the set; they are numbered `0..members` in every call.
    pub members: usize,
    /// The set's real size distribution per direction ([`Direction::index`]): cover sizes.
    pub sizes: [SizeDistribution; 2],
    pub targets: Box<dyn TargetSource + 'a>,
    /// The mirrored-cover stream: which lead packet each copy mirrors, cover sizes, times of
    /// cover that mirrors nothing ([`crate::shaper::set_rng`]).
    pub cover_rng: ChaCha20Rng,
    /// Lag draws and emission orders; never drawn from in the `ideal` deployment
    /// ([`crate::shaper::release_rng`]).
    pub release_rng: ChaCha20Rng,
}

/// A frame to send, decided by [`SetShaper::end_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emission {
    /// The member (index in the set) whose link it goes on.
    pub member: usize,
    pub direction: Direction,
    /// Bytes (the size unit of the arrivals).
    pub size: u32,
    /// When the gateway sends it (see the module doc).
    pub at_ns: i64,
    /// Modelled reaction lag on top of `at_ns` (simulation only).
    pub lag_ns: i64,
    pub kind: EmissionKind,
    /// For a frame of a mirror group (a lead's original that went at its arrival, or a copy of
    /// it): the index of the lead's arrival in the slot.
    group: Option<u32>,
    /// A frame merged with every member's ([`LagSettings::mirror_all`]): real or cover, it goes
    /// through the gateway's reaction (held release draws its lag).
    merged: bool,
}

/// Real or cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmissionKind {
    /// The member's real frame number `seq` of this direction (arrivals counted from 0), which
    /// arrived at `arrival_ns`; `leaked` when sent in excess of the target (its wait reached the
    /// latency budget).
    Real { seq: u64, arrival_ns: i64, leaked: bool },
    /// A cover frame; `mirrors`: the member whose real frame it copies (time and size), if any.
    Cover { mirrors: Option<usize> },
}

impl Emission {
    /// When the frame is on the air: `at_ns + lag_ns`.
    pub fn on_air_ns(&self) -> i64 {
        self.at_ns + self.lag_ns
    }

    pub fn is_cover(&self) -> bool {
        matches!(self.kind, EmissionKind::Cover { .. })
    }

    /// For a real frame, how long it is held past its arrival (on the air); 0 for cover.
    pub fn hold_ns(&self) -> i64 {
        match self.kind {
            EmissionKind::Real { arrival_ns, .. } => self.on_air_ns() - arrival_ns,
            EmissionKind::Cover { .. } => 0,
        }
    }

    pub fn leaked(&self) -> bool {
        matches!(self.kind, EmissionKind::Real { leaked: true, .. })
    }
}

/// One slot's decisions for the whole set.
#[derive(Debug, Default)]
pub struct SlotDecisions {
    /// The slot decided (index on the home grid) and its start.
    pub slot: i64,
    pub start_ns: i64,
    /// The set's target per direction (every member emits it, leaks aside).
    pub target: [Target; 2],
    emissions: Vec<Emission>,
    /// Per member, its range of `emissions`.
    ranges: Vec<(usize, usize)>,
    /// Per member and direction, target bytes its cover could not carry.
    missed: Vec<[u64; 2]>,
}

impl SlotDecisions {
    /// Every emission, member by member, each member's in the order they go on the air.
    pub fn emissions(&self) -> &[Emission] {
        &self.emissions
    }

    /// Member `m`'s emissions, in the order they go on the air.
    pub fn member(&self, m: usize) -> &[Emission] {
        let (a, b) = self.ranges[m];
        &self.emissions[a..b]
    }

    /// Bytes of the target that member `m`'s cover could not carry, per direction (a target with
    /// more bytes than its packets can carry at the set's largest real size).
    pub fn missed_bytes(&self, m: usize) -> [u64; 2] {
        self.missed[m]
    }
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    time_ns: i64,
    size: u32,
    seq: u64,
}

#[derive(Debug, Default)]
struct MemberState {
    queue: [VecDeque<Queued>; 2],
    pending: [Pending; 2],
    /// Real arrivals of the open slot, per direction: (time, size).
    arrivals: [Vec<(i64, u32)>; 2],
    /// Arrivals so far, per direction (the next one's seq).
    seq: [u64; 2],
    last_ns: i64,
}

/// One anonymity set's shaper (see the module doc).
pub struct SetShaper<'a> {
    origin_ns: i64,
    omega_ns: i64,
    budget_ns: [i64; 2],
    release: LagSettings,
    lag: [Lag; 2],
    members: Vec<MemberState>,
    sizes: [SizeDistribution; 2],
    targets: Box<dyn TargetSource + 'a>,
    cover_rng: ChaCha20Rng,
    release_rng: ChaCha20Rng,
    slot: i64,
    target_slots: u64,
    decisions: SlotDecisions,
    // Buffers reused from slot to slot.
    pending: Vec<[Pending; 2]>,
    like: Vec<(i64, u32, u32)>,
    dummy_sizes: Vec<u32>,
    groups: Vec<(usize, u32, usize)>,
    positions: Vec<i64>,
    merge: Vec<Merging>,
    /// A merged slot's cover per member, and the buffer its emissions are rebuilt in.
    merge_cover: Vec<Vec<Emission>>,
    merge_spare: Vec<Emission>,
}

/// A real frame released in the slot, being merged ([`LagSettings::mirror_all`]): its member,
/// size, time, index in the slot's emissions, and its rank among the member's frames of that
/// size.
#[derive(Debug, Clone, Copy)]
struct Merging {
    size: u32,
    rank: u32,
    at_ns: i64,
    member: usize,
    index: usize,
}

impl<'a> SetShaper<'a> {
    /// A shaper whose slot 0 starts at `origin_ns`.
    pub fn new(
        parts: SetShaperParts<'a>,
        origin_ns: i64,
        settings: &PadSettings,
        release: &LagSettings,
    ) -> Result<Self> {
        release.check()?;
        if settings.omega_ns <= 0 || settings.latency_budget_ns < 0 {
            return Err(Error::invalid(ErrorCode::InvalidSimulationSettings, "need omega > 0 and a budget >= 0"));
        }
        let SetShaperParts { members, sizes, targets, cover_rng, release_rng } = parts;
        // What a transmitter cannot hold, it cannot keep waiting either.
        let budget = |d: Direction| if release.deployment.holds(d) { settings.latency_budget_ns } else { 0 };
        Ok(Self {
            origin_ns,
            omega_ns: settings.omega_ns,
            budget_ns: [budget(Direction::In), budget(Direction::Out)],
            release: release.clone(),
            lag: [release.lag(Direction::In), release.lag(Direction::Out)],
            members: (0..members).map(|_| MemberState { last_ns: i64::MIN, ..MemberState::default() }).collect(),
            sizes,
            targets,
            cover_rng,
            release_rng,
            slot: 0,
            target_slots: 0,
            decisions: SlotDecisions::default(),
            pending: vec![[Pending::default(); 2]; members],
            like: Vec::new(),
            dummy_sizes: Vec::new(),
            groups: Vec::new(),
            positions: Vec::new(),
            merge: Vec::new(),
            merge_cover: Vec::new(),
            merge_spare: Vec::new(),
        })
    }

    /// The open slot (index on the grid).
    pub fn slot(&self) -> i64 {
        self.slot
    }

    pub fn slot_start_ns(&self) -> i64 {
        self.origin_ns + self.slot * self.omega_ns
    }

    pub fn slot_end_ns(&self) -> i64 {
        self.slot_start_ns() + self.omega_ns
    }

    /// The slot holding `time_ns`.
    pub fn slot_of(&self, time_ns: i64) -> i64 {
        (time_ns - self.origin_ns).div_euclid(self.omega_ns)
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// A real frame of `member` arrived: `time_ns` inside the open slot, not before the member's
    /// previous arrival.
    pub fn arrive(&mut self, member: usize, direction: Direction, size: u32, time_ns: i64) -> Result<()> {
        let (start, end) = (self.slot_start_ns(), self.slot_end_ns());
        let Some(m) = self.members.get_mut(member) else {
            return Err(Error::Internal(format!("member {member} of a set of {}", self.members.len())));
        };
        if time_ns < m.last_ns {
            return Err(Error::invalid(
                ErrorCode::UnsortedTrace,
                format!("member {member}: a packet at {time_ns} ns follows one at {} ns", m.last_ns),
            ));
        }
        if time_ns < start || time_ns >= end {
            return Err(Error::Internal(format!(
                "an arrival at {time_ns} ns outside the open slot [{start}, {end}) ns: close the slot first, or \
                 give late frames the slot's start"
            )));
        }
        m.last_ns = time_ns;
        let d = direction.index();
        m.arrivals[d].push((time_ns, size));
        m.queue[d].push_back(Queued { time_ns, size, seq: m.seq[d] });
        m.seq[d] += 1;
        m.pending[d].packets += 1;
        m.pending[d].bytes += u64::from(size);
        Ok(())
    }

    /// Member `m`'s real traffic held (arrived, not yet released), per direction: what a gateway's
    /// hold queue of that member must hold.
    pub fn held(&self, m: usize) -> [Pending; 2] {
        self.members.get(m).map_or([Pending::default(); 2], |s| s.pending)
    }

    /// Whether no member has a real packet waiting (the open slot's arrivals included).
    pub fn is_idle(&self) -> bool {
        self.members.iter().all(|m| m.queue.iter().all(VecDeque::is_empty))
    }

    /// When idle, passes up to `max_slots` slots whose target would be zero anyway, without
    /// deciding them; returns how many (0 when something waits or the next slot needs a decision).
    pub fn skip_quiet(&mut self, max_slots: u64) -> u64 {
        if !self.is_idle() {
            return 0;
        }
        let quiet = self.targets.quiet_slots().min(max_slots);
        if quiet > 0 {
            self.targets.skip(quiet);
            self.slot += quiet as i64;
        }
        quiet
    }

    /// Slots decided with a non-zero target so far.
    pub fn target_slots(&self) -> u64 {
        self.target_slots
    }

    /// What a source of target rows did (None for the other sources).
    pub fn rows_stats(&self) -> Option<TargetRowsStats> {
        self.targets.rows_stats()
    }

    /// Closes the open slot: decides it for every member and opens the next.
    pub fn end_slot(&mut self) -> Result<&SlotDecisions> {
        let start = self.slot_start_ns();
        let end = start + self.omega_ns;
        for (p, m) in self.pending.iter_mut().zip(&self.members) {
            *p = m.pending;
        }
        let target = self.targets.target(&SlotView { slot: self.slot, pending: &self.pending, sizes: &self.sizes })?;
        if target.iter().any(|t| t.packets > 0 || t.bytes > 0) {
            self.target_slots += 1;
        }
        let dec = &mut self.decisions;
        dec.slot = self.slot;
        dec.start_ns = start;
        dec.target = target;
        dec.emissions.clear();
        dec.ranges.clear();
        dec.missed.clear();
        if self.release.mirror_all {
            self.merge_slot(target, start, end);
        } else {
            self.mirror_lead(target, start, end);
        }
        if !self.release.is_ideal() {
            self.release_slot(end);
        }
        let dec = &mut self.decisions;
        for &(a, b) in &dec.ranges {
            dec.emissions[a..b].sort_by_key(|e| (e.on_air_ns(), e.is_cover()));
        }
        for m in &mut self.members {
            m.arrivals.iter_mut().for_each(Vec::clear);
        }
        self.slot += 1;
        Ok(&self.decisions)
    }

    /// The slot's emissions with every member's cover mirroring the slot's lead (the default).
    fn mirror_lead(&mut self, target: [Target; 2], start: i64, end: i64) {
        let n = self.members.len();
        let mut lead: [Option<usize>; 2] = [None, None];
        for (d, l) in lead.iter_mut().enumerate() {
            let members = &self.members;
            let bytes = |i: usize| members[i].arrivals[d].iter().map(|&(_, s)| u64::from(s)).sum::<u64>();
            *l = (0..n).filter(|&i| !members[i].arrivals[d].is_empty()).max_by_key(|&i| (bytes(i), usize::MAX - i));
        }
        let dec = &mut self.decisions;
        for i in 0..n {
            let from = dec.emissions.len();
            let mut missed = [0u64; 2];
            for (d, t) in target.iter().enumerate() {
                let direction = if d == 0 { Direction::In } else { Direction::Out };
                let first = dec.emissions.len();
                serve(
                    &mut self.members[i],
                    i,
                    d,
                    *t,
                    start,
                    end,
                    self.budget_ns[d],
                    lead[d] == Some(i),
                    &mut dec.emissions,
                );
                let sent = dec.emissions[first..].iter().filter(|e| !e.leaked());
                let (sp, sb) = sent.fold((0u64, 0u64), |(k, b), e| (k + 1, b + u64::from(e.size)));
                let (left_p, left_b) = (t.packets - sp, t.bytes - sb);
                self.like.clear();
                if let Some(l) = lead[d].filter(|&l| l != i) {
                    let a = &self.members[l].arrivals[d];
                    self.like.extend(a.iter().enumerate().map(|(k, &(at, s))| (at, s, k as u32)));
                    self.like.shuffle(&mut self.cover_rng);
                }
                self.dummy_sizes.clear();
                self.sizes[d].split_like(
                    left_p as u32,
                    left_b,
                    self.like.iter().map(|&(_, s, _)| s),
                    &mut self.cover_rng,
                    &mut self.dummy_sizes,
                );
                let carried: u64 = self.dummy_sizes.iter().map(|&s| u64::from(s)).sum();
                missed[d] = left_b - carried;
                for (j, &size) in self.dummy_sizes.iter().enumerate() {
                    let (at, group) = match (self.like.get(j), lead[d]) {
                        (Some(&(at, _, k)), _) => (at, Some(k)),
                        (None, Some(l)) => {
                            let a = &self.members[l].arrivals[d];
                            let k = self.cover_rng.random_range(0..a.len());
                            (a[k].0, Some(k as u32))
                        }
                        (None, None) => (self.cover_rng.random_range(start..end), None),
                    };
                    dec.emissions.push(Emission {
                        member: i,
                        direction,
                        size,
                        at_ns: at,
                        lag_ns: 0,
                        kind: EmissionKind::Cover { mirrors: group.and(lead[d]) },
                        group,
                        merged: false,
                    });
                }
            }
            dec.ranges.push((from, dec.emissions.len()));
            dec.missed.push(missed);
        }
    }

    /// The slot's emissions with every member mirrored ([`LagSettings::mirror_all`]): each
    /// member's queue served against the target, the released real frames merged across the
    /// members size by size, every member given the merged frames it lacks as cover, and what the
    /// target asks beyond drawn once for the slot and sent by every member alike.
    fn merge_slot(&mut self, target: [Target; 2], start: i64, end: i64) {
        let n = self.members.len();
        let dec = &mut self.decisions;
        // Per member, its real frames' range of `dec.emissions` (its cover joins it below).
        for i in 0..n {
            let from = dec.emissions.len();
            for (d, t) in target.iter().enumerate() {
                serve(&mut self.members[i], i, d, *t, start, end, self.budget_ns[d], false, &mut dec.emissions);
            }
            dec.ranges.push((from, dec.emissions.len()));
        }
        let cover = &mut self.merge_cover;
        cover.resize_with(n, Vec::new);
        cover.iter_mut().for_each(Vec::clear);
        let mut missed = [0u64; 2];
        for (d, t) in target.iter().enumerate() {
            let direction = if d == 0 { Direction::In } else { Direction::Out };
            let aligns = self.release.aligns(direction);
            self.merge.clear();
            for (i, &(a, b)) in dec.ranges.iter().enumerate() {
                for (index, e) in dec.emissions[a..b].iter().enumerate() {
                    if e.direction == direction && !e.leaked() {
                        self.merge.push(Merging { size: e.size, rank: 0, at_ns: e.at_ns, member: i, index: a + index });
                    }
                }
            }
            // Rank each member's frames of one size by time: frames of equal size and rank
            // across members are one merged frame (aligned), or each frame is its own (not).
            self.merge.sort_unstable_by_key(|x| (x.member, x.size, x.at_ns, x.index));
            let mut prev: Option<(usize, u32)> = None;
            let mut rank = 0;
            for x in &mut self.merge {
                rank = if prev == Some((x.member, x.size)) { rank + 1 } else { 0 };
                prev = Some((x.member, x.size));
                x.rank = if aligns { rank } else { x.index as u32 };
            }
            self.merge.sort_unstable_by_key(|x| (x.size, x.rank, x.member));
            let (mut sent_p, mut sent_b) = (0u64, 0u64);
            let mut a = 0;
            while a < self.merge.len() {
                let (size, rank) = (self.merge[a].size, self.merge[a].rank);
                let mut b = a;
                while b < self.merge.len() && (self.merge[b].size, self.merge[b].rank) == (size, rank) {
                    b += 1;
                }
                let group = &self.merge[a..b];
                let at = group.iter().map(|x| x.at_ns).max().unwrap_or(start);
                let owner = group[0].member;
                for x in group {
                    let e = &mut dec.emissions[x.index];
                    e.at_ns = at;
                    e.merged = true;
                }
                let mut has = group.iter().map(|x| x.member).peekable();
                for (m, c) in cover.iter_mut().enumerate() {
                    if has.peek() == Some(&m) {
                        has.next();
                        continue;
                    }
                    c.push(merged_cover(m, direction, size, at, Some(owner)));
                }
                sent_p += 1;
                sent_b += u64::from(size);
                a = b;
            }
            // What the target asks beyond the merged frames, the same for every member.
            let (left_p, left_b) = (t.packets.saturating_sub(sent_p), t.bytes.saturating_sub(sent_b));
            self.dummy_sizes.clear();
            self.sizes[d].split_like(
                u32::try_from(left_p).unwrap_or(u32::MAX),
                left_b,
                std::iter::empty(),
                &mut self.cover_rng,
                &mut self.dummy_sizes,
            );
            let carried: u64 = self.dummy_sizes.iter().map(|&s| u64::from(s)).sum();
            for &size in &self.dummy_sizes {
                let at = self.cover_rng.random_range(start..end);
                for (m, c) in cover.iter_mut().enumerate() {
                    c.push(merged_cover(m, direction, size, at, None));
                }
            }
            missed[d] = left_b - carried;
        }
        // Member by member: its real frames, then its cover (into the spare buffer, swapped in).
        let all = &mut self.merge_spare;
        all.clear();
        for (range, c) in dec.ranges.iter_mut().zip(cover.iter_mut()) {
            let from = all.len();
            all.extend_from_slice(&dec.emissions[range.0..range.1]);
            all.append(c);
            *range = (from, all.len());
            dec.missed.push(missed);
        }
        std::mem::swap(&mut dec.emissions, all);
    }

    /// Lag, holds and orders of the slot just decided (outside the `ideal` deployment, or one
    /// slot behind): see [`LagSettings`]. Outside `ideal`, what the gateway sends (cover, and the
    /// real frames it holds until decided) goes no earlier than `decided_ns`, the slot's end,
    /// when a live gateway learns the decision: without one slot behind, copies of a slot's
    /// frames trail them by up to a slot, as on the wire.
    fn release_slot(&mut self, decided_ns: i64) {
        let deployment = self.release.deployment;
        let holds = |d: Direction| deployment != Deployment::Ideal && deployment.holds(d);
        let shift = |d: Direction| if self.release.slot_behind && deployment.holds(d) { self.omega_ns } else { 0 };
        // Real frames the gateway holds until decided: it releases them from the same timer as
        // the cover, so they take a reaction as the copies do.
        let held = |e: &Emission| {
            deployment != Deployment::Ideal
                && !e.is_cover()
                && self.release.holds_until_decided(e.direction, self.budget_ns[e.direction.index()])
        };
        let rng = &mut self.release_rng;
        let emissions = &mut self.decisions.emissions;
        self.groups.clear();
        for (idx, e) in emissions.iter_mut().enumerate() {
            let d = e.direction;
            let held = held(e);
            e.at_ns += shift(d);
            if held || (deployment != Deployment::Ideal && e.is_cover()) {
                e.at_ns = e.at_ns.max(decided_ns);
            }
            let lag = &self.lag[d.index()];
            if self.release.random_order
                && let Some(g) = e.group
            {
                self.groups.push((d.index(), g, idx));
                continue;
            }
            match e.kind {
                EmissionKind::Cover { mirrors: Some(_) } => e.lag_ns = lag.sample_ns(rng),
                EmissionKind::Cover { mirrors: None } if e.merged => e.lag_ns = lag.sample_ns(rng),
                EmissionKind::Real { .. } if held => e.lag_ns = lag.sample_ns(rng),
                _ => {}
            }
        }
        // Random order: each mirror group goes out back to back, one lag draw apart, in a random
        // order of its frames (the original stays first where its direction is not held).
        self.groups.sort_unstable();
        let mut a = 0;
        while a < self.groups.len() {
            let (d, g, _) = self.groups[a];
            let mut b = a;
            while b < self.groups.len() && self.groups[b].0 == d && self.groups[b].1 == g {
                b += 1;
            }
            let direction = if d == 0 { Direction::In } else { Direction::Out };
            let lag = &self.lag[d];
            let movable = |e: &Emission| e.is_cover() || holds(direction);
            let count = self.groups[a..b].iter().filter(|x| movable(&emissions[x.2])).count();
            self.positions.clear();
            let mut s = 0;
            for _ in 0..count {
                s += lag.sample_ns(rng);
                self.positions.push(s);
            }
            // The first position is the gateway's reaction to the original; the spacing after it
            // is deliberate (the gateway schedules it), so a copy carries the first as its lag.
            let first = self.positions.first().copied().unwrap_or(0);
            self.positions.shuffle(rng);
            let mut next = self.positions.iter();
            for &(_, _, idx) in &self.groups[a..b] {
                let e = &mut emissions[idx];
                if !movable(e) {
                    continue;
                }
                let p = next.next().copied().unwrap_or(0);
                e.at_ns += p - first;
                e.lag_ns = first;
            }
            a = b;
        }
    }
}

/// A cover frame of a merged slot ([`LagSettings::mirror_all`]) for `member`, copying `mirrors`'
/// frame where it stands for one.
fn merged_cover(member: usize, direction: Direction, size: u32, at_ns: i64, mirrors: Option<usize>) -> Emission {
    Emission {
        member,
        direction,
        size,
        at_ns,
        lag_ns: 0,
        kind: EmissionKind::Cover { mirrors },
        group: None,
        merged: true,
    }
}

/// Serves member `i`'s queue of direction `d` against the target: real packets go in order while
/// they fit (at their arrival, or at the slot's start if they waited); then those whose wait
/// reaches the budget inside the slot leak at that moment. `lead`: the member leads the slot in
/// this direction (its originals sent at their arrival form mirror groups with their copies).
#[allow(clippy::too_many_arguments)]
fn serve(
    m: &mut MemberState,
    i: usize,
    d: usize,
    t: Target,
    start: i64,
    end: i64,
    budget: i64,
    lead: bool,
    out: &mut Vec<Emission>,
) {
    let direction = if d == 0 { Direction::In } else { Direction::Out };
    let first_seq = m.seq[d] - m.arrivals[d].len() as u64;
    let real = |h: &Queued, at: i64, leaked: bool, group: Option<u32>| Emission {
        member: i,
        direction,
        size: h.size,
        at_ns: at,
        lag_ns: 0,
        kind: EmissionKind::Real { seq: h.seq, arrival_ns: h.time_ns, leaked },
        group,
        merged: false,
    };
    let (mut sp, mut sb) = (0u64, 0u64);
    let queue = &mut m.queue[d];
    while let Some(h) = queue.front().copied() {
        let size = u64::from(h.size);
        if !(sp < t.packets && sb + size <= t.bytes) {
            break;
        }
        queue.pop_front();
        let group = (lead && h.seq >= first_seq).then(|| (h.seq - first_seq) as u32);
        out.push(real(&h, h.time_ns.max(start), false, group));
        sp += 1;
        sb += size;
        m.pending[d].packets -= 1;
        m.pending[d].bytes -= size;
    }
    while let Some(h) = queue.front().copied() {
        let deadline = h.time_ns + budget;
        if deadline >= end {
            break;
        }
        queue.pop_front();
        out.push(real(&h, deadline.max(start), true, None));
        m.pending[d].packets -= 1;
        m.pending[d].bytes -= u64::from(h.size);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Lag, RegulatorSettings, Supersequence, release_rng, set_rng};
    use super::*;
    use crate::shaper::Regulator;

    const MS: i64 = 1_000_000;

    /// A home of `n` members with random traffic over `slots` slots of 100 ms: per member, time-
    /// ordered (time, direction, size).
    fn home(n: usize, slots: i64, seed: u64) -> Vec<Vec<(i64, Direction, u32)>> {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        (0..n)
            .map(|_| {
                let mut t = 0;
                let mut v = Vec::new();
                loop {
                    t += (next() % 150) as i64 * MS + (next() % 1000) as i64;
                    if t >= slots * 100 * MS {
                        break v;
                    }
                    let d = if next() % 2 == 0 { Direction::In } else { Direction::Out };
                    v.push((t, d, (next() % 1400) as u32 + 40));
                }
            })
            .collect()
    }

    fn sizes() -> [SizeDistribution; 2] {
        let s = || SizeDistribution::from_sizes((40..1440).step_by(50));
        [s(), s()]
    }

    /// Drives a shaper slot by slot through `slots` slots; the decisions of every slot.
    fn drive(
        trace: &[Vec<(i64, Direction, u32)>],
        slots: i64,
        regulator: bool,
        budget_s: f64,
        release: &LagSettings,
    ) -> Vec<Vec<Emission>> {
        let settings = PadSettings::new(0.1, budget_s).expect("settings");
        let targets: Box<dyn TargetSource> = if regulator {
            Box::new(Regulator::new(RegulatorSettings::default(), settings.omega_ns, &sizes()).expect("regulator"))
        } else {
            Box::new(Supersequence)
        };
        let parts = SetShaperParts {
            members: trace.len(),
            sizes: sizes(),
            targets,
            cover_rng: set_rng(Some(5), 0),
            release_rng: release_rng(Some(5), 0),
        };
        let mut s = SetShaper::new(parts, 0, &settings, release).expect("shaper");
        let mut at = vec![0usize; trace.len()];
        let mut out = Vec::new();
        for _ in 0..slots {
            let end = s.slot_end_ns();
            for (m, t) in trace.iter().enumerate() {
                while let Some(&(time, d, size)) = t.get(at[m]).filter(|p| p.0 < end) {
                    s.arrive(m, d, size, time).expect("arrive");
                    at[m] += 1;
                }
            }
            out.push(s.end_slot().expect("slot").emissions().to_vec());
        }
        out
    }

    fn bridge(lag: Lag) -> LagSettings {
        LagSettings {
            deployment: Deployment::Bridge,
            downlink: Some(lag.clone()),
            uplink: Some(lag),
            ..LagSettings::default()
        }
    }

    /// Per member, its frames of a slot as sorted (direction, size, time on the air, is cover).
    fn per_member(slot: &[Emission], n: usize) -> Vec<Vec<(usize, u32, i64, bool)>> {
        let mut out = vec![Vec::new(); n];
        for e in slot {
            out[e.member].push((e.direction.index(), e.size, e.on_air_ns(), e.is_cover()));
        }
        out.iter_mut().for_each(|v| v.sort_unstable());
        out
    }

    #[test]
    fn mirroring_every_member_gives_every_member_the_same_frames_at_the_same_times() {
        // Members active in the same slots: a non-lead's own frames are copied too.
        let trace = home(3, 300, 11);
        let release = LagSettings { mirror_all: true, ..LagSettings::default() };
        let (mut busy, mut real) = (0, 0);
        for slot in drive(&trace, 300, false, 0.0, &release) {
            let m = per_member(&slot, 3);
            let frames = |v: &Vec<(usize, u32, i64, bool)>| v.iter().map(|x| (x.0, x.1, x.2)).collect::<Vec<_>>();
            assert_eq!(frames(&m[0]), frames(&m[1]), "slot {slot:?}");
            assert_eq!(frames(&m[1]), frames(&m[2]));
            busy += usize::from(m.iter().filter(|v| v.iter().any(|x| !x.3)).count() > 1);
            real += slot.iter().filter(|e| !e.is_cover()).count();
            // Real frames are never sent before they arrive.
            for e in &slot {
                if let EmissionKind::Real { arrival_ns, .. } = e.kind {
                    assert!(e.at_ns >= arrival_ns);
                }
            }
        }
        assert!(busy > 20, "the home has slots with several members active ({busy})");
        assert_eq!(real, trace.iter().map(Vec::len).sum::<usize>(), "every real frame is sent");
        // Without it a member active beside the lead sends frames nobody copies.
        let lead_only = drive(&trace, 300, false, 0.0, &LagSettings::default());
        let differ = lead_only.iter().filter(|slot| {
            let m = per_member(slot, 3);
            let frames = |v: &Vec<(usize, u32, i64, bool)>| v.iter().map(|x| (x.0, x.1, x.2)).collect::<Vec<_>>();
            frames(&m[0]) != frames(&m[1]) || frames(&m[1]) != frames(&m[2])
        });
        assert!(differ.count() > 20);
    }

    #[test]
    fn mirroring_every_member_under_held_release_puts_no_member_first() {
        let trace = home(3, 400, 12);
        let release = LagSettings { mirror_all: true, held_release: true, ..bridge(Lag::fixed_ms(2.0)) };
        let (mut groups, mut real_first) = (0, 0);
        for slot in drive(&trace, 400, false, 0.0, &release) {
            // Each merged frame: the same size and slot time on every member, a lag draw apart.
            let mut by_at: std::collections::BTreeMap<(usize, u32, i64), Vec<&Emission>> = Default::default();
            for e in &slot {
                by_at.entry((e.direction.index(), e.size, e.at_ns)).or_default().push(e);
            }
            for frames in by_at.values().filter(|f| f.len() == 3 && f.iter().any(|e| !e.is_cover())) {
                groups += 1;
                assert!(frames.iter().all(|e| e.lag_ns == 2_000_000), "every frame goes through the reaction");
                let first = frames.iter().min_by_key(|e| (e.on_air_ns(), e.member)).expect("a frame");
                real_first += usize::from(!first.is_cover());
            }
        }
        assert!(groups > 50, "{groups}");
        // A fixed lag ties every frame of a group: the first on the air is decided by nothing
        // the defense leaks (here by member number), not by which is real.
        assert!(real_first < groups, "{real_first} of {groups}");
    }

    #[test]
    fn mirroring_every_member_costs_what_the_targets_ask_when_they_ask_more() {
        // The regulator's targets exceed the merged frames: every member gets the same extra.
        let trace = home(3, 200, 13);
        let release = LagSettings { mirror_all: true, ..LagSettings::default() };
        for slot in drive(&trace, 200, true, 0.0, &release) {
            let m = per_member(&slot, 3);
            let frames = |v: &Vec<(usize, u32, i64, bool)>| v.iter().map(|x| (x.0, x.1, x.2)).collect::<Vec<_>>();
            assert_eq!(frames(&m[0]), frames(&m[2]));
        }
    }

    #[test]
    fn decisions_of_a_slot_do_not_change_when_later_packets_are_appended() {
        let short = home(3, 50, 11);
        let mut long = short.clone();
        for (m, extra) in home(3, 100, 12).into_iter().enumerate() {
            long[m].extend(extra.into_iter().map(|(t, d, s)| (t + 50 * 100 * MS, d, s)));
        }
        let held =
            LagSettings { held_release: true, random_order: true, slot_behind: true, ..bridge(Lag::default_preset()) };
        for release in [LagSettings::default(), held] {
            for regulator in [false, true] {
                let a = drive(&short, 50, regulator, 0.3, &release);
                let b = drive(&long, 150, regulator, 0.3, &release);
                assert_eq!(a[..], b[..50], "regulator {regulator}, {release:?}");
                assert!(b[50..].iter().any(|s| !s.is_empty()));
            }
        }
    }

    #[test]
    fn held_release_holds_each_original_for_a_lag_draw_and_copies_trail_by_one() {
        // One slot behind on both sides, so that nothing is decided after its time.
        let trace = home(3, 200, 21);
        let ideal = drive(&trace, 200, false, 0.0, &LagSettings { slot_behind: true, ..LagSettings::default() });
        let fixed = LagSettings { held_release: true, slot_behind: true, ..bridge(Lag::fixed_ms(2.0)) };
        let lagged = drive(&trace, 200, false, 0.0, &fixed);
        for (a, b) in ideal.iter().zip(&lagged) {
            // The same frames, each later by exactly the lag (mirrored cover) or the hold.
            assert_eq!(a.len(), b.len());
            let mut a: Vec<_> = a.iter().map(|e| (e.member, e.kind, e.size, e.on_air_ns())).collect();
            let mut b: Vec<_> = b
                .iter()
                .map(|e| {
                    let shift = match e.kind {
                        EmissionKind::Real { .. } | EmissionKind::Cover { mirrors: Some(_) } => 2 * MS,
                        EmissionKind::Cover { mirrors: None } => 0,
                    };
                    (e.member, e.kind, e.size, e.on_air_ns() - shift)
                })
                .collect();
            a.sort_by_key(|x| (x.0, x.3, x.2));
            b.sort_by_key(|x| (x.0, x.3, x.2));
            assert_eq!(a, b);
        }
        // Drawn from the preset: every hold within its bins, and the holds are the reals' delay.
        let preset = LagSettings { held_release: true, slot_behind: true, ..bridge(Lag::default_preset()) };
        let holds: Vec<i64> = drive(&trace, 200, false, 0.0, &preset)
            .iter()
            .flatten()
            .filter(|e| !e.is_cover())
            .map(|e| e.hold_ns() - 100 * MS)
            .collect();
        assert!(holds.len() > 100);
        assert!(holds.iter().all(|&h| (50_000..=9_600_000).contains(&h)), "{holds:?}");
    }

    #[test]
    fn every_frame_the_gateway_holds_takes_the_reaction_its_copies_take() {
        // Mirror-all holds every frame of a held direction until it is decided, and the gateway
        // releases originals and copies from one timer: held release adds nothing to it.
        let trace = home(3, 200, 61);
        let mirror = LagSettings { mirror_all: true, ..bridge(Lag::fixed_ms(2.0)) };
        let plain = drive(&trace, 200, false, 0.0, &mirror);
        let held = drive(&trace, 200, false, 0.0, &LagSettings { held_release: true, ..mirror });
        assert_eq!(plain, held);
        let reals: Vec<&Emission> = plain.iter().flatten().filter(|e| !e.is_cover()).collect();
        assert!(reals.len() > 100 && reals.iter().all(|e| e.lag_ns == 2 * MS));
        // Nothing held (mirroring the lead, no countermeasure): originals go on arrival.
        let forwarded = drive(&trace, 200, false, 0.0, &bridge(Lag::fixed_ms(2.0)));
        assert!(forwarded.iter().flatten().filter(|e| !e.is_cover()).all(|e| e.lag_ns == 0 && e.hold_ns() == 0));
    }

    #[test]
    fn outside_ideal_nothing_the_gateway_sends_goes_before_its_slot_is_decided() {
        // A live gateway learns a slot's decisions when the slot ends: without one slot behind,
        // copies trail their originals by up to a slot (plus the reaction), as on the wire.
        let trace = home(4, 300, 51);
        let at_end = |slots: &[Vec<Emission>], gateway_sends: &dyn Fn(&Emission) -> bool| {
            for (k, slot) in slots.iter().enumerate() {
                let end = (k as i64 + 1) * 100 * MS;
                for e in slot.iter().filter(|e| gateway_sends(e)) {
                    assert!(e.at_ns >= end, "slot {k}: {e:?} before the slot's end {end}");
                }
            }
        };
        // Bridge, lead only: copies at the slot's end, originals forwarded on arrival.
        let lead_only = drive(&trace, 300, false, 0.0, &bridge(Lag::fixed_ms(2.0)));
        at_end(&lead_only, &|e| e.is_cover());
        let mirrored =
            lead_only.iter().flatten().filter(|e| matches!(e.kind, EmissionKind::Cover { mirrors: Some(_) }));
        assert!(mirrored.count() > 100);
        assert!(lead_only.iter().flatten().filter(|e| !e.is_cover()).all(|e| e.hold_ns() == 0));
        // Held release: the originals wait for the decision too.
        let held = drive(&trace, 300, false, 0.0, &LagSettings { held_release: true, ..bridge(Lag::fixed_ms(2.0)) });
        at_end(&held, &|_| true);
        // An access point: uplink originals go when the device sends them, their copies after
        // the decision; downlink is held.
        let ap = LagSettings { deployment: Deployment::Ap, mirror_all: true, ..LagSettings::default() };
        let out = drive(&trace, 300, false, 0.0, &ap);
        at_end(&out, &|e| e.is_cover() || e.direction == Direction::In);
        assert!(
            out.iter().flatten().filter(|e| !e.is_cover() && e.direction == Direction::Out).all(|e| e.hold_ns() == 0)
        );
        // The ideal deployment keeps its idealisation: copies at their originals' times.
        let ideal = drive(&trace, 300, false, 0.0, &LagSettings::default());
        assert!(ideal.iter().flatten().any(|e| e.is_cover() && e.at_ns < (e.at_ns / (100 * MS) + 1) * 100 * MS));
    }

    #[test]
    fn an_access_point_never_delays_uplink_originals() {
        let trace = home(4, 300, 31);
        let ap = LagSettings {
            deployment: Deployment::Ap,
            held_release: true,
            random_order: true,
            slot_behind: true,
            ..LagSettings::default()
        };
        // The regulator with a budget: downlink waits and is held, uplink never.
        let out = drive(&trace, 300, true, 1.0, &ap);
        let reals = || out.iter().flatten().filter(|e| !e.is_cover());
        assert!(reals().filter(|e| e.direction == Direction::Out).all(|e| e.hold_ns() == 0));
        assert!(reals().filter(|e| e.direction == Direction::Out).count() > 100);
        assert!(reals().filter(|e| e.direction == Direction::In).all(|e| e.hold_ns() >= 100 * MS));
        // Uplink copies trail their originals.
        let copies = out.iter().flatten().filter(|e| e.direction == Direction::Out && e.is_cover());
        assert!(
            copies.clone().filter(|e| matches!(e.kind, EmissionKind::Cover { mirrors: Some(_) })).all(|e| e.lag_ns > 0)
        );
    }

    #[test]
    fn random_order_puts_the_original_first_in_a_share_of_groups_only() {
        let trace = home(3, 400, 41);
        let release = LagSettings { random_order: true, ..bridge(Lag::fixed_ms(1.0)) };
        let out = drive(&trace, 400, false, 0.0, &release);
        // Per lead original: is it the first of its group on the air?
        let (mut first, mut groups) = (0, 0);
        for slot in &out {
            for e in slot.iter().filter(|e| e.group.is_some() && !e.is_cover()) {
                let group = slot.iter().filter(|c| c.direction == e.direction && c.group == e.group);
                let earliest = group.map(Emission::on_air_ns).min().expect("group");
                groups += 1;
                first += usize::from(e.on_air_ns() == earliest);
            }
        }
        assert!(groups > 200, "{groups}");
        // A live gateway sends at `at_ns` and adds its own reaction: the group's order by `at_ns`
        // is its order on the air, the copies' lag the group's first reaction.
        for slot in &out {
            for e in slot.iter().filter(|e| e.group.is_some() && !e.is_cover()) {
                let mut group: Vec<&Emission> =
                    slot.iter().filter(|c| c.direction == e.direction && c.group == e.group).collect();
                group.sort_by_key(|c| c.on_air_ns());
                assert!(group.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "{group:?}");
                let lags: Vec<i64> = group.iter().filter(|c| c.is_cover()).map(|c| c.lag_ns).collect();
                assert!(lags.windows(2).all(|w| w[0] == w[1]), "{lags:?}");
            }
        }
        let share = first as f64 / groups as f64;
        assert!((0.2..0.5).contains(&share), "original first in {share} of groups");
        // Without it, the original is always first.
        let plain = drive(&trace, 400, false, 0.0, &bridge(Lag::fixed_ms(1.0)));
        for slot in &plain {
            for e in slot.iter().filter(|e| e.group.is_some() && !e.is_cover()) {
                let group = slot.iter().filter(|c| c.direction == e.direction && c.group == e.group);
                assert_eq!(group.map(Emission::on_air_ns).min(), Some(e.on_air_ns()));
            }
        }
    }

    #[test]
    fn arrivals_outside_the_open_slot_or_out_of_order_are_refused() {
        let parts = SetShaperParts {
            members: 2,
            sizes: sizes(),
            targets: Box::new(Supersequence),
            cover_rng: set_rng(Some(1), 0),
            release_rng: release_rng(Some(1), 0),
        };
        let mut s = SetShaper::new(parts, 0, &PadSettings::default(), &LagSettings::default()).expect("shaper");
        s.arrive(0, Direction::In, 10, 50 * MS).expect("in slot");
        assert!(s.arrive(0, Direction::In, 10, 40 * MS).is_err());
        assert!(s.arrive(1, Direction::In, 10, 100 * MS).is_err());
        assert!(s.arrive(2, Direction::In, 10, 60 * MS).is_err());
        let d = s.end_slot().expect("slot");
        // Member 1 copies member 0's frame, time and size.
        assert_eq!(d.member(1).len(), 1);
        assert_eq!((d.member(1)[0].at_ns, d.member(1)[0].size), (50 * MS, 10));
        assert_eq!(d.member(1)[0].kind, EmissionKind::Cover { mirrors: Some(0) });
        assert!(s.arrive(1, Direction::In, 10, 50 * MS).is_err());
        assert_eq!(s.slot(), 1);
    }
}
