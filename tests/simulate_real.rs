//! The gateway simulator end to end on the in-repo real capture slice
//! (`data/tj-oconnor-2021-slice`): a fixed schedule in both modes, each baseline, and the
//! `ipet simulate` command.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use ipet::traffic::{
    Baseline, BaselineKind, Defense, DeviceTable, Direction, FixedRows, Mode, OutputPacket, Packet, SimSettings,
    Summary, WindowSettings, Windows, read_captures, simulate, simulate::TrafficSummary,
};
use rand::{Rng, SeedableRng};

fn slice_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tj-oconnor-2021-slice")
}

fn device_packets(name: &str) -> Vec<Packet> {
    let table = DeviceTable::from_csv_path(&slice_dir().join("devices.csv")).unwrap();
    let id = table.by_name(name).unwrap().id;
    let traffic = read_captures(&[slice_dir().join(format!("pcaps/{name}.pcap"))], &table).unwrap();
    traffic.packets[id].clone()
}

/// Generator-like rows: 0-4 packets and 0-100 bytes per direction.
fn rows(n: usize, seed: u64) -> Vec<[i32; 4]> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| [rng.random_range(0..5), rng.random_range(0..101), rng.random_range(0..5), rng.random_range(0..101)])
        .collect()
}

fn run(packets: &[Packet], defense: Defense<'_>) -> (Vec<OutputPacket>, Summary) {
    let mut out = Vec::new();
    let s = simulate(packets.iter().copied(), defense, &SimSettings::default(), |p| {
        out.push(*p);
        Ok(())
    })
    .unwrap();
    (out, s)
}

/// The summary's figures recomputed from the output rows.
fn check_summary_against_rows(out: &[OutputPacket], s: &Summary) {
    let tally = |d: Option<Direction>| {
        let sel = |p: &&OutputPacket| d.is_none_or(|d| p.direction == d);
        let real: Vec<&OutputPacket> = out.iter().filter(sel).filter(|p| !p.dummy).collect();
        let dummy: Vec<&OutputPacket> = out.iter().filter(sel).filter(|p| p.dummy).collect();
        let rb: f64 = real.iter().map(|p| p.size).sum();
        let db: f64 = dummy.iter().map(|p| p.size).sum();
        (real.len() as u64, rb, dummy.len() as u64, db)
    };
    for (d, t) in [(Some(Direction::In), &s.incoming), (Some(Direction::Out), &s.outgoing), (None, &s.total)] {
        let (rp, rb, dp, db) = tally(d);
        let want = TrafficSummary {
            real_packets: rp,
            real_bytes: rb.round() as u64,
            dummy_packets: dp,
            dummy_bytes: db.round() as u64,
            bandwidth_overhead: Some(db / rb),
            packet_overhead: Some(dp as f64 / rp as f64),
        };
        assert_eq!(t.real_packets, want.real_packets, "{d:?}");
        assert_eq!(t.real_bytes, want.real_bytes, "{d:?}");
        assert_eq!(t.dummy_packets, want.dummy_packets, "{d:?}");
        assert_eq!(t.dummy_bytes, want.dummy_bytes, "{d:?}");
        let close = |a: Option<f64>, b: Option<f64>| (a.unwrap() - b.unwrap()).abs() < 1e-9;
        assert!(close(t.bandwidth_overhead, want.bandwidth_overhead), "{d:?}");
        assert!(close(t.packet_overhead, want.packet_overhead), "{d:?}");
    }
    assert_eq!(s.output_packets, out.len() as u64);
    assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns), "time-ordered");
    let duration = (out.last().unwrap().time_ns - out[0].time_ns) as f64 / 1e9;
    assert!((s.duration_s - duration).abs() < 1e-6);
}

fn real_of(out: &[OutputPacket]) -> Vec<(i64, Direction, u32)> {
    out.iter().filter(|p| !p.dummy).map(|p| (p.time_ns - p.delay_ns, p.direction, p.size as u32)).collect()
}

fn input_of(packets: &[Packet]) -> Vec<(i64, Direction, u32)> {
    packets.iter().map(|p| (p.time_ns, p.direction, p.size)).collect()
}

#[test]
fn slotted_mode_on_real_traffic_keeps_every_packet_and_lays_one_row_per_slot() {
    for device in ["lockly-hub-01", "blink-cam-01", "schlage-lock-01"] {
        let packets = device_packets(device);
        let schedule = rows(200_000, 1);
        let mut fixed = FixedRows::new(schedule.clone()).unwrap();
        let (out, s) = run(&packets, Defense::Ipet { mode: Mode::Slotted, rows: &mut fixed });
        assert_eq!(real_of(&out), input_of(&packets), "{device}: real packets out == in");
        assert!(out.iter().filter(|p| !p.dummy).all(|p| p.delay_ns == 0));
        assert_eq!(s.real_packets_dropped, 0);
        assert_eq!(s.slots_without_cover, 0);
        assert_eq!(s.rows_used as usize, schedule.len() - fixed.remaining());
        check_summary_against_rows(&out, &s);
        // Every row's bytes land exactly.
        let used = &schedule[..s.rows_used as usize];
        let sum = |c: usize, n: usize| -> u64 { used.iter().filter(|r| r[n] > 0).map(|r| r[c] as u64).sum() };
        assert_eq!(s.incoming.dummy_bytes, sum(1, 0), "{device}");
        assert_eq!(s.outgoing.dummy_bytes, sum(3, 2), "{device}");

        // The defended trace through the same feature code: the first window starts at the
        // first packet, so its slots are the first period's slots, and each holds the real
        // packets plus exactly row k.
        let settings = WindowSettings::reference();
        let defended: Vec<Packet> = out.iter().map(|p| p.to_packet(ipet::traffic::Transport::Tcp)).collect();
        let (mut clean, mut cover) = (Windows::new(&settings), Windows::new(&settings));
        clean.push_device(&packets, 0, &settings);
        cover.push_device(&defended, 0, &settings);
        for (k, r) in schedule.iter().take(settings.slots()).enumerate() {
            let (c, d) = (clean.slot(0, k), cover.slot(0, k));
            let want = [
                c[0] + r[0] as f32,
                c[1] + if r[0] > 0 { r[1] as f32 } else { 0.0 },
                c[2] + r[2] as f32,
                c[3] + if r[2] > 0 { r[3] as f32 } else { 0.0 },
            ];
            assert_eq!(d, want, "{device}: slot {k}");
        }
    }
}

#[test]
fn reference_mode_on_real_traffic_drops_the_last_packet_and_shares_rows() {
    let packets = device_packets("lockly-hub-01");
    let mut fixed = FixedRows::new(rows(200_000, 2)).unwrap();
    let (out, s) = run(&packets, Defense::Ipet { mode: Mode::Reference, rows: &mut fixed });
    assert_eq!(real_of(&out), input_of(&packets[..packets.len() - 1]));
    assert_eq!(s.real_packets_dropped, 1);
    check_summary_against_rows(&out, &s);
    // Two rows per omega of active time (one per incoming, one per outgoing tick).
    let ticks_per_s = 2.0 / 0.1;
    assert!((s.rows_used as f64 - s.active_time_s * ticks_per_s).abs() < 2.0 * 1000.0);
    assert!(s.rows_used as f64 > 1.9 * s.active_time_s * 10.0);
    // Every tick sends at least one packet per direction.
    assert!(s.incoming.dummy_packets >= s.rows_used / 2);
}

#[test]
fn every_baseline_on_real_traffic_keeps_every_packet_and_reports_its_latency() {
    let packets = device_packets("ultraloq-hub-01");
    for kind in [BaselineKind::Constant, BaselineKind::Random, BaselineKind::RandomPlus] {
        let (out, s) = run(&packets, Defense::Baseline { baseline: Baseline::new(kind), seed: Some(9) });
        let mut real = real_of(&out);
        real.sort_by_key(|r| (r.0, r.1 == Direction::Out, r.2));
        let mut want = input_of(&packets);
        want.sort_by_key(|r| (r.0, r.1 == Direction::Out, r.2));
        assert_eq!(real, want, "{kind}: real packets out == in");
        // Per direction, real packets keep their order.
        for d in [Direction::In, Direction::Out] {
            let a: Vec<u32> = out.iter().filter(|p| !p.dummy && p.direction == d).map(|p| p.size as u32).collect();
            let b: Vec<u32> = packets.iter().filter(|p| p.direction == d).map(|p| p.size).collect();
            assert_eq!(a, b, "{kind} {d:?}");
        }
        check_summary_against_rows(&out, &s);
        let max_delay = out.iter().map(|p| p.delay_ns).max().unwrap();
        assert!((s.latency.max_s - max_delay as f64 / 1e9).abs() < 1e-9, "{kind}");
        assert!(s.latency.mean_s > 0.0 && s.latency.p50_s <= s.latency.p99_s, "{kind}");
        assert!(s.latency.p99_s <= s.latency.max_s, "{kind}");
        assert!(s.total.bandwidth_overhead.unwrap() > 1.0, "{kind}");
        // Cover only during bursts: never more than the burst budget (plus one byte of rounding
        // per tick) per direction.
        let b = Baseline::new(kind);
        if kind == BaselineKind::Constant {
            let ticks = s.active_time_s / 0.1;
            let budget = ticks * b.rate_mean * 0.1;
            let sent = (s.outgoing.dummy_bytes + s.outgoing.real_bytes) as f64;
            assert!(sent <= budget + 1500.0, "{sent} > {budget}");
            assert!(sent >= budget - ticks - 1500.0, "{sent} < {budget}");
        }
        // Deterministic under the seed.
        let (again, s2) = run(&packets, Defense::Baseline { baseline: Baseline::new(kind), seed: Some(9) });
        assert_eq!((again.len(), s2), (out.len(), s));
    }
}

#[test]
fn the_simulate_command_writes_the_trace_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = dir.path().join("rows.npy");
    let r = rows(60_000, 3);
    let arr = ndarray::Array2::from_shape_vec((r.len(), 4), r.concat()).unwrap();
    ndarray_npy::write_npy(&schedule, &arr).unwrap();
    let trace = slice_dir().join("pcaps/sifely-hub-01.pcap");
    let devices = slice_dir().join("devices.csv");
    let mut runs = Vec::new();
    for (extra, out_name) in [
        (vec!["--schedule", schedule.to_str().unwrap()], "slotted.npy"),
        (vec!["--schedule", schedule.to_str().unwrap(), "--mode", "reference"], "reference.csv"),
        (vec!["--defense", "random+", "--seed", "4"], "random_plus.npy"),
    ] {
        let out = dir.path().join(out_name);
        let result = Command::new(env!("CARGO_BIN_EXE_ipet"))
            .args(["simulate", "--trace", trace.to_str().unwrap()])
            .args(["--devices", devices.to_str().unwrap(), "--device", "sifely-hub-01"])
            .args(&extra)
            .args(["-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let n = summary["output_packets"].as_u64().unwrap() as usize;
        if out_name.ends_with(".npy") {
            let back: ndarray::Array2<f64> = ndarray_npy::read_npy(&out).unwrap();
            assert_eq!(back.shape(), &[n, 4]);
            let real = back.rows().into_iter().filter(|r| r[1] == 0.0).count();
            assert_eq!(real as u64, summary["total"]["real_packets"].as_u64().unwrap());
            assert_eq!(back[[0, 3]], 0.0);
            assert!(back.column(3).windows(2).into_iter().all(|w| w[0] <= w[1]));
        } else {
            let text = std::fs::read_to_string(&out).unwrap();
            assert_eq!(text.lines().next(), Some("direction,is_dummy,size_bytes,time_s"));
            assert_eq!(text.lines().count(), n + 1);
        }
        runs.push(summary);
    }
    assert_eq!(runs[0]["defense"], "ipet-slotted");
    assert_eq!(runs[1]["defense"], "ipet-reference");
    assert_eq!(runs[1]["real_packets_dropped"], 1);
    assert_eq!(runs[2]["defense"], "random+");
    assert!(runs[2]["latency"]["max_s"].as_f64().unwrap() > 0.0);

    // No cover source: refused by the argument parser.
    let result = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["simulate", "--trace", trace.to_str().unwrap()])
        .args(["--devices", devices.to_str().unwrap(), "--device", "sifely-hub-01"])
        .output()
        .unwrap();
    assert!(!result.status.success());
    // An unknown device is named.
    let result = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["simulate", "--trace", trace.to_str().unwrap()])
        .args(["--devices", devices.to_str().unwrap(), "--device", "toaster"])
        .args(["--defense", "constant"])
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown_device"));
}

#[test]
fn generator_rows_draw_fresh_windows_on_demand_reproducibly_under_a_seed() {
    use ipet::{
        config::ModelArgs,
        models::{Engine, GenerationChoice, GeneratorRows, ModelSet},
        traffic::RowSource,
    };
    let args = ModelArgs {
        models: std::env::var_os("IPET_TEST_MODELS")
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tj-oconnor-2021"), PathBuf::from),
        ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        inference_threads: 1,
        max_batch_rows: 8192,
    };
    let set = ModelSet::load(&args.models).unwrap();
    let device = set.device_index("lockly-hub-01").unwrap();
    let (slots, caps) = (set.slots(), set.manifest.caps.clone());
    let engine = std::sync::Arc::new(Engine::start(set, &args.engine_config()).unwrap());
    let packets = device_packets("lockly-hub-01");
    let mut summaries = Vec::new();
    for seed in [5, 5, 6] {
        let mut rows = GeneratorRows::new(engine.clone(), device, GenerationChoice::Mix, 16, Some(seed)).unwrap();
        let (out, s) = run(&packets, Defense::Ipet { mode: Mode::Slotted, rows: &mut rows });
        assert_eq!(real_of(&out), input_of(&packets));
        assert_eq!(s.slots_without_cover, 0);
        check_summary_against_rows(&out, &s);
        // Drawn 16 windows at a time, only as needed.
        let windows = s.rows_used.div_ceil(slots as u64);
        assert_eq!(rows.windows_drawn(), windows.div_ceil(16) * 16);
        // Within the caps.
        let mut fresh = GeneratorRows::new(engine.clone(), device, GenerationChoice::Index(0), 4, Some(seed)).unwrap();
        for _ in 0..slots * 8 {
            let r = fresh.next_row().unwrap().unwrap();
            assert!(r.iter().zip(&caps).all(|(&v, &c)| v >= 0 && f64::from(v) <= c), "{r:?}");
        }
        summaries.push(s);
    }
    assert_eq!(summaries[0], summaries[1], "the same seed, the same cover");
    assert_ne!(summaries[0].total.dummy_bytes, summaries[2].total.dummy_bytes);
    assert!(
        GeneratorRows::new(engine, device, GenerationChoice::Index(999), 16, None).is_err(),
        "an unknown generation is refused"
    );
}
