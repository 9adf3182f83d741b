//! A database outage: requests that need the database get 503 with Retry-After within a second
//! or two, /readyz answers its documented body as fast, and the service recovers by itself.
//! The outage is a cut TCP path between the service and PostgreSQL (a proxy the test controls).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{Db, TestApp};
use tokio::{net::TcpListener, sync::watch};

/// Forwards connections to PostgreSQL while up; when cut, drops every open connection and
/// closes new ones at once.
struct Cut {
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    port: u16,
}

impl Cut {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let mut rx = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {},
                        _ = rx.changed() => {},
                    }
                });
            }
        });
        Self { up, cut, port }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_503_with_retry_after_fast_and_recovers_without_restart() {
    // A database of its own, reached through the proxy.
    let direct = TestApp::without_workers(Db::Postgres).await;
    let url = direct.state.store.pool().connect_options().database_url.clone();
    let host = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let proxy = Cut::start(host).await;
    let mut through = url.clone();
    through.set_port(Some(proxy.port)).expect("port");
    let app = TestApp::on_url(through.as_str()).await;

    let p = app.get("/perturbations/blink-cam-01/0?n=2&seed=1").await;
    assert_eq!(p.status, StatusCode::OK);
    let job = p.json()["job_id"].as_str().expect("job id").to_string();
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    proxy.down();
    for uri in [format!("/perturbations/jobs/{job}"), "/perturbations/blink-cam-01/0?n=2".to_string()] {
        let started = Instant::now();
        let r = app.get(&uri).await;
        let took = started.elapsed();
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "retry");
        assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After on {uri}");
        assert!(took < Duration::from_millis(2500), "{uri} answered after {took:?}");
    }
    let started = Instant::now();
    let r = app.get("/readyz").await;
    assert!(started.elapsed() < Duration::from_millis(2500), "readyz took {:?}", started.elapsed());
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After on /readyz");
    let v = r.json();
    assert_eq!(v["status"], "unavailable", "the documented Health body: {v}");
    assert!(v["detail"].as_str().expect("detail").contains("database"));

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get(&format!("/perturbations/jobs/{job}")).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {}", String::from_utf8_lossy(&r.body));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.state.store.pool().close().await;
    direct.cleanup().await;
}
