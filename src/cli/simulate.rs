//! `ipet simulate`: defend one device's trace with iPET cover or a baseline, print the summary.

use std::{path::PathBuf, sync::Arc};

use clap::{ArgGroup, Args};

use crate::{
    config::ModelArgs,
    error::{Error, Result},
    models::{Engine, GenerationChoice, ModelSet},
    traffic::{
        Baseline, BaselineKind, Defense, DeviceTable, FixedRows, GeneratorRows, Mode, OutputFile, Packet, SimSettings,
        Transport, WindowSettings, Windows, capture::DeviceTraffic, read_captures, simulate, windows::WindowsMeta,
    },
};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("cover").required(true).args(["generation", "schedule", "defense"])))]
pub struct SimulateArgs {
    /// Capture files (pcap, pcapng, tshark CSV) or directories holding them.
    #[arg(long, required = true, num_args = 1..)]
    pub trace: Vec<PathBuf>,
    /// Device table: CSV with a header naming `name` and `mac` and/or `ip`.
    #[arg(long)]
    pub devices: PathBuf,
    /// The device whose traffic is defended (a name from the device table).
    #[arg(long)]
    pub device: String,
    /// iPET cover from the model set's generators: a generation index, or `mix` (a random
    /// generation for every window). Fresh noise for every window.
    #[arg(long)]
    pub generation: Option<String>,
    /// iPET cover from a fixed schedule: a .npy of rows [in_packets, in_bytes, out_packets,
    /// out_bytes] (what `ipet predict` writes). When it runs out, the rest gets no cover.
    #[arg(long)]
    pub schedule: Option<PathBuf>,
    /// A baseline defense instead of iPET.
    #[arg(long, value_enum)]
    pub defense: Option<BaselineKind>,
    /// How iPET cover is laid: `slotted` (correct) or `reference` (the published simulator,
    /// defects included).
    #[arg(long, value_enum, default_value_t = Mode::Slotted)]
    pub mode: Mode,
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
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    /// Write the defended trace, [direction, is_dummy, size_bytes, time_s] rows, as .npy or .csv.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Also cut the defended trace into M_seq windows (the same files as `ipet windows`, labelled
    /// with the device's id in the device table), so that an attacker scores defended traffic
    /// with the same feature code as undefended traffic.
    #[arg(long)]
    pub windows: Option<PathBuf>,
    /// Window length in seconds for --windows.
    #[arg(long, default_value_t = 4.0)]
    pub total_time: f64,
    /// Baselines: multiply every rate parameter (rate, its sigma, random+'s mean range) by this,
    /// to trace a baseline's cost/protection curve.
    #[arg(long, default_value_t = 1.0)]
    pub rate_scale: f64,
    #[command(flatten)]
    pub models: ModelArgs,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let table = DeviceTable::from_csv_path(&args.devices)?;
    let device = table.by_name(&args.device).ok_or_else(|| {
        let names: Vec<&str> = table.devices().iter().map(|d| d.name.as_str()).collect();
        Error::not_found(
            "unknown_device",
            format!("device {:?} is not in {}; devices: {}", args.device, args.devices.display(), names.join(", ")),
        )
    })?;
    let device_id = device.id;

    // The cover source first, so that a bad model set or schedule fails before the trace is read.
    let mut fixed = None;
    let mut generated = None;
    let mut omega = args.omega.unwrap_or(0.1);
    if let Some(g) = &args.generation {
        let set = ModelSet::load(&args.models.models)?;
        let index = set.require_device(&args.device)?;
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
            "no_packets",
            format!("the trace holds no kept packets of device {:?}", args.device),
        ));
    }

    let defense = match (&mut generated, &mut fixed, args.defense) {
        (Some(rows), _, _) => Defense::Ipet { mode: args.mode, rows },
        (_, Some(rows), _) => Defense::Ipet { mode: args.mode, rows },
        (_, _, Some(kind)) => {
            let mut baseline = Baseline::new(kind);
            if !(args.rate_scale.is_finite() && args.rate_scale > 0.0) {
                return Err(Error::invalid(
                    "invalid_rate_scale",
                    format!("--rate-scale {} must be positive", args.rate_scale),
                ));
            }
            baseline.rate_mean *= args.rate_scale;
            baseline.rate_sigma *= args.rate_scale;
            baseline.mean_low *= args.rate_scale;
            baseline.mean_high *= args.rate_scale;
            Defense::Baseline { baseline, seed: args.seed }
        }
        _ => {
            return Err(Error::invalid("no_cover", "give --generation, --schedule or --defense"));
        }
    };
    let window_settings = args.windows.as_ref().map(|_| WindowSettings::new(args.total_time, omega)).transpose()?;
    let transport = packets.first().map_or(Transport::Tcp, |p| p.transport);
    let mut defended: Vec<Packet> = Vec::new();
    let mut file = args.out.as_deref().map(OutputFile::create).transpose()?;
    let summary = simulate(packets.iter().copied(), defense, &settings, |p| {
        if window_settings.is_some() {
            defended.push(p.to_packet(transport));
        }
        match &mut file {
            Some(f) => f.write(p),
            None => Ok(()),
        }
    })?;
    if let (Some(dir), Some(ws)) = (&args.windows, window_settings) {
        let mut windows = Windows::new(&ws);
        windows.push_device(&defended, device_id as i64, &ws);
        let mut by_device = vec![Vec::new(); table.len()];
        by_device[device_id] = defended;
        let defended_traffic =
            DeviceTraffic { packets: by_device, matched: traffic.matched.clone(), stats: traffic.stats.clone() };
        windows.write_dir(dir, &WindowsMeta::new(&ws, &table, &defended_traffic, &windows))?;
        eprintln!("{} windows of the defended trace written to {}", windows.len(), dir.display());
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
