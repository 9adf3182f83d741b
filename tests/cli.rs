//! CLI parity with the service.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, repo};

#[tokio::test]
async fn predict_writes_the_array_the_endpoint_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("rows.npy");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["predict", "3", "lockly-hub-01", "mix", "--seed", "99", "-o"])
        .arg(&out)
        .current_dir(repo())
        .output()
        .expect("ipet predict");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let app = TestApp::new(Db::Sqlite).await;
    let served = app.get("/perturbations/lockly-hub-01/mix?n=3&seed=99&format=npy").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(std::fs::read(&out).expect("npy"), served.body, "byte for byte");
    let arr: ndarray::Array2<i32> = ndarray_npy::read_npy(&out).expect("npy");
    assert_eq!(arr.shape(), &[120, 4]);
}

#[test]
fn predict_names_bad_arguments() {
    for (args, needle) in [
        (vec!["predict", "3", "toaster", "0"], "unknown_device"),
        (vec!["predict", "3", "lockly-hub-01", "9"], "unknown_generation"),
        (vec!["predict", "0", "lockly-hub-01", "0"], "invalid_n"),
    ] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
            .args(&args)
            .current_dir(repo())
            .output()
            .expect("ipet");
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// One code per failure: `ipet simulate` with two covers says `ambiguous_cover`, as `POST
/// /simulations` does, and a missing cover has one code, `missing_cover` (issue 19, item 5).
#[test]
fn simulate_names_cover_failures_as_the_service_does() {
    let slice = repo().join("data/tj-oconnor-2021-slice");
    let trace = slice.join("pcaps/lockly-hub-01.pcap");
    let base = ["simulate", "--trace", trace.to_str().expect("path"), "--device", "lockly-hub-01"];
    let table = slice.join("devices.csv");
    // (Without any cover the argument parser refuses the command line before it runs.)
    for (extra, code) in [
        (vec!["--generation", "0", "--defense", "constant"], "error [ambiguous_cover]"),
        (vec!["--generation", "0", "--schedule", "rows.npy"], "error [ambiguous_cover]"),
    ] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
            .args(base)
            .args(["--devices", table.to_str().expect("path")])
            .args(&extra)
            .current_dir(repo())
            .output()
            .expect("ipet");
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(code), "{extra:?}: {err}");
    }
    assert!("no_cover".parse::<ipet::traffic::ErrorCode>().is_err(), "one code for a missing cover");
}

#[test]
fn packets_writes_every_kept_packet_with_its_transport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args([
            "packets",
            "--captures",
            "data/tj-oconnor-2021-slice/pcaps",
            "--devices",
            "data/tj-oconnor-2021-slice/devices.csv",
            "--out",
        ])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .expect("ipet packets");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let device: ndarray::Array1<i64> = ndarray_npy::read_npy(dir.path().join("device.npy")).expect("device");
    let time: ndarray::Array1<f64> = ndarray_npy::read_npy(dir.path().join("time.npy")).expect("time");
    let udp: ndarray::Array1<u8> = ndarray_npy::read_npy(dir.path().join("udp.npy")).expect("udp");
    let direction: ndarray::Array1<i8> = ndarray_npy::read_npy(dir.path().join("direction.npy")).expect("direction");
    // The slice README's kept-packet counts, per device.
    let expected = [1540, 1377, 1976, 1459, 153, 581, 1817];
    for (d, &n) in expected.iter().enumerate() {
        assert_eq!(device.iter().filter(|&&x| x == d as i64).count(), n, "device {d}");
    }
    for i in 1..device.len() {
        assert!(device[i - 1] < device[i] || (device[i - 1] == device[i] && time[i - 1] <= time[i]), "sorted at {i}");
    }
    assert!(udp.iter().all(|&u| u <= 1) && udp.iter().any(|&u| u == 1) && udp.iter().any(|&u| u == 0));
    assert!(direction.iter().all(|&d| d == 1 || d == -1));
}
