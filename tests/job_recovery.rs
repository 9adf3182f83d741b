//! Durable simulation jobs: a job survives the death of its process and finishes exactly once;
//! workers sharing one PostgreSQL never run a job twice.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use common::{Db, TestApp, repo};
use ipet::{
    jobs::{
        WorkerConfig,
        submit::{CoverRequest, Submission, TraceInput, submit},
        worker,
    },
    store::{JobState, NewSimulation, Store},
    traffic::Mode,
};
use uuid::Uuid;

struct Server {
    child: Child,
    base: String,
}

/// The address in the service's "listening; API docs at http://ADDR/docs" log line.
fn listening_address(line: &str) -> Option<String> {
    let rest = &line[line.find("API docs at http://")? + "API docs at http://".len()..];
    Some(rest[..rest.find("/docs")?].to_string())
}

impl Server {
    /// `ipet serve` on port 0 (the system picks a free port when it binds; nothing is picked
    /// and released first), its address read from its log.
    async fn start(db: &str) -> Self {
        // Slow enough to be killed mid-job.
        Self::start_paced(db, 15_000).await
    }

    /// The service with simulations paced to `rate_limit` output rows per second; a short lease
    /// so that a restart does not wait long.
    async fn start_paced(db: &str, rate_limit: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipet"))
            .args(["serve", "--port", "0", "--database-url", db])
            .args(["--models", repo().join("models/tj-oconnor-2021").to_str().expect("path")])
            .args(["--sim-rate-limit", &rate_limit.to_string(), "--sim-lease-secs", "2"])
            .env("RUST_LOG", "warn,ipet::startup=info")
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ipet serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end, so that the service never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
            .await
            .expect("join")
            .expect("the service logs the address it listens on");
        Self { child, base: format!("http://{addr}") }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not become ready");
    }

    /// SIGTERM: the service's own stop.
    fn terminate(&self) {
        let kill = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(kill.success(), "kill -TERM");
    }

    /// Waits for the process to exit (at most `bound`): how long it took, and how it exited.
    async fn exit_within(&mut self, bound: Duration, what: &str) -> (Duration, std::process::ExitStatus) {
        let since = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return (since.elapsed(), exit);
            }
            assert!(since.elapsed() < bound, "the service still runs {bound:?} after {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn status(client: &reqwest::Client, base: &str, id: &str) -> serde_json::Value {
    client.get(format!("{base}/simulations/{id}")).send().await.expect("status").json().await.expect("json")
}

/// Waits until job `id` runs, lets it work for `run_for`, kills the service (SIGKILL) while the
/// job still runs, starts a new one on the same database and waits for the job to end: it must
/// succeed, claimed once before the kill and once after. Returns the new service and the job.
async fn kill_mid_run_and_restart(
    server: Server,
    db: &str,
    client: &reqwest::Client,
    id: &str,
    run_for: Duration,
) -> (Server, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(client, &server.base, id).await["status"] != "running" {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(run_for).await;
    let before = status(client, &server.base, id).await;
    assert_eq!(before["status"], "running", "the job must still be running when the process dies: {before}");
    server.kill();

    let server = Server::start(db).await;
    server.wait_ready(client).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let v = status(client, &server.base, id).await;
        if v["status"] == "succeeded" || v["status"] == "failed" {
            break v;
        }
        assert!(Instant::now() < deadline, "the job did not finish after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "claimed once before the kill and once after");
    (server, done)
}

/// The defended trace served at `url` (`.npy`) equals the file `ipet simulate` wrote, bit for bit.
async fn assert_served_output_is(client: &reqwest::Client, url: &str, local: &std::path::Path, what: &str) {
    let served = client.get(url).send().await.expect("output").bytes().await.expect("bytes");
    let served: ndarray::Array2<f64> = ndarray_npy::ReadNpyExt::read_npy(&served[..]).expect("npy");
    let local: ndarray::Array2<f64> = ndarray_npy::read_npy(local).expect("npy");
    assert_eq!(served.shape(), local.shape(), "{what}");
    let bits = |a: &ndarray::Array2<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&served) == bits(&local), "{what}: the stored output is not ipet simulate's, bit for bit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_run_completes_after_restart_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("jobs.sqlite3").display());
    let client = reqwest::Client::new();
    let trace_path = repo().join("data/tj-oconnor-2021-slice/pcaps/lockly-hub-01.pcap");
    let trace = std::fs::read(&trace_path).expect("trace");

    let server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let form = reqwest::multipart::Form::new()
        .part("trace", reqwest::multipart::Part::bytes(trace).file_name("lockly-hub-01.pcap"))
        .text("device", "lockly-hub-01")
        .text("generation", "mix")
        .text("seed", "11");
    let accepted: serde_json::Value = client
        .post(format!("{}/simulations", server.base))
        .multipart(form)
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_string();

    let (server, done) = kill_mid_run_and_restart(server, &db, &client, &id, Duration::from_millis(1500)).await;

    // The result is the one an uninterrupted run gives: same seed, same defended trace.
    let out = dir.path().join("cli.npy");
    let cli = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args([
            "simulate",
            "--trace",
            trace_path.to_str().expect("path"),
            "--device",
            "lockly-hub-01",
            "--generation",
            "mix",
            "--seed",
            "11",
        ])
        .args(["--devices", repo().join("data/tj-oconnor-2021-slice/devices.csv").to_str().expect("path")])
        .args([
            "--models",
            repo().join("models/tj-oconnor-2021").to_str().expect("path"),
            "-o",
            out.to_str().expect("path"),
        ])
        .current_dir(repo())
        .output()
        .expect("ipet simulate");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli_summary: serde_json::Value = serde_json::from_slice(&cli.stdout).expect("summary JSON");
    assert_eq!(done["summary"], cli_summary);
    let output = format!("{}/simulations/{id}/output?format=npy", server.base);
    assert_served_output_is(&client, &output, &out, "the output").await;
}

/// A home's set-defense job (every device's capture, sets by clustering) killed mid-run finishes
/// after the restart with `ipet simulate --defense supersequence`'s summary and traces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_job_killed_mid_run_completes_after_restart_with_the_cli_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("jobs.sqlite3").display());
    let client = reqwest::Client::new();
    let slice = repo().join("data/tj-oconnor-2021-slice");
    let devices: Vec<String> = std::fs::read_dir(slice.join("pcaps"))
        .expect("pcaps")
        .map(|e| e.expect("entry").file_name().to_string_lossy().trim_end_matches(".pcap").to_string())
        .collect();

    let server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let mut form = reqwest::multipart::Form::new();
    for d in &devices {
        let bytes = std::fs::read(slice.join(format!("pcaps/{d}.pcap"))).expect("capture");
        form = form.part("trace", reqwest::multipart::Part::bytes(bytes).file_name(format!("{d}.pcap")));
    }
    let table = std::fs::read(slice.join("devices.csv")).expect("table");
    form = form
        .part("devices", reqwest::multipart::Part::bytes(table).file_name("devices.csv"))
        .text("defense", "supersequence")
        .text("k", "3")
        .text("seed", "21");
    let r = client.post(format!("{}/simulations", server.base)).multipart(form).send().await.expect("submit");
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let accepted: serde_json::Value = r.json().await.expect("json");
    let id = accepted["id"].as_str().expect("id").to_string();

    let (server, done) = kill_mid_run_and_restart(server, &db, &client, &id, Duration::from_millis(1000)).await;

    let out = dir.path().join("cli");
    let cli = Command::new(env!("CARGO_BIN_EXE_ipet"))
        .args(["simulate", "--trace", slice.join("pcaps").to_str().expect("path")])
        .args(["--devices", slice.join("devices.csv").to_str().expect("path")])
        .args(["--defense", "supersequence", "--k", "3", "--seed", "21", "--out-dir", out.to_str().expect("path")])
        .current_dir(repo())
        .output()
        .expect("ipet simulate");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli_summary: serde_json::Value = serde_json::from_slice(&cli.stdout).expect("summary JSON");
    assert_eq!(done["summary"], cli_summary);
    for d in &devices {
        let output = format!("{}/simulations/{id}/output?format=npy&device={d}", server.base);
        assert_served_output_is(&client, &output, &out.join(format!("{d}.npy")), d).await;
    }
}

/// SIGTERM while a long job runs (paced to take minutes): the process exits at once (the job
/// stops at its next row and goes back to the queue; within [`STOP_BOUND`], not the 30 s the
/// service promises at most), and after a restart the job runs again to completion, the stopped
/// run not counted as an attempt (issue 19, item 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_a_running_job_in_time_and_the_job_runs_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("jobs.sqlite3").display());
    let client = reqwest::Client::new();
    let trace = std::fs::read(repo().join("data/tj-oconnor-2021-slice/pcaps/lockly-hub-01.pcap")).expect("trace");

    // 500 rows/s: the slice's defended trace (tens of thousands of rows) takes over a minute.
    let mut server = Server::start_paced(&db, 500).await;
    server.wait_ready(&client).await;
    let form = reqwest::multipart::Form::new()
        .part("trace", reqwest::multipart::Part::bytes(trace).file_name("lockly-hub-01.pcap"))
        .text("device", "lockly-hub-01")
        .text("generation", "mix")
        .text("seed", "11");
    let r = client.post(format!("{}/simulations", server.base)).multipart(form).send().await.expect("submit");
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&client, &server.base, &id).await["status"] != "running" {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&client, &server.base, &id).await["status"], "running");

    server.terminate();
    // The job stops at its next row (2 ms apart at this pace): well under the workers' 10 s
    // bound (startup::WORKER_STOP), so that a stop that waits the bound out fails.
    let (took, exit) = server.exit_within(STOP_BOUND, "SIGTERM (a running simulation holds it)").await;
    assert!(exit.success(), "a stop on SIGTERM is a clean exit: {exit:?}");
    eprintln!("stopped with a job running in {took:?}");
    drop(server);

    let server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let v = status(&client, &server.base, &id).await;
        if v["status"] == "succeeded" || v["status"] == "failed" {
            break v;
        }
        assert!(Instant::now() < deadline, "the job did not finish after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1, "the run stopped by SIGTERM is not counted as an attempt: {done}");
}

/// How long the process may take to exit once nothing holds it (no request in flight, a running
/// job stopped at its next row): far below the drain's bounds (25 s for requests, 10 s for
/// workers), so that a stop that waits either out fails. Measured: 20 ms idle or after the last
/// answer, 85-130 ms with a job running; the bound leaves room for the runtime's own 2 s wait
/// for a blocking task (`cli::run`) and a loaded 2-core CI machine.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// SIGTERM to an idle service (its one client connection idle in keep-alive): it exits at once,
/// not after the drain's bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_service_exits_at_once_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("jobs.sqlite3").display());
    let client = reqwest::Client::new();
    let mut server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let r = client.get(format!("{}/devices", server.base)).send().await.expect("GET /devices");
    assert!(r.status().is_success());
    r.bytes().await.expect("body");
    server.terminate();
    let (took, exit) = server.exit_within(STOP_BOUND, "SIGTERM with nothing running").await;
    assert!(exit.success(), "a stop on SIGTERM is a clean exit: {exit:?}");
    eprintln!("an idle service exited {took:?} after SIGTERM");
}

/// A request in flight when SIGTERM arrives is answered in full, its job stored: the service stops
/// taking connections (new ones are refused), keeps the process up while the request runs, answers
/// it (202, `Connection: close`), then exits at once; a new process on the same database serves
/// the job. The request is in the service when the signal is sent, not merely in a socket buffer:
/// it asks `Expect: 100-continue`, which hyper answers only when the handler first reads the body,
/// and its body is sent only after the signal has closed the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_sigterm_is_answered_and_its_job_kept() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("jobs.sqlite3").display());
    let client = reqwest::Client::new();
    let mut server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let packets: Vec<serde_json::Value> = (0..5)
        .map(|i| serde_json::json!({"time": 1_615_161_600.0 + f64::from(i), "size": 100 + i, "direction": "out"}))
        .collect();
    let body =
        serde_json::json!({"device": "lockly-hub-01", "generation": "mix", "seed": 7, "packets": packets}).to_string();
    let conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let mut conn = tokio::io::BufReader::new(conn);
    let head = format!(
        "POST /simulations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.get_mut().write_all(head.as_bytes()).await.expect("request head");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_line(&mut line))
        .await
        .expect("100 Continue in time")
        .expect("read");
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n", "the handler reads the body");
    line.clear();
    conn.read_line(&mut line).await.expect("read");
    assert_eq!(line, "\r\n");

    server.terminate();
    // The listener closes: new connections are refused while the request in flight keeps the
    // process up (a connection that got in before the close, or was reset as it closed, is not
    // counted).
    let refused = tokio::time::timeout(STOP_BOUND, async {
        loop {
            match tokio::net::TcpStream::connect(&addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    assert!(refused.await.is_ok(), "new connections are still taken {STOP_BOUND:?} after SIGTERM");
    assert!(server.child.try_wait().expect("wait").is_none(), "the process exited with a request in flight");

    conn.get_mut().write_all(body.as_bytes()).await.expect("request body");
    let mut head = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read_line(&mut line))
            .await
            .expect("the answer in time")
            .unwrap_or_else(|e| panic!("the connection broke after SIGTERM instead of answering: {e}"));
        assert!(n > 0, "the connection was closed after SIGTERM without an answer (head so far: {head:?})");
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_ascii_lowercase());
    }
    assert_eq!(head[0], "http/1.1 202 accepted", "{head:?}");
    assert!(head.contains(&"connection: close".to_string()), "the last answer on this connection: {head:?}");
    let length: usize =
        head.iter().find_map(|h| h.strip_prefix("content-length: ")).expect("content-length").parse().expect("length");
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer).await.expect("the whole body");
    let accepted: serde_json::Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(accepted["status"], "queued", "{accepted}");
    let id = accepted["id"].as_str().expect("id").to_string();
    let mut rest = Vec::new();
    tokio::time::timeout(STOP_BOUND, conn.read_to_end(&mut rest))
        .await
        .expect("the connection is closed after its last answer")
        .expect("closed cleanly");
    assert!(rest.is_empty(), "nothing after the answer: {rest:?}");

    let (took, exit) = server.exit_within(STOP_BOUND, "answering the last request in flight").await;
    assert!(exit.success(), "a stop on SIGTERM is a clean exit: {exit:?}");
    eprintln!("exited {took:?} after answering the request in flight");
    drop(server);

    let server = Server::start(&db).await;
    server.wait_ready(&client).await;
    let v = status(&client, &server.base, &id).await;
    assert_eq!(v["id"], id.as_str(), "the job answered during the stop is stored: {v}");
    assert_eq!(v["trace_packets"], 5, "{v}");
    assert_eq!(v["params"]["device"], "lockly-hub-01", "{v}");
}

fn slow_workers() -> WorkerConfig {
    WorkerConfig {
        workers: 2,
        lease: Duration::from_secs(5),
        poll: Duration::from_millis(30),
        max_attempts: 3,
        rate_limit: 40_000,
        chunk: 64,
        max_output_rows: 5_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_pools_on_one_postgres_never_run_a_job_twice() {
    // Two independent pools (as two replicas would have), each with two workers.
    let app = TestApp::without_workers(Db::Postgres).await;
    let url = app.state.store.pool().connect_options().database_url.to_string();
    let other = Store::connect(&url, 4).await.expect("second store");
    let engine = common::engine();
    worker::start(engine.clone(), app.state.store.clone(), slow_workers()).await.expect("pool A");
    worker::start(engine.clone(), other.clone(), slow_workers()).await.expect("pool B");

    let trace = std::fs::read(repo().join("data/tj-oconnor-2021-slice/pcaps/schlage-lock-01.pcap")).expect("trace");
    let set = engine.model_set();
    let mut ids = Vec::new();
    for i in 0..12 {
        let s = Submission {
            device: "schlage-lock-01".into(),
            model_set: None,
            addresses: None,
            trace: TraceInput::Capture { name: "schlage.pcap".into(), bytes: trace.clone() },
            cover: CoverRequest::Generation((i % 5).to_string()),
            mode: Mode::Slotted,
            seed: Some(i),
            active_gap: 5.0,
        };
        ids.push(
            submit(set, &app.state.store, &ipet::auth::Caller::anonymous(), &Default::default(), s)
                .await
                .expect("submitted"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut claims = std::collections::BTreeSet::new();
    for id in &ids {
        loop {
            let r = app.state.store.get_simulation(*id, None).await.expect("get").expect("exists");
            if r.status == JobState::Succeeded {
                assert_eq!(r.attempts, 1, "job {id} was claimed {} times", r.attempts);
                break;
            }
            assert_ne!(r.status, JobState::Failed, "{:?}", r.error);
            assert!(Instant::now() < deadline, "jobs did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let claim: String = sqlx::query_scalar("SELECT claim FROM simulation_jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(app.state.store.pool())
            .await
            .expect("claim");
        claims.insert(claim.split('-').next().expect("instance").to_string());
    }
    assert_eq!(claims.len(), 2, "both pools took jobs: {claims:?}");
    other.pool().close().await;
    app.cleanup().await;
}

/// A pool told to stop (the service's SIGTERM path) stops its running job at its next row and
/// puts it back in the queue unclaimed, the stopped run not counted as an attempt; on both
/// backends (issue 19, item 2).
async fn stopped_workers_put_their_running_job_back(db: Db) {
    let app = TestApp::without_workers(db).await;
    let engine = common::engine();
    // 500 rows/s: the job runs for minutes unless stopped.
    let config = WorkerConfig { workers: 1, rate_limit: 500, ..slow_workers() };
    let pool = worker::start(engine.clone(), app.state.store.clone(), config).await.expect("pool");
    let trace = std::fs::read(repo().join("data/tj-oconnor-2021-slice/pcaps/schlage-lock-01.pcap")).expect("trace");
    let s = Submission {
        device: "schlage-lock-01".into(),
        model_set: None,
        addresses: None,
        trace: TraceInput::Capture { name: "schlage.pcap".into(), bytes: trace },
        cover: CoverRequest::Generation("mix".into()),
        mode: Mode::Slotted,
        seed: Some(3),
        active_gap: 5.0,
    };
    let store = &app.state.store;
    let caller = ipet::auth::Caller::anonymous();
    let id = submit(engine.model_set(), store, &caller, &Default::default(), s).await.expect("submitted");
    pool.wake();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.get_simulation(id, None).await.expect("get").expect("exists").status != JobState::Running {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    assert!(pool.stop(Duration::from_secs(10)).await, "the pool stops");
    assert!(asked.elapsed() < Duration::from_secs(2), "stopped in {:?}", asked.elapsed());
    let r = store.get_simulation(id, None).await.expect("get").expect("exists");
    assert_eq!((r.status, r.attempts), (JobState::Queued, 0), "{:?}", r.error);
    let claim: Option<String> = sqlx::query_scalar("SELECT claim FROM simulation_jobs WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(store.pool())
        .await
        .expect("claim");
    assert_eq!(claim, None);
    // A stopped pool claims nothing more.
    pool.wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.get_simulation(id, None).await.expect("get").expect("exists").status, JobState::Queued);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_workers_put_their_running_job_back_on_sqlite() {
    stopped_workers_put_their_running_job_back(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_workers_put_their_running_job_back_on_postgres() {
    stopped_workers_put_their_running_job_back(Db::Postgres).await;
}

async fn queued_job(store: &Store) -> Uuid {
    let id = Uuid::new_v4();
    let packets = [ipet::traffic::Packet {
        time_ns: 0,
        size: 10,
        direction: ipet::traffic::Direction::In,
        transport: ipet::traffic::Transport::Tcp,
    }];
    store
        .insert_simulation(&NewSimulation {
            id,
            requester: "test".into(),
            params: "{}".into(),
            trace: ipet::jobs::codec::encode_packets(&packets),
            trace_packets: 1,
            schedule: None,
            created_at: Utc::now(),
        })
        .await
        .expect("insert");
    id
}

async fn a_lost_claim_cannot_finish_and_a_crashing_job_is_given_up(db: Db) {
    let app = TestApp::without_workers(db).await;
    let store = &app.state.store;
    let id = queued_job(store).await;
    let t0 = 1_000_000;
    let lease = 10_000;
    let a = store.claim_simulation("A", t0, t0 - lease, 3).await.expect("claim").expect("a job");
    assert_eq!((a.id, a.attempts), (id, 1));
    // Within the lease nobody else gets it.
    assert!(store.claim_simulation("B", t0 + 5_000, t0 + 5_000 - lease, 3).await.expect("claim").is_none());
    // A stops heart-beating; after the lease B takes over.
    let b = store.claim_simulation("B", t0 + 20_000, t0 + 20_000 - lease, 3).await.expect("claim").expect("taken over");
    assert_eq!(b.attempts, 2);
    assert!(!store.heartbeat_simulation(id, "A", t0 + 21_000).await.expect("heartbeat"), "A's claim is gone");
    assert!(
        !store.finish_simulation(id, "A", t0 + 21_000, Ok(("{}".into(), vec![0], 0))).await.expect("finish"),
        "A cannot finish"
    );
    assert!(store.finish_simulation(id, "B", t0 + 22_000, Ok(("{}".into(), vec![0], 0))).await.expect("finish"));
    assert!(
        !store.finish_simulation(id, "B", t0 + 23_000, Err("again".into())).await.expect("finish"),
        "finished once"
    );
    assert_eq!(store.get_simulation(id, None).await.expect("get").expect("job").status, JobState::Succeeded);

    // A job whose worker dies on every attempt is failed after max_attempts claims.
    let id = queued_job(store).await;
    for k in 0..3 {
        let now = t0 + 100_000 * (k + 1);
        assert!(store.claim_simulation(&format!("W{k}"), now, now - lease, 3).await.expect("claim").is_some());
    }
    let now = t0 + 1_000_000;
    assert!(store.claim_simulation("W9", now, now - lease, 3).await.expect("claim").is_none());
    assert_eq!(store.fail_abandoned_simulations(now, now - lease, 3).await.expect("sweep"), 1);
    let r = store.get_simulation(id, None).await.expect("get").expect("job");
    assert_eq!(r.status, JobState::Failed);
    assert!(r.error.expect("reason").contains("3 times"));
    app.cleanup().await;
}

#[tokio::test]
async fn claims_on_sqlite() {
    a_lost_claim_cannot_finish_and_a_crashing_job_is_given_up(Db::Sqlite).await;
}

#[tokio::test]
async fn claims_on_postgres() {
    a_lost_claim_cannot_finish_and_a_crashing_job_is_given_up(Db::Postgres).await;
}

/// A job that takes its process down on every run (a kill -9 loop) is failed after
/// `max_attempts` claims, once, with its reason, on both backends: SQLite re-queues the jobs a
/// dead process left running at every start, PostgreSQL takes them over after the lease.
async fn a_poison_job_fails_once_with_its_reason(db: Db) {
    let app = TestApp::without_workers(db).await;
    let store = &app.state.store;
    let id = queued_job(store).await;
    let config = WorkerConfig { workers: 0, max_attempts: 3, ..common::worker_config() };
    let lease = config.lease.as_millis() as i64;
    let mut now = Utc::now().timestamp_millis();
    let mut claims = 0;
    for restart in 0..8 {
        // The process starts again (what `ipet serve` does before its workers run) ...
        worker::start(common::engine(), store.clone(), config.clone()).await.expect("start");
        now += 10 * lease;
        store.fail_abandoned_simulations(now, now - lease, config.max_attempts).await.expect("sweep");
        // ... and a worker claims the job and dies with the process.
        if let Some(job) =
            store.claim_simulation(&format!("W{restart}"), now, now - lease, config.max_attempts).await.expect("claim")
        {
            assert_eq!(job.id, id);
            claims += 1;
        }
    }
    assert_eq!(claims, 3, "claimed max_attempts times, never more");
    let r = store.get_simulation(id, None).await.expect("get").expect("job");
    assert_eq!((r.status.as_str(), r.attempts), ("failed", 3));
    assert!(r.error.as_deref().expect("reason").contains("stopped 3 times"), "{:?}", r.error);
    let finished = r.finished_at;
    worker::start(common::engine(), store.clone(), config.clone()).await.expect("start");
    let again = store.get_simulation(id, None).await.expect("get").expect("job");
    assert_eq!((again.status, again.finished_at), (JobState::Failed, finished), "failed once");
    app.cleanup().await;
}

#[tokio::test]
async fn poison_job_on_sqlite() {
    a_poison_job_fails_once_with_its_reason(Db::Sqlite).await;
}

#[tokio::test]
async fn poison_job_on_postgres() {
    a_poison_job_fails_once_with_its_reason(Db::Postgres).await;
}

/// A writer the test's log lines go to.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Workers that share a thread interleave at every `.await`: each job's lines still carry its
/// own id, and only its own.
#[tokio::test(flavor = "current_thread")]
async fn each_job_logs_under_its_own_id() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::without_workers(Db::Sqlite).await;
    let store = app.state.store.clone();
    let config = WorkerConfig { workers: 3, ..common::worker_config() };
    let packets: Vec<ipet::traffic::Packet> = (0..400)
        .map(|i| ipet::traffic::Packet {
            time_ns: i64::from(i) * 37_000_000,
            size: 100 + i as u32,
            direction: if i % 3 == 0 { ipet::traffic::Direction::In } else { ipet::traffic::Direction::Out },
            transport: ipet::traffic::Transport::Tcp,
        })
        .collect();
    let engine = common::engine();
    let set = engine.model_set();
    let mut ids = Vec::new();
    for i in 0..9 {
        let s = Submission {
            device: "blink-cam-01".into(),
            model_set: None,
            addresses: None,
            trace: TraceInput::Packets(packets.clone()),
            cover: CoverRequest::Generation((i % 5).to_string()),
            mode: Mode::Slotted,
            seed: Some(i),
            active_gap: 5.0,
        };
        ids.push(
            submit(set, &store, &ipet::auth::Caller::anonymous(), &Default::default(), s).await.expect("submitted"),
        );
    }
    worker::start(common::engine(), store.clone(), config).await.expect("workers");
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        loop {
            let r = store.get_simulation(*id, None).await.expect("get").expect("exists");
            if r.status == JobState::Succeeded {
                break;
            }
            assert_ne!(r.status, JobState::Failed, "{:?}", r.error);
            assert!(Instant::now() < deadline, "jobs did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
    for line in text.lines() {
        assert!(line.matches("simulation{").count() <= 1, "a line under two jobs' spans: {line}");
    }
    for id in &ids {
        for what in ["claimed", "succeeded"] {
            let own = text
                .lines()
                .filter(|l| l.contains(&format!("job={id}")) && l.contains(&format!("worker: {what}")))
                .count();
            assert_eq!(own, 1, "job {id}: {own} {what:?} lines under its own id\n{text}");
        }
    }
    app.cleanup().await;
}

/// Schedules served under concurrent load (grouped into shared writes) are stored before they
/// are answered: after a SIGKILL straight after the last answer, a new process returns every one
/// of them byte for byte, in the format it was served in.
async fn served_schedules_survive_a_kill(db: &str) {
    let client = reqwest::Client::new();
    let server = Server::start(db).await;
    server.wait_ready(&client).await;
    let requests: Vec<(String, &str)> = (0..48)
        .map(|i| {
            let n = [1, 7, 100, 3000][i % 4];
            let format = ["json", "npy", "csv"][i % 3];
            let device = ["lockly-hub-01", "blink-cam-02", "sifely-hub-01"][i % 3];
            (format!("{}/perturbations/{device}/mix?n={n}&format={format}", server.base), format)
        })
        .collect();
    let served = futures::future::join_all(requests.iter().map(|(url, format)| {
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.expect("request");
            assert!(r.status().is_success(), "{url}: {}", r.status());
            let id = r.headers()["x-job-id"].to_str().expect("id").to_string();
            (id, *format, r.bytes().await.expect("body"))
        }
    }))
    .await;
    server.kill();
    let server = Server::start(db).await;
    server.wait_ready(&client).await;
    for (id, format, body) in &served {
        let again = client
            .get(format!("{}/perturbations/jobs/{id}?format={format}", server.base))
            .send()
            .await
            .expect("refetch");
        assert!(again.status().is_success(), "job {id}: {}", again.status());
        assert!(again.bytes().await.expect("body") == body, "job {id} ({format}) is not what was served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_schedules_survive_a_kill_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    served_schedules_survive_a_kill(&format!("sqlite:{}", dir.path().join("jobs.sqlite3").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_schedules_survive_a_kill_on_postgres() {
    let admin = common::postgres_admin_url();
    let name = format!("ipet_test_{}", Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
    served_schedules_survive_a_kill(&format!("{base}/{name}")).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
        .expect("drop");
}
