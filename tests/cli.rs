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
