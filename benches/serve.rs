//! Service throughput and latency, printed as figures (not a timed test).
//!
//! `cargo bench --bench serve` starts the real router on 127.0.0.1 (port 0) over the shipped model
//! set, once on a SQLite file and once on PostgreSQL (when IPET_BENCH_POSTGRES_URL or the default
//! local server answers), and drives it from an HTTP client in the same process:
//! - n=100 windows, JSON: latency percentiles one request at a time;
//! - n=100 windows, JSON: requests per second at concurrency 32 for a few seconds;
//! - n=25,000 windows (1M rows) as npy: end-to-end latency including the job write.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ipet::{
    app::{AppState, Limits},
    models::Engine,
    store::Store,
};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: f64) -> String {
    format!("{:.2} ms", d * 1e3)
}

async fn serve(engine: Arc<Engine>, url: &str) -> (String, tokio::task::JoinHandle<()>) {
    let store = Store::connect(url, 8).await.expect("store");
    let limits = Limits {
        max_n: 50_000,
        max_concurrent_requests: 1024,
        request_timeout_secs: 60,
        max_body_bytes: 1 << 20,
        jobs: Default::default(),
    };
    let state = AppState::new(engine, store, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        axum::serve(listener, ipet::http::router(state)).await.expect("serve");
    });
    (format!("http://{addr}"), handle)
}

async fn timed_get(client: &reqwest::Client, url: &str) -> f64 {
    let t = Instant::now();
    let res = client.get(url).send().await.expect("request");
    assert!(res.status().is_success(), "{url}: {}", res.status());
    let body = res.bytes().await.expect("body");
    assert!(!body.is_empty());
    t.elapsed().as_secs_f64()
}

async fn run(label: &str, engine: Arc<Engine>, db_url: &str) {
    let (base, server) = serve(engine, db_url).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let small = format!("{base}/perturbations/lockly-hub-01/mix?n=100");

    for _ in 0..50 {
        timed_get(&client, &small).await;
    }
    let mut lat: Vec<f64> = Vec::new();
    for _ in 0..500 {
        lat.push(timed_get(&client, &small).await);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{label:>9} | n=100 json, one at a time     | p50 {} | p90 {} | p99 {} | ({} requests)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(percentile(&lat, 0.99)),
        lat.len()
    );

    let duration = Duration::from_secs(5);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url) = (client.clone(), small.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed() < duration {
                lat.push(timed_get(&client, &url).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    println!(
        "{label:>9} | n=100 json, concurrency 32    | {:.0} requests/s | p50 {} | p99 {} | ({} requests in {secs:.1} s)",
        all.len() as f64 / secs,
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        all.len()
    );

    let big = format!("{base}/perturbations/ultraloq-hub-01/mix?n=25000&format=npy");
    timed_get(&client, &big).await;
    let mut lat = Vec::new();
    for _ in 0..15 {
        lat.push(timed_get(&client, &big).await);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{label:>9} | n=25000 npy (1M rows, 16 MB) | p50 {} | min {} | max {} | ({} requests)",
        ms(percentile(&lat, 0.5)),
        ms(lat[0]),
        ms(lat[lat.len() - 1]),
        lat.len()
    );
    server.abort();
}

fn main() {
    let engine = common::engine();
    common::block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = common::sqlite_url(&dir);
        run("sqlite", engine.clone(), &sqlite).await;
        if let Some(pg) = common::Postgres::create("ipet_bench").await {
            run("postgres", engine.clone(), &pg.url).await;
            pg.drop_database().await;
        }
    });
}
