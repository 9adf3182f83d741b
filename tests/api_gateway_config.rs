//! `GET /simulations/{id}/gateway-config`: a home simulation on the in-repo slice served as the
//! live gateway's configuration document, on SQLite and PostgreSQL. Its spec is what `ipet
//! simulate --spec-out` writes for the same captures and flags (sets by name, size profiles),
//! its device table the job's with MACs, IPs and sets, and `ipet-gateway check` takes it. Error
//! cases: bad and unknown ids, a job not finished, a one-device job, a home without MACs.

mod common;

use std::{path::PathBuf, process::Command};

use axum::http::StatusCode;
use common::{Db, TestApp, repo};

const DEVICES: [&str; 7] = [
    "blink-cam-01",
    "blink-cam-02",
    "blink-cam-03",
    "lockly-hub-01",
    "schlage-lock-01",
    "sifely-hub-01",
    "ultraloq-hub-01",
];

/// The run's settings, as form fields and as `ipet simulate` flags.
const FIELDS: [(&str, &str); 6] = [
    ("defense", "supersequence"),
    ("k", "3"),
    ("seed", "1"),
    ("latency_budget", "0.5"),
    ("deployment", "bridge"),
    ("slot_behind", "true"),
];
const FLAGS: [&str; 11] = [
    "--defense",
    "supersequence",
    "--k",
    "3",
    "--seed",
    "1",
    "--latency-budget",
    "0.5",
    "--deployment",
    "bridge",
    "--slot-behind",
];

fn slice() -> PathBuf {
    repo().join("data/tj-oconnor-2021-slice")
}

/// The slice's device table plus a phone with a MAC and no traffic (in no set, listed) and a
/// printer with only an IP and no traffic (in no set, no MAC: left out).
fn device_table() -> String {
    let mut csv = std::fs::read_to_string(slice().join("devices.csv")).expect("table");
    csv.push_str("phone-01,02:00:00:00:00:01,192.168.1.201,\"A phone\"\n");
    csv.push_str("printer-01,,192.168.1.202,\"A printer\"\n");
    csv
}

/// The gateway binary: scripts/test.sh builds every binary of the workspace first.
fn gateway_bin() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    let bin = dir.join("debug/ipet-gateway");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p ipet-gateway` (scripts/test.sh runs `cargo build \
         --workspace --bins` before the tests)",
        bin.display()
    );
    bin
}

async fn submit_home(app: &TestApp) -> String {
    let traces: Vec<(String, Vec<u8>)> = DEVICES
        .iter()
        .map(|d| (format!("{d}.pcap"), std::fs::read(slice().join(format!("pcaps/{d}.pcap"))).expect("capture")))
        .collect();
    let table = device_table();
    let mut parts: Vec<(&str, Option<&str>, &[u8])> =
        traces.iter().map(|(n, b)| ("trace", Some(n.as_str()), b.as_slice())).collect();
    parts.push(("devices", Some("devices.csv"), table.as_bytes()));
    parts.extend(FIELDS.iter().map(|(k, v)| (*k, None, v.as_bytes())));
    let r = app.post_form("/simulations", &parts).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().expect("id").to_string()
}

/// `ipet simulate --spec-out` on the same captures, table and flags.
fn cli_spec() -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("devices.csv");
    std::fs::write(&table, device_table()).expect("table");
    let spec = dir.path().join("spec.json");
    let o = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["simulate", "--trace"])
        .arg(slice().join("pcaps"))
        .arg("--devices")
        .arg(&table)
        .args(FLAGS)
        .arg("--spec-out")
        .arg(&spec)
        .env("RUST_LOG", "warn")
        .output()
        .expect("ipet simulate runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(&spec).expect("spec written")).expect("spec JSON")
}

/// `ipet-gateway check FILE --mode MODE`: (success, stdout + stderr).
fn gateway_check(doc: &[u8], mode: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("home.json");
    std::fs::write(&file, doc).expect("write");
    let o = Command::new(gateway_bin()).arg("check").arg(&file).args(["--mode", mode]).output().expect("runs");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

async fn a_home_simulation_is_a_gateway_configuration(app: &TestApp) {
    let gateway = gateway_bin();
    let id = submit_home(app).await;
    let job = app.wait_simulation(&id, 300).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = app.get_with(&format!("/simulations/{id}/gateway-config"), ("host", "ipet.lan:8080")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("content-type").starts_with("application/json"));
    let doc = r.json();

    // The spec as run, with the home's plan: what `ipet simulate --spec-out` writes.
    assert_eq!(doc["defense"], "supersequence");
    assert_eq!(doc["spec"], cli_spec(), "the document's spec is the CLI's --spec-out for the same input");
    assert_eq!(doc["spec"]["release"]["deployment"], "bridge");
    assert_eq!(doc["spec"]["release"]["slot_behind"], true);
    assert_eq!(doc["spec"]["seed"], 1);
    assert_eq!(doc["spec"]["k"], 3);
    assert!(doc.get("service").is_none(), "no rows to fetch for the supersequence");

    // Sets: the job's, by name and members in order; every device with traffic in one.
    let sets = doc["spec"]["sets"].as_array().expect("sets");
    assert_eq!(doc["spec"]["sets"], job["params"]["sets"], "the sets the job ran");
    let mut members: Vec<&str> = sets
        .iter()
        .flat_map(|s| s["members"].as_array().expect("members"))
        .map(|m| m.as_str().expect("name"))
        .collect();
    members.sort_unstable();
    assert_eq!(members, DEVICES, "every device with traffic in exactly one set");
    assert!(sets.iter().all(|s| s["members"].as_array().expect("members").len() >= 3), "k = 3");

    // Size profiles: one per set, counting every kept packet of its members.
    let profiles = doc["spec"]["size_profiles"].as_array().expect("size profiles");
    assert_eq!(profiles.len(), sets.len());
    let packets_of = |name: &str| {
        job["params"]["devices"].as_array().expect("devices").iter().find(|d| d["name"] == name).expect("device")
            ["packets"]
            .as_u64()
            .expect("packets")
    };
    for (set, profile) in sets.iter().zip(profiles) {
        assert_eq!(profile["set"], set["name"]);
        let count = |dir: &str| -> u64 {
            profile[dir].as_array().expect(dir).iter().map(|p| p[1].as_u64().expect("count")).sum()
        };
        assert!(count("incoming") > 0 && count("outgoing") > 0, "{profile}");
        let real: u64 =
            set["members"].as_array().expect("members").iter().map(|m| packets_of(m.as_str().expect("m"))).sum();
        assert_eq!(count("incoming") + count("outgoing"), real, "set {}: every kept packet counted", set["name"]);
    }

    // Devices: set by set in the spec's order, then the phone (no traffic, no set); the printer
    // has no MAC and is left out, named in the header.
    let table = csv_table();
    let devices = doc["devices"].as_array().expect("devices");
    let listed: Vec<(&str, Option<&str>)> =
        devices.iter().map(|d| (d["name"].as_str().expect("name"), d["set"].as_str())).collect();
    let mut want: Vec<(&str, Option<&str>)> = Vec::new();
    for s in sets {
        for m in s["members"].as_array().expect("members") {
            want.push((m.as_str().expect("m"), s["name"].as_str()));
        }
    }
    want.push(("phone-01", None));
    assert_eq!(listed, want);
    for d in devices {
        let (mac, ip) = &table[d["name"].as_str().expect("name")];
        assert_eq!(d["mac"].as_str(), Some(mac.as_str()), "{d}");
        assert_eq!(d["ip"], serde_json::json!([ip]), "{d}");
    }
    assert_eq!(r.header("x-omitted-devices"), "printer-01");

    // The gateway takes it in bridge mode (the job's deployment) and refuses it in ap mode,
    // naming the field.
    assert!(gateway.is_file());
    let (ok, out) = gateway_check(&r.body, "bridge");
    assert!(ok, "ipet-gateway check refused the served document: {out}");
    assert!(out.contains("8 devices"), "{out}");
    let (ok, out) = gateway_check(&r.body, "ap");
    assert!(!ok && out.contains("spec.release.deployment"), "{out}");

    // Asked again: the same document (computed from the stored traces, nothing random).
    let again = app.get_with(&format!("/simulations/{id}/gateway-config"), ("host", "ipet.lan:8080")).await;
    assert_eq!(again.body, r.body);
}

/// name -> (mac, ip) of the test's device table.
fn csv_table() -> std::collections::HashMap<String, (String, String)> {
    device_table()
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0].to_string(), (cells[1].to_string(), cells[2].to_string()))
        })
        .collect()
}

async fn errors_have_stable_codes(app: &TestApp) {
    app.get("/simulations/nope/gateway-config").await.assert_error(StatusCode::BAD_REQUEST, "invalid_job_id", "nope");
    let missing = uuid::Uuid::new_v4().to_string();
    app.get(&format!("/simulations/{missing}/gateway-config")).await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_job",
        &missing,
    );

    // One device's simulation: no home to configure.
    let one = serde_json::json!({
        "device": "schlage-lock-01", "baseline": "constant", "seed": 1,
        "packets": [{"time": 0, "size": 120, "direction": "out"}, {"time": 1, "size": 90, "direction": "in"}],
    });
    let r = app.post_json("/simulations", &one).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(app.wait_simulation(&id, 60).await["status"], "succeeded");
    app.get(&format!("/simulations/{id}/gateway-config")).await.assert_error(
        StatusCode::CONFLICT,
        "not_a_home_simulation",
        "schlage-lock-01",
    );

    // A home given as JSON packets: its devices have no MAC, so a gateway cannot match them.
    let devices: Vec<serde_json::Value> = (0..3)
        .map(|d| {
            let packets: Vec<serde_json::Value> = (0..20)
                .map(|i| serde_json::json!({"time": i as f64 * 0.37 + d as f64 * 0.01, "size": 80 + 7 * i, "direction": if i % 2 == 0 { "out" } else { "in" }}))
                .collect();
            serde_json::json!({"name": format!("plug-{d}"), "packets": packets})
        })
        .collect();
    let home = serde_json::json!({"defense": "supersequence", "k": 3, "seed": 2, "devices": devices});
    let r = app.post_json("/simulations", &home).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(app.wait_simulation(&id, 60).await["status"], "succeeded");
    app.get(&format!("/simulations/{id}/gateway-config")).await.assert_error(
        StatusCode::CONFLICT,
        "missing_mac",
        "plug-0",
    );

    // A home job not run yet (no worker): 409 until it has succeeded.
    let idle = TestApp::without_workers(Db::Sqlite).await;
    let r = idle.post_json("/simulations", &home).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    idle.get(&format!("/simulations/{id}/gateway-config")).await.assert_error(
        StatusCode::CONFLICT,
        "job_not_finished",
        "queued",
    );
    idle.cleanup().await;
}

on_both_backends!(a_home_simulation_is_a_gateway_configuration, errors_have_stable_codes);

/// `targets` from the shipped set-targets model set: the document names this service as the
/// request reached it (through a proxy here), the model set and the generation, and the gateway
/// takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_name_the_service_the_model_set_and_the_generation() {
    use std::sync::Arc;

    use ipet::models::{Engine, ModelSet};
    let gateway = gateway_bin();
    let set = ModelSet::load(&repo().join("models/tj-oconnor-2021-sets")).expect("the set-targets model set loads");
    let sets = Arc::new(Engine::start(set, &common::model_args().engine_config()).expect("engine"));
    let app = TestApp::with_model_sets(Db::Sqlite, vec![common::engine(), sets]).await;
    let traces: Vec<(String, Vec<u8>)> = DEVICES
        .iter()
        .map(|d| (format!("{d}.pcap"), std::fs::read(slice().join(format!("pcaps/{d}.pcap"))).expect("capture")))
        .collect();
    let table = std::fs::read(slice().join("devices.csv")).expect("table");
    let mut parts: Vec<(&str, Option<&str>, &[u8])> =
        traces.iter().map(|(n, b)| ("trace", Some(n.as_str()), b.as_slice())).collect();
    parts.push(("devices", Some("devices.csv"), &table));
    parts.extend([("defense", None, b"targets".as_slice()), ("generation", None, b"mix"), ("seed", None, b"3")]);
    let r = app.post_form("/simulations?model_set=tj-oconnor-2021-sets", &parts).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(app.wait_simulation(&id, 300).await["status"], "succeeded");
    let req = axum::http::Request::get(format!("/simulations/{id}/gateway-config"))
        .header("host", "10.0.0.2:8080")
        .header("x-forwarded-host", "ipet.example.org")
        .header("x-forwarded-proto", "https")
        .body(axum::body::Body::empty())
        .expect("request");
    let r = app.request(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    assert_eq!(doc["defense"], "targets");
    assert_eq!(
        doc["service"],
        serde_json::json!({"url": "https://ipet.example.org", "generation": "mix", "model_set": "tj-oconnor-2021-sets"})
    );
    let names: Vec<&str> =
        doc["spec"]["sets"].as_array().expect("sets").iter().map(|s| s["name"].as_str().expect("name")).collect();
    assert_eq!(names.len(), 2, "the model set's two sets: {names:?}");
    assert_eq!(doc["spec"]["target_rows"]["slots_per_window"], 40);
    let (ok, out) = gateway_check(&r.body, "bridge");
    assert!(ok && out.contains("Targets") && out.contains("2 sets"), "{out}");
    assert!(gateway.is_file());
    app.cleanup().await;
}

/// As reading the simulation: its submitter's token or an admin's; another caller's gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_submitter_or_an_admin_reads_it() {
    use ipet::auth::{Auth, hash_token};
    let mut app = TestApp::new(Db::Sqlite).await;
    let lines = format!(
        "gw-a {}\ngw-b {} perturbations\nroot {} admin\n",
        hash_token("a"),
        hash_token("b"),
        hash_token("root")
    );
    app.require_tokens(Auth::new(&lines, 0).expect("tokens"));
    app.use_token(Some("a"));
    let id = submit_home(&app).await;
    assert_eq!(app.wait_simulation(&id, 300).await["status"], "succeeded");
    let uri = format!("/simulations/{id}/gateway-config");
    let own = app.get(&uri).await;
    assert_eq!(own.status, StatusCode::OK, "{}", String::from_utf8_lossy(&own.body));
    app.use_token(Some("b"));
    app.get(&uri).await.assert_error(StatusCode::NOT_FOUND, "unknown_job", &id);
    app.use_token(Some("root"));
    let admin = app.get(&uri).await;
    assert_eq!((admin.status, admin.body), (StatusCode::OK, own.body));
    app.use_token(None);
    assert_eq!(app.get(&uri).await.status, StatusCode::UNAUTHORIZED);
    app.cleanup().await;
}
