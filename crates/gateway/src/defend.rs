//! The set defenses, live: each anonymity set is one `ipet_traffic::shaper::SetShaper` built by
//! the shared specification (`SetDefenseSpec::shaper`, the entry point the simulator's setup
//! also goes through), fed each real frame as it is seen and closed at every slot boundary. Its
//! decisions are carried out as they are: cover of the size and at the time decided, held real
//! frames released at their `at_ns`. Nothing of the defense is decided here.
//!
//! What the gateway holds: every real frame of a direction its deployment transmits (bridge:
//! both; ap: downlink only) when the release settings can delay it (one slot behind, held
//! release, random order, or a latency budget); otherwise frames are forwarded at once and the
//! step's decision to send them at their arrival is already carried out.

use anyhow::{Context, Result, anyhow};
use ipet_traffic::{
    Direction,
    set_defense::SetDefenseSpec,
    shaper::{EmissionKind, IpetCover, IpetShaper, SetShaper, SizeDistribution},
    simulate::{FixedRows, RowSource},
};
use tracing::warn;

use crate::{
    config::{Checked, DefenseName},
    engine::{Emit, Engine, PassThrough, SlotRecord},
};

/// Which directions ([`Direction::index`]) the gateway holds real frames of, for a configuration
/// (its spec's deployment is the gateway's mode): the data plane's rule, which the step's
/// decisions follow too.
pub fn holds(cfg: &Checked) -> [bool; 2] {
    let Some(spec) = &cfg.spec else { return [false; 2] };
    let budget_ns = ipet_traffic::packet::secs_to_ns(spec.latency_budget);
    let holds = |d: Direction| spec.release.holds_until_decided(d, budget_ns);
    [holds(Direction::In), holds(Direction::Out)]
}

/// Rows per set for `targets`, fetched before the engine is built (network on the caller's
/// thread; the engine's thread never waits on the service).
pub type Rows = Vec<Option<FixedRows>>;

/// Fetches each set's target rows (targets: asked for under the set's first member) or each
/// device's rows (ipet) from the service: `GET {url}/perturbations/{device}/{generation}
/// ?n=..&format=npy[&model_set=..]` with the bearer token; a copy is kept in `state_dir` and used
/// when the service is unreachable.
pub fn fetch_rows(cfg: &Checked, token: Option<&str>, state_dir: &std::path::Path) -> Result<Rows> {
    let Some(svc) = &cfg.doc.service else { return Ok(Vec::new()) };
    // Rows per set (targets) or per device of the table (ipet).
    // The service serves a set's target rows under any of its members (a set-targets model set
    // maps each device to its set's generator): the set's first member asks for them.
    let names: Vec<String> = match cfg.doc.defense {
        DefenseName::Targets => cfg.sets.iter().map(|(_, m)| cfg.table.devices()[m[0]].name.clone()).collect(),
        DefenseName::Ipet => cfg.table.devices().iter().map(|d| d.name.clone()).collect(),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for name in &names {
        let mut url =
            format!("{}/perturbations/{name}/{}?n={}&format=npy", svc.url.trim_end_matches('/'), svc.generation, svc.n);
        if let Some(m) = &svc.model_set {
            url.push_str(&format!("&model_set={m}"));
        }
        let cache = state_dir.join(format!("rows-{name}.npy"));
        let bytes = match crate::config::fetch_bytes(&url, token) {
            Ok(b) => {
                let _ = std::fs::create_dir_all(state_dir);
                let _ = std::fs::write(&cache, &b);
                b
            }
            Err(e) => {
                warn!(set = %name, error = %format!("{e:#}"), "rows unreachable: using the cached copy");
                std::fs::read(&cache).with_context(|| format!("service.url: {url} unreachable and no cached rows"))?
            }
        };
        out.push(Some(FixedRows::from_npy_bytes(&bytes).map_err(|e| anyhow!("rows of set {name}: {e}"))?));
    }
    Ok(out)
}

pub fn build(cfg: &Checked, rows: Rows) -> Result<Box<dyn Engine>> {
    match (&cfg.spec, cfg.doc.defense) {
        (Some(spec), _) => Ok(Box::new(SetEngine::new(cfg, spec.clone(), rows)?)),
        (None, DefenseName::Ipet) => Ok(Box::new(IpetEngine::new(cfg, rows))),
        (None, _) => Ok(Box::new(PassThrough)),
    }
}

/// iPET live: one `ipet_traffic::shaper::IpetShaper` per device (the step the simulator's
/// slotted mode drives), fed every real frame's time; at each slot boundary its cover up to the
/// next boundary (`due`) is scheduled at the times it gives. Real frames are never held.
pub struct IpetEngine {
    shapers: Vec<Option<IpetShaper<'static>>>,
    omega_ns: i64,
    origin_ns: i64,
}

impl IpetEngine {
    fn new(cfg: &Checked, rows: Rows) -> Self {
        let ipet = cfg.doc.ipet.clone().unwrap_or_default();
        let gap = (ipet.active_gap * 1e9).round() as i64;
        let omega = cfg.omega_ns;
        let shapers = rows
            .into_iter()
            // Each step owns its device's rows: they go with this configuration on a reload.
            .map(|r| r.map(|r| IpetShaper::new(r, omega, gap)))
            .collect();
        Self { shapers, omega_ns: omega, origin_ns: 0 }
    }

    fn cover(device: usize, out: &mut Vec<Emit>) -> impl FnMut(IpetCover) -> ipet_traffic::Result<()> + '_ {
        move |c: IpetCover| {
            out.push(Emit::Cover {
                device,
                direction: c.direction,
                size: c.size as u32,
                at_ns: c.time_ns,
                mirrors_ns: 0,
            });
            Ok(())
        }
    }
}

impl Engine for IpetEngine {
    fn name(&self) -> &'static str {
        "ipet"
    }

    fn start(&mut self, origin_ns: i64) -> Result<()> {
        self.origin_ns = origin_ns;
        Ok(())
    }

    fn arrive(&mut self, device: usize, _: Direction, _: u32, t_ns: i64, out: &mut Vec<Emit>, _: &mut Vec<SlotRecord>) {
        if let Some(Some(s)) = self.shapers.get_mut(device)
            && let Err(e) = s.arrive(t_ns, &mut Self::cover(device, out))
        {
            warn!(device, error = %e, "iPET step refused an arrival");
        }
    }

    fn end_slot(&mut self, slot: i64, out: &mut Vec<Emit>, _: &mut Vec<SlotRecord>) {
        let until = self.origin_ns + (slot + 2) * self.omega_ns;
        for (device, s) in self.shapers.iter_mut().enumerate() {
            if let Some(s) = s
                && let Err(e) = s.due(until, &mut Self::cover(device, out))
            {
                warn!(device, error = %e, "iPET step refused a tick");
            }
        }
    }
}

struct Set {
    name: String,
    members: Vec<usize>,
    sizes: [SizeDistribution; 2],
    rows: Option<FixedRows>,
    shaper: Option<SetShaper<'static>>,
}

pub struct SetEngine {
    spec: SetDefenseSpec,
    sets: Vec<Set>,
    /// Per device: (set index, member index).
    member_of: Vec<Option<(usize, usize)>>,
    /// Per device: the last arrival time fed (the step takes a member's arrivals in order).
    last_ns: Vec<i64>,
    holds: [bool; 2],
    omega_ns: i64,
    origin_ns: i64,
    /// The first slot not yet closed.
    open: i64,
    started: bool,
}

/// Cover sizes when a set has no size profile: a coarse ladder (the simulator takes the set's
/// own sizes from the trace, which a live gateway does not have; give `spec.size_profiles`).
fn fallback_sizes() -> [SizeDistribution; 2] {
    let ladder = [60u32, 120, 250, 500, 1000, 1400];
    [SizeDistribution::from_sizes(ladder), SizeDistribution::from_sizes(ladder)]
}

impl SetEngine {
    fn new(cfg: &Checked, spec: SetDefenseSpec, rows: Rows) -> Result<Self> {
        let mut member_of = vec![None; cfg.table.len()];
        let mut rows = rows.into_iter();
        let sets = cfg
            .sets
            .iter()
            .enumerate()
            .map(|(i, (name, members))| {
                for (m, &d) in members.iter().enumerate() {
                    member_of[d] = Some((i, m));
                }
                let sizes = match spec.size_profiles.iter().find(|p| &p.set == name) {
                    Some(p) => p.distributions(),
                    None => {
                        warn!(set = %name, "no size profile: cover sizes from a fixed ladder");
                        fallback_sizes()
                    }
                };
                Set { name: name.clone(), members: members.clone(), sizes, rows: rows.next().flatten(), shaper: None }
            })
            .collect();
        Ok(Self {
            holds: holds(cfg),
            omega_ns: cfg.omega_ns,
            spec,
            sets,
            member_of,
            last_ns: vec![i64::MIN; cfg.table.len()],
            origin_ns: 0,
            open: 0,
            started: false,
        })
    }

    fn close_through(&mut self, slot: i64, out: &mut Vec<Emit>, log: &mut Vec<SlotRecord>) {
        if !self.started {
            return;
        }
        let behind = i64::from(self.spec.release.slot_behind);
        while self.open <= slot {
            for set in &mut self.sets {
                let Some(shaper) = set.shaper.as_mut() else { continue };
                let dec = match shaper.end_slot() {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(set = %set.name, error = %e, "step refused a slot");
                        continue;
                    }
                };
                let (mut cover, mut released) = (0, 0);
                for e in dec.emissions() {
                    let device = set.members[e.member];
                    match e.kind {
                        EmissionKind::Cover { .. } => {
                            cover += 1;
                            out.push(Emit::Cover {
                                device,
                                direction: e.direction,
                                size: e.size,
                                at_ns: e.at_ns,
                                mirrors_ns: 0,
                            });
                        }
                        EmissionKind::Real { seq, .. } if self.holds[e.direction.index()] => {
                            released += 1;
                            out.push(Emit::Release { device, direction: e.direction, seq, at_ns: e.at_ns });
                        }
                        EmissionKind::Real { .. } => {} // forwarded on arrival
                    }
                }
                let t = dec.target;
                log.push(SlotRecord {
                    set: set.name.clone(),
                    slot: dec.slot,
                    emitted_slot: dec.slot + behind,
                    target: [t[0].packets, t[0].bytes, t[1].packets, t[1].bytes],
                    cover,
                    released,
                });
            }
            self.open += 1;
        }
    }
}

impl Engine for SetEngine {
    fn name(&self) -> &'static str {
        self.spec.defense.name()
    }

    fn start(&mut self, origin_ns: i64) -> Result<()> {
        self.origin_ns = origin_ns;
        for (i, set) in self.sets.iter_mut().enumerate() {
            let rows = set.rows.take().map(|r| Box::new(r) as Box<dyn RowSource>);
            let shaper = self
                .spec
                .shaper(i, set.members.len(), set.sizes.clone(), rows, origin_ns)
                .map_err(|e| anyhow!("set {}: {e}", set.name))?;
            set.shaper = Some(shaper);
        }
        self.started = true;
        Ok(())
    }

    fn arrive(
        &mut self,
        device: usize,
        direction: Direction,
        size: u32,
        t_ns: i64,
        out: &mut Vec<Emit>,
        log: &mut Vec<SlotRecord>,
    ) {
        let Some((s, m)) = self.member_of.get(device).copied().flatten() else { return };
        if !self.started {
            return;
        }
        let slot = (t_ns - self.origin_ns).div_euclid(self.omega_ns);
        if slot > self.open {
            self.close_through(slot - 1, out, log);
        }
        // A frame seen after its slot was closed (threads of two ports, or the timer ahead of a
        // receiver) joins the open slot at its start, as the step asks.
        let start = self.origin_ns + self.open * self.omega_ns;
        let t = t_ns.max(start).max(self.last_ns[device]);
        self.last_ns[device] = t;
        if let Some(shaper) = self.sets[s].shaper.as_mut()
            && let Err(e) = shaper.arrive(m, direction, size, t)
        {
            warn!(device, error = %e, "step refused an arrival");
        }
    }

    fn end_slot(&mut self, slot: i64, out: &mut Vec<Emit>, log: &mut Vec<SlotRecord>) {
        self.close_through(slot, out, log);
    }
}
