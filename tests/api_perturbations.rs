//! The perturbation endpoints, end to end through the router, on SQLite and PostgreSQL.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{MAX_N, TestApp};
use ipet::{
    models::{GenerationChoice, schedule},
    traffic::noise,
};

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

async fn json_schedule_has_the_promised_shape(app: &TestApp) {
    let r = app.get("/perturbations/lockly-hub-01/0?n=7&seed=11").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["columns"], serde_json::json!(["in_packets", "in_bytes", "out_packets", "out_bytes"]));
    assert_eq!(v["slots_per_window"], 40);
    assert_eq!(v["omega"], 0.1);
    assert_eq!(v["n"], 7);
    assert_eq!(v["seed"], 11);
    assert_eq!(v["device"], "lockly-hub-01");
    assert_eq!(v["generation"], "0");
    assert_eq!(v["window_generations"], serde_json::json!([0, 0, 0, 0, 0, 0, 0]));
    let caps = app.state.models.default_engine().model_set().manifest.caps.clone();
    let rows = rows(&v);
    assert_eq!(rows.len(), 7 * 40);
    for row in &rows {
        for (c, &x) in row.iter().enumerate() {
            assert!(x >= 0 && (x as f64) <= caps[c], "column {c}: {x} outside [0, {}]", caps[c]);
        }
    }
    let id = v["job_id"].as_str().expect("job id");
    assert_eq!(r.header("x-job-id"), id);
    assert_eq!(r.header("location"), format!("/perturbations/jobs/{id}"));
}

async fn schedules_are_not_constant(app: &TestApp) {
    // A generator that always says the same thing is no cover: the values must vary.
    let v = app.get("/perturbations/ultraloq-hub-01/mix?n=50&seed=3").await.json();
    let distinct: BTreeSet<[i64; 4]> = rows(&v).into_iter().collect();
    assert!(distinct.len() > 20, "only {} distinct rows in 2000", distinct.len());
}

async fn served_rows_match_the_onnx_model_run_directly(app: &TestApp) {
    // Column order and reshaping checked against the ONNX file itself, with the same noise drawn in
    // one piece: 3,000 windows are cut into parts that two inference threads draw and run apart.
    let engine = app.state.models.default_engine();
    let set = engine.model_set();
    let device = set.device_index("sifely-hub-01").expect("device");
    let generation = set.generations() - 1;
    let n = 3000;
    let uri = format!("/perturbations/sifely-hub-01/{generation}?n={n}&seed=42&format=npy");
    let served: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&app.get(&uri).await.body[..]).expect("npy");
    let (_, z) = schedule::draw(
        n,
        set.latent_dim(),
        GenerationChoice::Index(generation),
        set.generations(),
        &mut noise::rng(Some(42)),
    );
    let mut session = ipet::models::engine::open_standalone_session(
        common::model_args().engine_config().ort_library.as_deref(),
        &set.files[device][generation],
    )
    .expect("session");
    let input = ort::value::TensorRef::from_array_view(z.view()).expect("tensor");
    let out = session.run(ort::inputs![set.manifest.onnx.input.as_str() => input]).expect("run");
    let arr = out[set.manifest.onnx.output.as_str()].try_extract_array::<f32>().expect("output");
    assert_eq!(arr.shape(), &[n, 40, 4]);
    assert_eq!(served.shape(), &[n * 40, 4]);
    for w in 0..n {
        for s in 0..40 {
            for c in 0..4 {
                assert_eq!(served[[w * 40 + s, c]], arr[[w, s, c]] as i32, "window {w} slot {s} column {c}");
            }
        }
    }
}

async fn mix_windows_match_their_own_generators_run_directly(app: &TestApp) {
    let engine = app.state.models.default_engine();
    let set = engine.model_set();
    let device = set.device_index("ultraloq-hub-01").expect("device");
    let v = app.get("/perturbations/ultraloq-hub-01/mix?n=12&seed=8").await.json();
    let served = rows(&v);
    let (gens, z) =
        schedule::draw(12, set.latent_dim(), GenerationChoice::Mix, set.generations(), &mut noise::rng(Some(8)));
    let library = common::model_args().engine_config().ort_library;
    for (w, &g) in gens.iter().enumerate() {
        assert_eq!(v["window_generations"][w], u64::from(g));
        let mut session =
            ipet::models::engine::open_standalone_session(library.as_deref(), &set.files[device][usize::from(g)])
                .expect("session");
        let zw = z.slice_axis(ndarray::Axis(0), ndarray::Slice::from(w..w + 1)).to_owned();
        let input = ort::value::TensorRef::from_array_view(zw.view()).expect("tensor");
        let out = session.run(ort::inputs![set.manifest.onnx.input.as_str() => input]).expect("run");
        let arr = out[set.manifest.onnx.output.as_str()].try_extract_array::<f32>().expect("output");
        for s in 0..40 {
            for c in 0..4 {
                assert_eq!(
                    served[w * 40 + s][c],
                    arr[[0, s, c]] as i64,
                    "window {w} (generation {g}) slot {s} column {c}"
                );
            }
        }
    }
}

async fn concurrent_requests_batched_together_get_their_own_rows(app: &TestApp) {
    // Requests in flight at once are run as shared batches; each must still get its own rows.
    let expected: Vec<Vec<[i64; 4]>> = futures::future::join_all((0..16u64).map(|seed| async move {
        rows(&app.get(&format!("/perturbations/lockly-hub-01/mix?n=7&seed={seed}")).await.json())
    }))
    .await;
    for (seed, want) in expected.iter().enumerate() {
        let alone = rows(&app.get(&format!("/perturbations/lockly-hub-01/mix?n=7&seed={seed}")).await.json());
        assert_eq!(&alone, want, "seed {seed}");
    }
}

async fn the_same_seed_gives_the_same_schedule_and_no_seed_differs(app: &TestApp) {
    let a = rows(&app.get("/perturbations/blink-cam-02/mix?n=20&seed=123").await.json());
    let b = rows(&app.get("/perturbations/blink-cam-02/mix?n=20&seed=123").await.json());
    assert_eq!(a, b);
    let c = rows(&app.get("/perturbations/blink-cam-02/mix?n=20").await.json());
    let d = rows(&app.get("/perturbations/blink-cam-02/mix?n=20").await.json());
    assert_ne!(c, d);
    assert_ne!(a, c);
    let unseeded = app.get("/perturbations/blink-cam-02/1?n=1").await.json();
    assert!(unseeded["seed"].is_null());
}

async fn mix_draws_several_generations(app: &TestApp) {
    let v = app.get("/perturbations/schlage-lock-01/mix?n=300&seed=9").await.json();
    assert_eq!(v["generation"], "mix");
    let used: BTreeSet<u64> =
        v["window_generations"].as_array().expect("gens").iter().map(|g| g.as_u64().expect("index")).collect();
    let generations = app.state.models.default_engine().model_set().generations() as u64;
    assert_eq!(used, (0..generations).collect(), "300 windows should use every generation");
    // And each window really comes from its generation: a single-generation request with the
    // same noise cannot reproduce a mix of several.
    let single = app.get("/perturbations/schlage-lock-01/0?n=300&seed=9").await.json();
    assert_ne!(rows(&v), rows(&single));
}

async fn npy_and_csv_carry_the_same_rows_as_json(app: &TestApp) {
    let json = rows(&app.get("/perturbations/blink-cam-03/1?n=3&seed=5").await.json());
    let npy = app.get("/perturbations/blink-cam-03/1?n=3&seed=5&format=npy").await;
    assert_eq!(npy.status, StatusCode::OK);
    assert_eq!(npy.header("content-type"), "application/x-npy");
    let arr: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&npy.body[..]).expect("npy");
    assert_eq!(arr.shape(), &[120, 4]);
    let from_npy: Vec<[i64; 4]> = arr.rows().into_iter().map(|r| [0, 1, 2, 3].map(|i| i64::from(r[i]))).collect();
    assert_eq!(from_npy, json);
    let csv = app.get("/perturbations/blink-cam-03/1?n=3&seed=5&format=csv").await;
    assert_eq!(csv.header("content-type"), "text/csv");
    let text = String::from_utf8(csv.body.clone()).expect("utf-8");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("in_packets,in_bytes,out_packets,out_bytes"));
    let from_csv: Vec<[i64; 4]> = lines
        .map(|l| {
            let f: Vec<i64> = l.split(',').map(|x| x.parse().expect("int")).collect();
            [f[0], f[1], f[2], f[3]]
        })
        .collect();
    assert_eq!(from_csv, json);
}

async fn accept_header_negotiates_the_format(app: &TestApp) {
    let r = app.get_with("/perturbations/blink-cam-01/0?n=1", ("accept", "application/x-npy")).await;
    assert_eq!(r.header("content-type"), "application/x-npy");
    let r =
        app.get_with("/perturbations/blink-cam-01/0?n=1", ("accept", "text/csv;q=0.9, application/json;q=0.5")).await;
    assert_eq!(r.header("content-type"), "text/csv");
    // format= wins over Accept.
    let r = app.get_with("/perturbations/blink-cam-01/0?n=1&format=json", ("accept", "text/csv")).await;
    assert!(r.header("content-type").starts_with("application/json"));
    app.get_with("/perturbations/blink-cam-01/0?n=1", ("accept", "image/png")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "not_acceptable",
        "image/png",
    );
}

async fn a_stored_job_returns_the_same_schedule_in_every_format(app: &TestApp) {
    let first = app.get("/perturbations/lockly-hub-01/mix?n=4").await;
    let v = first.json();
    let id = v["job_id"].as_str().expect("id").to_string();
    let again = app.get(&format!("/perturbations/jobs/{id}")).await;
    assert_eq!(again.status, StatusCode::OK);
    let w = again.json();
    assert_eq!(rows(&w), rows(&v));
    for key in ["job_id", "device", "generation", "window_generations", "n", "seed", "model_set", "created_at"] {
        assert_eq!(w[key], v[key], "{key}");
    }
    let npy = app.get(&format!("/perturbations/jobs/{id}?format=npy")).await;
    let arr: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&npy.body[..]).expect("npy");
    assert_eq!(arr.shape(), &[160, 4]);
    assert_eq!(i64::from(arr[[159, 3]]), rows(&v)[159][3]);
    let csv = app.get_with(&format!("/perturbations/jobs/{id}"), ("accept", "text/csv")).await;
    assert_eq!(String::from_utf8_lossy(&csv.body).lines().count(), 161);
}

async fn unknown_and_malformed_jobs_are_named(app: &TestApp) {
    app.get("/perturbations/jobs/7d1c6a2e-0000-4000-8000-000000000000").await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_job",
        "7d1c6a2e",
    );
    app.get("/perturbations/jobs/not-a-uuid").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_job_id",
        "not-a-uuid",
    );
    app.get("/perturbations/jobs/7d1c6a2e-0000-4000-8000-000000000000?format=xml").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_format",
        "xml",
    );
}

async fn bad_requests_get_named_errors_and_store_nothing(app: &TestApp) {
    let before = app.state.store.count_perturbations().await.expect("count");
    app.get("/perturbations/toaster/0?n=1").await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_device",
        "lockly-hub-01",
    );
    app.get("/perturbations/blink-cam-01/99?n=1").await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_generation",
        "mix",
    );
    app.get("/perturbations/blink-cam-01/latest?n=1").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_generation",
        "latest",
    );
    app.get("/perturbations/blink-cam-01/-1?n=1").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_generation",
        "-1",
    );
    app.get("/perturbations/blink-cam-01/0").await.assert_error(StatusCode::BAD_REQUEST, "missing_n", "required");
    app.get("/perturbations/blink-cam-01/0?n=0").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_n",
        "between 1 and",
    );
    app.get(&format!("/perturbations/blink-cam-01/0?n={}", MAX_N + 1)).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_n",
        &MAX_N.to_string(),
    );
    app.get("/perturbations/blink-cam-01/0?n=-3").await.assert_error(StatusCode::BAD_REQUEST, "invalid_n", "-3");
    app.get("/perturbations/blink-cam-01/0?n=1.5").await.assert_error(StatusCode::BAD_REQUEST, "invalid_n", "1.5");
    app.get("/perturbations/blink-cam-01/0?n=99999999999999999999999").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_n",
        "not a whole number",
    );
    app.get("/perturbations/blink-cam-01/0?n=1&seed=abc").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_seed",
        "abc",
    );
    app.get("/perturbations/blink-cam-01/0?n=1&seed=-1").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_seed",
        "-1",
    );
    app.get("/perturbations/blink-cam-01/0?n=1&format=xml").await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_format",
        "json, npy, csv",
    );
    app.get("/nowhere").await.assert_error(StatusCode::NOT_FOUND, "no_route", "/openapi.json");
    assert_eq!(app.state.store.count_perturbations().await.expect("count"), before, "no job stored for a bad request");
}

async fn the_largest_seed_round_trips(app: &TestApp) {
    let v = app.get(&format!("/perturbations/blink-cam-01/0?n=1&seed={}", u64::MAX)).await.json();
    assert_eq!(v["seed"].as_u64(), Some(u64::MAX));
    let w = app.get(&format!("/perturbations/jobs/{}", v["job_id"].as_str().expect("id"))).await.json();
    assert_eq!(w["seed"].as_u64(), Some(u64::MAX));
}

async fn large_requests_are_served(app: &TestApp) {
    let r = app.get(&format!("/perturbations/ultraloq-hub-01/mix?n={MAX_N}&format=npy")).await;
    assert_eq!(r.status, StatusCode::OK);
    let arr: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&r.body[..]).expect("npy");
    assert_eq!(arr.shape(), &[MAX_N * 40, 4]);
}

on_both_backends!(
    json_schedule_has_the_promised_shape,
    schedules_are_not_constant,
    served_rows_match_the_onnx_model_run_directly,
    mix_windows_match_their_own_generators_run_directly,
    concurrent_requests_batched_together_get_their_own_rows,
    the_same_seed_gives_the_same_schedule_and_no_seed_differs,
    mix_draws_several_generations,
    npy_and_csv_carry_the_same_rows_as_json,
    accept_header_negotiates_the_format,
    a_stored_job_returns_the_same_schedule_in_every_format,
    unknown_and_malformed_jobs_are_named,
    bad_requests_get_named_errors_and_store_nothing,
    the_largest_seed_round_trips,
    large_requests_are_served,
);
