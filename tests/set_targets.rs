//! The `set-targets` family: one target generator per anonymity set, served per member device.
//! The shipped set models/tj-oconnor-2021-sets: manifest checks, served targets against the ONNX
//! files run directly, and what the response says (kind, set) beside an iPET set.

mod common;

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use axum::http::StatusCode;
use common::{Db, TestApp, repo};
use ipet::{
    models::{Engine, GenerationChoice, ModelSet, manifest::Family, schedule},
    traffic::noise,
};

const SETS: &str = "models/tj-oconnor-2021-sets";

fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let set = ModelSet::load(&repo().join(SETS)).expect("the shipped set-targets model set loads");
            Arc::new(Engine::start(set, &common::model_args().engine_config()).expect("the engine starts"))
        })
        .clone()
}

fn rows(v: &serde_json::Value) -> Vec<[i64; 4]> {
    v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let r = r.as_array().expect("row");
            [0, 1, 2, 3].map(|i| r[i].as_i64().expect("whole number"))
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A copy of the shipped set-targets set with its manifest edited by `edit`.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join(SETS), dir.path());
    let path = dir.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    dir
}

#[test]
fn the_shipped_set_targets_sets_are_complete_and_every_member_points_at_its_set() {
    for dir in [SETS, "models/tj-oconnor-2021-sets-light"] {
        shipped_set_is_complete(dir);
    }
}

fn shipped_set_is_complete(dir: &str) {
    let set = ModelSet::load(&repo().join(dir)).expect("loads");
    let m = &set.manifest;
    assert_eq!(m.family, Family::SetTargets);
    assert_eq!(m.devices.len(), 7);
    assert!(m.sets.len() >= 2, "{} sets", m.sets.len());
    for (d, dev) in m.devices.iter().enumerate() {
        let s = set.set_of(d).expect("every device is in a set");
        assert!(s.members.contains(&dev.name));
        assert_eq!(set.caps_of(d), &s.caps[..]);
        let first = set.device_index(&s.members[0]).expect("member");
        assert_eq!(set.files[d], set.files[first], "{} and {} share their set's generator", dev.name, s.members[0]);
    }
    // Per-set caps come from the set's traffic, so the sets differ (cameras move far more bytes).
    assert_ne!(m.sets[0].caps, m.sets[1].caps);
    // Every generator gives whole numbers within its set's caps (the engine's probe).
    Engine::start(set, &common::model_args().engine_config()).expect("the engine starts");
    // The iPET set stays what it was.
    let ipet = ModelSet::load(&repo().join("models/tj-oconnor-2021")).expect("loads");
    assert_eq!(ipet.manifest.family, Family::Ipet);
    assert!(ipet.manifest.sets.is_empty() && ipet.set_of(0).is_none());
}

#[test]
fn set_manifest_mismatches_are_named() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let first_member = |m: &serde_json::Value| m["sets"][0]["members"][0].as_str().expect("member").to_string();
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|m| m["family"] = "ipet".into()), "family is \"ipet\""),
        (Box::new(|m| m["family"] = "blanket".into()), "unknown variant"),
        (Box::new(|m| m["sets"] = serde_json::json!([])), "needs at least one anonymity set"),
        (
            Box::new(|m| m["sets"][0]["members"][0] = "no-such-device".into()),
            "\"no-such-device\", which is not a listed device",
        ),
        (
            Box::new(move |m| {
                let dev = first_member(m);
                m["sets"][1]["members"].as_array_mut().expect("members").push(dev.into());
            }),
            "is in two sets",
        ),
        (
            Box::new(|m| {
                m["sets"][0]["members"].as_array_mut().expect("members").truncate(1);
            }),
            "a set needs at least 2",
        ),
        (
            Box::new(|m| {
                // the cameras' set keeps two of its three members: the third is in no set
                m["sets"][0]["members"].as_array_mut().expect("members").truncate(2);
            }),
            "is in no anonymity set",
        ),
        (Box::new(|m| m["sets"][1]["name"] = m["sets"][0]["name"].clone()), "empty or repeated"),
        (Box::new(|m| m["sets"][0]["caps"] = serde_json::json!([1, 2, 3])), "caps"),
        (
            Box::new(|m| {
                let top = m["caps"][1].as_f64().expect("cap");
                m["sets"][0]["caps"][1] = (top + 1.0).into();
            }),
            "within the model set's caps",
        ),
        (
            Box::new(move |m| {
                let dev = first_member(m);
                let other = m["sets"][1]["members"][0].as_str().expect("member").to_string();
                let theirs = m["generations"][0]["files"][&other].clone();
                m["generations"][0]["files"][&dev] = theirs;
            }),
            "not at the set's generator",
        ),
        (
            Box::new(|m| {
                let other = m["sets"][1]["name"].clone();
                m["devices"][0]["set"] = other;
            }),
            "but set",
        ),
    ];
    for (edit, needle) in cases {
        let dir = edited(edit);
        let err = ModelSet::load(dir.path()).expect_err("refused").to_string();
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    // An iPET manifest that lists sets is refused too.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("models/tj-oconnor-2021"), dir.path());
    let path = dir.path().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    m["sets"] = serde_json::json!([{"name": "a", "members": ["blink-cam-01", "blink-cam-02"], "caps": [1, 1, 1, 1]}]);
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    let err = ModelSet::load(dir.path()).expect_err("refused").to_string();
    assert!(err.contains("family is \"ipet\""), "{err}");
}

#[test]
fn generators_beyond_their_sets_caps_are_refused_at_start() {
    // Shrink one set's caps below what its generator gives: the engine's probe names the file.
    let dir = edited(|m| m["sets"][0]["caps"] = serde_json::json!([0, 0, 0, 0]));
    let set = ModelSet::load(dir.path()).expect("the manifest itself is fine");
    let err = Engine::start(set, &common::model_args().engine_config()).err().expect("refused").to_string();
    assert!(err.contains("g0.onnx") && err.contains("cap"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_targets_match_their_sets_onnx_file_and_say_what_they_are() {
    let app = TestApp::with_engine(Db::Sqlite, engine()).await;
    let engine = app.state.models.default_engine();
    let set = engine.model_set();
    let library = common::model_args().engine_config().ort_library;
    for s in &set.manifest.sets {
        for member in &s.members {
            let r = app.get(&format!("/perturbations/{member}/0?n=6&seed=5")).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.header("x-schedule-kind"), "targets");
            assert_eq!(r.header("x-anonymity-set"), s.name);
            let v = r.json();
            assert_eq!(v["kind"], "targets");
            assert_eq!(v["set"], s.name.as_str());
            let served = rows(&v);
            let (_, z) = schedule::draw(6, set.latent_dim(), GenerationChoice::Index(0), 1, &mut noise::rng(Some(5)));
            let device = set.device_index(member).expect("device");
            let mut session = ipet::models::engine::open_standalone_session(library.as_deref(), &set.files[device][0])
                .expect("session");
            let input = ort::value::TensorRef::from_array_view(z.view()).expect("tensor");
            let out = session.run(ort::inputs![set.manifest.onnx.input.as_str() => input]).expect("run");
            let arr = out[set.manifest.onnx.output.as_str()].try_extract_array::<f32>().expect("output");
            assert_eq!(arr.shape(), &[6, 40, 4]);
            for w in 0..6 {
                for slot in 0..40 {
                    for c in 0..4 {
                        let x = served[w * 40 + slot][c];
                        assert_eq!(x, arr[[w, slot, c]] as i64, "{member} window {w} slot {slot} column {c}");
                        assert!(x >= 0 && x as f64 <= s.caps[c], "{member}: {x} beyond the set's cap {}", s.caps[c]);
                    }
                    // a target never asks for bytes without packets
                    let row = served[w * 40 + slot];
                    assert!((row[1] == 0 || row[0] > 0) && (row[3] == 0 || row[2] > 0), "{member}: {row:?}");
                }
            }
        }
        // Each set's rows are stored at the width its own caps need, not the model set's widest.
        let r = app.get(&format!("/perturbations/{}/0?n=3", s.members[0])).await;
        let id = r.header("x-job-id").parse().expect("job id");
        let stored = app.state.store.get_perturbation(id, None).await.expect("read").expect("stored");
        let widest = s.caps.iter().copied().fold(0.0, f64::max);
        assert_eq!(stored.schedule.width(), schedule::width_for(widest), "{}: caps {:?}", s.name, s.caps);
        // Members of a set draw from one distribution: the same seed gives every member the same rows.
        let a = rows(&app.get(&format!("/perturbations/{}/0?n=3&seed=9", s.members[0])).await.json());
        let b = rows(&app.get(&format!("/perturbations/{}/0?n=3&seed=9", s.members[1])).await.json());
        assert_eq!(a, b);
    }
    // A stored job says the same again, in CSV too.
    let member = &set.manifest.sets[0].members[0];
    let r = app.get(&format!("/perturbations/{member}/0?n=2&seed=1")).await;
    let id = r.header("x-job-id").to_string();
    let again = app.get(&format!("/perturbations/jobs/{id}?format=csv")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-schedule-kind"), "targets");
    assert_eq!(again.header("x-anonymity-set"), set.manifest.sets[0].name);
    // /devices names the family and the sets.
    let d = app.get("/devices").await.json();
    assert_eq!(d["family"], "set-targets");
    assert_eq!(d["sets"].as_array().expect("sets").len(), set.manifest.sets.len());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipet_schedules_say_they_are_cover_for_no_set() {
    let app = TestApp::new(Db::Sqlite).await;
    let r = app.get("/perturbations/lockly-hub-01/0?n=2&seed=3").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-schedule-kind"), "cover");
    assert!(r.headers.get("x-anonymity-set").is_none());
    let v = r.json();
    assert_eq!(v["kind"], "cover");
    assert!(v["set"].is_null());
    assert_eq!(app.get("/devices").await.json()["family"], "ipet");
    app.cleanup().await;
}
