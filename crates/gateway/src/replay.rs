//! The testbed's traffic: `stretch` cuts the busiest stretch of a home's captures (the frames
//! the data plane keeps, as the simulator sees them) into one pcap per device; `replay` sends a
//! stretch's frames from inside a device's namespace (its outgoing frames, its own MAC) or from
//! the router's (every device's incoming frames), each at the capture's own timing, on absolute
//! deadlines; `capture` is the observer: every frame of a port with the kernel's nanosecond
//! timestamp, written as a nanosecond pcap.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool, atomic::Ordering::Relaxed},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ipet_traffic::{DeviceTable, Direction, set_defense::SizeProfile, shaper::SizeDistribution};
use pcap_file::{
    DataLink, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter, RawPcapPacket},
};
use serde::{Deserialize, Serialize};

use crate::{
    frame,
    sys::{self, Open, PACKET_OUTGOING, PacketSocket},
};

/// One kept frame of a capture.
#[derive(Clone)]
pub struct Frame {
    pub time_ns: i64,
    pub device: usize,
    pub direction: Direction,
    pub size: u32,
    pub data: Vec<u8>,
}

/// Every pcap file under `dir` (or `dir` itself), sorted.
pub fn pcap_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads the kept Ethernet frames of pcap files (restored to their wire length where the
/// capture cut them), in time order. `keep(time)` filters early.
pub fn read_frames(files: &[PathBuf], table: &DeviceTable, keep: impl Fn(i64) -> bool) -> Result<Vec<Frame>> {
    let mut out = Vec::new();
    for path in files {
        let f = File::open(path).with_context(|| format!("{}", path.display()))?;
        let mut r = PcapReader::new(std::io::BufReader::new(f)).with_context(|| format!("{}", path.display()))?;
        let h = r.header();
        if h.datalink != DataLink::ETHERNET {
            bail!("{}: link type {:?}: the testbed replays Ethernet captures", path.display(), h.datalink);
        }
        let tick = if h.ts_resolution == TsResolution::NanoSecond { 1 } else { 1000 };
        while let Some(p) = r.next_raw_packet() {
            let Ok(RawPcapPacket { ts_sec, ts_frac, orig_len, data, .. }) = p else { break };
            let t = i64::from(ts_sec) * 1_000_000_000 + i64::from(ts_frac) * tick;
            if !keep(t) {
                continue;
            }
            let Ok((device, direction, size)) = frame::classify(&data, table) else { continue };
            let mut data = data.into_owned();
            let mut wire = orig_len as usize;
            // 802.1Q tags of the capture's trunk are not on the device's link (and veth would
            // strip them into metadata): the replay sends untagged frames.
            while frame::ethertype(&data) == Some(0x8100) && data.len() >= 18 {
                data.drain(12..16);
                wire -= 4;
            }
            if wire > data.len() {
                data.resize(wire.min(frame::MAX_FRAME), 0);
            }
            out.push(Frame { time_ns: t, device, direction, size, data });
        }
    }
    out.sort_by_key(|f| f.time_ns);
    Ok(out)
}

pub fn write_pcap(path: &Path, frames: impl Iterator<Item = (i64, Vec<u8>)>) -> Result<()> {
    let f = BufWriter::new(File::create(path).with_context(|| format!("{}", path.display()))?);
    let header = PcapHeader { ts_resolution: TsResolution::NanoSecond, snaplen: 65535, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(f, header)?;
    for (t, data) in frames {
        let ts = Duration::from_nanos(t.max(0) as u64);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, &data))?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Stretch {
    /// Most kept frames in any one second of the captures (the whole input, not the stretch).
    #[serde(default)]
    pub peak_frames_per_s: usize,
    /// Kept frames per second in the replay (the stretch's frames over its replayed length).
    #[serde(default)]
    pub replay_frames_per_s: f64,
    pub from_ns: i64,
    pub to_ns: i64,
    pub seconds: f64,
    pub frames: usize,
    pub devices: Vec<String>,
}

/// The most frames in any `seconds`-long window.
pub fn peak(times: &[i64], seconds: f64) -> usize {
    let w = (seconds * 1e9) as i64;
    let mut j = 0;
    let mut best = 0;
    for i in 0..times.len() {
        while j < times.len() && times[j] < times[i] + w {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

/// The `seconds`-long window holding the most kept frames (its start: a frame's time).
pub fn busiest(times: &[i64], seconds: f64) -> i64 {
    let w = (seconds * 1e9) as i64;
    let (mut best, mut best_n, mut j) = (times.first().copied().unwrap_or(0), 0, 0);
    for i in 0..times.len() {
        while j < times.len() && times[j] < times[i] + w {
            j += 1;
        }
        if j - i > best_n {
            best_n = j - i;
            best = times[i];
        }
    }
    best
}

#[derive(Debug, Clone, clap::Args)]
pub struct StretchArgs {
    #[arg(long, default_value = "data/tj-oconnor-2021-slice/pcaps")]
    pub captures: PathBuf,
    #[arg(long, default_value = "data/tj-oconnor-2021-slice/devices.csv")]
    pub devices: PathBuf,
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Start here (Unix seconds) instead of at the busiest stretch.
    #[arg(long)]
    pub from: Option<f64>,
    /// Anonymity sets (`a,b;c,d`, named set-1, set-2, ...): writes each set's size profile
    /// (its members' real sizes in the stretch, per direction) to `out/size_profiles.json`.
    #[arg(long)]
    pub sets: Option<String>,
    /// Scale time: 10 replays the stretch 10x faster (a load test).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes `out/pcaps/<device>.pcap` (the stretch's kept frames, times as captured, or compressed
/// by `speed`), `out/devices.csv` and `out/stretch.json`.
pub fn stretch(a: &StretchArgs) -> Result<()> {
    let table = DeviceTable::from_csv_path(&a.devices)?;
    let files = pcap_files(&a.captures)?;
    let all = read_frames(&files, &table, |_| true)?;
    if all.is_empty() {
        bail!("no kept frame in {}", a.captures.display());
    }
    let span = a.seconds * a.speed;
    let times: Vec<i64> = all.iter().map(|f| f.time_ns).collect();
    let from = match a.from {
        Some(s) => (s * 1e9) as i64,
        None => busiest(&times, span),
    };
    let to = from + (span * 1e9) as i64;
    let frames: Vec<&Frame> = all.iter().filter(|f| f.time_ns >= from && f.time_ns < to).collect();
    std::fs::create_dir_all(a.out.join("pcaps"))?;
    let mut names = Vec::new();
    for d in table.devices() {
        let mine: Vec<(i64, Vec<u8>)> = frames
            .iter()
            .filter(|f| f.device == d.id)
            .map(|f| (from + ((f.time_ns - from) as f64 / a.speed) as i64, f.data.clone()))
            .collect();
        if mine.is_empty() {
            continue;
        }
        write_pcap(&a.out.join("pcaps").join(format!("{}.pcap", d.name)), mine.into_iter())?;
        names.push(d.name.clone());
    }
    std::fs::copy(&a.devices, a.out.join("devices.csv"))?;
    if let Some(sets) = &a.sets {
        let mut profiles = Vec::new();
        for (i, members) in sets.split(';').enumerate() {
            let ids: Vec<usize> = members.split(',').filter_map(|n| table.by_name(n.trim())).map(|d| d.id).collect();
            let of = |dir: Direction| {
                SizeDistribution::from_sizes(
                    frames.iter().filter(|f| ids.contains(&f.device) && f.direction == dir).map(|f| f.size),
                )
                .counts()
            };
            profiles.push(SizeProfile {
                set: format!("set-{}", i + 1),
                incoming: of(Direction::In),
                outgoing: of(Direction::Out),
            });
        }
        std::fs::write(a.out.join("size_profiles.json"), serde_json::to_vec(&profiles)?)?;
    }
    let s = Stretch {
        peak_frames_per_s: peak(&times, 1.0),
        replay_frames_per_s: frames.len() as f64 / a.seconds,
        from_ns: from,
        to_ns: from + (a.seconds * 1e9) as i64,
        seconds: a.seconds,
        frames: frames.len(),
        devices: names,
    };
    std::fs::write(a.out.join("stretch.json"), serde_json::to_vec_pretty(&s)?)?;
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// A directory `stretch` wrote.
    #[arg(long)]
    pub stretch: PathBuf,
    /// `device:NAME` (its outgoing frames) or `router` (every device's incoming frames).
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub iface: String,
    /// Unix time (s, fractional) at which the stretch's first instant is replayed.
    #[arg(long)]
    pub start: f64,
}

pub fn replay(a: &ReplayArgs) -> Result<()> {
    let table = DeviceTable::from_csv_path(&a.stretch.join("devices.csv"))?;
    let s: Stretch = serde_json::from_slice(&std::fs::read(a.stretch.join("stretch.json"))?)?;
    let files = pcap_files(&a.stretch.join("pcaps"))?;
    let frames = read_frames(&files, &table, |_| true)?;
    let mine: Vec<&Frame> = match a.role.strip_prefix("device:") {
        Some(name) => {
            let d = table.by_name(name).with_context(|| format!("no device {name:?}"))?.id;
            frames.iter().filter(|f| f.device == d && f.direction == Direction::Out).collect()
        }
        None if a.role == "router" => frames.iter().filter(|f| f.direction == Direction::In).collect(),
        None => bail!("--role: device:NAME or router"),
    };
    let sock =
        PacketSocket::open(&a.iface, Open { promisc: false, ignore_outgoing: true, rcvbuf: 1 << 20, timeout: None })?;
    let start = (a.start * 1e9) as i64;
    let (mut sent, mut failed, mut late_max) = (0u64, 0u64, 0i64);
    for f in &mine {
        let due = start + (f.time_ns - s.from_ns);
        sys::sleep_until(due);
        late_max = late_max.max(sys::now_ns() - due);
        match sock.send(&f.data) {
            Ok(()) => sent += 1,
            Err(_) => failed += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({"role": a.role, "sent": sent, "failed": failed, "late_max_ms": late_max as f64 / 1e6})
    );
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    #[arg(long)]
    pub iface: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Which frames: `in` (received by the port), `out` (sent by the port) or `both`.
    #[arg(long, default_value = "in")]
    pub direction: String,
    /// Stop after this many seconds (else at SIGTERM/SIGINT).
    #[arg(long)]
    pub seconds: Option<f64>,
}

pub fn capture(a: &CaptureArgs) -> Result<()> {
    let sock = PacketSocket::open(
        &a.iface,
        Open {
            promisc: true,
            ignore_outgoing: a.direction == "in",
            rcvbuf: 32 << 20,
            timeout: Some(Duration::from_millis(50)),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    let f = BufWriter::new(File::create(&a.out)?);
    let header = PcapHeader { ts_resolution: TsResolution::NanoSecond, snaplen: 65535, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(f, header)?;
    let end = a.seconds.map(|s| sys::now_ns() + (s * 1e9) as i64);
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    std::fs::write(a.out.with_extension("ready"), b"")?;
    while !stop.load(Relaxed) && end.is_none_or(|e| sys::now_ns() < e) {
        let Some(rx) = sock.recv(&mut buf)? else { continue };
        let outgoing = rx.pkttype == PACKET_OUTGOING;
        let want = match a.direction.as_str() {
            "in" => !outgoing,
            "out" => outgoing,
            _ => true,
        };
        if !want {
            continue;
        }
        let ts = Duration::from_nanos(rx.ts_ns as u64);
        w.write_packet(&PcapPacket::new(ts, rx.wire_len as u32, &buf[..rx.len]))?;
        n += 1;
    }
    let (_, drops) = sock.stats()?;
    drop(w);
    std::fs::write(
        a.out.with_extension("stats.json"),
        serde_json::to_vec(&serde_json::json!({"frames": n, "drops": drops}))?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_window_is_found() {
        let t = [0, 10, 20, 1000, 1001, 1002, 1003, 5000];
        assert_eq!(busiest(&t, 10e-9), 1000);
        assert_eq!(busiest(&t, 5e-6), 0);
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    #[arg(long)]
    pub iface: String,
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Interval between probes, microseconds.
    #[arg(long, default_value_t = 1000)]
    pub every_us: i64,
}

/// Sends a probe frame every `every_us` for `seconds` (the outage measurement of a kill -9).
pub fn probe(a: &ProbeArgs) -> Result<()> {
    let sock =
        PacketSocket::open(&a.iface, Open { promisc: false, ignore_outgoing: true, rcvbuf: 1 << 20, timeout: None })?;
    let t0 = sys::now_ns();
    let n = (a.seconds * 1e6) as i64 / a.every_us;
    let mut f = Vec::new();
    let mut failed = 0;
    for i in 0..n {
        sys::sleep_until(t0 + i * a.every_us * 1000);
        frame::probe(&mut f, i as u64);
        failed += u64::from(sock.send(&f).is_err());
    }
    println!("{}", serde_json::json!({"sent": n, "failed": failed}));
    Ok(())
}
