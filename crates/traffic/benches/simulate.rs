//! Simulator throughput and memory, printed as figures (not a timed test).
//!
//! `cargo bench -p ipet-traffic --bench simulate` reads the week-long real capture
//! `../shared/data/tj-oconnor-2021/pcaps/lockly-hub-01.pcap` and defends it in each iPET mode
//! (with a fixed, generator-like schedule: no ONNX needed) and with each baseline, streaming the
//! output into a counting sink:
//! - throughput: (trace packets + cover packets) simulated per second, best of 3;
//! - the slotted mode again with the .npy writer on a temporary file;
//! - memory: peak resident memory (VmHWM) after loading the trace, after simulating it once in
//!   every mode, and after simulating it repeated 10 times (shifted in time, generated on the fly,
//!   70 days) in every mode. Flat memory in trace length means the last two are the same.

use std::time::Instant;

use ipet_traffic::{
    Baseline, BaselineKind, Defense, DeviceTable, Mode, OutputPacket, Packet, Result, RowSource, SimSettings, Summary,
    read_captures, simulate, simulate::OutputFile,
};
use rand::{Rng, SeedableRng};

/// A fixed schedule of generator-like rows (0-4 packets, 0-100 bytes), cycled so that a
/// long trace never runs out of cover.
struct Cycle {
    rows: Vec<[i32; 4]>,
    at: usize,
}

impl RowSource for Cycle {
    fn next_row(&mut self) -> Result<Option<[i32; 4]>> {
        let r = self.rows[self.at];
        self.at = (self.at + 1) % self.rows.len();
        Ok(Some(r))
    }
}

fn schedule() -> Cycle {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let rows = (0..1 << 20)
        .map(|_| [rng.random_range(0..5), rng.random_range(0..101), rng.random_range(0..5), rng.random_range(0..101)])
        .collect();
    Cycle { rows, at: 0 }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

const DEFENSES: [&str; 5] = ["slotted", "reference", "constant", "random", "random+"];

fn run(
    name: &str,
    packets: impl Iterator<Item = Packet>,
    rows: &mut Cycle,
    sink: impl FnMut(&OutputPacket) -> Result<()>,
) -> Summary {
    let settings = SimSettings::default();
    let defense = match name {
        "slotted" => Defense::Ipet { mode: Mode::Slotted, rows },
        "reference" => Defense::Ipet { mode: Mode::Reference, rows },
        "constant" => Defense::Baseline { baseline: Baseline::new(BaselineKind::Constant), seed: Some(1) },
        "random" => Defense::Baseline { baseline: Baseline::new(BaselineKind::Random), seed: Some(1) },
        _ => Defense::Baseline { baseline: Baseline::new(BaselineKind::RandomPlus), seed: Some(1) },
    };
    simulate(packets, defense, &settings, sink).expect("simulate")
}

/// The trace repeated `times` times, each copy shifted by the trace's span plus a minute.
fn repeated(packets: &[Packet], times: i64) -> impl Iterator<Item = Packet> + '_ {
    let span = packets.last().map_or(0, |l| l.time_ns - packets[0].time_ns) + 60_000_000_000;
    (0..times).flat_map(move |i| packets.iter().map(move |p| Packet { time_ns: p.time_ns + i * span, ..*p }))
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tj-oconnor-2021");
    let pcap = root.join("pcaps/lockly-hub-01.pcap");
    if !pcap.exists() {
        eprintln!("{} is missing: nothing to measure", pcap.display());
        return;
    }
    let hwm_start = vm_hwm_kib();
    let table = DeviceTable::from_csv_path(&root.join("devices.csv")).expect("devices");
    let device = table.by_name("lockly-hub-01").expect("device").id;
    let traffic = read_captures(std::slice::from_ref(&pcap), &table).expect("capture");
    let packets = traffic.packets[device].clone();
    drop(traffic);
    let mut rows = schedule();
    let span_days = (packets.last().expect("packets").time_ns - packets[0].time_ns) as f64 / 86_400e9;
    let hwm_loaded = vm_hwm_kib();
    println!(
        "trace: {} ({} packets, {span_days:.2} days); VmHWM {} MiB at start, {} MiB with the trace and schedule loaded",
        pcap.display(),
        packets.len(),
        hwm_start / 1024,
        hwm_loaded / 1024
    );
    println!();
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>14} {:>10} {:>10}",
        "defense", "trace pkts", "cover pkts", "seconds", "packets/s", "overhead", "p99 delay"
    );
    for name in DEFENSES {
        let mut best = f64::INFINITY;
        let mut last = None;
        for _ in 0..3 {
            let mut n = 0u64;
            let started = Instant::now();
            let s = run(name, packets.iter().copied(), &mut rows, |p| {
                n += 1;
                std::hint::black_box(p);
                Ok(())
            });
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(n, s.output_packets);
            last = Some(s);
        }
        let s = last.expect("a run");
        let work = packets.len() as u64 + s.total.dummy_packets;
        println!(
            "{name:<10} {:>12} {:>12} {best:>10.3} {:>14.0} {:>9.1}x {:>9.3}s",
            packets.len(),
            s.total.dummy_packets,
            work as f64 / best,
            s.total.bandwidth_overhead.unwrap_or(0.0),
            s.latency.p99_s
        );
    }

    // The slotted mode into the .npy writer.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("defended.npy");
    let started = Instant::now();
    let mut file = OutputFile::create(&path).expect("create");
    let s = run("slotted", packets.iter().copied(), &mut rows, |p| file.write(p));
    let n = file.finish().expect("finish");
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "slotted -> .npy: {n} rows, {:.1} MiB in {secs:.3} s: {:.0} packets/s",
        bytes as f64 / (1 << 20) as f64,
        (packets.len() as u64 + s.total.dummy_packets) as f64 / secs
    );
    drop(dir);

    // Memory: every defense on the trace once, then on the trace repeated 10 times.
    println!();
    let hwm_before = vm_hwm_kib();
    let mut counts = Vec::new();
    for name in DEFENSES {
        let s = run(name, repeated(&packets, 1), &mut rows, |_| Ok(()));
        counts.push(s.output_packets);
    }
    let hwm_1x = vm_hwm_kib();
    let started = Instant::now();
    let mut counts10 = Vec::new();
    for name in DEFENSES {
        let s = run(name, repeated(&packets, 10), &mut rows, |_| Ok(()));
        counts10.push(s.output_packets);
    }
    let secs10 = started.elapsed().as_secs_f64();
    let hwm_10x = vm_hwm_kib();
    println!("peak memory (VmHWM), every defense in turn:");
    println!("  before simulating:               {hwm_before:>8} KiB");
    println!(
        "  after the trace once  ({:>3.0} days): {hwm_1x:>8} KiB  (+{} KiB; {} output packets in all)",
        span_days,
        hwm_1x - hwm_before,
        counts.iter().sum::<u64>()
    );
    println!(
        "  after the trace x10   ({:>3.0} days): {hwm_10x:>8} KiB  (+{} KiB; {} output packets in all, {secs10:.1} s)",
        span_days * 10.0,
        hwm_10x - hwm_1x,
        counts10.iter().sum::<u64>()
    );
}
