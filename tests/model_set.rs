//! A model set the service cannot serve is refused at start with a message naming the problem.

mod common;

use std::path::Path;

use common::repo;
use ipet::models::{Engine, ModelSet};

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

/// A copy of the shipped set with its manifest edited by `edit`.
fn broken(edit: impl FnOnce(&mut serde_json::Value, &Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("models/tj-oconnor-2021"), dir.path());
    let path = dir.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    edit(&mut m, dir.path());
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    dir
}

fn load_error(dir: &Path) -> String {
    ModelSet::load(dir).expect_err("refused").to_string()
}

#[test]
fn the_shipped_set_is_complete() {
    let set = ModelSet::load(&repo().join("models/tj-oconnor-2021")).expect("loads");
    assert_eq!(set.manifest.devices.len(), 7);
    assert_eq!(set.generations(), 5);
    assert_eq!(set.files.iter().map(Vec::len).sum::<usize>(), 35);
}

type Edit = Box<dyn FnOnce(&mut serde_json::Value, &Path)>;

#[test]
fn manifest_mismatches_are_named() {
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|m, _| m["schema_version"] = 2.into()), "schema_version 2"),
        (
            Box::new(|m, _| m["columns"] = serde_json::json!(["out_packets", "out_bytes", "in_packets", "in_bytes"])),
            "columns",
        ),
        (Box::new(|m, _| m["settings"]["slots_per_window"] = 39.into()), "slots_per_window 39"),
        (Box::new(|m, _| m["caps"] = serde_json::json!([4, 100, 4, 101])), "caps"),
        (Box::new(|m, _| m["metrics"]["status"] = "running".into()), "not complete"),
        (Box::new(|m, _| m["onnx"]["rounded"] = false.into()), "round"),
        (Box::new(|m, _| m["devices"][1]["id"] = 7.into()), "id 7"),
        (
            Box::new(|m, _| {
                m["generations"][2]["files"]
                    .as_object_mut()
                    .expect("files")
                    .remove("blink-cam-02")
                    .map(|_| ())
                    .unwrap_or(())
            }),
            "generation 2 has no file for device \"blink-cam-02\"",
        ),
        (
            Box::new(|m, _| m["generations"][0]["files"]["blink-cam-01"] = "../../etc/passwd".into()),
            "inside the model directory",
        ),
        (
            Box::new(|_, dir| std::fs::remove_file(dir.join("sifely-hub-01/g3.onnx")).expect("rm")),
            "sifely-hub-01/g3.onnx",
        ),
        (Box::new(|m, _| m["devices"] = serde_json::json!("seven")), "not a valid manifest"),
    ];
    for (edit, needle) in cases {
        let dir = broken(edit);
        let err = load_error(dir.path());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn onnx_files_that_do_not_fit_are_named_at_start() {
    let config = common::model_args().engine_config();
    // The manifest promises a latent size the generators do not take.
    let dir = broken(|m, _| m["settings"]["latent_dim"] = 21.into());
    let err =
        Engine::start(ModelSet::load(dir.path()).expect("manifest fine"), &config).err().expect("refused").to_string();
    assert!(err.contains("input shape") && err.contains("21"), "{err}");
    // A file that is not ONNX at all.
    let dir = broken(|_, dir| std::fs::write(dir.join("lockly-hub-01/g1.onnx"), b"not a model").expect("write"));
    let err =
        Engine::start(ModelSet::load(dir.path()).expect("manifest fine"), &config).err().expect("refused").to_string();
    assert!(err.contains("lockly-hub-01/g1.onnx"), "{err}");
    // Another device's generator under a wrong output name.
    let dir = broken(|m, _| m["onnx"]["output"] = "cover".into());
    let err =
        Engine::start(ModelSet::load(dir.path()).expect("manifest fine"), &config).err().expect("refused").to_string();
    assert!(err.contains("\"cover\""), "{err}");
}

#[test]
fn the_service_refuses_to_start_on_a_broken_set() {
    let dir = broken(|m, _| m["columns"] = serde_json::json!(["a", "b", "c", "d"]));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["serve", "--port", "0", "--database-url", "sqlite::memory:", "--models"])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .expect("ipet serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model_set_invalid") && err.contains("columns"), "{err}");
}

/// The shipped set as training writes it when a middle device (lockly-hub-01, row 3 of the
/// table) had too few windows: ids are positions, table rows apart as `table_id`.
fn without_middle_device(legacy_ids: bool) -> tempfile::TempDir {
    broken(move |m, _| {
        let devices = m["devices"].as_array_mut().expect("devices");
        let gone = devices.remove(3);
        let gone_name = gone["name"].as_str().expect("name").to_string();
        for (position, d) in devices.iter_mut().enumerate() {
            let table_row = if position < 3 { position } else { position + 1 };
            d["class_index"] = position.into();
            d["table_id"] = table_row.into();
            // Sets trained before ids were positions kept the table row as `id`.
            d["id"] = if legacy_ids { table_row } else { position }.into();
        }
        for g in m["generations"].as_array_mut().expect("generations") {
            g["files"].as_object_mut().expect("files").remove(&gone_name);
        }
        m["skipped_devices"] =
            serde_json::json!([{"table_id": 3, "name": gone_name, "windows": 4, "reason": "too_few_windows"}]);
    })
}

#[test]
fn a_set_with_a_middle_device_skipped_is_served() {
    for legacy in [false, true] {
        let dir = without_middle_device(legacy);
        let set = ModelSet::load(dir.path()).unwrap_or_else(|e| panic!("legacy ids {legacy}: {e}"));
        let names: Vec<_> = set.manifest.devices.iter().map(|d| (d.id, d.name.as_str())).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names[3], (3, "schlage-lock-01"), "ids are positions once loaded");
        assert_eq!(set.manifest.devices[3].other["table_id"], 4);
        assert_eq!(set.device_index("schlage-lock-01"), Some(3));
    }
    // An id that is neither the position nor backed by class_index is still refused.
    let dir = broken(|m, _| {
        m["devices"][2]["id"] = 9.into();
        m["devices"][2]["class_index"] = 9.into();
    });
    assert!(load_error(dir.path()).contains("ids are positions"), "{}", load_error(dir.path()));
}
