//! The in-repo real capture slice (`data/tj-oconnor-2021-slice`: 12 hours of 7 real devices)
//! through the data plane and through the `ipet windows` command.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

use ipet::traffic::{
    COLUMNS, DeviceTable, Direction, WindowSettings, Windows,
    capture::{CaptureStats, read_capture, read_captures},
    devices::MatchedBy,
};
use ndarray::{Array1, Array3};

/// The README's table: device, records in its capture, kept packets, 4 s windows.
const EXPECTED: [(&str, u64, usize, usize); 7] = [
    ("blink-cam-01", 2_511, 1_540, 16),
    ("blink-cam-02", 2_311, 1_377, 10),
    ("blink-cam-03", 3_231, 1_976, 15),
    ("lockly-hub-01", 3_185, 1_459, 720),
    ("schlage-lock-01", 732, 153, 40),
    ("sifely-hub-01", 1_449, 581, 356),
    ("ultraloq-hub-01", 3_565, 1_817, 759),
];

fn slice_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tj-oconnor-2021-slice")
}

fn table() -> DeviceTable {
    DeviceTable::from_csv_path(&slice_dir().join("devices.csv")).unwrap()
}

fn windows_of(table: &DeviceTable, traffic: &ipet::traffic::capture::DeviceTraffic) -> Windows {
    let settings = WindowSettings::reference();
    let mut windows = Windows::new(&settings);
    for d in table.devices() {
        windows.push_device(&traffic.packets[d.id], d.id as i64, &settings);
    }
    windows
}

#[test]
fn the_readme_table_matches_the_slice() {
    let table = table();
    assert_eq!(table.len(), EXPECTED.len());
    let traffic = read_captures(&[slice_dir().join("pcaps")], &table).unwrap();
    let windows = windows_of(&table, &traffic);
    for (name, _, kept, n_windows) in EXPECTED {
        let d = table.by_name(name).unwrap().id;
        assert_eq!(traffic.packets[d].len(), kept, "{name}: kept packets");
        assert_eq!(windows.labels.iter().filter(|&&l| l == d as i64).count(), n_windows, "{name}: windows");
    }
    let stats = &traffic.stats;
    assert_eq!(stats.frames, EXPECTED.iter().map(|e| e.1).sum::<u64>());
    assert_eq!(stats.kept as usize, EXPECTED.iter().map(|e| e.2).sum::<usize>());
    assert_eq!(stats.kept as usize, traffic.packets.iter().map(Vec::len).sum::<usize>());
}

#[test]
fn every_capture_file_reads_cleanly_and_belongs_to_its_device() {
    let table = table();
    for (name, records, kept, _) in EXPECTED {
        let path = slice_dir().join("pcaps").join(format!("{name}.pcap"));
        let mut stats = CaptureStats::default();
        let mut per_device: BTreeMap<usize, u64> = BTreeMap::new();
        read_capture(File::open(&path).unwrap(), name, &table, &mut stats, |d, by, _| {
            assert_eq!(by, MatchedBy::Mac, "{name}");
            *per_device.entry(d).or_default() += 1;
        })
        .unwrap();
        assert_eq!(stats.frames, records, "{name}: records");
        assert_eq!(stats.skipped_truncated, 0, "{name}: {stats:?}");
        assert_eq!(stats.matched_by_ip, 0, "{name}: {stats:?}");
        assert_eq!(stats.matched_by_mac, stats.kept, "{name}: {stats:?}");
        let skipped = stats.skipped_non_ip
            + stats.skipped_not_tcp_udp
            + stats.skipped_not_lan_boundary
            + stats.skipped_no_payload
            + stats.skipped_unknown_device;
        assert_eq!(stats.kept + skipped, stats.frames, "{name}: {stats:?}");
        // Each device's capture holds that device's packets only.
        let d = table.by_name(name).unwrap().id;
        assert_eq!(per_device, BTreeMap::from([(d, kept as u64)]), "{name}");
    }
}

#[test]
fn every_device_gets_packets_all_matched_by_mac() {
    let table = table();
    let traffic = read_captures(&[slice_dir().join("pcaps")], &table).unwrap();
    assert_eq!(traffic.stats.skipped_truncated, 0);
    assert_eq!(traffic.stats.matched_by_ip, 0);
    assert_eq!(traffic.stats.matched_by_mac, traffic.stats.kept);
    for d in table.devices() {
        let packets = &traffic.packets[d.id];
        assert!(!packets.is_empty(), "{}", d.name);
        assert_eq!(traffic.matched_by(d.id).as_deref(), Some("mac"), "{}", d.name);
        assert!(packets.windows(2).all(|w| w[0].time_ns <= w[1].time_ns), "{}: sorted", d.name);
        // Both directions are seen, all within the 12 hours (plus a little slack) of the slice.
        assert!(packets.iter().any(|p| p.direction == Direction::In), "{}", d.name);
        assert!(packets.iter().any(|p| p.direction == Direction::Out), "{}", d.name);
        let span = packets.last().unwrap().time_ns - packets[0].time_ns;
        assert!(span > 0 && span <= 12 * 3600 * 1_000_000_000 + 1_000_000_000, "{}: span {span} ns", d.name);
        // March 2021, in epoch nanoseconds.
        assert!((1_614_556_800_000_000_000..1_617_235_200_000_000_000).contains(&packets[0].time_ns), "{}", d.name);
        // Sizes come from 16-bit IP lengths.
        assert!(packets.iter().all(|p| p.size <= 65_535), "{}", d.name);
    }
}

#[test]
fn window_features_are_sane() {
    let table = table();
    let traffic = read_captures(&[slice_dir().join("pcaps")], &table).unwrap();
    let windows = windows_of(&table, &traffic);
    let n = windows.len();
    assert_eq!(windows.slots, 40);
    assert_eq!(windows.features.len(), n * 40 * 4);
    assert_eq!((windows.silence.len(), windows.start_time.len()), (n, n));
    let total_kept = traffic.stats.kept as f32;

    for v in &windows.features {
        assert!(*v >= 0.0 && v.fract() == 0.0 && v.is_finite(), "feature {v}");
    }
    for w in 0..n {
        let device = windows.labels[w] as usize;
        let mut window_packets = 0.0;
        for s in 0..windows.slots {
            let [in_p, in_b, out_p, out_b] = <[f32; 4]>::try_from(windows.slot(w, s)).unwrap();
            // Bytes may be 0 (empty UDP datagrams), never negative.
            assert!(in_b >= in_p * 0.0 && out_b >= out_p * 0.0);
            assert!(in_p <= total_kept && out_p <= total_kept);
            window_packets += in_p + out_p;
        }
        // A window starts at a packet: its first slot is never empty, and neither is it.
        let first = windows.slot(w, 0);
        assert!(first[0] + first[2] >= 1.0, "window {w} of device {device} starts at a packet");
        assert!(window_packets >= 1.0);
        assert!(windows.silence[w] >= 0.0 && windows.silence[w].is_finite());
    }

    // Per device: windows are contiguous, sorted by start, at least total_time apart, the first
    // with silence 0; every packet lands in exactly one window, with its bytes.
    let mut seen_labels = Vec::new();
    for d in table.devices() {
        let idx: Vec<usize> = (0..n).filter(|&w| windows.labels[w] == d.id as i64).collect();
        assert!(!idx.is_empty(), "{}", d.name);
        assert!(idx.windows(2).all(|p| p[1] == p[0] + 1), "{}: contiguous", d.name);
        seen_labels.push(d.id as i64);
        let starts: Vec<f64> = idx.iter().map(|&w| windows.start_time[w]).collect();
        assert!(starts.windows(2).all(|s| s[1] - s[0] >= 4.0 - 1e-6), "{}: sorted, 4 s apart", d.name);
        assert_eq!(windows.silence[idx[0]], 0.0, "{}", d.name);
        assert!(idx[1..].iter().all(|&w| windows.silence[w] > 0.0), "{}", d.name);
        let packets = &traffic.packets[d.id];
        assert!((starts[0] - packets[0].time_s()).abs() < 1e-6);
        let sum = |col: usize| -> f64 {
            idx.iter().map(|&w| (0..windows.slots).map(|s| f64::from(windows.slot(w, s)[col])).sum::<f64>()).sum()
        };
        let count = |dir: Direction| packets.iter().filter(|p| p.direction == dir).count() as f64;
        let bytes =
            |dir: Direction| packets.iter().filter(|p| p.direction == dir).map(|p| f64::from(p.size)).sum::<f64>();
        assert_eq!(COLUMNS, ["in_packets", "in_bytes", "out_packets", "out_bytes"]);
        assert_eq!(sum(0), count(Direction::In), "{}", d.name);
        assert_eq!(sum(1), bytes(Direction::In), "{}", d.name);
        assert_eq!(sum(2), count(Direction::Out), "{}", d.name);
        assert_eq!(sum(3), bytes(Direction::Out), "{}", d.name);
    }
    // Labels come in device order.
    let mut dedup = windows.labels.clone();
    dedup.dedup();
    assert_eq!(dedup, seen_labels);
}

#[test]
fn ipet_windows_writes_the_five_files() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("windows");
    let slice = slice_dir();
    let result = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .arg("windows")
        .arg("--captures")
        .arg(slice.join("pcaps"))
        .arg("--devices")
        .arg(slice.join("devices.csv"))
        .arg("--out")
        .arg(&dir)
        .env_remove("IPET_TOTAL_TIME")
        .env_remove("IPET_OMEGA")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(result.status.success(), "ipet windows failed: {}", String::from_utf8_lossy(&result.stderr));

    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["features.npy", "labels.npy", "silence.npy", "start_time.npy", "windows.json"]);

    let n: usize = EXPECTED.iter().map(|e| e.3).sum();
    let features: Array3<f32> = ndarray_npy::read_npy(dir.join("features.npy")).unwrap();
    assert_eq!(features.shape(), &[n, 40, 4]);
    let silence: Array1<f32> = ndarray_npy::read_npy(dir.join("silence.npy")).unwrap();
    assert_eq!(silence.len(), n);
    let labels: Array1<i64> = ndarray_npy::read_npy(dir.join("labels.npy")).unwrap();
    assert_eq!(labels.len(), n);
    let start_time: Array1<f64> = ndarray_npy::read_npy(dir.join("start_time.npy")).unwrap();
    assert_eq!(start_time.len(), n);

    // The same numbers as the library computes.
    let table = table();
    let traffic = read_captures(&[slice.join("pcaps")], &table).unwrap();
    let windows = windows_of(&table, &traffic);
    assert_eq!(features.as_slice().unwrap(), windows.features.as_slice());
    assert_eq!(silence.to_vec(), windows.silence);
    assert_eq!(labels.to_vec(), windows.labels);
    assert_eq!(start_time.to_vec(), windows.start_time);
    assert!(features.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));

    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("windows.json")).unwrap()).unwrap();
    assert_eq!(meta["schema_version"], 1);
    assert_eq!(meta["total_time"], 4.0);
    assert_eq!(meta["omega"], 0.1);
    assert_eq!(meta["slots_per_window"], 40);
    assert_eq!(meta["columns"], serde_json::json!(["in_packets", "in_bytes", "out_packets", "out_bytes"]));
    let devices = meta["devices"].as_array().unwrap();
    assert_eq!(devices.len(), EXPECTED.len());
    for (d, (name, _, kept, n_windows)) in devices.iter().zip(EXPECTED) {
        assert_eq!(d["name"], name);
        assert_eq!(d["packets"], kept, "{name}");
        assert_eq!(d["windows"], n_windows, "{name}");
        assert_eq!(d["matched_by"], "mac", "{name}");
    }
    assert_eq!(meta["stats"]["kept"], EXPECTED.iter().map(|e| e.2).sum::<usize>());
    assert_eq!(meta["stats"]["skipped_truncated"], 0);
}

/// Another home's layout: one folder per device, the device table inside the dataset folder,
/// a note beside the captures; `gateway` is a host that only ever talks to the LAN.
fn dataset(extra_rows: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, ..) in EXPECTED {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(slice_dir().join(format!("pcaps/{name}.pcap")), sub.join(format!("{name}.pcap"))).unwrap();
    }
    let mut table = std::fs::read_to_string(slice_dir().join("devices.csv")).unwrap();
    table.push_str(extra_rows);
    std::fs::write(dir.path().join("devices.csv"), table).unwrap();
    std::fs::write(dir.path().join("blink-cam-01/README.txt"), "captured 2021-03\n").unwrap();
    dir
}

fn ipet_windows(args: &[&std::ffi::OsStr]) -> (std::process::Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipet")).arg("windows").args(args).output().unwrap();
    let meta = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, meta)
}

#[test]
fn a_dataset_folder_is_walked_and_non_captures_are_skipped_with_a_note() {
    let data = dataset("");
    let out = tempfile::tempdir().unwrap();
    let table = data.path().join("devices.csv");
    let (run, meta) = ipet_windows(&[
        "--captures".as_ref(),
        data.path().as_os_str(),
        "--devices".as_ref(),
        table.as_os_str(),
        "--out".as_ref(),
        out.path().as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("devices.csv: skipped, not a capture"), "{stderr}");
    assert!(stderr.contains("README.txt: skipped, not a capture"), "{stderr}");
    assert_eq!(meta["skipped_files"].as_array().unwrap().len(), 2);
    // The same windows as the slice's flat folder of captures.
    let devices = meta["devices"].as_array().unwrap();
    for (d, (name, _, packets, windows)) in devices.iter().zip(EXPECTED) {
        assert_eq!((d["name"].as_str().unwrap(), d["packets"].as_u64().unwrap() as usize), (name, packets));
        assert_eq!(d["windows"].as_u64().unwrap() as usize, windows, "{name}");
    }
    assert_eq!(meta["dropped_devices"], serde_json::json!([]));
    // A capture named directly that is not one still ends the run, naming it.
    let (run, _) = ipet_windows(&[
        "--captures".as_ref(),
        table.as_os_str(),
        "--devices".as_ref(),
        table.as_os_str(),
        "--out".as_ref(),
        out.path().as_os_str(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("not_a_capture"));
}

#[test]
fn lan_only_devices_are_reported_and_lan_traffic_counts_when_asked() {
    let data = dataset(
        "gateway,,192.168.1.1,\"the home router: LAN only\"\nghost,02:00:00:00:00:99,,\"not in the captures\"\n",
    );
    let out = tempfile::tempdir().unwrap();
    let table = data.path().join("devices.csv");
    let base: Vec<&std::ffi::OsStr> = vec![
        "--captures".as_ref(),
        data.path().as_os_str(),
        "--devices".as_ref(),
        table.as_os_str(),
        "--out".as_ref(),
        out.path().as_os_str(),
    ];
    let (run, meta) = ipet_windows(&base);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let dropped = meta["dropped_devices"].as_array().unwrap();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!((dropped[0]["name"].as_str(), dropped[0]["reason"].as_str()), (Some("gateway"), Some("lan_only")));
    assert!(dropped[0]["lan_packets"].as_u64().unwrap() > 0);
    assert_eq!((dropped[1]["name"].as_str(), dropped[1]["reason"].as_str()), (Some("ghost"), Some("not_seen")));
    assert!(stderr.contains("warning: device gateway (id 7) kept no packet"), "{stderr}");
    assert_eq!(meta["lan_traffic"], false);

    // Counting LAN traffic: the gateway keeps its packets, the others gain their LAN packets.
    let mut lan = base.clone();
    lan.push("--lan-traffic".as_ref());
    let (run, with_lan) = ipet_windows(&lan);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(with_lan["lan_traffic"], true);
    let gateway = &with_lan["devices"][7];
    assert_eq!(gateway["packets"].as_u64(), dropped[0]["lan_packets"].as_u64());
    assert_eq!(with_lan["dropped_devices"].as_array().unwrap().len(), 1, "only the ghost");
    for k in 0..7 {
        assert!(with_lan["devices"][k]["packets"].as_u64() >= meta["devices"][k]["packets"].as_u64());
    }
}

/// A device heard only announcing itself (mDNS to 224.0.0.251, a broadcast): dropped with that
/// reason and its frame count, by `ipet windows` and `ipet features` alike, in their warnings
/// and in `dropped_devices` of `windows.json` (issue 18, 5).
#[test]
fn multicast_only_devices_are_dropped_with_the_reason() {
    let data = dataset("speaker,02:00:00:00:00:42,192.168.1.200,\"announces itself only\"\n");
    let mut csv = String::from(
        "frame.number\tframe.time_epoch\tip.src\tip.dst\tip.proto\ttcp.len\tudp.length\teth.src\teth.dst\n",
    );
    for i in 0..5 {
        csv.push_str(&format!(
            "{}\t{}.5\t192.168.1.200\t224.0.0.251\t17\t\t120\t02:00:00:00:00:42\t01:00:5e:00:00:fb\n",
            2 * i + 1,
            1_615_212_345 + i
        ));
        csv.push_str(&format!(
            "{}\t{}.7\t192.168.1.200\t255.255.255.255\t17\t\t300\t02:00:00:00:00:42\tff:ff:ff:ff:ff:ff\n",
            2 * i + 2,
            1_615_212_345 + i
        ));
    }
    std::fs::create_dir_all(data.path().join("speaker")).unwrap();
    std::fs::write(data.path().join("speaker/speaker.csv"), csv).unwrap();
    let table = data.path().join("devices.csv");
    for command in ["windows", "features"] {
        let out = tempfile::tempdir().unwrap();
        let run = Command::new(env!("CARGO_BIN_EXE_ipet"))
            .args([command, "--captures"])
            .arg(data.path())
            .arg("--devices")
            .arg(&table)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains("warning: device speaker (id 7) kept no packet and is dropped: only multicast/broadcast frames of it were seen (10 frames"),
            "{command}: {stderr}"
        );
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("windows.json")).unwrap()).unwrap();
        let dropped = meta["dropped_devices"].as_array().unwrap();
        assert_eq!(dropped.len(), 1, "{command}: {dropped:?}");
        assert_eq!(dropped[0]["name"], "speaker");
        assert_eq!(dropped[0]["reason"], "multicast_only");
        assert_eq!(dropped[0]["multicast_packets"], 10);
        assert!(dropped[0]["why"].as_str().unwrap().starts_with("only multicast/broadcast frames"), "{dropped:?}");
    }
}
