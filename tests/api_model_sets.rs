//! Several model sets in one process: chosen per request, listed, reloaded without a restart or a
//! dropped request.

use std::{path::Path, sync::Arc};

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use ipet::{
    app::{AppState, Limits},
    models::ModelSets,
    store::Store,
};
use tower::ServiceExt;

mod common;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

async fn call(router: &axum::Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
    let res = router.clone().oneshot(req).await.expect("response");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sets_are_chosen_per_request_listed_and_reloaded_without_dropping_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let second = dir.path().join("shared");
    copy_dir(&common::repo().join("models/tj-oconnor-2021-shared"), &second);
    let args = common::model_args();
    let config = args.engine_config();
    let dirs = vec![args.models.clone(), second.clone()];
    let models = tokio::task::spawn_blocking(move || ModelSets::load(dirs, config)).await.expect("join").expect("load");
    // Debug builds under this load queue longer than the default 1 s acquire timeout.
    let store = Store::connect_with("sqlite::memory:", 1, std::time::Duration::from_secs(60)).await.expect("store");
    let limits = Limits {
        max_n: 1000,
        max_concurrent_requests: 256,
        request_timeout_secs: 60,
        max_body_bytes: 1 << 20,
        jobs: Default::default(),
    };
    let state = AppState::with_models(Arc::new(models), store, limits);
    let router = ipet::http::router(state);

    // Listed, the default first.
    let (s, list) = call(&router, "GET", "/model-sets").await;
    assert_eq!(s, StatusCode::OK);
    let sets = list["model_sets"].as_array().expect("sets");
    assert_eq!(sets.len(), 2);
    assert_eq!((sets[0]["name"].as_str(), sets[0]["default"].as_bool()), (Some("tj-oconnor-2021"), Some(true)));
    assert_eq!(sets[1]["name"], "tj-oconnor-2021-shared");
    let old_label = sets[1]["label"].as_str().expect("label").to_string();

    // Chosen per request; the existing route without the parameter keeps the default set.
    let (s, v) = call(&router, "GET", "/perturbations/blink-cam-01/0?n=2&seed=1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["model_set"].as_str().expect("label").starts_with("tj-oconnor-2021@"));
    let (s, v) =
        call(&router, "GET", "/perturbations/blink-cam-01/0?n=2&seed=1&model_set=tj-oconnor-2021-shared").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["model_set"], old_label.as_str());
    let id = v["job_id"].as_str().expect("id").to_string();
    let (s, again) = call(&router, "GET", &format!("/perturbations/jobs/{id}")).await;
    assert_eq!((s, &again), (StatusCode::OK, &v));
    let (s, v) = call(&router, "GET", "/devices?model_set=tj-oconnor-2021-shared").await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("tj-oconnor-2021-shared")));
    let (s, v) = call(&router, "GET", "/perturbations/blink-cam-01/0?n=2&model_set=nope").await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_model_set")));
    assert!(v["message"].as_str().expect("message").contains("tj-oconnor-2021-shared"), "{v}");
    let (s, v) = call(&router, "GET", "/devices?model_set=nope").await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_model_set")));

    // A changed set on disk: reloaded while requests run; none is dropped.
    let manifest = second.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
    m["created"] = serde_json::json!("2030-01-01T00:00:00+00:00");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
    let load: Vec<_> = (0..24)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                let uri = format!("/perturbations/blink-cam-0{}/mix?n=50&model_set=tj-oconnor-2021-shared", 1 + i % 3);
                let mut replies = Vec::new();
                for _ in 0..4 {
                    replies.push(call(&router, "GET", &uri).await);
                }
                replies
            })
        })
        .collect();
    let (s, list) = call(&router, "POST", "/model-sets/reload").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    for t in load {
        for (s, v) in t.await.expect("join") {
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }
    let new_label = list["model_sets"][1]["label"].as_str().expect("label").to_string();
    assert_ne!(new_label, old_label);
    let (_, v) = call(&router, "GET", "/perturbations/blink-cam-01/0?n=1&model_set=tj-oconnor-2021-shared").await;
    assert_eq!(v["model_set"], new_label.as_str());

    // A set that no longer loads: the reload is refused and the served sets stay.
    std::fs::write(&manifest, b"{ not json").expect("write");
    let (s, v) = call(&router, "POST", "/model-sets/reload").await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("model_set_invalid")), "{v}");
    // The answer names the set and the cause, as the README promises (issue 19, item 4).
    let message = v["message"].as_str().expect("message");
    let dir = manifest.parent().expect("the set's directory").display().to_string();
    assert!(message.contains(&dir) && message.contains("manifest.json"), "{message}");
    assert!(message.contains("the served ones stay"), "{message}");
    let (s, v) = call(&router, "GET", "/perturbations/blink-cam-01/0?n=1&model_set=tj-oconnor-2021-shared").await;
    assert_eq!((s, v["model_set"].as_str()), (StatusCode::OK, Some(new_label.as_str())));
}
