//! `ipet features`: the attackers' view of the captured (undefended) traffic: the M_seq windows
//! (the files of `ipet windows`), k-FP-style per-window features and per-bin aggregates (see
//! [`crate::traffic::features`]). `ipet simulate --features DIR` writes the same for defended
//! traffic.

use std::path::PathBuf;

use clap::Args;

use crate::{
    cli::{CaptureArgs, WindowArgs},
    error::Result,
    traffic::{
        WindowSettings,
        features::{FeatureCutter, FeatureSettings, Features},
        windows::WindowsMeta,
    },
};

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub input: CaptureArgs,
    /// Output directory: the windows' files, kfp.npy, real_packets.npy, agg*.npy, features.json.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Seconds per aggregate bin (bins aligned to multiples of it in Unix time).
    #[arg(long, default_value_t = 900.0)]
    pub agg_seconds: f64,
}

pub fn run(args: FeaturesArgs) -> Result<()> {
    let ws = WindowSettings::new(args.window.total_time, args.window.omega)?;
    let settings = FeatureSettings::new(ws, args.agg_seconds)?;
    let (table, traffic) = args.input.read()?;
    let mut all = Features::new(&ws);
    for d in table.devices() {
        let mut cutter = FeatureCutter::new(&settings, d.id as i64);
        for p in &traffic.packets[d.id] {
            cutter.push(p, true);
        }
        all.append(cutter.finish());
    }
    let meta = WindowsMeta::new(&ws, &table, &traffic, &all.windows);
    all.windows.write_dir(&args.out, &meta)?;
    all.write_dir(&args.out, &settings)?;
    super::warn_dropped(&meta);
    eprintln!(
        "{} windows and {} aggregate bins of {} devices written to {}",
        all.windows.len(),
        all.agg_start.len(),
        table.len(),
        args.out.display()
    );
    Ok(())
}

/// `ipet simulate --features DIR`: one cutter per device of the defended traffic.
pub struct DefendedFeatures {
    pub settings: FeatureSettings,
    pub cutters: Vec<Option<FeatureCutter>>,
}

impl DefendedFeatures {
    pub fn new(total_time: f64, omega: f64, agg_seconds: f64, devices: usize) -> Result<Self> {
        let settings = FeatureSettings::new(WindowSettings::new(total_time, omega)?, agg_seconds)?;
        Ok(Self { settings, cutters: (0..devices).map(|d| Some(FeatureCutter::new(&settings, d as i64))).collect() })
    }

    pub fn push(
        &mut self,
        device: usize,
        p: &crate::traffic::OutputPacket,
        transport_of_real: crate::traffic::Transport,
    ) {
        if let Some(Some(c)) = self.cutters.get_mut(device) {
            c.push(&p.to_packet(transport_of_real), !p.dummy);
        }
    }

    /// Writes the windows (with `meta` built from them) and the features.
    pub fn write(
        self,
        dir: &std::path::Path,
        meta: impl FnOnce(&crate::traffic::Windows) -> WindowsMeta,
    ) -> Result<usize> {
        let mut all = Features::new(&self.settings.windows);
        for c in self.cutters.into_iter().flatten() {
            all.append(c.finish());
        }
        all.windows.write_dir(dir, &meta(&all.windows))?;
        all.write_dir(dir, &self.settings)?;
        Ok(all.windows.len())
    }
}
