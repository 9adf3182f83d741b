//! The `ipet` command line: the service and the data-plane subcommands that training and
//! evaluation call.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{
    error::Result,
    traffic::{
        DeviceTable, WindowSettings, Windows,
        capture::read_captures,
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
    /// Cut captures into M_seq fingerprinting windows (.npy files + windows.json) for training.
    Windows(WindowsArgs),
}

#[derive(Debug, Args)]
pub struct WindowsArgs {
    /// Capture files (pcap, pcapng, tshark CSV) or directories holding them.
    #[arg(long, required = true, num_args = 1..)]
    pub captures: Vec<PathBuf>,
    /// Device table: CSV with a header naming `name` and `mac` and/or `ip`.
    #[arg(long)]
    pub devices: PathBuf,
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
    init_tracing();
    let result = match cli.command {
        Command::Windows(args) => windows(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn windows(args: WindowsArgs) -> Result<()> {
    let settings = WindowSettings::new(args.window.total_time, args.window.omega)?;
    let table = DeviceTable::from_csv_path(&args.devices)?;
    let traffic = read_captures(&args.captures, &table)?;
    let mut windows = Windows::new(&settings);
    for d in table.devices() {
        windows.push_device(&traffic.packets[d.id], d.id as i64, &settings);
    }
    let meta = WindowsMeta::new(&settings, &table, &traffic, &windows);
    windows.write_dir(&args.out, &meta)?;
    println!("{}", serde_json::to_string_pretty(&meta).unwrap_or_default());
    eprintln!("{} windows of {} devices written to {}", windows.len(), table.len(), args.out.display());
    Ok(())
}
