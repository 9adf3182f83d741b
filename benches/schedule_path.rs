//! Where a schedule request's time goes, stage by stage, printed as figures (not a timed test).
//!
//! `cargo bench --bench schedule_path` runs each stage of `GET /perturbations/...` on its own over
//! the shipped model set, at n=100 and n=25,000 windows, and prints the median and best of several
//! runs: drawing the windows (noise and inference on the engine's threads), encoding them (npy,
//! JSON), and storing the job (a SQLite file; PostgreSQL when IPET_BENCH_POSTGRES_URL or the
//! default local server answers). `benches/serve.rs` measures the same path end to end over HTTP.

use std::{path::PathBuf, sync::Arc, time::Instant};

use ipet::{
    config::ModelArgs,
    models::{Engine, GenerationChoice, ModelSet, schedule},
    store::{PerturbationJob, Store},
    traffic::noise,
};

const RUNS: usize = 15;

fn figures(label: &str, mut secs: Vec<f64>) {
    secs.sort_by(f64::total_cmp);
    println!("{label:<44} | median {:>8.3} ms | best {:>8.3} ms", secs[secs.len() / 2] * 1e3, secs[0] * 1e3);
}

async fn timed<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> Vec<f64> {
    f().await;
    let mut out = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed().as_secs_f64());
    }
    out
}

fn job(schedule: ipet::models::Schedule, n: usize) -> PerturbationJob {
    PerturbationJob {
        id: uuid::Uuid::new_v4(),
        device: "lockly-hub-01".into(),
        generation: "mix".into(),
        n,
        seed: None,
        model_set: "bench@1".into(),
        created_at: chrono::Utc::now(),
        requester: "bench".into(),
        schedule,
    }
}

async fn stages(engine: &Arc<Engine>, stores: &[(&str, Store)]) {
    let device = engine.model_set().require_device("lockly-hub-01").expect("device");
    for n in [100, 25_000] {
        let draw = || async {
            engine.sample(device, n, GenerationChoice::Mix, &mut noise::rng(None)).await.expect("sample");
        };
        figures(&format!("n={n:<6} draw (noise + generators)"), timed(draw).await);
        let key = schedule::NoiseKey::draw(&mut noise::rng(None));
        let latent = engine.model_set().latent_dim();
        let noise_only = || async {
            std::hint::black_box(key.noise(0, n, latent));
        };
        figures(&format!("n={n:<6}   of which the noise, on one thread"), timed(noise_only).await);
        let schedule = engine.sample(device, n, GenerationChoice::Mix, &mut noise::rng(None)).await.expect("sample");
        let s = &schedule;
        figures(
            &format!("n={n:<6} encode npy"),
            timed(|| async {
                std::hint::black_box(s.to_npy());
            })
            .await,
        );
        let json = || async {
            let mut out = Vec::new();
            s.write_rows_json(&mut out);
            std::hint::black_box(out);
        };
        figures(&format!("n={n:<6} encode JSON rows"), timed(json).await);
        for (name, store) in stores {
            let insert = || async {
                store.insert_perturbation(job(s.clone(), n)).await.expect("insert");
            };
            figures(&format!("n={n:<6} store the job ({name})"), timed(insert).await);
        }
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args = ModelArgs {
        models: std::env::var_os("IPET_MODELS").map_or_else(|| root.join("models/tj-oconnor-2021"), PathBuf::from),
        ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        inference_threads: 0,
        max_batch_rows: 8192,
    };
    let config = args.engine_config();
    let set = ModelSet::load(&args.models).expect("model set");
    println!("model set {} | {} inference threads", set.label(), config.threads);
    let engine = Arc::new(Engine::start(set, &config).expect("engine"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = format!("sqlite:{}", dir.path().join("bench.sqlite3").display());
        let mut stores = vec![("sqlite", Store::connect(&sqlite, 8).await.expect("sqlite"))];
        let pg = std::env::var("IPET_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ipet_stages_{}", std::process::id());
        let admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await;
        let mut admin = match admin {
            Ok(mut conn) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create db");
                let base = pg.rsplit_once('/').map_or(pg.clone(), |(b, _)| b.to_string());
                stores.push(("postgres", Store::connect(&format!("{base}/{name}"), 8).await.expect("postgres")));
                Some(conn)
            }
            Err(e) => {
                println!("postgres skipped: {pg} does not answer ({e})");
                None
            }
        };
        stages(&engine, &stores).await;
        drop(stores);
        if let Some(conn) = admin.as_mut() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
                .execute(conn)
                .await
                .expect("drop db");
        }
    });
}
