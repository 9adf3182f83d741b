//! `ipet simulate`: defend one device's trace with iPET cover or a baseline, or a whole home in
//! anonymity sets with pad-to-target (`--defense supersequence|regulator`), print the summary.

use std::{path::PathBuf, sync::Arc};

use clap::{ArgGroup, Args};

use super::features::DefendedFeatures;
use crate::{
    config::ModelArgs,
    error::{Error, ErrorCode, Result},
    models::{
        Engine, GenerationChoice, GeneratorRows, ModelSet,
        set_targets::{DEFAULT_CHUNK, TargetRowsFrom, assigned_sets, require_set_targets, set_defense_spec},
    },
    traffic::{
        Baseline, BaselineKind, Defense, DeviceTable, FixedRows, Mode, OutputFile, Packet, RegulatorSettings,
        SimSettings, Transport, WindowSettings, Windows,
        capture::DeviceTraffic,
        form_sets, read_captures,
        set_defense::{SetDefenseKind, SetDefenseSpec, SetKnobs},
        sets::DEFAULT_K,
        shaper::{Deployment, ReleaseKnobs},
        simulate,
        simulate::TargetRowsSettings,
        windows::{WindowCutter, WindowsMeta},
    },
};

/// `--defense`: a baseline for one device, or a set defense for the whole home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefenseArg {
    /// Baseline: constant-rate bursts (one device).
    #[value(name = "constant")]
    Constant,
    /// Baseline: random-rate bursts (one device).
    #[value(name = "random")]
    Random,
    /// Baseline: random-rate bursts with a random mean (one device).
    #[value(name = "random+")]
    RandomPlus,
    /// Whole home in anonymity sets, every member padded to the set's per-slot maximum.
    #[value(name = "supersequence")]
    Supersequence,
    /// Whole home in anonymity sets, every member padded to the set regulariser's targets.
    #[value(name = "regulator")]
    Regulator,
    /// Whole home in anonymity sets, every member padded to target rows: a set-targets model
    /// set's generators (--generation, --models) or a fixed schedule (--schedule).
    #[value(name = "targets")]
    Targets,
}

impl DefenseArg {
    fn baseline(self) -> Option<BaselineKind> {
        match self {
            Self::Constant => Some(BaselineKind::Constant),
            Self::Random => Some(BaselineKind::Random),
            Self::RandomPlus => Some(BaselineKind::RandomPlus),
            Self::Supersequence | Self::Regulator | Self::Targets => None,
        }
    }
}

/// `--mode`: how iPET cover is laid ([`Mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// One row per omega slot, both directions, dummies spread inside their slot (correct).
    #[value(name = "slotted")]
    Slotted,
    /// The published simulator, defects included.
    #[value(name = "reference")]
    Reference,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Slotted => Mode::Slotted,
            ModeArg::Reference => Mode::Reference,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("cover").required(true).multiple(true).args(["generation", "schedule", "defense", "spec"])))]
pub struct SimulateArgs {
    /// Capture files (pcap, pcapng, tshark CSV) or directories holding them.
    #[arg(long, required = true, num_args = 1..)]
    pub trace: Vec<PathBuf>,
    /// Device table: CSV with a header naming `name` and `mac` and/or `ip`.
    #[arg(long)]
    pub devices: PathBuf,
    /// The device whose traffic is defended (a name from the device table); not with a set
    /// defense, which defends every device of the table.
    #[arg(long)]
    pub device: Option<String>,
    /// iPET cover from the model set's generators: a generation index, or `mix` (a random
    /// generation for every window). Fresh noise for every window.
    #[arg(long)]
    pub generation: Option<String>,
    /// iPET cover from a fixed schedule: a .npy of rows [in_packets, in_bytes, out_packets,
    /// out_bytes] (what `ipet predict` writes). When it runs out, the rest gets no cover.
    #[arg(long)]
    pub schedule: Option<PathBuf>,
    /// A baseline defense instead of iPET (`constant`, `random`, `random+`: one device), or a set
    /// defense for the whole home (`supersequence`, `regulator`: every device of the table, in
    /// anonymity sets, padded to shared per-slot targets).
    #[arg(long, value_enum)]
    pub defense: Option<DefenseArg>,
    /// How iPET cover is laid: `slotted` (correct) or `reference` (the published simulator,
    /// defects included).
    #[arg(long, value_enum, default_value_t = ModeArg::Slotted)]
    pub mode: ModeArg,
    /// Seed for reproducible noise and baseline choices (default: operating-system randomness).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds: real packets closer than this belong to one active period.
    #[arg(long, default_value_t = 5.0)]
    pub active_gap: f64,
    /// Slot length in seconds (default: the model set's omega with --generation, else 0.1).
    #[arg(long)]
    pub omega: Option<f64>,
    /// Windows drawn from the generators per inference call.
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Write the defended trace, [direction, is_dummy, size_bytes, time_s] rows, as .npy or .csv.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Set defenses: write each member's defended trace to DIR/<device>.npy ([direction,
    /// is_dummy, size_bytes, time_s] rows, times relative to the home's first packet).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Also cut the defended trace into M_seq windows (the same files as `ipet windows`, labelled
    /// with the device's id in the device table), so that an attacker scores defended traffic
    /// with the same feature code as undefended traffic. With a set defense: one directory for
    /// all members.
    #[arg(long)]
    pub windows: Option<PathBuf>,
    /// Also write the attackers' view of the defended trace (what `ipet features` writes for
    /// captures): the windows' files plus per-window features, which windows hold real packets,
    /// and aggregates. With a set defense: one directory for all members.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Seconds per aggregate bin for --features.
    #[arg(long, default_value_t = 900.0)]
    pub agg_seconds: f64,
    /// Baselines: random cover bursts start only up to this many seconds after the device's last
    /// real packet (so that a capture spread over months is not months of cover); default: no
    /// limit (the paper's baselines).
    #[arg(long)]
    pub idle_cover: Option<f64>,
    /// Window length in seconds for --windows and --features.
    #[arg(long, default_value_t = 4.0)]
    pub total_time: f64,
    /// Baselines: multiply every rate parameter (rate, its sigma, random+'s mean range) by this,
    /// to trace a baseline's cost/protection curve.
    #[arg(long, default_value_t = 1.0)]
    pub rate_scale: f64,
    #[command(flatten)]
    pub home: HomeArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// Settings of the set defenses (`--defense supersequence|regulator`).
#[derive(Debug, Clone, Args)]
pub struct HomeArgs {
    /// Minimum anonymity set size when devices are grouped by clustering their traffic (devices
    /// without a set in the table's `set` column or --sets).
    #[arg(long, default_value_t = DEFAULT_K)]
    pub k: usize,
    /// Anonymity sets, overriding the table's `set` column: device names, sets separated by `;`,
    /// members by `,` (e.g. `cam1,cam2,cam3;hub1,hub2,lock1,hub3`). Devices not named are
    /// clustered.
    #[arg(long)]
    pub sets: Option<String>,
    /// Seconds a real packet may wait for room in its targets before it is sent anyway (leaked).
    /// 0: pure padding.
    #[arg(long, default_value_t = 0.0)]
    pub latency_budget: f64,
    /// Supersequence: align the set's bursts within this many seconds (traffic waits until the
    /// window's last slot, then every member's goes at once, padded to the supersequence of all
    /// of it): cheaper cover for added latency. At most --latency-budget. 0: not aligned.
    #[arg(long, default_value_t = 0.0)]
    pub align: f64,
    /// Regulator: quantisation ladder ratio (targets rounded up to 0, u, u*r, u*r^2, ...).
    #[arg(long, default_value_t = RegulatorSettings::default().levels)]
    pub levels: f64,
    /// Regulator: a surge raises the rate to this many times the largest pending demand.
    #[arg(long, default_value_t = RegulatorSettings::default().surge)]
    pub surge: f64,
    /// Regulator: surge when a member's pending traffic exceeds this many times the target (1:
    /// never wait while the rate is too low).
    #[arg(long, default_value_t = RegulatorSettings::default().threshold)]
    pub threshold: f64,
    /// Regulator: seconds for the rate to halve after a surge.
    #[arg(long, default_value_t = RegulatorSettings::default().half_life)]
    pub half_life: f64,
    /// Regulator: cover packets per second and direction in silence (0: none).
    #[arg(long, default_value_t = RegulatorSettings::default().floor_rate)]
    pub floor_rate: f64,
    /// Targets: fake target windows per second and set, at random times, filling silence.
    #[arg(long, default_value_t = TargetRowsSettings::default().fake_window_rate)]
    pub fake_window_rate: f64,
    /// Who transmits what on the observed link: `ideal` (no reaction lag: the default), `bridge`
    /// (the gateway holds and emits both directions) or `ap` (access point only: uplink originals
    /// go when the device sends them, uplink copies trail by the lag). Default with a lag or a
    /// countermeasure: bridge.
    #[arg(long, value_parser = parse_deployment)]
    pub deployment: Option<Deployment>,
    /// Reaction lag of cover copies, both directions: a preset (`software-shaper`: measured p50
    /// 0.08 ms, p99 3.4 ms, the default outside `ideal`; `software-shaper-fifo`; `zero`) or a
    /// fixed duration (`2ms`, `150us`, for a sweep 0-20 ms), or a distribution as JSON, inline or
    /// `@FILE` (`{"bins": [{"lo_ms": .., "hi_ms": .., "weight": ..}, ...]}`: a gateway's measurement).
    #[arg(long)]
    pub lag: Option<String>,
    /// Reaction lag of downlink copies only (overrides --lag).
    #[arg(long)]
    pub lag_downlink: Option<String>,
    /// Reaction lag of uplink copies only (overrides --lag).
    #[arg(long)]
    pub lag_uplink: Option<String>,
    /// Held release: every original sent at its arrival waits for a draw from its copies' lag,
    /// so that no member's frame is reliably first (where the deployment holds its direction).
    #[arg(long)]
    pub held_release: bool,
    /// Random order: each original and its copies go out one after another, one lag draw apart,
    /// in a random order of the members (the original among them where it can be held).
    #[arg(long)]
    pub random_order: bool,
    /// Run one slot behind: every decision of a held direction is carried out one slot later.
    #[arg(long)]
    pub slot_behind: bool,
    /// Mirror every member, not only each slot's lead: per slot and direction every member sends
    /// the same frames (the members' real frames merged size by size, real frames held to the
    /// latest arrival of their kind where the deployment holds the direction; copied at their
    /// time where it cannot). Closes what a non-lead member's own frames give away to an
    /// observer of the whole home.
    #[arg(long)]
    pub mirror_all: bool,
    /// The set defense from a specification file (JSON: the data plane's SetDefenseSpec, what
    /// --spec-out writes and a gateway is configured with): its defense, knobs, seed, release,
    /// sets (devices it does not name are clustered with --k) and size profiles. The set
    /// defense's flags (--defense, the knobs, --seed, the release flags) are then not used.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Write the set defense as run, its sets and each set's size profile included, to this file
    /// (JSON, the data plane's SetDefenseSpec): a gateway's configuration, or --spec of a rerun.
    #[arg(long)]
    pub spec_out: Option<PathBuf>,
}

impl HomeArgs {
    fn release(&self) -> Result<ReleaseKnobs> {
        // `@FILE`: a lag distribution as JSON in a file (a gateway's measurement).
        let read = |v: &Option<String>| -> Result<Option<String>> {
            match v.as_deref().map(str::trim) {
                Some(s) if s.starts_with('@') => std::fs::read_to_string(&s[1..])
                    .map(Some)
                    .map_err(|e| Error::io(format!("reading the lag distribution {}", &s[1..]), e)),
                _ => Ok(v.clone()),
            }
        };
        Ok(ReleaseKnobs {
            deployment: self.deployment,
            lag: read(&self.lag)?,
            lag_downlink: read(&self.lag_downlink)?,
            lag_uplink: read(&self.lag_uplink)?,
            held_release: self.held_release,
            random_order: self.random_order,
            slot_behind: self.slot_behind,
            mirror_all: self.mirror_all,
        })
    }
}

fn parse_deployment(s: &str) -> std::result::Result<Deployment, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?} is not one of ideal, bridge, ap"))
}

pub fn run(args: SimulateArgs) -> Result<()> {
    if args.home.spec.is_some()
        || matches!(args.defense, Some(DefenseArg::Supersequence | DefenseArg::Regulator | DefenseArg::Targets))
    {
        return run_home(args);
    }
    let covers = [args.generation.is_some(), args.schedule.is_some(), args.defense.is_some()];
    let given = covers.iter().filter(|&&c| c).count();
    if given != 1 {
        // The service's codes for the same failures.
        return Err(Error::invalid(
            if given == 0 { ErrorCode::MissingCover } else { ErrorCode::AmbiguousCover },
            "give exactly one of --generation, --schedule and --defense for one device (a set defense \
             --defense targets takes --generation or --schedule)",
        ));
    }
    let table = DeviceTable::from_csv_path(&args.devices)?;
    let Some(device_name) = args.device.clone() else {
        return Err(Error::invalid(
            ErrorCode::NoDevice,
            "give --device (the device to defend), or a set defense (--defense supersequence|regulator) for the \
             whole home",
        ));
    };
    if args.out_dir.is_some() {
        return Err(Error::invalid(
            ErrorCode::InvalidOutput,
            "--out-dir is for set defenses; give --out for one device",
        ));
    }
    let device = table.by_name(&device_name).ok_or_else(|| {
        let names: Vec<&str> = table.devices().iter().map(|d| d.name.as_str()).collect();
        Error::not_found(
            ErrorCode::UnknownDevice,
            format!("device {device_name:?} is not in {}; devices: {}", args.devices.display(), names.join(", ")),
        )
    })?;
    let device_id = device.id;

    // The cover source first, so that a bad model set or schedule fails before the trace is read.
    let mut fixed = None;
    let mut generated = None;
    let mut omega = args.omega.unwrap_or(0.1);
    if let Some(g) = &args.generation {
        let set = ModelSet::load(&args.models.models)?;
        let index = set.require_device(&device_name)?;
        let choice = GenerationChoice::parse(g, set.generations())?;
        omega = args.omega.unwrap_or(set.manifest.settings.omega);
        let engine = Arc::new(Engine::start(set, &args.models.engine_config())?);
        generated = Some(GeneratorRows::new(engine, index, choice, args.chunk, args.seed)?);
    } else if let Some(path) = &args.schedule {
        fixed = Some(FixedRows::from_npy_path(path)?);
    }
    let settings = SimSettings::new(omega, args.active_gap)?;

    let traffic = read_captures(&args.trace, &table)?;
    let packets = &traffic.packets[device_id];
    if packets.is_empty() {
        return Err(Error::invalid(
            ErrorCode::NoPackets,
            format!("the trace holds no kept packets of device {device_name:?}"),
        ));
    }

    let defense = match (&mut generated, &mut fixed, args.defense.and_then(DefenseArg::baseline)) {
        (Some(rows), _, _) => Defense::Ipet { mode: args.mode.into(), rows },
        (_, Some(rows), _) => Defense::Ipet { mode: args.mode.into(), rows },
        (_, _, Some(kind)) => {
            let mut baseline = Baseline::new(kind);
            if !(args.rate_scale.is_finite() && args.rate_scale > 0.0) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRateScale,
                    format!("--rate-scale {} must be positive", args.rate_scale),
                ));
            }
            baseline.rate_mean *= args.rate_scale;
            baseline.rate_sigma *= args.rate_scale;
            baseline.mean_low *= args.rate_scale;
            baseline.mean_high *= args.rate_scale;
            if let Some(s) = args.idle_cover {
                if !(s.is_finite() && s >= 0.0) {
                    return Err(Error::invalid(ErrorCode::InvalidBaseline, format!("--idle-cover {s} must be >= 0")));
                }
                baseline.idle_cover_ns = Some(crate::traffic::packet::secs_to_ns(s));
            }
            Defense::Baseline { baseline, seed: args.seed }
        }
        _ => {
            return Err(Error::invalid(ErrorCode::MissingCover, "give --generation, --schedule or --defense"));
        }
    };
    let window_settings = args.windows.as_ref().map(|_| WindowSettings::new(args.total_time, omega)).transpose()?;
    let transport = packets.first().map_or(Transport::Tcp, |p| p.transport);
    let mut features = match &args.features {
        Some(_) => Some(DefendedFeatures::new(args.total_time, omega, args.agg_seconds, table.len())?),
        None => None,
    };
    let mut defended: Vec<Packet> = Vec::new();
    let mut out_packets = 0usize;
    let mut file = args.out.as_deref().map(OutputFile::create).transpose()?;
    let summary = simulate(packets.iter().copied(), defense, &settings, |p| {
        if window_settings.is_some() {
            defended.push(p.to_packet(transport));
        }
        out_packets += 1;
        if let Some(f) = &mut features {
            f.push(device_id, p, transport);
        }
        match &mut file {
            Some(f) => Ok(f.write(p)?),
            None => Ok(()),
        }
    })?;
    if let (Some(dir), Some(ws)) = (&args.windows, window_settings) {
        let mut windows = Windows::new(&ws);
        windows.push_device(&defended, device_id as i64, &ws);
        let mut by_device = vec![Vec::new(); table.len()];
        by_device[device_id] = defended;
        let defended_traffic = DeviceTraffic {
            packets: by_device,
            matched: traffic.matched.clone(),
            stats: traffic.stats.clone(),
            skipped_files: traffic.skipped_files.clone(),
        };
        windows.write_dir(dir, &WindowsMeta::new(&ws, &table, &defended_traffic, &windows))?;
        eprintln!("{} windows of the defended trace written to {}", windows.len(), dir.display());
    }
    if let (Some(dir), Some(f)) = (&args.features, features) {
        let mut counts = vec![0usize; table.len()];
        counts[device_id] = out_packets;
        let n =
            f.write(dir, |w| WindowsMeta::with_packets(&f_ws(args.total_time, omega), &table, &traffic, &counts, w))?;
        eprintln!("{n} windows and features of the defended trace written to {}", dir.display());
    }
    if let Some(f) = file {
        let rows = f.finish()?;
        if let Some(p) = &args.out {
            eprintln!("{rows} rows of [direction, is_dummy, size_bytes, time_s] written to {}", p.display());
        }
    }
    println!("{}", serde_json::to_string_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?);
    Ok(())
}

/// A set defense's specification from a JSON file, checked.
fn read_spec(path: &std::path::Path) -> Result<SetDefenseSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let spec: SetDefenseSpec = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(
            ErrorCode::InvalidSimulationSettings,
            format!("{}: not a set defense specification: {e}", path.display()),
        )
    })?;
    spec.check()?;
    Ok(spec)
}

/// Window settings already checked by [`DefendedFeatures::new`].
fn f_ws(total_time: f64, omega: f64) -> WindowSettings {
    WindowSettings::new(total_time, omega).unwrap_or_else(|_| WindowSettings::reference())
}

/// The home mode: every device of the table in anonymity sets, padded to shared targets.
fn run_home(args: SimulateArgs) -> Result<()> {
    let bad = |m: &str| Err(Error::invalid(ErrorCode::InvalidSimulationSettings, m.to_string()));
    if args.device.is_some() {
        return bad("a set defense defends every device of the table: leave out --device");
    }
    let given = args.home.spec.as_deref().map(read_spec).transpose()?;
    if let (Some(_), Some(d)) = (&given, args.defense)
        && d.baseline().is_some()
    {
        return bad("--spec gives a set defense; a baseline --defense defends one device: give one of them");
    }
    if let (Some(spec), Some(d)) = (&given, args.defense)
        && !matches!(
            (spec.defense, d),
            (SetDefenseKind::Supersequence, DefenseArg::Supersequence)
                | (SetDefenseKind::Regulator, DefenseArg::Regulator)
                | (SetDefenseKind::Targets, DefenseArg::Targets)
        )
    {
        return bad("--defense differs from the specification's defense (--spec): give one of them");
    }
    let kind = match (&given, args.defense) {
        (Some(spec), _) => spec.defense,
        (None, Some(DefenseArg::Targets)) => SetDefenseKind::Targets,
        (None, Some(DefenseArg::Regulator)) => SetDefenseKind::Regulator,
        _ => SetDefenseKind::Supersequence,
    };
    kind.check_rows(
        args.generation.is_some() || args.schedule.is_some(),
        "--generation (with --models) or --schedule",
    )?;
    if args.generation.is_some() && args.schedule.is_some() {
        return bad("--defense targets takes target rows from --generation (with --models) or --schedule, one of them");
    }
    if args.out.is_some() {
        return Err(Error::invalid(
            ErrorCode::InvalidOutput,
            "a set defense writes one trace per member: give --out-dir",
        ));
    }
    let table = DeviceTable::from_csv_path(&args.devices)?;
    // A set-targets model set first, so that a bad one fails before the captures are read; its
    // sets are the default partition.
    let model = match &args.generation {
        Some(g) => {
            let set = ModelSet::load(&args.models.models)?;
            require_set_targets(&set)?;
            let choice = GenerationChoice::parse(g, set.generations())?;
            Some((set, choice))
        }
        None => None,
    };
    let assigned = assigned_sets(&table, args.home.sets.as_deref(), model.as_ref().map(|(set, _)| set))?;
    let h = &args.home;
    let regulator = RegulatorSettings {
        levels: h.levels,
        surge: h.surge,
        threshold: h.threshold,
        half_life: h.half_life,
        floor_rate: h.floor_rate,
    };
    let home = match given {
        Some(spec) => spec,
        None => {
            let mut home = set_defense_spec(
                kind,
                model.as_ref().map(|(set, _)| set),
                args.omega,
                args.total_time,
                SetKnobs {
                    latency_budget: h.latency_budget,
                    regulator,
                    fake_window_rate: h.fake_window_rate,
                    seed: args.seed,
                    release: h.release()?.settings()?,
                },
            )?;
            home.k = Some(args.home.k);
            home.align = h.align;
            home.check()?;
            home
        }
    };
    let assigned = match home.assigned_sets(&table)? {
        Some(from_spec) => from_spec,
        None => assigned,
    };
    let omega = home.omega;
    let settings = home.pad()?;
    let rows = match (model, &args.schedule) {
        (Some((set, choice)), _) => TargetRowsFrom::Model {
            engine: Arc::new(Engine::start(set, &args.models.engine_config())?),
            choice,
            chunk: args.chunk,
        },
        (None, Some(path)) => TargetRowsFrom::Fixed(FixedRows::from_npy_path(path)?),
        (None, None) => TargetRowsFrom::None,
    };
    let window_settings = args.windows.as_ref().map(|_| WindowSettings::new(args.total_time, omega)).transpose()?;

    let traffic = read_captures(&args.trace, &table)?;
    let (k, silent) = (home.k.unwrap_or(args.home.k), home.silent_devices());
    let partition = form_sets(&table, &assigned, &traffic.packets, k, settings.omega_ns, silent)?;
    let names: Vec<String> = table.devices().iter().map(|d| d.name.clone()).collect();
    if let Some(path) = &args.home.spec_out {
        let mut plan = home.clone();
        plan.record_plan(&partition, &names, &traffic.packets);
        let json = serde_json::to_string_pretty(&plan).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        eprintln!("the set defense's specification written to {}", path.display());
    }
    let origin = traffic.packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().unwrap_or(0);

    let mut files: Vec<Option<OutputFile>> = (0..table.len()).map(|_| None).collect();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for set in &partition.sets {
            for &d in &set.members {
                let mut f = OutputFile::create(&dir.join(format!("{}.npy", names[d])))?;
                f.set_origin(origin);
                files[d] = Some(f);
            }
        }
    }
    let mut cutters: Vec<Option<WindowCutter>> =
        (0..table.len()).map(|d| window_settings.map(|ws| WindowCutter::new(&ws, d as i64))).collect();
    let mut features = match &args.features {
        Some(_) => Some(DefendedFeatures::new(args.total_time, omega, args.agg_seconds, table.len())?),
        None => None,
    };
    let mut defended_packets = vec![0usize; table.len()];
    let summary = home.defend(&names, &traffic.packets, &partition, rows.per_set(&names), |d, p| {
        defended_packets[d] += 1;
        if let Some(c) = &mut cutters[d] {
            c.push(&p.to_packet(Transport::Udp));
        }
        if let Some(f) = &mut features {
            f.push(d, p, Transport::Udp);
        }
        match &mut files[d] {
            Some(f) => Ok(f.write(p)?),
            None => Ok(()),
        }
    })?;
    for f in files.into_iter().flatten() {
        f.finish()?;
    }
    if let Some(dir) = &args.out_dir {
        eprintln!(
            "defended traces of {} members written to {}",
            defended_packets.iter().filter(|&&n| n > 0).count(),
            dir.display()
        );
    }
    if let (Some(dir), Some(ws)) = (&args.windows, window_settings) {
        let mut windows = Windows::new(&ws);
        for c in cutters.into_iter().flatten() {
            windows.append(c.finish());
        }
        windows.write_dir(dir, &WindowsMeta::with_packets(&ws, &table, &traffic, &defended_packets, &windows))?;
        eprintln!("{} windows of the defended home written to {}", windows.len(), dir.display());
    }
    if let (Some(dir), Some(f)) = (&args.features, features) {
        let ws = f_ws(args.total_time, omega);
        let n = f.write(dir, |w| WindowsMeta::with_packets(&ws, &table, &traffic, &defended_packets, w))?;
        eprintln!("{n} windows and features of the defended home written to {}", dir.display());
    }
    println!("{}", serde_json::to_string_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?);
    Ok(())
}
