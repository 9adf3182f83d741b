//! Access control: bearer tokens, scopes, job ownership, rate limits, and the loopback rule.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, repo};
use ipet::auth::{Auth, hash_token};

const GW_A: &str = "token-of-gateway-a";
const GW_B: &str = "token-of-gateway-b";
const OPS: &str = "token-of-ops";
const ADMIN: &str = "token-of-admin";

fn tokens(rate_per_minute: u32) -> Auth {
    let lines = format!(
        "gw-a {}\ngw-b {} perturbations\nops {} metrics\nroot {} admin\n",
        hash_token(GW_A),
        hash_token(GW_B),
        hash_token(OPS),
        hash_token(ADMIN)
    );
    Auth::new(&lines, rate_per_minute).expect("tokens")
}

async fn app_with_tokens(db: Db) -> TestApp {
    let mut app = TestApp::new(db).await;
    app.require_tokens(tokens(0));
    app
}

async fn routes_need_a_valid_token_except_health_and_docs(db: Db) {
    let app = app_with_tokens(db).await;
    for uri in [
        "/perturbations/blink-cam-01/0?n=1",
        "/devices",
        "/metrics",
        "/simulations/3f1a3c1e-0000-4000-8000-000000000000",
        "/perturbations/jobs/3f1a3c1e-0000-4000-8000-000000000000",
    ] {
        let r = app.get(uri).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
        assert_eq!(r.header("www-authenticate"), "Bearer", "{uri}");
        app.get_with(uri, ("authorization", "Bearer wrong")).await.assert_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not valid",
        );
        app.get_with(uri, ("authorization", "Basic Z3c6cHc=")).await.assert_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Bearer",
        );
    }
    let r = app.post_json("/simulations", &serde_json::json!({})).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
    for uri in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        assert_eq!(app.get(uri).await.status, StatusCode::OK, "{uri} is public");
    }
    app.use_token(Some(GW_A));
    assert_eq!(app.get("/devices").await.status, StatusCode::OK);
    assert_eq!(app.get("/perturbations/blink-cam-01/0?n=1").await.status, StatusCode::OK);
    app.cleanup().await;
}

async fn scopes_are_enforced(db: Db) {
    let app = app_with_tokens(db).await;
    let trace = std::fs::read(repo().join("data/tj-oconnor-2021-slice/pcaps/schlage-lock-01.pcap")).expect("trace");
    let form: [(&str, Option<&str>, &[u8]); 3] =
        [("trace", Some("t.pcap"), &trace), ("device", None, b"schlage-lock-01"), ("baseline", None, b"constant")];
    app.use_token(Some(GW_B));
    app.post_form("/simulations", &form).await.assert_error(StatusCode::FORBIDDEN, "forbidden", "simulations");
    app.get("/metrics").await.assert_error(StatusCode::FORBIDDEN, "forbidden", "metrics");
    assert_eq!(app.get("/perturbations/blink-cam-01/mix?n=1").await.status, StatusCode::OK);
    app.use_token(Some(OPS));
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    app.get("/perturbations/blink-cam-01/mix?n=1").await.assert_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "perturbations",
    );
    app.use_token(Some(GW_A));
    assert_eq!(app.post_form("/simulations", &form).await.status, StatusCode::ACCEPTED);
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM simulation_jobs")
        .fetch_one(app.state.store.pool())
        .await
        .expect("count");
    assert_eq!(jobs, 1, "only the allowed submission made a job");
    app.cleanup().await;
}

async fn a_gateway_sees_only_its_own_jobs(db: Db) {
    let app = app_with_tokens(db).await;
    app.use_token(Some(GW_A));
    let p = app.get("/perturbations/lockly-hub-01/0?n=2").await.json();
    let job = p["job_id"].as_str().expect("id").to_string();
    let parsed = uuid::Uuid::parse_str(&job).expect("uuid");
    assert_eq!(parsed.get_version_num(), 4, "job ids are random UUIDs");
    let trace = std::fs::read(repo().join("data/tj-oconnor-2021-slice/pcaps/lockly-hub-01.pcap")).expect("trace");
    let r = app
        .post_form(
            "/simulations",
            &[
                ("trace", Some("t.pcap"), &trace),
                ("device", None, b"lockly-hub-01"),
                ("schedule_job", None, job.as_bytes()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let sim = r.json()["id"].as_str().expect("id").to_string();
    app.wait_simulation(&sim, 60).await;
    assert_eq!(app.get(&format!("/perturbations/jobs/{job}")).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/simulations/{sim}/output")).await.status, StatusCode::OK);

    app.use_token(Some(GW_B));
    app.get(&format!("/perturbations/jobs/{job}")).await.assert_error(StatusCode::NOT_FOUND, "unknown_job", &job);
    app.get(&format!("/perturbations/jobs/{job}?format=npy")).await.assert_error(
        StatusCode::NOT_FOUND,
        "unknown_job",
        &job,
    );

    app.use_token(Some(ADMIN));
    assert_eq!(app.get(&format!("/perturbations/jobs/{job}")).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/simulations/{sim}")).await.status, StatusCode::OK);

    // gw-b holds no simulations scope; a gateway with it but another name still cannot see gw-a's.
    let mut other = app;
    other.require_tokens(Auth::new(&format!("gw-c {}", hash_token("c")), 0).expect("tokens"));
    other.use_token(Some("c"));
    other.get(&format!("/simulations/{sim}")).await.assert_error(StatusCode::NOT_FOUND, "unknown_job", &sim);
    other.get(&format!("/simulations/{sim}/output")).await.assert_error(StatusCode::NOT_FOUND, "unknown_job", &sim);
    let r = other
        .post_form(
            "/simulations",
            &[
                ("trace", Some("t.pcap"), &trace),
                ("device", None, b"lockly-hub-01"),
                ("schedule_job", None, job.as_bytes()),
            ],
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_job", &job);
    other.cleanup().await;
}

async fn each_caller_has_its_own_rate_limit(db: Db) {
    let mut app = TestApp::new(db).await;
    app.require_tokens(tokens(3));
    app.use_token(Some(GW_A));
    for _ in 0..3 {
        assert_eq!(app.get("/perturbations/blink-cam-01/0?n=1").await.status, StatusCode::OK);
    }
    let r = app.get("/perturbations/blink-cam-01/0?n=1").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "gw-a");
    let retry: u64 = r.header("retry-after").parse().expect("Retry-After seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    app.use_token(Some(GW_B));
    assert_eq!(
        app.get("/perturbations/blink-cam-01/0?n=1").await.status,
        StatusCode::OK,
        "another caller is not limited"
    );
    app.use_token(None);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK, "health is never limited");
    app.cleanup().await;
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Sqlite).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Postgres).await; } )* }
    };
}

both!(
    routes_need_a_valid_token_except_health_and_docs,
    scopes_are_enforced,
    a_gateway_sees_only_its_own_jobs,
    each_caller_has_its_own_rate_limit
);

#[test]
fn without_tokens_the_service_refuses_to_listen_beyond_loopback() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["serve", "--bind", "0.0.0.0", "--port", "0", "--database-url", "sqlite::memory:"])
        .env_remove("IPET_TOKENS")
        .env_remove("IPET_TOKENS_FILE")
        .env_remove("IPET_ALLOW_UNAUTHENTICATED")
        .current_dir(repo())
        .output()
        .expect("ipet serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthenticated_bind") && err.contains("--allow-unauthenticated"), "{err}");
}

#[test]
fn token_command_makes_a_line_the_service_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["token", "gw-9", "--scopes", "perturbations"])
        .output()
        .expect("ipet token");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let token = lines.next().expect("token");
    let line = lines.next().expect("line");
    assert_eq!(token.len(), 64);
    assert!(!line.contains(token), "the tokens file holds only the hash");
    assert!(line.contains(&hash_token(token)));
    assert!(Auth::new(line, 0).expect("accepted").enabled());
}
