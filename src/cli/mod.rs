//! The `ipet` command line: the service and the data-plane subcommands that training and
//! evaluation call.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

mod features;
mod packets;
mod simulate;

use crate::{
    config::{ModelArgs, ServeConfig},
    error::{Error, ErrorCode, Result},
    models::{Engine, GenerationChoice, ModelSet},
    traffic::{
        DeviceTable, WindowSettings, Windows,
        capture::{DeviceTraffic, read_captures},
        noise,
        windows::WindowsMeta,
    },
};

#[derive(Debug, Parser)]
#[command(name = "ipet", version, about = "iPET cover-traffic service and data plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeConfig),
    /// Cut captures into M_seq fingerprinting windows (.npy files + windows.json) for training.
    Windows(WindowsArgs),
    /// Write the kept packets of every device (.npy columns + packets.json), for evaluations that
    /// need packets rather than windows (e.g. per-transport aggregates).
    Packets(PacketsArgs),
    /// Write the attackers' view of the captures: the M_seq windows plus per-window k-FP-style
    /// features and 15-minute aggregates (the evaluation's inputs).
    Features(features::FeaturesArgs),
    /// Write n perturbation vectors of a device's generator as a [n*slots, 4] int32 .npy file
    /// (the reference predict.py's output; the same array the service serves as npy).
    Predict(PredictArgs),
    /// Print the OpenAPI document generated from the routes (or write it with --out).
    Openapi(OpenapiArgs),
    /// Defend one device's trace with iPET cover (generators or a fixed schedule) or a baseline,
    /// optionally write the defended trace, and print the overhead summary as JSON.
    Simulate(simulate::SimulateArgs),
    /// Make a bearer token for a gateway: prints the token (give it to the gateway) and the line
    /// to add to the tokens file (only its hash).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token's name (a gateway's name): jobs are owned by it.
    pub name: String,
    /// Comma-separated scopes: perturbations, simulations, metrics, admin.
    #[arg(long, default_value = "perturbations,simulations")]
    pub scopes: String,
}

/// Captures and the device table they are read with.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Capture files (pcap, pcapng, tshark CSV) or directories holding them.
    #[arg(long, required = true, num_args = 1..)]
    pub captures: Vec<PathBuf>,
    /// Device table: CSV with a header naming `name` and `mac` and/or `ip`.
    #[arg(long)]
    pub devices: PathBuf,
    /// Count a device's traffic with other hosts of the LAN too (by default only traffic
    /// crossing the LAN boundary counts, as an observer outside the home sees it; devices that
    /// talk only to the LAN then keep no packet and are reported as dropped).
    #[arg(long)]
    pub lan_traffic: bool,
}

impl CaptureArgs {
    /// The device table, with the LAN-traffic choice.
    pub fn table(&self) -> Result<DeviceTable> {
        Ok(DeviceTable::from_csv_path(&self.devices)?.with_lan_traffic(self.lan_traffic))
    }

    /// The device table and every device's packets in the captures; files skipped are noted on
    /// standard error.
    pub fn read(&self) -> Result<(DeviceTable, DeviceTraffic)> {
        let table = self.table()?;
        let traffic = read_captures(&self.captures, &table)?;
        for note in &traffic.skipped_files {
            eprintln!("note: {note}");
        }
        Ok((table, traffic))
    }
}

#[derive(Debug, Args)]
pub struct PacketsArgs {
    #[command(flatten)]
    pub input: CaptureArgs,
    /// Output directory: device.npy (id in the table), time.npy (Unix s), direction.npy (+1 out,
    /// -1 in), size.npy (payload bytes), udp.npy (1 UDP, 0 TCP), file.npy (index into
    /// packets.json's `files`), sorted by device then time.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Number of perturbation vectors (windows).
    pub n: usize,
    /// Device name from the model set.
    pub dev_id: String,
    /// Generation index, or `mix`.
    pub generation: String,
    /// Output file.
    #[arg(short, long, default_value = "perturbations.npy")]
    pub out: PathBuf,
    /// Seed for a reproducible schedule (default: operating-system randomness).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub models: ModelArgs,
}

#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WindowsArgs {
    #[command(flatten)]
    pub input: CaptureArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
}

/// Window geometry, shared by every subcommand that cuts windows.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Window length in seconds.
    #[arg(long, env = "IPET_TOTAL_TIME", default_value_t = 4.0)]
    pub total_time: f64,
    /// Slot length in seconds; must divide total_time.
    #[arg(long, env = "IPET_OMEGA", default_value_t = 0.1)]
    pub omega: f64,
}

pub fn run(cli: Cli) -> ExitCode {
    crate::telemetry::init_tracing();
    let result = match cli.command {
        Command::Serve(config) => tokio::runtime::Runtime::new()
            .map_err(|e| crate::Error::io("starting the async runtime", e))
            .and_then(|rt| {
                let served = rt.block_on(crate::startup::serve(config));
                // A blocking task still running (a simulation that missed its stop) does not hold
                // the process: its job runs again after the restart.
                rt.shutdown_timeout(std::time::Duration::from_secs(2));
                served
            }),
        Command::Windows(args) => windows(args),
        Command::Packets(args) => packets::run(args),
        Command::Features(args) => features::run(args),
        Command::Predict(args) => predict(args),
        Command::Openapi(args) => openapi(args),
        Command::Token(args) => token(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn windows(args: WindowsArgs) -> Result<()> {
    let settings = WindowSettings::new(args.window.total_time, args.window.omega)?;
    let (table, traffic) = args.input.read()?;
    let mut windows = Windows::new(&settings);
    for d in table.devices() {
        windows.push_device(&traffic.packets[d.id], d.id as i64, &settings);
    }
    let meta = WindowsMeta::new(&settings, &table, &traffic, &windows);
    windows.write_dir(&args.out, &meta)?;
    println!("{}", serde_json::to_string_pretty(&meta).unwrap_or_default());
    warn_dropped(&meta);
    eprintln!("{} windows of {} devices written to {}", windows.len(), table.len(), args.out.display());
    Ok(())
}

/// A warning for every device of the table that kept no packet, with the reason (`ipet windows`,
/// `ipet features`; the same list is `dropped_devices` in `windows.json`).
pub(crate) fn warn_dropped(meta: &WindowsMeta) {
    for d in &meta.dropped_devices {
        eprintln!("warning: device {} (id {}) kept no packet and is dropped: {}", d.name, d.id, d.why());
    }
}

fn predict(args: PredictArgs) -> Result<()> {
    let set = ModelSet::load(&args.models.models)?;
    let device = set.require_device(&args.dev_id)?;
    if args.n == 0 {
        return Err(Error::invalid(ErrorCode::InvalidN, "n must be at least 1"));
    }
    let choice = GenerationChoice::parse(&args.generation, set.generations())?;
    let engine = Engine::start(set, &args.models.engine_config())?;
    let schedule = engine.sample_blocking(device, args.n, choice, &mut noise::rng(args.seed))?;
    std::fs::write(&args.out, schedule.to_npy())
        .map_err(|e| Error::io(format!("writing {}", args.out.display()), e))?;
    eprintln!(
        "{} rows ({} windows x {} slots) of [{}] written to {}",
        schedule.rows(),
        args.n,
        schedule.slots,
        crate::traffic::COLUMNS.join(", "),
        args.out.display()
    );
    Ok(())
}

/// The committed spec's text: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut s = crate::http::openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

fn openapi(args: OpenapiArgs) -> Result<()> {
    let text = openapi_json();
    match args.out {
        Some(p) => std::fs::write(&p, text).map_err(|e| Error::io(format!("writing {}", p.display()), e)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn token(args: TokenArgs) -> Result<()> {
    use rand::{RngCore, SeedableRng};
    let mut bytes = [0u8; 32];
    rand_chacha::ChaCha20Rng::from_os_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let line = format!("{} {} {}", args.name, crate::auth::hash_token(&token), args.scopes);
    // Check the line as the service will read it.
    crate::auth::Auth::new(&line, 0)?;
    eprintln!("token for {} (give it to the gateway; it is not stored anywhere):", args.name);
    println!("{token}");
    eprintln!("line for the tokens file (--tokens-file / IPET_TOKENS):");
    println!("{line}");
    Ok(())
}
