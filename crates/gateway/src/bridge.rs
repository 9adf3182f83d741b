//! `ipet-gateway run`: a userspace L2 bridge between the device-side ports and the uplink that
//! applies the defense to the frames of the home's known devices.
//!
//! Threads: one receiver per port (blocking `recvmsg`, kernel timestamps), one timing thread
//! (absolute deadlines: a heap of due emissions and the slot boundaries of the home grid, each
//! waited for with `clock_nanosleep(TIMER_ABSTIME)`), a housekeeping thread (socket drop
//! statistics, SIGHUP reloads, the configuration URL's refresh), and the metrics endpoint.
//! Frames of devices the configuration does not know are forwarded untouched.

use std::{
    cmp::Ordering as CmpOrdering,
    collections::{BinaryHeap, HashMap, VecDeque},
    fs::File,
    io::{BufWriter, Write},
    sync::{
        Arc, Condvar, Mutex, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use ipet_traffic::{Direction, devices::Mac};
use tracing::{error, info, warn};

use crate::{
    config::{self, Checked, Mode, RunArgs},
    engine::{Emit, Engine, SlotRecord, Verdict},
    frame::{self, CoverTag},
    metrics::{DeviceCounters, Metrics},
    sys::{self, Open, PACKET_OUTGOING, PacketSocket},
};

struct Held {
    frame: Vec<u8>,
    in_port: usize,
    rx_ns: i64,
}

/// Everything that changes with the configuration.
struct State {
    cfg: Arc<Checked>,
    engine: Box<dyn Engine>,
    counters: Vec<Arc<DeviceCounters>>,
    held: Vec<[VecDeque<Held>; 2]>,
    /// Per device and direction: the MAC at the other end of its last real frame (cover looks
    /// like it comes from / goes to it).
    peer: Vec<[Option<Mac>; 2]>,
    origin_ns: Option<i64>,
    emits: Vec<Emit>,
    records: Vec<SlotRecord>,
    decision_log: Option<BufWriter<File>>,
}

#[derive(Clone, Copy)]
enum Action {
    Emit(Emit),
    SlotEnd(i64),
}

struct Scheduled {
    due: i64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.due, o.seq).cmp(&(self.due, self.seq)) // min-heap
    }
}

#[derive(Default)]
struct Timer {
    heap: Mutex<(BinaryHeap<Scheduled>, u64)>,
    wake: Condvar,
}

impl Timer {
    fn push(&self, due: i64, action: Action) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = h.0.peek().map(|s| s.due);
        h.1 += 1;
        let seq = h.1;
        h.0.push(Scheduled { due, seq, action });
        if earliest.is_none_or(|e| due < e) {
            self.wake.notify_one();
        }
    }
}

pub struct Gateway {
    ports: Vec<PacketSocket>,
    uplink: usize,
    mode: Mode,
    metrics: Arc<Metrics>,
    fdb: RwLock<HashMap<Mac, usize>>,
    state: Mutex<State>,
    timer: Timer,
    shutdown: AtomicBool,
}

/// Builds the live defense of a configuration.
pub fn build_engine(cfg: &Checked, mode: Mode) -> Result<Box<dyn Engine>> {
    crate::defend::build(cfg, mode)
}

impl Gateway {
    fn new_state(&self, cfg: Checked, decision_log: Option<BufWriter<File>>) -> Result<State> {
        let engine = build_engine(&cfg, self.mode)?;
        let n = cfg.table.len();
        let counters = cfg.table.devices().iter().map(|d| self.metrics.device(&d.name)).collect();
        Ok(State {
            cfg: Arc::new(cfg),
            engine,
            counters,
            held: (0..n).map(|_| [VecDeque::new(), VecDeque::new()]).collect(),
            peer: vec![[None; 2]; n],
            origin_ns: None,
            emits: Vec::new(),
            records: Vec::new(),
            decision_log,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a frame from `in_port` to `dst` goes.
    fn out_ports(&self, in_port: usize, dst: &Mac, out: &mut Vec<usize>) {
        out.clear();
        if !frame::is_group(dst)
            && let Some(&p) = self.fdb.read().unwrap_or_else(|e| e.into_inner()).get(dst)
        {
            if p != in_port {
                out.push(p);
            }
            return;
        }
        out.extend((0..self.ports.len()).filter(|&p| p != in_port));
    }

    fn send(&self, port: usize, f: &[u8]) -> bool {
        match self.ports[port].send(f) {
            Ok(()) => true,
            Err(e) => {
                self.metrics.send_failures.fetch_add(1, Relaxed);
                warn!(port = %self.ports[port].name, error = %e, "send failed");
                false
            }
        }
    }

    fn forward(&self, in_port: usize, f: &[u8], outs: &mut Vec<usize>) {
        let Some(dst) = frame::dst(f) else { return };
        self.out_ports(in_port, &dst, outs);
        for &p in outs.iter() {
            if self.send(p, f) {
                self.metrics.frames_forwarded.fetch_add(1, Relaxed);
            }
        }
    }

    fn receive(&self, port: usize) {
        let mut buf = vec![0u8; 65536];
        let mut outs = Vec::new();
        while !self.shutdown.load(Relaxed) {
            let rx = match self.ports[port].recv(&mut buf) {
                Ok(Some(rx)) => rx,
                Ok(None) => continue,
                Err(e) => {
                    error!(port = %self.ports[port].name, error = %e, "receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if rx.pkttype == PACKET_OUTGOING || rx.len < 14 {
                continue;
            }
            self.metrics.frames_seen.fetch_add(1, Relaxed);
            let f = &buf[..rx.len];
            let (Some(src), Some(dst)) = (frame::src(f), frame::dst(f)) else { continue };
            if !frame::is_group(&src) {
                let known = self.fdb.read().unwrap_or_else(|e| e.into_inner()).get(&src) == Some(&port);
                if !known {
                    self.fdb.write().unwrap_or_else(|e| e.into_inner()).insert(src, port);
                }
            }
            let mut st = self.lock();
            let classified = frame::classify(f, &st.cfg.table).ok();
            let Some((dev, dir, size)) = classified else {
                drop(st);
                self.metrics.unknown_passed.fetch_add(1, Relaxed);
                self.forward(port, f, &mut outs);
                continue;
            };
            let d = dir.index();
            st.counters[dev].seen[d].fetch_add(1, Relaxed);
            st.counters[dev].real_bytes[d].fetch_add(u64::from(size), Relaxed);
            st.peer[dev][d] = Some(if dir == Direction::In { src } else { dst });
            if st.origin_ns.is_none() && st.cfg.set_of[dev].is_some() {
                self.start_grid(&mut st, rx.ts_ns);
            }
            let mut emits = std::mem::take(&mut st.emits);
            emits.clear();
            let mut verdict = if st.cfg.set_of[dev].is_some() {
                st.engine.on_real(dev, dir, size, rx.ts_ns, &mut emits)
            } else {
                Verdict::Forward
            };
            if verdict == Verdict::Hold && self.mode == Mode::Ap && dir == Direction::Out {
                verdict = Verdict::Forward; // already on the air: an access point cannot hold it
            }
            if verdict == Verdict::Hold {
                if st.held[dev][d].len() >= st.cfg.doc.hold_queue {
                    self.metrics.hold_overflows.fetch_add(1, Relaxed);
                    verdict = Verdict::Forward;
                } else {
                    st.counters[dev].held[d].fetch_add(1, Relaxed);
                    st.held[dev][d].push_back(Held { frame: f.to_vec(), in_port: port, rx_ns: rx.ts_ns });
                }
            }
            if verdict == Verdict::Forward {
                st.counters[dev].forwarded[d].fetch_add(1, Relaxed);
                self.forward(port, f, &mut outs);
                self.metrics.forward.observe_ns(sys::now_ns() - rx.ts_ns);
            }
            for e in emits.drain(..) {
                self.run_emit(&mut st, e, &mut outs);
            }
            st.emits = emits;
        }
    }

    fn start_grid(&self, st: &mut State, t0: i64) {
        st.origin_ns = Some(t0);
        self.metrics.slot_origin_ns.store(t0, Relaxed);
        self.timer.push(t0 + st.cfg.omega_ns, Action::SlotEnd(0));
        info!(origin_ns = t0, omega_ns = st.cfg.omega_ns, "home grid started");
    }

    /// Runs an emission now, or schedules it when it is due later.
    fn run_emit(&self, st: &mut State, e: Emit, outs: &mut Vec<usize>) {
        let at = match e {
            Emit::Cover { at_ns, .. } | Emit::Release { at_ns, .. } => at_ns,
        };
        if at > sys::now_ns() + 20_000 {
            self.timer.push(at, Action::Emit(e));
            return;
        }
        self.emit_now(st, e, outs);
    }

    fn emit_now(&self, st: &mut State, e: Emit, outs: &mut Vec<usize>) {
        match e {
            Emit::Cover { device, direction, size, at_ns, mirrors_ns } => {
                let Some(dev) = st.cfg.table.devices().get(device) else { return };
                let Some(mac) = dev.mac else { return };
                let d = direction.index();
                let own = self.ports_mac();
                let peer = st.peer[device][d].unwrap_or(own);
                let (dst, src) = if direction == Direction::In { (mac, peer) } else { (peer, mac) };
                let mut f = Vec::with_capacity(size as usize + 64);
                let tag = CoverTag { direction, device: device as u16, size, due_ns: at_ns, mirrors_ns };
                frame::cover(&mut f, &dst, &src, &tag);
                // To the device: where it was learned; from it: the observed link (the uplink in
                // bridge mode, the shared radio side in ap mode).
                outs.clear();
                match (direction, self.mode) {
                    (Direction::In, _) => match self.fdb.read().unwrap_or_else(|e| e.into_inner()).get(&mac) {
                        Some(&p) if p != self.uplink => outs.push(p),
                        _ => outs.extend((0..self.ports.len()).filter(|&p| p != self.uplink)),
                    },
                    (Direction::Out, Mode::Bridge) => outs.push(self.uplink),
                    (Direction::Out, Mode::Ap) => {
                        outs.extend((0..self.ports.len()).filter(|&p| p != self.uplink).take(1))
                    }
                }
                let mut sent = false;
                for &p in outs.iter() {
                    sent |= self.send(p, &f);
                }
                if sent {
                    self.metrics.reaction.observe_ns(sys::now_ns() - at_ns.max(mirrors_ns));
                    st.counters[device].cover_frames[d].fetch_add(1, Relaxed);
                    st.counters[device].cover_bytes[d].fetch_add(u64::from(size), Relaxed);
                }
            }
            Emit::Release { device, direction, count, at_ns } => {
                let d = direction.index();
                for _ in 0..count {
                    let Some(h) = st.held.get_mut(device).and_then(|q| q[d].pop_front()) else { break };
                    self.forward(h.in_port, &h.frame, outs);
                    let now = sys::now_ns();
                    self.metrics.hold.observe_ns(now - h.rx_ns);
                    self.metrics.reaction.observe_ns(now - at_ns);
                }
            }
        }
    }

    fn ports_mac(&self) -> Mac {
        [0x02, 0x69, 0x70, 0x65, 0x74, 0x00] // locally administered: "ipet"
    }

    fn timing(&self) {
        loop {
            let mut h = self.timer.heap.lock().unwrap_or_else(|e| e.into_inner());
            if self.shutdown.load(Relaxed) {
                return;
            }
            let Some(due) = h.0.peek().map(|s| s.due) else {
                drop(self.timer.wake.wait_timeout(h, Duration::from_millis(100)));
                continue;
            };
            let now = sys::now_ns();
            if due - now > 300_000 {
                drop(self.timer.wake.wait_timeout(h, Duration::from_nanos((due - now - 300_000) as u64)));
                continue;
            }
            let Some(item) = h.0.pop() else { continue };
            drop(h);
            sys::sleep_until(item.due);
            let mut st = self.lock();
            let mut outs = Vec::new();
            match item.action {
                Action::Emit(e) => self.emit_now(&mut st, e, &mut outs),
                Action::SlotEnd(slot) => {
                    let mut emits = std::mem::take(&mut st.emits);
                    let mut records = std::mem::take(&mut st.records);
                    emits.clear();
                    records.clear();
                    st.engine.on_slot_end(slot, &mut emits, &mut records);
                    self.metrics.slots.fetch_add(1, Relaxed);
                    for e in emits.drain(..) {
                        self.run_emit(&mut st, e, &mut outs);
                    }
                    if let Some(w) = st.decision_log.as_mut() {
                        for r in &records {
                            let _ = serde_json::to_writer(&mut *w, r);
                            let _ = w.write_all(b"\n");
                        }
                        if slot % 10 == 0 {
                            let _ = w.flush();
                        }
                    }
                    st.emits = emits;
                    st.records = records;
                    if let Some(o) = st.origin_ns {
                        self.timer.push(o + (slot + 2) * st.cfg.omega_ns, Action::SlotEnd(slot + 1));
                    }
                }
            }
        }
    }

    /// Takes a new configuration; the held frames of the old one go out at once.
    fn reload(&self, args: &RunArgs) {
        match config::load(args).and_then(|(cfg, at)| {
            let log = self.lock().decision_log.take();
            self.new_state(cfg, log).map(|s| (s, at))
        }) {
            Ok((mut new, at)) => {
                let mut st = self.lock();
                let mut outs = Vec::new();
                for q in st.held.iter_mut().flatten() {
                    while let Some(h) = q.pop_front() {
                        self.forward(h.in_port, &h.frame, &mut outs);
                    }
                }
                if let Some(o) = st.origin_ns {
                    new.origin_ns = Some(o); // the grid goes on
                }
                new.decision_log = st.decision_log.take().or(new.decision_log);
                *st = new;
                self.metrics.config_loaded_ns.store(at, Relaxed);
                self.metrics.config_reloads.fetch_add(1, Relaxed);
                info!(defense = st.engine.name(), devices = st.cfg.table.len(), "configuration reloaded");
            }
            Err(e) => {
                self.metrics.config_rejects.fetch_add(1, Relaxed);
                error!(error = %format!("{e:#}"), "configuration refused; the running one stays");
            }
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let (cfg, loaded_at) = config::load(&args).context("configuration")?;
    let open = |name: &str| {
        PacketSocket::open(
            name,
            Open {
                promisc: true,
                ignore_outgoing: true,
                rcvbuf: args.rcvbuf,
                timeout: Some(Duration::from_millis(100)),
            },
        )
        .with_context(|| format!("opening port {name}"))
    };
    let mut ports = Vec::new();
    for p in &args.device_ports {
        ports.push(open(p)?);
    }
    ports.push(open(&args.uplink)?);
    let uplink = ports.len() - 1;
    let metrics = Arc::new(Metrics::default());
    metrics.config_loaded_ns.store(loaded_at, Relaxed);
    let decision_log = match &args.decision_log {
        Some(p) => Some(BufWriter::new(File::create(p).with_context(|| format!("{}", p.display()))?)),
        None => None,
    };
    let mut gw = Gateway {
        ports,
        uplink,
        mode: args.mode,
        metrics: metrics.clone(),
        fdb: RwLock::new(HashMap::new()),
        state: Mutex::new(State {
            cfg: Arc::new(
                crate::config::HomeConfig::parse(
                    "defense = \"pass-through\"\n[[devices]]\nname = \"x\"\nmac = \"02:00:00:00:00:01\"",
                    "init",
                )?
                .check()?,
            ),
            engine: Box::new(crate::engine::PassThrough),
            counters: Vec::new(),
            held: Vec::new(),
            peer: Vec::new(),
            origin_ns: None,
            emits: Vec::new(),
            records: Vec::new(),
            decision_log: None,
        }),
        timer: Timer::default(),
        shutdown: AtomicBool::new(false),
    };
    let state = gw.new_state(cfg, decision_log)?;
    *gw.state.get_mut().unwrap_or_else(|e| e.into_inner()) = state;
    let gw = Arc::new(gw);
    if !args.metrics_addr.is_empty() {
        let addr = args.metrics_addr.parse().context("--metrics-addr")?;
        let at = crate::metrics::serve(metrics.clone(), addr).context("metrics endpoint")?;
        info!(%at, "metrics on /metrics");
    }
    {
        let st = gw.lock();
        info!(defense = st.engine.name(), mode = ?args.mode, devices = st.cfg.table.len(), sets = st.cfg.sets.len(),
            ports = ?gw.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), "gateway running");
    }
    let hup = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    let mut threads = Vec::new();
    for p in 0..gw.ports.len() {
        let g = gw.clone();
        let prio = args.rt_priority;
        threads.push(std::thread::Builder::new().name(format!("rx-{}", g.ports[p].name)).spawn(move || {
            if prio > 0
                && let Err(e) = sys::set_fifo(prio)
            {
                warn!(error = %e, "SCHED_FIFO refused");
            }
            g.receive(p)
        })?);
    }
    {
        let g = gw.clone();
        let prio = args.rt_priority;
        threads.push(std::thread::Builder::new().name("timing".into()).spawn(move || {
            if prio > 0
                && let Err(e) = sys::set_fifo(prio)
            {
                warn!(error = %e, "SCHED_FIFO refused");
            }
            g.timing()
        })?);
    }
    let mut last_refresh = std::time::Instant::now();
    let mut tick = 0u64;
    while !term.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        tick += 1;
        if tick % 10 == 0 {
            for p in &gw.ports {
                if let Ok((frames, drops)) = p.stats() {
                    metrics.socket_frames.fetch_add(frames, Relaxed);
                    metrics.socket_drops.fetch_add(drops, Relaxed);
                }
            }
            if let Some(path) = &args.metrics_file {
                crate::metrics::write_textfile(&metrics, path);
            }
        }
        let refresh = args.config_url.is_some() && last_refresh.elapsed().as_secs() >= args.config_refresh_secs;
        if hup.swap(false, Relaxed) || refresh {
            last_refresh = std::time::Instant::now();
            gw.reload(&args);
        }
    }
    info!("stopping: held frames go out");
    gw.shutdown.store(true, Relaxed);
    gw.timer.wake.notify_all();
    for t in threads {
        let _ = t.join();
    }
    let mut st = gw.lock();
    let mut outs = Vec::new();
    for q in st.held.iter_mut().flatten() {
        while let Some(h) = q.pop_front() {
            gw.forward(h.in_port, &h.frame, &mut outs);
        }
    }
    if let Some(w) = st.decision_log.as_mut() {
        let _ = w.flush();
    }
    for p in &gw.ports {
        if let Ok((frames, drops)) = p.stats() {
            metrics.socket_frames.fetch_add(frames, Relaxed);
            metrics.socket_drops.fetch_add(drops, Relaxed);
        }
    }
    if let Some(path) = &args.metrics_file {
        crate::metrics::write_textfile(&metrics, path);
    }
    Ok(())
}
