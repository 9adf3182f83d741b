//! Every stored schedule comes back byte for byte, in every format, after the service restarts
//! over the same database (a fresh store and state), on both backends.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use ipet::{
    app::{AppState, Limits},
    store::Store,
};
use tower::ServiceExt;

mod common;

fn router(store: Store) -> axum::Router {
    let limits = Limits {
        max_n: 30_000,
        max_concurrent_requests: 64,
        request_timeout_secs: 60,
        max_body_bytes: 1 << 20,
        jobs: Default::default(),
    };
    ipet::http::router(AppState::new(common::engine(), store, limits))
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
    let id = res.headers().get("x-job-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let status = res.status();
    (status, id, res.into_body().collect().await.expect("body").to_bytes().to_vec())
}

async fn round_trip(url: &str) {
    let store = Store::connect(url, 2).await.expect("store");
    let first = router(store.clone());
    let mut answered = Vec::new();
    for (uri, format) in [
        ("/perturbations/blink-cam-02/mix?n=7&seed=11", "json"),
        ("/perturbations/blink-cam-02/mix?n=7&format=npy", "npy"),
        ("/perturbations/lockly-hub-01/3?n=25000&format=npy", "npy"),
        ("/perturbations/lockly-hub-01/1?n=5&format=csv", "csv"),
    ] {
        let (status, id, body) = get(&first, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        answered.push((id, format, body));
    }
    drop(first);
    store.pool().close().await;

    let again = router(Store::connect(url, 2).await.expect("store again"));
    for (id, format, body) in &answered {
        let (status, _, stored) = get(&again, &format!("/perturbations/jobs/{id}?format={format}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(stored == *body, "job {id} as {format}: {} bytes stored, {} answered", stored.len(), body.len());
    }
}

#[tokio::test]
async fn sqlite_returns_every_stored_schedule_byte_for_byte_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(&format!("sqlite:{}", dir.path().join("jobs.sqlite3").display())).await;
}

#[tokio::test]
async fn postgres_returns_every_stored_schedule_byte_for_byte_after_a_restart() {
    let name = format!("ipet_test_{}", uuid::Uuid::new_v4().simple());
    let admin = common::postgres_admin_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
    round_trip(&format!("{base}/{name}")).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
        .expect("drop");
}
