//! Set defenses over a whole home through `POST /simulations` (a `defense` and every device's
//! capture), on SQLite and PostgreSQL: the job's summary and each member's defended trace equal
//! what `ipet simulate --defense ...` gives for the same captures and seed; bad requests get
//! their 4xx and store no job.

mod common;

use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, OnceLock},
};

use axum::http::StatusCode;
use common::{Db, TestApp, repo};
use ipet::{
    models::{Engine, ModelSet},
    store::JobState,
};

const SETS_MODEL: &str = "models/tj-oconnor-2021-sets";
const DEVICES: [&str; 7] = [
    "blink-cam-01",
    "blink-cam-02",
    "blink-cam-03",
    "lockly-hub-01",
    "schlage-lock-01",
    "sifely-hub-01",
    "ultraloq-hub-01",
];

fn slice() -> PathBuf {
    repo().join("data/tj-oconnor-2021-slice")
}

fn sets_engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let set = ModelSet::load(&repo().join(SETS_MODEL)).expect("the shipped set-targets model set loads");
            Arc::new(Engine::start(set, &common::model_args().engine_config()).expect("the engine starts"))
        })
        .clone()
}

async fn app(db: Db) -> TestApp {
    TestApp::with_model_sets(db, vec![common::engine(), sets_engine()]).await
}

/// The home's captures and device table as form parts, then `fields`.
fn form(with_table: bool, fields: &[(&'static str, String)]) -> Vec<(&'static str, Option<String>, Vec<u8>)> {
    let mut parts: Vec<(&'static str, Option<String>, Vec<u8>)> = DEVICES
        .iter()
        .map(|d| {
            let bytes = std::fs::read(slice().join(format!("pcaps/{d}.pcap"))).expect("slice capture");
            ("trace", Some(format!("{d}.pcap")), bytes)
        })
        .collect();
    if with_table {
        parts.push(("devices", Some("devices.csv".into()), std::fs::read(slice().join("devices.csv")).expect("table")));
    }
    parts.extend(fields.iter().map(|(k, v)| (*k, None, v.as_bytes().to_vec())));
    parts
}

async fn post(app: &TestApp, uri: &str, parts: &[(&'static str, Option<String>, Vec<u8>)]) -> common::Reply {
    let borrowed: Vec<(&str, Option<&str>, &[u8])> =
        parts.iter().map(|(k, f, b)| (*k, f.as_deref(), b.as_slice())).collect();
    app.post_form(uri, &borrowed).await
}

/// `ipet simulate` on the slice: its summary and each member's defended trace.
fn cli(args: &[&str]) -> (serde_json::Value, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipet"));
    cmd.args(["simulate", "--trace"])
        .arg(slice().join("pcaps"))
        .arg("--devices")
        .arg(slice().join("devices.csv"))
        .args(args)
        .arg("--out-dir")
        .arg(out.path())
        .env("RUST_LOG", "warn");
    let o = cmd.output().expect("ipet simulate runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (serde_json::from_slice(&o.stdout).expect("summary"), out)
}

fn bits(a: &ndarray::Array2<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// Submits, waits, and checks the summary and every member's trace against the CLI's.
async fn same_as_cli(app: &TestApp, uri: &str, parts: &[(&'static str, Option<String>, Vec<u8>)], args: &[&str]) {
    let r = post(app, uri, parts).await;
    accepted_same_as_cli(app, r, args, false).await;
}

/// Waits for the accepted job and checks it against the CLI's run; `relative`: the job's packet
/// times count from the home's first packet (a JSON trace), so only its start time differs.
async fn accepted_same_as_cli(app: &TestApp, r: common::Reply, args: &[&str], relative: bool) {
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    let v = app.wait_simulation(&id, 240).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    let (mut summary, dir) = cli(args);
    if relative {
        summary["start_time_s"] = serde_json::json!(0.0);
    }
    assert_eq!(v["summary"], summary, "the job's summary is the CLI's, bit for bit");
    let members: Vec<String> = summary["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["device"].as_str().expect("device").to_string())
        .collect();
    assert!(members.len() >= 6, "{members:?}");
    let mut rows = 0;
    for m in &members {
        let served = app.get(&format!("/simulations/{id}/output?format=npy&device={m}")).await;
        assert_eq!(served.status, StatusCode::OK, "{}", String::from_utf8_lossy(&served.body));
        let served: ndarray::Array2<f64> = ndarray_npy::ReadNpyExt::read_npy(served.body.as_slice()).expect("npy");
        let written: ndarray::Array2<f64> = ndarray_npy::read_npy(dir.path().join(format!("{m}.npy"))).expect("npy");
        assert_eq!(served.shape(), written.shape(), "{m}");
        assert!(bits(&served) == bits(&written), "{m}: the served trace is the CLI's --out-dir file");
        rows += served.nrows() as u64;
    }
    assert_eq!(v["output_rows"].as_u64(), Some(rows));
    let csv = app.get(&format!("/simulations/{id}/output?format=csv&device={}", members[0])).await;
    assert!(String::from_utf8_lossy(&csv.body).starts_with("direction,is_dummy,size_bytes,time_s\n"));
    app.get(&format!("/simulations/{id}/output")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "missing_device",
        "?device=",
    );
    app.get(&format!("/simulations/{id}/output?device=nope")).await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_device",
        "not a member",
    );
}

async fn supersequence_with_k_and_with_sets(app: &TestApp) {
    let fields = [("defense", "supersequence".to_string()), ("k", "3".into()), ("seed", "5".into())];
    same_as_cli(app, "/simulations", &form(true, &fields), &["--defense", "supersequence", "--k", "3", "--seed", "5"])
        .await;
    let sets = "blink-cam-01,blink-cam-02,blink-cam-03,lockly-hub-01;schlage-lock-01,sifely-hub-01,ultraloq-hub-01";
    let fields = [
        ("defense", "supersequence".to_string()),
        ("sets", sets.into()),
        ("latency_budget", "0.5".into()),
        ("seed", "9".into()),
    ];
    // The model set's device table (the same addresses as the slice's) when none is uploaded.
    same_as_cli(
        app,
        "/simulations",
        &form(false, &fields),
        &["--defense", "supersequence", "--sets", sets, "--latency-budget", "0.5", "--seed", "9"],
    )
    .await;
}

/// The slice's packets as JSON, times relative to the home's first packet.
fn slice_as_json() -> Vec<serde_json::Value> {
    use ipet::traffic::{DeviceTable, Direction, Transport, read_captures};
    let table = DeviceTable::from_csv_path(&slice().join("devices.csv")).expect("table");
    let traffic = read_captures(&[slice().join("pcaps")], &table).expect("captures");
    let origin = traffic.packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().expect("packets");
    table
        .devices()
        .iter()
        .map(|d| {
            let packets: Vec<serde_json::Value> = traffic.packets[d.id]
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "time": (p.time_ns - origin) as f64 / 1e9,
                        "size": p.size,
                        "direction": if p.direction == Direction::Out { "out" } else { "in" },
                        "transport": if p.transport == Transport::Udp { "udp" } else { "tcp" },
                    })
                })
                .collect();
            serde_json::json!({"name": d.name, "packets": packets})
        })
        .collect()
}

async fn json_packets_of_every_device(app: &TestApp) {
    let body = serde_json::json!({
        "defense": "regulator", "devices": slice_as_json(), "k": 3, "latency_budget": 0.5, "seed": 4,
    });
    let r = app.post_json("/simulations", &body).await;
    accepted_same_as_cli(
        app,
        r,
        &["--defense", "regulator", "--k", "3", "--latency-budget", "0.5", "--seed", "4"],
        true,
    )
    .await;
    // The whole specification instead of the knobs: an access point with held release (lag from
    // the default preset), the CLI's bits with the same flags.
    let spec = serde_json::json!({
        "defense": "supersequence", "seed": 4, "k": 3, "release": {"deployment": "ap", "held_release": true},
    });
    let body = serde_json::json!({"defense": "supersequence", "devices": slice_as_json(), "spec": spec});
    let r = app.post_json("/simulations", &body).await;
    accepted_same_as_cli(
        app,
        r,
        &["--defense", "supersequence", "--k", "3", "--seed", "4", "--deployment", "ap", "--held-release"],
        true,
    )
    .await;
    let both = serde_json::json!({"defense": "supersequence", "devices": slice_as_json(), "spec": spec, "k": 3});
    app.post_json("/simulations", &both).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field", "inside");
    let bad = serde_json::json!({"defense": "supersequence", "devices": slice_as_json(), "k": 8});
    app.post_json("/simulations", &bad).await.assert_error(StatusCode::BAD_REQUEST, "invalid_set_size", "k = 8");
    let bad = serde_json::json!({"defense": "supersequence", "devices": [], "nope": 1});
    app.post_json("/simulations", &bad).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json", "nope");
}

async fn targets_from_the_shipped_set_targets_model_set(app: &TestApp) {
    let fields = [("defense", "targets".to_string()), ("generation", "mix".into()), ("seed", "3".into())];
    let models = repo().join(SETS_MODEL);
    same_as_cli(
        app,
        "/simulations?model_set=tj-oconnor-2021-sets",
        &form(true, &fields),
        &["--defense", "targets", "--generation", "mix", "--models", models.to_str().expect("path"), "--seed", "3"],
    )
    .await;
}

/// (URI, form fields, status, code, a word of the message)
type BadCase = (&'static str, Vec<(&'static str, String)>, StatusCode, &'static str, &'static str);

async fn bad_requests_store_nothing(app: &TestApp) {
    let cases: Vec<BadCase> = vec![
        (
            "/simulations",
            vec![("defense", "supersequence".into()), ("k", "8".into())],
            StatusCode::BAD_REQUEST,
            "invalid_set_size",
            "k = 8",
        ),
        (
            "/simulations",
            vec![("defense", "supersequence".into()), ("sets", "blink-cam-01,no-such-device".into())],
            StatusCode::BAD_REQUEST,
            "invalid_sets",
            "no-such-device",
        ),
        ("/simulations", vec![("defense", "targets".into())], StatusCode::BAD_REQUEST, "missing_targets", "targets"),
        (
            "/simulations",
            vec![("defense", "targets".into()), ("generation", "mix".into())],
            StatusCode::BAD_REQUEST,
            "invalid_model_set",
            "set targets",
        ),
        (
            "/simulations?model_set=no-such-set",
            vec![("defense", "targets".into()), ("generation", "mix".into())],
            StatusCode::NOT_FOUND,
            "unknown_model_set",
            "no-such-set",
        ),
        (
            "/simulations",
            vec![("defense", "blanket".into())],
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "supersequence, regulator, targets",
        ),
        (
            "/simulations",
            vec![("defense", "supersequence".into()), ("device", "blink-cam-01".into())],
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "every device",
        ),
        (
            "/simulations",
            vec![("defense", "regulator".into()), ("surge", "1000".into())],
            StatusCode::BAD_REQUEST,
            "output_too_large",
            "--sim-max-output-rows",
        ),
        (
            "/simulations",
            vec![("defense", "regulator".into()), ("levels", "0.5".into())],
            StatusCode::BAD_REQUEST,
            "invalid_regulator_settings",
            "levels",
        ),
        (
            "/simulations",
            vec![("defense", "supersequence".into()), ("deployment", "ideal".into()), ("lag", "2ms".into())],
            StatusCode::BAD_REQUEST,
            "invalid_simulation_settings",
            "ideal",
        ),
        (
            "/simulations",
            vec![("defense", "supersequence".into()), ("lag", "fast".into())],
            StatusCode::BAD_REQUEST,
            "invalid_simulation_settings",
            "software-shaper",
        ),
    ];
    for (uri, fields, status, code, needle) in cases {
        post(app, uri, &form(true, &fields)).await.assert_error(status, code, needle);
    }
    // A set of the model set's sets that mixes generators.
    let mixed = [
        ("defense", "targets".to_string()),
        ("generation", "0".into()),
        ("sets", "blink-cam-01,lockly-hub-01,blink-cam-02".into()),
    ];
    post(app, "/simulations?model_set=tj-oconnor-2021-sets", &form(true, &mixed)).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_sets",
        "different target generators",
    );
    // A one-device form with a home's field.
    let one = [("device", "blink-cam-01".to_string()), ("baseline", "constant".into()), ("k", "3".into())];
    post(app, "/simulations", &form(false, &one)).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field", "k");
    for status in [JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Failed] {
        assert_eq!(app.state.store.count_simulations(status).await.expect("count"), 0, "{status}");
    }
}

macro_rules! on_both_backends_with_sets {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = super::app(super::Db::Sqlite).await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = super::app(super::Db::Postgres).await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
    };
}

on_both_backends_with_sets!(
    supersequence_with_k_and_with_sets,
    json_packets_of_every_device,
    targets_from_the_shipped_set_targets_model_set,
    bad_requests_store_nothing,
);
