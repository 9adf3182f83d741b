//! `ipet-gateway`: the home gateway that applies a defense to the home's frames live
//! (`run`), and the testbed's tools (`stretch`, `replay`, `capture`, `report`).
//! See docs/gateway.md.

mod bridge;
mod config;
mod defend;
mod engine;
mod frame;
mod metrics;
mod replay;
mod report;
mod sys;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ipet-gateway", version, about = "ipet's home gateway: a live traffic shaper")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The shaper: a userspace L2 bridge that applies the configured defense.
    Run(config::RunArgs),
    /// Check a configuration document and exit (0: it would be taken).
    Check {
        config: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "bridge")]
        mode: config::Mode,
    },
    /// Cut the busiest stretch of a home's captures for the testbed.
    Stretch(replay::StretchArgs),
    /// Replay a stretch's frames from one namespace at the capture's timing.
    Replay(replay::ReplayArgs),
    /// Capture a port's frames with nanosecond kernel timestamps (the testbed's observer).
    Capture(replay::CaptureArgs),
    /// Send outage probes (the testbed's kill -9 measurement).
    Probe(replay::ProbeArgs),
    /// Score a testbed run: report.json from the observer's capture.
    Report(report::ReportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Run(a) if a.log_json);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let r = match cli.command {
        Command::Run(a) => bridge::run(a),
        Command::Check { config, mode } => std::fs::read_to_string(&config)
            .map_err(anyhow::Error::from)
            .and_then(|t| config::HomeConfig::parse(&t, &config.display().to_string()))
            .and_then(|c| c.check(mode))
            .map(|c| println!("ok: {:?}, {} devices, {} sets", c.doc.defense, c.table.len(), c.sets.len())),
        Command::Stretch(a) => replay::stretch(&a),
        Command::Replay(a) => replay::replay(&a),
        Command::Capture(a) => replay::capture(&a),
        Command::Probe(a) => replay::probe(&a),
        Command::Report(a) => report::report(&a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
