//! Prometheus text metrics: counters kept in atomics by the packet path, rendered on request by
//! a tiny HTTP endpoint (or written to a textfile for node_exporter's textfile collector).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Upper bounds (ms) of the latency histograms' buckets.
pub const BUCKETS_MS: [f64; 24] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 100.5, 101.0, 102.0, 105.0, 110.0,
    125.0, 150.0, 250.0, 1000.0, 5000.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 24],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe_ns(&self, ns: i64) {
        let ns = ns.max(0) as u64;
        let ms = ns as f64 / 1e6;
        if let Some(i) = BUCKETS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in BUCKETS_MS.iter().zip(&self.buckets) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", b / 1e3);
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Per device and direction (index 0 in, 1 out).
#[derive(Default)]
pub struct DeviceCounters {
    pub seen: [AtomicU64; 2],
    pub forwarded: [AtomicU64; 2],
    pub held: [AtomicU64; 2],
    pub cover_frames: [AtomicU64; 2],
    pub cover_bytes: [AtomicU64; 2],
    pub real_bytes: [AtomicU64; 2],
}

#[derive(Default)]
pub struct Metrics {
    devices: Mutex<BTreeMap<String, Arc<DeviceCounters>>>,
    pub frames_seen: AtomicU64,
    pub frames_forwarded: AtomicU64,
    pub unknown_passed: AtomicU64,
    pub hold_overflows: AtomicU64,
    pub send_failures: AtomicU64,
    pub socket_drops: AtomicU64,
    pub socket_frames: AtomicU64,
    pub config_loaded_ns: AtomicI64,
    pub config_reloads: AtomicU64,
    pub config_rejects: AtomicU64,
    pub slots: AtomicU64,
    pub slot_origin_ns: AtomicI64,
    /// Time a held real frame waited (release minus kernel receive time).
    pub hold: Histogram,
    /// Reaction: send of a frame minus when it was due (the kernel receive time of the frame that
    /// caused it, or its scheduled time).
    pub reaction: Histogram,
    /// Forwarding delay of real frames sent at once (send minus kernel receive time).
    pub forward: Histogram,
}

impl Metrics {
    pub fn device(&self, name: &str) -> Arc<DeviceCounters> {
        let mut d = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        d.entry(name.to_string()).or_default().clone()
    }

    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let now = crate::sys::now_ns();
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut o,
            "ipet_gateway_frames_seen_total",
            "Frames received on any port.",
            self.frames_seen.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_frames_forwarded_total",
            "Frames sent on by the bridge.",
            self.frames_forwarded.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_unknown_frames_total",
            "Frames of no known device, passed untouched.",
            self.unknown_passed.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_hold_overflows_total",
            "Real frames sent at once because a hold queue was full.",
            self.hold_overflows.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_send_failures_total",
            "Frames the kernel refused to send.",
            self.send_failures.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_socket_drops_total",
            "Frames the kernel dropped before the shaper read them (PACKET_STATISTICS).",
            self.socket_drops.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_config_reloads_total",
            "Configurations taken.",
            self.config_reloads.load(Relaxed),
        );
        counter(
            &mut o,
            "ipet_gateway_config_rejects_total",
            "Configurations refused (the running one stayed).",
            self.config_rejects.load(Relaxed),
        );
        counter(&mut o, "ipet_gateway_slots_total", "Slots the defense stepped.", self.slots.load(Relaxed));
        let loaded = self.config_loaded_ns.load(Relaxed);
        let _ = writeln!(
            o,
            "# HELP ipet_gateway_config_age_seconds Age of the configuration in use.\n# TYPE ipet_gateway_config_age_seconds gauge\nipet_gateway_config_age_seconds {}",
            if loaded == 0 { -1.0 } else { (now - loaded) as f64 / 1e9 }
        );
        let _ = writeln!(
            o,
            "# HELP ipet_gateway_slot_origin_seconds Start of slot 0 of the home grid (Unix time).\n# TYPE ipet_gateway_slot_origin_seconds gauge\nipet_gateway_slot_origin_seconds {:.9}",
            self.slot_origin_ns.load(Relaxed) as f64 / 1e9
        );
        self.hold.render(&mut o, "ipet_gateway_hold_seconds", "Time real frames were held.");
        self.reaction.render(
            &mut o,
            "ipet_gateway_reaction_lag_seconds",
            "Send of cover or a released frame minus when it was due.",
        );
        self.forward.render(
            &mut o,
            "ipet_gateway_forward_seconds",
            "Real frames forwarded at once: send minus kernel receive time.",
        );
        let devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        type Family = (&'static str, &'static str, fn(&DeviceCounters) -> &[AtomicU64; 2]);
        let fams: [Family; 6] = [
            ("ipet_gateway_device_frames_seen_total", "Real frames of a device seen.", |d| &d.seen),
            ("ipet_gateway_device_frames_forwarded_total", "Real frames of a device sent at once.", |d| &d.forwarded),
            ("ipet_gateway_device_frames_held_total", "Real frames of a device held before sending.", |d| &d.held),
            ("ipet_gateway_cover_frames_total", "Cover frames sent for a device.", |d| &d.cover_frames),
            ("ipet_gateway_cover_bytes_total", "Cover bytes (payload the defense counts) sent for a device.", |d| {
                &d.cover_bytes
            }),
            ("ipet_gateway_real_bytes_total", "Real payload bytes of a device seen.", |d| &d.real_bytes),
        ];
        for (name, help, get) in fams {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (dev, c) in devices.iter() {
                for (i, dir) in ["in", "out"].iter().enumerate() {
                    let _ = writeln!(o, "{name}{{device=\"{dev}\",direction=\"{dir}\"}} {}", get(c)[i].load(Relaxed));
                }
            }
        }
        o
    }
}

/// Serves `GET /metrics` (anything else: 404) on `addr`, one connection at a time.
pub fn serve(metrics: Arc<Metrics>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else if head.starts_with("GET /healthz") {
                ("200 OK", "ok\n".to_string())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(local)
}

/// Writes the metrics to `path` atomically (a temporary file renamed): node_exporter's textfile
/// collector, and the testbed's record of a run.
pub fn write_textfile(metrics: &Metrics, path: &std::path::Path) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, metrics.render()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_serves_counters_and_histograms() {
        let m = Arc::new(Metrics::default());
        m.device("cam").cover_frames[1].fetch_add(3, Relaxed);
        m.hold.observe_ns(100_200_000);
        m.socket_drops.fetch_add(2, Relaxed);
        let at = serve(m.clone(), "127.0.0.1:0".parse().expect("addr")).expect("serve");
        let mut c = std::net::TcpStream::connect(at).expect("connect");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut body = String::new();
        c.read_to_string(&mut body).expect("read");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("ipet_gateway_cover_frames_total{device=\"cam\",direction=\"out\"} 3"), "{body}");
        assert!(body.contains("ipet_gateway_socket_drops_total 2"));
        assert!(body.contains("ipet_gateway_hold_seconds_bucket{le=\"0.1005\"} 1"), "{body}");
        assert!(body.contains("ipet_gateway_hold_seconds_count 1"));
    }
}
