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
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use ipet_traffic::{Direction, devices::Mac};
use tracing::{error, info, warn};

use crate::{
    config::{self, Checked, Mode, RunArgs},
    defend::{self, Rows},
    engine::{Emit, Engine, SlotRecord},
    frame::{self, CoverTag},
    metrics::{DeviceCounters, Metrics},
    sys::{self, Open, PACKET_OUTGOING, PacketSocket},
};

struct Held {
    frame: Vec<u8>,
    in_port: usize,
    rx_ns: i64,
    seq: u64,
}

/// Everything the packet path shares that changes with the configuration.
struct State {
    cfg: Arc<Checked>,
    /// Configuration generation: emissions of an older one are dropped.
    generation: u64,
    holds: [bool; 2],
    counters: Vec<Arc<DeviceCounters>>,
    held: Vec<[VecDeque<Held>; 2]>,
    /// Arrivals per device and direction since the configuration was taken (the step's seq).
    arrivals: Vec<[u64; 2]>,
    /// Per device and direction: the MAC at the other end of its last real frame (cover looks
    /// like it comes from / goes to it).
    peer: Vec<[Option<Mac>; 2]>,
    origin_ns: Option<i64>,
}

/// What the packet path tells the timing thread, in the order it happened.
enum Msg {
    /// A new configuration (its engine is built on the timing thread).
    Config {
        cfg: Arc<Checked>,
        rows: Rows,
        generation: u64,
    },
    /// The home grid starts (the first shaped frame's time).
    Start {
        origin_ns: i64,
        generation: u64,
    },
    Arrival {
        device: usize,
        direction: Direction,
        size: u32,
        t_ns: i64,
    },
}

#[derive(Clone, Copy)]
enum Action {
    Emit(Emit),
    SlotEnd(i64),
}

struct Scheduled {
    due: i64,
    seq: u64,
    generation: u64,
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

pub struct Gateway {
    ports: Vec<PacketSocket>,
    uplink: usize,
    mode: Mode,
    metrics: Arc<Metrics>,
    fdb: RwLock<HashMap<Mac, usize>>,
    state: Mutex<State>,
    tx: Mutex<Sender<Msg>>,
    shutdown: AtomicBool,
    /// See `RunArgs::slot_guard_us`.
    guard_ns: i64,
}

fn new_state(cfg: Arc<Checked>, metrics: &Metrics, generation: u64) -> State {
    let n = cfg.table.len();
    State {
        holds: defend::holds(&cfg),
        counters: cfg.table.devices().iter().map(|d| metrics.device(&d.name)).collect(),
        held: (0..n).map(|_| [VecDeque::new(), VecDeque::new()]).collect(),
        arrivals: vec![[0; 2]; n],
        peer: vec![[None; 2]; n],
        origin_ns: None,
        generation,
        cfg,
    }
}

impl Gateway {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tell(&self, m: Msg) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(m);
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
            let Ok((dev, dir, size)) = frame::classify(f, &st.cfg.table) else {
                drop(st);
                self.metrics.unknown_passed.fetch_add(1, Relaxed);
                self.forward(port, f, &mut outs);
                continue;
            };
            let d = dir.index();
            st.counters[dev].seen[d].fetch_add(1, Relaxed);
            st.counters[dev].real_bytes[d].fetch_add(u64::from(size), Relaxed);
            st.peer[dev][d] = Some(if dir == Direction::In { src } else { dst });
            let shaped = st.cfg.shaped[dev];
            if !shaped {
                drop(st);
                self.forward(port, f, &mut outs);
                continue;
            }
            if st.origin_ns.is_none() {
                st.origin_ns = Some(rx.ts_ns);
                self.metrics.slot_origin_ns.store(rx.ts_ns, Relaxed);
                self.tell(Msg::Start { origin_ns: rx.ts_ns, generation: st.generation });
            }
            let seq = st.arrivals[dev][d];
            st.arrivals[dev][d] += 1;
            let mut hold = st.holds[d];
            if hold && st.held[dev][d].len() >= st.cfg.doc.hold_queue {
                self.metrics.hold_overflows.fetch_add(1, Relaxed);
                hold = false;
            }
            if hold {
                st.counters[dev].held[d].fetch_add(1, Relaxed);
                st.held[dev][d].push_back(Held { frame: f.to_vec(), in_port: port, rx_ns: rx.ts_ns, seq });
            }
            // Told under the lock: the timing thread sees arrivals in the order they were taken.
            self.tell(Msg::Arrival { device: dev, direction: dir, size, t_ns: rx.ts_ns });
            if !hold {
                st.counters[dev].forwarded[d].fetch_add(1, Relaxed);
                drop(st);
                self.forward(port, f, &mut outs);
                self.metrics.forward.observe_ns(sys::now_ns() - rx.ts_ns);
            }
        }
    }

    fn emit_now(&self, e: Emit, generation: u64, outs: &mut Vec<usize>) {
        let mut st = self.lock();
        if st.generation != generation {
            return;
        }
        match e {
            Emit::Cover { device, direction, size, at_ns, mirrors_ns } => {
                let Some(dev) = st.cfg.table.devices().get(device) else { return };
                let Some(mac) = dev.mac else { return };
                let d = direction.index();
                let peer = st.peer[device][d].unwrap_or(GATEWAY_MAC);
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
            Emit::Release { device, direction, seq, at_ns } => {
                let d = direction.index();
                let Some(q) = st.held.get_mut(device).map(|q| &mut q[d]) else { return };
                // Held frames are in seq order; a frame that overflowed the queue went at once.
                while q.front().is_some_and(|h| h.seq < seq) {
                    // Never released by the step (should not happen): send it rather than strand it.
                    if let Some(h) = q.pop_front() {
                        self.forward(h.in_port, &h.frame, outs);
                    }
                }
                if q.front().is_some_and(|h| h.seq == seq)
                    && let Some(h) = q.pop_front()
                {
                    drop(st);
                    self.forward(h.in_port, &h.frame, outs);
                    let now = sys::now_ns();
                    self.metrics.hold.observe_ns(now - h.rx_ns);
                    self.metrics.reaction.observe_ns(now - at_ns);
                }
            }
        }
    }

    /// The timing thread: owns the defense's engine (the data plane's step, built here), the heap
    /// of due emissions and the slot boundaries; sleeps to each deadline with clock_nanosleep.
    fn timing(&self, rx: Receiver<Msg>, mut log: Option<BufWriter<File>>) {
        let mut engine: Box<dyn Engine> = Box::new(crate::engine::PassThrough);
        let mut generation = 0u64;
        let (mut origin, mut omega) = (0i64, 100_000_000i64);
        let mut heap: BinaryHeap<Scheduled> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut emits: Vec<Emit> = Vec::new();
        let mut records: Vec<SlotRecord> = Vec::new();
        let mut outs = Vec::new();
        const EARLY: i64 = 300_000;
        loop {
            if self.shutdown.load(Relaxed) {
                break;
            }
            let wait = heap.peek().map_or(100_000_000, |s| (s.due - sys::now_ns() - EARLY).clamp(0, 100_000_000));
            let msg = if wait > 0 {
                match rx.recv_timeout(Duration::from_nanos(wait as u64)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                rx.try_recv().ok()
            };
            emits.clear();
            records.clear();
            match msg {
                Some(Msg::Config { cfg, rows, generation: g }) => match defend::build(&cfg, rows) {
                    Ok(e) => {
                        engine = e;
                        generation = g;
                        omega = cfg.omega_ns;
                        heap.clear();
                    }
                    Err(e) => error!(error = %format!("{e:#}"), "defense not built"),
                },
                Some(Msg::Start { origin_ns, generation: g }) if g == generation => {
                    origin = origin_ns;
                    if let Err(e) = engine.start(origin) {
                        error!(error = %format!("{e:#}"), "defense not started");
                    }
                    seq += 1;
                    heap.push(Scheduled { due: origin + omega, seq, generation, action: Action::SlotEnd(0) });
                    info!(origin_ns, omega_ns = omega, defense = engine.name(), "home grid started");
                }
                Some(Msg::Start { .. }) => {}
                Some(Msg::Arrival { device, direction, size, t_ns }) => {
                    engine.arrive(device, direction, size, t_ns, &mut emits, &mut records);
                }
                None => {}
            }
            // Due work.
            loop {
                let now = sys::now_ns();
                if heap.peek().is_none_or(|s| s.due > now + EARLY) {
                    break;
                }
                let Some(item) = heap.pop() else { break };
                if item.generation != generation {
                    continue;
                }
                sys::sleep_until(item.due);
                match item.action {
                    Action::Emit(e) => self.emit_now(e, generation, &mut outs),
                    Action::SlotEnd(k) => {
                        engine.end_slot(k, &mut emits, &mut records);
                        self.metrics.slots.fetch_add(1, Relaxed);
                        seq += 1;
                        heap.push(Scheduled {
                            due: origin + (k + 2) * omega,
                            seq,
                            generation,
                            action: Action::SlotEnd(k + 1),
                        });
                    }
                }
            }
            let now = sys::now_ns();
            for mut e in emits.drain(..) {
                // Keep each emission inside the slot it was decided for: a frame due within the
                // guard of a slot's end goes that much earlier (and one due within it of the
                // start, later), so that the send latency does not carry it into the next slot.
                // Originals and their copies share a due time, so they move together.
                if self.guard_ns > 0 && origin != 0 {
                    let at = e.at_ns();
                    let start = origin + (at - origin).div_euclid(omega) * omega;
                    let g = self.guard_ns.min(omega / 4);
                    e.set_at_ns(at.clamp(start + g, start + omega - g));
                }
                if e.at_ns() <= now + 20_000 {
                    self.emit_now(e, generation, &mut outs);
                } else {
                    seq += 1;
                    heap.push(Scheduled { due: e.at_ns(), seq, generation, action: Action::Emit(e) });
                }
            }
            if let Some(w) = log.as_mut() {
                for r in &records {
                    let _ = serde_json::to_writer(&mut *w, r);
                    let _ = w.write_all(b"\n");
                }
            }
        }
        if let Some(w) = log.as_mut() {
            let _ = w.flush();
        }
    }

    /// Sends every held frame at once (reload, stop).
    fn flush_held(&self, st: &mut State) {
        let mut outs = Vec::new();
        for q in st.held.iter_mut().flatten() {
            while let Some(h) = q.pop_front() {
                self.forward(h.in_port, &h.frame, &mut outs);
            }
        }
    }

    /// Takes a new configuration; the held frames of the old one go out at once. A bad one is
    /// refused and the running one stays.
    fn reload(&self, args: &RunArgs) {
        let loaded = config::load(args).and_then(|(cfg, at)| {
            let rows = defend::fetch_rows(&cfg, args.token()?.as_deref(), &args.state_dir)?;
            // Built once here to refuse what the timing thread could not build.
            defend::build(&cfg, Vec::new())
                .map(|_| ())
                .or_else(|e| if cfg.doc.defense == crate::config::DefenseName::Targets { Ok(()) } else { Err(e) })?;
            Ok((cfg, rows, at))
        });
        match loaded {
            Ok((cfg, rows, at)) => {
                let mut st = self.lock();
                self.flush_held(&mut st);
                let generation = st.generation + 1;
                let cfg = Arc::new(cfg);
                *st = new_state(cfg.clone(), &self.metrics, generation);
                self.tell(Msg::Config { cfg: cfg.clone(), rows, generation });
                self.metrics.config_loaded_ns.store(at, Relaxed);
                self.metrics.config_reloads.fetch_add(1, Relaxed);
                info!(defense = ?cfg.doc.defense, devices = cfg.table.len(), "configuration reloaded");
            }
            Err(e) => {
                self.metrics.config_rejects.fetch_add(1, Relaxed);
                error!(error = %format!("{e:#}"), "configuration refused; the running one stays");
            }
        }
    }
}

/// Source address of cover to or from a device whose peer is not known yet (locally
/// administered).
const GATEWAY_MAC: Mac = [0x02, 0x69, 0x70, 0x65, 0x74, 0x00];

pub fn run(args: RunArgs) -> Result<()> {
    let (cfg, loaded_at) = config::load(&args).context("configuration")?;
    let rows = defend::fetch_rows(&cfg, args.token()?.as_deref(), &args.state_dir)?;
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
    let cfg = Arc::new(cfg);
    let (tx, rx) = mpsc::channel();
    let gw = Arc::new(Gateway {
        ports,
        uplink,
        mode: args.mode,
        metrics: metrics.clone(),
        fdb: RwLock::new(HashMap::new()),
        state: Mutex::new(new_state(cfg.clone(), &metrics, 1)),
        tx: Mutex::new(tx),
        shutdown: AtomicBool::new(false),
        guard_ns: args.slot_guard_us * 1000,
    });
    gw.tell(Msg::Config { cfg: cfg.clone(), rows, generation: 1 });
    if !args.metrics_addr.is_empty() {
        let addr = args.metrics_addr.parse().context("--metrics-addr")?;
        let at = crate::metrics::serve(metrics.clone(), addr).context("metrics endpoint")?;
        info!(%at, "metrics on /metrics");
    }
    info!(defense = ?cfg.doc.defense, mode = ?args.mode, devices = cfg.table.len(), sets = cfg.sets.len(),
        holds = ?defend::holds(&cfg),
        ports = ?gw.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), "gateway running");
    let hup = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    let prio = args.rt_priority;
    let realtime = move || {
        if prio > 0
            && let Err(e) = sys::set_fifo(prio)
        {
            warn!(error = %e, "SCHED_FIFO refused");
        }
    };
    let mut threads = Vec::new();
    for p in 0..gw.ports.len() {
        let g = gw.clone();
        threads.push(std::thread::Builder::new().name(format!("rx-{}", g.ports[p].name)).spawn(move || {
            realtime();
            g.receive(p)
        })?);
    }
    let timing = {
        let g = gw.clone();
        std::thread::Builder::new().name("timing".into()).spawn(move || {
            realtime();
            g.timing(rx, decision_log)
        })?
    };
    // The sockets' counters (each read resets them) into the metrics, and the textfile written.
    let publish = || {
        for p in &gw.ports {
            if let Ok((frames, drops)) = p.stats() {
                metrics.socket_frames.fetch_add(frames, Relaxed);
                metrics.socket_drops.fetch_add(drops, Relaxed);
            }
        }
        if let Some(path) = &args.metrics_file {
            crate::metrics::write_textfile(&metrics, path);
        }
    };
    let mut last_refresh = std::time::Instant::now();
    let mut tick = 0u64;
    while !term.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        tick += 1;
        if tick.is_multiple_of(10) {
            publish();
        }
        let refresh = args.config_url.is_some() && last_refresh.elapsed().as_secs() >= args.config_refresh_secs;
        if hup.swap(false, Relaxed) || refresh {
            last_refresh = std::time::Instant::now();
            gw.reload(&args);
        }
    }
    info!("stopping: held frames go out");
    gw.shutdown.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = timing.join();
    gw.flush_held(&mut gw.lock());
    publish();
    Ok(())
}
