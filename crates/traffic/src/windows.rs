//! M_seq fingerprinting windows (reference doc, section 2).
//!
//! A device's packets are cut into windows of `total_time`: a window starts at a packet, and the
//! next one at the first packet at least `total_time` after that start. Each window has
//! `total_time / omega` slots; a packet at time t falls in slot floor((t - start) / omega),
//! computed on integer nanoseconds so that boundaries are exact. Per slot, four numbers in the
//! order of [`COLUMNS`]. Each window also carries its silence: the time from the last packet of
//! the device's previous window to this window's first packet (0 for the first window).

use std::path::Path;

use ndarray::{Array1, Array3};
use serde::Serialize;

use super::{
    capture::{CaptureStats, DeviceTraffic},
    devices::DeviceTable,
    packet::{Direction, Packet, secs_to_ns},
};
use crate::error::{Error, ErrorCode, Result};

/// The per-slot columns, in order, everywhere a vector leaves the system.
pub const COLUMNS: [&str; 4] = ["in_packets", "in_bytes", "out_packets", "out_bytes"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    pub total_time_ns: i64,
    pub omega_ns: i64,
}

impl WindowSettings {
    /// Validates that omega divides total_time into whole slots.
    pub fn new(total_time: f64, omega: f64) -> Result<Self> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidWindowSettings, m);
        if !(total_time.is_finite() && omega.is_finite() && omega > 0.0 && total_time >= omega) {
            return Err(bad(format!(
                "need 0 < omega <= total_time, got omega {omega} s and total_time {total_time} s"
            )));
        }
        let (total_time_ns, omega_ns) = (secs_to_ns(total_time), secs_to_ns(omega));
        if omega_ns == 0 || total_time_ns % omega_ns != 0 {
            return Err(bad(format!("total_time {total_time} s is not a whole number of omega {omega} s slots")));
        }
        Ok(Self { total_time_ns, omega_ns })
    }

    pub fn reference() -> Self {
        Self { total_time_ns: 4_000_000_000, omega_ns: 100_000_000 }
    }

    pub fn slots(&self) -> usize {
        (self.total_time_ns / self.omega_ns) as usize
    }

    pub fn total_time(&self) -> f64 {
        self.total_time_ns as f64 * 1e-9
    }

    pub fn omega(&self) -> f64 {
        self.omega_ns as f64 * 1e-9
    }
}

/// Windows of any number of devices, in the layout the training job reads.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    pub slots: usize,
    /// Row-major [n, slots, 4].
    pub features: Vec<f32>,
    pub silence: Vec<f32>,
    pub labels: Vec<i64>,
    pub start_time: Vec<f64>,
}

impl Windows {
    pub fn new(settings: &WindowSettings) -> Self {
        Self { slots: settings.slots(), ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The four numbers of slot `s` of window `w`.
    pub fn slot(&self, w: usize, s: usize) -> &[f32] {
        let at = (w * self.slots + s) * 4;
        &self.features[at..at + 4]
    }

    /// Cuts one device's packets (sorted by time) into windows labelled `label`.
    pub fn push_device(&mut self, packets: &[Packet], label: i64, settings: &WindowSettings) {
        debug_assert!(packets.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        let mut cutter = WindowCutter::new(settings, label);
        for p in packets {
            cutter.push(p);
        }
        self.append(cutter.finish());
    }

    /// Appends another set of windows with the same slot count.
    pub fn append(&mut self, other: Windows) {
        debug_assert!(other.is_empty() || other.slots == self.slots);
        self.features.extend(other.features);
        self.silence.extend(other.silence);
        self.labels.extend(other.labels);
        self.start_time.extend(other.start_time);
    }

    /// Writes `features.npy`, `silence.npy`, `labels.npy`, `start_time.npy` and `windows.json`.
    pub fn write_dir(&self, dir: &Path, meta: &WindowsMeta) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let npy = |name: &str, r: std::result::Result<(), ndarray_npy::WriteNpyError>| {
            r.map_err(|e| Error::Internal(format!("writing {}: {e}", dir.join(name).display())))
        };
        let features = Array3::from_shape_vec((self.len(), self.slots, 4), self.features.clone())
            .map_err(|e| Error::Internal(e.to_string()))?;
        npy("features.npy", ndarray_npy::write_npy(dir.join("features.npy"), &features))?;
        npy("silence.npy", ndarray_npy::write_npy(dir.join("silence.npy"), &Array1::from(self.silence.clone())))?;
        npy("labels.npy", ndarray_npy::write_npy(dir.join("labels.npy"), &Array1::from(self.labels.clone())))?;
        npy(
            "start_time.npy",
            ndarray_npy::write_npy(dir.join("start_time.npy"), &Array1::from(self.start_time.clone())),
        )?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(dir.join("windows.json"), json).map_err(|e| Error::io("writing windows.json", e))
    }
}

/// Cuts one device's packets into windows as they come (in time order), so that a defended
/// trace never has to be held: the same windows as [`Windows::push_device`] on the whole trace.
#[derive(Debug, Clone)]
pub struct WindowCutter {
    settings: WindowSettings,
    label: i64,
    windows: Windows,
    start: Option<i64>,
    base: usize,
    last: i64,
    previous_last: Option<i64>,
}

impl WindowCutter {
    pub fn new(settings: &WindowSettings, label: i64) -> Self {
        Self {
            settings: *settings,
            label,
            windows: Windows::new(settings),
            start: None,
            base: 0,
            last: 0,
            previous_last: None,
        }
    }

    /// The next packet of the device (not earlier than the previous one).
    pub fn push(&mut self, p: &Packet) {
        let start = match self.start {
            Some(s) if p.time_ns < s + self.settings.total_time_ns => s,
            open => {
                if open.is_some() {
                    self.previous_last = Some(self.last);
                }
                let w = &mut self.windows;
                self.base = w.features.len();
                w.features.resize(self.base + w.slots * 4, 0.0);
                let silence = self.previous_last.map_or(0.0, |last| (p.time_ns - last) as f64 * 1e-9);
                w.silence.push(silence as f32);
                w.labels.push(self.label);
                w.start_time.push(p.time_ns as f64 * 1e-9);
                self.start = Some(p.time_ns);
                p.time_ns
            }
        };
        let slot = ((p.time_ns - start) / self.settings.omega_ns) as usize;
        let col = match p.direction {
            Direction::In => 0,
            Direction::Out => 2,
        };
        let at = self.base + slot * 4 + col;
        self.windows.features[at] += 1.0;
        self.windows.features[at + 1] += p.size as f32;
        self.last = p.time_ns;
    }

    /// Windows opened so far.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    pub fn finish(self) -> Windows {
        self.windows
    }
}

/// The JSON sidecar of a windows directory.
#[derive(Debug, Clone, Serialize)]
pub struct WindowsMeta {
    pub schema_version: u32,
    pub total_time: f64,
    pub omega: f64,
    pub slots_per_window: usize,
    pub columns: [&'static str; 4],
    pub devices: Vec<DeviceSummary>,
    pub stats: CaptureStats,
    /// Whether a device's traffic inside the LAN counted (`--lan-traffic`).
    pub lan_traffic: bool,
    /// Devices of the table that kept no packet (no windows), and why.
    pub dropped_devices: Vec<super::capture::DroppedDevice>,
    /// Files in the capture folders that were no captures, skipped.
    pub skipped_files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub id: usize,
    pub name: String,
    pub mac: Option<String>,
    pub ip: Option<String>,
    /// How the device was recognised: "mac", "ip", or "mac+ip" when each matched some packets.
    pub matched_by: Option<String>,
    pub packets: usize,
    pub windows: usize,
}

impl WindowsMeta {
    pub fn new(settings: &WindowSettings, table: &DeviceTable, traffic: &DeviceTraffic, windows: &Windows) -> Self {
        let packets: Vec<usize> = traffic.packets.iter().map(Vec::len).collect();
        Self::with_packets(settings, table, traffic, &packets, windows)
    }

    /// As [`WindowsMeta::new`] for windows of other packets than the captures' (a defended
    /// trace): `packets[id]` is how many packets of device `id` were cut.
    pub fn with_packets(
        settings: &WindowSettings,
        table: &DeviceTable,
        traffic: &DeviceTraffic,
        packets: &[usize],
        windows: &Windows,
    ) -> Self {
        let devices = table
            .devices()
            .iter()
            .map(|d| DeviceSummary {
                id: d.id,
                name: d.name.clone(),
                mac: d.mac.as_ref().map(super::devices::format_mac),
                ip: (!d.ips.is_empty()).then(|| d.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(";")),
                matched_by: traffic.matched_by(d.id),
                packets: packets.get(d.id).copied().unwrap_or(0),
                windows: windows.labels.iter().filter(|&&l| l == d.id as i64).count(),
            })
            .collect();
        Self {
            schema_version: 1,
            total_time: settings.total_time(),
            omega: settings.omega(),
            slots_per_window: settings.slots(),
            columns: COLUMNS,
            devices,
            stats: traffic.stats.clone(),
            lan_traffic: table.counts_lan_traffic(),
            dropped_devices: traffic.dropped_devices(table),
            skipped_files: traffic.skipped_files.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Transport;

    fn pkt(t: f64, size: u32, direction: Direction) -> Packet {
        Packet { time_ns: secs_to_ns(t), size, direction, transport: Transport::Tcp }
    }

    fn cut(packets: &[Packet]) -> Windows {
        let s = WindowSettings::reference();
        let mut w = Windows::new(&s);
        w.push_device(packets, 3, &s);
        w
    }

    #[test]
    fn columns_are_in_then_out() {
        let w = cut(&[pkt(10.0, 100, Direction::In), pkt(10.05, 7, Direction::Out), pkt(10.06, 5, Direction::Out)]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.slot(0, 0), &[1.0, 100.0, 2.0, 12.0]);
        assert_eq!(w.labels, vec![3]);
    }

    #[test]
    fn slot_edges_are_exact() {
        // 0.3 s after the start is slot 3, not slot 2 (0.3 / 0.1 in floating point is 2.999...).
        let w = cut(&[
            pkt(1.0, 1, Direction::In),
            pkt(1.0999999, 4, Direction::In),
            pkt(1.3, 2, Direction::In),
            pkt(4.9999, 8, Direction::Out),
        ]);
        assert_eq!(w.features.len(), 160);
        assert_eq!(w.slot(0, 0), &[2.0, 5.0, 0.0, 0.0]);
        assert_eq!(w.slot(0, 3), &[1.0, 2.0, 0.0, 0.0]);
        assert_eq!(w.slot(0, 39), &[0.0, 0.0, 1.0, 8.0]);
    }

    #[test]
    fn window_boundaries_follow_the_first_packet_at_least_total_time_later() {
        let mut packets = vec![
            pkt(0.0, 1, Direction::In),
            pkt(3.99, 1, Direction::In),
            pkt(4.0, 1, Direction::In),
            pkt(4.5, 1, Direction::Out),
            pkt(20.0, 1, Direction::In),
        ];
        packets.sort_by_key(|p| p.time_ns);
        let w = cut(&packets);
        assert_eq!(w.start_time, vec![0.0, 4.0, 20.0]);
        // 4.0 starts the second window at its slot 0; 4.5 is its slot 5.
        assert_eq!(w.slot(1, 0), &[1.0, 1.0, 0.0, 0.0]);
        assert_eq!(w.slot(1, 5), &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(w.slot(0, 39), &[1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn silence_is_the_gap_since_the_previous_windows_last_packet() {
        let w = cut(&[
            pkt(0.0, 1, Direction::In),
            pkt(2.5, 1, Direction::In),
            pkt(10.0, 1, Direction::In),
            pkt(30.25, 1, Direction::Out),
        ]);
        assert_eq!(w.silence.len(), 3);
        assert_eq!(w.silence[0], 0.0);
        assert!((w.silence[1] - 7.5).abs() < 1e-6);
        assert!((w.silence[2] - 20.25).abs() < 1e-6);
    }

    #[test]
    fn settings_must_divide_into_whole_slots() {
        assert_eq!(WindowSettings::new(4.0, 0.1).expect("ok").slots(), 40);
        assert_eq!(WindowSettings::new(2.0, 0.25).expect("ok").slots(), 8);
        assert!(WindowSettings::new(4.0, 0.3).is_err());
        assert!(WindowSettings::new(4.0, 0.0).is_err());
        assert!(WindowSettings::new(0.05, 0.1).is_err());
        assert!(WindowSettings::new(f64::NAN, 0.1).is_err());
    }

    #[test]
    fn no_packets_no_windows() {
        assert!(cut(&[]).is_empty());
    }
}
