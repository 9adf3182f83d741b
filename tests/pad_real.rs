//! Pad-to-target on the in-repo real capture slice (`data/tj-oconnor-2021-slice`): the
//! supersequence over {cameras} {hubs and locks}, and `ipet simulate` in home mode.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use ipet::traffic::{
    DeviceTable, OutputPacket, SilentDevices, form_sets, parse_sets, read_captures,
    set_defense::{SetDefenseKind, SetDefenseSpec},
};

const SETS: &str = "blink-cam-01,blink-cam-02,blink-cam-03;lockly-hub-01,schlage-lock-01,sifely-hub-01,ultraloq-hub-01";

fn slice_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tj-oconnor-2021-slice")
}

/// Per home slot: [in packets, in bytes, out packets, out bytes].
fn per_slot(out: &[OutputPacket], origin: i64) -> BTreeMap<i64, [u64; 4]> {
    let mut m: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
    for p in out {
        let e = m.entry((p.time_ns - origin).div_euclid(100_000_000)).or_default();
        let c = 2 * p.direction.index();
        e[c] += 1;
        e[c + 1] += p.size as u64;
    }
    m
}

#[test]
fn the_supersequence_makes_set_members_identical_on_the_real_slice() {
    let table = DeviceTable::from_csv_path(&slice_dir().join("devices.csv")).unwrap();
    let traffic = read_captures(&[slice_dir().join("pcaps")], &table).unwrap();
    let assigned = parse_sets(SETS, &table).unwrap();
    let partition = form_sets(&table, &assigned, &traffic.packets, 3, 100_000_000, SilentDevices::Excluded).unwrap();
    assert_eq!(partition.sets.len(), 2);
    let names: Vec<String> = table.devices().iter().map(|d| d.name.clone()).collect();
    let mut out: Vec<Vec<OutputPacket>> = vec![Vec::new(); table.len()];
    let spec: SetDefenseSpec =
        serde_json::from_value(serde_json::json!({"defense": "supersequence", "seed": 3})).unwrap();
    assert_eq!(spec.defense, SetDefenseKind::Supersequence);
    let summary = spec
        .defend(&names, &traffic.packets, &partition, None, |d, p| {
            out[d].push(*p);
            Ok(())
        })
        .unwrap();
    let origin = traffic.packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().unwrap();
    assert_eq!(summary.start_time_s, Some(origin as f64 / 1e9));
    for set in &partition.sets {
        let first = per_slot(&out[set.members[0]], origin);
        assert!(!first.is_empty());
        for &m in &set.members[1..] {
            assert!(per_slot(&out[m], origin) == first, "{} differs from {} per slot", names[m], names[set.members[0]]);
        }
    }
    let t = &summary.total.total;
    assert_eq!(t.real_packets, traffic.packets.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!((t.leaked_packets, t.delayed_packets, t.missed_target_bytes), (0, 0, 0));
    for s in summary.sets.iter().map(|s| &s.summary.total).chain([t]) {
        let (b, p) = (s.bandwidth_overhead.unwrap(), s.packet_overhead.unwrap());
        assert!(b.is_finite() && b > 0.0 && p.is_finite() && p > 0.0, "{b} {p}");
    }
    // The summary agrees with the output rows.
    let dummies: u64 = out.iter().flatten().filter(|p| p.dummy).map(|p| p.size as u64).sum();
    assert_eq!(t.dummy_bytes, dummies);
    assert_eq!(summary.members.len(), 7);
    assert_eq!(summary.members[3].set, "set-2");
}

#[test]
fn ipet_simulate_runs_a_home_and_refuses_a_bad_k() {
    let bin = env!("CARGO_BIN_EXE_ipet");
    let dir = tempfile::tempdir().unwrap();
    let run_on = |trace: &Path, extra: &[&str]| {
        Command::new(bin)
            .args(["simulate", "--trace"])
            .arg(trace)
            .arg("--devices")
            .arg(slice_dir().join("devices.csv"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let run = |extra: &[&str]| run_on(&slice_dir().join("pcaps"), extra);
    let (out_dir, win_dir) = (dir.path().join("out"), dir.path().join("windows"));
    let o = run(&[
        "--defense",
        "regulator",
        "--k",
        "3",
        "--latency-budget",
        "0.5",
        "--seed",
        "4",
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--windows",
        win_dir.to_str().unwrap(),
        "--spec-out",
        dir.path().join("spec.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The specification it wrote (sets and size profiles included: a gateway's configuration)
    // gives the same bits when read back.
    let again_dir = dir.path().join("again");
    let again =
        run(&["--spec", dir.path().join("spec.json").to_str().unwrap(), "--out-dir", again_dir.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(again.stdout, o.stdout);
    for name in ["blink-cam-01", "sifely-hub-01"] {
        let f = format!("{name}.npy");
        assert_eq!(std::fs::read(again_dir.join(&f)).unwrap(), std::fs::read(out_dir.join(&f)).unwrap(), "{f}");
    }
    // Captures in which one member of the specification is silent (its file left out): a
    // specification's sets are the gateway's configuration, so the member is still covered, as
    // the gateway covers it; sets given any other way leave it out.
    let quiet = dir.path().join("quiet");
    std::fs::create_dir(&quiet).unwrap();
    for e in std::fs::read_dir(slice_dir().join("pcaps")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "sifely-hub-01.pcap" {
            std::fs::copy(&p, quiet.join(p.file_name().unwrap())).unwrap();
        }
    }
    let run_quiet = |extra: &[&str]| run_on(&quiet, extra);
    let quiet_dir = dir.path().join("quiet-out");
    let q = run_quiet(&[
        "--spec",
        dir.path().join("spec.json").to_str().unwrap(),
        "--out-dir",
        quiet_dir.to_str().unwrap(),
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let qs: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(qs["excluded"], serde_json::json!([]), "{qs}");
    let sifely = qs["members"].as_array().unwrap().iter().find(|m| m["device"] == "sifely-hub-01").expect("a member");
    assert_eq!(sifely["total"]["real_packets"], 0);
    assert!(sifely["total"]["dummy_packets"].as_u64().unwrap() > 0, "{sifely}");
    let rows: ndarray::Array2<f64> = ndarray_npy::read_npy(quiet_dir.join("sifely-hub-01.npy")).unwrap();
    assert!(rows.nrows() > 0 && rows.column(1).iter().all(|&d| d == 1.0));
    let q = run_quiet(&["--defense", "regulator", "--sets", SETS]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let qs: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(qs["excluded"], serde_json::json!(["sifely-hub-01"]), "{qs}");

    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["defense"], "regulator");
    assert_eq!(summary["latency_budget_s"], 0.5);
    // Clustering with k = 3 finds the cameras and the rest.
    let sets: Vec<Vec<String>> = summary["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().any(|s| s.iter().all(|m| m.starts_with("blink-cam")) && s.len() == 3), "{sets:?}");
    for name in ["blink-cam-01", "ultraloq-hub-01"] {
        let rows: ndarray::Array2<f64> = ndarray_npy::read_npy(out_dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!(rows.ncols(), 4);
        assert!(rows.column(1).iter().any(|&d| d == 1.0) && rows.column(1).iter().any(|&d| d == 0.0));
    }
    let labels: ndarray::Array1<i64> = ndarray_npy::read_npy(win_dir.join("labels.npy")).unwrap();
    let mut seen: Vec<i64> = labels.to_vec();
    seen.dedup();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..7).collect::<Vec<i64>>());
    // The same seed gives the same summary.
    let again = run(&["--defense", "regulator", "--k", "3", "--latency-budget", "0.5", "--seed", "4"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(), summary);

    // Target rows from a fixed schedule: 10 packets of 1000 bytes per slot and direction, in
    // windows of 40 slots started by demand, no fake windows: every member gets the same rows.
    let rows = ndarray::Array2::<i32>::from_shape_fn((400_000, 4), |(_, c)| if c % 2 == 0 { 10 } else { 10_000 });
    let schedule = dir.path().join("rows.npy");
    ndarray_npy::write_npy(&schedule, &rows).unwrap();
    let o = run(&[
        "--defense",
        "targets",
        "--schedule",
        schedule.to_str().unwrap(),
        "--sets",
        SETS,
        "--fake-window-rate",
        "0",
        "--latency-budget",
        "1",
        "--seed",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["defense"], "targets");
    for set in summary["sets"].as_array().unwrap() {
        let r = &set["target_rows"];
        assert_eq!(r["fake_windows"], 0);
        // Whole windows of 40 rows, the last one cut where the home's trace ends.
        let (used, windows) = (r["rows_used"].as_u64().unwrap(), r["windows"].as_u64().unwrap());
        assert!(used <= 40 * windows && used > 40 * (windows - 1), "{used} rows in {windows} windows");
        assert_eq!(set["target_slots"], r["rows_used"]);
        assert!(set["total"]["real_packets"].as_u64().unwrap() > 0);
    }
    // Rows of 10 packets and 10 kB ask more bytes of the dummies left after a burst of small
    // real packets than they can carry: the summary reports the shortfall.
    assert!(summary["total"]["total"]["missed_target_bytes"].as_u64().unwrap() > 0);
    // No rows: the same rule and code as the service's (missing_targets).
    let bad = run(&["--defense", "targets", "--sets", SETS]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing_targets"));

    let bad = run(&["--defense", "supersequence", "--k", "8"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_set_size"));
    let bad = run(&["--defense", "supersequence", "--sets", "blink-cam-01,nope"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_sets"));
    let bad = run(&["--defense", "supersequence", "--device", "blink-cam-01"]);
    assert!(!bad.status.success());
    // The single-device mode still wants its device.
    let bad = run(&["--defense", "constant"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_device"));
}
