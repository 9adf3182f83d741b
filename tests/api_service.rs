//! Devices, health, readiness, metrics, docs, limits.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};

async fn devices_lists_the_model_set(app: &TestApp) {
    let r = app.get("/devices").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let names: Vec<&str> =
        v["devices"].as_array().expect("devices").iter().map(|d| d["name"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "blink-cam-01",
            "blink-cam-02",
            "blink-cam-03",
            "lockly-hub-01",
            "schlage-lock-01",
            "sifely-hub-01",
            "ultraloq-hub-01"
        ]
    );
    let generations = v["generations"].as_array().expect("generations");
    assert!(!generations.is_empty());
    assert!(generations[0]["metrics"].is_object(), "per-stage training metrics are served");
    assert_eq!(v["generation_choices"].as_array().expect("choices").last().expect("mix"), "mix");
    assert_eq!(v["settings"]["slots_per_window"], 40);
    assert_eq!(v["columns"][0], "in_packets");
    assert_eq!(v["version"].as_str().expect("version").len(), 12);
}

async fn health_and_readiness(app: &TestApp) {
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["database"], if app.db == Db::Sqlite { "sqlite" } else { "postgres" });
    assert!(v["model_set"].as_str().expect("model set").starts_with("tj-oconnor-2021@"));
}

async fn readiness_fails_when_the_database_is_gone(app: &TestApp) {
    app.state.store.pool().close().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "unavailable");
    assert_eq!(r.header("retry-after"), "1", "readyz's 503 says when to ask again, like the others");
    // And a schedule request says so, to retry later, without leaking the cause.
    let r = app.get("/perturbations/blink-cam-01/0?n=1").await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "retry");
    assert_eq!(r.header("retry-after"), "1");
}

async fn metrics_count_requests_per_route(app: &TestApp) {
    app.get("/perturbations/blink-cam-01/0?n=2").await;
    let text = String::from_utf8(app.get("/metrics").await.body).expect("text");
    assert!(text.contains("ipet_http_requests_total{route=\"/perturbations/{dev_id}/{generation}\""), "{text}");
    assert!(text.contains("ipet_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("ipet_generator_seconds"), "{text}");
    assert!(text.contains("ipet_perturbation_jobs "), "{text}");

    // Made-up methods share one label: a client cannot grow the metrics a series per method.
    for i in 0..3 {
        let method = axum::http::Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("method");
        let req = axum::http::Request::builder().method(method).uri("/devices").body(axum::body::Body::empty());
        assert_eq!(app.request(req.expect("request")).await.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = String::from_utf8(app.get("/metrics").await.body).expect("text");
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(text.contains("ipet_http_requests_total{route=\"/devices\",method=\"other\",status=\"405\"}"), "{text}");
}

/// The served spec's `maximum` for `n` is the service's `--max-n` (the test app's 30,000), not
/// the default the committed spec states (issue 19, item 4).
async fn the_served_spec_states_the_max_n_in_force(app: &TestApp) {
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let spec = r.json();
    let params = spec["paths"]["/perturbations/{dev_id}/{generation}"]["get"]["parameters"].as_array().expect("params");
    let n = params.iter().find(|p| p["name"] == "n").expect("n");
    assert_eq!(n["schema"]["maximum"], common::MAX_N as u64);
    assert_ne!(common::MAX_N, 50_000, "the test app's max n differs from the default");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo().join("openapi/openapi.json")).expect("spec"))
            .expect("json");
    let params = committed["paths"]["/perturbations/{dev_id}/{generation}"]["get"]["parameters"].as_array().expect("p");
    let n = params.iter().find(|p| p["name"] == "n").expect("n");
    assert_eq!(n["schema"]["maximum"], 50_000, "the committed spec states the default");
    let too_many = app.get(&format!("/perturbations/blink-cam-01/0?n={}", common::MAX_N + 1)).await;
    too_many.assert_error(StatusCode::BAD_REQUEST, "invalid_n", "n");
}

async fn docs_and_spec_are_served(app: &TestApp) {
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, StatusCode::OK);
    let mut served = spec.json();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("openapi/openapi.json")).expect("committed spec"),
    )
    .expect("json");
    // But for the maximum of n, the test app's --max-n (see the_served_spec_states_the_max_n_in_force).
    for p in served["paths"]["/perturbations/{dev_id}/{generation}"]["get"]["parameters"]
        .as_array_mut()
        .expect("parameters")
        .iter_mut()
        .filter(|p| p["name"] == "n")
    {
        p["schema"]["maximum"] = 50_000.into();
    }
    assert_eq!(served, committed, "the served spec is the committed one");
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&docs.body).contains("swagger-ui"));
}

async fn request_ids_are_returned(app: &TestApp) {
    let r = app.get("/healthz").await;
    assert_eq!(r.header("x-request-id").len(), 36);
    let r = app.get_with("/healthz", ("x-request-id", "gateway-42")).await;
    assert_eq!(r.header("x-request-id"), "gateway-42");
}

on_both_backends!(
    devices_lists_the_model_set,
    health_and_readiness,
    readiness_fails_when_the_database_is_gone,
    metrics_count_requests_per_route,
    docs_and_spec_are_served,
    the_served_spec_states_the_max_n_in_force,
    request_ids_are_returned,
);

#[tokio::test]
async fn saturation_answers_429_with_retry_after() {
    let app = TestApp::with_limits(Db::Sqlite, 1).await;
    let held = app.state.admit().expect("the one slot");
    let r = app.get("/perturbations/blink-cam-01/0?n=1").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "overloaded", "retry");
    assert_eq!(r.header("retry-after"), "1");
    drop(held);
    assert_eq!(app.get("/perturbations/blink-cam-01/0?n=1").await.status, StatusCode::OK);
}

#[test]
fn the_committed_openapi_spec_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(common::repo().join("openapi/openapi.json"))
        .expect("openapi/openapi.json is committed");
    assert!(
        committed == ipet::cli::openapi_json(),
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi --out openapi/openapi.json`"
    );
}

/// Generated clients need a document whose every `$ref` resolves and every response says what it
/// is (openapi-python-client refuses either).
#[test]
fn the_spec_is_complete_enough_for_client_generators() {
    let spec: serde_json::Value = serde_json::from_str(&ipet::cli::openapi_json()).expect("json");
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let schemas = spec["components"]["schemas"].as_object().expect("schemas");
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            for (code, response) in op["responses"].as_object().expect("responses") {
                assert!(response.get("description").is_some(), "{method} {path} {code} has no description");
            }
        }
    }
    // openapi-python-client reads `items` as a schema only: a Rust tuple's `items: false` (beside
    // `prefixItems`) makes it refuse the whole document (give such a field a `value_type`).
    fn boolean_items(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("items").is_some_and(serde_json::Value::is_boolean) || m.contains_key("prefixItems") {
                    out.push(at.to_string());
                }
                m.iter().for_each(|(k, x)| boolean_items(x, &format!("{at}/{k}"), out));
            }
            serde_json::Value::Array(a) => {
                a.iter().enumerate().for_each(|(i, x)| boolean_items(x, &format!("{at}/{i}"), out))
            }
            _ => {}
        }
    }
    let mut tuples = Vec::new();
    boolean_items(&spec, "#", &mut tuples);
    assert!(tuples.is_empty(), "schemas that client generators refuse (tuples): {tuples:?}");
}

/// The spec bounds `n` and states the one-cover rule of simulations.
#[test]
fn the_spec_states_the_limits_and_the_one_cover_rule() {
    let spec: serde_json::Value = serde_json::from_str(&ipet::cli::openapi_json()).expect("json");
    let params = spec["paths"]["/perturbations/{dev_id}/{generation}"]["get"]["parameters"].as_array().expect("params");
    let n = params.iter().find(|p| p["name"] == "n").expect("n");
    assert_eq!(n["schema"]["minimum"], 1);
    assert_eq!(n["schema"]["maximum"], 50_000);
    let post = &spec["paths"]["/simulations"]["post"];
    let text = format!("{} {}", post["summary"], post["description"]);
    assert!(text.contains("exactly one of") && text.contains("ambiguous_cover"), "{text}");
}

/// Under overload a request is refused before any work: 429 at once, before its token is even
/// looked at; health and readiness still answer; capacity comes back when requests finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_before_any_work() {
    use axum::body::Body;
    let mut app = TestApp::with_limits(Db::Sqlite, 1).await;
    let token = "s3cret-token";
    app.require_tokens(
        ipet::auth::Auth::new(&format!("gw {} perturbations,simulations", ipet::auth::hash_token(token)), 0)
            .expect("tokens"),
    );
    app.use_token(Some(token));
    // Uploads that never finish hold the service's one slot (max_concurrent_requests).
    let mut senders = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        tx.send(Ok(b"--b\r\n".to_vec())).await.expect("send");
        senders.push(tx);
        let body = Body::from_stream(tokio_stream_from(rx));
        let req = axum::http::Request::post("/simulations")
            .header("content-type", "multipart/form-data; boundary=b")
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .expect("request");
        let router = app.router.clone();
        pending.push(tokio::spawn(async move { tower::ServiceExt::oneshot(router, req).await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let r = app.get_with("/devices", ("authorization", "Bearer wrong")).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "overloaded", "capacity");
    assert_eq!(r.header("retry-after"), "1");
    // Refused after the queue wait, not after the request timeout.
    let took = started.elapsed();
    assert!(took >= ipet::http::QUEUE_WAIT && took < ipet::http::QUEUE_WAIT * 2, "refused after {took:?}");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    drop(senders);
    for p in pending {
        let _ = p.await;
    }
    assert_eq!(app.get("/devices").await.status, StatusCode::OK);
    assert_eq!(app.get_with("/devices", ("authorization", "Bearer wrong")).await.status, StatusCode::UNAUTHORIZED);
}

/// A body stream from a channel.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The service starts as `ipet serve` starts it (model sets, store, workers, socket), on port 0:
/// the address it returns is the one it serves on. With nothing in flight (the client's idle
/// keep-alive connection aside) and no job running it stops at once when told to: the drain's
/// bounds ([`ipet::http::server::DRAIN`], 25 s; [`ipet::startup::WORKER_STOP`], 10 s) are for
/// requests and jobs that are still running, not a wait every stop pays (measured: under 1 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_binds_port_0_and_serves_at_the_address_it_returns() {
    use clap::Parser;
    let models = common::repo().join("models/tj-oconnor-2021");
    let cli = ipet::cli::Cli::try_parse_from([
        "ipet",
        "serve",
        "--port",
        "0",
        "--database-url",
        "sqlite::memory:",
        "--inference-threads",
        "1",
        "--models",
        models.to_str().expect("path"),
    ])
    .expect("flags");
    let ipet::cli::Command::Serve(config) = cli.command else { panic!("not serve") };
    let started = ipet::startup::start(&config).await.expect("the service starts");
    let addr = started.addr;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "bound to {addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(started.serve(async {
        let _ = stopped.await;
    }));
    // The client lives on past the stop: its connection stays open, idle in keep-alive.
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{addr}/devices")).send().await.expect("GET /devices");
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["devices"].as_array().expect("devices").len(), 7);
    stop.send(()).expect("still serving");
    let asked = std::time::Instant::now();
    tokio::time::timeout(STOP_BOUND, server)
        .await
        .unwrap_or_else(|_| panic!("an idle service still serves {STOP_BOUND:?} after it was told to stop"))
        .expect("join");
    eprintln!("an idle service stopped in {:?}", asked.elapsed());
    drop(client);
}

/// How long an idle service may take to stop: well under the drain's bounds, so that a stop that
/// waits them out fails; generous for a loaded 2-core CI machine.
const STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(3);
