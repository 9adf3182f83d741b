//! What the attackers of the evaluation see of one device's (defended) traffic, cut with the
//! data plane's own rules so that no attacker restates them:
//! - the M_seq windows ([`WindowCutter`]: the same files as `ipet windows`);
//! - per window, k-FP-style features ([`KFP_COLUMNS`]): counts, bytes, size statistics and a
//!   size histogram per direction, inter-arrival times, bursts (runs of one direction), the first
//!   and last active slot, the silence before and after the window; and, as a label the observer
//!   never sees, how many of its packets are real (`real_packets`: 0 = a cover-only window);
//! - aggregates over fixed bins of `agg_seconds` (15 min, aligned to multiples of it in Unix
//!   time), per direction ([`AGG_COLUMNS`]: packets, mean/min/max size, duration), and the same
//!   split by transport ([`AGG_TRANSPORT_COLUMNS`]) for the stricter transport observer.
//!
//! Memory: the packets of one open window and one open bin, plus the output rows.

use std::path::Path;

use ndarray::{Array1, Array2};
use serde::Serialize;

use super::{
    packet::{Direction, Packet, Transport, secs_to_ns},
    windows::{WindowCutter, WindowSettings, Windows},
};
use crate::error::{Error, ErrorCode, Result};

/// Per-window features, in this order in `kfp.npy`.
pub const KFP_COLUMNS: [&str; 37] = [
    "in_packets",
    "in_bytes",
    "in_size_mean",
    "in_size_std",
    "in_size_min",
    "in_size_max",
    "in_size_le100",
    "in_size_le300",
    "in_size_le1000",
    "in_size_gt1000",
    "out_packets",
    "out_bytes",
    "out_size_mean",
    "out_size_std",
    "out_size_min",
    "out_size_max",
    "out_size_le100",
    "out_size_le300",
    "out_size_le1000",
    "out_size_gt1000",
    "packets",
    "bytes",
    "out_fraction",
    "iat_mean_s",
    "iat_std_s",
    "iat_max_s",
    "bursts",
    "burst_max_packets",
    "burst_mean_packets",
    "burst_max_bytes",
    "first_slot",
    "last_slot",
    "active_slots",
    "max_slot_packets",
    "duration_s",
    "silence_before_s",
    "silence_after_s",
];

/// Per-bin aggregates by direction, in this order in `agg.npy`.
pub const AGG_COLUMNS: [&str; 10] = [
    "in_packets",
    "in_mean_size",
    "in_min_size",
    "in_max_size",
    "in_duration_s",
    "out_packets",
    "out_mean_size",
    "out_min_size",
    "out_max_size",
    "out_duration_s",
];

/// Per-bin aggregates by direction and transport, in this order in `agg_transport.npy`.
pub const AGG_TRANSPORT_COLUMNS: [&str; 20] = [
    "in_tcp_packets",
    "in_tcp_mean_size",
    "in_tcp_min_size",
    "in_tcp_max_size",
    "in_tcp_duration_s",
    "in_udp_packets",
    "in_udp_mean_size",
    "in_udp_min_size",
    "in_udp_max_size",
    "in_udp_duration_s",
    "out_tcp_packets",
    "out_tcp_mean_size",
    "out_tcp_min_size",
    "out_tcp_max_size",
    "out_tcp_duration_s",
    "out_udp_packets",
    "out_udp_mean_size",
    "out_udp_min_size",
    "out_udp_max_size",
    "out_udp_duration_s",
];

const SIZE_EDGES: [u32; 3] = [100, 300, 1000];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSettings {
    pub windows: WindowSettings,
    pub agg_ns: i64,
}

impl FeatureSettings {
    pub fn new(windows: WindowSettings, agg_seconds: f64) -> Result<Self> {
        let agg_ns = if agg_seconds.is_finite() { secs_to_ns(agg_seconds) } else { 0 };
        if agg_ns <= 0 {
            return Err(Error::invalid(
                ErrorCode::InvalidWindowSettings,
                format!("--agg-seconds {agg_seconds} must be positive"),
            ));
        }
        Ok(Self { windows, agg_ns })
    }
}

/// Packets, size sum/min/max and first/last time of one group of a bin.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    packets: u64,
    bytes: f64,
    min: u32,
    max: u32,
    first: i64,
    last: i64,
}

impl Group {
    fn add(&mut self, p: &Packet) {
        if self.packets == 0 {
            self.min = p.size;
            self.first = p.time_ns;
        }
        self.packets += 1;
        self.bytes += f64::from(p.size);
        self.min = self.min.min(p.size);
        self.max = self.max.max(p.size);
        self.last = p.time_ns;
    }

    fn merge(a: &Group, b: &Group) -> Group {
        match (a.packets, b.packets) {
            (0, _) => *b,
            (_, 0) => *a,
            _ => Group {
                packets: a.packets + b.packets,
                bytes: a.bytes + b.bytes,
                min: a.min.min(b.min),
                max: a.max.max(b.max),
                first: a.first.min(b.first),
                last: a.last.max(b.last),
            },
        }
    }

    fn row(&self) -> [f32; 5] {
        if self.packets == 0 {
            return [0.0; 5];
        }
        [
            self.packets as f32,
            (self.bytes / self.packets as f64) as f32,
            self.min as f32,
            self.max as f32,
            ((self.last - self.first) as f64 * 1e-9) as f32,
        ]
    }
}

/// Cuts one device's packets (in time order) into windows, per-window features and aggregates.
#[derive(Debug, Clone)]
pub struct FeatureCutter {
    settings: FeatureSettings,
    label: i64,
    cutter: WindowCutter,
    open: Vec<Packet>,
    open_real: u32,
    previous_last: Option<i64>,
    silence_before: f64,
    kfp: Vec<f32>,
    real: Vec<i64>,
    bin: Option<i64>,
    groups: [[Group; 2]; 2],
    bin_real: i64,
    agg: Vec<f32>,
    agg_transport: Vec<f32>,
    agg_start: Vec<f64>,
    agg_real: Vec<i64>,
}

/// One or more devices' features, ready to be written.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub windows: Windows,
    /// Row-major [windows, KFP_COLUMNS.len()].
    pub kfp: Vec<f32>,
    pub real_packets: Vec<i64>,
    /// Row-major [bins, AGG_COLUMNS.len()].
    pub agg: Vec<f32>,
    /// Row-major [bins, AGG_TRANSPORT_COLUMNS.len()].
    pub agg_transport: Vec<f32>,
    pub agg_labels: Vec<i64>,
    pub agg_start: Vec<f64>,
    pub agg_real_packets: Vec<i64>,
}

impl FeatureCutter {
    pub fn new(settings: &FeatureSettings, label: i64) -> Self {
        Self {
            settings: *settings,
            label,
            cutter: WindowCutter::new(&settings.windows, label),
            open: Vec::new(),
            open_real: 0,
            previous_last: None,
            silence_before: 0.0,
            kfp: Vec::new(),
            real: Vec::new(),
            bin: None,
            groups: Default::default(),
            bin_real: 0,
            agg: Vec::new(),
            agg_transport: Vec::new(),
            agg_start: Vec::new(),
            agg_real: Vec::new(),
        }
    }

    /// The next packet of the device (not earlier than the previous one); `real` is the
    /// simulator's ground truth, kept as a label only.
    pub fn push(&mut self, p: &Packet, real: bool) {
        let before = self.cutter.len();
        self.cutter.push(p);
        if self.cutter.len() > before {
            let last = self.open.last().map(|q| q.time_ns);
            if let Some(last) = last {
                self.close_window((p.time_ns - last) as f64 * 1e-9);
                self.previous_last = Some(last);
            }
            self.silence_before = self.previous_last.map_or(0.0, |l| (p.time_ns - l) as f64 * 1e-9);
        }
        self.open.push(*p);
        self.open_real += u32::from(real);

        let bin = p.time_ns.div_euclid(self.settings.agg_ns);
        if self.bin != Some(bin) {
            self.close_bin();
            self.bin = Some(bin);
        }
        let t = usize::from(p.transport == Transport::Udp);
        self.groups[p.direction.index()][t].add(p);
        self.bin_real += i64::from(real);
    }

    fn close_bin(&mut self) {
        let Some(bin) = self.bin.take() else {
            return;
        };
        for d in 0..2 {
            self.agg.extend(Group::merge(&self.groups[d][0], &self.groups[d][1]).row());
            for t in 0..2 {
                self.agg_transport.extend(self.groups[d][t].row());
            }
        }
        self.agg_start.push((bin as f64) * (self.settings.agg_ns as f64) * 1e-9);
        self.agg_real.push(self.bin_real);
        self.groups = Default::default();
        self.bin_real = 0;
    }

    fn close_window(&mut self, silence_after: f64) {
        let row = window_features(&self.open, self.settings.windows.omega_ns, self.silence_before, silence_after);
        self.kfp.extend(row);
        self.real.push(i64::from(self.open_real));
        self.open.clear();
        self.open_real = 0;
    }

    pub fn finish(mut self) -> Features {
        if !self.open.is_empty() {
            self.close_window(f64::NAN);
        }
        self.close_bin();
        let n_bins = self.agg_start.len();
        Features {
            windows: self.cutter.finish(),
            kfp: self.kfp,
            real_packets: self.real,
            agg: self.agg,
            agg_transport: self.agg_transport,
            agg_labels: vec![self.label; n_bins],
            agg_start: self.agg_start,
            agg_real_packets: self.agg_real,
        }
    }
}

/// The k-FP-style features of one window's packets (in time order, at least one).
fn window_features(packets: &[Packet], omega_ns: i64, silence_before: f64, silence_after: f64) -> [f32; 37] {
    let mut f = [0f32; 37];
    let start = packets[0].time_ns;
    for (d, at) in [(Direction::In, 0usize), (Direction::Out, 10usize)] {
        let sizes: Vec<f64> = packets.iter().filter(|p| p.direction == d).map(|p| f64::from(p.size)).collect();
        if sizes.is_empty() {
            continue;
        }
        let n = sizes.len() as f64;
        let sum: f64 = sizes.iter().sum();
        let mean = sum / n;
        let var = sizes.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n;
        f[at] = n as f32;
        f[at + 1] = sum as f32;
        f[at + 2] = mean as f32;
        f[at + 3] = var.sqrt() as f32;
        f[at + 4] = sizes.iter().copied().fold(f64::INFINITY, f64::min) as f32;
        f[at + 5] = sizes.iter().copied().fold(0.0, f64::max) as f32;
        for s in &sizes {
            let bucket = SIZE_EDGES.iter().position(|&e| *s <= f64::from(e)).unwrap_or(SIZE_EDGES.len());
            f[at + 6 + bucket] += 1.0;
        }
    }
    let n = packets.len();
    f[20] = n as f32;
    f[21] = f[1] + f[11];
    f[22] = f[10] / n as f32;
    if n > 1 {
        let gaps: Vec<f64> = packets.windows(2).map(|w| (w[1].time_ns - w[0].time_ns) as f64 * 1e-9).collect();
        let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let v = gaps.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / gaps.len() as f64;
        f[23] = m as f32;
        f[24] = v.sqrt() as f32;
        f[25] = gaps.iter().copied().fold(0.0, f64::max) as f32;
    }
    // Bursts: runs of packets in one direction.
    let (mut bursts, mut run, mut run_bytes, mut max_run, mut max_bytes) = (0u32, 0u32, 0u64, 0u32, 0u64);
    let mut previous: Option<Direction> = None;
    for p in packets {
        if previous != Some(p.direction) {
            bursts += 1;
            run = 0;
            run_bytes = 0;
            previous = Some(p.direction);
        }
        run += 1;
        run_bytes += u64::from(p.size);
        max_run = max_run.max(run);
        max_bytes = max_bytes.max(run_bytes);
    }
    f[26] = bursts as f32;
    f[27] = max_run as f32;
    f[28] = n as f32 / bursts as f32;
    f[29] = max_bytes as f32;
    // Slots, as the M_seq windows cut them.
    let slot = |p: &Packet| (p.time_ns - start) / omega_ns;
    let (mut active, mut max_slot, mut current, mut count) = (0u32, 0u32, -1i64, 0u32);
    for p in packets {
        let s = slot(p);
        if s != current {
            active += 1;
            current = s;
            count = 0;
        }
        count += 1;
        max_slot = max_slot.max(count);
    }
    f[30] = slot(&packets[0]) as f32;
    f[31] = slot(&packets[n - 1]) as f32;
    f[32] = active as f32;
    f[33] = max_slot as f32;
    f[34] = ((packets[n - 1].time_ns - start) as f64 * 1e-9) as f32;
    f[35] = silence_before as f32;
    f[36] = silence_after as f32;
    f
}

impl Features {
    pub fn new(settings: &WindowSettings) -> Self {
        Self { windows: Windows::new(settings), ..Self::default() }
    }

    pub fn append(&mut self, other: Features) {
        self.windows.append(other.windows);
        self.kfp.extend(other.kfp);
        self.real_packets.extend(other.real_packets);
        self.agg.extend(other.agg);
        self.agg_transport.extend(other.agg_transport);
        self.agg_labels.extend(other.agg_labels);
        self.agg_start.extend(other.agg_start);
        self.agg_real_packets.extend(other.agg_real_packets);
    }

    /// Writes the features beside the windows' files (which the caller writes with their
    /// meta): kfp.npy, real_packets.npy, agg.npy, agg_transport.npy, agg_labels.npy,
    /// agg_start.npy, agg_real_packets.npy and features.json.
    pub fn write_dir(&self, dir: &Path, settings: &FeatureSettings) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let fail = |name: &str, e: String| Error::Internal(format!("writing {}: {e}", dir.join(name).display()));
        let matrix = |name: &str, data: &[f32], cols: usize| -> Result<()> {
            let a = Array2::from_shape_vec((data.len() / cols, cols), data.to_vec())
                .map_err(|e| fail(name, e.to_string()))?;
            ndarray_npy::write_npy(dir.join(name), &a).map_err(|e| fail(name, e.to_string()))
        };
        matrix("kfp.npy", &self.kfp, KFP_COLUMNS.len())?;
        matrix("agg.npy", &self.agg, AGG_COLUMNS.len())?;
        matrix("agg_transport.npy", &self.agg_transport, AGG_TRANSPORT_COLUMNS.len())?;
        let ints = [
            ("real_packets.npy", &self.real_packets),
            ("agg_labels.npy", &self.agg_labels),
            ("agg_real_packets.npy", &self.agg_real_packets),
        ];
        for (name, v) in ints {
            ndarray_npy::write_npy(dir.join(name), &Array1::from(v.clone())).map_err(|e| fail(name, e.to_string()))?;
        }
        ndarray_npy::write_npy(dir.join("agg_start.npy"), &Array1::from(self.agg_start.clone()))
            .map_err(|e| fail("agg_start.npy", e.to_string()))?;
        let meta = FeaturesMeta {
            schema_version: 1,
            windows: self.windows.len(),
            bins: self.agg_start.len(),
            agg_seconds: settings.agg_ns as f64 * 1e-9,
            kfp_columns: &KFP_COLUMNS,
            agg_columns: &AGG_COLUMNS,
            agg_transport_columns: &AGG_TRANSPORT_COLUMNS,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(dir.join("features.json"), json).map_err(|e| Error::io("writing features.json", e))
    }
}

#[derive(Serialize)]
struct FeaturesMeta {
    schema_version: u32,
    windows: usize,
    bins: usize,
    agg_seconds: f64,
    kfp_columns: &'static [&'static str],
    agg_columns: &'static [&'static str],
    agg_transport_columns: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(t: f64, size: u32, direction: Direction, transport: Transport) -> Packet {
        Packet { time_ns: secs_to_ns(t), size, direction, transport }
    }

    fn cut(packets: &[(Packet, bool)]) -> Features {
        let s = FeatureSettings::new(WindowSettings::reference(), 900.0).expect("settings");
        let mut c = FeatureCutter::new(&s, 2);
        for (p, real) in packets {
            c.push(p, *real);
        }
        c.finish()
    }

    fn col(f: &Features, w: usize, name: &str) -> f32 {
        let i = KFP_COLUMNS.iter().position(|c| *c == name).expect("column");
        f.kfp[w * KFP_COLUMNS.len() + i]
    }

    #[test]
    fn windows_match_the_window_cutter_and_carry_real_counts() {
        use Direction::{In, Out};
        use Transport::{Tcp, Udp};
        let ps = [
            (pkt(0.0, 50, Out, Tcp), true),
            (pkt(0.05, 150, Out, Tcp), true),
            (pkt(0.25, 1400, In, Tcp), true),
            (pkt(2.0, 60, Out, Udp), false),
            (pkt(10.0, 80, In, Udp), false),
        ];
        let f = cut(&ps);
        let mut w = Windows::new(&WindowSettings::reference());
        w.push_device(&ps.iter().map(|(p, _)| *p).collect::<Vec<_>>(), 2, &WindowSettings::reference());
        assert_eq!(f.windows.features, w.features);
        assert_eq!(f.windows.start_time, w.start_time);
        assert_eq!(f.real_packets, vec![3, 0]);
        assert_eq!(f.kfp.len(), 2 * KFP_COLUMNS.len());
        assert_eq!(col(&f, 0, "out_packets"), 3.0);
        assert_eq!(col(&f, 0, "out_size_mean"), 260.0 / 3.0);
        assert_eq!(col(&f, 0, "out_size_le100"), 2.0);
        assert_eq!(col(&f, 0, "out_size_le300"), 1.0);
        assert_eq!(col(&f, 0, "in_size_gt1000"), 1.0);
        // out, out, in, out: three bursts, the longest of two packets (200 bytes).
        assert_eq!(col(&f, 0, "bursts"), 3.0);
        assert_eq!(col(&f, 0, "burst_max_packets"), 2.0);
        assert_eq!(col(&f, 0, "burst_max_bytes"), 1400.0);
        assert_eq!(col(&f, 0, "first_slot"), 0.0);
        assert_eq!(col(&f, 0, "last_slot"), 20.0);
        assert_eq!(col(&f, 0, "active_slots"), 3.0);
        assert_eq!(col(&f, 0, "max_slot_packets"), 2.0);
        assert!((col(&f, 0, "iat_max_s") - 1.75).abs() < 1e-6);
        assert_eq!(col(&f, 0, "silence_before_s"), 0.0);
        assert!((col(&f, 0, "silence_after_s") - 8.0).abs() < 1e-6);
        assert!((col(&f, 1, "silence_before_s") - 8.0).abs() < 1e-6);
        assert!(col(&f, 1, "silence_after_s").is_nan());
        // One 15-minute bin, by direction and by transport.
        assert_eq!(f.agg_start, vec![0.0]);
        assert_eq!(f.agg_labels, vec![2]);
        assert_eq!(f.agg_real_packets, vec![3]);
        assert_eq!(&f.agg[0..5], &[2.0, 740.0, 80.0, 1400.0, 9.75]);
        assert_eq!(&f.agg[5..10], &[3.0, 260.0 / 3.0, 50.0, 150.0, 2.0]);
        assert_eq!(&f.agg_transport[0..5], &[1.0, 1400.0, 1400.0, 1400.0, 0.0]);
        assert_eq!(&f.agg_transport[5..10], &[1.0, 80.0, 80.0, 80.0, 0.0]);
        assert_eq!(&f.agg_transport[10..15], &[2.0, 100.0, 50.0, 150.0, 0.05]);
        assert_eq!(&f.agg_transport[15..20], &[1.0, 60.0, 60.0, 60.0, 0.0]);
    }

    #[test]
    fn bins_are_aligned_to_unix_multiples() {
        let ps = [
            (pkt(899.0, 10, Direction::In, Transport::Tcp), true),
            (pkt(901.0, 20, Direction::In, Transport::Tcp), true),
            (pkt(5000.0, 30, Direction::Out, Transport::Tcp), false),
        ];
        let f = cut(&ps);
        assert_eq!(f.agg_start, vec![0.0, 900.0, 4500.0]);
        assert_eq!(f.agg_real_packets, vec![1, 1, 0]);
        // 899 and 901 share a window (4 s), 5000 opens the next.
        assert_eq!(f.real_packets, vec![2, 0]);
    }

    #[test]
    fn bad_bin_length_is_an_error() {
        assert!(FeatureSettings::new(WindowSettings::reference(), 0.0).is_err());
        assert!(FeatureSettings::new(WindowSettings::reference(), f64::NAN).is_err());
    }
}
